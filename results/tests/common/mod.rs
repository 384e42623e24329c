//! Shared by the store tests: sample results and a real PostgreSQL server for the duration of a test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use twi_results::{ResultMeta, ResultStore};

/// A sample EAR-like JWS for result `i` of `agent`: distinct per (agent, i), about `len` bytes.
pub(crate) fn sample_jws(agent: &str, i: u64, len: usize) -> String {
    let body: String = format!("{agent}/{i}/")
        .chars()
        .cycle()
        .filter(char::is_ascii_alphanumeric)
        .take(len)
        .collect();
    format!("eyJhbGciOiJFUzI1NiJ9.{body}.sig{i}")
}

pub(crate) fn sample_meta(i: u64) -> ResultMeta {
    let statuses = ["affirming", "warning", "contraindicated", "none"];
    ResultMeta {
        status: statuses[(i % 4) as usize].to_owned(),
        issued_at: 1_700_000_000 + i as i64,
        expires_at: 1_700_003_600 + i as i64,
        evidence_sha256: (!i.is_multiple_of(3)).then(|| format!("{:064x}", i)),
        policy_id: Some(format!(
            "tag:twi-spire.dev,2026:policy/snp/{i}?sha256={:064x}",
            i
        )),
    }
}

pub(crate) fn agent(n: u32) -> String {
    format!("spiffe://example.org/spire/agent/twi_snp/sim-snp/{n:064x}")
}

/// The behaviour every backend must show, run against `store`.
pub(crate) fn exercise(store: &dyn ResultStore) {
    let (a, b) = (agent(1), agent(2));
    assert_eq!(store.latest(&a).unwrap(), None);
    assert!(store.history(&a, 10).unwrap().is_empty());

    let mut ids = Vec::new();
    for i in 0..5u64 {
        ids.push(
            store
                .put(&a, &sample_jws(&a, i, 900), &sample_meta(i))
                .unwrap(),
        );
        store
            .put(&b, &sample_jws(&b, i, 50), &sample_meta(i + 100))
            .unwrap();
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    let latest = store.latest(&a).unwrap().unwrap();
    assert_eq!(latest.id, ids[4]);
    assert_eq!(latest.agent_id, a);
    assert_eq!(latest.ear_jws, sample_jws(&a, 4, 900));
    assert_eq!(latest.meta, sample_meta(4));

    let h = store.history(&a, 3).unwrap();
    assert_eq!(
        h.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3], ids[2]]
    );
    assert!(h.iter().all(|r| r.agent_id == a));
    assert_eq!(h[2].ear_jws, sample_jws(&a, 2, 900));
    assert_eq!(store.history(&a, 100).unwrap().len(), 5);
    assert_eq!(store.latest(&b).unwrap().unwrap().meta, sample_meta(104));

    // Refused input stores nothing.
    let bad_status = ResultMeta {
        status: "fine".into(),
        ..sample_meta(0)
    };
    assert!(store.put(&a, "x.y.z", &bad_status).is_err());
    assert!(store.put("not-spiffe", "x.y.z", &sample_meta(0)).is_err());
    assert!(store.put(&a, "", &sample_meta(0)).is_err());
    assert_eq!(store.latest(&a).unwrap().unwrap().id, ids[4]);
}

#[allow(unused_imports)] // not every test binary that includes this module uses it
pub(crate) use twi_results::testing::PgServer;

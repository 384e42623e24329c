//! Against a REAL PostgreSQL server, started here by scripts/postgres.sh: fails (never skips) when the
//! server cannot be started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{agent, exercise, sample_jws, sample_meta, PgServer};
use twi_results::{open, PostgresStore, ResultStore};

#[test]
fn postgres_store_against_a_real_server() {
    let pg = PgServer::start().unwrap();

    // conninfo form, then URL form (unix socket folder percent-encoded as the host).
    let store = open(&pg.conninfo).unwrap();
    exercise(store.as_ref());
    let host: String = pg.socket_dir().display().to_string().replace('/', "%2F");
    let url = format!("postgresql://postgres@{host}:{}/postgres", pg.port);
    let again = open(&url).unwrap();
    let a = agent(1);
    assert_eq!(
        again.latest(&a).unwrap(),
        store.latest(&a).unwrap(),
        "both forms reach the same table"
    );

    // Two servers in HA writing concurrently: every put lands once, ids are unique, and "latest"
    // is the same answer for both.
    let s1: Arc<dyn ResultStore> = Arc::new(PostgresStore::connect(&pg.conninfo).unwrap());
    let s2: Arc<dyn ResultStore> = Arc::new(PostgresStore::connect(&pg.conninfo).unwrap());
    let ha = agent(42);
    let threads: Vec<_> = [s1.clone(), s2.clone()]
        .into_iter()
        .enumerate()
        .map(|(n, s)| {
            let ha = ha.clone();
            std::thread::spawn(move || {
                (0..40u64)
                    .map(|i| {
                        let k = n as u64 * 1000 + i;
                        (
                            s.put(&ha, &sample_jws(&ha, k, 300), &sample_meta(k))
                                .unwrap(),
                            k,
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acked: Vec<(i64, u64)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let ids: BTreeSet<i64> = acked.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 80);
    let h = s1.history(&ha, 1000).unwrap();
    assert_eq!(h.len(), 80);
    for (id, k) in &acked {
        let r = h.iter().find(|r| r.id == *id).unwrap();
        assert_eq!(r.ear_jws, sample_jws(&ha, *k, 300));
        assert_eq!(r.meta, sample_meta(*k));
    }
    assert_eq!(s1.latest(&ha).unwrap(), s2.latest(&ha).unwrap());
    assert_eq!(s1.latest(&ha).unwrap().unwrap().id, *ids.last().unwrap());

    // A restart of the server (a failover): reads recover by themselves, puts within one retry.
    pg.stop().unwrap();
    pg.restart().unwrap();
    assert_eq!(s1.latest(&ha).unwrap().unwrap().id, *ids.last().unwrap());
    let k = 9999;
    let id = s2
        .put(&ha, &sample_jws(&ha, k, 10), &sample_meta(k))
        .or_else(|_| s2.put(&ha, &sample_jws(&ha, k, 10), &sample_meta(k)))
        .unwrap();
    assert_eq!(s1.latest(&ha).unwrap().unwrap().id, id);
}

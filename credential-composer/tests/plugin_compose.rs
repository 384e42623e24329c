//! The composer plugin loaded in-process as SPIRE loads it, driven through every Compose RPC: what each
//! SVID gets, that the statement and its proof verify against the published keys and the log, and
//! the refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod plugin_support;

use std::sync::Arc;

use plugin_support::*;
use prost_types::value::Kind;
use twi_credential_composer::cmw::Cmw;
use twi_credential_composer::jwt;
use twi_credential_composer::record::{CredentialKind, EarRef};
use twi_credential_composer::tlog::LogReader;
use twi_plugin::proto::credentialcomposer::{
    ComposeAgentX509svidRequest, ComposeServerX509caRequest, ComposeServerX509svidRequest,
    ComposeWorkloadJwtsvidRequest, ComposeWorkloadX509svidRequest, JwtsvidAttributes,
    X509Extension, X509svidAttributes,
};

const EXE: &str = "4add4bb89d8ca0e3b1bd861130ddd7ae0fd9617a8055de0a38c8d2ca1ac95723";

fn wl(path: &str) -> String {
    format!("spiffe://{TD}{path}")
}

async fn agent_svid(
    h: &Harness,
    agent: &str,
    spki: &[u8],
    extra: Vec<X509Extension>,
) -> Result<X509svidAttributes, tonic::Status> {
    h.client()
        .compose_agent_x509svid(ComposeAgentX509svidRequest {
            attributes: Some(attributes(extra)),
            spiffe_id: agent.into(),
            public_key: spki.to_vec(),
        })
        .await
        .map(|r| r.into_inner().attributes.expect("attributes set"))
}

async fn workload_svid(h: &Harness, id: &str, spki: &[u8]) -> Option<X509svidAttributes> {
    h.client()
        .compose_workload_x509svid(ComposeWorkloadX509svidRequest {
            attributes: Some(attributes(Vec::new())),
            spiffe_id: id.into(),
            public_key: spki.to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
}

fn record_ear(h: &Harness, attrs: &X509svidAttributes) -> (EarRef, u64) {
    let ext = &by_oid(attrs)[PROV_OID];
    let (signed, idx) = h.check_provenance(&ext.value);
    (signed.record.ear.clone(), idx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_svid_gets_the_ear_and_a_logged_verifiable_record() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let agent = agent_id("a1");
    let spki = new_spki();
    let jws = h.seed_current(&agent, Some(sha256(&spki)));
    // A previous composer's extension is echoed untouched.
    let foreign = X509Extension {
        oid: "1.2.3.4".into(),
        value: vec![0x05, 0x00],
        critical: false,
    };
    let before = h.log_size();
    let attrs = agent_svid(&h, &agent, &spki, vec![foreign.clone()])
        .await
        .unwrap();

    assert_eq!(
        attrs.subject,
        attributes(Vec::new()).subject,
        "subject echoed"
    );
    assert_eq!(attrs.dns_sans, ["wl.example"]);
    let exts = by_oid(&attrs);
    assert_eq!(exts.len(), 3, "{exts:?}");
    assert_eq!(exts["1.2.3.4"], foreign);
    assert!(
        !exts[CMW_OID].critical && !exts[PROV_OID].critical,
        "non-critical"
    );

    let cmw = Cmw::from_extn_value(&exts[CMW_OID].value).unwrap();
    assert_eq!(
        cmw.ear_jwss(),
        [(None, jws.clone())],
        "record CMW of the stored EAR"
    );

    let (signed, idx) = h.check_provenance(&exts[PROV_OID].value);
    assert_eq!(idx, before, "appended as the next entry");
    assert_eq!(h.log_size(), before + 1, "exactly one record");
    assert_eq!(signed.issuer, format!("{TD}/twi/cprov"));
    assert_eq!(signed.subject, agent);
    let r = &signed.record;
    assert_eq!(r.kind, CredentialKind::AgentX509);
    assert_eq!(r.sub, agent);
    assert_eq!(r.spki_sha256, Some(sha256(&spki)));
    assert!((r.iat - now()).abs() < 60);
    let EarRef::One(summary) = &r.ear else {
        panic!("{:?}", r.ear)
    };
    assert_eq!(summary.sha256, sha256(jws.as_bytes()));
    assert_eq!(summary.status, "affirming");
    assert_eq!(summary.verifier, "twi-server-nodeattestor@test");
    assert_eq!(summary.key_bound, Some(true));
    assert_eq!(summary.policy_ids.len(), 1);
    let evidence = r.evidence.as_ref().unwrap();
    assert_eq!(evidence.kind, "sev-snp");
    assert_eq!(evidence.sha256, [0xee; 32]);
    let policy = r.policy.as_ref().unwrap();
    assert_eq!(policy.id, "tag:twi-spire.dev,2026:policy/prod");
    assert_eq!(policy.version, "2");
    assert_eq!(policy.sha256, Some([0xcd; 32]));
    assert!(r.wprov.is_empty());

    // Another SVID for the same agent: a new record with a new id.
    let again = agent_svid(&h, &agent, &spki, Vec::new()).await.unwrap();
    let (signed2, idx2) = h.check_provenance(&by_oid(&again)[PROV_OID].value);
    assert_eq!(idx2, idx + 1);
    assert_ne!(signed2.record.rid, r.rid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_key_is_recorded_and_refused_only_when_required() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let agent = agent_id("a1");
    h.seed_current(&agent, Some(sha256(&new_spki())));
    let spki = new_spki();
    let attrs = agent_svid(&h, &agent, &spki, Vec::new()).await.unwrap();
    let (EarRef::One(s), _) = record_ear(&h, &attrs) else {
        panic!()
    };
    assert_eq!(s.key_bound, Some(false));

    h.configure("require_key_binding = true").await.unwrap();
    let size = h.log_size();
    let err = agent_svid(&h, &agent, &spki, Vec::new()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("require_key_binding"),
        "{}",
        err.message()
    );
    assert_eq!(h.log_size(), size, "nothing logged for a refused SVID");

    let bound = new_spki();
    h.seed_current(&agent, Some(sha256(&bound)));
    let attrs = agent_svid(&h, &agent, &bound, Vec::new()).await.unwrap();
    let (EarRef::One(s), _) = record_ear(&h, &attrs) else {
        panic!()
    };
    assert_eq!(s.key_bound, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_expired_ear_is_refused_by_default() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let size = h.log_size();
    let err = agent_svid(&h, &agent_id("none"), &new_spki(), Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("on_missing_attestation_result"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("none stored"), "{}", err.message());

    let old = agent_id("old");
    h.seed_ear(&old, None, now() - 7200, now() - 3600);
    let err = agent_svid(&h, &old, &new_spki(), Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("expired"), "{}", err.message());
    assert_eq!(h.log_size(), size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_ear_is_omitted_when_configured() {
    let h = Harness::new().await;
    h.configure("on_missing_attestation_result = \"omit\"")
        .await
        .unwrap();
    let agent = agent_id("none");
    let attrs = agent_svid(&h, &agent, &new_spki(), Vec::new())
        .await
        .unwrap();
    let exts = by_oid(&attrs);
    assert!(!exts.contains_key(CMW_OID), "no EAR, no CMW");
    let (ear, _) = record_ear(&h, &attrs);
    let EarRef::Unknown { reason } = ear else {
        panic!("{ear:?}")
    };
    assert!(reason.contains("none stored"), "{reason}");

    // Omit does not weaken require_key_binding: without an EAR nothing shows the key is bound.
    h.configure("on_missing_attestation_result = \"omit\"\nrequire_key_binding = true")
        .await
        .unwrap();
    let err = agent_svid(&h, &agent, &new_spki(), Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_oids_from_an_earlier_composer_are_refused() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let agent = agent_id("a1");
    h.seed_current(&agent, None);
    for oid in [CMW_OID, PROV_OID] {
        let ext = X509Extension {
            oid: oid.into(),
            value: vec![0x05, 0x00],
            critical: false,
        };
        let err = agent_svid(&h, &agent, &new_spki(), vec![ext])
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{oid}");
        assert!(err.message().contains(oid), "{}", err.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_failure_refuses_by_default_and_omits_when_configured() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let agent = agent_id("a1");
    h.seed_current(&agent, None);
    // The log disappears under the server (an unmounted volume): appends fail.
    std::fs::remove_dir_all(h.path("log")).unwrap();
    let err = agent_svid(&h, &agent, &new_spki(), Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("on_log_failure"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("transparency log"),
        "{}",
        err.message()
    );

    // A stopped sequencer (another failure) with omit_provenance: issued, without the provenance.
    let h = Harness::new().await;
    h.configure("on_log_failure = \"omit_provenance\"")
        .await
        .unwrap();
    h.seed_current(&agent, None);
    h.plugin.composer().unwrap().sequencer().shutdown().unwrap();
    let attrs = agent_svid(&h, &agent, &new_spki(), Vec::new())
        .await
        .unwrap();
    let exts = by_oid(&attrs);
    assert!(exts.contains_key(CMW_OID));
    assert!(
        !exts.contains_key(PROV_OID),
        "no record, no provenance extension"
    );
    // JWT: no jti or reference to a record that is not in the log.
    h.api
        .set_entries(vec![api_entry("e1", &wl("/wl"), &agent, &["twi:uid:0"], 1)]);
    let claims = jwt_svid(&h, &wl("/wl")).await.unwrap();
    assert!(claims.fields.contains_key("cmw"));
    assert!(!claims.fields.contains_key(jwt::CPROV_CLAIM));
    assert!(!claims.fields.contains_key("jti"));

    // The same stopped sequencer with the default refuses.
    h.configure("").await.unwrap();
    let err = agent_svid(&h, &agent, &new_spki(), Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(
        err.message().contains("sequencer stopped"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_keeps_defaults_and_logs_nothing() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let size = h.log_size();
    use base64::Engine as _;
    let probe_key = base64::engine::general_purpose::STANDARD
        .decode(twi_credential_composer::composer::HEALTH_CHECK_KEY_B64)
        .unwrap();
    let got = workload_svid(&h, &wl("/for/health/check/only"), &probe_key).await;
    assert_eq!(got, None, "attributes unset: SPIRE keeps its defaults");
    assert_eq!(h.log_size(), size);
    assert_eq!(
        h.api
            .list_entries_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "not even looked up"
    );
    // The same ID with another key is not the probe: an ordinary, logged workload SVID.
    let got = workload_svid(&h, &wl("/for/health/check/only"), &new_spki()).await;
    assert!(by_oid(&got.unwrap()).contains_key(PROV_OID));
    assert_eq!(h.log_size(), size + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ca_and_server_svid_keep_defaults() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let err = h
        .client()
        .compose_server_x509ca(ComposeServerX509caRequest { attributes: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    let err = h
        .client()
        .compose_server_x509svid(ComposeServerX509svidRequest { attributes: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_plugin_refuses() {
    let h = Harness::new().await;
    let err = agent_svid(&h, &agent_id("a"), &new_spki(), Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_with_one_parent_agent_gets_its_ear_and_the_entry_provenance() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let agent = agent_id("a1");
    let jws = h.seed_current(&agent, None);
    h.api.set_entries(vec![
        api_entry(
            "entry-1",
            &wl("/billing"),
            &agent,
            &[
                "twi:uid:1000",
                &format!("twi:sha256:{EXE}"),
                "twi:path:/usr/bin/billing",
                "twi:slsa:builder:https://github.com/actions/runner/github-hosted",
                "twi:slsa:source:https://github.com/example/billing",
                &format!("twi:slsa:commit:{}", "7f".repeat(20)),
                "unix:uid:1000",
            ],
            4,
        ),
        api_entry("other", &wl("/other"), &agent, &["twi:uid:1"], 1),
    ]);
    let spki = new_spki();
    let attrs = workload_svid(&h, &wl("/billing"), &spki).await.unwrap();
    let exts = by_oid(&attrs);
    let cmw = Cmw::from_extn_value(&exts[CMW_OID].value).unwrap();
    assert_eq!(cmw.ear_jwss(), [(None, jws.clone())]);
    let (signed, _) = h.check_provenance(&exts[PROV_OID].value);
    let r = signed.record;
    assert_eq!(r.kind, CredentialKind::X509);
    assert_eq!(r.sub, wl("/billing"));
    assert_eq!(r.spki_sha256, Some(sha256(&spki)));
    let EarRef::One(s) = &r.ear else {
        panic!("{:?}", r.ear)
    };
    assert_eq!(s.sha256, sha256(jws.as_bytes()));
    assert_eq!(
        s.key_bound, None,
        "a workload key is never the agent's instance key"
    );
    assert_eq!(r.evidence.as_ref().unwrap().kind, "sev-snp");
    let policy = r.policy.unwrap();
    assert_eq!(policy.id, "spire-entry:entry-1");
    assert_eq!(policy.version, "4");
    assert!(policy.sha256.is_some());
    let roles: Vec<&str> = r
        .wprov
        .iter()
        .map(|d| d.annotations["role"].as_str())
        .collect();
    assert_eq!(roles, ["executable", "slsa-provenance"]);
    assert_eq!(r.wprov[0].digest["sha256"], EXE);
    assert_eq!(r.wprov[0].name.as_deref(), Some("/usr/bin/billing"));
    assert_eq!(
        r.wprov[1].annotations["builderId"],
        "https://github.com/actions/runner/github-hosted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_behind_a_node_alias_gets_a_collection_or_only_digests() {
    let h = Harness::new().await;
    h.configure("max_collection = 2").await.unwrap();
    let (a1, a2, a3) = (agent_id("a1"), agent_id("a2"), agent_id("a3"));
    let j1 = h.seed_current(&a1, None);
    let j2 = h.seed_current(&a2, None);
    let j3 = h.seed_current(&a3, None);
    h.api.set_agents(vec![
        api_agent(&a1, &["twi:policy-match:prod", "twi:tee:sev-snp"]),
        api_agent(&a2, &["twi:policy-match:prod", "twi:tee:tdx"]),
        api_agent(&a3, &["twi:policy-match:dev"]),
    ]);
    h.api.set_entries(vec![
        api_entry(
            "alias",
            &wl("/nodes/prod"),
            &wl("/spire/server"),
            &["twi:policy-match:prod"],
            1,
        ),
        api_entry("e1", &wl("/wl"), &wl("/nodes/prod"), &["twi:uid:0"], 1),
    ]);
    let attrs = workload_svid(&h, &wl("/wl"), &new_spki()).await.unwrap();
    let exts = by_oid(&attrs);
    let cmw = Cmw::from_extn_value(&exts[CMW_OID].value).unwrap();
    let mut got = cmw.ear_jwss();
    got.sort();
    assert_eq!(
        got,
        [
            (Some(a1.clone()), j1.clone()),
            (Some(a2.clone()), j2.clone())
        ],
        "collection of the two candidates' EARs, labelled by agent ID"
    );
    let (ear, _) = record_ear(&h, &attrs);
    let EarRef::Candidates(mut digests) = ear else {
        panic!("{ear:?}")
    };
    digests.sort();
    let mut want = vec![sha256(j1.as_bytes()), sha256(j2.as_bytes())];
    want.sort();
    assert_eq!(digests, want);

    // Three candidates with max_collection = 2: no CMW, the record lists the digests.
    h.api.set_agents(vec![
        api_agent(&a1, &["twi:policy-match:prod"]),
        api_agent(&a2, &["twi:policy-match:prod"]),
        api_agent(&a3, &["twi:policy-match:prod"]),
    ]);
    h.configure("max_collection = 2").await.unwrap(); // a fresh cache
    let attrs = workload_svid(&h, &wl("/wl"), &new_spki()).await.unwrap();
    assert!(!by_oid(&attrs).contains_key(CMW_OID));
    let (ear, _) = record_ear(&h, &attrs);
    let EarRef::Candidates(d) = ear else {
        panic!("{ear:?}")
    };
    assert_eq!(d.len(), 3);
    assert!(d.contains(&sha256(j3.as_bytes())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_without_entry_or_api_is_issued_with_an_unknown_attestation() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let attrs = workload_svid(&h, &wl("/nobody"), &new_spki())
        .await
        .unwrap();
    assert!(!by_oid(&attrs).contains_key(CMW_OID));
    let (ear, _) = record_ear(&h, &attrs);
    assert!(
        matches!(&ear, EarRef::Unknown { reason } if reason.contains("no registration entry")),
        "{ear:?}"
    );

    // The API socket is wrong: still issued, and the record says why nothing is known.
    let hcl = h.hcl("").replace(
        &h.socket.display().to_string(),
        &h.path("missing.sock").display().to_string(),
    );
    h.loaded.configure(TD, &hcl).await.unwrap();
    let attrs = workload_svid(&h, &wl("/wl"), &new_spki()).await.unwrap();
    let (ear, _) = record_ear(&h, &attrs);
    assert!(
        matches!(&ear, EarRef::Unknown { reason } if reason.contains("registration entries unavailable")),
        "{ear:?}"
    );
}

async fn jwt_svid(h: &Harness, id: &str) -> Result<prost_types::Struct, tonic::Status> {
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({
            "sub": id,
            "aud": ["spiffe://example.org/db"],
            "exp": 1_900_000_000u64,
            "iat": 1_899_996_400u64,
        }))
        .unwrap();
    let s = twi_credential_composer::composer::json_to_struct(&claims).unwrap();
    h.client()
        .compose_workload_jwtsvid(ComposeWorkloadJwtsvidRequest {
            attributes: Some(JwtsvidAttributes { claims: Some(s) }),
            spiffe_id: id.into(),
        })
        .await
        .map(|r| r.into_inner().attributes.unwrap().claims.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_svid_gets_cmw_jti_and_a_reference_to_its_logged_record() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let agent = agent_id("a1");
    let jws = h.seed_current(&agent, None);
    h.api
        .set_entries(vec![api_entry("e1", &wl("/wl"), &agent, &["twi:uid:0"], 1)]);
    let out = jwt_svid(&h, &wl("/wl")).await.unwrap();
    // SPIRE's claims unchanged, numbers still numbers.
    assert_eq!(out.fields["sub"].kind, Some(Kind::StringValue(wl("/wl"))));
    assert_eq!(
        out.fields["exp"].kind,
        Some(Kind::NumberValue(1_900_000_000.0))
    );
    let Some(Kind::ListValue(aud)) = &out.fields["aud"].kind else {
        panic!()
    };
    assert_eq!(aud.values.len(), 1);

    let map = twi_credential_composer::composer::struct_to_json(&out).unwrap();
    let (cmw, rid, cprov) = jwt::read_claims(&map).unwrap();
    assert_eq!(cmw.unwrap().ear_jwss(), [(None, jws)]);
    assert_eq!(cprov.log, format!("{TD}/twi/cprov"));
    // The reference leads to the record: the entry at idx hashes to the leaf and is this rid's.
    let reader = LogReader::open(&h.path("log")).unwrap();
    let size = reader.checkpoint().unwrap().size();
    let entry = reader.entry(cprov.idx, size).unwrap();
    assert_eq!(
        twi_credential_composer::tlog::leaf_hash(&entry).0,
        cprov.leaf
    );
    let signed =
        twi_credential_composer::statement::verify_statement(&entry, &h.provenance_key()).unwrap();
    assert_eq!(signed.record.rid, rid);
    assert_eq!(signed.record.kind, CredentialKind::Jwt);
    assert_eq!(signed.record.spki_sha256, None);
    assert_eq!(signed.record.sub, wl("/wl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_svids_each_get_their_own_record() {
    let h = Arc::new(Harness::new().await);
    h.configure("").await.unwrap();
    let agent = agent_id("a1");
    h.seed_current(&agent, None);
    let before = h.log_size();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let h = Arc::clone(&h);
        let agent = agent.clone();
        tasks.push(tokio::spawn(async move {
            agent_svid(&h, &agent, &new_spki(), Vec::new())
                .await
                .unwrap()
        }));
    }
    let mut indices = std::collections::BTreeSet::new();
    for t in tasks {
        let attrs = t.await.unwrap();
        let (_, idx) = h.check_provenance(&by_oid(&attrs)[PROV_OID].value);
        indices.insert(idx);
    }
    assert_eq!(indices.len(), 16, "distinct indices");
    assert_eq!(h.log_size(), before + 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_svids_reuse_an_agents_ear_for_at_most_the_cache_bound() {
    use twi_credential_composer::composer::EAR_CACHE_MS;
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let agent = agent_id("a1");
    h.api
        .set_entries(vec![api_entry("e1", &wl("/wl"), &agent, &["twi:uid:0"], 1)]);
    let ear_in = |attrs: &X509svidAttributes| {
        Cmw::from_extn_value(&by_oid(attrs)[CMW_OID].value)
            .unwrap()
            .ear_jwss()
            .into_iter()
            .map(|(_, jws)| jws)
            .collect::<Vec<_>>()
    };
    let first = h.seed_ear(&agent, None, now() - 30, now() + 3600);
    let attrs = workload_svid(&h, &wl("/wl"), &new_spki()).await.unwrap();
    assert_eq!(ear_in(&attrs), vec![first.clone()]);

    // A new EAR (the agent re-attested): reused for workload SVIDs within the bound, then read.
    let second = h.seed_ear(&agent, None, now() - 20, now() + 3600);
    assert_ne!(first, second);
    let attrs = workload_svid(&h, &wl("/wl"), &new_spki()).await.unwrap();
    assert_eq!(
        ear_in(&attrs),
        vec![first.clone()],
        "within the cache bound"
    );
    tokio::time::sleep(std::time::Duration::from_millis(EAR_CACHE_MS + 100)).await;
    let attrs = workload_svid(&h, &wl("/wl"), &new_spki()).await.unwrap();
    assert_eq!(
        ear_in(&attrs),
        vec![second.clone()],
        "after the cache bound"
    );

    // An agent SVID always reads the store (its EAR was just written by its attestation), and the
    // workload SVIDs after it get that EAR at once.
    let third = h.seed_ear(&agent, None, now() - 10, now() + 3600);
    let attrs = agent_svid(&h, &agent, &new_spki(), Vec::new())
        .await
        .unwrap();
    assert_eq!(ear_in(&attrs), vec![third.clone()]);
    let attrs = workload_svid(&h, &wl("/wl"), &new_spki()).await.unwrap();
    assert_eq!(ear_in(&attrs), vec![third]);
}

//! The server plugin loaded in-process with TDX enabled, the agent side played by hand against simulated
//! Intel TDX root sets (made once per test binary with `twi_core::sim::tdx::init`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use twi_core::sim::tdx::{init, SimTdxDevice, TdParams, TdxInitOptions, TdxSimLayout};
use twi_core::tdx::TcbStatus;
use twi_node_attestor::server::ServerNodeAttestor;
use twi_node_attestor::wire::{
    self, Challenge, Evidence, EvidenceResponse, Hello, TdxEvidence, TeeKind,
};
use twi_plugin::proto::server_nodeattestor::attest_request::Request as In;
use twi_plugin::proto::server_nodeattestor::attest_response::Response as Out;
use twi_plugin::proto::server_nodeattestor::node_attestor_client::NodeAttestorClient;
use twi_plugin::proto::server_nodeattestor::node_attestor_server::NodeAttestorServer;
use twi_plugin::proto::server_nodeattestor::{AgentAttributes, AttestRequest};
use twi_plugin::testing::{load, LoadedPlugin};
use twi_plugin::PluginType;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Set {
    Trusted,
    OutOfDate,
    Stale,
    Untrusted,
}

/// A simulated TDX root set per kind, made once per test binary.
fn root_set(set: Set) -> &'static TdxSimLayout {
    static SETS: [OnceLock<TdxSimLayout>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    SETS[set as usize].get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("server_attest_tdx-{}-{set:?}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = TdxInitOptions::new(now());
        match set {
            Set::OutOfDate => opts.tcb_status = TcbStatus::OutOfDate,
            Set::Stale => {
                opts.collateral_issue_date = Some(now() - 40 * 24 * 3600);
                opts.collateral_next_update = Some(now() - 10 * 24 * 3600);
            }
            _ => {}
        }
        init(&dir, &opts).unwrap()
    })
}

fn tdx_hcl(set: Set, extra: &str) -> String {
    let l = root_set(set);
    format!(
        "tdx {{\n collateral_dir = \"{}\"\n simulated_roots = [\"{}\"]\n {extra}\n}}\n",
        l.collateral_dir.display(),
        l.root_der.display()
    )
}

async fn plugin(hcl: Option<&str>) -> LoadedPlugin {
    let na = ServerNodeAttestor::new();
    let p = load(
        PluginType::ServerNodeAttestor,
        NodeAttestorServer::new(na.clone()),
        Arc::new(na),
    )
    .await
    .unwrap();
    p.init().await.unwrap();
    if let Some(hcl) = hcl {
        p.configure("example.org", hcl).await.unwrap();
    }
    p
}

/// One simulated TD with its agent's instance key.
struct Td {
    key: SigningKey,
    spki: Vec<u8>,
    dev: SimTdxDevice,
}

impl Td {
    fn new(set: Set) -> Td {
        let key = SigningKey::random(&mut OsRng);
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        Td {
            key,
            spki,
            dev: SimTdxDevice::open(&root_set(set).dir).unwrap(),
        }
    }

    fn hello(&self) -> Vec<u8> {
        wire::encode(&Hello {
            v: wire::WIRE_VERSION,
            tee: TeeKind::Tdx,
            instance_key: self.spki.clone(),
        })
        .unwrap()
    }

    fn answer(&self, nonce: &[u8], td: &TdParams, other_nonce: bool) -> Vec<u8> {
        let bound = if other_nonce {
            vec![0x5a; nonce.len()]
        } else {
            nonce.to_vec()
        };
        let quote = self
            .dev
            .quote(&wire::report_data(&bound, &self.spki), td)
            .unwrap();
        let evidence = Evidence::Tdx(TdxEvidence { quote });
        let sig: Signature = self.key.sign(&wire::key_proof_message(nonce, &evidence));
        wire::encode(&EvidenceResponse {
            v: wire::WIRE_VERSION,
            evidence,
            key_proof: sig.to_der().as_bytes().to_vec(),
        })
        .unwrap()
    }
}

async fn attest(
    p: &LoadedPlugin,
    payload: Vec<u8>,
    respond: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Result<AgentAttributes, Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(AttestRequest {
        request: Some(In::Payload(payload)),
    })
    .await
    .unwrap();
    let mut client = NodeAttestorClient::new(p.channel.clone());
    let mut stream = client.attest(ReceiverStream::new(rx)).await?.into_inner();
    let first = stream.message().await?.expect("a response");
    let nonce = match first.response {
        Some(Out::AgentAttributes(a)) => return Ok(a),
        Some(Out::Challenge(c)) => Challenge::decode(&c).expect("a valid challenge").nonce,
        None => panic!("empty response"),
    };
    tx.send(AttestRequest {
        request: Some(In::ChallengeResponse(respond(&nonce))),
    })
    .await
    .unwrap();
    match stream.message().await?.expect("a final response").response {
        Some(Out::AgentAttributes(a)) => Ok(a),
        other => panic!("unexpected {other:?}"),
    }
}

async fn attest_td(
    p: &LoadedPlugin,
    td: &Td,
    params: &TdParams,
    other_nonce: bool,
) -> Result<AgentAttributes, Status> {
    attest(p, td.hello(), |n| td.answer(n, params, other_nonce)).await
}

fn assert_status(r: Result<AgentAttributes, Status>, code: Code, needle: &str) {
    match r {
        Ok(a) => panic!("accepted: {a:?}"),
        Err(st) => {
            assert_eq!(st.code(), code, "{}", st.message());
            assert!(
                st.message().contains(needle),
                "{:?} lacks {needle:?}",
                st.message()
            );
        }
    }
}

#[tokio::test]
async fn accepted_with_sim_tdx_id_and_simulated_selectors() {
    let p = plugin(Some(&tdx_hcl(Set::Trusted, ""))).await;
    let td = Td::new(Set::Trusted);
    let a = attest_td(&p, &td, &TdParams::default(), false)
        .await
        .unwrap();
    let id = hex::encode(Sha256::digest(&td.spki));
    assert_eq!(
        a.spiffe_id,
        format!("spiffe://example.org/spire/agent/twi/sim-tdx/{id}")
    );
    assert!(a.can_reattest);
    let mrtd = hex::encode(twi_core::sim::tdx::default_mrtd());
    for want in [
        "simulated:tee:tdx".to_owned(),
        format!("simulated:tdx:mrtd:{mrtd}"),
        "simulated:tdx:debug:false".into(),
        "simulated:tdx:sept_ve_disable:true".into(),
        "simulated:tdx:tcb_status:uptodate".into(),
        "simulated:tdx:quote_version:4".into(),
        "simulated:tdx:fmspc:b0c06f000000".into(),
        "simulated:tdx:td_attributes:0000000010000000".into(),
    ] {
        assert!(
            a.selector_values.contains(&want),
            "{want} missing: {:?}",
            a.selector_values
        );
    }
    assert!(a
        .selector_values
        .iter()
        .all(|s| s.starts_with("simulated:")));
    // Re-attestation with the same key: same ID (warm caches); another key: another ID.
    let again = attest_td(&p, &td, &TdParams::default(), false)
        .await
        .unwrap();
    assert_eq!(again.spiffe_id, a.spiffe_id);
    let other = attest_td(&p, &Td::new(Set::Trusted), &TdParams::default(), false)
        .await
        .unwrap();
    assert_ne!(other.spiffe_id, a.spiffe_id);
}

#[tokio::test]
async fn debug_td_is_refused_unless_allowed() {
    let td = Td::new(Set::Trusted);
    let debug = TdParams {
        td_attributes: TdParams::DEBUG | TdParams::SEPT_VE_DISABLE,
        ..TdParams::default()
    };
    let p = plugin(Some(&tdx_hcl(Set::Trusted, ""))).await;
    assert_status(
        attest_td(&p, &td, &debug, false).await,
        Code::PermissionDenied,
        "tdx evidence refused (policy-debug)",
    );
    let p = plugin(Some(&tdx_hcl(Set::Trusted, "allow_debug = true"))).await;
    let a = attest_td(&p, &td, &debug, false).await.unwrap();
    assert!(a
        .selector_values
        .contains(&"simulated:tdx:debug:true".to_owned()));
}

#[tokio::test]
async fn out_of_date_tcb_is_refused_unless_listed() {
    let td = Td::new(Set::OutOfDate);
    let p = plugin(Some(&tdx_hcl(Set::OutOfDate, ""))).await;
    assert_status(
        attest_td(&p, &td, &TdParams::default(), false).await,
        Code::PermissionDenied,
        "(tcb-out-of-date)",
    );
    let p = plugin(Some(&tdx_hcl(
        Set::OutOfDate,
        "allowed_tcb_statuses = [\"UpToDate\", \"OutOfDate\"]",
    )))
    .await;
    let a = attest_td(&p, &td, &TdParams::default(), false)
        .await
        .unwrap();
    assert!(a
        .selector_values
        .contains(&"simulated:tdx:tcb_status:outofdate".to_owned()));
}

#[tokio::test]
async fn mrtd_pin_is_enforced() {
    let td = Td::new(Set::Trusted);
    let good = hex::encode(twi_core::sim::tdx::default_mrtd());
    let p = plugin(Some(&tdx_hcl(
        Set::Trusted,
        &format!("mrtd = [\"{}\"]", "ab".repeat(48)),
    )))
    .await;
    assert_status(
        attest_td(&p, &td, &TdParams::default(), false).await,
        Code::PermissionDenied,
        "(policy): policy refused: mrtd",
    );
    let p = plugin(Some(&tdx_hcl(
        Set::Trusted,
        &format!("mrtd = [\"{good}\"]"),
    )))
    .await;
    attest_td(&p, &td, &TdParams::default(), false)
        .await
        .unwrap();
}

#[tokio::test]
async fn stale_collateral_is_collateral_expired() {
    let p = plugin(Some(&tdx_hcl(Set::Stale, ""))).await;
    assert_status(
        attest_td(&p, &Td::new(Set::Stale), &TdParams::default(), false).await,
        Code::Unavailable,
        "(collateral-expired)",
    );
}

#[tokio::test]
async fn quote_for_another_nonce_is_refused() {
    let p = plugin(Some(&tdx_hcl(Set::Trusted, ""))).await;
    assert_status(
        attest_td(&p, &Td::new(Set::Trusted), &TdParams::default(), true).await,
        Code::PermissionDenied,
        "tdx evidence refused (nonce)",
    );
}

#[tokio::test]
async fn untrusted_root_is_refused() {
    // The server trusts the Trusted set (root and collateral); the TD's quote chains to another root.
    let p = plugin(Some(&tdx_hcl(Set::Trusted, ""))).await;
    assert_status(
        attest_td(&p, &Td::new(Set::Untrusted), &TdParams::default(), false).await,
        Code::PermissionDenied,
        "(untrusted-root)",
    );
}

#[tokio::test]
async fn tdx_refused_when_not_enabled() {
    let p = plugin(Some("")).await;
    let r = attest(&p, Td::new(Set::Trusted).hello(), |_| {
        panic!("no challenge may be sent for a TEE that is not enabled")
    })
    .await;
    assert_status(r, Code::FailedPrecondition, "TDX not enabled");
}

#[tokio::test]
async fn collateral_is_reread_when_its_files_change() {
    // A private copy of the stale set's collateral: stale first, then replaced by fresh collateral of the
    // same root set? Different sets have different roots, so swap in a whole fresh set's collateral and
    // root: the server must pick up the new files without reconfiguration.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    let mut opts = TdxInitOptions::new(now());
    opts.collateral_issue_date = Some(now() - 40 * 24 * 3600);
    opts.collateral_next_update = Some(now() - 10 * 24 * 3600);
    let l = init(&dir, &opts).unwrap();
    let hcl = format!(
        "tdx {{\n collateral_dir = \"{}\"\n simulated_roots = [\"{}\"]\n}}\n",
        l.collateral_dir.display(),
        l.root_pem.display()
    );
    let p = plugin(Some(&hcl)).await;
    let td = Td {
        dev: SimTdxDevice::open(&dir).unwrap(),
        ..Td::new(Set::Trusted)
    };
    assert_status(
        attest_td(&p, &td, &TdParams::default(), false).await,
        Code::Unavailable,
        "(collateral-expired)",
    );
    // Re-initialise the same directory with current collateral (new keys: the root changes too, so the
    // server would now refuse for the root; this shows the re-read happened).
    opts.collateral_issue_date = None;
    opts.collateral_next_update = None;
    opts.force = true;
    init(&dir, &opts).unwrap();
    let td = Td {
        dev: SimTdxDevice::open(&dir).unwrap(),
        ..Td::new(Set::Trusted)
    };
    let r = attest_td(&p, &td, &TdParams::default(), false).await;
    match r {
        Ok(a) => panic!("accepted under a root that is not trusted: {a:?}"),
        Err(st) => assert!(
            !st.message().contains("collateral-expired"),
            "collateral not re-read: {}",
            st.message()
        ),
    }
}

#[tokio::test]
async fn bad_tdx_config_names_the_key() {
    let na = ServerNodeAttestor::new();
    let p = load(
        PluginType::ServerNodeAttestor,
        NodeAttestorServer::new(na.clone()),
        Arc::new(na),
    )
    .await
    .unwrap();
    p.init().await.unwrap();
    for (hcl, key) in [
        (
            "tdx {\n allow_debug = false\n}".to_owned(),
            "tdx.collateral_dir",
        ),
        (
            "tdx {\n collateral_dir = \"/nonexistent/collateral\"\n}".into(),
            "tdx.collateral_dir",
        ),
        (
            tdx_hcl(Set::Trusted, "allowed_tcb_statuses = [\"Fine\"]"),
            "tdx.allowed_tcb_statuses[0]",
        ),
        (
            tdx_hcl(Set::Trusted, "allowed_tcb_statuses = []"),
            "tdx.allowed_tcb_statuses",
        ),
        (tdx_hcl(Set::Trusted, "mrtd = [\"abcd\"]"), "tdx.mrtd[0]"),
        (tdx_hcl(Set::Trusted, "rtmr2 = [\"zz\"]"), "tdx.rtmr2[0]"),
        (
            tdx_hcl(
                Set::Trusted,
                "td_attributes {\n value = \"0xq\"\n mask = 1\n}",
            ),
            "tdx.td_attributes.value",
        ),
        (tdx_hcl(Set::Trusted, "bogus = 1"), "tdx.bogus"),
        (
            format!(
                "tdx {{\n collateral_dir = \"{}\"\n disable_intel_roots = true\n}}",
                root_set(Set::Trusted).collateral_dir.display()
            ),
            "tdx.disable_intel_roots",
        ),
        (
            tdx_hcl(
                Set::Trusted,
                &format!(
                    "trusted_roots = [\"{}\"]",
                    root_set(Set::Trusted).pck_pem.display()
                ),
            ),
            "tdx.trusted_roots[0]",
        ),
    ] {
        let err = p.configure("example.org", &hcl).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains(key),
            "{key} not in {}",
            err.message()
        );
    }
}

/// Every TDX appraisal with a verified quote is signed and filed under the agent: an accepted one, and a
/// policy refusal of the same TD (its EAR says what refused it), both verifiable with the JWKS.
#[tokio::test]
async fn tdx_results_are_signed_and_stored_under_the_agent() {
    use twi_core::ear::{self, tv, Jwks, Status as EarStatus, TDX_SUBMOD};

    let dir = tempfile::tempdir().unwrap();
    let results = format!(
        "attestation_results {{\n database = \"sqlite://{}\"\n verifier_key_path = \"{}\"\n \
         jwks_path = \"{}\"\n}}\n",
        dir.path().join("results.db").display(),
        dir.path().join("key.pem").display(),
        dir.path().join("jwks.json").display()
    );
    let store = || {
        twi_results::open(&format!(
            "sqlite://{}",
            dir.path().join("results.db").display()
        ))
        .unwrap()
    };
    let jwks = || Jwks::from_json(&std::fs::read(dir.path().join("jwks.json")).unwrap()).unwrap();
    let td = Td::new(Set::Trusted);

    let p = plugin(Some(&(tdx_hcl(Set::Trusted, "") + &results))).await;
    let a = attest_td(&p, &td, &TdParams::default(), false)
        .await
        .unwrap();
    let row = store().latest(&a.spiffe_id).unwrap().expect("a stored EAR");
    let claims = ear::verify(&row.ear_jws, &jwks(), i64::try_from(now()).unwrap()).unwrap();
    assert_eq!(claims.status, EarStatus::Warning, "simulated TEE");
    assert_eq!(claims.agent_id.as_deref(), Some(a.spiffe_id.as_str()));
    let tdx = &claims.submods[TDX_SUBMOD];
    assert_eq!(tdx.simulated, Some(true));
    assert_eq!(tdx.tcb_status.as_deref(), Some("UpToDate"));
    assert_eq!(tdx.trust_vector.instance_identity, tv::RECOGNIZED_INSTANCE);
    assert_eq!(
        tdx.key_binding.as_deref(),
        Some(hex::encode(Sha256::digest(&td.spki)).as_str())
    );
    // Without a policy document, the plugin's own policy keys, then the trust anchors.
    assert_eq!(tdx.policy_ids.len(), 2, "{:?}", tdx.policy_ids);
    assert!(
        tdx.policy_ids[0].starts_with("tag:twi-spire.dev,2026:policy/plugin-config/1?sha256="),
        "{:?}",
        tdx.policy_ids
    );
    assert!(
        tdx.policy_ids[1].starts_with("tag:twi-spire.dev,2026:policy/tdx-trust-anchors/1?sha256="),
        "{:?}",
        tdx.policy_ids
    );
    assert_eq!(row.meta.policy_id.as_ref(), Some(&tdx.policy_ids[0]));
    assert_eq!(row.meta.evidence_sha256, tdx.evidence_sha256);

    let pinned = format!("mrtd = [\"{}\"]", "ab".repeat(48));
    let p = plugin(Some(&(tdx_hcl(Set::Trusted, &pinned) + &results))).await;
    assert_status(
        attest_td(&p, &td, &TdParams::default(), false).await,
        Code::PermissionDenied,
        "mrtd",
    );
    let rows = store().history(&a.spiffe_id, 10).unwrap();
    assert_eq!(rows.len(), 2, "the refusal is filed under the same agent");
    let refused = ear::verify(&rows[0].ear_jws, &jwks(), i64::try_from(now()).unwrap()).unwrap();
    assert_eq!(refused.status, EarStatus::Contraindicated);
    let refused_ids = &refused.submods[TDX_SUBMOD].policy_ids;
    assert_ne!(
        refused_ids[0], tdx.policy_ids[0],
        "a changed policy has another digest"
    );
    assert_eq!(refused_ids[1], tdx.policy_ids[1], "the same trust anchors");
}

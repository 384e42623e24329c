//! The appraisal policy document in the server plugin, loaded in-process and driven by hand: a
//! `policy_file` (or inline `policy` block) decides what is accepted and which `policy-match:<name>`
//! selectors accepted evidence earns; rewriting the file changes the decision at the next attestation
//! of the same plugin instance, without Configure; a broken file refuses (`Unavailable`) until fixed;
//! every EAR names the policy in force for its attestation. Simulated TDX (cheap to make) for most
//! cases, simulated SEV-SNP for the SNP selector mapping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand_core::OsRng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use twi_core::ear::{self, Jwks, SNP_SUBMOD, TDX_SUBMOD};
use twi_core::policy::Policy;
use twi_core::sim::tdx::{
    default_mrtd, init, SimTdxDevice, TdParams, TdxInitOptions, TdxSimLayout,
};
use twi_core::sim::{GuestParams, InitOptions, SimLayout, SimSnpDevice};
use twi_node_attestor::server::ServerNodeAttestor;
use twi_node_attestor::wire::{
    self, Challenge, Evidence, EvidenceResponse, Hello, SnpEvidence, TdxEvidence, TeeKind,
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

/// One simulated TDX root set per test binary.
fn tdx_set() -> &'static TdxSimLayout {
    static SET: OnceLock<TdxSimLayout> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("server_policy-tdx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        init(&dir, &TdxInitOptions::new(now())).unwrap()
    })
}

/// One simulated SEV-SNP root set per test binary.
fn snp_set() -> &'static SimLayout {
    static SET: OnceLock<SimLayout> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("server_policy-snp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = InitOptions::new(now());
        opts.rsa_bits = 2048; // test speed only
        twi_core::sim::init(&dir, &opts).unwrap()
    })
}

fn good_mrtd() -> String {
    hex::encode(default_mrtd())
}

fn other_mrtd() -> String {
    "ab".repeat(48)
}

/// A policy allowing TDX TDs with `mrtd` (and SEV-SNP under the baseline), with a rule `web` for it.
fn tdx_policy(version: &str, mrtd: &str) -> String {
    format!(
        "# test policy\nid = \"fleet\"\nversion = \"{version}\"\nsnp {{}}\ntdx {{\n  mrtd = [\"{mrtd}\"]\n}}\n\
         selectors {{\n  match \"web\" {{\n    tdx {{\n      mrtd = [\"{mrtd}\"]\n    }}\n  }}\n}}\n"
    )
}

/// Installs `text` as `path` the way operators are told to: a new file renamed over the old one.
fn install(path: &Path, text: &str) {
    let tmp = path.with_extension("hcl.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The `tdx` block: verification only (collateral and the simulated root), no policy keys.
fn tdx_block() -> String {
    let l = tdx_set();
    format!(
        "tdx {{\n collateral_dir = \"{}\"\n simulated_roots = [\"{}\"]\n}}\n",
        l.collateral_dir.display(),
        l.root_der.display()
    )
}

fn results_block(dir: &Path) -> String {
    format!(
        "attestation_results {{\n database = \"sqlite://{}\"\n verifier_key_path = \"{}\"\n \
         jwks_path = \"{}\"\n}}\n",
        dir.join("results.db").display(),
        dir.join("key.pem").display(),
        dir.join("jwks.json").display()
    )
}

async fn plugin() -> LoadedPlugin {
    let na = ServerNodeAttestor::new();
    let p = load(
        PluginType::ServerNodeAttestor,
        NodeAttestorServer::new(na.clone()),
        Arc::new(na),
    )
    .await
    .unwrap();
    p.init().await.unwrap();
    p
}

async fn configured(hcl: &str) -> LoadedPlugin {
    let p = plugin().await;
    p.configure("example.org", hcl).await.unwrap();
    p
}

/// Plays SPIRE and the agent: the payload, then (if a challenge comes) the answer to its nonce.
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
    let nonce = match stream.message().await?.expect("a response").response {
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

fn instance_key() -> (SigningKey, Vec<u8>) {
    let key = SigningKey::random(&mut OsRng);
    let spki = key
        .verifying_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    (key, spki)
}

fn hello(tee: TeeKind, spki: &[u8]) -> Vec<u8> {
    wire::encode(&Hello {
        v: wire::WIRE_VERSION,
        tee,
        instance_key: spki.to_vec(),
    })
    .unwrap()
}

fn answer(key: &SigningKey, nonce: &[u8], evidence: Evidence) -> Vec<u8> {
    let sig: Signature = key.sign(&wire::key_proof_message(nonce, &evidence));
    wire::encode(&EvidenceResponse {
        v: wire::WIRE_VERSION,
        evidence,
        key_proof: sig.to_der().as_bytes().to_vec(),
    })
    .unwrap()
}

/// One simulated TD (default MRTD) with its agent's instance key.
struct Td {
    key: SigningKey,
    spki: Vec<u8>,
    dev: SimTdxDevice,
}

impl Td {
    fn new() -> Td {
        let (key, spki) = instance_key();
        Td {
            key,
            spki,
            dev: SimTdxDevice::open(&tdx_set().dir).unwrap(),
        }
    }

    async fn attest(&self, p: &LoadedPlugin) -> Result<AgentAttributes, Status> {
        attest(p, hello(TeeKind::Tdx, &self.spki), |nonce| {
            let quote = self
                .dev
                .quote(&wire::report_data(nonce, &self.spki), &TdParams::default())
                .unwrap();
            answer(&self.key, nonce, Evidence::Tdx(TdxEvidence { quote }))
        })
        .await
    }
}

/// One simulated SEV-SNP VM (default guest) with its agent's instance key.
struct Vm {
    key: SigningKey,
    spki: Vec<u8>,
    dev: SimSnpDevice,
}

impl Vm {
    fn new() -> Vm {
        let (key, spki) = instance_key();
        Vm {
            key,
            spki,
            dev: SimSnpDevice::open(&snp_set().dir).unwrap(),
        }
    }

    async fn attest(&self, p: &LoadedPlugin) -> Result<AgentAttributes, Status> {
        attest(p, hello(TeeKind::Snp, &self.spki), |nonce| {
            let ev = self
                .dev
                .report(
                    &wire::report_data(nonce, &self.spki),
                    &GuestParams::default(),
                )
                .unwrap();
            answer(
                &self.key,
                nonce,
                Evidence::Snp(SnpEvidence {
                    report: ev.report,
                    cert_table: Some(ev.cert_table),
                }),
            )
        })
        .await
    }
}

fn refused(r: Result<AgentAttributes, Status>, code: Code, needles: &[&str]) -> String {
    match r {
        Ok(a) => panic!("accepted: {a:?}"),
        Err(st) => {
            assert_eq!(st.code(), code, "{}", st.message());
            for needle in needles {
                assert!(
                    st.message().contains(needle),
                    "{:?} lacks {needle:?}",
                    st.message()
                );
            }
            st.message().to_owned()
        }
    }
}

fn has(a: &AgentAttributes, value: &str) -> bool {
    a.selector_values.iter().any(|s| s == value)
}

/// (a) and (b): the file pins an MRTD; the pinned TD attests with the rule's selector; after the file is
/// replaced by one pinning another MRTD, the next attestation of the same plugin instance is refused.
#[tokio::test]
async fn policy_file_pins_mrtd_and_a_rewrite_applies_at_the_next_attestation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.hcl");
    install(&path, &tdx_policy("1", &good_mrtd()));
    let p = configured(&format!(
        "policy_file = \"{}\"\n{}",
        path.display(),
        tdx_block()
    ))
    .await;
    let td = Td::new();

    let a = td.attest(&p).await.unwrap();
    assert!(
        has(&a, "simulated:policy-match:web"),
        "{:?}",
        a.selector_values
    );
    assert!(has(&a, "simulated:tee:tdx"));
    assert!(
        a.selector_values
            .iter()
            .all(|s| s.starts_with("simulated:") && !s.starts_with("simulated:simulated:")),
        "one prefix each: {:?}",
        a.selector_values
    );

    install(&path, &tdx_policy("2", &other_mrtd()));
    refused(
        td.attest(&p).await,
        Code::PermissionDenied,
        &["tdx evidence refused (policy)", "mrtd"],
    );

    // And back: the same instance follows the file again.
    install(&path, &tdx_policy("3", &good_mrtd()));
    let a = td.attest(&p).await.unwrap();
    assert!(has(&a, "simulated:policy-match:web"));
}

/// (c): a broken file refuses with `Unavailable` naming the file and the key (fail closed, not the
/// previous policy); so does a file that disappeared; the first attestation after the fix succeeds.
#[tokio::test]
async fn broken_policy_file_is_unavailable_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.hcl");
    install(&path, &tdx_policy("1", &good_mrtd()));
    let p = configured(&format!(
        "policy_file = \"{}\"\n{}",
        path.display(),
        tdx_block()
    ))
    .await;
    let td = Td::new();
    td.attest(&p).await.unwrap();

    let typo = tdx_policy("2", &good_mrtd()).replace("mrtd = [", "mrdt = [");
    install(&path, &typo);
    let file = path.display().to_string();
    let msg = refused(
        td.attest(&p).await,
        Code::Unavailable,
        &["policy unavailable", &file, "tdx.mrdt"],
    );
    assert!(
        !msg.contains("evidence"),
        "refused before any evidence: {msg}"
    );
    // SEV-SNP agents too: the whole policy is unavailable, not one section.
    refused(Vm::new().attest(&p).await, Code::Unavailable, &[&file]);

    std::fs::remove_file(&path).unwrap();
    refused(
        td.attest(&p).await,
        Code::Unavailable,
        &["policy unavailable", &file],
    );

    install(&path, &tdx_policy("3", &good_mrtd()));
    let a = td.attest(&p).await.unwrap();
    assert!(has(&a, "simulated:policy-match:web"));
}

/// (d): the stored EAR names the document's id, version and digest, then the TDX trust anchors; after
/// a reload the next EAR names the new policy.
#[tokio::test]
async fn ear_names_the_policy_in_force_and_follows_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.hcl");
    install(&path, &tdx_policy("1", &good_mrtd()));
    let hcl = format!(
        "policy_file = \"{}\"\n{}{}",
        path.display(),
        tdx_block(),
        results_block(dir.path())
    );
    let p = configured(&hcl).await;
    let store = twi_results::open(&format!(
        "sqlite://{}",
        dir.path().join("results.db").display()
    ))
    .unwrap();
    let jwks = || Jwks::from_json(&std::fs::read(dir.path().join("jwks.json")).unwrap()).unwrap();
    let t = || i64::try_from(now()).unwrap();
    let td = Td::new();

    let first = Policy::load(&path).unwrap();
    let a = td.attest(&p).await.unwrap();
    let row = store.latest(&a.spiffe_id).unwrap().expect("a stored EAR");
    let claims = ear::verify(&row.ear_jws, &jwks(), t()).unwrap();
    let ids = &claims.submods[TDX_SUBMOD].policy_ids;
    let want = first.policy_id().uri();
    assert_eq!(
        want,
        format!(
            "tag:twi-spire.dev,2026:policy/fleet/1?sha256={}",
            first.digest_hex()
        )
    );
    assert_eq!(ids[0], want);
    assert!(
        ids[1].starts_with("tag:twi-spire.dev,2026:policy/tdx-trust-anchors/1?sha256="),
        "{ids:?}"
    );
    assert_eq!(row.meta.policy_id.as_deref(), Some(want.as_str()));

    // The same rules under a new version: still accepted, and named by the new id and digest.
    install(&path, &tdx_policy("2", &good_mrtd()));
    let second = Policy::load(&path).unwrap();
    assert_ne!(second.digest(), first.digest());
    td.attest(&p).await.unwrap();
    let row = store.latest(&a.spiffe_id).unwrap().unwrap();
    let claims = ear::verify(&row.ear_jws, &jwks(), t()).unwrap();
    assert_eq!(
        claims.submods[TDX_SUBMOD].policy_ids[0],
        second.policy_id().uri()
    );
    assert_eq!(row.meta.policy_id, Some(second.policy_id().uri()));

    // A refusal under a third policy is filed with that policy's id.
    install(&path, &tdx_policy("3", &other_mrtd()));
    td.attest(&p).await.unwrap_err();
    let row = store.latest(&a.spiffe_id).unwrap().unwrap();
    let claims = ear::verify(&row.ear_jws, &jwks(), t()).unwrap();
    assert_eq!(row.meta.status, "contraindicated");
    assert_eq!(
        claims.submods[TDX_SUBMOD].policy_ids[0],
        Policy::load(&path).unwrap().policy_id().uri()
    );
}

/// (e): one source of truth: a policy document and a policy key of the plugin's blocks, or two
/// documents, are a Configure error naming the keys.
#[tokio::test]
async fn policy_document_beside_plugin_policy_keys_is_a_configure_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.hcl");
    install(&path, &tdx_policy("1", &good_mrtd()));
    let p = plugin().await;
    for (hcl, keys) in [
        (
            format!(
                "policy_file = \"{}\"\nsnp {{\n allow_debug = false\n}}\n{}",
                path.display(),
                tdx_block()
            ),
            vec!["snp.allow_debug"],
        ),
        (
            format!(
                "policy_file = \"{}\"\n{}",
                path.display(),
                tdx_block().replace("tdx {\n", "tdx {\n mrtd = []\n")
            ),
            vec!["tdx.mrtd"],
        ),
        (
            format!(
                "policy_file = \"{}\"\npolicy {{\n id = \"x\"\n version = 1\n}}\n",
                path.display()
            ),
            vec!["policy_file", "policy"],
        ),
        (
            format!(
                "policy_file = \"{}\"\n",
                dir.path().join("missing.hcl").display()
            ),
            vec!["policy_file", "missing.hcl"],
        ),
    ] {
        let err = p.configure("example.org", &hcl).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        for key in keys {
            assert!(
                err.message().contains(key),
                "{key} not in {}",
                err.message()
            );
        }
    }
}

/// A TEE the policy has no section for is refused before the challenge, like a TEE the server has no
/// block for; a reload that adds the section allows it.
#[tokio::test]
async fn tee_without_a_policy_section_is_refused_until_the_policy_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.hcl");
    install(&path, "id = \"snp-only\"\nversion = 1\nsnp {}\n");
    let p = configured(&format!(
        "policy_file = \"{}\"\n{}",
        path.display(),
        tdx_block()
    ))
    .await;
    let td = Td::new();
    let r = attest(&p, hello(TeeKind::Tdx, &td.spki), |_| {
        panic!("no challenge may be sent for a TEE the policy does not allow")
    })
    .await;
    refused(
        r,
        Code::FailedPrecondition,
        &["(tee-not-allowed)", "snp-only", "no `tdx` section"],
    );
    install(&path, &tdx_policy("2", &good_mrtd()));
    td.attest(&p).await.unwrap();
}

/// The SEV-SNP side of the selector mapping, with an inline `policy` block: a VM whose measurement a
/// rule names gets the rule's selector, once prefixed; a rule it does not satisfy adds nothing.
#[tokio::test]
async fn inline_policy_maps_snp_measurement_to_policy_match() {
    let measurement = hex::encode(GuestParams::default().measurement);
    let hcl = format!(
        "snp {{\n simulated_roots = [\"{}\"]\n}}\n\
         policy {{\n id = \"inline\"\n version = 1\n snp {{\n  allowed_measurements = [\"{measurement}\"]\n }}\n \
         selectors {{\n  match \"web-v3\" {{\n   snp {{\n    measurement = [\"{measurement}\"]\n   }}\n  }}\n  \
         match \"web-v2\" {{\n   snp {{\n    measurement = [\"{}\"]\n   }}\n  }}\n }}\n}}\n",
        snp_set().ark_pem.display(),
        "cd".repeat(48)
    );
    let p = configured(&hcl).await;
    let a = Vm::new().attest(&p).await.unwrap();
    assert!(
        has(&a, "simulated:policy-match:web-v3"),
        "{:?}",
        a.selector_values
    );
    assert!(!a.selector_values.iter().any(|s| s.contains("web-v2")));
    assert!(!a
        .selector_values
        .iter()
        .any(|s| s.contains("simulated:simulated:")));
    // TDX is not in this policy (nor in plugin_data).
    let r = attest(&p, hello(TeeKind::Tdx, &Td::new().spki), |_| {
        panic!("no challenge")
    })
    .await;
    refused(r, Code::FailedPrecondition, &["TDX not enabled"]);
}

/// Without a policy document the plugin's own keys are the policy, named `plugin-config` in the EAR,
/// and nothing else changes (the other test files check the behaviour itself).
#[tokio::test]
async fn without_a_document_the_ear_names_the_plugin_config_policy() {
    let dir = tempfile::tempdir().unwrap();
    let hcl = format!(
        "snp {{\n simulated_roots = [\"{}\"]\n}}\n{}",
        snp_set().ark_pem.display(),
        results_block(dir.path())
    );
    let p = configured(&hcl).await;
    let a = Vm::new().attest(&p).await.unwrap();
    assert!(!a.selector_values.iter().any(|s| s.contains("policy-match")));
    let store = twi_results::open(&format!(
        "sqlite://{}",
        dir.path().join("results.db").display()
    ))
    .unwrap();
    let row = store.latest(&a.spiffe_id).unwrap().unwrap();
    let jwks = Jwks::from_json(&std::fs::read(dir.path().join("jwks.json")).unwrap()).unwrap();
    let claims = ear::verify(&row.ear_jws, &jwks, i64::try_from(now()).unwrap()).unwrap();
    let want = Policy::parse("id = \"plugin-config\"\nversion = \"1\"\nsnp {}\n")
        .unwrap()
        .policy_id()
        .uri();
    assert_eq!(claims.submods[SNP_SUBMOD].policy_ids[0], want);
    assert!(claims.submods[SNP_SUBMOD].policy_ids[1]
        .starts_with("tag:twi-spire.dev,2026:policy/sev-snp-trust-anchors/1?sha256="));
}

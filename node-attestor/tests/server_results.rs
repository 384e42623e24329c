//! Signed attestation results: the server plugin loaded in-process (simulated SEV-SNP root set made
//! once per binary) stores an EAR for every appraisal it can file under an agent, signed with the
//! verifier key whose JWKS it writes, and refuses an accepted attestation whose result it cannot store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand_core::OsRng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use twi_core::ear::{self, tv, Jwks, Status as EarStatus, SNP_SUBMOD};
use twi_core::sim::{init, GuestParams, InitOptions, SimLayout, SimSnpDevice};
use twi_node_attestor::server::ServerNodeAttestor;
use twi_node_attestor::wire::{
    self, Challenge, Evidence, EvidenceResponse, Hello, SnpEvidence, TeeKind,
};
use twi_plugin::proto::server_nodeattestor::attest_request::Request as In;
use twi_plugin::proto::server_nodeattestor::attest_response::Response as Out;
use twi_plugin::proto::server_nodeattestor::node_attestor_client::NodeAttestorClient;
use twi_plugin::proto::server_nodeattestor::node_attestor_server::NodeAttestorServer;
use twi_plugin::proto::server_nodeattestor::{AgentAttributes, AttestRequest};
use twi_plugin::testing::{load, LoadedPlugin};
use twi_plugin::PluginType;
use twi_results::ResultStore;

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

fn roots() -> &'static SimLayout {
    static ROOTS: OnceLock<SimLayout> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("server_results-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = InitOptions::new(u64::try_from(now()).unwrap());
        opts.rsa_bits = 2048; // test speed only
        init(&dir, &opts).unwrap()
    })
}

/// Where one test's results live.
struct Files {
    _dir: tempfile::TempDir,
    db: PathBuf,
    key: PathBuf,
    jwks: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        Files {
            db: dir.path().join("results.db"),
            key: dir.path().join("verifier-key.pem"),
            jwks: dir.path().join("verifier-jwks.json"),
            _dir: dir,
        }
    }

    fn hcl(&self, extra_snp: &str) -> String {
        format!(
            "snp {{\n simulated_roots = [\"{}\"]\n {extra_snp}\n}}\n\
             attestation_results {{\n database = \"sqlite://{}\"\n verifier_key_path = \"{}\"\n \
             jwks_path = \"{}\"\n ear_validity_seconds = 600\n}}\n",
            roots().ark_pem.display(),
            self.db.display(),
            self.key.display(),
            self.jwks.display()
        )
    }

    fn store(&self) -> Box<dyn ResultStore> {
        twi_results::open(&format!("sqlite://{}", self.db.display())).unwrap()
    }

    fn jwks(&self) -> Jwks {
        Jwks::from_json(&std::fs::read(&self.jwks).unwrap()).unwrap()
    }
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

struct Vm {
    key: SigningKey,
    spki: Vec<u8>,
    dev: SimSnpDevice,
}

impl Vm {
    fn new() -> Vm {
        let key = SigningKey::random(&mut OsRng);
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        Vm {
            key,
            spki,
            dev: SimSnpDevice::open(&roots().dir).unwrap(),
        }
    }

    fn agent_id(&self) -> String {
        format!(
            "spiffe://example.org/spire/agent/twi/sim-snp/{}",
            hex::encode(self.dev.report_id())
        )
    }

    fn answer(&self, nonce: &[u8], guest: &GuestParams, tamper: bool) -> Vec<u8> {
        let ev = self
            .dev
            .report(&wire::report_data(nonce, &self.spki), guest)
            .unwrap();
        let mut report = ev.report;
        if tamper {
            report[0x90] ^= 1; // inside the signed part
        }
        let evidence = Evidence::Snp(SnpEvidence {
            report,
            cert_table: Some(ev.cert_table),
        });
        let sig: Signature = self.key.sign(&wire::key_proof_message(nonce, &evidence));
        wire::encode(&EvidenceResponse {
            v: wire::WIRE_VERSION,
            evidence,
            key_proof: sig.to_der().as_bytes().to_vec(),
        })
        .unwrap()
    }

    /// Plays SPIRE and the agent; returns the outcome and the nonce the server sent.
    async fn attest(
        &self,
        p: &LoadedPlugin,
        guest: GuestParams,
        tamper: bool,
    ) -> (Result<AgentAttributes, Status>, Vec<u8>) {
        let hello = wire::encode(&Hello {
            v: wire::WIRE_VERSION,
            tee: TeeKind::Snp,
            instance_key: self.spki.clone(),
        })
        .unwrap();
        let (tx, rx) = mpsc::channel(4);
        tx.send(AttestRequest {
            request: Some(In::Payload(hello)),
        })
        .await
        .unwrap();
        let mut client = NodeAttestorClient::new(p.channel.clone());
        let mut stream = client
            .attest(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let nonce = match stream.message().await.unwrap().unwrap().response {
            Some(Out::Challenge(c)) => Challenge::decode(&c).unwrap().nonce,
            other => panic!("want a challenge, got {other:?}"),
        };
        tx.send(AttestRequest {
            request: Some(In::ChallengeResponse(self.answer(&nonce, &guest, tamper))),
        })
        .await
        .unwrap();
        let out = match stream.message().await {
            Ok(Some(m)) => match m.response {
                Some(Out::AgentAttributes(a)) => Ok(a),
                other => panic!("unexpected {other:?}"),
            },
            Ok(None) => panic!("stream ended without an answer"),
            Err(st) => Err(st),
        };
        (out, nonce)
    }
}

fn debug_guest() -> GuestParams {
    GuestParams {
        policy: GuestParams::default().policy | twi_core::snp::layout::policy_bits::DEBUG,
        ..GuestParams::default()
    }
}

#[tokio::test]
async fn accepted_attestation_stores_a_verifiable_warning_ear() {
    let f = Files::new();
    let p = configured(&f.hcl("")).await;
    let mode = std::fs::metadata(&f.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "generated verifier key mode");
    let vm = Vm::new();
    let (a, nonce) = vm.attest(&p, GuestParams::default(), false).await;
    let a = a.unwrap();
    assert_eq!(a.spiffe_id, vm.agent_id());

    let row = f
        .store()
        .latest(&a.spiffe_id)
        .unwrap()
        .expect("a stored EAR");
    let t = now();
    let claims = ear::verify(&row.ear_jws, &f.jwks(), t).unwrap();
    assert_eq!(claims.status, EarStatus::Warning, "simulated TEE");
    assert_eq!(claims.agent_id.as_deref(), Some(a.spiffe_id.as_str()));
    assert_eq!(claims.exp - claims.iat, 600, "ear_validity_seconds");
    assert!((t - claims.iat).abs() < 60);
    let snp = &claims.submods[SNP_SUBMOD];
    assert_eq!(snp.nonce.as_deref(), Some(B64URL.encode(&nonce).as_str()));
    assert_eq!(snp.simulated, Some(true));
    assert_eq!(snp.trust_vector.instance_identity, tv::RECOGNIZED_INSTANCE);
    assert_eq!(row.meta.status, "warning");
    assert_eq!(row.meta.policy_id.as_ref(), snp.policy_ids.first());
    assert!(
        row.meta
            .policy_id
            .as_deref()
            .unwrap()
            .starts_with("tag:twi-spire.dev,2026:policy/plugin-config/1?sha256="),
        "{:?}",
        row.meta.policy_id
    );
    assert!(
        snp.policy_ids[1]
            .starts_with("tag:twi-spire.dev,2026:policy/sev-snp-trust-anchors/1?sha256="),
        "{:?}",
        snp.policy_ids
    );
    assert_eq!(row.meta.evidence_sha256, snp.evidence_sha256);

    // A re-attestation adds a newer result; a second Configure keeps the key (same kid).
    let kid = f.jwks().keys[0].kid.clone();
    let (again, nonce2) = vm.attest(&p, GuestParams::default(), false).await;
    again.unwrap();
    let rows = f.store().history(&a.spiffe_id, 10).unwrap();
    assert_eq!(rows.len(), 2);
    let newest = ear::verify(&rows[0].ear_jws, &f.jwks(), now()).unwrap();
    assert_eq!(
        newest.submods[SNP_SUBMOD].nonce.as_deref(),
        Some(B64URL.encode(&nonce2).as_str())
    );
    let _p2 = configured(&f.hcl("")).await;
    assert_eq!(f.jwks().keys[0].kid, kid, "the key is loaded, not replaced");
}

#[tokio::test]
async fn debug_refusal_is_stored_contraindicated_with_its_category() {
    let f = Files::new();
    let p = configured(&f.hcl("")).await;
    let vm = Vm::new();
    let (r, _) = vm.attest(&p, debug_guest(), false).await;
    let st = r.unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");

    let row = f
        .store()
        .latest(&vm.agent_id())
        .unwrap()
        .expect("refusal stored");
    let claims = ear::verify(&row.ear_jws, &f.jwks(), now()).unwrap();
    assert_eq!(claims.status, EarStatus::Contraindicated);
    let snp = &claims.submods[SNP_SUBMOD];
    assert_eq!(snp.reason.as_deref(), Some("policy-debug"));
    assert_eq!(snp.trust_vector.configuration, tv::UNSUPPORTABLE_CONFIG);
    assert_eq!(row.meta.status, "contraindicated");
}

#[tokio::test]
async fn refusal_before_verification_is_not_filed_under_an_agent() {
    let f = Files::new();
    let p = configured(&f.hcl("")).await;
    let vm = Vm::new();
    let (r, _) = vm.attest(&p, GuestParams::default(), true).await;
    assert_eq!(r.unwrap_err().code(), Code::PermissionDenied);
    // The REPORT_ID of a report whose signature failed is not trustworthy: nothing is stored.
    assert!(f.store().latest(&vm.agent_id()).unwrap().is_none());
}

/// Holds SQLite's write lock from another connection, as another process would.
fn lock_db(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("BEGIN EXCLUSIVE").unwrap();
    c
}

#[tokio::test]
async fn accepted_attestation_whose_result_cannot_be_stored_is_unavailable() {
    let f = Files::new();
    let p = configured(&f.hcl("")).await;
    let vm = Vm::new();
    let lock = lock_db(&f.db);
    let (r, _) = vm.attest(&p, GuestParams::default(), false).await;
    match r {
        Ok(a) => panic!("an SVID was issued without its stored result: {a:?}"),
        Err(st) => {
            assert_eq!(st.code(), Code::Unavailable, "{st:?}");
            assert!(
                st.message().contains("attestation result not stored"),
                "{}",
                st.message()
            );
        }
    }
    // A refusal whose result cannot be stored stays a refusal (PermissionDenied, not Unavailable).
    let (r, _) = vm.attest(&p, debug_guest(), false).await;
    assert_eq!(r.unwrap_err().code(), Code::PermissionDenied);

    drop(lock);
    assert!(f.store().latest(&vm.agent_id()).unwrap().is_none());
    // Once the store works again, so does attestation.
    let (r, _) = vm.attest(&p, GuestParams::default(), false).await;
    r.unwrap();
    assert!(f.store().latest(&vm.agent_id()).unwrap().is_some());
}

#[tokio::test]
async fn configure_fails_naming_the_key() {
    let f = Files::new();
    // A verifier key others may read is refused (like ssh).
    std::fs::write(&f.key, "not a key").unwrap();
    std::fs::set_permissions(&f.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = plugin().await;
    let e = p.configure("example.org", &f.hcl("")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .contains("attestation_results.verifier_key_path"),
        "{}",
        e.message()
    );
    std::fs::remove_file(&f.key).unwrap();

    // A database directory that does not exist.
    let hcl = f.hcl("").replace(
        &format!("sqlite://{}", f.db.display()),
        "sqlite:///nonexistent-twi-dir/results.db",
    );
    let e = p.configure("example.org", &hcl).await.unwrap_err();
    assert!(
        e.message().contains("attestation_results.database"),
        "{}",
        e.message()
    );
    // A block without its required key; nothing is written by a failed Configure.
    let hcl_missing = "attestation_results {\n database = \"sqlite:///tmp/x.db\"\n}\n";
    let e = p.configure("example.org", hcl_missing).await.unwrap_err();
    assert!(
        e.message()
            .contains("attestation_results.verifier_key_path"),
        "{}",
        e.message()
    );
    assert!(!f.key.exists(), "a failed Configure wrote no key");
}

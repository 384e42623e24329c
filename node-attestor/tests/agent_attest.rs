//! The agent NodeAttestor loaded in-process (as SPIRE's `plugintest.Load` would), configured with the
//! simulated SEV-SNP device, driven through `AidAttestation` the way spire-agent drives it: open the
//! stream, read the payload, send the server's challenge, read the response. The evidence is then checked
//! with twi-core exactly as the server half would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};
use twi_core::sim::{self, InitOptions, SimLayout};
use twi_core::snp::{check_report_data, AttestationReport, CertChain, TrustAnchors, Verifier};
use twi_node_attestor::agent::collect::{CollectError, Collector};
use twi_node_attestor::agent::AgentPlugin;
use twi_node_attestor::wire::{self, Evidence, EvidenceResponse, Hello, SnpEvidence, TeeKind};
use twi_plugin::proto::agent_nodeattestor::node_attestor_client::NodeAttestorClient;
use twi_plugin::proto::agent_nodeattestor::payload_or_challenge_response::Data;
use twi_plugin::proto::agent_nodeattestor::{Challenge, PayloadOrChallengeResponse};
use twi_plugin::testing::{self, LoadedPlugin};
use twi_plugin::PluginType;

const TRUST_DOMAIN: &str = "example.org";

/// One simulated root set per test binary (RSA-2048 to keep it quick), under cargo's target tmp dir.
fn sim_layout() -> &'static SimLayout {
    static SIM: OnceLock<SimLayout> = OnceLock::new();
    SIM.get_or_init(|| {
        let base = tempfile::Builder::new()
            .prefix("agent_attest-sim")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        let mut opts = InitOptions::new(u64::try_from(now()).unwrap());
        opts.rsa_bits = 2048;
        sim::init(&base.join("sim"), &opts).unwrap()
    })
}

fn now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

fn sim_hcl(dir: &Path, extra: &str) -> String {
    format!(
        "snp {{\n source = \"simulated\"\n}}\nsimulated {{\n dir = \"{}\"\n{extra}\n}}\n",
        dir.display()
    )
}

async fn load(plugin: &AgentPlugin) -> LoadedPlugin {
    let loaded = testing::load(
        PluginType::AgentNodeAttestor,
        plugin.service(),
        plugin.config_handler(),
    )
    .await
    .unwrap();
    let names = loaded.init().await.unwrap();
    assert!(
        names.contains(&"spire.plugin.agent.nodeattestor.v1.NodeAttestor".to_owned()),
        "{names:?}"
    );
    loaded
}

async fn configured(extra: &str) -> (AgentPlugin, LoadedPlugin) {
    let plugin = AgentPlugin::new();
    let loaded = load(&plugin).await;
    loaded
        .configure(TRUST_DOMAIN, &sim_hcl(&sim_layout().dir, extra))
        .await
        .unwrap();
    (plugin, loaded)
}

/// The host side of one attestation stream, as spire-agent plays it.
struct Stream {
    tx: mpsc::Sender<Challenge>,
    rx: Streaming<PayloadOrChallengeResponse>,
}

impl Stream {
    /// Opens the stream and reads the payload (the agent sends nothing first).
    async fn open(loaded: &LoadedPlugin) -> Result<(Stream, Vec<u8>), Status> {
        let (tx, rx) = mpsc::channel(4);
        let mut rx = NodeAttestorClient::new(loaded.channel.clone())
            .aid_attestation(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let first = rx.message().await?.expect("payload before EOF");
        let Some(Data::Payload(payload)) = first.data else {
            panic!("first message is not a payload: {first:?}");
        };
        assert!(!payload.is_empty());
        Ok((Stream { tx, rx }, payload))
    }

    async fn challenge(&mut self, bytes: Vec<u8>) -> Result<Vec<u8>, Status> {
        self.tx.send(Challenge { challenge: bytes }).await.unwrap();
        let msg = self.rx.message().await?.expect("response before EOF");
        match msg.data {
            Some(Data::ChallengeResponse(r)) => Ok(r),
            other => panic!("not a challenge response: {other:?}"),
        }
    }
}

fn challenge_bytes(nonce: &[u8]) -> Vec<u8> {
    wire::encode(&wire::Challenge {
        v: wire::WIRE_VERSION,
        nonce: nonce.to_vec(),
    })
    .unwrap()
}

/// What the server half does with a response, using twi-core only.
fn verify_like_the_server(hello: &Hello, nonce: &[u8], response: &[u8]) -> AttestationReport {
    let resp = EvidenceResponse::decode(response).unwrap();
    let Evidence::Snp(SnpEvidence { report, cert_table }) = &resp.evidence else {
        panic!("not SNP evidence");
    };
    let parsed = AttestationReport::parse(report).unwrap();

    // Signature and chain to the simulated root, accepted only because we trust it as simulated.
    let chain = CertChain::from_cert_table(cert_table.as_deref().expect("cert table")).unwrap();
    let mut anchors = TrustAnchors::amd().without_amd();
    anchors
        .add_root_pem(&std::fs::read(&sim_layout().ark_pem).unwrap(), true)
        .unwrap();
    let verified = Verifier::new(anchors)
        .verify(&parsed, &chain, now())
        .unwrap();
    assert!(verified.simulated());
    assert!(
        Verifier::new(TrustAnchors::amd())
            .verify(&parsed, &chain, now())
            .is_err(),
        "simulated evidence must never verify to AMD's roots"
    );

    // REPORT_DATA binds this nonce and the key from the Hello.
    check_report_data(&parsed, &wire::report_data(nonce, &hello.instance_key)).unwrap();

    // The key proof is by that key, over this nonce and this evidence.
    let vk = VerifyingKey::from_public_key_der(&hello.instance_key).unwrap();
    let sig = Signature::from_der(&resp.key_proof).unwrap();
    vk.verify(&wire::key_proof_message(nonce, &resp.evidence), &sig)
        .unwrap();
    assert!(vk
        .verify(&wire::key_proof_message(&[0xEE; 32], &resp.evidence), &sig)
        .is_err());
    parsed
}

#[tokio::test]
async fn simulated_attestation_verifies_and_binds_nonce_and_key() {
    let (_plugin, loaded) = configured("").await;

    let (mut stream, payload) = Stream::open(&loaded).await.unwrap();
    let hello = Hello::decode(&payload).unwrap();
    assert_eq!(hello.tee, TeeKind::Snp);
    let nonce1 = [0x11u8; 32];
    let resp1 = stream.challenge(challenge_bytes(&nonce1)).await.unwrap();
    let report1 = verify_like_the_server(&hello, &nonce1, &resp1);
    assert_eq!(report1.vmpl(), 0);
    assert!(!report1.policy().debug);
    assert_eq!(report1.measurement(), &sim::default_measurement());
    drop(stream);

    // Re-attestation: a new stream, the same key, fresh evidence for a new nonce, the same VM.
    let (mut stream, payload) = Stream::open(&loaded).await.unwrap();
    let hello2 = Hello::decode(&payload).unwrap();
    assert_eq!(hello2.instance_key, hello.instance_key);
    let nonce2 = [0x22u8; 48];
    let resp2 = stream.challenge(challenge_bytes(&nonce2)).await.unwrap();
    let report2 = verify_like_the_server(&hello2, &nonce2, &resp2);
    assert_ne!(report1.report_data(), report2.report_data());
    assert_eq!(report1.report_id(), report2.report_id());

    // A second challenge on the same stream gets fresh evidence too.
    let nonce3 = [0x33u8; 64];
    let resp3 = stream.challenge(challenge_bytes(&nonce3)).await.unwrap();
    let report3 = verify_like_the_server(&hello2, &nonce3, &resp3);
    assert_ne!(report3.report_data(), report2.report_data());
    assert_eq!(report3.report_id(), report1.report_id());
}

#[tokio::test]
async fn simulated_guest_parameters_come_from_config() {
    let measurement = "42".repeat(48);
    let host_data = "07".repeat(32);
    let (_plugin, loaded) = configured(&format!(
        " policy = \"0xB0000\"\n measurement = \"{measurement}\"\n host_data = \"{host_data}\"\n \
         report_version = 3\n vmpl = 2"
    ))
    .await;
    let (mut stream, payload) = Stream::open(&loaded).await.unwrap();
    let hello = Hello::decode(&payload).unwrap();
    let nonce = [0x44u8; 32];
    let resp = stream.challenge(challenge_bytes(&nonce)).await.unwrap();
    let report = verify_like_the_server(&hello, &nonce, &resp);
    assert!(report.policy().debug, "a debug guest was configured");
    assert_eq!(report.policy().raw, 0xB0000);
    assert_eq!(report.measurement(), &[0x42; 48]);
    assert_eq!(report.host_data(), &[0x07; 32]);
    assert_eq!(report.version(), 3);
    assert_eq!(report.vmpl(), 2);
}

#[tokio::test]
async fn before_configure_is_failed_precondition() {
    let plugin = AgentPlugin::new();
    let loaded = load(&plugin).await;
    let err = Stream::open(&loaded).await.err().unwrap();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
}

#[tokio::test]
async fn bad_config_is_invalid_argument_naming_the_key() {
    let plugin = AgentPlugin::new();
    let loaded = load(&plugin).await;
    let dir = &sim_layout().dir;
    let cases = [
        (sim_hcl(dir, " polcy = \"0x30000\""), "simulated.polcy"),
        (sim_hcl(dir, " report_version = 4"), "simulated.report_version"),
        (sim_hcl(Path::new("/nonexistent/sim"), ""), "simulated.dir"),
        ("snp {\n source = \"simulated\"\n}\n".to_owned(), "simulated"),
        (
            "snp {\n source = \"sev-guest\"\n sev_guest_device = \"/nonexistent/sev-guest\"\n}\n"
                .to_owned(),
            "snp.sev_guest_device",
        ),
        (
            "snp {\n source = \"configfs-tsm\"\n configfs_tsm_path = \"/nonexistent/tsm\"\n}\n"
                .to_owned(),
            "snp.configfs_tsm_path",
        ),
        (
            "snp {\n configfs_tsm_path = \"/nonexistent/tsm\"\n sev_guest_device = \"/nonexistent/sev\"\n}\n"
                .to_owned(),
            "snp.source",
        ),
        (
            format!("instance_key_path = \"/nonexistent/dir/key.pem\"\n{}", sim_hcl(dir, "")),
            "instance_key_path",
        ),
    ];
    for (hcl, key) in cases {
        let err = loaded.configure(TRUST_DOMAIN, &hcl).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{hcl}: {err}");
        assert!(
            err.message().contains(&format!("`{key}`")),
            "{hcl}: message does not name `{key}`: {}",
            err.message()
        );
    }
    // None of the failures configured anything.
    assert_eq!(
        Stream::open(&loaded).await.err().unwrap().code(),
        Code::FailedPrecondition
    );
    // Validate reports the same kind of problem as a note, without configuring.
    let resp = loaded
        .validate(TRUST_DOMAIN, &sim_hcl(dir, " vmpl = 9"))
        .await
        .unwrap();
    assert!(!resp.valid);
    assert!(
        resp.notes.iter().any(|n| n.contains("simulated.vmpl")),
        "{:?}",
        resp.notes
    );
    let resp = loaded
        .validate(TRUST_DOMAIN, &sim_hcl(dir, ""))
        .await
        .unwrap();
    assert!(resp.valid, "{:?}", resp.notes);
}

#[tokio::test]
async fn no_device_error_tells_how_to_simulate() {
    let plugin = AgentPlugin::new();
    let loaded = load(&plugin).await;
    let err = loaded
        .configure(
            TRUST_DOMAIN,
            "snp {\n configfs_tsm_path = \"/nonexistent/tsm\"\n sev_guest_device = \"/nonexistent/sev\"\n}\n",
        )
        .await
        .unwrap_err();
    assert!(err.message().contains("no SEV-SNP device found"), "{err}");
    assert!(err.message().contains("simulated"), "{err}");
    assert!(err.message().contains("/nonexistent/sev"), "{err}");
}

#[tokio::test]
async fn bad_challenge_is_invalid_argument() {
    let (_plugin, loaded) = configured("").await;
    let (mut stream, _) = Stream::open(&loaded).await.unwrap();
    let err = stream
        .challenge(challenge_bytes(&[0u8; 16]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("nonce is 16 bytes"), "{err}");

    let (mut stream, _) = Stream::open(&loaded).await.unwrap();
    let err = stream.challenge(b"not json".to_vec()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[tokio::test]
async fn instance_key_persists_in_file_and_in_memory_across_reconfigure() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("instance-key.pem");
    let hcl = format!(
        "instance_key_path = \"{}\"\n{}",
        key_path.display(),
        sim_hcl(&sim_layout().dir, "")
    );

    let first_key = {
        let plugin = AgentPlugin::new();
        let loaded = load(&plugin).await;
        loaded.configure(TRUST_DOMAIN, &hcl).await.unwrap();
        let (_, payload) = Stream::open(&loaded).await.unwrap();
        Hello::decode(&payload).unwrap().instance_key
    };
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A new plugin (as after an agent restart) loads the same key.
    let plugin = AgentPlugin::new();
    let loaded = load(&plugin).await;
    loaded.configure(TRUST_DOMAIN, &hcl).await.unwrap();
    let (_, payload) = Stream::open(&loaded).await.unwrap();
    assert_eq!(Hello::decode(&payload).unwrap().instance_key, first_key);

    // Without a path: one in-memory key per process, kept across reconfiguration (SIGUSR1).
    let (_plugin, loaded) = configured("").await;
    let (_, p1) = Stream::open(&loaded).await.unwrap();
    loaded
        .configure(TRUST_DOMAIN, &sim_hcl(&sim_layout().dir, " vmpl = 1"))
        .await
        .unwrap();
    let (_, p2) = Stream::open(&loaded).await.unwrap();
    let k1 = Hello::decode(&p1).unwrap().instance_key;
    let k2 = Hello::decode(&p2).unwrap().instance_key;
    assert_eq!(k1, k2);
    assert_ne!(k1, first_key);
}

/// Replays the first evidence it ever produced: the kind of collector the faulty-agent integration
/// test injects through the test seam.
struct Replaying {
    inner: Arc<dyn Collector>,
    first: Mutex<Option<Evidence>>,
}

impl Collector for Replaying {
    fn tee(&self) -> TeeKind {
        self.inner.tee()
    }
    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, CollectError> {
        let mut first = self.first.lock().unwrap();
        if let Some(ev) = first.as_ref() {
            return Ok(ev.clone());
        }
        let ev = self.inner.collect(report_data)?;
        *first = Some(ev.clone());
        Ok(ev)
    }
    fn describe(&self) -> String {
        format!("replaying {}", self.inner.describe())
    }
}

#[tokio::test]
async fn collector_wrapper_seam_reuses_the_real_agent() {
    let plugin = AgentPlugin::with_collector_wrapper(|inner| {
        Arc::new(Replaying {
            inner,
            first: Mutex::new(None),
        })
    });
    let loaded = load(&plugin).await;
    loaded
        .configure(TRUST_DOMAIN, &sim_hcl(&sim_layout().dir, ""))
        .await
        .unwrap();
    let (mut stream, payload) = Stream::open(&loaded).await.unwrap();
    let hello = Hello::decode(&payload).unwrap();
    let nonce1 = [1u8; 32];
    let r1 = stream.challenge(challenge_bytes(&nonce1)).await.unwrap();
    verify_like_the_server(&hello, &nonce1, &r1);
    // The replayed report still verifies to the root, but its REPORT_DATA is for the old nonce, which
    // is exactly what the server must refuse.
    let nonce2 = [2u8; 32];
    let r2 = stream.challenge(challenge_bytes(&nonce2)).await.unwrap();
    let resp = EvidenceResponse::decode(&r2).unwrap();
    let Evidence::Snp(ev) = &resp.evidence else {
        panic!("not SNP evidence")
    };
    let report = AttestationReport::parse(&ev.report).unwrap();
    assert!(check_report_data(&report, &wire::report_data(&nonce2, &hello.instance_key)).is_err());
    check_report_data(&report, &wire::report_data(&nonce1, &hello.instance_key)).unwrap();
}

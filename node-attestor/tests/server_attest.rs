//! The server plugin loaded in-process (as SPIRE's `plugintest.Load`), with the agent side played by hand
//! against a simulated SEV-SNP root set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand_core::OsRng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
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

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A simulated root set in the target's temp dir, made once per test binary and per name.
fn root_set(name: &'static str) -> &'static SimLayout {
    static TRUSTED: OnceLock<SimLayout> = OnceLock::new();
    static OTHER: OnceLock<SimLayout> = OnceLock::new();
    let cell = if name == "trusted" { &TRUSTED } else { &OTHER };
    cell.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("server_attest-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = InitOptions::new(now());
        opts.rsa_bits = 2048; // test speed only
        init(&dir, &opts).unwrap()
    })
}

fn sim_hcl(extra_snp: &str) -> String {
    format!(
        "snp {{\n simulated_roots = [\"{}\"]\n {extra_snp}\n}}\n",
        root_set("trusted").ark_pem.display()
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

/// One simulated VM with its agent's instance key.
struct Vm {
    key: SigningKey,
    spki: Vec<u8>,
    dev: SimSnpDevice,
}

impl Vm {
    fn new(roots: &SimLayout) -> Vm {
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
            dev: SimSnpDevice::open(&roots.dir).unwrap(),
        }
    }

    fn hello(&self) -> Vec<u8> {
        wire::encode(&Hello {
            v: wire::WIRE_VERSION,
            tee: TeeKind::Snp,
            instance_key: self.spki.clone(),
        })
        .unwrap()
    }

    /// The honest answer, with knobs for the negative cases.
    fn answer(&self, nonce: &[u8], opts: &Answer) -> Vec<u8> {
        let bound_nonce = if opts.other_nonce {
            vec![0x5a; nonce.len()]
        } else {
            nonce.to_vec()
        };
        let ev = self
            .dev
            .report(&wire::report_data(&bound_nonce, &self.spki), &opts.guest)
            .unwrap();
        let mut report = ev.report;
        if opts.tamper {
            report[0x90] ^= 1; // a MEASUREMENT byte, inside the signed part
        }
        let evidence = Evidence::Snp(SnpEvidence {
            report,
            cert_table: opts.with_table.then_some(ev.cert_table),
        });
        let signed = if opts.bad_proof {
            wire::key_proof_message(b"some other nonce, some other nonce", &evidence)
        } else {
            wire::key_proof_message(nonce, &evidence)
        };
        let sig: Signature = self.key.sign(&signed);
        wire::encode(&EvidenceResponse {
            v: wire::WIRE_VERSION,
            evidence,
            key_proof: sig.to_der().as_bytes().to_vec(),
        })
        .unwrap()
    }
}

struct Answer {
    guest: GuestParams,
    other_nonce: bool,
    tamper: bool,
    bad_proof: bool,
    with_table: bool,
}

impl Default for Answer {
    fn default() -> Self {
        Answer {
            guest: GuestParams::default(),
            other_nonce: false,
            tamper: false,
            bad_proof: false,
            with_table: true,
        }
    }
}

/// Plays SPIRE: sends the payload, relays the challenge to `respond`, returns the attributes or status.
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

async fn attest_vm(p: &LoadedPlugin, vm: &Vm, opts: Answer) -> Result<AgentAttributes, Status> {
    attest(p, vm.hello(), |nonce| vm.answer(nonce, &opts)).await
}

fn assert_status(r: Result<AgentAttributes, Status>, code: Code, needle: &str) {
    match r {
        Ok(a) => panic!("accepted: {a:?}"),
        Err(st) => {
            assert_eq!(st.code(), code, "{st:?}");
            assert!(
                st.message().contains(needle),
                "{:?} lacks {needle:?}",
                st.message()
            );
        }
    }
}

#[tokio::test]
async fn accepted_with_sim_id_and_simulated_selectors() {
    let p = plugin(Some(&sim_hcl(""))).await;
    let vm = Vm::new(root_set("trusted"));
    let a = attest_vm(&p, &vm, Answer::default()).await.unwrap();
    assert_eq!(
        a.spiffe_id,
        format!(
            "spiffe://example.org/spire/agent/twi/sim-snp/{}",
            hex::encode(vm.dev.report_id())
        )
    );
    assert!(a.can_reattest);
    assert!(
        a.selector_values.iter().any(|s| s == "simulated:tee:snp"),
        "{:?}",
        a.selector_values
    );
    assert!(a
        .selector_values
        .iter()
        .all(|s| s.starts_with("simulated:")));
    assert!(a.selector_values.iter().any(|s| s
        == &format!(
            "simulated:snp:measurement:{}",
            hex::encode(twi_core::sim::default_measurement())
        )));

    // Re-attestation of the same VM keeps the ID; another VM on the same host gets another.
    let again = attest_vm(&p, &vm, Answer::default()).await.unwrap();
    assert_eq!(again.spiffe_id, a.spiffe_id);
    let other = attest_vm(&p, &Vm::new(root_set("trusted")), Answer::default())
        .await
        .unwrap();
    assert_ne!(other.spiffe_id, a.spiffe_id);
}

#[tokio::test]
async fn plugin_name_and_reattest_come_from_config() {
    let p = plugin(Some(&format!(
        "plugin_name = \"snp_na\"\ncan_reattest = false\n{}",
        sim_hcl("")
    )))
    .await;
    let a = attest_vm(&p, &Vm::new(root_set("trusted")), Answer::default())
        .await
        .unwrap();
    assert!(
        a.spiffe_id
            .starts_with("spiffe://example.org/spire/agent/snp_na/sim-snp/"),
        "{}",
        a.spiffe_id
    );
    assert!(!a.can_reattest);
}

#[tokio::test]
async fn report_for_another_nonce_is_refused() {
    let p = plugin(Some(&sim_hcl(""))).await;
    let r = attest_vm(
        &p,
        &Vm::new(root_set("trusted")),
        Answer {
            other_nonce: true,
            ..Answer::default()
        },
    )
    .await;
    assert_status(r, Code::PermissionDenied, "(nonce)");
}

#[tokio::test]
async fn tampered_report_is_refused() {
    let p = plugin(Some(&sim_hcl(""))).await;
    let r = attest_vm(
        &p,
        &Vm::new(root_set("trusted")),
        Answer {
            tamper: true,
            ..Answer::default()
        },
    )
    .await;
    assert_status(r, Code::PermissionDenied, "signature");
}

#[tokio::test]
async fn debug_guest_is_refused_unless_allowed() {
    let debug = GuestParams {
        policy: GuestParams::default().policy | twi_core::snp::layout::policy_bits::DEBUG,
        ..GuestParams::default()
    };
    let p = plugin(Some(&sim_hcl(""))).await;
    let vm = Vm::new(root_set("trusted"));
    let r = attest_vm(
        &p,
        &vm,
        Answer {
            guest: debug.clone(),
            ..Answer::default()
        },
    )
    .await;
    assert_status(r, Code::PermissionDenied, "policy-debug");

    let p = plugin(Some(&sim_hcl("allow_debug = true"))).await;
    let a = attest_vm(
        &p,
        &vm,
        Answer {
            guest: debug,
            ..Answer::default()
        },
    )
    .await
    .unwrap();
    assert!(a
        .selector_values
        .iter()
        .any(|s| s == "simulated:snp:policy:debug:true"));
}

#[tokio::test]
async fn measurement_pin_is_enforced() {
    let p = plugin(Some(&sim_hcl(&format!(
        "allowed_measurements = [\"{}\"]",
        "00".repeat(48)
    ))))
    .await;
    let r = attest_vm(&p, &Vm::new(root_set("trusted")), Answer::default()).await;
    assert_status(r, Code::PermissionDenied, "measurement");
}

#[tokio::test]
async fn unconfigured_root_is_refused() {
    let p = plugin(Some(&sim_hcl(""))).await;
    let r = attest_vm(&p, &Vm::new(root_set("other")), Answer::default()).await;
    assert_status(r, Code::PermissionDenied, "untrusted-root");
    // And with no simulated root at all (AMD's roots only).
    let p = plugin(Some("")).await;
    let r = attest_vm(&p, &Vm::new(root_set("trusted")), Answer::default()).await;
    assert_status(r, Code::PermissionDenied, "untrusted-root");
}

#[tokio::test]
async fn bad_key_proof_is_refused() {
    let p = plugin(Some(&sim_hcl(""))).await;
    let r = attest_vm(
        &p,
        &Vm::new(root_set("trusted")),
        Answer {
            bad_proof: true,
            ..Answer::default()
        },
    )
    .await;
    assert_status(r, Code::PermissionDenied, "key-proof");
    // A proof by another key over the right message fails the same way.
    let vm = Vm::new(root_set("trusted"));
    let thief = SigningKey::random(&mut OsRng);
    let r = attest(&p, vm.hello(), |nonce| {
        let honest: EvidenceResponse =
            EvidenceResponse::decode(&vm.answer(nonce, &Answer::default())).unwrap();
        let sig: Signature = thief.sign(&wire::key_proof_message(nonce, &honest.evidence));
        wire::encode(&EvidenceResponse {
            key_proof: sig.to_der().as_bytes().to_vec(),
            ..honest
        })
        .unwrap()
    })
    .await;
    assert_status(r, Code::PermissionDenied, "key-proof");
}

#[tokio::test]
async fn garbage_is_invalid_argument() {
    let p = plugin(Some(&sim_hcl(""))).await;
    let r = attest(&p, b"\x00garbage".to_vec(), |_| {
        panic!("no challenge for garbage")
    })
    .await;
    assert_status(r, Code::InvalidArgument, "attestation payload");
    let vm = Vm::new(root_set("trusted"));
    let r = attest(&p, vm.hello(), |_| b"{\"v\":1}".to_vec()).await;
    assert_status(r, Code::InvalidArgument, "challenge response");
    let r = attest(&p, vm.hello(), |nonce| {
        let mut a: EvidenceResponse =
            EvidenceResponse::decode(&vm.answer(nonce, &Answer::default())).unwrap();
        if let Evidence::Snp(ev) = &mut a.evidence {
            ev.report.truncate(100);
        }
        let sig: Signature = vm.key.sign(&wire::key_proof_message(nonce, &a.evidence));
        a.key_proof = sig.to_der().as_bytes().to_vec();
        wire::encode(&a).unwrap()
    })
    .await;
    // The key proof covers the truncated report, so the report parser is what refuses it.
    assert_status(
        r,
        Code::InvalidArgument,
        "snp evidence malformed (malformed)",
    );
}

#[tokio::test]
async fn attest_before_configure_fails_precondition() {
    let p = plugin(None).await;
    let vm = Vm::new(root_set("trusted"));
    let r = attest(&p, vm.hello(), |_| panic!("no challenge before configure")).await;
    assert_status(r, Code::FailedPrecondition, "not configured");
}

#[tokio::test]
async fn missing_chain_without_kds_is_unavailable() {
    let p = plugin(Some(&sim_hcl(""))).await;
    let r = attest_vm(
        &p,
        &Vm::new(root_set("trusted")),
        Answer {
            with_table: false,
            ..Answer::default()
        },
    )
    .await;
    assert_status(r, Code::Unavailable, "missing-certificate");
}

#[tokio::test]
async fn bad_config_fails_configure_naming_the_key() {
    let p = plugin(None).await;
    let st = p
        .configure(
            "example.org",
            "snp {\n simulated_roots = [\"/nonexistent/ark.pem\"]\n}",
        )
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(
        st.message().contains("snp.simulated_roots[0]")
            && st.message().contains("/nonexistent/ark.pem"),
        "{}",
        st.message()
    );
    let v = p
        .validate("example.org", "nonce_len = 8\nbogus = 1")
        .await
        .unwrap();
    assert!(!v.valid);
    assert!(v.notes.iter().any(|n| n.contains("bogus")), "{:?}", v.notes);
    let v = p.validate("example.org", &sim_hcl("")).await.unwrap();
    assert!(v.valid && v.notes.is_empty(), "{:?}", v.notes);
}

/// A tiny KDS: serves the simulated VCEK at `/vcek/v1/Milan/<hwid>?…` and the ASK + ARK bundle at
/// `/vcek/v1/Milan/cert_chain`; anything else is 404. Counts the certificate responses.
struct FakeKds {
    url: String,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKds {
    fn start(dev: &SimSnpDevice, roots: &SimLayout) -> FakeKds {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let vcek_path = format!("/vcek/v1/Milan/{}?", hex::encode(dev.chip_id()));
        let vcek = dev.vcek_der().to_vec();
        let mut bundle = std::fs::read(&roots.ask_pem).unwrap();
        bundle.extend(std::fs::read(&roots.ark_pem).unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (served2, stop2) = (Arc::clone(&served), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let body = if path.starts_with(&vcek_path) {
                    Some(vcek.clone())
                } else if path == "/vcek/v1/Milan/cert_chain" {
                    Some(bundle.clone())
                } else {
                    None
                };
                let resp = match body {
                    Some(b) => {
                        served2.fetch_add(1, Ordering::SeqCst);
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            b.len()
                        )
                        .into_bytes();
                        r.extend(b);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = conn.write_all(&resp);
            }
        });
        FakeKds {
            url: format!("http://{addr}"),
            served,
            stop,
            addr,
            thread: Some(thread),
        }
    }

    fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn kds_fetches_missing_vcek_and_caches_it() {
    let roots = root_set("trusted");
    let vm = Vm::new(roots);
    let kds = FakeKds::start(&vm.dev, roots);
    let cache = tempfile::tempdir().unwrap();
    let hcl = sim_hcl(&format!(
        "kds {{\n url = \"{}\"\n cache_dir = \"{}\"\n timeout_seconds = 5\n }}",
        kds.url,
        cache.path().display()
    ));
    let no_table = || Answer {
        with_table: false,
        ..Answer::default()
    };

    let p = plugin(Some(&hcl)).await;
    let a = attest_vm(&p, &vm, no_table()).await.unwrap();
    assert!(a.spiffe_id.contains("/sim-snp/"));
    let fetched = kds.served.load(Ordering::SeqCst);
    assert_eq!(fetched, 2, "VCEK and cert_chain fetched once each");
    let cached = files_under(cache.path());
    let vcek_file = format!(
        "{}-{:016x}.der",
        hex::encode(vm.dev.chip_id()),
        vm.dev.tcb().encode(vm.dev.product())
    );
    assert!(
        cached
            .iter()
            .any(|f| f.ends_with(Path::new("milan/vcek").join(&vcek_file))),
        "{cached:?}"
    );
    assert!(
        cached.iter().any(|f| f.ends_with("milan/cert_chain.pem")),
        "{cached:?}"
    );
    assert_eq!(
        std::fs::read(cache.path().join("milan/vcek").join(&vcek_file)).unwrap(),
        vm.dev.vcek_der()
    );

    // Warm: same plugin, served from the cache.
    attest_vm(&p, &vm, no_table()).await.unwrap();
    assert_eq!(kds.served.load(Ordering::SeqCst), fetched);

    // KDS gone, a freshly configured plugin still attests from the disk cache.
    kds.shutdown();
    let p2 = plugin(Some(&hcl)).await;
    let b = attest_vm(&p2, &vm, no_table()).await.unwrap();
    assert_eq!(b.spiffe_id, a.spiffe_id);
}

#[tokio::test]
async fn kds_down_and_nothing_cached_is_unavailable() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let hcl = sim_hcl(&format!(
        "kds {{\n url = \"http://127.0.0.1:{port}\"\n cache_dir = \"{}\"\n timeout_seconds = 2\n }}",
        cache.path().display()
    ));
    let p = plugin(Some(&hcl)).await;
    let r = attest_vm(
        &p,
        &Vm::new(root_set("trusted")),
        Answer {
            with_table: false,
            ..Answer::default()
        },
    )
    .await;
    assert_status(r, Code::Unavailable, "missing-certificate");
}

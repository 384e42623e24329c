//! The server plugin's TDX collateral sources, in-process: an offline bundle directory, the on-disk
//! cache and opt-in fetching from a PCS / PCCS played by a real HTTP server on a local TCP port (Intel
//! PCS v4 paths, issuer chains URL-encoded in the headers, the root CA CRL as hex as a PCCS serves it),
//! with per-path request counts. Quotes and collateral come from simulated TDX root sets made per test.
//!
//! What the plugin logs is captured by a small global `tracing` subscriber, so that the tests can check
//! the stale-within-grace warning and the `collateral` field of the "attestation result" record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use twi_core::sim::tdx::{init, SimTdxDevice, TdParams, TdxInitOptions, TdxSimLayout};
use twi_core::tdx::COLLATERAL_FILES;
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

const DAY: u64 = 86_400;

/// The simulated platform: FMSPC B0C06F000000 under the PCK Platform CA.
const CACHE_SUBDIR: &str = "tdx/b0c06f000000-platform";
const TCB_PATH: &str = "/tdx/certification/v4/tcb?fmspc=B0C06F000000";
const QE_PATH: &str = "/tdx/certification/v4/qe/identity";
const PCK_CRL_PATH: &str = "/sgx/certification/v4/pckcrl?ca=platform&encoding=der";
const ROOT_CRL_PATH: &str = "/sgx/certification/v4/rootcacrl";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Captured logs
// ---------------------------------------------------------------------------------------------

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every event of the plugin crate as `LEVEL message field=value …`.
struct Capture;

struct Line(String);

impl tracing::field::Visit for Line {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.target().starts_with("twi_node_attestor")
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        LOGS.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| tracing::subscriber::set_global_default(Capture).unwrap());
}

/// Captured lines containing every one of `needles`.
fn logged(needles: &[&str]) -> Vec<String> {
    LOGS.lock()
        .unwrap()
        .iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .cloned()
        .collect()
}

/// The `collateral` field of the "attestation result" record of the attempt with this evidence.
fn recorded_collateral(quote: &[u8]) -> String {
    let digest = format!("evidence_sha256={}", hex::encode(Sha256::digest(quote)));
    let lines = logged(&["record=attestation-result", &digest]);
    assert_eq!(lines.len(), 1, "one record per attempt: {lines:?}");
    lines[0]
        .split_whitespace()
        .find_map(|f| f.strip_prefix("collateral="))
        .expect("a collateral field")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// A PCS / PCCS on a local port
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Reply {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

type Routes = Arc<Mutex<HashMap<String, Reply>>>;

struct Server {
    url: String,
    addr: SocketAddr,
    routes: Routes,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Routes = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (routes2, hits2, stop2) = (routes.clone(), hits.clone(), stop.clone());
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
                hits2.lock().unwrap().push(path.clone());
                let reply = routes2.lock().unwrap().get(&path).cloned();
                let (status, reply) = match reply {
                    Some(r) => (200, r),
                    None => (
                        404,
                        Reply {
                            headers: Vec::new(),
                            body: Vec::new(),
                        },
                    ),
                };
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reply.body.len()
                );
                for (n, v) in &reply.headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&reply.body);
                let _ = conn.write_all(&bytes);
                let _ = conn.flush();
            }
        });
        Server {
            url: format!("http://{addr}"),
            addr,
            routes,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn route(&self, path: &str, body: Vec<u8>, header: Option<(&str, String)>) {
        let headers = header.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), Reply { headers, body });
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }

    fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    /// Stops listening: connections are refused from now on.
    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// URL-encodes as Intel's PCS does for issuer-chain headers (everything but unreserved characters).
fn url_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

/// Serves the collateral directory `dir` at the PCS v4 paths of the simulated platform.
fn serve_dir(server: &Server, dir: &Path) {
    let chain = |f: &str| url_encode(&read(dir.join(f)));
    server.route(
        TCB_PATH,
        read(dir.join("tcb_info.json")),
        Some(("TCB-Info-Issuer-Chain", chain("tcb_info_issuer_chain.pem"))),
    );
    server.route(
        QE_PATH,
        read(dir.join("qe_identity.json")),
        Some((
            "SGX-Enclave-Identity-Issuer-Chain",
            chain("qe_identity_issuer_chain.pem"),
        )),
    );
    server.route(
        PCK_CRL_PATH,
        read(dir.join("pck_crl.der")),
        Some((
            "SGX-PCK-CRL-Issuer-Chain",
            chain("pck_crl_issuer_chain.pem"),
        )),
    );
    server.route(
        ROOT_CRL_PATH,
        hex::encode(read(dir.join("root_ca_crl.der"))).into_bytes(),
        None,
    );
}

/// A URL nothing listens on (a server started and shut down).
fn down_url() -> String {
    let mut s = Server::start();
    let url = s.url.clone();
    s.shutdown();
    url
}

// ---------------------------------------------------------------------------------------------
// Simulated TDX platforms and the plugin
// ---------------------------------------------------------------------------------------------

struct Sim {
    _dir: tempfile::TempDir,
    layout: TdxSimLayout,
}

/// A simulated root set with current collateral (issued an hour ago, for 30 days).
fn fresh_sim() -> Sim {
    sim(TdxInitOptions::new(now()))
}

/// A simulated root set whose collateral was issued 40 days ago and went stale 10 days ago (its
/// certificates valid throughout, so that only the collateral dates matter).
fn stale_sim() -> Sim {
    let mut o = TdxInitOptions::new(now() - 40 * DAY);
    o.collateral_next_update = Some(now() - 10 * DAY);
    sim(o)
}

fn sim(opts: TdxInitOptions) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let layout = init(&dir.path().join("sim"), &opts).unwrap();
    Sim { _dir: dir, layout }
}

/// Copies the collateral files of `sim` into `to`.
fn copy_collateral(sim: &Sim, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in COLLATERAL_FILES {
        std::fs::copy(sim.layout.collateral_dir.join(f), to.join(f)).unwrap();
    }
}

/// A `tdx` block trusting `sim`'s root, with `body`.
fn tdx_hcl(sim: &Sim, body: &str) -> String {
    format!(
        "tdx {{\n simulated_roots = [\"{}\"]\n{body}\n}}\n",
        sim.layout.root_der.display()
    )
}

fn online(server_url: &str, cache: &Path) -> String {
    format!(
        " pcs_url = \"{server_url}\"\n cache_dir = \"{}\"\n fetch_timeout_seconds = 5\n",
        cache.display()
    )
}

async fn plugin() -> LoadedPlugin {
    capture_logs();
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

/// One simulated TD with its agent's instance key; remembers the quotes it produced.
struct Td {
    key: SigningKey,
    spki: Vec<u8>,
    dev: SimTdxDevice,
    quotes: Mutex<Vec<Vec<u8>>>,
}

impl Td {
    fn new(sim: &Sim) -> Td {
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
            dev: SimTdxDevice::open(&sim.layout.dir).unwrap(),
            quotes: Mutex::new(Vec::new()),
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

    fn answer(&self, nonce: &[u8]) -> Vec<u8> {
        let quote = self
            .dev
            .quote(&wire::report_data(nonce, &self.spki), &TdParams::default())
            .unwrap();
        self.quotes.lock().unwrap().push(quote.clone());
        let evidence = Evidence::Tdx(TdxEvidence { quote });
        let sig: Signature = self.key.sign(&wire::key_proof_message(nonce, &evidence));
        wire::encode(&EvidenceResponse {
            v: wire::WIRE_VERSION,
            evidence,
            key_proof: sig.to_der().as_bytes().to_vec(),
        })
        .unwrap()
    }

    fn last_quote(&self) -> Vec<u8> {
        self.quotes
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a quote")
    }

    async fn attest(&self, p: &LoadedPlugin) -> Result<AgentAttributes, Status> {
        let (tx, rx) = mpsc::channel(4);
        tx.send(AttestRequest {
            request: Some(In::Payload(self.hello())),
        })
        .await
        .unwrap();
        let mut client = NodeAttestorClient::new(p.channel.clone());
        let mut stream = client.attest(ReceiverStream::new(rx)).await?.into_inner();
        let first = stream.message().await?.expect("a response");
        let nonce = match first.response {
            Some(Out::Challenge(c)) => Challenge::decode(&c).expect("a valid challenge").nonce,
            other => panic!("expected a challenge, got {other:?}"),
        };
        tx.send(AttestRequest {
            request: Some(In::ChallengeResponse(self.answer(&nonce))),
        })
        .await
        .unwrap();
        match stream.message().await?.expect("a final response").response {
            Some(Out::AgentAttributes(a)) => Ok(a),
            other => panic!("unexpected {other:?}"),
        }
    }
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

fn cached_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// No offline bundle, `pcs_url` set: the first attestation fetches the four items and caches them,
/// the second is served from memory, and a reconfigured plugin (a restart) reads the cache: no request.
#[tokio::test]
async fn first_attestation_fetches_then_memory_then_cache() {
    let s = fresh_sim();
    let server = Server::start();
    serve_dir(&server, &s.layout.collateral_dir);
    let cache = tempfile::tempdir().unwrap();
    let hcl = tdx_hcl(&s, &online(&server.url, cache.path()));
    let td = Td::new(&s);

    let p = configured(&hcl).await;
    assert_eq!(server.total_hits(), 0, "nothing is fetched at Configure");
    let a = td.attest(&p).await.unwrap();
    assert!(a.spiffe_id.contains("/sim-tdx/"), "{}", a.spiffe_id);
    for path in [TCB_PATH, QE_PATH, PCK_CRL_PATH, ROOT_CRL_PATH] {
        assert_eq!(server.hits(path), 1, "{path}");
    }
    assert_eq!(recorded_collateral(&td.last_quote()), "fetched");
    let cached = cache.path().join(CACHE_SUBDIR);
    let mut want: Vec<String> = COLLATERAL_FILES.iter().map(|f| (*f).to_owned()).collect();
    want.sort();
    assert_eq!(cached_files(&cached), want);
    for f in COLLATERAL_FILES {
        assert_eq!(
            read(cached.join(f)),
            read(s.layout.collateral_dir.join(f)),
            "{f}"
        );
    }

    td.attest(&p).await.unwrap();
    assert_eq!(
        server.total_hits(),
        4,
        "the second attestation fetches nothing"
    );

    let restarted = configured(&hcl).await;
    td.attest(&restarted).await.unwrap();
    assert_eq!(server.total_hits(), 4, "a restarted plugin reads the cache");
    assert_eq!(recorded_collateral(&td.last_quote()), "cache");
}

/// Stale cached collateral and the PCS down: refused (`collateral-expired`, fail closed) without a
/// grace period or past it; accepted within it, with the grace use logged at warn and named in the
/// attestation result record.
#[tokio::test]
async fn stale_cache_and_pcs_down_fails_closed_unless_within_grace() {
    let s = stale_sim();
    let cache = tempfile::tempdir().unwrap();
    copy_collateral(&s, &cache.path().join(CACHE_SUBDIR));
    let url = down_url();
    let td = Td::new(&s);

    // No grace (the default).
    let p = configured(&tdx_hcl(&s, &online(&url, cache.path()))).await;
    assert_status(
        td.attest(&p).await,
        Code::Unavailable,
        "(collateral-expired)",
    );
    assert_eq!(recorded_collateral(&td.last_quote()), "-");
    assert!(
        !logged(&["WARN", "TDX collateral unavailable", &url]).is_empty(),
        "the refusal names the failed fetch"
    );

    // Nine days of grace: ten days stale is past it.
    let nine_days = 9 * DAY;
    let p = configured(&tdx_hcl(
        &s,
        &format!(
            "{} collateral_grace_seconds = {nine_days}\n",
            online(&url, cache.path())
        ),
    ))
    .await;
    assert_status(
        td.attest(&p).await,
        Code::Unavailable,
        "(collateral-expired)",
    );

    // Eleven days of grace: accepted, verified at the collateral's last current instant, and said.
    let eleven_days = 11 * DAY;
    let p = configured(&tdx_hcl(
        &s,
        &format!(
            "{} collateral_grace_seconds = {eleven_days}\n",
            online(&url, cache.path())
        ),
    ))
    .await;
    let a = td.attest(&p).await.unwrap();
    assert!(a.spiffe_id.contains("/sim-tdx/"), "{}", a.spiffe_id);
    assert_eq!(
        recorded_collateral(&td.last_quote()),
        "cache,stale-within-grace"
    );
    let grace = format!("within grace period of {eleven_days} s");
    let warned = logged(&["WARN", "collateral stale since", &grace]);
    assert!(!warned.is_empty(), "the grace use is logged at warn");
    assert!(
        warned
            .iter()
            .any(|l| l.contains(&cache.path().join(CACHE_SUBDIR).display().to_string())),
        "and names where the collateral came from: {warned:?}"
    );
    // The failed refresh that left only the stale copy is logged too.
    assert!(!logged(&["WARN", "problem while getting it", &url]).is_empty());
}

/// Collateral the source serves but the verifier refuses (a cached TCB info whose signature is
/// broken) is refetched once, and the attestation verified with the fetched copy; with the PCS down it
/// stays refused.
#[tokio::test]
async fn collateral_the_verifier_refuses_is_refetched_once() {
    let s = fresh_sim();
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join(CACHE_SUBDIR);
    copy_collateral(&s, &dir);
    let tcb = String::from_utf8(read(dir.join("tcb_info.json"))).unwrap();
    let sig_at = tcb.find("\"signature\":\"").unwrap() + "\"signature\":\"".len();
    let flipped = if &tcb[sig_at..=sig_at] == "0" {
        "1"
    } else {
        "0"
    };
    let broken = format!("{}{flipped}{}", &tcb[..sig_at], &tcb[sig_at + 1..]);
    std::fs::write(dir.join("tcb_info.json"), &broken).unwrap();
    let td = Td::new(&s);

    let p = configured(&tdx_hcl(&s, &online(&down_url(), cache.path()))).await;
    // Bad collateral is the verifier's own problem (Internal), not the agent's.
    assert_status(
        td.attest(&p).await,
        Code::Internal,
        "(collateral-signature)",
    );
    assert_eq!(recorded_collateral(&td.last_quote()), "cache");

    let server = Server::start();
    serve_dir(&server, &s.layout.collateral_dir);
    let p = configured(&tdx_hcl(&s, &online(&server.url, cache.path()))).await;
    td.attest(&p).await.unwrap();
    assert_eq!(server.hits(TCB_PATH), 1);
    assert_eq!(recorded_collateral(&td.last_quote()), "fetched");
    assert_eq!(
        read(dir.join("tcb_info.json")),
        read(s.layout.collateral_dir.join("tcb_info.json")),
        "the cache holds the fetched copy"
    );
    td.attest(&p).await.unwrap();
    assert_eq!(server.hits(TCB_PATH), 1, "and it is used from then on");
}

/// A current offline bundle (here in its per-platform subdirectory) wins: no request is made.
#[tokio::test]
async fn a_current_offline_bundle_wins_over_fetching() {
    let s = fresh_sim();
    let offline = tempfile::tempdir().unwrap();
    copy_collateral(&s, &offline.path().join("b0c06f000000-platform"));
    let server = Server::start();
    serve_dir(&server, &s.layout.collateral_dir);
    let cache = tempfile::tempdir().unwrap();
    let p = configured(&tdx_hcl(
        &s,
        &format!(
            " collateral_dir = \"{}\"\n{}",
            offline.path().display(),
            online(&server.url, cache.path())
        ),
    ))
    .await;
    let td = Td::new(&s);
    td.attest(&p).await.unwrap();
    assert_eq!(server.total_hits(), 0);
    assert_eq!(recorded_collateral(&td.last_quote()), "offline");
    assert!(cached_files(cache.path()).is_empty());
}

/// Every problem with the collateral keys names its key.
#[tokio::test]
async fn collateral_config_errors_name_their_key() {
    let s = fresh_sim();
    let p = plugin().await;
    let empty = tempfile::tempdir().unwrap();
    let cache = empty.path().display().to_string();
    let junk = tempfile::tempdir().unwrap();
    copy_collateral(&s, junk.path());
    std::fs::write(junk.path().join("tcb_info.json"), b"{").unwrap();
    let junk_dir = junk.path().display().to_string();
    let upper = tempfile::tempdir().unwrap();
    copy_collateral(&s, &upper.path().join("B0C06F000000-platform"));
    let a_file = junk.path().join("tcb_info.json").display().to_string();
    for (body, key, needle) in [
        (String::new(), "tdx.collateral_dir", "tdx.pcs_url"),
        (
            format!(" pcs_url = \"ftp://pccs:8081\"\n cache_dir = \"{cache}\""),
            "tdx.pcs_url",
            "http(s)",
        ),
        (
            format!(" pcs_url = \"https://\"\n cache_dir = \"{cache}\""),
            "tdx.pcs_url",
            "http(s)",
        ),
        (
            " pcs_url = \"https://pccs:8081\"".to_owned(),
            "tdx.cache_dir",
            "required",
        ),
        (
            format!(" pcs_url = \"https://pccs:8081\"\n cache_dir = \"{a_file}\""),
            "tdx.cache_dir",
            "not a directory",
        ),
        (
            format!(
                " pcs_url = \"https://pccs:8081\"\n cache_dir = \"{cache}\"\n fetch_timeout_seconds = 0"
            ),
            "tdx.fetch_timeout_seconds",
            "1..=300",
        ),
        (
            format!(
                " pcs_url = \"https://pccs:8081\"\n cache_dir = \"{cache}\"\n fetch_timeout_seconds = 301"
            ),
            "tdx.fetch_timeout_seconds",
            "1..=300",
        ),
        (
            format!(
                " pcs_url = \"https://pccs:8081\"\n cache_dir = \"{cache}\"\n root_ca_crl_url = \"file:///x\""
            ),
            "tdx.root_ca_crl_url",
            "http(s)",
        ),
        (
            format!(
                " collateral_dir = \"{}\"\n root_ca_crl_url = \"https://x/root.der\"",
                s.layout.collateral_dir.display()
            ),
            "tdx.root_ca_crl_url",
            "tdx.pcs_url",
        ),
        (
            format!(
                " pcs_url = \"https://pccs:8081\"\n cache_dir = \"{cache}\"\n collateral_grace_seconds = {}",
                31 * DAY
            ),
            "tdx.collateral_grace_seconds",
            "out of range",
        ),
        (
            format!(
                " pcs_url = \"https://pccs:8081\"\n cache_dir = \"{cache}\"\n collateral_retry_seconds = 0"
            ),
            "tdx.collateral_retry_seconds",
            "out of range",
        ),
        (
            format!(" collateral_dir = \"{cache}\""),
            "tdx.collateral_dir",
            "holds no collateral",
        ),
        (
            format!(" collateral_dir = \"{junk_dir}\""),
            "tdx.collateral_dir",
            junk_dir.as_str(),
        ),
        (
            format!(" collateral_dir = \"{}\"", upper.path().display()),
            "tdx.collateral_dir",
            "lower case",
        ),
        (
            format!(" collateral_dir = \"{a_file}\""),
            "tdx.collateral_dir",
            "not a directory",
        ),
    ] {
        let hcl = tdx_hcl(&s, &body);
        let Err(err) = p.configure("example.org", &hcl).await else {
            panic!("accepted: {hcl}");
        };
        assert_eq!(err.code(), Code::InvalidArgument, "{hcl}");
        assert!(
            err.message().contains(&format!("`{key}`")) && err.message().contains(needle),
            "{key} / {needle:?} not in {}",
            err.message()
        );
    }

    // Good: fetching only (an empty cache directory, or one that does not exist yet); an empty
    // offline directory beside fetching; the cache shared with snp.kds.
    for body in [
        format!(" pcs_url = \"https://pccs.example:8081\"\n cache_dir = \"{cache}\""),
        format!(
            " pcs_url = \"https://api.trustedservices.intel.com\"\n cache_dir = \"{cache}/new\"\n \
             root_ca_crl_url = \"https://certificates.trustedservices.intel.com/IntelSGXRootCA.der\"\n \
             fetch_timeout_seconds = 300\n collateral_refresh_before_seconds = 0\n \
             collateral_grace_seconds = {}\n collateral_retry_seconds = 1",
            30 * DAY
        ),
        format!(
            " collateral_dir = \"{cache}\"\n pcs_url = \"http://127.0.0.1:1\"\n cache_dir = \"{cache}\""
        ),
    ] {
        p.configure("example.org", &tdx_hcl(&s, &body))
            .await
            .unwrap_or_else(|e| panic!("{body}: {}", e.message()));
    }
    p.configure(
        "example.org",
        &format!(
            "snp {{\n kds {{\n cache_dir = \"{cache}\"\n }}\n}}\n{}",
            tdx_hcl(
                &s,
                &format!(" pcs_url = \"https://pccs:8081\"\n cache_dir = \"{cache}\"")
            )
        ),
    )
    .await
    .unwrap();
    assert!(
        !PathBuf::from(format!("{cache}/new")).exists(),
        "Configure creates nothing"
    );
}

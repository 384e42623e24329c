//! The collateral layer against a real HTTP server on a local TCP port: a tiny PCS/PCCS (and KDS)
//! serving the real Intel collateral of `shared/testdata` and simulated collateral generations, with
//! per-path request counts. The client is `UreqFetch` when the `fetch` feature is on, else a minimal
//! std-only HTTP/1.1 client below, so the source's logic is tested either way.
//!
//! Time is always the test's `now`, never the wall clock.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use twi_core::collateral::kds::{product_dir, vcek_file_name, KdsClient, CHAIN_FILE_VCEK};
use twi_core::collateral::{
    decode_issuer_chain, write_atomic, CollateralError, Fetch, Origin, PckCa, PcsConfig,
    PlatformKey, RefreshPolicy, Response, TdxCollateralSource, TdxSourceConfig,
};
use twi_core::sim::tdx::{self as simtdx, SimTdxDevice, TdParams, TdxInitOptions, TdxSimLayout};
use twi_core::snp::{AttestationReport, Product, SigningKeyKind, TcbParts};
use twi_core::tdx::{Collateral, IntelRoots, Quote, TcbStatus, TdxVerifier, COLLATERAL_FILES};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");
const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;
/// 2025-06-15T15:06:40Z: simulated sets are created relative to it.
const NOW: i64 = 1_750_000_000;
/// 2025-07-01T00:00:00Z, the manifest's `as_of` for tdx-dq-b0c06f-v4.
const DQ_AS_OF: i64 = 1_751_328_000;
/// The PCK CRL nextUpdate of tdx-dq-b0c06f-v4 (2025-07-19T10:00:35Z), its earliest.
const DQ_NEXT_UPDATE: i64 = 1_752_919_235;

const B0C06F: PlatformKey = PlatformKey {
    fmspc: [0xB0, 0xC0, 0x6F, 0, 0, 0],
    ca: PckCa::Platform,
};

const TCB_PATH: &str = "/tdx/certification/v4/tcb?fmspc=B0C06F000000";
const QE_PATH: &str = "/tdx/certification/v4/qe/identity";
const PCK_CRL_PATH: &str = "/sgx/certification/v4/pckcrl?ca=platform&encoding=der";
const ROOT_CRL_PATH: &str = "/sgx/certification/v4/rootcacrl";

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send this many bytes less than Content-Length announces, then close.
    short_by: usize,
}

impl Reply {
    fn ok(body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body,
            short_by: 0,
        }
    }
    fn header(mut self, name: &str, value: String) -> Reply {
        self.headers.push((name.to_owned(), value));
        self
    }
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
                let reply = reply.unwrap_or(Reply {
                    status: 404,
                    headers: Vec::new(),
                    body: Vec::new(),
                    short_by: 0,
                });
                let mut out = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reply.status,
                    reply.body.len()
                );
                for (n, v) in &reply.headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&reply.body[..reply.body.len() - reply.short_by]);
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

    fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_owned(), reply);
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

/// URL-encodes like Intel's PCS does for issuer-chain headers (everything but unreserved characters).
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

/// Serves the collateral directory `dir` at the PCS v4 paths of platform B0C06F000000 / platform CA,
/// issuer chains URL-encoded in the headers; the root CA CRL as hex, as a PCCS does.
fn serve_dir(server: &Server, dir: &Path) {
    server.route(
        TCB_PATH,
        Reply::ok(read(dir.join("tcb_info.json"))).header(
            "TCB-Info-Issuer-Chain",
            url_encode(&read(dir.join("tcb_info_issuer_chain.pem"))),
        ),
    );
    server.route(
        QE_PATH,
        Reply::ok(read(dir.join("qe_identity.json"))).header(
            "SGX-Enclave-Identity-Issuer-Chain",
            url_encode(&read(dir.join("qe_identity_issuer_chain.pem"))),
        ),
    );
    server.route(
        PCK_CRL_PATH,
        Reply::ok(read(dir.join("pck_crl.der"))).header(
            "SGX-PCK-CRL-Issuer-Chain",
            url_encode(&read(dir.join("pck_crl_issuer_chain.pem"))),
        ),
    );
    server.route(
        ROOT_CRL_PATH,
        Reply::ok(hex::encode(read(dir.join("root_ca_crl.der"))).into_bytes()),
    );
}

fn dq_dir() -> PathBuf {
    PathBuf::from(format!("{TESTDATA}/tdx/dq-b0c06f-v4/collateral"))
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// A minimal HTTP/1.1 GET over std (used when the `fetch` feature, hence ureq, is off).
#[derive(Debug)]
#[cfg_attr(feature = "fetch", allow(dead_code))]
struct StdHttp;

impl Fetch for StdHttp {
    fn get(
        &self,
        url: &str,
        headers: &[&str],
        max_len: usize,
        timeout: Duration,
    ) -> Result<Response, CollateralError> {
        let http = |detail: String| CollateralError::Http {
            url: url.to_owned(),
            detail,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| http("not http".into()))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr: SocketAddr = host.parse().map_err(|e| http(format!("{e}")))?;
        let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| http(e.to_string()))?;
        s.set_read_timeout(Some(timeout)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| http(e.to_string()))?;
        let mut raw = Vec::new();
        s.take((max_len + 64 * 1024) as u64)
            .read_to_end(&mut raw)
            .map_err(|e| http(e.to_string()))?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| http("no header end".into()))?;
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let body = raw[split + 4..].to_vec();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| http("bad status line".into()))?;
        let fields: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        if !(200..300).contains(&status) {
            return Err(CollateralError::Status {
                url: url.to_owned(),
                status,
            });
        }
        let len: usize = fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| http("no Content-Length".into()))?;
        if len > max_len || body.len() > max_len {
            return Err(http(format!("body over the limit of {max_len} bytes")));
        }
        if body.len() != len {
            return Err(http(format!(
                "body of {} bytes, announced {len}",
                body.len()
            )));
        }
        let wanted = headers
            .iter()
            .filter_map(|h| {
                fields
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(h))
                    .map(|(_, v)| ((*h).to_owned(), v.clone()))
            })
            .collect();
        Ok(Response {
            body,
            headers: wanted,
        })
    }
}

fn fetcher() -> Arc<dyn Fetch> {
    #[cfg(feature = "fetch")]
    return Arc::new(twi_core::collateral::UreqFetch);
    #[cfg(not(feature = "fetch"))]
    return Arc::new(StdHttp);
}

fn policy(refresh_before: i64, grace: i64, retry: i64) -> RefreshPolicy {
    RefreshPolicy {
        refresh_before_seconds: refresh_before as u64,
        grace_seconds: grace as u64,
        retry_interval_seconds: retry as u64,
    }
}

fn source(
    url: Option<&str>,
    cache: Option<&Path>,
    offline: Option<&Path>,
    policy: RefreshPolicy,
) -> TdxCollateralSource {
    TdxCollateralSource::new(TdxSourceConfig {
        offline_dir: offline.map(Path::to_path_buf),
        cache_dir: cache.map(Path::to_path_buf),
        online: url.map(|u| PcsConfig {
            timeout: Duration::from_secs(5),
            ..PcsConfig::new(u, fetcher())
        }),
        policy,
    })
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
// Simulated collateral generations (same FMSPC, different dates and roots)
// ---------------------------------------------------------------------------------------------

struct Sim {
    _dir: tempfile::TempDir,
    layout: TdxSimLayout,
}

/// A simulated root set whose collateral is issued an hour before NOW and has `next_update`.
fn sim(next_update: i64) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let mut o = TdxInitOptions::new(NOW as u64);
    o.collateral_next_update = Some(next_update as u64);
    let layout = simtdx::init(&dir.path().join("sim"), &o).unwrap();
    Sim { _dir: dir, layout }
}

fn sim_verifier(s: &Sim) -> TdxVerifier {
    let mut roots = IntelRoots::intel().without_intel();
    roots.add_root_der(&read(&s.layout.root_der), true).unwrap();
    TdxVerifier::new(roots)
}

fn sim_quote(s: &Sim) -> Quote {
    let q = SimTdxDevice::open(&s.layout.dir)
        .unwrap()
        .quote(&[7; 64], &TdParams::default())
        .unwrap();
    Quote::parse(&q).unwrap()
}

// ---------------------------------------------------------------------------------------------
// TDX
// ---------------------------------------------------------------------------------------------

#[test]
fn fetch_on_miss_then_cache_hit_and_the_real_quote_verifies() {
    let server = Server::start();
    serve_dir(&server, &dq_dir());
    let cache = tempfile::tempdir().unwrap();
    let src = source(
        Some(&server.url),
        Some(cache.path()),
        None,
        RefreshPolicy::default(),
    );

    let quote = Quote::parse(&read(format!("{TESTDATA}/tdx/dq-b0c06f-v4/quote.bin"))).unwrap();
    let key = PlatformKey::from_quote(&quote).unwrap();
    assert_eq!(key, B0C06F);

    let got = src.get_for_quote(&quote, DQ_AS_OF).unwrap();
    assert_eq!(got.origin, Origin::Fetched(server.url.clone()));
    assert!(got.stale.is_none() && got.warnings.is_empty(), "{got:?}");
    for p in [TCB_PATH, QE_PATH, PCK_CRL_PATH, ROOT_CRL_PATH] {
        assert_eq!(server.hits(p), 1, "{p}");
    }
    assert_eq!(got.times.next_update, DQ_NEXT_UPDATE);
    assert_eq!(got.times.next_update_item, "PCK CRL");

    // What was fetched (body + decoded headers, the hex root CRL as DER) is byte for byte the real
    // collateral, and the cache directory is an offline bundle of it.
    let real = Collateral::from_dir(dq_dir()).unwrap();
    assert_eq!(*got.collateral, real);
    let cached = src.cache_path(&key).unwrap();
    assert_eq!(cached, cache.path().join("tdx/b0c06f000000-platform"));
    assert_eq!(cached_files(&cached), {
        let mut v: Vec<String> = COLLATERAL_FILES.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    });
    for f in COLLATERAL_FILES {
        assert_eq!(read(cached.join(f)), read(dq_dir().join(f)), "{f}");
    }

    // Nothing fetched is trusted, but the real collateral verifies the real quote to Intel's root.
    let v = TdxVerifier::new(IntelRoots::intel())
        .verify(&quote, &got.collateral, got.verification_time(DQ_AS_OF))
        .unwrap();
    assert_eq!(v.tcb_status(), TcbStatus::UpToDate);

    // Second call: served from memory, no request.
    let again = src.get(&key, DQ_AS_OF + HOUR).unwrap();
    assert_eq!(again.collateral.digest(), real.digest());
    assert_eq!(server.total_hits(), 4);

    // A restarted verifier reads the cache and does not fetch.
    let restarted = source(
        Some(&server.url),
        Some(cache.path()),
        None,
        RefreshPolicy::default(),
    );
    let from_cache = restarted.get(&key, DQ_AS_OF + 2 * HOUR).unwrap();
    assert_eq!(from_cache.origin, Origin::Cache(cached.clone()));
    assert_eq!(from_cache.collateral.digest(), real.digest());
    assert_eq!(server.total_hits(), 4);
}

#[test]
fn refetches_within_refresh_before_of_the_earliest_next_update() {
    let gen1 = sim(NOW + 10 * DAY);
    let gen2 = sim(NOW + 40 * DAY);
    let server = Server::start();
    serve_dir(&server, &gen1.layout.collateral_dir);
    let cache = tempfile::tempdir().unwrap();
    let src = source(
        Some(&server.url),
        Some(cache.path()),
        None,
        policy(7 * DAY, 0, HOUR),
    );
    let g1 = Collateral::from_dir(&gen1.layout.collateral_dir).unwrap();
    let g2 = Collateral::from_dir(&gen2.layout.collateral_dir).unwrap();

    assert_eq!(
        src.get(&B0C06F, NOW).unwrap().collateral.digest(),
        g1.digest()
    );
    assert_eq!(server.hits(TCB_PATH), 1);
    // Outside the window (more than 7 days before nextUpdate): no request.
    assert_eq!(
        src.get(&B0C06F, NOW + 2 * DAY).unwrap().collateral.digest(),
        g1.digest()
    );
    assert_eq!(server.hits(TCB_PATH), 1);

    // The PCS publishes a new generation. Inside the window the source refetches and takes it.
    serve_dir(&server, &gen2.layout.collateral_dir);
    let t = NOW + 3 * DAY + 1;
    let got = src.get(&B0C06F, t).unwrap();
    assert_eq!(got.collateral.digest(), g2.digest());
    assert_eq!(server.hits(TCB_PATH), 2);
    assert_eq!(
        Collateral::from_dir(src.cache_path(&B0C06F).unwrap())
            .unwrap()
            .digest(),
        g2.digest(),
        "the cache holds the new generation"
    );
    // gen2 is good for 40 days: no further request.
    src.get(&B0C06F, t + DAY).unwrap();
    assert_eq!(server.hits(TCB_PATH), 2);

    // And it verifies a quote of its own platform at that time.
    let got = src.get(&B0C06F, t + DAY).unwrap();
    sim_verifier(&gen2)
        .verify(
            &sim_quote(&gen2),
            &got.collateral,
            got.verification_time(t + DAY),
        )
        .unwrap();
}

#[test]
fn a_pcs_that_has_nothing_newer_is_asked_again_only_after_the_retry_interval() {
    let gen1 = sim(NOW + 10 * DAY);
    let server = Server::start();
    serve_dir(&server, &gen1.layout.collateral_dir);
    let src = source(Some(&server.url), None, None, policy(7 * DAY, 0, HOUR));
    let t = NOW + 4 * DAY; // inside the refresh window from the start
    src.get(&B0C06F, t).unwrap();
    assert_eq!(server.hits(TCB_PATH), 1);
    src.get(&B0C06F, t + HOUR - 1).unwrap();
    assert_eq!(server.hits(TCB_PATH), 1, "within the retry interval");
    src.get(&B0C06F, t + HOUR).unwrap();
    assert_eq!(server.hits(TCB_PATH), 2);
}

#[test]
fn server_down_with_a_current_cache_serves_the_cache() {
    let gen1 = sim(NOW + 10 * DAY);
    let mut server = Server::start();
    serve_dir(&server, &gen1.layout.collateral_dir);
    let cache = tempfile::tempdir().unwrap();
    let pol = policy(7 * DAY, 0, HOUR);
    source(Some(&server.url), Some(cache.path()), None, pol)
        .get(&B0C06F, NOW)
        .unwrap();
    let url = server.url.clone();
    server.shutdown();

    // Restarted while the PCS is down, outside the refresh window: the cache, no fetch attempted.
    let src = source(Some(&url), Some(cache.path()), None, pol);
    let got = src.get(&B0C06F, NOW + DAY).unwrap();
    assert!(matches!(got.origin, Origin::Cache(_)), "{:?}", got.origin);
    assert!(got.stale.is_none() && got.warnings.is_empty(), "{got:?}");

    // Inside the refresh window: the refresh fails (reported), the current cache is served.
    let got = src.get(&B0C06F, NOW + 5 * DAY).unwrap();
    assert!(got.stale.is_none());
    assert!(
        matches!(got.warnings.as_slice(), [CollateralError::Http { .. }]),
        "{:?}",
        got.warnings
    );
    let q = sim_quote(&gen1);
    sim_verifier(&gen1)
        .verify(&q, &got.collateral, got.verification_time(NOW + 5 * DAY))
        .unwrap();
}

#[test]
fn stale_within_grace_is_served_flagged_and_refused_past_it() {
    let next = NOW + 10 * DAY;
    let gen1 = sim(next);
    let mut server = Server::start();
    serve_dir(&server, &gen1.layout.collateral_dir);
    let cache = tempfile::tempdir().unwrap();
    let pol = policy(7 * DAY, 2 * HOUR, 60);
    source(Some(&server.url), Some(cache.path()), None, pol)
        .get(&B0C06F, NOW)
        .unwrap();
    let url = server.url.clone();
    server.shutdown();
    let src = source(Some(&url), Some(cache.path()), None, pol);
    let q = sim_quote(&gen1);
    let verifier = sim_verifier(&gen1);

    // An hour past nextUpdate, grace two hours: served, marked stale, with the message to log.
    let now = next + HOUR;
    let got = src.get(&B0C06F, now).unwrap();
    let stale = got.stale.expect("stale");
    assert_eq!(stale.since, next);
    assert_eq!(stale.grace_seconds, 2 * HOUR as u64);
    assert!(
        stale
            .to_string()
            .starts_with("collateral stale since 2025-06-25T15:06:40Z"),
        "{stale}"
    );
    assert!(stale.to_string().ends_with("within grace period of 7200 s"));
    assert!(!got.warnings.is_empty(), "the failed refresh is reported");
    // The verifier itself refuses collateral past nextUpdate at `now`; at the served verification
    // time (its last current instant) it accepts.
    assert_eq!(
        verifier
            .verify(&q, &got.collateral, now)
            .unwrap_err()
            .category(),
        "collateral-expired"
    );
    assert_eq!(got.verification_time(now), next);
    verifier
        .verify(&q, &got.collateral, got.verification_time(now))
        .unwrap();

    // Past the grace period: refused, typed, with the reason; the verifier's category.
    let now = next + 2 * HOUR + 1;
    let e = src.get(&B0C06F, now).unwrap_err();
    match &e {
        CollateralError::Expired {
            next_update,
            grace_seconds,
            now: at,
            why,
            ..
        } => {
            assert_eq!((*next_update, *grace_seconds, *at), (next, 7200, now));
            assert!(why.contains(&url), "the fetch failure is the reason: {why}");
        }
        other => panic!("{other:?}"),
    }
    let err: twi_core::Error = e.into();
    assert_eq!(err.category(), "collateral-expired");

    // Without online fetching and without grace, it fails closed right after nextUpdate.
    let offline_only = source(None, Some(cache.path()), None, policy(7 * DAY, 0, 60));
    assert!(offline_only.get(&B0C06F, next).unwrap().stale.is_none());
    let e = offline_only.get(&B0C06F, next + 1).unwrap_err();
    assert!(e.to_string().contains("online fetching is off"), "{e}");
    assert_eq!(twi_core::Error::from(e).category(), "collateral-expired");
}

#[test]
fn corrupt_responses_are_not_cached() {
    let gen1 = sim(NOW + 30 * DAY);
    let dir = &gen1.layout.collateral_dir;
    let server = Server::start();
    serve_dir(&server, dir);
    let tcb = read(dir.join("tcb_info.json"));
    let chain = url_encode(&read(dir.join("tcb_info_issuer_chain.pem")));
    let cases: Vec<(&str, Reply, &str)> = vec![
        (
            "not JSON",
            Reply::ok(b"<html>maintenance</html>".to_vec())
                .header("TCB-Info-Issuer-Chain", chain.clone()),
            "BadResponse",
        ),
        (
            "wrong FMSPC",
            Reply::ok(
                String::from_utf8(tcb.clone())
                    .unwrap()
                    .replace("B0C06F000000", "00906ED50000")
                    .into_bytes(),
            )
            .header("TCB-Info-Issuer-Chain", chain.clone()),
            "BadResponse",
        ),
        (
            "truncated body",
            Reply {
                short_by: 100,
                ..Reply::ok(tcb.clone()).header("TCB-Info-Issuer-Chain", chain.clone())
            },
            "Http",
        ),
        (
            "over the size cap",
            Reply::ok(vec![b' '; twi_core::tdx::MAX_COLLATERAL_FILE_LEN + 1])
                .header("TCB-Info-Issuer-Chain", chain.clone()),
            "Http",
        ),
        ("no issuer chain", Reply::ok(tcb.clone()), "MissingHeader"),
        (
            "junk issuer chain",
            Reply::ok(tcb.clone()).header("TCB-Info-Issuer-Chain", "%2D%2D%2D%2D%2Dnope".into()),
            "BadResponse",
        ),
        (
            "server error",
            Reply {
                status: 503,
                ..Reply::ok(Vec::new())
            },
            "Status",
        ),
    ];
    for (label, reply, kind) in cases {
        server.route(TCB_PATH, reply);
        let cache = tempfile::tempdir().unwrap();
        let src = source(
            Some(&server.url),
            Some(cache.path()),
            None,
            RefreshPolicy::default(),
        );
        let e = src.get(&B0C06F, NOW).unwrap_err();
        let CollateralError::Missing { detail, .. } = &e else {
            panic!("{label}: {e:?}");
        };
        let debug = format!("{:?}", src.refresh(&B0C06F, NOW).unwrap_err());
        assert!(
            detail.contains(&server.url) && debug.contains(&server.url),
            "{label}: {detail}"
        );
        // The failure kind, from a fresh source so the retry interval does not hide it.
        let fresh = source(Some(&server.url), None, None, RefreshPolicy::default());
        let CollateralError::Missing { detail, .. } = fresh.get(&B0C06F, NOW).unwrap_err() else {
            unreachable!()
        };
        let expect = match kind {
            "BadResponse" => "response is not",
            "Http" => "GET ",
            "MissingHeader" => "has no TCB-Info-Issuer-Chain header",
            "Status" => "HTTP status 503",
            _ => unreachable!(),
        };
        assert!(detail.contains(expect), "{label}: {detail}");
        assert!(
            cached_files(cache.path()).is_empty(),
            "{label}: nothing cached: {:?}",
            cached_files(cache.path())
        );
    }

    // A bad PCK CRL (not DER, PEM or hex of a CRL) is refused the same way.
    serve_dir(&server, dir);
    server.route(
        PCK_CRL_PATH,
        Reply::ok(b"\x30\x03\x02\x01\x00".to_vec()).header(
            "SGX-PCK-CRL-Issuer-Chain",
            url_encode(&read(dir.join("pck_crl_issuer_chain.pem"))),
        ),
    );
    let cache = tempfile::tempdir().unwrap();
    let src = source(
        Some(&server.url),
        Some(cache.path()),
        None,
        policy(7 * DAY, 0, HOUR),
    );
    let e = src.get(&B0C06F, NOW).unwrap_err();
    assert!(e.to_string().contains("not a PCK CRL"), "{e}");
    assert!(cached_files(cache.path()).is_empty());

    // Fixed upstream: the next attempt (after the retry interval) fetches and caches.
    serve_dir(&server, dir);
    let before = server.hits(TCB_PATH);
    assert!(
        src.get(&B0C06F, NOW + 60).is_err(),
        "within the retry interval"
    );
    assert_eq!(server.hits(TCB_PATH), before);
    let got = src.get(&B0C06F, NOW + HOUR).unwrap();
    assert!(matches!(got.origin, Origin::Fetched(_)));
    assert_eq!(cached_files(cache.path()), vec!["tdx".to_owned()]);
}

#[test]
fn issuer_chain_headers_are_url_decoded_pem() {
    let pem = read(dq_dir().join("tcb_info_issuer_chain.pem"));
    assert_eq!(decode_issuer_chain(&url_encode(&pem)).unwrap(), pem);
    // Lower-case escapes, and `+` kept as is (base64), as some servers send them.
    let lower = url_encode(&pem).replace("%0A", "%0a").replace("%2B", "+");
    assert_eq!(decode_issuer_chain(&lower).unwrap(), pem);
    assert!(decode_issuer_chain("").is_err());
    assert!(decode_issuer_chain("%E2%82").is_err());
    assert!(decode_issuer_chain(&url_encode(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    ))
    .is_err());

    // The SGX spelling of the TCB info header is accepted too (older PCCS versions).
    let server = Server::start();
    serve_dir(&server, &dq_dir());
    server.route(
        TCB_PATH,
        Reply::ok(read(dq_dir().join("tcb_info.json")))
            .header("SGX-TCB-Info-Issuer-Chain", url_encode(&pem)),
    );
    let got = source(Some(&server.url), None, None, RefreshPolicy::default())
        .get(&B0C06F, DQ_AS_OF)
        .unwrap();
    assert_eq!(*got.collateral, Collateral::from_dir(dq_dir()).unwrap());
}

#[test]
fn offline_bundle_comes_first_and_a_foreign_one_only_last() {
    let server = Server::start();
    serve_dir(&server, &dq_dir());
    let offline = tempfile::tempdir().unwrap();

    // A flat bundle of this very platform: served from disk, no request.
    for f in COLLATERAL_FILES {
        std::fs::copy(dq_dir().join(f), offline.path().join(f)).unwrap();
    }
    let src = source(
        Some(&server.url),
        None,
        Some(offline.path()),
        RefreshPolicy::default(),
    );
    let got = src.get(&B0C06F, DQ_AS_OF).unwrap();
    assert_eq!(got.origin, Origin::Offline(offline.path().to_path_buf()));
    assert_eq!(server.total_hits(), 0);

    // Stale offline bundle, PCS reachable: the fetched copy is no fresher (same real data), so past
    // nextUpdate without grace it is refused, after one fetch attempt.
    let e = src.get(&B0C06F, DQ_NEXT_UPDATE + 1).unwrap_err();
    assert!(matches!(e, CollateralError::Expired { .. }), "{e:?}");
    assert_eq!(server.hits(TCB_PATH), 1);

    // A flat bundle of another platform (90C06F): this platform is fetched online instead.
    let other = format!("{TESTDATA}/tdx/gtg-90c06f-v5/collateral");
    for f in COLLATERAL_FILES {
        std::fs::copy(Path::new(&other).join(f), offline.path().join(f)).unwrap();
    }
    let src = source(
        Some(&server.url),
        None,
        Some(offline.path()),
        RefreshPolicy::default(),
    );
    let got = src.get(&B0C06F, DQ_AS_OF).unwrap();
    assert!(matches!(got.origin, Origin::Fetched(_)), "{:?}", got.origin);

    // A per-platform subdirectory wins over the flat bundle.
    let sub = offline.path().join("b0c06f000000-platform");
    for f in COLLATERAL_FILES {
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::copy(dq_dir().join(f), sub.join(f)).unwrap();
    }
    let hits = server.total_hits();
    let src = source(
        Some(&server.url),
        None,
        Some(offline.path()),
        RefreshPolicy::default(),
    );
    assert_eq!(
        src.get(&B0C06F, DQ_AS_OF).unwrap().origin,
        Origin::Offline(sub.clone())
    );
    assert_eq!(server.total_hits(), hits);
    std::fs::remove_dir_all(&sub).unwrap();

    // Offline only, foreign bundle: served as the last resort, so the verifier names the mismatch.
    // (Checked at 2026-03-01, when that bundle is current.)
    let at = 1_772_323_200;
    let src = source(None, None, Some(offline.path()), RefreshPolicy::default());
    let got = src.get(&B0C06F, at).unwrap();
    assert_eq!(got.origin, Origin::Offline(offline.path().to_path_buf()));
    let quote = Quote::parse(&read(format!("{TESTDATA}/tdx/dq-b0c06f-v4/quote.bin"))).unwrap();
    let e = TdxVerifier::new(IntelRoots::intel())
        .verify(&quote, &got.collateral, at)
        .unwrap_err();
    assert_eq!(e.category(), "collateral-mismatch", "{e}");

    // Nothing at all: missing, mapped to an Unavailable category.
    let e = source(None, None, None, RefreshPolicy::default())
        .get(&B0C06F, DQ_AS_OF)
        .unwrap_err();
    assert!(matches!(e, CollateralError::Missing { .. }), "{e:?}");
    assert_eq!(twi_core::Error::from(e).category(), "missing-certificate");
}

#[test]
fn an_offline_bundle_replaced_on_disk_is_reread() {
    let gen1 = sim(NOW + 10 * DAY);
    let gen2 = sim(NOW + 40 * DAY);
    let offline = tempfile::tempdir().unwrap();
    let copy = |from: &Path| {
        for f in COLLATERAL_FILES {
            write_atomic(&offline.path().join(f), &read(from.join(f))).unwrap();
        }
    };
    copy(&gen1.layout.collateral_dir);
    let src = source(None, None, Some(offline.path()), RefreshPolicy::default());
    let g1 = src.get(&B0C06F, NOW).unwrap();
    copy(&gen2.layout.collateral_dir);
    let g2 = src.get(&B0C06F, NOW).unwrap();
    assert_ne!(g1.collateral.digest(), g2.collateral.digest());
    assert_eq!(
        g2.collateral.digest(),
        Collateral::from_dir(&gen2.layout.collateral_dir)
            .unwrap()
            .digest()
    );
    // A broken rewrite keeps the last good bundle and reports the problem.
    std::fs::write(offline.path().join("tcb_info.json"), b"{").unwrap();
    let g3 = src.get(&B0C06F, NOW).unwrap();
    assert_eq!(g3.collateral.digest(), g2.collateral.digest());
    assert!(
        matches!(g3.warnings.as_slice(), [CollateralError::Offline { .. }]),
        "{:?}",
        g3.warnings
    );
}

#[test]
fn concurrent_attestations_fetch_once() {
    let gen1 = sim(NOW + 30 * DAY);
    let server = Server::start();
    serve_dir(&server, &gen1.layout.collateral_dir);
    let src = Arc::new(source(
        Some(&server.url),
        None,
        None,
        RefreshPolicy::default(),
    ));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let src = Arc::clone(&src);
            std::thread::spawn(move || src.get(&B0C06F, NOW).map(|s| *s.collateral.digest()))
        })
        .collect();
    let digests: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(server.hits(TCB_PATH), 1);
}

#[test]
fn cache_writes_are_atomic_under_concurrent_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tdx/b0c06f000000-platform/pck_crl.der");
    let a = vec![b'a'; 1 << 20];
    let b = vec![b'b'; (1 << 20) + 1];
    write_atomic(&path, &a).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, a, b, stop) = (path.clone(), a.clone(), b.clone(), stop.clone());
        std::thread::spawn(move || {
            for i in 0..200 {
                write_atomic(&path, if i % 2 == 0 { &b } else { &a }).unwrap();
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let mut reads = 0;
    while !stop.load(Ordering::SeqCst) || reads == 0 {
        let got = std::fs::read(&path).unwrap();
        assert!(got == a || got == b, "a reader saw {} bytes", got.len());
        reads += 1;
    }
    writer.join().unwrap();
    assert!(reads > 0);
    assert_eq!(
        cached_files(path.parent().unwrap()),
        vec!["pck_crl.der".to_owned()]
    );
}

// ---------------------------------------------------------------------------------------------
// AMD KDS through the same fetch and cache layer
// ---------------------------------------------------------------------------------------------

#[test]
fn kds_vcek_and_cert_chain_are_fetched_checked_and_cached() {
    let report =
        AttestationReport::parse(&read(format!("{TESTDATA}/snp/oak-milan-v3/report.bin"))).unwrap();
    let vcek = read(format!("{TESTDATA}/snp/oak-milan-v3/vcek.der"));
    let mut bundle = read(format!("{TESTDATA}/vendor-roots/amd/milan/ask.pem"));
    bundle.extend(read(format!("{TESTDATA}/vendor-roots/amd/milan/ark.pem")));
    let hwid = &report.chip_id()[..Product::Milan.hwid_len()];
    let tcb = TcbParts::decode(report.reported_tcb(), Product::Milan);

    let server = Server::start();
    let cache = tempfile::tempdir().unwrap();
    let kds = KdsClient::new(
        server.url.clone(),
        cache.path().to_path_buf(),
        Duration::from_secs(5),
        fetcher(),
    );
    let vcek_url = kds.vcek_url(Product::Milan, hwid, &tcb);
    let vcek_path = vcek_url.strip_prefix(&server.url).unwrap().to_owned();
    let vcek_file = product_dir(cache.path(), Product::Milan)
        .join("vcek")
        .join(vcek_file_name(hwid, report.reported_tcb()));

    // Junk where the VCEK should be: refused, not cached.
    server.route(&vcek_path, Reply::ok(b"not a certificate".to_vec()));
    let e = kds
        .fetch_vcek(Product::Milan, hwid, &tcb, report.reported_tcb())
        .unwrap_err();
    assert!(matches!(e, CollateralError::BadResponse { .. }), "{e}");
    assert!(!vcek_file.exists());
    // The ASK + ARK bundle where the VCEK should be: not a VCEK.
    server.route(&vcek_path, Reply::ok(bundle.clone()));
    assert!(kds
        .fetch_vcek(Product::Milan, hwid, &tcb, report.reported_tcb())
        .is_err());
    assert!(!vcek_file.exists());

    server.route(&vcek_path, Reply::ok(vcek.clone()));
    let got = kds
        .fetch_vcek(Product::Milan, hwid, &tcb, report.reported_tcb())
        .unwrap();
    assert_eq!(got, vcek);
    assert_eq!(read(&vcek_file), vcek);

    server.route("/vcek/v1/Milan/cert_chain", Reply::ok(bundle.clone()));
    let chain = kds
        .fetch_cert_chain(Product::Milan, SigningKeyKind::Vcek)
        .unwrap();
    assert!(chain.ask.is_some() && chain.ark.is_some() && chain.vek.is_none());
    assert_eq!(
        read(product_dir(cache.path(), Product::Milan).join(CHAIN_FILE_VCEK)),
        bundle
    );

    // No CRL served: a typed status error, nothing cached.
    let e = kds.fetch_crl(Product::Milan).unwrap_err();
    assert!(
        matches!(e, CollateralError::Status { status: 404, .. }),
        "{e}"
    );
    assert!(!product_dir(cache.path(), Product::Milan)
        .join("crl.der")
        .exists());
}

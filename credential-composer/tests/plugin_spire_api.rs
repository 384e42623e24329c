//! The SPIRE server API client against an in-process double of the Entry and Agent services: paging,
//! node-alias resolution, the cache and its refresh rules, timeouts and an absent socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod plugin_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use plugin_support::*;
use twi_credential_composer::spire_api::{Registry, SpireApi, SpireApiError};

fn wl(path: &str) -> String {
    format!("spiffe://{TD}{path}")
}

struct Api {
    _dir: tempfile::TempDir,
    fake: std::sync::Arc<FakeApi>,
    socket: std::path::PathBuf,
    _server: tokio::task::JoinHandle<()>,
}

fn start() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let fake = FakeApi::new();
    let server = serve_api(std::sync::Arc::clone(&fake), &socket);
    Api {
        _dir: dir,
        fake,
        socket,
        _server: server,
    }
}

fn client(api: &Api, refresh: Duration, timeout: Duration) -> SpireApi {
    SpireApi::new(&api.socket, TD, refresh, timeout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_pages_are_read() {
    let api = start();
    let entries: Vec<_> = (0..7)
        .map(|i| {
            api_entry(
                &format!("e{i}"),
                &wl(&format!("/wl{i}")),
                &agent_id("a"),
                &["twi:uid:0"],
                i,
            )
        })
        .collect();
    api.fake.set_entries(entries);
    let c = client(&api, Duration::from_secs(60), Duration::from_secs(2));
    let got = c.list_entries().await.unwrap();
    assert_eq!(got.len(), 7);
    assert_eq!(
        api.fake.list_entries_calls.load(Ordering::SeqCst),
        4,
        "pages of 2"
    );
    assert_eq!(got[6].spiffe_id, wl("/wl6"));
    assert_eq!(got[6].parent_id, agent_id("a"));
    assert_eq!(got[6].revision, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_direct_parents_and_node_aliases_through_the_api() {
    let api = start();
    api.fake.set_agents(vec![
        api_agent(
            &agent_id("a1"),
            &["twi:policy-match:prod", "twi:tee:sev-snp"],
        ),
        api_agent(&agent_id("a2"), &["twi:policy-match:prod"]),
        api_agent(&agent_id("a3"), &["twi:policy-match:dev"]),
        api_agent(&agent_id("a4"), &["twi:policy-match:prod"]),
    ]);
    api.fake.set_entries(vec![
        api_entry(
            "alias",
            &wl("/nodes/prod"),
            &wl("/spire/server"),
            &["twi:policy-match:prod"],
            1,
        ),
        api_entry("e1", &wl("/wl"), &wl("/nodes/prod"), &["twi:uid:0"], 1),
        api_entry("e2", &wl("/wl"), &agent_id("a9"), &["twi:uid:0"], 1),
    ]);
    api.fake.page_size.store(3, Ordering::Relaxed);
    let c = client(&api, Duration::from_secs(60), Duration::from_secs(2));
    let r = c.resolve(&wl("/wl")).await.unwrap();
    assert_eq!(r.entries.len(), 2);
    assert_eq!(
        r.agents.into_iter().collect::<Vec<_>>(),
        [
            agent_id("a1"),
            agent_id("a2"),
            agent_id("a4"),
            agent_id("a9")
        ],
        "alias agents (paged) and the direct parent"
    );
    assert!(r.unresolved_parents.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_refresh_and_miss_rules() {
    let api = start();
    api.fake.set_entries(vec![api_entry(
        "e1",
        &wl("/a"),
        &agent_id("a1"),
        &["twi:uid:0"],
        1,
    )]);
    let c = client(&api, Duration::from_secs(3600), Duration::from_secs(2));
    let calls = || api.fake.list_entries_calls.load(Ordering::SeqCst);

    assert_eq!(c.resolve(&wl("/a")).await.unwrap().entries.len(), 1);
    assert_eq!(calls(), 1);
    c.resolve(&wl("/a")).await.unwrap();
    assert_eq!(
        calls(),
        1,
        "a hit within entry_refresh_seconds asks nothing"
    );

    // A new entry appears; a miss right after the last read does not ask again (rate limit) ...
    api.fake.set_entries(vec![
        api_entry("e1", &wl("/a"), &agent_id("a1"), &["twi:uid:0"], 1),
        api_entry("e2", &wl("/b"), &agent_id("a1"), &["twi:uid:0"], 1),
    ]);
    assert!(c.resolve(&wl("/b")).await.unwrap().entries.is_empty());
    assert_eq!(calls(), 1);
    // ... but one after the miss interval does, once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.resolve(&wl("/b")).await.unwrap().entries.len(), 1);
    assert_eq!(calls(), 2);
    c.resolve(&wl("/b")).await.unwrap();
    assert_eq!(calls(), 2);

    // Past entry_refresh_seconds everything is re-read.
    let c = client(&api, Duration::from_secs(1), Duration::from_secs(2));
    c.resolve(&wl("/a")).await.unwrap();
    let before = calls();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.resolve(&wl("/a")).await.unwrap();
    assert_eq!(calls(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_answers_are_cached() {
    let api = start();
    api.fake
        .set_agents(vec![api_agent(&agent_id("a1"), &["k8s:cluster:c1"])]);
    api.fake.set_entries(vec![
        api_entry(
            "alias",
            &wl("/nodes/c1"),
            &wl("/spire/server"),
            &["k8s:cluster:c1"],
            1,
        ),
        api_entry("e1", &wl("/wl"), &wl("/nodes/c1"), &["twi:uid:0"], 1),
    ]);
    let c = client(&api, Duration::from_secs(3600), Duration::from_secs(2));
    for _ in 0..3 {
        assert_eq!(c.resolve(&wl("/wl")).await.unwrap().agents.len(), 1);
    }
    assert_eq!(api.fake.list_agents_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_absent_server_is_an_error_and_stale_data_is_kept() {
    let api = start();
    api.fake.set_entries(vec![api_entry(
        "e1",
        &wl("/a"),
        &agent_id("a1"),
        &["twi:uid:0"],
        1,
    )]);
    let c = client(&api, Duration::from_secs(1), Duration::from_millis(300));
    c.resolve(&wl("/a")).await.unwrap();

    // The server stalls past the timeout: the previous entries are used.
    api.fake.delay_ms.store(1000, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = c.resolve(&wl("/a")).await.unwrap();
    assert_eq!(r.entries.len(), 1, "stale entries served");

    // A client with nothing cached reports the timeout.
    let fresh = client(&api, Duration::from_secs(1), Duration::from_millis(300));
    let err = fresh.resolve(&wl("/a")).await.unwrap_err();
    assert!(matches!(err, SpireApiError::Timeout { .. }), "{err}");
    // Right after, the error is answered at once: a hung server does not make every SVID wait.
    let calls = api.fake.list_entries_calls.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    let err = fresh.resolve(&wl("/a")).await.unwrap_err();
    assert!(matches!(err, SpireApiError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(api.fake.list_entries_calls.load(Ordering::SeqCst), calls);

    // No socket at all: Unavailable, naming the socket.
    let missing = SpireApi::new(
        &api.socket.with_file_name("missing.sock"),
        TD,
        Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let err = missing.resolve(&wl("/a")).await.unwrap_err();
    let status: tonic::Status = err.clone().into();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(err.to_string().contains("missing.sock"), "{err}");
    assert!(
        matches!(
            err,
            SpireApiError::Call {
                code: tonic::Code::Unavailable,
                ..
            }
        ),
        "{err}"
    );
}

//! Configure and Validate of the composer plugin: errors naming their key, nothing created by
//! Validate, the log kept (not reopened) across reconfigurations, keys and public files, and the
//! tile server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod plugin_support;

use std::os::unix::fs::PermissionsExt as _;

use plugin_support::*;
use twi_credential_composer::tlog::{HttpFetcher, TiledLog};
use twi_plugin::proto::credentialcomposer::ComposeAgentX509svidRequest;

/// `err` is a configuration refusal (InvalidArgument, what SPIRE shows as a bad plugin config) whose
/// message says each of `needles`.
fn assert_refused(err: &tonic::Status, needles: &[&str]) {
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );
    for needle in needles {
        assert!(
            err.message().contains(needle),
            "{needle}: {}",
            err.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hcl_is_refused_naming_the_key() {
    let h = Harness::new().await;
    let err = h.configure("log_dri = \"/tmp/x\"").await.unwrap_err();
    assert_refused(&err, &["unknown key `log_dri`"]);

    let err = h.loaded.configure(TD, "").await.unwrap_err();
    assert_refused(
        &err,
        &[
            "log_dir",
            "log_key_path",
            "provenance_key_path",
            "attestation_results_database",
        ],
    );

    let err = h
        .configure("max_collection = 100\non_log_failure = \"ignore\"")
        .await
        .unwrap_err();
    assert_refused(&err, &["`max_collection`", "`on_log_failure`"]);
    assert!(
        !h.path("log").exists(),
        "nothing opened for a refused configuration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_and_creates_nothing() {
    let h = Harness::new().await;
    let ok = h.loaded.validate(TD, &h.hcl("")).await.unwrap();
    assert!(ok.notes.is_empty(), "{:?}", ok.notes);
    assert!(ok.valid);
    for f in ["log", "log.key", "prov.pem", "log.vkey", "prov.pub.pem"] {
        assert!(!h.path(f).exists(), "{f} created by Validate");
    }
    let bad = h
        .loaded
        .validate(TD, &h.hcl("entry_refresh_seconds = 0"))
        .await
        .unwrap();
    assert!(!bad.valid);
    assert!(
        bad.notes
            .iter()
            .any(|n| n.contains("entry_refresh_seconds")),
        "{:?}",
        bad.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_creates_private_keys_and_public_files() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    for key in ["log.key", "prov.pem"] {
        let mode = std::fs::metadata(h.path(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let vkey = std::fs::read_to_string(h.path("log.vkey")).unwrap();
    assert!(vkey.starts_with(&format!("{TD}/twi/cprov+")), "{vkey}");
    assert!(!std::fs::read_to_string(h.path("log.vkey"))
        .unwrap()
        .contains("PRIVATE"));
    let pem = std::fs::read_to_string(h.path("prov.pub.pem")).unwrap();
    assert!(pem.contains("BEGIN PUBLIC KEY"), "{pem}");
    let first_key = h.provenance_key().key_id();

    // A restart (fresh plugin, same files) loads the same keys and the same log.
    let agent = agent_id("a1");
    h.seed_current(&agent, None);
    h.client()
        .compose_agent_x509svid(ComposeAgentX509svidRequest {
            attributes: Some(attributes(Vec::new())),
            spiffe_id: agent.clone(),
            public_key: new_spki(),
        })
        .await
        .unwrap();
    let size = h.log_size();
    let h2 = Harness::new().await;
    // h2 has its own dir; point it at h's files.
    let hcl = h.hcl("");
    // The log dir is locked by h's plugin: a second writer is refused, naming log_dir.
    let err = h2.loaded.configure(TD, &hcl).await.unwrap_err();
    assert_refused(&err, &["`log_dir`", "locked"]);
    // h's server goes away (its sequencer hands the log back, which releases the lock).
    drop(h.plugin.composer().unwrap().sequencer().shutdown().unwrap());
    h2.loaded.configure(TD, &hcl).await.unwrap();
    assert_eq!(
        h.provenance_key().key_id(),
        first_key,
        "same provenance key loaded"
    );
    assert_eq!(h.log_size(), size, "same log, nothing lost");
    let attrs = compose(&h2, &agent).await.unwrap();
    assert_eq!(h.check_provenance(&by_oid(&attrs)[PROV_OID].value).1, size);
}

async fn compose(
    h: &Harness,
    agent: &str,
) -> Result<twi_plugin::proto::credentialcomposer::X509svidAttributes, tonic::Status> {
    h.client()
        .compose_agent_x509svid(ComposeAgentX509svidRequest {
            attributes: Some(attributes(Vec::new())),
            spiffe_id: agent.to_owned(),
            public_key: new_spki(),
        })
        .await
        .map(|r| r.into_inner().attributes.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_reuses_the_open_log() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let agent = agent_id("a1");
    h.seed_current(&agent, None);
    compose(&h, &agent).await.unwrap();
    // Same log_dir, other settings: the log stays open (no "locked" error) and keeps growing.
    h.configure("max_collection = 3\non_missing_attestation_result = \"omit\"")
        .await
        .unwrap();
    let attrs = compose(&h, &agent).await.unwrap();
    let (_, idx) = h.check_provenance(&by_oid(&attrs)[PROV_OID].value);
    assert_eq!(idx, 1);

    // Changing the key of the open log is refused; the running configuration stays.
    let other_key = h.hcl("").replace("log.key", "other.key");
    let err = h.loaded.configure(TD, &other_key).await.unwrap_err();
    assert_refused(&err, &["`log_key_path`"]);
    assert!(!h.path("other.key").exists());
    let attrs = compose(&h, &agent).await.unwrap();
    assert_eq!(h.check_provenance(&by_oid(&attrs)[PROV_OID].value).1, 2);

    // Another log_dir opens a new log (and its own key).
    let other_dir = h
        .hcl("")
        .replace("/log\"", "/log2\"")
        .replace("log.key", "log2.key")
        .replace("log.vkey", "log2.vkey");
    h.loaded.configure(TD, &other_dir).await.unwrap();
    let attrs = compose(&h, &agent).await.unwrap();
    let ext = twi_credential_composer::extension::TwiProvenance::from_der(
        &by_oid(&attrs)[PROV_OID].value,
    )
    .unwrap();
    let reader = twi_credential_composer::tlog::LogReader::open(&h.path("log2")).unwrap();
    assert_eq!(reader.checkpoint().unwrap().size(), 1);
    assert_eq!(reader.entry(0, 1).unwrap(), ext.statement);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_key_with_another_origin_is_named() {
    let h = Harness::new().await;
    h.configure("log_origin = \"example.org/first\"")
        .await
        .unwrap();
    let h2 = Harness::new().await;
    let hcl = h.hcl("").replace(
        &format!("\"{}\"", h.path("log").display()),
        &format!("\"{}\"", h2.path("log").display()),
    );
    assert!(hcl.contains(&h2.path("log").display().to_string()));
    let err = h2.loaded.configure(TD, &hcl).await.unwrap_err();
    assert!(
        err.message().contains("log_origin = \"example.org/first\""),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("`log_key_path`"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_readable_key_is_refused() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    std::fs::set_permissions(h.path("prov.pem"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = h.configure("").await.unwrap_err();
    assert!(
        err.message().contains("`provenance_key_path`"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("chmod 600"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_is_served_over_http_when_asked() {
    let h = Harness::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    h.configure(&format!("log_serve_address = \"127.0.0.1:{port}\""))
        .await
        .unwrap();
    let agent = agent_id("a1");
    h.seed_current(&agent, None);
    let attrs = h
        .client()
        .compose_agent_x509svid(ComposeAgentX509svidRequest {
            attributes: Some(attributes(Vec::new())),
            spiffe_id: agent,
            public_key: new_spki(),
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
        .unwrap();
    let ext = twi_credential_composer::extension::TwiProvenance::from_der(
        &by_oid(&attrs)[PROV_OID].value,
    )
    .unwrap();
    let verifier = h.log_verifier();
    let url = format!("http://127.0.0.1:{port}/");
    let entry = tokio::task::spawn_blocking(move || {
        let log = TiledLog::new(
            HttpFetcher::new(&url, std::time::Duration::from_secs(5)),
            verifier,
        );
        let cp = log.checkpoint().unwrap();
        assert_eq!(cp.size(), 1);
        log.entry(&cp, 0).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        entry, ext.statement,
        "an auditor reads the record from the served tiles"
    );

    // Reconfigured with the same address: the server keeps running.
    h.configure(&format!(
        "log_serve_address = \"127.0.0.1:{port}\"\nmax_collection = 4"
    ))
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/checkpoint");
    let status =
        tokio::task::spawn_blocking(move || ureq::get(&url).call().map(|r| r.status().as_u16()))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(status, 200);
}

/// The harness's plugin_data with the log in PostgreSQL instead of its directory.
fn hcl_with_database(h: &Harness, conninfo: &str, extra: &str) -> String {
    let dir_line = format!("log_dir = \"{}/log\"", h.dir.path().display());
    let hcl = h.hcl(extra);
    assert!(hcl.contains(&dir_line));
    hcl.replace(&dir_line, &format!("log_database = \"{conninfo}\""))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_dir_and_log_database_are_exclusive_and_postgres_only() {
    let h = Harness::new().await;
    let both = h.hcl("log_database = \"postgres://db.example/twi\"");
    let err = h.loaded.configure(TD, &both).await.unwrap_err();
    assert_refused(&err, &["`log_database`", "not both"]);

    let sqlite = hcl_with_database(&h, "sqlite:///tmp/x.db", "");
    let err = h.loaded.configure(TD, &sqlite).await.unwrap_err();
    assert_refused(&err, &["`log_database`", "PostgreSQL only"]);

    // Validate accepts a PostgreSQL log without connecting (nothing is opened by Validate).
    let unreachable = hcl_with_database(
        &h,
        "postgres://twi:hunter2@127.0.0.1:1/twi?connect_timeout=2",
        "",
    );
    let ok = h.loaded.validate(TD, &unreachable).await.unwrap();
    assert!(ok.valid && ok.notes.is_empty(), "{:?}", ok.notes);
    // Configure does connect, fails closed, and does not repeat the password.
    let err = h.loaded.configure(TD, &unreachable).await.unwrap_err();
    assert_refused(&err, &["`log_database`", "postgresql log"]);
    assert!(!err.message().contains("hunter2"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_composers_share_one_postgres_log_and_serve_it() {
    let pg = tokio::task::spawn_blocking(twi_results::testing::PgServer::start)
        .await
        .unwrap()
        .unwrap();
    let (h1, h2) = (Harness::new().await, Harness::new().await);
    let (port1, port2) = (free_port(), free_port());
    h1.loaded
        .configure(
            TD,
            &hcl_with_database(
                &h1,
                &pg.conninfo,
                &format!("log_serve_address = \"127.0.0.1:{port1}\""),
            ),
        )
        .await
        .unwrap();
    // Every replica is given the same log key file.
    std::fs::copy(h1.path("log.key"), h2.path("log.key")).unwrap();
    std::fs::set_permissions(h2.path("log.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    h2.loaded
        .configure(
            TD,
            &hcl_with_database(
                &h2,
                &pg.conninfo,
                &format!("log_serve_address = \"127.0.0.1:{port2}\""),
            ),
        )
        .await
        .unwrap();

    // Credentials from both composers, interleaved; each record is read back from the tiles the
    // OTHER composer serves.
    let verifier = h1.log_verifier();
    let mut records = Vec::new();
    for i in 0..3 {
        for (h, other_port) in [(&h1, port2), (&h2, port1)] {
            let agent = agent_id(&format!("a{i}-{other_port}"));
            h.seed_current(&agent, None);
            let attrs = compose(h, &agent).await.unwrap();
            let ext = twi_credential_composer::extension::TwiProvenance::from_der(
                &by_oid(&attrs)[PROV_OID].value,
            )
            .unwrap();
            let Some(twi_credential_composer::extension::ProofForm::TlogProof(proof)) = ext.proof
            else {
                panic!("no tlog proof")
            };
            let index = verifier
                .verify_tlog_proof(&ext.statement, proof.as_bytes())
                .unwrap()
                .index();
            records.push((index, ext.statement, other_port));
        }
    }
    let verifier2 = h2.log_verifier();
    assert_eq!(verifier.vkey(), verifier2.vkey());
    let checked = tokio::task::spawn_blocking(move || {
        let mut sizes = Vec::new();
        for (index, statement, port) in &records {
            let log = TiledLog::new(
                HttpFetcher::new(
                    &format!("http://127.0.0.1:{port}/"),
                    std::time::Duration::from_secs(5),
                ),
                verifier2.clone(),
            );
            let cp = log.checkpoint().unwrap();
            assert_eq!(&log.entry(&cp, *index).unwrap(), statement);
            sizes.push(cp.size());
        }
        let mut indexes: Vec<u64> = records.iter().map(|r| r.0).collect();
        indexes.sort_unstable();
        assert_eq!(indexes, (0..6).collect::<Vec<u64>>(), "one tree, no gaps");
        sizes
    })
    .await
    .unwrap();
    assert_eq!(checked.iter().max(), Some(&6));

    // A replica with another key is refused by the database's log.
    let h3 = Harness::new().await;
    let err = h3
        .loaded
        .configure(TD, &hcl_with_database(&h3, &pg.conninfo, ""))
        .await
        .unwrap_err();
    assert_refused(&err, &["`log_database`", "log key"]);
    drop((h1, h2, h3));
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}

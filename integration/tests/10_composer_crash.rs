//! Fault test of the credential composer with the real SPIRE server 1.15.3 (issue #5 item 7): during a
//! burst of X.509-SVID issuance (`spire-server x509 mint`, several at a time, each one composed by our
//! plugin) the server is killed with SIGKILL, and so its plugins lose their parent mid-append. Then:
//!
//! - the composer's plugin process exits by itself (it watches its parent), so nothing holds the log;
//! - the server restarts with the same configuration and the composer reopens the log (crash recovery);
//! - the log verifies (every stored tile and entry bundle against the signed checkpoint);
//! - EVERY SVID a client received before the crash has its credential-provenance record in the log: the
//!   entry at the proof's index is exactly the record in the SVID, the SVID's checkpoint is consistent
//!   with the recovered log's, and its inclusion proof verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use der::DecodePem;
use twi::spire::{PluginBlock, SpireServer};
use twi_credential_composer::extension::{ProofForm, TwiProvenance, DEFAULT_PROVENANCE_OID};
use twi_credential_composer::tlog::{InclusionProof, Log, LogKey};
use twi_integration::*;
use x509_cert::Certificate;

const MINTERS: usize = 4;

fn composer_block(root: &Path, results_db: &Path) -> Result<PluginBlock> {
    composer_plugin(&[
        ("log_dir", path_value(&root.join("cprov-log"))),
        ("log_key_path", path_value(&root.join("log-key"))),
        (
            "provenance_key_path",
            path_value(&root.join("provenance-key.pem")),
        ),
        (
            "attestation_results_database",
            format!("sqlite://{}", results_db.display()),
        ),
        ("server_socket_path", path_value(&root.join("server.sock"))),
    ])
}

/// The PIDs of `parent`'s children running `exe` (the plugin binaries spire-server started).
fn children_running(parent: u32, exe: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let same_exe = std::fs::read_link(entry.path().join("exe")).is_ok_and(|p| p == exe);
        if ppid == Some(parent) && same_exe {
            found.push(pid);
        }
    }
    found
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// One `spire-server x509 mint` into `dir`; true when it succeeded and wrote the SVID.
fn mint(bins: &spire::SpireBins, socket: &Path, id: &str, dir: &Path) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    Command::new(&bins.server)
        .args(["x509", "mint", "-spiffeID", id, "-ttl", "1h", "-socketPath"])
        .arg(socket)
        .arg("-write")
        .arg(dir)
        .output()
        .is_ok_and(|o| o.status.success())
        && dir.join("svid.pem").is_file()
}

#[test]
fn every_received_svid_is_logged_after_a_kill_9() -> Result<()> {
    let bins = spire_bins()?;
    let sim = shared_sim_dir()?;
    let run = spire::short_tempdir("twi-e2e10-")?;
    let root = run.path().canonicalize()?;
    let results = ResultFiles::in_dir(&root);
    let composer = plugin("twi-server-credentialcomposer")?;

    let mut settings = server_settings(&[sim], "")?;
    settings.plugins[0].data.push('\n');
    settings.plugins[0].data.push_str(&results.hcl());
    settings
        .plugins
        .push(composer_block(&root, &results.database)?);
    let mut server = SpireServer::start(&bins, &root, &settings)?;
    let server_pid = server.pid().context("server pid")?;
    let plugin_pids = children_running(server_pid, &composer.path);
    assert_eq!(
        plugin_pids.len(),
        1,
        "one composer process: {plugin_pids:?}"
    );

    // The burst: MINTERS clients minting back to back, until the server dies under them.
    let stop = Arc::new(AtomicBool::new(false));
    let socket = root.join("server.sock");
    let mut minters = Vec::new();
    for t in 0..MINTERS {
        let (stop, bins, socket, out) = (
            stop.clone(),
            bins.clone(),
            socket.clone(),
            root.join("mints"),
        );
        minters.push(std::thread::spawn(move || {
            let mut received = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let dir = out.join(format!("{t}-{i}"));
                let id = format!("spiffe://{TRUST_DOMAIN}/burst/{t}/{i}");
                if mint(&bins, &socket, &id, &dir) {
                    received.push((id, dir));
                }
                i += 1;
            }
            received
        }));
    }
    // Let the burst run, then crash the server while mints are in flight.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let received: Vec<(String, PathBuf)> = minters
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        received.len() >= 5,
        "the burst issued only {} SVIDs before the kill; server log:\n{}",
        received.len(),
        spire::tail(&server.log(), 30)
    );

    // The orphaned composer notices and exits by itself, releasing the log.
    let deadline = Instant::now() + Duration::from_secs(10);
    while plugin_pids.iter().any(|p| process_alive(*p)) {
        if Instant::now() > deadline {
            bail!("the composer (pid {plugin_pids:?}) outlived its killed SPIRE server by 10 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Restart with the same configuration: the composer recovers and opens the same log.
    let mut server = SpireServer::start(&bins, &root, &settings)?;
    let after = root.join("after");
    assert!(
        mint(
            &bins,
            &socket,
            &format!("spiffe://{TRUST_DOMAIN}/after-restart"),
            &after
        ),
        "issuance after the restart failed; server log:\n{}",
        spire::tail(&server.log(), 30)
    );
    server.stop();

    // With the server stopped, open the log as its only writer and check it whole.
    let key = LogKey::load(&root.join("log-key"))?;
    let verifier = key.verifier();
    let log = Log::open(&root.join("cprov-log"), key)?;
    log.verify_storage().context("the recovered log verifies")?;
    let now = verifier.verify_checkpoint(log.checkpoint().as_bytes())?;
    for (id, dir) in received
        .iter()
        .chain([(String::new(), after.clone())].iter())
    {
        let cert = Certificate::from_pem(std::fs::read(dir.join("svid.pem"))?)
            .with_context(|| format!("{}", dir.display()))?;
        let ext = cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id.to_string() == DEFAULT_PROVENANCE_OID)
            .with_context(|| format!("{id}: no provenance extension"))?;
        let prov = TwiProvenance::from_der(ext.extn_value.as_bytes())?;
        let Some(ProofForm::TlogProof(text)) = &prov.proof else {
            bail!("{id}: no tlog-proof");
        };
        let proof = InclusionProof::from_tlog_proof(text.as_bytes())?;
        let verified = verifier
            .verify_inclusion(&prov.statement, &proof)
            .with_context(|| format!("{id}: inclusion proof"))?;
        assert_eq!(
            log.entry(proof.index)?,
            prov.statement,
            "{id}: the log's entry {} is not this SVID's record",
            proof.index
        );
        let then = verified.checkpoint();
        if then.size() < now.size() {
            let consistency = log.consistency_proof(then.size(), now.size())?;
            verifier
                .verify_consistency(then, &now, &consistency)
                .with_context(|| {
                    format!("{id}: the SVID's checkpoint is not a prefix of the log")
                })?;
        }
    }
    eprintln!(
        "{} SVIDs received before the kill, all logged; log size {}",
        received.len(),
        now.size()
    );
    Ok(())
}

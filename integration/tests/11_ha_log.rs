//! The credential-provenance log shared by SPIRE servers in HA (issue #5 item 2), with a real PostgreSQL
//! server (started here by scripts/postgres.sh; a missing PostgreSQL fails the test, it never skips):
//! two SPIRE 1.15.3 servers share one PostgreSQL database as their datastore, and each loads our
//! CredentialComposer with the same `log_database` and the same log key file. X.509-SVIDs are minted
//! on both servers at once (`spire-server x509 mint`, each composed by that server's plugin); then
//!
//! - every SVID passes `twi svid verify` (path, statement signature, inclusion proof against the
//!   checkpoint it carries);
//! - every SVID's record is read back from the tiles served by the OTHER server's composer
//!   (`log_serve_address`), its inclusion re-proved from those tiles, and its checkpoint shown
//!   consistent with the latest one: one tree, whichever replica wrote or serves it;
//! - the log's size is the number of SVIDs issued across both servers, and both replicas serve the
//!   same checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use der::DecodePem;
use twi::spire::{PluginBlock, SpireServer, SqlDataStore};
use twi_credential_composer::extension::{ProofForm, TwiProvenance, DEFAULT_PROVENANCE_OID};
use twi_credential_composer::tlog::{HttpFetcher, InclusionProof, LogKey, TiledLog};
use twi_integration::*;
use x509_cert::Certificate;

const ORIGIN: &str = "example.org/twi/cprov";
/// Concurrent minting clients per server.
const MINTERS: usize = 2;
/// SVIDs each client mints.
const PER_MINTER: usize = 3;

/// One replica's composer: its own provenance key and public files, the shared log and log key.
struct Replica {
    dir: PathBuf,
    serve: String,
}

impl Replica {
    fn provenance_pub(&self) -> PathBuf {
        self.dir.join("provenance-pub.pem")
    }

    fn vkey(&self) -> PathBuf {
        self.dir.join("log-vkey.txt")
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("server.sock")
    }

    fn composer_block(
        &self,
        log_database: &str,
        log_key: &Path,
        results_db: &str,
    ) -> Result<PluginBlock> {
        composer_plugin(&[
            ("log_database", log_database.to_owned()),
            ("log_key_path", path_value(log_key)),
            ("log_vkey_path", path_value(&self.vkey())),
            ("log_origin", ORIGIN.to_owned()),
            (
                "provenance_key_path",
                path_value(&self.dir.join("provenance-key.pem")),
            ),
            (
                "provenance_public_key_path",
                path_value(&self.provenance_pub()),
            ),
            ("attestation_results_database", results_db.to_owned()),
            ("server_socket_path", path_value(&self.socket())),
            ("log_serve_address", self.serve.clone()),
        ])
    }
}

/// One `spire-server x509 mint` into `dir` (svid.pem, key.pem, bundle.pem).
fn mint(bins: &spire::SpireBins, socket: &Path, id: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let o = Command::new(&bins.server)
        .args(["x509", "mint", "-spiffeID", id, "-ttl", "1h", "-socketPath"])
        .arg(socket)
        .arg("-write")
        .arg(dir)
        .output()?;
    anyhow::ensure!(
        o.status.success() && dir.join("svid.pem").is_file(),
        "x509 mint {id}: {}",
        output_text(&o)
    );
    Ok(())
}

/// The statement and inclusion proof in an SVID's provenance extension.
fn provenance(cert: &Certificate) -> Result<(Vec<u8>, InclusionProof)> {
    let ext = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id.to_string() == DEFAULT_PROVENANCE_OID)
        .context("no provenance extension")?;
    let prov = TwiProvenance::from_der(ext.extn_value.as_bytes())?;
    let Some(ProofForm::TlogProof(text)) = prov.proof else {
        anyhow::bail!("no tlog-proof in the provenance extension");
    };
    Ok((
        prov.statement,
        InclusionProof::from_tlog_proof(text.as_bytes())?,
    ))
}

#[test]
fn two_servers_share_one_log_in_postgres_and_each_serves_it() -> Result<()> {
    // Dropped last (locals drop in reverse): the SPIRE servers stop before PostgreSQL does.
    let pg = PgServer::start()?;
    let spire_db = pg.createdb("spire")?;
    let results_db = pg.createdb("twi_results")?;
    let log_db = pg.createdb("twi_log")?;
    let datastore = SqlDataStore::postgres(&format!("{spire_db} sslmode=disable"));

    let bins = spire_bins()?;
    let sim = shared_sim_dir()?;
    let run = spire::short_tempdir("twi-e2e11-")?;
    let root = run.path().canonicalize()?;

    // One log key file for both replicas (provisioned to each, here the same path).
    let log_key = root.join("log-key");
    let key = LogKey::generate(ORIGIN, &mut rand_core::OsRng)?;
    key.save_new(&log_key)?;
    let verifier = key.verifier();

    let replicas: Vec<Replica> = ["a", "b"]
        .iter()
        .map(|name| -> Result<Replica> {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir)?;
            Ok(Replica {
                dir,
                serve: format!("127.0.0.1:{}", spire::free_port()?),
            })
        })
        .collect::<Result<_>>()?;
    let mut servers = Vec::new();
    for r in &replicas {
        let results = ResultFiles {
            database: r.dir.join("unused.db"),
            verifier_key: root.join("verifier-key.pem"),
            jwks: r.dir.join("jwks.json"),
        };
        let mut settings = server_settings(&[sim], "")?;
        settings.plugins[0].data.push('\n');
        settings.plugins[0]
            .data
            .push_str(&results.hcl_with_database(&results_db));
        settings
            .plugins
            .push(r.composer_block(&log_db, &log_key, &results_db)?);
        servers.push(SpireServer::start_with_datastore(
            &bins, &r.dir, &settings, &datastore,
        )?);
    }
    let vkey = std::fs::read_to_string(replicas[0].vkey())?;
    assert_eq!(vkey.trim(), verifier.vkey());
    assert_eq!(std::fs::read_to_string(replicas[1].vkey())?, vkey);

    // Mint on both servers at once: MINTERS clients per server, PER_MINTER SVIDs each.
    let minted: Vec<(usize, String, PathBuf)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..replicas.len())
            .flat_map(|r| (0..MINTERS).map(move |t| (r, t)))
            .map(|(r, t)| {
                let (bins, socket, out) = (&bins, replicas[r].socket(), root.join("mints"));
                s.spawn(move || -> Result<Vec<(usize, String, PathBuf)>> {
                    let mut done = Vec::new();
                    for i in 0..PER_MINTER {
                        let id = format!("spiffe://{TRUST_DOMAIN}/ha/{r}/{t}/{i}");
                        let dir = out.join(format!("{r}-{t}-{i}"));
                        mint(bins, &socket, &id, &dir)?;
                        done.push((r, id, dir));
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Result<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect())
    })?;
    let issued = (replicas.len() * MINTERS * PER_MINTER) as u64;
    assert_eq!(minted.len() as u64, issued);

    // Both replicas serve the same tree: the checkpoint covers every SVID issued, no more.
    let tiled: Vec<_> = replicas
        .iter()
        .map(|r| {
            TiledLog::new(
                HttpFetcher::new(&format!("http://{}/", r.serve), Duration::from_secs(10)),
                verifier.clone(),
            )
        })
        .collect();
    let latest = tiled[0].checkpoint()?;
    assert_eq!(
        latest.size(),
        issued,
        "log size = SVIDs issued across both servers"
    );
    assert_eq!(
        tiled[1].checkpoint()?.checkpoint().as_bytes(),
        latest.checkpoint().as_bytes(),
        "both replicas serve the same checkpoint"
    );

    let twi = twi_cli()?;
    let mut indexes = BTreeSet::new();
    for (r, id, dir) in &minted {
        // twi svid verify: path to the bundle, statement signature, inclusion proof.
        let o = Command::new(&twi)
            .args(["svid", "verify", "--json", "--svid"])
            .arg(dir.join("svid.pem"))
            .arg("--bundle")
            .arg(dir.join("bundle.pem"))
            .arg("--log-key")
            .arg(replicas[*r].vkey())
            .arg("--provenance-key")
            .arg(replicas[*r].provenance_pub())
            .output()?;
        assert_eq!(o.status.code(), Some(0), "{id}: {}", output_text(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout)?;
        assert_eq!(report["spiffe_id"], id.as_str(), "{report}");

        // The record, from the tiles of the OTHER server's composer.
        let cert = Certificate::from_pem(std::fs::read(dir.join("svid.pem"))?)?;
        let (statement, proof) = provenance(&cert).with_context(|| id.clone())?;
        let carried = verifier.verify_inclusion(&statement, &proof)?;
        let other = &tiled[1 - r];
        assert_eq!(
            other.entry(&latest, proof.index)?,
            statement,
            "{id}: the other replica serves the record at its index"
        );
        other.inclusion_proof(&latest, proof.index)?;
        other
            .verify_consistency(carried.checkpoint(), &latest)
            .with_context(|| format!("{id}: its checkpoint is a prefix of the latest"))?;
        assert!(indexes.insert(proof.index), "index {} twice", proof.index);
    }
    assert_eq!(
        indexes.into_iter().collect::<Vec<_>>(),
        (0..issued).collect::<Vec<_>>(),
        "one record per SVID, no gaps"
    );

    // Both servers' composers appended (one sequencer at a time, by the row lock).
    for (name, server) in ["A", "B"].iter().zip(&servers) {
        let logged = server
            .log()
            .lines()
            .filter(|l| l.contains("credential provenance record logged"))
            .count();
        assert_eq!(
            logged,
            MINTERS * PER_MINTER,
            "server {name}:\n{}",
            spire::tail(&server.log(), 30)
        );
    }
    for server in &mut servers {
        server.stop();
    }
    Ok(())
}

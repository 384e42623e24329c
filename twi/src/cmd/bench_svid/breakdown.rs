//! Where the composer's time goes: its steps timed one by one in this process, on the same inputs as
//! server B (the same attestation-result store, server B's local API socket, logs on the same file
//! system), interleaved iteration by iteration.
//!
//! - `compose_total`: `Composer::compose_workload_x509` as the plugin runs it (default settings);
//! - `ear_read`: the parent agent's latest EAR from the store (SQLite read, digest check, JSON parse);
//! - `entry_lookup`: the registration entries and parent agents from the local API (cached; a
//!   `ListEntries` every `entry_refresh_seconds`);
//! - `record_and_sign`: building the record and signing the COSE_Sign1 statement (Ed25519);
//! - `extensions`: encoding the CMW and the TwiProvenance extension with its tlog-proof;
//! - `append_default`: one durable log append through the sequencer with its shipped config
//!   (`max_wait` 0), one appender;
//! - `append_direct`: one durable `Log::append_batch` of one entry, no sequencer (the storage's own
//!   cost: staging, one journal fdatasync, checkpoint signature and publication);
//! - `raw_fsync`: one `write` + `fdatasync` of a statement, the disk's floor.
//!
//! What the in-process total does not include, and the server-side difference does: SPIRE's gRPC
//! call to the plugin process (go-plugin), the plugin's log line relayed to SPIRE's log, and SPIRE
//! encoding and signing a larger certificate.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use twi_credential_composer::cmw::Cmw;
use twi_credential_composer::composer::{latest_ear, system_clock, Composer, ComposerParts};
use twi_credential_composer::config;
use twi_credential_composer::extension::{ProofForm, TwiProvenance};
use twi_credential_composer::spire_api::{Registry as _, SpireApi};
use twi_credential_composer::tlog::{Log, LogKey, Sequencer, SequencerConfig};
use twi_plugin::proto::credentialcomposer::{DistinguishedName, X509svidAttributes};
use twi_plugin::CoreConfig;

use super::setup::{composer_hcl, AGENT_ID, TRUST_DOMAIN, WORKLOAD_ID};
use super::statements::StatementMaker;
use super::stats::{summarize, Lat};

/// The composer's steps, each summarised.
#[derive(Debug, Serialize)]
pub(crate) struct Breakdown {
    pub(crate) iterations: usize,
    pub(crate) compose_total: Lat,
    pub(crate) ear_read: Lat,
    pub(crate) entry_lookup: Lat,
    pub(crate) record_and_sign: Lat,
    pub(crate) extensions: Lat,
    pub(crate) append_default: Lat,
    pub(crate) append_direct: Lat,
    pub(crate) raw_fsync: Lat,
}

/// SPIRE's template attributes for a workload SVID (what the plugin receives).
fn spire_attributes() -> X509svidAttributes {
    X509svidAttributes {
        subject: Some(DistinguishedName {
            country: vec!["US".into()],
            organization: vec!["SPIRE".into()],
            ..DistinguishedName::default()
        }),
        dns_sans: Vec::new(),
        extra_extensions: Vec::new(),
    }
}

fn sequencer(dir: &Path, max_wait: Duration) -> Result<Arc<Sequencer>> {
    let key = LogKey::generate("example.org/twi/bench", &mut rand_core::OsRng)?;
    let log = Log::create(dir, key).with_context(|| format!("log in {}", dir.display()))?;
    Ok(Arc::new(Sequencer::start(
        log,
        SequencerConfig {
            max_wait,
            ..SequencerConfig::default()
        },
    )?))
}

/// Times each step `iterations` times after `warmup` untimed rounds. `socket` is server B's local
/// API socket, `results_url` its attestation-result store.
pub(crate) fn run(
    dir: &Path,
    socket: &Path,
    results_url: &str,
    ear_jws: &str,
    warmup: usize,
    iterations: usize,
) -> Result<Breakdown> {
    std::fs::create_dir_all(dir)?;
    let settings = config::build(
        &CoreConfig::new(TRUST_DOMAIN),
        &composer_hcl(dir, results_url, socket),
    )
    .map_err(|e| anyhow!("composer settings: {e:?}"))?;
    let settings = Arc::new(settings);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The local API channel spawns its connection task on this runtime.
    let _entered = rt.enter();
    let store: Arc<dyn twi_results::ResultStore> =
        Arc::from(twi_results::open(results_url).context("result store")?);
    let registry = Arc::new(SpireApi::new(
        socket,
        TRUST_DOMAIN,
        settings.entry_refresh,
        settings.server_api_timeout,
    ));
    let log_dir = dir.join("compose-log");
    let compose_seq = sequencer(&log_dir, settings.sequencer.max_wait)?;
    let composer = Composer::new(ComposerParts {
        settings: Arc::clone(&settings),
        provenance_key: Arc::new(twi_credential_composer::statement::ProvenanceKey::generate()),
        sequencer: compose_seq,
        log_origin: settings.log_origin.clone(),
        store: Arc::clone(&store),
        registry: registry.clone(),
        clock: Arc::new(system_clock),
    });
    let seq_default = sequencer(
        &dir.join("default-log"),
        SequencerConfig::default().max_wait,
    )?;
    let mut direct_log = Log::create(
        &dir.join("direct-log"),
        LogKey::generate("example.org/twi/bench", &mut rand_core::OsRng)?,
    )?;
    let maker = StatementMaker::new(ear_jws)?;
    let raw_path = dir.join("raw-fsync.bin");
    let mut raw = std::fs::File::create(&raw_path)?;
    let spkis: Vec<Vec<u8>> = (0..warmup + iterations)
        .map(|_| {
            let k = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
            p256::pkcs8::EncodePublicKey::to_public_key_der(k.verifying_key())
                .map(|d| d.as_bytes().to_vec())
                .map_err(|e| anyhow!("SPKI: {e}"))
        })
        .collect::<Result<_>>()?;

    let mut s: [Vec<Duration>; 8] = Default::default();
    rt.block_on(async {
        for (i, spki) in spkis.iter().enumerate() {
            let mut t = Vec::with_capacity(8);
            let now_ms = system_clock();

            let start = Instant::now();
            let attrs = composer
                .compose_workload_x509(WORKLOAD_ID, spki, Some(spire_attributes()))
                .await
                .map_err(|e| anyhow!("compose: {e}"))?;
            t.push(start.elapsed());
            anyhow::ensure!(
                attrs.is_some_and(|a| a.extra_extensions.len() == 2),
                "the in-process composer did not add both extensions"
            );

            let start = Instant::now();
            let ear = latest_ear(store.as_ref(), AGENT_ID, i64::try_from(now_ms / 1000)?)
                .map_err(|e| anyhow!("EAR read: {e}"))?;
            t.push(start.elapsed());

            let start = Instant::now();
            let resolution = registry
                .resolve(WORKLOAD_ID)
                .await
                .map_err(|e| anyhow!("entry lookup: {e}"))?;
            t.push(start.elapsed());
            anyhow::ensure!(
                resolution.agents.contains(AGENT_ID),
                "the local API does not resolve the workload to its agent"
            );

            let start = Instant::now();
            let record = maker.record(now_ms, Sha256::digest(spki).into());
            let statement = maker.sign(&record);
            t.push(start.elapsed());

            let appended = seq_default.append(statement.clone()).await?;
            let start = Instant::now();
            let proof = String::from_utf8(appended.proof.to_tlog_proof())?;
            let cmw = Cmw::ear(&ear.jws).to_extn_value();
            let prov = TwiProvenance {
                statement: statement.clone(),
                proof: Some(ProofForm::TlogProof(proof)),
            }
            .try_to_der()
            .map_err(|e| anyhow!("extension: {e}"))?;
            t.push(start.elapsed());
            std::hint::black_box((cmw, prov));

            let start = Instant::now();
            seq_default.append(statement.clone()).await?;
            t.push(start.elapsed());

            let start = Instant::now();
            direct_log.append_batch(&[&statement])?;
            t.push(start.elapsed());

            let start = Instant::now();
            raw.write_all(&statement)?;
            raw.sync_data()?;
            t.push(start.elapsed());

            if i >= warmup {
                for (dst, d) in s.iter_mut().zip(t) {
                    dst.push(d);
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let _ = std::fs::remove_file(&raw_path);
    let [compose_total, ear_read, entry_lookup, record_and_sign, extensions, append_default, append_direct, raw_fsync] =
        s.map(|v| summarize(&v));
    Ok(Breakdown {
        iterations,
        compose_total,
        ear_read,
        entry_lookup,
        record_and_sign,
        extensions,
        append_default,
        append_direct,
        raw_fsync,
    })
}

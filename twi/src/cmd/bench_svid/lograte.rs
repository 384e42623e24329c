//! The transparency log's durable append rate: real signed statements through
//! `tlog::Sequencer` (the composer's path, its default batching) from 1 to 256 concurrent appenders,
//! each append counted when it is durable (fsynced and covered by a published checkpoint).
//!
//! Reference, same run, same file system: the raw rate of one `write` + `fdatasync` per record,
//! sequential — what the disk gives a writer that makes every record durable on its own. Reference and
//! log runs alternate level by level, so a change of load hits both.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use twi_credential_composer::tlog::{Log, LogKey, Sequencer, SequencerConfig};

use super::stats::{summarize, Lat};

/// One appender count.
#[derive(Debug, Serialize)]
pub(crate) struct LevelResult {
    pub(crate) appenders: usize,
    pub(crate) records: u64,
    pub(crate) seconds: f64,
    /// Durable records per second.
    pub(crate) records_per_s: f64,
    /// Latency of each append (submit to durable).
    pub(crate) append_latency: Lat,
    /// Checkpoints published (one per batch, one fsync round each).
    pub(crate) batches: usize,
    pub(crate) mean_batch: f64,
    /// The raw `write` + `fdatasync` rate measured just before this level.
    pub(crate) raw_fsync_per_s: f64,
    /// `records_per_s / raw_fsync_per_s`.
    pub(crate) over_raw_fsync: f64,
}

/// The whole log measurement.
#[derive(Debug, Serialize)]
pub(crate) struct LogRate {
    /// Where the logs were written (its file system is the one measured).
    pub(crate) dir: String,
    pub(crate) statement_bytes_mean: usize,
    pub(crate) statement_bytes_min: usize,
    pub(crate) statement_bytes_max: usize,
    pub(crate) seconds_per_level: f64,
    pub(crate) sequencer: String,
    pub(crate) levels: Vec<LevelResult>,
    /// Best durable rate over the levels.
    pub(crate) best_records_per_s: f64,
    pub(crate) target_records_per_s: f64,
    pub(crate) target_met: bool,
}

/// The log append goal of issue #5.
pub(crate) const TARGET_RECORDS_PER_S: f64 = 10_000.0;

/// Raw sequential `write` + `fdatasync` of each record for `budget`; records per second.
fn raw_fsync_rate(dir: &Path, pool: &[Vec<u8>], budget: Duration) -> Result<f64> {
    let path = dir.join("raw-fsync.bin");
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        let rec = pool
            .get(n as usize % pool.len().max(1))
            .map_or(&[][..], Vec::as_slice);
        f.write_all(rec)?;
        f.sync_data()?;
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(n as f64 / secs)
}

/// `appenders` async tasks appending `pool` statements through a fresh log's sequencer for `budget`.
fn level(
    dir: &Path,
    pool: &Arc<Vec<Vec<u8>>>,
    appenders: usize,
    budget: Duration,
    config: &SequencerConfig,
) -> Result<(u64, f64, Vec<Duration>, usize)> {
    let key = LogKey::generate("example.org/twi/bench", &mut rand_core::OsRng)?;
    let log = Log::create(dir, key).with_context(|| format!("log in {}", dir.display()))?;
    let seq = Arc::new(Sequencer::start(log, config.clone())?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let deadline = start + budget;
    let per_task: Vec<(Vec<Duration>, Vec<u64>)> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for t in 0..appenders {
            let (seq, pool) = (Arc::clone(&seq), Arc::clone(pool));
            set.spawn(async move {
                let (mut lat, mut sizes) = (Vec::new(), Vec::new());
                let mut k = t;
                while Instant::now() < deadline {
                    let entry = pool.get(k % pool.len().max(1)).cloned().unwrap_or_default();
                    k += appenders;
                    let s = Instant::now();
                    let a = seq.append(entry).await?;
                    lat.push(s.elapsed());
                    sizes.push(a.proof.tree_size());
                }
                Ok::<_, anyhow::Error>((lat, sizes))
            });
        }
        let mut out = Vec::new();
        while let Some(j) = set.join_next().await {
            out.push(j.context("appender task")??);
        }
        Ok::<_, anyhow::Error>(out)
    })?;
    let secs = start.elapsed().as_secs_f64();
    let log = seq.shutdown()?;
    let mut lat = Vec::new();
    let mut checkpoints = std::collections::BTreeSet::new();
    for (l, s) in per_task {
        lat.extend(l);
        checkpoints.extend(s);
    }
    let records = lat.len() as u64;
    anyhow::ensure!(
        log.size() == records,
        "the log holds {} entries but {records} appends were acknowledged",
        log.size()
    );
    Ok((records, secs, lat, checkpoints.len()))
}

/// Runs every level in `appenders` under `parent`, with `pool` as entries.
pub(crate) fn run(
    parent: &Path,
    pool: Vec<Vec<u8>>,
    appenders: &[usize],
    budget: Duration,
) -> Result<LogRate> {
    let sizes: Vec<usize> = pool.iter().map(Vec::len).collect();
    let pool = Arc::new(pool);
    let config = SequencerConfig::default();
    let mut levels = Vec::new();
    for (i, &n) in appenders.iter().enumerate() {
        let raw = raw_fsync_rate(parent, &pool, budget)?;
        let dir = parent.join(format!("log-{i}-{n}"));
        eprintln!("  log append rate, {n} appender(s) ...");
        let (records, secs, lat, batches) = level(&dir, &pool, n, budget, &config)?;
        let rate = records as f64 / secs;
        levels.push(LevelResult {
            appenders: n,
            records,
            seconds: secs,
            records_per_s: rate,
            append_latency: summarize(&lat),
            batches,
            mean_batch: records as f64 / batches.max(1) as f64,
            raw_fsync_per_s: raw,
            over_raw_fsync: rate / raw,
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    let best = levels.iter().map(|l| l.records_per_s).fold(0.0, f64::max);
    Ok(LogRate {
        dir: parent.display().to_string(),
        statement_bytes_mean: sizes.iter().sum::<usize>() / sizes.len().max(1),
        statement_bytes_min: sizes.iter().copied().min().unwrap_or(0),
        statement_bytes_max: sizes.iter().copied().max().unwrap_or(0),
        seconds_per_level: budget.as_secs_f64(),
        sequencer: format!(
            "default: max_batch {}, max_wait {:?}, max_queue {}",
            config.max_batch, config.max_wait, config.max_queue
        ),
        levels,
        best_records_per_s: best,
        target_records_per_s: TARGET_RECORDS_PER_S,
        target_met: best >= TARGET_RECORDS_PER_S,
    })
}

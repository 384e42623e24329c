//! Rough durable-append throughput of the transparency log through the sequencer: `C` concurrent
//! appenders (threads), entries of 1 KiB (about a COSE_Sign1 provenance statement), every append
//! acknowledged only after fsync and a published checkpoint. Prints appends/s and batches; asserts
//! nothing (timings depend on the disk).
//!
//! `cargo run --release -p twi-credential-composer --example tlog_throughput -- [TOTAL] [CONCURRENCY] [MAX_WAIT_MS] [DIR]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use twi_credential_composer::tlog::{Log, LogKey, Sequencer, SequencerConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| -> anyhow::Result<u64> {
        Ok(match args.get(i) {
            Some(s) => s.parse()?,
            None => default,
        })
    };
    let total = arg(1, 50_000)?;
    let concurrency = arg(2, 256)?.max(1);
    let max_wait = Duration::from_millis(arg(3, 1)?);
    let tmp = tempfile::tempdir()?;
    let dir = args
        .get(4)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("log"));
    let key = LogKey::generate("example.org/bench", &mut rand_core::OsRng)?;
    let log = Log::create(&dir, key)?;
    let seq = Arc::new(Sequencer::start(
        log,
        SequencerConfig {
            max_batch: 4096,
            max_wait,
            max_queue: 1 << 20,
        },
    )?);
    let per_thread = total / concurrency;
    let start = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|t| {
            let seq = seq.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
                let mut sizes = Vec::new();
                for k in 0..per_thread {
                    let mut body = format!("thread {t} entry {k} ").into_bytes();
                    body.resize(1024, b'x');
                    let a = seq.append_blocking(body)?;
                    sizes.push(a.proof.tree_size());
                }
                Ok(sizes)
            })
        })
        .collect();
    let mut checkpoints = std::collections::BTreeSet::new();
    for t in threads {
        let sizes = t
            .join()
            .map_err(|_| anyhow::anyhow!("appender panicked"))??;
        checkpoints.extend(sizes);
    }
    let elapsed = start.elapsed();
    let log = seq.shutdown()?;
    let n = log.size();
    println!(
        "{n} durable appends of 1 KiB in {:.2} s = {:.0} appends/s; {} batches (mean {:.0} entries/batch); \
         concurrency {concurrency}, max_wait {} ms",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        checkpoints.len(),
        n as f64 / checkpoints.len().max(1) as f64,
        max_wait.as_millis()
    );
    Ok(())
}

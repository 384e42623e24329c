//! `twi bench`: the cost of SNP verification against its raw signature floors, measured in-process on
//! the same inputs as the criterion benches (`twi_core::bench_support` holds the measured closures).
//!
//! Two ratios are reported per fixture: warm (chain cached) verify + appraise over the report's raw
//! ECDSA verification (target ≤ 1.3), and cold (new verifier) verify + appraise over the raw cost of
//! every signature of the chain (target ≤ 1.2). A missed target is printed, not hidden; the command
//! still exits 0 because the figures, not a pass/fail, are its output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use twi_core::bench_support::{sample, stats, Fixture, Stats, OAK_MILAN_V3};

use super::{fmt_unix, unix_now};

/// Warm verify + appraise may cost at most this much more than the raw report ECDSA verification.
const WARM_TARGET: f64 = 1.3;
/// Cold verify + appraise may cost at most this much more than the raw signatures of the chain.
const COLD_TARGET: f64 = 1.2;

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Timed runs per measurement (the median is reported).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// Untimed runs per measurement before timing.
    #[arg(long, default_value_t = 30)]
    warmup: u32,
    /// The shared testdata folder, for the real vector oak-milan-v3 (default: the one beside the
    /// workspace, else ../shared/testdata; skipped when absent).
    #[arg(long, value_name = "DIR")]
    testdata: Option<PathBuf>,
}

#[derive(Serialize)]
struct Machine {
    nproc: usize,
    cpu_model: String,
    /// /proc/loadavg when the measurement started: other load makes the figures noisier.
    loadavg: String,
}

#[derive(Serialize)]
struct FixtureResult {
    name: String,
    raw_ecdsa: Stats,
    warm: Stats,
    cold: Stats,
    raw_chain: Stats,
    /// The targets apply to these ratios of medians.
    warm_over_raw_ecdsa: f64,
    cold_over_raw_chain: f64,
    /// Ratios of the minimums: less sensitive to other load on the machine; secondary.
    warm_over_raw_ecdsa_min: f64,
    cold_over_raw_chain_min: f64,
    warm_target: f64,
    cold_target: f64,
    warm_met: bool,
    cold_met: bool,
}

#[derive(Serialize)]
struct BenchReport {
    date: String,
    machine: Machine,
    profile: &'static str,
    iterations: u32,
    warmup: u32,
    fixtures: Vec<FixtureResult>,
    all_targets_met: bool,
}

fn machine() -> Machine {
    let nproc = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    Machine {
        nproc,
        cpu_model,
        loadavg,
    }
}

fn testdata_dir(arg: Option<&Path>) -> PathBuf {
    if let Some(p) = arg {
        return p.to_path_buf();
    }
    let compiled_in = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata"
    ));
    if compiled_in.is_dir() {
        compiled_in.to_path_buf()
    } else {
        PathBuf::from("../shared/testdata")
    }
}

fn measure(f: &Fixture, warmup: usize, iterations: usize) -> Result<FixtureResult> {
    let warm_verifier = f
        .warm_verifier()
        .with_context(|| format!("{}: warm verifier", f.name))?;
    // Warm-up, then round-robin: every iteration times each of the four once, so that a slow phase of
    // the machine (another process, a frequency change) hits all four alike instead of biasing one.
    sample(warmup, 0, || f.raw_ecdsa());
    sample(warmup, 0, || f.warm(&warm_verifier).is_ok());
    sample(warmup, 0, || f.cold().is_ok());
    sample(warmup, 0, || f.raw_chain());
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for _ in 0..iterations {
        let [raw_ecdsa, warm, cold, raw_chain] = &mut samples;
        raw_ecdsa.extend(sample(0, 1, || f.raw_ecdsa()));
        warm.extend(sample(0, 1, || f.warm(&warm_verifier).is_ok()));
        cold.extend(sample(0, 1, || f.cold().is_ok()));
        raw_chain.extend(sample(0, 1, || f.raw_chain()));
    }
    let [raw_ecdsa, warm, cold, raw_chain] = samples.map(|s| stats(&s));
    let ratio = |a: u64, b: u64| {
        if b == 0 {
            f64::INFINITY
        } else {
            a as f64 / b as f64
        }
    };
    let warm_over = ratio(warm.median_ns, raw_ecdsa.median_ns);
    let cold_over = ratio(cold.median_ns, raw_chain.median_ns);
    Ok(FixtureResult {
        name: f.name.clone(),
        warm_over_raw_ecdsa: warm_over,
        cold_over_raw_chain: cold_over,
        warm_over_raw_ecdsa_min: ratio(warm.min_ns, raw_ecdsa.min_ns),
        cold_over_raw_chain_min: ratio(cold.min_ns, raw_chain.min_ns),
        raw_ecdsa,
        warm,
        cold,
        raw_chain,
        warm_target: WARM_TARGET,
        cold_target: COLD_TARGET,
        warm_met: warm_over <= WARM_TARGET,
        cold_met: cold_over <= COLD_TARGET,
    })
}

pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    eprintln!(
        "creating a simulated Milan root set (RSA-4096) in {} ...",
        tmp.path().display()
    );
    let now = u64::try_from(unix_now()).unwrap_or(0);
    let mut fixtures = vec![Fixture::simulated_milan(&tmp.path().join("sim"), now)
        .context("simulated Milan fixture")?];
    let testdata = testdata_dir(args.testdata.as_deref());
    match Fixture::from_vector(&testdata, &OAK_MILAN_V3).context("real vector fixture")? {
        Some(f) => fixtures.push(f),
        None => eprintln!(
            "{} not found: measuring the simulated evidence only",
            testdata.join(OAK_MILAN_V3.report).display()
        ),
    }
    let (warmup, iterations) = (args.warmup as usize, args.iterations as usize);
    let machine = machine();
    let mut results = Vec::new();
    for f in &fixtures {
        eprintln!(
            "measuring {} ({iterations} runs per measurement) ...",
            f.name
        );
        results.push(measure(f, warmup, iterations)?);
    }
    let report = BenchReport {
        date: fmt_unix(unix_now()),
        machine,
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        iterations: args.iterations,
        warmup: args.warmup,
        all_targets_met: results.iter().all(|r| r.warm_met && r.cold_met),
        fixtures: results,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the results")?
        );
    } else {
        print_table(&report);
    }
    Ok(())
}

fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1000.0)
}

fn print_table(r: &BenchReport) {
    println!(
        "SNP verification cost, {} build, {} ({} CPUs), {}",
        r.profile, r.machine.cpu_model, r.machine.nproc, r.date
    );
    println!(
        "medians of {} interleaved runs after {} warm-up runs; load average at start: {}",
        r.iterations, r.warmup, r.machine.loadavg
    );
    if r.profile == "debug" {
        println!("NOTE: debug build; measure with `cargo run --release --bin twi -- bench`");
    }
    for f in &r.fixtures {
        let mark = |met: bool| if met { "met" } else { "MISSED" };
        println!();
        println!("{}:", f.name);
        println!(
            "  warm verify+appraise / raw report ECDSA  = {:.3}  (target <= {}: {}; ratio of minimums {:.3})",
            f.warm_over_raw_ecdsa,
            f.warm_target,
            mark(f.warm_met),
            f.warm_over_raw_ecdsa_min
        );
        println!(
            "  cold verify+appraise / raw chain sigs    = {:.3}  (target <= {}: {}; ratio of minimums {:.3})",
            f.cold_over_raw_chain,
            f.cold_target,
            mark(f.cold_met),
            f.cold_over_raw_chain_min
        );
        for (what, s) in [
            ("raw report ECDSA P-384", &f.raw_ecdsa),
            ("warm verify + appraise", &f.warm),
            ("cold verify + appraise", &f.cold),
            ("raw chain (3 RSA-PSS + ECDSA)", &f.raw_chain),
        ] {
            println!(
                "    {what:<30} median {:>10}  min {:>10}  p90 {:>10}",
                us(s.median_ns),
                us(s.min_ns),
                us(s.p90_ns)
            );
        }
    }
}

//! `twi bench`: the cost of SNP and TDX verification against their raw signature floors, measured
//! in-process on the same inputs as the criterion benches (`twi_core::bench_support` holds the measured
//! closures).
//!
//! SNP, per fixture: warm (chain cached) verify + appraise over the report's raw ECDSA verification
//! (target ≤ 1.3), and cold (new verifier) verify + appraise over the raw cost of every signature of
//! the chain (target ≤ 1.2).
//! TDX, per fixture: warm (collateral, PCK chain and QE report cached) verify + appraise over the two
//! raw P-256 verifications a quote needs (target ≤ 1.5), and dcap-qvl's full verification of the same
//! quote and collateral over ours warm (target ≥ 3).
//! A missed target is printed, not hidden; the command still exits 0 because the figures, not a
//! pass/fail, are its output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use twi_core::bench_support::{
    sample, stats, DcapInputs, Fixture, Stats, TdxFixture, OAK_MILAN_V3, TDX_DQ_B0C06F_V4,
};

use super::{fmt_unix, unix_now};

/// Warm verify + appraise may cost at most this much more than the raw report ECDSA verification.
const WARM_TARGET: f64 = 1.3;
/// Cold verify + appraise may cost at most this much more than the raw signatures of the chain.
const COLD_TARGET: f64 = 1.2;
/// TDX warm verify + appraise may cost at most this much more than the quote's two raw P-256
/// verifications (quote and QE report signatures).
const TDX_WARM_TARGET: f64 = 1.5;
/// dcap-qvl's full verification must take at least this many times as long as ours warm.
const DCAP_TARGET: f64 = 3.0;

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
    /// The shared testdata folder, for the real vectors oak-milan-v3 and tdx/dq-b0c06f-v4 (default:
    /// the one beside the workspace, else ../shared/testdata; skipped when absent).
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
struct TdxFixtureResult {
    name: String,
    /// Both P-256 signatures of the quote (quote, QE report), keys pre-parsed: the floor.
    raw_ecdsa: Stats,
    /// The quote signature alone (the one the warm path still verifies).
    raw_quote_ecdsa: Stats,
    warm: Stats,
    cold: Stats,
    /// dcap-qvl 0.7.1's full verification of the same quote and collateral at the same time; absent
    /// when dcap-qvl does not accept the fixture (`dcap_qvl_error` says why).
    dcap_qvl: Option<Stats>,
    dcap_qvl_error: Option<String>,
    /// The targets apply to these ratios of medians.
    warm_over_raw_ecdsa: f64,
    dcap_qvl_over_warm: Option<f64>,
    /// Secondary: ratios of the minimums, warm over the quote signature alone, dcap-qvl over cold.
    warm_over_raw_ecdsa_min: f64,
    dcap_qvl_over_warm_min: Option<f64>,
    warm_over_raw_quote_ecdsa: f64,
    dcap_qvl_over_cold: Option<f64>,
    warm_target: f64,
    dcap_qvl_target: f64,
    warm_met: bool,
    dcap_qvl_met: bool,
}

#[derive(Serialize)]
struct BenchReport {
    date: String,
    machine: Machine,
    profile: &'static str,
    iterations: u32,
    warmup: u32,
    fixtures: Vec<FixtureResult>,
    tdx_fixtures: Vec<TdxFixtureResult>,
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

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::INFINITY
    } else {
        a as f64 / b as f64
    }
}

/// dcap-qvl's collateral struct, field by field from the fixture's inputs (the same files ours read).
fn dcap_collateral(d: &DcapInputs) -> dcap_qvl::QuoteCollateralV3 {
    dcap_qvl::QuoteCollateralV3 {
        pck_crl_issuer_chain: d.pck_crl_issuer_chain.clone(),
        root_ca_crl: d.root_ca_crl.clone(),
        pck_crl: d.pck_crl.clone(),
        tcb_info_issuer_chain: d.tcb_info_issuer_chain.clone(),
        tcb_info: d.tcb_info.clone(),
        tcb_info_signature: d.tcb_info_signature.clone(),
        qe_identity_issuer_chain: d.qe_identity_issuer_chain.clone(),
        qe_identity: d.qe_identity.clone(),
        qe_identity_signature: d.qe_identity_signature.clone(),
        pck_certificate_chain: None,
    }
}

/// (d) dcap-qvl's own full verification: `dcap_qvl::verify::verify` (Intel's root built in) for real
/// quotes, the same with the simulated root for simulated ones. Its status string on success.
fn dcap_verify(
    d: &DcapInputs,
    collateral: &dcap_qvl::QuoteCollateralV3,
) -> std::result::Result<String, String> {
    let r = match &d.root_ca_der {
        None => dcap_qvl::verify::verify(&d.quote, collateral, d.now_secs),
        Some(root) => dcap_qvl::verify::QuoteVerifier::new(root.clone())
            .verify(&d.quote, collateral, d.now_secs),
    };
    r.map(|v| v.status).map_err(|e| format!("{e:#}"))
}

fn measure_tdx(f: &TdxFixture, warmup: usize, iterations: usize) -> Result<TdxFixtureResult> {
    let warm_verifier = f
        .warm_verifier()
        .with_context(|| format!("{}: warm verifier", f.name))?;
    let collateral = dcap_collateral(&f.dcap);
    // dcap-qvl must accept the fixture, else timing it would measure an early failure.
    let dcap_error = match dcap_verify(&f.dcap, &collateral) {
        Ok(_) => None,
        Err(e) => {
            eprintln!("{}: dcap-qvl does not accept it ({e}); not timed", f.name);
            Some(e)
        }
    };
    let with_dcap = dcap_error.is_none();
    sample(warmup, 0, || f.raw_ecdsa());
    sample(warmup, 0, || f.raw_quote_ecdsa());
    sample(warmup, 0, || f.warm(&warm_verifier).is_ok());
    sample(warmup, 0, || f.cold().is_ok());
    if with_dcap {
        sample(warmup, 0, || dcap_verify(&f.dcap, &collateral).is_ok());
    }
    // Interleaved as for SNP: each iteration times each measurement once.
    let mut samples: [Vec<Duration>; 5] = Default::default();
    for _ in 0..iterations {
        let [raw_ecdsa, raw_quote, warm, cold, dcap] = &mut samples;
        raw_ecdsa.extend(sample(0, 1, || f.raw_ecdsa()));
        raw_quote.extend(sample(0, 1, || f.raw_quote_ecdsa()));
        warm.extend(sample(0, 1, || f.warm(&warm_verifier).is_ok()));
        cold.extend(sample(0, 1, || f.cold().is_ok()));
        if with_dcap {
            dcap.extend(sample(0, 1, || dcap_verify(&f.dcap, &collateral).is_ok()));
        }
    }
    let [raw_ecdsa, raw_quote_ecdsa, warm, cold, dcap] = samples.map(|s| stats(&s));
    let dcap = with_dcap.then_some(dcap);
    let warm_over = ratio(warm.median_ns, raw_ecdsa.median_ns);
    let dcap_over = dcap.map(|d| ratio(d.median_ns, warm.median_ns));
    Ok(TdxFixtureResult {
        name: f.name.clone(),
        warm_over_raw_ecdsa: warm_over,
        dcap_qvl_over_warm: dcap_over,
        warm_over_raw_ecdsa_min: ratio(warm.min_ns, raw_ecdsa.min_ns),
        dcap_qvl_over_warm_min: dcap.map(|d| ratio(d.min_ns, warm.min_ns)),
        warm_over_raw_quote_ecdsa: ratio(warm.median_ns, raw_quote_ecdsa.median_ns),
        dcap_qvl_over_cold: dcap.map(|d| ratio(d.median_ns, cold.median_ns)),
        raw_ecdsa,
        raw_quote_ecdsa,
        warm,
        cold,
        dcap_qvl: dcap,
        dcap_qvl_error: dcap_error,
        warm_target: TDX_WARM_TARGET,
        dcap_qvl_target: DCAP_TARGET,
        warm_met: warm_over <= TDX_WARM_TARGET,
        dcap_qvl_met: dcap_over.is_some_and(|r| r >= DCAP_TARGET),
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
    eprintln!("creating a simulated Intel TDX root set ...");
    let mut tdx_fixtures =
        vec![TdxFixture::simulated(&tmp.path().join("sim-tdx"), now)
            .context("simulated TDX fixture")?];
    match TdxFixture::from_vector(&testdata, &TDX_DQ_B0C06F_V4)
        .context("real TDX vector fixture")?
    {
        Some(f) => tdx_fixtures.push(f),
        None => eprintln!(
            "{} not found: measuring the simulated TDX quote only",
            testdata.join(TDX_DQ_B0C06F_V4.quote).display()
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
    let mut tdx_results = Vec::new();
    for f in &tdx_fixtures {
        eprintln!(
            "measuring {} ({iterations} runs per measurement) ...",
            f.name
        );
        tdx_results.push(measure_tdx(f, warmup, iterations)?);
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
        all_targets_met: results.iter().all(|r| r.warm_met && r.cold_met)
            && tdx_results.iter().all(|r| r.warm_met && r.dcap_qvl_met),
        fixtures: results,
        tdx_fixtures: tdx_results,
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
        "SNP and TDX verification cost, {} build, {} ({} CPUs), {}",
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
    for f in &r.tdx_fixtures {
        let mark = |met: bool| if met { "met" } else { "MISSED" };
        println!();
        println!("{} (TDX):", f.name);
        println!(
            "  warm verify+appraise / raw P-256 x2      = {:.3}  (target <= {}: {}; ratio of minimums {:.3}; over the quote signature alone {:.3})",
            f.warm_over_raw_ecdsa,
            f.warm_target,
            mark(f.warm_met),
            f.warm_over_raw_ecdsa_min,
            f.warm_over_raw_quote_ecdsa
        );
        match (f.dcap_qvl_over_warm, &f.dcap_qvl_error) {
            (Some(d), _) => println!(
                "  dcap-qvl full verify / ours warm         = {:.2}  (target >= {}: {}; ratio of minimums {:.2}; dcap-qvl / ours cold {:.2})",
                d,
                f.dcap_qvl_target,
                mark(f.dcap_qvl_met),
                f.dcap_qvl_over_warm_min.unwrap_or(f64::NAN),
                f.dcap_qvl_over_cold.unwrap_or(f64::NAN)
            ),
            (None, e) => println!(
                "  dcap-qvl full verify: not measured ({})",
                e.as_deref().unwrap_or("no result")
            ),
        }
        let mut rows = vec![
            ("raw P-256 x2 (quote + QE report)", &f.raw_ecdsa),
            ("raw P-256 quote signature only", &f.raw_quote_ecdsa),
            ("warm verify + appraise", &f.warm),
            ("cold verify + appraise", &f.cold),
        ];
        if let Some(d) = &f.dcap_qvl {
            rows.push(("dcap-qvl 0.7.1 full verify", d));
        }
        for (what, s) in rows {
            println!(
                "    {what:<33} median {:>10}  min {:>10}  p90 {:>10}",
                us(s.median_ns),
                us(s.min_ns),
                us(s.p90_ns)
            );
        }
    }
}

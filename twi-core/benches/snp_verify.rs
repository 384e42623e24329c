//! Criterion benches of SNP verification cost, in one run on the same inputs: a simulated Milan report
//! and chain (root set made in a temporary folder at start, RSA-4096 as AMD's) and, when
//! `shared/testdata` is present, the real vector oak-milan-v3 at its `as_of`.
//!
//! Per fixture: `raw_ecdsa` (the report signature alone), `warm` (verify with the chain cached +
//! appraise), `cold` (new verifier + appraise), `raw_chain` (every signature of chain and report).
//! The targets: warm/raw_ecdsa ≤ 1.3 and cold/raw_chain ≤ 1.2. The closures are
//! `twi_core::bench_support`'s, the same ones `twi bench` times. Run via `scripts/bench.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use twi_core::bench_support::{Fixture, OAK_MILAN_V3};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

fn fixtures() -> (tempfile::TempDir, Vec<Fixture>) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut out =
        vec![Fixture::simulated_milan(&dir.path().join("sim"), now)
            .expect("simulated Milan fixture")];
    match Fixture::from_vector(Path::new(TESTDATA), &OAK_MILAN_V3).expect("real vector fixture") {
        Some(f) => out.push(f),
        None => eprintln!(
            "{TESTDATA} has no {}: measuring the simulated evidence only",
            OAK_MILAN_V3.report
        ),
    }
    (dir, out)
}

fn snp_verify(c: &mut Criterion) {
    let (_dir, fixtures) = fixtures();
    for f in &fixtures {
        let warm = f.warm_verifier().expect("warm verifier");
        let mut g = c.benchmark_group(format!("snp_verify/{}", f.name));
        g.warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(5));
        g.bench_function("raw_ecdsa", |b| b.iter(|| black_box(f.raw_ecdsa())));
        g.bench_function("warm", |b| b.iter(|| black_box(f.warm(&warm).is_ok())));
        g.bench_function("cold", |b| b.iter(|| black_box(f.cold().is_ok())));
        g.bench_function("raw_chain", |b| b.iter(|| black_box(f.raw_chain())));
        g.finish();
    }
}

criterion_group!(benches, snp_verify);
criterion_main!(benches);

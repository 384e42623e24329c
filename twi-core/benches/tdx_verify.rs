//! Criterion benches of TDX verification cost, in one run on the same inputs: a simulated quote and
//! collateral (Intel-like root set made in a temporary folder at start) and, when `shared/testdata` is
//! present, the real vector tdx/dq-b0c06f-v4 at its `as_of`.
//!
//! Per fixture: `raw_ecdsa` (the quote's two P-256 signatures, quote and QE report, keys pre-parsed),
//! `raw_quote_ecdsa` (the quote signature alone), `warm` (verify with collateral, PCK chain and QE
//! report cached + appraise), `cold` (new verifier + appraise), `dcap_qvl` (dcap-qvl 0.7.1's full
//! verification of the same quote and collateral at the same time). The targets: warm/raw_ecdsa ≤ 1.5
//! and dcap_qvl/warm ≥ 3. The closures are `twi_core::bench_support`'s, the same ones `twi bench`
//! times. Run via `scripts/bench.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use twi_core::bench_support::{DcapInputs, TdxFixture, TDX_DQ_B0C06F_V4};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

fn fixtures() -> (tempfile::TempDir, Vec<TdxFixture>) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let mut out = vec![
        TdxFixture::simulated(&dir.path().join("sim-tdx"), now).expect("simulated TDX fixture")
    ];
    match TdxFixture::from_vector(Path::new(TESTDATA), &TDX_DQ_B0C06F_V4)
        .expect("real TDX vector fixture")
    {
        Some(f) => out.push(f),
        None => eprintln!(
            "{TESTDATA} has no {}: measuring the simulated quote only",
            TDX_DQ_B0C06F_V4.quote
        ),
    }
    (dir, out)
}

/// dcap-qvl's collateral struct from the same files (as `twi bench` builds it).
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

fn dcap_verify(d: &DcapInputs, c: &dcap_qvl::QuoteCollateralV3) -> bool {
    match &d.root_ca_der {
        None => dcap_qvl::verify::verify(&d.quote, c, d.now_secs).is_ok(),
        Some(root) => dcap_qvl::verify::QuoteVerifier::new(root.clone())
            .verify(&d.quote, c, d.now_secs)
            .is_ok(),
    }
}

fn tdx_verify(c: &mut Criterion) {
    let (_dir, fixtures) = fixtures();
    for f in &fixtures {
        let warm = f.warm_verifier().expect("warm verifier");
        let collateral = dcap_collateral(&f.dcap);
        let dcap_ok = dcap_verify(&f.dcap, &collateral);
        if !dcap_ok {
            eprintln!("{}: dcap-qvl does not accept it; not timed", f.name);
        }
        let mut g = c.benchmark_group(format!("tdx_verify/{}", f.name));
        g.warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(5));
        g.bench_function("raw_ecdsa", |b| b.iter(|| black_box(f.raw_ecdsa())));
        g.bench_function("raw_quote_ecdsa", |b| {
            b.iter(|| black_box(f.raw_quote_ecdsa()))
        });
        g.bench_function("warm", |b| b.iter(|| black_box(f.warm(&warm).is_ok())));
        g.bench_function("cold", |b| b.iter(|| black_box(f.cold().is_ok())));
        if dcap_ok {
            g.bench_function("dcap_qvl", |b| {
                b.iter(|| black_box(dcap_verify(&f.dcap, &collateral)))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, tdx_verify);
criterion_main!(benches);

//! The simulated SEV-SNP device against the real verifier: simulated evidence is accepted only when its
//! root is trusted as simulated, and every refusal the verifier makes on real evidence happens on
//! simulated evidence too.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::OnceLock;
use std::time::Instant;
use twi_core::sim::{self, GuestParams, InitOptions, SimEvidence, SimLayout, SimSnpDevice};
use twi_core::snp::{
    appraise, layout, AttestationReport, CertChain, Product, SnpPolicy, TcbParts, TrustAnchors,
    VerifiedSnp, Verifier,
};

/// 2025-06-15T15:06:40Z; every root set is created relative to this instant.
const NOW: u64 = 1_750_000_000;
const YEAR: u64 = 365 * 86_400;

struct Roots {
    _dir: tempfile::TempDir,
    layout: SimLayout,
}

/// Creates a root set (RSA-4096, as AMD) and reports how long it took.
fn make_roots(label: &str, opts: InitOptions) -> Roots {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let layout = sim::init(&dir.path().join(label), &opts).unwrap();
    eprintln!(
        "sim::init({label}, {:?}, rsa {}) took {:.1?}",
        opts.product,
        opts.rsa_bits,
        start.elapsed()
    );
    Roots { _dir: dir, layout }
}

/// One Milan root set for the whole test binary.
fn milan() -> &'static Roots {
    static R: OnceLock<Roots> = OnceLock::new();
    R.get_or_init(|| make_roots("milan", InitOptions::new(NOW)))
}

fn turin() -> &'static Roots {
    static R: OnceLock<Roots> = OnceLock::new();
    R.get_or_init(|| {
        let mut o = InitOptions::new(NOW);
        o.product = Product::Turin;
        o.tcb = Some(TcbParts {
            fmc: Some(2),
            bootloader: 1,
            tee: 0,
            snp: 3,
            microcode: 72,
        });
        make_roots("turin", o)
    })
}

/// A Genoa set whose VCEK expired a day before NOW.
fn expired_genoa() -> &'static Roots {
    static R: OnceLock<Roots> = OnceLock::new();
    R.get_or_init(|| {
        let mut o = InitOptions::new(NOW);
        o.product = Product::Genoa;
        o.vcek_not_before = Some(NOW - 2 * YEAR);
        o.vcek_not_after = Some(NOW - 86_400);
        make_roots("genoa-expired", o)
    })
}

fn sim_anchors(roots: &Roots) -> TrustAnchors {
    let mut anchors = TrustAnchors::amd().without_amd();
    anchors
        .add_root_pem(&std::fs::read(&roots.layout.ark_pem).unwrap(), true)
        .unwrap();
    anchors
}

fn evidence(roots: &Roots, report_data: &[u8; 64], guest: &GuestParams) -> SimEvidence {
    SimSnpDevice::open(&roots.layout.dir)
        .unwrap()
        .report(report_data, guest)
        .unwrap()
}

fn verify(
    anchors: TrustAnchors,
    ev: &SimEvidence,
    now: u64,
) -> Result<VerifiedSnp, twi_core::Error> {
    let report = AttestationReport::parse(&ev.report)?;
    let chain = CertChain::from_cert_table(&ev.cert_table)?;
    Verifier::new(anchors).verify(&report, &chain, i64::try_from(now).unwrap())
}

fn category(r: Result<VerifiedSnp, twi_core::Error>) -> &'static str {
    match r {
        Ok(_) => "accepted",
        Err(e) => e.category(),
    }
}

#[test]
fn simulated_evidence_verifies_to_simulated_root() {
    let roots = milan();
    let ev = evidence(roots, &[0x42; 64], &GuestParams::default());
    let v = verify(sim_anchors(roots), &ev, NOW).unwrap();
    assert!(
        v.simulated(),
        "evidence chaining to a simulated root must say so"
    );
    assert_eq!(v.product(), Product::Milan);
    assert_eq!(v.reported_tcb(), InitOptions::default_tcb(Product::Milan));
    assert_eq!(v.report().report_data(), &[0x42; 64]);
    assert_eq!(v.report().measurement(), &sim::default_measurement());
    appraise(&v, &SnpPolicy::default()).unwrap();
}

#[test]
fn cert_table_agrees_with_verifier_encoding() {
    let roots = milan();
    let ev = evidence(roots, &[0; 64], &GuestParams::default());
    let chain = CertChain::from_cert_table(&ev.cert_table).unwrap();
    let dev = SimSnpDevice::open(&roots.layout.dir).unwrap();
    assert_eq!(chain.vek.as_deref(), Some(dev.vcek_der()));
    assert_eq!(chain.ask.as_deref(), Some(dev.ask_der()));
    assert_eq!(chain.ark.as_deref(), Some(dev.ark_der()));
    assert_eq!(chain.to_cert_table(), ev.cert_table);
}

#[test]
fn amd_roots_refuse_simulated_evidence() {
    let ev = evidence(milan(), &[0; 64], &GuestParams::default());
    assert_eq!(
        category(verify(TrustAnchors::amd(), &ev, NOW)),
        "untrusted-root"
    );
}

#[test]
fn debug_guest_is_verified_but_refused_by_policy() {
    let roots = milan();
    let guest = GuestParams {
        policy: 0x30000 | layout::policy_bits::DEBUG,
        ..GuestParams::default()
    };
    let v = verify(sim_anchors(roots), &evidence(roots, &[0; 64], &guest), NOW).unwrap();
    let err = appraise(&v, &SnpPolicy::default()).unwrap_err();
    assert_eq!(err.category(), "policy-debug", "{err}");
}

#[test]
fn flipped_signed_byte_breaks_signature() {
    let roots = milan();
    let mut ev = evidence(roots, &[0; 64], &GuestParams::default());
    assert_eq!(category(verify(sim_anchors(roots), &ev, NOW)), "accepted");
    ev.report[layout::REPORT_DATA + 5] ^= 0x01;
    assert_eq!(category(verify(sim_anchors(roots), &ev, NOW)), "signature");
}

#[test]
fn expired_vcek_is_refused() {
    let roots = expired_genoa();
    let ev = evidence(roots, &[0; 64], &GuestParams::default());
    assert_eq!(
        category(verify(sim_anchors(roots), &ev, NOW)),
        "cert-validity"
    );
    // The same chain was fine while the VCEK was valid: only the validity failed.
    assert_eq!(
        category(verify(sim_anchors(roots), &ev, NOW - YEAR)),
        "accepted"
    );
}

#[test]
fn default_vcek_expires_after_seven_years() {
    let roots = milan();
    let ev = evidence(roots, &[0; 64], &GuestParams::default());
    assert_eq!(
        category(verify(sim_anchors(roots), &ev, NOW + 7 * YEAR - 60)),
        "accepted"
    );
    assert_eq!(
        category(verify(sim_anchors(roots), &ev, NOW + 7 * YEAR + 60)),
        "cert-validity"
    );
}

#[test]
fn two_devices_have_different_report_ids() {
    let roots = milan();
    let a = evidence(roots, &[0; 64], &GuestParams::default());
    let b = evidence(roots, &[0; 64], &GuestParams::default());
    let ra = AttestationReport::parse(&a.report).unwrap();
    let rb = AttestationReport::parse(&b.report).unwrap();
    assert_ne!(ra.report_id(), rb.report_id());
    // Both are otherwise equally valid evidence from the same simulated chip.
    assert_eq!(ra.chip_id(), rb.chip_id());
}

#[test]
fn every_report_version_verifies() {
    let roots = milan();
    for version in [2, 3, 5] {
        let guest = GuestParams {
            version,
            ..GuestParams::default()
        };
        let v = verify(sim_anchors(roots), &evidence(roots, &[7; 64], &guest), NOW).unwrap();
        assert_eq!(v.report().version(), version);
    }
}

#[test]
fn turin_round_trip() {
    let roots = turin();
    let ev = evidence(roots, &[0x11; 64], &GuestParams::default());
    let v = verify(sim_anchors(roots), &ev, NOW).unwrap();
    assert!(v.simulated());
    assert_eq!(v.product(), Product::Turin);
    assert_eq!(
        v.reported_tcb(),
        TcbParts {
            fmc: Some(2),
            bootloader: 1,
            tee: 0,
            snp: 3,
            microcode: 72
        }
    );
    appraise(&v, &SnpPolicy::default()).unwrap();
    // A Turin root does not anchor a Milan chain.
    let milan_ev = evidence(milan(), &[0; 64], &GuestParams::default());
    assert_eq!(
        category(verify(sim_anchors(roots), &milan_ev, NOW)),
        "untrusted-root"
    );
}

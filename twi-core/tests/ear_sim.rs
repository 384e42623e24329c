//! EARs for simulated SEV-SNP: accepted (its root was trusted as simulated) but never affirming, and
//! marked simulated, because a simulated root proves nothing about hardware.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use twi_core::ear::{self, from_snp, tv, EarIssuer, PolicyId, SnpOutcome, Status};
use twi_core::sim::{self, GuestParams, InitOptions, SimSnpDevice};
use twi_core::snp::{AttestationReport, CertChain, SnpPolicy, TrustAnchors, Verifier};

const NOW: u64 = 1_750_000_000;

#[test]
fn simulated_evidence_yields_a_warning_marked_simulated() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = InitOptions::new(NOW);
    opts.rsa_bits = 2048;
    let layout = sim::init(&dir.path().join("roots"), &opts).unwrap();
    let ev = SimSnpDevice::open(&layout.dir)
        .unwrap()
        .report(&[0x33; 64], &GuestParams::default())
        .unwrap();
    let mut anchors = TrustAnchors::amd().without_amd();
    anchors
        .add_root_pem(&std::fs::read(&layout.ark_pem).unwrap(), true)
        .unwrap();
    let report = AttestationReport::parse(&ev.report).unwrap();
    let chain = CertChain::from_cert_table(&ev.cert_table).unwrap();
    let now = i64::try_from(NOW).unwrap();
    let v = Verifier::new(anchors).verify(&report, &chain, now).unwrap();
    let policy = SnpPolicy {
        allowed_measurements: vec![sim::default_measurement()],
        ..SnpPolicy::default()
    };
    let e = from_snp(
        &EarIssuer::new("twi-server-nodeattestor@0.1.0", 60),
        SnpOutcome::Verified {
            verified: &v,
            policy: &policy,
            expected_report_data: &[0x33; 64],
            instance_key_spki: b"spki",
        },
        &[1; 32],
        Some("spiffe://example.org/spire/agent/twi_snp/sim-snp/00"),
        &PolicyId::new("twi_snp", "1", &"00".repeat(32)).unwrap(),
        now,
    );
    let a = &e.submods["sev-snp"];
    assert_eq!(a.simulated, Some(true));
    assert_eq!(a.trust_vector.hardware, tv::NO_CLAIM);
    assert_eq!(a.trust_vector.executables, tv::APPROVED_BOOT);
    assert_eq!(a.reason, None, "accepted");
    assert_eq!((e.status, a.status), (Status::Warning, Status::Warning));
    assert!(!e.is_affirming());
    let key = ear::VerifierKey::generate(&mut rand_core::OsRng);
    let back = ear::verify(&ear::sign(&e, &key).unwrap(), &key.jwks(), now).unwrap();
    assert_eq!(back.submods["sev-snp"].simulated, Some(true));
}

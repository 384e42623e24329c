//! EARs from SEV-SNP outcomes on the real evidence of shared/testdata: accepted, refused by each stage,
//! and signed results that a relying party verifies offline at the attestation's time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use twi_core::ear::{
    self, from_snp, tv, EarIssuer, PolicyId, Refusal, SnpOutcome, Status, VerifierKey,
};
use twi_core::snp::{AttestationReport, CertChain, SnpPolicy, TrustAnchors, VerifiedSnp, Verifier};
use twi_core::ErrorClass;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");
const SPKI: &[u8] = b"instance key SubjectPublicKeyInfo DER (any bytes: only hashed here)";
const AGENT: &str = "spiffe://example.org/spire/agent/twi_snp/snp/0123";

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{TESTDATA}/{rel}")).unwrap()
}

fn rfc3339(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

struct Case {
    report: AttestationReport,
    chain: CertChain,
    now: i64,
}

fn case(dir: &str, product: &str, as_of: &str) -> Case {
    let mut chain = CertChain::default();
    for f in [
        format!("snp/{dir}/vcek.der"),
        format!("vendor-roots/amd/{product}/ask.pem"),
        format!("vendor-roots/amd/{product}/ark.pem"),
    ] {
        chain.add_pem_or_der(&read(&f)).unwrap();
    }
    Case {
        report: AttestationReport::parse(&read(&format!("snp/{dir}/report.bin"))).unwrap(),
        chain,
        now: rfc3339(as_of),
    }
}

/// The accepted Turin v5 report of the manifest (snp-oak-turin-v5), genuine AMD hardware.
fn turin() -> Case {
    case("oak-turin-v5", "turin", "2025-07-18T00:00:00Z")
}

/// The genuine debug guest (snp-gsg-milan-v2-debug).
fn milan_debug() -> Case {
    case("gsg-milan-v2-debug", "milan", "2022-09-25T00:00:00Z")
}

fn verified(c: &Case) -> VerifiedSnp {
    Verifier::new(TrustAnchors::amd())
        .verify(&c.report, &c.chain, c.now)
        .unwrap()
}

fn issuer() -> EarIssuer {
    EarIssuer::new("twi-server-nodeattestor@0.1.0", 600)
}

fn policy_id() -> PolicyId {
    PolicyId::new("twi_snp", "1", &"0f".repeat(32)).unwrap()
}

const NONCE: [u8; 32] = [0x5a; 32];

#[test]
fn accepted_genuine_snp_is_affirming_and_verifies_offline() {
    let c = turin();
    let v = verified(&c);
    let policy = SnpPolicy {
        allowed_measurements: vec![*c.report.measurement()],
        minimum_tcb: Some(v.reported_tcb()),
        ..SnpPolicy::default()
    };
    let out = SnpOutcome::Verified {
        verified: &v,
        policy: &policy,
        expected_report_data: c.report.report_data(),
        instance_key_spki: SPKI,
    };
    let e = from_snp(&issuer(), out, &NONCE, Some(AGENT), &policy_id(), c.now);
    assert_eq!(e.status, Status::Affirming);
    assert_eq!((e.iat, e.exp), (c.now, c.now + 600));
    assert_eq!(e.verifier_id.build, "twi-server-nodeattestor@0.1.0");
    assert_eq!(e.agent_id.as_deref(), Some(AGENT));
    let a = &e.submods[ear::SNP_SUBMOD];
    assert_eq!(a.status, Status::Affirming);
    assert_eq!(a.trust_vector.hardware, tv::GENUINE_HW);
    assert_eq!(a.trust_vector.instance_identity, tv::RECOGNIZED_INSTANCE);
    assert_eq!(a.trust_vector.executables, tv::APPROVED_BOOT);
    assert_eq!(a.trust_vector.configuration, tv::APPROVED_CONFIG);
    assert_eq!(a.policy_ids, vec![policy_id().uri()]);
    assert_eq!(a.nonce.as_deref(), Some(B64URL.encode(NONCE).as_str()));
    assert_eq!(
        a.evidence_sha256.as_deref(),
        Some(hex::encode(Sha256::digest(read("snp/oak-turin-v5/report.bin"))).as_str())
    );
    assert_eq!(
        a.key_binding.as_deref(),
        Some(hex::encode(Sha256::digest(SPKI)).as_str())
    );
    assert_eq!(a.tcb_status.as_deref(), Some("meets-minimum"));
    assert_eq!(a.simulated, Some(false));
    assert_eq!(a.reason, None);

    // Signed, it verifies at the attestation's time (years ago), and not after its freshness.
    let key = VerifierKey::generate(&mut OsRng);
    let jws = ear::sign(&e, &key).unwrap();
    let back = ear::verify(&jws, &key.jwks(), c.now + 1).unwrap();
    assert!(back.is_affirming());
    assert_eq!(back, e);
    assert!(matches!(
        ear::verify(&jws, &key.jwks(), c.now + 600),
        Err(ear::Error::Expired { .. })
    ));
    // Raw evidence is never in the token.
    let payload =
        String::from_utf8(B64URL.decode(jws.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert!(!payload.contains(&hex::encode(c.report.measurement())));
    assert!(!payload.contains(&B64URL.encode(c.report.as_bytes())));
}

#[test]
fn unpinned_measurement_and_tcb_are_said_to_be_unchecked() {
    let c = turin();
    let v = verified(&c);
    let policy = SnpPolicy::default();
    let out = SnpOutcome::Verified {
        verified: &v,
        policy: &policy,
        expected_report_data: c.report.report_data(),
        instance_key_spki: SPKI,
    };
    let e = from_snp(&issuer(), out, &NONCE, Some(AGENT), &policy_id(), c.now);
    let a = &e.submods["sev-snp"];
    assert_eq!(a.trust_vector.executables, tv::NO_CLAIM);
    assert_eq!(a.tcb_status.as_deref(), Some("not-evaluated"));
    // What was checked is trustworthy; the unchecked claim is "no claim", not a failure.
    assert_eq!(e.status, Status::Affirming);
}

#[test]
fn refused_binding_and_policy_are_contraindicated_with_their_reason() {
    let c = turin();
    let v = verified(&c);
    let mut wrong = *c.report.report_data();
    wrong[0] ^= 1;
    let policy = SnpPolicy::default();
    let e = from_snp(
        &issuer(),
        SnpOutcome::Verified {
            verified: &v,
            policy: &policy,
            expected_report_data: &wrong,
            instance_key_spki: SPKI,
        },
        &NONCE,
        Some(AGENT),
        &policy_id(),
        c.now,
    );
    let a = &e.submods["sev-snp"];
    assert_eq!(
        (e.status, a.status),
        (Status::Contraindicated, Status::Contraindicated)
    );
    assert_eq!(a.reason.as_deref(), Some("nonce"));
    assert_eq!(a.trust_vector.instance_identity, tv::CRYPTO_FAILED);
    assert_eq!(
        a.trust_vector.hardware,
        tv::GENUINE_HW,
        "the chain did verify"
    );
    assert_eq!(a.key_binding, None, "no binding was established");

    // A policy pinning another measurement and a higher TCB: refused, and the vector says which.
    let mut min = v.reported_tcb();
    min.microcode += 1;
    let strict = SnpPolicy {
        allowed_measurements: vec![[0x11; 48]],
        minimum_tcb: Some(min),
        allowed_vmpls: vec![1],
        ..SnpPolicy::default()
    };
    let e = from_snp(
        &issuer(),
        SnpOutcome::Verified {
            verified: &v,
            policy: &strict,
            expected_report_data: c.report.report_data(),
            instance_key_spki: SPKI,
        },
        &NONCE,
        Some(AGENT),
        &policy_id(),
        c.now,
    );
    let a = &e.submods["sev-snp"];
    assert_eq!(e.status, Status::Contraindicated);
    assert_eq!(a.reason.as_deref(), Some("policy"));
    assert_eq!(a.trust_vector.hardware, tv::UNSAFE_HW);
    assert_eq!(a.trust_vector.executables, tv::UNRECOGNIZED_RT);
    assert_eq!(a.trust_vector.configuration, tv::UNSUPPORTABLE_CONFIG);
    assert_eq!(a.tcb_status.as_deref(), Some("below-minimum"));
    assert!(a.key_binding.is_some(), "the binding itself held");

    // Signed refusals verify too: a relying party can prove the server refused.
    let key = VerifierKey::generate(&mut OsRng);
    let back = ear::verify(&ear::sign(&e, &key).unwrap(), &key.jwks(), c.now).unwrap();
    assert!(!back.is_affirming());
    assert_eq!(back.submods["sev-snp"].reason.as_deref(), Some("policy"));
}

#[test]
fn debug_guest_is_contraindicated_by_default_and_a_warning_when_allowed() {
    let c = milan_debug();
    let v = verified(&c);
    let run = |policy: &SnpPolicy| {
        from_snp(
            &issuer(),
            SnpOutcome::Verified {
                verified: &v,
                policy,
                expected_report_data: c.report.report_data(),
                instance_key_spki: SPKI,
            },
            &NONCE,
            None,
            &policy_id(),
            c.now,
        )
    };
    let e = run(&SnpPolicy::default());
    assert_eq!(e.status, Status::Contraindicated);
    assert_eq!(e.submods["sev-snp"].reason.as_deref(), Some("policy-debug"));
    assert_eq!(
        e.submods["sev-snp"].trust_vector.configuration,
        tv::UNSUPPORTABLE_CONFIG
    );
    assert_eq!(e.agent_id, None);

    let e = run(&SnpPolicy {
        allow_debug: true,
        ..SnpPolicy::default()
    });
    assert_eq!(
        e.status,
        Status::Warning,
        "accepted, but the host can read the guest"
    );
    assert_eq!(
        e.submods["sev-snp"].trust_vector.configuration,
        tv::UNSAFE_CONFIG
    );
    assert_eq!(e.submods["sev-snp"].reason, None);
}

#[test]
fn verification_failures_map_to_hardware_claims() {
    let c = turin();
    let check = |e: &twi_core::Error, want_category: &str, want_hw: i8| {
        assert_eq!(e.category(), want_category, "{e}");
        let digest: [u8; 32] = Sha256::digest(c.report.as_bytes()).into();
        let ear = from_snp(
            &issuer(),
            SnpOutcome::Refused(Refusal::from_error(e, Some(digest))),
            &NONCE,
            None,
            &policy_id(),
            c.now,
        );
        let a = &ear.submods["sev-snp"];
        assert_eq!(ear.status, Status::Contraindicated, "{want_category}");
        assert_eq!(a.trust_vector.hardware, want_hw, "{want_category}");
        assert_eq!(a.reason.as_deref(), Some(want_category));
        assert_eq!(
            a.evidence_sha256.as_deref(),
            Some(hex::encode(digest).as_str())
        );
        assert_eq!((a.key_binding.as_ref(), a.simulated), (None, None));
    };

    // After the VCEK's validity: cert-validity → contraindicated hardware.
    let later = Verifier::new(TrustAnchors::amd())
        .verify(&c.report, &c.chain, c.now + 20 * 365 * 86_400)
        .unwrap_err();
    check(&later, "cert-validity", tv::CONTRAINDICATED_HW);

    // No AMD root trusted: untrusted-root → unrecognised hardware.
    let mut anchors = TrustAnchors::amd().without_amd();
    anchors
        .add_root_pem(&read("vendor-roots/amd/milan/ark.pem"), false)
        .unwrap();
    let untrusted = Verifier::new(anchors)
        .verify(&c.report, &c.chain, c.now)
        .unwrap_err();
    check(&untrusted, "untrusted-root", tv::UNRECOGNIZED_HW);

    // A flipped bit in the signed part: signature → cryptographic failure.
    let mut bytes = c.report.as_bytes().to_vec();
    bytes[0x90] ^= 1;
    let flipped = AttestationReport::parse(&bytes).unwrap();
    let bad = Verifier::new(TrustAnchors::amd())
        .verify(&flipped, &c.chain, c.now)
        .unwrap_err();
    check(&bad, "signature", tv::CRYPTO_FAILED);
}

#[test]
fn malformed_unavailable_and_internal_make_no_claim() {
    for (class, want) in [
        (ErrorClass::Malformed, tv::UNEXPECTED_EVIDENCE),
        (ErrorClass::Unavailable, tv::NO_CLAIM),
        (ErrorClass::Internal, tv::VERIFIER_MALFUNCTION),
    ] {
        let e = from_snp(
            &issuer(),
            SnpOutcome::Refused(Refusal::new("x", class, None)),
            &[],
            None,
            &policy_id(),
            1,
        );
        let a = &e.submods["sev-snp"];
        assert_eq!(e.status, Status::None, "{class:?}");
        assert_eq!(a.trust_vector, ear::TrustVector::all(want), "{class:?}");
        assert_eq!(a.nonce, None, "no challenge was sent");
        assert_eq!(a.reason.as_deref(), Some("x"));
    }
    // The server's own refusal before verification: a bad key proof.
    let e = from_snp(
        &issuer(),
        SnpOutcome::Refused(Refusal::new("key-proof", ErrorClass::Refused, None)),
        &NONCE,
        None,
        &policy_id(),
        1,
    );
    let a = &e.submods["sev-snp"];
    assert_eq!(e.status, Status::Contraindicated);
    assert_eq!(a.trust_vector.instance_identity, tv::CRYPTO_FAILED);
    assert_eq!(
        a.trust_vector.hardware,
        tv::NO_CLAIM,
        "nothing was verified yet"
    );
}

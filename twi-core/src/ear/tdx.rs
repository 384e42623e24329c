//! From an Intel TDX attestation's outcome to an EAR, for accepted and refused attestations alike
//! (the TDX counterpart of [`super::from_snp`]; one `"tdx"` submod).
//!
//! The trustworthiness vector says only what was checked (AR4SI claim values, [`super::tv`]):
//!
//! | claim | accepted | refused |
//! |---|---|---|
//! | hardware | 2 genuine (chain to the pinned Intel root, TCB status UpToDate); 32 when policy accepted a platform Intel rates below UpToDate (SWHardeningNeeded, ConfigurationNeeded, OutOfDate, relaunch advised); 96 Revoked; 0 when the root is simulated (it proves no hardware) | 99 quote/QE/collateral signature or binding failed, 97 untrusted root or a TCB Intel's collateral does not know, 96 revoked or expired certificate/collateral, 32 TCB status or advisories refused by policy |
//! | instance-identity | 2 when REPORTDATA was checked against the relying party's expectation; 0 when no expectation was given (nothing binds the quote to this attestation) | 99 REPORTDATA or key proof wrong |
//! | executables | 3 approved boot when MRTD or an RTMR is pinned by policy, else 0 (not checked) | 33 MRTD or an RTMR not allowed |
//! | configuration | 2 approved; 32 when policy allowed DEBUG and the TD has it | 96 DEBUG, TD attributes, XFAM, MRCONFIGID or MROWNER(CONFIG) refused |
//!
//! Project claims: `tcb-status` is Intel's TCB status of the platform (`UpToDate`, `OutOfDate`, …, as in
//! the TCB info) and `advisory-ids` the Intel security advisories that apply to its TCB level.
//! Status as for SEV-SNP: refused → contraindicated; malformed → none with "unexpected evidence";
//! missing or expired collateral → none; our own fault → none with "verifier malfunction"; accepted →
//! the worst tier of the vector, at least warning when the root is simulated.

use sha2::{Digest, Sha256};

use super::claims::{tv, Appraisal, Ear, PolicyId, Status, TrustVector};
use super::snp::{empty_appraisal, single_submod_ear, EarIssuer, Refusal};
use crate::error::{
    ErrorClass, Violation, DEBUG_POLICY_FIELD, TCB_STATUS_FIELD, TD_ATTRIBUTES_FIELD,
};
use crate::tdx::{appraise, check_report_data, TcbStatus, TdxPolicy, VerifiedTdx};

/// The `submods` key of the TDX appraisal.
pub const TDX_SUBMOD: &str = "tdx";

/// What the verifier knows at its decision point.
#[derive(Clone, Copy, Debug)]
pub enum TdxOutcome<'a> {
    /// Verification to a trust anchor succeeded. [`from_tdx`] itself checks REPORTDATA and appraises
    /// against `policy`, so the EAR never claims more than was checked; pass this even when the binding
    /// or the policy then refused the quote.
    Verified {
        verified: &'a VerifiedTdx,
        policy: &'a TdxPolicy,
        /// What REPORTDATA must be. `None`: the caller has no expectation (an offline check of a quote
        /// found on disk), and the EAR makes no instance-identity claim.
        expected_report_data: Option<&'a [u8; 64]>,
        /// The instance key's SubjectPublicKeyInfo (DER) that `expected_report_data` binds, when there
        /// is one; its digest becomes the key-binding claim once REPORTDATA matched.
        instance_key_spki: Option<&'a [u8]>,
    },
    /// No verified quote: parse, chain, collateral or signature failed.
    Refused(Refusal<'a>),
}

/// The EAR of one TDX attestation at `now` (Unix seconds). `nonce` is the challenge the verifier sent
/// (empty if none); `agent_id` the agent's SPIFFE ID when known.
pub fn from_tdx(
    issuer: &EarIssuer,
    outcome: TdxOutcome<'_>,
    nonce: &[u8],
    agent_id: Option<&str>,
    policy_id: &PolicyId,
    now: i64,
) -> Ear {
    let appraisal = match outcome {
        TdxOutcome::Verified {
            verified,
            policy,
            expected_report_data,
            instance_key_spki,
        } => verified_appraisal(verified, policy, expected_report_data, instance_key_spki),
        TdxOutcome::Refused(r) => refused_appraisal(&r),
    };
    single_submod_ear(
        issuer, TDX_SUBMOD, appraisal, nonce, agent_id, policy_id, now,
    )
}

/// Policy fields about the TD's configuration (not its code, not the platform).
const CONFIG_FIELDS: [&str; 6] = [
    DEBUG_POLICY_FIELD,
    TD_ATTRIBUTES_FIELD,
    "xfam",
    "mrconfigid",
    "mrowner",
    "mrownerconfig",
];

/// Policy fields about the TD's boot chain.
const EXECUTABLE_FIELDS: [&str; 5] = ["mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"];

/// The hardware claim Intel's TCB status supports for a genuine platform.
fn hardware_of(status: TcbStatus) -> i8 {
    match status {
        TcbStatus::UpToDate => tv::GENUINE_HW,
        TcbStatus::Revoked => tv::CONTRAINDICATED_HW,
        // Genuine, with known vulnerabilities or missing mitigations.
        _ => tv::UNSAFE_HW,
    }
}

/// The vector claims that policy violations decide, given that verification passed.
fn apply_violations(v: &mut TrustVector, violations: &[Violation]) {
    let violated = |f: &str| violations.iter().any(|x| x.field == f);
    if (violated(TCB_STATUS_FIELD) || violated("advisory_ids")) && v.hardware < tv::UNSAFE_HW {
        v.hardware = tv::UNSAFE_HW;
    }
    if EXECUTABLE_FIELDS.iter().any(|f| violated(f)) {
        v.executables = tv::UNRECOGNIZED_RT;
    }
    if CONFIG_FIELDS.iter().any(|f| violated(f)) {
        v.configuration = tv::UNSUPPORTABLE_CONFIG;
    }
}

fn verified_appraisal(
    verified: &VerifiedTdx,
    policy: &TdxPolicy,
    expected_report_data: Option<&[u8; 64]>,
    instance_key_spki: Option<&[u8]>,
) -> Appraisal {
    let quote = verified.quote();
    let simulated = verified.simulated();
    let bound = expected_report_data.map(|want| check_report_data(quote, want));
    let appraised = appraise(verified, policy);

    let mut v = TrustVector {
        hardware: if simulated {
            tv::NO_CLAIM
        } else {
            hardware_of(verified.tcb_status())
        },
        instance_identity: match &bound {
            None => tv::NO_CLAIM,
            Some(Ok(())) => tv::RECOGNIZED_INSTANCE,
            Some(Err(_)) => tv::CRYPTO_FAILED,
        },
        executables: if policy.mrtd.is_empty() && policy.rtmr.iter().all(Vec::is_empty) {
            tv::NO_CLAIM
        } else {
            tv::APPROVED_BOOT
        },
        configuration: if quote.td_report().debug() {
            // Only reachable as accepted when the policy allowed it: accepted, but exposed.
            tv::UNSAFE_CONFIG
        } else {
            tv::APPROVED_CONFIG
        },
    };
    let violations: &[Violation] = match &appraised {
        Err(crate::Error::Policy { violations }) => violations,
        _ => &[],
    };
    apply_violations(&mut v, violations);
    if simulated {
        // A simulated platform's TCB status is whatever the simulated collateral says.
        v.hardware = tv::NO_CLAIM;
    }

    let refusal = match (&bound, &appraised) {
        (Some(Err(e)), _) | (_, Err(e)) => Some(e.category()),
        _ => None,
    };
    let status = match refusal {
        Some(_) => Status::Contraindicated,
        None if simulated => v.worst().max(Status::Warning),
        None => v.worst(),
    };
    let mut a = empty_appraisal(status, v);
    a.evidence_sha256 = Some(hex::encode(Sha256::digest(quote.as_bytes())));
    a.tcb_status = Some(verified.tcb_status().as_str().to_owned());
    a.advisory_ids = verified.advisory_ids().to_vec();
    a.key_binding = match (&bound, instance_key_spki) {
        (Some(Ok(())), Some(spki)) => Some(hex::encode(Sha256::digest(spki))),
        _ => None,
    };
    a.simulated = Some(simulated);
    a.reason = refusal.map(str::to_owned);
    a
}

fn refused_appraisal(r: &Refusal<'_>) -> Appraisal {
    let (status, v) = match r.class {
        ErrorClass::Malformed => (Status::None, TrustVector::all(tv::UNEXPECTED_EVIDENCE)),
        ErrorClass::Unavailable => (Status::None, TrustVector::all(tv::NO_CLAIM)),
        ErrorClass::Refused => (Status::Contraindicated, refused_vector(r)),
        _ => (Status::None, TrustVector::all(tv::VERIFIER_MALFUNCTION)),
    };
    let mut a = empty_appraisal(status, v);
    a.evidence_sha256 = r.evidence_sha256.map(hex::encode);
    if let Some(t) = r.violations.iter().find(|x| x.field == TCB_STATUS_FIELD) {
        a.tcb_status = Some(t.got.clone());
    }
    a.reason = Some(r.category.to_owned());
    a
}

/// The claims a refused attestation still supports, by the stage its category shows it reached.
fn refused_vector(r: &Refusal<'_>) -> TrustVector {
    let mut v = TrustVector::default();
    match r.category {
        "signature"
        | "cert-chain"
        | "key-mismatch"
        | "qe-binding"
        | "qe-identity"
        | "collateral-signature" => v.hardware = tv::CRYPTO_FAILED,
        // The chain ends in a root we do not trust, or the platform's TCB is not one Intel's
        // collateral describes (or the collateral is for another platform).
        "untrusted-root" | "tcb-unsupported" | "collateral-mismatch" => {
            v.hardware = tv::UNRECOGNIZED_HW
        }
        "cert-validity" | "revoked" | "collateral-expired" => v.hardware = tv::CONTRAINDICATED_HW,
        // Checked after verification, but the root may be simulated: no hardware claim.
        "nonce" | "key-proof" => v.instance_identity = tv::CRYPTO_FAILED,
        "policy" | "policy-debug" | "tcb-out-of-date" | "td-attributes" => {
            apply_violations(&mut v, r.violations);
        }
        _ => {}
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::ear::{sign, verify, VerifierKey};
    use crate::tdx::{Collateral, IntelRoots, Quote, TdxVerifier};

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    fn at(s: &str) -> i64 {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    }

    fn verified(name: &str, as_of: &str) -> VerifiedTdx {
        let q = Quote::parse(&std::fs::read(format!("{TESTDATA}/tdx/{name}/quote.bin")).unwrap())
            .unwrap();
        let c = Collateral::from_dir(format!("{TESTDATA}/tdx/{name}/collateral")).unwrap();
        TdxVerifier::new(IntelRoots::intel())
            .verify(&q, &c, at(as_of))
            .unwrap()
    }

    fn issuer() -> EarIssuer {
        EarIssuer::new("twi-test@0", 600)
    }

    fn policy_id() -> PolicyId {
        PolicyId::new("twi_tdx", "1", &"0e".repeat(32)).unwrap()
    }

    fn submod(e: &Ear) -> &Appraisal {
        assert_eq!(e.submods.keys().collect::<Vec<_>>(), [TDX_SUBMOD]);
        &e.submods[TDX_SUBMOD]
    }

    #[test]
    fn accepted_genuine_td_is_affirming_with_intel_tcb_claims() {
        let now = at("2025-07-01T00:00:00Z");
        let v = verified("dq-b0c06f-v4", "2025-07-01T00:00:00Z");
        let rd = *v.quote().report_data();
        let spki = b"instance key SPKI";
        let e = from_tdx(
            &issuer(),
            TdxOutcome::Verified {
                verified: &v,
                policy: &TdxPolicy::default(),
                expected_report_data: Some(&rd),
                instance_key_spki: Some(spki),
            },
            &[7; 32],
            Some("spiffe://x/agent"),
            &policy_id(),
            now,
        );
        e.check_structure().unwrap();
        let a = submod(&e);
        assert_eq!((e.status, a.status), (Status::Affirming, Status::Affirming));
        assert_eq!(
            a.trust_vector,
            TrustVector {
                instance_identity: tv::RECOGNIZED_INSTANCE,
                configuration: tv::APPROVED_CONFIG,
                executables: tv::NO_CLAIM,
                hardware: tv::GENUINE_HW,
            }
        );
        assert_eq!(a.tcb_status.as_deref(), Some("UpToDate"));
        assert_eq!(
            a.key_binding.as_deref(),
            Some(hex::encode(Sha256::digest(spki)).as_str())
        );
        assert_eq!(
            a.evidence_sha256.as_deref(),
            Some(hex::encode(Sha256::digest(v.quote().as_bytes())).as_str())
        );
        assert_eq!(a.simulated, Some(false));
        assert_eq!(e.exp - e.iat, 600);

        // Signed, it verifies offline with the verifier's JWKS.
        let key = VerifierKey::generate(&mut rand_core::OsRng);
        let jws = sign(&e, &key).unwrap();
        assert_eq!(verify(&jws, &key.jwks(), now + 10).unwrap(), e);

        // No expectation given: no instance claim, no key binding; still affirming.
        let e = from_tdx(
            &issuer(),
            TdxOutcome::Verified {
                verified: &v,
                policy: &TdxPolicy::default(),
                expected_report_data: None,
                instance_key_spki: Some(spki),
            },
            &[],
            None,
            &policy_id(),
            now,
        );
        let a = submod(&e);
        assert_eq!(a.trust_vector.instance_identity, tv::NO_CLAIM);
        assert_eq!((a.key_binding.as_ref(), a.nonce.as_ref()), (None, None));
        assert_eq!(a.status, Status::Affirming);

        // Pinning MRTD makes an executables claim; a wrong expectation is a binding failure.
        let mut wrong = rd;
        wrong[0] ^= 1;
        let pinned = TdxPolicy {
            mrtd: vec![v.quote().td_report().mr_td],
            ..TdxPolicy::default()
        };
        let e = from_tdx(
            &issuer(),
            TdxOutcome::Verified {
                verified: &v,
                policy: &pinned,
                expected_report_data: Some(&wrong),
                instance_key_spki: Some(spki),
            },
            &[],
            None,
            &policy_id(),
            now,
        );
        let a = submod(&e);
        assert_eq!(a.trust_vector.executables, tv::APPROVED_BOOT);
        assert_eq!(a.trust_vector.instance_identity, tv::CRYPTO_FAILED);
        assert_eq!(
            (a.status, a.reason.as_deref(), a.key_binding.as_ref()),
            (Status::Contraindicated, Some("nonce"), None)
        );
    }

    #[test]
    fn debug_td_refused_and_allowed() {
        let v = verified("trustee-50806f-v4-debug", "2023-06-20T00:00:00Z");
        let now = at("2023-06-20T00:00:00Z");
        let ear = |policy: &TdxPolicy| {
            from_tdx(
                &issuer(),
                TdxOutcome::Verified {
                    verified: &v,
                    policy,
                    expected_report_data: None,
                    instance_key_spki: None,
                },
                &[],
                None,
                &policy_id(),
                now,
            )
        };
        let e = ear(&TdxPolicy::default());
        let a = submod(&e);
        assert_eq!(
            (e.status, a.reason.as_deref()),
            (Status::Contraindicated, Some("policy-debug"))
        );
        assert_eq!(a.trust_vector.configuration, tv::UNSUPPORTABLE_CONFIG);
        let e = ear(&TdxPolicy {
            allow_debug: true,
            ..TdxPolicy::default()
        });
        let a = submod(&e);
        assert_eq!(a.trust_vector.configuration, tv::UNSAFE_CONFIG);
        assert_eq!((e.status, a.reason.as_ref()), (Status::Warning, None));
    }

    #[test]
    fn out_of_date_platform_carries_status_and_advisories() {
        let v = verified("zkdcap-00806f-v4", "2025-10-01T00:00:00Z");
        let now = at("2025-10-01T00:00:00Z");
        let run = |policy: &TdxPolicy| {
            from_tdx(
                &issuer(),
                TdxOutcome::Verified {
                    verified: &v,
                    policy,
                    expected_report_data: None,
                    instance_key_spki: None,
                },
                &[],
                None,
                &policy_id(),
                now,
            )
        };
        let e = run(&TdxPolicy::default());
        let a = submod(&e);
        assert_eq!(a.reason.as_deref(), Some("tcb-out-of-date"));
        assert_eq!(a.tcb_status.as_deref(), Some("OutOfDate"));
        assert!(
            a.advisory_ids.iter().any(|x| x == "INTEL-SA-00982"),
            "{a:?}"
        );
        assert_eq!(a.trust_vector.hardware, tv::UNSAFE_HW);
        assert_eq!(e.status, Status::Contraindicated);
        // Accepted by a lenient policy: genuine but vulnerable hardware → warning, never affirming.
        let e = run(&TdxPolicy {
            allowed_tcb_statuses: vec![TcbStatus::UpToDate, TcbStatus::OutOfDate],
            ..TdxPolicy::default()
        });
        assert_eq!(
            (e.status, submod(&e).reason.as_ref()),
            (Status::Warning, None)
        );
    }

    #[test]
    fn refusals_before_verification() {
        let now = at("2025-07-20T00:00:00Z");
        let q =
            Quote::parse(&std::fs::read(format!("{TESTDATA}/tdx/dq-b0c06f-v4/quote.bin")).unwrap())
                .unwrap();
        let c = Collateral::from_dir(format!("{TESTDATA}/tdx/dq-b0c06f-v4/collateral")).unwrap();
        // The collateral's nextUpdate has passed (tdx-neg-collateral-expired).
        let err = TdxVerifier::new(IntelRoots::intel())
            .verify(&q, &c, now)
            .unwrap_err();
        assert_eq!(err.category(), "collateral-expired");
        let e = from_tdx(
            &issuer(),
            TdxOutcome::Refused(Refusal::from_error(&err, Some([1; 32]))),
            &[],
            None,
            &policy_id(),
            now,
        );
        let a = submod(&e);
        assert_eq!(a.reason.as_deref(), Some("collateral-expired"));
        assert_eq!(a.evidence_sha256, Some(hex::encode([1; 32])));
        // Unavailable collateral: the verifier makes no claim (status none), nor a tcb status.
        assert_eq!((e.status, a.tcb_status.as_ref()), (Status::None, None));
        assert_eq!(a.trust_vector, TrustVector::all(tv::NO_CLAIM));

        // Not Intel's root: unrecognised hardware, contraindicated.
        let err = TdxVerifier::new(IntelRoots::intel().without_intel())
            .verify(&q, &c, at("2025-07-01T00:00:00Z"))
            .unwrap_err();
        let e = from_tdx(
            &issuer(),
            TdxOutcome::Refused(Refusal::from_error(&err, None)),
            &[],
            None,
            &policy_id(),
            now,
        );
        let a = submod(&e);
        assert_eq!(a.reason.as_deref(), Some(err.category()));
        assert_eq!(e.status, Status::Contraindicated);
        assert_eq!(a.trust_vector.hardware, tv::UNRECOGNIZED_HW);
    }
}

//! From an SEV-SNP attestation's outcome to an EAR, for accepted and refused attestations alike.
//!
//! The trustworthiness vector says only what was checked (AR4SI claim values, [`super::tv`]):
//!
//! | claim | accepted | refused |
//! |---|---|---|
//! | hardware | 2 genuine (chain to a pinned AMD root); 32 if the TCB is below the policy minimum; 0 when the root is simulated (it proves no hardware) | 99 signature/chain/key mismatch, 97 untrusted root, 96 revoked or expired certificate, 32 TCB below minimum |
//! | instance-identity | 2 (the chip-unique VCEK/VLEK signed it and REPORT_DATA binds this challenge and instance key) | 99 REPORT_DATA or key proof wrong |
//! | executables | 3 approved boot when MEASUREMENT is pinned by policy, else 0 (not checked) | 33 measurement not allowed |
//! | configuration | 2 approved; 32 when policy allowed DEBUG or a migration agent and the guest has it | 96 a guest-policy, VMPL, HOST_DATA, ID key or GUEST_SVN rule failed |
//!
//! Status: refused (class [`ErrorClass::Refused`]) → contraindicated; malformed input → none with
//! "unexpected evidence"; missing collateral → none with no claims; our own fault → none with
//! "verifier malfunction". Accepted → the worst tier of the vector, and at least warning when the
//! root is simulated.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::claims::{tv, Appraisal, Ear, PolicyId, Status, TrustVector, VerifierId};
use super::claims::{EAR_PROFILE, VERIFIER_DEVELOPER};
use crate::error::{ErrorClass, Violation, DEBUG_POLICY_FIELD};
use crate::snp::{appraise, check_report_data, SnpPolicy, VerifiedSnp};

/// The `submods` key of the SEV-SNP appraisal.
pub const SNP_SUBMOD: &str = "sev-snp";

/// Default freshness of an EAR: one hour, the default agent X.509-SVID TTL of SPIRE, so an agent that
/// re-attests to renew its SVID always has a fresh result.
pub const DEFAULT_VALIDITY_SECS: u32 = 3600;

/// `eat_nonce` bounds (EAT: 8 to 64 bytes); a challenge outside them is left out of the EAR.
const NONCE_LEN: std::ops::RangeInclusive<usize> = 8..=64;

/// Who issues EARs and for how long they are fresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarIssuer {
    verifier_id: VerifierId,
    validity_secs: u32,
}

impl EarIssuer {
    /// `build` names the verifier build, `twi-server-nodeattestor@<version>`; `validity_secs` is the
    /// EAR's freshness (`exp - iat`), at least 1.
    pub fn new(build: impl Into<String>, validity_secs: u32) -> EarIssuer {
        EarIssuer {
            verifier_id: VerifierId {
                developer: VERIFIER_DEVELOPER.into(),
                build: build.into(),
            },
            validity_secs: validity_secs.max(1),
        }
    }

    /// The issuer's `ear_verifier_id`.
    pub fn verifier_id(&self) -> &VerifierId {
        &self.verifier_id
    }

    /// Seconds from `iat` to `exp` of every EAR this issuer builds.
    pub fn validity_secs(&self) -> u32 {
        self.validity_secs
    }
}

/// Why an attestation was refused before an EAR could be built from verified evidence.
#[derive(Clone, Copy, Debug)]
pub struct Refusal<'a> {
    /// The reason category (`signature`, `untrusted-root`, `nonce`, `key-proof`, `policy-debug`, …).
    pub category: &'a str,
    pub class: ErrorClass,
    /// The policy violations, when the refusal is a policy refusal.
    pub violations: &'a [Violation],
    /// SHA-256 of the raw evidence, when it was received.
    pub evidence_sha256: Option<[u8; 32]>,
}

impl<'a> Refusal<'a> {
    /// A refusal from the verifier core's error.
    pub fn from_error(e: &'a crate::Error, evidence_sha256: Option<[u8; 32]>) -> Refusal<'a> {
        let violations = match e {
            crate::Error::Policy { violations } => violations.as_slice(),
            _ => &[],
        };
        Refusal {
            category: e.category(),
            class: e.class(),
            violations,
            evidence_sha256,
        }
    }

    /// A refusal decided outside the verifier core (the server's `key-proof`, `malformed` stream, …).
    pub fn new(
        category: &'a str,
        class: ErrorClass,
        evidence_sha256: Option<[u8; 32]>,
    ) -> Refusal<'a> {
        Refusal {
            category,
            class,
            violations: &[],
            evidence_sha256,
        }
    }
}

/// What the server knows at its decision point.
#[derive(Clone, Copy, Debug)]
pub enum SnpOutcome<'a> {
    /// Verification to a trust anchor succeeded. [`from_snp`] itself checks REPORT_DATA against
    /// `expected_report_data` and appraises against `policy`, so the EAR can never claim more than
    /// was checked; pass this even when the binding or the policy then refused the evidence.
    Verified {
        verified: &'a VerifiedSnp,
        policy: &'a SnpPolicy,
        /// What REPORT_DATA must be: the server's binding of its challenge and the instance key.
        expected_report_data: &'a [u8; 64],
        /// The instance key's SubjectPublicKeyInfo (DER) bound in REPORT_DATA.
        instance_key_spki: &'a [u8],
    },
    /// No verified evidence: parse, chain or signature failed, or a check before verification did.
    Refused(Refusal<'a>),
}

/// The EAR of one SEV-SNP attestation at `now` (Unix seconds).
///
/// `nonce` is the challenge the server sent (empty if none was sent yet); `agent_id` the agent's
/// SPIFFE ID when known (for a refusal it may not be).
pub fn from_snp(
    issuer: &EarIssuer,
    outcome: SnpOutcome<'_>,
    nonce: &[u8],
    agent_id: Option<&str>,
    policy_id: &PolicyId,
    now: i64,
) -> Ear {
    let appraisal = match outcome {
        SnpOutcome::Verified {
            verified,
            policy,
            expected_report_data,
            instance_key_spki,
        } => verified_appraisal(verified, policy, expected_report_data, instance_key_spki),
        SnpOutcome::Refused(r) => refused_appraisal(&r),
    };
    single_submod_ear(
        issuer, SNP_SUBMOD, appraisal, nonce, agent_id, policy_id, now,
    )
}

/// The EAR around one TEE's appraisal (shared by [`from_snp`] and `from_tdx`): policy id, `eat_nonce`
/// when the challenge is within EAT's bounds, validity window, and the overall status of that submod.
pub(super) fn single_submod_ear(
    issuer: &EarIssuer,
    submod: &str,
    mut appraisal: Appraisal,
    nonce: &[u8],
    agent_id: Option<&str>,
    policy_id: &PolicyId,
    now: i64,
) -> Ear {
    appraisal.policy_ids = vec![policy_id.uri()];
    appraisal.nonce = NONCE_LEN
        .contains(&nonce.len())
        .then(|| B64URL.encode(nonce));
    let status = appraisal.status;
    Ear {
        profile: EAR_PROFILE.into(),
        iat: now,
        exp: now.saturating_add(i64::from(issuer.validity_secs)),
        verifier_id: issuer.verifier_id.clone(),
        status,
        submods: [(submod.to_owned(), appraisal)].into_iter().collect(),
        agent_id: agent_id.map(str::to_owned),
    }
}

pub(super) fn empty_appraisal(status: Status, trust_vector: TrustVector) -> Appraisal {
    Appraisal {
        status,
        trust_vector,
        policy_ids: Vec::new(),
        nonce: None,
        evidence_sha256: None,
        tcb_status: None,
        advisory_ids: Vec::new(),
        key_binding: None,
        simulated: None,
        reason: None,
    }
}

/// Fields whose violation makes the guest's configuration unsupportable.
const CONFIG_FIELDS: [&str; 6] = [
    DEBUG_POLICY_FIELD,
    "policy.migrate_ma",
    "guest_svn",
    "host_data",
    "id_key_digest",
    "vmpl",
];

/// The vector claims that policy violations decide (hardware, executables, configuration), given that
/// verification itself passed.
fn apply_violations(v: &mut TrustVector, violations: &[Violation]) {
    let violated = |f: &str| violations.iter().any(|x| x.field == f);
    if violated("reported_tcb") {
        v.hardware = tv::UNSAFE_HW;
    }
    if violated("measurement") {
        v.executables = tv::UNRECOGNIZED_RT;
    }
    if CONFIG_FIELDS.iter().any(|f| violated(f)) {
        v.configuration = tv::UNSUPPORTABLE_CONFIG;
    }
}

fn verified_appraisal(
    verified: &VerifiedSnp,
    policy: &SnpPolicy,
    expected_report_data: &[u8; 64],
    instance_key_spki: &[u8],
) -> Appraisal {
    let report = verified.report();
    let simulated = verified.simulated();
    let guest = report.policy();
    let bound = check_report_data(report, expected_report_data);
    let appraised = appraise(verified, policy);

    let mut v = TrustVector {
        hardware: if simulated {
            tv::NO_CLAIM
        } else {
            tv::GENUINE_HW
        },
        instance_identity: if bound.is_ok() {
            tv::RECOGNIZED_INSTANCE
        } else {
            tv::CRYPTO_FAILED
        },
        executables: if policy.allowed_measurements.is_empty() {
            tv::NO_CLAIM
        } else {
            tv::APPROVED_BOOT
        },
        configuration: if guest.debug || guest.migrate_ma {
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

    let tcb_status = match &policy.minimum_tcb {
        None => "not-evaluated",
        Some(min) if verified.reported_tcb().meets(min) => "meets-minimum",
        Some(_) => "below-minimum",
    };
    let refusal = match (&bound, &appraised) {
        (Err(e), _) | (Ok(()), Err(e)) => Some(e.category()),
        (Ok(()), Ok(_)) => None,
    };
    let status = match refusal {
        Some(_) => Status::Contraindicated,
        None if simulated => v.worst().max(Status::Warning),
        None => v.worst(),
    };
    let mut a = empty_appraisal(status, v);
    a.evidence_sha256 = Some(hex::encode(Sha256::digest(report.as_bytes())));
    a.tcb_status = Some(tcb_status.into());
    a.key_binding = bound
        .is_ok()
        .then(|| hex::encode(Sha256::digest(instance_key_spki)));
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
    if r.violations.iter().any(|x| x.field == "reported_tcb") {
        a.tcb_status = Some("below-minimum".into());
    }
    a.reason = Some(r.category.to_owned());
    a
}

/// The claims a refused attestation still supports, by the stage its category shows it reached.
fn refused_vector(r: &Refusal<'_>) -> TrustVector {
    let mut v = TrustVector::default();
    match r.category {
        "signature" | "cert-chain" | "key-mismatch" => v.hardware = tv::CRYPTO_FAILED,
        "untrusted-root" => v.hardware = tv::UNRECOGNIZED_HW,
        "cert-validity" | "revoked" => v.hardware = tv::CONTRAINDICATED_HW,
        // The binding failed. "nonce" is checked after the chain verified, but the root may be a
        // simulated one and without the verified evidence we cannot tell: no hardware claim.
        "nonce" | "key-proof" => v.instance_identity = tv::CRYPTO_FAILED,
        // Appraisal runs after verification and binding both passed (hardware: as for "nonce").
        "policy" | "policy-debug" => {
            v.instance_identity = tv::RECOGNIZED_INSTANCE;
            apply_violations(&mut v, r.violations);
        }
        _ => {}
    }
    v
}

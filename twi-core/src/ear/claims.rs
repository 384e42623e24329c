//! The EAR claim set (draft-ietf-rats-ear-04, JSON serialisation) and the project's own claims.
//!
//! Our own serde types rather than the `ear` crate's: see the module documentation of [`crate::ear`]
//! for why. Claim names follow draft-04 as the `ear` crate 0.6 (Veraison) spells them
//! (`ear_status`, `ear_trustworthiness_vector`, `ear_appraisal_policy_ids`), so its parser reads
//! our tokens; project claims use collision-resistant URI names (RFC 7519 section 4.2).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Error;

/// The EAT profile of every EAR we issue and the only one [`super::verify`] accepts.
pub const EAR_PROFILE: &str = "tag:ietf.org,2026:rats/ear#04";

/// `ear_verifier_id.developer`: who wrote the verifier (AR4SI verifier-id).
pub const VERIFIER_DEVELOPER: &str = "https://github.com/twi-spire/twi-spire";

/// Project claim: the agent's SPIFFE ID (top level).
pub const CLAIM_AGENT_ID: &str = "https://twi-spire.dev/agent-id";
/// Project claim (per submod): SHA-256 (hex) of the raw evidence; the evidence itself is never included.
pub const CLAIM_EVIDENCE_SHA256: &str = "https://twi-spire.dev/evidence-sha256";
/// Project claim (per submod): how the TEE's TCB compared with the policy (`meets-minimum`, …).
pub const CLAIM_TCB_STATUS: &str = "https://twi-spire.dev/tcb-status";
/// Project claim (per submod): vendor security advisories that apply to the TCB (omitted when none
/// are known; SEV-SNP evidence carries no advisory list).
pub const CLAIM_ADVISORY_IDS: &str = "https://twi-spire.dev/advisory-ids";
/// Project claim (per submod): SHA-256 (hex) of the instance key's SubjectPublicKeyInfo that
/// REPORT_DATA was checked to bind. Present only when that check passed.
pub const CLAIM_KEY_BINDING: &str = "https://twi-spire.dev/key-binding";
/// Project claim (per submod): the evidence chained to a simulated root (no hardware behind it).
pub const CLAIM_SIMULATED: &str = "https://twi-spire.dev/simulated";
/// Project claim (per submod): the reason category of a refusal (as `twi_core::Error::category`).
pub const CLAIM_REASON: &str = "https://twi-spire.dev/reason";

/// An AR4SI trustworthiness tier, used for `ear_status`.
///
/// The derived order is AR4SI's value order (none < affirming < warning < contraindicated), which is
/// the order the `ear` crate compares with; [`Status::severity`] is the order a relying party should
/// combine with, where "no claim" is worse than "affirming".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The verifier makes no claim (it could not appraise the evidence).
    None,
    /// The evidence was appraised and found trustworthy for what was checked.
    Affirming,
    /// Appraised; acceptable with reservations (e.g. simulated TEE, debug guest allowed by policy).
    Warning,
    /// Appraised and refused.
    Contraindicated,
}

impl Status {
    /// The AR4SI tier of one trustworthiness claim value (draft-ietf-rats-ar4si section 2.3.3).
    pub fn of_claim(value: i8) -> Status {
        match value {
            -1..=1 => Status::None,
            -32..=-2 | 2..=31 => Status::Affirming,
            -96..=-33 | 32..=95 => Status::Warning,
            _ => Status::Contraindicated,
        }
    }

    /// Rank for combining statuses: affirming 0, none 1, warning 2, contraindicated 3. A composite
    /// is never more trustworthy than its least trustworthy part, and a part nobody could appraise
    /// must keep the whole from being affirming.
    pub fn severity(self) -> u8 {
        match self {
            Status::Affirming => 0,
            Status::None => 1,
            Status::Warning => 2,
            Status::Contraindicated => 3,
        }
    }

    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "none",
            Status::Affirming => "affirming",
            Status::Warning => "warning",
            Status::Contraindicated => "contraindicated",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// AR4SI trustworthiness claim values we use (draft-ietf-rats-ar4si section 2.3; names as the `ear`
/// crate's `trust::claim` tags).
pub mod tv {
    /// The verifier itself failed.
    pub const VERIFIER_MALFUNCTION: i8 = -1;
    /// The evidence is insufficient to make a conclusion (or this aspect was not checked).
    pub const NO_CLAIM: i8 = 0;
    /// The evidence contains elements the verifier cannot parse.
    pub const UNEXPECTED_EVIDENCE: i8 = 1;
    /// Cryptographic validation of the evidence failed.
    pub const CRYPTO_FAILED: i8 = 99;

    /// instance-identity: recognised and not known to be compromised.
    pub const RECOGNIZED_INSTANCE: i8 = 2;

    /// configuration: a known and approved configuration.
    pub const APPROVED_CONFIG: i8 = 2;
    /// configuration: exposes known vulnerabilities (e.g. a debug guest that policy allowed).
    pub const UNSAFE_CONFIG: i8 = 32;
    /// configuration: unacceptable (policy refused it).
    pub const UNSUPPORTABLE_CONFIG: i8 = 96;

    /// executables: only approved executables were loaded during boot (the launch measurement).
    pub const APPROVED_BOOT: i8 = 3;
    /// executables: not recognised (launch measurement not in the allowed list).
    pub const UNRECOGNIZED_RT: i8 = 33;

    /// hardware: genuine (the chain to the vendor root verified).
    pub const GENUINE_HW: i8 = 2;
    /// hardware: genuine, but with known vulnerabilities (TCB below the policy's minimum).
    pub const UNSAFE_HW: i8 = 32;
    /// hardware: recognised but contraindicated (revoked or expired endorsement).
    pub const CONTRAINDICATED_HW: i8 = 96;
    /// hardware: not recognised (chain ends in a root that is not a trust anchor).
    pub const UNRECOGNIZED_HW: i8 = 97;
}

/// The four AR4SI claims we appraise. Every one is always present (0 = no claim) so a relying party
/// sees explicitly what was not checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustVector {
    #[serde(rename = "instance-identity", default)]
    pub instance_identity: i8,
    #[serde(default)]
    pub configuration: i8,
    #[serde(default)]
    pub executables: i8,
    #[serde(default)]
    pub hardware: i8,
}

impl TrustVector {
    /// Every claim set to `value`.
    pub fn all(value: i8) -> TrustVector {
        TrustVector {
            instance_identity: value,
            configuration: value,
            executables: value,
            hardware: value,
        }
    }

    /// The least trustworthy tier among the claims that make one (no-claim values are skipped);
    /// `None` when no claim is made at all.
    pub fn worst(&self) -> Status {
        [
            self.instance_identity,
            self.configuration,
            self.executables,
            self.hardware,
        ]
        .into_iter()
        .map(Status::of_claim)
        .filter(|s| *s != Status::None)
        .max()
        .unwrap_or(Status::None)
    }
}

/// `ear_verifier_id`: which verifier, in which build, produced the EAR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierId {
    pub developer: String,
    pub build: String,
}

/// One TEE's appraisal (an entry of `submods`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appraisal {
    #[serde(rename = "ear_status")]
    pub status: Status,
    #[serde(rename = "ear_trustworthiness_vector")]
    pub trust_vector: TrustVector,
    /// URIs naming the appraisal policy with its version and digest ([`PolicyId::uri`]).
    #[serde(
        rename = "ear_appraisal_policy_ids",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub policy_ids: Vec<String>,
    /// The attestation challenge, base64url without padding (EAT `eat_nonce`, JSON form).
    #[serde(rename = "eat_nonce", default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(
        rename = "https://twi-spire.dev/evidence-sha256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub evidence_sha256: Option<String>,
    #[serde(
        rename = "https://twi-spire.dev/tcb-status",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcb_status: Option<String>,
    #[serde(
        rename = "https://twi-spire.dev/advisory-ids",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub advisory_ids: Vec<String>,
    #[serde(
        rename = "https://twi-spire.dev/key-binding",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub key_binding: Option<String>,
    #[serde(
        rename = "https://twi-spire.dev/simulated",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub simulated: Option<bool>,
    #[serde(
        rename = "https://twi-spire.dev/reason",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<String>,
}

/// An EAT Attestation Result: the verifier's signed verdict on one attestation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ear {
    #[serde(rename = "eat_profile")]
    pub profile: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// End of the attestation's freshness, Unix seconds. Optional in the draft, required by us: a
    /// result without an end would vouch for a VM forever.
    pub exp: i64,
    #[serde(rename = "ear_verifier_id")]
    pub verifier_id: VerifierId,
    /// Overall status: never more trustworthy than the least trustworthy submod.
    #[serde(rename = "ear_status")]
    pub status: Status,
    /// One appraisal per TEE, keyed `"sev-snp"`, `"tdx"`, ….
    pub submods: BTreeMap<String, Appraisal>,
    #[serde(
        rename = "https://twi-spire.dev/agent-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_id: Option<String>,
}

impl Ear {
    /// The status a composite of these submods may claim at most (by [`Status::severity`]).
    pub fn combined_status(&self) -> Status {
        self.submods
            .values()
            .map(|a| a.status)
            .max_by_key(|s| s.severity())
            .unwrap_or(Status::None)
    }

    /// The overall status is affirming and so is every submod.
    pub fn is_affirming(&self) -> bool {
        self.status == Status::Affirming && self.combined_status() == Status::Affirming
    }

    /// Structural rules a signer and a relying party both enforce: our profile, at least one submod,
    /// `exp` after `iat`, an overall status no better than its submods.
    ///
    /// # Errors
    /// [`Error::Claims`] naming the rule.
    pub fn check_structure(&self) -> Result<(), Error> {
        if self.profile != EAR_PROFILE {
            return Err(Error::Profile {
                got: self.profile.clone(),
                want: EAR_PROFILE,
            });
        }
        if self.submods.is_empty() {
            return Err(Error::Claims {
                detail: "submods is empty".into(),
            });
        }
        if self.exp <= self.iat {
            return Err(Error::Claims {
                detail: format!("exp {} is not after iat {}", self.exp, self.iat),
            });
        }
        let combined = self.combined_status();
        if self.status.severity() < combined.severity() {
            return Err(Error::Claims {
                detail: format!(
                    "ear_status {} is more trustworthy than its submods ({combined})",
                    self.status
                ),
            });
        }
        Ok(())
    }
}

/// The appraisal policy an EAR names: which policy, which version, and the SHA-256 of its effective
/// content (policy and trust anchors), so a relying party can pin the exact policy, not just its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyId {
    name: String,
    version: String,
    sha256: String,
}

impl PolicyId {
    /// `name` and `version` are URI path segments (`[A-Za-z0-9._-]`, 1 to 64 characters); `sha256` is
    /// 64 hex digits (stored lowercase).
    ///
    /// # Errors
    /// [`Error::PolicyId`] naming the bad part.
    pub fn new(name: &str, version: &str, sha256_hex: &str) -> Result<PolicyId, Error> {
        let segment = |part: &'static str, v: &str| {
            let ok = (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if ok {
                Ok(())
            } else {
                Err(Error::PolicyId {
                    part,
                    got: v.chars().take(80).collect(),
                    want: "1 to 64 characters of [A-Za-z0-9._-]",
                })
            }
        };
        segment("name", name)?;
        segment("version", version)?;
        if sha256_hex.len() != 64 || !sha256_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::PolicyId {
                part: "sha256",
                got: sha256_hex.chars().take(80).collect(),
                want: "64 hex digits",
            });
        }
        Ok(PolicyId {
            name: name.to_owned(),
            version: version.to_owned(),
            sha256: sha256_hex.to_ascii_lowercase(),
        })
    }

    /// `tag:twi-spire.dev,2026:policy/<name>/<version>?sha256=<hex>`: a tag URI (RFC 4151), like the
    /// EAR profile, because it names the policy and does not locate it.
    pub fn uri(&self) -> String {
        format!(
            "tag:twi-spire.dev,2026:policy/{}/{}?sha256={}",
            self.name, self.version, self.sha256
        )
    }
}

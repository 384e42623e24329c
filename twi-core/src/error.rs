//! Errors of the verifier core: one enum, whose variants carry what failed.
//!
//! Two projections serve the callers: [`Error::category`] gives the stable reason category shared with
//! the test-vector manifest and the CLI's `--json` output, and [`Error::class`] gives the failure class
//! that the plugins map to one gRPC status code each (malformed → InvalidArgument, refused →
//! PermissionDenied, missing collateral → Unavailable, own fault → Internal).

use std::fmt;

/// How a failure should be reported to a peer; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The input cannot be parsed: the sender is at fault.
    Malformed,
    /// The input parsed but was refused by verification or policy.
    Refused,
    /// Something the verifier needs (a certificate, a CRL) is not available right now.
    Unavailable,
    /// The verifier's own fault (bad configuration detected late, I/O on our side).
    Internal,
}

/// One policy rule the evidence broke: which field, what it holds, what the policy wanted.
///
/// `appraise` collects every violation rather than stopping at the first, so an operator fixes a
/// policy in one round trip.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// The appraised field, e.g. `policy.debug`, `reported_tcb`, `measurement`.
    pub field: &'static str,
    /// What the evidence holds.
    pub got: String,
    /// What the policy accepts.
    pub want: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: got {}, want {}", self.field, self.got, self.want)
    }
}

/// The policy field whose violation makes the category `policy-debug` (see [`Error::category`]).
pub const DEBUG_POLICY_FIELD: &str = "policy.debug";

/// The policy field of a refused TCB status (TDX). When the status is an out-of-date one
/// ([`OUT_OF_DATE_TCB_STATUSES`]) the category is `tcb-out-of-date`, otherwise `policy`.
pub const TCB_STATUS_FIELD: &str = "tcb_status";

/// TCB statuses whose refusal is categorised `tcb-out-of-date`: the platform is missing security fixes.
pub const OUT_OF_DATE_TCB_STATUSES: [&str; 5] = [
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
];

/// The policy field of TD attributes other than DEBUG refused by a mask (category `td-attributes`).
pub const TD_ATTRIBUTES_FIELD: &str = "td_attributes";

/// Everything that can go wrong between receiving evidence and accepting it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Evidence (report, certificate table, certificate, CRL) cannot be parsed or breaks a length cap.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },

    /// The report signature does not verify with the VCEK/VLEK, or the report claims to be unsigned.
    #[error("report signature: {detail}")]
    Signature { detail: String },

    /// A certificate of the chain does not verify to its issuer (or to the product's root).
    #[error("certificate chain: {cert}: {detail}")]
    CertChain { cert: &'static str, detail: String },

    /// The chain ends in a root that is not one of the trust anchors.
    #[error("untrusted root: ARK {subject} with SHA-256 {fingerprint} is not a trust anchor")]
    UntrustedRoot {
        subject: String,
        fingerprint: String,
    },

    /// The VCEK/VLEK does not belong to this report (other chip, other TCB, other key kind).
    #[error("endorsement key does not match the report: {field}: certificate has {got}, report has {want}")]
    KeyMismatch {
        field: &'static str,
        got: String,
        want: String,
    },

    /// A certificate is outside its validity period at the caller's `now`.
    #[error("{cert} certificate not valid at {}: valid from {} to {}", fmt_time(*now), fmt_time(*not_before), fmt_time(*not_after))]
    CertValidity {
        cert: &'static str,
        not_before: i64,
        not_after: i64,
        now: i64,
    },

    /// A certificate of the chain is listed in a loaded CRL.
    #[error("{cert} certificate with serial {serial} is revoked")]
    Revoked { cert: &'static str, serial: String },

    /// A certificate needed to verify the chain was neither sent nor cached.
    #[error("missing certificate: {cert}")]
    MissingCertificate { cert: &'static str },

    /// A loaded CRL does not verify against the root that should have issued it.
    #[error("CRL issued by {issuer}: {detail}")]
    CrlInvalid { issuer: String, detail: String },

    /// A loaded CRL is outside its thisUpdate..nextUpdate window at `now`: a fresh one is needed.
    #[error("CRL issued by {issuer} not current at {}: {} to {}", fmt_time(*now), fmt_time(*this_update), next_update.map_or_else(|| "-".to_owned(), fmt_time))]
    CrlExpired {
        issuer: String,
        this_update: i64,
        next_update: Option<i64>,
        now: i64,
    },

    /// Verified evidence breaks the appraisal policy; every violation is listed.
    #[error("policy refused: {}", join_violations(violations))]
    Policy { violations: Vec<Violation> },

    /// REPORT_DATA is not the value the relying party expected (replay or wrong key binding).
    #[error("REPORT_DATA mismatch: got {got}, want {want}")]
    Nonce { got: String, want: String },

    /// Our own fault (a configuration or invariant problem), never the sender's.
    #[error("internal error: {detail}")]
    Internal { detail: String },

    /// Signed collateral (TDX TCB info, QE identity, a PCK or root CRL) does not verify with its issuer.
    #[error("{what} signature: {detail}")]
    CollateralSignature { what: &'static str, detail: String },

    /// Signed collateral is outside its issueDate..nextUpdate window at `now`: a fresh copy is needed.
    #[error("{what} not current at {}: issued {}, next update {}", fmt_time(*now), fmt_time(*issue_date), fmt_time(*next_update))]
    CollateralExpired {
        what: &'static str,
        issue_date: i64,
        next_update: i64,
        now: i64,
    },

    /// The collateral describes another platform, CA or TEE than the evidence (FMSPC, PCE-ID, TCB info
    /// id/version, PCK CRL issuer, TDX module signer).
    #[error("collateral does not match the evidence: {field}: collateral has {got}, evidence has {want}")]
    CollateralMismatch {
        field: &'static str,
        got: String,
        want: String,
    },

    /// The QE report does not bind the attestation key: REPORTDATA[0..32] differs from
    /// SHA-256(attestation key || QE authentication data).
    #[error("QE report does not bind the attestation key: REPORTDATA[0..32] is {got}, SHA-256(key || auth data) is {want}")]
    QeBinding { got: String, want: String },

    /// The quoting enclave is not the one Intel's QE identity describes (MRSIGNER, ISVPRODID,
    /// MISCSELECT, ATTRIBUTES).
    #[error("QE identity mismatch: {field}: QE report has {got}, QE identity wants {want}")]
    QeIdentity {
        field: &'static str,
        got: String,
        want: String,
    },

    /// No TCB level of the collateral matches the platform (Intel: TCB not supported).
    #[error("no matching TCB level: {detail}")]
    TcbUnsupported { detail: String },
}

fn join_violations(v: &[Violation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// RFC 3339 for messages; falls back to the raw number for values `time` cannot represent.
pub(crate) fn fmt_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

impl Error {
    /// The reason category, as named in `shared/testdata/manifest.toml` `[reasons]`
    /// (plus `revoked`, `policy`, `missing-certificate`, `qe-identity` and `internal`).
    pub fn category(&self) -> &'static str {
        match self {
            Error::Malformed { .. } => "malformed",
            Error::Signature { .. } => "signature",
            Error::CertChain { .. } => "cert-chain",
            Error::UntrustedRoot { .. } => "untrusted-root",
            Error::KeyMismatch { .. } => "key-mismatch",
            Error::CertValidity { .. } => "cert-validity",
            Error::Revoked { .. } => "revoked",
            Error::MissingCertificate { .. } => "missing-certificate",
            Error::CrlInvalid { .. } => "collateral-signature",
            Error::CrlExpired { .. } => "collateral-expired",
            Error::Policy { violations } => {
                if violations.iter().any(|v| v.field == DEBUG_POLICY_FIELD) {
                    "policy-debug"
                } else if violations.iter().any(|v| {
                    v.field == TCB_STATUS_FIELD
                        && OUT_OF_DATE_TCB_STATUSES.contains(&v.got.as_str())
                }) {
                    "tcb-out-of-date"
                } else if violations.iter().any(|v| v.field == TD_ATTRIBUTES_FIELD) {
                    "td-attributes"
                } else {
                    "policy"
                }
            }
            Error::Nonce { .. } => "nonce",
            Error::Internal { .. } => "internal",
            Error::CollateralSignature { .. } => "collateral-signature",
            Error::CollateralExpired { .. } => "collateral-expired",
            Error::CollateralMismatch { .. } => "collateral-mismatch",
            Error::QeBinding { .. } => "qe-binding",
            Error::QeIdentity { .. } => "qe-identity",
            Error::TcbUnsupported { .. } => "tcb-unsupported",
        }
    }

    /// The failure class, for the mapping to a gRPC status code.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Malformed { .. } => ErrorClass::Malformed,
            Error::Signature { .. }
            | Error::CertChain { .. }
            | Error::UntrustedRoot { .. }
            | Error::KeyMismatch { .. }
            | Error::CertValidity { .. }
            | Error::Revoked { .. }
            | Error::Policy { .. }
            | Error::Nonce { .. }
            | Error::CollateralMismatch { .. }
            | Error::QeBinding { .. }
            | Error::QeIdentity { .. }
            | Error::TcbUnsupported { .. } => ErrorClass::Refused,
            Error::MissingCertificate { .. }
            | Error::CrlExpired { .. }
            | Error::CollateralExpired { .. } => ErrorClass::Unavailable,
            Error::CrlInvalid { .. }
            | Error::Internal { .. }
            | Error::CollateralSignature { .. } => ErrorClass::Internal,
        }
    }

    pub(crate) fn malformed(what: &'static str, detail: impl fmt::Display) -> Error {
        Error::Malformed {
            what,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn chain(cert: &'static str, detail: impl fmt::Display) -> Error {
        Error::CertChain {
            cert,
            detail: detail.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_category_depends_on_debug() {
        let other = Violation {
            field: "vmpl",
            got: "1".into(),
            want: "[0]".into(),
        };
        let debug = Violation {
            field: DEBUG_POLICY_FIELD,
            got: "true".into(),
            want: "false".into(),
        };
        let e = Error::Policy {
            violations: vec![other.clone()],
        };
        assert_eq!(e.category(), "policy");
        let e = Error::Policy {
            violations: vec![other, debug],
        };
        assert_eq!(e.category(), "policy-debug");
        assert_eq!(e.class(), ErrorClass::Refused);
        assert!(e.to_string().contains("vmpl: got 1"), "{e}");
    }

    #[test]
    fn validity_message_shows_dates() {
        let e = Error::CertValidity {
            cert: "VLEK",
            not_before: 0,
            not_after: 86_400,
            now: 172_800,
        };
        assert_eq!(e.to_string(), "VLEK certificate not valid at 1970-01-03T00:00:00Z: valid from 1970-01-01T00:00:00Z to 1970-01-02T00:00:00Z");
        assert_eq!(e.class(), ErrorClass::Refused);
    }
}

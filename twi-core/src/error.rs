//! Errors of the verifier core: one enum, whose variants carry what failed.
//!
//! Two projections serve the callers: [`Error::category`] gives the stable reason category shared with
//! the test-vector manifest and the CLI's `--json` output, and [`Error::class`] gives the failure class
//! that the plugins map to one gRPC status code each (malformed → InvalidArgument, refused →
//! PermissionDenied, missing collateral → Unavailable, own fault → Internal).

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

/// Placeholder until the SNP verifier lands; replaced by the full enum.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Evidence cannot be parsed.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

impl Error {
    /// The reason category, as named in `shared/testdata/manifest.toml` `[reasons]`.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Malformed { .. } => "malformed",
        }
    }

    /// The failure class, for the mapping to a gRPC status code.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Malformed { .. } => ErrorClass::Malformed,
        }
    }
}

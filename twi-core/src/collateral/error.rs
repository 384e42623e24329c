//! Why collateral could not be fetched, cached or served.

use std::path::PathBuf;

use crate::error::fmt_time;
use crate::Error;

/// A collateral failure: the URL, file or platform it concerns, and what went wrong.
///
/// [`From<CollateralError> for Error`](Error) maps it for the verifier's callers: stale past the grace
/// period becomes [`Error::CollateralExpired`] (`collateral-expired`), nothing available becomes
/// [`Error::MissingCertificate`] (`missing-certificate`; both Unavailable: retry later), an unreadable
/// PCK certificate [`Error::Malformed`], our own I/O [`Error::Internal`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// The request failed (connection, TLS, timeout, body over its size cap).
    #[error("GET {url}: {detail}")]
    Http { url: String, detail: String },

    /// The server answered with a non-2xx status.
    #[error("GET {url}: HTTP status {status}")]
    Status { url: String, status: u16 },

    /// A response header the collateral needs (an issuer chain) is absent.
    #[error("GET {url}: response has no {header} header")]
    MissingHeader { url: String, header: &'static str },

    /// The response is not the item it should be (not JSON, wrong envelope or FMSPC, not a CRL, empty,
    /// too large); it is not cached.
    #[error("GET {url}: response is not {what}: {detail}")]
    BadResponse {
        url: String,
        what: &'static str,
        detail: String,
    },

    /// Reading or writing the on-disk cache failed.
    #[error("collateral cache {}: {detail}", path.display())]
    Cache { path: PathBuf, detail: String },

    /// The operator's offline bundle cannot be read or does not parse.
    #[error("offline collateral bundle {}: {detail}", path.display())]
    Offline { path: PathBuf, detail: String },

    /// The quote's PCK certificate does not say which platform and CA it belongs to.
    #[error("PCK certificate: {detail}")]
    PckCertificate { detail: String },

    /// No collateral for the platform anywhere (no offline bundle, no cached copy, fetch off or failed).
    #[error("no TDX collateral for {platform}: {detail}")]
    Missing { platform: String, detail: String },

    /// The best collateral available is past its `nextUpdate` by more than the grace period: refused.
    /// `why` says why no fresh copy was had (fetching off, or the last fetch error).
    #[error(
        "TDX collateral for {platform} expired: {what} next update {}, issued {}, grace period {grace_seconds} s, now {}; no fresh copy: {why}",
        fmt_time(*next_update), fmt_time(*issue_date), fmt_time(*now)
    )]
    Expired {
        platform: String,
        what: &'static str,
        issue_date: i64,
        next_update: i64,
        grace_seconds: u64,
        now: i64,
        why: String,
    },
}

impl From<CollateralError> for Error {
    fn from(e: CollateralError) -> Error {
        match e {
            CollateralError::Expired {
                what,
                issue_date,
                next_update,
                now,
                ..
            } => Error::CollateralExpired {
                what,
                issue_date,
                next_update,
                now,
            },
            CollateralError::PckCertificate { detail } => Error::Malformed {
                what: "PCK certificate",
                detail,
            },
            CollateralError::Cache { .. } | CollateralError::Offline { .. } => Error::Internal {
                detail: e.to_string(),
            },
            CollateralError::Http { .. }
            | CollateralError::Status { .. }
            | CollateralError::MissingHeader { .. }
            | CollateralError::BadResponse { .. }
            | CollateralError::Missing { .. } => Error::MissingCertificate {
                cert: "TDX collateral (TCB info, QE identity, CRLs)",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_maps_to_collateral_expired() {
        let e = CollateralError::Expired {
            platform: "FMSPC b0c06f000000, PCK platform CA".into(),
            what: "PCK CRL",
            issue_date: 0,
            next_update: 86_400,
            grace_seconds: 3600,
            now: 172_800,
            why: "online fetching is off".into(),
        };
        assert!(e.to_string().contains("grace period 3600 s"), "{e}");
        let v: Error = e.into();
        assert_eq!(v.category(), "collateral-expired");
        assert!(matches!(
            v,
            Error::CollateralExpired {
                what: "PCK CRL",
                next_update: 86_400,
                now: 172_800,
                ..
            }
        ));
        let missing: Error = CollateralError::Missing {
            platform: "x".into(),
            detail: "y".into(),
        }
        .into();
        assert_eq!(missing.category(), "missing-certificate");
        let pck: Error = CollateralError::PckCertificate { detail: "z".into() }.into();
        assert_eq!(pck.category(), "malformed");
    }
}

//! When collateral must be refreshed, and how long stale collateral may still be served.
//!
//! A collateral set is as fresh as its least fresh item: the earliest `nextUpdate` of the TCB info, the
//! QE identity and the two CRLs. Refetching starts `refresh_before` ahead of it; past it the set is
//! stale, served (flagged) only for `grace` seconds more, then refused.

use std::fmt;

use super::pcs::{crl_head, qe_identity_head, tcb_info_head};
use crate::error::fmt_time;
use crate::tdx::Collateral;

/// The refresh and grace policy of a collateral source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refetch once `now >= earliest nextUpdate - refresh_before_seconds`. Intel reissues TCB info and
    /// QE identity daily with a 30-day `nextUpdate`, so a week ahead leaves time for several retries,
    /// and picks up TCB recoveries within about three weeks.
    pub refresh_before_seconds: u64,
    /// Past `nextUpdate`, keep serving the collateral (marked [`Stale`]) this long when no fresh copy
    /// can be had. 0 (the default): fail closed at `nextUpdate`.
    pub grace_seconds: u64,
    /// After a fetch attempt for a platform, wait this long before the next one (a PCS outage does
    /// not cost every attestation a timeout; a flood of quotes does not become a flood of requests).
    pub retry_interval_seconds: u64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            refresh_before_seconds: 7 * 86_400,
            grace_seconds: 0,
            retry_interval_seconds: 300,
        }
    }
}

/// Collateral served past its `nextUpdate`, within the grace period. The caller logs it at warn
/// (its `Display` is the message) and verifies at [`super::Served::verification_time`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stale {
    /// The earliest `nextUpdate` of the set.
    pub since: i64,
    /// Which item it belongs to (`TCB info`, `QE identity`, `PCK CRL`, `root CA CRL`).
    pub item: &'static str,
    pub grace_seconds: u64,
}

impl Stale {
    /// The last instant this collateral may be served.
    pub fn until(&self) -> i64 {
        self.since
            .saturating_add(i64::try_from(self.grace_seconds).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "collateral stale since {} ({} next update), within grace period of {} s",
            fmt_time(self.since),
            self.item,
            self.grace_seconds
        )
    }
}

/// The validity of a collateral set, read (not verified) from its items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollateralTimes {
    /// The earliest `nextUpdate` of the four items.
    pub next_update: i64,
    /// The item it belongs to.
    pub next_update_item: &'static str,
    /// That item's issue date (`issueDate` / `thisUpdate`).
    pub next_update_item_issued: i64,
    /// The TCB info's FMSPC, lower-case hex.
    pub fmspc: String,
    /// The PCK CRL issuer's common name.
    pub pck_crl_issuer: Option<String>,
}

/// Reads the dates of `c`'s items. A CRL without `nextUpdate` does not limit the set.
///
/// # Errors
/// A description of the first item whose envelope or dates do not parse.
pub fn collateral_times(c: &Collateral) -> Result<CollateralTimes, String> {
    let tcb = tcb_info_head(&c.tcb_info).map_err(|e| format!("TCB info: {e}"))?;
    let qe = qe_identity_head(&c.qe_identity).map_err(|e| format!("QE identity: {e}"))?;
    let pck = crl_head(&c.pck_crl).map_err(|e| format!("PCK CRL: {e}"))?;
    let root = crl_head(&c.root_ca_crl).map_err(|e| format!("root CA CRL: {e}"))?;
    let mut items = vec![
        ("TCB info", tcb.issue_date, tcb.next_update),
        ("QE identity", qe.issue_date, qe.next_update),
    ];
    if let Some(n) = pck.next_update {
        items.push(("PCK CRL", pck.this_update, n));
    }
    if let Some(n) = root.next_update {
        items.push(("root CA CRL", root.this_update, n));
    }
    let (item, issued, next) = items
        .into_iter()
        .min_by_key(|(_, _, next)| *next)
        .unwrap_or(("TCB info", tcb.issue_date, tcb.next_update));
    Ok(CollateralTimes {
        next_update: next,
        next_update_item: item,
        next_update_item_issued: issued,
        fmspc: tcb.fmspc.unwrap_or_default().to_ascii_lowercase(),
        pck_crl_issuer: pck.issuer_cn,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    #[test]
    fn earliest_next_update_of_real_collateral() {
        let c = Collateral::from_dir(format!("{TESTDATA}/tdx/dq-b0c06f-v4/collateral")).unwrap();
        let t = collateral_times(&c).unwrap();
        // PCK CRL: nextUpdate Jul 19 10:00:35 2025, before the TCB info (10:16:03) and QE identity.
        assert_eq!(
            (t.next_update, t.next_update_item),
            (1_752_919_235, "PCK CRL")
        );
        assert_eq!(t.fmspc, "b0c06f000000");
        assert_eq!(
            t.pck_crl_issuer.as_deref(),
            Some("Intel SGX PCK Platform CA")
        );
    }

    #[test]
    fn stale_message() {
        let s = Stale {
            since: 86_400,
            item: "TCB info",
            grace_seconds: 3600,
        };
        assert_eq!(
            s.to_string(),
            "collateral stale since 1970-01-02T00:00:00Z (TCB info next update), within grace period of 3600 s"
        );
        assert_eq!(s.until(), 90_000);
    }
}

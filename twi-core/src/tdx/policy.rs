//! Appraisal: policy on a verified TDX quote (go-sev-guest's `validate`, for TDX). It does not look at
//! certificates or signatures; it takes a [`VerifiedTdx`], which only verification can produce.
//!
//! Every rule is checked and every violation reported, each with field, value and what was wanted.

use super::claims::TdxClaims;
use super::quote::Quote;
use super::tcb::TcbStatus;
use super::verify::VerifiedTdx;
use crate::error::{Violation, DEBUG_POLICY_FIELD, TCB_STATUS_FIELD, TD_ATTRIBUTES_FIELD};
use crate::Error;

/// A 64-bit field constrained under a mask: `(got & mask) == (value & mask)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Masked {
    pub value: u64,
    pub mask: u64,
}

impl Masked {
    fn accepts(&self, got: u64) -> bool {
        got & self.mask == self.value & self.mask
    }
}

/// What a verified TDX quote must satisfy. [`Default`] is the baseline: only TCB status UpToDate,
/// debug TDs refused, nothing else pinned (no TD attribute constraint beyond DEBUG).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxPolicy {
    /// Accept TDs with TD_ATTRIBUTES.DEBUG (the host can read and alter their state).
    pub allow_debug: bool,
    /// Accepted TCB statuses. The baseline accepts only UpToDate; SWHardeningNeeded or
    /// ConfigurationNeeded platforms are accepted only when listed here.
    pub allowed_tcb_statuses: Vec<TcbStatus>,
    /// If set, every advisory ID of the TCB status must be in this list.
    pub allowed_advisory_ids: Option<Vec<String>>,
    /// If not empty, MRTD must be one of these.
    pub mrtd: Vec<[u8; 48]>,
    /// If not empty, RTMR0..3 must each be one of the listed values (per register).
    pub rtmr: [Vec<[u8; 48]>; 4],
    /// If not empty, MRCONFIGID must be one of these.
    pub mrconfigid: Vec<[u8; 48]>,
    /// If not empty, MROWNER must be one of these.
    pub mrowner: Vec<[u8; 48]>,
    /// If not empty, MROWNERCONFIG must be one of these.
    pub mrownerconfig: Vec<[u8; 48]>,
    /// XFAM (little-endian u64) under a mask.
    pub xfam: Option<Masked>,
    /// TD_ATTRIBUTES (little-endian u64) under a mask, for bits other than DEBUG (which
    /// `allow_debug` governs), e.g. requiring SEPT_VE_DISABLE (bit 28). Category `td-attributes`.
    pub td_attributes: Option<Masked>,
}

impl Default for TdxPolicy {
    fn default() -> Self {
        TdxPolicy {
            allow_debug: false,
            allowed_tcb_statuses: vec![TcbStatus::UpToDate],
            allowed_advisory_ids: None,
            mrtd: Vec::new(),
            rtmr: Default::default(),
            mrconfigid: Vec::new(),
            mrowner: Vec::new(),
            mrownerconfig: Vec::new(),
            xfam: None,
            td_attributes: None,
        }
    }
}

/// The outcome of a successful appraisal: the claims, and which rules were applied to them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TdxAppraisal {
    pub claims: TdxClaims,
    /// The policy fields that constrained this appraisal.
    pub checked: Vec<&'static str>,
}

const RTMR_FIELDS: [&str; 4] = ["rtmr0", "rtmr1", "rtmr2", "rtmr3"];

/// Appraises a verified quote against `policy`.
///
/// # Errors
/// [`Error::Policy`] listing every violation; its category is `policy-debug` when DEBUG is among
/// them, else `tcb-out-of-date` when the TCB status is OutOfDate/Revoked-like and refused, else
/// `td-attributes` when the TD attribute mask refused it, else `policy`.
pub fn appraise(v: &VerifiedTdx, policy: &TdxPolicy) -> Result<TdxAppraisal, Error> {
    let r = v.quote().td_report();
    let mut violations = Vec::new();
    let mut checked = Vec::new();
    let mut violate = |field: &'static str, got: String, want: String| {
        violations.push(Violation { field, got, want })
    };

    if !policy.allow_debug {
        checked.push(DEBUG_POLICY_FIELD);
        if r.debug() {
            violate(
                DEBUG_POLICY_FIELD,
                "true".into(),
                "false (debug TDs not allowed)".into(),
            );
        }
    }
    checked.push(TCB_STATUS_FIELD);
    if !policy.allowed_tcb_statuses.contains(&v.tcb_status()) {
        let list: Vec<&str> = policy
            .allowed_tcb_statuses
            .iter()
            .map(|s| s.as_str())
            .collect();
        violate(
            TCB_STATUS_FIELD,
            v.tcb_status().to_string(),
            format!("one of [{}]", list.join(", ")),
        );
    }
    if let Some(allowed) = &policy.allowed_advisory_ids {
        checked.push("advisory_ids");
        let extra: Vec<&String> = v
            .advisory_ids()
            .iter()
            .filter(|a| !allowed.contains(a))
            .collect();
        if !extra.is_empty() {
            violate(
                "advisory_ids",
                format!("{extra:?}"),
                format!("only {allowed:?}"),
            );
        }
    }
    if let Some(m) = &policy.td_attributes {
        checked.push(TD_ATTRIBUTES_FIELD);
        let got = r.td_attributes_u64();
        if !m.accepts(got) {
            violate(
                TD_ATTRIBUTES_FIELD,
                format!("{got:#018x}"),
                format!("{:#018x} under mask {:#018x}", m.value, m.mask),
            );
        }
    }
    if let Some(m) = &policy.xfam {
        checked.push("xfam");
        let got = r.xfam_u64();
        if !m.accepts(got) {
            violate(
                "xfam",
                format!("{got:#018x}"),
                format!("{:#018x} under mask {:#018x}", m.value, m.mask),
            );
        }
    }
    // (field, allowed values, reported value)
    type Pin<'a> = (&'static str, &'a [[u8; 48]], &'a [u8; 48]);
    let mut pins: Vec<Pin<'_>> = vec![
        ("mrtd", &policy.mrtd, &r.mr_td),
        ("mrconfigid", &policy.mrconfigid, &r.mr_config_id),
        ("mrowner", &policy.mrowner, &r.mr_owner),
        ("mrownerconfig", &policy.mrownerconfig, &r.mr_owner_config),
    ];
    for ((field, allowed), got) in RTMR_FIELDS.iter().zip(&policy.rtmr).zip(&r.rtmr) {
        pins.push((field, allowed, got));
    }
    for (field, allowed, got) in pins {
        if allowed.is_empty() {
            continue;
        }
        checked.push(field);
        if !allowed.contains(got) {
            let list: Vec<String> = allowed.iter().map(hex::encode).collect();
            violate(
                field,
                hex::encode(got),
                format!("one of [{}]", list.join(", ")),
            );
        }
    }

    if violations.is_empty() {
        Ok(TdxAppraisal {
            claims: v.claims(),
            checked,
        })
    } else {
        Err(Error::Policy { violations })
    }
}

/// Requires REPORTDATA to equal `expected` (the nonce or key binding the relying party chose), in
/// constant time.
///
/// # Errors
/// [`Error::Nonce`] with both values.
pub fn check_report_data(quote: &Quote, expected: &[u8; 64]) -> Result<(), Error> {
    let got = quote.report_data();
    let diff = got
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if std::hint::black_box(diff) == 0 {
        Ok(())
    } else {
        Err(Error::Nonce {
            got: hex::encode(got),
            want: hex::encode(expected),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::tdx::{Collateral, IntelRoots, TdxVerifier};

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    fn verified(name: &str, as_of: &str) -> VerifiedTdx {
        let q = Quote::parse(&std::fs::read(format!("{TESTDATA}/tdx/{name}/quote.bin")).unwrap())
            .unwrap();
        let c = Collateral::from_dir(format!("{TESTDATA}/tdx/{name}/collateral")).unwrap();
        let now =
            time::OffsetDateTime::parse(as_of, &time::format_description::well_known::Rfc3339)
                .unwrap()
                .unix_timestamp();
        TdxVerifier::new(IntelRoots::intel())
            .verify(&q, &c, now)
            .unwrap()
    }

    #[test]
    fn every_violation_is_reported_with_category_precedence() {
        let debug = verified("trustee-50806f-v4-debug", "2023-06-20T00:00:00Z");
        let strict = TdxPolicy {
            allowed_tcb_statuses: vec![TcbStatus::SWHardeningNeeded],
            allowed_advisory_ids: Some(vec![]),
            mrtd: vec![[1; 48]],
            rtmr: [vec![[2; 48]], vec![], vec![], vec![[3; 48]]],
            mrconfigid: vec![[4; 48]],
            xfam: Some(Masked {
                value: 0,
                mask: 0xff,
            }),
            td_attributes: Some(Masked {
                value: 0,
                mask: 1 << 28,
            }),
            ..TdxPolicy::default()
        };
        let e = appraise(&debug, &strict).unwrap_err();
        let Error::Policy { violations } = &e else {
            panic!("{e}")
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "policy.debug",
                "tcb_status",
                "td_attributes",
                "xfam",
                "mrtd",
                "mrconfigid",
                "rtmr0",
                "rtmr3"
            ]
        );
        assert_eq!(e.category(), "policy-debug");
        // Debug allowed: UpToDate is not in the list → plain "policy" (UpToDate is not out of date),
        // but the td_attributes rule makes it "td-attributes".
        let e = appraise(
            &debug,
            &TdxPolicy {
                allow_debug: true,
                ..strict.clone()
            },
        )
        .unwrap_err();
        assert_eq!(e.category(), "td-attributes");
        let e = appraise(
            &debug,
            &TdxPolicy {
                allow_debug: true,
                td_attributes: None,
                ..strict
            },
        )
        .unwrap_err();
        assert_eq!(e.category(), "policy");
        // Pins that match: accepted.
        let r = debug.quote().td_report();
        let ok = TdxPolicy {
            allow_debug: true,
            mrtd: vec![[1; 48], r.mr_td],
            rtmr: [vec![r.rtmr[0]], vec![], vec![], vec![]],
            xfam: Some(Masked {
                value: r.xfam_u64(),
                mask: u64::MAX,
            }),
            ..TdxPolicy::default()
        };
        let a = appraise(&debug, &ok).unwrap();
        assert_eq!(a.checked, ["tcb_status", "xfam", "mrtd", "rtmr0"]);
    }

    #[test]
    fn out_of_date_platform_is_tcb_out_of_date() {
        let v = verified("zkdcap-00806f-v4", "2025-10-01T00:00:00Z");
        assert_eq!(v.tcb_status(), TcbStatus::OutOfDate);
        let e = appraise(&v, &TdxPolicy::default()).unwrap_err();
        assert_eq!(e.category(), "tcb-out-of-date");
        // Listed: accepted only if the advisories are acceptable too.
        let p = TdxPolicy {
            allowed_tcb_statuses: vec![TcbStatus::UpToDate, TcbStatus::OutOfDate],
            allowed_advisory_ids: Some(vec!["INTEL-SA-00960".into()]),
            ..TdxPolicy::default()
        };
        let e = appraise(&v, &p).unwrap_err();
        assert_eq!(e.category(), "policy", "{e}");
        assert!(e.to_string().contains("INTEL-SA-00982"), "{e}");
    }

    #[test]
    fn sept_ve_disable_requirement_refuses_the_azure_td() {
        let v = verified("azure-00806f-v4", "2025-10-01T00:00:00Z");
        appraise(&v, &TdxPolicy::default()).unwrap();
        let p = TdxPolicy {
            td_attributes: Some(Masked {
                value: 1 << 28,
                mask: 1 << 28,
            }),
            ..TdxPolicy::default()
        };
        assert_eq!(appraise(&v, &p).unwrap_err().category(), "td-attributes");
    }

    #[test]
    fn report_data_must_match_exactly() {
        let v = verified("near-20a06f-v4", "2025-09-15T00:00:00Z");
        let mut want = *v.quote().report_data();
        check_report_data(v.quote(), &want).unwrap();
        want[0] ^= 1;
        assert_eq!(
            check_report_data(v.quote(), &want).unwrap_err().category(),
            "nonce"
        );
    }
}

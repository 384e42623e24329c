//! Appraisal: policy on verified claims (go-sev-guest's `validate`). It does not look at certificates or
//! signatures; it takes a [`VerifiedSnp`], which only verification can produce.
//!
//! Every rule is checked and every violation reported, each with field, value and what was wanted.

use super::verify::VerifiedSnp;
use super::{SnpClaims, TcbParts};
use crate::error::{Violation, DEBUG_POLICY_FIELD};
use crate::Error;

/// What verified SNP evidence must satisfy. [`Default`] is the baseline: debug guests and guests with
/// a migration agent are refused, nothing is pinned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnpPolicy {
    /// Accept guests whose policy has DEBUG set (the host can read and alter their memory).
    pub allow_debug: bool,
    /// Accept guests that may have a migration agent (it can read guest memory).
    pub allow_migrate_ma: bool,
    /// Component-wise minimum of the REPORTED_TCB (the TCB the VCEK is derived from).
    pub minimum_tcb: Option<TcbParts>,
    /// If not empty, MEASUREMENT must be one of these.
    pub allowed_measurements: Vec<[u8; 48]>,
    /// If not empty, HOST_DATA must be one of these.
    pub allowed_host_data: Vec<[u8; 32]>,
    /// If not empty, ID_KEY_DIGEST must be one of these (the launch was authorised by that ID key).
    pub allowed_id_key_digests: Vec<[u8; 48]>,
    /// If not empty, VMPL must be one of these.
    pub allowed_vmpls: Vec<u32>,
    /// Minimum GUEST_SVN.
    pub minimum_guest_svn: Option<u32>,
}

/// The outcome of a successful appraisal: the claims, and which rules were applied to them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Appraisal {
    pub claims: SnpClaims,
    /// The policy fields that constrained this appraisal (e.g. `policy.debug`, `measurement`).
    pub checked: Vec<&'static str>,
}

fn one_of<T: PartialEq>(allowed: &[T], got: &T, show: impl Fn(&T) -> String) -> Option<String> {
    (!allowed.is_empty() && !allowed.contains(got)).then(|| {
        let list: Vec<String> = allowed.iter().map(&show).collect();
        format!("one of [{}]", list.join(", "))
    })
}

/// Appraises verified evidence against `policy`.
///
/// # Errors
/// [`Error::Policy`] listing every violation; its category is `policy-debug` when DEBUG is among them.
pub fn appraise(v: &VerifiedSnp, policy: &SnpPolicy) -> Result<Appraisal, Error> {
    let r = v.report();
    let guest = r.policy();
    let mut violations = Vec::new();
    let mut checked = Vec::new();
    let mut violate = |field: &'static str, got: String, want: String| {
        violations.push(Violation { field, got, want })
    };

    if !policy.allow_debug {
        checked.push(DEBUG_POLICY_FIELD);
        if guest.debug {
            violate(
                DEBUG_POLICY_FIELD,
                "true".into(),
                "false (debug guests not allowed)".into(),
            );
        }
    }
    if !policy.allow_migrate_ma {
        checked.push("policy.migrate_ma");
        if guest.migrate_ma {
            violate(
                "policy.migrate_ma",
                "true".into(),
                "false (migration agent not allowed)".into(),
            );
        }
    }
    if let Some(min) = &policy.minimum_tcb {
        checked.push("reported_tcb");
        let got = v.reported_tcb();
        if !got.meets(min) {
            violate("reported_tcb", got.to_string(), format!("at least {min}"));
        }
    }
    if let Some(min) = policy.minimum_guest_svn {
        checked.push("guest_svn");
        if r.guest_svn() < min {
            violate(
                "guest_svn",
                r.guest_svn().to_string(),
                format!("at least {min}"),
            );
        }
    }
    let hex48 = |b: &[u8; 48]| hex::encode(b);
    let pins: [(&'static str, bool, Option<String>, String); 4] = [
        (
            "measurement",
            policy.allowed_measurements.is_empty(),
            one_of(&policy.allowed_measurements, r.measurement(), hex48),
            hex::encode(r.measurement()),
        ),
        (
            "host_data",
            policy.allowed_host_data.is_empty(),
            one_of(&policy.allowed_host_data, r.host_data(), |b| hex::encode(b)),
            hex::encode(r.host_data()),
        ),
        (
            "id_key_digest",
            policy.allowed_id_key_digests.is_empty(),
            one_of(&policy.allowed_id_key_digests, r.id_key_digest(), hex48),
            hex::encode(r.id_key_digest()),
        ),
        (
            "vmpl",
            policy.allowed_vmpls.is_empty(),
            one_of(&policy.allowed_vmpls, &r.vmpl(), u32::to_string),
            r.vmpl().to_string(),
        ),
    ];
    for (field, unconstrained, want, got) in pins {
        if !unconstrained {
            checked.push(field);
        }
        if let Some(want) = want {
            violate(field, got, want);
        }
    }

    if violations.is_empty() {
        Ok(Appraisal {
            claims: v.claims(),
            checked,
        })
    } else {
        Err(Error::Policy { violations })
    }
}

/// Requires REPORT_DATA to equal `expected` (the nonce or key binding the relying party chose), in
/// constant time.
///
/// # Errors
/// [`Error::Nonce`] with both values.
pub fn check_report_data(
    report: &super::AttestationReport,
    expected: &[u8; 64],
) -> Result<(), Error> {
    let got = report.report_data();
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
    use crate::snp::{AttestationReport, CertChain, TrustAnchors, Verifier};

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    /// The genuine debug guest of the manifest (snp-gsg-milan-v2-debug), verified.
    fn debug_guest() -> VerifiedSnp {
        let read = |rel: &str| std::fs::read(format!("{TESTDATA}/{rel}")).unwrap();
        let report = AttestationReport::parse(&read("snp/gsg-milan-v2-debug/report.bin")).unwrap();
        let mut chain = CertChain::default();
        for f in [
            "snp/gsg-milan-v2-debug/vcek.der",
            "vendor-roots/amd/milan/ask.pem",
            "vendor-roots/amd/milan/ark.pem",
        ] {
            chain.add_pem_or_der(&read(f)).unwrap();
        }
        let now = time::macros::datetime!(2022-09-25 00:00 UTC).unix_timestamp();
        Verifier::new(TrustAnchors::amd())
            .verify(&report, &chain, now)
            .unwrap()
    }

    #[test]
    fn every_violation_is_reported() {
        let v = debug_guest();
        let strict = SnpPolicy {
            allow_debug: false,
            allow_migrate_ma: false,
            minimum_tcb: Some(TcbParts {
                fmc: None,
                bootloader: 3,
                tee: 0,
                snp: 5,
                microcode: 68,
            }),
            allowed_measurements: vec![[0x11; 48]],
            allowed_host_data: vec![[0x22; 32]],
            allowed_id_key_digests: vec![[0x33; 48]],
            allowed_vmpls: vec![1, 2],
            minimum_guest_svn: Some(1),
        };
        let e = appraise(&v, &strict).unwrap_err();
        let Error::Policy { violations } = &e else {
            panic!("{e}")
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "policy.debug",
                "reported_tcb",
                "guest_svn",
                "measurement",
                "host_data",
                "id_key_digest",
                "vmpl"
            ]
        );
        assert_eq!(e.category(), "policy-debug");
        let tcb = &violations[1];
        assert_eq!(
            (tcb.got.as_str(), tcb.want.as_str()),
            (
                "bl=2 tee=0 snp=5 ucode=68",
                "at least bl=3 tee=0 snp=5 ucode=68"
            )
        );
        assert_eq!(violations[6].want, "one of [1, 2]");

        // Debug allowed: the rest still fail, now as plain "policy".
        let e = appraise(
            &v,
            &SnpPolicy {
                allow_debug: true,
                ..strict.clone()
            },
        )
        .unwrap_err();
        assert_eq!(e.category(), "policy");

        // Pins that match, debug allowed: accepted, and the appraisal says what was checked.
        let r = v.report();
        let matching = SnpPolicy {
            allow_debug: true,
            minimum_tcb: Some(v.reported_tcb()),
            allowed_measurements: vec![[0x11; 48], *r.measurement()],
            allowed_host_data: vec![*r.host_data()],
            allowed_id_key_digests: vec![*r.id_key_digest()],
            allowed_vmpls: vec![r.vmpl()],
            minimum_guest_svn: Some(r.guest_svn()),
            ..SnpPolicy::default()
        };
        let a = appraise(&v, &matching).unwrap();
        assert_eq!(
            a.checked,
            [
                "policy.migrate_ma",
                "reported_tcb",
                "guest_svn",
                "measurement",
                "host_data",
                "id_key_digest",
                "vmpl"
            ]
        );
        assert_eq!(a.claims.measurement, hex::encode(r.measurement()));
    }

    #[test]
    fn baseline_refuses_debug_only() {
        let e = appraise(&debug_guest(), &SnpPolicy::default()).unwrap_err();
        let Error::Policy { violations } = &e else {
            panic!("{e}")
        };
        assert_eq!(violations.len(), 1);
        assert_eq!(e.category(), "policy-debug");
    }

    #[test]
    fn report_data_must_match_exactly() {
        let v = debug_guest();
        let mut want = *v.report().report_data();
        check_report_data(v.report(), &want).unwrap();
        want[63] ^= 0x80;
        let e = check_report_data(v.report(), &want).unwrap_err();
        assert_eq!(e.category(), "nonce");
        assert_eq!(e.class(), crate::ErrorClass::Refused);
    }
}

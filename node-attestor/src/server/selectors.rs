//! Node selector values for verified SNP and TDX evidence. SPIRE stores each as `Selector{type=<plugin name>,
//! value}`, so `tee:snp` from plugin `twi` is matched by `-node -selector twi:tee:snp`.
//!
//! Values use the claims' lower-case hex. When the chain ended at a simulated root, every value is
//! prefixed `simulated:`, so an entry written for real hardware can never match a simulated VM.
//!
//! The appraisal policy adds `policy-match:<name>` values for its `selectors { match … }` rules
//! ([`twi_core::policy::Policy::selectors_for`], which applies the same `simulated:` prefix); the
//! server appends them to these.

use twi_core::snp::{Product, SigningKeyKind, SnpClaims};
use twi_core::tdx::{TcbStatus, TdxClaims};

/// Prefix of every selector of evidence that chained to a simulated root: the policy library's, so the
/// `policy-match` values carry the same one.
pub const SIMULATED_PREFIX: &str = twi_core::policy::SIMULATED_PREFIX;

/// The selector values for verified evidence, in a stable order, without duplicates.
pub fn snp_selectors(c: &SnpClaims) -> Vec<String> {
    let mut s = vec![
        "tee:snp".to_owned(),
        format!("snp:product:{}", c.product.kds_name().to_ascii_lowercase()),
        format!("snp:report_version:{}", c.report_version),
        format!("snp:measurement:{}", c.measurement),
        format!("snp:host_data:{}", c.host_data),
        format!("snp:id_key_digest:{}", c.id_key_digest),
        format!("snp:author_key_digest:{}", c.author_key_digest),
        format!("snp:family_id:{}", c.family_id),
        format!("snp:image_id:{}", c.image_id),
        format!("snp:guest_svn:{}", c.guest_svn),
        format!("snp:vmpl:{}", c.vmpl),
        format!("snp:policy:{:#x}", c.policy_bits.raw),
        format!("snp:policy:debug:{}", c.policy_bits.debug),
        format!("snp:policy:migrate_ma:{}", c.policy_bits.migrate_ma),
        format!("snp:policy:smt:{}", c.policy_bits.smt),
        format!("snp:policy:single_socket:{}", c.policy_bits.single_socket),
        format!(
            "snp:reported_tcb:{}",
            c.reported_tcb_raw
                .trim_start_matches("0x")
                .to_ascii_lowercase()
        ),
    ];
    let tcb = &c.reported_tcb;
    if c.product == Product::Turin {
        if let Some(fmc) = tcb.fmc {
            s.push(format!("snp:reported_tcb:fmc:{fmc}"));
        }
    }
    s.push(format!("snp:reported_tcb:bootloader:{}", tcb.bootloader));
    s.push(format!("snp:reported_tcb:tee:{}", tcb.tee));
    s.push(format!("snp:reported_tcb:snp:{}", tcb.snp));
    s.push(format!("snp:reported_tcb:microcode:{}", tcb.microcode));
    let key = match c.signing_key {
        SigningKeyKind::Vlek => "vlek",
        _ => "vcek",
    };
    s.push(format!("snp:signing_key:{key}"));
    // A VLEK is not bound to a chip, and a masked CHIP_ID is all zero: neither identifies hardware.
    if c.signing_key == SigningKeyKind::Vcek && !c.mask_chip_key {
        s.push(format!("snp:chip_id:{}", c.chip_id));
    }
    if c.simulated {
        for v in &mut s {
            v.insert_str(0, SIMULATED_PREFIX);
        }
    }
    s
}

/// A little-endian 8-byte field (as the claims carry it, in hex) as its u64 value in 16 hex digits, the
/// way operators read TD_ATTRIBUTES and XFAM (`0000000010000000` = SEPT_VE_DISABLE).
fn le_u64_hex(claim_hex: &str) -> String {
    match hex::decode(claim_hex)
        .ok()
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
    {
        Some(b) => format!("{:016x}", u64::from_le_bytes(b)),
        // Not reachable for claims of a parsed quote; keep the raw form rather than invent a value.
        None => claim_hex.to_ascii_lowercase(),
    }
}

/// Intel's TCB status in selector form: lower case, no separators (`uptodate`, `swhardeningneeded`).
fn tcb_status_value(s: TcbStatus) -> String {
    s.as_str().to_ascii_lowercase()
}

/// The selector values for a verified and appraised TDX quote, in a stable order, without duplicates.
pub fn tdx_selectors(c: &TdxClaims) -> Vec<String> {
    let mut s = vec![
        "tee:tdx".to_owned(),
        format!("tdx:quote_version:{}", c.quote_version),
        format!("tdx:mrtd:{}", c.mrtd),
        format!("tdx:rtmr0:{}", c.rtmr0),
        format!("tdx:rtmr1:{}", c.rtmr1),
        format!("tdx:rtmr2:{}", c.rtmr2),
        format!("tdx:rtmr3:{}", c.rtmr3),
        format!("tdx:mrconfigid:{}", c.mrconfigid),
        format!("tdx:mrowner:{}", c.mrowner),
        format!("tdx:mrownerconfig:{}", c.mrownerconfig),
        format!("tdx:td_attributes:{}", le_u64_hex(&c.td_attributes)),
        format!("tdx:debug:{}", c.td_attributes_bits.debug),
        format!(
            "tdx:sept_ve_disable:{}",
            c.td_attributes_bits.sept_ve_disable
        ),
        format!("tdx:xfam:{}", le_u64_hex(&c.xfam)),
        format!("tdx:tcb_status:{}", tcb_status_value(c.tcb_status)),
        format!("tdx:fmspc:{}", c.fmspc.to_ascii_lowercase()),
        format!("tdx:tee_tcb_svn:{}", c.tee_tcb_svn.to_ascii_lowercase()),
    ];
    if c.simulated {
        for v in &mut s {
            v.insert_str(0, SIMULATED_PREFIX);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::collections::BTreeSet;
    use twi_core::policy::{Policy, POLICY_MATCH_PREFIX};
    use twi_core::snp::{AttestationReport, CertChain, TrustAnchors, VerifiedSnp, Verifier};
    use twi_core::tdx::VerifiedTdx;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");
    const DOC: &str = include_str!("../../doc/plugin_server_nodeattestor_twi.md");
    /// The doc shows selectors as SPIRE does, with the type (the default plugin name) in front.
    const DOC_TYPE: &str = "twi:";

    fn unix(rfc3339: &str) -> i64 {
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    }

    /// Real evidence from shared/testdata, verified to AMD's roots at its `as_of`.
    fn real(case: &str, key: &str, chain_dir: &str, ask: &str, as_of: &str) -> SnpClaims {
        real_verified(case, key, chain_dir, ask, as_of).claims()
    }

    fn real_verified(
        case: &str,
        key: &str,
        chain_dir: &str,
        ask: &str,
        as_of: &str,
    ) -> VerifiedSnp {
        let read = |rel: &str| std::fs::read(format!("{TESTDATA}/{rel}")).unwrap();
        let report = AttestationReport::parse(&read(&format!("snp/{case}/report.bin"))).unwrap();
        let mut chain = CertChain::default();
        chain
            .add_pem_or_der(&read(&format!("snp/{case}/{key}")))
            .unwrap();
        chain
            .add_pem_or_der(&read(&format!("vendor-roots/amd/{chain_dir}/{ask}")))
            .unwrap();
        chain
            .add_pem_or_der(&read(&format!("vendor-roots/amd/{chain_dir}/ark.pem")))
            .unwrap();
        Verifier::new(TrustAnchors::amd())
            .verify(&report, &chain, unix(as_of))
            .unwrap()
    }

    fn milan() -> SnpClaims {
        milan_verified().claims()
    }
    fn milan_verified() -> VerifiedSnp {
        real_verified(
            "oak-milan-v3",
            "vcek.der",
            "milan",
            "ask.pem",
            "2025-01-16T00:00:00Z",
        )
    }
    fn turin() -> SnpClaims {
        real(
            "oak-turin-v5",
            "vcek.der",
            "turin",
            "ask.pem",
            "2025-07-18T00:00:00Z",
        )
    }
    fn vlek() -> SnpClaims {
        real(
            "aws-milan-v3-vlek",
            "vlek.der",
            "milan",
            "asvk.pem",
            "2024-12-11T00:00:00Z",
        )
    }

    /// Real TDX evidence from shared/testdata, verified to Intel's root at its `as_of`.
    fn tdx_real() -> TdxClaims {
        tdx_real_verified().claims()
    }

    fn tdx_real_verified() -> VerifiedTdx {
        use twi_core::tdx::{Collateral, IntelRoots, Quote, TdxVerifier};
        let q =
            Quote::parse(&std::fs::read(format!("{TESTDATA}/tdx/dq-b0c06f-v4/quote.bin")).unwrap())
                .unwrap();
        let c = Collateral::from_dir(format!("{TESTDATA}/tdx/dq-b0c06f-v4/collateral")).unwrap();
        TdxVerifier::new(IntelRoots::intel())
            .verify(&q, &c, unix("2025-07-01T00:00:00Z"))
            .unwrap()
    }

    /// The `policy-match` values the appraisal policy adds: a rule naming the real evidence's own
    /// measurement (SEV-SNP) and MRTD (TDX), applied to the appraisals it accepted.
    fn policy_match_values() -> Vec<String> {
        let snp = milan_verified();
        let tdx = tdx_real_verified();
        let policy = Policy::parse(&format!(
            "id = \"doc\"\nversion = 1\nsnp {{}}\ntdx {{}}\nselectors {{\n match \"web-v3\" {{\n  \
             snp {{\n   measurement = [\"{}\"]\n  }}\n  tdx {{\n   mrtd = [\"{}\"]\n  }}\n }}\n}}\n",
            snp.claims().measurement,
            tdx.claims().mrtd
        ))
        .unwrap();
        let snp = twi_core::snp::appraise(&snp, policy.snp_policy().unwrap()).unwrap();
        let tdx = twi_core::tdx::appraise(&tdx, policy.tdx_policy().unwrap()).unwrap();
        let mut values = policy.selectors_for(&snp);
        values.extend(policy.selectors_for(&tdx));
        let want = format!("{POLICY_MATCH_PREFIX}web-v3");
        assert_eq!(values, [want.clone(), want], "one value per accepted TEE");
        values
    }

    /// `snp:policy:debug:false` → `snp:policy:debug` (values never contain `:`).
    fn kind(value: &str) -> String {
        let v = value.strip_prefix(SIMULATED_PREFIX).unwrap_or(value);
        v.rsplit_once(':')
            .map(|(k, _)| k.to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn real_milan_values() {
        let c = milan();
        let s = snp_selectors(&c);
        let has = |v: &str| s.iter().any(|x| x == v);
        assert!(has("tee:snp"));
        assert!(has("snp:product:milan"));
        assert!(has("snp:report_version:3"));
        assert!(has(&format!("snp:measurement:{}", c.measurement)));
        assert!(has("snp:policy:debug:false"));
        assert!(has("snp:signing_key:vcek"));
        assert!(has(&format!("snp:chip_id:{}", c.chip_id)));
        assert!(has(&format!("snp:policy:{}", c.policy)));
        let tcb = s
            .iter()
            .find(|v| v.starts_with("snp:reported_tcb:") && kind(v) == "snp:reported_tcb")
            .unwrap();
        assert_eq!(tcb.len(), "snp:reported_tcb:".len() + 16, "{tcb}");
        assert!(!s.iter().any(|v| v.starts_with(SIMULATED_PREFIX)));
        assert!(!s.iter().any(|v| v.contains("fmc")), "fmc is Turin only");
        for v in &s {
            assert_eq!(v, &v.to_ascii_lowercase(), "lower case");
        }
        let unique: BTreeSet<_> = s.iter().collect();
        assert_eq!(unique.len(), s.len(), "no duplicates");
    }

    #[test]
    fn turin_has_fmc_and_vlek_has_no_chip_id() {
        let t = snp_selectors(&turin());
        assert!(
            t.iter().any(|v| v.starts_with("snp:reported_tcb:fmc:")),
            "{t:?}"
        );
        assert!(t.iter().any(|v| v == "snp:product:turin"));
        let v = snp_selectors(&vlek());
        assert!(v.iter().any(|x| x == "snp:signing_key:vlek"));
        assert!(!v.iter().any(|x| x.starts_with("snp:chip_id:")), "{v:?}");
    }

    #[test]
    fn simulated_prefixes_every_value() {
        let mut c = milan();
        c.simulated = true;
        let s = snp_selectors(&c);
        assert!(s.iter().all(|v| v.starts_with(SIMULATED_PREFIX)), "{s:?}");
        assert!(s.iter().any(|v| v == "simulated:tee:snp"));
        // No value of the real form survives.
        c.simulated = false;
        let real: BTreeSet<_> = snp_selectors(&c).into_iter().collect();
        assert!(s.iter().all(|v| !real.contains(v)));
    }

    /// The doc page's `## Selectors` table: the first column holds `` `twi:snp:policy:debug` ``-style kinds.
    fn documented_kinds() -> BTreeSet<String> {
        let section = DOC
            .split("## Selectors")
            .nth(1)
            .expect("doc has a Selectors section");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .filter(|l| l.starts_with('|'))
            .filter_map(|l| l.split('|').nth(1))
            .map(str::trim)
            .filter(|c| c.starts_with('`'))
            .map(|c| c.trim_matches('`'))
            .map(|c| c.strip_prefix(DOC_TYPE).unwrap_or(c).to_owned())
            .collect()
    }

    #[test]
    fn doc_selector_table_matches_the_code() {
        let mut emitted = BTreeSet::new();
        for c in [milan(), turin(), vlek()] {
            for v in snp_selectors(&c) {
                emitted.insert(kind(&v));
            }
        }
        for v in tdx_selectors(&tdx_real()) {
            emitted.insert(kind(&v));
        }
        for v in policy_match_values() {
            emitted.insert(kind(&v));
        }
        let documented = documented_kinds();
        let undocumented: Vec<_> = emitted.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&emitted).collect();
        assert!(
            undocumented.is_empty(),
            "emitted but not in the doc table: {undocumented:?}"
        );
        assert!(
            stale.is_empty(),
            "in the doc table but never emitted: {stale:?}"
        );
        // And every example in the table is a value of its own row's kind.
        let section = DOC.split("## Selectors").nth(1).unwrap();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            let (k, example) = (cols[1].trim_matches('`'), cols[2].trim_matches('`'));
            let example = example
                .strip_prefix(DOC_TYPE)
                .expect("example shows the selector type");
            let k = k
                .strip_prefix(DOC_TYPE)
                .expect("kind shows the selector type");
            assert_eq!(kind(example), k, "example {example} of row {k}");
        }
        assert!(
            DOC.contains("twi:simulated:tee:snp"),
            "the doc explains the simulated prefix"
        );
        assert!(DOC.contains("twi:simulated:tee:tdx"));
        assert!(
            DOC.contains("twi:simulated:policy-match:"),
            "the doc shows the simulated prefix on policy-match values"
        );
    }

    #[test]
    fn real_tdx_values() {
        let c = tdx_real();
        let s = tdx_selectors(&c);
        let has = |v: &str| s.iter().any(|x| x == v);
        assert!(has("tee:tdx"), "{s:?}");
        assert!(has("tdx:quote_version:4"));
        assert!(has(&format!("tdx:mrtd:{}", c.mrtd)));
        assert_eq!(c.mrtd.len(), 96);
        // The manifest's facts: TD_ATTRIBUTES bytes 0000001000000000 = SEPT_VE_DISABLE (bit 28).
        assert!(has("tdx:td_attributes:0000000010000000"), "{s:?}");
        assert!(has("tdx:debug:false"));
        assert!(has("tdx:sept_ve_disable:true"));
        assert!(has("tdx:xfam:00000000000602e7"), "{s:?}");
        assert!(has("tdx:tcb_status:uptodate"), "{s:?}");
        assert!(has("tdx:fmspc:b0c06f000000"), "{s:?}");
        assert!(has("tdx:tee_tcb_svn:06010300000000000000000000000000"));
        for v in &s {
            assert_eq!(v, &v.to_ascii_lowercase(), "lower case");
            assert!(!v.starts_with(SIMULATED_PREFIX));
        }
        let unique: BTreeSet<_> = s.iter().collect();
        assert_eq!(unique.len(), s.len(), "no duplicates");
        let mut sim = c;
        sim.simulated = true;
        let s2 = tdx_selectors(&sim);
        assert!(s2.iter().all(|v| v.starts_with(SIMULATED_PREFIX)));
        assert!(s2.iter().any(|v| v == "simulated:tee:tdx"));
        assert!(s2.iter().all(|v| !s.contains(v)));
    }
}

//! Every `tee = "snp"` case of the shared manifest (real evidence and derived negatives), through
//! parse → verify (AMD roots only, at the case's `as_of`) → appraise (baseline policy) → REPORT_DATA,
//! checking the verdict, the reason category, and the case's facts against the parsed claims.
//!
//! Each case runs three times: with a fresh verifier (cold path), and twice more on one verifier shared
//! by all cases (the third pass is all warm cache hits), which must give the same outcome.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use toml::Value;
use twi_core::snp::{
    appraise, check_report_data, AttestationReport, CertChain, SnpPolicy, TrustAnchors, Verifier,
};

fn testdata() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata"
    ))
    .to_path_buf()
}

/// The outcome of one case: accepted (with claims as JSON) or the error's category and message.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Accept(serde_json::Value),
    Reject {
        category: &'static str,
        message: String,
    },
}

struct Case {
    name: String,
    table: toml::Table,
    report: Vec<u8>,
    chain: CertChain,
    now: i64,
    expected_report_data: Option<[u8; 64]>,
}

fn load_case(table: &toml::Table) -> Result<Case> {
    let name = table["name"].as_str().context("name")?.to_owned();
    let files = table["files"].as_table().context("files")?;
    let read = |role: &str| -> Result<Option<Vec<u8>>> {
        files
            .get(role)
            .map(|p| {
                std::fs::read(testdata().join(p.as_str().unwrap()))
                    .with_context(|| format!("{name}: {role}"))
            })
            .transpose()
    };
    let report = read("report")?.ok_or_else(|| anyhow!("{name}: no report"))?;
    let mut chain = CertChain::default();
    for role in ["vcek", "vlek", "ask", "asvk", "ark"] {
        if let Some(bytes) = read(role)? {
            chain
                .add_pem_or_der(&bytes)
                .with_context(|| format!("{name}: {role}"))?;
        }
    }
    let as_of = table["as_of"].as_str().context("as_of")?;
    let now = time::OffsetDateTime::parse(as_of, &time::format_description::well_known::Rfc3339)?
        .unix_timestamp();
    let expected_report_data = match table.get("expected_report_data") {
        Some(v) => Some(
            <[u8; 64]>::try_from(hex::decode(v.as_str().unwrap())?)
                .map_err(|_| anyhow!("64 bytes"))?,
        ),
        None => None,
    };
    Ok(Case {
        name,
        table: table.clone(),
        report,
        chain,
        now,
        expected_report_data,
    })
}

fn run(case: &Case, verifier: &Verifier) -> Outcome {
    let steps = || -> Result<serde_json::Value, twi_core::Error> {
        let report = AttestationReport::parse(&case.report)?;
        let verified = verifier.verify(&report, &case.chain, case.now)?;
        appraise(&verified, &SnpPolicy::default())?;
        if let Some(expected) = &case.expected_report_data {
            check_report_data(&report, expected)?;
        }
        Ok(serde_json::to_value(verified.claims()).unwrap())
    };
    match steps() {
        Ok(claims) => Outcome::Accept(claims),
        Err(e) => Outcome::Reject {
            category: e.category(),
            message: e.to_string(),
        },
    }
}

fn check_verdict(case: &Case, outcome: &Outcome) -> Result<()> {
    let expected = case.table["expected"].as_str().unwrap();
    match (expected, outcome) {
        ("accept", Outcome::Accept(_)) => Ok(()),
        ("reject", Outcome::Reject { category, message }) => {
            let mut allowed: Vec<&str> = vec![case.table["reason"].as_str().unwrap()];
            if let Some(alt) = case.table.get("alt_reasons") {
                allowed.extend(alt.as_array().unwrap().iter().map(|v| v.as_str().unwrap()));
            }
            if allowed.contains(category) {
                Ok(())
            } else {
                bail!("rejected as {category} ({message}), want one of {allowed:?}")
            }
        }
        (want, got) => bail!("want {want}, got {got:?}"),
    }
}

/// Compares the manifest's `[case.facts]` with the claims of verified evidence.
fn check_facts(case: &Case, claims: &serde_json::Value) -> Result<usize> {
    let Some(facts) = case.table.get("facts").and_then(Value::as_table) else {
        return Ok(0);
    };
    let mut checked = 0;
    let mut eq = |fact: &str, claim: serde_json::Value| -> Result<()> {
        let Some(want) = facts.get(fact) else {
            return Ok(());
        };
        let want = serde_json::to_value(want)?;
        if want != claim {
            bail!("fact {fact}: manifest {want}, claims {claim}");
        }
        checked += 1;
        Ok(())
    };
    let c = claims;
    for (fact, claim) in [
        ("report_version", "report_version"),
        ("product", "product"),
        ("signing_key", "signing_key"),
        ("policy", "policy"),
        ("policy_abi_min", "policy_abi_min"),
        ("vmpl", "vmpl"),
        ("platform_info", "platform_info"),
        ("author_key_en", "author_key_en"),
        ("mask_chip_key", "mask_chip_key"),
        ("chip_id", "chip_id"),
        ("report_data", "report_data"),
        ("measurement", "measurement"),
        ("host_data", "host_data"),
        ("firmware", "current_firmware"),
        ("reported_tcb", "reported_tcb"),
        ("current_tcb", "current_tcb"),
        ("committed_tcb", "committed_tcb"),
        ("launch_tcb", "launch_tcb"),
    ] {
        eq(fact, c[claim].clone())?;
    }
    eq("policy_debug", c["policy_bits"]["debug"].clone())?;
    eq("policy_migrate_ma", c["policy_bits"]["migrate_ma"].clone())?;
    eq("policy_smt", c["policy_bits"]["smt"].clone())?;
    if !c["cpuid"].is_null() {
        eq(
            "cpuid_fam_mod_step",
            serde_json::json!([
                c["cpuid"]["family"],
                c["cpuid"]["model"],
                c["cpuid"]["stepping"]
            ]),
        )?;
    } else if facts.contains_key("cpuid_fam_mod_step") {
        bail!("fact cpuid_fam_mod_step present but the report has no CPUID");
    }
    // The TCB components are JSON numbers on both sides; the manifest omits fmc before Turin.
    Ok(checked)
}

#[test]
fn snp_manifest_vectors() -> Result<()> {
    let manifest: toml::Table =
        std::fs::read_to_string(testdata().join("manifest.toml"))?.parse()?;
    let cases: Vec<Case> = manifest["case"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_table().unwrap())
        .filter(|c| c.get("tee").and_then(Value::as_str) == Some("snp"))
        .map(load_case)
        .collect::<Result<_>>()?;
    assert!(cases.len() >= 20, "only {} SNP cases found", cases.len());

    let shared = Verifier::new(TrustAnchors::amd());
    let mut failures = Vec::new();
    let (mut accepted, mut rejected, mut facts_checked) = (0, 0, 0);
    for case in &cases {
        let cold = run(case, &Verifier::new(TrustAnchors::amd()));
        let shared_first = run(case, &shared);
        let verdict = check_verdict(case, &cold).and_then(|()| {
            if shared_first != cold {
                bail!("shared verifier gave {shared_first:?}, fresh one {cold:?}");
            }
            Ok(())
        });
        let facts = match &cold {
            Outcome::Accept(claims) => check_facts(case, claims),
            Outcome::Reject { .. } => Ok(0),
        };
        // The genuine-but-refused case: its facts still match the verified (not appraised) claims.
        let facts = match (&cold, case.table.get("authentic")) {
            (Outcome::Reject { .. }, Some(Value::Boolean(true))) => {
                verified_claims(case).and_then(|c| check_facts(case, &c))
            }
            _ => facts,
        };
        let summary = match &cold {
            Outcome::Accept(_) => "accept".to_owned(),
            Outcome::Reject { category, message } => format!("reject {category}: {message}"),
        };
        match (verdict, facts) {
            (Ok(()), Ok(n)) => {
                facts_checked += n;
                if matches!(cold, Outcome::Accept(_)) {
                    accepted += 1;
                } else {
                    rejected += 1;
                }
                println!("ok   {:<32} {summary} [{n} facts]", case.name);
            }
            (v, f) => {
                let why = [v.err(), f.err()]
                    .into_iter()
                    .flatten()
                    .map(|e| format!("{e:#}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                println!("FAIL {:<32} {summary}: {why}", case.name);
                failures.push(format!("{}: {why}", case.name));
            }
        }
    }
    // Third pass: every chain that verified is now cached; outcomes must not change.
    for case in &cases {
        let warm = run(case, &shared);
        let cold = run(case, &Verifier::new(TrustAnchors::amd()));
        if warm != cold {
            failures.push(format!("{}: warm {warm:?} != cold {cold:?}", case.name));
        }
    }
    assert!(shared.cached_chains() > 0, "nothing was cached");
    println!(
        "{} SNP cases: {accepted} accepted, {rejected} rejected as expected, {facts_checked} facts checked, {} failures; {} chains cached",
        cases.len(),
        failures.len(),
        shared.cached_chains()
    );
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
    Ok(())
}

fn verified_claims(case: &Case) -> Result<serde_json::Value> {
    let report = AttestationReport::parse(&case.report)?;
    let v = Verifier::new(TrustAnchors::amd()).verify(&report, &case.chain, case.now)?;
    Ok(serde_json::to_value(v.claims())?)
}

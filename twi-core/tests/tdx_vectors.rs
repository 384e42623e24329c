//! Every `tee = "tdx"` case of the shared manifest (real quotes and derived negatives), through
//! parse → verify (Intel root only, at the case's `as_of`) → appraise (baseline policy) → REPORTDATA,
//! checking the verdict, the reason category, and the case's facts against the parsed quote and the
//! verified claims.
//!
//! Each case runs three times: with a fresh verifier (cold path), and twice more on one verifier shared
//! by all cases (the third pass is all warm cache hits), which must give the same outcome.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use toml::Value;
use twi_core::tdx::{
    appraise, check_report_data, Collateral, CollateralParts, IntelRoots, Quote, TdxPolicy,
    TdxVerifier, INTEL_SGX_ROOT_CA_SHA256,
};

fn testdata() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata"
    ))
    .to_path_buf()
}

/// Cases whose manifest verdict this verifier deliberately does not reproduce, with the reason and
/// the category it gives instead. Each is still checked: the deviation must be exactly the stated
/// one, and the manifest's verdict must hold for the quote without the offending bytes.
// Cases where our verdict departs from the manifest, with the reason. None today: tdx-gtg-spr-e4-v4
// carries 39 bytes of text ("extra bytes(only for testing purpose)") after the quote, which the
// manifest counts as zero padding; the parser drops unsigned trailing bytes, so the verdict matches.
const DEVIATIONS: [(&str, &str, &str); 0] = [];

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
    quote: Vec<u8>,
    collateral: Collateral,
    now: i64,
    expected_report_data: Option<[u8; 64]>,
}

fn load_case(table: &toml::Table) -> Result<Case> {
    let name = table["name"].as_str().context("name")?.to_owned();
    let files = table["files"].as_table().context("files")?;
    let read = |role: &str| -> Result<Vec<u8>> {
        let p = files
            .get(role)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{name}: no {role}"))?;
        std::fs::read(testdata().join(p)).with_context(|| format!("{name}: {role}"))
    };
    // The case names the Intel root; the verifier trusts only its pin, which must be that file.
    let root = read("intel_root")?;
    let digest: [u8; 32] = sha2_digest(&root);
    if digest != INTEL_SGX_ROOT_CA_SHA256 {
        bail!("{name}: intel_root is not the pinned Intel SGX Root CA");
    }
    let collateral = Collateral::from_parts(CollateralParts {
        tcb_info: read("tcb_info")?,
        tcb_info_issuer_chain: read("tcb_info_issuer_chain")?,
        qe_identity: read("qe_identity")?,
        qe_identity_issuer_chain: read("qe_identity_issuer_chain")?,
        pck_crl: read("pck_crl")?,
        pck_crl_issuer_chain: read("pck_crl_issuer_chain")?,
        root_ca_crl: read("root_ca_crl")?,
    })?;
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
    let quote = read("quote")?;
    Ok(Case {
        name,
        table: table.clone(),
        quote,
        collateral,
        now,
        expected_report_data,
    })
}

fn sha2_digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

fn run_bytes(case: &Case, quote: &[u8], verifier: &TdxVerifier) -> Outcome {
    let steps = || -> Result<serde_json::Value, twi_core::Error> {
        let q = Quote::parse(quote)?;
        let verified = verifier.verify(&q, &case.collateral, case.now)?;
        appraise(&verified, &TdxPolicy::default())?;
        if let Some(expected) = &case.expected_report_data {
            check_report_data(&q, expected)?;
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

fn run(case: &Case, verifier: &TdxVerifier) -> Outcome {
    run_bytes(case, &case.quote, verifier)
}

fn allowed_categories(case: &Case) -> Vec<&str> {
    let mut allowed: Vec<&str> = case
        .table
        .get("reason")
        .and_then(Value::as_str)
        .into_iter()
        .collect();
    if let Some(alt) = case.table.get("alt_reasons") {
        allowed.extend(alt.as_array().unwrap().iter().map(|v| v.as_str().unwrap()));
    }
    allowed
}

fn check_verdict(case: &Case, outcome: &Outcome) -> Result<()> {
    let expected = case.table["expected"].as_str().unwrap();
    match (expected, outcome) {
        ("accept", Outcome::Accept(_)) => Ok(()),
        ("reject", Outcome::Reject { category, message }) => {
            let allowed = allowed_categories(case);
            if allowed.contains(category) {
                Ok(())
            } else {
                bail!("rejected as {category} ({message}), want one of {allowed:?}")
            }
        }
        (want, got) => bail!("want {want}, got {got:?}"),
    }
}

/// A deviation: our category and message must be the stated ones, and the quote cut to its own
/// length (the trailing bytes dropped) must get the manifest's verdict.
fn check_deviation(case: &Case, outcome: &Outcome, verifier: &TdxVerifier) -> Result<()> {
    let Some((_, category, needle)) = DEVIATIONS.iter().find(|d| d.0 == case.name) else {
        bail!("not a deviation");
    };
    match outcome {
        Outcome::Reject {
            category: c,
            message,
        } if c == category && message.contains(needle) => {}
        other => bail!("deviation changed: want {category} ({needle}), got {other:?}"),
    }
    let len = case.table["facts"]["quote_length"].as_integer().unwrap() as usize;
    let trimmed = &case.quote[..len];
    let q = Quote::parse(trimmed)?;
    if q.padding_len() != 0 {
        bail!("trimmed quote still padded");
    }
    check_verdict(case, &run_bytes(case, trimmed, verifier))
}

/// Facts about the quote bytes, available even when verification fails.
fn quote_view(case: &Case) -> Option<serde_json::Value> {
    let len = case.table.get("facts")?.get("quote_length")?.as_integer()? as usize;
    let q = Quote::parse(case.quote.get(..len)?).ok()?;
    let r = q.td_report();
    Some(json!({
        "quote_version": q.version(),
        "att_key_type": q.att_key_type(),
        "tee_type": format!("{:#x}", q.tee_type()),
        "body": format!("{:?}", q.body_type()),
        "quote_length": q.as_bytes().len(),
        "buffer_length": case.quote.len(),
        "trailing_zero_padding": Quote::parse(&case.quote).ok().map(|q| q.padding_len()),
        "td_attributes": hex::encode(r.td_attributes),
        "td_debug": r.debug(),
        "sept_ve_disable": r.td_attributes_u64() & (1 << 28) != 0,
        "xfam": hex::encode(r.xfam),
        "mrtd": hex::encode(r.mr_td),
        "tee_tcb_svn": hex::encode(r.tee_tcb_svn),
        "tee_tcb_svn2": r.tee_tcb_svn2.map(hex::encode),
        "report_data": hex::encode(r.report_data),
        "qe_isvsvn": q.qe_report().isv_svn,
    }))
}

fn eq_body(body: &str, want: &str, got: &serde_json::Value) -> Result<()> {
    if got != want {
        bail!("fact body: manifest {body}, ours {got}");
    }
    Ok(())
}

/// Compares the manifest's `[case.facts]` with the quote and (when verified) the claims.
fn check_facts(
    case: &Case,
    view: &serde_json::Value,
    claims: Option<&serde_json::Value>,
) -> Result<usize> {
    let Some(facts) = case.table.get("facts").and_then(Value::as_table) else {
        return Ok(0);
    };
    let mut checked = 0;
    let mut eq = |fact: &str, got: &serde_json::Value| -> Result<()> {
        let Some(want) = facts.get(fact) else {
            return Ok(());
        };
        let want = serde_json::to_value(want)?;
        if &want != got {
            bail!("fact {fact}: manifest {want}, ours {got}");
        }
        checked += 1;
        Ok(())
    };
    for fact in [
        "quote_version",
        "att_key_type",
        "tee_type",
        "quote_length",
        "buffer_length",
        "trailing_zero_padding",
        "td_attributes",
        "td_debug",
        "sept_ve_disable",
        "xfam",
        "mrtd",
        "tee_tcb_svn",
        "report_data",
        "qe_isvsvn",
    ] {
        eq(fact, &view[fact])?;
    }
    if facts.contains_key("tee_tcb_svn2") {
        eq("tee_tcb_svn2", &view["tee_tcb_svn2"])?;
    }
    let body = facts.get("body").and_then(Value::as_str).unwrap_or("");
    let want_body = if body.starts_with("TD15") {
        "Td15"
    } else {
        "Td10"
    };
    if !body.is_empty() {
        eq_body(body, want_body, &view["body"])?;
        eq("quote_version", &view["quote_version"])?; // counted once more for the body line
    }
    let Some(c) = claims else {
        return Ok(checked);
    };
    for (fact, claim) in [
        ("fmspc", "fmspc"),
        ("pck_sgx_tcb_comp_svn", "pck_sgx_tcb_comp_svn"),
        ("pck_pcesvn", "pck_pcesvn"),
        ("pck_cert_not_before", "pck_cert_not_before"),
        ("pck_cert_not_after", "pck_cert_not_after"),
        ("tcb_info_issue_date", "tcb_info_issue_date"),
        ("tcb_info_next_update", "tcb_info_next_update"),
        ("tcb_evaluation_data_number", "tcb_evaluation_data_number"),
        ("collateral_valid_from", "collateral_valid_from"),
        ("collateral_valid_until", "collateral_valid_until"),
        ("tcb_status", "tcb_status"),
        ("advisory_ids", "advisory_ids"),
        ("td_attributes", "td_attributes"),
        ("xfam", "xfam"),
        ("mrtd", "mrtd"),
        ("report_data", "report_data"),
    ] {
        eq(fact, &c[claim])?;
    }
    eq("td_debug", &c["td_attributes_bits"]["debug"])?;
    eq(
        "sept_ve_disable",
        &c["td_attributes_bits"]["sept_ve_disable"],
    )?;
    if let Some(f) = facts.get("tcb_info_fmspc").and_then(Value::as_str) {
        if f.to_ascii_lowercase() != c["fmspc"] {
            bail!("fact tcb_info_fmspc: manifest {f}, claims {}", c["fmspc"]);
        }
        eq("fmspc", &c["fmspc"])?; // counted once more for tcb_info_fmspc
    }
    Ok(checked)
}

fn verified_claims(case: &Case) -> Result<serde_json::Value> {
    let q = Quote::parse(&case.quote)?;
    let v = TdxVerifier::new(IntelRoots::intel()).verify(&q, &case.collateral, case.now)?;
    Ok(serde_json::to_value(v.claims())?)
}

#[test]
fn tdx_manifest_vectors() -> Result<()> {
    let manifest: toml::Table =
        std::fs::read_to_string(testdata().join("manifest.toml"))?.parse()?;
    let cases: Vec<Case> = manifest["case"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_table().unwrap())
        .filter(|c| c.get("tee").and_then(Value::as_str) == Some("tdx"))
        .map(load_case)
        .collect::<Result<_>>()?;
    assert!(cases.len() >= 19, "only {} TDX cases found", cases.len());

    let shared = TdxVerifier::new(IntelRoots::intel());
    let mut failures = Vec::new();
    let (mut accepted, mut rejected, mut deviations, mut facts_checked) = (0, 0, 0, 0);
    for case in &cases {
        let fresh = TdxVerifier::new(IntelRoots::intel());
        let cold = run(case, &fresh);
        let shared_first = run(case, &shared);
        let is_deviation = DEVIATIONS.iter().any(|d| d.0 == case.name);
        let verdict = if is_deviation {
            check_deviation(case, &cold, &fresh)
        } else {
            check_verdict(case, &cold)
        };
        let verdict = verdict.and_then(|()| {
            if shared_first != cold {
                bail!("shared verifier gave {shared_first:?}, fresh one {cold:?}");
            }
            Ok(())
        });
        let claims = match (&cold, case.table.get("authentic")) {
            (Outcome::Accept(c), _) => Some(c.clone()),
            // Genuine but refused: the facts still match the verified (not appraised) claims.
            (Outcome::Reject { .. }, Some(Value::Boolean(true))) => verified_claims(case).ok(),
            _ => None,
        };
        let facts = match quote_view(case) {
            Some(view) => check_facts(case, &view, claims.as_ref()),
            None if case.table.contains_key("facts") => Err(anyhow!("facts but no parsable quote")),
            None => Ok(0),
        };
        let summary = match &cold {
            Outcome::Accept(c) => format!("accept {}", c["tcb_status"]),
            Outcome::Reject { category, message } => format!("reject {category}: {message}"),
        };
        match (verdict, facts) {
            (Ok(()), Ok(n)) => {
                facts_checked += n;
                let tag = if is_deviation {
                    deviations += 1;
                    "DEV "
                } else if matches!(cold, Outcome::Accept(_)) {
                    accepted += 1;
                    "ok  "
                } else {
                    rejected += 1;
                    "ok  "
                };
                println!("{tag} {:<32} {summary} [{n} facts]", case.name);
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
    // Third pass: every collateral set and PCK chain that verified is cached; outcomes must not change.
    for case in &cases {
        let warm = run(case, &shared);
        let cold = run(case, &TdxVerifier::new(IntelRoots::intel()));
        if warm != cold {
            failures.push(format!("{}: warm {warm:?} != cold {cold:?}", case.name));
        }
    }
    let (col, pck, qe) = shared.cached();
    assert!(col > 0 && pck > 0 && qe > 0, "nothing was cached");
    println!(
        "{} TDX cases: {accepted} accepted, {rejected} rejected as expected, {deviations} documented deviations, {facts_checked} facts checked, {} failures; cached {col} collateral sets, {pck} PCK chains, {qe} QE reports",
        cases.len(),
        failures.len(),
    );
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
    Ok(())
}

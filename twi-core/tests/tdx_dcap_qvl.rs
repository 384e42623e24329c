//! Cross-check: dcap-qvl 0.7.1 (Phala-Network, RustCrypto backend) and `twi_core::tdx` on every TDX
//! case of the manifest, to catch our bugs (and notice when dcap-qvl changes).
//!
//! * Where the manifest records dcap-qvl's verdict (`[case.verification] dcap_qvl_0_7_1_strict`),
//!   dcap-qvl must still give it, and we must agree: the same TCB status and advisories on success,
//!   `tcb-unsupported` on "No matching TCB level found", `policy-debug` on "Debug mode is enabled"
//!   (then dcap-qvl with `allow_debug` must give our status). The one recorded disagreement is a
//!   policy difference the manifest explains (dcap-qvl requires SEPT_VE_DISABLE; the baseline does
//!   not): dcap-qvl must still fail with that message, and we must accept.
//! * Derived negatives: whenever we refuse for a verification reason, dcap-qvl must refuse too (it
//!   has no nonce check, so the nonce case must verify in dcap-qvl).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use dcap_qvl::QuoteCollateralV3;
use serde_json::value::RawValue;
use toml::Value;
use twi_core::tdx::{
    appraise, check_report_data, Collateral, CollateralParts, IntelRoots, Quote, TdxPolicy,
    TdxVerifier,
};

fn testdata() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata"
    ))
    .to_path_buf()
}

/// The signed inner object (verbatim) and the signature of a PCS v4 body.
fn split(body: &[u8], key: &str) -> Result<(String, Vec<u8>)> {
    let map: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_str(std::str::from_utf8(body)?)?;
    let inner = map
        .get(key)
        .ok_or_else(|| anyhow!("no {key}"))?
        .get()
        .to_owned();
    let sig: String = serde_json::from_str(map.get("signature").context("signature")?.get())?;
    Ok((inner, hex::decode(sig)?))
}

struct Case {
    name: String,
    table: toml::Table,
    quote: Vec<u8>,
    ours: Collateral,
    theirs: QuoteCollateralV3,
    now: i64,
}

fn load(table: &toml::Table) -> Result<Case> {
    let name = table["name"].as_str().unwrap().to_owned();
    let files = table["files"].as_table().unwrap();
    let read = |role: &str| -> Result<Vec<u8>> {
        let p = files[role].as_str().unwrap();
        Ok(std::fs::read(testdata().join(p))?)
    };
    let text = |role: &str| -> Result<String> { Ok(String::from_utf8(read(role)?)?) };
    let parts = CollateralParts {
        tcb_info: read("tcb_info")?,
        tcb_info_issuer_chain: read("tcb_info_issuer_chain")?,
        qe_identity: read("qe_identity")?,
        qe_identity_issuer_chain: read("qe_identity_issuer_chain")?,
        pck_crl: read("pck_crl")?,
        pck_crl_issuer_chain: read("pck_crl_issuer_chain")?,
        root_ca_crl: read("root_ca_crl")?,
    };
    let (tcb_info, tcb_info_signature) = split(&parts.tcb_info, "tcbInfo")?;
    let (qe_identity, qe_identity_signature) = split(&parts.qe_identity, "enclaveIdentity")?;
    let theirs = QuoteCollateralV3 {
        pck_crl_issuer_chain: text("pck_crl_issuer_chain")?,
        root_ca_crl: parts.root_ca_crl.clone(),
        pck_crl: parts.pck_crl.clone(),
        tcb_info_issuer_chain: text("tcb_info_issuer_chain")?,
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain: text("qe_identity_issuer_chain")?,
        qe_identity,
        qe_identity_signature,
        pck_certificate_chain: None,
    };
    let now = time::OffsetDateTime::parse(
        table["as_of"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )?
    .unix_timestamp();
    Ok(Case {
        name,
        table: table.clone(),
        quote: read("quote")?,
        ours: Collateral::from_parts(parts)?,
        theirs,
        now,
    })
}

/// Ours: `Ok((status, advisories))` after verify + baseline appraisal (+ nonce when given), or the
/// error category. `verify_only` skips the appraisal.
fn ours(case: &Case, quote: &[u8], verify_only: bool) -> Result<(String, Vec<String>), String> {
    let steps = || -> Result<(String, Vec<String>), twi_core::Error> {
        let q = Quote::parse(quote)?;
        let v = TdxVerifier::new(IntelRoots::intel()).verify(&q, &case.ours, case.now)?;
        if !verify_only {
            appraise(&v, &TdxPolicy::default())?;
            if let Some(rd) = case.table.get("expected_report_data") {
                let want: [u8; 64] = hex::decode(rd.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap();
                check_report_data(&q, &want)?;
            }
        }
        Ok((v.tcb_status().to_string(), v.advisory_ids().to_vec()))
    };
    steps().map_err(|e| e.category().to_owned())
}

fn theirs(case: &Case, allow_debug: bool) -> Result<(String, Vec<String>), String> {
    let now = u64::try_from(case.now).unwrap();
    dcap_qvl::verify::QuoteVerifier::new_prod()
        .allow_debug(allow_debug)
        .verify(&case.quote, &case.theirs, now)
        .map(|r| (r.status, r.advisory_ids))
        .map_err(|e| format!("{e:#}"))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn check(case: &Case) -> Result<String> {
    let recorded = case
        .table
        .get("verification")
        .and_then(|v| v.get("dcap_qvl_0_7_1_strict"))
        .and_then(Value::as_str);
    let strict = theirs(case, false);
    // Our verdict on the quote as the manifest's tools saw it: a buffer with trailing non-zero bytes
    // (tdx-gtg-spr-e4-v4) is compared through its quote bytes, which dcap-qvl also reads alone.
    let quote_len = case
        .table
        .get("facts")
        .and_then(|f| f.get("quote_length"))
        .and_then(Value::as_integer)
        .map(|n| n as usize);
    let quote = quote_len
        .and_then(|n| case.quote.get(..n))
        .unwrap_or(&case.quote);
    match recorded {
        Some(rec) if rec.starts_with("error: ") => {
            let msg = rec.trim_start_matches("error: ");
            let Err(e) = &strict else {
                bail!("dcap-qvl accepted ({strict:?}); manifest recorded {rec:?}");
            };
            if !e.contains(msg) {
                bail!("dcap-qvl error changed: {e}; manifest recorded {msg:?}");
            }
            match msg {
                "No matching TCB level found" => {
                    let o = ours(case, quote, true);
                    if o != Err("tcb-unsupported".into()) {
                        bail!("dcap-qvl: no matching TCB level; ours: {o:?}");
                    }
                    Ok("both: no matching TCB level".into())
                }
                "Debug mode is enabled" => {
                    let (status, adv) =
                        theirs(case, true).map_err(|e| anyhow!("dcap-qvl allow_debug: {e}"))?;
                    let o = ours(case, quote, true).map_err(|c| anyhow!("ours: {c}"))?;
                    if (o.0.as_str(), sorted(o.1.clone())) != (status.as_str(), sorted(adv)) {
                        bail!("dcap-qvl allow_debug {status}, ours {o:?}");
                    }
                    if ours(case, quote, false) != Err("policy-debug".into()) {
                        bail!("we do not refuse the debug TD");
                    }
                    Ok(format!("both refuse debug; status {status}"))
                }
                "SEPT_VE_DISABLE is not enabled" => {
                    // Policy difference (see the module doc): we verify and accept.
                    let o = ours(case, quote, false).map_err(|c| anyhow!("ours: {c}"))?;
                    Ok(format!(
                        "dcap-qvl refuses SEPT_VE_DISABLE=0 by policy; ours accepts ({})",
                        o.0
                    ))
                }
                other => bail!("no rule for recorded dcap-qvl error {other:?}"),
            }
        }
        Some(rec) => {
            let (status, adv) = strict.map_err(|e| anyhow!("dcap-qvl: {e}"))?;
            if status != rec {
                bail!("dcap-qvl gives {status}, manifest recorded {rec}");
            }
            let o = ours(case, quote, true).map_err(|c| anyhow!("ours: {c}"))?;
            if (o.0.as_str(), sorted(o.1.clone())) != (status.as_str(), sorted(adv.clone())) {
                bail!("dcap-qvl {status} {adv:?}, ours {o:?}");
            }
            Ok(format!("both {status} {adv:?}"))
        }
        None => {
            let expected = case.table["expected"].as_str().unwrap();
            let reason = case.table.get("reason").and_then(Value::as_str);
            let o = ours(case, &case.quote, false);
            match (expected, reason, &strict, &o) {
                ("reject", Some("nonce"), Ok(_), Err(c)) if c == "nonce" => {
                    Ok("dcap-qvl verifies (no nonce check); ours: nonce".into())
                }
                ("reject", _, Err(e), Err(c)) => Ok(format!("both refuse: ours {c}; dcap-qvl {e}")),
                _ => bail!("expected {expected}: dcap-qvl {strict:?}, ours {o:?}"),
            }
        }
    }
}

#[test]
fn dcap_qvl_agrees_where_the_manifest_says_it_should() -> Result<()> {
    let manifest: toml::Table =
        std::fs::read_to_string(testdata().join("manifest.toml"))?.parse()?;
    let mut failures = Vec::new();
    let mut n = 0;
    for table in manifest["case"].as_array().unwrap() {
        let table = table.as_table().unwrap();
        if table.get("tee").and_then(Value::as_str) != Some("tdx") {
            continue;
        }
        n += 1;
        let case = load(table)?;
        match check(&case) {
            Ok(s) => println!("ok   {:<32} {s}", case.name),
            Err(e) => {
                println!("FAIL {:<32} {e:#}", case.name);
                failures.push(format!("{}: {e:#}", case.name));
            }
        }
    }
    assert!(n >= 19, "only {n} TDX cases");
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
    Ok(())
}

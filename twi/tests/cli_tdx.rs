//! `twi evidence verify` on Intel TDX quotes as a user runs it: the built binary, real quotes and
//! collateral from shared/testdata, a simulated TDX root set, and the signed EAR of the appraisal
//! checked back with `twi ear verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use twi_core::sim::tdx::{init, SimTdxDevice, TdParams, TdxInitOptions};
use twi_node_attestor::wire;

const TWI: &str = env!("CARGO_BIN_EXE_twi");
const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

fn td(rel: &str) -> String {
    format!("{TESTDATA}/{rel}")
}

fn twi(args: &[&str]) -> Output {
    Command::new(TWI).args(args).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn verify_json(args: &[&str]) -> (i32, Value) {
    let o = twi(&[&["evidence", "verify", "--json"][..], args].concat());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?} / {}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        )
    });
    (code(&o), v)
}

/// A real quote of shared/testdata with its collateral folder, at `as_of`.
fn real(name: &str, as_of: &str) -> Vec<String> {
    vec![
        "--evidence".into(),
        td(&format!("tdx/{name}/quote.bin")),
        "--collateral".into(),
        td(&format!("tdx/{name}/collateral")),
        "--as-of".into(),
        as_of.into(),
    ]
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn real_quote_is_accepted_up_to_date() {
    let (rc, v) = verify_json(&refs(&real("dq-b0c06f-v4", "2025-07-01T00:00:00Z")));
    assert_eq!(rc, 0, "{v}");
    assert_eq!(
        (
            v["verdict"].as_str(),
            v["tee"].as_str(),
            v["simulated"].as_bool()
        ),
        (Some("accept"), Some("tdx"), Some(false))
    );
    assert!(v["category"].is_null() && v["reason"].is_null(), "{v}");
    assert_eq!(v["claims"]["tcb_status"], "UpToDate");
    assert_eq!(v["claims"]["fmspc"], "b0c06f000000");
    assert_eq!(v["claims"]["quote_version"], 4);
    assert_eq!(v["claims"]["td_attributes_bits"]["debug"], false);

    // REPORTDATA binding: the quote's own value passes, one flipped bit is a nonce refusal.
    let rd = v["claims"]["report_data"].as_str().unwrap().to_owned();
    let mut args = real("dq-b0c06f-v4", "2025-07-01T00:00:00Z");
    args.extend(["--expect-report-data".into(), rd.clone()]);
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(
        (rc, v["report_data_checked"].as_bool()),
        (0, Some(true)),
        "{v}"
    );
    let flipped = format!("{}{}", if &rd[..1] == "0" { "1" } else { "0" }, &rd[1..]);
    *args.last_mut().unwrap() = flipped;
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!((rc, v["category"].as_str()), (1, Some("nonce")), "{v}");

    // Text form.
    let o = twi(&[
        &["evidence", "verify"][..],
        &refs(&real("dq-b0c06f-v4", "2025-07-01T00:00:00Z")),
    ]
    .concat());
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 0);
    assert!(
        out.starts_with("ACCEPT  tdx evidence (quote v4, FMSPC b0c06f000000, TCB UpToDate)"),
        "{out}"
    );
}

#[test]
fn debug_td_is_refused_unless_the_policy_allows_it() {
    let args = real("trustee-50806f-v4-debug", "2023-06-20T00:00:00Z");
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(
        (rc, v["category"].as_str()),
        (1, Some("policy-debug")),
        "{v}"
    );
    assert_eq!(v["claims"]["td_attributes_bits"]["debug"], true);

    let dir = tempfile::tempdir().unwrap();
    let hcl = dir.path().join("policy.hcl");
    // Sections as in the server's plugin_data; the snp one does not apply to a TDX quote.
    std::fs::write(&hcl, "snp {\n}\ntdx {\n  allow_debug = true\n}\n").unwrap();
    let mut allowed = args.clone();
    allowed.extend(["--policy".into(), hcl.to_string_lossy().into_owned()]);
    let (rc, v) = verify_json(&refs(&allowed));
    assert_eq!((rc, v["verdict"].as_str()), (0, Some("accept")), "{v}");

    // A flat TDX policy pinning another MRTD refuses with that violation.
    let json = dir.path().join("policy.json");
    std::fs::write(
        &json,
        format!(
            r#"{{"allow_debug": true, "mrtd": ["{}"]}}"#,
            "11".repeat(48)
        ),
    )
    .unwrap();
    let mut pinned = args;
    pinned.extend(["--policy".into(), json.to_string_lossy().into_owned()]);
    let (rc, v) = verify_json(&refs(&pinned));
    assert_eq!((rc, v["category"].as_str()), (1, Some("policy")), "{v}");
    assert_eq!(v["violations"][0]["field"], "mrtd");
}

#[test]
fn expired_collateral_is_refused() {
    // tdx-neg-collateral-expired: the dq quote after its TCB info's nextUpdate.
    let (rc, v) = verify_json(&refs(&real("dq-b0c06f-v4", "2025-07-20T00:00:00Z")));
    assert_eq!(
        (rc, v["category"].as_str()),
        (1, Some("collateral-expired")),
        "{v}"
    );
    assert!(v["claims"].is_null());
}

#[test]
fn missing_collateral_is_a_usage_error() {
    let quote = td("tdx/dq-b0c06f-v4/quote.bin");
    let o = twi(&["evidence", "verify", "--evidence", &quote, "--json"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("--collateral DIR is required"),
        "{}",
        stderr(&o)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "error");

    // A folder without the files is an I/O error naming the file, not a reject.
    let empty = tempfile::tempdir().unwrap();
    let o = twi(&[
        "evidence",
        "verify",
        "--evidence",
        &quote,
        "--collateral",
        empty.path().to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("tcb_info.json"), "{}", stderr(&o));

    // SNP-only flags are refused for a quote.
    let mut args = real("dq-b0c06f-v4", "2025-07-01T00:00:00Z");
    args.extend(["--cert".into(), td("vendor-roots/intel/IntelSGXRootCA.der")]);
    let o = twi(&[&["evidence", "verify"][..], &refs(&args)].concat());
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--cert"), "{}", stderr(&o));
}

/// A simulated TDX root set made now, and one quote of "the" simulated TD (debug if asked).
struct Sim {
    _dir: tempfile::TempDir,
    root: PathBuf,
    collateral: PathBuf,
    quote: PathBuf,
    report_data: [u8; 64],
}

fn sim(debug: bool) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("tdx-sim");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let layout = init(&set, &TdxInitOptions::new(now)).unwrap();
    let device = SimTdxDevice::open(&set).unwrap();
    let report_data = [0x5c; 64];
    let mut params = TdParams::default();
    if debug {
        params.td_attributes |= TdParams::DEBUG;
    }
    let quote = dir.path().join("quote.bin");
    std::fs::write(&quote, device.quote(&report_data, &params).unwrap()).unwrap();
    Sim {
        root: layout.root_der,
        collateral: layout.collateral_dir,
        quote,
        report_data,
        _dir: dir,
    }
}

fn sim_args(s: &Sim) -> Vec<String> {
    vec![
        "--evidence".into(),
        s.quote.to_string_lossy().into_owned(),
        "--collateral".into(),
        s.collateral.to_string_lossy().into_owned(),
    ]
}

#[test]
fn simulated_quote_needs_its_root_named() {
    let s = sim(false);
    // Intel's root alone: refused.
    let (rc, v) = verify_json(&refs(&sim_args(&s)));
    assert_eq!(rc, 1, "{v}");
    assert_eq!(v["simulated"], false);

    let mut args = sim_args(&s);
    args.extend([
        "--simulated-root".into(),
        s.root.to_string_lossy().into_owned(),
        "--expect-report-data".into(),
        hex::encode(s.report_data),
    ]);
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(rc, 0, "{v}");
    assert_eq!(
        (
            v["verdict"].as_str(),
            v["tee"].as_str(),
            v["simulated"].as_bool()
        ),
        (Some("accept"), Some("tdx"), Some(true))
    );
    assert_eq!(v["claims"]["simulated"], true);
    assert_eq!(v["claims"]["tcb_status"], "UpToDate");
    assert_eq!(v["report_data_checked"], true);

    // The same root as PEM, through --trust-root: accepted but not marked simulated.
    let pem = s.root.with_extension("pem");
    let mut args = sim_args(&s);
    args.extend(["--trust-root".into(), pem.to_string_lossy().into_owned()]);
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!((rc, v["simulated"].as_bool()), (0, Some(false)), "{v}");

    // The quote inside the agent's wire challenge response.
    let resp = wire::EvidenceResponse {
        v: wire::WIRE_VERSION,
        evidence: wire::Evidence::Tdx(wire::TdxEvidence {
            quote: std::fs::read(&s.quote).unwrap(),
        }),
        key_proof: vec![1, 2, 3],
    };
    let json = s.quote.with_extension("json");
    std::fs::write(&json, wire::encode(&resp).unwrap()).unwrap();
    let (rc, v) = verify_json(&[
        "--evidence",
        json.to_str().unwrap(),
        "--collateral",
        s.collateral.to_str().unwrap(),
        "--simulated-root",
        s.root.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(
        (v["evidence_format"].as_str(), v["tee"].as_str()),
        (Some("wire"), Some("tdx"))
    );
}

#[test]
fn simulated_debug_td_is_refused() {
    let s = sim(true);
    let mut args = sim_args(&s);
    args.extend([
        "--simulated-root".into(),
        s.root.to_string_lossy().into_owned(),
    ]);
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(
        (rc, v["category"].as_str()),
        (1, Some("policy-debug")),
        "{v}"
    );
    assert_eq!(v["simulated"], true);
}

/// `--ear` output checked by `twi ear verify` with the JWKS written by `--jwks-out`.
fn ear_verify(jws: &str, jwks: &Path, now: &str, dir: &Path) -> (i32, Value) {
    let ear = dir.join("ear.jws");
    std::fs::write(&ear, jws).unwrap();
    let o = twi(&[
        "ear",
        "verify",
        "--ear",
        ear.to_str().unwrap(),
        "--jwks",
        jwks.to_str().unwrap(),
        "--now",
        now,
        "--json",
    ]);
    (code(&o), serde_json::from_slice(&o.stdout).unwrap())
}

#[test]
fn ear_of_the_appraisal_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let now = "2025-07-01T00:00:10Z";

    // Accepted real quote: stdout is the JWS alone; it verifies and affirms.
    let mut args = real("dq-b0c06f-v4", "2025-07-01T00:00:00Z");
    args.extend([
        "--ear".into(),
        "--jwks-out".into(),
        jwks.to_string_lossy().into_owned(),
    ]);
    let o = twi(&[&["evidence", "verify"][..], &refs(&args)].concat());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let jws = String::from_utf8(o.stdout).unwrap();
    assert_eq!(jws.trim().split('.').count(), 3, "{jws}");
    let (rc, v) = ear_verify(&jws, &jwks, now, dir.path());
    assert_eq!(
        (rc, v["valid"].as_bool(), v["affirming"].as_bool()),
        (0, Some(true), Some(true)),
        "{v}"
    );
    let sub = &v["ear"]["submods"]["tdx"];
    assert_eq!(sub["https://twi-spire.dev/tcb-status"], "UpToDate");
    assert_eq!(sub["ear_trustworthiness_vector"]["hardware"], 2);
    // No --expect-report-data: no instance-identity claim, no key binding.
    assert_eq!(sub["ear_trustworthiness_vector"]["instance-identity"], 0);
    assert!(
        sub.get("https://twi-spire.dev/key-binding").is_none(),
        "{sub}"
    );

    // Refused (debug TD), with a persistent verifier key: valid, not affirming, reason policy-debug.
    let key = dir.path().join("verifier.key");
    twi_core::ear::VerifierKey::load_or_generate(&key, &mut rand_core::OsRng).unwrap();
    let mut args = real("trustee-50806f-v4-debug", "2023-06-20T00:00:00Z");
    args.extend([
        "--ear".into(),
        "--verifier-key".into(),
        key.to_string_lossy().into_owned(),
        "--jwks-out".into(),
        jwks.to_string_lossy().into_owned(),
    ]);
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(
        (rc, v["category"].as_str()),
        (1, Some("policy-debug")),
        "{v}"
    );
    let jws = v["ear"].as_str().unwrap();
    let (rc, e) = ear_verify(jws, &jwks, "2023-06-20T00:00:10Z", dir.path());
    assert_eq!(
        (rc, e["valid"].as_bool(), e["affirming"].as_bool()),
        (1, Some(true), Some(false)),
        "{e}"
    );
    assert_eq!(e["status"], "contraindicated");
    assert_eq!(
        e["ear"]["submods"]["tdx"]["https://twi-spire.dev/reason"],
        "policy-debug"
    );

    // Refused before verification (expired collateral): still a valid EAR.
    let mut args = real("dq-b0c06f-v4", "2025-07-20T00:00:00Z");
    args.extend([
        "--ear".into(),
        "--jwks-out".into(),
        jwks.to_string_lossy().into_owned(),
    ]);
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(rc, 1, "{v}");
    let (rc, e) = ear_verify(
        v["ear"].as_str().unwrap(),
        &jwks,
        "2025-07-20T00:00:10Z",
        dir.path(),
    );
    assert_eq!((rc, e["valid"].as_bool()), (1, Some(true)), "{e}");
    assert_eq!(
        e["ear"]["submods"]["tdx"]["https://twi-spire.dev/reason"],
        "collateral-expired"
    );

    // An SEV-SNP report gets its EAR too (submod sev-snp), checked against the report's REPORT_DATA.
    let mut snp = vec![
        "--evidence".to_owned(),
        td("snp/oak-milan-v3/report.bin"),
        "--as-of".into(),
        "2025-01-16T00:00:00Z".into(),
        "--ear".into(),
        "--jwks-out".into(),
        jwks.to_string_lossy().into_owned(),
    ];
    for f in [
        "snp/oak-milan-v3/vcek.der",
        "vendor-roots/amd/milan/ask.pem",
        "vendor-roots/amd/milan/ark.pem",
    ] {
        snp.extend(["--cert".into(), td(f)]);
    }
    let (rc, v) = verify_json(&refs(&snp));
    assert_eq!(rc, 0, "{v}");
    let (rc, e) = ear_verify(
        v["ear"].as_str().unwrap(),
        &jwks,
        "2025-01-16T00:00:10Z",
        dir.path(),
    );
    assert_eq!((rc, e["affirming"].as_bool()), (0, Some(true)), "{e}");
    let sub = &e["ear"]["submods"]["sev-snp"];
    assert_eq!(sub["ear_trustworthiness_vector"]["instance-identity"], 0);
    assert!(
        sub.get("https://twi-spire.dev/key-binding").is_none(),
        "{sub}"
    );

    // --verifier-key without --ear is a usage error.
    let o = twi(&[
        &["evidence", "verify"][..],
        &refs(&real("dq-b0c06f-v4", "2025-07-01T00:00:00Z")),
        &["--verifier-key", key.to_str().unwrap()],
    ]
    .concat());
    assert_eq!(code(&o), 2);
}

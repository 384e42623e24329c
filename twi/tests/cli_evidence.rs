//! `twi evidence verify` and `twi sim` as a user runs them: the built binary, real vectors from
//! shared/testdata, a simulated root set, and the exit code contract (0 accept, 1 reject, 2 usage/I-O).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
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

/// Runs `evidence verify --json` and returns (exit code, parsed stdout).
fn verify_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["evidence", "verify", "--json"];
    all.extend_from_slice(args);
    let o = twi(&all);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?} / {}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        )
    });
    (code(&o), v)
}

/// A real vector's arguments: report, VCEK, the product's ASK and ARK, as_of.
fn vector(dir: &str, product: &str, as_of: &str) -> Vec<String> {
    vec![
        "--evidence".into(),
        td(&format!("snp/{dir}/report.bin")),
        "--cert".into(),
        td(&format!("snp/{dir}/vcek.der")),
        "--cert".into(),
        td(&format!("vendor-roots/amd/{product}/ask.pem")),
        "--cert".into(),
        td(&format!("vendor-roots/amd/{product}/ark.pem")),
        "--as-of".into(),
        as_of.into(),
    ]
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn oak_milan() -> Vec<String> {
    vector("oak-milan-v3", "milan", "2025-01-16T00:00:00Z")
}

fn debug_guest() -> Vec<String> {
    vector("gsg-milan-v2-debug", "milan", "2022-09-25T00:00:00Z")
}

fn turin() -> Vec<String> {
    vector("oak-turin-v5", "turin", "2025-07-18T00:00:00Z")
}

const TURIN_REPORT_DATA: &str = "e0fd0bdb6aa4030a6ddea9073e1fcec5be6c782a2c8075a0825dfb3d9a81b924";

#[test]
fn real_vector_is_accepted_with_claims() {
    let (rc, v) = verify_json(&refs(&oak_milan()));
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["verdict"], "accept");
    assert_eq!(v["tee"], "snp");
    assert_eq!(v["simulated"], false);
    assert!(v["category"].is_null() && v["reason"].is_null(), "{v}");
    // Facts of snp-oak-milan-v3 in the manifest.
    assert_eq!(v["claims"]["product"], "Milan");
    assert_eq!(v["claims"]["report_version"], 3);
    assert_eq!(v["claims"]["signing_key"], "VCEK");
    assert_eq!(v["claims"]["policy"], "0x30000");

    // The same in text form.
    let o = twi(&[&["evidence", "verify"][..], &refs(&oak_milan())].concat());
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 0);
    assert!(
        out.starts_with("ACCEPT  snp evidence (Milan, VCEK)"),
        "{out}"
    );
    assert!(out.contains("measurement"), "{out}");
}

#[test]
fn verdict_depends_on_the_instant() {
    // oak-milan-v3 verified long after its VCEK expired.
    let mut args = oak_milan();
    *args.last_mut().unwrap() = "2040-01-01T00:00:00Z".into();
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(
        (rc, v["category"].as_str()),
        (1, Some("cert-validity")),
        "{v}"
    );
}

#[test]
fn debug_guest_is_rejected_unless_the_policy_allows_it() {
    let (rc, v) = verify_json(&refs(&debug_guest()));
    assert_eq!(rc, 1, "{v}");
    assert_eq!(v["verdict"], "reject");
    assert_eq!(v["category"], "policy-debug");
    assert!(
        v["reason"].as_str().unwrap().contains("policy.debug"),
        "{v}"
    );
    // Verification succeeded before the policy refused: the claims are there.
    assert_eq!(v["claims"]["policy_bits"]["debug"], true);

    let dir = tempfile::tempdir().unwrap();
    let hcl = dir.path().join("policy.hcl");
    std::fs::write(&hcl, "allow_debug = true\n").unwrap();
    let mut args = debug_guest();
    args.extend(["--policy".into(), hcl.to_string_lossy().into_owned()]);
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!((rc, v["verdict"].as_str()), (0, Some("accept")), "{v}");
}

#[test]
fn policy_file_pins_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("policy.json");
    let other = "11".repeat(48);
    std::fs::write(
        &json,
        format!(r#"{{"allowed_measurements": ["{other}"], "allowed_vmpls": [1]}}"#),
    )
    .unwrap();
    let mut args = oak_milan();
    args.extend(["--policy".into(), json.to_string_lossy().into_owned()]);
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!((rc, v["category"].as_str()), (1, Some("policy")), "{v}");
    let fields: Vec<&str> = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["measurement", "vmpl"]);

    // A policy with an unknown field is a usage error, not a reject.
    std::fs::write(&json, r#"{"allow_debg": true}"#).unwrap();
    let o = twi(&[&["evidence", "verify"][..], &refs(&args)].concat());
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("policy.json") && stderr(&o).contains("allow_debg"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn report_data_binding() {
    let mut args = turin();
    args.extend([
        "--expect-report-data".into(),
        format!("{TURIN_REPORT_DATA}{}", "00".repeat(32)),
    ]);
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["report_data_checked"], true);

    // --nonce: the leading bytes, zero-padded.
    let mut args = turin();
    args.extend(["--nonce".into(), TURIN_REPORT_DATA.into()]);
    assert_eq!(verify_json(&refs(&args)).0, 0);

    // A replayed report: REPORT_DATA differs from what the relying party expects.
    let mut args = turin();
    args.extend(["--nonce".into(), format!("e1{}", &TURIN_REPORT_DATA[2..])]);
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!((rc, v["category"].as_str()), (1, Some("nonce")), "{v}");
}

#[test]
fn truncated_report_is_malformed() {
    let mut args = vector("oak-genoa-v5", "genoa", "2025-08-08T00:00:00Z");
    args[1] = td("negative/snp-neg-truncated/report.bin");
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(rc, 1, "{v}");
    assert_eq!(v["category"], "malformed");
    assert!(v["claims"].is_null());
}

#[test]
fn usage_and_io_errors_exit_2() {
    let missing = "/nonexistent/twi-test/report.bin";
    let o = twi(&["evidence", "verify", "--evidence", missing]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains(missing), "{}", stderr(&o));

    // A missing --cert is an I/O error even though the evidence alone would be rejected.
    let o = twi(&[
        "evidence",
        "verify",
        "--evidence",
        &td("snp/oak-milan-v3/report.bin"),
        "--cert",
        "/nonexistent/vcek.der",
    ]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("/nonexistent/vcek.der"),
        "{}",
        stderr(&o)
    );

    let report = td("snp/oak-milan-v3/report.bin");
    for bad in [
        vec!["--expect-report-data", "zz"],
        vec!["--expect-report-data", "abcd"], // not 64 bytes
        vec!["--nonce", "xyz"],
        vec!["--as-of", "yesterday"],
    ] {
        let o = twi(&[&["evidence", "verify", "--evidence", &report][..], &bad].concat());
        assert_eq!(code(&o), 2, "{bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(bad[0]), "{bad:?}: {}", stderr(&o));
    }
    // A trust root that is not an ARK is a configuration error.
    let o = twi(&[
        "evidence",
        "verify",
        "--evidence",
        &report,
        "--trust-root",
        &td("vendor-roots/amd/milan/ask.pem"),
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--trust-root"), "{}", stderr(&o));
}

#[test]
fn tdx_quote_is_detected_and_needs_collateral() {
    // The quote is recognised by its header (not parsed as an SNP report); more in cli_tdx.rs.
    let o = twi(&[
        "evidence",
        "verify",
        "--evidence",
        &td("tdx/dq-b0c06f-v4/quote.bin"),
        "--json",
    ]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("is an Intel TDX quote: --collateral DIR is required"),
        "{}",
        stderr(&o)
    );
}

// ------------------------------------------------------------------ simulated SEV-SNP

/// One simulated root set for this test binary (RSA-2048 to keep it quick).
fn sim_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(concat!(env!("CARGO_TARGET_TMPDIR"), "/cli-evidence-sim"));
        let o = twi(&[
            "sim",
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--force",
            "--rsa-bits",
            "2048",
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("WARNING") && out.contains("NOT AMD"), "{out}");
        assert!(
            out.contains("simulated_roots = [") && out.contains("ark.pem"),
            "{out}"
        );
        assert!(out.contains("simulated {"), "{out}");
        dir
    })
}

fn sim_report(name: &str, report_data: &str, extra: &[&str]) -> PathBuf {
    let out = PathBuf::from(concat!(env!("CARGO_TARGET_TMPDIR"))).join(name);
    let dir = sim_dir().to_str().unwrap();
    let o = twi(&[
        &[
            "sim",
            "report",
            "--dir",
            dir,
            "--report-data",
            report_data,
            "--out",
            out.to_str().unwrap(),
        ][..],
        extra,
    ]
    .concat());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 1184);
    out
}

fn sim_certs() -> Vec<String> {
    let d = sim_dir();
    ["vcek.der", "ask.pem", "ark.pem"]
        .iter()
        .flat_map(|f| {
            [
                "--cert".to_owned(),
                d.join(f).to_string_lossy().into_owned(),
            ]
        })
        .collect()
}

#[test]
fn simulated_evidence_needs_its_root_named() {
    let rd = "ab".repeat(64);
    let report = sim_report("sim-ok.bin", &rd, &[]);
    let ark = sim_dir().join("ark.pem");
    let mut args = vec![
        "--evidence".to_owned(),
        report.to_string_lossy().into_owned(),
        "--expect-report-data".into(),
        rd,
    ];
    args.extend(sim_certs());

    // AMD's roots alone: the simulated ARK is untrusted.
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(
        (rc, v["category"].as_str()),
        (1, Some("untrusted-root")),
        "{v}"
    );
    assert_eq!(v["simulated"], false);

    // Trusted as a simulated root: accepted, and marked simulated.
    args.extend([
        "--simulated-root".into(),
        ark.to_string_lossy().into_owned(),
    ]);
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["verdict"], "accept");
    assert_eq!(v["simulated"], true);
    assert_eq!(v["claims"]["simulated"], true);
    assert_eq!(v["report_data_checked"], true);

    let o = twi(&[&["evidence", "verify"][..], &refs(&args)].concat());
    assert!(String::from_utf8_lossy(&o.stdout).contains("SIMULATED"));
}

#[test]
fn simulated_debug_guest_is_refused() {
    let report = sim_report("sim-debug.bin", "01", &["--policy", "0xb0000"]);
    let ark = sim_dir().join("ark.pem");
    let mut args = vec![
        "--evidence".to_owned(),
        report.to_string_lossy().into_owned(),
        "--simulated-root".into(),
        ark.to_string_lossy().into_owned(),
    ];
    args.extend(sim_certs());
    let (rc, v) = verify_json(&refs(&args));
    assert_eq!(
        (rc, v["category"].as_str()),
        (1, Some("policy-debug")),
        "{v}"
    );
    assert_eq!(v["simulated"], true);
}

#[test]
fn wire_challenge_response_carries_its_certificates() {
    let table = PathBuf::from(concat!(env!("CARGO_TARGET_TMPDIR"))).join("sim-wire.table");
    let report = sim_report(
        "sim-wire.bin",
        "02",
        &["--cert-table-out", table.to_str().unwrap()],
    );
    let resp = wire::EvidenceResponse {
        v: wire::WIRE_VERSION,
        evidence: wire::Evidence::Snp(wire::SnpEvidence {
            report: std::fs::read(&report).unwrap(),
            cert_table: Some(std::fs::read(&table).unwrap()),
        }),
        key_proof: vec![1, 2, 3],
    };
    let json = PathBuf::from(concat!(env!("CARGO_TARGET_TMPDIR"))).join("sim-wire.json");
    std::fs::write(&json, wire::encode(&resp).unwrap()).unwrap();
    let ark = sim_dir().join("ark.pem");
    // No --cert: the chain comes from the evidence's certificate table.
    let (rc, v) = verify_json(&[
        "--evidence",
        json.to_str().unwrap(),
        "--simulated-root",
        ark.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(
        (v["evidence_format"].as_str(), v["simulated"].as_bool()),
        (Some("wire"), Some(true))
    );

    // JSON that is not a challenge response is malformed evidence.
    std::fs::write(&json, r#"{"v": 1, "evidence": 5}"#).unwrap();
    let (rc, v) = verify_json(&["--evidence", json.to_str().unwrap()]);
    assert_eq!((rc, v["category"].as_str()), (1, Some("malformed")), "{v}");
}

#[test]
fn sim_init_refuses_to_overwrite_without_force() {
    let dir = sim_dir();
    let o = twi(&[
        "sim",
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--rsa-bits",
        "2048",
    ]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = twi(&[
        "sim",
        "report",
        "--dir",
        "/nonexistent/sim",
        "--report-data",
        "00",
        "--out",
        "/dev/null",
    ]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("/nonexistent/sim"), "{}", stderr(&o));
}

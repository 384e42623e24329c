//! `twi sim tdx-init` / `twi sim tdx-quote` as an operator runs them: the quote they make verifies with
//! `twi evidence verify` against the printed collateral and simulated root (and only as simulated), and
//! the negative platform states refuse with their reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const TWI: &str = env!("CARGO_BIN_EXE_twi");

fn twi(args: &[&str]) -> Output {
    Command::new(TWI).args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Makes a root set with `init_flags`, a quote with `quote_flags`, and verifies it: (exit code, JSON).
fn round_trip(dir: &Path, init_flags: &[&str], quote_flags: &[&str]) -> (i32, Value) {
    let d = dir.to_str().unwrap();
    let printed = ok(&twi(
        &[&["sim", "tdx-init", "--dir", d][..], init_flags].concat()
    ));
    assert!(printed.contains("NOT INTEL"), "{printed}");
    assert!(printed.contains("simulated_roots"), "{printed}");
    let quote = dir.join("quote.bin");
    let q = quote.to_str().unwrap();
    ok(&twi(&[
        &[
            "sim",
            "tdx-quote",
            "--dir",
            d,
            "--report-data",
            "c0ffee",
            "--out",
            q,
        ][..],
        quote_flags,
    ]
    .concat()));
    let o = twi(&[
        "evidence",
        "verify",
        "--json",
        "--evidence",
        q,
        "--collateral",
        dir.join("collateral").to_str().unwrap(),
        "--simulated-root",
        dir.join("root.der").to_str().unwrap(),
        "--nonce",
        "c0ffee",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&o.stderr));
    });
    (o.status.code().unwrap_or(-1), v)
}

#[test]
fn a_simulated_quote_verifies_as_simulated() {
    let dir = tempfile::tempdir().unwrap();
    let (code, v) = round_trip(&dir.path().join("set"), &[], &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verdict"], "accept", "{v}");
    assert_eq!(v["tee"], "tdx");
    assert_eq!(v["simulated"], true);

    // Without the simulated root nothing chains to a trusted root.
    let set = dir.path().join("set");
    let o = twi(&[
        "evidence",
        "verify",
        "--json",
        "--evidence",
        set.join("quote.bin").to_str().unwrap(),
        "--collateral",
        set.join("collateral").to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(1), "{v}");
    assert_eq!(v["category"], "untrusted-root", "{v}");
}

#[test]
fn negative_platform_states_and_debug_tds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, init, quote, category) in [
        (
            "ood",
            &["--tcb-status", "OutOfDate"][..],
            &[][..],
            "tcb-out-of-date",
        ),
        ("revoked", &["--revoke-pck"][..], &[][..], "revoked"),
        (
            "stale",
            &[
                "--collateral-issue-date",
                "2020-01-01T00:00:00Z",
                "--collateral-next-update",
                "2020-01-31T00:00:00Z",
            ][..],
            &[][..],
            "collateral-expired",
        ),
        ("debug", &[][..], &["--debug"][..], "policy-debug"),
    ] {
        let (code, v) = round_trip(&dir.path().join(name), init, quote);
        assert_eq!(code, 1, "{name}: {v}");
        assert_eq!(v["category"], category, "{name}: {v}");
    }
}

#[test]
fn bad_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let o = twi(&[
        "sim",
        "tdx-init",
        "--dir",
        dir.path().to_str().unwrap(),
        "--tcb-status",
        "Fine",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an Intel TCB status"));
    let o = twi(&[
        "sim",
        "tdx-quote",
        "--dir",
        dir.path().join("none").to_str().unwrap(),
        "--report-data",
        "00",
        "--out",
        dir.path().join("q").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("tdx-init"));
}

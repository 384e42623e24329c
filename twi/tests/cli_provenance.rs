//! `twi provenance inspect` as an operator runs it: the built binary, a temp attestation store with a
//! provenance signed by a fresh P-256 key and one signed by a stranger, the plugin's HCL in a file, and
//! the exit code contract (0 attested, 1 attestation failed, 2 usage or configuration error).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rand_core::RngCore as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use twi_workload_attestor::provenance::testing::{self as signing, Signer};

const TWI: &str = env!("CARGO_BIN_EXE_twi");
const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
const REPO: &str = "https://github.com/twi-spire/tool";
const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn twi(args: &[&str]) -> Output {
    Command::new(TWI).args(args).output().unwrap()
}

fn signer(name: &str) -> Signer {
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut secret);
    Signer::from_secret(name, &secret).unwrap()
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// A store with a trusted provenance and a stranger's provenance for `tool` (a copy of `sleep`), and
/// the plugin configuration naming them.
struct Setup {
    dir: tempfile::TempDir,
    tool: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let sleep = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join("sleep"))
            .find(|p| p.is_file())
            .unwrap();
        let tool = root.join("tool");
        std::fs::copy(sleep, &tool).unwrap();
        let hex = sha256_hex(&tool);
        let ci = signer("ci");
        std::fs::write(root.join("ci.pub"), ci.public_key_pem()).unwrap();
        let digest_dir = root.join("store/sha256").join(&hex);
        std::fs::create_dir_all(&digest_dir).unwrap();
        let statement = signing::statement(
            "tool",
            &hex,
            "https://slsa.dev/provenance/v1",
            signing::slsa_v1_predicate(BUILDER, REPO, "refs/tags/v2", COMMIT),
        )
        .to_string();
        std::fs::write(
            digest_dir.join("a-provenance.json"),
            ci.envelope(statement.as_bytes()),
        )
        .unwrap();
        std::fs::write(
            digest_dir.join("b-stranger.json"),
            signer("stranger").envelope(statement.as_bytes()),
        )
        .unwrap();
        let config = root.join("plugin.hcl");
        std::fs::write(
            &config,
            format!(
                "provenance {{\n  store_dir = {:?}\n  trusted_keys = [{{ name = \"ci\", public_key_path = {:?} }}]\n}}\n",
                root.join("store").to_str().unwrap(),
                root.join("ci.pub").to_str().unwrap()
            ),
        )
        .unwrap();
        Self { dir, tool, config }
    }

    fn inspect_json(&self, target: &[&str]) -> (i32, Value) {
        let mut args = vec!["provenance", "inspect", "--json", "--config"];
        args.push(self.config.to_str().unwrap());
        args.extend_from_slice(target);
        let o = twi(&args);
        let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {} / {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        });
        (o.status.code().unwrap_or(-1), v)
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn file_shows_selectors_and_why_each_attestation_counted() {
    let s = Setup::new();
    let (code, v) = s.inspect_json(&["--file", s.tool.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    let hex = sha256_hex(&s.tool);
    assert_eq!(v["sha256"], hex.as_str());
    assert_eq!(v["subject"]["file"], s.tool.to_str().unwrap());
    let sel = strings(&v["selectors"]);
    let tool_path = format!("path:{}", s.tool.display());
    let sha = format!("sha256:{hex}");
    let builder = format!("slsa:builder:{BUILDER}");
    let source = format!("slsa:source:{REPO}");
    let commit = format!("slsa:commit:{COMMIT}");
    for want in [
        tool_path.as_str(),
        sha.as_str(),
        "provenance:verified:true",
        "provenance:signer:ci",
        builder.as_str(),
        source.as_str(),
        "slsa:source_ref:refs/tags/v2",
        commit.as_str(),
    ] {
        assert!(sel.contains(&want), "{want} missing from {sel:?}");
    }
    assert!(
        !sel.iter().any(|s| s.starts_with("uid:")),
        "no process, no uid: {sel:?}"
    );
    let p = &v["provenance"];
    assert_eq!(p["configured"], true);
    assert!(
        p["source"].as_str().unwrap().contains("trusted keys: ci"),
        "{p}"
    );
    let atts = p["attestations"].as_array().unwrap();
    assert_eq!(atts.len(), 2, "{p}");
    assert!(atts[0]["origin"]
        .as_str()
        .unwrap()
        .ends_with("a-provenance.json"));
    assert_eq!(atts[0]["verdict"], "used");
    assert_eq!(atts[0]["signers"][0], "ci");
    assert_eq!(atts[0]["subject_name"], "tool");
    assert_eq!(atts[1]["verdict"], "rejected");
    assert!(
        atts[1]["reason"]
            .as_str()
            .unwrap()
            .contains("signed by no trusted key"),
        "{}",
        atts[1]
    );
}

#[test]
fn text_output_and_a_running_process() {
    let s = Setup::new();
    // A just-written binary may be busy (ETXTBSY) for a moment if a parallel test forked while it was
    // open for writing.
    let mut child = (0..50)
        .find_map(|_| {
            match Command::new(&s.tool)
                .arg("300")
                .stdin(Stdio::null())
                .spawn()
            {
                Ok(c) => Some(c),
                Err(e) if e.raw_os_error() == Some(26) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                }
                Err(e) => panic!("{e}"),
            }
        })
        .expect("the copied binary stayed busy");
    let pid = child.id().to_string();
    let o = twi(&[
        "provenance",
        "inspect",
        "--pid",
        &pid,
        "--config",
        s.config.to_str().unwrap(),
    ]);
    let _ = child.kill();
    let _ = child.wait();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.starts_with(&format!("process {pid}\n")), "{out}");
    assert!(out.contains("\n  uid:"), "{out}");
    assert!(
        out.contains(&format!("\n  slsa:builder:{BUILDER}\n")),
        "{out}"
    );
    assert!(out.contains("  used      "), "{out}");
    assert!(out.contains("a-provenance.json"), "{out}");
    assert!(out.contains("signed by ci"), "{out}");
    assert!(out.contains("  rejected  "), "{out}");
    assert!(
        out.contains("b-stranger.json: signed by no trusted key"),
        "{out}"
    );
}

#[test]
fn without_configuration_there_is_no_provenance() {
    let s = Setup::new();
    let o = twi(&["provenance", "inspect", "--file", s.tool.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("provenance: not configured"), "{out}");
    assert!(!out.contains("slsa:"), "{out}");
    assert!(
        out.contains(&format!("sha256:{}", sha256_hex(&s.tool))),
        "{out}"
    );
}

#[test]
fn exit_codes() {
    let s = Setup::new();
    // Usage: neither or both targets.
    assert_eq!(twi(&["provenance", "inspect"]).status.code(), Some(2));
    assert_eq!(
        twi(&["provenance", "inspect", "--pid", "1", "--file", "/bin/sh"])
            .status
            .code(),
        Some(2)
    );
    // Configuration errors name the key.
    let bad = s.dir.path().join("bad.hcl");
    std::fs::write(
        &bad,
        "provenance {\n  store_dir = \"relative\"\n  trusted_keys = []\n}\n",
    )
    .unwrap();
    let o = twi(&[
        "provenance",
        "inspect",
        "--file",
        "/bin/sh",
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("provenance.store_dir"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Attestation failures: no such file, no such process.
    let missing = s.dir.path().join("missing");
    let o = twi(&["provenance", "inspect", "--file", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let o = twi(&["provenance", "inspect", "--pid", "2147483647"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("NotFound"));
}

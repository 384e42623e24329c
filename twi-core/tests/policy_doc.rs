//! The policy doc page (node-attestor/doc/policy.md) against the code: its examples parse, its HCL and
//! JSON spellings have one digest, its canonical JSON and digest are the real ones, its key table lists
//! every key, and its error message is the one the code prints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use twi_core::policy::{Policy, PolicyError, Tee};

const DOC: &str = include_str!("../../node-attestor/doc/policy.md");

/// The bodies of the fenced blocks whose info string is `lang` (`""` for a bare fence), in order.
fn blocks(lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in DOC.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) if info.trim() == lang => current = Some(String::new()),
            (None, Some(_)) => current = Some("\u{0}skip".to_owned()),
            (Some(body), Some(_)) => {
                if !body.starts_with('\u{0}') {
                    out.push(std::mem::take(body));
                }
                current = None;
            }
            (Some(body), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

#[test]
fn full_example_is_one_policy_in_both_formats() {
    let hcl = &blocks("hcl")[0];
    let json = &blocks("json")[0];
    let a = Policy::parse(hcl).unwrap();
    let b = Policy::parse(json).unwrap();
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.id(), "prod-fleet");
    let names: Vec<&str> = a.selector_rules().iter().map(|r| r.name()).collect();
    assert_eq!(names, ["web-v2", "web-v3"]);
    assert!(a.allows(Tee::Snp) && a.allows(Tee::Tdx));
}

#[test]
fn digest_example_is_the_real_one() {
    let tiny = &blocks("hcl")[1];
    let p = Policy::parse(tiny).unwrap();
    let canonical = blocks("")
        .into_iter()
        .find(|b| b.starts_with("{\"id\":\"lab\""))
        .expect("the doc shows the canonical JSON");
    assert_eq!(canonical.trim_end(), p.canonical_json());
    let shown = DOC
        .split("`sha256 = ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .expect("the doc shows the digest");
    assert_eq!(shown, p.digest_hex());
    assert!(DOC.contains(&p.policy_id().uri().replace(&p.digest_hex(), "<digest>")));
}

#[test]
fn key_table_lists_every_key() {
    let p = Policy::parse(&blocks("hcl")[0]).unwrap();
    let canonical: serde_json::Value = serde_json::from_str(p.canonical_json()).unwrap();
    let table: Vec<&str> = DOC
        .split("## Keys")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("| `"))
        .collect();
    let listed = |key: &str| table.iter().any(|row| row.contains(&format!("`{key}`")));
    for top in canonical.as_object().unwrap().keys() {
        assert!(listed(top), "`{top}` missing from the key table");
    }
    for tee in ["snp", "tdx"] {
        for k in canonical[tee].as_object().unwrap().keys() {
            let key = format!("{tee}.{k}");
            // The table writes the four RTMRs as `tdx.rtmr0` … `tdx.rtmr3`.
            let shown = if k.starts_with("rtmr") {
                listed("tdx.rtmr0") && listed("tdx.rtmr3")
            } else {
                listed(&key)
            };
            assert!(shown, "`{key}` missing from the key table");
        }
    }
}

#[test]
fn error_example_is_what_the_code_prints() {
    let e = Policy::parse("id = \"p\"\nversion = \"1\"\ntdx {\n  collateral_dir = \"/x\"\n}\n")
        .unwrap_err();
    let in_file = PolicyError::InFile {
        path: PathBuf::from("/etc/twi/policy.hcl"),
        source: Box::new(e),
    };
    let shown = blocks("")
        .into_iter()
        .find(|b| b.starts_with("policy file "))
        .expect("the doc shows the error");
    assert_eq!(shown.trim_end(), in_file.to_string());
}

//! The policy document: HCL and JSON spellings, the digest rule, and errors that name the key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use sha2::{Digest, Sha256};
use twi_core::policy::{Format, Policy, PolicyError, Tee};
use twi_core::snp::{SnpPolicy, TcbParts};
use twi_core::tdx::{Masked, TcbStatus, TdxPolicy};

fn m(byte: &str) -> String {
    byte.repeat(48)
}

/// A full document in HCL, every key of every section set, with comments and odd spacing.
fn full_hcl() -> String {
    format!(
        r#"
# Production fleet policy
id      = "prod-fleet"
version = "2026-03-01.1"

snp {{
  allow_debug      = false   // the baseline, written out
  allow_migrate_ma = false
  minimum_tcb {{
    bootloader = 3
    tee        = 0
    snp        = 8
    microcode  = 115
  }}
  allowed_measurements   = ["{a}", "{b}"]
  allowed_host_data      = ["{h}"]
  allowed_id_key_digests = []
  allowed_vmpls          = [0]
  minimum_guest_svn      = 1
}}

tdx {{
  allow_debug          = false
  allowed_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
  allowed_advisory_ids = ["INTEL-SA-00837"]
  mrtd  = ["{c}"]
  rtmr0 = []
  rtmr1 = ["{d}"]
  rtmr2 = []
  rtmr3 = []
  mrconfigid    = []
  mrowner       = []
  mrownerconfig = []
  td_attributes {{
    value = "0x10000000"
    mask  = "0x10000000"
  }}
  xfam {{
    value = "0x602e7"
    mask  = "0x0"
  }}
}}

selectors {{
  /* one name, both TEEs */
  match "prod-web-v3" {{
    snp {{
      measurement = ["{a}"]
    }}
    tdx {{
      mrtd  = ["{c}"]
      rtmr1 = ["{d}"]
    }}
  }}
  match "tenant-a" {{
    snp {{
      host_data = ["{h}"]
    }}
  }}
}}
"#,
        a = m("aa"),
        b = m("bb"),
        c = m("cc"),
        d = m("dd"),
        h = "11".repeat(32),
    )
}

/// The same content as JSON, keys in another order, upper-case hex, numbers where HCL had strings,
/// defaults left out.
fn full_json() -> String {
    serde_json::json!({
        "version": "2026-03-01.1",
        "selectors": {"match": {
            "tenant-a": {"snp": {"host_data": ["11".repeat(32)]}},
            "prod-web-v3": {
                "tdx": {"rtmr1": [m("DD")], "mrtd": [m("CC")]},
                "snp": {"measurement": [m("AA")]}
            }
        }},
        "tdx": {
            "xfam": {"mask": 0, "value": 0x602e7},
            "td_attributes": {"value": 268_435_456, "mask": "0x10000000"},
            "mrtd": [m("CC")],
            "rtmr1": [m("dd")],
            "allowed_advisory_ids": ["INTEL-SA-00837"],
            "allowed_tcb_statuses": ["UpToDate", "SWHardeningNeeded"]
        },
        "snp": {
            "minimum_guest_svn": 1,
            "allowed_vmpls": [0],
            "allowed_host_data": ["11".repeat(32)],
            "allowed_measurements": [m("AA"), m("BB")],
            "minimum_tcb": {"microcode": 115, "snp": 8, "tee": 0, "bootloader": 3}
        },
        "id": "prod-fleet"
    })
    .to_string()
}

#[test]
fn hcl_and_json_of_the_same_content_have_the_same_digest() {
    let h = Policy::parse(&full_hcl()).unwrap();
    let j = Policy::parse(&full_json()).unwrap();
    assert_eq!(h.digest(), j.digest());
    assert_eq!(h.canonical_json(), j.canonical_json());
    assert_eq!(h, j);
    // Sniffing chose each format; forcing the wrong one fails.
    assert!(Policy::parse_as(&full_json(), Format::Hcl).is_err());
    assert!(Policy::parse_as(&full_hcl(), Format::Json).is_err());
}

#[test]
fn digest_is_sha256_of_the_canonical_json_which_is_itself_the_policy() {
    let p = Policy::parse(&full_hcl()).unwrap();
    let want: [u8; 32] = Sha256::digest(p.canonical_json().as_bytes()).into();
    assert_eq!(p.digest(), want);
    assert_eq!(p.digest_hex(), hex::encode(want));
    let again = Policy::parse(p.canonical_json()).unwrap();
    assert_eq!(again, p);
    // Canonical: sorted keys, no whitespace, lower-case hex, explicit defaults.
    let c = p.canonical_json();
    assert!(c.starts_with(r#"{"id":"prod-fleet","selectors":"#), "{c}");
    assert!(!c.contains(' ') && !c.contains('\n'));
    assert!(!c.contains("DD"));
    assert!(c.contains(r#""allow_debug":false"#));
    assert!(c.contains(r#""mask":"0x0000000010000000""#), "{c}");
    assert!(c.contains(r#""fmc":null"#));
    let uri = p.policy_id().uri();
    assert_eq!(
        uri,
        format!(
            "tag:twi-spire.dev,2026:policy/prod-fleet/2026-03-01.1?sha256={}",
            p.digest_hex()
        )
    );
}

#[test]
fn written_defaults_and_omitted_defaults_are_the_same_policy() {
    let short = Policy::parse("id = \"p\"\nversion = 3\nsnp {}\ntdx {}\n").unwrap();
    let long = Policy::parse(
        r#"
        id = "p"
        version = "3"
        snp {
          allow_debug = false
          allow_migrate_ma = false
          allowed_measurements = []
          allowed_vmpls = []
        }
        tdx {
          allow_debug = false
          allowed_tcb_statuses = ["UpToDate"]
          mrtd = []
        }
        selectors {}
        "#,
    )
    .unwrap();
    assert_eq!(short.digest(), long.digest());
    assert_eq!(short.snp_policy().unwrap(), &SnpPolicy::default());
    assert_eq!(short.tdx_policy().unwrap(), &TdxPolicy::default());
}

#[test]
fn every_semantic_change_changes_the_digest() {
    let base = Policy::parse(&full_hcl()).unwrap();
    let changes: [(&str, String, String); 10] = [
        ("a measurement", m("bb"), m("be")),
        (
            "a TDX register",
            format!("\n  rtmr1 = [\"{}\"]", m("dd")),
            format!("\n  rtmr1 = [\"{}\"]", m("de")),
        ),
        (
            "debug",
            "allow_debug      = false".into(),
            "allow_debug      = true".into(),
        ),
        (
            "minimum TCB",
            "microcode  = 115".into(),
            "microcode  = 116".into(),
        ),
        (
            "TCB statuses",
            "\"UpToDate\", \"SWHardeningNeeded\"".into(),
            "\"UpToDate\"".into(),
        ),
        (
            "advisories",
            "[\"INTEL-SA-00837\"]".into(),
            "[\"INTEL-SA-00838\"]".into(),
        ),
        ("a mask", "mask  = \"0x0\"".into(), "mask  = \"0x1\"".into()),
        (
            "a selector name",
            "\"tenant-a\"".into(),
            "\"tenant-b\"".into(),
        ),
        ("the version", "2026-03-01.1".into(), "2026-03-01.2".into()),
        (
            "list order",
            format!("[\"{}\", \"{}\"]", m("aa"), m("bb")),
            format!("[\"{}\", \"{}\"]", m("bb"), m("aa")),
        ),
    ];
    let mut seen = vec![base.digest()];
    for (what, from, to) in changes {
        let text = full_hcl();
        assert_eq!(text.matches(&from).count(), 1, "{what}: {from}");
        let changed = Policy::parse(&text.replacen(&from, &to, 1)).unwrap();
        assert!(
            !seen.contains(&changed.digest()),
            "{what} did not change the digest"
        );
        seen.push(changed.digest());
    }
    // Removing a TEE section is a change too.
    let no_tdx = Policy::parse("id = \"p\"\nversion = \"1\"\nsnp {}\n").unwrap();
    let both = Policy::parse("id = \"p\"\nversion = \"1\"\nsnp {}\ntdx {}\n").unwrap();
    assert_ne!(no_tdx.digest(), both.digest());
}

#[test]
fn conversions_give_the_appraisal_types() {
    let p = Policy::parse(&full_hcl()).unwrap();
    let snp = p.snp_policy().unwrap();
    assert_eq!(
        snp,
        &SnpPolicy {
            allow_debug: false,
            allow_migrate_ma: false,
            minimum_tcb: Some(TcbParts {
                fmc: None,
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115
            }),
            allowed_measurements: vec![[0xaa; 48], [0xbb; 48]],
            allowed_host_data: vec![[0x11; 32]],
            allowed_id_key_digests: vec![],
            allowed_vmpls: vec![0],
            minimum_guest_svn: Some(1),
        }
    );
    let tdx = p.tdx_policy().unwrap();
    assert_eq!(
        tdx,
        &TdxPolicy {
            allow_debug: false,
            allowed_tcb_statuses: vec![TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded],
            allowed_advisory_ids: Some(vec!["INTEL-SA-00837".into()]),
            mrtd: vec![[0xcc; 48]],
            rtmr: [vec![], vec![[0xdd; 48]], vec![], vec![]],
            mrconfigid: vec![],
            mrowner: vec![],
            mrownerconfig: vec![],
            xfam: Some(Masked {
                value: 0x602e7,
                mask: 0
            }),
            td_attributes: Some(Masked {
                value: 1 << 28,
                mask: 1 << 28
            }),
        }
    );
    let names: Vec<&str> = p.selector_rules().iter().map(|r| r.name()).collect();
    assert_eq!(names, ["prod-web-v3", "tenant-a"]);
    assert_eq!(
        p.selector_rules()[0].conditions(Tee::Tdx).unwrap(),
        [("mrtd", vec![m("cc")]), ("rtmr1", vec![m("dd")])]
    );
    assert!(p.selector_rules()[1].conditions(Tee::Tdx).is_none());
}

#[test]
fn a_missing_tee_section_refuses_that_tee() {
    let p = Policy::parse("id = \"snp-only\"\nversion = \"1\"\nsnp {}\n").unwrap();
    assert!(p.allows(Tee::Snp) && !p.allows(Tee::Tdx));
    let e = p.tdx_policy().unwrap_err();
    assert!(matches!(
        e,
        PolicyError::TeeNotAllowed { tee: Tee::Tdx, .. }
    ));
    let msg = e.to_string();
    assert!(
        msg.contains("snp-only") && msg.contains("no `tdx` section"),
        "{msg}"
    );
    // JSON null is "absent" too.
    let p = Policy::parse(r#"{"id":"x","version":"1","snp":null,"tdx":{}}"#).unwrap();
    assert!(p.snp_policy().is_err() && p.tdx_policy().is_ok());
    // Nothing at all: a policy that allows no TEE is valid (it refuses everything).
    let p = Policy::parse("id = \"none\"\nversion = \"1\"\n").unwrap();
    assert!(!p.allows(Tee::Snp) && !p.allows(Tee::Tdx));
}

fn err(text: &str) -> PolicyError {
    Policy::parse(text).unwrap_err()
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    for (text, key) in [
        ("id = \"p\"\nversion = \"1\"\nsnp {\n allowed_measurement = []\n}\n", "snp.allowed_measurement"),
        ("id = \"p\"\nversion = \"1\"\ntdx {\n xfam {\n value = 1\n mask = 1\n bits = 2\n }\n}\n", "tdx.xfam.bits"),
        ("id = \"p\"\nversion = \"1\"\npolicy_name = \"x\"\n", "policy_name"),
        (r#"{"id":"p","version":"1","tdx":{"mrtdd":[]}}"#, "tdx.mrtdd"),
        (r#"{"id":"p","version":"1","selectors":{"rules":{}}}"#, "selectors.rules"),
    ] {
        let e = err(text);
        assert!(
            matches!(&e, PolicyError::UnknownKey { key: k, .. } if k == key),
            "{text}: {e}"
        );
        assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
    }
    // The message lists what is allowed.
    let e = err("id = \"p\"\nversion = \"1\"\nsnp {\n allow_debugg = true\n}\n");
    assert!(e.to_string().contains("allow_debug"), "{e}");
}

#[test]
fn plugin_keys_are_refused_with_a_hint() {
    let e = err("id = \"p\"\nversion = \"1\"\ntdx {\n collateral_dir = \"/x\"\n}\n");
    assert!(
        matches!(&e, PolicyError::NotPolicy { key, tee: Tee::Tdx } if key == "tdx.collateral_dir"),
        "{e}"
    );
    assert!(e.to_string().contains("plugin_data"), "{e}");
    let e = err(r#"{"id":"p","version":"1","snp":{"simulated_roots":[]}}"#);
    assert!(
        matches!(&e, PolicyError::NotPolicy { tee: Tee::Snp, .. }),
        "{e}"
    );
}

#[test]
fn missing_and_duplicate_keys() {
    let e = err("version = \"1\"\n");
    assert!(
        matches!(&e, PolicyError::MissingKey { key } if key == "id"),
        "{e}"
    );
    let e = err("id = \"p\"\nversion = \"1\"\ntdx {\n xfam {\n value = 1\n }\n}\n");
    assert!(
        matches!(&e, PolicyError::MissingKey { key } if key == "tdx.xfam.mask"),
        "{e}"
    );
    let e = err("id = \"p\"\nversion = \"1\"\nsnp {}\nsnp {}\n");
    assert!(
        matches!(&e, PolicyError::DuplicateKey { key } if key == "snp"),
        "{e}"
    );
    let e = err(r#"{"id":"p","version":"1","snp":{"allow_debug":false,"allow_debug":true}}"#);
    assert!(
        matches!(&e, PolicyError::DuplicateKey { key } if key.ends_with("allow_debug")),
        "{e}"
    );
    let dup_rule = r#"{"id":"p","version":"1","snp":{},"selectors":{"match":{"a":{"snp":{"measurement":["X"]}},"a":{"snp":{"host_data":["Y"]}}}}}"#;
    let e = err(dup_rule);
    assert!(
        matches!(&e, PolicyError::DuplicateKey { key } if key == "selectors.match.a"),
        "{e}"
    );
}

#[test]
fn bad_values_name_field_and_length_all_at_once() {
    let text = format!(
        r#"
        id = "p"
        version = "1"
        snp {{
          allowed_measurements = ["{ok}", "{short}"]
          allowed_host_data = ["zz"]
          allowed_vmpls = [0, 4]
        }}
        tdx {{
          allowed_tcb_statuses = ["UpToDate", "Uptodate"]
          rtmr2 = ["{long}"]
          xfam {{
            value = "0x1g"
            mask = -1
          }}
        }}
        "#,
        ok = m("aa"),
        short = "ab".repeat(47),
        long = "ab".repeat(49),
    );
    let e = err(&text);
    let PolicyError::Invalid { problems } = &e else {
        panic!("{e}")
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "snp.allowed_measurements[1]",
            "snp.allowed_host_data[0]",
            "snp.allowed_vmpls[1]",
            "tdx.allowed_tcb_statuses[1]",
            "tdx.rtmr2[0]",
            "tdx.xfam.value",
            "tdx.xfam.mask",
        ],
        "{e}"
    );
    assert_eq!(
        problems[0].detail,
        "94 hex digits (47 bytes), want 96 hex digits (48 bytes)"
    );
    assert!(problems[1].detail.contains("not hex"), "{}", problems[1]);
    assert_eq!(
        problems[4].detail,
        "98 hex digits (49 bytes), want 96 hex digits (48 bytes)"
    );
    assert!(problems[3]
        .detail
        .contains("\"Uptodate\" is not an Intel TCB status"));
    // The accessor gives the same pairs.
    assert_eq!(e.keys().len(), 7);
}

#[test]
fn ids_and_types() {
    let e = err("id = \"prod fleet\"\nversion = \"1\"\n");
    assert_eq!(e.keys()[0].0, "id");
    let e = err("id = \"p\"\nversion = \"a/b\"\n");
    assert_eq!(e.keys()[0].0, "version");
    let e = err("id = \"p\"\nversion = \"1\"\nsnp {\n allow_debug = \"yes\"\n}\n");
    assert_eq!(e.keys()[0].0, "snp.allow_debug", "{e}");
    let e = err("id = \"p\"\nversion = \"1\"\nsnp {\n minimum_tcb {\n bootloader = 300\n tee = 0\n snp = 0\n microcode = 0\n }\n}\n");
    assert_eq!(e.keys()[0].0, "snp.minimum_tcb.bootloader", "{e}");
    let e = err("id = \"p\"\nversion = \"1\"\ntdx {\n allowed_tcb_statuses = []\n}\n");
    assert_eq!(e.keys()[0].0, "tdx.allowed_tcb_statuses", "{e}");
    let e = err(r#"{"id":"p","version":1.5}"#);
    assert_eq!(e.keys()[0].0, "version", "{e}");
    assert!(matches!(
        err("{\"id\":"),
        PolicyError::Syntax {
            format: Format::Json,
            ..
        }
    ));
    assert!(matches!(
        err("id = "),
        PolicyError::Syntax {
            format: Format::Hcl,
            ..
        }
    ));
    assert!(matches!(
        Policy::from_bytes(b"id = \"\xff\"", None).unwrap_err(),
        PolicyError::NotUtf8 { .. }
    ));
    assert!(matches!(
        err(&format!("x = {}1{}", "[".repeat(40), "]".repeat(40))),
        PolicyError::TooDeep { .. }
    ));
    let big = format!(
        "id = \"p\"\nversion = \"1\"\n#{}\n",
        "x".repeat(twi_core::policy::MAX_POLICY_LEN)
    );
    assert!(matches!(err(&big), PolicyError::TooLarge { .. }));
}

#[test]
fn selector_rules_are_checked() {
    let base = "id = \"p\"\nversion = \"1\"\nsnp {}\n";
    for (rule, key, needle) in [
        ("match \"a\" {}", "selectors.match.a", "names no TEE"),
        (
            "match \"a\" {\n snp {}\n}",
            "selectors.match.a.snp",
            "no field",
        ),
        (
            "match \"a\" {\n snp {\n measurement = []\n }\n}",
            "selectors.match.a.snp.measurement",
            "empty list",
        ),
        (
            "match \"a\" {\n snp {\n mrtd = [\"00\"]\n }\n}",
            "selectors.match.a.snp.mrtd",
            "expected one of measurement",
        ),
        (
            "match \"a\" {\n snp {\n family_id = [\"00\"]\n }\n}",
            "selectors.match.a.snp.family_id[0]",
            "want 32 hex digits (16 bytes)",
        ),
        (
            "match \"a\" {\n tdx {\n mrtd = [\"00\"]\n }\n}",
            "selectors.match.a.tdx",
            "no `tdx` section",
        ),
        (
            "match \"a b\" {\n snp {\n host_data = [\"00\"]\n }\n}",
            "selectors.match.a b",
            "URI path segment",
        ),
    ] {
        let e = err(&format!("{base}selectors {{\n{rule}\n}}\n"));
        let found = e.keys();
        assert!(
            found.iter().any(|(k, d)| *k == key && d.contains(needle)),
            "{rule}: {e}"
        );
    }
}

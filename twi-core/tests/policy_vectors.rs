//! Policies from documents appraise the real evidence of the shared manifest exactly as the policies
//! the server plugin builds from its `snp { }` / `tdx { }` blocks do, and their selector rules match the
//! evidence they name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use toml::Value;
use twi_core::policy::{Policy, PolicyError};
use twi_core::snp::{self, AttestationReport, CertChain, SnpPolicy, TrustAnchors, Verifier};
use twi_core::tdx::{self, Collateral, CollateralParts, IntelRoots, Quote, TdxPolicy, TdxVerifier};

fn testdata() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata"
    ))
    .to_path_buf()
}

fn unix(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

enum Evidence {
    Snp {
        report: Vec<u8>,
        chain: CertChain,
    },
    Tdx {
        quote: Vec<u8>,
        collateral: Box<Collateral>,
    },
}

struct Case {
    name: String,
    table: toml::Table,
    evidence: Evidence,
    now: i64,
    expected_report_data: Option<[u8; 64]>,
}

fn load_case(table: &toml::Table) -> Result<Case> {
    let name = table["name"].as_str().context("name")?.to_owned();
    let files = table["files"].as_table().context("files")?;
    let read = |role: &str| -> Result<Option<Vec<u8>>> {
        files
            .get(role)
            .and_then(Value::as_str)
            .map(|p| std::fs::read(testdata().join(p)).with_context(|| format!("{name}: {role}")))
            .transpose()
    };
    let need = |role: &str| read(role)?.ok_or_else(|| anyhow!("{name}: no {role}"));
    let evidence = match table["tee"].as_str() {
        Some("snp") => {
            let mut chain = CertChain::default();
            for role in ["vcek", "vlek", "ask", "asvk", "ark"] {
                if let Some(b) = read(role)? {
                    chain.add_pem_or_der(&b)?;
                }
            }
            Evidence::Snp {
                report: need("report")?,
                chain,
            }
        }
        Some("tdx") => Evidence::Tdx {
            quote: need("quote")?,
            collateral: Box::new(Collateral::from_parts(CollateralParts {
                tcb_info: need("tcb_info")?,
                tcb_info_issuer_chain: need("tcb_info_issuer_chain")?,
                qe_identity: need("qe_identity")?,
                qe_identity_issuer_chain: need("qe_identity_issuer_chain")?,
                pck_crl: need("pck_crl")?,
                pck_crl_issuer_chain: need("pck_crl_issuer_chain")?,
                root_ca_crl: need("root_ca_crl")?,
            })?),
        },
        other => bail!("{name}: tee {other:?}"),
    };
    let expected_report_data = table
        .get("expected_report_data")
        .and_then(Value::as_str)
        .map(|h| <[u8; 64]>::try_from(hex::decode(h).unwrap()).map_err(|_| anyhow!("64 bytes")))
        .transpose()?;
    Ok(Case {
        now: unix(table["as_of"].as_str().context("as_of")?),
        name,
        table: table.clone(),
        evidence,
        expected_report_data,
    })
}

fn cases() -> Vec<Case> {
    let manifest: toml::Table = std::fs::read_to_string(testdata().join("manifest.toml"))
        .unwrap()
        .parse()
        .unwrap();
    manifest["case"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| load_case(c.as_table().unwrap()).unwrap())
        .collect()
}

fn case(name: &str) -> Case {
    cases().into_iter().find(|c| c.name == name).unwrap()
}

/// The verified evidence of a case, or the verification error.
enum Verified {
    Snp(Box<snp::VerifiedSnp>),
    Tdx(Box<tdx::VerifiedTdx>),
}

fn verify(case: &Case) -> Result<Verified, twi_core::Error> {
    match &case.evidence {
        Evidence::Snp { report, chain } => {
            let r = AttestationReport::parse(report)?;
            let v = Verifier::new(TrustAnchors::amd()).verify(&r, chain, case.now)?;
            if let Some(want) = &case.expected_report_data {
                snp::check_report_data(&r, want)?;
            }
            Ok(Verified::Snp(Box::new(v)))
        }
        Evidence::Tdx { quote, collateral } => {
            let q = Quote::parse(quote)?;
            let v = TdxVerifier::new(IntelRoots::intel()).verify(&q, collateral, case.now)?;
            if let Some(want) = &case.expected_report_data {
                tdx::check_report_data(&q, want)?;
            }
            Ok(Verified::Tdx(Box::new(v)))
        }
    }
}

/// `Ok(selectors)` or the refusal's category and message.
type Outcome = Result<Vec<String>, (&'static str, String)>;

fn refusal(e: &twi_core::Error) -> (&'static str, String) {
    (e.category(), e.to_string())
}

/// Appraises with the document's policy (mapped selectors on success).
fn run_doc(case: &Case, policy: &Policy) -> Outcome {
    match verify(case).map_err(|e| refusal(&e))? {
        Verified::Snp(v) => {
            let a = snp::appraise(&v, policy.snp_policy().unwrap()).map_err(|e| refusal(&e))?;
            Ok(policy.selectors_for(&a))
        }
        Verified::Tdx(v) => {
            let a = tdx::appraise(&v, policy.tdx_policy().unwrap()).map_err(|e| refusal(&e))?;
            Ok(policy.selectors_for(&a))
        }
    }
}

/// Appraises with policies built the way the server plugin builds them today.
fn run_direct(case: &Case, snp_p: &SnpPolicy, tdx_p: &TdxPolicy) -> Outcome {
    match verify(case).map_err(|e| refusal(&e))? {
        Verified::Snp(v) => snp::appraise(&v, snp_p)
            .map(|_| Vec::new())
            .map_err(|e| refusal(&e)),
        Verified::Tdx(v) => tdx::appraise(&v, tdx_p)
            .map(|_| Vec::new())
            .map_err(|e| refusal(&e)),
    }
}

fn manifest_verdict(case: &Case, outcome: &Outcome) -> Result<()> {
    match (case.table["expected"].as_str().unwrap(), outcome) {
        ("accept", Ok(_)) => Ok(()),
        ("reject", Err((category, message))) => {
            let mut allowed = vec![case.table["reason"].as_str().unwrap()];
            if let Some(alt) = case.table.get("alt_reasons").and_then(Value::as_array) {
                allowed.extend(alt.iter().filter_map(Value::as_str));
            }
            if allowed.contains(category) {
                Ok(())
            } else {
                bail!("refused as {category} ({message}), want one of {allowed:?}")
            }
        }
        (want, got) => bail!("want {want}, got {got:?}"),
    }
}

/// The manifest's baseline policy as a document: both TEEs, nothing pinned.
const BASELINE: &str = "id = \"baseline\"\nversion = \"1\"\nsnp {}\ntdx {}\n";

#[test]
fn baseline_document_gives_every_manifest_verdict() {
    let policy = Policy::parse(BASELINE).unwrap();
    let all = cases();
    assert!(all.len() >= 39, "only {} cases", all.len());
    let mut failures = Vec::new();
    for case in &all {
        let doc = run_doc(case, &policy);
        let direct = run_direct(case, &SnpPolicy::default(), &TdxPolicy::default());
        if doc != direct {
            failures.push(format!(
                "{}: document {doc:?}, direct {direct:?}",
                case.name
            ));
        }
        if let Err(e) = manifest_verdict(case, &doc) {
            failures.push(format!("{}: {e}", case.name));
        }
        // The baseline has no rules: no selector from the policy.
        if let Ok(s) = &doc {
            assert!(s.is_empty());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The policy keys of the server's sample `snp { }` and `tdx { }` blocks (doc page), moved into a file
/// unchanged, with reference values taken from real evidence; the server builds the same
/// `SnpPolicy`/`TdxPolicy` from them (node-attestor/src/server/config.rs and tdx.rs map each key 1:1).
fn server_style(measurement: &str, mrtd: &str, sept_ve_required: bool) -> String {
    format!(
        r#"
        id = "moved-from-plugin-data"
        version = "1"
        snp {{
            allow_debug = false
            allow_migrate_ma = false
            allowed_measurements = ["{measurement}"]
            allowed_host_data = []
            allowed_id_key_digests = []
            allowed_vmpls = []
        }}
        tdx {{
            allow_debug = false
            allowed_tcb_statuses = ["UpToDate"]
            mrtd = ["{mrtd}"]
            rtmr0 = []
            rtmr1 = []
            rtmr2 = []
            rtmr3 = []
            mrconfigid = []
            mrowner = []
            mrownerconfig = []
            td_attributes {{
                value = "{sept}"
                mask = "0x10000000"
            }}
        }}
        "#,
        sept = if sept_ve_required {
            "0x10000000"
        } else {
            "0x0"
        },
    )
}

fn snp_claims(name: &str) -> snp::SnpClaims {
    match verify(&case(name)).ok().unwrap() {
        Verified::Snp(v) => v.claims(),
        Verified::Tdx(_) => unreachable!(),
    }
}

fn tdx_claims(name: &str) -> tdx::TdxClaims {
    match verify(&case(name)).ok().unwrap() {
        Verified::Tdx(v) => v.claims(),
        Verified::Snp(_) => unreachable!(),
    }
}

#[test]
fn pinned_document_accepts_and_refuses_like_the_server_policies() {
    let oak = snp_claims("snp-oak-milan-v3");
    let dq = tdx_claims("tdx-dq-b0c06f-v4");
    let policy = Policy::parse(&server_style(&oak.measurement, &dq.mrtd, true)).unwrap();
    // The policies the server builds from the same keys.
    let snp_direct = SnpPolicy {
        allowed_measurements: vec![hex::decode(&oak.measurement).unwrap().try_into().unwrap()],
        ..SnpPolicy::default()
    };
    let tdx_direct = TdxPolicy {
        mrtd: vec![hex::decode(&dq.mrtd).unwrap().try_into().unwrap()],
        td_attributes: Some(tdx::Masked {
            value: 1 << 28,
            mask: 1 << 28,
        }),
        ..TdxPolicy::default()
    };
    assert_eq!(policy.snp_policy().unwrap(), &snp_direct);
    assert_eq!(policy.tdx_policy().unwrap(), &tdx_direct);

    let mut accepted = Vec::new();
    for case in cases() {
        let doc = run_doc(&case, &policy);
        assert_eq!(
            doc,
            run_direct(&case, &snp_direct, &tdx_direct),
            "{}",
            case.name
        );
        match &doc {
            Ok(_) => accepted.push(case.name.clone()),
            Err((category, message)) if case.table["expected"].as_str() == Some("accept") => {
                // Genuine evidence refused only for what the pins say.
                let field = if case.table["tee"].as_str() == Some("snp") {
                    "measurement"
                } else if case.name == "tdx-azure-00806f-v4" {
                    "td_attributes"
                } else {
                    "mrtd"
                };
                assert!(
                    message.contains(field),
                    "{}: {category} {message}",
                    case.name
                );
            }
            Err(_) => {}
        }
    }
    // Exactly the pinned SEV-SNP image (and its sibling report of the same launch) and TD pass.
    for name in ["snp-oak-milan-v3", "tdx-dq-b0c06f-v4"] {
        assert!(
            accepted.iter().any(|a| a == name),
            "{name} not in {accepted:?}"
        );
    }
    assert!(!accepted.iter().any(|a| a == "snp-virtee-milan-v2"));
    assert!(!accepted.iter().any(|a| a == "tdx-near-20a06f-v4"));
}

#[test]
fn relaxing_keys_accept_what_the_baseline_refuses() {
    let debug_snp = case("snp-gsg-milan-v2-debug");
    let debug_td = case("tdx-trustee-50806f-v4-debug");
    let outdated = case("tdx-zkdcap-00806f-v4");
    let base = Policy::parse(BASELINE).unwrap();
    assert_eq!(run_doc(&debug_snp, &base).unwrap_err().0, "policy-debug");
    assert_eq!(run_doc(&debug_td, &base).unwrap_err().0, "policy-debug");
    assert_eq!(run_doc(&outdated, &base).unwrap_err().0, "tcb-out-of-date");

    let relaxed = Policy::parse(
        r#"
        id = "lab"
        version = "1"
        snp {
          allow_debug = true
        }
        tdx {
          allow_debug = true
          allowed_tcb_statuses = ["UpToDate", "OutOfDate"]
        }
        "#,
    )
    .unwrap();
    run_doc(&debug_snp, &relaxed).unwrap();
    run_doc(&debug_td, &relaxed).unwrap();
    run_doc(&outdated, &relaxed).unwrap();
    // Advisory list that misses one of the platform's advisories: refused again, naming it.
    let claims = tdx_claims_unappraised(&outdated);
    assert!(claims.advisory_ids.len() >= 2, "{:?}", claims.advisory_ids);
    let partial = Policy::parse(&format!(
        "id = \"lab\"\nversion = \"2\"\ntdx {{\n allowed_tcb_statuses = [\"OutOfDate\"]\n allowed_advisory_ids = [\"{}\"]\n}}\n",
        claims.advisory_ids[0]
    ))
    .unwrap();
    let (category, message) = run_doc(&outdated, &partial).unwrap_err();
    assert_eq!(category, "policy");
    assert!(message.contains(&claims.advisory_ids[1]), "{message}");
}

fn tdx_claims_unappraised(case: &Case) -> tdx::TdxClaims {
    match verify(case).ok().unwrap() {
        Verified::Tdx(v) => v.claims(),
        Verified::Snp(_) => unreachable!(),
    }
}

#[test]
fn tee_without_section_is_refused_before_appraisal() {
    let policy = Policy::parse("id = \"tdx-only\"\nversion = \"1\"\ntdx {}\n").unwrap();
    let e = policy.snp_policy().unwrap_err();
    assert!(matches!(e, PolicyError::TeeNotAllowed { .. }), "{e}");
}

#[test]
fn selector_rules_match_the_evidence_they_name() {
    let oak = case("snp-oak-milan-v3");
    let virtee = case("snp-virtee-milan-v2");
    let dq = case("tdx-dq-b0c06f-v4");
    let near = case("tdx-near-20a06f-v4");
    let (oak_c, dq_c) = (
        snp_claims("snp-oak-milan-v3"),
        tdx_claims("tdx-dq-b0c06f-v4"),
    );
    let policy = Policy::parse(&format!(
        r#"
        id = "fleet"
        version = "7"
        snp {{}}
        tdx {{}}
        selectors {{
          match "web" {{
            snp {{
              measurement = ["{m_other}", "{m}"]
            }}
            tdx {{
              mrtd = ["{mrtd}"]
              rtmr0 = ["{rtmr0}"]
            }}
          }}
          match "oak-host" {{
            snp {{
              measurement = ["{m}"]
              host_data = ["{host}"]
            }}
          }}
          match "never" {{
            tdx {{
              mrtd = ["{mrtd}"]
              rtmr1 = ["{zero}"]
            }}
          }}
        }}
        "#,
        m_other = "ab".repeat(48),
        m = oak_c.measurement.to_ascii_uppercase(),
        host = oak_c.host_data,
        mrtd = dq_c.mrtd,
        rtmr0 = dq_c.rtmr0,
        zero = if dq_c.rtmr1 == "00".repeat(48) {
            "11".repeat(48)
        } else {
            "00".repeat(48)
        },
    ))
    .unwrap();
    assert_eq!(
        run_doc(&oak, &policy).unwrap(),
        ["policy-match:oak-host", "policy-match:web"]
    );
    assert_eq!(run_doc(&dq, &policy).unwrap(), ["policy-match:web"]);
    assert!(run_doc(&virtee, &policy).unwrap().is_empty());
    assert!(run_doc(&near, &policy).unwrap().is_empty());

    // Evidence on a simulated root earns only `simulated:` values.
    let Verified::Snp(v) = verify(&oak).ok().unwrap() else {
        unreachable!()
    };
    let mut a = snp::appraise(&v, policy.snp_policy().unwrap()).unwrap();
    a.claims.simulated = true;
    assert_eq!(
        policy.selectors_for(&a),
        [
            "simulated:policy-match:oak-host",
            "simulated:policy-match:web"
        ]
    );
}

//! `twi evidence verify`: one piece of evidence through the verifier core's parse → verify → bind →
//! appraise, the same `twi_core` calls the SPIRE server plugin makes, at a chosen instant.
//!
//! Exit codes: 0 accepted, 1 rejected (the evidence, its certificates or CRLs were refused or cannot be
//! parsed), 2 usage or I/O error (a file cannot be read, a flag value or the policy/root files are bad).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use twi_core::error::Violation;
use twi_core::snp::{
    appraise, check_report_data, AttestationReport, CertChain, SnpClaims, SnpPolicy, TcbParts,
    TrustAnchors, Verifier,
};
use twi_node_attestor::wire;

use super::{fmt_unix, parse_hex64, parse_hex_padded64, parse_rfc3339, unix_now};

/// Evidence files larger than this are refused unread (a report with a certificate table is a few KiB).
const MAX_EVIDENCE_FILE: u64 = 1024 * 1024;
/// Certificate, CRL, root and policy files larger than this are refused unread.
const MAX_INPUT_FILE: u64 = 1024 * 1024;

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The evidence: a 1184-byte SEV-SNP report, or the JSON challenge response (wire
    /// EvidenceResponse) the agent plugin sends, whose certificate table is used.
    #[arg(long, value_name = "FILE")]
    evidence: PathBuf,
    /// A certificate of the chain (VCEK/VLEK, ASK/ASVK, ARK; PEM or DER, a PEM file may hold several),
    /// classified by subject. Untrusted input: only the pinned roots decide.
    #[arg(long = "cert", value_name = "FILE")]
    certs: Vec<PathBuf>,
    /// Verify as of this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    as_of: Option<i64>,
    /// Require REPORT_DATA to be exactly these 64 bytes (128 hex digits).
    #[arg(long, value_name = "HEX", value_parser = parse_hex64, conflicts_with = "nonce")]
    expect_report_data: Option<[u8; 64]>,
    /// Require REPORT_DATA to start with this nonce (1 to 64 bytes of hex), the rest zero.
    #[arg(long, value_name = "HEX", value_parser = parse_hex_padded64)]
    nonce: Option<[u8; 64]>,
    /// Appraisal policy, JSON or HCL (fields of the SNP policy; default: the baseline, which refuses
    /// debug guests and migration agents and pins nothing).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Also trust this ARK certificate (PEM or DER), besides AMD's pinned roots.
    #[arg(long = "trust-root", value_name = "FILE")]
    trust_roots: Vec<PathBuf>,
    /// Also trust this simulated ARK (from `twi sim init`); evidence chaining to it is marked simulated.
    #[arg(long = "simulated-root", value_name = "FILE")]
    simulated_roots: Vec<PathBuf>,
    /// An AMD CRL (DER) to check the chain against.
    #[arg(long = "crl", value_name = "FILE")]
    crls: Vec<PathBuf>,
    /// TDX collateral folder (TDX evidence is not supported yet).
    #[arg(long, value_name = "DIR")]
    collateral: Option<PathBuf>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// The result printed by `--json`: `verdict`, `tee`, `simulated`, `category`, `reason` and `claims`
/// are the contract; the rest is informational.
#[derive(Serialize)]
struct Outcome {
    verdict: &'static str,
    tee: &'static str,
    simulated: bool,
    /// Reason category of a reject (as in shared/testdata/manifest.toml), else null.
    category: Option<&'static str>,
    /// The reject message, else null.
    reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    violations: Vec<Violation>,
    as_of: String,
    evidence_format: &'static str,
    report_data_checked: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    policy_checked: Vec<&'static str>,
    /// Claims of verified evidence (present once verification succeeded, also on a later reject).
    claims: Option<SnpClaims>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

impl Outcome {
    fn new(now: i64, evidence_format: &'static str) -> Outcome {
        Outcome {
            verdict: "reject",
            tee: "snp",
            simulated: false,
            category: None,
            reason: None,
            violations: Vec::new(),
            as_of: fmt_unix(now),
            evidence_format,
            report_data_checked: false,
            policy_checked: Vec::new(),
            claims: None,
            notes: Vec::new(),
        }
    }

    fn reject(mut self, e: twi_core::Error) -> Outcome {
        self.verdict = "reject";
        self.category = Some(e.category());
        self.reason = Some(e.to_string());
        if let twi_core::Error::Policy { violations } = e {
            self.violations = violations;
        }
        self
    }
}

/// Runs the command and maps the result to the exit code contract.
pub(crate) fn run(args: &VerifyArgs) -> ExitCode {
    match verify(args) {
        Ok(outcome) => {
            if args.json {
                match serde_json::to_string(&outcome) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return usage_error(args, &anyhow!("encoding the result: {e}")),
                }
            } else {
                print_human(&outcome);
            }
            if outcome.verdict == "accept" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => usage_error(args, &e),
    }
}

fn usage_error(args: &VerifyArgs, e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "verdict": "error", "error": format!("{e:#}") })
        );
    }
    ExitCode::from(2)
}

/// What the evidence file turned out to be.
enum Loaded {
    Snp {
        report: Vec<u8>,
        cert_table: Option<Vec<u8>>,
        format: &'static str,
    },
    /// A JSON document that is not a valid challenge response: refused as malformed evidence.
    BadWire(String),
    Tdx,
}

/// `Err` is a usage or I/O error (exit 2); rejects are `Ok` outcomes.
fn verify(args: &VerifyArgs) -> Result<Outcome> {
    let now = args.as_of.unwrap_or_else(unix_now);
    let expected_rd = args.expect_report_data.or(args.nonce);
    // Configuration first, so that a bad flag is reported as such whatever the evidence.
    let policy = match &args.policy {
        Some(p) => load_policy(p)?,
        None => SnpPolicy::default(),
    };
    let mut anchors = TrustAnchors::amd();
    for (paths, simulated) in [(&args.trust_roots, false), (&args.simulated_roots, true)] {
        for p in paths {
            let flag = if simulated {
                "--simulated-root"
            } else {
                "--trust-root"
            };
            anchors
                .add_root_pem(&read_capped(p, MAX_INPUT_FILE)?, simulated)
                .with_context(|| format!("{flag} {}", p.display()))?;
        }
    }
    let loaded = load_evidence(&args.evidence)?;
    let (report, cert_table, format) = match loaded {
        Loaded::Tdx => bail!(
            "{}: TDX evidence is not supported yet",
            args.evidence.display()
        ),
        Loaded::BadWire(detail) => {
            return Ok(
                Outcome::new(now, "json").reject(twi_core::Error::Malformed {
                    what: "evidence JSON",
                    detail,
                }),
            );
        }
        Loaded::Snp {
            report,
            cert_table,
            format,
        } => (report, cert_table, format),
    };
    if args.collateral.is_some() {
        bail!(
            "--collateral is for TDX evidence; {} is SEV-SNP evidence",
            args.evidence.display()
        );
    }
    let mut out = Outcome::new(now, format);
    if format == "wire" {
        out.notes.push("key_proof not checked: it needs the agent's instance key (the server plugin checks it)".into());
    }
    // Certificates and CRLs are read before anything is judged, so that an unreadable file is always
    // an I/O error (exit 2), never hidden behind an earlier reject.
    let certs: Vec<(PathBuf, Vec<u8>)> = args
        .certs
        .iter()
        .map(|p| Ok((p.clone(), read_capped(p, MAX_INPUT_FILE)?)))
        .collect::<Result<_>>()?;
    let crls: Vec<(PathBuf, Vec<u8>)> = args
        .crls
        .iter()
        .map(|p| Ok((p.clone(), read_capped(p, MAX_INPUT_FILE)?)))
        .collect::<Result<_>>()?;

    // The same calls, in the same order, as the server plugin: parse, chain, verify, bind, appraise.
    let report = match AttestationReport::parse(&report) {
        Ok(r) => r,
        Err(e) => return Ok(out.reject(e)),
    };
    let mut chain = match cert_table
        .as_deref()
        .map(CertChain::from_cert_table)
        .transpose()
    {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => return Ok(out.reject(e)),
    };
    for (path, bytes) in &certs {
        if let Err(e) = chain.add_pem_or_der(bytes) {
            return Ok(out.reject(in_file(e, path)));
        }
    }
    let mut verifier = Verifier::new(anchors);
    for (path, bytes) in &crls {
        if let Err(e) = verifier.add_crl_der(bytes) {
            return Ok(out.reject(in_file(e, path)));
        }
    }
    let verified = match verifier.verify(&report, &chain, now) {
        Ok(v) => v,
        Err(e) => return Ok(out.reject(e)),
    };
    out.simulated = verified.simulated();
    out.claims = Some(verified.claims());
    if let Some(want) = &expected_rd {
        out.report_data_checked = true;
        if let Err(e) = check_report_data(verified.report(), want) {
            return Ok(out.reject(e));
        }
    }
    match appraise(&verified, &policy) {
        Ok(appraisal) => {
            out.verdict = "accept";
            out.policy_checked = appraisal.checked;
            Ok(out)
        }
        Err(e) => Ok(out.reject(e)),
    }
}

/// Names the offending file in a parse error of a `--cert`/`--crl` input.
fn in_file(e: twi_core::Error, path: &Path) -> twi_core::Error {
    match e {
        twi_core::Error::Malformed { what, detail } => twi_core::Error::Malformed {
            what,
            detail: format!("{}: {detail}", path.display()),
        },
        other => other,
    }
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let file = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > cap {
        bail!("{} is larger than {cap} bytes", path.display());
    }
    Ok(bytes)
}

/// Tells a raw SNP report, a JSON challenge response and a TDX quote apart.
fn load_evidence(path: &Path) -> Result<Loaded> {
    let bytes = read_capped(path, MAX_EVIDENCE_FILE)?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(match wire::EvidenceResponse::decode(&bytes) {
            Ok(resp) => match resp.evidence {
                wire::Evidence::Snp(snp) => Loaded::Snp {
                    report: snp.report,
                    cert_table: snp.cert_table,
                    format: "wire",
                },
                // Non-exhaustive: TDX evidence comes in a later issue.
                _ => Loaded::Tdx,
            },
            Err(e) => Loaded::BadWire(e.to_string()),
        });
    }
    // A TDX quote header: version u16 (4 or 5), attestation key type u16 = 2 (ECDSA P-256), TEE type
    // u32 = 0x81. An SNP report starts with its u32 version (2..=5), so bytes 2..4 are zero there.
    if let (Some([v, 0]), Some([2, 0]), Some([0x81, 0, 0, 0])) =
        (bytes.get(0..2), bytes.get(2..4), bytes.get(4..8))
    {
        if matches!(v, 4 | 5) {
            return Ok(Loaded::Tdx);
        }
    }
    Ok(Loaded::Snp {
        report: bytes,
        cert_table: None,
        format: "raw",
    })
}

/// The `--policy` file: the fields of [`SnpPolicy`] with hex strings for byte values. Kept in the CLI
/// for now; it may move to twi-core when the server plugin reads the same format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    allow_debug: bool,
    #[serde(default)]
    allow_migrate_ma: bool,
    #[serde(default)]
    minimum_tcb: Option<TcbFile>,
    #[serde(default)]
    allowed_measurements: Vec<String>,
    #[serde(default)]
    allowed_host_data: Vec<String>,
    #[serde(default)]
    allowed_id_key_digests: Vec<String>,
    #[serde(default)]
    allowed_vmpls: Vec<u32>,
    #[serde(default)]
    minimum_guest_svn: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TcbFile {
    #[serde(default)]
    fmc: Option<u8>,
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
}

impl PolicyFile {
    fn into_policy(self) -> Result<SnpPolicy> {
        fn pins<const N: usize>(field: &str, values: &[String]) -> Result<Vec<[u8; N]>> {
            values
                .iter()
                .map(|v| {
                    let bytes = hex::decode(v.trim().trim_start_matches("0x"))
                        .map_err(|e| anyhow!("{field}: {v:?} is not hex: {e}"))?;
                    <[u8; N]>::try_from(bytes.as_slice())
                        .map_err(|_| anyhow!("{field}: {v:?} is {} bytes, want {N}", bytes.len()))
                })
                .collect()
        }
        Ok(SnpPolicy {
            allow_debug: self.allow_debug,
            allow_migrate_ma: self.allow_migrate_ma,
            minimum_tcb: self.minimum_tcb.map(|t| TcbParts {
                fmc: t.fmc,
                bootloader: t.bootloader,
                tee: t.tee,
                snp: t.snp,
                microcode: t.microcode,
            }),
            allowed_measurements: pins::<48>("allowed_measurements", &self.allowed_measurements)?,
            allowed_host_data: pins::<32>("allowed_host_data", &self.allowed_host_data)?,
            allowed_id_key_digests: pins::<48>(
                "allowed_id_key_digests",
                &self.allowed_id_key_digests,
            )?,
            allowed_vmpls: self.allowed_vmpls,
            minimum_guest_svn: self.minimum_guest_svn,
        })
    }
}

/// Reads a policy file: JSON when it starts with `{`, else HCL.
fn load_policy(path: &Path) -> Result<SnpPolicy> {
    let bytes = read_capped(path, MAX_INPUT_FILE)?;
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("policy {} is not UTF-8", path.display()))?;
    let file: PolicyFile = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).with_context(|| format!("policy {} (JSON)", path.display()))?
    } else {
        hcl::from_str(text).with_context(|| format!("policy {} (HCL)", path.display()))?
    };
    file.into_policy()
        .with_context(|| format!("policy {}", path.display()))
}

fn print_human(o: &Outcome) {
    let sim = if o.simulated {
        "  [SIMULATED: chain ends in a test root, not AMD hardware]"
    } else {
        ""
    };
    match (o.verdict, &o.claims) {
        ("accept", Some(c)) => {
            let key = serde_json::to_value(c.signing_key)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            println!(
                "ACCEPT  {} evidence ({}, {}) as of {}{sim}",
                o.tee,
                c.product,
                key.unwrap_or_default(),
                o.as_of
            );
        }
        ("accept", None) => println!("ACCEPT  {} evidence as of {}{sim}", o.tee, o.as_of),
        _ => println!(
            "REJECT  {} evidence as of {}: {}: {}{sim}",
            o.tee,
            o.as_of,
            o.category.unwrap_or("unknown"),
            o.reason.as_deref().unwrap_or("")
        ),
    }
    for v in &o.violations {
        println!("  violation  {v}");
    }
    println!(
        "  report_data  {}",
        if o.report_data_checked {
            "checked"
        } else {
            "not checked (no --expect-report-data/--nonce)"
        }
    );
    if !o.policy_checked.is_empty() {
        println!("  policy       {}", o.policy_checked.join(", "));
    }
    for n in &o.notes {
        println!("  note         {n}");
    }
    if let Some(claims) = &o.claims {
        println!("claims:");
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(claims) {
            for (k, v) in map {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                println!("  {k:<20} {v}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn policy_file_json_and_hcl_agree() {
        let json = r#"{"allow_debug": true, "minimum_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
            "allowed_measurements": ["00"], "allowed_vmpls": [0, 1], "minimum_guest_svn": 2}"#;
        let hcl = "allow_debug = true\nminimum_tcb {\n  bootloader = 3\n  tee = 0\n  snp = 8\n  microcode = 115\n}\n\
                   allowed_measurements = [\"00\"]\nallowed_vmpls = [0, 1]\nminimum_guest_svn = 2\n";
        let a: PolicyFile = serde_json::from_str(json).unwrap();
        let b: PolicyFile = hcl::from_str(hcl).unwrap();
        for f in [a, b] {
            assert!(f.allow_debug && !f.allow_migrate_ma);
            assert_eq!(f.allowed_vmpls, [0, 1]);
            assert_eq!(f.minimum_tcb.as_ref().map(|t| t.microcode), Some(115));
            // "00" is one byte, not a 48-byte measurement.
            let e = f.into_policy().unwrap_err().to_string();
            assert!(
                e.contains("allowed_measurements") && e.contains("want 48"),
                "{e}"
            );
        }
        assert!(serde_json::from_str::<PolicyFile>(r#"{"allow_debg": true}"#).is_err());
        let ok: PolicyFile = serde_json::from_str(&format!(
            r#"{{"allowed_host_data": ["{}"]}}"#,
            "ab".repeat(32)
        ))
        .unwrap();
        assert_eq!(
            ok.into_policy().unwrap().allowed_host_data,
            vec![[0xab; 32]]
        );
    }
}

//! `twi evidence verify`: one piece of evidence (SEV-SNP report or Intel TDX quote) through the verifier
//! core's parse → verify → bind → appraise, the same `twi_core` calls the SPIRE server plugin makes, at
//! a chosen instant; with `--ear`, also the signed attestation result the server would issue.
//!
//! Exit codes: 0 accepted, 1 rejected (the evidence, its certificates or CRLs were refused or cannot be
//! parsed), 2 usage or I/O error (a file cannot be read, a flag value or the policy/root files are bad).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use twi_core::ear::{
    self, from_snp, from_tdx, tv, Ear, EarIssuer, PolicyId, Refusal, SnpOutcome, TdxOutcome,
    VerifierKey,
};
use twi_core::error::Violation;
use twi_core::snp::{
    appraise, check_report_data, AttestationReport, CertChain, SnpClaims, SnpPolicy, TcbParts,
    TrustAnchors, Verifier,
};
use twi_core::tdx::{
    self, Collateral, IntelRoots, Masked, Quote, TcbStatus, TdxClaims, TdxPolicy, TdxVerifier,
    COLLATERAL_FILES,
};
use twi_node_attestor::wire;

use super::{fmt_unix, parse_hex64, parse_hex_padded64, parse_rfc3339, unix_now};

/// Evidence files larger than this are refused unread (a report with a certificate table is a few KiB).
const MAX_EVIDENCE_FILE: u64 = 1024 * 1024;
/// Certificate, CRL, root and policy files larger than this are refused unread.
const MAX_INPUT_FILE: u64 = 1024 * 1024;

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The evidence: a 1184-byte SEV-SNP report, an Intel TDX DCAP quote (v4/v5), or the JSON
    /// challenge response (wire EvidenceResponse) the agent plugin sends.
    #[arg(long, value_name = "FILE")]
    evidence: PathBuf,
    /// SEV-SNP: a certificate of the chain (VCEK/VLEK, ASK/ASVK, ARK; PEM or DER, a PEM file may hold
    /// several), classified by subject. Untrusted input: only the pinned roots decide.
    #[arg(long = "cert", value_name = "FILE")]
    certs: Vec<PathBuf>,
    /// Verify as of this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    as_of: Option<i64>,
    /// Require REPORT_DATA (TDX: REPORTDATA) to be exactly these 64 bytes (128 hex digits).
    #[arg(long, value_name = "HEX", value_parser = parse_hex64, conflicts_with = "nonce")]
    expect_report_data: Option<[u8; 64]>,
    /// Require REPORT_DATA to start with this nonce (1 to 64 bytes of hex), the rest zero.
    #[arg(long, value_name = "HEX", value_parser = parse_hex_padded64)]
    nonce: Option<[u8; 64]>,
    /// Appraisal policy, JSON or HCL: the fields of one TEE's policy, or `snp { }` / `tdx { }` sections
    /// as in the server's plugin_data (default: the baseline, which refuses debug guests, SNP migration
    /// agents and TDX platforms not UpToDate, and pins nothing).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Also trust this root certificate (PEM or DER): an AMD ARK for SEV-SNP, an Intel SGX Root CA
    /// for TDX, besides the vendors' pinned roots.
    #[arg(long = "trust-root", value_name = "FILE")]
    trust_roots: Vec<PathBuf>,
    /// Also trust this simulated root (from `twi sim init`, or the TDX simulator's root.der);
    /// evidence chaining to it is marked simulated.
    #[arg(long = "simulated-root", value_name = "FILE")]
    simulated_roots: Vec<PathBuf>,
    /// SEV-SNP: an AMD CRL (DER) to check the chain against.
    #[arg(long = "crl", value_name = "FILE")]
    crls: Vec<PathBuf>,
    /// TDX (required): the collateral folder, with Intel PCS files under their role names
    /// (tcb_info.json, qe_identity.json, pck_crl.der, root_ca_crl.der, *_issuer_chain.pem).
    #[arg(long, value_name = "DIR")]
    collateral: Option<PathBuf>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Also issue the signed EAR (EAT Attestation Result, compact JWS) of this appraisal, accepted or
    /// refused: the only stdout line, or field `ear` with --json.
    #[arg(long)]
    ear: bool,
    /// Sign the EAR with this ES256 key (PKCS#8 PEM, mode 0600) instead of an ephemeral one.
    #[arg(long, value_name = "FILE", requires = "ear")]
    verifier_key: Option<PathBuf>,
    /// Write the JWKS that verifies the EAR to this file.
    #[arg(long, value_name = "FILE", requires = "ear")]
    jwks_out: Option<PathBuf>,
}

/// Claims of verified evidence, per TEE.
#[derive(Serialize)]
#[serde(untagged)]
enum Claims {
    Snp(Box<SnpClaims>),
    Tdx(Box<TdxClaims>),
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
    claims: Option<Claims>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
    /// The signed EAR (compact JWS), with `--ear`.
    #[serde(skip_serializing_if = "Option::is_none")]
    ear: Option<String>,
}

impl Outcome {
    fn new(now: i64, tee: &'static str, evidence_format: &'static str) -> Outcome {
        Outcome {
            verdict: "reject",
            tee,
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
            ear: None,
        }
    }

    fn reject(mut self, e: &twi_core::Error) -> Outcome {
        self.verdict = "reject";
        self.category = Some(e.category());
        self.reason = Some(e.to_string());
        if let twi_core::Error::Policy { violations } = e {
            self.violations.clone_from(violations);
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
            } else if let Some(jws) = &outcome.ear {
                // stdout is the EAR alone (`> ear.jws`); the verdict goes to stderr.
                eprintln!(
                    "{} {} evidence: {}",
                    outcome.verdict.to_uppercase(),
                    outcome.tee,
                    outcome.category.unwrap_or("accepted")
                );
                println!("{jws}");
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
    Tdx {
        quote: Vec<u8>,
        format: &'static str,
    },
    /// A JSON document that is not a valid challenge response: refused as malformed evidence.
    BadWire(String),
}

/// The configuration files, read before the evidence so that a bad flag is reported as such (exit 2)
/// whatever the evidence.
struct Config {
    policy: Option<(PathBuf, serde_json::Value)>,
    /// `(flag, path, bytes, simulated)` of every extra root.
    roots: Vec<(&'static str, PathBuf, Vec<u8>, bool)>,
    ear: Option<EarCtx>,
}

/// What an EAR needs besides the appraisal.
struct EarCtx {
    key: VerifierKey,
    issuer: EarIssuer,
    policy_id: PolicyId,
    now: i64,
}

impl EarCtx {
    fn sign(&self, ear: &Ear) -> Result<String> {
        ear::sign(ear, &self.key).context("signing the EAR")
    }
}

fn load_config(args: &VerifyArgs, now: i64) -> Result<Config> {
    let mut h = Sha256::new();
    let policy = match &args.policy {
        Some(p) => {
            let bytes = read_capped(p, MAX_INPUT_FILE)?;
            h.update(b"policy\0");
            h.update(&bytes);
            Some((p.clone(), parse_policy_value(p, &bytes)?))
        }
        None => None,
    };
    let mut roots = Vec::new();
    for (paths, flag, simulated) in [
        (&args.trust_roots, "--trust-root", false),
        (&args.simulated_roots, "--simulated-root", true),
    ] {
        for p in paths {
            let bytes = read_capped(p, MAX_INPUT_FILE)?;
            h.update(if simulated { b"sim\0" } else { b"root" });
            h.update(Sha256::digest(&bytes));
            roots.push((flag, p.clone(), bytes, simulated));
        }
    }
    let digest: [u8; 32] = h.finalize().into();
    let ear = if args.ear {
        let key = match &args.verifier_key {
            Some(p) => VerifierKey::load(p).context("--verifier-key")?,
            None => VerifierKey::generate(&mut rand_core::OsRng),
        };
        if let Some(out) = &args.jwks_out {
            fs::write(out, key.jwks().to_json())
                .with_context(|| format!("--jwks-out {}", out.display()))?;
        }
        let name = if args.policy.is_some() {
            "twi-cli"
        } else {
            "twi-cli-baseline"
        };
        Some(EarCtx {
            key,
            issuer: EarIssuer::new(
                concat!("twi@", env!("CARGO_PKG_VERSION")),
                ear::DEFAULT_VALIDITY_SECS,
            ),
            policy_id: PolicyId::new(name, env!("CARGO_PKG_VERSION"), &hex::encode(digest))
                .context("EAR policy id")?,
            now,
        })
    } else {
        None
    };
    Ok(Config { policy, roots, ear })
}

/// `Err` is a usage or I/O error (exit 2); rejects are `Ok` outcomes.
fn verify(args: &VerifyArgs) -> Result<Outcome> {
    let now = args.as_of.unwrap_or_else(unix_now);
    let config = load_config(args, now)?;
    let loaded = load_evidence(&args.evidence)?;
    match loaded {
        Loaded::BadWire(detail) => {
            let e = twi_core::Error::Malformed {
                what: "evidence JSON",
                detail,
            };
            let mut out = Outcome::new(now, "unknown", "json").reject(&e);
            if let Some(ctx) = &config.ear {
                // Not knowing the TEE, the refusal is reported under the SEV-SNP submod as the server
                // does for a stream it cannot decode.
                let ear = from_snp(
                    &ctx.issuer,
                    SnpOutcome::Refused(Refusal::from_error(&e, None)),
                    &[],
                    None,
                    &ctx.policy_id,
                    ctx.now,
                );
                out.ear = Some(ctx.sign(&ear)?);
            }
            Ok(out)
        }
        Loaded::Snp {
            report,
            cert_table,
            format,
        } => verify_snp(args, &config, now, &report, cert_table.as_deref(), format),
        Loaded::Tdx { quote, format } => verify_tdx(args, &config, now, &quote, format),
    }
}

fn verify_snp(
    args: &VerifyArgs,
    config: &Config,
    now: i64,
    report_bytes: &[u8],
    cert_table: Option<&[u8]>,
    format: &'static str,
) -> Result<Outcome> {
    if args.collateral.is_some() {
        bail!(
            "--collateral is for TDX evidence; {} is SEV-SNP evidence",
            args.evidence.display()
        );
    }
    let policy = match &config.policy {
        Some((path, value)) => snp_policy(path, value)?,
        None => SnpPolicy::default(),
    };
    let mut anchors = TrustAnchors::amd();
    for (flag, path, bytes, simulated) in &config.roots {
        anchors
            .add_root_pem(bytes, *simulated)
            .with_context(|| format!("{flag} {}", path.display()))?;
    }
    let expected_rd = args.expect_report_data.or(args.nonce);
    let mut out = Outcome::new(now, "snp", format);
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
    let evidence_sha256: [u8; 32] = Sha256::digest(report_bytes).into();
    let refused = |out: Outcome, e: twi_core::Error| -> Result<Outcome> {
        let mut out = out.reject(&e);
        if let Some(ctx) = &config.ear {
            let ear = from_snp(
                &ctx.issuer,
                SnpOutcome::Refused(Refusal::from_error(&e, Some(evidence_sha256))),
                &[],
                None,
                &ctx.policy_id,
                ctx.now,
            );
            out.ear = Some(ctx.sign(&ear)?);
        }
        Ok(out)
    };

    // The same calls, in the same order, as the server plugin: parse, chain, verify, bind, appraise.
    let report = match AttestationReport::parse(report_bytes) {
        Ok(r) => r,
        Err(e) => return refused(out, e),
    };
    let mut chain = match cert_table.map(CertChain::from_cert_table).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => return refused(out, e),
    };
    for (path, bytes) in &certs {
        if let Err(e) = chain.add_pem_or_der(bytes) {
            return refused(out, in_file(e, path));
        }
    }
    let mut verifier = Verifier::new(anchors);
    for (path, bytes) in &crls {
        if let Err(e) = verifier.add_crl_der(bytes) {
            return refused(out, in_file(e, path));
        }
    }
    let verified = match verifier.verify(&report, &chain, now) {
        Ok(v) => v,
        Err(e) => return refused(out, e),
    };
    out.simulated = verified.simulated();
    out.claims = Some(Claims::Snp(Box::new(verified.claims())));
    let mut result = Ok(());
    if let Some(want) = &expected_rd {
        out.report_data_checked = true;
        result = check_report_data(verified.report(), want);
    }
    let result = result.and_then(|()| appraise(&verified, &policy));
    if let Some(ctx) = &config.ear {
        let own = *verified.report().report_data();
        let mut ear = from_snp(
            &ctx.issuer,
            SnpOutcome::Verified {
                verified: &verified,
                policy: &policy,
                expected_report_data: expected_rd.as_ref().unwrap_or(&own),
                instance_key_spki: &[],
            },
            &[],
            None,
            &ctx.policy_id,
            ctx.now,
        );
        without_instance_key(&mut ear, expected_rd.is_some());
        out.ear = Some(ctx.sign(&ear)?);
    }
    match result {
        Ok(appraisal) => {
            out.verdict = "accept";
            out.policy_checked = appraisal.checked;
            Ok(out)
        }
        Err(e) => Ok(out.reject(&e)),
    }
}

/// `from_snp` always binds REPORT_DATA to an instance key; the CLI has none. Drops the key-binding
/// claim, and the instance-identity claim when REPORT_DATA was not checked at all, so the EAR claims
/// no more than this command checked.
fn without_instance_key(ear: &mut Ear, report_data_checked: bool) {
    for a in ear.submods.values_mut() {
        a.key_binding = None;
        if !report_data_checked {
            a.trust_vector.instance_identity = tv::NO_CLAIM;
            if a.status != ear::Status::Contraindicated {
                let worst = a.trust_vector.worst();
                a.status = if a.simulated == Some(true) {
                    worst.max(ear::Status::Warning)
                } else {
                    worst
                };
            }
        }
    }
    ear.status = ear.combined_status();
}

fn verify_tdx(
    args: &VerifyArgs,
    config: &Config,
    now: i64,
    quote_bytes: &[u8],
    format: &'static str,
) -> Result<Outcome> {
    let Some(dir) = &args.collateral else {
        bail!(
            "{} is an Intel TDX quote: --collateral DIR is required (Intel PCS collateral: {})",
            args.evidence.display(),
            COLLATERAL_FILES.join(", ")
        );
    };
    if let Some(flag) = [
        (!args.certs.is_empty(), "--cert"),
        (!args.crls.is_empty(), "--crl"),
    ]
    .iter()
    .find_map(|(set, f)| set.then_some(*f))
    {
        bail!("{flag} is for SEV-SNP evidence; a TDX quote carries its PCK chain and --collateral its CRLs");
    }
    let policy = match &config.policy {
        Some((path, value)) => tdx_policy(path, value)?,
        None => TdxPolicy::default(),
    };
    let mut roots = IntelRoots::intel();
    for (flag, path, bytes, simulated) in &config.roots {
        let der = pem_or_der(bytes).with_context(|| format!("{flag} {}", path.display()))?;
        roots
            .add_root_der(&der, *simulated)
            .with_context(|| format!("{flag} {}", path.display()))?;
    }
    // A missing or unreadable collateral file is an I/O error (exit 2); a bad one is a reject.
    let collateral = match Collateral::from_dir(dir) {
        Ok(c) => Ok(c),
        Err(twi_core::Error::Internal { detail }) => bail!("--collateral: {detail}"),
        Err(e) => Err(e),
    };
    let expected_rd = args.expect_report_data.or(args.nonce);
    let mut out = Outcome::new(now, "tdx", format);
    if format == "wire" {
        out.notes.push("key_proof not checked: it needs the agent's instance key (the server plugin checks it)".into());
    }
    let evidence_sha256: [u8; 32] = Sha256::digest(quote_bytes).into();
    let refused = |out: Outcome, e: twi_core::Error| -> Result<Outcome> {
        let mut out = out.reject(&e);
        if let Some(ctx) = &config.ear {
            let ear = from_tdx(
                &ctx.issuer,
                TdxOutcome::Refused(Refusal::from_error(&e, Some(evidence_sha256))),
                &[],
                None,
                &ctx.policy_id,
                ctx.now,
            );
            out.ear = Some(ctx.sign(&ear)?);
        }
        Ok(out)
    };

    let quote = match Quote::parse(quote_bytes) {
        Ok(q) => q,
        Err(e) => return refused(out, e),
    };
    let collateral = match collateral {
        Ok(c) => c,
        Err(e) => return refused(out, e),
    };
    let verified = match TdxVerifier::new(roots).verify(&quote, &collateral, now) {
        Ok(v) => v,
        Err(e) => return refused(out, e),
    };
    out.simulated = verified.simulated();
    out.claims = Some(Claims::Tdx(Box::new(verified.claims())));
    let mut result = Ok(());
    if let Some(want) = &expected_rd {
        out.report_data_checked = true;
        result = tdx::check_report_data(verified.quote(), want);
    }
    let result = result.and_then(|()| tdx::appraise(&verified, &policy));
    if let Some(ctx) = &config.ear {
        let ear = from_tdx(
            &ctx.issuer,
            TdxOutcome::Verified {
                verified: &verified,
                policy: &policy,
                expected_report_data: expected_rd.as_ref(),
                instance_key_spki: None,
            },
            &[],
            None,
            &ctx.policy_id,
            ctx.now,
        );
        out.ear = Some(ctx.sign(&ear)?);
    }
    match result {
        Ok(appraisal) => {
            out.verdict = "accept";
            out.policy_checked = appraisal.checked;
            Ok(out)
        }
        Err(e) => Ok(out.reject(&e)),
    }
}

/// DER as is, or the first certificate of a PEM file.
fn pem_or_der(bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    use der::DecodePem as _;
    let text = std::str::from_utf8(bytes).map_err(|_| anyhow!("neither DER nor PEM text"))?;
    let cert = x509_cert::Certificate::from_pem(text.trim())
        .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
    der::Encode::to_der(&cert).map_err(|e| anyhow!("re-encoding the certificate: {e}"))
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
                wire::Evidence::Tdx(tdx) => Loaded::Tdx {
                    quote: tdx.quote,
                    format: "wire",
                },
                other => Loaded::BadWire(format!("unsupported evidence {other:?}")),
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
            return Ok(Loaded::Tdx {
                quote: bytes,
                format: "raw",
            });
        }
    }
    Ok(Loaded::Snp {
        report: bytes,
        cert_table: None,
        format: "raw",
    })
}

/// Parses a policy file into a generic value: JSON when it starts with `{`, else HCL. The TEE of the
/// evidence then decides which policy type reads it.
fn parse_policy_value(path: &Path, bytes: &[u8]) -> Result<serde_json::Value> {
    let text = std::str::from_utf8(bytes)
        .with_context(|| format!("policy {} is not UTF-8", path.display()))?;
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).with_context(|| format!("policy {} (JSON)", path.display()))
    } else {
        hcl::from_str(text).with_context(|| format!("policy {} (HCL)", path.display()))
    }
}

/// The section of a policy file for one TEE: the `snp { }` / `tdx { }` block when the file has
/// sections (as the server's plugin_data), else the whole file (flat fields of that TEE's policy).
fn policy_section<T: serde::de::DeserializeOwned>(
    path: &Path,
    value: &serde_json::Value,
    tee: &str,
) -> Result<T> {
    let sectioned = value
        .as_object()
        .is_some_and(|m| m.contains_key("snp") || m.contains_key("tdx"));
    let body = if sectioned {
        let map = value.as_object().into_iter().flatten();
        if let Some((k, _)) = map.clone().find(|(k, _)| *k != "snp" && *k != "tdx") {
            bail!(
                "policy {}: {k:?} is outside the snp {{ }} / tdx {{ }} sections",
                path.display()
            );
        }
        match value.get(tee) {
            Some(v) => v.clone(),
            None => bail!(
                "policy {} has no {tee} {{ }} section for this {tee} evidence",
                path.display()
            ),
        }
    } else {
        value.clone()
    };
    serde_json::from_value(body).with_context(|| format!("policy {} ({tee})", path.display()))
}

fn snp_policy(path: &Path, value: &serde_json::Value) -> Result<SnpPolicy> {
    policy_section::<PolicyFile>(path, value, "snp")?
        .into_policy()
        .with_context(|| format!("policy {}", path.display()))
}

fn tdx_policy(path: &Path, value: &serde_json::Value) -> Result<TdxPolicy> {
    policy_section::<TdxPolicyFile>(path, value, "tdx")?
        .into_policy()
        .with_context(|| format!("policy {}", path.display()))
}

/// Hex strings of `N` bytes.
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

/// The TDX section of a `--policy` file: the fields of [`TdxPolicy`], named as the policy fields
/// (and the violations) are, with hex strings for measurements.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TdxPolicyFile {
    #[serde(default)]
    allow_debug: bool,
    /// Intel's spelling (`UpToDate`, `SWHardeningNeeded`, …); default `["UpToDate"]`.
    #[serde(default)]
    allowed_tcb_statuses: Option<Vec<TcbStatus>>,
    #[serde(default)]
    allowed_advisory_ids: Option<Vec<String>>,
    #[serde(default)]
    mrtd: Vec<String>,
    #[serde(default)]
    rtmr0: Vec<String>,
    #[serde(default)]
    rtmr1: Vec<String>,
    #[serde(default)]
    rtmr2: Vec<String>,
    #[serde(default)]
    rtmr3: Vec<String>,
    #[serde(default)]
    mrconfigid: Vec<String>,
    #[serde(default)]
    mrowner: Vec<String>,
    #[serde(default)]
    mrownerconfig: Vec<String>,
    #[serde(default)]
    xfam: Option<MaskedFile>,
    #[serde(default)]
    td_attributes: Option<MaskedFile>,
}

/// `{ value = …, mask = … }`: numbers, or hex strings (`"0x10000000"`) for values beyond 2^53.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaskedFile {
    value: U64OrHex,
    mask: U64OrHex,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum U64OrHex {
    Num(u64),
    Hex(String),
}

impl U64OrHex {
    fn get(&self, field: &str) -> Result<u64> {
        match self {
            U64OrHex::Num(n) => Ok(*n),
            U64OrHex::Hex(s) => {
                let t = s.trim();
                let digits = t.strip_prefix("0x").unwrap_or(t);
                u64::from_str_radix(digits, 16)
                    .map_err(|e| anyhow!("{field}: {s:?} is not a hex u64: {e}"))
            }
        }
    }
}

impl TdxPolicyFile {
    fn into_policy(self) -> Result<TdxPolicy> {
        let masked = |field: &str, m: Option<MaskedFile>| -> Result<Option<Masked>> {
            m.map(|m| {
                Ok(Masked {
                    value: m.value.get(field)?,
                    mask: m.mask.get(field)?,
                })
            })
            .transpose()
        };
        let base = TdxPolicy::default();
        Ok(TdxPolicy {
            allow_debug: self.allow_debug,
            allowed_tcb_statuses: self
                .allowed_tcb_statuses
                .unwrap_or(base.allowed_tcb_statuses),
            allowed_advisory_ids: self.allowed_advisory_ids,
            mrtd: pins::<48>("mrtd", &self.mrtd)?,
            rtmr: [
                pins::<48>("rtmr0", &self.rtmr0)?,
                pins::<48>("rtmr1", &self.rtmr1)?,
                pins::<48>("rtmr2", &self.rtmr2)?,
                pins::<48>("rtmr3", &self.rtmr3)?,
            ],
            mrconfigid: pins::<48>("mrconfigid", &self.mrconfigid)?,
            mrowner: pins::<48>("mrowner", &self.mrowner)?,
            mrownerconfig: pins::<48>("mrownerconfig", &self.mrownerconfig)?,
            xfam: masked("xfam", self.xfam)?,
            td_attributes: masked("td_attributes", self.td_attributes)?,
        })
    }
}

/// The SEV-SNP section of a `--policy` file: the fields of [`SnpPolicy`] with hex strings for byte
/// values (the same names as the server's `snp { }` block).
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

fn print_human(o: &Outcome) {
    let sim = match (o.simulated, o.tee) {
        (false, _) => "",
        (true, "tdx") => "  [SIMULATED: chain ends in a test root, not Intel hardware]",
        (true, _) => "  [SIMULATED: chain ends in a test root, not AMD hardware]",
    };
    match (o.verdict, &o.claims) {
        ("accept", Some(Claims::Snp(c))) => {
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
        ("accept", Some(Claims::Tdx(c))) => println!(
            "ACCEPT  {} evidence (quote v{}, FMSPC {}, TCB {}) as of {}{sim}",
            o.tee, c.quote_version, c.fmspc, c.tcb_status, o.as_of
        ),
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

    #[test]
    fn tdx_policy_sections_and_flat_fields() {
        let mrtd = "ab".repeat(48);
        let hcl = format!(
            "snp {{\n  allow_debug = true\n}}\ntdx {{\n  allow_debug = true\n  \
             allowed_tcb_statuses = [\"UpToDate\", \"SWHardeningNeeded\"]\n  mrtd = [\"{mrtd}\"]\n  \
             rtmr2 = [\"{mrtd}\"]\n  td_attributes {{\n    value = \"0x10000000\"\n    mask = 268435456\n  }}\n}}\n"
        );
        let path = Path::new("p.hcl");
        let v = parse_policy_value(path, hcl.as_bytes()).unwrap();
        let t = tdx_policy(path, &v).unwrap();
        assert!(t.allow_debug);
        assert_eq!(
            t.allowed_tcb_statuses,
            [TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded]
        );
        assert_eq!(
            (t.mrtd.clone(), t.rtmr[2].clone()),
            (vec![[0xab; 48]], vec![[0xab; 48]])
        );
        assert!(t.rtmr[0].is_empty());
        assert_eq!(
            t.td_attributes,
            Some(Masked {
                value: 1 << 28,
                mask: 1 << 28
            })
        );
        assert!(snp_policy(path, &v).unwrap().allow_debug);

        // Flat fields are one TEE's policy; a flat SNP field is unknown to TDX.
        let flat = parse_policy_value(path, br#"{"allowed_measurements": []}"#).unwrap();
        assert!(snp_policy(path, &flat).is_ok());
        let e = format!("{:#}", tdx_policy(path, &flat).unwrap_err());
        assert!(e.contains("allowed_measurements"), "{e}");
        // Defaults: the baseline.
        let empty = parse_policy_value(path, b"{}").unwrap();
        assert_eq!(tdx_policy(path, &empty).unwrap(), TdxPolicy::default());
        // Sections: the evidence's TEE must have one, and nothing may sit outside them.
        let only_snp = parse_policy_value(path, b"snp {\n allow_debug = true\n}\n").unwrap();
        let e = format!("{:#}", tdx_policy(path, &only_snp).unwrap_err());
        assert!(e.contains("no tdx { } section"), "{e}");
        let mixed = parse_policy_value(path, br#"{"tdx": {}, "allow_debug": true}"#).unwrap();
        assert!(format!("{:#}", tdx_policy(path, &mixed).unwrap_err()).contains("outside"));
        for bad in [
            r#"{"allowed_tcb_statuses": ["Fine"]}"#,
            r#"{"rtmr4": []}"#,
            r#"{"mrtd": ["00"]}"#,
            r#"{"xfam": {"value": "0xzz", "mask": 1}}"#,
        ] {
            let v = parse_policy_value(path, bad.as_bytes()).unwrap();
            assert!(tdx_policy(path, &v).is_err(), "{bad}");
        }
    }
}

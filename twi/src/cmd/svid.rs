//! `twi svid verify`: check an X.509-SVID and its TWI extensions the way a relying party does, offline,
//! with the library's `verify_svid_pem` (credential-extensions.md §6): path to the SPIFFE bundle, the
//! SPIFFE ID, the EAR(s) in `id-pe-cmw`, the signed provenance statement, its binding to the
//! certificate, and its inclusion in the transparency log. Each step is reported by name.
//!
//! Exit codes (as `twi evidence verify`): 0 every check passed (steps whose input was not given are
//! reported as skipped); 1 a check failed, or the SVID cannot be parsed (the credential is refused);
//! 2 usage or I/O error (a file cannot be read, or a trust input — bundle, JWKS, log key, provenance
//! key, OID — is malformed).

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use const_oid::ObjectIdentifier;
use twi_core::ear::Jwks;
use twi_credential_composer::extension::DEFAULT_PROVENANCE_OID;
use twi_credential_composer::statement::ProvenancePublicKey;
use twi_credential_composer::tlog::LogVerifier;
use twi_credential_composer::verify::{
    parse_pem_certificates, verify_svid_pem, TrustInputs, MAX_PEM,
};

/// JWKS, log key and provenance key files larger than this are refused unread.
const MAX_KEY_FILE: u64 = 1024 * 1024;

/// `twi svid …`.
#[derive(clap::Args)]
pub(crate) struct SvidArgs {
    #[command(subcommand)]
    command: SvidCommand,
}

#[derive(clap::Subcommand)]
enum SvidCommand {
    /// Verify an X.509-SVID and its TWI extensions; exit 0 all checks passed, 1 a check failed,
    /// 2 usage or I/O error.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The SVID: PEM certificates, leaf first, then any intermediates.
    #[arg(long, value_name = "FILE")]
    svid: PathBuf,
    /// The SPIFFE trust bundle: PEM CA certificates.
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// The EAR verifier's public keys (JWKS JSON); without it the EAR step is skipped.
    #[arg(long, value_name = "FILE")]
    jwks: Option<PathBuf>,
    /// The transparency log's verifier key (signed-note vkey `<origin>+<id>+<key>`); without it the
    /// inclusion step is skipped.
    #[arg(long, value_name = "FILE")]
    log_key: Option<PathBuf>,
    /// The composer's provenance public key (SPKI PEM), repeatable; without one the statement's
    /// signature is not checked (the step is skipped).
    #[arg(long = "provenance-key", value_name = "FILE")]
    provenance_keys: Vec<PathBuf>,
    /// OID of the TwiProvenance extension (the composer's provenance_oid).
    #[arg(long, value_name = "OID", default_value = DEFAULT_PROVENANCE_OID, value_parser = parse_oid)]
    provenance_oid: ObjectIdentifier,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Check validity as of this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = super::parse_rfc3339)]
    now: Option<i64>,
}

fn parse_oid(s: &str) -> Result<ObjectIdentifier, String> {
    ObjectIdentifier::new(s).map_err(|e| format!("{s:?} is not a dotted OID: {e}"))
}

/// Runs `twi svid …` and returns its exit code.
pub(crate) fn run(args: &SvidArgs) -> ExitCode {
    match &args.command {
        SvidCommand::Verify(v) => verify(v),
    }
}

fn verify(args: &VerifyArgs) -> ExitCode {
    let trust = match trust_inputs(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let svid = match read_limited(&args.svid, MAX_PEM as u64) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match verify_svid_pem(&svid, &trust) {
        Ok(r) => r,
        Err(e) => {
            // The file was read but holds no usable SVID: the credential is refused.
            let reason = format!("{}: {e}", args.svid.display());
            if args.json {
                println!("{}", serde_json::json!({"ok": false, "error": reason}));
            } else {
                println!("SVID REFUSED: {reason}");
            }
            return ExitCode::from(1);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report.to_json()) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: encoding the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{report}");
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn trust_inputs(args: &VerifyArgs) -> Result<TrustInputs, String> {
    let bundle = read_limited(&args.bundle, MAX_PEM as u64)?;
    let bundle =
        parse_pem_certificates(&bundle).map_err(|e| format!("{}: {e}", args.bundle.display()))?;
    let mut trust = TrustInputs::new(bundle, args.now.unwrap_or_else(super::unix_now));
    trust.provenance_oid = args.provenance_oid;
    if let Some(path) = &args.jwks {
        let json = read_limited(path, MAX_KEY_FILE)?;
        trust.jwks = Some(Jwks::from_json(&json).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    if let Some(path) = &args.log_key {
        let text = read_text(path)?;
        trust.log =
            Some(LogVerifier::new(text.trim()).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    for path in &args.provenance_keys {
        let pem = read_text(path)?;
        trust.provenance_keys.push(
            ProvenancePublicKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?,
        );
    }
    Ok(trust)
}

fn read_text(path: &Path) -> Result<String, String> {
    String::from_utf8(read_limited(path, MAX_KEY_FILE)?)
        .map_err(|_| format!("{}: not UTF-8 text", path.display()))
}

fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > max {
        return Err(format!("{}: larger than {max} bytes", path.display()));
    }
    Ok(buf)
}

//! `twi ear verify`: check an EAT Attestation Result the way a relying party does, offline, with the
//! same `twi_core::ear::verify` the credential tooling uses.
//!
//! Exit codes: 0 the EAR is valid and affirming; 1 it is invalid (signature, key, profile, freshness,
//! structure) or valid but not affirming (the reason is printed); 2 usage or I/O error.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use twi_core::ear::{self, Ear, Jwks, MAX_JWS_LEN};

/// JWKS files larger than this are refused unread.
const MAX_JWKS_FILE: u64 = 1024 * 1024;

/// `twi ear …`.
#[derive(clap::Args)]
pub(crate) struct EarArgs {
    #[command(subcommand)]
    command: EarCommand,
}

#[derive(clap::Subcommand)]
enum EarCommand {
    /// Verify an EAR (compact JWS) against the verifier's JWKS; exit 0 valid and affirming, 1 invalid or
    /// not affirming, 2 usage or I/O error.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The EAR: a compact JWS (header.payload.signature), surrounding whitespace ignored.
    #[arg(long, value_name = "FILE")]
    ear: PathBuf,
    /// The verifier's public keys (JWKS JSON).
    #[arg(long, value_name = "FILE")]
    jwks: PathBuf,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Check freshness as of this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = super::parse_rfc3339)]
    now: Option<i64>,
}

/// The `--json` result: `valid`, `affirming`, `status`, `reason` are the contract; `ear` is the claim
/// set when the signature verified.
#[derive(Serialize)]
struct Outcome<'a> {
    valid: bool,
    affirming: bool,
    /// Overall `ear_status`, when valid.
    status: Option<&'a str>,
    /// Why the EAR is invalid or not affirming, else null.
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ear: Option<&'a Ear>,
}

/// Runs `twi ear …` and returns its exit code.
pub(crate) fn run(args: EarArgs) -> ExitCode {
    match args.command {
        EarCommand::Verify(v) => verify(&v),
    }
}

fn verify(args: &VerifyArgs) -> ExitCode {
    let inputs = read_limited(&args.ear, MAX_JWS_LEN as u64).and_then(|jws| {
        let jwks = read_limited(&args.jwks, MAX_JWKS_FILE)?;
        Ok((jws, jwks))
    });
    let (jws, jwks) = match inputs {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let jwks = match Jwks::from_json(&jwks) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {}: {e}", args.jwks.display());
            return ExitCode::from(2);
        }
    };
    let Ok(jws) = String::from_utf8(jws) else {
        return report(
            args,
            Err(format!("{} is not UTF-8 text", args.ear.display())),
        );
    };
    let now = args.now.unwrap_or_else(super::unix_now);
    report(
        args,
        ear::verify(&jws, &jwks, now).map_err(|e| e.to_string()),
    )
}

fn report(args: &VerifyArgs, result: Result<Ear, String>) -> ExitCode {
    let (outcome, code) = match &result {
        Ok(e) => {
            let affirming = e.is_affirming();
            let reason = (!affirming).then(|| not_affirming_reason(e));
            let outcome = Outcome {
                valid: true,
                affirming,
                status: Some(e.status.as_str()),
                reason,
                ear: Some(e),
            };
            (outcome, if affirming { 0 } else { 1 })
        }
        Err(reason) => (
            Outcome {
                valid: false,
                affirming: false,
                status: None,
                reason: Some(reason.clone()),
                ear: None,
            },
            1,
        ),
    };
    if args.json {
        match serde_json::to_string_pretty(&outcome) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: encoding the result: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print_text(&outcome);
    }
    ExitCode::from(code)
}

/// Names every submod that is not affirming, with its reason claim when it has one.
fn not_affirming_reason(e: &Ear) -> String {
    let parts: Vec<String> = e
        .submods
        .iter()
        .filter(|(_, a)| a.status != ear::Status::Affirming)
        .map(|(name, a)| {
            let mut s = format!("{name} is {}", a.status);
            if let Some(r) = &a.reason {
                s.push_str(&format!(" (reason {r})"));
            }
            if a.simulated == Some(true) {
                s.push_str(" (simulated TEE)");
            }
            s
        })
        .collect();
    if parts.is_empty() {
        format!("ear_status is {}", e.status)
    } else {
        format!("ear_status is {}: {}", e.status, parts.join("; "))
    }
}

fn print_text(o: &Outcome<'_>) {
    match (o.valid, o.ear) {
        (true, Some(e)) => {
            let verdict = if o.affirming {
                "AFFIRMING"
            } else {
                "NOT AFFIRMING"
            };
            println!("EAR valid, {verdict}: ear_status {}", e.status);
            if let Some(agent) = &e.agent_id {
                println!("  agent:    {agent}");
            }
            println!(
                "  verifier: {} ({})",
                e.verifier_id.build, e.verifier_id.developer
            );
            println!(
                "  issued:   {}, fresh until {}",
                super::fmt_unix(e.iat),
                super::fmt_unix(e.exp)
            );
            for (name, a) in &e.submods {
                let v = &a.trust_vector;
                println!(
                    "  {name}: {} (hardware {}, instance-identity {}, executables {}, configuration {}){}",
                    a.status,
                    v.hardware,
                    v.instance_identity,
                    v.executables,
                    v.configuration,
                    if a.simulated == Some(true) { " SIMULATED" } else { "" }
                );
                for p in &a.policy_ids {
                    println!("    policy: {p}");
                }
            }
            if let Some(r) = &o.reason {
                println!("reason: {r}");
            }
        }
        _ => println!(
            "EAR INVALID: {}",
            o.reason.as_deref().unwrap_or("unknown reason")
        ),
    }
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

//! `twi provenance inspect`: what the `twi` workload attestor would emit for a process or a file, and for
//! provenance, why each attestation in the store was used or not.
//!
//! It runs the plugin crate's own [`Attestor`] with the plugin's own configuration parser, so what it
//! prints is what spire-agent would get (selector values without the plugin-name type SPIRE adds).
//!
//! Exit codes: 0 the attestation ran (whether or not provenance was found); 1 it failed (process gone,
//! file unreadable, executable too large); 2 usage, configuration or I/O error on the config file.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;
use twi_workload_attestor::attestor::Explanation;
use twi_workload_attestor::config;
use twi_workload_attestor::provenance::{Examined, NoProvenance, Verdict};
use twi_workload_attestor::Attestor;

/// Configuration files larger than this are refused unread (a `plugin_data` body is a few hundred bytes).
const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// `twi provenance …`.
#[derive(clap::Args)]
pub(crate) struct ProvenanceArgs {
    #[command(subcommand)]
    command: ProvenanceCommand,
}

#[derive(clap::Subcommand)]
enum ProvenanceCommand {
    /// Show the selectors the `twi` workload attestor would emit for a PID or a file, and why each
    /// attestation in the provenance store was used or not; exit 0 attested, 1 attestation failed,
    /// 2 usage or configuration error.
    Inspect(InspectArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pid", "file"])))]
struct InspectArgs {
    /// A running process, attested as spire-agent would (reading another user's process needs root).
    #[arg(long, value_name = "N")]
    pid: Option<i32>,
    /// An executable file: its path, digest and provenance selectors (no process selectors).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// The plugin's `plugin_data` as HCL (the body, as in `plugin_data_file`); default: empty.
    #[arg(long, value_name = "HCL-FILE")]
    config: Option<PathBuf>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// The `--json` output.
#[derive(Serialize)]
struct Report<'a> {
    /// `{"pid": N}` or `{"file": PATH}`.
    subject: Subject<'a>,
    /// Every selector value the attestor would emit, in its order.
    selectors: &'a [String],
    /// The executable's SHA-256, when computed.
    sha256: Option<String>,
    /// The provenance source and its findings; `findings` is null when it was not asked (no digest).
    provenance: ProvenanceReport<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Subject<'a> {
    Pid(i32),
    File(&'a Path),
}

#[derive(Serialize)]
struct ProvenanceReport<'a> {
    /// Whether the configuration has a `provenance` block.
    configured: bool,
    /// The source's description.
    source: String,
    /// Selector values the source gave (before measured kinds were dropped).
    selectors: Option<&'a [String]>,
    /// Each attestation looked at, with its verdict.
    attestations: Option<&'a [Examined]>,
    /// Source selectors dropped because they claimed a measured kind.
    dropped: &'a [String],
}

/// Runs `twi provenance …` and returns its exit code.
pub(crate) fn run(args: &ProvenanceArgs) -> ExitCode {
    match &args.command {
        ProvenanceCommand::Inspect(a) => inspect(a),
    }
}

fn inspect(args: &InspectArgs) -> ExitCode {
    let attestor = match load_attestor(args.config.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (subject, result) = match (&args.pid, &args.file) {
        (Some(pid), _) => (Subject::Pid(*pid), attestor.explain(*pid)),
        (None, Some(file)) => (Subject::File(file), attestor.explain_file(file)),
        // clap's group makes one of them required.
        (None, None) => return ExitCode::from(2),
    };
    let explanation = match result {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: attestation failed ({:?}): {e}", e.code());
            return ExitCode::FAILURE;
        }
    };
    let configured = attestor.settings().provenance.is_some();
    let report = Report {
        subject,
        selectors: &explanation.selectors,
        sha256: explanation.sha256.map(hex::encode),
        provenance: ProvenanceReport {
            configured,
            source: attestor.provenance().describe(),
            selectors: explanation
                .provenance
                .as_ref()
                .map(|f| f.selectors.as_slice()),
            attestations: explanation
                .provenance
                .as_ref()
                .map(|f| f.examined.as_slice()),
            dropped: &explanation.dropped,
        },
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print_text(&report, &explanation);
    }
    ExitCode::SUCCESS
}

/// The attestor for `config` (the plugin's HCL), exactly as the plugin's Configure builds it.
fn load_attestor(config: Option<&Path>) -> Result<Attestor, String> {
    let hcl = match config {
        Some(p) => read_limited(p, MAX_CONFIG_FILE)?,
        None => String::new(),
    };
    let settings = config::build(&hcl).map_err(|e| format!("configuration: {e}"))?;
    Attestor::configured(settings, Arc::new(NoProvenance))
        .map_err(|e| format!("configuration: {e}"))
}

fn read_limited(path: &Path, max: u64) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    f.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > max {
        return Err(format!("{}: over {max} bytes", path.display()));
    }
    Ok(text)
}

fn print_text(report: &Report<'_>, explanation: &Explanation) {
    match &report.subject {
        Subject::Pid(pid) => println!("process {pid}"),
        Subject::File(f) => println!("file {}", f.display()),
    }
    if let Some(d) = &report.sha256 {
        println!("sha256 {d}");
    }
    println!(
        "selectors ({}; SPIRE shows each as <plugin name>:<value>):",
        report.selectors.len()
    );
    for s in report.selectors {
        println!("  {s}");
    }
    let p = &report.provenance;
    if !p.configured {
        println!("provenance: not configured (no `provenance` block in the configuration)");
        return;
    }
    println!("provenance: {}", p.source);
    let Some(findings) = &explanation.provenance else {
        println!("  not looked up: no executable digest (discover_digest = false)");
        return;
    };
    if findings.examined.is_empty() {
        println!(
            "  no attestations for sha256:{}",
            report.sha256.as_deref().unwrap_or("?")
        );
    }
    for e in &findings.examined {
        print_examined(e);
    }
    for d in p.dropped {
        println!("  dropped {d}: a provenance source may not claim a measured selector kind");
    }
}

fn print_examined(e: &Examined) {
    match &e.verdict {
        Verdict::Used {
            signers,
            predicate_type,
            subject_name,
            selectors,
            notes,
            sbom,
        } => {
            println!("  used      {}", e.origin);
            println!(
                "            {predicate_type}, subject {}, signed by {}",
                subject_name.as_deref().unwrap_or("(unnamed)"),
                signers.join(", ")
            );
            if let Some(s) = sbom {
                let count = s
                    .components
                    .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
                println!(
                    "            {} SBOM, {count} top-level components",
                    s.format.as_str()
                );
            }
            for s in selectors {
                println!("            -> {s}");
            }
            for n in notes {
                println!("            note: {n}");
            }
        }
        Verdict::Rejected { reason } => println!("  rejected  {}: {reason}", e.origin),
        Verdict::Ignored { reason } => println!("  ignored   {}: {reason}", e.origin),
        _ => println!("  {}: (unknown verdict)", e.origin),
    }
}

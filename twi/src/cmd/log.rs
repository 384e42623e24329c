//! `twi log serve` and `twi log verify`: the credential-provenance transparency log for auditors and
//! monitors (issue #5 item 2).
//!
//! - `serve` publishes a log directory (the composer's `log_dir`), or a log in PostgreSQL (the HA
//!   composers' `log_database`, `--database` with `--origin`), as C2SP tlog-tiles over HTTP, read only,
//!   beside the composers that write it: `/checkpoint`, `/tile/<L>/<N>[.p/<W>]`,
//!   `/tile/entries/<N>[.p/<W>]`.
//! - `verify` is what a monitor runs periodically: fetch the checkpoint, check its signature with the
//!   log's public key, check that it extends the last checkpoint this monitor trusted (RFC 6962
//!   consistency proof computed from the served, hash-checked tiles), optionally re-hash every entry into
//!   the root, and remember the new checkpoint. A log that forked or rewrote history fails here.
//!
//! Exit codes of `verify`: 0 consistent; 1 the log is not (bad signature, fork, rewritten entries);
//! 2 usage or I/O error (unreachable server, unreadable file).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use std::sync::Arc;

use twi_credential_composer::tlog::{
    HttpFetcher, LogReader, LogVerifier, PgLogReader, TileSource, TiledLog, TlogError,
};

/// Checkpoint files larger than this are refused unread (a signed note is well under 1 KiB).
const MAX_CHECKPOINT_FILE: u64 = 64 * 1024;

/// `twi log …`.
#[derive(clap::Args)]
pub(crate) struct LogArgs {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(clap::Subcommand)]
enum LogCommand {
    /// Serve a log directory, or a log in PostgreSQL, as tlog-tiles over HTTP (read only; runs until
    /// interrupted).
    Serve(ServeArgs),
    /// Check the log's checkpoint signature and that it extends an earlier checkpoint; exit 0
    /// consistent, 1 not consistent, 2 usage or I/O error.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The log directory (the composer's `log_dir`).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "database",
        conflicts_with = "database"
    )]
    dir: Option<PathBuf>,
    /// The PostgreSQL database of an HA log (the composers' `log_database`: a `postgres://` URL or a
    /// libpq conninfo); needs --origin.
    #[arg(long, value_name = "CONNINFO", requires = "origin")]
    database: Option<String>,
    /// The origin of the log to serve from --database (the composers' `log_origin`).
    #[arg(long, value_name = "ORIGIN", requires = "database")]
    origin: Option<String>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The log's tlog-tiles URL prefix, e.g. http://127.0.0.1:8088/.
    #[arg(long, value_name = "URL")]
    url: String,
    /// The log's public key: a file holding the signed-note verifier key (`<origin>+<id>+<key>`), as the
    /// composer writes it to `log_vkey_path`.
    #[arg(long, value_name = "FILE")]
    log_key: PathBuf,
    /// A checkpoint trusted earlier (this monitor's state). The new one must extend it.
    #[arg(long, value_name = "FILE")]
    old_checkpoint: Option<PathBuf>,
    /// Where to save the new checkpoint once verified (may be the same file as --old-checkpoint).
    #[arg(long, value_name = "FILE")]
    save_checkpoint: Option<PathBuf>,
    /// Also fetch every entry bundle and re-hash all entries into the checkpoint's root.
    #[arg(long)]
    entries: bool,
    /// HTTP timeout per request, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// The `--json` result of `verify`.
#[derive(Serialize)]
struct Outcome {
    consistent: bool,
    origin: Option<String>,
    size: Option<u64>,
    root: Option<String>,
    old_size: Option<u64>,
    entries_checked: Option<u64>,
    reason: Option<String>,
}

/// Runs `twi log …` and returns its exit code.
pub(crate) fn run(args: LogArgs) -> ExitCode {
    match args.command {
        LogCommand::Serve(s) => serve(&s),
        LogCommand::Verify(v) => verify(&v),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    // Opened before the runtime starts: the PostgreSQL reader's blocking client must not be made
    // on a runtime thread.
    let (source, what): (Arc<dyn TileSource>, String) = match (&args.dir, &args.database) {
        (Some(dir), _) => match LogReader::open(dir) {
            Ok(r) => (Arc::new(r), format!("the log in {}", dir.display())),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(database)) => {
            let origin = args.origin.as_deref().unwrap_or_default();
            match PgLogReader::open(database, origin) {
                Ok(r) => (Arc::new(r), format!("the log {origin} from PostgreSQL")),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        (None, None) => {
            eprintln!("error: give --dir DIR or --database CONNINFO --origin ORIGIN");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "serving {what} at http://{}/ (checkpoint, tile/…); Ctrl-C stops",
        args.listen
    );
    let result = runtime.block_on(twi_credential_composer::tlog::serve_source(
        source,
        args.listen,
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Why `verify` stopped: the log is bad (exit 1) or we could not look (exit 2).
enum Failure {
    Inconsistent(String),
    Input(String),
}

fn verify(args: &VerifyArgs) -> ExitCode {
    let mut outcome = Outcome {
        consistent: false,
        origin: None,
        size: None,
        root: None,
        old_size: None,
        entries_checked: None,
        reason: None,
    };
    let result = check(args, &mut outcome);
    let code = match &result {
        Ok(()) => {
            outcome.consistent = true;
            ExitCode::SUCCESS
        }
        Err(Failure::Inconsistent(r)) => {
            outcome.reason = Some(r.clone());
            ExitCode::from(1)
        }
        Err(Failure::Input(r)) => {
            eprintln!("error: {r}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&outcome) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else if let Some(reason) = &outcome.reason {
        println!("NOT CONSISTENT: {reason}");
    } else {
        println!(
            "ok: {} size {} root {}{}{}",
            outcome.origin.as_deref().unwrap_or("?"),
            outcome.size.unwrap_or(0),
            outcome.root.as_deref().unwrap_or("?"),
            outcome
                .old_size
                .map(|s| format!(", extends the checkpoint of size {s}"))
                .unwrap_or_default(),
            outcome
                .entries_checked
                .map(|n| format!(", {n} entries re-hashed into the root"))
                .unwrap_or_default(),
        );
    }
    code
}

/// Network and file trouble is an input error; anything the log itself got wrong is inconsistency.
fn classify(e: TlogError) -> Failure {
    match e {
        TlogError::Fetch { .. } | TlogError::Io { .. } => Failure::Input(e.to_string()),
        other => Failure::Inconsistent(other.to_string()),
    }
}

fn check(args: &VerifyArgs, outcome: &mut Outcome) -> Result<(), Failure> {
    let vkey = read_limited(&args.log_key, MAX_CHECKPOINT_FILE).map_err(Failure::Input)?;
    let verifier = LogVerifier::new(String::from_utf8_lossy(&vkey).trim())
        .map_err(|e| Failure::Input(format!("{}: {e}", args.log_key.display())))?;
    let log = TiledLog::new(
        HttpFetcher::new(&args.url, Duration::from_secs(args.timeout.max(1))),
        verifier.clone(),
    );
    let now = log.checkpoint().map_err(classify)?;
    outcome.origin = Some(now.origin().to_owned());
    outcome.size = Some(now.size());
    outcome.root = Some(base64_of(&now.root().0));
    if let Some(old_file) = &args.old_checkpoint {
        let old_bytes = read_limited(old_file, MAX_CHECKPOINT_FILE).map_err(Failure::Input)?;
        let old = verifier
            .verify_checkpoint(&old_bytes)
            .map_err(|e| Failure::Input(format!("{}: {e}", old_file.display())))?;
        outcome.old_size = Some(old.size());
        log.verify_consistency(&old, &now).map_err(classify)?;
    }
    if args.entries {
        for index in 0..now.size() {
            let entry = log.entry(&now, index).map_err(classify)?;
            let proof = log.inclusion_proof(&now, index).map_err(classify)?;
            verifier
                .verify_inclusion(&entry, &proof)
                .map_err(|e| Failure::Inconsistent(format!("entry {index}: {e}")))?;
        }
        outcome.entries_checked = Some(now.size());
    }
    if let Some(save) = &args.save_checkpoint {
        write_atomically(save, now.checkpoint().as_bytes()).map_err(Failure::Input)?;
    }
    Ok(())
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > limit {
        return Err(format!(
            "{}: {} bytes, more than the {limit} accepted",
            path.display(),
            meta.len()
        ));
    }
    fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes through a temp file and a rename, so a crash never leaves a half checkpoint as the state.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::write(tmp.path(), bytes).map_err(|e| format!("{}: {e}", tmp.path().display()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| format!("{}: {e}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| format!("{}: {}", path.display(), e.error))?;
    Ok(())
}

//! `twi sim tdx-init` and `twi sim tdx-quote`: the simulated Intel TDX platform of `twi_core::sim::tdx`
//! (root, PCK chain, collateral in Intel's formats), for trying the TDX attestor and `twi evidence
//! verify --collateral` on a machine without TDX hardware.

use std::fs;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use twi_core::sim::tdx::{self, SimTdxDevice, TdParams, TdxInitOptions, TDX_WARNING};
use twi_core::tdx::TcbStatus;

use super::{parse_hex_padded64, parse_rfc3339, unix_now};

#[derive(clap::Args)]
pub(crate) struct TdxInitArgs {
    /// Folder for the root set and its collateral (created, mode 0700).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Replace an existing root set in DIR.
    #[arg(long)]
    force: bool,
    /// The TCB status the collateral gives this platform, in Intel's spelling (`UpToDate`,
    /// `OutOfDate`, `SWHardeningNeeded`, …): other values than `UpToDate` make negative tests.
    #[arg(long, value_name = "STATUS", default_value = "UpToDate", value_parser = parse_tcb_status)]
    tcb_status: TcbStatus,
    /// List the PCK certificate in the PCK CRL (a revoked platform).
    #[arg(long)]
    revoke_pck: bool,
    /// Collateral issue date (default: an hour ago).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    collateral_issue_date: Option<i64>,
    /// Collateral nextUpdate (default: 30 days after the issue date; a past time makes it stale).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    collateral_next_update: Option<i64>,
}

#[derive(clap::Args)]
pub(crate) struct TdxQuoteArgs {
    /// A root set made by `twi sim tdx-init`.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// REPORTDATA: 1 to 64 bytes of hex, zero-padded to 64.
    #[arg(long, value_name = "HEX", value_parser = parse_hex_padded64)]
    report_data: [u8; 64],
    /// Where to write the v4 quote.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Make a debug TD (TD_ATTRIBUTES.DEBUG set): every default policy refuses it.
    #[arg(long)]
    debug: bool,
}

fn parse_tcb_status(s: &str) -> Result<TcbStatus, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("{s:?} is not an Intel TCB status (UpToDate, OutOfDate, …)"))
}

fn unsigned(flag: &str, secs: i64) -> Result<u64> {
    u64::try_from(secs).map_err(|_| anyhow!("{flag} is before 1970"))
}

/// HCL/JSON string literal (JSON escaping is valid HCL for a path).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

pub(crate) fn init(args: &TdxInitArgs) -> Result<()> {
    let mut opts = TdxInitOptions::new(unsigned("now", unix_now())?);
    opts.tcb_status = args.tcb_status;
    opts.revoke_pck = args.revoke_pck;
    opts.force = args.force;
    opts.collateral_issue_date = args
        .collateral_issue_date
        .map(|t| unsigned("--collateral-issue-date", t))
        .transpose()?;
    opts.collateral_next_update = args
        .collateral_next_update
        .map(|t| unsigned("--collateral-next-update", t))
        .transpose()?;
    let layout = tdx::init(&args.dir, &opts).with_context(|| {
        format!(
            "creating the simulated TDX root set in {}",
            args.dir.display()
        )
    })?;
    let dir = layout
        .dir
        .canonicalize()
        .unwrap_or_else(|_| layout.dir.clone());
    let collateral = dir.join(
        layout
            .collateral_dir
            .file_name()
            .unwrap_or_else(|| "collateral".as_ref()),
    );
    let root = dir.join(layout.root_der.file_name().unwrap_or_default());

    println!(
        "Created a simulated Intel TDX root set in {}",
        dir.display()
    );
    println!(
        "  TCB status {}, PCK {}",
        args.tcb_status.as_str(),
        if args.revoke_pck {
            "REVOKED"
        } else {
            "not revoked"
        }
    );
    println!(
        "  simulated root (to trust, as simulated)  {}",
        root.display()
    );
    println!(
        "  collateral (Intel PCS formats)            {}",
        collateral.display()
    );
    println!(
        "  PRIVATE keys (mode 0600)                  {}/*.key.pem",
        dir.display()
    );
    println!();
    println!("!!! WARNING: {TDX_WARNING}");
    println!();
    println!("SPIRE server, NodeAttestor \"twi\" plugin_data:");
    println!(
        "    tdx {{\n      collateral_dir = {}\n      simulated_roots = [{}]\n    }}",
        quoted(&collateral.to_string_lossy()),
        quoted(&root.to_string_lossy())
    );
    println!("SPIRE agent, NodeAttestor \"twi\" plugin_data:");
    println!(
        "    tdx {{\n      source = \"simulated\"\n    }}\n    simulated_tdx {{\n      dir = {}\n    }}",
        quoted(&dir.to_string_lossy())
    );
    println!(
        "Try it: twi sim tdx-quote --dir {} --report-data 00 --out quote.bin && \\\n  twi evidence verify --evidence quote.bin --collateral {} --simulated-root {}",
        dir.display(),
        collateral.display(),
        root.display()
    );
    Ok(())
}

pub(crate) fn quote(args: &TdxQuoteArgs) -> Result<()> {
    let device = SimTdxDevice::open(&args.dir).with_context(|| {
        format!(
            "{} holds no simulated TDX root set; run `twi sim tdx-init --dir {}` first",
            args.dir.display(),
            args.dir.display()
        )
    })?;
    let mut td = TdParams::default();
    if args.debug {
        td.td_attributes |= TdParams::DEBUG;
    }
    let quote = device
        .quote(&args.report_data, &td)
        .context("signing the simulated quote")?;
    if args.out.exists() && args.out.is_dir() {
        bail!("--out {} is a directory", args.out.display());
    }
    fs::write(&args.out, &quote).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote a {}-byte SIMULATED TDX quote (v4) to {}",
        quote.len(),
        args.out.display()
    );
    Ok(())
}

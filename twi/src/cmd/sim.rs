//! `twi sim init` and `twi sim report`: the simulated SEV-SNP device of `twi_core::sim`, for trying the
//! attestor and `twi evidence verify` on a machine without SNP hardware.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use twi_core::sim::{self, GuestParams, InitOptions, SimSnpDevice, WARNING};
use twi_core::snp::{Product, TcbParts};

use super::{parse_hex_padded64, parse_rfc3339, unix_now};

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProductArg {
    Milan,
    Genoa,
    Turin,
}

impl From<ProductArg> for Product {
    fn from(p: ProductArg) -> Product {
        match p {
            ProductArg::Milan => Product::Milan,
            ProductArg::Genoa => Product::Genoa,
            ProductArg::Turin => Product::Turin,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct InitArgs {
    /// Folder for the root set (created, mode 0700).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Product line to imitate.
    #[arg(long, value_enum, default_value = "milan")]
    product: ProductArg,
    /// Replace an existing root set in DIR.
    #[arg(long)]
    force: bool,
    /// VCEK validity start (default: an hour ago).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    vcek_not_before: Option<i64>,
    /// VCEK validity end (default: seven years from now; a past time makes an expired VCEK).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    vcek_not_after: Option<i64>,
    /// Platform TCB as `bl,tee,snp,ucode` (Turin: `fmc,bl,tee,snp,ucode`); default: a current one.
    #[arg(long, value_name = "LIST", value_parser = parse_tcb)]
    tcb: Option<TcbParts>,
    /// CHIP_ID, 64 bytes of hex (Turin: 8, zero-padded); default: random.
    #[arg(long, value_name = "HEX", value_parser = parse_hex_padded64)]
    chip_id: Option<[u8; 64]>,
    /// RSA size of ARK and ASK. 4096 as AMD; 2048 only to make tests faster.
    #[arg(long, default_value_t = 4096, hide = true)]
    rsa_bits: usize,
}

#[derive(clap::Args)]
pub(crate) struct ReportArgs {
    /// A root set made by `twi sim init`.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// REPORT_DATA: 1 to 64 bytes of hex, zero-padded to 64.
    #[arg(long, value_name = "HEX", value_parser = parse_hex_padded64)]
    report_data: [u8; 64],
    /// Where to write the 1184-byte report.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also write the certificate table (VCEK, ASK, ARK) of the extended report here.
    #[arg(long, value_name = "FILE")]
    cert_table_out: Option<PathBuf>,
    /// Guest policy, hex (`0x30000`: SMT allowed, no debug) or decimal; bit 17 must be set.
    #[arg(long, value_name = "0x..", value_parser = parse_u64)]
    policy: Option<u64>,
    /// VMPL of the requesting guest code, 0..=3.
    #[arg(long, default_value_t = 0)]
    vmpl: u32,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s:?} is not a number (0x.. for hex): {e}"))
}

fn parse_tcb(s: &str) -> Result<TcbParts, String> {
    let parts: Vec<u8> = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<u8>()
                .map_err(|e| format!("{p:?} in {s:?}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [bl, tee, snp, ucode] => Ok(TcbParts {
            fmc: None,
            bootloader: *bl,
            tee: *tee,
            snp: *snp,
            microcode: *ucode,
        }),
        [fmc, bl, tee, snp, ucode] => Ok(TcbParts {
            fmc: Some(*fmc),
            bootloader: *bl,
            tee: *tee,
            snp: *snp,
            microcode: *ucode,
        }),
        _ => Err(format!(
            "{s:?}: want bl,tee,snp,ucode (Turin: fmc,bl,tee,snp,ucode)"
        )),
    }
}

fn unsigned(flag: &str, secs: i64) -> Result<u64> {
    u64::try_from(secs).map_err(|_| anyhow!("{flag} is before 1970"))
}

/// HCL/JSON string literal (JSON escaping is valid HCL for a path).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

pub(crate) fn init(args: &InitArgs) -> Result<()> {
    let now = unsigned("now", unix_now())?;
    let mut opts = InitOptions::new(now);
    opts.product = args.product.into();
    opts.tcb = args.tcb;
    opts.chip_id = args.chip_id;
    opts.vcek_not_before = args
        .vcek_not_before
        .map(|t| unsigned("--vcek-not-before", t))
        .transpose()?;
    opts.vcek_not_after = args
        .vcek_not_after
        .map(|t| unsigned("--vcek-not-after", t))
        .transpose()?;
    opts.rsa_bits = args.rsa_bits;
    opts.force = args.force;
    eprintln!(
        "generating RSA-{} ARK and ASK keys (can take a while) ...",
        args.rsa_bits
    );
    let layout = sim::init(&args.dir, &opts)
        .with_context(|| format!("creating the simulated root set in {}", args.dir.display()))?;
    let dir = layout
        .dir
        .canonicalize()
        .unwrap_or_else(|_| layout.dir.clone());
    let device = SimSnpDevice::open(&dir)
        .with_context(|| format!("opening the new root set in {}", dir.display()))?;

    println!("Created a simulated SEV-SNP root set in {}", dir.display());
    println!(
        "  product {}, TCB {}, CHIP_ID {}",
        device.product(),
        device.tcb(),
        hex::encode(device.chip_id())
    );
    for (what, path) in [
        (
            "simulated ARK (the root to trust, as simulated)",
            &layout.ark_pem,
        ),
        ("simulated ASK", &layout.ask_pem),
        ("simulated VCEK", &layout.vcek_der),
        ("simulated VCEK, PEM", &layout.vcek_pem),
        ("PRIVATE keys (mode 0600)", &layout.ark_key),
        ("", &layout.ask_key),
        ("", &layout.vcek_key),
        ("product, TCB, CHIP_ID", &layout.sim_json),
    ] {
        println!("  {:<48} {}", what, path.display());
    }
    println!();
    println!("!!! WARNING: {WARNING}");
    println!();
    let ark = dir.join("ark.pem");
    println!("SPIRE server, NodeAttestor \"twi\" plugin_data (trusts this root as simulated):");
    println!(
        "    snp {{\n      simulated_roots = [{}]\n    }}",
        quoted(&ark.to_string_lossy())
    );
    println!("SPIRE agent, NodeAttestor \"twi\" plugin_data (attests with this simulated device):");
    println!("    snp {{\n      source = \"simulated\"\n    }}\n    simulated {{\n      dir = {}\n    }}", quoted(&dir.to_string_lossy()));
    println!(
        "Try it: twi sim report --dir {} --report-data 00 --out report.bin",
        dir.display()
    );
    Ok(())
}

pub(crate) fn report(args: &ReportArgs) -> Result<()> {
    if !args.dir.join("sim.json").is_file() {
        bail!(
            "{} holds no simulated root set (no sim.json); run `twi sim init --dir {}` first",
            args.dir.display(),
            args.dir.display()
        );
    }
    let device = SimSnpDevice::open(&args.dir)
        .with_context(|| format!("opening the root set in {}", args.dir.display()))?;
    let mut guest = GuestParams {
        vmpl: args.vmpl,
        ..GuestParams::default()
    };
    if let Some(p) = args.policy {
        guest.policy = p;
    }
    let evidence = device
        .report(&args.report_data, &guest)
        .context("making the simulated report")?;
    write(&args.out, &evidence.report)?;
    if let Some(path) = &args.cert_table_out {
        write(path, &evidence.cert_table)?;
    }
    let dir = args.dir.canonicalize().unwrap_or_else(|_| args.dir.clone());
    println!(
        "Wrote a SIMULATED SEV-SNP report ({} bytes, {}) to {}",
        evidence.report.len(),
        device.product(),
        args.out.display()
    );
    if let Some(path) = &args.cert_table_out {
        println!(
            "Wrote its certificate table ({} bytes) to {}",
            evidence.cert_table.len(),
            path.display()
        );
    }
    println!(
        "Verify it: twi evidence verify --evidence {} --cert {} --cert {} --simulated-root {} --expect-report-data {}",
        args.out.display(),
        dir.join("vcek.der").display(),
        dir.join("ask.pem").display(),
        dir.join("ark.pem").display(),
        hex::encode(args.report_data)
    );
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tcb_and_numbers() {
        let t = parse_tcb("3,0,8,115").unwrap();
        assert_eq!((t.fmc, t.bootloader, t.snp, t.microcode), (None, 3, 8, 115));
        assert_eq!(parse_tcb("1, 1,0,3,72").unwrap().fmc, Some(1));
        assert!(parse_tcb("3,0,8").is_err());
        assert!(parse_tcb("3,0,8,300").is_err());
        assert_eq!(parse_u64("0x30000").unwrap(), 0x30000);
        assert_eq!(parse_u64("196608").unwrap(), 0x30000);
        assert!(parse_u64("0xzz").is_err());
    }
}

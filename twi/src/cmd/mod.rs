//! The subcommands of `twi`, one module each, and the argument parsers they share.

pub(crate) mod bench;
pub(crate) mod bench_svid;
pub(crate) mod ear;
pub(crate) mod evidence;
pub(crate) mod log;
pub(crate) mod provenance;
pub(crate) mod sim;
pub(crate) mod sim_tdx;
pub(crate) mod svid;

use std::path::PathBuf;

use anyhow::Result;

/// `twi demo`.
#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Where the demo writes the attested selectors, the SVID and the bundle.
    #[arg(long, value_name = "DIR", default_value = "demo-out")]
    out: PathBuf,
    /// SPIRE 1.15.3 binaries (spire-server, spire-agent) to use instead of building them
    /// (default: $SPIRE_BIN_DIR, else scripts/ensure-spire.sh).
    #[arg(long, value_name = "DIR")]
    spire_bin_dir: Option<PathBuf>,
}

pub(crate) fn demo(args: &DemoArgs) -> Result<()> {
    twi::demo::run(&twi::demo::DemoOptions {
        out: args.out.clone(),
        spire_bin_dir: args.spire_bin_dir.clone(),
    })
}

/// An RFC 3339 instant as Unix seconds (clap value parser: a bad value is a usage error, exit 2).
pub(crate) fn parse_rfc3339(s: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(time::OffsetDateTime::unix_timestamp)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2025-01-16T00:00:00Z: {e}"))
}

/// Exactly 64 bytes of hex (a REPORT_DATA value).
pub(crate) fn parse_hex64(s: &str) -> Result<[u8; 64], String> {
    let bytes = decode_hex(s)?;
    <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "{} bytes of hex, want exactly 64 (128 hex digits)",
            bytes.len()
        )
    })
}

/// 1 to 64 bytes of hex, zero-padded on the right to 64 (a nonce placed at the start of REPORT_DATA,
/// the usual way guests fill it).
pub(crate) fn parse_hex_padded64(s: &str) -> Result<[u8; 64], String> {
    let bytes = decode_hex(s)?;
    if bytes.is_empty() || bytes.len() > 64 {
        return Err(format!("{} bytes of hex, want 1 to 64", bytes.len()));
    }
    let mut out = [0u8; 64];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b;
    }
    Ok(out)
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(s).map_err(|e| format!("not hex: {e}"))
}

/// The current time as Unix seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix seconds as RFC 3339 (the raw number if out of range).
pub(crate) fn fmt_unix(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hex_parsers() {
        assert_eq!(parse_hex64(&"ab".repeat(64)).unwrap(), [0xab; 64]);
        assert!(parse_hex64(&"ab".repeat(63))
            .unwrap_err()
            .contains("63 bytes"));
        assert!(parse_hex64("zz").unwrap_err().contains("not hex"));
        let p = parse_hex_padded64("0x0102").unwrap();
        assert_eq!((p[0], p[1], p[2], p[63]), (1, 2, 0, 0));
        assert!(parse_hex_padded64("").is_err());
        assert!(parse_hex_padded64(&"00".repeat(65)).is_err());
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_rfc3339("2025-01-16T00:00:00Z").unwrap(),
            1_736_985_600
        );
        assert!(parse_rfc3339("2025-01-16").is_err());
        assert_eq!(fmt_unix(1_736_985_600), "2025-01-16T00:00:00Z");
    }
}

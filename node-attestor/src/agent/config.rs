//! The agent plugin's `plugin_data`: HCL → validated [`AgentConfig`].
//!
//! ```hcl
//! snp {
//!   source = "auto"                                  # auto | configfs-tsm | sev-guest | simulated
//!   vmpl = 0                                         # optional
//!   configfs_tsm_path = "/sys/kernel/config/tsm/report"
//!   sev_guest_device = "/dev/sev-guest"
//! }
//! simulated {                                        # required iff source = "simulated"
//!   dir = "/var/lib/twi/sim"
//!   policy = "0x30000"
//!   measurement = "<96 hex>"
//!   host_data = "<64 hex>"
//!   report_version = 5
//!   vmpl = 0
//! }
//! tdx {                                              # Intel TDX
//!   source = "auto"                                  # auto | configfs-tsm | tdx-guest | simulated
//!   configfs_tsm_path = "/sys/kernel/config/tsm/report"
//!   tdx_guest_device = "/dev/tdx_guest"              # legacy ioctls, when configfs-tsm has no TDX
//! }
//! simulated_tdx {                                    # required iff tdx.source = "simulated"
//!   dir = "/var/lib/twi/sim-tdx"
//!   td_attributes = "0x10000000"
//!   xfam = "0x602e7"
//!   mrtd = "<96 hex>"  # also mrconfigid, mrowner, mrownerconfig, rtmr0..rtmr3
//! }
//! tee = "auto"                                       # auto | snp | tdx
//! instance_key_path = "/var/lib/spire/agent/twi-instance-key.pem"   # optional
//! ```
//!
//! Which TEE: `tee` when set; otherwise the one whose block is the only one present (or whose source is
//! `simulated`); otherwise (both blocks or neither) detected at Configure from the hardware interfaces.
//!
//! [`build`] serves both Configure and Validate (as SPIRE's `pluginconf.Build`): it only parses and checks
//! values, touching no device and creating no file. Every error names its key.

use std::path::PathBuf;

use serde::Deserialize;
use twi_core::sim::tdx::TdParams;
use twi_core::sim::{default_measurement, GuestParams};
use twi_core::snp::layout::{self, policy_bits};
use twi_plugin::{from_hcl, ConfigError, CoreConfig};

/// Default configfs-tsm report root of Linux.
pub const DEFAULT_CONFIGFS_TSM_PATH: &str = "/sys/kernel/config/tsm/report";
/// Default sev-guest device node.
pub const DEFAULT_SEV_GUEST_DEVICE: &str = "/dev/sev-guest";
/// Default tdx-guest device node: quotes through the legacy GetQuote ioctl where the kernel has one
/// (current kernels give only a TDREPORT there; their quotes come through configfs-tsm).
pub const DEFAULT_TDX_GUEST_DEVICE: &str = "/dev/tdx_guest";

/// Which TEE the agent is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeeChoice {
    /// Decided from the blocks present, else detected at Configure.
    #[default]
    Auto,
    Snp,
    Tdx,
}

/// Where TDX evidence comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TdxSource {
    /// configfs-tsm with provider `tdx_guest`; else `/dev/tdx_guest` with the legacy GetQuote ioctl;
    /// else an error explaining what is missing.
    #[default]
    Auto,
    ConfigfsTsm,
    /// `/dev/tdx_guest`: TDX_CMD_GET_REPORT0, then the legacy TDX_CMD_GET_QUOTE (kernels without
    /// configfs-tsm TDX quotes). Named like the SEV-SNP `sev-guest` source.
    TdxGuest,
    /// The simulated TDX platform of `twi_core::sim::tdx`. Testing only.
    Simulated,
}

impl TdxSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TdxSource::Auto => "auto",
            TdxSource::ConfigfsTsm => "configfs-tsm",
            TdxSource::TdxGuest => "tdx-guest",
            TdxSource::Simulated => "simulated",
        }
    }
}

/// The `tdx` block, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxAgentConfig {
    pub source: TdxSource,
    pub configfs_tsm_path: PathBuf,
    pub tdx_guest_device: PathBuf,
    /// Present iff `source` is [`TdxSource::Simulated`].
    pub simulated: Option<SimulatedTdxConfig>,
}

/// What the simulated TD looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatedTdxConfig {
    pub dir: PathBuf,
    pub td: TdParams,
}

/// Where evidence comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// configfs-tsm if present with provider `sev_guest`, else `/dev/sev-guest`.
    #[default]
    Auto,
    ConfigfsTsm,
    SevGuest,
    /// The simulated device of `twi sim init`. Testing only.
    Simulated,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Auto => "auto",
            Source::ConfigfsTsm => "configfs-tsm",
            Source::SevGuest => "sev-guest",
            Source::Simulated => "simulated",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HclConfig {
    #[serde(default)]
    snp: Option<HclSnp>,
    #[serde(default)]
    simulated: Option<HclSimulated>,
    #[serde(default)]
    tdx: Option<HclTdx>,
    #[serde(default)]
    simulated_tdx: Option<HclSimulatedTdx>,
    #[serde(default)]
    tee: Option<TeeChoice>,
    #[serde(default)]
    instance_key_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HclTdx {
    #[serde(default)]
    source: TdxSource,
    #[serde(default)]
    configfs_tsm_path: Option<String>,
    #[serde(default)]
    tdx_guest_device: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HclSimulatedTdx {
    dir: String,
    #[serde(default)]
    td_attributes: Option<NumberOrString>,
    #[serde(default)]
    xfam: Option<NumberOrString>,
    #[serde(default)]
    mrtd: Option<String>,
    #[serde(default)]
    mrconfigid: Option<String>,
    #[serde(default)]
    mrowner: Option<String>,
    #[serde(default)]
    mrownerconfig: Option<String>,
    #[serde(default)]
    rtmr0: Option<String>,
    #[serde(default)]
    rtmr1: Option<String>,
    #[serde(default)]
    rtmr2: Option<String>,
    #[serde(default)]
    rtmr3: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HclSnp {
    #[serde(default)]
    source: Source,
    #[serde(default)]
    vmpl: Option<u32>,
    #[serde(default)]
    configfs_tsm_path: Option<String>,
    #[serde(default)]
    sev_guest_device: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HclSimulated {
    dir: String,
    #[serde(default)]
    policy: Option<NumberOrString>,
    #[serde(default)]
    measurement: Option<String>,
    #[serde(default)]
    host_data: Option<String>,
    #[serde(default)]
    report_version: Option<u32>,
    #[serde(default)]
    vmpl: Option<u32>,
}

/// HCL has no hex literals, so the policy is usually written as a string (`"0x30000"`); a plain number
/// is accepted too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    String(String),
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// The TEE to use; `Auto`: detect from the hardware interfaces at Configure (SEV-SNP first).
    pub tee: TeeChoice,
    /// The `tdx` block (defaults when absent).
    pub tdx: TdxAgentConfig,
    /// `snp.source`.
    pub source: Source,
    /// `snp.vmpl`: hardware sources only (configfs `privlevel`, ioctl `vmpl`).
    pub vmpl: Option<u32>,
    pub configfs_tsm_path: PathBuf,
    pub sev_guest_device: PathBuf,
    /// Present iff `source` is [`Source::Simulated`].
    pub simulated: Option<SimulatedConfig>,
    /// `None`: a key generated in memory, living as long as the plugin process.
    pub instance_key_path: Option<PathBuf>,
}

/// What the simulated guest looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatedConfig {
    pub dir: PathBuf,
    pub guest: GuestParams,
}

fn invalid(key: &str, detail: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        detail: detail.into(),
    }
}

fn non_empty_path(key: &str, value: Option<String>, default: &str) -> Result<PathBuf, ConfigError> {
    match value {
        None => Ok(PathBuf::from(default)),
        Some(v) if v.trim().is_empty() => Err(invalid(key, "must not be empty")),
        Some(v) => Ok(PathBuf::from(v)),
    }
}

fn check_vmpl(key: &str, vmpl: u32) -> Result<u32, ConfigError> {
    if vmpl <= 3 {
        Ok(vmpl)
    } else {
        Err(invalid(key, format!("{vmpl} is not a VMPL (0..=3)")))
    }
}

fn hex_array<const N: usize>(key: &str, text: &str) -> Result<[u8; N], ConfigError> {
    let bytes = hex::decode(text.trim()).map_err(|e| invalid(key, format!("not hex: {e}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        invalid(
            key,
            format!("{} hex digits, want {} ({N} bytes)", b.len() * 2, N * 2),
        )
    })
}

fn parse_u64(key: &str, value: NumberOrString) -> Result<u64, ConfigError> {
    match value {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            }
            .map_err(|_| invalid(key, format!("`{s}` is not a number (e.g. \"0x10000000\")")))
        }
    }
}

fn build_simulated_tdx(s: HclSimulatedTdx) -> Result<SimulatedTdxConfig, ConfigError> {
    if s.dir.trim().is_empty() {
        return Err(invalid("simulated_tdx.dir", "must not be empty"));
    }
    let mut td = TdParams::default();
    if let Some(v) = s.td_attributes {
        td.td_attributes = parse_u64("simulated_tdx.td_attributes", v)?;
    }
    if let Some(v) = s.xfam {
        td.xfam = parse_u64("simulated_tdx.xfam", v)?;
    }
    let regs = [
        ("simulated_tdx.mrtd", s.mrtd, &mut td.mrtd),
        ("simulated_tdx.mrconfigid", s.mrconfigid, &mut td.mrconfigid),
        ("simulated_tdx.mrowner", s.mrowner, &mut td.mrowner),
        (
            "simulated_tdx.mrownerconfig",
            s.mrownerconfig,
            &mut td.mrownerconfig,
        ),
    ];
    for (key, value, slot) in regs {
        if let Some(v) = value {
            *slot = hex_array::<48>(key, &v)?;
        }
    }
    let [r0, r1, r2, r3] = &mut td.rtmr;
    let rtmrs = [
        ("simulated_tdx.rtmr0", s.rtmr0, r0),
        ("simulated_tdx.rtmr1", s.rtmr1, r1),
        ("simulated_tdx.rtmr2", s.rtmr2, r2),
        ("simulated_tdx.rtmr3", s.rtmr3, r3),
    ];
    for (key, value, slot) in rtmrs {
        if let Some(v) = value {
            *slot = hex_array::<48>(key, &v)?;
        }
    }
    Ok(SimulatedTdxConfig {
        dir: PathBuf::from(s.dir),
        td,
    })
}

fn build_tdx(
    t: Option<HclTdx>,
    sim: Option<HclSimulatedTdx>,
) -> Result<TdxAgentConfig, ConfigError> {
    let t = t.unwrap_or_default();
    let simulated = match (t.source, sim) {
        (TdxSource::Simulated, Some(s)) => Some(build_simulated_tdx(s)?),
        (TdxSource::Simulated, None) => {
            return Err(ConfigError::MissingKey {
                key: "simulated_tdx".into(),
            })
        }
        (other, Some(_)) => {
            return Err(invalid(
                "simulated_tdx",
                format!(
                    "a simulated_tdx block is only allowed with tdx {{ source = \"simulated\" }}, source is \"{}\"",
                    other.as_str()
                ),
            ))
        }
        (_, None) => None,
    };
    Ok(TdxAgentConfig {
        source: t.source,
        configfs_tsm_path: non_empty_path(
            "tdx.configfs_tsm_path",
            t.configfs_tsm_path,
            DEFAULT_CONFIGFS_TSM_PATH,
        )?,
        tdx_guest_device: non_empty_path(
            "tdx.tdx_guest_device",
            t.tdx_guest_device,
            DEFAULT_TDX_GUEST_DEVICE,
        )?,
        simulated,
    })
}

fn parse_policy(value: NumberOrString) -> Result<u64, ConfigError> {
    const KEY: &str = "simulated.policy";
    let policy = match value {
        NumberOrString::Number(n) => n,
        NumberOrString::String(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.map_err(|_| invalid(KEY, format!("`{s}` is not a number (e.g. \"0x30000\")")))?
        }
    };
    if policy & policy_bits::RESERVED_MUST_BE_ONE == 0 {
        return Err(invalid(
            KEY,
            format!("{policy:#x} lacks bit 17, which the firmware requires of every guest policy"),
        ));
    }
    Ok(policy)
}

fn build_simulated(s: HclSimulated) -> Result<SimulatedConfig, ConfigError> {
    if s.dir.trim().is_empty() {
        return Err(invalid("simulated.dir", "must not be empty"));
    }
    let mut guest = GuestParams::default();
    if let Some(p) = s.policy {
        guest.policy = parse_policy(p)?;
    }
    guest.measurement = match s.measurement {
        Some(m) => hex_array::<{ layout::MEASUREMENT_LEN }>("simulated.measurement", &m)?,
        None => default_measurement(),
    };
    if let Some(h) = s.host_data {
        guest.host_data = hex_array::<{ layout::HOST_DATA_LEN }>("simulated.host_data", &h)?;
    }
    if let Some(v) = s.report_version {
        if !matches!(v, 2 | 3 | 5) {
            return Err(invalid(
                "simulated.report_version",
                format!("{v}: the simulated device writes versions 2, 3 or 5"),
            ));
        }
        guest.version = v;
    }
    if let Some(v) = s.vmpl {
        guest.vmpl = check_vmpl("simulated.vmpl", v)?;
    }
    Ok(SimulatedConfig {
        dir: PathBuf::from(s.dir),
        guest,
    })
}

/// Parses and checks `plugin_data`; the agent ignores the trust domain (the server builds agent IDs).
///
/// # Errors
///
/// [`ConfigError`] naming the key: unknown keys, bad values, a `simulated` block without
/// `source = "simulated"` or the reverse.
pub fn build(_core: &CoreConfig, hcl: &str) -> Result<AgentConfig, ConfigError> {
    let raw: HclConfig = from_hcl(hcl)?;
    let has_snp = raw.snp.is_some();
    let has_tdx = raw.tdx.is_some();
    let tdx = build_tdx(raw.tdx, raw.simulated_tdx)?;
    let snp = raw.snp.unwrap_or_default();
    let tee = match raw.tee.unwrap_or_default() {
        TeeChoice::Auto => {
            match (
                snp.source == Source::Simulated,
                tdx.source == TdxSource::Simulated,
            ) {
                (true, true) => {
                    return Err(invalid(
                        "tee",
                        "both snp and tdx are simulated: set tee = \"snp\" or \"tdx\"",
                    ))
                }
                (true, false) => TeeChoice::Snp,
                (false, true) => TeeChoice::Tdx,
                (false, false) => match (has_snp, has_tdx) {
                    (true, false) => TeeChoice::Snp,
                    (false, true) => TeeChoice::Tdx,
                    _ => TeeChoice::Auto,
                },
            }
        }
        explicit => explicit,
    };
    let vmpl = snp.vmpl.map(|v| check_vmpl("snp.vmpl", v)).transpose()?;
    let simulated = match (snp.source, raw.simulated) {
        (Source::Simulated, Some(s)) => {
            if vmpl.is_some() {
                return Err(invalid(
                    "snp.vmpl",
                    "not used with source = \"simulated\"; set simulated.vmpl instead",
                ));
            }
            Some(build_simulated(s)?)
        }
        (Source::Simulated, None) => {
            return Err(ConfigError::MissingKey {
                key: "simulated".into(),
            })
        }
        (other, Some(_)) => {
            return Err(invalid(
                "simulated",
                format!(
                    "a simulated block is only allowed with snp {{ source = \"simulated\" }}, source is \"{}\"",
                    other.as_str()
                ),
            ))
        }
        (_, None) => None,
    };
    let instance_key_path = match raw.instance_key_path {
        None => None,
        Some(p) if p.trim().is_empty() => {
            return Err(invalid("instance_key_path", "must not be empty"))
        }
        Some(p) => Some(PathBuf::from(p)),
    };
    Ok(AgentConfig {
        tee,
        tdx,
        source: snp.source,
        vmpl,
        configfs_tsm_path: non_empty_path(
            "snp.configfs_tsm_path",
            snp.configfs_tsm_path,
            DEFAULT_CONFIGFS_TSM_PATH,
        )?,
        sev_guest_device: non_empty_path(
            "snp.sev_guest_device",
            snp.sev_guest_device,
            DEFAULT_SEV_GUEST_DEVICE,
        )?,
        simulated,
        instance_key_path,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn core() -> CoreConfig {
        CoreConfig::new("example.org")
    }

    fn key_of(err: &ConfigError) -> String {
        match err {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::MissingKey { key }
            | ConfigError::InvalidValue { key, .. } => key.clone(),
            other => panic!("no key in {other:?}"),
        }
    }

    #[test]
    fn empty_config_is_auto_with_defaults() {
        let c = build(&core(), "").unwrap();
        assert_eq!(c.source, Source::Auto);
        assert_eq!(c.vmpl, None);
        assert_eq!(
            c.configfs_tsm_path,
            PathBuf::from(DEFAULT_CONFIGFS_TSM_PATH)
        );
        assert_eq!(c.sev_guest_device, PathBuf::from(DEFAULT_SEV_GUEST_DEVICE));
        assert_eq!(c.simulated, None);
        assert_eq!(c.instance_key_path, None);
    }

    #[test]
    fn hardware_sources() {
        let c = build(
            &core(),
            r#"snp {
                source = "configfs-tsm"
                vmpl = 2
                configfs_tsm_path = "/tmp/tsm"
                sev_guest_device = "/tmp/sev"
              }
              instance_key_path = "/var/lib/twi/key.pem""#,
        )
        .unwrap();
        assert_eq!(c.source, Source::ConfigfsTsm);
        assert_eq!(c.vmpl, Some(2));
        assert_eq!(c.configfs_tsm_path, PathBuf::from("/tmp/tsm"));
        assert_eq!(c.sev_guest_device, PathBuf::from("/tmp/sev"));
        assert_eq!(
            c.instance_key_path,
            Some(PathBuf::from("/var/lib/twi/key.pem"))
        );
        let c = build(&core(), "snp {\n source = \"sev-guest\"\n}").unwrap();
        assert_eq!(c.source, Source::SevGuest);
        let c = build(
            &core(),
            "tdx {\n source = \"tdx-guest\"\n tdx_guest_device = \"/tmp/tdx\"\n}",
        )
        .unwrap();
        assert_eq!(c.tee, TeeChoice::Tdx);
        assert_eq!(c.tdx.source, TdxSource::TdxGuest);
        assert_eq!(c.tdx.source.as_str(), "tdx-guest");
        assert_eq!(c.tdx.tdx_guest_device, PathBuf::from("/tmp/tdx"));
        assert_eq!(c.tdx.simulated, None);
    }

    #[test]
    fn simulated_block_values() {
        let m = "ab".repeat(48);
        let h = "cd".repeat(32);
        let c = build(
            &core(),
            &format!(
                r#"snp {{ source = "simulated" }}
                   simulated {{
                     dir = "/tmp/sim"
                     policy = "0xB0000"
                     measurement = "{m}"
                     host_data = "{h}"
                     report_version = 3
                     vmpl = 1
                   }}"#
            ),
        )
        .unwrap();
        let s = c.simulated.unwrap();
        assert_eq!(s.dir, PathBuf::from("/tmp/sim"));
        assert_eq!(s.guest.policy, 0xB0000);
        assert_ne!(s.guest.policy & policy_bits::DEBUG, 0);
        assert_eq!(s.guest.measurement, [0xab; 48]);
        assert_eq!(s.guest.host_data, [0xcd; 32]);
        assert_eq!(s.guest.version, 3);
        assert_eq!(s.guest.vmpl, 1);

        // Defaults, and a policy given as a number.
        let c = build(
            &core(),
            "snp {\n source = \"simulated\"\n}\nsimulated {\n dir = \"/d\"\n policy = 196608\n}",
        )
        .unwrap();
        let s = c.simulated.unwrap();
        assert_eq!(s.guest.policy, 0x30000);
        assert_eq!(s.guest.measurement, default_measurement());
        assert_eq!(s.guest.version, 5);
        assert_eq!(s.guest.vmpl, 0);
    }

    /// The `plugin_data` bodies of the doc page's samples, with placeholders filled in.
    fn doc_samples() -> Vec<String> {
        let doc = include_str!("../../doc/plugin_agent_nodeattestor_twi.md");
        let mut out = Vec::new();
        let mut rest = doc;
        while let Some(at) = rest.find("plugin_data {") {
            let body = &rest[at + "plugin_data {".len()..];
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in body.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            out.push(body[..end].replace("<96 hex digits>", &"00".repeat(48)));
            rest = &body[end..];
        }
        out
    }

    #[test]
    fn doc_samples_are_valid_and_table_lists_every_key() {
        let samples = doc_samples();
        assert_eq!(
            samples.len(),
            4,
            "hardware, full hardware, simulated, TDX hardware"
        );
        for s in &samples {
            build(&core(), s).unwrap_or_else(|e| panic!("doc sample {s:?}: {e}"));
        }
        let sim = build(&core(), &samples[2]).unwrap();
        assert_eq!(sim.source, Source::Simulated);
        let tdx = build(&core(), &samples[3]).unwrap();
        assert_eq!(tdx.tee, TeeChoice::Tdx);
        assert_eq!(tdx.tdx.source, TdxSource::ConfigfsTsm);
        let doc = include_str!("../../doc/plugin_agent_nodeattestor_twi.md");
        for key in [
            "snp.source",
            "snp.vmpl",
            "snp.configfs_tsm_path",
            "snp.sev_guest_device",
            "simulated",
            "simulated.dir",
            "simulated.policy",
            "simulated.measurement",
            "simulated.host_data",
            "simulated.report_version",
            "simulated.vmpl",
            "tee",
            "tdx.source",
            "tdx.configfs_tsm_path",
            "tdx.tdx_guest_device",
            "simulated_tdx",
            "simulated_tdx.dir",
            "simulated_tdx.td_attributes",
            "simulated_tdx.xfam",
            "simulated_tdx.mrtd",
            "simulated_tdx.mrconfigid",
            "simulated_tdx.mrowner",
            "simulated_tdx.mrownerconfig",
            "simulated_tdx.rtmr0",
            "simulated_tdx.rtmr3",
            "instance_key_path",
        ] {
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "doc table lacks {key}"
            );
        }
        assert!(doc.contains(DEFAULT_CONFIGFS_TSM_PATH));
        assert!(doc.contains(DEFAULT_SEV_GUEST_DEVICE));
    }

    #[test]
    fn tee_choice() {
        let tee = |hcl: &str| build(&core(), hcl).unwrap().tee;
        assert_eq!(tee(""), TeeChoice::Auto, "neither block: detect");
        assert_eq!(tee("snp {\n source = \"auto\"\n}"), TeeChoice::Snp);
        assert_eq!(tee("tdx {\n source = \"auto\"\n}"), TeeChoice::Tdx);
        assert_eq!(
            tee("snp {}\ntdx {}"),
            TeeChoice::Auto,
            "both blocks: detect"
        );
        assert_eq!(tee("snp {}\ntdx {}\ntee = \"tdx\""), TeeChoice::Tdx);
        let c = build(
            &core(),
            &format!(
                "tdx {{\n source = \"simulated\"\n}}\nsnp {{}}\nsimulated_tdx {{\n dir = \"/d\"\n td_attributes = \"0x10000001\"\n mrtd = \"{}\"\n rtmr3 = \"{}\"\n}}",
                "ab".repeat(48),
                "cd".repeat(48)
            ),
        )
        .unwrap();
        assert_eq!(c.tee, TeeChoice::Tdx, "the simulated TEE wins");
        let sim = c.tdx.simulated.unwrap();
        assert_eq!(sim.td.td_attributes, 0x1000_0001);
        assert_eq!(sim.td.mrtd, [0xab; 48]);
        assert_eq!(sim.td.rtmr[3], [0xcd; 48]);
        assert_eq!(sim.td.rtmr[0], TdParams::default().rtmr[0]);
        assert_eq!(
            c.tdx.tdx_guest_device,
            PathBuf::from(DEFAULT_TDX_GUEST_DEVICE)
        );
    }

    #[test]
    fn every_error_names_its_key() {
        let sim = |body: &str| {
            format!("snp {{ source = \"simulated\" }}\nsimulated {{\n dir = \"/d\"\n {body}\n}}")
        };
        let cases: Vec<(String, &str)> = vec![
            ("bogus = 1".into(), "bogus"),
            ("snp {\n sorce = \"auto\"\n}".into(), "snp.sorce"),
            ("snp {\n source = \"tpm\"\n}".into(), "snp.source"),
            ("snp {\n vmpl = 4\n}".into(), "snp.vmpl"),
            ("snp {\n vmpl = \"zero\"\n}".into(), "snp.vmpl"),
            (
                "snp {\n configfs_tsm_path = \"\"\n}".into(),
                "snp.configfs_tsm_path",
            ),
            (
                "snp {\n sev_guest_device = \" \"\n}".into(),
                "snp.sev_guest_device",
            ),
            ("instance_key_path = \"\"".into(), "instance_key_path"),
            ("snp {\n source = \"simulated\"\n}".into(), "simulated"),
            ("simulated {\n dir = \"/d\"\n}".into(), "simulated"),
            (
                "snp {\n source = \"simulated\"\n vmpl = 0\n}\nsimulated {\n dir = \"/d\"\n}"
                    .into(),
                "snp.vmpl",
            ),
            (
                "snp {\n source = \"simulated\"\n}\nsimulated {\n policy = \"0x30000\"\n}".into(),
                "simulated.dir",
            ),
            (sim("policy = \"0x10000\""), "simulated.policy"),
            (sim("policy = \"lots\""), "simulated.policy"),
            (sim("measurement = \"abcd\""), "simulated.measurement"),
            (sim("measurement = \"zz\""), "simulated.measurement"),
            (sim("host_data = \"00\""), "simulated.host_data"),
            (sim("report_version = 4"), "simulated.report_version"),
            (sim("vmpl = 7"), "simulated.vmpl"),
            (sim("extra = 1"), "simulated.extra"),
            ("tee = \"sgx\"".into(), "tee"),
            ("tdx {\n source = \"sev-guest\"\n}".into(), "tdx.source"),
            ("tdx {\n configfs_tsm_path = \"\"\n}".into(), "tdx.configfs_tsm_path"),
            ("tdx {\n tdx_guest_device = \" \"\n}".into(), "tdx.tdx_guest_device"),
            ("tdx {\n source = \"tdx_guest\"\n}".into(), "tdx.source"),
            (
                "tdx {\n source = \"tdx-guest\"\n}\nsimulated_tdx {\n dir = \"/d\"\n}".into(),
                "simulated_tdx",
            ),
            ("tdx {\n source = \"simulated\"\n}".into(), "simulated_tdx"),
            ("simulated_tdx {\n dir = \"/d\"\n}".into(), "simulated_tdx"),
            (
                "tdx {\n source = \"simulated\"\n}\nsimulated_tdx {\n dir = \"/d\"\n mrtd = \"ab\"\n}".into(),
                "simulated_tdx.mrtd",
            ),
            (
                "tdx {\n source = \"simulated\"\n}\nsimulated_tdx {\n dir = \"/d\"\n td_attributes = \"x\"\n}".into(),
                "simulated_tdx.td_attributes",
            ),
            (
                "tdx {\n source = \"simulated\"\n}\nsimulated_tdx {\n dir = \" \"\n}".into(),
                "simulated_tdx.dir",
            ),
            (
                "snp {\n source = \"simulated\"\n}\nsimulated {\n dir = \"/d\"\n}\ntdx {\n source = \"simulated\"\n}\nsimulated_tdx {\n dir = \"/d\"\n}".into(),
                "tee",
            ),
        ];
        for (hcl, key) in cases {
            let err = build(&core(), &hcl).unwrap_err();
            assert_eq!(key_of(&err), key, "for {hcl:?}: {err}");
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}

//! The server plugin's `plugin_data`: a public HCL struct (what operators write) and a private validated
//! configuration (loaded roots, decoded hex, a ready [`Verifier`]), built by one [`build`] that serves
//! both Configure and Validate, as SPIRE's `pluginconf.Build` does.
//!
//! Every problem is reported, each naming its key, so an operator fixes a configuration in one round.
//! Risky switches default off (`allow_debug`, `allow_migrate_ma`) and simulated roots say DANGER.
//!
//! The appraisal policy has one source of truth: a policy document (`policy_file`, re-read when it
//! changes, or an inline `policy { … }` block), or, when neither is set, the policy keys of the `snp`
//! and `tdx` blocks as before. With a document, those keys are refused rather than merged: two places
//! for one rule would leave an operator guessing which one applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use twi_core::policy::{Policy, PolicyDocument, PolicyError, PolicyFile, PolicySource};
use twi_core::snp::{Product, SnpPolicy, TcbParts, TrustAnchors, Verifier};
use twi_plugin::{from_hcl, ConfigError, CoreConfig};

use super::certs::CertSource;
use super::kds::{Kds, DEFAULT_KDS_URL};
use super::verifier::VerifierState;
use crate::wire::{MAX_NONCE_LEN, MIN_NONCE_LEN};

/// Default `plugin_name`: the name of the plugin block in both `server.conf` and `agent.conf`.
pub const DEFAULT_PLUGIN_NAME: &str = "twi";
/// Default `nonce_len` in bytes.
pub const DEFAULT_NONCE_LEN: usize = 32;
/// Default `snp.kds.timeout_seconds`.
pub const DEFAULT_KDS_TIMEOUT_SECONDS: u64 = 10;
/// The id of the policy built from the `snp`/`tdx` policy keys when no policy document is configured:
/// EARs name it (with its digest) by the same rule as a document.
pub const PLUGIN_CONFIG_POLICY_ID: &str = "plugin-config";
/// The version of that policy.
pub const PLUGIN_CONFIG_POLICY_VERSION: &str = "1";

/// Keys of the `snp` block that configure verification (trust anchors, certificate sources); every
/// other key of the block is appraisal policy. The same split as the policy document's.
const SNP_VERIFICATION_KEYS: [&str; 6] = [
    "trusted_roots",
    "disable_amd_roots",
    "simulated_roots",
    "cert_dir",
    "crl_paths",
    "kds",
];
/// Keys of the `tdx` block that configure verification (collateral sources, trust anchors).
const TDX_VERIFICATION_KEYS: [&str; 11] = [
    "collateral_dir",
    "pcs_url",
    "root_ca_crl_url",
    "cache_dir",
    "fetch_timeout_seconds",
    "collateral_refresh_before_seconds",
    "collateral_grace_seconds",
    "collateral_retry_seconds",
    "trusted_roots",
    "disable_intel_roots",
    "simulated_roots",
];

/// `plugin_data` as written in `server.conf`. Unknown keys are errors (a typo must not silently weaken
/// the policy).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Must equal the plugin's HCL block name: it is the `<plugin_name>` segment of agent IDs, which SPIRE
    /// expects to be `spire/agent/<plugin name>/…`. Default `twi`.
    #[serde(default)]
    pub plugin_name: Option<String>,
    /// Whether agents re-attest (fresh evidence) instead of renewing their SVID. Default true.
    #[serde(default)]
    pub can_reattest: Option<bool>,
    /// Bytes of the random nonce, 32..=64. Default 32.
    #[serde(default)]
    pub nonce_len: Option<usize>,
    /// AMD SEV-SNP verification, and appraisal unless a policy document is configured. Absent:
    /// SEV-SNP evidence is verified with AMD's roots (and, without a document, the baseline policy).
    #[serde(default)]
    pub snp: Option<SnpConfig>,
    /// Intel TDX verification, and appraisal unless a policy document is configured. Absent: TDX
    /// evidence is refused ("TDX not enabled"), whatever the policy says.
    #[serde(default)]
    pub tdx: Option<super::tdx::TdxConfig>,
    /// Where signed attestation results (EARs) are stored and the key they are signed with. Absent:
    /// EARs are signed with an ephemeral key, logged by digest, and not stored.
    #[serde(default)]
    pub attestation_results: Option<super::results::AttestationResultsConfig>,
    /// The appraisal policy document (HCL or JSON, `doc/policy.md`), re-read when the file changes so a
    /// policy change takes effect at the next attestation without restarting SPIRE. Excludes `policy`
    /// and the policy keys of `snp`/`tdx`.
    #[serde(default)]
    pub policy_file: Option<PathBuf>,
    /// The appraisal policy document inline; it changes only with a reconfiguration. Excludes
    /// `policy_file` and the policy keys of `snp`/`tdx`.
    #[serde(default)]
    pub policy: Option<PolicyDocument>,
}

/// The `snp { … }` block.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpConfig {
    #[serde(default)]
    pub allow_debug: bool,
    #[serde(default)]
    pub allow_migrate_ma: bool,
    #[serde(default)]
    pub minimum_tcb: Option<MinimumTcb>,
    /// Hex, 48 bytes each.
    #[serde(default)]
    pub allowed_measurements: Vec<String>,
    /// Hex, 32 bytes each.
    #[serde(default)]
    pub allowed_host_data: Vec<String>,
    /// Hex, 48 bytes each.
    #[serde(default)]
    pub allowed_id_key_digests: Vec<String>,
    #[serde(default)]
    pub allowed_vmpls: Vec<u32>,
    #[serde(default)]
    pub minimum_guest_svn: Option<u32>,
    /// Extra (real) ARK certificates to trust, PEM or DER files.
    #[serde(default)]
    pub trusted_roots: Vec<PathBuf>,
    /// Do not trust AMD's built-in ARKs (only `trusted_roots` / `simulated_roots`).
    #[serde(default)]
    pub disable_amd_roots: bool,
    /// DANGER, test only: ARKs of the simulated TEE. Evidence chaining to them is marked simulated.
    #[serde(default)]
    pub simulated_roots: Vec<PathBuf>,
    /// Local certificates used when evidence lacks them: `<product>/{ark,ask,asvk}.pem`,
    /// `<product>/crl.der`, `<product>/vcek/<hwid>-<tcb>.der`.
    #[serde(default)]
    pub cert_dir: Option<PathBuf>,
    /// AMD CRLs (DER) to check chains against.
    #[serde(default)]
    pub crl_paths: Vec<PathBuf>,
    /// Online fetching from AMD's KDS; absent = the server never touches the network.
    #[serde(default)]
    pub kds: Option<KdsConfig>,
}

/// `snp { minimum_tcb { … } }`: component-wise minimum of REPORTED_TCB.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinimumTcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    /// Turin and later.
    #[serde(default)]
    pub fmc: Option<u8>,
}

/// `snp { kds { … } }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdsConfig {
    #[serde(default)]
    pub url: Option<String>,
    /// Where fetched certificates and CRLs are written (same layout as `cert_dir`).
    pub cache_dir: PathBuf,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// The validated configuration an attestation runs with; replaced whole on reconfiguration.
#[derive(Debug)]
pub(crate) struct Configured {
    pub(crate) trust_domain: String,
    pub(crate) plugin_name: String,
    pub(crate) can_reattest: bool,
    pub(crate) nonce_len: usize,
    /// The appraisal policy: taken once per attestation ([`PolicySource::File`] is re-read when the
    /// file changes), and used for the appraisal, the `policy-match` selectors and the EAR alike.
    pub(crate) policy: PolicySource,
    /// Where [`Configured::policy`] comes from, for the logs.
    pub(crate) policy_origin: PolicyOrigin,
    /// SHA-256 (hex) of the SEV-SNP trust anchors (outside the policy digest: they configure
    /// verification), named in EARs beside the policy.
    pub(crate) snp_anchors_digest: String,
    /// Certificates and CRLs beyond the evidence, and the verifier (with its chain cache) built from them.
    pub(crate) certs: CertSource,
    pub(crate) verifier: VerifierState,
    /// Files of the simulated roots with their fingerprints, for the start-up warning.
    pub(crate) simulated_roots: Vec<(PathBuf, String)>,
    /// The `tdx` block, validated; `None`: TDX evidence is refused.
    pub(crate) tdx: Option<super::tdx::TdxConfigured>,
    /// The validated `attestation_results` block (nothing opened yet: Validate must not touch disk).
    pub(crate) results_settings: Option<super::results::ResultsSettings>,
    /// The opened key and store; set by [`super::results::attach`] at Configure only.
    pub(crate) results: Option<Arc<super::results::ResultSink>>,
}

/// Which configuration key the appraisal policy comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PolicyOrigin {
    /// `policy_file`.
    File,
    /// An inline `policy { … }` block.
    Inline,
    /// Neither: the policy keys of the `snp` and `tdx` blocks ([`PLUGIN_CONFIG_POLICY_ID`]).
    PluginConfig,
}

impl PolicyOrigin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PolicyOrigin::File => "policy_file",
            PolicyOrigin::Inline => "policy",
            PolicyOrigin::PluginConfig => "plugin-config",
        }
    }
}

/// Whether [`build`] runs for Configure (which keeps what it opens) or for Validate (which only
/// reports problems and must have no side effects).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Validate,
    Configure,
}

/// Collects problems; each names its key.
#[derive(Default)]
pub(crate) struct Problems(Vec<ConfigError>);

impl Problems {
    pub(crate) fn add(&mut self, key: impl Into<String>, detail: impl Into<String>) {
        self.0.push(ConfigError::InvalidValue {
            key: key.into(),
            detail: detail.into(),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Reads a configured file, capping its size so a wrong path (a device, a huge file) cannot exhaust memory.
pub(crate) fn read_capped(path: &Path, cap: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut buf = Vec::new();
    file.take(u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if buf.len() > cap {
        return Err(format!("{} is larger than {cap} bytes", path.display()));
    }
    Ok(buf)
}

fn parse_hex_list<const N: usize>(
    key: &str,
    values: &[String],
    problems: &mut Problems,
) -> Vec<[u8; N]> {
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let key = format!("{key}[{i}]");
        match hex::decode(v.trim()) {
            Err(e) => problems.add(key, format!("{v:?} is not hex: {e}")),
            Ok(bytes) => match <[u8; N]>::try_from(bytes.as_slice()) {
                Ok(a) => out.push(a),
                Err(_) => problems.add(
                    key,
                    format!("{} bytes, want {N} ({} hex digits)", bytes.len(), 2 * N),
                ),
            },
        }
    }
    out
}

/// A SPIFFE path segment and a SPIRE plugin name at once: letters, digits, `.`, `-`, `_`.
fn check_plugin_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name == "join_token" {
        return Err("`join_token` is reserved by SPIRE".into());
    }
    if name == "." || name == ".." {
        return Err("must not be `.` or `..`".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "{name:?} contains {c:?}; use letters, digits, '.', '-', '_' (it is a SPIFFE ID path segment)"
        ));
    }
    Ok(())
}

/// SPIFFE trust domain names: lower-case letters, digits, `.`, `-`, `_`.
fn check_trust_domain(td: &str) -> Result<(), String> {
    if td.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = td
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "{td:?} contains {c:?}, not allowed in a SPIFFE trust domain name"
        ));
    }
    Ok(())
}

fn load_roots(
    key: &str,
    paths: &[PathBuf],
    simulated: bool,
    anchors: &mut TrustAnchors,
    problems: &mut Problems,
) -> Vec<(PathBuf, String)> {
    let mut loaded = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let bytes = match read_capped(path, twi_core::snp::MAX_CERT_FILE_LEN) {
            Ok(b) => b,
            Err(e) => {
                problems.add(key, e);
                continue;
            }
        };
        let before: Vec<String> = anchors
            .describe()
            .into_iter()
            .map(|(_, fp, _)| fp)
            .collect();
        match anchors.add_root_pem(&bytes, simulated) {
            Ok(()) => {
                let fp = anchors
                    .describe()
                    .into_iter()
                    .map(|(_, fp, _)| fp)
                    .find(|fp| !before.contains(fp))
                    .unwrap_or_else(|| "(already trusted)".into());
                loaded.push((path.clone(), fp));
            }
            Err(e) => problems.add(key, format!("{}: {e}", path.display())),
        }
    }
    loaded
}

/// SHA-256 (hex) of the trust anchors (fingerprint and simulated flag of each, sorted): which roots
/// SEV-SNP evidence may chain to, as the EAR names them beside the policy.
fn anchors_digest(anchors: &TrustAnchors) -> String {
    let mut roots: Vec<(String, bool)> = anchors
        .describe()
        .into_iter()
        .map(|(_, fp, sim)| (fp, sim))
        .collect();
    roots.sort();
    let canonical = serde_json::json!({ "tee": "sev-snp", "roots": roots });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The keys present in the `snp` and `tdx` blocks, whatever their values (`allow_debug = false` is
/// present too). Only read after the configuration parsed as [`Config`].
#[derive(Default, Deserialize)]
struct PresentKeys {
    #[serde(default)]
    snp: Option<BTreeMap<String, serde::de::IgnoredAny>>,
    #[serde(default)]
    tdx: Option<BTreeMap<String, serde::de::IgnoredAny>>,
}

/// The appraisal-policy keys of the `snp` and `tdx` blocks, as `snp.<key>` / `tdx.<key>`.
fn policy_keys_in_blocks(hcl: &str) -> Vec<String> {
    let present: PresentKeys = from_hcl(hcl).unwrap_or_default();
    let mut keys = Vec::new();
    for (tee, block, verification) in [
        ("snp", present.snp, &SNP_VERIFICATION_KEYS[..]),
        ("tdx", present.tdx, &TDX_VERIFICATION_KEYS[..]),
    ] {
        for key in block.unwrap_or_default().into_keys() {
            if !verification.contains(&key.as_str()) {
                keys.push(format!("{tee}.{key}"));
            }
        }
    }
    keys
}

/// The SEV-SNP policy of the `snp` block's policy keys (no policy document configured).
fn snp_block_policy(snp: &SnpConfig, problems: &mut Problems) -> SnpPolicy {
    let policy = SnpPolicy {
        allow_debug: snp.allow_debug,
        allow_migrate_ma: snp.allow_migrate_ma,
        minimum_tcb: snp.minimum_tcb.map(|t| TcbParts {
            fmc: t.fmc,
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
        }),
        allowed_measurements: parse_hex_list(
            "snp.allowed_measurements",
            &snp.allowed_measurements,
            problems,
        ),
        allowed_host_data: parse_hex_list(
            "snp.allowed_host_data",
            &snp.allowed_host_data,
            problems,
        ),
        allowed_id_key_digests: parse_hex_list(
            "snp.allowed_id_key_digests",
            &snp.allowed_id_key_digests,
            problems,
        ),
        allowed_vmpls: snp.allowed_vmpls.clone(),
        minimum_guest_svn: snp.minimum_guest_svn,
    };
    for (i, vmpl) in snp.allowed_vmpls.iter().enumerate() {
        if *vmpl > 3 {
            problems.add(
                format!("snp.allowed_vmpls[{i}]"),
                format!("{vmpl} is not a VMPL (0..=3)"),
            );
        }
    }
    policy
}

/// The appraisal policy of the configuration, from exactly one source; `None` after a problem.
fn build_policy(
    cfg: &Config,
    hcl: &str,
    stage: Stage,
    problems: &mut Problems,
) -> Option<(PolicySource, PolicyOrigin)> {
    if cfg.policy_file.is_some() && cfg.policy.is_some() {
        problems.add(
            "policy_file",
            "`policy_file` and `policy` are both set: keep one policy document (a file, re-read when \
             it changes, or an inline `policy { … }` block)",
        );
        return None;
    }
    if cfg.policy_file.is_some() || cfg.policy.is_some() {
        let source_key = if cfg.policy_file.is_some() {
            "policy_file"
        } else {
            "policy"
        };
        for key in policy_keys_in_blocks(hcl) {
            problems.add(
                key.clone(),
                format!(
                    "appraisal policy, and `{source_key}` is set: move it into the policy document \
                     (`{key}` there, same spelling)"
                ),
            );
        }
    }
    if let Some(path) = &cfg.policy_file {
        if path.as_os_str().is_empty() {
            problems.add("policy_file", "must not be empty");
            return None;
        }
        let source = match stage {
            Stage::Validate => Policy::load(path).map(|p| PolicySource::Inline(Arc::new(p))),
            Stage::Configure => PolicyFile::open(path).map(PolicySource::File),
        };
        return match source {
            Ok(s) => Some((s, PolicyOrigin::File)),
            Err(e) => {
                problems.add("policy_file", e.to_string());
                None
            }
        };
    }
    if let Some(doc) = &cfg.policy {
        return match Policy::from_document(doc) {
            Ok(p) => Some((PolicySource::Inline(Arc::new(p)), PolicyOrigin::Inline)),
            Err(e) => {
                add_policy_problems(&e, problems);
                None
            }
        };
    }
    let before = problems.len();
    let snp = snp_block_policy(&cfg.snp.clone().unwrap_or_default(), problems);
    let tdx = cfg
        .tdx
        .as_ref()
        .map(|t| super::tdx::block_policy(t, problems));
    if problems.len() > before {
        return None;
    }
    match Policy::from_policies(
        PLUGIN_CONFIG_POLICY_ID,
        PLUGIN_CONFIG_POLICY_VERSION,
        Some(snp),
        tdx,
    ) {
        Ok(p) => Some((
            PolicySource::Inline(Arc::new(p)),
            PolicyOrigin::PluginConfig,
        )),
        Err(e) => {
            problems.add("snp", e.to_string());
            None
        }
    }
}

/// An inline document's problems, each under `policy.<key>`.
fn add_policy_problems(e: &PolicyError, problems: &mut Problems) {
    let keys = e.keys();
    if keys.is_empty() {
        problems.add("policy", e.to_string());
    }
    for (key, detail) in keys {
        problems.add(format!("policy.{key}"), detail);
    }
}

/// Parses and validates `hcl` for trust domain `core.trust_domain`, loading every file it names, as
/// Validate does (no side effects; a policy file is parsed, not kept open).
///
/// # Errors
///
/// Every problem found, each a [`ConfigError`] naming its key (`snp.simulated_roots[0]`, …).
pub(crate) fn build(core: &CoreConfig, hcl: &str) -> Result<Configured, Vec<ConfigError>> {
    build_for(core, hcl, Stage::Validate)
}

/// As [`build`], for `stage`: Configure opens the policy file as a [`PolicyFile`] that is re-read
/// when it changes.
///
/// # Errors
///
/// As [`build`].
pub(crate) fn build_for(
    core: &CoreConfig,
    hcl: &str,
    stage: Stage,
) -> Result<Configured, Vec<ConfigError>> {
    let cfg: Config = from_hcl(hcl).map_err(|e| vec![e])?;
    let mut problems = Problems::default();

    if let Err(e) = check_trust_domain(&core.trust_domain) {
        problems.add("core_configuration.trust_domain", e);
    }
    let plugin_name = cfg
        .plugin_name
        .clone()
        .unwrap_or_else(|| DEFAULT_PLUGIN_NAME.to_owned());
    if let Err(e) = check_plugin_name(&plugin_name) {
        problems.add("plugin_name", e);
    }
    let nonce_len = cfg.nonce_len.unwrap_or(DEFAULT_NONCE_LEN);
    if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce_len) {
        problems.add(
            "nonce_len",
            format!("{nonce_len} is out of range {MIN_NONCE_LEN}..={MAX_NONCE_LEN}"),
        );
    }

    let policy = build_policy(&cfg, hcl, stage, &mut problems);
    let snp = cfg.snp.clone().unwrap_or_default();

    let mut anchors = if snp.disable_amd_roots {
        TrustAnchors::amd().without_amd()
    } else {
        TrustAnchors::amd()
    };
    load_roots(
        "snp.trusted_roots",
        &snp.trusted_roots,
        false,
        &mut anchors,
        &mut problems,
    );
    let simulated_roots = load_roots(
        "snp.simulated_roots",
        &snp.simulated_roots,
        true,
        &mut anchors,
        &mut problems,
    );
    if anchors.is_empty() && problems.0.is_empty() {
        problems.add(
            "snp.disable_amd_roots",
            "no trust anchor left: set snp.trusted_roots (or snp.simulated_roots for tests)",
        );
    }

    if let Some(dir) = &snp.cert_dir {
        if !dir.is_dir() {
            problems.add(
                "snp.cert_dir",
                format!("{} is not a directory", dir.display()),
            );
        }
    }
    let kds = snp.kds.as_ref().map(|k| {
        let url = k.url.clone().unwrap_or_else(|| DEFAULT_KDS_URL.to_owned());
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            problems.add("snp.kds.url", format!("{url:?} is not an http(s) URL"));
        }
        let timeout = k.timeout_seconds.unwrap_or(DEFAULT_KDS_TIMEOUT_SECONDS);
        if timeout == 0 || timeout > 300 {
            problems.add(
                "snp.kds.timeout_seconds",
                format!("{timeout} is out of range 1..=300"),
            );
        }
        if k.cache_dir.as_os_str().is_empty() {
            problems.add("snp.kds.cache_dir", "must not be empty");
        } else if k.cache_dir.exists() && !k.cache_dir.is_dir() {
            problems.add(
                "snp.kds.cache_dir",
                format!("{} exists and is not a directory", k.cache_dir.display()),
            );
        }
        Kds::new(
            url.trim_end_matches('/').to_owned(),
            k.cache_dir.clone(),
            Duration::from_secs(timeout),
        )
    });

    // CRLs: explicit files, then `<product>/crl.der` of the cert dir and of the KDS cache.
    let mut crls = VerifierState::default();
    for (i, path) in snp.crl_paths.iter().enumerate() {
        let key = format!("snp.crl_paths[{i}]");
        match read_capped(path, twi_core::snp::MAX_CRL_LEN) {
            Err(e) => problems.add(key, e),
            Ok(der) => {
                if let Err(e) = crls.insert(format!("file:{}", path.display()), None, der) {
                    problems.add(key, format!("{}: {e}", path.display()));
                }
            }
        }
    }
    let dirs = [
        ("snp.cert_dir", snp.cert_dir.clone()),
        (
            "snp.kds.cache_dir",
            snp.kds.as_ref().map(|k| k.cache_dir.clone()),
        ),
    ];
    for (key, dir) in dirs {
        let Some(dir) = dir else { continue };
        for product in [Product::Milan, Product::Genoa, Product::Turin] {
            let path = super::certs::product_dir(&dir, product).join("crl.der");
            if !path.is_file() {
                continue;
            }
            match read_capped(&path, twi_core::snp::MAX_CRL_LEN) {
                Err(e) => problems.add(key, e),
                Ok(der) => {
                    if crls.has_product(product) {
                        continue; // the cert dir's CRL wins over the cache's
                    }
                    if let Err(e) = crls.insert(format!("product:{product}"), Some(product), der) {
                        problems.add(key, format!("{}: {e}", path.display()));
                    }
                }
            }
        }
    }

    let tdx = cfg
        .tdx
        .as_ref()
        .and_then(|t| super::tdx::build(t, &mut problems));

    let results_settings = super::results::validate(cfg.attestation_results.as_ref())
        .unwrap_or_else(|errs| {
            for (key, detail) in errs {
                problems.add(key, detail);
            }
            None
        });

    if !problems.0.is_empty() {
        return Err(problems.0);
    }
    let Some((policy, policy_origin)) = policy else {
        return Err(vec![ConfigError::InvalidValue {
            key: "policy".into(),
            detail: "no appraisal policy could be built".into(),
        }]);
    };
    let snp_anchors_digest = anchors_digest(&anchors);
    let certs = CertSource::new(snp.cert_dir.clone(), kds);
    if let Err(e) = crls.finish(anchors) {
        return Err(vec![ConfigError::InvalidValue {
            key: "snp.crl_paths".into(),
            detail: e.to_string(),
        }]);
    }
    Ok(Configured {
        trust_domain: core.trust_domain.clone(),
        plugin_name,
        can_reattest: cfg.can_reattest.unwrap_or(true),
        nonce_len,
        policy,
        policy_origin,
        snp_anchors_digest,
        certs,
        verifier: crls,
        simulated_roots,
        tdx,
        results_settings,
        results: None,
    })
}

impl Configured {
    /// The verifier to use now (rebuilt when KDS brings a CRL; its chain cache lives as long as it does).
    pub(crate) fn verifier(&self) -> Arc<Verifier> {
        self.verifier.verifier()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn core() -> CoreConfig {
        CoreConfig::new("example.org")
    }

    fn policy(c: &Configured) -> Arc<Policy> {
        c.policy.current().unwrap()
    }

    fn errors(hcl: &str) -> String {
        match build(&core(), hcl) {
            Ok(_) => panic!("accepted: {hcl}"),
            Err(errs) => errs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    const VENDOR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/vendor-roots/amd"
    );

    #[test]
    fn defaults() {
        let c = build(&core(), "").unwrap();
        assert_eq!(c.plugin_name, "twi");
        assert!(c.can_reattest);
        assert_eq!(c.nonce_len, 32);
        assert_eq!(policy(&c).snp_policy().unwrap(), &SnpPolicy::default());
        assert!(
            policy(&c).tdx_policy().is_err(),
            "no tdx block: no TDX policy"
        );
        assert_eq!(c.policy_origin, PolicyOrigin::PluginConfig);
        assert!(c.simulated_roots.is_empty());
        assert_eq!(c.verifier().anchors().describe().len(), 3, "AMD's roots");
    }

    #[test]
    fn full_block_is_parsed() {
        let m = "ab".repeat(48);
        let h = "01".repeat(32);
        let hcl = format!(
            r#"
            plugin_name = "twi_snp"
            can_reattest = false
            nonce_len = 64
            snp {{
                allow_debug = true
                minimum_tcb {{
                    bootloader = 3
                    tee = 0
                    snp = 8
                    microcode = 115
                }}
                allowed_measurements = ["{m}"]
                allowed_host_data = ["{h}"]
                allowed_vmpls = [0, 1]
                minimum_guest_svn = 2
                cert_dir = "{VENDOR}"
            }}
            "#
        );
        let c = build(&core(), &hcl).unwrap();
        assert_eq!(c.plugin_name, "twi_snp");
        assert!(!c.can_reattest);
        assert_eq!(c.nonce_len, 64);
        let p = policy(&c);
        let snp = p.snp_policy().unwrap();
        assert!(snp.allow_debug);
        assert_eq!(snp.allowed_measurements, vec![[0xab; 48]]);
        assert_eq!(snp.allowed_host_data, vec![[1; 32]]);
        assert_eq!(snp.allowed_vmpls, vec![0, 1]);
        assert_eq!(snp.minimum_tcb.unwrap().microcode, 115);
        assert_eq!(snp.minimum_guest_svn, Some(2));
        // A different policy has a different digest.
        assert_ne!(p.digest(), policy(&build(&core(), "").unwrap()).digest());
        // The trust anchors are named apart: the same roots, whatever the policy.
        assert_eq!(
            c.snp_anchors_digest,
            build(&core(), "").unwrap().snp_anchors_digest
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = errors("snp {\n allow_debgu = true\n}");
        assert!(e.contains("snp.allow_debgu"), "{e}");
        let e = errors("nonce_length = 32");
        assert!(e.contains("nonce_length"), "{e}");
    }

    #[test]
    fn bad_hex_is_named_with_index() {
        let e = errors(&format!(
            "snp {{\n allowed_measurements = [\"{}\", \"zz\"]\n allowed_host_data = [\"abcd\"]\n}}",
            "00".repeat(48)
        ));
        assert!(
            e.contains("`snp.allowed_measurements[1]`") && e.contains("not hex"),
            "{e}"
        );
        assert!(
            e.contains("`snp.allowed_host_data[0]`") && e.contains("2 bytes, want 32"),
            "{e}"
        );
    }

    #[test]
    fn nonce_len_range() {
        for bad in [0, 16, 31, 65, 1000] {
            let e = errors(&format!("nonce_len = {bad}"));
            assert!(e.contains("`nonce_len`") && e.contains("32..=64"), "{e}");
        }
        for good in [32, 48, 64] {
            build(&core(), &format!("nonce_len = {good}")).unwrap();
        }
    }

    #[test]
    fn missing_simulated_root_names_key_and_path() {
        let e = errors("snp {\n simulated_roots = [\"/nonexistent/sim/ark.pem\"]\n}");
        assert!(e.contains("snp.simulated_roots"), "{e}");
        assert!(e.contains("/nonexistent/sim/ark.pem"), "{e}");
    }

    #[test]
    fn a_non_root_is_not_a_root() {
        let e = errors(&format!(
            "snp {{\n trusted_roots = [\"{VENDOR}/milan/ask.pem\"]\n}}"
        ));
        assert!(
            e.contains("snp.trusted_roots[0]") && e.contains("ask.pem"),
            "{e}"
        );
    }

    #[test]
    fn no_anchor_left() {
        let e = errors("snp {\n disable_amd_roots = true\n}");
        assert!(e.contains("snp.disable_amd_roots"), "{e}");
        // A real root re-added explicitly is enough.
        let c = build(
            &core(),
            &format!("snp {{\n disable_amd_roots = true\n trusted_roots = [\"{VENDOR}/genoa/ark.pem\"]\n}}"),
        )
        .unwrap();
        assert_eq!(c.verifier().anchors().describe().len(), 1);
    }

    #[test]
    fn every_problem_is_reported() {
        let e = errors(
            "plugin_name = \"a/b\"\nnonce_len = 8\nsnp {\n allowed_vmpls = [7]\n cert_dir = \"/nonexistent\"\n kds {\n cache_dir = \"\"\n url = \"ftp://x\"\n }\n}",
        );
        for key in [
            "`plugin_name`",
            "`nonce_len`",
            "`snp.allowed_vmpls[0]`",
            "`snp.cert_dir`",
            "`snp.kds.cache_dir`",
            "`snp.kds.url`",
        ] {
            assert!(e.contains(key), "{key} missing in {e}");
        }
    }

    #[test]
    fn bad_trust_domain_and_reserved_name() {
        let e = match build(&CoreConfig::new("Example.org"), "") {
            Err(e) => e[0].to_string(),
            Ok(_) => panic!("accepted"),
        };
        assert!(e.contains("trust_domain"), "{e}");
        assert!(errors("plugin_name = \"join_token\"").contains("reserved"));
    }

    const LAB_POLICY: &str = "id = \"lab\"\nversion = \"3\"\nsnp {\n allow_migrate_ma = true\n}\n";

    fn policy_file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("policy.hcl");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn policy_file_is_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = policy_file(&dir, LAB_POLICY);
        let hcl = format!(
            "policy_file = \"{}\"\nsnp {{\n trusted_roots = [\"{VENDOR}/genoa/ark.pem\"]\n}}",
            path.display()
        );
        for stage in [Stage::Validate, Stage::Configure] {
            let c = build_for(&core(), &hcl, stage).unwrap();
            assert_eq!(c.policy_origin, PolicyOrigin::File);
            assert_eq!(*policy(&c), Policy::load(&path).unwrap());
            assert!(policy(&c).snp_policy().unwrap().allow_migrate_ma);
            assert_eq!(
                matches!(c.policy, PolicySource::File(_)),
                stage == Stage::Configure,
                "only Configure keeps the file open for re-reading"
            );
        }
    }

    #[test]
    fn inline_policy_is_the_policy_and_its_errors_name_policy_keys() {
        let c = build(
            &core(),
            "policy {\n id = \"lab\"\n version = 3\n snp {\n  allow_migrate_ma = true\n }\n}",
        )
        .unwrap();
        assert_eq!(c.policy_origin, PolicyOrigin::Inline);
        assert_eq!(*policy(&c), Policy::parse(LAB_POLICY).unwrap());
        let e = errors(
            "policy {\n id = \"lab\"\n version = 3\n snp {\n  allowed_measurements = [\"abcd\"]\n }\n}",
        );
        assert!(e.contains("policy.snp.allowed_measurements[0]"), "{e}");
        let e =
            errors("policy {\n id = \"lab\"\n version = 3\n snp {\n  allow_debgu = true\n }\n}");
        assert!(e.contains("allow_debgu"), "{e}");
    }

    #[test]
    fn one_source_of_truth() {
        let dir = tempfile::tempdir().unwrap();
        let path = policy_file(&dir, LAB_POLICY);
        let both = format!(
            "policy_file = \"{}\"\npolicy {{\n id = \"x\"\n version = 1\n}}",
            path.display()
        );
        let e = errors(&both);
        assert!(e.contains("`policy_file`") && e.contains("`policy`"), "{e}");
        // A policy key beside a document is refused, by name, even when it spells the default.
        for (block, key) in [
            ("snp", "allow_debug = false"),
            ("snp", "allowed_vmpls = [0]"),
            (
                "snp",
                "minimum_tcb {\n bootloader = 1\n tee = 0\n snp = 1\n microcode = 1\n}",
            ),
            ("tdx", "mrtd = []"),
            ("tdx", "xfam {\n value = 0\n mask = 0\n}"),
        ] {
            let name = key.split([' ', '{']).next().unwrap();
            let e = errors(&format!(
                "policy_file = \"{}\"\n{block} {{\n {key}\n}}",
                path.display()
            ));
            assert!(e.contains(&format!("`{block}.{name}`")), "{e}");
            assert!(e.contains("move it into the policy document"), "{e}");
            let e = errors(&format!(
                "policy {{\n id = \"x\"\n version = 1\n}}\n{block} {{\n {key}\n}}"
            ));
            assert!(e.contains(&format!("`{block}.{name}`")), "{e}");
        }
        // Verification keys stay in plugin_data.
        build(
            &core(),
            &format!(
                "policy_file = \"{}\"\nsnp {{\n disable_amd_roots = false\n crl_paths = []\n}}",
                path.display()
            ),
        )
        .unwrap();
        // The TDX collateral sources too.
        let tdx_doc = policy_file(
            &dir,
            "id = \"x\"\nversion = 1\ntdx {\n allow_debug = false\n}\n",
        );
        build(
            &core(),
            &format!(
                "policy_file = \"{}\"\ntdx {{\n pcs_url = \"https://pccs.example:8081\"\n \
                 root_ca_crl_url = \"https://pccs.example:8081/sgx/certification/v4/rootcacrl\"\n \
                 cache_dir = \"{}\"\n fetch_timeout_seconds = 10\n \
                 collateral_refresh_before_seconds = 86400\n collateral_grace_seconds = 3600\n \
                 collateral_retry_seconds = 60\n disable_intel_roots = false\n}}",
                tdx_doc.display(),
                dir.path().display()
            ),
        )
        .unwrap();
    }

    /// The split of the `snp`/`tdx` keys into verification and policy is the policy document's: each
    /// verification key is refused in a document as plugin configuration.
    #[test]
    fn verification_keys_are_the_documents_non_policy_keys() {
        for (tee, keys) in [
            ("snp", &SNP_VERIFICATION_KEYS[..]),
            ("tdx", &TDX_VERIFICATION_KEYS[..]),
        ] {
            for key in keys {
                let doc = format!("id = \"x\"\nversion = 1\n{tee} {{\n {key} = true\n}}\n");
                let e = Policy::parse(&doc).unwrap_err();
                assert!(
                    matches!(e.root(), PolicyError::NotPolicy { .. }),
                    "{tee}.{key}: {e}"
                );
            }
        }
    }

    #[test]
    fn broken_or_missing_policy_file_fails_naming_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = policy_file(
            &dir,
            "id = \"x\"\nversion = 1\nsnp {\n allowed_vmpl = [0]\n}\n",
        );
        for stage in [Stage::Validate, Stage::Configure] {
            let e = match build_for(
                &core(),
                &format!("policy_file = \"{}\"", path.display()),
                stage,
            ) {
                Ok(_) => panic!("accepted"),
                Err(e) => e[0].to_string(),
            };
            assert!(e.contains("`policy_file`"), "{e}");
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(e.contains("snp.allowed_vmpl"), "{e}");
        }
        let e = errors("policy_file = \"/nonexistent/twi/policy.hcl\"");
        assert!(
            e.contains("`policy_file`") && e.contains("/nonexistent/twi/policy.hcl"),
            "{e}"
        );
    }

    /// Without a document the plugin's keys make a policy named `plugin-config`, digested like a
    /// document with the same content.
    #[test]
    fn plugin_config_policy_digests_like_a_document() {
        let c = build(&core(), "snp {\n allow_migrate_ma = true\n}").unwrap();
        let doc = Policy::parse(
            "id = \"plugin-config\"\nversion = \"1\"\nsnp {\n allow_migrate_ma = true\n}\n",
        )
        .unwrap();
        assert_eq!(policy(&c).digest(), doc.digest());
        assert_eq!(policy(&c).policy_id(), doc.policy_id());
    }
}

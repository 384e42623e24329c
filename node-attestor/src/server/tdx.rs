//! Intel TDX on the server: the `tdx { … }` block, its validated form (roots, a long-lived
//! [`TdxVerifier`], the collateral source; its policy keys when no policy document is configured) and
//! the blocking verification of one quote.
//!
//! The verifier lives as long as the configuration, so its caches (verified collateral, PCK chains, QE
//! reports) make warm attestations cost one quote signature. The collateral comes from
//! [`TdxCollateralSource`] for the platform the quote's PCK certificate names: the operator's offline
//! bundle (`collateral_dir`, re-read when one of its files changes), else the on-disk cache
//! (`cache_dir`), else Intel PCS / a PCCS (`pcs_url`, opt-in), refetched ahead of its nextUpdate.
//! Collateral past its nextUpdate is served only within `collateral_grace_seconds` (logged at warn at
//! every use, and named in the attestation result record); past that it fails closed with
//! `collateral-expired`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use twi_core::collateral::{
    collateral_times, Origin, PcsConfig, PlatformKey, RefreshPolicy, Served, TdxCollateralSource,
    TdxSourceConfig, UreqFetch, MAX_PLATFORMS,
};
use twi_core::policy::Policy;
use twi_core::tdx::{
    appraise, check_report_data, Collateral, IntelRoots, Masked, Quote, TcbStatus, TdxPolicy,
    TdxVerifier, VerifiedTdx, COLLATERAL_FILES,
};

use super::config::{read_capped, Problems};
use super::selectors;
use super::{VerifiedEvidence, VerifyFailure};
use crate::wire;

/// The `tdx { … }` block. Without it the server refuses TDX evidence.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxConfig {
    /// The operator's offline collateral bundle: files named as [`COLLATERAL_FILES`], or
    /// `<fmspc>-<platform|processor>/` subdirectories of them. It wins over the cache and PCS while it
    /// is current. This or `pcs_url` is required.
    #[serde(default)]
    pub collateral_dir: Option<PathBuf>,
    /// Opt-in online fetching: Intel PCS (`https://api.trustedservices.intel.com`) or a PCCS
    /// (`https://pccs.example:8081`). Absent: the plugin makes no TDX network requests.
    #[serde(default)]
    pub pcs_url: Option<String>,
    /// Where the Intel SGX Root CA CRL is fetched from. Default: Intel's distribution point for Intel
    /// PCS, the PCCS's `/sgx/certification/v4/rootcacrl` otherwise.
    #[serde(default)]
    pub root_ca_crl_url: Option<String>,
    /// Where fetched collateral is kept (`<cache_dir>/tdx/<fmspc>-<ca>/`), so that a restart does not
    /// refetch and servers sharing it fetch once. Required with `pcs_url`; may be `snp.kds.cache_dir`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Timeout of one PCS / PCCS request, 1..=300. Default 30.
    #[serde(default)]
    pub fetch_timeout_seconds: Option<u64>,
    /// Refetch this long before the earliest nextUpdate. Default 604800 (a week).
    #[serde(default)]
    pub collateral_refresh_before_seconds: Option<u64>,
    /// Keep using collateral past its nextUpdate this long when no fresh copy can be had (logged at
    /// warn at every use). Default 0: fail closed at nextUpdate.
    #[serde(default)]
    pub collateral_grace_seconds: Option<u64>,
    /// After a fetch attempt for a platform, wait this long before the next one. Default 300.
    #[serde(default)]
    pub collateral_retry_seconds: Option<u64>,
    #[serde(default)]
    pub allow_debug: bool,
    /// Intel's spelling (`UpToDate`, `SWHardeningNeeded`, …). Default `["UpToDate"]`.
    #[serde(default)]
    pub allowed_tcb_statuses: Option<Vec<String>>,
    /// If set, every advisory of the platform's TCB level must be listed.
    #[serde(default)]
    pub allowed_advisory_ids: Option<Vec<String>>,
    /// Hex, 48 bytes each (also the RTMRs and the three config registers below).
    #[serde(default)]
    pub mrtd: Vec<String>,
    #[serde(default)]
    pub rtmr0: Vec<String>,
    #[serde(default)]
    pub rtmr1: Vec<String>,
    #[serde(default)]
    pub rtmr2: Vec<String>,
    #[serde(default)]
    pub rtmr3: Vec<String>,
    #[serde(default)]
    pub mrconfigid: Vec<String>,
    #[serde(default)]
    pub mrowner: Vec<String>,
    #[serde(default)]
    pub mrownerconfig: Vec<String>,
    /// `{ value, mask }`: XFAM under a mask.
    #[serde(default)]
    pub xfam: Option<MaskedHcl>,
    /// `{ value, mask }`: TD_ATTRIBUTES under a mask (DEBUG is `allow_debug`'s).
    #[serde(default)]
    pub td_attributes: Option<MaskedHcl>,
    /// Extra (real) Intel SGX root certificates, PEM or DER files.
    #[serde(default)]
    pub trusted_roots: Vec<PathBuf>,
    /// Do not trust Intel's built-in SGX Root CA.
    #[serde(default)]
    pub disable_intel_roots: bool,
    /// DANGER, test only: roots of the simulated TDX platform (`root.der` of a simulated root set).
    #[serde(default)]
    pub simulated_roots: Vec<PathBuf>,
}

/// `{ value = "0x…", mask = "0x…" }`; HCL has no hex literals, so strings (hex with `0x`, or decimal)
/// and plain numbers are both accepted.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedHcl {
    pub value: NumberOrString,
    pub mask: NumberOrString,
}

/// A u64 written as a number or a string.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum NumberOrString {
    Number(u64),
    String(String),
}

fn parse_u64(v: &NumberOrString) -> Result<u64, String> {
    match v {
        NumberOrString::Number(n) => Ok(*n),
        NumberOrString::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            }
            .map_err(|_| format!("`{s}` is not a 64-bit number (e.g. \"0x10000000\")"))
        }
    }
}

/// The validated `tdx` block (its verification half: the policy is [`super::config::Configured`]'s).
#[derive(Debug)]
pub(crate) struct TdxConfigured {
    pub(crate) verifier: Arc<TdxVerifier>,
    /// Collateral by platform: offline bundle, cache, PCS / PCCS.
    pub(crate) collateral: TdxCollateralSource,
    /// The configured sources, for the Configure log.
    pub(crate) offline_dir: Option<PathBuf>,
    pub(crate) cache_dir: Option<PathBuf>,
    /// Digest of the collateral last served per platform, so that a change (a fetch, a refresh, a
    /// replaced bundle) is logged once at info rather than at every attestation.
    last_served: Mutex<HashMap<PlatformKey, [u8; 32]>>,
    /// SHA-256 (hex) of the TDX trust anchors (outside the policy digest), named in EARs beside the
    /// policy.
    pub(crate) anchors_digest: String,
    /// Files of the simulated roots with their fingerprints, for the start-up warning.
    pub(crate) simulated_roots: Vec<(PathBuf, String)>,
}

/// A root file's certificate as DER: PEM (`CERTIFICATE`) or DER as is.
fn root_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.starts_with(b"-----BEGIN") {
        let (label, der) = pkcs8::der::pem::decode_vec(bytes).map_err(|e| format!("PEM: {e}"))?;
        if label != "CERTIFICATE" {
            return Err(format!("PEM label {label:?}, want \"CERTIFICATE\""));
        }
        Ok(der)
    } else {
        Ok(bytes.to_vec())
    }
}

fn load_roots(
    key: &str,
    paths: &[PathBuf],
    simulated: bool,
    roots: &mut IntelRoots,
    problems: &mut Problems,
) -> Vec<(PathBuf, String)> {
    let mut loaded = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let der = match read_capped(path, twi_core::tdx::MAX_CERT_LEN).and_then(|b| root_der(&b)) {
            Ok(d) => d,
            Err(e) => {
                problems.add(key, format!("{}: {e}", path.display()));
                continue;
            }
        };
        match roots.add_root_der(&der, simulated) {
            Ok(()) => loaded.push((path.clone(), hex::encode(Sha256::digest(&der)))),
            Err(e) => problems.add(key, format!("{}: {e}", path.display())),
        }
    }
    loaded
}

fn parse_hex48(key: &str, values: &[String], problems: &mut Problems) -> Vec<[u8; 48]> {
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let key = format!("{key}[{i}]");
        match hex::decode(v.trim()) {
            Err(e) => problems.add(key, format!("{v:?} is not hex: {e}")),
            Ok(b) => match <[u8; 48]>::try_from(b.as_slice()) {
                Ok(a) => out.push(a),
                Err(_) => problems.add(key, format!("{} bytes, want 48 (96 hex digits)", b.len())),
            },
        }
    }
    out
}

fn parse_masked(key: &str, m: Option<&MaskedHcl>, problems: &mut Problems) -> Option<Masked> {
    let m = m?;
    let value = parse_u64(&m.value).map_err(|e| problems.add(format!("{key}.value"), e));
    let mask = parse_u64(&m.mask).map_err(|e| problems.add(format!("{key}.mask"), e));
    match (value, mask) {
        (Ok(value), Ok(mask)) => Some(Masked { value, mask }),
        _ => None,
    }
}

/// SHA-256 (hex) of the trust anchors (fingerprint and simulated flag of each, sorted).
fn anchors_digest(roots: &IntelRoots) -> String {
    let mut anchors = roots.describe();
    anchors.sort();
    let canonical = serde_json::json!({ "tee": "tdx", "roots": anchors });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The TDX policy of the block's policy keys (no policy document configured); every problem is added
/// to `problems`.
pub(crate) fn block_policy(t: &TdxConfig, problems: &mut Problems) -> TdxPolicy {
    let statuses = t
        .allowed_tcb_statuses
        .clone()
        .unwrap_or_else(|| vec![TcbStatus::UpToDate.as_str().to_owned()]);
    if statuses.is_empty() {
        problems.add(
            "tdx.allowed_tcb_statuses",
            "empty: no TD could ever be accepted (omit the key for [\"UpToDate\"])",
        );
    }
    let mut allowed_tcb_statuses = Vec::with_capacity(statuses.len());
    for (i, s) in statuses.iter().enumerate() {
        match serde_json::from_value::<TcbStatus>(serde_json::Value::String(s.clone())) {
            Ok(st) => allowed_tcb_statuses.push(st),
            Err(_) => problems.add(
                format!("tdx.allowed_tcb_statuses[{i}]"),
                format!("{s:?} is not an Intel TCB status (UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked, TDRelaunchAdvised, TDRelaunchAdvisedConfigurationNeeded)"),
            ),
        }
    }
    TdxPolicy {
        allow_debug: t.allow_debug,
        allowed_tcb_statuses,
        allowed_advisory_ids: t.allowed_advisory_ids.clone(),
        mrtd: parse_hex48("tdx.mrtd", &t.mrtd, problems),
        rtmr: [
            parse_hex48("tdx.rtmr0", &t.rtmr0, problems),
            parse_hex48("tdx.rtmr1", &t.rtmr1, problems),
            parse_hex48("tdx.rtmr2", &t.rtmr2, problems),
            parse_hex48("tdx.rtmr3", &t.rtmr3, problems),
        ],
        mrconfigid: parse_hex48("tdx.mrconfigid", &t.mrconfigid, problems),
        mrowner: parse_hex48("tdx.mrowner", &t.mrowner, problems),
        mrownerconfig: parse_hex48("tdx.mrownerconfig", &t.mrownerconfig, problems),
        xfam: parse_masked("tdx.xfam", t.xfam.as_ref(), problems),
        td_attributes: parse_masked("tdx.td_attributes", t.td_attributes.as_ref(), problems),
    }
}

/// Validates the block's verification keys, loading its roots and collateral; every problem is added
/// to `problems`.
pub(crate) fn build(t: &TdxConfig, problems: &mut Problems) -> Option<TdxConfigured> {
    let mut roots = if t.disable_intel_roots {
        IntelRoots::intel().without_intel()
    } else {
        IntelRoots::intel()
    };
    let before = problems.len();
    load_roots(
        "tdx.trusted_roots",
        &t.trusted_roots,
        false,
        &mut roots,
        problems,
    );
    let simulated_roots = load_roots(
        "tdx.simulated_roots",
        &t.simulated_roots,
        true,
        &mut roots,
        problems,
    );
    if roots.is_empty() && problems.len() == before {
        problems.add(
            "tdx.disable_intel_roots",
            "no trust anchor left: set tdx.trusted_roots (or tdx.simulated_roots for tests)",
        );
    }

    let collateral = build_collateral(t, problems)?;
    Some(TdxConfigured {
        anchors_digest: anchors_digest(&roots),
        verifier: Arc::new(TdxVerifier::new(roots)),
        collateral,
        offline_dir: t.collateral_dir.clone(),
        cache_dir: t.cache_dir.clone(),
        last_served: Mutex::new(HashMap::new()),
        simulated_roots,
    })
}

/// Default `tdx.fetch_timeout_seconds`.
pub(crate) const DEFAULT_FETCH_TIMEOUT_SECONDS: u64 = 30;
/// Longest `tdx.collateral_grace_seconds`: 30 days, Intel's own collateral cycle. Past it a revoked PCK
/// or a TCB recovery could go unseen for longer than collateral is ever meant to live.
pub(crate) const MAX_GRACE_SECONDS: u64 = 30 * 86_400;
/// Longest `tdx.collateral_retry_seconds` (a day).
pub(crate) const MAX_RETRY_SECONDS: u64 = 86_400;

/// Whether `url` is an absolute http(s) URL with a host.
fn check_url(key: &str, url: &str, problems: &mut Problems) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if !ok {
        problems.add(
            key,
            format!(
                "{url:?} is not an http(s) URL (e.g. \"https://api.trustedservices.intel.com\" or \"https://pccs.example:8081\")"
            ),
        );
    }
    ok
}

/// `<12 hex digits>-<platform|processor>`, the name of a per-platform bundle directory; `Some(false)`
/// when it is one but not in lower case (the source looks for lower case only).
fn platform_dir_name(name: &str) -> Option<bool> {
    let (fmspc, ca) = name.split_once('-')?;
    let is = fmspc.len() == 12
        && fmspc.bytes().all(|b| b.is_ascii_hexdigit())
        && (ca.eq_ignore_ascii_case("platform") || ca.eq_ignore_ascii_case("processor"));
    is.then(|| name == name.to_ascii_lowercase())
}

/// Whether the bundle in `dir` reads and its items parse as what they claim to be (their signatures
/// are the verifier's to check, at every attestation).
fn check_bundle(dir: &Path) -> Result<(), String> {
    let c = Collateral::from_dir(dir).map_err(|e| e.to_string())?;
    collateral_times(&c).map(|_| ())
}

/// Checks the offline bundle directory: every bundle in it (flat, or per platform) must parse, and
/// without online fetching there must be one.
fn check_offline_dir(dir: &Path, online: bool, problems: &mut Problems) {
    const KEY: &str = "tdx.collateral_dir";
    if dir.as_os_str().is_empty() {
        problems.add(KEY, "must not be empty");
        return;
    }
    if !dir.is_dir() {
        problems.add(KEY, format!("{} is not a directory", dir.display()));
        return;
    }
    let mut bundles = 0usize;
    if COLLATERAL_FILES.iter().any(|f| dir.join(f).exists()) {
        bundles = bundles.saturating_add(1);
        if let Err(e) = check_bundle(dir) {
            problems.add(KEY, format!("{}: {e}", dir.display()));
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.add(KEY, format!("cannot list {}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let Some(lower) = name.to_str().and_then(platform_dir_name) else {
            continue;
        };
        if !path.is_dir() {
            continue;
        }
        if !lower {
            problems.add(KEY, format!("{}: name it in lower case", path.display()));
            continue;
        }
        bundles = bundles.saturating_add(1);
        if let Err(e) = check_bundle(&path) {
            problems.add(KEY, format!("{}: {e}", path.display()));
        }
    }
    if bundles == 0 && !online {
        problems.add(
            KEY,
            format!(
                "{} holds no collateral: put the files {} there (or in <fmspc>-<platform|processor>/ \
                 subdirectories, e.g. b0c06f000000-platform/), or set tdx.pcs_url to fetch them",
                dir.display(),
                COLLATERAL_FILES.join(", ")
            ),
        );
    }
}

/// `key`'s value, `default` when absent, checked against `range`.
fn seconds(
    key: &str,
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    problems: &mut Problems,
) -> u64 {
    let v = value.unwrap_or(default);
    if !range.contains(&v) {
        problems.add(
            key,
            format!("{v} is out of range {}..={}", range.start(), range.end()),
        );
    }
    v
}

/// The collateral source of the block; `None` after a problem.
fn build_collateral(t: &TdxConfig, problems: &mut Problems) -> Option<TdxCollateralSource> {
    let before = problems.len();
    if t.collateral_dir.is_none() && t.pcs_url.is_none() {
        problems.add(
            "tdx.collateral_dir",
            "required unless tdx.pcs_url is set: a directory with Intel PCS collateral (tcb_info.json, \
             qe_identity.json, CRLs and issuer chains), or tdx.pcs_url to fetch it from Intel PCS / a PCCS",
        );
    }
    if let Some(dir) = &t.collateral_dir {
        check_offline_dir(dir, t.pcs_url.is_some(), problems);
    }
    if let Some(url) = &t.pcs_url {
        check_url("tdx.pcs_url", url, problems);
    }
    match (&t.root_ca_crl_url, &t.pcs_url) {
        (Some(url), Some(_)) => {
            check_url("tdx.root_ca_crl_url", url, problems);
        }
        (Some(_), None) => problems.add(
            "tdx.root_ca_crl_url",
            "only used for online fetching: set tdx.pcs_url too, or remove it",
        ),
        (None, _) => {}
    }
    match &t.cache_dir {
        None if t.pcs_url.is_some() => problems.add(
            "tdx.cache_dir",
            "required with tdx.pcs_url: a directory where fetched collateral is kept (it may be \
             snp.kds.cache_dir)",
        ),
        None => {}
        Some(dir) if dir.as_os_str().is_empty() => {
            problems.add("tdx.cache_dir", "must not be empty")
        }
        Some(dir) if dir.exists() && !dir.is_dir() => problems.add(
            "tdx.cache_dir",
            format!("{} exists and is not a directory", dir.display()),
        ),
        Some(_) => {}
    }
    let timeout = seconds(
        "tdx.fetch_timeout_seconds",
        t.fetch_timeout_seconds,
        DEFAULT_FETCH_TIMEOUT_SECONDS,
        1..=300,
        problems,
    );
    let defaults = RefreshPolicy::default();
    let policy = RefreshPolicy {
        refresh_before_seconds: seconds(
            "tdx.collateral_refresh_before_seconds",
            t.collateral_refresh_before_seconds,
            defaults.refresh_before_seconds,
            0..=90 * 86_400,
            problems,
        ),
        grace_seconds: seconds(
            "tdx.collateral_grace_seconds",
            t.collateral_grace_seconds,
            defaults.grace_seconds,
            0..=MAX_GRACE_SECONDS,
            problems,
        ),
        retry_interval_seconds: seconds(
            "tdx.collateral_retry_seconds",
            t.collateral_retry_seconds,
            defaults.retry_interval_seconds,
            1..=MAX_RETRY_SECONDS,
            problems,
        ),
    };
    if problems.len() > before {
        return None;
    }
    let online = t.pcs_url.as_ref().map(|url| PcsConfig {
        base_url: url.clone(),
        root_ca_crl_url: t.root_ca_crl_url.clone(),
        timeout: Duration::from_secs(timeout),
        fetch: Arc::new(UreqFetch),
    });
    Some(TdxCollateralSource::new(TdxSourceConfig {
        offline_dir: t.collateral_dir.clone(),
        cache_dir: t.cache_dir.clone(),
        online,
        policy,
    }))
}

impl TdxConfigured {
    /// The normalised PCS / PCCS base URL when fetching is on.
    pub(crate) fn pcs_url(&self) -> Option<&str> {
        self.collateral.pcs_urls().map(|u| u.base())
    }

    /// Logs what `served` asks to be logged: each problem met on the way and stale use within the
    /// grace period at warn (at every use: an operator must see that the verifier runs on grace), a
    /// change of the collateral in use at info.
    fn log_served(&self, key: &PlatformKey, served: &Served) {
        for w in &served.warnings {
            tracing::warn!(platform = %key, error = %w, "TDX collateral: problem while getting it (collateral was still served)");
        }
        if let Some(stale) = &served.stale {
            tracing::warn!(
                platform = %key,
                origin = %served.origin,
                stale_since = stale.since,
                grace_until = stale.until(),
                grace_seconds = stale.grace_seconds,
                digest = %hex::encode(served.collateral.digest()),
                "TDX {stale}: verifying at its last current instant"
            );
        }
        let digest = *served.collateral.digest();
        let mut last = self
            .last_served
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.get(key) == Some(&digest) {
            return;
        }
        // Keys come from unverified quotes: bound the map.
        if last.len() >= MAX_PLATFORMS && !last.contains_key(key) {
            last.clear();
        }
        last.insert(*key, digest);
        drop(last);
        tracing::info!(
            platform = %key,
            origin = %served.origin,
            next_update = served.times.next_update,
            next_update_item = served.times.next_update_item,
            digest = %hex::encode(digest),
            "TDX collateral in use for this platform"
        );
    }
}

/// Which collateral an attestation used, for its "attestation result" record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CollateralUse {
    /// `offline`, `cache` or `fetched`.
    pub(crate) origin: &'static str,
    /// Past its nextUpdate, served within the grace period.
    pub(crate) stale_within_grace: bool,
}

impl CollateralUse {
    fn of(served: &Served) -> CollateralUse {
        CollateralUse {
            origin: match served.origin {
                Origin::Offline(_) => "offline",
                Origin::Cache(_) => "cache",
                Origin::Fetched(_) => "fetched",
            },
            stale_within_grace: served.stale.is_some(),
        }
    }

    /// The record's `collateral` value: `offline`, `cache`, `fetched`, with `,stale-within-grace`.
    pub(crate) fn as_record(self) -> &'static str {
        match (self.origin, self.stale_within_grace) {
            ("offline", false) => "offline",
            ("offline", true) => "offline,stale-within-grace",
            ("cache", false) => "cache",
            ("cache", true) => "cache,stale-within-grace",
            (_, false) => "fetched",
            (_, true) => "fetched,stale-within-grace",
        }
    }
}

/// A verified, bound and appraised TDX quote.
#[derive(Debug)]
pub(crate) struct AcceptedTdx {
    pub(crate) verified: VerifiedTdx,
    pub(crate) simulated: bool,
    pub(crate) mrtd: String,
    pub(crate) tcb_status: TcbStatus,
    pub(crate) selectors: Vec<String>,
}

/// What [`verify_tdx`] produced: the outcome, and the collateral used (when any was served).
pub(crate) struct TdxVerdict {
    pub(crate) collateral: Option<CollateralUse>,
    pub(crate) result: Result<AcceptedTdx, VerifyFailure>,
}

/// The blocking part for TDX (it may fetch collateral): parse, get the collateral for the quote's
/// platform, verify (once more with refreshed collateral when the verifier refuses the collateral),
/// bind, appraise under `policy` (the one taken for this attestation), map the policy's
/// `policy-match` selectors. A refusal after verification carries the verified quote, so its EAR can
/// say what was appraised.
pub(crate) fn verify_tdx(
    tdx: &TdxConfigured,
    policy: &Policy,
    quote: &[u8],
    nonce: &[u8],
    instance_key_der: &[u8],
    now: i64,
) -> TdxVerdict {
    let mut collateral = None;
    let result = verify_tdx_inner(
        tdx,
        policy,
        quote,
        nonce,
        instance_key_der,
        now,
        &mut collateral,
    );
    TdxVerdict { collateral, result }
}

fn verify_tdx_inner(
    tdx: &TdxConfigured,
    policy: &Policy,
    quote: &[u8],
    nonce: &[u8],
    instance_key_der: &[u8],
    now: i64,
    used: &mut Option<CollateralUse>,
) -> Result<AcceptedTdx, VerifyFailure> {
    let tdx_policy = policy.tdx_policy().map_err(|e| twi_core::Error::Internal {
        detail: format!("TDX evidence past the policy's TEE check: {e}"),
    })?;
    let quote = Quote::parse(quote)?;
    let key = PlatformKey::from_quote(&quote).map_err(twi_core::Error::from)?;
    let served = tdx.collateral.get(&key, now).map_err(|e| {
        tracing::warn!(platform = %key, error = %e, "TDX collateral unavailable: attestation refused");
        twi_core::Error::from(e)
    })?;
    tdx.log_served(&key, &served);
    *used = Some(CollateralUse::of(&served));
    let verified = match tdx.verifier.verify(
        &quote,
        &served.collateral,
        served.verification_time(now),
    ) {
        Err(e) if matches!(e.category(), "collateral-expired" | "collateral-signature") => {
            // The source thought it good, the verifier does not: fetch (when online) or re-read once.
            match tdx.collateral.refresh(&key, now) {
                Ok(fresh) if fresh.collateral.digest() != served.collateral.digest() => {
                    tracing::info!(platform = %key, refused = %e, "TDX collateral refused by the verifier; retrying with refreshed collateral");
                    tdx.log_served(&key, &fresh);
                    *used = Some(CollateralUse::of(&fresh));
                    tdx.verifier
                        .verify(&quote, &fresh.collateral, fresh.verification_time(now))
                }
                Ok(same) => {
                    for w in &same.warnings {
                        tracing::warn!(platform = %key, error = %w, "TDX collateral refresh failed");
                    }
                    Err(e)
                }
                Err(re) => {
                    tracing::warn!(platform = %key, error = %re, "TDX collateral refresh failed");
                    Err(e)
                }
            }
        }
        other => other,
    }?;
    let checked = check_report_data(&quote, &wire::report_data(nonce, instance_key_der))
        .and_then(|()| appraise(&verified, tdx_policy));
    match checked {
        Ok(appraisal) => {
            // The library prefixes `simulated:` itself; the plugin's own selectors already carry it.
            let mut selectors = selectors::tdx_selectors(&appraisal.claims);
            selectors.extend(policy.selectors_for(&appraisal));
            Ok(AcceptedTdx {
                simulated: verified.simulated(),
                mrtd: appraisal.claims.mrtd.clone(),
                tcb_status: verified.tcb_status(),
                selectors,
                verified,
            })
        }
        Err(error) => Err(VerifyFailure {
            error,
            verified: Some(VerifiedEvidence::Tdx(Box::new(verified))),
        }),
    }
}

/// The TDX agent ID's last segment: SHA-256 of the instance key's SubjectPublicKeyInfo DER, in hex.
///
/// TDX has no firmware-assigned per-TD identifier like SEV-SNP's REPORT_ID; the instance key, bound into
/// REPORTDATA and proven by the key proof, is the one thing unique to this TD instance that it can
/// prove. It is stable across re-attestations as long as the agent keeps the key (`instance_key_path`).
pub(crate) fn agent_id_segment(instance_key_der: &[u8]) -> String {
    hex::encode(Sha256::digest(instance_key_der))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn numbers_and_strings() {
        let n = |s: &str| parse_u64(&NumberOrString::String(s.into()));
        assert_eq!(n("0x10000000").unwrap(), 1 << 28);
        assert_eq!(n("0XFFFFFFFFFFFFFFFF").unwrap(), u64::MAX);
        assert_eq!(n("42").unwrap(), 42);
        assert!(n("0x1g").unwrap_err().contains("0x1g"));
        assert_eq!(parse_u64(&NumberOrString::Number(7)).unwrap(), 7);
    }

    #[test]
    fn pem_and_der_roots() {
        let der = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/vendor-roots/intel/IntelSGXRootCA.der"
        ))
        .unwrap();
        assert_eq!(root_der(&der).unwrap(), der);
        let pem =
            pkcs8::der::pem::encode_string("CERTIFICATE", pkcs8::LineEnding::LF, &der).unwrap();
        assert_eq!(root_der(pem.as_bytes()).unwrap(), der);
        let key =
            pkcs8::der::pem::encode_string("PRIVATE KEY", pkcs8::LineEnding::LF, &der).unwrap();
        assert!(root_der(key.as_bytes())
            .unwrap_err()
            .contains("PRIVATE KEY"));
    }

    #[test]
    fn agent_id_segment_is_the_key_digest() {
        let a = agent_id_segment(b"key-a");
        assert_eq!(a.len(), 64);
        assert_eq!(a, agent_id_segment(b"key-a"));
        assert_ne!(a, agent_id_segment(b"key-b"));
    }
}

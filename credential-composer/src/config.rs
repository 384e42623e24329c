//! The composer plugin's `plugin_data`: a public HCL struct (what operators write, `doc/plugin.md`) and
//! the validated [`Settings`] one [`build`] makes of it for both Configure and Validate, as SPIRE's
//! `pluginconf.Build` does.
//!
//! [`build`] has no side effects: it reads nothing but the directories that must exist, so Validate
//! (`spire-server validate`) never creates keys or logs. Configure opens them afterwards
//! ([`crate::plugin`]). Every problem is reported, each naming its key, so an operator fixes a
//! configuration in one round. Fail-closed choices are the defaults (`on_missing_attestation_result =
//! "refuse"`, `on_log_failure = "refuse"`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use const_oid::ObjectIdentifier;
use serde::Deserialize;
use twi_plugin::{from_hcl, ConfigError, CoreConfig};

use crate::cmw::ID_PE_CMW;
use crate::extension::DEFAULT_PROVENANCE_OID;
use crate::tlog::SequencerConfig;

/// Default `server_socket_path`: SPIRE server's default local API socket (`server.socket_path`).
pub const DEFAULT_SERVER_SOCKET_PATH: &str = "/tmp/spire-server/private/api.sock";
/// Default `entry_refresh_seconds`.
pub const DEFAULT_ENTRY_REFRESH_SECONDS: u64 = 5;
/// Longest accepted `entry_refresh_seconds`: older registration data would misattribute workloads.
pub const MAX_ENTRY_REFRESH_SECONDS: u64 = 3600;
/// Default `max_collection`: most EARs put in one collection CMW.
pub const DEFAULT_MAX_COLLECTION: usize = 8;
/// Largest accepted `max_collection` (a certificate must stay small enough for TLS handshakes).
pub const MAX_MAX_COLLECTION: usize = 64;
/// Default `workload_attestor_name`: the plugin name our workload attestor runs under in `agent.conf`.
pub const DEFAULT_WORKLOAD_ATTESTOR_NAME: &str = "twi";
/// Default `server_api_timeout_seconds`: how long one call to SPIRE's local API may take.
pub const DEFAULT_SERVER_API_TIMEOUT_SECONDS: u64 = 5;
/// Suffix of the default `log_origin` (after the trust domain).
pub const DEFAULT_LOG_ORIGIN_SUFFIX: &str = "/twi/cprov";
/// RFC 9162's SCT-list OID: never a valid choice for our extension (spec §3).
const RFC9162_OID: &str = "1.3.101.75";

/// `plugin_data` as written in `server.conf`. Unknown keys are errors.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The transparency log's directory (created on first start). Exactly one of `log_dir` and
    /// `log_database` is required.
    #[serde(default)]
    pub log_dir: Option<PathBuf>,
    /// The transparency log in PostgreSQL (`postgres://…`, `postgresql://…` or a `host=… dbname=…`
    /// conninfo), shared by SPIRE servers in HA: every replica appends to and serves the same log.
    #[serde(default)]
    pub log_database: Option<String>,
    /// The log's signed-note Ed25519 private key (Go `note` format), generated (0600) on first start.
    /// Required.
    #[serde(default)]
    pub log_key_path: Option<PathBuf>,
    /// Where the log's verifier key (vkey) is written at Configure, for auditors and relying parties.
    #[serde(default)]
    pub log_vkey_path: Option<PathBuf>,
    /// The checkpoint origin. Default `<trust_domain>/twi/cprov`. Must be the name in the log key.
    #[serde(default)]
    pub log_origin: Option<String>,
    /// The Ed25519 key provenance statements are signed with (PKCS#8 PEM), generated (0600) on first
    /// start. Required.
    #[serde(default)]
    pub provenance_key_path: Option<PathBuf>,
    /// Where its public key (SPKI PEM) is written at Configure, for relying parties.
    #[serde(default)]
    pub provenance_public_key_path: Option<PathBuf>,
    /// The OID of the provenance extension. Default [`DEFAULT_PROVENANCE_OID`].
    #[serde(default)]
    pub provenance_oid: Option<String>,
    /// CWT `iss` of provenance statements. Default: the log origin (this composer's log).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The node attestor's attestation-result store (`attestation_results.database` there):
    /// `sqlite:///path`, `postgres://…`, `postgresql://…` or a `host=… dbname=…` conninfo. Required.
    #[serde(default)]
    pub attestation_results_database: Option<String>,
    /// SPIRE server's local API socket (registration entries and agents). Default
    /// [`DEFAULT_SERVER_SOCKET_PATH`].
    #[serde(default)]
    pub server_socket_path: Option<PathBuf>,
    /// How long one local API call may take, 1 to 60 seconds. Default 5.
    #[serde(default)]
    pub server_api_timeout_seconds: Option<u64>,
    /// Registration entries are re-read at most this often (and once more on a miss), 1 to 3600.
    /// Default 5.
    #[serde(default)]
    pub entry_refresh_seconds: Option<u64>,
    /// Most candidate parent agents whose EARs go into a collection CMW, 2 to 64. Default 8.
    #[serde(default)]
    pub max_collection: Option<usize>,
    /// Refuse an agent SVID whose key is not the instance key bound in the attested evidence.
    /// Default false.
    #[serde(default)]
    pub require_key_binding: Option<bool>,
    /// `"refuse"` (default) or `"omit"`: what to do with an agent SVID whose agent has no current EAR.
    #[serde(default)]
    pub on_missing_attestation_result: Option<String>,
    /// `"refuse"` (default) or `"omit_provenance"`: what to do when a record cannot be logged.
    #[serde(default)]
    pub on_log_failure: Option<String>,
    /// `host:port` to serve the log's tiles and checkpoint on over HTTP. Absent: not served.
    #[serde(default)]
    pub log_serve_address: Option<String>,
    /// The selector type of our workload attestor (its plugin name in `agent.conf`). Default `twi`.
    #[serde(default)]
    pub workload_attestor_name: Option<String>,
    /// Batching of log appends.
    #[serde(default)]
    pub sequencer: Option<SequencerBlock>,
}

/// The `sequencer { … }` block: group-commit limits of the log.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequencerBlock {
    /// Most records per fsync and checkpoint signature, 1 to 65536. Default 4096.
    #[serde(default)]
    pub max_batch: Option<usize>,
    /// Longest a batch waits for more records after its first, 0 to 1000 ms. Default 1.
    #[serde(default)]
    pub max_wait_ms: Option<u64>,
    /// Most records waiting before appends fail at once, 1 to 1048576. Default 65536.
    #[serde(default)]
    pub max_queue: Option<usize>,
}

/// What to do with an agent SVID whose agent has no current attestation result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMissing {
    /// Fail the issuance (`FailedPrecondition`).
    Refuse,
    /// Issue without the CMW; the record says why there is no EAR.
    Omit,
}

impl OnMissing {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnMissing::Refuse => "refuse",
            OnMissing::Omit => "omit",
        }
    }
}

/// What to do when a record cannot be appended to the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnLogFailure {
    /// Fail the issuance (`Unavailable`): no credential leaves without its record.
    Refuse,
    /// Issue without the provenance extension (and without the JWT reference claims), logged at warn.
    OmitProvenance,
}

impl OnLogFailure {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnLogFailure::Refuse => "refuse",
            OnLogFailure::OmitProvenance => "omit_provenance",
        }
    }
}

/// The validated configuration. Nothing is opened yet.
#[derive(Clone)]
pub struct Settings {
    /// The trust domain name (no `spiffe://`).
    pub trust_domain: String,
    /// Where the log is kept.
    pub log_storage: LogStorage,
    pub log_key_path: PathBuf,
    pub log_vkey_path: Option<PathBuf>,
    pub log_origin: String,
    /// Whether `log_origin` was set (else the default was taken, and a key naming another origin is
    /// reported against `log_key_path` with the origin to set).
    pub log_origin_explicit: bool,
    pub provenance_key_path: PathBuf,
    pub provenance_public_key_path: Option<PathBuf>,
    pub provenance_oid: ObjectIdentifier,
    pub issuer: String,
    /// Store URL; may hold a password, so [`Settings`]' `Debug` never shows it.
    pub database: String,
    pub server_socket_path: PathBuf,
    pub server_api_timeout: Duration,
    pub entry_refresh: Duration,
    pub max_collection: usize,
    pub require_key_binding: bool,
    pub on_missing: OnMissing,
    pub on_log_failure: OnLogFailure,
    pub log_serve_address: Option<SocketAddr>,
    pub workload_attestor_name: String,
    pub sequencer: SequencerConfig,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("trust_domain", &self.trust_domain)
            .field("log_storage", &self.log_storage)
            .field("log_key_path", &self.log_key_path)
            .field("log_origin", &self.log_origin)
            .field("provenance_key_path", &self.provenance_key_path)
            .field("provenance_oid", &self.provenance_oid.to_string())
            .field("issuer", &self.issuer)
            .field("database", &redacted(&self.database))
            .field("server_socket_path", &self.server_socket_path)
            .field("entry_refresh", &self.entry_refresh)
            .field("max_collection", &self.max_collection)
            .field("require_key_binding", &self.require_key_binding)
            .field("on_missing", &self.on_missing)
            .field("on_log_failure", &self.on_log_failure)
            .field("log_serve_address", &self.log_serve_address)
            .field("workload_attestor_name", &self.workload_attestor_name)
            .finish_non_exhaustive()
    }
}

/// Where the transparency log is kept.
#[derive(Clone, PartialEq, Eq)]
pub enum LogStorage {
    /// A directory owned (flock'ed) by this server alone.
    Dir(PathBuf),
    /// A PostgreSQL database (URL or conninfo; may hold a password, so `Debug` never shows it) shared
    /// by every replica of an HA deployment.
    Database(String),
}

impl fmt::Debug for LogStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(d) => f.debug_tuple("Dir").field(d).finish(),
            Self::Database(url) => f.debug_tuple("Database").field(&redacted(url)).finish(),
        }
    }
}

impl LogStorage {
    /// The configuration key it came from, for errors.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Dir(_) => "log_dir",
            Self::Database(_) => "log_database",
        }
    }
}

impl fmt::Display for LogStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(d) => write!(f, "{}", d.display()),
            Self::Database(url) => write!(f, "postgresql {}", redacted(url)),
        }
    }
}

/// What may be shown of a database URL: its scheme (the rest may hold a password).
pub fn redacted(url: &str) -> String {
    match url.trim().split_once("://") {
        Some((scheme, _)) => format!("{scheme}://…"),
        None => "(conninfo)".into(),
    }
}

/// Collects problems; each names its key.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, detail: impl Into<String>) {
        self.0.push(ConfigError::InvalidValue {
            key: key.into(),
            detail: detail.into(),
        });
    }

    fn required(&mut self, key: &str, what: &str) {
        self.0.push(ConfigError::MissingKey {
            key: format!("{key} ({what})"),
        });
    }
}

/// A file that Configure will create or overwrite: its directory must exist and it must not be a
/// directory itself.
fn check_file_target(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty".into());
    }
    if path.is_dir() {
        return Err(format!("{} is a directory, want a file", path.display()));
    }
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => Err(format!(
            "directory {} does not exist (create it, owned by the SPIRE server's user)",
            dir.display()
        )),
        _ => Ok(()),
    }
}

/// SPIFFE trust domain names: lower-case letters, digits, `.`, `-`, `_`.
fn check_trust_domain(td: &str) -> Result<(), String> {
    if td.is_empty() {
        return Err("is empty".into());
    }
    match td
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        Some(c) => Err(format!(
            "{td:?} contains {c:?}, not allowed in a SPIFFE trust domain name"
        )),
        None => Ok(()),
    }
}

/// A signed-note key name: non-empty, printable, no spaces or `+` (c2sp.org/signed-note).
fn check_origin(origin: &str) -> Result<(), String> {
    if origin.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = origin
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '+')
    {
        return Err(format!(
            "{origin:?} contains {c:?}; a signed-note key name has no spaces or '+'"
        ));
    }
    Ok(())
}

/// A SPIRE plugin name used as a selector type: letters, digits, `.`, `-`, `_`, no `:`.
fn check_selector_type(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        Some(c) => Err(format!(
            "{name:?} contains {c:?}; it is the plugin name of the workload attestor in agent.conf"
        )),
        None => Ok(()),
    }
}

fn check_database(database: &str) -> Result<(), String> {
    if let Some(path) = database.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err("sqlite:// without a path (want sqlite:///abs/path)".into());
        }
        return check_file_target(Path::new(path)).map_err(|e| format!("sqlite path: {e}"));
    }
    let conninfo = !database.contains("://")
        && database
            .split_whitespace()
            .next()
            .is_some_and(|t| t.contains('='));
    let postgres = database.starts_with("postgres://") || database.starts_with("postgresql://");
    if conninfo || postgres {
        Ok(())
    } else {
        Err(format!(
            "{} is not sqlite://, postgres://, postgresql:// or a host=… conninfo",
            redacted(database)
        ))
    }
}

/// `log_database` must be PostgreSQL (the log's tables and row lock are PostgreSQL's).
fn check_postgres(database: &str) -> Result<(), String> {
    let database = database.trim();
    if database.starts_with("sqlite://") {
        return Err(
            "the log is shared through PostgreSQL only (postgres://, postgresql:// or a host=… \
             conninfo); for one server use log_dir"
                .into(),
        );
    }
    check_database(database)
}

fn parse_oid(text: &str) -> Result<ObjectIdentifier, String> {
    let oid = ObjectIdentifier::new(text.trim())
        .map_err(|e| format!("{text:?} is not a dotted OID: {e}"))?;
    if oid == ID_PE_CMW {
        return Err(format!(
            "{oid} is id-pe-cmw, which carries the attestation result; choose a project OID"
        ));
    }
    if oid.to_string() == RFC9162_OID {
        return Err(format!(
            "{oid} is RFC 9162's SCT list OID; choose a project OID"
        ));
    }
    // The standard certificate extensions (2.5.29.*) are derived by SPIRE's template; a duplicate
    // would make Go refuse the certificate.
    if oid.to_string().starts_with("2.5.29.") {
        return Err(format!(
            "{oid} is a standard X.509 extension (2.5.29.*); choose a project OID"
        ));
    }
    Ok(oid)
}

fn in_range<T: PartialOrd + fmt::Display + Copy>(
    problems: &mut Problems,
    key: &str,
    value: T,
    lo: T,
    hi: T,
) -> T {
    if value < lo || value > hi {
        problems.add(key, format!("{value} is out of range {lo}..={hi}"));
    }
    value
}

/// Parses and validates `hcl` for `core.trust_domain`. No side effects.
///
/// # Errors
///
/// Every problem found, each a [`ConfigError`] naming its key.
pub fn build(core: &CoreConfig, hcl: &str) -> Result<Settings, Vec<ConfigError>> {
    let cfg: Config = from_hcl(hcl).map_err(|e| vec![e])?;
    let mut p = Problems::default();
    if let Err(e) = check_trust_domain(&core.trust_domain) {
        p.add("core_configuration.trust_domain", e);
    }
    let td = core.trust_domain.clone();

    let log_storage = match (&cfg.log_dir, &cfg.log_database) {
        (Some(d), None) => LogStorage::Dir(d.clone()),
        (None, Some(url)) => {
            if let Err(e) = check_postgres(url) {
                p.add("log_database", e);
            }
            LogStorage::Database(url.trim().to_owned())
        }
        (Some(_), Some(_)) => {
            p.add(
                "log_database",
                "set either log_dir (one server) or log_database (HA servers sharing PostgreSQL),                  not both",
            );
            LogStorage::Dir(PathBuf::new())
        }
        (None, None) => {
            p.required(
                "log_dir",
                "the transparency log's directory; or log_database for HA servers",
            );
            LogStorage::Dir(PathBuf::new())
        }
    };
    match &cfg.log_dir {
        None => {}
        Some(d) if d.as_os_str().is_empty() => p.add("log_dir", "must not be empty"),
        Some(d) if d.exists() && !d.is_dir() => {
            p.add("log_dir", format!("{} is not a directory", d.display()));
        }
        Some(d) => {
            if let Some(parent) = d.parent().filter(|x| !x.as_os_str().is_empty()) {
                if !d.exists() && !parent.is_dir() {
                    p.add(
                        "log_dir",
                        format!("parent directory {} does not exist", parent.display()),
                    );
                }
            }
        }
    }
    let mut file_key = |key: &str, value: &Option<PathBuf>, required: Option<&str>| {
        match (value, required) {
            (None, Some(what)) => p.required(key, what),
            (None, None) => {}
            (Some(path), _) => {
                if let Err(e) = check_file_target(path) {
                    p.add(key, e);
                }
            }
        }
        value.clone()
    };
    let log_key_path = file_key(
        "log_key_path",
        &cfg.log_key_path,
        Some("the log's signing key, generated on first start"),
    )
    .unwrap_or_default();
    let log_vkey_path = file_key("log_vkey_path", &cfg.log_vkey_path, None);
    let provenance_key_path = file_key(
        "provenance_key_path",
        &cfg.provenance_key_path,
        Some("the statement signing key, generated on first start"),
    )
    .unwrap_or_default();
    let provenance_public_key_path = file_key(
        "provenance_public_key_path",
        &cfg.provenance_public_key_path,
        None,
    );

    let log_origin = cfg
        .log_origin
        .clone()
        .unwrap_or_else(|| format!("{td}{DEFAULT_LOG_ORIGIN_SUFFIX}"));
    if let Err(e) = check_origin(&log_origin) {
        p.add("log_origin", e);
    }
    let issuer = cfg.issuer.clone().unwrap_or_else(|| log_origin.clone());
    if issuer.trim().is_empty() {
        p.add("issuer", "must not be empty");
    }

    let provenance_oid = match parse_oid(
        cfg.provenance_oid
            .as_deref()
            .unwrap_or(DEFAULT_PROVENANCE_OID),
    ) {
        Ok(oid) => Some(oid),
        Err(e) => {
            p.add("provenance_oid", e);
            None
        }
    };

    let database = cfg
        .attestation_results_database
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    if cfg.attestation_results_database.is_none() {
        p.required(
            "attestation_results_database",
            "the node attestor's attestation_results.database",
        );
    } else if let Err(e) = check_database(&database) {
        p.add("attestation_results_database", e);
    }

    let server_socket_path = cfg
        .server_socket_path
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SERVER_SOCKET_PATH));
    if !server_socket_path.is_absolute() {
        p.add(
            "server_socket_path",
            format!("{} is not an absolute path", server_socket_path.display()),
        );
    }
    let timeout = in_range(
        &mut p,
        "server_api_timeout_seconds",
        cfg.server_api_timeout_seconds
            .unwrap_or(DEFAULT_SERVER_API_TIMEOUT_SECONDS),
        1,
        60,
    );
    let refresh = in_range(
        &mut p,
        "entry_refresh_seconds",
        cfg.entry_refresh_seconds
            .unwrap_or(DEFAULT_ENTRY_REFRESH_SECONDS),
        1,
        MAX_ENTRY_REFRESH_SECONDS,
    );
    let max_collection = in_range(
        &mut p,
        "max_collection",
        cfg.max_collection.unwrap_or(DEFAULT_MAX_COLLECTION),
        2,
        MAX_MAX_COLLECTION,
    );

    let on_missing = match cfg.on_missing_attestation_result.as_deref() {
        None | Some("refuse") => OnMissing::Refuse,
        Some("omit") => OnMissing::Omit,
        Some(other) => {
            p.add(
                "on_missing_attestation_result",
                format!("{other:?} is not \"refuse\" or \"omit\""),
            );
            OnMissing::Refuse
        }
    };
    let on_log_failure = match cfg.on_log_failure.as_deref() {
        None | Some("refuse") => OnLogFailure::Refuse,
        Some("omit_provenance") => OnLogFailure::OmitProvenance,
        Some(other) => {
            p.add(
                "on_log_failure",
                format!("{other:?} is not \"refuse\" or \"omit_provenance\""),
            );
            OnLogFailure::Refuse
        }
    };

    let log_serve_address =
        cfg.log_serve_address
            .as_deref()
            .and_then(|a| match a.trim().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(e) => {
                    p.add(
                        "log_serve_address",
                        format!("{a:?} is not an IP:port address: {e}"),
                    );
                    None
                }
            });

    let workload_attestor_name = cfg
        .workload_attestor_name
        .clone()
        .unwrap_or_else(|| DEFAULT_WORKLOAD_ATTESTOR_NAME.to_owned());
    if let Err(e) = check_selector_type(&workload_attestor_name) {
        p.add("workload_attestor_name", e);
    }

    let defaults = SequencerConfig::default();
    let seq = cfg.sequencer.clone().unwrap_or_default();
    let sequencer = SequencerConfig {
        max_batch: in_range(
            &mut p,
            "sequencer.max_batch",
            seq.max_batch.unwrap_or(defaults.max_batch),
            1,
            65_536,
        ),
        max_wait: Duration::from_millis(in_range(
            &mut p,
            "sequencer.max_wait_ms",
            seq.max_wait_ms
                .unwrap_or(u64::try_from(defaults.max_wait.as_millis()).unwrap_or(0)),
            0,
            1000,
        )),
        max_queue: in_range(
            &mut p,
            "sequencer.max_queue",
            seq.max_queue.unwrap_or(defaults.max_queue),
            1,
            1_048_576,
        ),
    };

    if !p.0.is_empty() {
        return Err(p.0);
    }
    let Some(provenance_oid) = provenance_oid else {
        return Err(vec![ConfigError::InvalidValue {
            key: "provenance_oid".into(),
            detail: "no OID".into(),
        }]);
    };
    Ok(Settings {
        trust_domain: td,
        log_storage,
        log_key_path,
        log_vkey_path,
        log_origin,
        log_origin_explicit: cfg.log_origin.is_some(),
        provenance_key_path,
        provenance_public_key_path,
        provenance_oid,
        issuer,
        database,
        server_socket_path,
        server_api_timeout: Duration::from_secs(timeout),
        entry_refresh: Duration::from_secs(refresh),
        max_collection,
        require_key_binding: cfg.require_key_binding.unwrap_or(false),
        on_missing,
        on_log_failure,
        log_serve_address,
        workload_attestor_name,
        sequencer,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn core() -> CoreConfig {
        CoreConfig::new("example.org")
    }

    fn minimal(dir: &Path) -> String {
        format!(
            r#"
            log_dir = "{d}/log"
            log_key_path = "{d}/log.key"
            provenance_key_path = "{d}/prov.pem"
            attestation_results_database = "sqlite://{d}/results.db"
            "#,
            d = dir.display()
        )
    }

    fn keys(hcl: &str) -> Vec<String> {
        match build(&core(), hcl) {
            Ok(_) => panic!("accepted: {hcl}"),
            Err(errs) => errs
                .iter()
                .map(|e| match e {
                    ConfigError::InvalidValue { key, .. }
                    | ConfigError::MissingKey { key }
                    | ConfigError::UnknownKey { key, .. } => key.clone(),
                    other => other.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn defaults() {
        let dir = tempfile::tempdir().unwrap();
        let s = build(&core(), &minimal(dir.path())).unwrap();
        assert_eq!(s.log_origin, "example.org/twi/cprov");
        assert!(!s.log_origin_explicit);
        assert_eq!(s.issuer, s.log_origin);
        assert_eq!(s.provenance_oid.to_string(), DEFAULT_PROVENANCE_OID);
        assert_eq!(
            s.server_socket_path,
            PathBuf::from("/tmp/spire-server/private/api.sock")
        );
        assert_eq!(s.entry_refresh, Duration::from_secs(5));
        assert_eq!(s.server_api_timeout, Duration::from_secs(5));
        assert_eq!(s.max_collection, 8);
        assert!(!s.require_key_binding);
        assert_eq!(s.on_missing, OnMissing::Refuse);
        assert_eq!(s.on_log_failure, OnLogFailure::Refuse);
        assert_eq!(s.log_serve_address, None);
        assert_eq!(s.workload_attestor_name, "twi");
        assert_eq!(s.sequencer.max_batch, SequencerConfig::default().max_batch);
        assert!(!dir.path().join("log").exists(), "build creates nothing");
    }

    #[test]
    fn every_key_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let hcl = format!(
            r#"{}
            log_vkey_path = "{d}/log.vkey"
            log_origin = "example.org/audit/log"
            provenance_public_key_path = "{d}/prov.pub"
            provenance_oid = "1.3.6.1.4.1.99999.7"
            issuer = "example.org/server-a"
            server_socket_path = "/run/spire/api.sock"
            server_api_timeout_seconds = 2
            entry_refresh_seconds = 30
            max_collection = 3
            require_key_binding = true
            on_missing_attestation_result = "omit"
            on_log_failure = "omit_provenance"
            log_serve_address = "127.0.0.1:8088"
            workload_attestor_name = "twi_wa"
            sequencer {{
                max_batch = 16
                max_wait_ms = 0
                max_queue = 100
            }}
            "#,
            minimal(dir.path()),
            d = dir.path().display()
        );
        let s = build(&core(), &hcl).unwrap();
        assert_eq!(s.log_origin, "example.org/audit/log");
        assert!(s.log_origin_explicit);
        assert_eq!(s.issuer, "example.org/server-a");
        assert_eq!(s.provenance_oid.to_string(), "1.3.6.1.4.1.99999.7");
        assert_eq!(s.server_api_timeout, Duration::from_secs(2));
        assert_eq!(s.entry_refresh, Duration::from_secs(30));
        assert_eq!(s.max_collection, 3);
        assert!(s.require_key_binding);
        assert_eq!(s.on_missing, OnMissing::Omit);
        assert_eq!(s.on_log_failure, OnLogFailure::OmitProvenance);
        assert_eq!(s.log_serve_address, Some("127.0.0.1:8088".parse().unwrap()));
        assert_eq!(s.workload_attestor_name, "twi_wa");
        assert_eq!(s.sequencer.max_batch, 16);
        assert_eq!(s.sequencer.max_wait, Duration::ZERO);
        assert_eq!(s.sequencer.max_queue, 100);
    }

    #[test]
    fn required_keys_are_named() {
        let k = keys("");
        for want in [
            "log_dir",
            "log_key_path",
            "provenance_key_path",
            "attestation_results_database",
        ] {
            assert!(k.iter().any(|x| x.starts_with(want)), "{want} in {k:?}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let base = minimal(dir.path());
        for (line, key) in [
            ("provenance_oid = \"1.3.6.1.5.5.7.1.35\"", "provenance_oid"),
            ("provenance_oid = \"1.3.101.75\"", "provenance_oid"),
            ("provenance_oid = \"2.5.29.17\"", "provenance_oid"),
            ("provenance_oid = \"not.an.oid\"", "provenance_oid"),
            ("entry_refresh_seconds = 0", "entry_refresh_seconds"),
            ("max_collection = 1", "max_collection"),
            ("max_collection = 65", "max_collection"),
            (
                "on_missing_attestation_result = \"allow\"",
                "on_missing_attestation_result",
            ),
            ("on_log_failure = \"ignore\"", "on_log_failure"),
            ("log_serve_address = \"localhost\"", "log_serve_address"),
            ("log_origin = \"a b\"", "log_origin"),
            (
                "workload_attestor_name = \"tw:i\"",
                "workload_attestor_name",
            ),
            ("server_socket_path = \"api.sock\"", "server_socket_path"),
            (
                "server_api_timeout_seconds = 0",
                "server_api_timeout_seconds",
            ),
            (
                "sequencer {\n max_wait_ms = 5000\n}",
                "sequencer.max_wait_ms",
            ),
            ("log_vkey_path = \"/nonexistent-dir/x\"", "log_vkey_path"),
        ] {
            assert_eq!(keys(&format!("{base}\n{line}\n")), [key], "{line}");
        }
        assert_eq!(keys(&format!("{base}\nlog_dri = \"/x\"\n")), ["log_dri"]);
        let bad_db = format!(
            "{}\nattestation_results_database = \"mysql://u:secret@h/db\"\n",
            base.replace("attestation_results_database", "#")
        );
        let errs = build(&core(), &bad_db).unwrap_err();
        let text = format!("{errs:?}");
        assert!(!text.contains("secret"), "password leaked: {text}");
        assert_eq!(keys(&bad_db), ["attestation_results_database"]);
    }

    #[test]
    fn settings_debug_hides_the_database_url() {
        let dir = tempfile::tempdir().unwrap();
        let hcl = minimal(dir.path()).replace(
            &format!("sqlite://{}/results.db", dir.path().display()),
            "postgres://spire:hunter2@db/spire",
        );
        let s = build(&core(), &hcl).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn log_database_replaces_log_dir() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = format!("log_dir = \"{}/log\"", dir.path().display());
        let with_db =
            |db: &str| minimal(dir.path()).replace(&log_dir, &format!("log_database = {db:?}"));

        let s = build(&core(), &with_db("postgres://spire:hunter2@db/spire")).unwrap();
        assert_eq!(
            s.log_storage,
            LogStorage::Database("postgres://spire:hunter2@db/spire".into())
        );
        assert_eq!(s.log_storage.key(), "log_database");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!s.log_storage.to_string().contains("hunter2"));
        let s = build(&core(), &with_db("host=/run/pg dbname=spire")).unwrap();
        assert_eq!(s.log_storage.key(), "log_database");
        let s = build(&core(), &minimal(dir.path())).unwrap();
        assert_eq!(s.log_storage, LogStorage::Dir(dir.path().join("log")));

        // Exactly one of the two.
        let both = format!(
            "{}\nlog_database = \"postgres://db/spire\"",
            minimal(dir.path())
        );
        assert_eq!(keys(&both), ["log_database"]);
        let neither = minimal(dir.path()).replace(&log_dir, "");
        assert_eq!(keys(&neither).len(), 1);
        assert!(
            keys(&neither)[0].starts_with("log_dir"),
            "{:?}",
            keys(&neither)
        );
        // PostgreSQL only, and a recognisable one.
        assert_eq!(keys(&with_db("sqlite:///tmp/log.db")), ["log_database"]);
        assert_eq!(keys(&with_db("mysql://db/spire")), ["log_database"]);
    }
}

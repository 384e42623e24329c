//! The plugin's `plugin_data`: HCL → validated [`Settings`].
//!
//! ```hcl
//! discover_path    = true          # path:<exe>            (reads /proc/<pid>/exe)
//! discover_digest  = true          # sha256:<exe digest>   (hashes the file /proc/<pid>/exe opens)
//! max_digest_bytes = 1073741824    # refuse to hash larger executables
//! cache_entries    = 1024          # digests kept by file identity; 0 = no cache
//! proc_root        = "/proc"       # the host's /proc when the agent runs in a container
//!
//! provenance {                     # optional: signed provenance, looked up by the exe's SHA-256
//!   store_dir    = "/var/lib/twi/attestations"
//!   trusted_keys = [
//!     { name = "ci", public_key_path = "/etc/twi/keys/ci.pub", key_id = "ci-2025", build_level = 3 },
//!   ]
//!   max_attestation_bytes = 16777216
//!   max_attestations      = 16
//! }
//! ```
//!
//! Every key is optional, so an empty `plugin_data` is valid. Unlike SPIRE's `unix` attestor (whose
//! `discover_workload_path` defaults to false), path and digest are on by default: they are what this
//! plugin is for, and what provenance (phase 2) is looked up by. Both need the agent to be allowed to read
//! `/proc/<pid>/exe` of the workload (root, or CAP_SYS_PTRACE, or the workload's own user).
//!
//! [`build`] serves both Configure and Validate, as SPIRE's `pluginconf.Build`: it only parses and checks
//! values. [`check_paths`] looks at the file system (the provenance store and keys are opened by
//! [`crate::provenance::store::DsseStore::open`]). Every error names its key.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use twi_plugin::{from_hcl, ConfigError};

/// Default `max_digest_bytes`: 1 GiB, above any real executable yet a bound on the work one workload can
/// ask of the agent.
pub const DEFAULT_MAX_DIGEST_BYTES: u64 = 1 << 30;
/// Default `cache_entries`.
pub const DEFAULT_CACHE_ENTRIES: usize = 1024;
/// Largest `cache_entries`: the cache's memory (about 100 bytes an entry) stays bounded whatever the
/// configuration says.
pub const MAX_CACHE_ENTRIES: usize = 1 << 20;
/// Default `proc_root`.
pub const DEFAULT_PROC_ROOT: &str = "/proc";
/// Default `provenance.max_attestation_bytes`: 16 MiB, room for the SBOM of a large image.
pub const DEFAULT_MAX_ATTESTATION_BYTES: u64 = 16 << 20;
/// Largest `provenance.max_attestation_bytes`: a file is read whole and parsed into memory.
pub const MAX_ATTESTATION_BYTES: u64 = 256 << 20;
/// Default `provenance.max_attestations`: attestations read per executable digest.
pub const DEFAULT_MAX_ATTESTATIONS: usize = 16;
/// Largest `provenance.max_attestations`.
pub const MAX_ATTESTATIONS: usize = 1024;
/// Largest `provenance.trusted_keys[].build_level` (SLSA v1 defines Build L0–L3).
pub const MAX_BUILD_LEVEL: u8 = 3;
/// Longest trusted key name.
pub const MAX_KEY_NAME_LEN: usize = 64;

/// The HCL keys, as written by the operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Emit `path:<exe>`.
    #[serde(default = "yes")]
    pub discover_path: bool,
    /// Emit `sha256:<digest>` of the executable.
    #[serde(default = "yes")]
    pub discover_digest: bool,
    /// The largest executable hashed; larger ones fail attestation.
    #[serde(default = "default_max_digest_bytes")]
    pub max_digest_bytes: u64,
    /// Digests cached by file identity.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// Where `/proc` is.
    #[serde(default = "default_proc_root")]
    pub proc_root: PathBuf,
    /// Signed provenance; absent = none.
    #[serde(default)]
    pub provenance: Option<ProvenanceConfig>,
}

/// The `provenance { … }` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceConfig {
    /// The attestation store's root directory.
    pub store_dir: PathBuf,
    /// The keys whose signatures are trusted.
    pub trusted_keys: Vec<TrustedKeyConfig>,
    /// Largest attestation file read.
    #[serde(default = "default_max_attestation_bytes")]
    pub max_attestation_bytes: u64,
    /// Most attestations read for one digest.
    #[serde(default = "default_max_attestations")]
    pub max_attestations: usize,
}

/// One `trusted_keys` element.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyConfig {
    /// The operator's name for the signer (`provenance:signer:<name>`).
    pub name: String,
    /// PEM public key file.
    pub public_key_path: PathBuf,
    /// DSSE `keyid` the signer puts in its signatures, if any.
    #[serde(default)]
    pub key_id: Option<String>,
    /// SLSA build level the operator vouches the signer's build platform meets.
    #[serde(default)]
    pub build_level: Option<u8>,
}

fn default_max_attestation_bytes() -> u64 {
    DEFAULT_MAX_ATTESTATION_BYTES
}

fn default_max_attestations() -> usize {
    DEFAULT_MAX_ATTESTATIONS
}

fn yes() -> bool {
    true
}

fn default_max_digest_bytes() -> u64 {
    DEFAULT_MAX_DIGEST_BYTES
}

fn default_cache_entries() -> usize {
    DEFAULT_CACHE_ENTRIES
}

fn default_proc_root() -> PathBuf {
    PathBuf::from(DEFAULT_PROC_ROOT)
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Emit `path:`.
    pub discover_path: bool,
    /// Emit `sha256:`.
    pub discover_digest: bool,
    /// Hash limit in bytes (at least 1).
    pub max_digest_bytes: u64,
    /// Cache capacity (0 disables the cache).
    pub cache_entries: usize,
    /// `/proc` (absolute).
    pub proc_root: PathBuf,
    /// The provenance store, if configured.
    pub provenance: Option<ProvenanceSettings>,
}

/// A validated `provenance` block (paths not yet opened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenanceSettings {
    /// Store root (absolute).
    pub store_dir: PathBuf,
    /// Trusted keys (at least one; unique names).
    pub trusted_keys: Vec<TrustedKeySettings>,
    /// Largest attestation file read, 1..=[`MAX_ATTESTATION_BYTES`].
    pub max_attestation_bytes: u64,
    /// Most attestations read per digest, 1..=[`MAX_ATTESTATIONS`].
    pub max_attestations: usize,
}

/// A validated trusted key entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKeySettings {
    /// Name: 1 to [`MAX_KEY_NAME_LEN`] of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// Key file (absolute).
    pub public_key_path: PathBuf,
    /// DSSE `keyid` (non-empty when set).
    pub key_id: Option<String>,
    /// SLSA build level, 1..=[`MAX_BUILD_LEVEL`].
    pub build_level: Option<u8>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            discover_path: true,
            discover_digest: true,
            max_digest_bytes: DEFAULT_MAX_DIGEST_BYTES,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            proc_root: PathBuf::from(DEFAULT_PROC_ROOT),
            provenance: None,
        }
    }
}

impl Settings {
    /// Whether `/proc/<pid>/exe` must be opened.
    #[must_use]
    pub fn wants_exe(&self) -> bool {
        self.discover_path || self.discover_digest
    }
}

/// Parses and checks `hcl` without touching the file system.
///
/// # Errors
///
/// [`ConfigError`] naming the key: unknown keys, wrong types, `max_digest_bytes = 0`, `cache_entries` over
/// [`MAX_CACHE_ENTRIES`], a relative or empty `proc_root`; in `provenance`: a relative `store_dir` or
/// `public_key_path`, no `trusted_keys`, a bad or repeated key name, an empty `key_id`, a `build_level`
/// outside 1..=3, limits outside their ranges.
pub fn build(hcl: &str) -> Result<Settings, ConfigError> {
    let cfg: Config = from_hcl(hcl)?;
    let invalid = |key: &str, detail: String| ConfigError::InvalidValue {
        key: key.to_owned(),
        detail,
    };
    if cfg.max_digest_bytes == 0 {
        return Err(invalid(
            "max_digest_bytes",
            "must be at least 1 (set discover_digest = false to hash nothing)".into(),
        ));
    }
    if cfg.cache_entries > MAX_CACHE_ENTRIES {
        return Err(invalid(
            "cache_entries",
            format!(
                "{} is over the maximum of {MAX_CACHE_ENTRIES}",
                cfg.cache_entries
            ),
        ));
    }
    if !cfg.proc_root.is_absolute() {
        return Err(invalid(
            "proc_root",
            format!(
                "{:?} is not an absolute path",
                cfg.proc_root.display().to_string()
            ),
        ));
    }
    let provenance = cfg.provenance.map(build_provenance).transpose()?;
    Ok(Settings {
        discover_path: cfg.discover_path,
        discover_digest: cfg.discover_digest,
        max_digest_bytes: cfg.max_digest_bytes,
        cache_entries: cfg.cache_entries,
        proc_root: cfg.proc_root,
        provenance,
    })
}

fn build_provenance(cfg: ProvenanceConfig) -> Result<ProvenanceSettings, ConfigError> {
    let invalid = |key: String, detail: String| ConfigError::InvalidValue { key, detail };
    let absolute = |key: String, p: &Path| {
        if p.is_absolute() {
            Ok(())
        } else {
            Err(invalid(
                key,
                format!("{:?} is not an absolute path", p.display().to_string()),
            ))
        }
    };
    absolute("provenance.store_dir".into(), &cfg.store_dir)?;
    if cfg.trusted_keys.is_empty() {
        return Err(invalid(
            "provenance.trusted_keys".into(),
            "at least one key is needed: without one nothing can verify".into(),
        ));
    }
    if cfg.max_attestation_bytes == 0 || cfg.max_attestation_bytes > MAX_ATTESTATION_BYTES {
        return Err(invalid(
            "provenance.max_attestation_bytes".into(),
            format!(
                "{} is outside 1..={MAX_ATTESTATION_BYTES}",
                cfg.max_attestation_bytes
            ),
        ));
    }
    if cfg.max_attestations == 0 || cfg.max_attestations > MAX_ATTESTATIONS {
        return Err(invalid(
            "provenance.max_attestations".into(),
            format!("{} is outside 1..={MAX_ATTESTATIONS}", cfg.max_attestations),
        ));
    }
    let mut keys: Vec<TrustedKeySettings> = Vec::with_capacity(cfg.trusted_keys.len());
    for (i, k) in cfg.trusted_keys.into_iter().enumerate() {
        let key = |field: &str| format!("provenance.trusted_keys[{i}].{field}");
        let name_ok = !k.name.is_empty()
            && k.name.len() <= MAX_KEY_NAME_LEN
            && k.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(invalid(
                key("name"),
                format!(
                    "{:?}: use 1 to {MAX_KEY_NAME_LEN} of A-Z a-z 0-9 . _ - (it becomes a selector value)",
                    k.name
                ),
            ));
        }
        if keys.iter().any(|other| other.name == k.name) {
            return Err(invalid(key("name"), format!("{:?} is used twice", k.name)));
        }
        absolute(key("public_key_path"), &k.public_key_path)?;
        if k.key_id.as_deref() == Some("") {
            return Err(invalid(
                key("key_id"),
                "empty: leave it out to try the key on every signature".into(),
            ));
        }
        if let Some(level) = k.build_level {
            if level == 0 || level > MAX_BUILD_LEVEL {
                return Err(invalid(
                    key("build_level"),
                    format!("{level} is outside 1..={MAX_BUILD_LEVEL}"),
                ));
            }
        }
        keys.push(TrustedKeySettings {
            name: k.name,
            public_key_path: k.public_key_path,
            key_id: k.key_id,
            build_level: k.build_level,
        });
    }
    Ok(ProvenanceSettings {
        store_dir: cfg.store_dir,
        trusted_keys: keys,
        max_attestation_bytes: cfg.max_attestation_bytes,
        max_attestations: cfg.max_attestations,
    })
}

/// Checks what `settings` names on the file system: `proc_root` must be a directory.
///
/// # Errors
///
/// [`ConfigError::InvalidValue`] for `proc_root`.
pub fn check_paths(settings: &Settings) -> Result<(), ConfigError> {
    let root: &Path = &settings.proc_root;
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ConfigError::InvalidValue {
            key: "proc_root".into(),
            detail: format!("{} is not a directory", root.display()),
        }),
        Err(e) => Err(ConfigError::InvalidValue {
            key: "proc_root".into(),
            detail: format!("{}: {e}", root.display()),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn empty_is_all_defaults() {
        assert_eq!(build("").unwrap(), Settings::default());
        assert!(Settings::default().wants_exe());
    }

    #[test]
    fn every_key_is_read() {
        let s = build(
            "discover_path = false\ndiscover_digest = false\nmax_digest_bytes = 4096\n\
             cache_entries = 0\nproc_root = \"/host/proc\"\n",
        )
        .unwrap();
        assert_eq!(
            s,
            Settings {
                discover_path: false,
                discover_digest: false,
                max_digest_bytes: 4096,
                cache_entries: 0,
                proc_root: "/host/proc".into(),
                provenance: None,
            }
        );
        assert!(!s.wants_exe());
        // SPIRE's HCL v1 printer keeps quoted keys.
        assert!(!build("\"discover_path\" = false").unwrap().discover_path);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "discover_workload_path = true",
                "unknown key `discover_workload_path`",
            ),
            (
                "max_digest_bytes = 0",
                "invalid value for `max_digest_bytes`",
            ),
            (
                "max_digest_bytes = -1",
                "invalid value for `max_digest_bytes`",
            ),
            (
                "cache_entries = 2000000",
                "invalid value for `cache_entries`",
            ),
            (
                "discover_digest = \"yes\"",
                "invalid value for `discover_digest`",
            ),
            ("proc_root = \"proc\"", "invalid value for `proc_root`"),
            ("proc_root = \"\"", "invalid value for `proc_root`"),
        ];
        for (hcl, want) in cases {
            let err = build(hcl).unwrap_err().to_string();
            assert!(err.starts_with(want), "{hcl}: {err}");
        }
    }

    /// The keys serde accepts where `hcl` puts an unknown key (from the unknown-key error).
    fn accepted_keys(hcl: &str) -> Vec<String> {
        let err = build(hcl).unwrap_err();
        let ConfigError::UnknownKey { expected, .. } = err else {
            panic!("unexpected {err:?}");
        };
        let mut keys: Vec<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn doc_configuration_table_lists_exactly_the_keys() {
        const DOC: &str = include_str!("../doc/plugin_agent_workloadattestor_twi.md");
        let section = DOC.split("\n## Configuration\n").nth(1).unwrap();
        let section = section.split("\n## ").next().unwrap();
        let documented: Vec<&str> = section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| l.split('|').nth(1).unwrap().trim().trim_matches('`'))
            .collect();
        // Rows are `key`, `provenance.key` and `provenance.trusted_keys[].key`, grouped by their parent.
        let under = |parent: &str| {
            let mut keys: Vec<String> = documented
                .iter()
                .filter_map(|k| match k.rsplit_once('.') {
                    Some((p, leaf)) if p == parent => Some(leaf.to_owned()),
                    None if parent.is_empty() => Some((*k).to_owned()),
                    _ => None,
                })
                .collect();
            keys.sort_unstable();
            keys
        };
        assert_eq!(under(""), accepted_keys("no_such_key = 1"), "top level");
        assert_eq!(
            under("provenance"),
            accepted_keys("provenance {\n  no_such_key = 1\n}"),
            "provenance block"
        );
        assert_eq!(
            under("provenance.trusted_keys[]"),
            accepted_keys("provenance {\n  trusted_keys = [{ no_such_key = 1 }]\n}"),
            "trusted_keys elements"
        );
    }

    const PROVENANCE: &str = r#"
        provenance {
          store_dir = "/var/lib/twi/attestations"
          trusted_keys = [
            { name = "ci", public_key_path = "/etc/twi/ci.pub", key_id = "k1", build_level = 3 },
            { name = "release-2", public_key_path = "/etc/twi/rel.pub" },
          ]
          max_attestation_bytes = 1024
          max_attestations = 2
        }
    "#;

    #[test]
    fn provenance_block_is_read() {
        let p = build(PROVENANCE).unwrap().provenance.unwrap();
        assert_eq!(
            p,
            ProvenanceSettings {
                store_dir: "/var/lib/twi/attestations".into(),
                trusted_keys: vec![
                    TrustedKeySettings {
                        name: "ci".into(),
                        public_key_path: "/etc/twi/ci.pub".into(),
                        key_id: Some("k1".into()),
                        build_level: Some(3),
                    },
                    TrustedKeySettings {
                        name: "release-2".into(),
                        public_key_path: "/etc/twi/rel.pub".into(),
                        key_id: None,
                        build_level: None,
                    },
                ],
                max_attestation_bytes: 1024,
                max_attestations: 2,
            }
        );
        // Defaults, and the attribute form `provenance = { … }` with newline-separated elements, as
        // SPIRE's HCL v1 printer may write it.
        let p = build(
            "provenance = {\n  store_dir = \"/s\"\n  trusted_keys = [\n    {\n      name = \"a\"\n      public_key_path = \"/k\"\n    }\n  ]\n}\n",
        )
        .unwrap()
        .provenance
        .unwrap();
        assert_eq!(p.max_attestation_bytes, DEFAULT_MAX_ATTESTATION_BYTES);
        assert_eq!(p.max_attestations, DEFAULT_MAX_ATTESTATIONS);
        assert_eq!(p.trusted_keys.len(), 1);
    }

    #[test]
    fn provenance_errors_name_the_key() {
        let with = |body: &str| format!("provenance {{\n{body}\n}}");
        let key = |extra: &str| {
            with(&format!(
                "store_dir = \"/s\"\ntrusted_keys = [{{ name = \"a\", public_key_path = \"/k\"{extra} }}]"
            ))
        };
        let cases = [
            (with("trusted_keys = []"), "missing key `provenance.store_dir`"),
            (with("store_dir = \"/s\""), "missing key `provenance.trusted_keys`"),
            (
                with("store_dir = \"s\"\ntrusted_keys = []"),
                "invalid value for `provenance.store_dir`",
            ),
            (
                with("store_dir = \"/s\"\ntrusted_keys = []"),
                "invalid value for `provenance.trusted_keys`",
            ),
            (
                format!("{}\n", key("")).replace("/k", "k"),
                "invalid value for `provenance.trusted_keys[0].public_key_path`",
            ),
            (
                key("").replace("\"a\"", "\"a:b\""),
                "invalid value for `provenance.trusted_keys[0].name`",
            ),
            (
                key("").replace("\"a\"", "\"\""),
                "invalid value for `provenance.trusted_keys[0].name`",
            ),
            (
                with("store_dir = \"/s\"\ntrusted_keys = [{ name = \"a\", public_key_path = \"/k\" }, { name = \"a\", public_key_path = \"/j\" }]"),
                "invalid value for `provenance.trusted_keys[1].name`",
            ),
            (
                key(", key_id = \"\""),
                "invalid value for `provenance.trusted_keys[0].key_id`",
            ),
            (
                key(", build_level = 0"),
                "invalid value for `provenance.trusted_keys[0].build_level`",
            ),
            (
                key(", build_level = 4"),
                "invalid value for `provenance.trusted_keys[0].build_level`",
            ),
            (
                key(", colour = \"red\""),
                "unknown key `provenance.trusted_keys[0].colour`",
            ),
            (
                key("").replace("]", "]\nmax_attestations = 0"),
                "invalid value for `provenance.max_attestations`",
            ),
            (
                key("").replace("]", "]\nmax_attestation_bytes = 0"),
                "invalid value for `provenance.max_attestation_bytes`",
            ),
            (
                key("").replace("]", "]\nmax_attestation_bytes = 268435457"),
                "invalid value for `provenance.max_attestation_bytes`",
            ),
        ];
        for (hcl, want) in cases {
            let err = build(&hcl).unwrap_err().to_string();
            assert!(err.starts_with(want), "{hcl}\n=> {err}");
        }
    }

    #[test]
    fn proc_root_must_exist() {
        assert!(check_paths(&Settings::default()).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        for root in [dir.path().join("missing"), file] {
            let s = Settings {
                proc_root: root,
                ..Settings::default()
            };
            let err = check_paths(&s).unwrap_err().to_string();
            assert!(err.starts_with("invalid value for `proc_root`"), "{err}");
        }
    }
}

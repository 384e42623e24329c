//! The plugin's `plugin_data`: HCL → validated [`Settings`].
//!
//! ```hcl
//! discover_path    = true          # path:<exe>            (reads /proc/<pid>/exe)
//! discover_digest  = true          # sha256:<exe digest>   (hashes the file /proc/<pid>/exe opens)
//! max_digest_bytes = 1073741824    # refuse to hash larger executables
//! cache_entries    = 1024          # digests kept by file identity; 0 = no cache
//! proc_root        = "/proc"       # the host's /proc when the agent runs in a container
//! ```
//!
//! Every key is optional, so an empty `plugin_data` is valid. Unlike SPIRE's `unix` attestor (whose
//! `discover_workload_path` defaults to false), path and digest are on by default: they are what this
//! plugin is for, and what provenance (phase 2) is looked up by. Both need the agent to be allowed to read
//! `/proc/<pid>/exe` of the workload (root, or CAP_SYS_PTRACE, or the workload's own user).
//!
//! [`build`] serves both Configure and Validate, as SPIRE's `pluginconf.Build`: it only parses and checks
//! values. [`check_paths`] looks at the file system. Every error names its key.

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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            discover_path: true,
            discover_digest: true,
            max_digest_bytes: DEFAULT_MAX_DIGEST_BYTES,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            proc_root: PathBuf::from(DEFAULT_PROC_ROOT),
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
/// [`MAX_CACHE_ENTRIES`], a relative or empty `proc_root`.
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
    Ok(Settings {
        discover_path: cfg.discover_path,
        discover_digest: cfg.discover_digest,
        max_digest_bytes: cfg.max_digest_bytes,
        cache_entries: cfg.cache_entries,
        proc_root: cfg.proc_root,
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
        // serde lists the accepted keys in an unknown-key error.
        let err = build("no_such_key = 1").unwrap_err();
        let ConfigError::UnknownKey { expected, .. } = err else {
            panic!("unexpected {err:?}");
        };
        let mut accepted: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let mut documented_sorted = documented.clone();
        accepted.sort_unstable();
        documented_sorted.sort_unstable();
        assert_eq!(documented_sorted, accepted, "doc table vs Config keys");
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

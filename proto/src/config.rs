//! Plugin configuration: the `Config` service's inputs, HCL decoding with errors that name the key, and a
//! slot that holds the active configuration.
//!
//! SPIRE sends `plugin_data` as HCL text (protocol doc §2.4, §6.2). A bad key must fail the host's start-up with
//! a message the operator can act on, so every decoding error names the offending key. Configure may run
//! again on SIGUSR1 while other RPCs are in flight, so the active configuration is swapped atomically
//! ([`ConfigSlot`]).

use std::sync::{Arc, PoisonError, RwLock};

use serde::de::DeserializeOwned;
use tonic::Status;

/// Core settings SPIRE passes with every Configure and Validate call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoreConfig {
    /// The trust domain *name* (e.g. `example.org`, no `spiffe://`), used to build agent IDs.
    pub trust_domain: String,
}

impl CoreConfig {
    /// Builds a core config; the runtime rejects an empty trust domain before a handler sees it.
    #[must_use]
    pub fn new(trust_domain: impl Into<String>) -> Self {
        Self {
            trust_domain: trust_domain.into(),
        }
    }
}

/// What a plugin does with its configuration. The runtime serves `spire.service.common.config.v1.Config`
/// on top of it, so plugins never touch the Config protos.
#[tonic::async_trait]
pub trait ConfigHandler: Send + Sync + 'static {
    /// Applies `hcl` (possibly empty) as the new configuration; called at load and again on SIGUSR1 reloads.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a bad configuration (it fails the host's start-up); other codes as appropriate.
    async fn configure(&self, core: CoreConfig, hcl: &str) -> Result<(), Status>;

    /// Checks `hcl` without applying it (`spire-server validate`); each returned note is shown to the
    /// operator as a validation error, so an empty list means "valid".
    ///
    /// # Errors
    ///
    /// A status when validation itself could not run.
    async fn validate(&self, core: CoreConfig, hcl: &str) -> Result<Vec<String>, Status>;
}

/// Why HCL configuration text was rejected; every variant names the key that was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not HCL at all.
    #[error("invalid HCL: {detail}")]
    Syntax {
        /// The parser's message, including the position.
        detail: String,
    },
    /// A key the plugin does not know; usually a typo, so it is an error rather than ignored.
    #[error("unknown key `{key}` ({expected})")]
    UnknownKey {
        /// Dotted path of the unknown key.
        key: String,
        /// Which keys were allowed at that place.
        expected: String,
    },
    /// A required key is absent.
    #[error("missing key `{key}`")]
    MissingKey {
        /// Dotted path of the missing key.
        key: String,
    },
    /// A key has a value of the wrong type or outside its range; plugins also use this for their own checks.
    #[error("invalid value for `{key}`: {detail}")]
    InvalidValue {
        /// Dotted path of the key.
        key: String,
        /// What was wrong with the value.
        detail: String,
    },
}

impl From<ConfigError> for Status {
    fn from(err: ConfigError) -> Self {
        Status::invalid_argument(err.to_string())
    }
}

/// Decodes `plugin_data` HCL into `T`, where `T` should use `#[serde(deny_unknown_fields)]` so typos are errors.
///
/// Empty text is an empty body, so `T` with all-default fields accepts a missing `plugin_data`.
///
/// # Errors
///
/// [`ConfigError`] naming the key that was unknown, missing or had a bad value, or the syntax error.
pub fn from_hcl<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let body: hcl::Body = match text.parse() {
        Ok(body) => body,
        // Retry only on failure, so input that is already valid HCL2 is never rewritten.
        Err(err) => unquote_v1_keys(text)
            .and_then(|fixed| fixed.parse().ok())
            .ok_or_else(|| ConfigError::Syntax {
                detail: err.to_string(),
            })?,
    };
    let de = hcl::de::Deserializer::from_body(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        classify(&path, &err.inner().to_string())
    })
}

/// SPIRE prints `plugin_data` back with the HCL v1 printer, which keeps keys quoted when the operator quoted
/// them (`"foo" = "bar"`, protocol doc §2.4); HCL2 (hcl-rs) only accepts bare identifiers there. Rewrites
/// quoted keys at the start of a line that are plain identifiers; `None` if there is nothing to rewrite.
fn unquote_v1_keys(text: &str) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let rewritten = trimmed.strip_prefix('"').and_then(|rest| {
            let (key, after) = rest.split_once('"')?;
            let is_ident = key
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && key
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
            let next = after.trim_start().chars().next();
            (is_ident && matches!(next, Some('=' | '{'))).then(|| format!("{key}{after}"))
        });
        match (line.get(..indent), rewritten) {
            (Some(prefix), Some(rest)) => {
                changed = true;
                out.push_str(prefix);
                out.push_str(&rest);
            }
            _ => out.push_str(line),
        }
    }
    changed.then_some(out)
}

/// Turns serde's message at `path` into a [`ConfigError`] that names the key.
///
/// serde names unknown and missing keys only inside its message (in backquotes), and wrong values only through
/// the path; both are normalised to a dotted key path.
fn classify(path: &str, msg: &str) -> ConfigError {
    // serde_path_to_error already includes an unknown key in the path, but not a missing one.
    let join = |key: &str| {
        if path.is_empty() || path == "." {
            key.to_owned()
        } else if path == key || path.ends_with(&format!(".{key}")) {
            path.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((key, tail)) = rest.split_once('`') {
            let expected = tail.trim_start_matches(',').trim();
            let expected = if expected.is_empty() {
                "no keys are expected".to_owned()
            } else {
                expected.to_owned()
            };
            return ConfigError::UnknownKey {
                key: join(key),
                expected,
            };
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        if let Some((key, _)) = rest.split_once('`') {
            return ConfigError::MissingKey { key: join(key) };
        }
    }
    let key = if path.is_empty() || path == "." {
        "(top level)".to_owned()
    } else {
        path.to_owned()
    };
    ConfigError::InvalidValue {
        key,
        detail: msg.to_owned(),
    }
}

/// The active configuration of a plugin, shared between Configure and the RPCs that read it.
///
/// RPCs call [`ConfigSlot::get`] once at their start and keep the `Arc` they got, so a concurrent
/// reconfiguration never changes settings in the middle of one attestation.
#[derive(Debug)]
pub struct ConfigSlot<T> {
    inner: Arc<RwLock<Option<Arc<T>>>>,
}

impl<T> Clone for ConfigSlot<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Default for ConfigSlot<T> {
    fn default() -> Self {
        Self {
            inner: Arc::new(RwLock::new(None)),
        }
    }
}

impl<T> ConfigSlot<T> {
    /// An empty slot: RPCs answer `FailedPrecondition` until [`ConfigSlot::set`] is called.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The active configuration.
    ///
    /// # Errors
    ///
    /// `FailedPrecondition "not configured"` before the first successful Configure, like SPIRE's own plugins.
    pub fn get(&self) -> Result<Arc<T>, Status> {
        // A poisoned lock only means a writer panicked between two whole-value swaps; the value is still whole.
        let guard = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        guard
            .as_ref()
            .map(Arc::clone)
            .ok_or_else(|| Status::failed_precondition("not configured"))
    }

    /// Replaces the active configuration; RPCs already running keep the one they started with.
    pub fn set(&self, value: T) {
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        *guard = Some(Arc::new(value));
    }

    /// Whether Configure has succeeded at least once.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        nonce_len: u32,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        depth: u8,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Required {
        #[allow(dead_code)]
        must: String,
    }

    #[test]
    fn empty_text_is_empty_body() {
        let s: Sample = from_hcl("").unwrap();
        assert_eq!(
            s,
            Sample {
                nonce_len: 0,
                name: None,
                inner: None
            }
        );
        let s: Sample = from_hcl("  \n").unwrap();
        assert_eq!(s.nonce_len, 0);
    }

    #[test]
    fn decodes_values_and_blocks() {
        let s: Sample = from_hcl("nonce_len = 32\nname = \"x\"\ninner {\n depth = 3\n}\n").unwrap();
        assert_eq!(s.nonce_len, 32);
        assert_eq!(s.name.as_deref(), Some("x"));
        assert_eq!(s.inner, Some(Inner { depth: 3 }));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = from_hcl::<Sample>("fooo = 1").unwrap_err();
        match &err {
            ConfigError::UnknownKey { key, expected } => {
                assert_eq!(key, "fooo");
                assert!(expected.contains("nonce_len"), "{expected}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_string().starts_with("unknown key `fooo` (expected"),
            "{err}"
        );
    }

    #[test]
    fn nested_unknown_key_has_dotted_path() {
        let err = from_hcl::<Sample>("inner {\n depth = 1\n deep = 2\n}").unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, .. } if key == "inner.deep"),
            "{err:?}"
        );
    }

    #[test]
    fn bad_value_is_named() {
        let err = from_hcl::<Sample>("nonce_len = \"many\"").unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, .. } if key == "nonce_len"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("invalid value for `nonce_len`: "),
            "{err}"
        );
        let err = from_hcl::<Sample>("inner {\n depth = 300\n}").unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, .. } if key == "inner.depth"),
            "{err:?}"
        );
    }

    #[test]
    fn hcl_v1_printer_output_with_quoted_keys() {
        // SPIRE re-prints plugin_data with the HCL v1 printer, which keeps quoted keys as written.
        let s: Sample = from_hcl("\"nonce_len\" = 12\n\"name\" = \"q\"").unwrap();
        assert_eq!(s.nonce_len, 12);
        assert_eq!(s.name.as_deref(), Some("q"));
        let s: Sample = from_hcl("  \"inner\" {\n    \"depth\" = 2\n  }\n").unwrap();
        assert_eq!(s.inner, Some(Inner { depth: 2 }));
        // A quoted key that is not an identifier stays a syntax error rather than being guessed at.
        assert!(matches!(
            from_hcl::<Sample>("\"a.b\" = 1"),
            Err(ConfigError::Syntax { .. })
        ));
        // Quoted values are left alone.
        let s: Sample = from_hcl("name = \"\\\"x\\\" = 1\"").unwrap();
        assert_eq!(s.name.as_deref(), Some("\"x\" = 1"));
    }

    #[test]
    fn missing_key_is_named() {
        let err = from_hcl::<Required>("").unwrap_err();
        assert_eq!(err, ConfigError::MissingKey { key: "must".into() });
    }

    #[test]
    fn syntax_error() {
        let err = from_hcl::<Sample>("nonce_len = = 3").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        let st: Status = err.into();
        assert_eq!(st.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn slot_fails_precondition_until_set() {
        let slot: ConfigSlot<u32> = ConfigSlot::new();
        let err = slot.get().unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(!slot.is_set());
        let other = slot.clone();
        other.set(7);
        let held = slot.get().unwrap();
        other.set(8);
        assert_eq!(*held, 7, "a running RPC keeps the value it started with");
        assert_eq!(*slot.get().unwrap(), 8);
    }
}

//! Why a policy document was refused, or why a policy refuses a TEE. Every variant names what failed: the
//! file, the dotted key (`snp.allowed_measurements[0]`), the TEE.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Format, Tee};

/// One problem with one key of a policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, with list indexes: `tdx.rtmr1[2]`, `selectors.match.web.snp.measurement[0]`.
    pub key: String,
    /// What is wrong and what was wanted.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.detail)
    }
}

/// Everything that can go wrong loading a policy or asking it about a TEE.
///
/// `Clone` because [`super::PolicyFile`] keeps the error of a broken file and returns it again at every
/// attestation until the file changes (I/O errors are shared through an `Arc` for that reason).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file cannot be read (or `stat`ed: a policy file that disappeared refuses, it is not ignored).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The document is larger than [`super::MAX_POLICY_LEN`]: not a policy someone wrote by hand.
    #[error("policy document is {len} bytes, more than the limit of {max}")]
    TooLarge { len: u64, max: usize },

    /// The document nests deeper than [`super::MAX_NESTING`] (the format needs 5 levels).
    #[error("policy document nests deeper than {max} levels")]
    TooDeep { max: usize },

    /// The bytes are not UTF-8 text.
    #[error("policy document is not UTF-8: {detail}")]
    NotUtf8 { detail: String },

    /// The text is not HCL (or JSON) at all.
    #[error("invalid {format} policy document: {detail}")]
    Syntax { format: Format, detail: String },

    /// A key the format does not have; usually a typo, which must not silently weaken a policy.
    #[error("unknown key `{key}` ({expected})")]
    UnknownKey { key: String, expected: String },

    /// A key of the server plugin's `snp`/`tdx` blocks that configures verification (trust anchors,
    /// certificate and collateral sources), not appraisal: it stays in `plugin_data`.
    #[error("`{key}` is plugin configuration, not appraisal policy: keep it in the plugin's `{tee}` block of plugin_data")]
    NotPolicy { key: String, tee: Tee },

    /// A required key is absent (`id`, `version`, the `value`/`mask` of a masked field).
    #[error("missing key `{key}`")]
    MissingKey { key: String },

    /// A key or labelled block appears twice; which one wins would be a guess, so neither does.
    #[error("duplicate key `{key}`")]
    DuplicateKey { key: String },

    /// Values that do not validate; every problem of the document is listed, so an operator fixes it in
    /// one round.
    #[error("invalid policy: {}", join(problems))]
    Invalid { problems: Vec<Problem> },

    /// The policy has no section for this TEE, so evidence from it is refused (fail closed).
    #[error("policy {policy_id} version {version} has no `{tee}` section: {tee} evidence is not allowed by this policy (add a `{tee} {{ }}` section to allow it)")]
    TeeNotAllowed {
        tee: Tee,
        policy_id: String,
        version: String,
    },

    /// Any of the above, in a file.
    #[error("policy file {}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<PolicyError>,
    },
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl PolicyError {
    /// The error without its file wrapper, for callers that match on the kind.
    pub fn root(&self) -> &PolicyError {
        match self {
            PolicyError::InFile { source, .. } => source.root(),
            other => other,
        }
    }

    /// Every problem this error reports as `(key, detail)` pairs; empty for errors that are not about
    /// one key (I/O, size, syntax, a TEE the policy does not allow).
    pub fn keys(&self) -> Vec<(&str, String)> {
        match self.root() {
            PolicyError::UnknownKey { key, expected } => vec![(key, expected.clone())],
            PolicyError::NotPolicy { key, .. } => vec![(key, self.root().to_string())],
            PolicyError::MissingKey { key } | PolicyError::DuplicateKey { key } => {
                vec![(key, self.root().to_string())]
            }
            PolicyError::Invalid { problems } => problems
                .iter()
                .map(|p| (p.key.as_str(), p.detail.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn in_file(self, path: impl Into<PathBuf>) -> PolicyError {
        PolicyError::InFile {
            path: path.into(),
            source: Box::new(self),
        }
    }

    pub(crate) fn one(key: impl Into<String>, detail: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            problems: vec![Problem {
                key: key.into(),
                detail: detail.into(),
            }],
        }
    }
}

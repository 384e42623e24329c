//! Where provenance selectors come from: the [`ProvenanceSource`] contract, and [`store::DsseStore`], the
//! source that reads signed in-toto attestations from a directory.
//!
//! The contract between a source and the attestor:
//!
//! - the attestor calls a [`ProvenanceSource`] once per attestation that has an executable digest, with a
//!   [`Subject`] naming what was measured;
//! - the source answers [`Findings`]: selector values plus reasons for anything it could not verify.
//!   Unverifiable provenance is never an error — it must not take the workload's other selectors away — so
//!   the signature has no `Result`; reasons are logged;
//! - a source may not emit a selector of a kind the attestor itself measures (`uid`, `sha256`, …): such
//!   values are dropped and logged by the attestor, so a provenance document can never claim, say,
//!   `uid:0`.
//!
//! [`NoProvenance`] is the default and emits nothing. The store's pipeline, one module per step:
//! [`json`] (strict JSON) → [`dsse`] (envelope, PAE, signatures with [`keys`]) → [`statement`] (in-toto
//! Statement, subject match) → [`slsa`] or [`sbom`] (predicates; [`jcs`] for the SBOM digest) → selectors
//! ([`PROVENANCE_KINDS`]). [`testing`] signs envelopes for tests.

pub mod dsse;
pub mod jcs;
pub mod json;
pub mod keys;
pub mod sbom;
pub mod slsa;
pub mod statement;
pub mod store;
pub mod testing;

use std::fmt;

use crate::digest::Sha256Digest;

/// What was measured about the workload, for a source to look provenance up by.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Subject<'a> {
    /// SHA-256 of the executable, hashed from the file the process runs.
    pub sha256: &'a Sha256Digest,
    /// The executable's path as the process sees it, when it is UTF-8 and path discovery is on.
    pub path: Option<&'a str>,
    /// The container ID from the cgroup paths, if any (to find an image digest through the runtime).
    pub container_id: Option<&'a str>,
}

impl<'a> Subject<'a> {
    /// A subject for `sha256` with optional path and container.
    #[must_use]
    pub fn new(
        sha256: &'a Sha256Digest,
        path: Option<&'a str>,
        container_id: Option<&'a str>,
    ) -> Self {
        Self {
            sha256,
            path,
            container_id,
        }
    }
}

/// Every provenance selector kind a source in this crate emits (the value follows the kind after a `:`).
/// The plugin page documents the same list after the measured kinds, which a test checks.
pub const PROVENANCE_KINDS: &[&str] = &[
    "provenance:verified",
    "provenance:signer",
    "slsa:builder",
    "slsa:build_type",
    "slsa:source",
    "slsa:source_ref",
    "slsa:commit",
    "slsa:build_level",
    "sbom:sha256",
    "sbom:format",
];

/// A source's answer for one subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Findings {
    /// Selector values (without the plugin-name type), e.g. `slsa:builder:https://…`.
    pub selectors: Vec<String>,
    /// Why some provenance yielded no selectors (unknown key, subject mismatch, …), for the log.
    pub skipped: Vec<String>,
    /// Every attestation looked at and what became of it, for `twi provenance inspect`.
    pub examined: Vec<Examined>,
}

/// One attestation (a file, or a line of a `.jsonl` file) and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Examined {
    /// Where it was read: a path, with `:<line>` for JSON Lines.
    pub origin: String,
    /// What became of it.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// What became of one attestation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Verdict {
    /// Verified, about this executable, of a predicate type this plugin reads: its selectors count.
    Used {
        /// The trusted keys whose signatures verified.
        signers: Vec<String>,
        /// The Statement's `predicateType`.
        predicate_type: String,
        /// The matching subject's name, if it has one (informational).
        subject_name: Option<String>,
        /// The selectors it contributes.
        selectors: Vec<String>,
        /// Parts that were not used, and why (e.g. a source that could not be determined).
        notes: Vec<String>,
        /// The SBOM's digest and size, for SBOM predicates.
        sbom: Option<sbom::Sbom>,
    },
    /// Present but not usable: malformed, signed by no trusted key, about another file, too large, a
    /// symlink. Logged as a warning.
    Rejected {
        /// Why.
        reason: String,
    },
    /// Not an attestation this plugin reads (another file type, another predicate type, over the count
    /// limit). Not logged as a warning.
    Ignored {
        /// Why.
        reason: String,
    },
}

/// Looks up and verifies provenance for an executable. Called from a blocking thread, possibly
/// concurrently for different PIDs.
pub trait ProvenanceSource: Send + Sync + 'static {
    /// A short description for logs (e.g. `dsse store /var/lib/twi/attestations`).
    fn describe(&self) -> String;

    /// The verified provenance selectors for `subject`, and the reasons for what was not verified.
    fn provenance(&self, subject: &Subject<'_>) -> Findings;
}

/// The source that knows no provenance: every workload gets only its measured selectors.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProvenance;

impl ProvenanceSource for NoProvenance {
    fn describe(&self) -> String {
        "none".to_owned()
    }

    fn provenance(&self, _subject: &Subject<'_>) -> Findings {
        Findings::default()
    }
}

impl fmt::Debug for dyn ProvenanceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProvenanceSource({})", self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_kinds_are_not_measured_kinds() {
        for k in PROVENANCE_KINDS {
            assert!(
                !crate::selectors::is_measured_kind(&format!("{k}:x")),
                "{k}"
            );
        }
    }

    #[test]
    fn none_finds_nothing() {
        let digest = [0u8; 32];
        let f = NoProvenance.provenance(&Subject::new(&digest, Some("/bin/true"), None));
        assert_eq!(f, Findings::default());
        assert_eq!(NoProvenance.describe(), "none");
    }
}

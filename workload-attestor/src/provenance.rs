//! Where provenance selectors will come from: the interface for issue #6 phase 2.
//!
//! Phase 2 looks up signed provenance for the executable's digest (in-toto Statements in DSSE envelopes or
//! Sigstore bundles with SLSA provenance v1 and SBOMs), verifies it against configured keys and emits
//! selectors such as the builder ID or the source commit. This module fixes only the contract between that
//! work and the attestor:
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
//! [`NoProvenance`] is the default and emits nothing.

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

/// A source's answer for one subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Selector values (without the plugin-name type), e.g. `slsa:builder_id:https://…`.
    pub selectors: Vec<String>,
    /// Why some provenance yielded no selectors (unknown key, subject mismatch, …), for the log.
    pub skipped: Vec<String>,
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
    fn none_finds_nothing() {
        let digest = [0u8; 32];
        let f = NoProvenance.provenance(&Subject::new(&digest, Some("/bin/true"), None));
        assert_eq!(f, Findings::default());
        assert_eq!(NoProvenance.describe(), "none");
    }
}

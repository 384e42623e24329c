//! The structured "attestation result" log record: one per Attest call, whatever the outcome.
//!
//! It carries what a relying party or auditor needs to tie a decision to its inputs without the inputs
//! themselves: the verdict, the TEE, the reason category, the id of the appraisal policy in force for
//! this attempt (its URI carries id, version and digest, as in the EAR), and the SHA-256 of the evidence
//! (never the evidence or any key). Issue #4 turns this
//! record into a signed EAR; the verdict words are EAR's trustworthiness tiers for that reason, and the record
//! names that EAR by digest, with its status and where it was stored ([`super::results`]).

/// EAR-style overall verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Verified and appraised: the agent was attested.
    Affirming,
    /// Verified evidence or its binding was refused (signature, chain, policy, nonce, key proof).
    Contraindicated,
    /// No claim could be made (malformed input, missing collateral, not configured, our fault).
    None,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Affirming => "affirming",
            Verdict::Contraindicated => "contraindicated",
            Verdict::None => "none",
        }
    }
}

/// One attestation's result, logged at info with fixed field names.
#[derive(Debug)]
pub(crate) struct AttestationResult<'a> {
    pub(crate) verdict: Verdict,
    pub(crate) tee: &'a str,
    /// `ok` on success, else the reason category (`nonce`, `policy-debug`, `key-proof`, …).
    pub(crate) category: &'a str,
    /// The policy id URI (`tag:twi-spire.dev,2026:policy/<id>/<version>?sha256=<digest>`) of the policy
    /// taken for this attempt; `None` before it was taken or when it could not be read.
    pub(crate) policy_id: Option<&'a str>,
    pub(crate) evidence_sha256: Option<&'a str>,
    /// The signed EAR of this attempt, when one was built (not before Configure).
    pub(crate) ear: Option<&'a super::results::EarRecord>,
    /// TDX: the collateral the quote was verified with (`offline`, `cache`, `fetched`, and
    /// `,stale-within-grace` when it was past its nextUpdate), so an auditor can find every decision
    /// taken on grace. `None` for SEV-SNP and before collateral was served.
    pub(crate) collateral: Option<super::tdx::CollateralUse>,
}

impl AttestationResult<'_> {
    pub(crate) fn log(&self) {
        tracing::info!(
            record = "attestation-result",
            verdict = self.verdict.as_str(),
            tee = self.tee,
            category = self.category,
            policy_id = self.policy_id.unwrap_or("-"),
            evidence_sha256 = self.evidence_sha256.unwrap_or("-"),
            ear_sha256 = self.ear.map_or("-", |e| e.sha256.as_str()),
            ear_status = self.ear.map_or("-", |e| e.status.as_str()),
            ear_stored = %self.ear.map_or_else(|| "-".to_owned(), |e| e.stored.to_string()),
            collateral = self.collateral.map_or("-", super::tdx::CollateralUse::as_record),
            "attestation result"
        );
    }
}

//! Real credential-provenance statements for the log measurements: the record the composer makes for
//! the benchmark workload (its entry's policy and workload provenance, the parent agent's EAR
//! summary and evidence digest), signed as the composer signs it (COSE_Sign1, Ed25519). Only the
//! record id, time and key digest differ from one statement to the next.

use anyhow::{anyhow, Result};
use rand_core::RngCore as _;
use twi_credential_composer::composer::{entry_policy, parse_ear, wprov, CurrentEar};
use twi_credential_composer::record::{CredentialKind, CredentialProvenanceRecord, EarRef};
use twi_credential_composer::spire_api::{EntryInfo, Selector};
use twi_credential_composer::statement::{sign_statement, ProvenanceKey};

use super::setup::{entry_selectors, AGENT_ID, TRUST_DOMAIN, WORKLOAD_ID};

/// The composer's default issuer (= its default log origin) for the benchmark trust domain.
pub(crate) fn issuer() -> String {
    format!(
        "{TRUST_DOMAIN}{}",
        twi_credential_composer::config::DEFAULT_LOG_ORIGIN_SUFFIX
    )
}

/// The benchmark workload's registration entry as the composer sees it.
pub(crate) fn entry() -> Result<EntryInfo> {
    let selectors = entry_selectors()
        .iter()
        .map(|s| Selector::parse(s).ok_or_else(|| anyhow!("selector {s:?}")))
        .collect::<Result<Vec<_>>>()?;
    Ok(EntryInfo {
        id: "0b7e5c1e-bench-entry".into(),
        spiffe_id: WORKLOAD_ID.into(),
        parent_id: AGENT_ID.into(),
        selectors,
        revision: 0,
    })
}

/// Makes statements like the composer's for the workload whose parent holds `ear_jws`.
pub(crate) struct StatementMaker {
    key: ProvenanceKey,
    issuer: String,
    ear: CurrentEar,
    entry: EntryInfo,
}

impl StatementMaker {
    pub(crate) fn new(ear_jws: &str) -> Result<Self> {
        use sha2::Digest as _;
        let ear = parse_ear(ear_jws).map_err(|e| anyhow!("the bench EAR: {e}"))?;
        Ok(Self {
            key: ProvenanceKey::generate(),
            issuer: issuer(),
            ear: CurrentEar {
                jws: ear_jws.to_owned(),
                ear,
                sha256: sha2::Sha256::digest(ear_jws.as_bytes()).into(),
            },
            entry: entry()?,
        })
    }

    /// The record for an X.509-SVID issued at `now_ms` for a key whose SPKI digest is `spki_sha256`.
    pub(crate) fn record(&self, now_ms: u64, spki_sha256: [u8; 32]) -> CredentialProvenanceRecord {
        CredentialProvenanceRecord {
            rid: CredentialProvenanceRecord::new_rid(now_ms),
            kind: CredentialKind::X509,
            sub: WORKLOAD_ID.into(),
            spki_sha256: Some(spki_sha256),
            iat: i64::try_from(now_ms / 1000).unwrap_or(i64::MAX),
            ear: EarRef::One(self.ear.summary(None)),
            evidence: self.ear.evidence(),
            policy: Some(entry_policy(&self.entry)),
            wprov: wprov::descriptors(std::slice::from_ref(&self.entry), "twi"),
        }
    }

    /// Signs `record` as the composer does.
    pub(crate) fn sign(&self, record: &CredentialProvenanceRecord) -> Vec<u8> {
        sign_statement(record, &self.issuer, &self.key)
    }

    /// `n` distinct signed statements (random key digests, increasing times from `now_ms`).
    pub(crate) fn pool(&self, n: usize, now_ms: u64) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut spki = [0u8; 32];
                rand_core::OsRng.fill_bytes(&mut spki);
                self.sign(&self.record(now_ms + i as u64, spki))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use twi_credential_composer::statement::verify_statement;

    #[test]
    fn statements_verify_and_carry_the_workload() {
        let testdata = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata"
        ));
        let scratch = tempfile::tempdir().unwrap();
        let ear = super::super::setup::bench_ear(testdata, scratch.path(), 1_700_000_000).unwrap();
        let jws = ear.jws;
        let maker = StatementMaker::new(&jws).unwrap();
        let pool = maker.pool(3, 1_700_000_000_000);
        assert_eq!(pool.len(), 3);
        assert_ne!(pool[0], pool[1]);
        let signed = verify_statement(&pool[2], &maker.key.public_key()).unwrap();
        assert_eq!(signed.record.sub, WORKLOAD_ID);
        assert_eq!(signed.issuer, issuer());
        assert!(
            !signed.record.wprov.is_empty(),
            "the executable digest selector becomes wprov"
        );
    }
}

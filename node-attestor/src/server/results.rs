//! Signed attestation results: every appraisal the server makes becomes an EAR signed with the
//! verifier's own ES256 key, and, when the agent's SPIFFE ID is known, is stored under that ID.
//!
//! Why the agent ID must be known to store: before the evidence verified to a trust anchor, nothing
//! the agent sent is trustworthy, so a refusal at that stage (malformed payload, bad key proof, bad
//! signature, untrusted root) cannot be filed under any agent — an attacker could otherwise write
//! refusals into another agent's history. Such EARs are still built and signed, and their digest is
//! logged in the "attestation result" record. A refusal after verification (nonce, policy) has a
//! signed REPORT_ID, hence an agent ID, and is stored.
//!
//! Fail closed: an accepted attestation whose result cannot be signed or stored is refused with
//! `Unavailable`, so no SVID is ever issued without its result. Failing to store a refusal is
//! logged at error and does not change the refusal.
//!
//! Every EAR names the appraisal policy in force for its attempt (`ear_appraisal_policy_ids[0]`: the
//! policy document's id, version and digest, taken once per attestation, so a reloaded policy file
//! shows in the next EAR), then the trust anchors the evidence was verified to (roots are outside the
//! policy digest: they configure verification). An attempt refused before the policy was taken
//! (malformed payload, TEE not enabled) or because it could not be read names only the anchors.
//!
//! The `attestation_results` block is optional. Without it, EARs are signed with a key that lives
//! only as long as the plugin process (nobody can check them later) and are not stored; Configure
//! says so at info level. An existing SPIRE configuration keeps working unchanged, which is what a
//! SPIRE operator expects from a plugin upgrade; the credential composer (later) requires the store.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand_core::{OsRng, RngCore as _};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use twi_core::ear::{
    self, Ear, EarIssuer, KeyOrigin, PolicyId, Refusal, SnpOutcome, Status as EarStatus,
    TdxOutcome, VerifierKey,
};
use twi_core::policy::{Policy, Tee};
use twi_core::ErrorClass;
use twi_plugin::ConfigError;
use twi_results::{ResultMeta, ResultStore};

use super::config::Configured;
use super::{agent_id, tdx_agent_id, Attempt, AttestError, Outcome, VerifiedEvidence};
use crate::wire::{self, TeeKind};

/// Default `attestation_results.ear_validity_seconds`: SPIRE's default agent SVID TTL (one hour).
pub(crate) const DEFAULT_EAR_VALIDITY_SECONDS: u32 = ear::DEFAULT_VALIDITY_SECS;
/// Shortest accepted `ear_validity_seconds`.
pub(crate) const MIN_EAR_VALIDITY_SECONDS: u32 = 60;
/// Longest accepted `ear_validity_seconds` (30 days): a result must not vouch for a VM for ever.
pub(crate) const MAX_EAR_VALIDITY_SECONDS: u32 = 30 * 24 * 3600;

/// The `<name>` of the SEV-SNP trust-anchor URI in EARs.
pub(crate) const SNP_ANCHORS_NAME: &str = "sev-snp-trust-anchors";
/// The `<name>` of the TDX trust-anchor URI in EARs.
pub(crate) const TDX_ANCHORS_NAME: &str = "tdx-trust-anchors";
/// The `<version>` of the trust-anchor URIs: the version of the canonical form their digest is
/// computed over (the digest itself pins the content).
pub(crate) const ANCHORS_VERSION: &str = "1";

/// JWKS files are world-readable: they hold only public keys, meant for relying parties.
const JWKS_MODE: u32 = 0o644;

/// The `attestation_results { … }` block of `plugin_data`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationResultsConfig {
    /// `sqlite:///path/results.db`, `postgres://…`, `postgresql://…` or a `host=… dbname=…` conninfo.
    /// Required in the block. It may hold a password: it is never logged.
    #[serde(default)]
    pub database: Option<String>,
    /// PKCS#8 PEM P-256 key the EARs are signed with; generated (mode 0600) on first start. Required.
    #[serde(default)]
    pub verifier_key_path: Option<PathBuf>,
    /// Where the verifier's public JWKS is written at Configure, for relying parties.
    #[serde(default)]
    pub jwks_path: Option<PathBuf>,
    /// `exp - iat` of every EAR, 60 to 2592000. Default 3600.
    #[serde(default)]
    pub ear_validity_seconds: Option<u32>,
}

impl fmt::Debug for AttestationResultsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttestationResultsConfig")
            .field("database", &self.database.as_deref().map(redacted))
            .field("verifier_key_path", &self.verifier_key_path)
            .field("jwks_path", &self.jwks_path)
            .field("ear_validity_seconds", &self.ear_validity_seconds)
            .finish()
    }
}

/// What may be shown of a database URL: its scheme (the rest may hold a password).
fn redacted(url: &str) -> String {
    match url.trim().split_once("://") {
        Some((scheme, _)) => format!("{scheme}://…"),
        None => "(conninfo)".into(),
    }
}

/// The validated block: nothing opened, nothing written (Validate must not touch the disk).
#[derive(Clone)]
pub(crate) struct ResultsSettings {
    database: String,
    key_path: PathBuf,
    jwks_path: Option<PathBuf>,
    validity_secs: u32,
}

impl fmt::Debug for ResultsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultsSettings")
            .field("database", &redacted(&self.database))
            .field("key_path", &self.key_path)
            .field("jwks_path", &self.jwks_path)
            .field("validity_secs", &self.validity_secs)
            .finish()
    }
}

/// A parent directory that must exist for `path` to be created.
fn check_parent(path: &Path) -> Result<(), String> {
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

/// Validates the block without side effects. Returns the problems as (key, detail).
pub(crate) fn validate(
    cfg: Option<&AttestationResultsConfig>,
) -> Result<Option<ResultsSettings>, Vec<(String, String)>> {
    let Some(cfg) = cfg else { return Ok(None) };
    let mut problems = Vec::new();
    let mut add = |key: &str, detail: String| {
        problems.push((format!("attestation_results.{key}"), detail));
    };
    let database = cfg.database.as_deref().map(str::trim).unwrap_or_default();
    if database.is_empty() {
        add(
            "database",
            "required: sqlite:///path/results.db or postgres://…".into(),
        );
    } else if let Some(path) = database.strip_prefix("sqlite://") {
        if let Err(e) = check_parent(Path::new(path)) {
            add("database", format!("sqlite path: {e}"));
        }
    } else {
        let conninfo = !database.contains("://")
            && database
                .split_whitespace()
                .next()
                .is_some_and(|t| t.contains('='));
        let postgres = database.starts_with("postgres://") || database.starts_with("postgresql://");
        if !(conninfo || postgres) {
            add(
                "database",
                format!(
                    "{} is not sqlite://, postgres://, postgresql:// or a host=… conninfo",
                    redacted(database)
                ),
            );
        }
    }
    let key_path = cfg.verifier_key_path.clone().unwrap_or_default();
    if cfg.verifier_key_path.is_none() {
        add(
            "verifier_key_path",
            "required: where the verifier's signing key is kept (generated on first start)".into(),
        );
    } else if let Err(e) = check_parent(&key_path) {
        add("verifier_key_path", e);
    }
    if let Some(jwks) = &cfg.jwks_path {
        if let Err(e) = check_parent(jwks) {
            add("jwks_path", e);
        }
    }
    let validity_secs = cfg
        .ear_validity_seconds
        .unwrap_or(DEFAULT_EAR_VALIDITY_SECONDS);
    if !(MIN_EAR_VALIDITY_SECONDS..=MAX_EAR_VALIDITY_SECONDS).contains(&validity_secs) {
        add(
            "ear_validity_seconds",
            format!(
                "{validity_secs} is out of range {MIN_EAR_VALIDITY_SECONDS}..={MAX_EAR_VALIDITY_SECONDS}"
            ),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(ResultsSettings {
        database: database.to_owned(),
        key_path,
        jwks_path: cfg.jwks_path.clone(),
        validity_secs,
    }))
}

/// What signs and stores results: opened at Configure, lives as long as the configuration.
pub(crate) struct ResultSink {
    key: VerifierKey,
    store: Option<Arc<dyn ResultStore>>,
    issuer: EarIssuer,
    /// The SEV-SNP trust anchors' id.
    snp_anchors: PolicyId,
    /// The TDX trust anchors' id, when the configuration has a `tdx` block.
    tdx_anchors: Option<PolicyId>,
}

impl fmt::Debug for ResultSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResultSink")
            .field("kid", &self.key.kid())
            .field("stored", &self.store.is_some())
            .field("snp_anchors", &self.snp_anchors.uri())
            .finish_non_exhaustive()
    }
}

fn invalid(key: &str, detail: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: format!("attestation_results.{key}"),
        detail: detail.into(),
    }
}

/// Opens the store, loads (or generates) the key and writes the JWKS of `cfg.results_settings`,
/// and attaches the result to `cfg`. Configure only: it writes to disk and may connect to a database.
///
/// # Errors
///
/// A [`ConfigError`] naming the `attestation_results` key that failed.
pub(crate) fn attach(mut cfg: Configured) -> Result<Configured, Vec<ConfigError>> {
    let anchors = |name: &str, digest: &str| {
        PolicyId::new(name, ANCHORS_VERSION, digest).map_err(|e| {
            vec![ConfigError::InvalidValue {
                key: "trust anchors".into(),
                detail: e.to_string(),
            }]
        })
    };
    let snp_anchors = anchors(SNP_ANCHORS_NAME, &cfg.snp_anchors_digest)?;
    let tdx_anchors = match &cfg.tdx {
        Some(t) => Some(anchors(TDX_ANCHORS_NAME, &t.anchors_digest)?),
        None => None,
    };
    let sink =
        open(cfg.results_settings.as_ref(), snp_anchors, tdx_anchors).map_err(|e| vec![e])?;
    cfg.results = Some(Arc::new(sink));
    Ok(cfg)
}

fn open(
    settings: Option<&ResultsSettings>,
    snp_anchors: PolicyId,
    tdx_anchors: Option<PolicyId>,
) -> Result<ResultSink, ConfigError> {
    let build = format!("twi-server-nodeattestor@{}", env!("CARGO_PKG_VERSION"));
    let Some(s) = settings else {
        let key = VerifierKey::generate(&mut OsRng);
        tracing::info!(
            kid = key.kid(),
            "attestation results are NOT stored and their signing key is ephemeral (no \
             attestation_results block): each EAR is signed and its digest logged, but nobody can \
             check it later; configure attestation_results {{ database, verifier_key_path, jwks_path }}"
        );
        return Ok(ResultSink {
            key,
            store: None,
            issuer: EarIssuer::new(build, DEFAULT_EAR_VALIDITY_SECONDS),
            snp_anchors,
            tdx_anchors,
        });
    };
    let (key, origin) = VerifierKey::load_or_generate(&s.key_path, &mut OsRng)
        .map_err(|e| invalid("verifier_key_path", e.to_string()))?;
    if let Some(path) = &s.jwks_path {
        write_jwks(path, &key.jwks().to_json())
            .map_err(|e| invalid("jwks_path", format!("writing {}: {e}", path.display())))?;
    }
    let store = twi_results::open(&s.database).map_err(|e| invalid("database", e.to_string()))?;
    tracing::info!(
        database = %redacted(&s.database),
        verifier_key = %s.key_path.display(),
        key = if origin == KeyOrigin::Generated { "generated" } else { "loaded" },
        kid = key.kid(),
        jwks = %s.jwks_path.as_deref().map_or_else(|| "-".into(), |p| p.display().to_string()),
        ear_validity_seconds = s.validity_secs,
        "attestation results are signed and stored"
    );
    Ok(ResultSink {
        key,
        store: Some(Arc::from(store)),
        issuer: EarIssuer::new(build, s.validity_secs),
        snp_anchors,
        tdx_anchors,
    })
}

/// Writes the JWKS through a temporary file and a rename, so relying parties never read half of it.
fn write_jwks(path: &Path, json: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp-{}-{:016x}",
        std::process::id(),
        OsRng.next_u64()
    ));
    let tmp = path.with_file_name(name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(JWKS_MODE)
            .open(&tmp)?;
        f.write_all(json.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Where an attempt's EAR went, for the "attestation result" record.
#[derive(Clone, Debug)]
pub(crate) struct EarRecord {
    /// SHA-256 (hex) of the compact JWS.
    pub(crate) sha256: String,
    pub(crate) status: EarStatus,
    pub(crate) stored: Stored,
}

/// Whether and where the EAR was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    /// The row id in the store.
    Id(i64),
    /// No `attestation_results` block.
    NoStore,
    /// Refused before verification: no trustworthy agent ID to file it under.
    NoAgentId,
    /// The store failed (logged at error).
    Failed,
}

impl fmt::Display for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stored::Id(id) => write!(f, "{id}"),
            Stored::NoStore => f.write_str("no-store"),
            Stored::NoAgentId => f.write_str("no-agent-id"),
            Stored::Failed => f.write_str("failed"),
        }
    }
}

/// The verifier-core class of a failure outside the verifier core, for the EAR's status.
fn class_of(e: &AttestError) -> ErrorClass {
    match e {
        AttestError::Evidence(e) => e.class(),
        AttestError::KeyProof => ErrorClass::Refused,
        AttestError::Stream(_)
        | AttestError::Wire(_)
        | AttestError::InstanceKey(_)
        | AttestError::KeyProofEncoding(_) => ErrorClass::Malformed,
        AttestError::Status(_)
        | AttestError::NotEnabled { .. }
        | AttestError::TeeNotAllowed(_)
        | AttestError::PolicyUnavailable(_) => ErrorClass::Unavailable,
        AttestError::Internal(_) | AttestError::ResultStore(_) => ErrorClass::Internal,
    }
}

/// The policy ids an attempt's EAR names: the policy in force for it (when one could be read), then
/// the trust anchors of `tee` (when that TEE is configured).
fn policy_ids(sink: &ResultSink, policy: Option<&Policy>, tee: Tee) -> Vec<PolicyId> {
    let anchors = match tee {
        Tee::Tdx => sink.tdx_anchors.clone(),
        _ => Some(sink.snp_anchors.clone()),
    };
    policy
        .map(Policy::policy_id)
        .into_iter()
        .chain(anchors)
        .collect()
}

/// `from_snp`/`from_tdx` name one policy; an attempt names the list of [`policy_ids`].
fn set_policy_ids(ear: &mut Ear, ids: &[PolicyId]) {
    for appraisal in ear.submods.values_mut() {
        appraisal.policy_ids = ids.iter().map(PolicyId::uri).collect();
    }
}

/// The policy's section for a TEE whose evidence verified: it was checked before the challenge.
fn section<T>(got: Result<&T, twi_core::policy::PolicyError>) -> Result<&T, AttestError> {
    got.map_err(|e| {
        AttestError::Internal(format!(
            "verified evidence of a TEE the policy refuses: {e}"
        ))
    })
}

/// The unsigned EAR of an attempt and the agent ID it may be stored under (known only once the
/// evidence verified to a trust anchor).
fn claims_of(
    cfg: &Configured,
    sink: &ResultSink,
    result: &Result<Outcome, AttestError>,
    attempt: &Attempt,
    now: i64,
) -> Result<(Ear, Option<String>), AttestError> {
    let evidence_digest: Option<[u8; 32]> = attempt
        .evidence_sha256
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
    let expected = wire::report_data(&attempt.nonce, &attempt.instance_key);
    let refusal = || match result {
        Err(AttestError::Evidence(e)) => Ok(Refusal::from_error(e, evidence_digest)),
        Err(e) => Ok(Refusal::new(e.category(), class_of(e), evidence_digest)),
        Ok(_) => Err(AttestError::Internal(
            "accepted without verified evidence".into(),
        )),
    };
    let verified_snp = match (result, &attempt.verified) {
        (Ok(Outcome::Snp(a)), _) => Some(&a.verified),
        (Err(_), Some(VerifiedEvidence::Snp(v))) => Some(&**v),
        _ => None,
    };
    let verified_tdx = match (result, &attempt.verified) {
        (Ok(Outcome::Tdx(a)), _) => Some(&a.verified),
        (Err(_), Some(VerifiedEvidence::Tdx(v))) => Some(&**v),
        _ => None,
    };
    let policy = attempt.policy.as_deref();
    let tee = match (attempt.tee, verified_tdx) {
        (Some(TeeKind::Tdx), _) | (_, Some(_)) => Tee::Tdx,
        _ => Tee::Snp,
    };
    let ids = policy_ids(sink, policy, tee);
    // `from_snp`/`from_tdx` want one id; the list is set on the result below.
    let first = ids.first().unwrap_or(&sink.snp_anchors);
    let nonce = &attempt.nonce;
    let (mut claims, agent) = match (verified_snp, verified_tdx) {
        (Some(v), _) => {
            let policy = policy.ok_or_else(|| {
                AttestError::Internal("verified evidence without a policy".into())
            })?;
            let agent = agent_id(cfg, v);
            (
                ear::from_snp(
                    &sink.issuer,
                    SnpOutcome::Verified {
                        verified: v,
                        policy: section(policy.snp_policy())?,
                        expected_report_data: &expected,
                        instance_key_spki: &attempt.instance_key,
                    },
                    nonce,
                    Some(&agent),
                    first,
                    now,
                ),
                Some(agent),
            )
        }
        (None, Some(v)) => {
            let policy = policy.ok_or_else(|| {
                AttestError::Internal("verified evidence without a policy".into())
            })?;
            let agent = tdx_agent_id(cfg, v.simulated(), &attempt.instance_key);
            (
                ear::from_tdx(
                    &sink.issuer,
                    TdxOutcome::Verified {
                        verified: v,
                        policy: section(policy.tdx_policy())?,
                        expected_report_data: Some(&expected),
                        instance_key_spki: Some(&attempt.instance_key),
                    },
                    nonce,
                    Some(&agent),
                    first,
                    now,
                ),
                Some(agent),
            )
        }
        (None, None) if tee == Tee::Tdx => (
            ear::from_tdx(
                &sink.issuer,
                TdxOutcome::Refused(refusal()?),
                nonce,
                None,
                first,
                now,
            ),
            None,
        ),
        (None, None) => (
            ear::from_snp(
                &sink.issuer,
                SnpOutcome::Refused(refusal()?),
                nonce,
                None,
                first,
                now,
            ),
            None,
        ),
    };
    set_policy_ids(&mut claims, &ids);
    Ok((claims, agent))
}

/// Builds, signs and stores the EAR of one attempt at `now`, and records it in `attempt.ear`.
///
/// Returns the attempt's outcome, unchanged unless an accepted result could not be signed or stored,
/// which turns it into a refusal (`Internal` for signing, `Unavailable` for the store).
pub(crate) async fn record(
    result: Result<Outcome, AttestError>,
    attempt: &mut Attempt,
    now: i64,
) -> Result<Outcome, AttestError> {
    // Not configured: there is no key to sign with, and the refusal says why.
    let Some(cfg) = attempt.cfg.clone() else {
        return result;
    };
    let Some(sink) = cfg.results.clone() else {
        return match result {
            Ok(_) => Err(AttestError::Internal(
                "no attestation-result sink in the configuration".into(),
            )),
            Err(e) => Err(e),
        };
    };
    let (claims, agent) = claims_of(&cfg, &sink, &result, attempt, now)?;
    let accepted = result.is_ok();
    if accepted && claims.status == EarStatus::Contraindicated {
        // The EAR re-checks the binding and the policy: if it disagrees, trust the stricter answer.
        return Err(AttestError::Internal(
            "the attestation result contradicts the acceptance (contraindicated)".into(),
        ));
    }
    let jws = match ear::sign(&claims, &sink.key) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "signing the attestation result failed");
            return match result {
                Ok(_) => Err(AttestError::Internal(format!(
                    "signing the attestation result: {e}"
                ))),
                Err(e) => Err(e),
            };
        }
    };
    let mut rec = EarRecord {
        sha256: hex::encode(Sha256::digest(jws.as_bytes())),
        status: claims.status,
        stored: Stored::NoStore,
    };
    let (Some(store), Some(agent)) = (sink.store.clone(), agent) else {
        if sink.store.is_some() {
            rec.stored = Stored::NoAgentId;
        }
        attempt.ear = Some(rec);
        return result;
    };
    let meta = ResultMeta {
        status: claims.status.as_str().to_owned(),
        issued_at: claims.iat,
        expires_at: claims.exp,
        evidence_sha256: attempt.evidence_sha256.clone(),
        policy_id: attempt.policy.as_ref().map(|p| p.policy_id().uri()),
    };
    let put_agent = agent.clone();
    let put = tokio::task::spawn_blocking(move || store.put(&put_agent, &jws, &meta))
        .await
        .map_err(|e| format!("result store task: {e}"))
        .and_then(|r| r.map_err(|e| e.to_string()));
    let out = match put {
        Ok(id) => {
            rec.stored = Stored::Id(id);
            result
        }
        Err(e) => {
            rec.stored = Stored::Failed;
            tracing::error!(
                agent_id = %agent,
                ear_status = claims.status.as_str(),
                error = %e,
                "storing the attestation result failed"
            );
            match result {
                Ok(_) => Err(AttestError::ResultStore(e)),
                Err(refusal) => Err(refusal),
            }
        }
    };
    attempt.ear = Some(rec);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn cfg(db: &str, key: &str) -> AttestationResultsConfig {
        AttestationResultsConfig {
            database: Some(db.into()),
            verifier_key_path: Some(key.into()),
            jwks_path: None,
            ear_validity_seconds: None,
        }
    }

    fn keys(r: Result<Option<ResultsSettings>, Vec<(String, String)>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn absent_block_is_fine_and_defaults_apply() {
        assert!(validate(None).unwrap().is_none());
        let s = validate(Some(&cfg("sqlite:///tmp/r.db", "/tmp/k.pem")))
            .unwrap()
            .unwrap();
        assert_eq!(s.validity_secs, 3600);
    }

    #[test]
    fn every_problem_names_its_key() {
        let bad = AttestationResultsConfig {
            database: Some("mysql://u:secret@h/db".into()),
            verifier_key_path: None,
            jwks_path: Some("/nonexistent-dir/jwks.json".into()),
            ear_validity_seconds: Some(5),
        };
        let r = validate(Some(&bad));
        let text = format!("{:?}", r.as_ref().err());
        assert!(!text.contains("secret"), "password leaked: {text}");
        assert_eq!(
            keys(r),
            [
                "attestation_results.database",
                "attestation_results.verifier_key_path",
                "attestation_results.jwks_path",
                "attestation_results.ear_validity_seconds"
            ]
        );
        assert_eq!(
            keys(validate(Some(&cfg(
                "sqlite:///nonexistent-dir/r.db",
                "/tmp/k.pem"
            )))),
            ["attestation_results.database"]
        );
        assert_eq!(
            keys(validate(Some(&cfg("sqlite:///tmp/r.db", "/tmp")))),
            ["attestation_results.verifier_key_path"]
        );
        for ok in [
            "postgres://spire@db/spire",
            "postgresql://db/spire",
            "host=/run/pg dbname=spire",
        ] {
            validate(Some(&cfg(ok, "/tmp/k.pem"))).unwrap();
        }
    }

    #[test]
    fn debug_never_shows_the_database_url() {
        let c = cfg("postgres://spire:hunter2@db/spire", "/tmp/k.pem");
        assert!(!format!("{c:?}").contains("hunter2"));
        let s = validate(Some(&c)).unwrap().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}

//! The server half: `spire.plugin.server.nodeattestor.v1.NodeAttestor` for SPIRE server.
//!
//! `Attest` is one straight line, like SPIRE's x509pop: receive the payload ([`crate::wire::Hello`]) →
//! configuration (FailedPrecondition before Configure) → decode (InvalidArgument) → send a fresh random
//! nonce → receive the [`crate::wire::EvidenceResponse`] → check the instance key's proof of possession →
//! parse the report → resolve its certificate chain (evidence, `cert_dir`, KDS) → verify to a pinned root
//! at `now` → REPORT_DATA must bind this nonce and this instance key → appraise → agent ID and selectors.
//! Every failure maps to one status code ([`crate::status::to_status`] for verifier errors), is logged
//! at warn with its category, and produces an "attestation result" record.
//!
//! What it does not do: TOFU / replay bookkeeping across attestations (the nonce is per stream and
//! REPORT_ID is stable per VM, so re-attestation of the same VM is allowed and yields the same agent ID);
//! checking that `plugin_name` equals the HCL block name (SPIRE does not tell plugins their name).
//!
//! Intel TDX takes the same line with a DCAP quote instead of a report ([`tdx`]): verified with the
//! configured collateral to Intel's (or a configured) root, REPORTDATA bound the same way, appraised
//! with the `tdx` policy. A server without a `tdx` block refuses TDX evidence before the challenge.
//!
//! The appraisal policy ([`twi_core::policy::Policy`]) is taken once per attestation, once the payload
//! says which TEE it is: a `policy_file` is `stat`ed and re-read if it changed, so a policy change applies at
//! the next attestation without a restart; a policy that cannot be read refuses with `Unavailable`
//! (fail closed). That one policy decides whether the TEE is allowed (before the challenge), appraises,
//! maps its `policy-match` selectors and is named in the EAR and the "attestation result" record.

mod certs;
pub mod config;
mod kds;
mod record;
mod results;
pub mod selectors;
mod tdx;
mod verifier;

use std::sync::Arc;

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use twi_core::policy::{Policy, PolicyError, PolicySource, Reload, Tee};
use twi_core::snp::{appraise, check_report_data, AttestationReport, VerifiedSnp};
use twi_core::ErrorClass;
use twi_plugin::proto::server_nodeattestor::attest_request::Request as In;
use twi_plugin::proto::server_nodeattestor::attest_response::Response as Out;
use twi_plugin::proto::server_nodeattestor::node_attestor_server::NodeAttestor;
use twi_plugin::proto::server_nodeattestor::{AgentAttributes, AttestRequest, AttestResponse};
use twi_plugin::{ConfigHandler, ConfigSlot, CoreConfig};

use crate::status::{to_status, to_status_for};
use crate::wire::{
    self, Challenge, Evidence, EvidenceResponse, Hello, SnpEvidence, TeeKind, WireError,
};
use config::{Configured, Stage};
use record::{AttestationResult, Verdict};

pub use config::{Config, KdsConfig, MinimumTcb, SnpConfig};
pub use results::AttestationResultsConfig;
pub use tdx::{MaskedHcl, NumberOrString, TdxConfig};

/// The current time in Unix seconds; a parameter so tests can verify at a chosen instant.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// The server NodeAttestor plugin. Cloning shares the configuration slot.
#[derive(Clone)]
pub struct ServerNodeAttestor {
    slot: ConfigSlot<Configured>,
    clock: Clock,
}

impl std::fmt::Debug for ServerNodeAttestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerNodeAttestor")
            .field("configured", &self.slot.is_set())
            .finish_non_exhaustive()
    }
}

impl Default for ServerNodeAttestor {
    fn default() -> Self {
        Self::new()
    }
}

/// Why one attestation failed, before or around the verifier.
#[derive(Debug, thiserror::Error)]
enum AttestError {
    /// A status from elsewhere (not configured; the host's stream broke).
    #[error("{}", .0.message())]
    Status(Status),
    /// The host broke the stream protocol (wrong or missing message).
    #[error("{0}")]
    Stream(&'static str),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("instance key is not a P-256 SubjectPublicKeyInfo: {0}")]
    InstanceKey(String),
    #[error("key proof is not an ASN.1 DER ECDSA signature: {0}")]
    KeyProofEncoding(String),
    #[error("key proof does not verify with the instance key of the attestation payload")]
    KeyProof,
    #[error(transparent)]
    Evidence(twi_core::Error),
    #[error("internal error: {0}")]
    Internal(String),
    /// An accepted attestation whose signed result could not be stored: nothing is issued without it.
    #[error("attestation result not stored: {0}")]
    ResultStore(String),
    /// The server has no block for this TEE: its evidence cannot be verified here.
    #[error("{what} not enabled on this server: {hint}")]
    NotEnabled {
        what: &'static str,
        hint: &'static str,
    },
    /// The policy in force has no section for this TEE ([`PolicyError::TeeNotAllowed`]).
    #[error("{0}")]
    TeeNotAllowed(PolicyError),
    /// The policy cannot be read (a broken or missing policy file): nothing is appraised until it is
    /// fixed, rather than under a policy that is no longer the one on disk.
    #[error("policy unavailable: {0}")]
    PolicyUnavailable(PolicyError),
}

impl AttestError {
    fn category(&self) -> &'static str {
        match self {
            AttestError::Status(s) if s.code() == tonic::Code::FailedPrecondition => {
                "not-configured"
            }
            AttestError::Status(_) => "stream",
            AttestError::Stream(_) | AttestError::Wire(_) => "malformed",
            AttestError::InstanceKey(_) | AttestError::KeyProofEncoding(_) => "malformed",
            AttestError::KeyProof => "key-proof",
            AttestError::Evidence(e) => e.category(),
            AttestError::Internal(_) => "internal",
            AttestError::ResultStore(_) => "result-store",
            AttestError::NotEnabled { .. } => "tee-not-enabled",
            AttestError::TeeNotAllowed(_) => "tee-not-allowed",
            AttestError::PolicyUnavailable(_) => "policy-unavailable",
        }
    }

    fn verdict(&self) -> Verdict {
        match self {
            AttestError::KeyProof => Verdict::Contraindicated,
            AttestError::Evidence(e) if e.class() == ErrorClass::Refused => {
                Verdict::Contraindicated
            }
            _ => Verdict::None,
        }
    }

    fn to_status(&self) -> Status {
        match self {
            AttestError::Status(s) => s.clone(),
            AttestError::Evidence(e) => to_status(e),
            AttestError::KeyProof => {
                Status::permission_denied(format!("snp evidence refused (key-proof): {self}"))
            }
            AttestError::Internal(_) => Status::internal(self.to_string()),
            AttestError::ResultStore(_) | AttestError::PolicyUnavailable(_) => {
                Status::unavailable(self.to_string())
            }
            AttestError::NotEnabled { .. } | AttestError::TeeNotAllowed(_) => {
                Status::failed_precondition(format!(
                    "evidence refused ({}): {self}",
                    self.category()
                ))
            }
            AttestError::Stream(_)
            | AttestError::Wire(_)
            | AttestError::InstanceKey(_)
            | AttestError::KeyProofEncoding(_) => Status::invalid_argument(self.to_string()),
        }
    }
}

/// What an accepted attestation produced.
struct Accepted {
    verified: VerifiedSnp,
    selectors: Vec<String>,
}

/// What [`ServerNodeAttestor::run`] produced, by TEE.
enum Outcome {
    Snp(Box<Accepted>),
    Tdx(Box<tdx::AcceptedTdx>),
}

/// Evidence that verified to a trust anchor, by TEE: what the EAR of the attempt is built from, even
/// when the binding or the policy then refused it.
pub(crate) enum VerifiedEvidence {
    Snp(Box<VerifiedSnp>),
    Tdx(Box<twi_core::tdx::VerifiedTdx>),
}

impl Outcome {
    fn into_snp(self) -> Result<Accepted, AttestError> {
        match self {
            Outcome::Snp(a) => Ok(*a),
            Outcome::Tdx(_) => Err(AttestError::Internal(
                "TDX outcome on the SEV-SNP path".into(),
            )),
        }
    }
}

/// What is known about an attempt when it ends, for the logs.
#[derive(Default)]
struct Attempt {
    /// The TEE the attestation payload announced (`None` before it is decoded).
    tee: Option<TeeKind>,
    cfg: Option<Arc<Configured>>,
    /// The policy taken for this attempt (`None` before, or when it could not be read): what appraised
    /// it, and what its EAR and log record name.
    policy: Option<Arc<Policy>>,
    evidence_sha256: Option<String>,
    /// The challenge sent and the instance key announced (for the EAR's binding check).
    nonce: Vec<u8>,
    instance_key: Vec<u8>,
    /// Evidence that verified to a trust anchor but was then refused (nonce, policy): its EAR says so.
    verified: Option<VerifiedEvidence>,
    /// The signed EAR of this attempt.
    ear: Option<results::EarRecord>,
    /// The TDX collateral the attempt was verified with (where from, stale within grace).
    collateral: Option<tdx::CollateralUse>,
}

/// A refusal by [`verify_snp`] or [`tdx::verify_tdx`], with the verified evidence when verification
/// itself passed.
pub(crate) struct VerifyFailure {
    pub(crate) error: twi_core::Error,
    pub(crate) verified: Option<VerifiedEvidence>,
}

impl From<twi_core::Error> for VerifyFailure {
    fn from(error: twi_core::Error) -> Self {
        VerifyFailure {
            error,
            verified: None,
        }
    }
}

impl ServerNodeAttestor {
    /// An unconfigured plugin on the system clock: Attest answers FailedPrecondition until Configure.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(system_clock))
    }

    /// As [`ServerNodeAttestor::new`] with another clock (certificate validity is checked at its `now`).
    pub fn with_clock(clock: Clock) -> Self {
        ServerNodeAttestor {
            slot: ConfigSlot::new(),
            clock,
        }
    }

    async fn run(
        &self,
        inbound: &mut Streaming<AttestRequest>,
        tx: &mpsc::Sender<Result<AttestResponse, Status>>,
        attempt: &mut Attempt,
    ) -> Result<Outcome, AttestError> {
        let payload = recv(inbound, Want::Payload).await?;
        let cfg = self.slot.get().map_err(AttestError::Status)?;
        attempt.cfg = Some(Arc::clone(&cfg));
        let hello = Hello::decode(&payload)?;
        attempt.tee = Some(hello.tee);
        if hello.tee == TeeKind::Tdx && cfg.tdx.is_none() {
            return Err(AttestError::NotEnabled {
                what: "TDX",
                hint: "its plugin_data has no tdx { … } block (collateral_dir or pcs_url, roots)",
            });
        }
        let policy = take_policy(&cfg).await?;
        attempt.policy = Some(Arc::clone(&policy));
        match hello.tee {
            TeeKind::Snp => policy.snp_policy().map(|_| ()),
            TeeKind::Tdx => policy.tdx_policy().map(|_| ()),
        }
        .map_err(AttestError::TeeNotAllowed)?;
        let instance_key = VerifyingKey::from_public_key_der(&hello.instance_key)
            .map_err(|e| AttestError::InstanceKey(e.to_string()))?;
        attempt.instance_key = hello.instance_key.clone();

        let mut nonce = vec![0u8; cfg.nonce_len];
        OsRng.fill_bytes(&mut nonce);
        attempt.nonce = nonce.clone();
        let challenge = wire::encode(&Challenge {
            v: wire::WIRE_VERSION,
            nonce: nonce.clone(),
        })?;
        tx.send(Ok(AttestResponse {
            response: Some(Out::Challenge(challenge)),
        }))
        .await
        .map_err(|_| AttestError::Stream("the stream closed before the challenge was sent"))?;

        let answer = EvidenceResponse::decode(&recv(inbound, Want::ChallengeResponse).await?)?;
        let evidence: SnpEvidence = match (hello.tee, answer.evidence.clone()) {
            (TeeKind::Snp, Evidence::Snp(e)) => e,
            (TeeKind::Tdx, Evidence::Tdx(e)) => {
                attempt.evidence_sha256 = Some(hex::encode(Sha256::digest(&e.quote)));
                check_key_proof(&instance_key, &nonce, &answer)?;
                let now = (self.clock)();
                let key_der = hello.instance_key;
                // Blocking: collateral may be read from disk or fetched from the PCS / PCCS.
                let verdict = tokio::task::spawn_blocking(move || match cfg.tdx.as_ref() {
                    Some(t) => tdx::verify_tdx(t, &policy, &e.quote, &nonce, &key_der, now),
                    None => tdx::TdxVerdict {
                        collateral: None,
                        result: Err(twi_core::Error::Internal {
                            detail: "TDX evidence past the not-enabled check".into(),
                        }
                        .into()),
                    },
                })
                .await
                .map_err(|e| AttestError::Internal(format!("verification task: {e}")))?;
                attempt.collateral = verdict.collateral;
                return verdict
                    .result
                    .map(|a| Outcome::Tdx(Box::new(a)))
                    .map_err(|f| {
                        attempt.verified = f.verified;
                        AttestError::Evidence(f.error)
                    });
            }
            _ => {
                return Err(AttestError::Stream(
                    "the evidence is not of the TEE kind the attestation payload announced",
                ))
            }
        };
        attempt.evidence_sha256 = Some(hex::encode(Sha256::digest(&evidence.report)));

        check_key_proof(&instance_key, &nonce, &answer)?;

        let now = (self.clock)();
        let key_der = hello.instance_key;
        tokio::task::spawn_blocking(move || {
            verify_snp(&cfg, &policy, &evidence, &nonce, &key_der, now)
        })
        .await
        .map_err(|e| AttestError::Internal(format!("verification task: {e}")))?
        .map_err(|f| {
            attempt.verified = f.verified;
            AttestError::Evidence(f.error)
        })
        .map(|a| Outcome::Snp(Box::new(a)))
    }

    /// [`ServerNodeAttestor::conclude`] for TDX attempts (agent ID: [`tdx_agent_id`]).
    fn conclude_tdx(
        &self,
        result: Result<Outcome, AttestError>,
        attempt: &Attempt,
        peer: &str,
    ) -> Result<AttestResponse, Status> {
        let policy_id = attempt.policy.as_ref().map(|p| p.policy_id().uri());
        let policy_id = policy_id.as_deref();
        let evidence_sha256 = attempt.evidence_sha256.as_deref();
        match (result, &attempt.cfg) {
            (Ok(Outcome::Tdx(a)), Some(cfg)) => {
                let agent_id = tdx_agent_id(cfg, a.simulated, &attempt.instance_key);
                tracing::info!(
                    agent_id = %agent_id,
                    tee = "tdx",
                    mrtd = %a.mrtd,
                    tcb_status = a.tcb_status.as_str(),
                    simulated = a.simulated,
                    peer,
                    "node attested"
                );
                AttestationResult {
                    verdict: Verdict::Affirming,
                    tee: "tdx",
                    category: "ok",
                    policy_id,
                    evidence_sha256,
                    ear: attempt.ear.as_ref(),
                    collateral: attempt.collateral,
                }
                .log();
                Ok(AttestResponse {
                    response: Some(Out::AgentAttributes(AgentAttributes {
                        spiffe_id: agent_id,
                        selector_values: a.selectors,
                        can_reattest: cfg.can_reattest,
                    })),
                })
            }
            (Ok(_), _) => Err(Status::internal(
                "TDX attestation accepted without a configuration or with SEV-SNP claims",
            )),
            (Err(e), _) => {
                let status = match &e {
                    AttestError::Evidence(err) => to_status_for("tdx", err),
                    AttestError::KeyProof => {
                        Status::permission_denied(format!("tdx evidence refused (key-proof): {e}"))
                    }
                    other => other.to_status(),
                };
                tracing::warn!(
                    tee = "tdx",
                    category = e.category(),
                    code = ?status.code(),
                    reason = status.message(),
                    peer,
                    "node attestation refused"
                );
                AttestationResult {
                    verdict: e.verdict(),
                    tee: "tdx",
                    category: e.category(),
                    policy_id,
                    evidence_sha256,
                    ear: attempt.ear.as_ref(),
                    collateral: attempt.collateral,
                }
                .log();
                Err(status)
            }
        }
    }

    /// Turns the outcome into the final stream message, logging the decision and the result record.
    fn conclude(
        &self,
        result: Result<Accepted, AttestError>,
        attempt: &Attempt,
        peer: &str,
    ) -> Result<AttestResponse, Status> {
        let policy_id = attempt.policy.as_ref().map(|p| p.policy_id().uri());
        let policy_id = policy_id.as_deref();
        let evidence_sha256 = attempt.evidence_sha256.as_deref();
        match (result, &attempt.cfg) {
            (Ok(accepted), Some(cfg)) => {
                let v = &accepted.verified;
                let agent_id = agent_id(cfg, v);
                tracing::info!(
                    agent_id = %agent_id,
                    tee = "snp",
                    product = %v.product(),
                    measurement = %hex::encode(v.report().measurement()),
                    simulated = v.simulated(),
                    peer,
                    "node attested"
                );
                AttestationResult {
                    verdict: Verdict::Affirming,
                    tee: "snp",
                    category: "ok",
                    policy_id,
                    evidence_sha256,
                    ear: attempt.ear.as_ref(),
                    collateral: attempt.collateral,
                }
                .log();
                Ok(AttestResponse {
                    response: Some(Out::AgentAttributes(AgentAttributes {
                        spiffe_id: agent_id,
                        selector_values: accepted.selectors,
                        can_reattest: cfg.can_reattest,
                    })),
                })
            }
            (Ok(_), None) => Err(Status::internal("accepted without a configuration")),
            (Err(e), _) => {
                let status = e.to_status();
                tracing::warn!(
                    category = e.category(),
                    code = ?status.code(),
                    reason = status.message(),
                    peer,
                    "node attestation refused"
                );
                AttestationResult {
                    verdict: e.verdict(),
                    tee: "snp",
                    category: e.category(),
                    policy_id,
                    evidence_sha256,
                    ear: attempt.ear.as_ref(),
                    collateral: attempt.collateral,
                }
                .log();
                Err(status)
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Payload,
    ChallengeResponse,
}

/// The instance key's signature over the nonce and the evidence digest (proof of possession).
fn check_key_proof(
    instance_key: &VerifyingKey,
    nonce: &[u8],
    answer: &EvidenceResponse,
) -> Result<(), AttestError> {
    let proof = Signature::from_der(&answer.key_proof)
        .map_err(|e| AttestError::KeyProofEncoding(e.to_string()))?;
    instance_key
        .verify(&wire::key_proof_message(nonce, &answer.evidence), &proof)
        .map_err(|_| AttestError::KeyProof)
}

/// Receives the next message, which must be `want` and not empty.
async fn recv(inbound: &mut Streaming<AttestRequest>, want: Want) -> Result<Vec<u8>, AttestError> {
    let msg = inbound.message().await.map_err(AttestError::Status)?;
    let bytes = match (want, msg.and_then(|m| m.request)) {
        (Want::Payload, Some(In::Payload(p))) => p,
        (Want::ChallengeResponse, Some(In::ChallengeResponse(r))) => r,
        (Want::Payload, None) => {
            return Err(AttestError::Stream(
                "stream ended before the attestation payload",
            ))
        }
        (Want::ChallengeResponse, None) => {
            return Err(AttestError::Stream(
                "stream ended before the challenge response",
            ))
        }
        (Want::Payload, Some(_)) => {
            return Err(AttestError::Stream(
                "first message is not the attestation payload",
            ))
        }
        (Want::ChallengeResponse, Some(_)) => {
            return Err(AttestError::Stream("expected a challenge response"))
        }
    };
    if bytes.is_empty() {
        return Err(AttestError::Stream("empty message"));
    }
    Ok(bytes)
}

/// `spiffe://<td>/spire/agent/<plugin_name>/<snp|sim-snp>/<REPORT_ID hex>`: REPORT_ID is signed and
/// unique per guest launch, so two VMs never share an ID and re-attestation keeps it.
fn agent_id(cfg: &Configured, v: &VerifiedSnp) -> String {
    let tee = if v.simulated() { "sim-snp" } else { "snp" };
    format!(
        "spiffe://{}/spire/agent/{}/{tee}/{}",
        cfg.trust_domain,
        cfg.plugin_name,
        hex::encode(v.report().report_id())
    )
}

/// `spiffe://<td>/spire/agent/<plugin_name>/<tdx|sim-tdx>/<SHA-256 of the instance key SPKI>`
/// ([`tdx::agent_id_segment`] says why the key and not a firmware ID).
fn tdx_agent_id(cfg: &Configured, simulated: bool, instance_key_der: &[u8]) -> String {
    format!(
        "spiffe://{}/spire/agent/{}/{}/{}",
        cfg.trust_domain,
        cfg.plugin_name,
        if simulated { "sim-tdx" } else { "tdx" },
        tdx::agent_id_segment(instance_key_der)
    )
}

/// The policy in force for one attestation, taken once: a policy file is `stat`ed (and re-read if it
/// changed) on a blocking thread. A reload is logged at info with the old and new digests; a policy
/// that cannot be read refuses the attestation (fail closed), logged at error.
async fn take_policy(cfg: &Arc<Configured>) -> Result<Arc<Policy>, AttestError> {
    if !matches!(cfg.policy, PolicySource::File(_)) {
        return cfg.policy.current().map_err(AttestError::PolicyUnavailable);
    }
    let cfg = Arc::clone(cfg);
    tokio::task::spawn_blocking(move || poll_policy_file(&cfg.policy))
        .await
        .map_err(|e| AttestError::Internal(format!("policy task: {e}")))?
}

fn poll_policy_file(source: &PolicySource) -> Result<Arc<Policy>, AttestError> {
    let PolicySource::File(file) = source else {
        return source.current().map_err(AttestError::PolicyUnavailable);
    };
    match file.poll() {
        Ok((policy, Reload::Reloaded { previous })) => {
            tracing::info!(
                policy_file = %file.path().display(),
                previous_digest = %previous.map_or_else(|| "-".to_owned(), hex::encode),
                digest = %policy.digest_hex(),
                policy_id = %policy.policy_id().uri(),
                "policy reloaded: it applies from this attestation on"
            );
            Ok(policy)
        }
        Ok((policy, _)) => Ok(policy),
        Err(e) => {
            tracing::error!(
                policy_file = %file.path().display(),
                error = %e,
                "policy unavailable: attestations are refused until the policy file is fixed"
            );
            Err(AttestError::PolicyUnavailable(e))
        }
    }
}

/// The blocking part: parse, resolve the chain, verify, bind, appraise under `policy` (the one taken
/// for this attestation), map the policy's `policy-match` selectors.
fn verify_snp(
    cfg: &Configured,
    policy: &Policy,
    ev: &SnpEvidence,
    nonce: &[u8],
    instance_key_der: &[u8],
    now: i64,
) -> Result<Accepted, VerifyFailure> {
    let snp_policy = policy.snp_policy().map_err(|e| twi_core::Error::Internal {
        detail: format!("SEV-SNP evidence past the policy's TEE check: {e}"),
    })?;
    let report = AttestationReport::parse(&ev.report)?;
    let resolved = cfg.certs.resolve(&report, ev.cert_table.as_deref())?;
    tracing::debug!(sources = ?resolved.sources, "certificate chain resolved");
    let product = report
        .cpuid()
        .and_then(|(family, model, _)| twi_core::snp::Product::from_cpuid(family, model));
    if let (Some(kds), Some(product)) = (cfg.certs.kds(), product) {
        if !cfg.verifier.has_product(product) {
            refresh_crl(cfg, kds, product, now);
        }
    }
    let verified = match cfg.verifier().verify(&report, &resolved.chain, now) {
        Err(twi_core::Error::CrlExpired { .. })
            if cfg.certs.kds().is_some() && product.is_some() =>
        {
            if let (Some(kds), Some(product)) = (cfg.certs.kds(), product) {
                refresh_crl(cfg, kds, product, now);
            }
            cfg.verifier().verify(&report, &resolved.chain, now)
        }
        other => other,
    }?;
    let checked = check_report_data(&report, &wire::report_data(nonce, instance_key_der))
        .and_then(|()| appraise(&verified, snp_policy));
    match checked {
        Ok(appraisal) => {
            // The library prefixes `simulated:` itself; the plugin's own selectors already carry it.
            let mut selectors = selectors::snp_selectors(&appraisal.claims);
            selectors.extend(policy.selectors_for(&appraisal));
            Ok(Accepted {
                selectors,
                verified,
            })
        }
        Err(error) => Err(VerifyFailure {
            error,
            verified: Some(VerifiedEvidence::Snp(Box::new(verified))),
        }),
    }
}

/// Fetches `product`'s CRL from KDS (rate-limited) and swaps in a verifier that uses it. Failures are
/// logged: without a CRL the chain is checked as if none were configured, as without KDS.
fn refresh_crl(cfg: &Configured, kds: &kds::Kds, product: twi_core::snp::Product, now: i64) {
    if !cfg.verifier.may_fetch_crl(product, now) {
        return;
    }
    match kds.fetch_crl(product) {
        Ok(der) => match cfg.verifier.replace_product_crl(product, der) {
            Ok(()) => tracing::info!(%product, "KDS: CRL loaded"),
            Err(e) => tracing::warn!(%product, error = %e, "KDS: CRL refused"),
        },
        Err(e) => tracing::warn!(%product, error = %e, "KDS: CRL fetch failed"),
    }
}

fn log_configured(cfg: &Configured) {
    for (path, fingerprint) in &cfg.simulated_roots {
        tracing::warn!(
            path = %path.display(),
            sha256 = %fingerprint,
            "SIMULATED TEE roots trusted: evidence chaining to this root proves nothing about any hardware \
             (its agents get sim-snp IDs and simulated: selectors); never use in production"
        );
    }
    if let Some(t) = &cfg.tdx {
        for (path, fingerprint) in &t.simulated_roots {
            tracing::warn!(
                path = %path.display(),
                sha256 = %fingerprint,
                "SIMULATED TDX root trusted: quotes chaining to this root prove nothing about any hardware \
                 (their agents get sim-tdx IDs and simulated: selectors); never use in production"
            );
        }
        let policy = t.collateral.policy();
        tracing::info!(
            tdx_trust_anchors = t.verifier.roots().describe().len(),
            tdx_anchors_digest = %t.anchors_digest,
            collateral_dir = %t.offline_dir.as_ref().map_or_else(|| "-".to_owned(), |d| d.display().to_string()),
            pcs_url = t.pcs_url().unwrap_or("-"),
            cache_dir = %t.cache_dir.as_ref().map_or_else(|| "-".to_owned(), |d| d.display().to_string()),
            collateral_refresh_before_seconds = policy.refresh_before_seconds,
            collateral_grace_seconds = policy.grace_seconds,
            collateral_retry_seconds = policy.retry_interval_seconds,
            "TDX enabled"
        );
        if policy.grace_seconds > 0 {
            tracing::warn!(
                collateral_grace_seconds = policy.grace_seconds,
                "TDX collateral past its nextUpdate is accepted for up to collateral_grace_seconds \
                 when no fresh copy can be had (each such use is logged at warn)"
            );
        }
    }
    let policy_file = match &cfg.policy {
        PolicySource::File(f) => f.path().display().to_string(),
        _ => "-".to_owned(),
    };
    let policy = cfg.policy.current();
    if let Ok(p) = &policy {
        if cfg.tdx.is_some() && !p.allows(Tee::Tdx) {
            tracing::warn!(
                policy_id = %p.policy_id().uri(),
                "the policy has no tdx section: TDX evidence is refused (tee-not-allowed) although \
                 plugin_data has a tdx block"
            );
        }
        if cfg.tdx.is_none() && p.allows(Tee::Tdx) {
            tracing::warn!(
                policy_id = %p.policy_id().uri(),
                "the policy allows TDX but plugin_data has no tdx block (collateral_dir, roots): TDX \
                 evidence is refused (tee-not-enabled)"
            );
        }
        if !p.allows(Tee::Snp) {
            tracing::info!(
                policy_id = %p.policy_id().uri(),
                "the policy has no snp section: SEV-SNP evidence is refused (tee-not-allowed)"
            );
        }
    }
    let anchors = cfg.verifier().anchors().describe();
    tracing::info!(
        trust_domain = %cfg.trust_domain,
        plugin_name = %cfg.plugin_name,
        nonce_len = cfg.nonce_len,
        can_reattest = cfg.can_reattest,
        trust_anchors = anchors.len(),
        snp_anchors_digest = %cfg.snp_anchors_digest,
        kds = cfg.certs.kds().is_some(),
        policy_source = cfg.policy_origin.as_str(),
        policy_file = %policy_file,
        policy_id = %policy.as_ref().map_or_else(|e| format!("unavailable: {e}"), |p| p.policy_id().uri()),
        "configured"
    );
}

#[tonic::async_trait]
impl ConfigHandler for ServerNodeAttestor {
    async fn configure(&self, core: CoreConfig, hcl: &str) -> Result<(), Status> {
        let hcl = hcl.to_owned();
        let built = tokio::task::spawn_blocking(move || {
            config::build_for(&core, &hcl, Stage::Configure).and_then(results::attach)
        })
        .await
        .map_err(|e| Status::internal(format!("configuration task: {e}")))?;
        match built {
            Ok(cfg) => {
                log_configured(&cfg);
                self.slot.set(cfg);
                Ok(())
            }
            Err(errors) => Err(Status::invalid_argument(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }

    async fn validate(&self, core: CoreConfig, hcl: &str) -> Result<Vec<String>, Status> {
        let hcl = hcl.to_owned();
        let built = tokio::task::spawn_blocking(move || config::build(&core, &hcl))
            .await
            .map_err(|e| Status::internal(format!("validation task: {e}")))?;
        Ok(match built {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        })
    }
}

#[tonic::async_trait]
impl NodeAttestor for ServerNodeAttestor {
    type AttestStream = ReceiverStream<Result<AttestResponse, Status>>;

    async fn attest(
        &self,
        request: Request<Streaming<AttestRequest>>,
    ) -> Result<Response<Self::AttestStream>, Status> {
        // Not authenticated: for logs only (SPIRE ≥ 1.15.2 sends it).
        let peer = request
            .metadata()
            .get("x-forwarded-client-ip")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(2);
        let this = self.clone();
        tokio::spawn(async move {
            let mut attempt = Attempt::default();
            let outcome = this.run(&mut inbound, &tx, &mut attempt).await;
            let outcome = results::record(outcome, &mut attempt, (this.clock)()).await;
            let reply = if attempt.tee == Some(TeeKind::Tdx) {
                this.conclude_tdx(outcome, &attempt, &peer)
            } else {
                this.conclude(outcome.and_then(Outcome::into_snp), &attempt, &peer)
            };
            // The host may have gone away; there is nobody left to tell.
            let _ = tx.send(reply).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

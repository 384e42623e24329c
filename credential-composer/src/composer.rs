//! Which SVID gets what, and the one provenance record per credential, logged before SPIRE gets an
//! answer. A plain struct, independent of gRPC ([`crate::plugin`] is the service around it).
//!
//! - **Agent X.509-SVIDs**: the agent's latest EAR from the node attestor's store as a record CMW
//!   (`id-pe-cmw`), and the provenance extension. No current EAR (none, expired, unreadable, store
//!   down): refused, or issued without the CMW (`on_missing_attestation_result = "omit"`). The key is
//!   *bound* when an EAR submod's key binding is the SHA-256 of this SVID's SubjectPublicKeyInfo;
//!   `require_key_binding` refuses an agent SVID whose key is not.
//! - **Workload X.509-SVIDs**: the SPIFFE ID's registration entries and candidate parent agents from
//!   SPIRE's local API ([`crate::spire_api`]). One candidate agent: its EAR as a record CMW. 2 to
//!   `max_collection`: a collection CMW of their EARs, labelled by agent ID. More (up to
//!   [`MAX_CANDIDATE_DIGESTS`]): no CMW, the record lists their EAR digests. Otherwise (no entry, a
//!   parent that is neither an agent nor a node alias, too many agents, the API unreachable): no
//!   CMW, the record says why. Workload SVIDs are never refused for lack of an attestation result:
//!   the record states what the server knows, no more. The CA health check (its ID
//!   `/for/health/check/only` with SPIRE's fixed probe key) keeps SPIRE's defaults and gets no
//!   record: its certificate is thrown away at once, a record per probe would fill the log with
//!   credentials nobody holds, and a log failure must not make SPIRE report its CA unhealthy.
//! - **JWT-SVIDs**: the same resolution; claims `cmw`, `jti` = record id and the log reference.
//! - **Server CA and server SVID**: not ours ([`crate::plugin`] answers `Unimplemented`).
//!
//! Every record is signed ([`crate::statement`]) and appended through the [`Sequencer`] (durable
//! when `append` returns) before the answer; if that fails, the credential is refused
//! (`Unavailable`), or with `on_log_failure = "omit_provenance"` issued without the provenance
//! extension and the JWT reference claims (logged at warn each time).

pub mod claims;
pub mod wprov;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use const_oid::ObjectIdentifier;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tonic::Status;
use twi_core::ear::{Ear, Status as EarStatus};
use twi_plugin::proto::credentialcomposer::{X509Extension, X509svidAttributes};
use twi_results::ResultStore;

pub use claims::{json_to_struct, struct_to_json, ClaimsError};

use crate::cmw::{Cmw, ID_PE_CMW};
use crate::config::{OnLogFailure, OnMissing, Settings};
use crate::extension::{ProofForm, TwiProvenance};
use crate::jwt::{self, CprovRef};
use crate::record::{
    CredentialKind, CredentialProvenanceRecord, EarRef, EarSummary, EvidenceRef, PolicyRef,
    ResourceDescriptor,
};
use crate::spire_api::{EntryInfo, Registry, Resolution};
use crate::statement::{sign_statement, ProvenanceKey};
use crate::tlog::{Appended, Sequencer, TlogError};

/// The SPIFFE ID path SPIRE's CA health check composes a workload SVID for.
pub const HEALTH_CHECK_PATH: &str = "/for/health/check/only";
/// The fixed P-256 public key (SubjectPublicKeyInfo DER, base64) SPIRE's CA health check composes
/// with (SPIRE `pkg/server/ca/ca_health.go` `caHealthKey`). Only this ID *with this key* is the
/// probe: anyone registering a workload under that ID with another key gets an ordinary record.
pub const HEALTH_CHECK_KEY_B64: &str =
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzLY1/SRlsMJExTnuvzBO292RjGjU\
     3L8jFRtmQl0CjBeHdxUlGK1OkNLDYh0b6AW4siWt+y+DcbUAWNb14e5zWg==";
/// Most candidate parent agents whose EAR digests a record lists (beyond `max_collection`); more
/// gives [`EarRef::Unknown`] with the count, so a wide node alias cannot make every workload SVID
/// read hundreds of EARs.
pub const MAX_CANDIDATE_DIGESTS: usize = 64;
/// Prefix of the policy id of a workload record: the registration entry.
pub const ENTRY_POLICY_PREFIX: &str = "spire-entry:";
/// The tag URI prefix of the node attestor's policy ids (`twi_core::ear::PolicyId::uri`).
const POLICY_URI_PREFIX: &str = "tag:twi-spire.dev,2026:policy/";

/// The current time in Unix milliseconds; a parameter so tests run at chosen instants.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why a credential was not composed. Messages are what SPIRE logs (after its
/// `credentialcomposer(<name>): ` prefix); none carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// The request has no attributes to add to.
    #[error("the request has no {what}")]
    NoAttributes { what: &'static str },
    /// An earlier composer already added an extension with one of our OIDs; adding ours would make
    /// the certificate carry the OID twice, which Go refuses.
    #[error(
        "an earlier credential composer already added extension {oid} ({what}); remove it from that \
         composer or set provenance_oid to another OID"
    )]
    OidInUse { oid: String, what: &'static str },
    /// No current EAR for the agent and `on_missing_attestation_result = "refuse"`.
    #[error(
        "agent {agent}: no current attestation result ({reason}); its X509-SVID is refused \
         (on_missing_attestation_result = \"refuse\")"
    )]
    MissingAttestationResult {
        agent: String,
        reason: MissingReason,
    },
    /// `require_key_binding` and the SVID key is not the bound instance key.
    #[error(
        "agent {agent}: the X509-SVID key (SPKI SHA-256 {spki}) is not the instance key bound in the \
         attested evidence ({bound}); refused (require_key_binding = true)"
    )]
    KeyNotBound {
        agent: String,
        spki: String,
        bound: String,
    },
    /// The record could not be logged and `on_log_failure = "refuse"`.
    #[error(
        "{kind} for {sub}: the provenance record could not be appended to the transparency log \
         ({source}); the credential is refused (on_log_failure = \"refuse\")"
    )]
    Log {
        kind: CredentialKind,
        sub: String,
        #[source]
        source: TlogError,
    },
    /// The JWT claims cannot be converted.
    #[error("JWT-SVID claims: {0}")]
    Claims(#[from] ClaimsError),
    /// A bug or an impossible state (an extension that cannot be encoded).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ComposeError {
    /// The gRPC status SPIRE gets.
    pub fn to_status(&self) -> Status {
        let msg = self.to_string();
        match self {
            ComposeError::NoAttributes { .. } | ComposeError::Claims(_) => {
                Status::invalid_argument(msg)
            }
            ComposeError::OidInUse { .. } => Status::failed_precondition(msg),
            ComposeError::MissingAttestationResult { reason, .. } => match reason {
                MissingReason::Store(_) => Status::unavailable(msg),
                _ => Status::failed_precondition(msg),
            },
            ComposeError::KeyNotBound { .. } => Status::permission_denied(msg),
            ComposeError::Log { .. } => Status::unavailable(msg),
            ComposeError::Internal(_) => Status::internal(msg),
        }
    }
}

/// Why an agent has no current EAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingReason {
    /// The store has no result for the agent.
    NotFound,
    /// The latest result's `exp` has passed.
    Expired { exp: i64, now: i64 },
    /// The stored EAR cannot be parsed.
    Unreadable(String),
    /// The store could not be read.
    Store(String),
}

impl fmt::Display for MissingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissingReason::NotFound => f.write_str("none stored"),
            MissingReason::Expired { exp, now } => {
                write!(f, "the latest expired at {exp} (now {now})")
            }
            MissingReason::Unreadable(e) => write!(f, "the latest cannot be read: {e}"),
            MissingReason::Store(e) => write!(f, "attestation-result store: {e}"),
        }
    }
}

/// An agent's latest EAR, current at the time asked.
#[derive(Clone, Debug)]
pub struct CurrentEar {
    /// The compact JWS, as stored.
    pub jws: String,
    /// Its claims (the JWS payload; the store checked the JWS against its digest).
    pub ear: Ear,
    /// SHA-256 of the JWS ASCII.
    pub sha256: [u8; 32],
}

impl CurrentEar {
    /// Whether a submod's key binding is `spki_sha256` (the SVID key's SPKI digest).
    pub fn binds(&self, spki_sha256: &[u8; 32]) -> bool {
        let want = hex::encode(spki_sha256);
        self.ear
            .submods
            .values()
            .filter_map(|a| a.key_binding.as_deref())
            .any(|b| b.eq_ignore_ascii_case(&want))
    }

    /// The key bindings the EAR states, for messages.
    fn bindings(&self) -> String {
        let b: Vec<&str> = self
            .ear
            .submods
            .values()
            .filter_map(|a| a.key_binding.as_deref())
            .collect();
        if b.is_empty() {
            "the EAR binds no key".into()
        } else {
            format!("EAR key binding {}", b.join(", "))
        }
    }

    /// The record's summary of this EAR.
    pub fn summary(&self, key_bound: Option<bool>) -> EarSummary {
        let mut policy_ids: Vec<String> = Vec::new();
        for id in self.ear.submods.values().flat_map(|a| a.policy_ids.iter()) {
            if !policy_ids.contains(id) {
                policy_ids.push(id.clone());
            }
        }
        EarSummary {
            sha256: self.sha256,
            status: self.ear.status.as_str().to_owned(),
            verifier: self.ear.verifier_id.build.clone(),
            policy_ids,
            key_bound,
        }
    }

    /// The raw evidence named by the first submod that names one.
    pub fn evidence(&self) -> Option<EvidenceRef> {
        self.ear.submods.iter().find_map(|(tee, a)| {
            let digest = hex::decode(a.evidence_sha256.as_deref()?).ok()?;
            Some(EvidenceRef {
                kind: tee.clone(),
                sha256: digest.try_into().ok()?,
            })
        })
    }
}

/// The claims of an EAR JWS, without checking its signature (the store checked the row's digest;
/// relying parties check the signature with the verifier's JWKS).
///
/// # Errors
///
/// What is malformed.
pub fn parse_ear(jws: &str) -> Result<Ear, String> {
    let payload = jws
        .split('.')
        .nth(1)
        .ok_or_else(|| "not a compact JWS".to_owned())?;
    let bytes = B64URL
        .decode(payload.trim().as_bytes())
        .map_err(|e| format!("payload is not base64url: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("payload is not an EAR: {e}"))
}

/// The latest EAR of `agent` from `store` if it is current at `now` (Unix seconds). Blocking.
///
/// # Errors
///
/// Why there is none.
pub fn latest_ear(
    store: &dyn ResultStore,
    agent: &str,
    now: i64,
) -> Result<CurrentEar, MissingReason> {
    let stored = store
        .latest(agent)
        .map_err(|e| MissingReason::Store(e.to_string()))?
        .ok_or(MissingReason::NotFound)?;
    let ear = parse_ear(&stored.ear_jws).map_err(MissingReason::Unreadable)?;
    if now >= ear.exp {
        return Err(MissingReason::Expired { exp: ear.exp, now });
    }
    Ok(CurrentEar {
        sha256: crate::cmw::ear_digest(&stored.ear_jws),
        jws: stored.ear_jws,
        ear,
    })
}

/// The issuing policy named by a node-attestor policy id
/// (`tag:twi-spire.dev,2026:policy/<name>/<version>?sha256=<hex>`): id without version and digest,
/// version, digest. Another URI is kept whole as the id.
pub fn policy_from_uri(uri: &str) -> PolicyRef {
    let parsed = uri.strip_prefix(POLICY_URI_PREFIX).and_then(|rest| {
        let (path, query) = rest.split_once("?sha256=")?;
        let (name, version) = path.rsplit_once('/')?;
        let digest: [u8; 32] = hex::decode(query).ok()?.try_into().ok()?;
        Some(PolicyRef {
            id: format!("{POLICY_URI_PREFIX}{name}"),
            version: version.to_owned(),
            sha256: Some(digest),
        })
    });
    parsed.unwrap_or_else(|| PolicyRef {
        id: uri.to_owned(),
        version: String::new(),
        sha256: None,
    })
}

/// The canonical form an entry's policy digest is computed over: compact JSON with the keys in this
/// (sorted) order and the selectors as sorted `type:value` strings.
#[derive(Serialize)]
struct CanonicalEntry<'a> {
    parent_id: &'a str,
    selectors: Vec<String>,
    spiffe_id: &'a str,
}

/// The issuing policy of a workload credential: its registration entry, by id, revision and a
/// digest of what the entry demands (SPIFFE ID, parent, selectors).
pub fn entry_policy(entry: &EntryInfo) -> PolicyRef {
    let mut selectors: Vec<String> = entry.selectors.iter().map(ToString::to_string).collect();
    selectors.sort();
    selectors.dedup();
    let canonical = CanonicalEntry {
        parent_id: &entry.parent_id,
        selectors,
        spiffe_id: &entry.spiffe_id,
    };
    // Serialising strings and a list of strings cannot fail.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    PolicyRef {
        id: format!("{ENTRY_POLICY_PREFIX}{}", entry.id),
        version: entry.revision.to_string(),
        sha256: Some(Sha256::digest(&bytes).into()),
    }
}

/// What the composer knows about a workload: the attestation behind it and what its entry demands.
#[derive(Debug, Default)]
struct WorkloadFacts {
    ear: Option<EarRef>,
    cmw: Option<Cmw>,
    evidence: Option<EvidenceRef>,
    policy: Option<PolicyRef>,
    wprov: Vec<ResourceDescriptor>,
}

impl WorkloadFacts {
    fn unknown(reason: impl Into<String>) -> Self {
        Self {
            ear: Some(EarRef::Unknown {
                reason: reason.into(),
            }),
            ..Self::default()
        }
    }
}

/// A record in the log.
#[derive(Debug)]
struct Logged {
    statement: Vec<u8>,
    appended: Appended,
}

/// The parts a [`Composer`] works with, opened by Configure (or by a test).
pub struct ComposerParts {
    pub settings: Arc<Settings>,
    pub provenance_key: Arc<ProvenanceKey>,
    pub sequencer: Arc<Sequencer>,
    /// The log's checkpoint origin (for the JWT reference claim).
    pub log_origin: String,
    pub store: Arc<dyn ResultStore>,
    pub registry: Arc<dyn Registry>,
    pub clock: Clock,
}

/// The decisions of the plugin, for one configuration.
pub struct Composer {
    settings: Arc<Settings>,
    key: Arc<ProvenanceKey>,
    sequencer: Arc<Sequencer>,
    log_origin: String,
    store: Arc<dyn ResultStore>,
    registry: Arc<dyn Registry>,
    clock: Clock,
    health_check_id: String,
    health_check_key: Vec<u8>,
    /// Agents' EARs as last read for a workload SVID, with when (clock ms): see [`EAR_CACHE_MS`].
    ear_cache: std::sync::Mutex<HashMap<String, (u64, CurrentEar)>>,
    timing: ComposeTiming,
}

/// The plugin's own clock around each workload X509-SVID it composes, summarised at info level
/// every [`ComposeTiming::WINDOW`] SVIDs: what the composer costs inside the process SPIRE calls,
/// under the real load, to compare with what SPIRE's callers see (the rest is the plugin call and
/// SPIRE's own work). One log line per window, not per SVID.
#[derive(Debug, Default)]
struct ComposeTiming {
    micros: std::sync::Mutex<Vec<u64>>,
}

impl ComposeTiming {
    const WINDOW: usize = 500;

    fn record(&self, elapsed: std::time::Duration) {
        let Ok(mut v) = self.micros.lock() else {
            return;
        };
        v.push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        if v.len() < Self::WINDOW {
            return;
        }
        v.sort_unstable();
        let at = |q: usize| {
            v.get((v.len() * q).div_ceil(100).saturating_sub(1))
                .copied()
        };
        tracing::info!(
            svids = v.len(),
            p50_us = at(50),
            p99_us = at(99),
            max_us = v.last().copied(),
            "composer timing: workload X509-SVIDs composed in this process"
        );
        v.clear();
    }
}

/// How long a workload SVID may reuse an agent's EAR read from the store for an earlier SVID: the
/// staleness bound of the EAR in workload SVIDs (a re-attested agent's new EAR is in every workload
/// SVID issued 1 s after it was stored; an expired one is never used, `exp` is checked on every
/// use). Saves the store read, digest and JSON parse (~0.1 ms) per SVID. Agent SVIDs always read the
/// store: they are issued right after the attestation that wrote the EAR they must carry.
pub const EAR_CACHE_MS: u64 = 1_000;
/// Agents kept in the EAR cache; past it the cache starts over.
const EAR_CACHE_MAX: usize = 4_096;

impl fmt::Debug for Composer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Composer")
            .field("settings", &self.settings)
            .field("log_origin", &self.log_origin)
            .finish_non_exhaustive()
    }
}

fn oid_eq(text: &str, oid: &ObjectIdentifier) -> bool {
    ObjectIdentifier::new(text.trim()).map_or(text.trim() == oid.to_string(), |o| o == *oid)
}

impl Composer {
    /// A composer over opened parts.
    pub fn new(parts: ComposerParts) -> Self {
        let health_check_id = format!(
            "spiffe://{}{HEALTH_CHECK_PATH}",
            parts.settings.trust_domain
        );
        Self {
            settings: parts.settings,
            key: parts.provenance_key,
            sequencer: parts.sequencer,
            log_origin: parts.log_origin,
            store: parts.store,
            registry: parts.registry,
            clock: parts.clock,
            health_check_id,
            // A constant that decodes; an empty key would only make the probe an ordinary workload.
            health_check_key: base64::engine::general_purpose::STANDARD
                .decode(HEALTH_CHECK_KEY_B64)
                .unwrap_or_default(),
            ear_cache: std::sync::Mutex::new(HashMap::new()),
            timing: ComposeTiming::default(),
        }
    }

    /// The settings this composer runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The sequencer records are appended through.
    pub fn sequencer(&self) -> &Arc<Sequencer> {
        &self.sequencer
    }

    fn now(&self) -> (u64, i64) {
        let ms = (self.clock)();
        (ms, i64::try_from(ms / 1000).unwrap_or(i64::MAX))
    }

    /// Refuses attributes where an earlier composer already used one of our OIDs.
    fn check_oids(&self, attrs: &X509svidAttributes) -> Result<(), ComposeError> {
        for ext in &attrs.extra_extensions {
            if oid_eq(&ext.oid, &ID_PE_CMW) {
                return Err(ComposeError::OidInUse {
                    oid: ext.oid.clone(),
                    what: "id-pe-cmw, the attestation result",
                });
            }
            if oid_eq(&ext.oid, &self.settings.provenance_oid) {
                return Err(ComposeError::OidInUse {
                    oid: ext.oid.clone(),
                    what: "provenance_oid, the provenance record",
                });
            }
        }
        Ok(())
    }

    /// The agents' latest EARs, in the order asked. `fresh`: read the store (agent SVIDs); else a
    /// current EAR read within [`EAR_CACHE_MS`] is reused (workload SVIDs).
    async fn latest(
        &self,
        agents: Vec<String>,
        now: i64,
        fresh: bool,
    ) -> Vec<(String, Result<CurrentEar, MissingReason>)> {
        let (now_ms, _) = self.now();
        let mut cached: Vec<Option<CurrentEar>> = vec![None; agents.len()];
        if !fresh {
            if let Ok(cache) = self.ear_cache.lock() {
                for (slot, agent) in cached.iter_mut().zip(&agents) {
                    *slot = cache
                        .get(agent)
                        .filter(|(at, cur)| {
                            now_ms.saturating_sub(*at) < EAR_CACHE_MS && now < cur.ear.exp
                        })
                        .map(|(_, cur)| cur.clone());
                }
            }
        }
        let misses: Vec<String> = agents
            .iter()
            .zip(&cached)
            .filter(|(_, c)| c.is_none())
            .map(|(a, _)| a.clone())
            .collect();
        let mut read: HashMap<String, Result<CurrentEar, MissingReason>> = HashMap::new();
        if !misses.is_empty() {
            let store = Arc::clone(&self.store);
            let joined = tokio::task::spawn_blocking(move || {
                misses
                    .into_iter()
                    .map(|a| {
                        let r = latest_ear(store.as_ref(), &a, now);
                        (a, r)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            match joined {
                Ok(results) => {
                    if let Ok(mut cache) = self.ear_cache.lock() {
                        if cache.len() >= EAR_CACHE_MAX {
                            cache.clear();
                        }
                        for (a, r) in &results {
                            match r {
                                Ok(cur) => cache.insert(a.clone(), (now_ms, cur.clone())),
                                Err(_) => cache.remove(a),
                            };
                        }
                    }
                    read.extend(results);
                }
                Err(e) => {
                    return vec![(
                        String::new(),
                        Err(MissingReason::Store(format!("store task: {e}"))),
                    )]
                }
            }
        }
        agents
            .into_iter()
            .zip(cached)
            .map(|(a, c)| {
                let r = match c {
                    Some(cur) => Ok(cur),
                    None => read.remove(&a).unwrap_or(Err(MissingReason::NotFound)),
                };
                (a, r)
            })
            .collect()
    }

    async fn latest_one(
        &self,
        agent: &str,
        now: i64,
        fresh: bool,
    ) -> Result<CurrentEar, MissingReason> {
        self.latest(vec![agent.to_owned()], now, fresh)
            .await
            .into_iter()
            .next()
            .map_or(Err(MissingReason::NotFound), |(_, r)| r)
    }

    /// Signs the record and appends it; `Ok(None)` when the log failed and `on_log_failure` is
    /// `omit_provenance`.
    async fn log(
        &self,
        record: &CredentialProvenanceRecord,
    ) -> Result<Option<Logged>, ComposeError> {
        let statement = sign_statement(record, &self.settings.issuer, &self.key);
        match self.sequencer.append(statement.clone()).await {
            Ok(appended) => {
                // Debug, not info: one line per credential is for troubleshooting (the record
                // itself is in the transparency log for whoever audits), and SPIRE at its usual
                // INFO level drops it; failures stay at warn/error below. Note that go-plugin still
                // relays every line the plugin emits (its default filter is `debug`), so
                // `TWI_LOG=info` on the plugin spares that pipe write as well.
                tracing::debug!(
                    rid = %record.rid,
                    kind = %record.kind,
                    sub = %record.sub,
                    log_index = appended.index,
                    ear = ear_kind(&record.ear),
                    "credential provenance record logged"
                );
                Ok(Some(Logged {
                    statement,
                    appended,
                }))
            }
            Err(source) => match self.settings.on_log_failure {
                OnLogFailure::Refuse => {
                    tracing::error!(
                        rid = %record.rid,
                        kind = %record.kind,
                        sub = %record.sub,
                        error = %source,
                        "provenance record not logged; credential refused"
                    );
                    Err(ComposeError::Log {
                        kind: record.kind,
                        sub: record.sub.clone(),
                        source,
                    })
                }
                OnLogFailure::OmitProvenance => {
                    tracing::warn!(
                        rid = %record.rid,
                        kind = %record.kind,
                        sub = %record.sub,
                        error = %source,
                        "provenance record not logged; credential issued WITHOUT provenance \
                         (on_log_failure = \"omit_provenance\")"
                    );
                    Ok(None)
                }
            },
        }
    }

    fn extensions(
        &self,
        mut attrs: X509svidAttributes,
        cmw: Option<&Cmw>,
        logged: Option<&Logged>,
    ) -> Result<X509svidAttributes, ComposeError> {
        if let Some(cmw) = cmw {
            attrs.extra_extensions.push(X509Extension {
                oid: ID_PE_CMW.to_string(),
                value: cmw.to_extn_value(),
                critical: false,
            });
        }
        if let Some(l) = logged {
            let proof = String::from_utf8(l.appended.proof.to_tlog_proof())
                .map_err(|e| ComposeError::Internal(format!("tlog-proof is not UTF-8: {e}")))?;
            let value = TwiProvenance {
                statement: l.statement.clone(),
                proof: Some(ProofForm::TlogProof(proof)),
            }
            .try_to_der()
            .map_err(|e| ComposeError::Internal(e.to_string()))?;
            attrs.extra_extensions.push(X509Extension {
                oid: self.settings.provenance_oid.to_string(),
                value,
                critical: false,
            });
        }
        Ok(attrs)
    }

    /// `ComposeAgentX509SVID`: the attributes to return (the incoming ones plus ours).
    ///
    /// # Errors
    ///
    /// [`ComposeError`]: OID clash, missing EAR (refuse), key not bound, log failure (refuse).
    pub async fn compose_agent_x509(
        &self,
        spiffe_id: &str,
        public_key: &[u8],
        attrs: Option<X509svidAttributes>,
    ) -> Result<X509svidAttributes, ComposeError> {
        let attrs = attrs.ok_or(ComposeError::NoAttributes {
            what: "X509-SVID attributes",
        })?;
        self.check_oids(&attrs)?;
        let (now_ms, now) = self.now();
        let spki: [u8; 32] = Sha256::digest(public_key).into();
        let s = &self.settings;
        let (ear, cmw, evidence, policy) = match self.latest_one(spiffe_id, now, true).await {
            Ok(cur) => {
                let bound = cur.binds(&spki);
                if s.require_key_binding && !bound {
                    return Err(ComposeError::KeyNotBound {
                        agent: spiffe_id.to_owned(),
                        spki: hex::encode(spki),
                        bound: cur.bindings(),
                    });
                }
                if cur.ear.status != EarStatus::Affirming {
                    tracing::warn!(
                        agent_id = spiffe_id,
                        ear_status = cur.ear.status.as_str(),
                        "the agent's latest attestation result is not affirming; it goes into the SVID as it is"
                    );
                }
                let policy = cur
                    .ear
                    .submods
                    .values()
                    .flat_map(|a| a.policy_ids.first())
                    .next()
                    .map(|u| policy_from_uri(u));
                (
                    EarRef::One(cur.summary(Some(bound))),
                    Some(Cmw::ear(&cur.jws)),
                    cur.evidence(),
                    policy,
                )
            }
            Err(reason) => {
                if s.on_missing == OnMissing::Refuse {
                    return Err(ComposeError::MissingAttestationResult {
                        agent: spiffe_id.to_owned(),
                        reason,
                    });
                }
                if s.require_key_binding {
                    return Err(ComposeError::KeyNotBound {
                        agent: spiffe_id.to_owned(),
                        spki: hex::encode(spki),
                        bound: format!("no attestation result: {reason}"),
                    });
                }
                tracing::warn!(
                    agent_id = spiffe_id,
                    reason = %reason,
                    "agent X509-SVID issued without an attestation result (on_missing_attestation_result = \"omit\")"
                );
                (
                    EarRef::Unknown {
                        reason: format!("no current attestation result: {reason}"),
                    },
                    None,
                    None,
                    None,
                )
            }
        };
        let record = CredentialProvenanceRecord {
            rid: CredentialProvenanceRecord::new_rid(now_ms),
            kind: CredentialKind::AgentX509,
            sub: spiffe_id.to_owned(),
            spki_sha256: Some(spki),
            iat: now,
            ear,
            evidence,
            policy,
            wprov: Vec::new(),
        };
        let logged = self.log(&record).await?;
        self.extensions(attrs, cmw.as_ref(), logged.as_ref())
    }

    /// `ComposeWorkloadX509SVID`: `None` keeps SPIRE's defaults (the CA health check).
    ///
    /// # Errors
    ///
    /// [`ComposeError`]: OID clash, log failure (refuse).
    pub async fn compose_workload_x509(
        &self,
        spiffe_id: &str,
        public_key: &[u8],
        attrs: Option<X509svidAttributes>,
    ) -> Result<Option<X509svidAttributes>, ComposeError> {
        let started = std::time::Instant::now();
        let result = self
            .compose_workload_x509_timed(spiffe_id, public_key, attrs)
            .await;
        self.timing.record(started.elapsed());
        result
    }

    async fn compose_workload_x509_timed(
        &self,
        spiffe_id: &str,
        public_key: &[u8],
        attrs: Option<X509svidAttributes>,
    ) -> Result<Option<X509svidAttributes>, ComposeError> {
        if spiffe_id == self.health_check_id && public_key == self.health_check_key.as_slice() {
            tracing::debug!("CA health check: SPIRE's defaults, no record");
            return Ok(None);
        }
        let attrs = attrs.ok_or(ComposeError::NoAttributes {
            what: "X509-SVID attributes",
        })?;
        self.check_oids(&attrs)?;
        let (now_ms, now) = self.now();
        let facts = self.workload_facts(spiffe_id, now).await;
        let record = CredentialProvenanceRecord {
            rid: CredentialProvenanceRecord::new_rid(now_ms),
            kind: CredentialKind::X509,
            sub: spiffe_id.to_owned(),
            spki_sha256: Some(Sha256::digest(public_key).into()),
            iat: now,
            ear: facts.ear.unwrap_or(EarRef::Unknown {
                reason: "not resolved".into(),
            }),
            evidence: facts.evidence,
            policy: facts.policy,
            wprov: facts.wprov,
        };
        let logged = self.log(&record).await?;
        self.extensions(attrs, facts.cmw.as_ref(), logged.as_ref())
            .map(Some)
    }

    /// `ComposeWorkloadJWTSVID`: the claims to return (the incoming ones plus ours).
    ///
    /// # Errors
    ///
    /// [`ComposeError`]: claims that cannot be converted, log failure (refuse).
    pub async fn compose_workload_jwt(
        &self,
        spiffe_id: &str,
        claims: Option<prost_types::Struct>,
    ) -> Result<prost_types::Struct, ComposeError> {
        let claims = claims.ok_or(ComposeError::NoAttributes {
            what: "JWT-SVID claims",
        })?;
        let mut map = struct_to_json(&claims)?;
        let (now_ms, now) = self.now();
        let facts = self.workload_facts(spiffe_id, now).await;
        let record = CredentialProvenanceRecord {
            rid: CredentialProvenanceRecord::new_rid(now_ms),
            kind: CredentialKind::Jwt,
            sub: spiffe_id.to_owned(),
            spki_sha256: None,
            iat: now,
            ear: facts.ear.unwrap_or(EarRef::Unknown {
                reason: "not resolved".into(),
            }),
            evidence: facts.evidence,
            policy: facts.policy,
            wprov: facts.wprov,
        };
        match self.log(&record).await? {
            Some(l) => {
                let cprov =
                    CprovRef::for_statement(&self.log_origin, l.appended.index, &l.statement);
                jwt::add_claims(&mut map, facts.cmw.as_ref(), &record.rid, &cprov);
            }
            None => {
                // No record in the log: no jti or reference pointing at one.
                if let Some(cmw) = &facts.cmw {
                    map.insert(jwt::CMW_CLAIM.into(), cmw.to_json_value());
                }
            }
        }
        Ok(json_to_struct(&map)?)
    }

    /// Resolves a workload's entries and parent agents and reads their EARs. Never fails: what
    /// cannot be known is recorded as [`EarRef::Unknown`] with the reason.
    async fn workload_facts(&self, spiffe_id: &str, now: i64) -> WorkloadFacts {
        let resolution: Resolution = match self.registry.resolve(spiffe_id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    spiffe_id,
                    error = %e,
                    "registration entries unavailable; the record says the attestation is unknown"
                );
                return WorkloadFacts::unknown(format!("registration entries unavailable: {e}"));
            }
        };
        let attestor = &self.settings.workload_attestor_name;
        let mut facts = WorkloadFacts {
            wprov: wprov::descriptors(&resolution.entries, attestor),
            policy: match resolution.entries.as_slice() {
                [one] => Some(entry_policy(one)),
                _ => None,
            },
            ..WorkloadFacts::default()
        };
        let (ear, cmw, evidence) = self.attestation_of(&resolution, now).await;
        facts.ear = Some(ear);
        facts.cmw = cmw;
        facts.evidence = evidence;
        facts
    }

    /// The attestation behind a workload with these candidate parents (module documentation).
    async fn attestation_of(
        &self,
        r: &Resolution,
        now: i64,
    ) -> (EarRef, Option<Cmw>, Option<EvidenceRef>) {
        let unknown = |reason: String| (EarRef::Unknown { reason }, None, None);
        if r.entries.is_empty() {
            return unknown("no registration entry for this SPIFFE ID".into());
        }
        if !r.unresolved_parents.is_empty() {
            return unknown(format!(
                "parent {} is neither an agent nor a node alias",
                r.unresolved_parents.join(", ")
            ));
        }
        let agents: Vec<String> = r.agents.iter().cloned().collect();
        let n = agents.len();
        let max = self.settings.max_collection;
        if n == 0 {
            return unknown("no agent matches the parent node alias".into());
        }
        if n > MAX_CANDIDATE_DIGESTS {
            return unknown(format!(
                "{n} candidate parent agents (more than {MAX_CANDIDATE_DIGESTS})"
            ));
        }
        if n == 1 {
            let agent = agents.first().cloned().unwrap_or_default();
            return match self.latest_one(&agent, now, false).await {
                Ok(cur) => (
                    EarRef::One(cur.summary(None)),
                    Some(Cmw::ear(&cur.jws)),
                    cur.evidence(),
                ),
                Err(reason) => unknown(format!(
                    "parent agent {agent}: no current attestation result: {reason}"
                )),
            };
        }
        let results = self.latest(agents, now, false).await;
        let current: Vec<(String, CurrentEar)> = results
            .into_iter()
            .filter_map(|(a, r)| r.ok().map(|c| (a, c)))
            .collect();
        if current.is_empty() {
            return unknown(format!(
                "none of the {n} candidate parent agents has a current attestation result"
            ));
        }
        let digests: Vec<[u8; 32]> = current.iter().map(|(_, c)| c.sha256).collect();
        let cmw = (n <= max).then(|| {
            let ears: Vec<(String, String)> = current
                .iter()
                .map(|(a, c)| (a.clone(), c.jws.clone()))
                .collect();
            Cmw::ear_collection(&ears)
        });
        (EarRef::Candidates(digests), cmw, None)
    }
}

fn ear_kind(ear: &EarRef) -> &'static str {
    match ear {
        EarRef::One(_) => "one",
        EarRef::Candidates(_) => "candidates",
        EarRef::Unknown { .. } => "unknown",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::spire_api::Selector;

    #[test]
    fn node_attestor_policy_ids_are_split() {
        let d = "ab".repeat(32);
        let p = policy_from_uri(&format!(
            "tag:twi-spire.dev,2026:policy/prod-snp/3?sha256={d}"
        ));
        assert_eq!(p.id, "tag:twi-spire.dev,2026:policy/prod-snp");
        assert_eq!(p.version, "3");
        assert_eq!(p.sha256, Some([0xab; 32]));
        let p = policy_from_uri("https://example.org/policy");
        assert_eq!(p.id, "https://example.org/policy");
        assert_eq!(p.version, "");
        assert_eq!(p.sha256, None);
    }

    fn entry(selectors: &[&str]) -> EntryInfo {
        EntryInfo {
            id: "0a1b".into(),
            spiffe_id: "spiffe://example.org/wl".into(),
            parent_id: "spiffe://example.org/spire/agent/twi/a".into(),
            selectors: selectors
                .iter()
                .map(|s| Selector::parse(s).unwrap())
                .collect(),
            revision: 7,
        }
    }

    #[test]
    fn health_check_key_is_spires_p256_key() {
        use p256::pkcs8::DecodePublicKey as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(HEALTH_CHECK_KEY_B64)
            .unwrap();
        let key = p256::PublicKey::from_public_key_der(&der).unwrap();
        use p256::pkcs8::EncodePublicKey as _;
        assert_eq!(
            key.to_public_key_der().unwrap().as_bytes(),
            der,
            "canonical PKIX DER"
        );
    }

    #[test]
    fn entry_policy_is_canonical() {
        let a = entry(&["twi:uid:0", "twi:sha256:ff"]);
        let b = entry(&["twi:sha256:ff", "twi:uid:0", "twi:uid:0"]);
        let pa = entry_policy(&a);
        assert_eq!(pa.id, "spire-entry:0a1b");
        assert_eq!(pa.version, "7");
        assert_eq!(
            pa.sha256,
            entry_policy(&b).sha256,
            "order and duplicates do not matter"
        );
        let want: [u8; 32] = Sha256::digest(
            br#"{"parent_id":"spiffe://example.org/spire/agent/twi/a","selectors":["twi:sha256:ff","twi:uid:0"],"spiffe_id":"spiffe://example.org/wl"}"#,
        )
        .into();
        assert_eq!(pa.sha256, Some(want));
        let c = entry(&["twi:uid:1", "twi:sha256:ff"]);
        assert_ne!(pa.sha256, entry_policy(&c).sha256);
    }

    #[test]
    fn ear_payload_is_parsed_without_the_signature() {
        assert!(parse_ear("abc").is_err());
        assert!(parse_ear("a.!!!.c").unwrap_err().contains("base64url"));
        let payload = B64URL.encode(b"{\"x\":1}");
        assert!(parse_ear(&format!("a.{payload}.c"))
            .unwrap_err()
            .contains("not an EAR"));
    }
}

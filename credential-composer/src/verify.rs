//! What a relying party checks on an X.509-SVID carrying TWI extensions (credential-extensions.md §6),
//! as six named steps, so a refusal says exactly which check failed:
//!
//! | step | checks |
//! |---|---|
//! | [`STEP_PATH`] | RFC 5280 path from the SVID to a certificate of the SPIFFE bundle (rustls-webpki, clientAuth or serverAuth), at `now` |
//! | [`STEP_SPIFFE_ID`] | exactly one URI SAN, and it is a `spiffe://` ID |
//! | [`STEP_EAR`] | the `id-pe-cmw` CMW's EAR(s) verify with the verifier JWKS at `now` (signature, profile, `exp`); status not `none`/`contraindicated`; collection labels match the EARs' agent ids; key binding reported |
//! | [`STEP_STATEMENT`] | the `TwiProvenance` extension parses and its COSE_Sign1 statement verifies with a provenance key |
//! | [`STEP_BINDING`] | the record is about this certificate: `sub` = SPIFFE ID, `spki` = SHA-256 of the certificate's SubjectPublicKeyInfo, the EAR digest(s) = those of the EAR(s) in the CMW, `key_bound` true only if an EAR binds this key |
//! | [`STEP_INCLUSION`] | the tlog-proof's checkpoint is signed by the log key and the statement (exact bytes) is included at its index |
//!
//! A step whose input was not given (no JWKS, no provenance key, no log key, no CMW in the SVID) is
//! [`Outcome::Skipped`]; the report is [`SvidReport::ok`] when no step failed. What "not given" means
//! is the relying party's policy: `twi svid verify` prints every skipped step.
//!
//! Time is a parameter ([`TrustInputs::now`]); nothing here reads the clock or the network.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use const_oid::ObjectIdentifier;
use der::{Decode as _, DecodePem as _, Encode as _};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use twi_core::ear::{Ear, Jwks, Status};
use webpki::{EndEntityCert, KeyUsage};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use crate::cmw::{ear_digest, Cmw, ID_PE_CMW};
use crate::extension::{ProofForm, TwiProvenance};
use crate::record::{CredentialKind, CredentialProvenanceRecord, EarRef};
use crate::statement::{verify_statement_with_any, ProvenancePublicKey, UnverifiedStatement};
use crate::tlog::{InclusionProof, LogVerifier};

/// Step 1: certificate path to the SPIFFE bundle.
pub const STEP_PATH: &str = "path";
/// Step 2: the SPIFFE ID in the URI SAN.
pub const STEP_SPIFFE_ID: &str = "spiffe-id";
/// Step 3: the attestation result(s) in `id-pe-cmw`.
pub const STEP_EAR: &str = "ear";
/// Step 4: the signed provenance statement.
pub const STEP_STATEMENT: &str = "statement";
/// Step 5: the record's binding to this certificate and its EAR.
pub const STEP_BINDING: &str = "binding";
/// Step 6: the statement's inclusion in the transparency log.
pub const STEP_INCLUSION: &str = "inclusion";
/// Every step, in order.
pub const STEPS: [&str; 6] = [
    STEP_PATH,
    STEP_SPIFFE_ID,
    STEP_EAR,
    STEP_STATEMENT,
    STEP_BINDING,
    STEP_INCLUSION,
];

/// Most certificates accepted in a chain or bundle.
pub const MAX_CHAIN: usize = 16;
/// Largest PEM input accepted by [`verify_svid_pem`] and [`parse_pem_certificates`].
pub const MAX_PEM: usize = 1024 * 1024;

/// What the relying party trusts, and when it checks.
#[derive(Clone, Debug)]
pub struct TrustInputs {
    /// The SPIFFE trust bundle: the CA certificates SVIDs must chain to.
    pub bundle: Vec<CertificateDer<'static>>,
    /// The EAR verifier's public keys; `None` skips [`STEP_EAR`].
    pub jwks: Option<Jwks>,
    /// The transparency log's checkpoint key; `None` skips [`STEP_INCLUSION`].
    pub log: Option<LogVerifier>,
    /// The composer's provenance keys; empty skips [`STEP_STATEMENT`]'s signature check.
    pub provenance_keys: Vec<ProvenancePublicKey>,
    /// The `TwiProvenance` extension's OID (the composer's `provenance_oid`).
    pub provenance_oid: ObjectIdentifier,
    /// Unix seconds at which certificates and EARs must be valid.
    pub now: i64,
}

impl TrustInputs {
    /// Trust in `bundle` only, at `now`, with the default provenance OID; add the other inputs by
    /// setting the fields.
    pub fn new(bundle: Vec<CertificateDer<'static>>, now: i64) -> TrustInputs {
        TrustInputs {
            bundle,
            jwks: None,
            log: None,
            provenance_keys: Vec::new(),
            provenance_oid: crate::extension::DEFAULT_PROVENANCE_OBJECT_ID,
            now,
        }
    }
}

/// The result of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// The check failed: the credential is refused. The reason names what differed.
    Failed(String),
    /// The check was not made because its input was not given; the text says which.
    Skipped(String),
}

impl Outcome {
    /// `passed`, `failed` or `skipped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed(_) => "failed",
            Outcome::Skipped(_) => "skipped",
        }
    }
}

/// One named step and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// One of [`STEPS`].
    pub name: &'static str,
    pub outcome: Outcome,
    /// What a passed step established (human-readable), when there is something to say.
    pub detail: Option<String>,
}

/// One EAR found in the CMW.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarInfo {
    /// The collection label (the agent's SPIFFE ID), `None` for a single record.
    pub label: Option<String>,
    /// SHA-256 of the JWS bytes.
    pub sha256: [u8; 32],
    /// The claims, when the EAR verified.
    pub status: Option<Status>,
    pub exp: Option<i64>,
    pub agent_id: Option<String>,
    pub verifier: Option<String>,
    pub policy_ids: Vec<String>,
    /// Whether a submod's key binding is the SHA-256 of this certificate's SubjectPublicKeyInfo
    /// (`None` when the EAR did not verify).
    pub key_bound: Option<bool>,
}

/// Everything found and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SvidReport {
    /// The SPIFFE ID from the URI SAN (even when later steps fail).
    pub spiffe_id: Option<String>,
    /// The six steps, in order.
    pub steps: Vec<Step>,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo DER.
    pub spki_sha256: Option<[u8; 32]>,
    /// The EARs of the CMW extension.
    pub ears: Vec<EarInfo>,
    /// The provenance record (verified when [`STEP_STATEMENT`] passed).
    pub record: Option<CredentialProvenanceRecord>,
    /// The statement's CWT `iss`.
    pub statement_issuer: Option<String>,
    /// Log origin, entry index and tree size, when [`STEP_INCLUSION`] passed.
    pub log_entry: Option<(String, u64, u64)>,
}

impl SvidReport {
    /// No step failed.
    pub fn ok(&self) -> bool {
        !self
            .steps
            .iter()
            .any(|s| matches!(s.outcome, Outcome::Failed(_)))
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The first failed step.
    pub fn first_failure(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| matches!(s.outcome, Outcome::Failed(_)))
    }

    /// The report as JSON: `ok`, `spiffe_id`, `steps` (`name`, `outcome`, `reason`/`detail`),
    /// `spki_sha256`, `ears`, `record`, `statement_issuer`, `log`.
    pub fn to_json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                let reason = match &s.outcome {
                    Outcome::Failed(r) | Outcome::Skipped(r) => Some(r),
                    Outcome::Passed => None,
                };
                json!({
                    "name": s.name,
                    "outcome": s.outcome.as_str(),
                    "reason": reason,
                    "detail": s.detail,
                })
            })
            .collect();
        let ears: Vec<Value> = self
            .ears
            .iter()
            .map(|e| {
                json!({
                    "label": e.label,
                    "sha256": hex::encode(e.sha256),
                    "ear_status": e.status.map(Status::as_str),
                    "exp": e.exp,
                    "agent_id": e.agent_id,
                    "verifier": e.verifier,
                    "policy_ids": e.policy_ids,
                    "key_bound": e.key_bound,
                })
            })
            .collect();
        json!({
            "ok": self.ok(),
            "spiffe_id": self.spiffe_id,
            "steps": steps,
            "spki_sha256": self.spki_sha256.map(hex::encode),
            "ears": ears,
            "record": self.record.as_ref().map(record_json),
            "statement_issuer": self.statement_issuer,
            "log": self.log_entry.as_ref().map(|(origin, idx, size)| json!({
                "origin": origin, "index": idx, "tree_size": size,
            })),
        })
    }
}

fn record_json(r: &CredentialProvenanceRecord) -> Value {
    let ear = match &r.ear {
        EarRef::One(s) => json!({
            "sha256": hex::encode(s.sha256),
            "status": s.status,
            "verifier": s.verifier,
            "policy_ids": s.policy_ids,
            "key_bound": s.key_bound,
        }),
        EarRef::Candidates(c) => json!({
            "candidates": c.iter().map(hex::encode).collect::<Vec<_>>(),
        }),
        EarRef::Unknown { reason } => json!({ "unknown": reason }),
    };
    let wprov: Vec<Value> = r
        .wprov
        .iter()
        .map(|d| {
            json!({
                "name": d.name, "uri": d.uri, "digest": d.digest,
                "mediaType": d.media_type, "annotations": d.annotations,
            })
        })
        .collect();
    json!({
        "rid": r.rid.hyphenated().to_string(),
        "kind": r.kind.as_str(),
        "sub": r.sub,
        "spki_sha256": r.spki_sha256.map(hex::encode),
        "iat": r.iat,
        "ear": ear,
        "evidence": r.evidence.as_ref().map(|e| json!({"kind": e.kind, "sha256": hex::encode(e.sha256)})),
        "policy": r.policy.as_ref().map(|p| json!({
            "id": p.id, "version": p.version, "sha256": p.sha256.map(hex::encode),
        })),
        "wprov": wprov,
    })
}

impl fmt::Display for SvidReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.ok() { "VERIFIED" } else { "REFUSED" };
        writeln!(
            f,
            "SVID {}: {verdict}",
            self.spiffe_id.as_deref().unwrap_or("(no SPIFFE ID)")
        )?;
        for s in &self.steps {
            let (mark, text) = match &s.outcome {
                Outcome::Passed => ("ok  ", s.detail.clone().unwrap_or_default()),
                Outcome::Failed(r) => ("FAIL", r.clone()),
                Outcome::Skipped(r) => ("skip", r.clone()),
            };
            writeln!(f, "  [{mark}] {:<10} {text}", s.name)?;
        }
        for e in &self.ears {
            write!(f, "  EAR {}", hex::encode(e.sha256))?;
            if let Some(l) = &e.label {
                write!(f, " ({l})")?;
            }
            if let Some(s) = e.status {
                write!(f, ": ear_status {s}")?;
            }
            if let Some(exp) = e.exp {
                write!(f, ", fresh until {}", fmt_unix(exp))?;
            }
            if let Some(b) = e.key_bound {
                write!(f, ", key bound to this certificate: {b}")?;
            }
            writeln!(f)?;
            for p in &e.policy_ids {
                writeln!(f, "    policy: {p}")?;
            }
        }
        if let Some(r) = &self.record {
            writeln!(
                f,
                "  record {} ({}), issued {} by {}",
                r.rid.hyphenated(),
                r.kind,
                fmt_unix(r.iat),
                self.statement_issuer.as_deref().unwrap_or("?")
            )?;
            match &r.ear {
                EarRef::One(s) => writeln!(f, "    ear: one, {} ({})", s.status, s.verifier)?,
                EarRef::Candidates(c) => writeln!(f, "    ear: {} candidate parent EARs", c.len())?,
                EarRef::Unknown { reason } => writeln!(f, "    ear: unknown ({reason})")?,
            }
            if let Some(p) = &r.policy {
                writeln!(f, "    policy: {} version {}", p.id, p.version)?;
            }
            for d in &r.wprov {
                let name = d
                    .name
                    .as_deref()
                    .or(d.uri.as_deref())
                    .unwrap_or("(unnamed)");
                let digests: Vec<String> =
                    d.digest.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                writeln!(f, "    wprov: {name} {}", digests.join(" "))?;
            }
        }
        if let Some((origin, idx, size)) = &self.log_entry {
            writeln!(f, "  log: {origin} entry {idx} of {size}")?;
        }
        Ok(())
    }
}

/// Unix seconds as RFC 3339 (the raw number when out of range).
fn fmt_unix(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

/// Why [`verify_svid_pem`] could not even start: the input is not an SVID (a usage error, not a
/// refusal).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("PEM input is {len} bytes, more than {max}")]
    TooLarge { len: usize, max: usize },
    #[error("PEM certificate {index}: {detail}")]
    Pem { index: usize, detail: String },
    #[error("no CERTIFICATE in the PEM input")]
    NoCertificate,
    #[error("{count} certificates, more than {max}")]
    TooManyCertificates { count: usize, max: usize },
}

/// The DER certificates of a PEM bundle (other PEM blocks are ignored).
///
/// # Errors
/// [`VerifyError`] when the input is too large, a CERTIFICATE block is not base64 or not a
/// certificate, or there is no certificate.
pub fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, VerifyError> {
    if pem.len() > MAX_PEM {
        return Err(VerifyError::TooLarge {
            len: pem.len(),
            max: MAX_PEM,
        });
    }
    let text = std::str::from_utf8(pem).map_err(|_| VerifyError::Pem {
        index: 0,
        detail: "not UTF-8 text".into(),
    })?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = rest.get(start..).unwrap_or_default();
        let end = block.find(END).ok_or_else(|| VerifyError::Pem {
            index: out.len(),
            detail: "no END CERTIFICATE line".into(),
        })?;
        let (pem_block, after) = block.split_at(end + END.len());
        let cert = Certificate::from_pem(pem_block.as_bytes()).map_err(|e| VerifyError::Pem {
            index: out.len(),
            detail: e.to_string(),
        })?;
        let der = cert.to_der().map_err(|e| VerifyError::Pem {
            index: out.len(),
            detail: e.to_string(),
        })?;
        out.push(CertificateDer::from(der));
        if out.len() > MAX_CHAIN {
            return Err(VerifyError::TooManyCertificates {
                count: out.len(),
                max: MAX_CHAIN,
            });
        }
        rest = after;
    }
    if out.is_empty() {
        return Err(VerifyError::NoCertificate);
    }
    Ok(out)
}

/// [`verify_svid`] of a PEM SVID (leaf first, then any intermediates), as `twi svid verify` reads it.
///
/// # Errors
/// [`VerifyError`] when the PEM holds no parseable certificate; verification failures are in the
/// report.
pub fn verify_svid_pem(pem: &[u8], trust: &TrustInputs) -> Result<SvidReport, VerifyError> {
    let chain = parse_pem_certificates(pem)?;
    Ok(verify_svid(&chain, trust))
}

/// Verifies an X.509-SVID chain (`chain[0]` the SVID, then intermediates) at `trust.now`.
pub fn verify_svid(chain: &[CertificateDer<'_>], trust: &TrustInputs) -> SvidReport {
    let Some((ee, intermediates)) = chain.split_first() else {
        return failed_report("the chain holds no certificate".into());
    };
    let now = u64::try_from(trust.now)
        .map(|s| UnixTime::since_unix_epoch(Duration::from_secs(s)))
        .ok();
    verify_at(ee, intermediates, trust, now)
}

/// The relying-party check for a TLS peer, shaped for a rustls `ServerCertVerifier` or
/// `ClientCertVerifier`: rustls hands the verifier the peer's end-entity certificate, its
/// intermediates and `now`, and this runs the six steps with `now` instead of [`TrustInputs::now`].
///
/// Returns the report when every step passed (or was skipped); otherwise [`SvidRefused`], an
/// `std::error::Error` that rustls carries as `rustls::Error::Other`. This crate does not depend on
/// rustls; the glue a relying party writes is:
///
/// ```ignore
/// use std::sync::Arc;
/// use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
/// use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
///
/// #[derive(Debug)]
/// struct TwiSvidVerifier { trust: twi_credential_composer::verify::TrustInputs,
///                          provider: Arc<rustls::crypto::CryptoProvider> }
///
/// impl ServerCertVerifier for TwiSvidVerifier {
///     fn verify_server_cert(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>],
///                           _name: &ServerName<'_>, _ocsp: &[u8], now: UnixTime)
///                           -> Result<ServerCertVerified, rustls::Error> {
///         // SPIFFE authorises by SPIFFE ID, not DNS name: check report.spiffe_id afterwards.
///         let report = twi_credential_composer::verify::verify_peer(end_entity, intermediates, now, &self.trust)
///             .map_err(|e| rustls::Error::Other(rustls::OtherError(Arc::new(e))))?;
///         authorize(report.spiffe_id.as_deref())?;
///         Ok(ServerCertVerified::assertion())
///     }
///     // verify_tls12_signature / verify_tls13_signature / supported_verify_schemes: delegate to
///     // rustls::crypto::verify_tls1{2,3}_signature with self.provider's algorithms.
/// #   fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> { todo!() }
/// #   fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> { todo!() }
/// #   fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> { todo!() }
/// }
/// ```
///
/// # Errors
/// [`SvidRefused`] holding the full report when a step failed.
pub fn verify_peer(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    trust: &TrustInputs,
) -> Result<SvidReport, SvidRefused> {
    let report = verify_at(end_entity, intermediates, trust, Some(now));
    if report.ok() {
        Ok(report)
    } else {
        Err(SvidRefused {
            report: Box::new(report),
        })
    }
}

/// A credential refused by [`verify_peer`]; `Display` names the first failed step and its reason.
/// The report is boxed: it travels inside `rustls::Error::Other`.
#[derive(Clone, Debug)]
pub struct SvidRefused {
    pub report: Box<SvidReport>,
}

impl fmt::Display for SvidRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.report.first_failure() {
            Some(Step {
                name,
                outcome: Outcome::Failed(reason),
                ..
            }) => write!(f, "SVID refused at step {name}: {reason}"),
            _ => write!(f, "SVID refused"),
        }
    }
}

impl std::error::Error for SvidRefused {}

fn failed_report(reason: String) -> SvidReport {
    SvidReport {
        spiffe_id: None,
        steps: STEPS
            .iter()
            .map(|name| Step {
                name,
                outcome: Outcome::Failed(reason.clone()),
                detail: None,
            })
            .collect(),
        spki_sha256: None,
        ears: Vec::new(),
        record: None,
        statement_issuer: None,
        log_entry: None,
    }
}

fn step(name: &'static str, r: Result<Option<String>, StepEnd>) -> Step {
    let (outcome, detail) = match r {
        Ok(detail) => (Outcome::Passed, detail),
        Err(StepEnd::Failed(r)) => (Outcome::Failed(r), None),
        Err(StepEnd::Skipped(r)) => (Outcome::Skipped(r), None),
    };
    Step {
        name,
        outcome,
        detail,
    }
}

/// How a step ended early.
enum StepEnd {
    Failed(String),
    Skipped(String),
}

fn fail<T>(reason: impl Into<String>) -> Result<T, StepEnd> {
    Err(StepEnd::Failed(reason.into()))
}

fn verify_at(
    ee: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    trust: &TrustInputs,
    now: Option<UnixTime>,
) -> SvidReport {
    let mut steps = Vec::with_capacity(STEPS.len());
    steps.push(step(STEP_PATH, check_path(ee, intermediates, trust, now)));

    let cert = match Certificate::from_der(ee.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            let mut r = failed_report(format!("the SVID does not parse: {e}"));
            r.steps.splice(0..1, steps);
            return r;
        }
    };
    let spki_sha256: Option<[u8; 32]> = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .ok()
        .map(|d| Sha256::digest(d).into());

    let spiffe_id = spiffe_id(&cert);
    steps.push(step(
        STEP_SPIFFE_ID,
        spiffe_id.clone().map(Some).map_err(StepEnd::Failed),
    ));
    let spiffe_id = spiffe_id.ok();

    // Step 3: EARs.
    let cmw = extension(&cert, &ID_PE_CMW).map(|o| o.map(Cmw::from_extn_value));
    let mut ears = Vec::new();
    let ear_step = check_ears(&cmw, trust, spki_sha256, &mut ears, now);
    steps.push(step(STEP_EAR, ear_step));

    // Step 4: statement.
    let prov = extension(&cert, &trust.provenance_oid).map(|o| o.map(TwiProvenance::from_der));
    let mut record = None;
    let mut issuer = None;
    let mut statement_bytes = None;
    let mut proof = None;
    let st_step = (|| -> Result<Option<String>, StepEnd> {
        let ext = match prov {
            Err(e) => return fail(e),
            Ok(None) => {
                return fail(format!(
                    "no TwiProvenance extension ({}) in the SVID",
                    trust.provenance_oid
                ))
            }
            Ok(Some(Err(e))) => return fail(e.to_string()),
            Ok(Some(Ok(ext))) => ext,
        };
        statement_bytes = Some(ext.statement.clone());
        proof = ext.proof.clone();
        let parsed = UnverifiedStatement::parse(&ext.statement)
            .map_err(|e| StepEnd::Failed(e.to_string()))?;
        if trust.provenance_keys.is_empty() {
            // Keep the unverified record for the binding step and the report.
            let r = parsed
                .record()
                .map_err(|e| StepEnd::Failed(e.to_string()))?;
            if r.sub != parsed.subject {
                return fail(format!(
                    "statement CWT sub {:?} differs from the record's sub {:?}",
                    parsed.subject, r.sub
                ));
            }
            issuer = Some(parsed.issuer.clone());
            record = Some(r);
            return Err(StepEnd::Skipped(
                "no provenance key given (--provenance-key): signature not checked".into(),
            ));
        }
        let signed = verify_statement_with_any(&ext.statement, &trust.provenance_keys)
            .map_err(|e| StepEnd::Failed(e.to_string()))?;
        let detail = format!(
            "signed by {} (record {})",
            signed.issuer,
            signed.record.rid.hyphenated()
        );
        issuer = Some(signed.issuer);
        record = Some(signed.record);
        Ok(Some(detail))
    })();
    steps.push(step(STEP_STATEMENT, st_step));

    // Step 5: binding.
    let binding = check_binding(
        record.as_ref(),
        spiffe_id.as_deref(),
        spki_sha256,
        &cmw,
        &ears,
    );
    steps.push(step(STEP_BINDING, binding));

    // Step 6: inclusion.
    let mut log_entry = None;
    let incl = (|| -> Result<Option<String>, StepEnd> {
        let Some(statement) = &statement_bytes else {
            return fail("no statement to look for in the log");
        };
        let Some(log) = &trust.log else {
            return Err(StepEnd::Skipped("no log key given (--log-key)".into()));
        };
        let text = match &proof {
            None => return fail("the TwiProvenance extension carries no inclusion proof"),
            Some(ProofForm::CoseReceipt(_)) => {
                return fail("the proof is a COSE Receipt, which this verifier does not check yet")
            }
            Some(ProofForm::TlogProof(t)) => t,
        };
        let proof = InclusionProof::from_tlog_proof(text.as_bytes())
            .map_err(|e| StepEnd::Failed(e.to_string()))?;
        let verified = log
            .verify_inclusion(statement, &proof)
            .map_err(|e| StepEnd::Failed(e.to_string()))?;
        let cp = verified.checkpoint();
        log_entry = Some((cp.origin().to_owned(), verified.index(), cp.size()));
        Ok(Some(format!(
            "entry {} of {} in {}",
            verified.index(),
            cp.size(),
            cp.origin()
        )))
    })();
    steps.push(step(STEP_INCLUSION, incl));

    SvidReport {
        spiffe_id,
        steps,
        spki_sha256,
        ears,
        record,
        statement_issuer: issuer,
        log_entry,
    }
}

fn check_path(
    ee: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    trust: &TrustInputs,
    now: Option<UnixTime>,
) -> Result<Option<String>, StepEnd> {
    let Some(now) = now else {
        return fail("the verification time is before 1970");
    };
    if trust.bundle.is_empty() {
        return fail("the trust bundle holds no certificate");
    }
    if trust.bundle.len() > MAX_CHAIN || intermediates.len() > MAX_CHAIN {
        return fail(format!("more than {MAX_CHAIN} certificates"));
    }
    let anchors = trust
        .bundle
        .iter()
        .enumerate()
        .map(|(i, c)| {
            webpki::anchor_from_trusted_cert(c)
                .map(|a| a.to_owned())
                .map_err(|e| StepEnd::Failed(format!("bundle certificate {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ee_cert =
        EndEntityCert::try_from(ee).map_err(|e| StepEnd::Failed(format!("the SVID: {e}")))?;
    let algs = SIGNATURE_ALGS;
    let mut last = None;
    for (usage, name) in [
        (KeyUsage::client_auth(), "clientAuth"),
        (KeyUsage::server_auth(), "serverAuth"),
    ] {
        match ee_cert.verify_for_usage(algs, &anchors, intermediates, now, usage, None, None) {
            Ok(_) => return Ok(Some(format!("chains to the bundle ({name})"))),
            Err(e) => last = Some(e),
        }
    }
    fail(format!(
        "no path to the bundle: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// The algorithms SPIRE CAs sign with (EC P-256/P-384, RSA PKCS#1 and PSS, Ed25519).
static SIGNATURE_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_3072_8192_SHA384,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

fn spiffe_id(cert: &Certificate) -> Result<String, String> {
    let san = match extension(cert, &const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME) {
        Err(e) => return Err(e),
        Ok(None) => return Err("no subjectAltName extension".into()),
        Ok(Some(der)) => SubjectAltName::from_der(der)
            .map_err(|e| format!("subjectAltName does not parse: {e}"))?,
    };
    let uris: Vec<&str> = san
        .0
        .iter()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.as_str()),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [uri] if uri.starts_with("spiffe://") && uri.len() > "spiffe://".len() => {
            Ok((*uri).to_owned())
        }
        [uri] => Err(format!("the URI SAN {uri:?} is not a spiffe:// ID")),
        _ => Err(format!(
            "{} URI SANs, an X509-SVID has exactly one",
            uris.len()
        )),
    }
}

/// The extnValue of the extension `oid`; an error if it appears more than once (RFC 5280 §4.2).
fn extension<'c>(
    cert: &'c Certificate,
    oid: &ObjectIdentifier,
) -> Result<Option<&'c [u8]>, String> {
    let mut found = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| &e.extn_id == oid);
    let first = found.next();
    if found.next().is_some() {
        return Err(format!("extension {oid} appears more than once"));
    }
    Ok(first.map(|e| e.extn_value.as_bytes()))
}

type CmwResult = Result<Option<Result<Cmw, crate::cmw::CmwError>>, String>;

fn check_ears(
    cmw: &CmwResult,
    trust: &TrustInputs,
    spki_sha256: Option<[u8; 32]>,
    out: &mut Vec<EarInfo>,
    now: Option<UnixTime>,
) -> Result<Option<String>, StepEnd> {
    let cmw = match cmw {
        Err(e) => return fail(e.clone()),
        Ok(None) => {
            return Err(StepEnd::Skipped(
                "the SVID carries no id-pe-cmw extension (the record says why)".into(),
            ))
        }
        Ok(Some(Err(e))) => return fail(format!("id-pe-cmw: {e}")),
        Ok(Some(Ok(c))) => c,
    };
    let jwss = cmw.ear_jwss();
    if jwss.is_empty() {
        return fail("the CMW holds no EAR (media type application/eat+jwt with our profile)");
    }
    for (label, jws) in &jwss {
        out.push(EarInfo {
            label: label.clone(),
            sha256: ear_digest(jws),
            status: None,
            exp: None,
            agent_id: None,
            verifier: None,
            policy_ids: Vec::new(),
            key_bound: None,
        });
    }
    let Some(jwks) = &trust.jwks else {
        return Err(StepEnd::Skipped(format!(
            "no verifier JWKS given (--jwks): {} EAR(s) not checked",
            jwss.len()
        )));
    };
    let now_secs = now
        .and_then(|t| i64::try_from(t.as_secs()).ok())
        .unwrap_or(trust.now);
    let spki_hex = spki_sha256.map(hex::encode);
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for ((label, jws), info) in jwss.iter().zip(out.iter_mut()) {
        let who = label.as_deref().unwrap_or("EAR");
        let ear: Ear = match twi_core::ear::verify(jws, jwks, now_secs) {
            Ok(e) => e,
            Err(e) => {
                failures.push(format!("{who}: {e}"));
                continue;
            }
        };
        info.status = Some(ear.status);
        info.exp = Some(ear.exp);
        info.agent_id = ear.agent_id.clone();
        info.verifier = Some(ear.verifier_id.build.clone());
        info.policy_ids = ear
            .submods
            .values()
            .flat_map(|a| a.policy_ids.iter().cloned())
            .collect();
        info.key_bound = Some(spki_hex.as_deref().is_some_and(|h| {
            ear.submods.values().any(|a| {
                a.key_binding
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case(h))
            })
        }));
        if matches!(ear.status, Status::None | Status::Contraindicated) {
            failures.push(format!("{who}: ear_status is {}", ear.status));
            continue;
        }
        if let (Some(l), Some(agent)) = (label, &ear.agent_id) {
            if l != agent {
                failures.push(format!(
                    "collection label {l:?} holds the EAR of agent {agent:?}"
                ));
                continue;
            }
        }
        summary.push(format!("{who} {}", ear.status));
    }
    if failures.is_empty() {
        Ok(Some(summary.join(", ")))
    } else {
        fail(failures.join("; "))
    }
}

fn check_binding(
    record: Option<&CredentialProvenanceRecord>,
    spiffe_id: Option<&str>,
    spki_sha256: Option<[u8; 32]>,
    cmw: &CmwResult,
    ears: &[EarInfo],
) -> Result<Option<String>, StepEnd> {
    let Some(r) = record else {
        return fail("no provenance record to bind (see the statement step)");
    };
    let Some(id) = spiffe_id else {
        return fail("no SPIFFE ID to bind the record to");
    };
    if r.sub != id {
        return fail(format!(
            "record sub {:?} is not the SPIFFE ID {id:?}",
            r.sub
        ));
    }
    if r.kind == CredentialKind::Jwt {
        return fail("the record is for a JWT-SVID, not an X.509-SVID");
    }
    match (r.spki_sha256, spki_sha256) {
        (Some(a), Some(b)) if a == b => {}
        (Some(a), Some(b)) => {
            return fail(format!(
                "record spki {} is not the certificate's key {}",
                hex::encode(a),
                hex::encode(b)
            ))
        }
        (None, _) => return fail("the record names no key"),
        (_, None) => return fail("the certificate's key cannot be encoded"),
    }
    let cmw_present = matches!(cmw, Ok(Some(_)));
    let cmw_digests: BTreeSet<[u8; 32]> = ears.iter().map(|e| e.sha256).collect();
    let ear_note = match &r.ear {
        EarRef::One(s) => {
            if !cmw_present {
                return fail("the record names one EAR but the SVID carries no id-pe-cmw");
            }
            if ears.len() != 1 || !cmw_digests.contains(&s.sha256) {
                return fail(format!(
                    "record EAR digest {} is not the digest of the EAR in the CMW ({})",
                    hex::encode(s.sha256),
                    cmw_digests
                        .iter()
                        .map(hex::encode)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let (Some(claimed), Some(actual)) =
                (s.key_bound, ears.first().and_then(|e| e.key_bound))
            {
                if claimed != actual {
                    return fail(format!(
                        "record says key_bound {claimed} but the EAR's key binding says {actual}"
                    ));
                }
            }
            "EAR digest matches the CMW".to_owned()
        }
        EarRef::Candidates(c) => {
            let record_set: BTreeSet<[u8; 32]> = c.iter().copied().collect();
            if cmw_present && record_set != cmw_digests {
                return fail(format!(
                    "record names {} candidate EAR digests, the CMW collection holds {} different ones",
                    record_set.len(),
                    cmw_digests.len()
                ));
            }
            if cmw_present {
                "candidate EAR digests match the CMW collection".to_owned()
            } else {
                format!("{} candidate parent EARs (not in the SVID)", c.len())
            }
        }
        EarRef::Unknown { reason } => {
            if cmw_present {
                return fail(format!(
                    "the record names no EAR ({reason}) but the SVID carries id-pe-cmw"
                ));
            }
            format!("no EAR ({reason})")
        }
    };
    Ok(Some(format!(
        "sub and key match the certificate; {ear_note}"
    )))
}

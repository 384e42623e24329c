//! EAT Attestation Results (draft-ietf-rats-ear-04, profile `tag:ietf.org,2026:rats/ear#04`, JWT form):
//! the verifier's signed verdict on an attestation, which SVIDs carry and relying parties check
//! without seeing the evidence.
//!
//! * [`from_snp`] — an EAR from an SEV-SNP attestation, accepted or refused (one `"sev-snp"` submod);
//! * [`VerifierKey`] — the verifier's own ES256 key (never the SPIRE CA key), its `kid` (RFC 7638
//!   thumbprint) and [`Jwks`];
//! * [`sign`] / [`verify`] — compact JWS; `verify` takes `now` so results verify offline at any time.
//!
//! Why not the `ear` crate (Veraison, 0.6): its claim model is the draft-04 one we follow (and our
//! tests parse our tokens with the same claim names), but (1) `ear` always depends on `cmw`, whose
//! build script depends on reqwest with native-tls, so even `default-features = false` compiles and
//! links OpenSSL; (2) its `jwt` feature signs with jsonwebtoken 11 on aws-lc-rs, a second C crypto
//! library beside the RustCrypto one the project uses; (3) `Ear::validate`, which runs inside its
//! `Serialize` and `Deserialize`, compares `exp` with the system clock, so an EAR cannot be built or
//! checked at a caller-given time (the server's tests run at fixed instants; `twi ear verify --now`).
//! The JWS part is 60 lines over `p256`, which the project already uses.

mod claims;
mod jws;
mod key;
mod snp;
mod tdx;

use std::path::PathBuf;

pub use claims::{
    tv, Appraisal, Ear, PolicyId, Status, TrustVector, VerifierId, CLAIM_ADVISORY_IDS,
    CLAIM_AGENT_ID, CLAIM_EVIDENCE_SHA256, CLAIM_KEY_BINDING, CLAIM_REASON, CLAIM_SIMULATED,
    CLAIM_TCB_STATUS, EAR_PROFILE, VERIFIER_DEVELOPER,
};
pub use jws::{sign, verify, MAX_CLOCK_SKEW_SECS, MAX_JWS_LEN, TYP};
pub use key::{Jwk, Jwks, KeyOrigin, VerifierKey, ALG};
pub use snp::{from_snp, EarIssuer, Refusal, SnpOutcome, DEFAULT_VALIDITY_SECS, SNP_SUBMOD};
pub use tdx::{from_tdx, TdxOutcome, TDX_SUBMOD};

/// Everything that can go wrong issuing or checking an EAR. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A JWS part cannot be decoded or parsed.
    #[error("malformed EAR {part}: {detail}")]
    Malformed { part: &'static str, detail: String },

    /// The JWS `alg` is not ES256.
    #[error("JWS alg {got:?} is not accepted (want ES256)")]
    Algorithm { got: String },

    /// No key of the JWKS has the JWS `kid`.
    #[error("no key with kid {kid:?} in the JWKS (it has {known:?})")]
    UnknownKid { kid: String, known: Vec<String> },

    /// A JWK is not a usable P-256 ES256 key.
    #[error("JWK {}: {detail}", kid.as_deref().unwrap_or("without kid"))]
    Jwk { kid: Option<String>, detail: String },

    /// The JWKS document cannot be parsed.
    #[error("JWKS: {detail}")]
    Jwks { detail: String },

    /// The signature does not verify with the key named by `kid`.
    #[error("EAR signature does not verify with key {kid}")]
    Signature { kid: String },

    /// `eat_profile` is not the profile we issue.
    #[error("eat_profile {got:?} is not {want:?}")]
    Profile { got: String, want: &'static str },

    /// The claims break a structural rule (submods, exp/iat order, status consistency).
    #[error("EAR claims: {detail}")]
    Claims { detail: String },

    /// `now` is at or after `exp`: the attestation is no longer fresh.
    #[error("EAR expired at {} (now {})", crate::error::fmt_time(*exp), crate::error::fmt_time(*now))]
    Expired { exp: i64, now: i64 },

    /// `iat` is later than `now` (beyond the allowed clock skew).
    #[error("EAR issued at {}, after now {}", crate::error::fmt_time(*iat), crate::error::fmt_time(*now))]
    NotYetValid { iat: i64, now: i64 },

    /// A policy id part is not usable in a URI.
    #[error("policy id {part} {got:?}: want {want}")]
    PolicyId {
        part: &'static str,
        got: String,
        want: &'static str,
    },

    /// The verifier key cannot be parsed or encoded.
    #[error("verifier key{}: {detail}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Key {
        path: Option<PathBuf>,
        detail: String,
    },

    /// The verifier key file may be read or written by others.
    #[error("verifier key {} has mode {mode:04o}: group and others must have no access (chmod 600)", path.display())]
    KeyPermissions { path: PathBuf, mode: u32 },

    /// Reading or writing a key file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Serialising the EAR failed.
    #[error("encoding the EAR: {detail}")]
    Encode { detail: String },
}

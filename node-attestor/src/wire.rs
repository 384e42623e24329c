//! The messages the agent and server halves of the node attestor exchange through SPIRE, and the
//! binding rules both sides must compute identically (as SPIRE's `pkg/common/plugin/x509pop` does for
//! its attestor).
//!
//! The flow is one challenge/response round:
//! 1. agent → server, `payload`: [`Hello`] — the TEE kind and the agent's per-instance public key;
//! 2. server → agent, `challenge`: [`Challenge`] — a fresh random nonce for this attestation only;
//! 3. agent → server, `challenge_response`: [`EvidenceResponse`] — hardware evidence whose REPORT_DATA is
//!    [`report_data`]`(nonce, instance key)`, and a signature by the instance key over
//!    [`key_proof_message`]`(nonce, evidence)` proving the agent holds that key.
//!
//! Binding both the nonce and the key into REPORT_DATA makes old evidence useless (replay) and ties the
//! attestation to a key that never leaves the confidential VM. Messages are JSON with base64 byte
//! fields, versioned by `v`, and capped in size before parsing.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// The only message version this build speaks.
pub const WIRE_VERSION: u32 = 1;
/// Upper bound for the first payload (a public key and a few names).
pub const MAX_HELLO_LEN: usize = 4 * 1024;
/// Upper bound for the challenge response (a report plus a certificate table of a few KiB).
pub const MAX_EVIDENCE_LEN: usize = 64 * 1024;
/// Upper bound for a challenge.
pub const MAX_CHALLENGE_LEN: usize = 1024;
/// Nonces shorter than this are refused by both sides.
pub const MIN_NONCE_LEN: usize = 32;
/// Nonces longer than this are refused by both sides.
pub const MAX_NONCE_LEN: usize = 64;

const REPORT_DATA_DOMAIN: &[u8] = b"twi-spire/node-attestation/report-data/v1\0";
const KEY_PROOF_DOMAIN: &[u8] = b"twi-spire/node-attestation/key-proof/v1\0";

/// The TEE kinds the attestor understands on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TeeKind {
    /// AMD SEV-SNP (real or simulated: the server decides which by the root the chain ends at).
    Snp,
    /// Intel TDX (real or simulated, likewise decided by the root the PCK chain ends at).
    Tdx,
}

impl TeeKind {
    /// The name used in selectors, agent IDs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TeeKind::Snp => "snp",
            TeeKind::Tdx => "tdx",
        }
    }
}

/// First message, agent → server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub v: u32,
    pub tee: TeeKind,
    /// The agent's per-instance ECDSA P-256 public key, SubjectPublicKeyInfo DER.
    #[serde(with = "b64")]
    pub instance_key: Vec<u8>,
}

/// Server → agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    pub v: u32,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
}

/// SEV-SNP evidence as the guest obtained it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpEvidence {
    /// The 1184-byte ATTESTATION_REPORT, exactly as the firmware returned it.
    #[serde(with = "b64")]
    pub report: Vec<u8>,
    /// The host-provided certificate table (extended report / configfs-tsm `auxblob`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub cert_table: Option<Vec<u8>>,
}

/// Intel TDX evidence as the guest obtained it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxEvidence {
    /// The DCAP quote (v4 or v5), exactly as the quote generation service returned it. Its PCK chain is
    /// inside (certification data type 5); the collateral is the server's.
    #[serde(with = "b64")]
    pub quote: Vec<u8>,
}

/// Evidence of one TEE kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tee", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum Evidence {
    Snp(SnpEvidence),
    Tdx(TdxEvidence),
}

/// Agent → server, the answer to a [`Challenge`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceResponse {
    pub v: u32,
    pub evidence: Evidence,
    /// ECDSA P-256 / SHA-256 signature (ASN.1 DER) by the instance key over [`key_proof_message`].
    #[serde(with = "b64")]
    pub key_proof: Vec<u8>,
}

/// Why a wire message was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("{what} is {got} bytes, more than the {max} allowed")]
    TooLarge {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("{what} is not valid: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("{what} has version {got}, this build speaks version {WIRE_VERSION}")]
    Version { what: &'static str, got: u32 },
    #[error("nonce is {got} bytes, must be {MIN_NONCE_LEN} to {MAX_NONCE_LEN}")]
    NonceLength { got: usize },
}

fn decode<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            what,
            got: bytes.len(),
            max,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| WireError::Invalid {
        what,
        detail: e.to_string(),
    })
}

fn check_version(what: &'static str, v: u32) -> Result<(), WireError> {
    if v == WIRE_VERSION {
        Ok(())
    } else {
        Err(WireError::Version { what, got: v })
    }
}

fn check_nonce(nonce: &[u8]) -> Result<(), WireError> {
    if (MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len()) {
        Ok(())
    } else {
        Err(WireError::NonceLength { got: nonce.len() })
    }
}

impl Hello {
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let h: Hello = decode("attestation payload", bytes, MAX_HELLO_LEN)?;
        check_version("attestation payload", h.v)?;
        Ok(h)
    }
}

impl Challenge {
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let c: Challenge = decode("challenge", bytes, MAX_CHALLENGE_LEN)?;
        check_version("challenge", c.v)?;
        check_nonce(&c.nonce)?;
        Ok(c)
    }
}

impl EvidenceResponse {
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let r: EvidenceResponse = decode("challenge response", bytes, MAX_EVIDENCE_LEN)?;
        check_version("challenge response", r.v)?;
        Ok(r)
    }
}

/// Serialises any wire message (infallible for these types; an error would be our fault).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    serde_json::to_vec(msg).map_err(|e| WireError::Invalid {
        what: "outgoing message",
        detail: e.to_string(),
    })
}

/// The 64 bytes the agent asks the TEE to put into REPORT_DATA:
/// `SHA-512(domain || len(nonce) || nonce || SHA-256(instance key SPKI DER))`.
pub fn report_data(nonce: &[u8], instance_key_spki: &[u8]) -> [u8; 64] {
    let key_digest = Sha256::digest(instance_key_spki);
    let mut h = Sha512::new();
    h.update(REPORT_DATA_DOMAIN);
    h.update((nonce.len() as u32).to_be_bytes());
    h.update(nonce);
    h.update(key_digest);
    h.finalize().into()
}

/// The message the instance key signs: `domain || len(nonce) || nonce || SHA-256(evidence bytes)`, where
/// the evidence bytes are the report (SNP). Signing the evidence as well as the nonce makes the proof
/// useless for any other attestation.
pub fn key_proof_message(nonce: &[u8], evidence: &Evidence) -> Vec<u8> {
    let evidence_digest = match evidence {
        Evidence::Snp(e) => Sha256::digest(&e.report),
        Evidence::Tdx(e) => Sha256::digest(&e.quote),
    };
    let mut m = Vec::with_capacity(KEY_PROOF_DOMAIN.len() + 4 + nonce.len() + 32);
    m.extend_from_slice(KEY_PROOF_DOMAIN);
    m.extend_from_slice(&(nonce.len() as u32).to_be_bytes());
    m.extend_from_slice(nonce);
    m.extend_from_slice(&evidence_digest);
    m
}

mod b64 {
    use super::*;
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

mod b64_opt {
    use super::*;
    pub(super) fn serialize<S: serde::Serializer>(
        v: &Option<Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&B64.encode(v)),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| B64.decode(s.as_bytes()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Fuzzing entry point: decodes `data` as every message an untrusted peer can send. Never panics.
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    let _ = Hello::decode(data);
    let _ = Challenge::decode(data);
    if let Ok(r) = EvidenceResponse::decode(data) {
        let _ = key_proof_message(&[0; MIN_NONCE_LEN], &r.evidence);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let hello = Hello {
            v: WIRE_VERSION,
            tee: TeeKind::Snp,
            instance_key: vec![1, 2, 3],
        };
        assert_eq!(Hello::decode(&encode(&hello).unwrap()).unwrap(), hello);
        let big = vec![b' '; MAX_HELLO_LEN + 1];
        assert!(matches!(
            Hello::decode(&big),
            Err(WireError::TooLarge { .. })
        ));
        let old = br#"{"v":0,"tee":"snp","instance_key":"AQID"}"#;
        assert!(matches!(
            Hello::decode(old),
            Err(WireError::Version { got: 0, .. })
        ));
        let unknown = br#"{"v":1,"tee":"tdx9","instance_key":"AQID"}"#;
        assert!(matches!(
            Hello::decode(unknown),
            Err(WireError::Invalid { .. })
        ));
    }

    #[test]
    fn short_nonce_refused() {
        let c = Challenge {
            v: WIRE_VERSION,
            nonce: vec![0; 16],
        };
        assert!(matches!(
            Challenge::decode(&encode(&c).unwrap()),
            Err(WireError::NonceLength { got: 16 })
        ));
    }

    #[test]
    fn report_data_binds_nonce_and_key() {
        let a = report_data(&[1; 32], b"key-a");
        assert_ne!(a, report_data(&[2; 32], b"key-a"));
        assert_ne!(a, report_data(&[1; 32], b"key-b"));
        assert_eq!(a, report_data(&[1; 32], b"key-a"));
    }

    #[test]
    fn evidence_is_tagged_by_tee() {
        let r = EvidenceResponse {
            v: WIRE_VERSION,
            evidence: Evidence::Snp(SnpEvidence {
                report: vec![9; 4],
                cert_table: None,
            }),
            key_proof: vec![7],
        };
        let json = String::from_utf8(encode(&r).unwrap()).unwrap();
        assert!(json.contains(r#""tee":"snp""#), "{json}");
        assert_eq!(EvidenceResponse::decode(json.as_bytes()).unwrap(), r);
    }
}

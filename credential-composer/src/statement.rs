//! The signed statement: a credential-provenance record in a COSE_Sign1 (RFC 9052), shaped as a SCITT
//! Signed Statement, signed with the composer's own Ed25519 provenance key.
//!
//! ```text
//! #6.18([ protected: bstr .cbor {
//!           1 (alg): -8 (EdDSA),
//!           3 (content type): "application/vnd.twi.cprov+cbor",
//!           4 (kid): SHA-256 of the provenance key's SubjectPublicKeyInfo DER,
//!           15 (CWT claims): { 1 (iss): text, 2 (sub): SPIFFE ID } },
//!         unprotected: {},
//!         payload: bstr (the record's deterministic CBOR),
//!         signature: bstr (Ed25519, 64 bytes) ])
//! ```
//!
//! The statement's exact bytes are the transparency-log entry, so they are never re-encoded after
//! signing. The key is the composer's, not the SPIRE CA's nor the EAR verifier's: each key vouches
//! for one thing (credential-extensions.md §1).

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use coset::cbor::value::Value;
use coset::{iana, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable as _};
use der::{Decode as _, Encode as _};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use p256::pkcs8::PrivateKeyInfo;
use rand_core::CryptoRngCore;
use sha2::{Digest as _, Sha256};
use spki::{AlgorithmIdentifierRef, ObjectIdentifier, SubjectPublicKeyInfoRef};
use zeroize::Zeroizing;

use crate::record::{CredentialProvenanceRecord, RecordError, MAX_RECORD_CBOR};

/// COSE content type of the payload: a [`CredentialProvenanceRecord`] in deterministic CBOR.
pub const STATEMENT_CONTENT_TYPE: &str = "application/vnd.twi.cprov+cbor";
/// Statements larger than this are refused unparsed (record + headers + signature).
pub const MAX_STATEMENT: usize = MAX_RECORD_CBOR + 4096;
/// COSE header label of the CWT claims set (RFC 9597).
pub const CWT_CLAIMS_LABEL: i64 = 15;
/// Ed25519 (RFC 8410).
pub const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Key files larger than this are refused unread (an Ed25519 PKCS#8 PEM is 119 bytes).
const MAX_KEY_FILE: u64 = 16 * 1024;
/// Longest `iss` accepted.
const MAX_ISSUER: usize = 2048;

/// Why a statement or a provenance key was refused. Never carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatementError {
    #[error("statement is {len} bytes, more than {max}")]
    TooLarge { len: usize, max: usize },
    /// Not a tagged COSE_Sign1.
    #[error("statement is not a tagged COSE_Sign1: {detail}")]
    Cose { detail: String },
    #[error("statement alg {got}, want EdDSA (-8)")]
    Algorithm { got: String },
    #[error("statement content type {got}, want {STATEMENT_CONTENT_TYPE:?}")]
    ContentType { got: String },
    /// A header we must understand is critical, or the CWT claims are missing or malformed.
    #[error("statement header: {detail}")]
    Header { detail: String },
    /// The statement names another provenance key (`kid`).
    #[error("statement kid {got}, none of the provenance keys ({want})")]
    KeyId { got: String, want: String },
    #[error("statement signature does not verify with provenance key {key_id}")]
    Signature { key_id: String },
    #[error("statement payload: {0}")]
    Record(#[from] RecordError),
    #[error("statement CWT sub {cwt:?} differs from the record's sub {record:?}")]
    SubjectMismatch { cwt: String, record: String },
    #[error("provenance key{}: {detail}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Key {
        path: Option<PathBuf>,
        detail: String,
    },
    #[error("provenance key {} has mode {mode:04o}: group and others must have no access (chmod 600)", path.display())]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The composer's Ed25519 signing key. `Debug` shows only the key id; the secret is wiped on drop.
#[derive(Clone)]
pub struct ProvenanceKey {
    signing: SigningKey,
}

impl fmt::Debug for ProvenanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvenanceKey")
            .field("key_id", &self.public_key().key_id())
            .finish_non_exhaustive()
    }
}

impl ProvenanceKey {
    /// A fresh key from the OS's randomness.
    pub fn generate() -> ProvenanceKey {
        Self::generate_with(&mut rand_core::OsRng)
    }

    /// A fresh key from `rng`.
    pub fn generate_with(rng: &mut impl CryptoRngCore) -> ProvenanceKey {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        ProvenanceKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) Ed25519 key (RFC 8410; v1, or v2 with
    /// a public key that must match).
    ///
    /// # Errors
    /// [`StatementError::Key`] (the message never contains key material).
    pub fn from_pkcs8_pem(pem: &str) -> Result<ProvenanceKey, StatementError> {
        let bad = |detail: String| StatementError::Key { path: None, detail };
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| bad(format!("not PEM: {e}")))?;
        let der = Zeroizing::new(der);
        if label != "PRIVATE KEY" {
            return Err(bad(format!("PEM label {label:?}, want \"PRIVATE KEY\"")));
        }
        let info = PrivateKeyInfo::try_from(der.as_slice())
            .map_err(|e| bad(format!("not PKCS#8: {e}")))?;
        if info.algorithm.oid != ID_ED25519 || info.algorithm.parameters.is_some() {
            return Err(bad(format!(
                "algorithm {}, want Ed25519 ({ID_ED25519}) without parameters",
                info.algorithm.oid
            )));
        }
        // CurvePrivateKey ::= OCTET STRING (32 bytes), inside the PKCS#8 privateKey OCTET STRING.
        let seed = der::asn1::OctetStringRef::from_der(info.private_key)
            .ok()
            .and_then(|o| <[u8; 32]>::try_from(o.as_bytes()).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| bad("privateKey is not a 32-byte CurvePrivateKey".into()))?;
        let key = ProvenanceKey {
            signing: SigningKey::from_bytes(&seed),
        };
        if let Some(public) = info.public_key {
            if public != key.signing.verifying_key().as_bytes() {
                return Err(bad("publicKey does not match the private key".into()));
            }
        }
        Ok(key)
    }

    /// The key as PKCS#8 v1 PEM (wiped from memory when dropped).
    ///
    /// # Errors
    /// [`StatementError::Key`] if encoding fails.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, StatementError> {
        let bad = |e: der::Error| StatementError::Key {
            path: None,
            detail: format!("encoding: {e}"),
        };
        let seed = Zeroizing::new(self.signing.to_bytes());
        let inner = Zeroizing::new(
            der::asn1::OctetStringRef::new(seed.as_ref())
                .and_then(|o| o.to_der())
                .map_err(bad)?,
        );
        let info = PrivateKeyInfo::new(
            AlgorithmIdentifierRef {
                oid: ID_ED25519,
                parameters: None,
            },
            &inner,
        );
        let der = Zeroizing::new(info.to_der().map_err(bad)?);
        der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, &der)
            .map(Zeroizing::new)
            .map_err(|e| bad(e.into()))
    }

    /// Loads the key at `path`. Like ssh, refuses a key file that group or others may access.
    ///
    /// # Errors
    /// [`StatementError::Io`], [`StatementError::Key`], [`StatementError::KeyPermissions`].
    pub fn load(path: &Path) -> Result<ProvenanceKey, StatementError> {
        let io = |e| StatementError::Io {
            path: path.to_owned(),
            source: e,
        };
        let meta = fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StatementError::KeyPermissions {
                path: path.to_owned(),
                mode,
            });
        }
        if meta.len() > MAX_KEY_FILE {
            return Err(StatementError::Key {
                path: Some(path.to_owned()),
                detail: format!("{} bytes, more than {MAX_KEY_FILE}", meta.len()),
            });
        }
        let pem = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
        ProvenanceKey::from_pkcs8_pem(&pem).map_err(|e| match e {
            StatementError::Key { detail, .. } => StatementError::Key {
                path: Some(path.to_owned()),
                detail,
            },
            other => other,
        })
    }

    /// Loads the key at `path`, or on first start generates one and writes it there (mode 0600);
    /// the flag is `true` when the key was generated.
    ///
    /// The new key is written to a temporary file, synced, and hard-linked into place, so a crash
    /// never leaves a half-written key at `path` and two servers starting together end up with the
    /// same key (the second link fails and that server loads the first one's key).
    ///
    /// # Errors
    /// As [`ProvenanceKey::load`], and [`StatementError::Io`] when the key cannot be written.
    pub fn load_or_generate(path: &Path) -> Result<(ProvenanceKey, bool), StatementError> {
        use twi_core::keyfile::{self, Created, Existing, KeyFileError};
        let io = |e: KeyFileError| StatementError::Io {
            path: e.path,
            source: e.source,
        };
        if keyfile::probe(path).map_err(io)? == Existing::Present {
            return Ok((ProvenanceKey::load(path)?, false));
        }
        let key = ProvenanceKey::generate();
        let pem = key.to_pkcs8_pem()?;
        match keyfile::create_new(path, pem.as_bytes(), &mut rand_core::OsRng).map_err(io)? {
            Created::Written => Ok((key, true)),
            Created::LostRace => Ok((ProvenanceKey::load(path)?, false)),
        }
    }

    /// The public half, for relying parties.
    pub fn public_key(&self) -> ProvenancePublicKey {
        ProvenancePublicKey {
            key: self.signing.verifying_key(),
        }
    }
}

/// An Ed25519 provenance public key, as relying parties are given it (SPKI PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct ProvenancePublicKey {
    key: VerifyingKey,
}

impl fmt::Debug for ProvenancePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProvenancePublicKey")
            .field(&self.key_id())
            .finish()
    }
}

impl ProvenancePublicKey {
    /// The SubjectPublicKeyInfo DER (RFC 8410).
    pub fn to_spki_der(&self) -> Vec<u8> {
        // Fixed 12-byte prefix: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused) }.
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(self.key.as_bytes());
        der
    }

    /// The SPKI PEM (`-----BEGIN PUBLIC KEY-----`), the "provenance key" file relying parties get.
    pub fn to_pem(&self) -> String {
        // Encoding 44 bytes as PEM cannot fail.
        der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &self.to_spki_der())
            .unwrap_or_default()
    }

    /// Parses an SPKI PEM Ed25519 public key.
    ///
    /// # Errors
    /// [`StatementError::Key`].
    pub fn from_pem(pem: &str) -> Result<Self, StatementError> {
        let bad = |detail: String| StatementError::Key { path: None, detail };
        if pem.len() > MAX_KEY_FILE as usize {
            return Err(bad(format!(
                "{} bytes, more than {MAX_KEY_FILE}",
                pem.len()
            )));
        }
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| bad(format!("not PEM: {e}")))?;
        if label != "PUBLIC KEY" {
            return Err(bad(format!("PEM label {label:?}, want \"PUBLIC KEY\"")));
        }
        Self::from_spki_der(&der)
    }

    /// Parses an SPKI DER Ed25519 public key.
    ///
    /// # Errors
    /// [`StatementError::Key`].
    pub fn from_spki_der(der: &[u8]) -> Result<Self, StatementError> {
        let bad = |detail: String| StatementError::Key { path: None, detail };
        let spki = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| bad(format!("not a SubjectPublicKeyInfo: {e}")))?;
        if spki.algorithm.oid != ID_ED25519 || spki.algorithm.parameters.is_some() {
            return Err(bad(format!(
                "algorithm {}, want Ed25519 ({ID_ED25519})",
                spki.algorithm.oid
            )));
        }
        let bytes = spki
            .subject_public_key
            .as_bytes()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| bad("public key is not 32 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| bad("not a valid Ed25519 point".into()))?;
        if key.is_weak() {
            return Err(bad("weak (small-order) Ed25519 key".into()));
        }
        Ok(ProvenancePublicKey { key })
    }

    /// SHA-256 of the SPKI DER: the COSE `kid` of statements signed with this key.
    pub fn key_id_bytes(&self) -> [u8; 32] {
        Sha256::digest(self.to_spki_der()).into()
    }

    /// [`Self::key_id_bytes`] in lowercase hex.
    pub fn key_id(&self) -> String {
        hex::encode(self.key_id_bytes())
    }
}

/// A statement whose signature verified, with its claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedStatement {
    /// CWT `iss`: trust domain and composer instance.
    pub issuer: String,
    /// CWT `sub`: the SPIFFE ID (equal to `record.sub`).
    pub subject: String,
    pub record: CredentialProvenanceRecord,
}

/// Signs `record` as a tagged COSE_Sign1 statement with `issuer` as CWT `iss` and the record's `sub`
/// as CWT `sub`. The returned bytes are the log entry.
pub fn sign_statement(
    record: &CredentialProvenanceRecord,
    issuer: &str,
    key: &ProvenanceKey,
) -> Vec<u8> {
    let claims = Value::Map(vec![
        (Value::Integer(1.into()), Value::Text(issuer.to_owned())),
        (Value::Integer(2.into()), Value::Text(record.sub.clone())),
    ]);
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::EdDSA)
        .content_type(STATEMENT_CONTENT_TYPE.to_owned())
        .key_id(key.public_key().key_id_bytes().to_vec())
        .value(CWT_CLAIMS_LABEL, claims)
        .build();
    let sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(record.to_cbor())
        .create_signature(b"", |tbs| key.signing.sign(tbs).to_bytes().to_vec())
        .build();
    // Encoding a COSE_Sign1 of byte strings, text and integers into a Vec cannot fail.
    sign1.to_tagged_vec().unwrap_or_default()
}

/// A statement parsed but NOT verified: for display and for picking the key by `kid`.
#[derive(Clone, Debug)]
pub struct UnverifiedStatement {
    sign1: CoseSign1,
    /// CWT `iss`.
    pub issuer: String,
    /// CWT `sub`.
    pub subject: String,
    /// The protected `kid` (SHA-256 of the signer's SPKI DER), when present.
    pub key_id: Option<Vec<u8>>,
}

impl UnverifiedStatement {
    /// Parses a statement and checks its headers (alg, content type, no `crit`, CWT claims).
    ///
    /// # Errors
    /// [`StatementError::TooLarge`], [`StatementError::Cose`], [`StatementError::Algorithm`],
    /// [`StatementError::ContentType`], [`StatementError::Header`].
    pub fn parse(cose: &[u8]) -> Result<Self, StatementError> {
        if cose.len() > MAX_STATEMENT {
            return Err(StatementError::TooLarge {
                len: cose.len(),
                max: MAX_STATEMENT,
            });
        }
        let sign1 = CoseSign1::from_tagged_slice(cose).map_err(|e| StatementError::Cose {
            detail: e.to_string(),
        })?;
        let h = &sign1.protected.header;
        match &h.alg {
            Some(coset::RegisteredLabelWithPrivate::Assigned(iana::Algorithm::EdDSA)) => {}
            other => {
                return Err(StatementError::Algorithm {
                    got: format!("{other:?}"),
                })
            }
        }
        match &h.content_type {
            Some(coset::ContentType::Text(t)) if t == STATEMENT_CONTENT_TYPE => {}
            other => {
                return Err(StatementError::ContentType {
                    got: format!("{other:?}"),
                })
            }
        }
        let header = |detail: &str| StatementError::Header {
            detail: detail.to_owned(),
        };
        if !h.crit.is_empty() || !sign1.unprotected.crit.is_empty() {
            return Err(header("crit is present; no extension is supported"));
        }
        let mut claims = None;
        for (label, value) in &h.rest {
            match label {
                coset::Label::Int(CWT_CLAIMS_LABEL) if claims.is_none() => claims = Some(value),
                coset::Label::Int(CWT_CLAIMS_LABEL) => {
                    return Err(header("CWT claims (15) appear twice"))
                }
                _ => {}
            }
        }
        let Some(Value::Map(claims)) = claims else {
            return Err(header(
                "CWT claims (label 15) missing or not a map in the protected header",
            ));
        };
        let (mut iss, mut sub) = (None, None);
        for (k, v) in claims {
            let slot = match k.as_integer().map(i128::from) {
                Some(1) => &mut iss,
                Some(2) => &mut sub,
                _ => continue,
            };
            if slot.is_some() {
                return Err(header("CWT claim iss or sub appears twice"));
            }
            match v {
                Value::Text(t) if !t.is_empty() && t.len() <= MAX_ISSUER => *slot = Some(t.clone()),
                _ => return Err(header("CWT iss and sub must be text of 1 to 2048 bytes")),
            }
        }
        let (Some(issuer), Some(subject)) = (iss, sub) else {
            return Err(header("CWT claims need iss (1) and sub (2)"));
        };
        let key_id = (!h.key_id.is_empty()).then(|| h.key_id.clone());
        Ok(UnverifiedStatement {
            sign1,
            issuer,
            subject,
            key_id,
        })
    }

    /// The payload decoded as a record, unverified.
    ///
    /// # Errors
    /// [`StatementError::Record`], or [`StatementError::Cose`] if there is no payload.
    pub fn record(&self) -> Result<CredentialProvenanceRecord, StatementError> {
        let payload = self
            .sign1
            .payload
            .as_deref()
            .ok_or_else(|| StatementError::Cose {
                detail: "detached payload".into(),
            })?;
        Ok(CredentialProvenanceRecord::from_cbor(payload)?)
    }

    /// Verifies the signature with `key` and returns the statement's claims and record.
    ///
    /// # Errors
    /// [`StatementError::KeyId`], [`StatementError::Signature`], [`StatementError::Record`],
    /// [`StatementError::SubjectMismatch`].
    pub fn verify(&self, key: &ProvenancePublicKey) -> Result<SignedStatement, StatementError> {
        if let Some(kid) = &self.key_id {
            if kid.as_slice() != key.key_id_bytes() {
                return Err(StatementError::KeyId {
                    got: hex::encode(kid),
                    want: key.key_id(),
                });
            }
        }
        self.sign1
            .verify_signature(b"", |sig, tbs| {
                let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| ())?;
                key.key.verify_strict(tbs, &sig).map_err(|_| ())
            })
            .map_err(|()| StatementError::Signature {
                key_id: key.key_id(),
            })?;
        let record = self.record()?;
        if record.sub != self.subject {
            return Err(StatementError::SubjectMismatch {
                cwt: self.subject.clone(),
                record: record.sub,
            });
        }
        Ok(SignedStatement {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            record,
        })
    }
}

/// Verifies a statement with `key`: headers (alg EdDSA, content type, CWT claims), `kid` when present,
/// the Ed25519 signature, the payload record, and CWT `sub` = the record's `sub`.
///
/// # Errors
/// Those of [`UnverifiedStatement::parse`] and [`UnverifiedStatement::verify`].
pub fn verify_statement(
    cose: &[u8],
    key: &ProvenancePublicKey,
) -> Result<SignedStatement, StatementError> {
    UnverifiedStatement::parse(cose)?.verify(key)
}

/// Verifies a statement with whichever of `keys` its `kid` names (or, without a `kid`, the first
/// that verifies).
///
/// # Errors
/// As [`verify_statement`]; [`StatementError::KeyId`] when no key matches the `kid`.
pub fn verify_statement_with_any(
    cose: &[u8],
    keys: &[ProvenancePublicKey],
) -> Result<SignedStatement, StatementError> {
    let st = UnverifiedStatement::parse(cose)?;
    let candidates: Vec<&ProvenancePublicKey> = match &st.key_id {
        Some(kid) => keys
            .iter()
            .filter(|k| k.key_id_bytes().as_slice() == kid.as_slice())
            .collect(),
        None => keys.iter().collect(),
    };
    let mut last = StatementError::KeyId {
        got: st
            .key_id
            .as_deref()
            .map(hex::encode)
            .unwrap_or_else(|| "(none)".into()),
        want: keys
            .iter()
            .map(ProvenancePublicKey::key_id)
            .collect::<Vec<_>>()
            .join(", "),
    };
    for k in candidates {
        match st.verify(k) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::record::{CredentialKind, EarRef};
    use coset::CborSerializable as _;

    fn record() -> CredentialProvenanceRecord {
        CredentialProvenanceRecord {
            rid: CredentialProvenanceRecord::rid_from_parts(1_760_000_000_000, &[5; 10]),
            kind: CredentialKind::AgentX509,
            sub: "spiffe://example.org/spire/agent/x".into(),
            spki_sha256: Some([6; 32]),
            iat: 1_760_000_000,
            ear: EarRef::Unknown {
                reason: "test".into(),
            },
            evidence: None,
            policy: None,
            wprov: vec![],
        }
    }

    #[test]
    fn sign_verify() {
        let key = ProvenanceKey::generate();
        let st = sign_statement(&record(), "example.org/composer-1", &key);
        assert_eq!(&st[..1], &[0xd2]); // tag 18
        let v = verify_statement(&st, &key.public_key()).unwrap();
        assert_eq!(v.record, record());
        assert_eq!(v.issuer, "example.org/composer-1");
        assert_eq!(v.subject, record().sub);

        let other = ProvenanceKey::generate();
        assert!(matches!(
            verify_statement(&st, &other.public_key()),
            Err(StatementError::KeyId { .. })
        ));
        assert!(verify_statement_with_any(&st, &[other.public_key(), key.public_key()]).is_ok());

        // A flipped byte in the signature.
        let mut bad = st.clone();
        let n = bad.len() - 1;
        bad[n] ^= 1;
        assert!(matches!(
            verify_statement(&bad, &key.public_key()),
            Err(StatementError::Signature { .. })
        ));
    }

    #[test]
    fn subject_mismatch_and_headers() {
        let key = ProvenanceKey::generate();
        // A CWT sub that is not the record's: build by hand with the same key.
        let claims = Value::Map(vec![
            (Value::Integer(1.into()), Value::Text("iss".into())),
            (
                Value::Integer(2.into()),
                Value::Text("spiffe://other".into()),
            ),
        ]);
        let build = |alg: iana::Algorithm, ct: &str, claims: Option<Value>| {
            let mut h = HeaderBuilder::new()
                .algorithm(alg)
                .content_type(ct.to_owned());
            if let Some(c) = claims {
                h = h.value(CWT_CLAIMS_LABEL, c);
            }
            CoseSign1Builder::new()
                .protected(h.build())
                .payload(record().to_cbor())
                .create_signature(b"", |tbs| key.signing.sign(tbs).to_bytes().to_vec())
                .build()
                .to_tagged_vec()
                .unwrap()
        };
        let pk = key.public_key();
        let st = build(
            iana::Algorithm::EdDSA,
            STATEMENT_CONTENT_TYPE,
            Some(claims.clone()),
        );
        assert!(matches!(
            verify_statement(&st, &pk),
            Err(StatementError::SubjectMismatch { .. })
        ));
        let st = build(
            iana::Algorithm::ES256,
            STATEMENT_CONTENT_TYPE,
            Some(claims.clone()),
        );
        assert!(matches!(
            verify_statement(&st, &pk),
            Err(StatementError::Algorithm { .. })
        ));
        let st = build(iana::Algorithm::EdDSA, "application/cbor", Some(claims));
        assert!(matches!(
            verify_statement(&st, &pk),
            Err(StatementError::ContentType { .. })
        ));
        let st = build(iana::Algorithm::EdDSA, STATEMENT_CONTENT_TYPE, None);
        assert!(matches!(
            verify_statement(&st, &pk),
            Err(StatementError::Header { .. })
        ));
        // Untagged COSE_Sign1.
        let untagged = CoseSign1::from_tagged_slice(&sign_statement(&record(), "i", &key))
            .unwrap()
            .to_vec()
            .unwrap();
        assert!(matches!(
            verify_statement(&untagged, &pk),
            Err(StatementError::Cose { .. })
        ));
        assert!(matches!(
            verify_statement(&vec![0; MAX_STATEMENT + 1], &pk),
            Err(StatementError::TooLarge { .. })
        ));
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prov.key");
        let (k1, generated) = ProvenanceKey::load_or_generate(&path).unwrap();
        assert!(generated);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (k2, generated) = ProvenanceKey::load_or_generate(&path).unwrap();
        assert!(!generated);
        assert_eq!(k1.public_key(), k2.public_key());
        // No temporary file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            ProvenanceKey::load(&path),
            Err(StatementError::KeyPermissions { mode: 0o640, .. })
        ));

        // Debug and errors never show the secret.
        let pem = k1.to_pkcs8_pem().unwrap();
        let secret_b64 = pem.lines().nth(1).unwrap().to_owned();
        assert!(!format!("{k1:?}").contains(&secret_b64));
        assert!(format!("{k1:?}").contains(&k1.public_key().key_id()));
        let seed_hex = hex::encode(k1.signing.to_bytes());
        assert!(!format!("{k1:?}").contains(&seed_hex));

        // Public key PEM round trip; a private key is not a public key.
        let pk = ProvenancePublicKey::from_pem(&k1.public_key().to_pem()).unwrap();
        assert_eq!(pk, k1.public_key());
        assert!(ProvenancePublicKey::from_pem(&pem).is_err());
    }

    #[test]
    fn openssl_compatible_pkcs8() {
        // RFC 8410 §10.3 example private key.
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
        let k = ProvenanceKey::from_pkcs8_pem(pem).unwrap();
        assert_eq!(k.to_pkcs8_pem().unwrap().as_str(), pem);
        // RFC 8410 §10.1 example public key is a different key; check the SPKI form parses.
        let pub_pem = "-----BEGIN PUBLIC KEY-----\n\
                       MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
                       -----END PUBLIC KEY-----\n";
        let pk = ProvenancePublicKey::from_pem(pub_pem).unwrap();
        assert_eq!(pk.to_pem(), pub_pem);
    }
}

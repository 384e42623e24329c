//! DSSE (Dead Simple Signing Envelope) v1: parse an envelope, then verify it into a [`VerifiedEnvelope`].
//!
//! Spec: <https://github.com/secure-systems-lab/dsse/blob/master/envelope.md> and `protocol.md`.
//! An envelope is `{"payload": Base64(BODY), "payloadType": TYPE, "signatures": [{"keyid": …, "sig":
//! Base64(SIG)}]}`; each signature is over the pre-authentication encoding
//!
//! ```text
//! PAE(TYPE, BODY) = "DSSEv1" SP LEN(TYPE) SP TYPE SP LEN(BODY) SP BODY
//! ```
//!
//! with `LEN` the byte length in ASCII decimal without leading zeros, and `SP` one space. The signature
//! covers the type, so a payload cannot be reinterpreted as another type. Base64 may be standard or
//! URL-safe, padded or not (the spec allows both alphabets); anything else — whitespace, trailing bits —
//! is refused. `keyid` is an unauthenticated hint.
//!
//! Parsing ([`Envelope::from_json`]) and verifying ([`Envelope::verify`]) are separate steps, and only
//! `verify` can build a [`VerifiedEnvelope`], so code that reads a payload can only read a verified one.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::Value;

use super::keys::TrustedKey;

/// The payload type of an in-toto Statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// At most this many signatures are read from one envelope; more is refused (each costs a verification).
pub const MAX_SIGNATURES: usize = 16;

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DsseError {
    /// The JSON is not a DSSE envelope: a field is missing, of the wrong type, or not base64.
    #[error("malformed DSSE envelope: {field}: {detail}")]
    Malformed {
        /// The field, e.g. `signatures[1].sig`.
        field: String,
        /// What was wrong.
        detail: String,
    },
    /// More signatures than [`MAX_SIGNATURES`].
    #[error("DSSE envelope has {got} signatures, more than the {max} read")]
    TooManySignatures {
        /// How many the envelope has.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// No signature verified with any trusted key.
    #[error("signed by no trusted key ({signatures} signature(s), keyid(s) {keyids:?}; tried {tried} key(s))")]
    NoTrustedSignature {
        /// How many signatures the envelope has.
        signatures: usize,
        /// Their `keyid`s, as hints for the operator.
        keyids: Vec<String>,
        /// How many (signature, key) pairs were tried.
        tried: usize,
    },
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// The signer's hint, if given and non-empty.
    pub keyid: Option<String>,
    /// The signature bytes.
    pub sig: Vec<u8>,
}

/// A parsed, not yet verified envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `payloadType`.
    pub payload_type: String,
    /// The decoded payload (the signed body).
    pub payload: Vec<u8>,
    /// The signatures, in order.
    pub signatures: Vec<EnvelopeSignature>,
}

/// An envelope at least one of whose signatures verified with a trusted key. Only
/// [`Envelope::verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedEnvelope {
    payload_type: String,
    payload: Vec<u8>,
    signers: Vec<TrustedKey>,
}

impl VerifiedEnvelope {
    /// The signed `payloadType`.
    #[must_use]
    pub fn payload_type(&self) -> &str {
        &self.payload_type
    }

    /// The signed payload.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The trusted keys whose signatures verified, in configuration order, each once.
    #[must_use]
    pub fn signers(&self) -> &[TrustedKey] {
        &self.signers
    }
}

/// The pre-authentication encoding of `payload_type` and `payload` (DSSE v1).
#[must_use]
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let head = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    );
    let mut out = Vec::with_capacity(head.len().saturating_add(payload.len()));
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes base64 in the standard or URL-safe alphabet, padded or not.
///
/// # Errors
///
/// The decoder's message when the text is neither.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    STANDARD.decode(text).or_else(|std_err| {
        URL_SAFE
            .decode(text)
            .map_err(|_| format!("not base64 (standard or URL-safe): {std_err}"))
    })
}

impl Envelope {
    /// Reads an envelope from parsed JSON (see [`super::json::parse`]). Unknown fields are ignored.
    ///
    /// # Errors
    ///
    /// [`DsseError::Malformed`] naming the field; [`DsseError::TooManySignatures`].
    pub fn from_json(value: &Value) -> Result<Self, DsseError> {
        let malformed = |field: &str, detail: &str| DsseError::Malformed {
            field: field.to_owned(),
            detail: detail.to_owned(),
        };
        let obj = value
            .as_object()
            .ok_or_else(|| malformed("(envelope)", "not a JSON object"))?;
        let string = |field: &str| {
            obj.get(field)
                .ok_or_else(|| malformed(field, "missing"))?
                .as_str()
                .ok_or_else(|| malformed(field, "not a string"))
        };
        let payload_type = string("payloadType")?.to_owned();
        let payload = decode_base64(string("payload")?).map_err(|e| malformed("payload", &e))?;
        let sigs = obj
            .get("signatures")
            .ok_or_else(|| malformed("signatures", "missing"))?
            .as_array()
            .ok_or_else(|| malformed("signatures", "not an array"))?;
        if sigs.is_empty() {
            return Err(malformed("signatures", "empty"));
        }
        if sigs.len() > MAX_SIGNATURES {
            return Err(DsseError::TooManySignatures {
                got: sigs.len(),
                max: MAX_SIGNATURES,
            });
        }
        let mut signatures = Vec::with_capacity(sigs.len());
        for (i, s) in sigs.iter().enumerate() {
            let field = |name: &str| format!("signatures[{i}].{name}");
            let s = s
                .as_object()
                .ok_or_else(|| malformed(&format!("signatures[{i}]"), "not a JSON object"))?;
            let sig_text = s
                .get("sig")
                .ok_or_else(|| malformed(&field("sig"), "missing"))?
                .as_str()
                .ok_or_else(|| malformed(&field("sig"), "not a string"))?;
            let sig = decode_base64(sig_text).map_err(|e| malformed(&field("sig"), &e))?;
            if sig.is_empty() {
                return Err(malformed(&field("sig"), "empty"));
            }
            let keyid = match s.get("keyid") {
                None | Some(Value::Null) => None,
                Some(Value::String(k)) if k.is_empty() => None,
                Some(Value::String(k)) => Some(k.clone()),
                Some(_) => return Err(malformed(&field("keyid"), "not a string")),
            };
            signatures.push(EnvelopeSignature { keyid, sig });
        }
        Ok(Self {
            payload_type,
            payload,
            signatures,
        })
    }

    /// Verifies the signatures over `PAE(payloadType, payload)` with `keys`; every key whose signature
    /// verifies is a signer.
    ///
    /// # Errors
    ///
    /// [`DsseError::NoTrustedSignature`] when no signature verifies with any key.
    pub fn verify(&self, keys: &[TrustedKey]) -> Result<VerifiedEnvelope, DsseError> {
        let message = pae(&self.payload_type, &self.payload);
        let mut signers: Vec<TrustedKey> = Vec::new();
        let mut tried = 0usize;
        for key in keys {
            let signed = self.signatures.iter().any(|s| {
                if !key.may_have_signed(s.keyid.as_deref()) {
                    return false;
                }
                tried = tried.saturating_add(1);
                key.verifies(&message, &s.sig)
            });
            if signed {
                signers.push(key.clone());
            }
        }
        if signers.is_empty() {
            return Err(DsseError::NoTrustedSignature {
                signatures: self.signatures.len(),
                keyids: self
                    .signatures
                    .iter()
                    .filter_map(|s| s.keyid.clone())
                    .collect(),
                tried,
            });
        }
        Ok(VerifiedEnvelope {
            payload_type: self.payload_type.clone(),
            payload: self.payload.clone(),
            signers,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::provenance::json;
    use crate::provenance::testing::Signer;
    use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};

    /// The DSSE spec's own PAE example (protocol.md), and the byte-length rule for non-ASCII types.
    #[test]
    fn pae_matches_the_spec() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
        assert_eq!(pae("é", b"\x00"), b"DSSEv1 2 \xc3\xa9 1 \x00".to_vec());
    }

    fn envelope_json(payload_b64: &str, sigs: &[(&str, Option<&str>)]) -> Value {
        let sigs: Vec<Value> = sigs
            .iter()
            .map(|(sig, keyid)| match keyid {
                Some(k) => serde_json::json!({"keyid": k, "sig": sig}),
                None => serde_json::json!({"sig": sig}),
            })
            .collect();
        serde_json::json!({"payloadType": IN_TOTO_PAYLOAD_TYPE, "payload": payload_b64, "signatures": sigs})
    }

    #[test]
    fn signed_envelope_verifies_in_either_base64_alphabet() {
        let signer = Signer::generate("ci");
        let payload = b"{\"_type\":\"x\"}\xff\xfe?>";
        let sig = signer.sign(IN_TOTO_PAYLOAD_TYPE, payload);
        for (p, s) in [
            (B64.encode(payload), B64.encode(&sig)),
            (B64URL.encode(payload), B64URL.encode(&sig)),
        ] {
            let env = Envelope::from_json(&envelope_json(&p, &[(&s, None)])).unwrap();
            assert_eq!(env.payload, payload);
            let v = env.verify(&[signer.trusted_key().unwrap()]).unwrap();
            assert_eq!(v.payload(), payload);
            assert_eq!(v.payload_type(), IN_TOTO_PAYLOAD_TYPE);
            assert_eq!(v.signers().len(), 1);
            assert_eq!(v.signers()[0].name(), "ci");
        }
        // The helper's own JSON round-trips too.
        let text = signer.envelope(payload);
        let env = Envelope::from_json(&json::parse(text.as_bytes()).unwrap()).unwrap();
        assert!(env.verify(&[signer.trusted_key().unwrap()]).is_ok());
    }

    #[test]
    fn wrong_key_tampered_payload_and_wrong_type_fail() {
        let signer = Signer::generate("ci");
        let stranger = Signer::generate("stranger");
        let payload = b"{}";
        let good = B64.encode(signer.sign(IN_TOTO_PAYLOAD_TYPE, payload));
        let env = Envelope::from_json(&envelope_json(&B64.encode(payload), &[(&good, Some("k"))]))
            .unwrap();
        let err = env.verify(&[stranger.trusted_key().unwrap()]).unwrap_err();
        assert_eq!(
            err,
            DsseError::NoTrustedSignature {
                signatures: 1,
                keyids: vec!["k".into()],
                tried: 1
            }
        );
        // Tampered payload: same signature, one byte changed.
        let tampered =
            Envelope::from_json(&envelope_json(&B64.encode(b"{ }"), &[(&good, None)])).unwrap();
        assert!(tampered.verify(&[signer.trusted_key().unwrap()]).is_err());
        // Same payload and signature presented as another type: the PAE differs.
        let mut retyped = env.clone();
        retyped.payload_type = "application/json".into();
        assert!(retyped.verify(&[signer.trusted_key().unwrap()]).is_err());
        // A signature made over the bare payload (no PAE) is not a DSSE signature.
        let bare = B64.encode(signer.sign_raw(payload));
        let env =
            Envelope::from_json(&envelope_json(&B64.encode(payload), &[(&bare, None)])).unwrap();
        assert!(env.verify(&[signer.trusted_key().unwrap()]).is_err());
    }

    #[test]
    fn keyid_narrows_and_every_verifying_key_is_a_signer() {
        let a = Signer::generate("a").with_key_id("ka");
        let b = Signer::generate("b");
        let payload = b"{}";
        let sa = B64.encode(a.sign(IN_TOTO_PAYLOAD_TYPE, payload));
        let sb = B64.encode(b.sign(IN_TOTO_PAYLOAD_TYPE, payload));
        // a's signature labelled with another keyid is not tried with a.
        let env = Envelope::from_json(&envelope_json(
            &B64.encode(payload),
            &[(&sa, Some("other"))],
        ))
        .unwrap();
        assert!(env.verify(&[a.trusted_key().unwrap()]).is_err());
        let env = Envelope::from_json(&envelope_json(
            &B64.encode(payload),
            &[(&sa, Some("ka")), (&sb, None)],
        ))
        .unwrap();
        let v = env
            .verify(&[b.trusted_key().unwrap(), a.trusted_key().unwrap()])
            .unwrap();
        let names: Vec<&str> = v.signers().iter().map(TrustedKey::name).collect();
        assert_eq!(names, ["b", "a"]);
    }

    #[test]
    fn malformed_envelopes_name_the_field() {
        let ok_sig = B64.encode([1u8; 70]);
        let cases: Vec<(Value, &str)> = vec![
            (serde_json::json!([]), "(envelope)"),
            (
                serde_json::json!({"payload": "e30=", "signatures": []}),
                "payloadType",
            ),
            (
                serde_json::json!({"payloadType": 1, "payload": "e30=", "signatures": []}),
                "payloadType",
            ),
            (
                serde_json::json!({"payloadType": "t", "signatures": [{"sig": ok_sig}]}),
                "payload",
            ),
            (
                serde_json::json!({"payloadType": "t", "payload": "e3 0=", "signatures": [{"sig": ok_sig}]}),
                "payload",
            ),
            (
                serde_json::json!({"payloadType": "t", "payload": "e30+_w", "signatures": [{"sig": ok_sig}]}),
                "payload",
            ),
            (
                serde_json::json!({"payloadType": "t", "payload": "e30="}),
                "signatures",
            ),
            (
                serde_json::json!({"payloadType": "t", "payload": "e30=", "signatures": []}),
                "signatures",
            ),
            (
                serde_json::json!({"payloadType": "t", "payload": "e30=", "signatures": [{}]}),
                "signatures[0].sig",
            ),
            (
                serde_json::json!({"payloadType": "t", "payload": "e30=", "signatures": [{"sig": ""}]}),
                "signatures[0].sig",
            ),
            (
                serde_json::json!({"payloadType": "t", "payload": "e30=", "signatures": [{"sig": ok_sig, "keyid": 3}]}),
                "signatures[0].keyid",
            ),
            (
                serde_json::json!({"payloadType": "t", "payload": "e30=", "signatures": ["x"]}),
                "signatures[0]",
            ),
        ];
        for (value, field) in cases {
            match Envelope::from_json(&value) {
                Err(DsseError::Malformed { field: f, .. }) => assert_eq!(f, field, "{value}"),
                other => panic!("{value}: {other:?}"),
            }
        }
        let many: Vec<Value> = (0..=MAX_SIGNATURES)
            .map(|_| serde_json::json!({"sig": ok_sig}))
            .collect();
        let err = Envelope::from_json(
            &serde_json::json!({"payloadType": "t", "payload": "e30=", "signatures": many}),
        )
        .unwrap_err();
        assert_eq!(
            err,
            DsseError::TooManySignatures {
                got: MAX_SIGNATURES + 1,
                max: MAX_SIGNATURES
            }
        );
    }

    #[test]
    fn base64_variants() {
        assert_eq!(decode_base64("e30=").unwrap(), b"{}");
        assert_eq!(decode_base64("e30").unwrap(), b"{}");
        assert_eq!(decode_base64("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode_base64("+/8=").unwrap(), [0xfb, 0xff]);
        assert!(decode_base64("+_8=").is_err(), "mixed alphabets");
        assert!(decode_base64("e30=\n").is_err());
        assert!(decode_base64("e31=").is_err(), "trailing bits");
    }
}

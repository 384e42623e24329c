//! RATS Conceptual Message Wrappers (draft-ietf-rats-msg-wrap), JSON form, as carried in the
//! `id-pe-cmw` X.509 extension and the JWT-SVID `cmw` claim.
//!
//! Two shapes only, the ones the composer produces:
//! - a **record** `[media-type, base64url(value)]` (no padding), e.g. one EAR;
//! - a **collection** `{label: CMW, …}`, used when a workload may have several parent agents (one EAR
//!   per agent, labelled by the agent's SPIFFE ID).
//!
//! The X.509 extnValue is the DER of `CMW ::= CHOICE { json UTF8String, cbor OCTET STRING }` with the
//! `json` alternative holding the compact JSON text.
//!
//! Parsing is strict and bounded because the input comes from a certificate or token a relying party
//! was handed: size ([`MAX_CMW_JSON`]), nesting ([`MAX_COLLECTION_DEPTH`]), entries
//! ([`MAX_CMW_ENTRIES`]); duplicate JSON keys, record indicators, collection types (`__cmwc_t`) and the
//! CBOR alternative are refused with a typed error rather than half-understood.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use const_oid::ObjectIdentifier;
use der::asn1::Utf8StringRef;
use der::{Decode as _, Encode as _};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// `id-pe-cmw` (draft-ietf-rats-msg-wrap, PKIX transport): the extension carrying the CMW.
pub const ID_PE_CMW: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.35");

/// Media type of an EAR in JWT form with the EAR profile we issue (draft-ietf-rats-ear-04).
pub const EAR_MEDIA_TYPE: &str =
    "application/eat+jwt; eat_profile=\"tag:ietf.org,2026:rats/ear#04\"";

/// Largest CMW JSON text accepted (an EAR is about 1 KiB; a collection of 8 fits many times over).
pub const MAX_CMW_JSON: usize = 256 * 1024;
/// Deepest nesting of collections accepted (a top-level collection of records is depth 1).
pub const MAX_COLLECTION_DEPTH: usize = 4;
/// Most records and collections in one CMW, counted over the whole tree.
pub const MAX_CMW_ENTRIES: usize = 256;
/// Longest media type accepted (RFC 6838 names are at most 127 + 127 characters, plus parameters).
pub const MAX_MEDIA_TYPE: usize = 512;
/// Longest collection label accepted (SPIFFE IDs are at most 2048 bytes).
pub const MAX_LABEL: usize = 2048;

/// A Conceptual Message Wrapper.
#[derive(Clone, PartialEq, Eq)]
pub enum Cmw {
    /// One message with its media type.
    Record { media_type: String, value: Vec<u8> },
    /// Labelled CMWs (labels are agent SPIFFE IDs for our EAR collections).
    Collection(BTreeMap<String, Cmw>),
}

/// Why a CMW was refused. `path` is where in the JSON (`$`, `$["spiffe://…"]`, `$[1]`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CmwError {
    /// The input is larger than allowed.
    #[error("CMW is {len} bytes, more than {max}")]
    TooLarge { len: usize, max: usize },
    /// Not JSON text (or duplicate object keys).
    #[error("CMW JSON: {detail}")]
    Json { detail: String },
    /// JSON that is not a record or collection CMW.
    #[error("CMW at {path}: got {got}, want {want}")]
    Shape {
        path: String,
        got: String,
        want: &'static str,
    },
    /// A record value is not base64url without padding.
    #[error("CMW record at {path}: value is not base64url without padding: {detail}")]
    Base64 { path: String, detail: String },
    /// Collections nest deeper than [`MAX_COLLECTION_DEPTH`].
    #[error("CMW at {path}: collections nested deeper than {max}")]
    Depth { path: String, max: usize },
    /// More than [`MAX_CMW_ENTRIES`] records and collections.
    #[error("CMW has more than {max} entries")]
    TooManyEntries { max: usize },
    /// A valid CMW feature we do not accept.
    #[error("CMW at {path}: {feature} is not supported")]
    Unsupported { path: String, feature: &'static str },
    /// The extnValue is not the DER of the CMW CHOICE.
    #[error("id-pe-cmw extnValue: {detail}")]
    Der { detail: String },
}

impl fmt::Debug for Cmw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cmw::Record { media_type, value } => f
                .debug_struct("Record")
                .field("media_type", media_type)
                .field("value_len", &value.len())
                .finish(),
            Cmw::Collection(m) => f.debug_map().entries(m.iter()).finish(),
        }
    }
}

impl Cmw {
    /// The record CMW of one EAR: its compact JWS bytes exactly as given (not trimmed, so the
    /// digest a composer computes over the same string is [`ear_digest`] of what is carried).
    pub fn ear(jws: &str) -> Cmw {
        Cmw::Record {
            media_type: EAR_MEDIA_TYPE.to_owned(),
            value: jws.as_bytes().to_vec(),
        }
    }

    /// A collection CMW of EARs labelled by their agent's SPIFFE ID (one per candidate parent agent).
    /// A label given twice keeps the last EAR.
    pub fn ear_collection(ears: &[(String, String)]) -> Cmw {
        Cmw::Collection(
            ears.iter()
                .map(|(label, jws)| (label.clone(), Cmw::ear(jws)))
                .collect(),
        )
    }

    /// The JSON form (for the JWT `cmw` claim).
    pub fn to_json_value(&self) -> Value {
        match self {
            Cmw::Record { media_type, value } => Value::Array(vec![
                Value::String(media_type.clone()),
                Value::String(B64URL.encode(value)),
            ]),
            Cmw::Collection(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.to_json_value()))
                    .collect(),
            ),
        }
    }

    /// The compact JSON text (what the extension's UTF8String holds).
    pub fn to_json_string(&self) -> String {
        // A tree of strings, arrays and objects always serialises.
        serde_json::to_string(&self.to_json_value()).unwrap_or_default()
    }

    /// Parses the JSON form (a JWT `cmw` claim).
    ///
    /// # Errors
    /// [`CmwError::Shape`], [`CmwError::Base64`], [`CmwError::Depth`], [`CmwError::TooManyEntries`],
    /// [`CmwError::Unsupported`].
    pub fn from_json_value(v: &Value) -> Result<Cmw, CmwError> {
        let mut entries = 0;
        parse_value(v, "$", 0, &mut entries)
    }

    /// Parses CMW JSON text, refusing duplicate object keys (which JSON parsers resolve differently,
    /// so two relying parties could read two different CMWs from the same bytes).
    ///
    /// # Errors
    /// [`CmwError::TooLarge`], [`CmwError::Json`], then those of [`Cmw::from_json_value`].
    pub fn from_json_bytes(json: &[u8]) -> Result<Cmw, CmwError> {
        if json.len() > MAX_CMW_JSON {
            return Err(CmwError::TooLarge {
                len: json.len(),
                max: MAX_CMW_JSON,
            });
        }
        let mut de = serde_json::Deserializer::from_slice(json);
        NoDuplicateKeys
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| CmwError::Json {
                detail: e.to_string(),
            })?;
        let v: Value = serde_json::from_slice(json).map_err(|e| CmwError::Json {
            detail: e.to_string(),
        })?;
        Cmw::from_json_value(&v)
    }

    /// The X.509 extnValue: DER of the `json` alternative (UTF8String) of the CMW CHOICE.
    pub fn to_extn_value(&self) -> Vec<u8> {
        let json = self.to_json_string();
        // A String is valid UTF-8 and far below DER's length limit; the fallback is never taken.
        Utf8StringRef::new(&json)
            .and_then(|s| s.to_der())
            .unwrap_or_default()
    }

    /// Parses an `id-pe-cmw` extnValue.
    ///
    /// # Errors
    /// [`CmwError::TooLarge`], [`CmwError::Unsupported`] for the `cbor` alternative, [`CmwError::Der`],
    /// then those of [`Cmw::from_json_bytes`].
    pub fn from_extn_value(der: &[u8]) -> Result<Cmw, CmwError> {
        // DER header is at most 6 bytes for this size.
        if der.len() > MAX_CMW_JSON + 8 {
            return Err(CmwError::TooLarge {
                len: der.len(),
                max: MAX_CMW_JSON + 8,
            });
        }
        match der.first() {
            Some(0x0c) => {}
            Some(0x04) => {
                return Err(CmwError::Unsupported {
                    path: "$".into(),
                    feature: "the cbor (OCTET STRING) alternative",
                })
            }
            Some(t) => {
                return Err(CmwError::Der {
                    detail: format!("tag 0x{t:02x}, want UTF8String (0x0c)"),
                })
            }
            None => {
                return Err(CmwError::Der {
                    detail: "empty".into(),
                })
            }
        }
        let s = Utf8StringRef::from_der(der).map_err(|e| CmwError::Der {
            detail: e.to_string(),
        })?;
        Cmw::from_json_bytes(s.as_str().as_bytes())
    }

    /// Every EAR inside (records whose media type is [`EAR_MEDIA_TYPE`]), with the label of the
    /// collection entry holding it (`None` for a top-level record). Values that are not UTF-8 text
    /// are skipped: a JWS is ASCII.
    pub fn ear_jwss(&self) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        self.collect_ears(None, &mut out);
        out
    }

    /// SHA-256 of every EAR's JWS bytes inside, with its label: what a record's EAR digests name.
    pub fn ear_digests(&self) -> Vec<(Option<String>, [u8; 32])> {
        self.ear_jwss()
            .into_iter()
            .map(|(label, jws)| (label, ear_digest(&jws)))
            .collect()
    }

    fn collect_ears(&self, label: Option<&str>, out: &mut Vec<(Option<String>, String)>) {
        match self {
            Cmw::Record { media_type, value } => {
                if is_ear_media_type(media_type) {
                    if let Ok(s) = std::str::from_utf8(value) {
                        out.push((label.map(str::to_owned), s.to_owned()));
                    }
                }
            }
            Cmw::Collection(m) => {
                for (k, v) in m {
                    v.collect_ears(Some(k), out);
                }
            }
        }
    }
}

/// SHA-256 of an EAR's compact JWS bytes as a CMW carries them: the digest a credential-provenance
/// record names the EAR by.
pub fn ear_digest(jws: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(jws.as_bytes()).into()
}

/// Whether `media_type` names an EAR JWT with our profile: `application/eat+jwt` (case-insensitive)
/// with an `eat_profile` parameter equal to [`twi_core::ear::EAR_PROFILE`], quoted or not.
pub fn is_ear_media_type(media_type: &str) -> bool {
    let mut parts = media_type.split(';');
    let Some(base) = parts.next() else {
        return false;
    };
    if !base.trim().eq_ignore_ascii_case("application/eat+jwt") {
        return false;
    }
    let mut profile = None;
    for p in parts {
        let Some((name, value)) = p.split_once('=') else {
            return false;
        };
        if name.trim().eq_ignore_ascii_case("eat_profile") {
            let v = value.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            profile = Some(v.to_owned());
        }
    }
    profile.as_deref() == Some(twi_core::ear::EAR_PROFILE)
}

fn parse_value(v: &Value, path: &str, depth: usize, entries: &mut usize) -> Result<Cmw, CmwError> {
    *entries += 1;
    if *entries > MAX_CMW_ENTRIES {
        return Err(CmwError::TooManyEntries {
            max: MAX_CMW_ENTRIES,
        });
    }
    match v {
        Value::Array(items) => parse_record(items, path),
        Value::Object(map) => {
            if depth >= MAX_COLLECTION_DEPTH {
                return Err(CmwError::Depth {
                    path: path.to_owned(),
                    max: MAX_COLLECTION_DEPTH,
                });
            }
            if map.is_empty() {
                return Err(CmwError::Shape {
                    path: path.to_owned(),
                    got: "an empty object".into(),
                    want: "a collection with at least one entry",
                });
            }
            let mut out = BTreeMap::new();
            for (label, item) in map {
                if label == "__cmwc_t" {
                    return Err(CmwError::Unsupported {
                        path: path.to_owned(),
                        feature: "a collection type (__cmwc_t)",
                    });
                }
                if label.is_empty() || label.len() > MAX_LABEL {
                    return Err(CmwError::Shape {
                        path: path.to_owned(),
                        got: format!("a label of {} bytes", label.len()),
                        want: "labels of 1 to 2048 bytes",
                    });
                }
                let sub = format!("{path}[{label:?}]");
                out.insert(label.clone(), parse_value(item, &sub, depth + 1, entries)?);
            }
            Ok(Cmw::Collection(out))
        }
        other => Err(CmwError::Shape {
            path: path.to_owned(),
            got: json_kind(other).into(),
            want: "an array (record) or an object (collection)",
        }),
    }
}

fn parse_record(items: &[Value], path: &str) -> Result<Cmw, CmwError> {
    let (media_type, value) = match items {
        [Value::String(t), Value::String(v)] => (t, v),
        [_, _, _] => {
            return Err(CmwError::Unsupported {
                path: path.to_owned(),
                feature: "a record indicator (third element)",
            })
        }
        [t, v] => {
            return Err(CmwError::Shape {
                path: path.to_owned(),
                got: format!("[{}, {}]", json_kind(t), json_kind(v)),
                want: "[media-type string, base64url string]",
            })
        }
        _ => {
            return Err(CmwError::Shape {
                path: path.to_owned(),
                got: format!("an array of {} elements", items.len()),
                want: "a record of 2 elements",
            })
        }
    };
    if media_type.is_empty()
        || media_type.len() > MAX_MEDIA_TYPE
        || !media_type.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(CmwError::Shape {
            path: path.to_owned(),
            got: format!("a media type of {} bytes", media_type.len()),
            want: "a media type of 1 to 512 printable ASCII characters",
        });
    }
    let value = B64URL
        .decode(value.as_bytes())
        .map_err(|e| CmwError::Base64 {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if value.is_empty() {
        return Err(CmwError::Shape {
            path: path.to_owned(),
            got: "an empty value".into(),
            want: "a non-empty value",
        });
    }
    Ok(Cmw::Record {
        media_type: media_type.clone(),
        value,
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Walks any JSON value and fails on an object with a repeated key (serde_json keeps the last one).
struct NoDuplicateKeys;

impl<'de> DeserializeSeed<'de> for NoDuplicateKeys {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicateKeys {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicateKeys)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                let shown: String = key.chars().take(80).collect();
                return Err(serde::de::Error::custom(format!(
                    "duplicate object key {shown:?}"
                )));
            }
            map.next_value_seed(NoDuplicateKeys)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    const JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJhIjoxfQ.c2ln";

    #[test]
    fn record_json_and_extn_value_exact() {
        let cmw = Cmw::ear(JWS);
        let text = cmw.to_json_string();
        assert_eq!(
            text,
            format!(
                r#"["application/eat+jwt; eat_profile=\"tag:ietf.org,2026:rats/ear#04\"","{}"]"#,
                B64URL.encode(JWS)
            )
        );
        let der = cmw.to_extn_value();
        // UTF8String, short-form length (the text is under 128 bytes), then the JSON text.
        assert_eq!(der[0], 0x0c);
        assert_eq!(usize::from(der[1]), text.len());
        assert_eq!(&der[2..], text.as_bytes());
        // A longer JWS: long-form length.
        let long = Cmw::ear(&"x".repeat(300)).to_extn_value();
        assert_eq!(&long[..2], &[0x0c, 0x82]);
        assert_eq!(
            usize::from(u16::from_be_bytes([long[2], long[3]])),
            long.len() - 4
        );
        assert_eq!(Cmw::from_extn_value(&der).unwrap(), cmw);
        assert_eq!(cmw.ear_jwss(), vec![(None, JWS.to_owned())]);
        assert_eq!(cmw.ear_digests()[0].1, ear_digest(JWS));
        // Bytes as given: a digest over the same string is the digest of what is carried.
        use sha2::Digest as _;
        assert_eq!(
            ear_digest(JWS),
            <[u8; 32]>::from(sha2::Sha256::digest(JWS.as_bytes()))
        );
        assert_ne!(ear_digest(&format!("{JWS}\n")), ear_digest(JWS));
    }

    #[test]
    fn collection_round_trip_and_labels() {
        let cmw = Cmw::ear_collection(&[
            ("spiffe://td/spire/agent/b".into(), "b.b.b".into()),
            ("spiffe://td/spire/agent/a".into(), "a.a.a".into()),
        ]);
        let v = cmw.to_json_value();
        assert!(v.is_object());
        assert_eq!(Cmw::from_json_value(&v).unwrap(), cmw);
        assert_eq!(Cmw::from_extn_value(&cmw.to_extn_value()).unwrap(), cmw);
        // Labels in sorted order; every EAR found with its label.
        assert_eq!(
            cmw.ear_jwss(),
            vec![
                (Some("spiffe://td/spire/agent/a".into()), "a.a.a".into()),
                (Some("spiffe://td/spire/agent/b".into()), "b.b.b".into()),
            ]
        );
        // A record of another media type is carried but is not an EAR.
        let other = Cmw::Collection(BTreeMap::from([(
            "x".to_owned(),
            Cmw::Record {
                media_type: "application/json".into(),
                value: b"{}".to_vec(),
            },
        )]));
        assert!(other.ear_jwss().is_empty());
    }

    #[test]
    fn media_type_matching() {
        assert!(is_ear_media_type(EAR_MEDIA_TYPE));
        assert!(is_ear_media_type(
            "Application/EAT+JWT;eat_profile=tag:ietf.org,2026:rats/ear#04"
        ));
        assert!(!is_ear_media_type("application/eat+jwt"));
        assert!(!is_ear_media_type(
            "application/eat+cwt; eat_profile=\"tag:ietf.org,2026:rats/ear#04\""
        ));
        assert!(!is_ear_media_type(
            "application/eat+jwt; eat_profile=\"tag:ietf.org,2023:rats/ear#01\""
        ));
    }

    fn refuse_json(v: Value) -> CmwError {
        Cmw::from_json_value(&v).unwrap_err()
    }

    #[test]
    fn refuses_unknown_shapes() {
        let b = B64URL.encode("x");
        assert!(matches!(
            refuse_json(json!("a.b.c")),
            CmwError::Shape { .. }
        ));
        assert!(matches!(refuse_json(json!(["t"])), CmwError::Shape { .. }));
        assert!(matches!(
            refuse_json(json!(["t", 1])),
            CmwError::Shape { .. }
        ));
        assert!(matches!(
            refuse_json(json!(["a/b", b, 4])),
            CmwError::Unsupported { .. }
        ));
        assert!(matches!(refuse_json(json!({})), CmwError::Shape { .. }));
        assert!(matches!(
            refuse_json(json!({"__cmwc_t": "tag:x", "a": ["a/b", b]})),
            CmwError::Unsupported { .. }
        ));
        assert!(matches!(
            refuse_json(json!(["a/b", "eA=="])),
            CmwError::Base64 { .. }
        ));
        assert!(matches!(
            refuse_json(json!(["a/b", "e+"])),
            CmwError::Base64 { .. }
        ));
        assert!(matches!(
            refuse_json(json!(["a/b", ""])),
            CmwError::Shape { .. }
        ));
        assert!(matches!(
            refuse_json(json!(["", b])),
            CmwError::Shape { .. }
        ));
        let err = refuse_json(json!({"l": {"m": 5}}));
        assert!(err.to_string().contains(r#"$["l"]["m"]"#), "{err}");
    }

    #[test]
    fn bounded() {
        let leaf = json!(["a/b", B64URL.encode("x")]);
        let mut deep = leaf.clone();
        for _ in 0..MAX_COLLECTION_DEPTH {
            deep = json!({ "l": deep });
        }
        assert!(Cmw::from_json_value(&deep).is_ok());
        let deeper = json!({ "l": deep });
        assert!(matches!(
            Cmw::from_json_value(&deeper),
            Err(CmwError::Depth { .. })
        ));
        let many: serde_json::Map<String, Value> = (0..MAX_CMW_ENTRIES)
            .map(|i| (format!("l{i}"), leaf.clone()))
            .collect();
        assert!(matches!(
            Cmw::from_json_value(&Value::Object(many)),
            Err(CmwError::TooManyEntries { .. })
        ));
        let big = vec![b' '; MAX_CMW_JSON + 1];
        assert!(matches!(
            Cmw::from_json_bytes(&big),
            Err(CmwError::TooLarge { .. })
        ));
    }

    #[test]
    fn strict_text_and_der() {
        let b = B64URL.encode("x");
        let dup = format!(r#"{{"a": ["a/b", "{b}"], "a": ["c/d", "{b}"]}}"#);
        assert!(matches!(
            Cmw::from_json_bytes(dup.as_bytes()),
            Err(CmwError::Json { .. })
        ));
        let nested_dup = format!(r#"{{"a": {{"x": ["a/b", "{b}"], "x": ["a/b", "{b}"]}}}}"#);
        assert!(Cmw::from_json_bytes(nested_dup.as_bytes()).is_err());
        assert!(Cmw::from_json_bytes(format!(r#"["a/b", "{b}"] x"#).as_bytes()).is_err());

        let good = Cmw::ear(JWS).to_extn_value();
        // The cbor alternative, another tag, trailing bytes, a short length.
        let mut cbor = good.clone();
        cbor[0] = 0x04;
        assert!(matches!(
            Cmw::from_extn_value(&cbor),
            Err(CmwError::Unsupported { .. })
        ));
        let mut seq = good.clone();
        seq[0] = 0x30;
        assert!(matches!(
            Cmw::from_extn_value(&seq),
            Err(CmwError::Der { .. })
        ));
        let trailing = [good.as_slice(), &[0]].concat();
        assert!(matches!(
            Cmw::from_extn_value(&trailing),
            Err(CmwError::Der { .. })
        ));
        assert!(Cmw::from_extn_value(&good[..good.len() - 1]).is_err());
        assert!(matches!(
            Cmw::from_extn_value(&[]),
            Err(CmwError::Der { .. })
        ));
    }
}

//! The credential-provenance record: what the composer states about each credential it shapes, as
//! deterministic CBOR (RFC 8949 §4.2.1), the payload of the signed statement that goes into the log.
//!
//! Deterministic, because the statement's exact bytes are the log entry and a relying party may
//! rebuild and compare; one value has exactly one encoding: definite lengths, shortest integer heads,
//! map keys sorted by the bytewise order of their encodings, empty optional lists and maps omitted.
//! [`CredentialProvenanceRecord::from_cbor`] refuses anything else (including duplicate keys, tags,
//! floats, null and unknown keys), so decode-then-encode gives back the same bytes.
//!
//! The CDDL is `doc/record.cddl`; keys are small integers (record, EAR and policy maps) and in-toto's
//! own field names in ResourceDescriptors, so a CBOR-to-JSON view of `wprov` is a valid in-toto list.

use std::collections::BTreeMap;
use std::fmt;

use rand_core::RngCore as _;
use uuid::Uuid;

/// Records larger than this are refused before decoding (a record is a few hundred bytes; `wprov`
/// with SLSA and SBOM descriptors stays below a few KiB).
pub const MAX_RECORD_CBOR: usize = 64 * 1024;
/// Deepest CBOR nesting in a record (record → wprov → descriptor → digest is 4).
pub const MAX_CBOR_DEPTH: usize = 8;
/// Most elements in one CBOR array or map of a record.
pub const MAX_CBOR_ITEMS: usize = 1024;
/// The only record version (map key 0).
pub const RECORD_VERSION: u64 = 1;

/// What kind of credential the record is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// An agent's X.509-SVID.
    AgentX509,
    /// A workload X.509-SVID.
    X509,
    /// A workload JWT-SVID.
    Jwt,
}

impl CredentialKind {
    /// The wire name: `agent-x509`, `x509`, `jwt`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::AgentX509 => "agent-x509",
            CredentialKind::X509 => "x509",
            CredentialKind::Jwt => "jwt",
        }
    }

    /// The kind named `s`, if any.
    pub fn from_name(s: &str) -> Option<CredentialKind> {
        match s {
            "agent-x509" => Some(CredentialKind::AgentX509),
            "x509" => Some(CredentialKind::X509),
            "jwt" => Some(CredentialKind::Jwt),
            _ => None,
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The EAR the credential was issued on, summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarSummary {
    /// SHA-256 of the EAR's compact JWS (its ASCII bytes): what a relying party finds in the CMW.
    pub sha256: [u8; 32],
    /// Overall `ear_status`.
    pub status: String,
    /// `ear_verifier_id.build`.
    pub verifier: String,
    /// Every `ear_appraisal_policy_ids` entry of the EAR's submods.
    pub policy_ids: Vec<String>,
    /// Whether the EAR's key binding names this credential's key (`None`: not applicable or unknown).
    pub key_bound: Option<bool>,
}

/// What the composer knows about the attestation behind the credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EarRef {
    /// Exactly one parent agent: its EAR.
    One(EarSummary),
    /// Several candidate parent agents: the SHA-256 of each one's EAR JWS.
    Candidates(Vec<[u8; 32]>),
    /// No EAR could be tied to the credential, and why.
    Unknown { reason: String },
}

/// The raw evidence behind the EAR, by digest only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceRef {
    /// `sev-snp` or `tdx`.
    pub kind: String,
    /// SHA-256 of the raw evidence.
    pub sha256: [u8; 32],
}

/// The issuing policy (for workloads: the registration entry id and its revision).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRef {
    pub id: String,
    pub version: String,
    pub sha256: Option<[u8; 32]>,
}

/// An in-toto ResourceDescriptor (v1), the subset with string annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceDescriptor {
    pub name: Option<String>,
    pub uri: Option<String>,
    /// Algorithm (`sha256`, …) → lowercase hex.
    pub digest: BTreeMap<String, String>,
    pub media_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// One record per credential the composer shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialProvenanceRecord {
    /// UUIDv7, unique per credential (the JWT `jti`).
    pub rid: Uuid,
    pub kind: CredentialKind,
    /// The SPIFFE ID.
    pub sub: String,
    /// SHA-256 of the credential's SubjectPublicKeyInfo DER (`None` for a JWT-SVID).
    pub spki_sha256: Option<[u8; 32]>,
    /// When the composer made the record, Unix seconds.
    pub iat: i64,
    pub ear: EarRef,
    pub evidence: Option<EvidenceRef>,
    pub policy: Option<PolicyRef>,
    /// What the workload attestor proved about the workload.
    pub wprov: Vec<ResourceDescriptor>,
}

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("record is {len} bytes, more than {max}")]
    TooLarge { len: usize, max: usize },
    /// Not well-formed CBOR, or CBOR outside the subset records use.
    #[error("record CBOR at byte {offset}: {detail}")]
    Cbor { offset: usize, detail: String },
    /// Well-formed CBOR that is not in deterministic encoding.
    #[error("record CBOR at byte {offset} is not deterministic: {detail}")]
    NonCanonical { offset: usize, detail: String },
    /// Nesting deeper than [`MAX_CBOR_DEPTH`].
    #[error("record CBOR nests deeper than {max}")]
    Depth { max: usize },
    /// A field has the wrong type or value.
    #[error("record field {field}: got {got}, want {want}")]
    Field {
        field: &'static str,
        got: String,
        want: &'static str,
    },
    /// A required field is absent.
    #[error("record field {field} is missing")]
    Missing { field: &'static str },
    /// A key this version does not define.
    #[error("record {map}: unknown key {key}")]
    UnknownKey { map: &'static str, key: String },
}

impl CredentialProvenanceRecord {
    /// A fresh UUIDv7 record id at `now_unix_ms` with 74 random bits from the OS.
    pub fn new_rid(now_unix_ms: u64) -> Uuid {
        let mut random = [0u8; 10];
        rand_core::OsRng.fill_bytes(&mut random);
        Self::rid_from_parts(now_unix_ms, &random)
    }

    /// The UUIDv7 of `now_unix_ms` and the given random bits (deterministic; for tests and callers
    /// with their own randomness).
    pub fn rid_from_parts(now_unix_ms: u64, random: &[u8; 10]) -> Uuid {
        uuid::Builder::from_unix_timestamp_millis(now_unix_ms, random).into_uuid()
    }

    /// The deterministic CBOR encoding.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut m: Vec<(Item, Item)> = vec![
            (Item::Uint(0), Item::Uint(RECORD_VERSION)),
            (Item::Uint(1), Item::Bytes(self.rid.as_bytes().to_vec())),
            (Item::Uint(2), Item::Text(self.kind.as_str().into())),
            (Item::Uint(3), Item::Text(self.sub.clone())),
            (Item::Uint(5), Item::int(self.iat)),
            (Item::Uint(6), ear_item(&self.ear)),
        ];
        if let Some(spki) = &self.spki_sha256 {
            m.push((Item::Uint(4), Item::Bytes(spki.to_vec())));
        }
        if let Some(e) = &self.evidence {
            m.push((
                Item::Uint(7),
                Item::Map(vec![
                    (Item::Uint(1), Item::Text(e.kind.clone())),
                    (Item::Uint(2), Item::Bytes(e.sha256.to_vec())),
                ]),
            ));
        }
        if let Some(p) = &self.policy {
            let mut pm = vec![
                (Item::Uint(1), Item::Text(p.id.clone())),
                (Item::Uint(2), Item::Text(p.version.clone())),
            ];
            if let Some(d) = &p.sha256 {
                pm.push((Item::Uint(3), Item::Bytes(d.to_vec())));
            }
            m.push((Item::Uint(8), Item::Map(pm)));
        }
        if !self.wprov.is_empty() {
            m.push((
                Item::Uint(9),
                Item::Array(self.wprov.iter().map(rd_item).collect()),
            ));
        }
        let mut out = Vec::with_capacity(256);
        encode(&Item::Map(m), &mut out);
        out
    }

    /// Decodes a record, refusing anything [`Self::to_cbor`] would not have produced.
    ///
    /// # Errors
    /// [`RecordError`] naming the first problem.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD_CBOR {
            return Err(RecordError::TooLarge {
                len: bytes.len(),
                max: MAX_RECORD_CBOR,
            });
        }
        let mut d = Decoder { buf: bytes, pos: 0 };
        let item = d.item(0)?;
        if d.pos != bytes.len() {
            return Err(RecordError::Cbor {
                offset: d.pos,
                detail: format!("{} bytes after the record", bytes.len() - d.pos),
            });
        }
        let record = record_from_item(item)?;
        // The item-level checks make this hold; keep it as the definition of "deterministic".
        if record.to_cbor() != bytes {
            return Err(RecordError::NonCanonical {
                offset: 0,
                detail: "re-encoding differs".into(),
            });
        }
        Ok(record)
    }
}

// ---------------------------------------------------------------------------------------------
// record <-> CBOR items

fn ear_item(ear: &EarRef) -> Item {
    match ear {
        EarRef::One(s) => {
            let mut m = vec![
                (Item::Uint(1), Item::Bytes(s.sha256.to_vec())),
                (Item::Uint(2), Item::Text(s.status.clone())),
                (Item::Uint(3), Item::Text(s.verifier.clone())),
            ];
            if !s.policy_ids.is_empty() {
                m.push((
                    Item::Uint(4),
                    Item::Array(s.policy_ids.iter().cloned().map(Item::Text).collect()),
                ));
            }
            if let Some(b) = s.key_bound {
                m.push((Item::Uint(5), Item::Bool(b)));
            }
            Item::Map(m)
        }
        EarRef::Candidates(c) => Item::Array(c.iter().map(|d| Item::Bytes(d.to_vec())).collect()),
        EarRef::Unknown { reason } => Item::Text(reason.clone()),
    }
}

fn text_map(m: &BTreeMap<String, String>) -> Item {
    Item::Map(
        m.iter()
            .map(|(k, v)| (Item::Text(k.clone()), Item::Text(v.clone())))
            .collect(),
    )
}

fn rd_item(rd: &ResourceDescriptor) -> Item {
    let mut m = Vec::new();
    let mut text = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.push((Item::Text(k.into()), Item::Text(v.clone())));
        }
    };
    text("name", &rd.name);
    text("uri", &rd.uri);
    text("mediaType", &rd.media_type);
    if !rd.digest.is_empty() {
        m.push((Item::Text("digest".into()), text_map(&rd.digest)));
    }
    if !rd.annotations.is_empty() {
        m.push((Item::Text("annotations".into()), text_map(&rd.annotations)));
    }
    Item::Map(m)
}

fn field(field: &'static str, got: &Item, want: &'static str) -> RecordError {
    RecordError::Field {
        field,
        got: got.kind(),
        want,
    }
}

fn take_text(name: &'static str, item: Item) -> Result<String, RecordError> {
    match item {
        Item::Text(s) => Ok(s),
        other => Err(field(name, &other, "a text string")),
    }
}

fn take_digest(name: &'static str, item: Item) -> Result<[u8; 32], RecordError> {
    match item {
        Item::Bytes(b) => <[u8; 32]>::try_from(b.as_slice()).map_err(|_| RecordError::Field {
            field: name,
            got: format!("{} bytes", b.len()),
            want: "32 bytes (SHA-256)",
        }),
        other => Err(field(name, &other, "a byte string")),
    }
}

/// Map entries with small unsigned integer keys, in order; refuses other key types and keys > `max`.
fn int_keyed(name: &'static str, item: Item, max: u64) -> Result<BTreeMap<u64, Item>, RecordError> {
    let Item::Map(entries) = item else {
        return Err(field(name, &item, "a map"));
    };
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        match k {
            Item::Uint(n) if n <= max => {
                out.insert(n, v);
            }
            other => {
                return Err(RecordError::UnknownKey {
                    map: name,
                    key: other.describe(),
                })
            }
        }
    }
    Ok(out)
}

fn required(
    m: &mut BTreeMap<u64, Item>,
    key: u64,
    name: &'static str,
) -> Result<Item, RecordError> {
    m.remove(&key).ok_or(RecordError::Missing { field: name })
}

fn record_from_item(item: Item) -> Result<CredentialProvenanceRecord, RecordError> {
    let mut m = int_keyed("record", item, 9)?;
    match required(&mut m, 0, "version")? {
        Item::Uint(RECORD_VERSION) => {}
        other => return Err(field("version", &other, "1")),
    }
    let rid = match required(&mut m, 1, "rid")? {
        Item::Bytes(b) => {
            let bytes = <[u8; 16]>::try_from(b.as_slice()).map_err(|_| RecordError::Field {
                field: "rid",
                got: format!("{} bytes", b.len()),
                want: "16 bytes",
            })?;
            let u = Uuid::from_bytes(bytes);
            if u.get_version_num() != 7 || u.get_variant() != uuid::Variant::RFC4122 {
                return Err(RecordError::Field {
                    field: "rid",
                    got: format!("UUID version {}", u.get_version_num()),
                    want: "a UUIDv7",
                });
            }
            u
        }
        other => return Err(field("rid", &other, "a byte string")),
    };
    let kind_text = take_text("kind", required(&mut m, 2, "kind")?)?;
    let kind = CredentialKind::from_name(&kind_text).ok_or_else(|| RecordError::Field {
        field: "kind",
        got: format!("{kind_text:?}"),
        want: "agent-x509, x509 or jwt",
    })?;
    let sub = take_text("sub", required(&mut m, 3, "sub")?)?;
    let spki_sha256 = m.remove(&4).map(|i| take_digest("spki", i)).transpose()?;
    let iat = match required(&mut m, 5, "iat")? {
        Item::Uint(n) => i64::try_from(n).map_err(|_| RecordError::Field {
            field: "iat",
            got: n.to_string(),
            want: "a 64-bit signed integer",
        })?,
        Item::Nint(n) => i64::try_from(n)
            .map(|n| -1 - n)
            .map_err(|_| RecordError::Field {
                field: "iat",
                got: format!("-1-{n}"),
                want: "a 64-bit signed integer",
            })?,
        other => return Err(field("iat", &other, "an integer")),
    };
    let ear = ear_from_item(required(&mut m, 6, "ear")?)?;
    let evidence = m
        .remove(&7)
        .map(|i| {
            let mut e = int_keyed("evidence", i, 2)?;
            Ok::<_, RecordError>(EvidenceRef {
                kind: take_text("evidence.kind", required(&mut e, 1, "evidence.kind")?)?,
                sha256: take_digest("evidence.sha256", required(&mut e, 2, "evidence.sha256")?)?,
            })
        })
        .transpose()?;
    let policy = m
        .remove(&8)
        .map(|i| {
            let mut p = int_keyed("policy", i, 3)?;
            Ok::<_, RecordError>(PolicyRef {
                id: take_text("policy.id", required(&mut p, 1, "policy.id")?)?,
                version: take_text("policy.version", required(&mut p, 2, "policy.version")?)?,
                sha256: p
                    .remove(&3)
                    .map(|d| take_digest("policy.sha256", d))
                    .transpose()?,
            })
        })
        .transpose()?;
    let wprov = match m.remove(&9) {
        None => Vec::new(),
        Some(Item::Array(items)) if !items.is_empty() => items
            .into_iter()
            .map(rd_from_item)
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(field("wprov", &other, "a non-empty array")),
    };
    Ok(CredentialProvenanceRecord {
        rid,
        kind,
        sub,
        spki_sha256,
        iat,
        ear,
        evidence,
        policy,
        wprov,
    })
}

fn ear_from_item(item: Item) -> Result<EarRef, RecordError> {
    match item {
        Item::Text(reason) => Ok(EarRef::Unknown { reason }),
        Item::Array(items) => Ok(EarRef::Candidates(
            items
                .into_iter()
                .map(|i| take_digest("ear.candidates", i))
                .collect::<Result<_, _>>()?,
        )),
        map @ Item::Map(_) => {
            let mut m = int_keyed("ear", map, 5)?;
            let policy_ids = match m.remove(&4) {
                None => Vec::new(),
                Some(Item::Array(ids)) if !ids.is_empty() => ids
                    .into_iter()
                    .map(|i| take_text("ear.policy_ids", i))
                    .collect::<Result<_, _>>()?,
                Some(other) => return Err(field("ear.policy_ids", &other, "a non-empty array")),
            };
            let key_bound = match m.remove(&5) {
                None => None,
                Some(Item::Bool(b)) => Some(b),
                Some(other) => return Err(field("ear.key_bound", &other, "a boolean")),
            };
            Ok(EarRef::One(EarSummary {
                sha256: take_digest("ear.sha256", required(&mut m, 1, "ear.sha256")?)?,
                status: take_text("ear.status", required(&mut m, 2, "ear.status")?)?,
                verifier: take_text("ear.verifier", required(&mut m, 3, "ear.verifier")?)?,
                policy_ids,
                key_bound,
            }))
        }
        other => Err(field("ear", &other, "a map, an array or a text string")),
    }
}

fn text_map_from(name: &'static str, item: Item) -> Result<BTreeMap<String, String>, RecordError> {
    let Item::Map(entries) = item else {
        return Err(field(name, &item, "a map"));
    };
    if entries.is_empty() {
        return Err(field(name, &Item::Map(entries), "a non-empty map"));
    }
    entries
        .into_iter()
        .map(|(k, v)| Ok((take_text(name, k)?, take_text(name, v)?)))
        .collect()
}

fn rd_from_item(item: Item) -> Result<ResourceDescriptor, RecordError> {
    let Item::Map(entries) = item else {
        return Err(field("wprov[]", &item, "a map"));
    };
    let mut rd = ResourceDescriptor::default();
    for (k, v) in entries {
        let key = match k {
            Item::Text(k) => k,
            other => {
                return Err(RecordError::UnknownKey {
                    map: "wprov[]",
                    key: other.describe(),
                })
            }
        };
        match key.as_str() {
            "name" => rd.name = Some(take_text("wprov[].name", v)?),
            "uri" => rd.uri = Some(take_text("wprov[].uri", v)?),
            "mediaType" => rd.media_type = Some(take_text("wprov[].mediaType", v)?),
            "digest" => rd.digest = text_map_from("wprov[].digest", v)?,
            "annotations" => rd.annotations = text_map_from("wprov[].annotations", v)?,
            _ => {
                return Err(RecordError::UnknownKey {
                    map: "wprov[]",
                    key: format!("{:?}", key.chars().take(64).collect::<String>()),
                })
            }
        }
    }
    Ok(rd)
}

// ---------------------------------------------------------------------------------------------
// The CBOR subset, deterministic by construction (encode) and by refusal (decode).

/// A CBOR data item of the subset records use: no tags, floats, null or undefined.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Uint(u64),
    /// The negative integer `-1 - n`.
    Nint(u64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Item>),
    Map(Vec<(Item, Item)>),
    Bool(bool),
}

impl Item {
    fn int(v: i64) -> Item {
        if v >= 0 {
            Item::Uint(v.unsigned_abs())
        } else {
            // -1 - n = v  =>  n = -1 - v = |v| - 1, never overflows for i64::MIN.
            Item::Nint(v.unsigned_abs() - 1)
        }
    }

    fn kind(&self) -> String {
        match self {
            Item::Uint(_) | Item::Nint(_) => "an integer",
            Item::Bytes(_) => "a byte string",
            Item::Text(_) => "a text string",
            Item::Array(_) => "an array",
            Item::Map(_) => "a map",
            Item::Bool(_) => "a boolean",
        }
        .to_owned()
    }

    fn describe(&self) -> String {
        match self {
            Item::Uint(n) => n.to_string(),
            Item::Nint(n) => format!("-1-{n}"),
            Item::Text(s) => format!("{:?}", s.chars().take(64).collect::<String>()),
            other => other.kind(),
        }
    }
}

fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if let Ok(b) = u8::try_from(n) {
        out.extend_from_slice(&[m | 24, b]);
    } else if let Ok(s) = u16::try_from(n) {
        out.push(m | 25);
        out.extend_from_slice(&s.to_be_bytes());
    } else if let Ok(w) = u32::try_from(n) {
        out.push(m | 26);
        out.extend_from_slice(&w.to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode(item: &Item, out: &mut Vec<u8>) {
    match item {
        Item::Uint(n) => head(0, *n, out),
        Item::Nint(n) => head(1, *n, out),
        Item::Bytes(b) => {
            head(2, b.len() as u64, out);
            out.extend_from_slice(b);
        }
        Item::Text(s) => {
            head(3, s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Item::Array(items) => {
            head(4, items.len() as u64, out);
            for i in items {
                encode(i, out);
            }
        }
        Item::Map(entries) => {
            // RFC 8949 §4.2.1: keys sorted by the bytewise lexicographic order of their encodings.
            let mut encoded: Vec<(Vec<u8>, &Item)> = entries
                .iter()
                .map(|(k, v)| {
                    let mut kb = Vec::new();
                    encode(k, &mut kb);
                    (kb, v)
                })
                .collect();
            encoded.sort_by(|a, b| a.0.cmp(&b.0));
            encoded.dedup_by(|a, b| a.0 == b.0);
            head(5, encoded.len() as u64, out);
            for (k, v) in encoded {
                out.extend_from_slice(&k);
                encode(v, out);
            }
        }
        Item::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
    }
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn err(&self, at: usize, detail: impl Into<String>) -> RecordError {
        RecordError::Cbor {
            offset: at,
            detail: detail.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.err(self.pos, format!("{n} bytes needed, input ends")))?;
        let s = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(s)
    }

    /// Reads a head: (major type, argument). Refuses indefinite lengths and non-shortest arguments.
    fn head(&mut self) -> Result<(u8, u64, u8), RecordError> {
        let at = self.pos;
        let first = *self.take(1)?.first().unwrap_or(&0);
        let major = first >> 5;
        let info = first & 0x1f;
        let (n, min) = match info {
            0..=23 => (u64::from(info), 0),
            24 => (u64::from(self.byte()?), 24),
            25 => (u64::from(u16::from_be_bytes(self.array::<2>()?)), 0x100),
            26 => (u64::from(u32::from_be_bytes(self.array::<4>()?)), 0x1_0000),
            27 => (u64::from_be_bytes(self.array::<8>()?), 0x1_0000_0000),
            31 => {
                return Err(RecordError::NonCanonical {
                    offset: at,
                    detail: "indefinite length".into(),
                })
            }
            _ => return Err(self.err(at, format!("reserved additional information {info}"))),
        };
        // Major type 7 arguments are simple values and floats, refused by `item`.
        if n < min && major != 7 {
            return Err(RecordError::NonCanonical {
                offset: at,
                detail: format!("argument {n} not in its shortest form"),
            });
        }
        Ok((major, n, info))
    }

    fn byte(&mut self) -> Result<u8, RecordError> {
        Ok(*self.take(1)?.first().unwrap_or(&0))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let s = self.take(N)?;
        <[u8; N]>::try_from(s).map_err(|_| self.err(self.pos, "short read"))
    }

    fn len(&self, at: usize, n: u64, min_item_size: u64) -> Result<usize, RecordError> {
        let remaining = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item_size) > remaining {
            return Err(self.err(at, format!("length {n} exceeds the input")));
        }
        usize::try_from(n).map_err(|_| self.err(at, "length too large"))
    }

    fn item(&mut self, depth: usize) -> Result<Item, RecordError> {
        if depth > MAX_CBOR_DEPTH {
            return Err(RecordError::Depth {
                max: MAX_CBOR_DEPTH,
            });
        }
        let at = self.pos;
        let (major, n, info) = self.head()?;
        match major {
            0 => Ok(Item::Uint(n)),
            1 => Ok(Item::Nint(n)),
            2 => {
                let len = self.len(at, n, 1)?;
                Ok(Item::Bytes(self.take(len)?.to_vec()))
            }
            3 => {
                let len = self.len(at, n, 1)?;
                let b = self.take(len)?;
                std::str::from_utf8(b)
                    .map(|s| Item::Text(s.to_owned()))
                    .map_err(|_| self.err(at, "text string is not UTF-8"))
            }
            4 => {
                let len = self.len(at, n, 1)?;
                if len > MAX_CBOR_ITEMS {
                    return Err(self.err(at, format!("array of {len} items")));
                }
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Item::Array(items))
            }
            5 => {
                let len = self.len(at, n, 2)?;
                if len > MAX_CBOR_ITEMS {
                    return Err(self.err(at, format!("map of {len} entries")));
                }
                let mut entries = Vec::with_capacity(len);
                let mut prev: Option<&'a [u8]> = None;
                for _ in 0..len {
                    let kstart = self.pos;
                    let k = self.item(depth + 1)?;
                    let kbytes = self.buf.get(kstart..self.pos).unwrap_or_default();
                    if let Some(p) = prev {
                        match p.cmp(kbytes) {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => {
                                return Err(
                                    self.err(kstart, format!("duplicate key {}", k.describe()))
                                )
                            }
                            std::cmp::Ordering::Greater => {
                                return Err(RecordError::NonCanonical {
                                    offset: kstart,
                                    detail: format!("map key {} out of order", k.describe()),
                                })
                            }
                        }
                    }
                    prev = Some(kbytes);
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                Ok(Item::Map(entries))
            }
            6 => Err(self.err(at, format!("tag {n} (records use no tags)"))),
            _ => match info {
                20 => Ok(Item::Bool(false)),
                21 => Ok(Item::Bool(true)),
                _ => Err(self.err(at, format!("simple value or float (0x{:02x})", 0xe0 | info))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn sample() -> CredentialProvenanceRecord {
        CredentialProvenanceRecord {
            rid: CredentialProvenanceRecord::rid_from_parts(1_760_000_000_123, &[7; 10]),
            kind: CredentialKind::X509,
            sub: "spiffe://example.org/workload".into(),
            spki_sha256: Some([1; 32]),
            iat: 1_760_000_000,
            ear: EarRef::One(EarSummary {
                sha256: [2; 32],
                status: "affirming".into(),
                verifier: "twi-server-nodeattestor@0.1.0".into(),
                policy_ids: vec!["tag:twi-spire.dev,2026:policy/p/1?sha256=00".into()],
                key_bound: Some(true),
            }),
            evidence: Some(EvidenceRef {
                kind: "sev-snp".into(),
                sha256: [3; 32],
            }),
            policy: Some(PolicyRef {
                id: "entry-1".into(),
                version: "4".into(),
                sha256: Some([4; 32]),
            }),
            wprov: vec![ResourceDescriptor {
                name: Some("app".into()),
                uri: None,
                digest: [("sha256".to_owned(), "ab".repeat(32))].into(),
                media_type: None,
                annotations: [("builder".to_owned(), "https://ci".to_owned())].into(),
            }],
        }
    }

    #[test]
    fn round_trip_and_reencode_identical() {
        for ear in [
            sample().ear,
            EarRef::Candidates(vec![[9; 32], [8; 32]]),
            EarRef::Candidates(vec![]),
            EarRef::Unknown {
                reason: "no parent agent".into(),
            },
        ] {
            let mut r = sample();
            r.ear = ear;
            let bytes = r.to_cbor();
            let back = CredentialProvenanceRecord::from_cbor(&bytes).unwrap();
            assert_eq!(back, r);
            assert_eq!(back.to_cbor(), bytes);
        }
        let mut minimal = sample();
        minimal.spki_sha256 = None;
        minimal.evidence = None;
        minimal.policy = None;
        minimal.wprov.clear();
        minimal.iat = -5;
        minimal.kind = CredentialKind::Jwt;
        let bytes = minimal.to_cbor();
        assert_eq!(
            CredentialProvenanceRecord::from_cbor(&bytes).unwrap(),
            minimal
        );
    }

    #[test]
    fn keys_sorted_bytewise() {
        // The wprov descriptor's keys: "uri"/"name" (3/4 chars) sort before "digest" and
        // "annotations" because the length is in the head byte.
        let bytes = sample().to_cbor();
        let name = bytes.windows(5).position(|w| w == b"\x64name").unwrap();
        let digest = bytes.windows(7).position(|w| w == b"\x66digest").unwrap();
        let ann = bytes
            .windows(12)
            .position(|w| w == b"\x6bannotations")
            .unwrap();
        assert!(name < digest && digest < ann);
        // Top-level map starts with 0 => 1 (version) then 1 => rid.
        assert_eq!(&bytes[1..3], &[0x00, 0x01]);
        assert_eq!(bytes[3], 0x01);
    }

    #[test]
    fn uuid_v7() {
        let rid = CredentialProvenanceRecord::new_rid(1_760_000_000_123);
        assert_eq!(rid.get_version_num(), 7);
        let other = CredentialProvenanceRecord::new_rid(1_760_000_000_123);
        assert_ne!(rid, other);
        let (secs, _) = rid.get_timestamp().unwrap().to_unix();
        assert_eq!(secs, 1_760_000_000);
    }

    fn refuse(bytes: &[u8]) -> RecordError {
        CredentialProvenanceRecord::from_cbor(bytes).unwrap_err()
    }

    #[test]
    fn refuses_non_canonical() {
        let good = sample().to_cbor();
        // Version as a 2-byte head (0x18 0x01) instead of 0x01.
        let mut long_int = good.clone();
        long_int.splice(2..3, [0x18, 0x01]);
        assert!(matches!(
            refuse(&long_int),
            RecordError::NonCanonical { .. }
        ));
        // Indefinite-length map head.
        let mut indefinite = good.clone();
        indefinite[0] = 0xbf;
        assert!(matches!(
            refuse(&indefinite),
            RecordError::NonCanonical { .. }
        ));
        // Keys 0 and 1 swapped: {1: rid, 0: 1, ...}.
        let mut swapped = vec![good[0]];
        let rid_entry = &good[3..3 + 2 + 16];
        swapped.extend_from_slice(rid_entry);
        swapped.extend_from_slice(&good[1..3]);
        swapped.extend_from_slice(&good[3 + 18..]);
        assert_eq!(swapped.len(), good.len());
        assert!(matches!(refuse(&swapped), RecordError::NonCanonical { .. }));
        // Duplicate key: version twice (map count +1).
        let mut dup = vec![good[0] + 1, 0x00, 0x01];
        dup.extend_from_slice(&good[1..]);
        assert!(matches!(refuse(&dup), RecordError::Cbor { .. }));
        // Trailing byte.
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(refuse(&trailing), RecordError::Cbor { .. }));
        // Truncated.
        assert!(matches!(
            refuse(&good[..good.len() - 1]),
            RecordError::Cbor { .. }
        ));
        assert!(refuse(&[0x19, 0x01]).to_string().contains("input ends"));
        // Tagged.
        let mut tagged = vec![0xd8, 0x18];
        tagged.extend_from_slice(&good);
        assert!(matches!(refuse(&tagged), RecordError::Cbor { .. }));
    }

    #[test]
    fn refuses_wrong_fields() {
        let mut r = sample();
        r.rid = Uuid::from_bytes([0x11; 16]);
        assert!(matches!(
            refuse(&r.to_cbor()),
            RecordError::Field { field: "rid", .. }
        ));
        let mut items = Vec::new();
        encode(
            &Item::Map(vec![
                (Item::Uint(0), Item::Uint(1)),
                (Item::Uint(10), Item::Uint(1)),
            ]),
            &mut items,
        );
        assert!(matches!(refuse(&items), RecordError::UnknownKey { .. }));
        let mut v2 = Vec::new();
        encode(&Item::Map(vec![(Item::Uint(0), Item::Uint(2))]), &mut v2);
        assert!(matches!(
            refuse(&v2),
            RecordError::Field {
                field: "version",
                ..
            }
        ));
        let mut missing = Vec::new();
        encode(
            &Item::Map(vec![(Item::Uint(0), Item::Uint(1))]),
            &mut missing,
        );
        assert!(matches!(
            refuse(&missing),
            RecordError::Missing { field: "rid" }
        ));
        // An empty wprov array would re-encode without key 9: refused.
        let mut r = sample();
        r.wprov.clear();
        let mut item = Decoder {
            buf: &r.to_cbor(),
            pos: 0,
        }
        .item(0)
        .unwrap();
        if let Item::Map(m) = &mut item {
            m.push((Item::Uint(9), Item::Array(vec![])));
        }
        let mut bytes = Vec::new();
        encode(&item, &mut bytes);
        assert!(matches!(
            refuse(&bytes),
            RecordError::Field { field: "wprov", .. }
        ));
    }

    #[test]
    fn bounded() {
        assert!(matches!(
            refuse(&vec![0u8; MAX_RECORD_CBOR + 1]),
            RecordError::TooLarge { .. }
        ));
        // A claimed 2^32-byte string in a short input is refused before allocating.
        assert!(refuse(&[0x5a, 0xff, 0xff, 0xff, 0xff, 0x00])
            .to_string()
            .contains("exceeds"));
        // Deep nesting.
        let deep = [[0x81u8; 20].as_slice(), &[0x00]].concat();
        assert!(matches!(refuse(&deep), RecordError::Depth { .. }));
        // Floats, null.
        assert!(matches!(refuse(&[0xf6]), RecordError::Cbor { .. }));
        assert!(matches!(refuse(&[0xf9, 0, 0]), RecordError::Cbor { .. }));
    }
}

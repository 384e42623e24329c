//! The claims the composer adds to a JWT-SVID (credential-extensions.md §4): `cmw` (the same CMW as
//! the X.509 extension, JSON form), `jti` = the record id, and [`CPROV_CLAIM`], a reference to the
//! record's log entry. `sub`, `aud`, `exp` and the header are SPIRE's and are never touched.
//!
//! References rather than the statement and proof: a JWT travels in every request header, so it
//! stays small; a relying party fetches the entry from the log by index and checks its leaf hash.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::cmw::{Cmw, CmwError};

/// Collision-resistant name (RFC 7519 §4.2) of the provenance reference claim.
pub const CPROV_CLAIM: &str = "https://github.com/twi-spire/twi-spire/cprov";
/// The CMW claim (draft-ietf-rats-msg-wrap, JWT claim `cmw`).
pub const CMW_CLAIM: &str = "cmw";
/// The JWT ID claim, carrying the record id.
pub const JTI_CLAIM: &str = "jti";
/// Longest log origin accepted in a reference.
const MAX_ORIGIN: usize = 1024;

/// Where the credential's record is in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CprovRef {
    /// The log's checkpoint origin.
    pub log: String,
    /// The entry's index.
    pub idx: u64,
    /// RFC 6962 leaf hash of the entry (the statement bytes): `SHA-256(0x00 || statement)`.
    pub leaf: [u8; 32],
}

impl CprovRef {
    /// The reference to `statement` logged at `idx` in the log named `origin`.
    pub fn for_statement(origin: &str, idx: u64, statement: &[u8]) -> CprovRef {
        CprovRef {
            log: origin.to_owned(),
            idx,
            leaf: crate::tlog::leaf_hash(statement).0,
        }
    }

    /// The claim value `{log, idx, leaf: base64url(leaf hash)}`.
    pub fn to_json_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("log".into(), Value::String(self.log.clone()));
        m.insert("idx".into(), Value::from(self.idx));
        m.insert("leaf".into(), Value::String(B64URL.encode(self.leaf)));
        Value::Object(m)
    }

    /// Parses the claim value; unknown members are refused.
    ///
    /// # Errors
    /// [`JwtClaimsError::Cprov`].
    pub fn from_json_value(v: &Value) -> Result<CprovRef, JwtClaimsError> {
        let bad = |detail: String| JwtClaimsError::Cprov { detail };
        let Value::Object(m) = v else {
            return Err(bad("not an object".into()));
        };
        if let Some(k) = m
            .keys()
            .find(|k| !matches!(k.as_str(), "log" | "idx" | "leaf"))
        {
            let k: String = k.chars().take(64).collect();
            return Err(bad(format!("unknown member {k:?}")));
        }
        let log = match m.get("log") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ORIGIN => s.clone(),
            _ => return Err(bad("log must be a non-empty origin string".into())),
        };
        let idx = m
            .get("idx")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("idx must be an unsigned integer".into()))?;
        let leaf = m
            .get("leaf")
            .and_then(Value::as_str)
            .and_then(|s| B64URL.decode(s.as_bytes()).ok())
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| bad("leaf must be 32 bytes in base64url without padding".into()))?;
        Ok(CprovRef { log, idx, leaf })
    }
}

/// Why the TWI claims of a JWT-SVID were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtClaimsError {
    #[error("claim {claim} is missing")]
    Missing { claim: &'static str },
    #[error("jti {got:?} is not a hyphenated UUIDv7")]
    Jti { got: String },
    #[error("claim cmw: {0}")]
    Cmw(#[from] CmwError),
    #[error("claim {CPROV_CLAIM}: {detail}")]
    Cprov { detail: String },
}

/// Adds `cmw` (when given), `jti` and [`CPROV_CLAIM`] to a JWT-SVID's claims (replacing any earlier
/// values of those three); every other claim is left as it is.
pub fn add_claims(
    claims: &mut Map<String, Value>,
    cmw: Option<&Cmw>,
    rid: &Uuid,
    cprov: &CprovRef,
) {
    if let Some(cmw) = cmw {
        claims.insert(CMW_CLAIM.into(), cmw.to_json_value());
    }
    claims.insert(
        JTI_CLAIM.into(),
        Value::String(rid.hyphenated().to_string()),
    );
    claims.insert(CPROV_CLAIM.into(), cprov.to_json_value());
}

/// Reads the TWI claims back: the CMW if present, the record id from `jti`, and the log reference.
///
/// # Errors
/// [`JwtClaimsError::Missing`] for `jti` or the reference, [`JwtClaimsError::Jti`] when `jti` is not
/// a lowercase hyphenated UUIDv7, [`JwtClaimsError::Cmw`], [`JwtClaimsError::Cprov`].
pub fn read_claims(
    claims: &Map<String, Value>,
) -> Result<(Option<Cmw>, Uuid, CprovRef), JwtClaimsError> {
    let jti = claims
        .get(JTI_CLAIM)
        .ok_or(JwtClaimsError::Missing { claim: JTI_CLAIM })?;
    let jti_text = jti.as_str().unwrap_or_default();
    let rid = Uuid::try_parse(jti_text)
        .ok()
        .filter(|u| u.get_version_num() == 7 && u.hyphenated().to_string() == jti_text)
        .ok_or_else(|| JwtClaimsError::Jti {
            got: jti.to_string().chars().take(80).collect(),
        })?;
    let cprov = claims
        .get(CPROV_CLAIM)
        .ok_or(JwtClaimsError::Missing { claim: CPROV_CLAIM })
        .and_then(CprovRef::from_json_value)?;
    let cmw = claims
        .get(CMW_CLAIM)
        .map(Cmw::from_json_value)
        .transpose()?;
    Ok((cmw, rid, cprov))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::record::CredentialProvenanceRecord;

    #[test]
    fn add_and_read() {
        let mut claims = Map::new();
        claims.insert("sub".into(), "spiffe://example.org/w".into());
        claims.insert("aud".into(), serde_json::json!(["a"]));
        claims.insert("exp".into(), 1_760_000_000.into());
        let before = claims.clone();
        let rid = CredentialProvenanceRecord::rid_from_parts(1_760_000_000_000, &[1; 10]);
        let cprov = CprovRef::for_statement("example.org/log", 7, b"statement");
        let cmw = Cmw::ear("a.b.c");
        add_claims(&mut claims, Some(&cmw), &rid, &cprov);
        for k in ["sub", "aud", "exp"] {
            assert_eq!(claims[k], before[k]);
        }
        assert_eq!(claims["jti"], rid.hyphenated().to_string());
        assert_eq!(claims[CPROV_CLAIM]["idx"], 7);
        let (c, r, p) = read_claims(&claims).unwrap();
        assert_eq!((c, r, p), (Some(cmw), rid, cprov.clone()));
        assert_eq!(cprov.leaf, crate::tlog::leaf_hash(b"statement").0);

        let mut no_cmw = Map::new();
        add_claims(&mut no_cmw, None, &rid, &cprov);
        assert!(read_claims(&no_cmw).unwrap().0.is_none());
    }

    #[test]
    fn refuses() {
        let rid = CredentialProvenanceRecord::rid_from_parts(1, &[1; 10]);
        let cprov = CprovRef::for_statement("o", 0, b"s");
        let mut claims = Map::new();
        add_claims(&mut claims, None, &rid, &cprov);
        let mut c = claims.clone();
        c.insert("jti".into(), rid.simple().to_string().into());
        assert!(matches!(read_claims(&c), Err(JwtClaimsError::Jti { .. })));
        let mut c = claims.clone();
        c.insert("jti".into(), Uuid::from_bytes([0; 16]).to_string().into());
        assert!(matches!(read_claims(&c), Err(JwtClaimsError::Jti { .. })));
        let mut c = claims.clone();
        c.remove(CPROV_CLAIM);
        assert!(matches!(
            read_claims(&c),
            Err(JwtClaimsError::Missing { .. })
        ));
        let mut c = claims.clone();
        c[CPROV_CLAIM]["extra"] = 1.into();
        assert!(matches!(read_claims(&c), Err(JwtClaimsError::Cprov { .. })));
        let mut c = claims.clone();
        c[CPROV_CLAIM]["leaf"] = "AAAA".into();
        assert!(matches!(read_claims(&c), Err(JwtClaimsError::Cprov { .. })));
        let mut c = claims;
        c.insert("cmw".into(), serde_json::json!({}));
        assert!(matches!(read_claims(&c), Err(JwtClaimsError::Cmw(_))));
    }
}

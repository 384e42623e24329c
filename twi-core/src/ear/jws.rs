//! EAR as a JWT: compact JWS (RFC 7515) with ES256 (RFC 7518 section 3.4: r || s, 64 bytes).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::Signature;
use serde::{Deserialize, Serialize};

use super::claims::Ear;
use super::key::{Jwks, VerifierKey, ALG};
use super::Error;

/// JWS `typ` we set: the EAT media type `application/eat+jwt` without its `application/` prefix
/// (RFC 7515 section 4.1.9), so an EAR cannot be mistaken for another kind of JWT.
pub const TYP: &str = "eat+jwt";

/// Compact JWS longer than this is refused before decoding (an EAR is about 1 KiB).
pub const MAX_JWS_LEN: usize = 64 * 1024;

/// An EAR's `iat` may be at most this far ahead of the relying party's clock.
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    /// Extensions the recipient must understand (RFC 7515 section 4.1.11); we understand none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crit: Option<serde_json::Value>,
}

/// Signs `ear` as a compact JWS with `key` (ES256, `kid` = the key's thumbprint).
///
/// # Errors
/// [`Error::Claims`]/[`Error::Profile`] when the EAR breaks [`Ear::check_structure`] (we never
/// sign what a relying party would refuse), [`Error::Encode`] if serialisation fails.
pub fn sign(ear: &Ear, key: &VerifierKey) -> Result<String, Error> {
    ear.check_structure()?;
    let header = Header {
        alg: ALG.into(),
        kid: Some(key.kid().to_owned()),
        typ: Some(TYP.into()),
        crit: None,
    };
    let signing_input = format!("{}.{}", b64_json(&header)?, b64_json(ear)?);
    let sig: Signature = key.signing_key().sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", B64URL.encode(sig.to_bytes())))
}

/// Verifies a compact JWS EAR against `jwks` at `now` (Unix seconds) and returns its claims.
///
/// Checks, in order: size and shape, header (`alg` ES256, no `crit`, `typ` absent or an EAT/JWT
/// type, `kid` present and in `jwks`), the signature, the claims' structure (profile
/// [`super::EAR_PROFILE`], submods, status consistency), `iat` not after `now` (+ skew) and `now`
/// before `exp`. It does not require the EAR to be affirming: that is the relying party's policy.
///
/// # Errors
/// The first check that failed, as an [`Error`] variant naming it.
pub fn verify(jws: &str, jwks: &Jwks, now: i64) -> Result<Ear, Error> {
    let jws = jws.trim();
    if jws.len() > MAX_JWS_LEN {
        return Err(malformed(
            "jws",
            format!("{} bytes, more than {MAX_JWS_LEN}", jws.len()),
        ));
    }
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("jws", "not three dot-separated parts".into()));
    };
    let header: Header = serde_json::from_slice(&b64(h, "header")?)
        .map_err(|e| malformed("header", e.to_string()))?;
    if header.alg != ALG {
        return Err(Error::Algorithm { got: header.alg });
    }
    if header.crit.is_some() {
        return Err(malformed(
            "header",
            "crit is present; no extension is supported".into(),
        ));
    }
    if let Some(typ) = &header.typ {
        let t = typ.to_ascii_lowercase();
        if !matches!(t.as_str(), "eat+jwt" | "application/eat+jwt" | "jwt") {
            return Err(malformed(
                "header",
                format!("typ {typ:?} is not an EAT JWT"),
            ));
        }
    }
    let kid = header
        .kid
        .ok_or_else(|| malformed("header", "kid missing".into()))?;
    let key = jwks.find(&kid)?.verifying_key()?;
    let sig_bytes = b64(s, "signature")?;
    let sig = Signature::from_slice(&sig_bytes).map_err(|_| {
        malformed(
            "signature",
            format!("{} bytes, want 64 (r || s)", sig_bytes.len()),
        )
    })?;
    let signing_input_len = h.len() + 1 + p.len();
    let signing_input = jws.get(..signing_input_len).unwrap_or_default();
    key.verify(signing_input.as_bytes(), &sig)
        .map_err(|_| Error::Signature { kid: kid.clone() })?;

    let ear: Ear = serde_json::from_slice(&b64(p, "payload")?)
        .map_err(|e| malformed("payload", e.to_string()))?;
    ear.check_structure()?;
    if ear.iat > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(Error::NotYetValid { iat: ear.iat, now });
    }
    if now >= ear.exp {
        return Err(Error::Expired { exp: ear.exp, now });
    }
    Ok(ear)
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, Error> {
    B64URL
        .decode(part.as_bytes())
        .map_err(|e| malformed(what, format!("not base64url without padding: {e}")))
}

fn malformed(part: &'static str, detail: String) -> Error {
    Error::Malformed { part, detail }
}

fn b64_json<T: Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_vec(v)
        .map(|b| B64URL.encode(b))
        .map_err(|e| Error::Encode {
            detail: e.to_string(),
        })
}

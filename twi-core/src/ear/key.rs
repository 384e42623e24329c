//! The verifier's own ES256 signing key and the JWKS relying parties check EARs with.
//!
//! The key is the Verifier's, not SPIRE's: an EAR must stay verifiable when detached from the
//! certificate that carries it, and the SPIRE CA key must never sign anything but SPIRE's credentials.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::{FromEncodedPoint as _, ToEncodedPoint as _};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use p256::{EncodedPoint, PublicKey, SecretKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Error;

/// The only JWS algorithm we sign with and accept.
pub const ALG: &str = "ES256";

/// Key files larger than this are refused unread (a P-256 PKCS#8 PEM is about 240 bytes).
const MAX_KEY_FILE: u64 = 16 * 1024;

/// A P-256 public key as a JWK (RFC 7517/7518), with our `kid`, `alg` and `use`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    fn from_public(key: &PublicKey) -> Jwk {
        let point = key.to_encoded_point(false);
        let coord = |c: Option<&p256::FieldBytes>| c.map(|b| B64URL.encode(b));
        let mut jwk = Jwk {
            kty: "EC".into(),
            crv: Some("P-256".into()),
            x: coord(point.x()),
            y: coord(point.y()),
            kid: None,
            alg: Some(ALG.into()),
            use_: Some("sig".into()),
        };
        jwk.kid = jwk.thumbprint().ok();
        jwk
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): the hash of the required members in
    /// lexicographic order without whitespace, so any party derives the same `kid` from the key.
    ///
    /// # Errors
    /// [`Error::Jwk`] if this is not a P-256 EC key with both coordinates.
    pub fn thumbprint(&self) -> Result<String, Error> {
        let (x, y) = self.p256_coordinates()?;
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            B64URL.encode(x),
            B64URL.encode(y)
        );
        Ok(B64URL.encode(Sha256::digest(canonical.as_bytes())))
    }

    fn p256_coordinates(&self) -> Result<([u8; 32], [u8; 32]), Error> {
        if self.kty != "EC" || self.crv.as_deref() != Some("P-256") {
            return Err(Error::Jwk {
                kid: self.kid.clone(),
                detail: format!(
                    "kty {:?} crv {:?}, want EC P-256",
                    self.kty,
                    self.crv.as_deref().unwrap_or("-")
                ),
            });
        }
        let coord = |name: &str, v: &Option<String>| -> Result<[u8; 32], Error> {
            let bytes = v
                .as_deref()
                .map(|s| B64URL.decode(s.as_bytes()))
                .transpose()
                .map_err(|e| self.bad(format!("{name}: {e}")))?
                .ok_or_else(|| self.bad(format!("{name} missing")))?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| self.bad(format!("{name} is {} bytes, want 32", bytes.len())))
        };
        Ok((coord("x", &self.x)?, coord("y", &self.y)?))
    }

    fn bad(&self, detail: String) -> Error {
        Error::Jwk {
            kid: self.kid.clone(),
            detail,
        }
    }

    /// The ECDSA key, after checking the point is on the curve.
    ///
    /// # Errors
    /// [`Error::Jwk`] for another key type, bad coordinates or an `alg` other than ES256.
    pub fn verifying_key(&self) -> Result<VerifyingKey, Error> {
        if let Some(alg) = self.alg.as_deref() {
            if alg != ALG {
                return Err(self.bad(format!("alg {alg:?}, want {ALG}")));
            }
        }
        let (x, y) = self.p256_coordinates()?;
        let point = EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        Option::<PublicKey>::from(PublicKey::from_encoded_point(&point))
            .map(VerifyingKey::from)
            .ok_or_else(|| self.bad("point is not on P-256".into()))
    }
}

/// A JWK Set: what relying parties are given to check our EARs (several keys during a rotation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWKS document.
    ///
    /// # Errors
    /// [`Error::Jwks`] if it is not a JSON object with a `keys` array of JWKs.
    pub fn from_json(json: &[u8]) -> Result<Jwks, Error> {
        serde_json::from_slice(json).map_err(|e| Error::Jwks {
            detail: e.to_string(),
        })
    }

    /// The JWKS document, pretty-printed (it is meant to be published and read).
    pub fn to_json(&self) -> String {
        // A struct of strings always serialises; the fallback is never taken.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The key whose `kid` is `kid`.
    ///
    /// # Errors
    /// [`Error::UnknownKid`].
    pub fn find(&self, kid: &str) -> Result<&Jwk, Error> {
        self.keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or_else(|| Error::UnknownKid {
                kid: kid.to_owned(),
                known: self.keys.iter().filter_map(|k| k.kid.clone()).collect(),
            })
    }
}

/// Whether [`VerifierKey::load_or_generate`] found a key or made one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    Loaded,
    Generated,
}

/// The verifier's ES256 signing key. `Debug` shows only the `kid`.
#[derive(Clone)]
pub struct VerifierKey {
    signing: SigningKey,
    kid: String,
}

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl VerifierKey {
    fn from_secret(secret: &SecretKey) -> Result<VerifierKey, Error> {
        let jwk = Jwk::from_public(&secret.public_key());
        let kid = jwk.thumbprint()?;
        Ok(VerifierKey {
            signing: SigningKey::from(secret),
            kid,
        })
    }

    /// A fresh key from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> VerifierKey {
        let secret = SecretKey::random(rng);
        // A key we just made always has both coordinates; thumbprint cannot fail on it.
        let jwk = Jwk::from_public(&secret.public_key());
        VerifierKey {
            signing: SigningKey::from(&secret),
            kid: jwk.kid.unwrap_or_default(),
        }
    }

    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) P-256 key.
    ///
    /// # Errors
    /// [`Error::Key`] (the message never contains key material).
    pub fn from_pkcs8_pem(pem: &str) -> Result<VerifierKey, Error> {
        let secret = SecretKey::from_pkcs8_pem(pem).map_err(|e| Error::Key {
            path: None,
            detail: format!("not a PKCS#8 PEM P-256 private key: {e}"),
        })?;
        VerifierKey::from_secret(&secret)
    }

    /// Loads the key at `path`. Like ssh, refuses a key file that group or others may access.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Key`], [`Error::KeyPermissions`].
    pub fn load(path: &Path) -> Result<VerifierKey, Error> {
        let io = |e| Error::Io {
            path: path.to_owned(),
            source: e,
        };
        let meta = fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::KeyPermissions {
                path: path.to_owned(),
                mode,
            });
        }
        if meta.len() > MAX_KEY_FILE {
            return Err(Error::Key {
                path: Some(path.to_owned()),
                detail: format!("{} bytes, more than {MAX_KEY_FILE}", meta.len()),
            });
        }
        let pem = fs::read_to_string(path).map_err(io)?;
        VerifierKey::from_pkcs8_pem(&pem).map_err(|e| match e {
            Error::Key { detail, .. } => Error::Key {
                path: Some(path.to_owned()),
                detail,
            },
            other => other,
        })
    }

    /// Loads the key at `path`, or on first start generates one and writes it there (mode 0600).
    ///
    /// The new key is written to a temporary file, synced, and hard-linked into place, so a crash
    /// never leaves a half-written key at `path` and two servers starting together end up with the
    /// same key (the second link fails and that server loads the first one's key).
    ///
    /// # Errors
    /// As [`VerifierKey::load`], and [`Error::Io`] when the key cannot be written.
    pub fn load_or_generate(
        path: &Path,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(VerifierKey, KeyOrigin), Error> {
        let io = |e: crate::keyfile::KeyFileError| Error::Io {
            path: e.path,
            source: e.source,
        };
        if crate::keyfile::probe(path).map_err(io)? == crate::keyfile::Existing::Present {
            return Ok((VerifierKey::load(path)?, KeyOrigin::Loaded));
        }
        let secret = SecretKey::random(rng);
        let pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| Error::Key {
                path: Some(path.to_owned()),
                detail: format!("encoding the new key: {e}"),
            })?;
        match crate::keyfile::create_new(path, pem.as_bytes(), rng).map_err(io)? {
            crate::keyfile::Created::Written => {
                Ok((VerifierKey::from_secret(&secret)?, KeyOrigin::Generated))
            }
            crate::keyfile::Created::LostRace => Ok((VerifierKey::load(path)?, KeyOrigin::Loaded)),
        }
    }

    /// The RFC 7638 thumbprint of the public key, used as the JWS `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK with `kid`, `alg` ES256 and `use` sig.
    pub fn public_jwk(&self) -> Jwk {
        Jwk::from_public(&PublicKey::from(self.signing.verifying_key()))
    }

    /// A JWKS holding only this key.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![self.public_jwk()],
        }
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

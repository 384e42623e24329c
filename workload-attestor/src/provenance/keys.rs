//! The keys an operator trusts to sign provenance, loaded once at Configure.
//!
//! Only ECDSA P-256 with SHA-256 is supported: it is what `cosign generate-key-pair` makes and what most
//! in-toto/DSSE signers default to. Ed25519 is not (ed25519-dalek is not a workspace dependency yet); an
//! Ed25519 key file is refused at Configure with a message that says so, never accepted and ignored.
//!
//! Signatures are accepted in ASN.1 DER (cosign, Go's `ecdsa.SignASN1`, OpenSSL) or as the fixed 64-byte
//! `r‖s` form (JWS-style signers). Both are checked against the same key and message, so accepting two
//! encodings adds no way to forge one.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

/// The largest public key file read: a PEM SubjectPublicKeyInfo is a few hundred bytes.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Why a key file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_KEY_FILE_BYTES`].
    #[error("{path} is over {MAX_KEY_FILE_BYTES} bytes: not a public key file")]
    TooLarge {
        /// The key file.
        path: PathBuf,
    },
    /// The file is not a PEM `PUBLIC KEY` holding a P-256 key.
    #[error(
        "{path} is not a PEM ECDSA P-256 public key (\"-----BEGIN PUBLIC KEY-----\"); \
         only ECDSA P-256 with SHA-256 is supported{hint}"
    )]
    Unsupported {
        /// The key file.
        path: PathBuf,
        /// A hint when the key is of a known but unsupported kind.
        hint: &'static str,
    },
}

/// One trusted signer: the operator's name for it, an optional DSSE `keyid`, the SLSA build level the
/// operator vouches its build platform meets, and the key.
#[derive(Clone)]
pub struct TrustedKey {
    name: String,
    key_id: Option<String>,
    build_level: Option<u8>,
    key: VerifyingKey,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKey")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .field("build_level", &self.build_level)
            .finish_non_exhaustive()
    }
}

impl TrustedKey {
    /// A trusted key from a PEM SubjectPublicKeyInfo text.
    ///
    /// # Errors
    ///
    /// [`KeyError::Unsupported`] if `pem` is not a P-256 public key (`path` only names it in the error).
    pub fn from_pem(
        name: &str,
        key_id: Option<&str>,
        build_level: Option<u8>,
        pem: &str,
        path: &Path,
    ) -> Result<Self, KeyError> {
        let key =
            VerifyingKey::from_public_key_pem(pem.trim()).map_err(|_| KeyError::Unsupported {
                path: path.to_path_buf(),
                hint: unsupported_hint(pem),
            })?;
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id.map(str::to_owned),
            build_level,
            key,
        })
    }

    /// Reads a trusted key from a PEM file (at most [`MAX_KEY_FILE_BYTES`]).
    ///
    /// # Errors
    ///
    /// [`KeyError`]: unreadable, too large, or not a P-256 public key.
    pub fn load(
        name: &str,
        key_id: Option<&str>,
        build_level: Option<u8>,
        path: &Path,
    ) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(MAX_KEY_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_KEY_FILE_BYTES {
            return Err(KeyError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Self::from_pem(name, key_id, build_level, &text, path)
    }

    /// The operator's name for the key (used in `provenance:signer:<name>`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The DSSE `keyid` configured for the key, if any.
    #[must_use]
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// The SLSA build level the operator vouches for, if any.
    #[must_use]
    pub fn build_level(&self) -> Option<u8> {
        self.build_level
    }

    /// Whether a signature carrying `keyid` may be tried with this key: the `keyid` is an unauthenticated
    /// hint (DSSE spec), so it can only narrow which keys are tried, never make a signature valid.
    #[must_use]
    pub fn may_have_signed(&self, keyid: Option<&str>) -> bool {
        match (self.key_id.as_deref(), keyid) {
            (Some(mine), Some(theirs)) if !theirs.is_empty() => mine == theirs,
            _ => true,
        }
    }

    /// Whether `sig` (DER or fixed `r‖s`) is this key's ECDSA P-256/SHA-256 signature over `message`.
    #[must_use]
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        let parsed = Signature::from_der(sig).ok().or_else(|| {
            (sig.len() == 64)
                .then(|| Signature::from_slice(sig).ok())
                .flatten()
        });
        parsed.is_some_and(|s| self.key.verify(message, &s).is_ok())
    }
}

/// Recognises key kinds people commonly have, to say what is unsupported rather than "not a key".
fn unsupported_hint(pem: &str) -> &'static str {
    // The DER of an Ed25519 SPKI starts with these bytes, whose base64 is "MCowBQYDK2Vw".
    if pem.contains("MCowBQYDK2Vw") {
        " (this is an Ed25519 key, which is not supported yet)"
    } else if pem.contains("PRIVATE KEY") {
        " (this is a private key: configure the public key)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    fn fresh() -> (SigningKey, String) {
        let sk = SigningKey::random(&mut rand_core::OsRng);
        let pem = sk
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        (sk, pem)
    }

    #[test]
    fn der_and_fixed_signatures_verify_others_do_not() {
        let (sk, pem) = fresh();
        let key = TrustedKey::from_pem("ci", None, None, &pem, Path::new("k.pem")).unwrap();
        let sig: Signature = sk.sign(b"message");
        assert!(key.verifies(b"message", sig.to_der().as_bytes()));
        assert!(key.verifies(b"message", &sig.to_bytes()));
        assert!(!key.verifies(b"massage", sig.to_der().as_bytes()));
        assert!(!key.verifies(b"message", &[]));
        assert!(!key.verifies(b"message", &[0x30; 70]));
        let (other, _) = fresh();
        let foreign: Signature = other.sign(b"message");
        assert!(!key.verifies(b"message", foreign.to_der().as_bytes()));
    }

    #[test]
    fn keyid_only_narrows() {
        let (_, pem) = fresh();
        let with = TrustedKey::from_pem("a", Some("k1"), None, &pem, Path::new("x")).unwrap();
        let without = TrustedKey::from_pem("b", None, None, &pem, Path::new("x")).unwrap();
        assert!(with.may_have_signed(Some("k1")));
        assert!(!with.may_have_signed(Some("k2")));
        assert!(with.may_have_signed(None));
        assert!(with.may_have_signed(Some("")));
        assert!(without.may_have_signed(Some("anything")));
    }

    #[test]
    fn load_refuses_what_is_not_a_p256_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pem) = fresh();
        let good = dir.path().join("good.pem");
        std::fs::write(&good, &pem).unwrap();
        let k = TrustedKey::load("ci", None, Some(3), &good).unwrap();
        assert_eq!(
            (k.name(), k.key_id(), k.build_level()),
            ("ci", None, Some(3))
        );
        assert!(
            !format!("{k:?}").contains("key:"),
            "no key material in Debug"
        );

        let ed = dir.path().join("ed.pem");
        std::fs::write(
            &ed,
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let err = TrustedKey::load("ed", None, None, &ed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Ed25519"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").unwrap();
        assert!(matches!(
            TrustedKey::load("g", None, None, &garbage),
            Err(KeyError::Unsupported { .. })
        ));
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'a'; 70_000]).unwrap();
        assert!(matches!(
            TrustedKey::load("b", None, None, &big),
            Err(KeyError::TooLarge { .. })
        ));
        assert!(matches!(
            TrustedKey::load("m", None, None, &dir.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
    }
}

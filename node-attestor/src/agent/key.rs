//! The agent's per-instance ECDSA P-256 key.
//!
//! Its public half goes into the Hello and, hashed with the server's nonce, into REPORT_DATA; signing the
//! key proof with it shows the server that whoever presents the evidence holds the key the TEE vouched
//! for. The private half never leaves this process (or, with `instance_key_path`, the VM's disk) and never
//! appears in logs or errors.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rand_core::OsRng;
use sha2::{Digest, Sha256};

/// A PKCS#8 P-256 key PEM is about 240 bytes; anything far larger is not one.
const MAX_KEY_FILE_LEN: u64 = 16 * 1024;

/// Why the instance key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file holds no usable P-256 PKCS#8 key; the parser's detail is left out on purpose (it could
    /// quote key bytes).
    #[error("{path} is not a PKCS#8 PEM ECDSA P-256 private key")]
    NotAKey { path: PathBuf },
    /// A private key readable by others is not private; refuse as ssh does.
    #[error("{path} is accessible by group or others (mode {mode:o}); chmod 600 it")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path} is {len} bytes, too large for a key file")]
    TooLarge { path: PathBuf, len: u64 },
    #[error("encoding the {what} failed")]
    Encode { what: &'static str },
}

/// The per-instance signing key with its public key as SubjectPublicKeyInfo DER.
pub struct InstanceKey {
    signing: SigningKey,
    spki_der: Vec<u8>,
}

impl std::fmt::Debug for InstanceKey {
    // Hand-written: only the public key's fingerprint may ever be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceKey")
            .field("spki_sha256", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl InstanceKey {
    /// A fresh key from the OS RNG.
    ///
    /// # Errors
    ///
    /// [`KeyError::Encode`] if the public key cannot be encoded (should not happen).
    pub fn generate() -> Result<Self, KeyError> {
        Self::from_signing(SigningKey::random(&mut OsRng))
    }

    fn from_signing(signing: SigningKey) -> Result<Self, KeyError> {
        let spki_der = signing
            .verifying_key()
            .to_public_key_der()
            .map_err(|_| KeyError::Encode { what: "public key" })?
            .into_vec();
        Ok(InstanceKey { signing, spki_der })
    }

    /// Loads the key at `path`, or creates it there (mode 0600, never overwriting) when absent, so the
    /// agent keeps its instance key across restarts.
    ///
    /// # Errors
    ///
    /// [`KeyError`] naming the path.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(source) => Err(KeyError::Io {
                op: "inspecting",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Checks an existing key file without creating anything (for Validate).
    ///
    /// # Errors
    ///
    /// [`KeyError`] naming the path.
    pub fn check_existing(path: &Path) -> Result<(), KeyError> {
        if path.exists() {
            Self::load(path).map(|_| ())
        } else {
            Ok(())
        }
    }

    fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |op| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { op, path, source }
        };
        let meta = std::fs::metadata(path).map_err(io("inspecting"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        if meta.len() > MAX_KEY_FILE_LEN {
            return Err(KeyError::TooLarge {
                path: path.to_path_buf(),
                len: meta.len(),
            });
        }
        let pem = zeroize_string(std::fs::read_to_string(path).map_err(io("reading"))?);
        let signing = SigningKey::from_pkcs8_pem(pem.as_str()).map_err(|_| KeyError::NotAKey {
            path: path.to_path_buf(),
        })?;
        Self::from_signing(signing)
    }

    fn create(path: &Path) -> Result<Self, KeyError> {
        let key = Self::generate()?;
        let pem = key
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyError::Encode {
                what: "private key",
            })?;
        let io = |op| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { op, path, source }
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io("creating"))?;
        file.write_all(pem.as_bytes()).map_err(io("writing"))?;
        file.sync_all().map_err(io("syncing"))?;
        tracing::info!(path = %path.display(), spki_sha256 = %key.fingerprint(), "created instance key");
        Ok(key)
    }

    /// The public key, SubjectPublicKeyInfo DER, as sent in the Hello.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the SPKI, hex: safe to log, identifies the key.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.spki_der))
    }

    /// ECDSA P-256 / SHA-256 signature over `message`, ASN.1 DER.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: DerSignature = self.signing.sign(message);
        sig.as_bytes().to_vec()
    }
}

/// Wraps the PEM text so it is wiped from memory when dropped.
fn zeroize_string(s: String) -> p256::elliptic_curve::zeroize::Zeroizing<String> {
    p256::elliptic_curve::zeroize::Zeroizing::new(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;
    use p256::pkcs8::DecodePublicKey;

    #[test]
    fn create_then_load_same_key_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance.pem");
        let a = InstanceKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = InstanceKey::load_or_create(&path).unwrap();
        assert_eq!(a.spki_der(), b.spki_der());
        let c = InstanceKey::generate().unwrap();
        assert_ne!(a.spki_der(), c.spki_der());
    }

    #[test]
    fn signature_verifies_with_spki() {
        let k = InstanceKey::generate().unwrap();
        let sig = k.sign(b"message");
        let vk = VerifyingKey::from_public_key_der(k.spki_der()).unwrap();
        let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
        vk.verify(b"message", &sig).unwrap();
        assert!(vk.verify(b"other", &sig).is_err());
    }

    #[test]
    fn refuses_open_permissions_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        InstanceKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            InstanceKey::load_or_create(&path),
            Err(KeyError::Permissions { mode: 0o644, .. })
        ));
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = InstanceKey::load_or_create(&junk).unwrap_err();
        assert!(matches!(err, KeyError::NotAKey { .. }), "{err}");
        assert!(InstanceKey::check_existing(&junk).is_err());
        assert!(InstanceKey::check_existing(&dir.path().join("absent.pem")).is_ok());
        assert!(!dir.path().join("absent.pem").exists());
    }

    #[test]
    fn debug_shows_no_secret() {
        let k = InstanceKey::generate().unwrap();
        let secret_hex = hex::encode(k.signing.to_bytes());
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&secret_hex));
        assert!(dbg.contains(&k.fingerprint()));
    }
}

//! Signed checkpoints (c2sp.org/tlog-checkpoint over c2sp.org/signed-note) and the keys that sign and
//! verify them.
//!
//! A checkpoint is the note text `<origin>\n<tree size>\n<base64 root hash>\n`, followed by a blank line and
//! one signature line per key: `— <key name> <base64(key id || Ed25519 signature)>`, where the key id is
//! `SHA-256(name || 0x0A || 0x01 || public key)[:4]`. The log signs with key name = origin, and publishes
//! its verifier key (vkey) `<name>+<hex key id>+<base64(0x01 || public key)>`. The private key is kept in
//! Go's `sumdb/note` format `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`, so Go tools can use
//! the same file.
//!
//! Parsing and signature checks are `signed_note` and `tlog_tiles::Checkpoint` (azul's ports of Go's
//! `sumdb/note` and `sumdb/tlog`); this module adds the origin check and types that say what was checked.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use rand_core::CryptoRngCore;
use signed_note::{Note, NoteError, StandardSigner, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};
use zeroize::Zeroizing;

use super::TlogError;

/// Signature type byte of Ed25519 in signed-note.
const ALG_ED25519: u8 = 1;
/// Largest checkpoint note we parse (a few witness cosignatures fit many times over).
pub const MAX_CHECKPOINT_NOTE: usize = 64 * 1024;

/// The log's signing key: an Ed25519 key named by the log's origin.
///
/// `Debug` shows the origin and verifier key only; the private key never leaves except through
/// [`LogKey::save_new`].
pub struct LogKey {
    signer: StandardSigner,
    skey: Zeroizing<String>,
    vkey: String,
    origin: String,
    verifier: LogVerifier,
}

impl fmt::Debug for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogKey")
            .field("origin", &self.origin)
            .field("vkey", &self.vkey)
            .finish_non_exhaustive()
    }
}

impl LogKey {
    /// A fresh key for a log whose checkpoints carry `origin` (a schema-less URL such as
    /// `example.org/twi/log`). Randomness is a parameter so tests can be deterministic.
    ///
    /// # Errors
    /// [`TlogError::Origin`] if `origin` is not a valid key name.
    pub fn generate<R: CryptoRngCore + ?Sized>(
        origin: &str,
        rng: &mut R,
    ) -> Result<Self, TlogError> {
        check_origin(origin)?;
        let (skey, _vkey) = signed_note::generate_key(rng, origin);
        Self::from_skey(&skey)
    }

    /// Reads a key in Go's note format (`PRIVATE+KEY+<name>+<id>+<base64>`).
    ///
    /// # Errors
    /// [`TlogError::Key`] if the string is malformed, not Ed25519, or its id does not match.
    pub fn from_skey(skey: &str) -> Result<Self, TlogError> {
        let bad = |reason: &str| TlogError::Key {
            kind: "signer",
            reason: reason.to_owned(),
        };
        let signer = StandardSigner::new(skey.trim_end()).map_err(|e| bad(&e.to_string()))?;
        // The signer does not give its public key back; derive it from the seed to publish the vkey.
        let mut parts = skey.trim_end().splitn(5, '+');
        let (Some("PRIVATE"), Some("KEY"), Some(name), Some(_id), Some(key64)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad("not PRIVATE+KEY+<name>+<id>+<key>"));
        };
        check_origin(name)?;
        let key = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(key64)
                .map_err(|_| bad("key is not base64"))?,
        );
        let seed: Zeroizing<[u8; 32]> = match key.split_first() {
            Some((&ALG_ED25519, seed)) => Zeroizing::new(
                seed.try_into()
                    .map_err(|_| bad("Ed25519 seed is not 32 bytes"))?,
            ),
            _ => return Err(bad("not an Ed25519 key")),
        };
        let verifying = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let vkey = signed_note::new_ed25519_verifier_key(name, &verifying);
        let verifier = LogVerifier::new(&vkey)?;
        Ok(Self {
            signer,
            skey: Zeroizing::new(skey.trim_end().to_owned()),
            vkey,
            origin: name.to_owned(),
            verifier,
        })
    }

    /// Reads the key from a file written by [`LogKey::save_new`] (or Go's `note.GenerateKey`).
    ///
    /// # Errors
    /// [`TlogError::Io`] if the file cannot be read, [`TlogError::Key`] if it does not hold a key.
    pub fn load(path: &Path) -> Result<Self, TlogError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| TlogError::io("read", path, e))?,
        );
        Self::from_skey(&text)
    }

    /// Writes the private key to a new file readable by its owner only (mode 0600), refusing to
    /// overwrite: replacing a log's key silently would fork its history.
    ///
    /// # Errors
    /// [`TlogError::Io`] if the file exists or cannot be written and synced.
    pub fn save_new(&self, path: &Path) -> Result<(), TlogError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| TlogError::io("create", path, e))?;
        file.write_all(self.skey.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| TlogError::io("write", path, e))
    }

    /// The checkpoint origin (and signature key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key to hand to relying parties and auditors.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// A verifier for this key's checkpoints.
    pub fn verifier(&self) -> LogVerifier {
        self.verifier.clone()
    }

    /// Signs the checkpoint for a tree of `size` entries with root hash `root`.
    pub(crate) fn sign_checkpoint(
        &self,
        size: u64,
        root: Hash,
    ) -> Result<SignedCheckpoint, TlogError> {
        let checkpoint = Checkpoint::new(&self.origin, size, root, "")
            .map_err(|e| TlogError::malformed("checkpoint", e))?;
        let mut note = Note::new(&checkpoint.to_bytes(), &[])
            .map_err(|e| TlogError::malformed("signed note", e))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| TlogError::Signature {
                reason: format!("signing failed: {e}"),
            })?;
        Ok(SignedCheckpoint {
            note: note.to_bytes(),
            origin: self.origin.clone(),
            size,
            root,
        })
    }
}

fn check_origin(origin: &str) -> Result<(), TlogError> {
    if signed_note::is_key_name_valid(origin) {
        Ok(())
    } else {
        Err(TlogError::Origin {
            origin: origin.to_owned(),
        })
    }
}

/// A checkpoint as received: parsed, its signatures NOT yet checked. Only a [`LogVerifier`] turns it
/// into a [`VerifiedCheckpoint`].
#[derive(Clone, PartialEq)]
pub struct SignedCheckpoint {
    note: Vec<u8>,
    origin: String,
    size: u64,
    root: Hash,
}

impl fmt::Debug for SignedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedCheckpoint")
            .field("origin", &self.origin)
            .field("size", &self.size)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl SignedCheckpoint {
    /// Parses a signed checkpoint note.
    ///
    /// # Errors
    /// [`TlogError::Malformed`] if the bytes are not a signed note whose text is a checkpoint.
    pub fn parse(note: &[u8]) -> Result<Self, TlogError> {
        if note.len() > MAX_CHECKPOINT_NOTE {
            return Err(TlogError::malformed(
                "checkpoint",
                format!("{} bytes > {MAX_CHECKPOINT_NOTE}", note.len()),
            ));
        }
        let parsed = Note::from_bytes(note).map_err(|e| TlogError::malformed("signed note", e))?;
        let checkpoint = Checkpoint::from_bytes(parsed.text())
            .map_err(|e| TlogError::malformed("checkpoint", e))?;
        Ok(Self {
            note: note.to_vec(),
            origin: checkpoint.origin().to_owned(),
            size: checkpoint.size(),
            root: *checkpoint.hash(),
        })
    }

    /// The signed note, byte for byte as signed (what `/checkpoint` serves).
    pub fn as_bytes(&self) -> &[u8] {
        &self.note
    }

    /// The origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 6962 root hash of the first `size` entries.
    pub fn root(&self) -> Hash {
        self.root
    }
}

/// A checkpoint whose signature by the trusted log key verified and whose origin is the trusted one.
/// Built only by [`LogVerifier::verify_checkpoint`].
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedCheckpoint(SignedCheckpoint);

impl VerifiedCheckpoint {
    /// The checkpoint that verified.
    pub fn checkpoint(&self) -> &SignedCheckpoint {
        &self.0
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.0.size
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.0.root
    }

    /// The origin.
    pub fn origin(&self) -> &str {
        &self.0.origin
    }
}

/// What a relying party or auditor trusts about a log: its origin and its public key.
#[derive(Clone)]
pub struct LogVerifier {
    origin: String,
    vkey: String,
    verifier: StandardVerifier,
}

impl fmt::Debug for LogVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogVerifier")
            .field("origin", &self.origin)
            .field("vkey", &self.vkey)
            .finish()
    }
}

impl LogVerifier {
    /// A verifier from a vkey, trusting checkpoints whose origin is the key's name (what
    /// tlog-checkpoint recommends and what our logs do).
    ///
    /// # Errors
    /// [`TlogError::Key`] if the vkey is malformed, not Ed25519, or its key id does not match.
    pub fn new(vkey: &str) -> Result<Self, TlogError> {
        let name = vkey.trim().split('+').next().unwrap_or_default().to_owned();
        Self::with_origin(vkey, &name)
    }

    /// A verifier for a log whose origin differs from its key name.
    ///
    /// # Errors
    /// As [`LogVerifier::new`].
    pub fn with_origin(vkey: &str, origin: &str) -> Result<Self, TlogError> {
        let vkey = vkey.trim();
        let verifier = StandardVerifier::new(vkey).map_err(|e| TlogError::Key {
            kind: "verifier",
            reason: e.to_string(),
        })?;
        Ok(Self {
            origin: origin.to_owned(),
            vkey: vkey.to_owned(),
            verifier,
        })
    }

    /// The origin checkpoints must carry.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// Checks a checkpoint note: parses it, verifies the signature by our key (signatures by other keys,
    /// e.g. witnesses, are ignored as signed-note requires), and checks the origin.
    ///
    /// # Errors
    /// [`TlogError::Malformed`], [`TlogError::Signature`] (no signature by our key, or a bad one), or
    /// [`TlogError::OriginMismatch`].
    pub fn verify_checkpoint(&self, note: &[u8]) -> Result<VerifiedCheckpoint, TlogError> {
        let checkpoint = SignedCheckpoint::parse(note)?;
        let parsed = Note::from_bytes(note).map_err(|e| TlogError::malformed("signed note", e))?;
        let known = VerifierList::new(vec![Box::new(self.verifier.clone())]);
        parsed.verify(&known).map_err(|e| TlogError::Signature {
            reason: match e {
                NoteError::UnverifiedNote => format!("no signature by {}", self.vkey),
                other => other.to_string(),
            },
        })?;
        if checkpoint.origin != self.origin {
            return Err(TlogError::OriginMismatch {
                got: checkpoint.origin,
                want: self.origin.clone(),
            });
        }
        Ok(VerifiedCheckpoint(checkpoint))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    /// The example of c2sp.org/signed-note ("Verifier keys" / "Example").
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    /// Go's sumdb/note documentation example (PeterNeumann key pair and its signed note).
    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn spec_example_note_verifies_with_spec_vkey() {
        let v = StandardVerifier::new(SPEC_VKEY).unwrap();
        let note = Note::from_bytes(SPEC_NOTE.as_bytes()).unwrap();
        let (ok, unknown) = note
            .verify(&VerifierList::new(vec![Box::new(v.clone())]))
            .unwrap();
        assert_eq!(ok.len(), 1);
        assert!(unknown.is_empty());
        assert_eq!(note.text(), b"This is an example message.\n");
        // The key id is SHA-256(name || 0x0A || 0x01 || pubkey)[:4].
        let key = base64::engine::general_purpose::STANDARD
            .decode("AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
            .unwrap();
        assert_eq!(key[0], 0x01);
        assert_eq!(signed_note::key_id("example.com/foo", &key), 0x530d903a);
        // One flipped byte in the text, and the same key refuses it.
        let tampered = SPEC_NOTE.replace("example message", "example massage");
        let note = Note::from_bytes(tampered.as_bytes()).unwrap();
        assert!(note.verify(&VerifierList::new(vec![Box::new(v)])).is_err());
    }

    #[test]
    fn go_example_key_signs_the_go_example_note_byte_for_byte() {
        let key = LogKey::from_skey(GO_SKEY).unwrap();
        assert_eq!(key.vkey(), GO_VKEY);
        assert_eq!(key.origin(), "PeterNeumann");
        let mut note = Note::new(
            b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n",
            &[],
        )
        .unwrap();
        note.add_sigs(&[&key.signer]).unwrap();
        // Ed25519 is deterministic: the same key and text give Go's exact signature line.
        assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), GO_NOTE);
    }

    #[test]
    fn checkpoint_round_trip_and_refusals() {
        let key = LogKey::generate("example.org/twi/log", &mut rand_core::OsRng).unwrap();
        let root = tlog_tiles::record_hash(b"x");
        let cp = key.sign_checkpoint(7, root).unwrap();
        let text = String::from_utf8(cp.as_bytes().to_vec()).unwrap();
        let (body, sig) = text.split_once("\n\n").unwrap();
        assert_eq!(body, format!("example.org/twi/log\n7\n{root}"));
        let id = &key.vkey().split('+').nth(1).unwrap();
        let sig_line = sig
            .strip_prefix("— example.org/twi/log ")
            .unwrap()
            .trim_end();
        let sig_bytes = base64::engine::general_purpose::STANDARD
            .decode(sig_line)
            .unwrap();
        assert_eq!(sig_bytes.len(), 4 + 64);
        assert_eq!(hex::encode(&sig_bytes[..4]), **id);

        let verifier = key.verifier();
        let verified = verifier.verify_checkpoint(cp.as_bytes()).unwrap();
        assert_eq!((verified.size(), verified.root()), (7, root));
        assert_eq!(verified.origin(), "example.org/twi/log");

        // Another key: no signature by the trusted key.
        let other = LogKey::generate("example.org/twi/log", &mut rand_core::OsRng).unwrap();
        assert!(matches!(
            other.verifier().verify_checkpoint(cp.as_bytes()),
            Err(TlogError::Signature { .. })
        ));
        // Same key, other trusted origin.
        let v = LogVerifier::with_origin(key.vkey(), "example.org/other").unwrap();
        assert!(matches!(
            v.verify_checkpoint(cp.as_bytes()),
            Err(TlogError::OriginMismatch { .. })
        ));
        // A changed size under the old signature.
        let forged = text.replacen("\n7\n", "\n8\n", 1);
        assert!(matches!(
            verifier.verify_checkpoint(forged.as_bytes()),
            Err(TlogError::Signature { .. })
        ));
        // A witness cosignature by an unknown key is ignored, not fatal.
        let witness = LogKey::generate("witness.example", &mut rand_core::OsRng).unwrap();
        let mut note = Note::from_bytes(cp.as_bytes()).unwrap();
        note.add_sigs(&[&witness.signer]).unwrap();
        verifier.verify_checkpoint(&note.to_bytes()).unwrap();
        // Garbage.
        assert!(matches!(
            verifier.verify_checkpoint(b"not a note"),
            Err(TlogError::Malformed { .. })
        ));
    }

    #[test]
    fn key_file_round_trip_is_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let key = LogKey::generate("example.org/log", &mut rand_core::OsRng).unwrap();
        key.save_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = LogKey::load(&path).unwrap();
        assert_eq!(loaded.vkey(), key.vkey());
        assert!(key.save_new(&path).is_err());
        // Debug never shows the private key.
        let debug = format!("{key:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(LogKey::generate("has space", &mut rand_core::OsRng).is_err());
        assert!(LogKey::generate("a+b", &mut rand_core::OsRng).is_err());
        assert!(LogKey::from_skey(
            "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
        )
        .is_err());
        assert!(LogVerifier::new(
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
        .is_err());
        assert!(LogVerifier::new("nonsense").is_err());
    }
}

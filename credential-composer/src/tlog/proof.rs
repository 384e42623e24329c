//! Inclusion proofs in the c2sp.org/tlog-proof@v1 text format, and the RFC 6962 checks of inclusion and
//! consistency proofs.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! [extra <base64>]
//! index <decimal>
//! <base64 hash>            (zero or more: RFC 6962 audit path, leaf's sibling first)
//!
//! <signed checkpoint, verbatim>
//! ```
//!
//! The hash maths is `tlog_tiles::check_record` / `check_tree` (ports of Go's `tlog.CheckRecord` and
//! `tlog.CheckTree`), whose proofs are RFC 6962's audit paths and consistency proofs.

use base64::Engine as _;
use tlog_tiles::Hash;

use super::checkpoint::{LogVerifier, SignedCheckpoint, VerifiedCheckpoint};
use super::TlogError;

/// First line of a tlog-proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// An audit path of a tree of at most 2^64 leaves has at most 64 hashes.
pub const MAX_PROOF_HASHES: usize = 64;
/// Largest tlog-proof we parse.
pub const MAX_TLOG_PROOF: usize = 128 * 1024;

/// Proof that the entry at `index` is in the tree of `checkpoint` (size and root): what the composer
/// puts in a credential's provenance extension.
#[derive(Clone, Debug, PartialEq)]
pub struct InclusionProof {
    /// Zero-based index of the entry.
    pub index: u64,
    /// RFC 6962 audit path, from the leaf's sibling up to the root's child.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint the path leads to.
    pub checkpoint: SignedCheckpoint,
    /// Opaque, unauthenticated extra data (tlog-proof's `extra` line).
    pub extra: Option<Vec<u8>>,
}

impl InclusionProof {
    /// Size of the tree the proof is for.
    pub fn tree_size(&self) -> u64 {
        self.checkpoint.size()
    }

    /// Encodes as c2sp.org/tlog-proof@v1.
    pub fn to_tlog_proof(&self) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", b64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&format!("{}\n", b64.encode(h.0)));
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(self.checkpoint.as_bytes());
        bytes
    }

    /// Parses c2sp.org/tlog-proof@v1. Nothing is verified here; see [`LogVerifier::verify_inclusion`].
    ///
    /// # Errors
    /// [`TlogError::Malformed`] for anything not in the format.
    pub fn from_tlog_proof(bytes: &[u8]) -> Result<Self, TlogError> {
        let bad = |reason: &str| TlogError::malformed("tlog-proof", reason);
        if bytes.len() > MAX_TLOG_PROOF {
            return Err(bad("too large"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
        let (header, mut rest) = text.split_once('\n').ok_or_else(|| bad("no header"))?;
        if header != TLOG_PROOF_HEADER {
            return Err(bad("missing c2sp.org/tlog-proof@v1 header"));
        }
        let next_line = |rest: &mut &str| -> Result<String, TlogError> {
            let (line, tail) = rest.split_once('\n').ok_or_else(|| bad("truncated"))?;
            *rest = tail;
            Ok(line.to_owned())
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut line = next_line(&mut rest)?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(b64.decode(e).map_err(|_| bad("extra is not base64"))?);
            line = next_line(&mut rest)?;
        }
        let index_str = line
            .strip_prefix("index ")
            .ok_or_else(|| bad("missing index line"))?;
        let index: u64 = index_str.parse().map_err(|_| bad("index is not a u64"))?;
        if index.to_string() != index_str {
            return Err(bad("index is not canonical decimal"));
        }
        let mut hashes = Vec::new();
        loop {
            let line = next_line(&mut rest)?;
            if line.is_empty() {
                break;
            }
            if hashes.len() == MAX_PROOF_HASHES {
                return Err(bad("too many proof hashes"));
            }
            let raw = b64.decode(&line).map_err(|_| bad("hash is not base64"))?;
            let h: [u8; 32] = raw.try_into().map_err(|_| bad("hash is not 32 bytes"))?;
            hashes.push(Hash(h));
        }
        let checkpoint = SignedCheckpoint::parse(rest.as_bytes())?;
        Ok(Self {
            index,
            hashes,
            checkpoint,
            extra,
        })
    }
}

/// An inclusion proof that verified: the entry is at `index` in the tree of a checkpoint signed by the
/// trusted log key.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedInclusion {
    index: u64,
    checkpoint: VerifiedCheckpoint,
}

impl VerifiedInclusion {
    /// The entry's index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The checkpoint the entry is included in.
    pub fn checkpoint(&self) -> &VerifiedCheckpoint {
        &self.checkpoint
    }
}

/// Checks an RFC 6962 audit path: `leaf_hash` at `index` leads to `root` of a tree of `size`.
///
/// # Errors
/// [`TlogError::Proof`] if the index is outside the tree or the path does not lead to `root`.
pub fn check_inclusion(
    leaf_hash: Hash,
    index: u64,
    size: u64,
    root: Hash,
    path: &[Hash],
) -> Result<(), TlogError> {
    if index >= size {
        return Err(TlogError::Proof {
            kind: "inclusion",
            reason: format!("index {index} >= tree size {size}"),
        });
    }
    if path.len() > MAX_PROOF_HASHES {
        return Err(TlogError::Proof {
            kind: "inclusion",
            reason: format!("{} hashes", path.len()),
        });
    }
    tlog_tiles::check_record(&path.to_vec(), size, root, index, leaf_hash).map_err(|e| {
        TlogError::Proof {
            kind: "inclusion",
            reason: format!("index {index} in tree size {size}: {e}"),
        }
    })
}

/// Checks an RFC 6962 consistency proof: the tree of `old_size`/`old_root` is a prefix of the tree of
/// `new_size`/`new_root`.
///
/// # Errors
/// [`TlogError::Proof`] if the sizes go backwards or the proof does not lead to both roots.
pub fn check_consistency(
    old_size: u64,
    old_root: Hash,
    new_size: u64,
    new_root: Hash,
    proof: &[Hash],
) -> Result<(), TlogError> {
    let fail = |reason: String| TlogError::Proof {
        kind: "consistency",
        reason,
    };
    if old_size > new_size {
        return Err(fail(format!("old size {old_size} > new size {new_size}")));
    }
    if proof.len() > 2 * MAX_PROOF_HASHES {
        return Err(fail(format!("{} hashes", proof.len())));
    }
    if old_size == 0 {
        // The empty tree is a prefix of every tree; RFC 9162 defines no proof for it.
        if old_root != tlog_tiles::EMPTY_HASH {
            return Err(fail(
                "old tree of size 0 has a root other than the empty hash".into(),
            ));
        }
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(fail("proof from the empty tree must be empty".into()))
        };
    }
    tlog_tiles::check_tree(&proof.to_vec(), new_size, new_root, old_size, old_root)
        .map_err(|e| fail(format!("{old_size} -> {new_size}: {e}")))
}

impl LogVerifier {
    /// Verifies that `entry` (the logged bytes, e.g. a COSE_Sign1 statement) is in the log: the
    /// checkpoint's signature and origin, then the audit path from `RFC6962 leaf hash(entry)` to the
    /// checkpoint's root.
    ///
    /// # Errors
    /// Those of [`LogVerifier::verify_checkpoint`], then [`TlogError::Proof`].
    pub fn verify_inclusion(
        &self,
        entry: &[u8],
        proof: &InclusionProof,
    ) -> Result<VerifiedInclusion, TlogError> {
        let checkpoint = self.verify_checkpoint(proof.checkpoint.as_bytes())?;
        check_inclusion(
            tlog_tiles::record_hash(entry),
            proof.index,
            checkpoint.size(),
            checkpoint.root(),
            &proof.hashes,
        )?;
        Ok(VerifiedInclusion {
            index: proof.index,
            checkpoint,
        })
    }

    /// [`LogVerifier::verify_inclusion`] of a proof in tlog-proof text.
    ///
    /// # Errors
    /// [`TlogError::Malformed`] if the text does not parse, then those of `verify_inclusion`.
    pub fn verify_tlog_proof(
        &self,
        entry: &[u8],
        tlog_proof: &[u8],
    ) -> Result<VerifiedInclusion, TlogError> {
        self.verify_inclusion(entry, &InclusionProof::from_tlog_proof(tlog_proof)?)
    }

    /// Verifies that `new` extends `old` (both already verified with this log's key): what an auditor
    /// checks between two checkpoints it has seen, so a log cannot show two histories.
    ///
    /// # Errors
    /// [`TlogError::OriginMismatch`] if the checkpoints are of different logs, [`TlogError::Proof`] if the
    /// proof fails.
    pub fn verify_consistency(
        &self,
        old: &VerifiedCheckpoint,
        new: &VerifiedCheckpoint,
        proof: &[Hash],
    ) -> Result<(), TlogError> {
        if old.origin() != new.origin() {
            return Err(TlogError::OriginMismatch {
                got: new.origin().to_owned(),
                want: old.origin().to_owned(),
            });
        }
        check_consistency(old.size(), old.root(), new.size(), new.root(), proof)
    }
}

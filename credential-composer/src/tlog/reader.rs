//! Read-only access to a log directory, for the tile server and auditors, possibly in another process
//! than the writer. It takes no lock: it reads the checkpoint first and never looks past its size,
//! and everything below a published checkpoint is immutable.

use std::path::Path;

use tlog_tiles::Hash;

use super::checkpoint::{LogVerifier, SignedCheckpoint, VerifiedCheckpoint};
use super::log::read_checkpoint;
use super::storage::Store;
use super::tile::TileId;
use super::TlogError;

/// A reader of a log directory.
pub struct LogReader {
    store: Store,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("dir", &self.store.dir)
            .finish()
    }
}

impl LogReader {
    /// Opens the log in `dir` for reading.
    ///
    /// # Errors
    /// [`TlogError::Directory`] if `dir` holds no log, or I/O errors.
    pub fn open(dir: &Path) -> Result<Self, TlogError> {
        if !dir.join(super::storage::CHECKPOINT).exists() {
            return Err(TlogError::Directory {
                path: dir.to_path_buf(),
                reason: "holds no log (no checkpoint)",
            });
        }
        Ok(Self {
            store: Store::open(dir, false)?,
        })
    }

    /// The latest published checkpoint (read from disk on each call; it changes with every append).
    ///
    /// # Errors
    /// I/O or parse errors.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint, TlogError> {
        read_checkpoint(&self.store.dir)
    }

    /// The bytes of `tile` if the tree of `tree_size` (a published checkpoint's size) contains it.
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] if it does not, or I/O errors.
    pub fn tile(&self, tile: TileId, tree_size: u64) -> Result<Vec<u8>, TlogError> {
        match tile.required_tree_size() {
            Some(needed) if needed <= tree_size => self.store.tile(tile),
            _ => Err(TlogError::OutOfRange {
                what: "tile",
                got: tile.path(),
                size: tree_size,
            }),
        }
    }

    /// Entry `index` of the tree of `tree_size`.
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] or I/O errors.
    pub fn entry(&self, index: u64, tree_size: u64) -> Result<Vec<u8>, TlogError> {
        TlogError::check_index(index, tree_size)?;
        self.store.entry(index)
    }

    /// Audit path of `index` in the tree of `tree_size` (at most the published size).
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] or I/O errors.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, TlogError> {
        self.check_published(tree_size)?;
        self.store.inclusion_proof(index, tree_size)
    }

    /// Consistency proof between two published tree sizes.
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] or I/O errors.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, TlogError> {
        self.check_published(new_size)?;
        self.store.consistency_proof(old_size, new_size)
    }

    /// Full audit of the directory (`twi log verify` on a local log): the checkpoint's signature, then
    /// every stored hash and index record re-derived from the entries, then the root.
    ///
    /// # Errors
    /// Checkpoint verification errors, [`TlogError::Corrupt`] naming the first difference, I/O errors.
    pub fn verify(&self, verifier: &LogVerifier) -> Result<VerifiedCheckpoint, TlogError> {
        let checkpoint = self.checkpoint()?;
        let verified = verifier.verify_checkpoint(checkpoint.as_bytes())?;
        self.store.verify_all(&checkpoint)?;
        Ok(verified)
    }

    fn check_published(&self, tree_size: u64) -> Result<(), TlogError> {
        let published = self.checkpoint()?.size();
        TlogError::check_tree_size(tree_size, published)?;
        Ok(())
    }
}

//! What the [`super::Sequencer`] and the tile server need of a log, so both work over a log directory
//! ([`Log`], [`LogReader`]) or a PostgreSQL database shared by HA servers ([`super::PgLog`],
//! [`super::PgLogReader`]).

use super::checkpoint::SignedCheckpoint;
use super::log::{Appended, Log};
use super::reader::LogReader;
use super::tile::TileId;
use super::TlogError;

/// The writing side of a log: durable batched appends. One value is owned by one sequencer thread.
pub trait LogBackend: Send + 'static {
    /// Appends `entries` in order, durably, under one new signed checkpoint; for each entry its index
    /// and inclusion proof against that checkpoint. Nothing is acknowledged on error.
    ///
    /// # Errors
    /// [`TlogError::EmptyBatch`], [`TlogError::EntrySize`], storage errors; [`TlogError::Poisoned`]
    /// when the backend needs [`LogBackend::recover`] first.
    fn append_batch(&mut self, entries: &[Vec<u8>]) -> Result<Vec<Appended>, TlogError>;

    /// Brings the backend back to its durable, signed state after a failed append.
    ///
    /// # Errors
    /// Storage or verification errors.
    fn recover(&mut self) -> Result<(), TlogError>;

    /// The tree size of the latest checkpoint this handle knows (another replica may have appended
    /// since).
    fn size(&self) -> u64;

    /// The latest checkpoint this handle published or read.
    fn checkpoint(&self) -> SignedCheckpoint;

    /// What the log is kept in ("directory", "postgresql"), for errors and logs.
    fn kind(&self) -> &'static str;

    /// The file [`Log`] back, when this backend is one (so [`super::Sequencer::shutdown`] keeps
    /// returning it).
    fn into_file_log(self: Box<Self>) -> Option<Log> {
        None
    }
}

impl LogBackend for Log {
    fn append_batch(&mut self, entries: &[Vec<u8>]) -> Result<Vec<Appended>, TlogError> {
        Log::append_batch(self, entries)
    }

    fn recover(&mut self) -> Result<(), TlogError> {
        Log::recover(self)
    }

    fn size(&self) -> u64 {
        Log::size(self)
    }

    fn checkpoint(&self) -> SignedCheckpoint {
        Log::checkpoint(self).clone()
    }

    fn kind(&self) -> &'static str {
        "directory"
    }

    fn into_file_log(self: Box<Self>) -> Option<Log> {
        Some(*self)
    }
}

/// The reading side the tile server needs: the latest checkpoint and tiles of the trees it covers.
/// Implementations must never serve a tile of a tree larger than a committed checkpoint.
pub trait TileSource: Send + Sync + 'static {
    /// The latest published checkpoint.
    ///
    /// # Errors
    /// Storage or parse errors.
    fn checkpoint(&self) -> Result<SignedCheckpoint, TlogError>;

    /// The bytes of `tile` if the tree of `tree_size` (a published checkpoint's size) contains it.
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] if it does not, storage errors.
    fn tile(&self, tile: TileId, tree_size: u64) -> Result<Vec<u8>, TlogError>;

    /// Where the log is, for the server's start-up line (never a password).
    fn describe(&self) -> String;
}

impl TileSource for LogReader {
    fn checkpoint(&self) -> Result<SignedCheckpoint, TlogError> {
        LogReader::checkpoint(self)
    }

    fn tile(&self, tile: TileId, tree_size: u64) -> Result<Vec<u8>, TlogError> {
        LogReader::tile(self, tile, tree_size)
    }

    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

//! One error type for the log: what failed, on which file or index, with the values that disagreed.

use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the transparency log, from parsing a proof to losing a disk.
///
/// Variants carry the offending value (path, index, sizes) so a log line says what to look at; none
/// carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlogError {
    /// A file of the log directory could not be read, written or synced.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing ("open", "write", "fsync", ...).
        op: &'static str,
        /// Which file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another `Log` in this one) holds the writer lock of the directory.
    #[error("log directory {path} is locked by another writer")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// `create` found a log already there, or `open` found none.
    #[error("log directory {path}: {reason}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The durable state contradicts the signed checkpoint (acknowledged data missing or altered).
    #[error("log storage is corrupt: {what} (got {got}, want {want})")]
    Corrupt {
        /// Which part of the storage.
        what: &'static str,
        /// What the files hold.
        got: String,
        /// What the checkpoint requires.
        want: String,
    },
    /// An entry cannot be logged: tlog-tiles entry bundles prefix each entry with a uint16 length.
    #[error(
        "entry {position} of the batch is {len} bytes; tlog-tiles entries are 1..={max} bytes"
    )]
    EntrySize {
        /// Position of the entry in the submitted batch.
        position: usize,
        /// Its length.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// `append_batch` got no entries.
    #[error("empty batch")]
    EmptyBatch,
    /// A previous append failed half-way; the log refuses appends until `recover` succeeds.
    #[error("log is poisoned by an earlier failed append; call recover() (or reopen the log)")]
    Poisoned,
    /// The sequencer's queue is full: callers should fail the request rather than wait.
    #[error("sequencer queue full ({queued} entries waiting, limit {limit})")]
    Overloaded {
        /// Entries waiting.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The sequencer thread has stopped (shut down, or panicked).
    #[error("sequencer stopped")]
    SequencerStopped,
    /// The batch this entry was part of failed; the same error is given to every entry of the batch.
    #[error("batch append failed: {0}")]
    Batch(Arc<TlogError>),
    /// A log key or verifier key string is malformed, or names another key.
    #[error("bad {kind} key: {reason}")]
    Key {
        /// "signer" or "verifier".
        kind: &'static str,
        /// What was wrong (never the key itself).
        reason: String,
    },
    /// The origin line is not a valid signed-note key name (non-empty, no spaces, no '+').
    #[error("invalid log origin {origin:?}: must be non-empty without spaces or '+'")]
    Origin {
        /// The rejected origin.
        origin: String,
    },
    /// A checkpoint or signed note does not parse.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// "checkpoint", "signed note", "tlog-proof", "tile path", ...
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The checkpoint's signature does not verify with the given key, or no signature is by that key.
    #[error("checkpoint signature: {reason}")]
    Signature {
        /// What failed.
        reason: String,
    },
    /// The checkpoint is for another log.
    #[error("checkpoint origin {got:?}, want {want:?}")]
    OriginMismatch {
        /// The checkpoint's origin line.
        got: String,
        /// The origin we trust.
        want: String,
    },
    /// An inclusion or consistency proof does not lead to the checkpoint's root.
    #[error("{kind} proof does not verify: {reason}")]
    Proof {
        /// "inclusion" or "consistency".
        kind: &'static str,
        /// What failed.
        reason: String,
    },
    /// A request for an index, size or tile the tree does not have (yet).
    #[error("{what} {got} out of range (tree size {size})")]
    OutOfRange {
        /// "index", "tree size", "tile".
        what: &'static str,
        /// The requested value.
        got: String,
        /// The tree size it was checked against.
        size: u64,
    },
    /// Fetching a tile or checkpoint from a log server failed.
    #[error("fetch {url}: {reason}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// A tile or entry bundle did not authenticate against the checkpoint.
    #[error("tile {path} does not match the checkpoint: {reason}")]
    Tile {
        /// The tile path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A PostgreSQL log (HA) could not be reached, read or written. The message is the server's or
    /// the driver's, which never holds the conninfo's password.
    #[error("postgresql log: {op}: {source}")]
    Postgres {
        /// What we were doing ("connect", "insert entries", "commit", ...).
        op: &'static str,
        /// The driver's error.
        #[source]
        source: postgres::Error,
    },
    /// The PostgreSQL log's conninfo or contents are not usable (not a conninfo, no such log).
    #[error("postgresql log: {reason}")]
    Database {
        /// What was wrong (never the password).
        reason: String,
    },
    /// The database's log of this origin belongs to another key (every replica must use the same log
    /// key file).
    #[error("postgresql log: the database's {what} is {got}, this server's is {want}")]
    LogMismatch {
        /// "log key".
        what: &'static str,
        /// What the database holds (a public verifier key).
        got: String,
        /// What this server is configured with.
        want: String,
    },
    /// The sequencer runs over another kind of log than the caller asked for.
    #[error("the sequencer's log is kept in a {got}, not a {want}")]
    WrongBackend {
        /// The kind asked for.
        want: &'static str,
        /// The kind the sequencer has.
        got: &'static str,
    },
}

impl TlogError {
    /// [`TlogError::OutOfRange`] unless entry `index` is in a tree of `size` entries: the one bounds
    /// check of every reader, writer and client that takes an index from a caller.
    pub(crate) fn check_index(index: u64, size: u64) -> Result<(), Self> {
        if index >= size {
            return Err(Self::OutOfRange {
                what: "index",
                got: index.to_string(),
                size,
            });
        }
        Ok(())
    }

    /// [`TlogError::OutOfRange`] unless a tree of `tree_size` is within `limit` (the published size,
    /// or the newer tree of a consistency proof).
    pub(crate) fn check_tree_size(tree_size: u64, limit: u64) -> Result<(), Self> {
        if tree_size > limit {
            return Err(Self::OutOfRange {
                what: "tree size",
                got: tree_size.to_string(),
                size: limit,
            });
        }
        Ok(())
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(what: &'static str, got: impl ToString, want: impl ToString) -> Self {
        Self::Corrupt {
            what,
            got: got.to_string(),
            want: want.to_string(),
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl ToString) -> Self {
        Self::Malformed {
            what,
            reason: reason.to_string(),
        }
    }
}

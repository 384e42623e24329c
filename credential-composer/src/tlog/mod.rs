//! The transparency log of credential-provenance records (issue #5 item 2): every credential the
//! composer issues leaves one entry here before it leaves the server.
//!
//! Formats are the C2SP transparency-log family, so auditors and relying parties use standard tools:
//! - **Hashing**: RFC 6962 (SHA-256, `0x00` leaf / `0x01` node prefixes); leaf = the entry bytes.
//! - **Checkpoints**: c2sp.org/tlog-checkpoint in a c2sp.org/signed-note with an Ed25519 key named by
//!   the origin ([`LogKey`], [`LogVerifier`], [`SignedCheckpoint`]).
//! - **Tiles**: c2sp.org/tlog-tiles, height 8: `checkpoint`, `tile/<L>/<N>[.p/<W>]`,
//!   `tile/entries/<N>[.p/<W>]` ([`TileId`], served by [`serve`]).
//! - **Proofs**: c2sp.org/tlog-proof@v1 text ([`InclusionProof`]) and RFC 6962 consistency proofs.
//!
//! The tree maths, note format and checkpoint text are Cloudflare azul's `tlog_tiles` and
//! `signed_note` crates (ports of Go's `golang.org/x/mod/sumdb/tlog` and `sumdb/note`); this module adds
//! the durable storage ([`Log`]), batching ([`Sequencer`]), the tile server, the tile client
//! ([`TiledLog`]) and typed verification.
//!
//! Writing: one [`Log`] per directory (flock'ed). Appends are durable when they return: one fdatasync
//! of a journal record holding the batch and its signed checkpoint, then the checkpoint is published
//! to readers; the data files are fsynced on compaction (see `log.rs`). [`Log::open`] recovers after
//! a crash. The [`Sequencer`] groups concurrent appends into one fsync and one signature.
//!
//! HA: SPIRE servers sharing a PostgreSQL datastore share one log in PostgreSQL ([`PgLog`]): each
//! replica runs a [`Sequencer`] over it ([`Sequencer::start_backend`]), one batch = one transaction
//! under the log row's lock (one sequencer at a time across replicas), and any replica serves the
//! tiles ([`PgLogReader`], [`spawn_server_for`]). [`LogBackend`] and [`TileSource`] are what the
//! sequencer and the tile server need of either kind of log.
//!
//! Not here (yet): witness cosignatures, gzip of entry bundles, pruning.

mod backend;
mod checkpoint;
mod client;
mod error;
mod log;
mod pg;
mod proof;
mod reader;
mod sequencer;
mod server;
mod storage;
mod tile;

pub use backend::{LogBackend, TileSource};
pub use checkpoint::{
    LogKey, LogVerifier, SignedCheckpoint, VerifiedCheckpoint, MAX_CHECKPOINT_NOTE,
};
pub use client::{HttpFetcher, TileFetcher, TiledLog};
pub use error::TlogError;
pub use log::{Appended, Log};
pub use pg::{PgLog, PgLogReader};
pub use proof::{
    check_consistency, check_inclusion, InclusionProof, VerifiedInclusion, MAX_PROOF_HASHES,
    MAX_TLOG_PROOF, TLOG_PROOF_HEADER,
};
pub use reader::LogReader;
pub use sequencer::{Sequencer, SequencerConfig};
pub use server::{
    router, router_for, serve, serve_listener, serve_source, serve_source_listener, spawn_server,
    spawn_server_for, ServerHandle,
};
pub use storage::MAX_ENTRY_SIZE;
pub use tile::{tiles_for_tree_size, TileId, TileKind, MAX_TILE_LEVEL, TILE_HEIGHT, TILE_WIDTH};
/// A SHA-256 Merkle tree hash (base64 in checkpoints and proofs).
pub use tlog_tiles::Hash;

/// RFC 6962 leaf hash of a log entry: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    tlog_tiles::record_hash(entry)
}

/// RFC 6962 root of the empty tree: `SHA-256("")`.
pub const EMPTY_TREE_HASH: Hash = tlog_tiles::EMPTY_HASH;

#[cfg(test)]
mod tests;

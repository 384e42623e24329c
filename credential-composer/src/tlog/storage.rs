//! The files of a log directory and how to read them. Writing (and recovery) is in `log.rs`.
//!
//! ```text
//! <dir>/entries       the entries, each as big-endian u16 length || bytes (tlog-tiles' bundle framing,
//!                     so an entry bundle is one contiguous byte range); the source of truth
//! <dir>/entries.idx   big-endian u64 byte offset of each entry in `entries` (derived, rebuildable)
//! <dir>/hashes        every stored Merkle hash, 32 bytes each, in Go tlog's stored-hash order
//!                     (`stored_hash_index`: record n's leaf hash then the subtrees it completes;
//!                     derived, rebuildable from `entries`)
//! <dir>/checkpoint    the latest signed checkpoint, for readers; replaced atomically (temp file,
//!                     rename) only after the journal record covering its entries is fsynced
//! <dir>/journal       the writer's commit log, the one file a batch fsyncs: a base record (the size
//!                     up to which the three files above are fsynced) and one self-checking record
//!                     per batch since (its entries and checkpoint); see `log.rs`
//! <dir>/lock          flock'ed by the one writer
//! ```
//!
//! Everything below the checkpoint's tree size is immutable, so readers (the HTTP server, auditors, even
//! in another process) read without locks: they read the checkpoint first, and never look past its size.
//! Between a crash and the writer's next open, the unsynced tail of `entries`, `entries.idx` and
//! `hashes` may be missing although the checkpoint covers it (its entries are durable in the journal);
//! readers then get I/O errors for that range until the writer replays the journal.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use tlog_tiles::{Hash, HashReader, HASH_SIZE};

use super::checkpoint::SignedCheckpoint;
use super::tile::{TileId, TileKind, TILE_WIDTH};
use super::TlogError;

pub(crate) const ENTRIES: &str = "entries";
pub(crate) const INDEX: &str = "entries.idx";
pub(crate) const HASHES: &str = "hashes";
pub(crate) const CHECKPOINT: &str = "checkpoint";
pub(crate) const CHECKPOINT_TMP: &str = "checkpoint.tmp";
pub(crate) const JOURNAL: &str = "journal";
pub(crate) const JOURNAL_TMP: &str = "journal.tmp";
pub(crate) const LOCK: &str = "lock";

/// Bytes of one `entries.idx` record.
pub(crate) const INDEX_WIDTH: u64 = 8;
/// Bytes of one stored hash.
pub(crate) const HASH_WIDTH: u64 = HASH_SIZE as u64;
/// Largest entry: bundles frame entries with a u16 length.
pub const MAX_ENTRY_SIZE: usize = u16::MAX as usize;
/// A run of wanted hashes at most this far apart is read with one `pread`.
const COALESCE_SPAN: u64 = 1024;

/// Open handles on the data files of a log directory.
pub(crate) struct Store {
    pub(crate) dir: PathBuf,
    pub(crate) entries: File,
    pub(crate) index: File,
    pub(crate) hashes: File,
}

impl Store {
    pub(crate) fn open(dir: &Path, write: bool) -> Result<Self, TlogError> {
        let open = |name: &str| {
            let path = dir.join(name);
            std::fs::OpenOptions::new()
                .read(true)
                .write(write)
                .create(write)
                .truncate(false)
                .open(&path)
                .map_err(|e| TlogError::io("open", path, e))
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            entries: open(ENTRIES)?,
            index: open(INDEX)?,
            hashes: open(HASHES)?,
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(crate) fn len_of(&self, file: &File, name: &str) -> Result<u64, TlogError> {
        file.metadata()
            .map(|m| m.len())
            .map_err(|e| TlogError::io("stat", self.path(name), e))
    }

    pub(crate) fn read_at(
        &self,
        file: &File,
        name: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), TlogError> {
        file.read_exact_at(buf, offset)
            .map_err(|e| TlogError::io("read", self.path(name), e))
    }

    /// Byte offset of entry `i` in `entries`.
    pub(crate) fn entry_offset(&self, i: u64) -> Result<u64, TlogError> {
        let mut buf = [0u8; 8];
        self.read_at(&self.index, INDEX, i.saturating_mul(INDEX_WIDTH), &mut buf)?;
        Ok(u64::from_be_bytes(buf))
    }

    /// Length of the entry stored at byte `offset`.
    pub(crate) fn entry_len_at(&self, offset: u64) -> Result<u64, TlogError> {
        let mut buf = [0u8; 2];
        self.read_at(&self.entries, ENTRIES, offset, &mut buf)?;
        Ok(u64::from(u16::from_be_bytes(buf)))
    }

    /// Byte offset just past entry `i` (its framing included).
    pub(crate) fn entry_end(&self, i: u64) -> Result<u64, TlogError> {
        let offset = self.entry_offset(i)?;
        Ok(offset + 2 + self.entry_len_at(offset)?)
    }

    /// Entry `i`'s bytes (no framing). The caller has checked `i` is below a checkpoint's size.
    pub(crate) fn entry(&self, i: u64) -> Result<Vec<u8>, TlogError> {
        let offset = self.entry_offset(i)?;
        let len = self.entry_len_at(offset)?;
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(MAX_ENTRY_SIZE)];
        self.read_at(&self.entries, ENTRIES, offset + 2, &mut buf)?;
        Ok(buf)
    }

    /// One stored hash.
    pub(crate) fn hash(&self, stored_index: u64) -> Result<Hash, TlogError> {
        let mut buf = [0u8; HASH_SIZE];
        self.read_at(
            &self.hashes,
            HASHES,
            stored_index.saturating_mul(HASH_WIDTH),
            &mut buf,
        )?;
        Ok(Hash(buf))
    }

    /// The bytes of a tile (hash tile or entry bundle). The caller has checked that the tree it serves
    /// contains the tile (`TileId::required_tree_size`).
    pub(crate) fn tile(&self, tile: TileId) -> Result<Vec<u8>, TlogError> {
        match tile.kind() {
            TileKind::Hashes { .. } => {
                let reader = self.hash_reader(&[], 0);
                let go_tile = tile.to_go_tile()?;
                reader.run(|r| go_tile.read_data(r))
            }
            TileKind::Entries => {
                let first = tile.index().saturating_mul(u64::from(TILE_WIDTH));
                let last = first + u64::from(tile.width()) - 1;
                let start = self.entry_offset(first)?;
                let end = self.entry_end(last)?;
                let len = end.checked_sub(start).ok_or_else(|| {
                    TlogError::corrupt("entry offsets", format!("{start}..{end}"), "increasing")
                })?;
                let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
                self.read_at(&self.entries, ENTRIES, start, &mut buf)?;
                Ok(buf)
            }
        }
    }

    /// A `tlog_tiles::HashReader` over the `hashes` file, with `pending` hashes (not yet written) from
    /// stored index `pending_base` on.
    pub(crate) fn hash_reader<'a>(
        &'a self,
        pending: &'a [Hash],
        pending_base: u64,
    ) -> StoreHashReader<'a> {
        StoreHashReader {
            store: self,
            pending,
            pending_base,
            cache: RefCell::new(HashMap::new()),
            error: RefCell::new(None),
        }
    }

    /// RFC 6962 root of the first `size` entries.
    pub(crate) fn tree_hash(&self, size: u64) -> Result<Hash, TlogError> {
        self.hash_reader(&[], 0)
            .run(|r| tlog_tiles::tree_hash(size, r))
    }

    /// Audit path of entry `index` in the tree of `size`.
    pub(crate) fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TlogError> {
        TlogError::check_index(index, size)?;
        self.hash_reader(&[], 0)
            .run(|r| tlog_tiles::prove_record(size, index, r))
    }

    /// Consistency proof from the tree of `old` to the tree of `new`.
    pub(crate) fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, TlogError> {
        TlogError::check_tree_size(old, new)?;
        if old == 0 {
            return Ok(Vec::new());
        }
        self.hash_reader(&[], 0)
            .run(|r| tlog_tiles::prove_tree(new, old, r))
    }

    /// Re-derives every stored hash and every index record from `entries` and compares them with the
    /// files, then checks the root against `checkpoint`. O(size): for `twi log verify` on a log directory,
    /// not for every open.
    pub(crate) fn verify_all(&self, checkpoint: &SignedCheckpoint) -> Result<(), TlogError> {
        let size = checkpoint.size();
        let entries_len = self.len_of(&self.entries, ENTRIES)?;
        let mut offset = 0u64;
        for i in 0..size {
            let recorded = self.entry_offset(i)?;
            if recorded != offset {
                return Err(TlogError::corrupt(
                    "entries.idx offset",
                    format!("entry {i} at {recorded}"),
                    offset,
                ));
            }
            let len = self.entry_len_at(offset)?;
            if offset + 2 + len > entries_len {
                return Err(TlogError::corrupt(
                    "entries file",
                    format!("{entries_len} bytes"),
                    format!("entry {i} of {len} bytes at byte {offset}"),
                ));
            }
            let entry = self.entry(i)?;
            offset += 2 + len;
            let want = self
                .hash_reader(&[], 0)
                .run(|r| tlog_tiles::stored_hashes(i, &entry, r))?;
            let base = tlog_tiles::stored_hash_index(0, i);
            for (k, h) in want.iter().enumerate() {
                let got = self.hash(base + k as u64)?;
                if got != *h {
                    return Err(TlogError::corrupt(
                        "stored hash",
                        format!("{got} at stored index {}", base + k as u64),
                        format!("{h} (from entry {i})"),
                    ));
                }
            }
        }
        let root = self.tree_hash(size)?;
        if root != checkpoint.root() {
            return Err(TlogError::corrupt(
                "tree root",
                root,
                format!("{} (checkpoint)", checkpoint.root()),
            ));
        }
        Ok(())
    }
}

/// Reads stored hashes for the Go-ported tree maths: coalesces nearby reads into one `pread`, caches
/// what it read (one reader lives for one batch or request), and keeps the first I/O error so the
/// caller gets it typed instead of `tlog_tiles::Error`'s string.
pub(crate) struct StoreHashReader<'a> {
    store: &'a Store,
    pending: &'a [Hash],
    pending_base: u64,
    cache: RefCell<HashMap<u64, Hash>>,
    error: RefCell<Option<TlogError>>,
}

impl StoreHashReader<'_> {
    /// Runs one of `tlog_tiles`' functions, mapping its errors (and ours it carried) to `TlogError`.
    pub(crate) fn run<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, tlog_tiles::Error>,
    ) -> Result<T, TlogError> {
        let result = f(self);
        if let Some(e) = self.error.borrow_mut().take() {
            return Err(e);
        }
        result.map_err(|e| TlogError::corrupt("tree hashes", e, "readable Merkle tree"))
    }

    fn read_file(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut i = 0;
        while let Some(&first) = indexes.get(i) {
            if let Some(h) = self.cache.borrow().get(&first) {
                out.push(*h);
                i += 1;
                continue;
            }
            // Extend the run while indexes ascend within COALESCE_SPAN of its start.
            let mut j = i + 1;
            while let Some(&x) = indexes.get(j) {
                let prev = indexes.get(j - 1).copied().unwrap_or(first);
                if x < prev || x - first >= COALESCE_SPAN {
                    break;
                }
                j += 1;
            }
            let last = indexes.get(j - 1).copied().unwrap_or(first);
            let count = usize::try_from(last - first + 1).unwrap_or(usize::MAX);
            let mut buf = vec![0u8; count * HASH_SIZE];
            self.store.read_at(
                &self.store.hashes,
                HASHES,
                first.saturating_mul(HASH_WIDTH),
                &mut buf,
            )?;
            let mut cache = self.cache.borrow_mut();
            for &x in indexes.get(i..j).unwrap_or_default() {
                let at = usize::try_from(x - first).unwrap_or(usize::MAX) * HASH_SIZE;
                let h: [u8; HASH_SIZE] = buf
                    .get(at..at + HASH_SIZE)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| TlogError::corrupt("hash read", at, "in buffer"))?;
                cache.insert(x, Hash(h));
                out.push(Hash(h));
            }
            i = j;
        }
        Ok(out)
    }
}

impl StoreHashReader<'_> {
    fn pending_hash(&self, x: u64) -> Option<Hash> {
        let k = usize::try_from(x.checked_sub(self.pending_base)?).ok()?;
        self.pending.get(k).copied()
    }
}

impl HashReader for StoreHashReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let file_indexes: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|&x| self.pending_hash(x).is_none())
            .collect();
        let from_file = match self.read_file(&file_indexes) {
            Ok(v) => v,
            Err(e) => {
                *self.error.borrow_mut() = Some(e);
                return Err(tlog_tiles::Error::InvalidInput("I/O error".into()));
            }
        };
        let mut from_file = from_file.into_iter();
        indexes
            .iter()
            .map(|&x| {
                self.pending_hash(x)
                    .or_else(|| from_file.next())
                    .ok_or(tlog_tiles::Error::BadMath)
            })
            .collect()
    }
}

//! The writer: durable batched appends, checkpoint publication and crash recovery.
//!
//! Guarantees: an acknowledged entry is never lost; the `checkpoint` file other processes read (the
//! tile server, auditors) never shows a tree whose entries are not yet durable; after a crash at any
//! point [`Log::open`] recovers the old or the new checkpoint, and never a tree that contradicts a
//! checkpoint anyone could have seen. If acknowledged data is damaged (disk fault, hand-edited
//! files), `open` fails with [`TlogError::Corrupt`] instead of serving a different tree.
//!
//! How, with **one fsync per batch**: a batch is written to the data files (`entries`, `entries.idx`,
//! `hashes`) without syncing them, and as one self-checking record (its entries and its signed
//! checkpoint, SHA-256 over the record) appended to `journal`, which alone is `fdatasync`ed. That
//! fsync is the commit point: the batch is acknowledged after it, and only after it is the new
//! checkpoint handed to readers (a temp file renamed over `checkpoint`, not synced: after a crash it
//! may be the old one, which is consistent with everything, and recovery republishes it durably).
//! The journal starts with a base record, the tree size up to which the data files were fsynced;
//! every `journal_limit` bytes (and on every open) the log *compacts*: fsyncs the data files and
//! replaces the journal by a new base (temp file, fsync, rename, fsync of the directory).
//!
//! Recovery ([`Log::open`], and [`Log::recover`] after a failed append): the data files are trusted
//! up to the base (they were fsynced before it was written; short derived files are rebuilt from
//! `entries`, and the root must match the base checkpoint); then every whole journal record is
//! replayed over them (rewriting whatever a crash left past the base) and its checkpoint checked
//! (signature, size, root); the first record that is cut short or fails its checksum ends the
//! journal: it was never fsynced, so never acknowledged, and its checkpoint never published. Then
//! the log compacts and republishes `checkpoint` durably.
//!
//! Why not the earlier scheme (fsync of the three data files and a temp checkpoint, then rename and a
//! directory fsync, per batch): measured on this project's virtio ext4 disk, each extra file to
//! fdatasync in a round and the rename + directory fsync each add about one disk flush (~0.2–0.3 ms),
//! so a batch cost four to six flushes instead of one.
//!
//! What a reader in another process may see *between a crash and the writer's next open*: the
//! `checkpoint` it reads covers durable entries (in the journal), but the unsynced tail of the data
//! files it reads may be missing (it gets I/O errors) until the writer replays the journal; clients
//! verify tiles against the signed root, so no wrong proof is accepted meanwhile.

mod journal;

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use tlog_tiles::Hash;

use super::checkpoint::{LogKey, SignedCheckpoint};
use super::proof::InclusionProof;
use super::storage::{
    Store, CHECKPOINT, CHECKPOINT_TMP, ENTRIES, HASHES, HASH_WIDTH, INDEX, INDEX_WIDTH, JOURNAL,
    JOURNAL_TMP, LOCK, MAX_ENTRY_SIZE,
};
use super::TlogError;

/// Journal bytes after which the next append first compacts (fsyncs the data files, restarts the
/// journal): bounds the journal's disk use and the replay work of an open (16 MiB: about 20,000
/// composer records, replayed in well under a second).
pub(crate) const DEFAULT_JOURNAL_LIMIT: u64 = 16 << 20;

/// What an append gives back for each entry: where it is, and the proof a relying party checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Appended {
    /// The entry's index in the log.
    pub index: u64,
    /// RFC 6962 leaf hash of the entry.
    pub leaf_hash: Hash,
    /// Inclusion proof against the checkpoint published by this append.
    pub proof: InclusionProof,
}

/// The single writer of a log directory.
pub struct Log {
    store: Store,
    key: LogKey,
    _lock: File,
    size: u64,
    entries_len: u64,
    checkpoint: SignedCheckpoint,
    poisoned: bool,
    /// `None` only while `open` recovers a log written before the journal existed.
    journal: Option<File>,
    /// Bytes of `journal` holding acknowledged records (and its base).
    journal_len: u64,
    journal_limit: u64,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.store.dir)
            .field("origin", &self.key.origin())
            .field("size", &self.size)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Creates a new, empty log in `dir` (created if missing) and publishes its size-0 checkpoint.
    ///
    /// # Errors
    /// [`TlogError::Directory`] if `dir` already holds a log, [`TlogError::Locked`], or I/O errors.
    pub fn create(dir: &Path, key: LogKey) -> Result<Self, TlogError> {
        std::fs::create_dir_all(dir).map_err(|e| TlogError::io("create", dir, e))?;
        let lock = lock_dir(dir)?;
        if dir.join(CHECKPOINT).exists() {
            return Err(TlogError::Directory {
                path: dir.to_path_buf(),
                reason: "already holds a log (checkpoint exists)",
            });
        }
        let store = Store::open(dir, true)?;
        for (file, name) in [
            (&store.entries, ENTRIES),
            (&store.index, INDEX),
            (&store.hashes, HASHES),
        ] {
            file.set_len(0)
                .and_then(|()| file.sync_all())
                .map_err(|e| TlogError::io("truncate", dir.join(name), e))?;
        }
        let checkpoint = key.sign_checkpoint(0, tlog_tiles::EMPTY_HASH)?;
        let (journal, journal_len) = write_journal_base(dir, 0, 0, &checkpoint)?;
        publish_checkpoint(dir, &checkpoint, true)?;
        Ok(Self {
            store,
            key,
            _lock: lock,
            size: 0,
            entries_len: 0,
            checkpoint,
            poisoned: false,
            journal: Some(journal),
            journal_len,
            journal_limit: DEFAULT_JOURNAL_LIMIT,
        })
    }

    /// Opens an existing log, recovering from a crash: see the module documentation.
    ///
    /// # Errors
    /// [`TlogError::Directory`] if there is no log, [`TlogError::Locked`], checkpoint verification
    /// errors (a checkpoint not signed by `key`), [`TlogError::Corrupt`], or I/O errors.
    pub fn open(dir: &Path, key: LogKey) -> Result<Self, TlogError> {
        if !dir.join(CHECKPOINT).exists() {
            return Err(TlogError::Directory {
                path: dir.to_path_buf(),
                reason: "holds no log (no checkpoint)",
            });
        }
        let lock = lock_dir(dir)?;
        let store = Store::open(dir, true)?;
        let checkpoint = read_checkpoint(dir)?;
        let journal = if dir.join(JOURNAL).exists() {
            Some(open_journal(dir)?)
        } else {
            None
        };
        let mut log = Self {
            store,
            key,
            _lock: lock,
            size: 0,
            entries_len: 0,
            checkpoint,
            poisoned: true,
            journal,
            journal_len: 0,
            journal_limit: DEFAULT_JOURNAL_LIMIT,
        };
        log.recover()?;
        Ok(log)
    }

    /// Opens the log in `dir`, creating it if there is none.
    ///
    /// # Errors
    /// As [`Log::open`] and [`Log::create`].
    pub fn open_or_create(dir: &Path, key: LogKey) -> Result<Self, TlogError> {
        if dir.join(CHECKPOINT).exists() {
            Self::open(dir, key)
        } else {
            Self::create(dir, key)
        }
    }

    /// Brings the files back to exactly the last durable checkpoint (see the module documentation),
    /// compacts, and republishes `checkpoint` durably. Run by `open`, and after a failed append before
    /// the log accepts appends again (then it first cuts the journal back to the last acknowledged
    /// record, so a record whose fsync failed is not trusted).
    ///
    /// # Errors
    /// Checkpoint verification errors, [`TlogError::Corrupt`] if acknowledged entries are missing or a
    /// root differs, or I/O errors.
    pub fn recover(&mut self) -> Result<(), TlogError> {
        self.poisoned = true;
        let dir = self.store.dir.clone();
        let journal_path = dir.join(JOURNAL);
        if let Some(journal) = self.journal.as_ref().filter(|_| self.journal_len > 0) {
            journal
                .set_len(self.journal_len)
                .map_err(|e| TlogError::io("truncate", &journal_path, e))?;
        }
        let parsed = if dir.join(JOURNAL).exists() {
            let bytes = std::fs::read(&journal_path)
                .map_err(|e| TlogError::io("read", &journal_path, e))?;
            journal::parse(&bytes)?
        } else {
            // A log written before the journal existed: every file was fsynced before its
            // checkpoint, so the published checkpoint is the base.
            let checkpoint = read_checkpoint(&dir)?;
            journal::Parsed {
                base: journal::Base {
                    size: checkpoint.size(),
                    entries_len: u64::MAX,
                    checkpoint,
                },
                batches: Vec::new(),
            }
        };
        let base = &parsed.base;
        let verifier = self.key.verifier();
        let verified = verifier.verify_checkpoint(base.checkpoint.as_bytes())?;
        if verified.size() != base.size {
            return Err(TlogError::corrupt(
                "journal base",
                format!("size {}", base.size),
                format!("size {} (its checkpoint)", verified.size()),
            ));
        }
        let entries_len = self.recover_base(base.size, verified.root())?;
        if base.entries_len != u64::MAX && base.entries_len != entries_len {
            return Err(TlogError::corrupt(
                "entries file",
                format!("{entries_len} bytes for {} entries", base.size),
                format!("{} bytes (journal base)", base.entries_len),
            ));
        }
        self.size = base.size;
        self.entries_len = entries_len;
        let mut checkpoint = base.checkpoint.clone();
        for batch in &parsed.batches {
            if batch.first != self.size {
                return Err(TlogError::corrupt(
                    "journal batch",
                    format!("first index {}", batch.first),
                    self.size,
                ));
            }
            let staged = self.stage(&batch.entries)?;
            let verified = verifier.verify_checkpoint(batch.checkpoint.as_bytes())?;
            if verified.size() != staged.new_size || verified.root() != staged.root {
                return Err(TlogError::corrupt(
                    "journal batch checkpoint",
                    format!("size {} root {}", verified.size(), verified.root()),
                    format!(
                        "size {} root {} (its entries)",
                        staged.new_size, staged.root
                    ),
                ));
            }
            self.write_staged(&staged)?;
            self.size = staged.new_size;
            self.entries_len += staged.entry_bytes.len() as u64;
            checkpoint = batch.checkpoint.clone();
        }
        truncate(&self.store, &self.store.entries, ENTRIES, self.entries_len)?;
        truncate(
            &self.store,
            &self.store.index,
            INDEX,
            self.size * INDEX_WIDTH,
        )?;
        let hashes = tlog_tiles::stored_hash_count(self.size) * HASH_WIDTH;
        truncate(&self.store, &self.store.hashes, HASHES, hashes)?;
        self.checkpoint = checkpoint;
        self.compact_now()?;
        publish_checkpoint(&dir, &self.checkpoint, true)?;
        self.poisoned = false;
        Ok(())
    }

    /// Checks the data files up to the base of `size` entries and root `root` (rebuilding short
    /// derived files from `entries`), and returns the `entries` bytes they take. Nothing past them is
    /// trusted or truncated here: journal replay rewrites it.
    fn recover_base(&self, size: u64, root: Hash) -> Result<u64, TlogError> {
        // 1. entries.idx: keep the first `size` records, rebuilding any missing ones from `entries`.
        let index_len = self.store.len_of(&self.store.index, INDEX)?;
        let have = (index_len / INDEX_WIDTH).min(size);
        let entries_len = self.store.len_of(&self.store.entries, ENTRIES)?;
        let mut next_offset = if have == 0 {
            0
        } else {
            let last = self.store.entry_offset(have - 1)?;
            if last + 2 > entries_len {
                return Err(TlogError::corrupt(
                    "entries file",
                    format!("{entries_len} bytes"),
                    format!("entry {} at byte {last} (checkpoint size {size})", have - 1),
                ));
            }
            last + 2 + self.store.entry_len_at(last)?
        };
        let mut rebuilt = Vec::new();
        for i in have..size {
            if next_offset + 2 > entries_len {
                return Err(TlogError::corrupt(
                    "entries file",
                    format!("{entries_len} bytes, entry {i} missing"),
                    format!("{size} entries (checkpoint)"),
                ));
            }
            rebuilt.extend_from_slice(&next_offset.to_be_bytes());
            next_offset += 2 + self.store.entry_len_at(next_offset)?;
        }
        if next_offset > entries_len {
            return Err(TlogError::corrupt(
                "entries file",
                format!("{entries_len} bytes"),
                format!(">= {next_offset} bytes for {size} entries (checkpoint)"),
            ));
        }
        write_at(
            &self.store,
            &self.store.index,
            INDEX,
            have * INDEX_WIDTH,
            &rebuilt,
        )?;

        // 2. hashes: keep whole records' hashes, re-derive the rest from the entries.
        let hashes_len = self.store.len_of(&self.store.hashes, HASHES)? / HASH_WIDTH;
        let want = tlog_tiles::stored_hash_count(size);
        if hashes_len < want {
            // Largest k <= size whose hashes are all present.
            let (mut lo, mut hi) = (0u64, size);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if tlog_tiles::stored_hash_count(mid) <= hashes_len {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            let base = tlog_tiles::stored_hash_count(lo);
            let mut pending: Vec<Hash> = Vec::new();
            for i in lo..size {
                let entry = self.store.entry(i)?;
                let hashes = self
                    .store
                    .hash_reader(&pending, base)
                    .run(|r| tlog_tiles::stored_hashes(i, &entry, r))?;
                pending.extend(hashes);
            }
            let bytes: Vec<u8> = pending.iter().flat_map(|h| h.0).collect();
            write_at(
                &self.store,
                &self.store.hashes,
                HASHES,
                base * HASH_WIDTH,
                &bytes,
            )?;
        }

        // 3. The tree the files hold must be the one the checkpoint signed.
        let got = self.store.tree_hash(size)?;
        if got != root {
            return Err(TlogError::corrupt(
                "tree root",
                got,
                format!("{root} (checkpoint of size {size})"),
            ));
        }
        Ok(next_offset)
    }

    /// Makes the data files durable up to the current checkpoint and restarts the journal from
    /// there. Appends do it by themselves every `journal_limit` bytes of journal; call it to bound
    /// the next open's replay work, e.g. before a planned shutdown.
    ///
    /// # Errors
    /// [`TlogError::Poisoned`] or I/O errors (the log is then poisoned until [`Log::recover`]).
    pub fn compact(&mut self) -> Result<(), TlogError> {
        if self.poisoned {
            return Err(TlogError::Poisoned);
        }
        self.poisoned = true;
        self.compact_now()?;
        self.poisoned = false;
        Ok(())
    }

    fn compact_now(&mut self) -> Result<(), TlogError> {
        let dir = &self.store.dir;
        for (file, name) in [
            (&self.store.entries, ENTRIES),
            (&self.store.index, INDEX),
            (&self.store.hashes, HASHES),
        ] {
            file.sync_data()
                .map_err(|e| TlogError::io("fsync", dir.join(name), e))?;
        }
        let (journal, journal_len) =
            write_journal_base(dir, self.size, self.entries_len, &self.checkpoint)?;
        self.journal = Some(journal);
        self.journal_len = journal_len;
        Ok(())
    }

    /// Number of entries (the published checkpoint's tree size).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The latest published checkpoint.
    pub fn checkpoint(&self) -> &SignedCheckpoint {
        &self.checkpoint
    }

    /// The log's key (for its origin and vkey).
    pub fn key(&self) -> &LogKey {
        &self.key
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.store.dir
    }

    /// Appends `entries` in order, durably, under one fsync of each file and one new signed checkpoint,
    /// and returns for each its index and inclusion proof against that checkpoint.
    ///
    /// Blocks on disk I/O: from async code call it through `spawn_blocking`, or use the
    /// [`super::Sequencer`].
    ///
    /// # Errors
    /// [`TlogError::EmptyBatch`], [`TlogError::EntrySize`] (nothing written), [`TlogError::Poisoned`],
    /// or I/O errors; after an I/O error the log is poisoned until [`Log::recover`] succeeds, and none
    /// of the batch is acknowledged.
    pub fn append_batch<E: AsRef<[u8]>>(
        &mut self,
        entries: &[E],
    ) -> Result<Vec<Appended>, TlogError> {
        if self.poisoned {
            return Err(TlogError::Poisoned);
        }
        if entries.is_empty() {
            return Err(TlogError::EmptyBatch);
        }
        for (position, e) in entries.iter().enumerate() {
            if e.as_ref().len() > MAX_ENTRY_SIZE {
                return Err(TlogError::EntrySize {
                    position,
                    len: e.as_ref().len(),
                    max: MAX_ENTRY_SIZE,
                });
            }
        }
        self.poisoned = true;
        let appended = self.write_batch(entries)?;
        self.poisoned = false;
        Ok(appended)
    }

    fn write_batch<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<Vec<Appended>, TlogError> {
        if self.journal_len >= self.journal_limit {
            self.compact_now()?;
        }
        let staged = self.stage(entries)?;
        let checkpoint = self.key.sign_checkpoint(staged.new_size, staged.root)?;
        // Proofs before anything is written: nothing can fail once the checkpoint is published.
        let reader = self.store.hash_reader(&staged.pending, staged.base);
        let mut out = Vec::with_capacity(entries.len());
        for (k, leaf_hash) in staged.leaf_hashes.iter().enumerate() {
            let index = self.size + k as u64;
            let hashes = reader.run(|r| tlog_tiles::prove_record(staged.new_size, index, r))?;
            out.push(Appended {
                index,
                leaf_hash: *leaf_hash,
                proof: InclusionProof {
                    index,
                    hashes,
                    checkpoint: checkpoint.clone(),
                    extra: None,
                },
            });
        }
        drop(reader);
        self.write_staged(&staged)?;
        // The commit point: one record, one fdatasync.
        let record =
            journal::encode_batch(self.size, entries.len(), &staged.entry_bytes, &checkpoint)?;
        let journal_path = self.store.path(JOURNAL);
        let journal = self.journal.as_ref().ok_or(TlogError::Poisoned)?;
        journal
            .write_all_at(&record, self.journal_len)
            .map_err(|e| TlogError::io("write", &journal_path, e))?;
        journal
            .sync_data()
            .map_err(|e| TlogError::io("fdatasync", &journal_path, e))?;
        // Durable now; readers may see it. A failure here (e.g. the directory is gone, so the
        // files written are unlinked ones) fails the batch: nothing was published, and recovery
        // cuts the journal back to the last acknowledged record.
        publish_checkpoint(&self.store.dir, &checkpoint, false)?;
        self.journal_len += record.len() as u64;
        self.size = staged.new_size;
        self.entries_len += staged.entry_bytes.len() as u64;
        self.checkpoint = checkpoint;
        Ok(out)
    }

    /// Frames a batch for the data files and computes its stored hashes and the new root.
    fn stage<E: AsRef<[u8]>>(&self, entries: &[E]) -> Result<Staged, TlogError> {
        let old_size = self.size;
        let base = tlog_tiles::stored_hash_count(old_size);
        let total: usize = entries.iter().map(|e| e.as_ref().len() + 2).sum();
        let mut entry_bytes = Vec::with_capacity(total);
        let mut index_bytes = Vec::with_capacity(entries.len() * 8);
        let mut pending: Vec<Hash> = Vec::with_capacity(entries.len() * 2);
        let mut leaf_hashes = Vec::with_capacity(entries.len());
        let reader = self.store.hash_reader(&[], base);
        for (k, e) in entries.iter().enumerate() {
            let e = e.as_ref();
            let i = old_size + k as u64;
            index_bytes
                .extend_from_slice(&(self.entries_len + entry_bytes.len() as u64).to_be_bytes());
            // Length checked by append_batch (and by the journal's framing on replay).
            entry_bytes
                .extend_from_slice(&u16::try_from(e.len()).unwrap_or(u16::MAX).to_be_bytes());
            entry_bytes.extend_from_slice(e);
            let leaf = tlog_tiles::record_hash(e);
            leaf_hashes.push(leaf);
            let with_pending = StoreWithPending {
                inner: &reader,
                pending: &pending,
                base,
            };
            let hashes = tlog_tiles::stored_hashes_for_record_hash(i, leaf, &with_pending)
                .map_err(|e| TlogError::corrupt("tree hashes", e, "readable Merkle tree"))?;
            pending.extend(hashes);
        }
        let new_size = old_size + entries.len() as u64;
        let root = self
            .store
            .hash_reader(&pending, base)
            .run(|r| tlog_tiles::tree_hash(new_size, r))?;
        Ok(Staged {
            entry_bytes,
            index_bytes,
            pending,
            leaf_hashes,
            base,
            new_size,
            root,
        })
    }

    /// Writes a staged batch into the data files at the current end (page cache; not synced).
    fn write_staged(&self, staged: &Staged) -> Result<(), TlogError> {
        let hash_bytes: Vec<u8> = staged.pending.iter().flat_map(|h| h.0).collect();
        write_at(
            &self.store,
            &self.store.entries,
            ENTRIES,
            self.entries_len,
            &staged.entry_bytes,
        )?;
        write_at(
            &self.store,
            &self.store.index,
            INDEX,
            self.size * INDEX_WIDTH,
            &staged.index_bytes,
        )?;
        write_at(
            &self.store,
            &self.store.hashes,
            HASHES,
            staged.base * HASH_WIDTH,
            &hash_bytes,
        )
    }

    /// Inclusion proof of entry `index` against the current checkpoint.
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] or I/O errors.
    pub fn prove(&self, index: u64) -> Result<InclusionProof, TlogError> {
        Ok(InclusionProof {
            index,
            hashes: self.store.inclusion_proof(index, self.size)?,
            checkpoint: self.checkpoint.clone(),
            extra: None,
        })
    }

    /// Audit path of entry `index` in the (earlier or current) tree of `tree_size`.
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] or I/O errors.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, TlogError> {
        self.check_size(tree_size)?;
        self.store.inclusion_proof(index, tree_size)
    }

    /// Consistency proof between two tree sizes of this log.
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] or I/O errors.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, TlogError> {
        self.check_size(new_size)?;
        self.store.consistency_proof(old_size, new_size)
    }

    /// Entry `index`.
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] or I/O errors.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, TlogError> {
        TlogError::check_index(index, self.size)?;
        self.store.entry(index)
    }

    /// Re-derives every hash from the entries and checks them and the root (O(size)).
    ///
    /// # Errors
    /// [`TlogError::Corrupt`] naming the first difference, or I/O errors.
    pub fn verify_storage(&self) -> Result<(), TlogError> {
        self.store.verify_all(&self.checkpoint)
    }

    /// Lowers the journal size that triggers compaction (tests exercise it without 16 MiB).
    #[cfg(test)]
    pub(crate) fn set_journal_limit(&mut self, bytes: u64) {
        self.journal_limit = bytes;
    }

    fn check_size(&self, tree_size: u64) -> Result<(), TlogError> {
        TlogError::check_tree_size(tree_size, self.size)?;
        Ok(())
    }
}

/// A hash reader for `stored_hashes_for_record_hash` while a batch is being built: hashes of this batch
/// come from `pending`, older ones from the file (through a caching reader).
struct StoreWithPending<'a, 'b> {
    inner: &'a super::storage::StoreHashReader<'b>,
    pending: &'a [Hash],
    base: u64,
}

impl tlog_tiles::HashReader for StoreWithPending<'_, '_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&x| match x.checked_sub(self.base) {
                Some(k) => usize::try_from(k)
                    .ok()
                    .and_then(|k| self.pending.get(k))
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree),
                None => self
                    .inner
                    .read_hashes(&[x])?
                    .first()
                    .copied()
                    .ok_or(tlog_tiles::Error::BadMath),
            })
            .collect()
    }
}

/// A batch framed and hashed, not yet written.
struct Staged {
    entry_bytes: Vec<u8>,
    index_bytes: Vec<u8>,
    pending: Vec<Hash>,
    leaf_hashes: Vec<Hash>,
    /// Stored-hash index of `pending[0]`.
    base: u64,
    new_size: u64,
    root: Hash,
}

fn lock_dir(dir: &Path) -> Result<File, TlogError> {
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| TlogError::io("open", &path, e))?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(TlogError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(TlogError::io("flock", path, e.into())),
    }
}

pub(crate) fn read_checkpoint(dir: &Path) -> Result<SignedCheckpoint, TlogError> {
    let path = dir.join(CHECKPOINT);
    let bytes = std::fs::read(&path).map_err(|e| TlogError::io("read", &path, e))?;
    SignedCheckpoint::parse(&bytes)
}

/// Replaces `<dir>/checkpoint` atomically (temp file, rename). `durable`: also fsync the temp file
/// before and the directory after (on create, open and recovery; appends rely on the journal).
fn publish_checkpoint(
    dir: &Path,
    checkpoint: &SignedCheckpoint,
    durable: bool,
) -> Result<(), TlogError> {
    replace_file(
        dir,
        CHECKPOINT_TMP,
        CHECKPOINT,
        checkpoint.as_bytes(),
        durable,
    )
}

/// Replaces `<dir>/<name>` by `bytes` atomically: written to `<dir>/<tmp_name>`, renamed over it.
/// `durable`: the temp file is fsynced before the rename and the directory after it.
fn replace_file(
    dir: &Path,
    tmp_name: &str,
    name: &str,
    bytes: &[u8],
    durable: bool,
) -> Result<(), TlogError> {
    let tmp: PathBuf = dir.join(tmp_name);
    let target = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| TlogError::io("create", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| if durable { file.sync_all() } else { Ok(()) })
        .map_err(|e| TlogError::io("write", &tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, &target).map_err(|e| TlogError::io("rename", &target, e))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Replaces `<dir>/journal` by one holding only a base record, durably; returns it open for
/// appending and its length.
fn write_journal_base(
    dir: &Path,
    size: u64,
    entries_len: u64,
    checkpoint: &SignedCheckpoint,
) -> Result<(File, u64), TlogError> {
    let record = journal::encode_base(size, entries_len, checkpoint);
    replace_file(dir, JOURNAL_TMP, JOURNAL, &record, true)?;
    Ok((open_journal(dir)?, record.len() as u64))
}

fn open_journal(dir: &Path) -> Result<File, TlogError> {
    let path = dir.join(JOURNAL);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| TlogError::io("open", path, e))
}

fn sync_dir(dir: &Path) -> Result<(), TlogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| TlogError::io("fsync", dir, e))
}

fn write_at(
    store: &Store,
    file: &File,
    name: &str,
    offset: u64,
    bytes: &[u8],
) -> Result<(), TlogError> {
    if bytes.is_empty() {
        return Ok(());
    }
    file.write_all_at(bytes, offset)
        .map_err(|e| TlogError::io("write", store.path(name), e))
}

fn truncate(store: &Store, file: &File, name: &str, len: u64) -> Result<(), TlogError> {
    let current = store.len_of(file, name)?;
    if current != len {
        file.set_len(len)
            .map_err(|e| TlogError::io("truncate", store.path(name), e))?;
    }
    Ok(())
}

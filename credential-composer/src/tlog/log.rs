//! The writer: durable batched appends, checkpoint publication and crash recovery.
//!
//! An append is durable when its call returns: entries, index and hashes are written and fsynced,
//! then a checkpoint covering them is signed and published atomically (temp file, fsync, rename, fsync
//! of the directory). A crash at any point leaves either the old checkpoint or the new one; data past
//! the published checkpoint was never acknowledged and [`Log::open`] truncates it. Data below it was
//! fsynced before the checkpoint was, so an acknowledged entry is never lost; if it is (disk damage, a
//! hand-truncated file), `open` fails with [`TlogError::Corrupt`] instead of serving a different tree.
//! The index and hashes files are derived from `entries`, and rebuilt from it when short.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use tlog_tiles::Hash;

use super::checkpoint::{LogKey, SignedCheckpoint};
use super::proof::InclusionProof;
use super::storage::{
    Store, CHECKPOINT, CHECKPOINT_TMP, ENTRIES, HASHES, HASH_WIDTH, INDEX, INDEX_WIDTH, LOCK,
    MAX_ENTRY_SIZE,
};
use super::TlogError;

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
        publish_checkpoint(dir, &checkpoint)?;
        Ok(Self {
            store,
            key,
            _lock: lock,
            size: 0,
            entries_len: 0,
            checkpoint,
            poisoned: false,
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
        let mut log = Self {
            store,
            key,
            _lock: lock,
            size: 0,
            entries_len: 0,
            checkpoint,
            poisoned: true,
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

    /// Brings the files back to exactly the published checkpoint: drops unacknowledged data past it,
    /// rebuilds the derived index and hashes when short, and checks the root. Run by `open`, and after
    /// a failed append before the log accepts appends again.
    ///
    /// # Errors
    /// Checkpoint verification errors, [`TlogError::Corrupt`] if acknowledged entries are missing or the
    /// root differs, or I/O errors.
    pub fn recover(&mut self) -> Result<(), TlogError> {
        self.poisoned = true;
        let dir = self.store.dir.clone();
        let on_disk = read_checkpoint(&dir)?;
        let verified = self.key.verifier().verify_checkpoint(on_disk.as_bytes())?;
        let size = verified.size();

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
        truncate(&self.store, &self.store.index, INDEX, size * INDEX_WIDTH)?;
        truncate(&self.store, &self.store.entries, ENTRIES, next_offset)?;

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
        truncate(&self.store, &self.store.hashes, HASHES, want * HASH_WIDTH)?;
        for (file, name) in [
            (&self.store.entries, ENTRIES),
            (&self.store.index, INDEX),
            (&self.store.hashes, HASHES),
        ] {
            file.sync_all()
                .map_err(|e| TlogError::io("fsync", dir.join(name), e))?;
        }

        // 3. The tree the files hold must be the one the checkpoint signed.
        let root = self.store.tree_hash(size)?;
        if root != verified.root() {
            return Err(TlogError::corrupt(
                "tree root",
                root,
                format!("{} (checkpoint of size {size})", verified.root()),
            ));
        }
        self.size = size;
        self.entries_len = next_offset;
        self.checkpoint = on_disk;
        self.poisoned = false;
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
        let old_size = self.size;
        let base = tlog_tiles::stored_hash_count(old_size);
        let total: usize = entries.iter().map(|e| e.as_ref().len() + 2).sum();
        let mut entry_bytes = Vec::with_capacity(total);
        let mut index_bytes = Vec::with_capacity(entries.len() * 8);
        let mut pending: Vec<Hash> = Vec::with_capacity(entries.len() * 2);
        let mut leaf_hashes = Vec::with_capacity(entries.len());
        {
            let reader = self.store.hash_reader(&[], base);
            for (k, e) in entries.iter().enumerate() {
                let e = e.as_ref();
                let i = old_size + k as u64;
                index_bytes.extend_from_slice(
                    &(self.entries_len + entry_bytes.len() as u64).to_be_bytes(),
                );
                // Length checked by append_batch.
                entry_bytes
                    .extend_from_slice(&u16::try_from(e.len()).unwrap_or(u16::MAX).to_be_bytes());
                entry_bytes.extend_from_slice(e);
                let leaf = tlog_tiles::record_hash(e);
                leaf_hashes.push(leaf);
                let reader = StoreWithPending {
                    inner: &reader,
                    pending: &pending,
                    base,
                };
                let hashes = tlog_tiles::stored_hashes_for_record_hash(i, leaf, &reader)
                    .map_err(|e| TlogError::corrupt("tree hashes", e, "readable Merkle tree"))?;
                pending.extend(hashes);
            }
        }
        let hash_bytes: Vec<u8> = pending.iter().flat_map(|h| h.0).collect();
        write_at(
            &self.store,
            &self.store.entries,
            ENTRIES,
            self.entries_len,
            &entry_bytes,
        )?;
        write_at(
            &self.store,
            &self.store.index,
            INDEX,
            old_size * INDEX_WIDTH,
            &index_bytes,
        )?;
        write_at(
            &self.store,
            &self.store.hashes,
            HASHES,
            base * HASH_WIDTH,
            &hash_bytes,
        )?;

        let new_size = old_size + entries.len() as u64;
        let reader = self.store.hash_reader(&pending, base);
        let root = reader.run(|r| tlog_tiles::tree_hash(new_size, r))?;
        let checkpoint = self.key.sign_checkpoint(new_size, root)?;
        // Durability: the data files and the new checkpoint's temp file are synced concurrently (the
        // file system merges them into one journal commit), and only then is the checkpoint renamed
        // into place. A crash before the rename leaves the old checkpoint and unacknowledged data
        // that recovery drops.
        let dir = &self.store.dir;
        let results: Vec<Result<(), TlogError>> = std::thread::scope(|scope| {
            let syncs: Vec<_> = [
                (&self.store.entries, ENTRIES),
                (&self.store.index, INDEX),
                (&self.store.hashes, HASHES),
            ]
            .into_iter()
            .map(|(file, name)| {
                scope.spawn(move || {
                    file.sync_data()
                        .map_err(|e| TlogError::io("fsync", dir.join(name), e))
                })
            })
            .collect();
            let tmp = write_checkpoint_tmp(dir, &checkpoint);
            let mut results: Vec<_> = syncs
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(TlogError::io(
                            "fsync",
                            dir,
                            std::io::Error::other("sync thread panicked"),
                        ))
                    })
                })
                .collect();
            results.push(tmp);
            results
        });
        for r in results {
            r?;
        }
        commit_checkpoint(dir)?;
        self.size = new_size;
        self.entries_len += entry_bytes.len() as u64;
        self.checkpoint = checkpoint.clone();

        let mut out = Vec::with_capacity(entries.len());
        for (k, leaf_hash) in leaf_hashes.into_iter().enumerate() {
            let index = old_size + k as u64;
            let hashes = reader.run(|r| tlog_tiles::prove_record(new_size, index, r))?;
            out.push(Appended {
                index,
                leaf_hash,
                proof: InclusionProof {
                    index,
                    hashes,
                    checkpoint: checkpoint.clone(),
                    extra: None,
                },
            });
        }
        Ok(out)
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
        if index >= self.size {
            return Err(TlogError::OutOfRange {
                what: "index",
                got: index.to_string(),
                size: self.size,
            });
        }
        self.store.entry(index)
    }

    /// Re-derives every hash from the entries and checks them and the root (O(size)).
    ///
    /// # Errors
    /// [`TlogError::Corrupt`] naming the first difference, or I/O errors.
    pub fn verify_storage(&self) -> Result<(), TlogError> {
        self.store.verify_all(&self.checkpoint)
    }

    fn check_size(&self, tree_size: u64) -> Result<(), TlogError> {
        if tree_size > self.size {
            return Err(TlogError::OutOfRange {
                what: "tree size",
                got: tree_size.to_string(),
                size: self.size,
            });
        }
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

/// Replaces `<dir>/checkpoint` atomically and durably.
fn publish_checkpoint(dir: &Path, checkpoint: &SignedCheckpoint) -> Result<(), TlogError> {
    write_checkpoint_tmp(dir, checkpoint)?;
    commit_checkpoint(dir)
}

/// Writes and syncs `<dir>/checkpoint.tmp`.
fn write_checkpoint_tmp(dir: &Path, checkpoint: &SignedCheckpoint) -> Result<(), TlogError> {
    let tmp: PathBuf = dir.join(CHECKPOINT_TMP);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| TlogError::io("create", &tmp, e))?;
    file.write_all(checkpoint.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| TlogError::io("write", &tmp, e))
}

/// Renames the synced temp checkpoint into place and syncs the directory entry.
fn commit_checkpoint(dir: &Path) -> Result<(), TlogError> {
    let target = dir.join(CHECKPOINT);
    std::fs::rename(dir.join(CHECKPOINT_TMP), &target)
        .map_err(|e| TlogError::io("rename", &target, e))?;
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

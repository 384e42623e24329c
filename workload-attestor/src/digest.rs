//! The SHA-256 of an executable, hashed from an open file descriptor and checked not to have changed.
//!
//! The descriptor comes from opening `/proc/<pid>/exe`, so it is the file the process runs, whatever its
//! path names now. The file's [`FileIdentity`] is taken before and after hashing; if they differ, the
//! digest describes no single version of the file and is refused. The same identity keys the digest cache
//! ([`crate::cache`]): a file whose device, inode, size, modification and change times are all unchanged is
//! taken to have unchanged content, which is what makes a repeat cost one `fstat`.
//!
//! What this does not see: a writer that changes the content without changing size, mtime or ctime (the
//! kernel updates ctime on every write through the page cache, so this takes a file system that lies, such
//! as a hostile FUSE server), and pages of the process's memory that differ from the file on disk.

use std::fmt;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

/// Read size while hashing: large enough that syscalls do not dominate, small enough for the stack of a
/// blocking thread to stay unaffected (the buffer is on the heap anyway).
const CHUNK: usize = 256 * 1024;

/// What identifies one version of a file without reading it: where it lives and when it last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, seconds.
    pub mtime: i64,
    /// Last modification, nanoseconds.
    pub mtime_nsec: i64,
    /// Last status change (any write, chmod, rename …), seconds.
    pub ctime: i64,
    /// Last status change, nanoseconds.
    pub ctime_nsec: i64,
}

impl FileIdentity {
    /// The identity of the file `meta` describes.
    #[must_use]
    pub fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }

    /// Whether both name the same file (device and inode), whatever its content.
    #[must_use]
    pub fn same_file(&self, other: &Self) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

impl fmt::Display for FileIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dev {:#x} inode {} size {} mtime {}.{:09} ctime {}.{:09}",
            self.dev, self.ino, self.size, self.mtime, self.mtime_nsec, self.ctime, self.ctime_nsec
        )
    }
}

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The file is larger than the limit; nothing was read.
    #[error("{size} bytes, over the limit of {max}")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The file changed during hashing.
    #[error("changed while hashed ({before} then {after})")]
    Changed {
        /// Before hashing.
        before: FileIdentity,
        /// After hashing (the size is what was actually read when that differs from `fstat`).
        after: FileIdentity,
    },
    /// `fstat` or a read failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Hashes `file` from offset 0 (positioned reads, so a shared descriptor's offset does not matter) and
/// returns the digest with the identity it belongs to.
///
/// # Errors
///
/// [`DigestError::TooLarge`] before reading if `fstat` says the file is over `max` bytes;
/// [`DigestError::Changed`] if the identity after hashing differs from the one before, or the number of
/// bytes read differs from the size; [`DigestError::Io`] on an OS error.
pub fn hash_file(file: &File, max: u64) -> Result<(FileIdentity, Sha256Digest), DigestError> {
    let before = FileIdentity::of(&file.metadata()?);
    if before.size > max {
        return Err(DigestError::TooLarge {
            size: before.size,
            max,
        });
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut offset: u64 = 0;
    // Read one chunk past the size fstat gave, bounded by `max`, so growth during hashing is noticed
    // without ever reading more than the limit allows.
    let stop = before.size.saturating_add(1).min(max.saturating_add(1));
    while offset < stop {
        let n = match file.read_at(&mut buf, offset) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        hasher.update(buf.get(..n).unwrap_or_default());
        offset = offset.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
    let mut after = FileIdentity::of(&file.metadata()?);
    if offset != before.size && after == before {
        after.size = offset;
    }
    if after != before {
        return Err(DigestError::Changed { before, after });
    }
    Ok((before, hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::io::Write;

    fn sha(bytes: &[u8]) -> Sha256Digest {
        Sha256::digest(bytes).into()
    }

    #[test]
    fn hashes_whole_file_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        let content: Vec<u8> = (0..CHUNK * 2 + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = File::open(&path).unwrap();
        let (id, digest) = hash_file(&file, u64::MAX).unwrap();
        assert_eq!(digest, sha(&content));
        assert_eq!(id.size, content.len() as u64);
        assert_eq!(id, FileIdentity::of(&std::fs::metadata(&path).unwrap()));
        // Empty files hash too.
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        let (_, d) = hash_file(&File::open(dir.path().join("empty")).unwrap(), 0).unwrap();
        assert_eq!(d, sha(b""));
    }

    #[test]
    fn limit_is_checked_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, [7u8; 100]).unwrap();
        let file = File::open(&path).unwrap();
        assert!(matches!(
            hash_file(&file, 99),
            Err(DigestError::TooLarge { size: 100, max: 99 })
        ));
        assert!(hash_file(&file, 100).is_ok());
    }

    #[test]
    fn a_write_after_open_changes_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, b"version 1").unwrap();
        let file = File::open(&path).unwrap();
        let (id1, d1) = hash_file(&file, 1 << 20).unwrap();
        // Same length, new content: size is equal, so only mtime/ctime can tell.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        w.write_all(b"version 2").unwrap();
        drop(w);
        let (id2, d2) = hash_file(&file, 1 << 20).unwrap();
        assert_ne!(d1, d2);
        assert_ne!(id1, id2, "the cache key must change with the content");
        assert!(id1.same_file(&id2));
    }

    #[test]
    fn display_names_the_fields() {
        let id = FileIdentity {
            dev: 0x803,
            ino: 42,
            size: 7,
            mtime: 1,
            mtime_nsec: 2,
            ctime: 3,
            ctime_nsec: 4,
        };
        assert_eq!(
            id.to_string(),
            "dev 0x803 inode 42 size 7 mtime 1.000000002 ctime 3.000000004"
        );
    }
}

//! The cache's file operations: whole-file atomic replacement and capped reads.
//!
//! A reader (this process, another SPIRE server sharing the directory, an operator copying it as an
//! offline bundle) sees either the old file or the new one, never a prefix: the bytes go to a
//! temporary file in the same directory, are flushed to disk, and the file is renamed over the target
//! (atomic on POSIX file systems); the directory is then synced so the rename survives a crash.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::CollateralError;

/// Distinguishes temporary files of concurrent writers within one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, directory fsync), creating the
/// parent directories. On failure the target is untouched and the temporary file removed.
///
/// # Errors
/// [`CollateralError::Cache`] naming the path and the I/O error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CollateralError> {
    let fail = |detail: String| CollateralError::Cache {
        path: path.to_path_buf(),
        detail,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| fail("no parent directory".into()))?;
    let name = path
        .file_name()
        .ok_or_else(|| fail("no file name".into()))?
        .to_string_lossy();
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("create directory: {e}")))?;
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e.to_string()));
    }
    // The rename is durable only once the directory entry is; failure here leaves a complete file.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/tcb_info.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("tcb_info.json")]);
    }

    #[test]
    fn failure_leaves_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the rename fails after the temporary file was written.
        let target = dir.path().join("pck_crl.der");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"x").unwrap();
        let e = write_atomic(&target, b"new").unwrap_err();
        assert!(matches!(e, CollateralError::Cache { .. }), "{e}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("pck_crl.der")]);
        assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"x");
    }
}

//! Creating a private key file exactly once, for every key the project generates on first start (the EAR
//! verifier key, the composer's provenance key).
//!
//! The key is written to a temporary file (mode 0600), synced, and hard-linked into place, so a crash never
//! leaves a half-written key at the path and two servers starting together end up with the same key: the
//! second link fails with "exists" and that caller loads the first one's key.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rand_core::CryptoRngCore;

/// An I/O failure on `path` while probing or creating a key file.
#[derive(Debug)]
pub struct KeyFileError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// What is at a key path before a key is generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Something is there: load it.
    Present,
    /// Nothing: generate a key and [`create_new`] it.
    Absent,
}

/// What [`create_new`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// Our key is now at the path.
    Written,
    /// Another process linked its key first: load that one.
    LostRace,
}

/// Whether a key file exists at `path`.
///
/// # Errors
/// Any metadata error other than "not found".
pub fn probe(path: &Path) -> Result<Existing, KeyFileError> {
    match fs::metadata(path) {
        Ok(_) => Ok(Existing::Present),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Existing::Absent),
        Err(source) => Err(KeyFileError {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Publishes `pem` at `path` (mode 0600) unless a file is already there; see the module doc.
///
/// # Errors
/// Writing or syncing the temporary file, linking it, or syncing the directory failed.
pub fn create_new(
    path: &Path,
    pem: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<Created, KeyFileError> {
    let err = |p: &Path| {
        let p = p.to_owned();
        move |source| KeyFileError { path: p, source }
    };
    let tmp = tmp_path(path, rng);
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(pem)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(&tmp)(e));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(err(dir))?;
            }
            Ok(Created::Written)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Created::LostRace),
        Err(e) => Err(err(path)(e)),
    }
}

fn tmp_path(path: &Path, rng: &mut impl CryptoRngCore) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp-{}-{:016x}",
        std::process::id(),
        rng.next_u64()
    ));
    path.with_file_name(name)
}

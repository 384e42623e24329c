//! A policy file that is re-read when it changes, so that a policy change takes effect at the next
//! attestation (SPIRE re-attests agents at every SVID rotation when `can_reattest` is on) without
//! restarting SPIRE.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::{Format, Policy, PolicyError, MAX_POLICY_LEN};

/// Reads at most [`MAX_POLICY_LEN`] bytes of `path`.
pub(super) fn read_capped(path: &Path) -> Result<Vec<u8>, PolicyError> {
    let io = |e: std::io::Error| PolicyError::Io {
        path: path.to_path_buf(),
        source: Arc::new(e),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    file.take(
        u64::try_from(MAX_POLICY_LEN)
            .unwrap_or(u64::MAX)
            .saturating_add(1),
    )
    .read_to_end(&mut buf)
    .map_err(io)?;
    if buf.len() > MAX_POLICY_LEN {
        return Err(PolicyError::TooLarge {
            len: u64::try_from(buf.len()).unwrap_or(u64::MAX),
            max: MAX_POLICY_LEN,
        }
        .in_file(path));
    }
    Ok(buf)
}

/// What says "the file changed" without reading it: size and modification time, and on Unix also the
/// inode (an atomic `mv` of a new file changes it) and the status-change time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
    #[cfg(unix)]
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Result<Stamp, PolicyError> {
    let m = std::fs::metadata(path).map_err(|e| PolicyError::Io {
        path: path.to_path_buf(),
        source: Arc::new(e),
    })?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    Ok(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        #[cfg(unix)]
        inode: (m.dev(), m.ino()),
        #[cfg(unix)]
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// What [`PolicyFile::poll`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reload {
    /// The policy in force is the one of the previous call (the file is unchanged, or was rewritten with
    /// the same bytes).
    Unchanged,
    /// A new policy was read from the file; `previous` is the digest of the policy in force before, if
    /// one was (the caller logs the change: old and new digest).
    Reloaded { previous: Option<[u8; 32]> },
}

#[derive(Debug)]
struct State {
    /// The stamp taken before the last read; `None` after the file could not be `stat`ed.
    stamp: Option<Stamp>,
    /// SHA-256 of the bytes last read.
    sha256: [u8; 32],
    /// What those bytes gave.
    result: Result<Arc<Policy>, PolicyError>,
}

/// A policy file, re-read when it changes.
///
/// [`PolicyFile::current`] costs one `stat` and an uncontended lock while the file is unchanged. When
/// the stamp (size, modification time, inode, status-change time) differs, it reads the file again;
/// if the bytes are the same (SHA-256), the policy in force stays; otherwise the new document is
/// parsed and becomes the policy — or, if it does not parse, the error does.
///
/// **A broken file fails closed.** After a change that does not parse (or a file that disappeared),
/// `current` returns the error, naming the file and the key, at every call until the file is fixed; it
/// does *not* keep using the previous policy. Why, for a security reviewer: a policy change is usually
/// a tightening (a revoked image measurement removed, a TCB minimum raised). Keeping the old policy on
/// a typo would keep accepting exactly what the operator meant to refuse, while everything looks fine
/// and the file on disk says otherwise; the policy digest recorded with each appraisal would name a
/// policy that is no longer on disk. Refusing turns the typo into a visible outage, limited in time:
/// agents that attested keep their SVIDs until they rotate, every refusal carries the error, and the
/// next attestation after the fix succeeds. To avoid the outage, check a new file before installing it
/// (`Policy::load`) and install it with an atomic rename (`mv` within one filesystem), so no reader
/// ever sees a half-written file.
///
/// Limits: a rewrite that keeps size, modification time, inode and status-change time (within the
/// filesystem's timestamp granularity) is not noticed until the next change; [`PolicyFile::reload`]
/// forces a re-read.
#[derive(Debug)]
pub struct PolicyFile {
    path: PathBuf,
    state: Mutex<State>,
}

impl PolicyFile {
    /// Loads the policy at `path`. An unusable file is an error here, so a server refuses to start
    /// (Configure fails) rather than run without a policy.
    ///
    /// # Errors
    /// As [`Policy::load`].
    pub fn open(path: impl Into<PathBuf>) -> Result<PolicyFile, PolicyError> {
        let path = path.into();
        let before = stamp(&path)?;
        let bytes = read_capped(&path)?;
        let policy = parse(&path, &bytes)?;
        Ok(PolicyFile {
            state: Mutex::new(State {
                stamp: Some(before),
                sha256: Sha256::digest(&bytes).into(),
                result: Ok(Arc::new(policy)),
            }),
            path,
        })
    }

    /// The file this policy is read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The policy in force now, re-read first if the file changed. Callers take it once per
    /// attestation and use that `Arc` for appraisal, selectors and the recorded policy id, so all three
    /// agree even if the file changes meanwhile.
    ///
    /// # Errors
    /// The file's error (see the type documentation: fail closed), wrapped in
    /// [`PolicyError::InFile`].
    pub fn current(&self) -> Result<Arc<Policy>, PolicyError> {
        self.poll().map(|(p, _)| p)
    }

    /// As [`PolicyFile::current`], and whether a new policy came into force with this call.
    ///
    /// # Errors
    /// As [`PolicyFile::current`].
    pub fn poll(&self) -> Result<(Arc<Policy>, Reload), PolicyError> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = match stamp(&self.path) {
            Ok(s) => s,
            Err(e) => {
                let e = in_file_once(e, &self.path);
                st.stamp = None;
                st.result = Err(e.clone());
                return Err(e);
            }
        };
        if st.stamp == Some(now) {
            return st.result.clone().map(|p| (p, Reload::Unchanged));
        }
        self.reread(&mut st, now)
    }

    /// Reads the file now, whatever its stamp says.
    ///
    /// # Errors
    /// As [`PolicyFile::current`].
    pub fn reload(&self) -> Result<(Arc<Policy>, Reload), PolicyError> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = match stamp(&self.path) {
            Ok(s) => s,
            Err(e) => {
                let e = in_file_once(e, &self.path);
                st.stamp = None;
                st.result = Err(e.clone());
                return Err(e);
            }
        };
        self.reread(&mut st, now)
    }

    /// SHA-256 of the file's bytes as last read (not the policy digest: that one ignores formatting).
    pub fn file_sha256(&self) -> [u8; 32] {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sha256
    }

    fn reread(&self, st: &mut State, now: Stamp) -> Result<(Arc<Policy>, Reload), PolicyError> {
        // The stamp is taken before reading: a write that lands during the read changes the stamp
        // again, and the next call reads once more.
        st.stamp = Some(now);
        let bytes = match read_capped(&self.path) {
            Ok(b) => b,
            Err(e) => {
                let e = in_file_once(e, &self.path);
                st.result = Err(e.clone());
                return Err(e);
            }
        };
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        if sha256 == st.sha256 {
            if let Ok(p) = &st.result {
                return Ok((Arc::clone(p), Reload::Unchanged));
            }
        }
        st.sha256 = sha256;
        let previous = st.result.as_ref().ok().map(|p| p.digest());
        match parse(&self.path, &bytes) {
            Ok(policy) => {
                let policy = Arc::new(policy);
                st.result = Ok(Arc::clone(&policy));
                Ok((policy, Reload::Reloaded { previous }))
            }
            Err(e) => {
                st.result = Err(e.clone());
                Err(e)
            }
        }
    }
}

/// Names the file in `e` unless it already does (I/O errors carry their path).
fn in_file_once(e: PolicyError, path: &Path) -> PolicyError {
    match e {
        e @ (PolicyError::InFile { .. } | PolicyError::Io { .. }) => e,
        e => e.in_file(path),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Policy, PolicyError> {
    Policy::from_bytes(bytes, Format::from_path(path)).map_err(|e| e.in_file(path))
}

/// Where a server's policy comes from: inline in its configuration (changes with a reconfiguration)
/// or a file (changes when the file does).
#[derive(Debug)]
#[non_exhaustive]
pub enum PolicySource {
    Inline(Arc<Policy>),
    File(PolicyFile),
}

impl PolicySource {
    /// The policy in force now; see [`PolicyFile::current`].
    ///
    /// # Errors
    /// Only for a file source: the file's error (fail closed).
    pub fn current(&self) -> Result<Arc<Policy>, PolicyError> {
        match self {
            PolicySource::Inline(p) => Ok(Arc::clone(p)),
            PolicySource::File(f) => f.current(),
        }
    }
}

//! Everything read about one process, in an order that makes PID reuse and `execve` visible.
//!
//! A PID names a process only until it exits; the kernel then hands the number to the next process. And a
//! process may `execve` another file at any time, which changes its executable (and, for set-ID files, its
//! credentials) but not its PID or start time. [`take`] therefore reads:
//!
//! 1. the start time (field 22 of `stat`);
//! 2. the executable: opens `exe` (the descriptor pins the very file, even if it is later replaced or
//!    deleted) and `fstat`s it;
//! 3. the credentials (`status`), the cgroups (`cgroup`) and the executable's path (the `exe` link);
//! 4. the start time again: if it changed, the PID now names another process → [`AttestError::PidReused`];
//! 5. `stat` of `exe`: if it is no longer the file opened in 2, the process executed another file in
//!    between → [`AttestError::ExecChanged`].
//!
//! Every read of 3 happened between 2 and 5, so all of them belong to the one process and the one program
//! checked there. Hashing (in [`crate::digest`]) happens afterwards, from the descriptor of 2.
//!
//! What remains: an `execve` of the *same* file between 2 and 5 is not seen (nothing that matters changes,
//! except set-ID credentials, which step 3 then reads after the exec); a PID reused within the same clock
//! tick (10 ms) by a process with the same start time is not seen — the kernel would have to cycle through
//! the whole PID space within one tick.

use std::fs::File;
use std::path::PathBuf;

use crate::digest::FileIdentity;
use crate::error::AttestError;
use crate::proc::{parse_start_time, parse_status, Credentials, ProcFs};

/// The executable of a process, opened once.
#[derive(Debug)]
pub struct Exe {
    /// The path as the process's mount namespace names it (ends in ` (deleted)` if it was removed).
    pub path: PathBuf,
    /// The open file: hash from here, never from `path`.
    pub file: File,
    /// Its identity at open time.
    pub identity: FileIdentity,
}

/// What [`take`] read about one process.
#[derive(Debug)]
pub struct Snapshot {
    /// The PID.
    pub pid: u32,
    /// Start time in clock ticks after boot (the same at the first and last read).
    pub start_time: u64,
    /// Effective UID, GID and supplementary groups.
    pub credentials: Credentials,
    /// The raw `/proc/<pid>/cgroup` text (parsed by [`crate::cgroup`]).
    pub cgroup: Vec<u8>,
    /// The executable, when asked for.
    pub exe: Option<Exe>,
}

/// Validates a PID from the wire: SPIRE sends an `int32`; only positive values name a process.
///
/// # Errors
///
/// [`AttestError::InvalidPid`] for zero or a negative value.
pub fn checked_pid(pid: i32) -> Result<u32, AttestError> {
    u32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or(AttestError::InvalidPid {
            pid: i64::from(pid),
        })
}

/// Reads one process as described in the module doc; `want_exe` opens its executable too.
///
/// # Errors
///
/// [`AttestError::ProcessGone`] if the process does not exist or exits mid-way,
/// [`AttestError::NoExecutable`] for a zombie or kernel thread (when `want_exe`),
/// [`AttestError::PidReused`], [`AttestError::ExecChanged`], [`AttestError::Denied`] when the agent lacks
/// the rights to read `exe`, [`AttestError::Malformed`] for a kernel file of an unknown format.
pub fn take(proc: &dyn ProcFs, pid: u32, want_exe: bool) -> Result<Snapshot, AttestError> {
    let before = start_time(proc, pid)?;

    let opened = if want_exe {
        let exe_err = |e| exe_error(proc, pid, e);
        let file = proc.open_exe(pid).map_err(exe_err)?;
        let identity = file
            .metadata()
            .map(|m| FileIdentity::of(&m))
            .map_err(|e| AttestError::from_io(proc.path(pid, "exe"), e))?;
        Some((file, identity))
    } else {
        None
    };

    let status = proc
        .read(pid, "status")
        .map_err(|e| AttestError::from_proc_io(pid, proc.path(pid, "status"), e))?;
    let credentials = parse_status(&status).map_err(|e| AttestError::Malformed {
        path: proc.path(pid, "status"),
        detail: e.to_string(),
    })?;
    let cgroup = proc
        .read(pid, "cgroup")
        .map_err(|e| AttestError::from_proc_io(pid, proc.path(pid, "cgroup"), e))?;
    let exe_path = match &opened {
        Some(_) => Some(proc.exe_link(pid).map_err(|e| exe_error(proc, pid, e))?),
        None => None,
    };

    let after = start_time(proc, pid)?;
    if after != before {
        return Err(AttestError::PidReused { pid, before, after });
    }

    let exe = match (opened, exe_path) {
        (Some((file, identity)), Some(path)) => {
            let now = proc
                .stat_exe(pid)
                .map(|m| FileIdentity::of(&m))
                .map_err(|e| exe_error(proc, pid, e))?;
            if !now.same_file(&identity) {
                return Err(AttestError::ExecChanged {
                    pid,
                    before: Box::new(identity),
                    after: Box::new(now),
                });
            }
            Some(Exe {
                path,
                file,
                identity,
            })
        }
        _ => None,
    };

    Ok(Snapshot {
        pid,
        start_time: before,
        credentials,
        cgroup,
        exe,
    })
}

/// Field 22 of `<pid>/stat`.
fn start_time(proc: &dyn ProcFs, pid: u32) -> Result<u64, AttestError> {
    let path = || proc.path(pid, "stat");
    let stat = proc
        .read(pid, "stat")
        .map_err(|e| AttestError::from_proc_io(pid, path(), e))?;
    parse_start_time(&stat).map_err(|e| AttestError::Malformed {
        path: path(),
        detail: e.to_string(),
    })
}

/// An error on `exe`: "not found" while `stat` still exists means a zombie or kernel thread, not a
/// vanished PID.
fn exe_error(proc: &dyn ProcFs, pid: u32, e: std::io::Error) -> AttestError {
    match AttestError::from_proc_io(pid, proc.path(pid, "exe"), e) {
        AttestError::ProcessGone { pid } if proc.read(pid, "stat").is_ok() => {
            AttestError::NoExecutable { pid }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::proc::ProcDir;
    use std::fs::Metadata;
    use std::io;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    const PID: u32 = 4242;

    fn stat(start: u64) -> String {
        format!(
            "{PID} (work er) S 1 {PID} {PID} 0 -1 4194304 96 0 0 0 0 0 0 0 20 0 1 0 {start} 5828608 229 \
             18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }

    const STATUS: &str =
        "Name:\tworker\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nGroups:\t100 27\n";

    /// A fake `/proc` with one process whose `exe` links to a file in the same temp dir.
    struct FakeProc {
        dir: tempfile::TempDir,
    }

    impl FakeProc {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join(PID.to_string());
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("stat"), stat(500)).unwrap();
            std::fs::write(p.join("status"), STATUS).unwrap();
            std::fs::write(p.join("cgroup"), "0::/system.slice/worker.service\n").unwrap();
            std::fs::write(dir.path().join("worker-v1"), b"program one").unwrap();
            std::fs::write(dir.path().join("worker-v2"), b"program two").unwrap();
            std::os::unix::fs::symlink(dir.path().join("worker-v1"), p.join("exe")).unwrap();
            Self { dir }
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        fn pid_dir(&self) -> PathBuf {
            self.dir.path().join(PID.to_string())
        }

        fn relink(&self, target: &str) {
            let link = self.pid_dir().join("exe");
            std::fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink(self.root().join(target), link).unwrap();
        }
    }

    /// A [`ProcFs`] over a fake root that runs `hook` after the `n`-th read of `status`, so a test can
    /// change the fake process between the first and the last read of [`take`].
    struct Interleaved {
        inner: ProcDir,
        reads: AtomicUsize,
        hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl Interleaved {
        fn new(root: &Path, hook: impl FnOnce() + Send + 'static) -> Self {
            Self {
                inner: ProcDir::new(root),
                reads: AtomicUsize::new(0),
                hook: Mutex::new(Some(Box::new(hook))),
            }
        }
    }

    impl ProcFs for Interleaved {
        fn path(&self, pid: u32, name: &str) -> PathBuf {
            self.inner.path(pid, name)
        }
        fn read(&self, pid: u32, name: &str) -> io::Result<Vec<u8>> {
            let out = self.inner.read(pid, name);
            if name == "status" {
                self.reads.fetch_add(1, Ordering::SeqCst);
                if let Some(hook) = self.hook.lock().unwrap().take() {
                    hook();
                }
            }
            out
        }
        fn exe_link(&self, pid: u32) -> io::Result<PathBuf> {
            self.inner.exe_link(pid)
        }
        fn open_exe(&self, pid: u32) -> io::Result<File> {
            self.inner.open_exe(pid)
        }
        fn stat_exe(&self, pid: u32) -> io::Result<Metadata> {
            self.inner.stat_exe(pid)
        }
    }

    #[test]
    fn reads_a_stable_process() {
        let fake = FakeProc::new();
        let snap = take(&ProcDir::new(fake.root()), PID, true).unwrap();
        assert_eq!(snap.start_time, 500);
        assert_eq!(snap.credentials.uid, 1000);
        assert_eq!(snap.credentials.groups, vec![100, 27]);
        assert_eq!(snap.cgroup, b"0::/system.slice/worker.service\n");
        let exe = snap.exe.unwrap();
        assert_eq!(exe.path, fake.root().join("worker-v1"));
        let meta = std::fs::metadata(fake.root().join("worker-v1")).unwrap();
        assert_eq!(exe.identity, FileIdentity::of(&meta));
        // Without the executable, `exe` is not touched at all.
        std::fs::remove_file(fake.pid_dir().join("exe")).unwrap();
        let snap = take(&ProcDir::new(fake.root()), PID, false).unwrap();
        assert!(snap.exe.is_none());
    }

    #[test]
    fn start_time_change_is_pid_reuse() {
        let fake = FakeProc::new();
        let stat_path = fake.pid_dir().join("stat");
        let proc = Interleaved::new(fake.root(), move || {
            // The process exits and a new one gets its PID while we read its status.
            std::fs::write(&stat_path, stat(777)).unwrap();
        });
        let err = take(&proc, PID, true).unwrap_err();
        assert!(
            matches!(
                err,
                AttestError::PidReused {
                    pid: PID,
                    before: 500,
                    after: 777
                }
            ),
            "{err}"
        );
        assert_eq!(proc.reads.load(Ordering::SeqCst), 1);
        assert_eq!(err.code(), tonic::Code::NotFound);
    }

    #[test]
    fn exec_during_the_read_is_seen() {
        let fake = FakeProc::new();
        let root = fake.root().to_path_buf();
        let proc = Interleaved::new(fake.root(), move || {
            let link = root.join(PID.to_string()).join("exe");
            std::fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink(root.join("worker-v2"), link).unwrap();
        });
        let err = take(&proc, PID, true).unwrap_err();
        match &err {
            AttestError::ExecChanged { before, after, .. } => assert!(!before.same_file(after)),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(err.code(), tonic::Code::Aborted);
        // The same exec *before* the first read is simply the new program.
        fake.relink("worker-v2");
        let snap = take(&ProcDir::new(fake.root()), PID, true).unwrap();
        assert_eq!(snap.exe.unwrap().path, fake.root().join("worker-v2"));
    }

    #[test]
    fn exit_mid_way_is_process_gone() {
        let fake = FakeProc::new();
        let pid_dir = fake.pid_dir();
        let proc = Interleaved::new(fake.root(), move || {
            std::fs::remove_dir_all(&pid_dir).unwrap();
        });
        let err = take(&proc, PID, true).unwrap_err();
        assert!(
            matches!(err, AttestError::ProcessGone { pid: PID }),
            "{err}"
        );
    }

    #[test]
    fn missing_pid_zombie_and_bad_pid() {
        let fake = FakeProc::new();
        let proc = ProcDir::new(fake.root());
        assert!(matches!(
            take(&proc, PID + 1, false),
            Err(AttestError::ProcessGone { pid }) if pid == PID + 1
        ));
        // A zombie: stat is there, the exe link resolves to nothing.
        fake.relink("no-such-file");
        assert!(matches!(
            take(&proc, PID, true),
            Err(AttestError::NoExecutable { pid: PID })
        ));
        assert!(matches!(
            checked_pid(0),
            Err(AttestError::InvalidPid { pid: 0 })
        ));
        assert!(matches!(
            checked_pid(-5),
            Err(AttestError::InvalidPid { pid: -5 })
        ));
        assert_eq!(checked_pid(1).unwrap(), 1);
    }

    #[test]
    fn malformed_kernel_files_are_named() {
        let fake = FakeProc::new();
        std::fs::write(fake.pid_dir().join("status"), "Name:\tx\n").unwrap();
        let err = take(&ProcDir::new(fake.root()), PID, false).unwrap_err();
        match &err {
            AttestError::Malformed { path, detail } => {
                assert!(path.ends_with("4242/status"), "{path:?}");
                assert_eq!(detail, "no Uid");
            }
            other => panic!("unexpected {other}"),
        }
        std::fs::write(fake.pid_dir().join("stat"), "garbage").unwrap();
        let err = take(&ProcDir::new(fake.root()), PID, false).unwrap_err();
        assert!(
            matches!(&err, AttestError::Malformed { path, .. } if path.ends_with("4242/stat")),
            "{err}"
        );
    }

    #[test]
    fn the_real_process_reads_consistently() {
        let snap = take(&ProcDir::new("/proc"), std::process::id(), true).unwrap();
        let exe = snap.exe.unwrap();
        assert_eq!(
            exe.path,
            std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap()
        );
        assert!(!snap.cgroup.is_empty());
    }
}

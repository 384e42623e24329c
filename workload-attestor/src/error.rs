//! Why attesting one PID failed, and the one mapping from that to a gRPC status.
//!
//! SPIRE logs a workload attestor's error as `workload attestor "<name>" failed` with the code kept and drops
//! that plugin's selectors (protocol doc §7.3), so the message is the operator's only clue: every variant
//! names the PID and the file or field that failed. SPIRE's built-in `unix` attestor answers `Internal` for
//! almost everything; the codes here are finer so logs can be filtered ("process gone" vs "agent lacks
//! permission" vs "our bug"), and SPIRE treats all of them alike.

use std::io;
use std::path::PathBuf;

use tonic::{Code, Status};

use crate::digest::FileIdentity;

/// `ESRCH`: what reading `/proc/<pid>/…` returns when the process exits while the file is open.
const ESRCH: i32 = 3;

/// Why one attestation failed. Each variant carries what failed and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The PID is zero or negative; SPIRE never sends one, so the caller is broken.
    #[error("invalid pid {pid}: must be a positive integer")]
    InvalidPid {
        /// The PID as received.
        pid: i64,
    },
    /// `/proc/<pid>` does not exist (any more): the process exited before or during attestation.
    #[error("process {pid} not found: it has exited")]
    ProcessGone {
        /// The PID.
        pid: u32,
    },
    /// The process exists but has no executable: it has exited and not yet been reaped (a zombie), or it is
    /// a kernel thread. Neither can be a workload that is talking to the agent.
    #[error("process {pid} has no executable (it has exited, or it is a kernel thread)")]
    NoExecutable {
        /// The PID.
        pid: u32,
    },
    /// The start time (field 22 of `/proc/<pid>/stat`) changed between the first and the last read: the
    /// process exited and its PID now names another process, so what was read may mix the two.
    #[error(
        "process {pid} was replaced during attestation (start time {before} then {after} clock ticks): \
         the PID was reused"
    )]
    PidReused {
        /// The PID.
        pid: u32,
        /// Start time at the first read.
        before: u64,
        /// Start time at the last read.
        after: u64,
    },
    /// The process executed another file while it was being read, so its credentials and executable may
    /// belong to different programs.
    #[error("process {pid} executed another file during attestation ({before} then {after})")]
    ExecChanged {
        /// The PID.
        pid: u32,
        /// The executable opened first (boxed, like `after`: keeps every `Result` small).
        before: Box<FileIdentity>,
        /// What `/proc/<pid>/exe` named at the end.
        after: Box<FileIdentity>,
    },
    /// The executable file changed while it was hashed, so the digest describes no single version of it.
    #[error(
        "executable {path} of process {pid} changed while it was hashed ({before} then {after})"
    )]
    FileChanged {
        /// The PID.
        pid: u32,
        /// The executable's path as the process sees it.
        path: String,
        /// The file before hashing.
        before: Box<FileIdentity>,
        /// The file after hashing.
        after: Box<FileIdentity>,
    },
    /// The executable is larger than `max_digest_bytes`; hashing it would let any workload make the agent
    /// do unbounded work.
    #[error("executable {path} of process {pid} is {size} bytes, over max_digest_bytes = {max}")]
    TooLarge {
        /// The PID.
        pid: u32,
        /// The executable's path as the process sees it.
        path: String,
        /// Its size.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// The agent may not read a file of the process (usually `/proc/<pid>/exe` of another user's process).
    #[error(
        "reading {path}: permission denied (reading another user's /proc/<pid>/exe needs root or \
         CAP_SYS_PTRACE; or set discover_path = false and discover_digest = false): {source}"
    )]
    Denied {
        /// The file that could not be read.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Any other I/O failure.
    #[error("reading {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A kernel file did not have the format this plugin knows.
    #[error("malformed {path}: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Different cgroup lines of the process name different containers or pods; choosing one would be a
    /// guess, so nothing is chosen (as SPIRE's `containerinfo` does).
    #[error("process {pid}: conflicting {what} in its cgroups: {first} and {second}")]
    CgroupConflict {
        /// The PID.
        pid: u32,
        /// `container ID` or `pod UID`.
        what: &'static str,
        /// The first value seen.
        first: String,
        /// The value that disagreed.
        second: String,
    },
    /// A blocking task could not be run or joined; a fault of this plugin.
    #[error("internal error: {detail}")]
    Internal {
        /// What failed.
        detail: String,
    },
}

impl AttestError {
    /// Classifies an I/O error on a `/proc/<pid>/…` file: a missing file or `ESRCH` means the process is gone.
    #[must_use]
    pub fn from_proc_io(pid: u32, path: PathBuf, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(ESRCH) {
            return Self::ProcessGone { pid };
        }
        Self::from_io(path, source)
    }

    /// Classifies an I/O error on any file: permission problems get their own variant (and hint).
    #[must_use]
    pub fn from_io(path: PathBuf, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::PermissionDenied {
            Self::Denied { path, source }
        } else {
            Self::Io { path, source }
        }
    }

    /// The gRPC code: caller's fault → `InvalidArgument`; process gone → `NotFound`; a race that a retry may
    /// not hit → `Aborted`; over a limit → `ResourceExhausted`; agent lacks rights → `PermissionDenied`;
    /// ambiguous containers → `FailedPrecondition` (as SPIRE); anything else → `Internal`.
    #[must_use]
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidPid { .. } => Code::InvalidArgument,
            Self::ProcessGone { .. } | Self::NoExecutable { .. } | Self::PidReused { .. } => {
                Code::NotFound
            }
            Self::ExecChanged { .. } | Self::FileChanged { .. } => Code::Aborted,
            Self::TooLarge { .. } => Code::ResourceExhausted,
            Self::Denied { .. } => Code::PermissionDenied,
            Self::CgroupConflict { .. } => Code::FailedPrecondition,
            Self::Io { .. } | Self::Malformed { .. } | Self::Internal { .. } => Code::Internal,
        }
    }
}

impl From<&AttestError> for Status {
    fn from(err: &AttestError) -> Self {
        Status::new(err.code(), err.to_string())
    }
}

impl From<AttestError> for Status {
    fn from(err: AttestError) -> Self {
        Status::from(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_io_errors_are_classified() {
        let path = PathBuf::from("/proc/7/status");
        let gone = AttestError::from_proc_io(7, path.clone(), io::ErrorKind::NotFound.into());
        assert!(
            matches!(gone, AttestError::ProcessGone { pid: 7 }),
            "{gone}"
        );
        assert_eq!(gone.code(), Code::NotFound);
        let esrch = AttestError::from_proc_io(7, path.clone(), io::Error::from_raw_os_error(ESRCH));
        assert!(
            matches!(esrch, AttestError::ProcessGone { pid: 7 }),
            "{esrch}"
        );
        let denied =
            AttestError::from_proc_io(7, path.clone(), io::ErrorKind::PermissionDenied.into());
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.to_string().contains("/proc/7/status"), "{denied}");
        let other = AttestError::from_proc_io(7, path, io::ErrorKind::InvalidData.into());
        assert_eq!(other.code(), Code::Internal);
    }

    #[test]
    fn status_keeps_code_and_message() {
        let err = AttestError::PidReused {
            pid: 9,
            before: 10,
            after: 11,
        };
        let st = Status::from(&err);
        assert_eq!(st.code(), Code::NotFound);
        assert!(
            st.message().contains("start time 10 then 11"),
            "{}",
            st.message()
        );
        assert_eq!(
            Status::from(AttestError::InvalidPid { pid: -1 }).code(),
            Code::InvalidArgument
        );
    }
}

//! The `/proc` reads the attestor makes, behind a trait, and the parsers for `stat` and `status`.
//!
//! Every read goes through [`ProcFs`] so tests can serve a fake `/proc` (a directory with `<pid>/stat`,
//! `<pid>/status`, `<pid>/cgroup` and an `<pid>/exe` symlink) and change it between two reads, which is how
//! the PID-reuse and exec checks of [`crate::snapshot`] are tested. [`ProcDir`] is the real thing, rooted
//! at `proc_root` (default `/proc`, or the host's `/proc` mounted elsewhere when the agent runs in a
//! container).

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The largest `/proc/<pid>/{stat,status,cgroup}` read. Real files are a few KiB (`cgroup` with every v1
/// controller on deep paths stays far below); a larger one is refused rather than read without bound.
pub const MAX_PROC_FILE: usize = 64 * 1024;

/// The `/proc` operations the attestor needs.
pub trait ProcFs: Send + Sync + 'static {
    /// Where `<pid>/<name>` lives, for error messages.
    fn path(&self, pid: u32, name: &str) -> PathBuf;

    /// Reads `<pid>/<name>` (`stat`, `status`, `cgroup`).
    ///
    /// # Errors
    ///
    /// The OS error; `InvalidData` if the file is longer than [`MAX_PROC_FILE`].
    fn read(&self, pid: u32, name: &str) -> io::Result<Vec<u8>>;

    /// The target of `<pid>/exe`: the executable's path as the process's mount namespace names it.
    ///
    /// # Errors
    ///
    /// The OS error (`NotFound` for zombies and kernel threads, `PermissionDenied` without ptrace rights).
    fn exe_link(&self, pid: u32) -> io::Result<PathBuf>;

    /// Opens `<pid>/exe`, which the kernel resolves to the very file the process executes, even if it was
    /// since deleted or replaced on disk.
    ///
    /// # Errors
    ///
    /// As [`ProcFs::exe_link`].
    fn open_exe(&self, pid: u32) -> io::Result<File>;

    /// `stat` (following the link) of `<pid>/exe`: which file the process executes now.
    ///
    /// # Errors
    ///
    /// As [`ProcFs::exe_link`].
    fn stat_exe(&self, pid: u32) -> io::Result<Metadata>;
}

impl std::fmt::Debug for dyn ProcFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcFs")
    }
}

/// A real (or fake, in tests) `/proc` tree at `root`.
#[derive(Debug, Clone)]
pub struct ProcDir {
    root: PathBuf,
}

impl ProcDir {
    /// `/proc` at `root`.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root this reads under.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl ProcFs for ProcDir {
    fn path(&self, pid: u32, name: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(name)
    }

    fn read(&self, pid: u32, name: &str) -> io::Result<Vec<u8>> {
        read_capped(&self.path(pid, name), MAX_PROC_FILE)
    }

    fn exe_link(&self, pid: u32) -> io::Result<PathBuf> {
        std::fs::read_link(self.path(pid, "exe"))
    }

    fn open_exe(&self, pid: u32) -> io::Result<File> {
        File::open(self.path(pid, "exe"))
    }

    fn stat_exe(&self, pid: u32) -> io::Result<Metadata> {
        std::fs::metadata(self.path(pid, "exe"))
    }
}

/// Reads at most `limit` bytes of `path`; a longer file is `InvalidData`, never truncated silently.
///
/// # Errors
///
/// The OS error, or `InvalidData` for a file longer than `limit`.
pub fn read_capped(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut buf = Vec::with_capacity(4096);
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut buf)?;
    if buf.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {limit} bytes"),
        ));
    }
    Ok(buf)
}

/// Why a `/proc` file could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The file is not UTF-8 where it must be.
    #[error("not UTF-8")]
    NotUtf8,
    /// A field is missing.
    #[error("no {field}")]
    Missing {
        /// Which field.
        field: &'static str,
    },
    /// A field is not a number, or not the number of values wanted.
    #[error("bad {field}: {got:?}")]
    Bad {
        /// Which field.
        field: &'static str,
        /// What was there.
        got: String,
    },
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks after boot. Together with the
/// PID it names one process for the life of the system; a reused PID has a later start time.
///
/// The second field (`comm`, in parentheses) may itself contain spaces and `)`, so fields are counted from
/// the *last* `)`.
///
/// # Errors
///
/// [`ParseError`] if the line has no `)` or fewer than 22 fields, or field 22 is not a number.
pub fn parse_start_time(stat: &[u8]) -> Result<u64, ParseError> {
    let close = stat
        .iter()
        .rposition(|&b| b == b')')
        .ok_or(ParseError::Missing {
            field: "`)` closing the command name",
        })?;
    let rest = stat.get(close.saturating_add(1)..).unwrap_or_default();
    let rest = std::str::from_utf8(rest).map_err(|_| ParseError::NotUtf8)?;
    // After `)`: field 3 (state) is the first, so field 22 is the 20th.
    let field = rest
        .split_ascii_whitespace()
        .nth(22 - 3)
        .ok_or(ParseError::Missing {
            field: "field 22 (starttime)",
        })?;
    field.parse().map_err(|_| ParseError::Bad {
        field: "field 22 (starttime)",
        got: field.to_owned(),
    })
}

/// The credentials SPIRE's `unix` attestor reports, from `/proc/<pid>/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Effective UID (the second value of `Uid:`), which decides what the process may do.
    pub uid: u32,
    /// Effective GID (the second value of `Gid:`).
    pub gid: u32,
    /// Supplementary group IDs (`Groups:`), in the kernel's order.
    pub groups: Vec<u32>,
}

/// Parses `Uid:`, `Gid:` and `Groups:` of `/proc/<pid>/status`. Effective IDs, as SPIRE's `unix` attestor.
///
/// # Errors
///
/// [`ParseError`] if `Uid:` or `Gid:` is missing or does not hold four numbers, or a group is not a number.
pub fn parse_status(status: &[u8]) -> Result<Credentials, ParseError> {
    let text = std::str::from_utf8(status).map_err(|_| ParseError::NotUtf8)?;
    let mut uid = None;
    let mut gid = None;
    let mut groups = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "Uid" => uid = Some(effective_id("Uid", value)?),
            "Gid" => gid = Some(effective_id("Gid", value)?),
            "Groups" => {
                groups = value
                    .split_ascii_whitespace()
                    .map(|g| {
                        g.parse().map_err(|_| ParseError::Bad {
                            field: "Groups",
                            got: g.to_owned(),
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => {}
        }
    }
    Ok(Credentials {
        uid: uid.ok_or(ParseError::Missing { field: "Uid" })?,
        gid: gid.ok_or(ParseError::Missing { field: "Gid" })?,
        groups,
    })
}

/// The effective ID of a `Uid:`/`Gid:` line: `real effective saved filesystem`.
fn effective_id(field: &'static str, value: &str) -> Result<u32, ParseError> {
    let bad = || ParseError::Bad {
        field,
        got: value.trim().to_owned(),
    };
    let ids: Vec<&str> = value.split_ascii_whitespace().collect();
    if ids.len() != 4 {
        return Err(bad());
    }
    ids.get(1).and_then(|e| e.parse().ok()).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    /// A real line (from `cat /proc/self/stat`), with a hostile command name spliced in.
    fn stat_line(comm: &str, start: u64) -> String {
        format!(
            "4242 ({comm}) S 4200 4242 4200 34816 4242 4194304 96 0 0 0 0 0 0 0 20 0 1 0 {start} \
             5828608 229 18446744073709551615 94819382394880 94819382413217 140727434400640 0 0 0 0 0 \
             0 0 0 0 17 1 0 0 0 0 0 94819382426256 94819382427680 94819394539520 140727434407335 \
             140727434407355 140727434407355 140727434412011 0\n"
        )
    }

    #[test]
    fn start_time_is_field_22_even_with_a_hostile_comm() {
        assert_eq!(
            parse_start_time(stat_line("cat", 123_456).as_bytes()),
            Ok(123_456)
        );
        // `comm` may hold spaces and `)`; a naive split would read the wrong field.
        let tricky = stat_line("a) S 1 2 3 (b", 99);
        assert_eq!(parse_start_time(tricky.as_bytes()), Ok(99));
        assert_eq!(parse_start_time(stat_line("x y z", 7).as_bytes()), Ok(7));
    }

    #[test]
    fn start_time_errors() {
        assert!(matches!(
            parse_start_time(b"4242 cat S 1"),
            Err(ParseError::Missing { .. })
        ));
        assert!(matches!(
            parse_start_time(b"4242 (cat) S 1 2 3"),
            Err(ParseError::Missing { .. })
        ));
        let bad = stat_line("cat", 0).replace(" 0 5828608", " zz 5828608");
        assert!(
            matches!(parse_start_time(bad.as_bytes()), Err(ParseError::Bad { got, .. }) if got == "zz")
        );
    }

    const STATUS: &str =
        "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nPid:\t4242\n\
        PPid:\t4200\nUid:\t1000\t1001\t1002\t1003\nGid:\t2000\t2001\t2002\t2003\nFDSize:\t64\n\
        Groups:\t4 24 27 1000 \nNStgid:\t4242\n";

    #[test]
    fn status_gives_effective_ids_and_groups() {
        let c = parse_status(STATUS.as_bytes()).unwrap();
        assert_eq!(
            c,
            Credentials {
                uid: 1001,
                gid: 2001,
                groups: vec![4, 24, 27, 1000]
            }
        );
        let no_groups = STATUS.replace("Groups:\t4 24 27 1000 \n", "Groups:\t\n");
        assert!(parse_status(no_groups.as_bytes())
            .unwrap()
            .groups
            .is_empty());
    }

    #[test]
    fn status_errors() {
        let no_uid = STATUS.replace("Uid:", "Xid:");
        assert_eq!(
            parse_status(no_uid.as_bytes()),
            Err(ParseError::Missing { field: "Uid" })
        );
        let short = STATUS.replace("2000\t2001\t2002\t2003", "2000\t2001");
        assert!(matches!(
            parse_status(short.as_bytes()),
            Err(ParseError::Bad { field: "Gid", .. })
        ));
        let bad_group = STATUS.replace("27 1000", "27 wheel");
        assert!(matches!(
            parse_status(bad_group.as_bytes()),
            Err(ParseError::Bad { field: "Groups", got }) if got == "wheel"
        ));
        assert_eq!(parse_status(b"\xff\xfe"), Err(ParseError::NotUtf8));
    }

    #[test]
    fn the_real_proc_parses() {
        let proc = ProcDir::new("/proc");
        let me = std::process::id();
        let start = parse_start_time(&proc.read(me, "stat").unwrap()).unwrap();
        assert!(start > 0);
        let creds = parse_status(&proc.read(me, "status").unwrap()).unwrap();
        // The owner of /proc/<pid> is the process's effective UID and GID.
        let meta = std::fs::metadata(format!("/proc/{me}")).unwrap();
        assert_eq!(creds.uid, std::os::unix::fs::MetadataExt::uid(&meta));
        assert_eq!(creds.gid, std::os::unix::fs::MetadataExt::gid(&meta));
    }

    #[test]
    fn oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 11]).unwrap();
        assert_eq!(read_capped(&path, 11).unwrap().len(), 11);
        let err = read_capped(&path, 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}

//! User and group names for the `user`, `group` and `supplementary_group` selectors.
//!
//! Names come from the passwd and group files (`/etc/passwd`, `/etc/group`), the first entry for an ID
//! winning as with glibc's `files` source. NSS modules (LDAP, SSSD, systemd-homed) are not consulted: doing
//! so needs `getpwuid_r` through FFI, which this workspace keeps out of plugin code; IDs from such sources
//! get no name selector (the numeric `uid`/`gid` selectors are always there). SPIRE's `unix` attestor also
//! omits a name it cannot look up.
//!
//! Each file is parsed once and kept until its identity (device, inode, size, mtime, ctime) changes, so an
//! attestation costs one `stat` per file.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::digest::FileIdentity;
use crate::proc::read_capped;

/// Files larger than this are not parsed (no names are reported from them); real ones are far smaller.
pub const MAX_ACCOUNT_FILE: usize = 16 * 1024 * 1024;

/// ID → name, parsed from one passwd- or group-format file.
pub type NameMap = HashMap<u32, String>;

/// Parses passwd or group format: `name:password:id:…`. Comments, blank lines, NIS `+`/`-` lines and lines
/// whose ID is not a number are skipped; the first name for an ID wins.
#[must_use]
pub fn parse_accounts(text: &str) -> NameMap {
    let mut map = NameMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with('+') || line.starts_with('-') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Ok(id) = id.parse::<u32>() else {
            continue;
        };
        if !name.is_empty() {
            map.entry(id).or_insert_with(|| name.to_owned());
        }
    }
    map
}

/// One accounts file, re-read only when its identity changes.
#[derive(Debug)]
struct AccountsFile {
    path: PathBuf,
    cached: Mutex<Option<(FileIdentity, Arc<NameMap>)>>,
}

impl AccountsFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            cached: Mutex::new(None),
        }
    }

    /// The current map; an unreadable or oversized file gives an empty one (and a log line), because a
    /// missing name only means a missing selector.
    fn current(&self) -> Arc<NameMap> {
        match self.load() {
            Ok(map) => map,
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "no names from accounts file");
                Arc::new(NameMap::new())
            }
        }
    }

    fn load(&self) -> io::Result<Arc<NameMap>> {
        let id = FileIdentity::of(&std::fs::metadata(&self.path)?);
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, map)) = cached.as_ref() {
            if *seen == id {
                return Ok(Arc::clone(map));
            }
        }
        let bytes = read_capped(&self.path, MAX_ACCOUNT_FILE)?;
        let map = Arc::new(parse_accounts(&String::from_utf8_lossy(&bytes)));
        *cached = Some((id, Arc::clone(&map)));
        Ok(map)
    }
}

/// The passwd and group files the attestor names IDs from.
#[derive(Debug)]
pub struct NameDb {
    users: AccountsFile,
    groups: AccountsFile,
}

/// The names in force for one attestation.
#[derive(Debug, Clone)]
pub struct Names {
    users: Arc<NameMap>,
    groups: Arc<NameMap>,
}

impl Names {
    /// The user name of `uid`.
    #[must_use]
    pub fn user(&self, uid: u32) -> Option<&str> {
        self.users.get(&uid).map(String::as_str)
    }

    /// The group name of `gid`.
    #[must_use]
    pub fn group(&self, gid: u32) -> Option<&str> {
        self.groups.get(&gid).map(String::as_str)
    }
}

impl Default for NameDb {
    fn default() -> Self {
        Self::new("/etc/passwd", "/etc/group")
    }
}

impl NameDb {
    /// Names from `passwd` and `group` (in those files' formats).
    #[must_use]
    pub fn new(passwd: impl AsRef<Path>, group: impl AsRef<Path>) -> Self {
        Self {
            users: AccountsFile::new(passwd.as_ref().to_path_buf()),
            groups: AccountsFile::new(group.as_ref().to_path_buf()),
        }
    }

    /// Both maps as they are now (one `stat` each; a re-parse only if a file changed).
    #[must_use]
    pub fn current(&self) -> Names {
        Names {
            users: self.users.current(),
            groups: self.groups.current(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn parses_passwd_and_group_formats() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\n\n+nisuser::::::\n\
                      daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbroken\nbad:x:notanumber:0::/:\n\
                      alias:x:0:0::/:/bin/sh\n";
        let m = parse_accounts(passwd);
        assert_eq!(
            m.get(&0).map(String::as_str),
            Some("root"),
            "first entry wins"
        );
        assert_eq!(m.get(&1).map(String::as_str), Some("daemon"));
        assert_eq!(m.len(), 2);
        let group = "root:x:0:\nsudo:x:27:alice,bob\n:x:5:\n";
        let g = parse_accounts(group);
        assert_eq!(g.get(&27).map(String::as_str), Some("sudo"));
        assert_eq!(g.get(&5), None, "empty names are skipped");
    }

    #[test]
    fn rereads_only_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let group = dir.path().join("group");
        std::fs::write(&passwd, "alice:x:1000:1000::/home/alice:/bin/sh\n").unwrap();
        std::fs::write(&group, "staff:x:50:\n").unwrap();
        let db = NameDb::new(&passwd, &group);
        let n1 = db.current();
        assert_eq!(n1.user(1000), Some("alice"));
        assert_eq!(n1.group(50), Some("staff"));
        assert_eq!(n1.user(0), None);
        let n2 = db.current();
        assert!(
            Arc::ptr_eq(&n1.users, &n2.users),
            "unchanged file is not re-parsed"
        );
        std::fs::write(
            &passwd,
            "bob:x:1000:1000::/home/bob:/bin/sh\nroot:x:0:0::/:/bin/sh\n",
        )
        .unwrap();
        let n3 = db.current();
        assert_eq!(n3.user(1000), Some("bob"));
        assert_eq!(n3.user(0), Some("root"));
        std::fs::remove_file(&group).unwrap();
        assert_eq!(
            db.current().group(50),
            None,
            "a missing file gives no names"
        );
    }
}

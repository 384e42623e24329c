//! A real PostgreSQL server for the tests of the HA log (scripts/postgres.sh), stopped on drop. A
//! machine without PostgreSQL fails these tests: they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL server started by scripts/postgres.sh in a temp folder, stopped on drop.
pub struct PgServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub conninfo: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh")
}

impl PgServer {
    /// Starts the server; panics (fails the test) when it cannot: the PostgreSQL tests must run.
    pub fn start() -> PgServer {
        // Under /tmp so the postgres user can traverse the parents; short for the socket path.
        let dir = tempfile::Builder::new()
            .prefix("twi-pg")
            .tempdir_in("/tmp")
            .unwrap();
        // The port only names the socket file inside our own folder: any value is free.
        let port = 5432 + (std::process::id() % 1000) as u16;
        let mut server = PgServer {
            dir,
            port,
            conninfo: String::new(),
        };
        server.conninfo = server.run("start");
        assert!(server.conninfo.starts_with("host="), "{}", server.conninfo);
        server
    }

    pub fn run(&self, cmd: &str) -> String {
        let mut c = Command::new("bash");
        c.arg(script()).arg(cmd).arg(self.dir.path());
        if cmd == "start" {
            c.arg(self.port.to_string());
        }
        let out = c.output().expect("run scripts/postgres.sh");
        assert!(
            out.status.success(),
            "scripts/postgres.sh {cmd} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

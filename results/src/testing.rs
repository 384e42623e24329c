//! A real PostgreSQL server for tests (feature `testing`): the result store, the HA transparency log
//! and the end-to-end HA tests all run against the real thing, started by `scripts/postgres.sh` on a
//! Unix socket in a temp folder and stopped on drop. A missing PostgreSQL is an error, never a skip:
//! `.ci/run` installs it.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One throw-away PostgreSQL server (trust auth, no TCP port).
#[derive(Debug)]
pub struct PgServer {
    dir: tempfile::TempDir,
    /// Names the socket file (`.s.PGSQL.PORT`) only: the server listens on no TCP port.
    pub port: u16,
    /// libpq conninfo of the server's `postgres` database, as `scripts/postgres.sh start` prints it.
    pub conninfo: String,
}

/// The workspace's `scripts/postgres.sh` (this crate sits one level below the workspace root).
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh")
}

impl PgServer {
    /// Starts the server (initdb first).
    ///
    /// # Errors
    /// The script's message when it cannot (no PostgreSQL binaries, initdb or start failed).
    pub fn start() -> io::Result<PgServer> {
        // Under /tmp so the postgres user (the script's server user when run as root) can traverse
        // the parents, and short for the socket path.
        let dir = tempfile::Builder::new()
            .prefix("twi-pg")
            .tempdir_in("/tmp")?;
        // The port only names the socket file inside our own folder: any value is free.
        let port = 5432 + u16::try_from(std::process::id() % 1000).unwrap_or(0);
        let mut server = PgServer {
            dir,
            port,
            conninfo: String::new(),
        };
        server.conninfo = server.script(&["start", &port.to_string()])?;
        if !server.conninfo.starts_with("host=") {
            return Err(io::Error::other(format!(
                "scripts/postgres.sh start printed no conninfo: {:?}",
                server.conninfo
            )));
        }
        Ok(server)
    }

    /// The folder holding the server's socket (libpq's `host` for a Unix socket).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates database `name` if missing; returns its libpq conninfo (`host=DIR port=P user=postgres
    /// dbname=NAME`), which SPIRE (with `sslmode=disable` added), `twi_results::open` and the
    /// composer's `log_database` take.
    ///
    /// # Errors
    /// The script's message.
    pub fn createdb(&self, name: &str) -> io::Result<String> {
        self.script(&["createdb", &self.port.to_string(), name])
    }

    /// Stops the server (fast shutdown), to test what clients do while it is down.
    ///
    /// # Errors
    /// The script's message.
    pub fn stop(&self) -> io::Result<()> {
        self.script(&["stop"]).map(drop)
    }

    /// Starts the server again after [`PgServer::stop`], same data and socket.
    ///
    /// # Errors
    /// The script's message.
    pub fn restart(&self) -> io::Result<()> {
        self.script(&["start", &self.port.to_string()]).map(drop)
    }

    /// Runs `scripts/postgres.sh CMD DIR ARGS…`; returns its trimmed stdout.
    fn script(&self, args: &[&str]) -> io::Result<String> {
        let (cmd, rest) = args
            .split_first()
            .ok_or_else(|| io::Error::other("no postgres.sh command"))?;
        let out = Command::new("bash")
            .arg(script())
            .arg(cmd)
            .arg(self.dir.path())
            .args(rest)
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "scripts/postgres.sh {cmd} failed ({}): {} (PostgreSQL's server binaries are \
                 needed: Debian `apt-get install postgresql`, or set PG_BIN)",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Only a server that started has a data folder to stop.
        if self.dir.path().join("data/PG_VERSION").is_file() {
            let _ = self.script(&["stop"]);
        }
    }
}

//! Running the real, unmodified SPIRE server and agent with our plugins: configuration files, processes,
//! health, the CLI calls an operator would make, and log inspection.
//!
//! `twi demo` and the end-to-end tests in `integration/` both use this module, so the demo shows exactly
//! what the tests check. Everything listens on 127.0.0.1 and on Unix sockets under one short temp dir
//! (Unix socket paths are limited to 108 bytes). Child processes are killed when their handle drops.

use std::fmt::Write as _;
use std::fs;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

/// The SPIRE release the project is tested against.
pub const SPIRE_VERSION: &str = "1.15.3";

/// Where the `spire-server` and `spire-agent` binaries are.
#[derive(Clone, Debug)]
pub struct SpireBins {
    pub server: PathBuf,
    pub agent: PathBuf,
}

impl SpireBins {
    /// Finds SPIRE: `SPIRE_BIN_DIR`, else the project's cache `target/spire/`, else builds it there with
    /// `scripts/ensure-spire.sh` (which needs Go). `workspace` is the project's root directory.
    pub fn locate(workspace: &Path, explicit: Option<&Path>) -> Result<SpireBins> {
        let from_env = std::env::var_os("SPIRE_BIN_DIR").map(PathBuf::from);
        if let Some(dir) = explicit.map(Path::to_path_buf).or(from_env) {
            return SpireBins::in_dir(&dir);
        }
        let cache = workspace.join("target/spire");
        if let Ok(bins) = SpireBins::in_dir(&cache) {
            return Ok(bins);
        }
        let script = workspace.join("scripts/ensure-spire.sh");
        eprintln!(
            "SPIRE {SPIRE_VERSION} not found; building it with {} ...",
            script.display()
        );
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!("{} failed: SPIRE {SPIRE_VERSION} could not be built (set SPIRE_BIN_DIR to use your own)", script.display());
        }
        let dir = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        SpireBins::in_dir(Path::new(&dir))
    }

    fn in_dir(dir: &Path) -> Result<SpireBins> {
        let bins = SpireBins {
            server: dir.join("spire-server"),
            agent: dir.join("spire-agent"),
        };
        for b in [&bins.server, &bins.agent] {
            if !b.is_file() {
                bail!(
                    "{} not found (expected SPIRE {SPIRE_VERSION} binaries in {})",
                    b.display(),
                    dir.display()
                );
            }
        }
        Ok(bins)
    }
}

/// One of our plugin binaries, as SPIRE's `plugin_cmd` + `plugin_checksum` name it.
#[derive(Clone, Debug)]
pub struct PluginBinary {
    pub path: PathBuf,
    pub sha256: String,
}

impl PluginBinary {
    /// Reads the binary and computes the checksum SPIRE will verify before starting it.
    pub fn new(path: &Path) -> Result<PluginBinary> {
        let bytes =
            fs::read(path).with_context(|| format!("reading plugin binary {}", path.display()))?;
        let path = path
            .canonicalize()
            .with_context(|| format!("resolving {}", path.display()))?;
        Ok(PluginBinary {
            path,
            sha256: hex::encode(Sha256::digest(&bytes)),
        })
    }
}

/// A plugin block for `server.conf` / `agent.conf`.
#[derive(Clone, Debug)]
pub struct PluginBlock {
    /// Plugin type as SPIRE names it, e.g. `NodeAttestor`.
    pub kind: String,
    /// Plugin name (the HCL block label); our node attestor's agent and server halves share one name.
    pub name: String,
    /// External binary, or `None` for a SPIRE built-in.
    pub binary: Option<PluginBinary>,
    /// `plugin_args` for an external binary.
    pub args: Vec<String>,
    /// HCL body of `plugin_data` (without braces).
    pub data: String,
}

impl PluginBlock {
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "  {} \"{}\" {{", self.kind, self.name);
        if let Some(b) = &self.binary {
            let _ = writeln!(
                out,
                "    plugin_cmd = {}",
                hcl_string(&b.path.to_string_lossy())
            );
            let _ = writeln!(out, "    plugin_checksum = \"{}\"", b.sha256);
            if !self.args.is_empty() {
                let args: Vec<String> = self.args.iter().map(|a| hcl_string(a)).collect();
                let _ = writeln!(out, "    plugin_args = [{}]", args.join(", "));
            }
        }
        let _ = writeln!(out, "    plugin_data {{");
        for line in self.data.lines() {
            let _ = writeln!(out, "      {line}");
        }
        let _ = writeln!(out, "    }}\n  }}");
    }
}

/// Quotes a string for HCL.
pub fn hcl_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Picks a free TCP port on 127.0.0.1 (the OS chooses; it is released before SPIRE binds it).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running process whose stdout+stderr go to a log file; killed on drop.
#[derive(Debug)]
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: &Path) -> Result<Proc> {
        let f = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let f2 = f.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(f))
            .stderr(Stdio::from(f2))
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        Ok(Proc {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then SIGKILL after a grace period; SPIRE unloads its plugins on SIGTERM.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            // SIGTERM through kill(1): the workspace forbids unsafe code, and std only offers SIGKILL.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL now, as a crash would.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `f` until it returns `Some`, or fails after `timeout` with `what` in the message.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Settings of one SPIRE server.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub trust_domain: String,
    pub plugins: Vec<PluginBlock>,
    /// Extra lines for the `server` block, e.g. `agent_ttl = "30s"`.
    pub extra: String,
}

/// SPIRE's built-in `sql` DataStore of a server: its `database_type` and `connection_string`.
#[derive(Clone, Debug)]
pub struct SqlDataStore {
    /// `sqlite3`, `postgres` or `mysql`, as SPIRE names them.
    pub database_type: String,
    /// For `postgres`, a libpq key/value string (`dbname=spire user=spire host=/run/pg port=5432
    /// sslmode=disable`; a `host` starting with `/` is a Unix socket folder) or a `postgresql://` URL.
    pub connection_string: String,
}

impl SqlDataStore {
    /// A server's own SQLite file: the single-server default.
    pub fn sqlite3(path: &Path) -> SqlDataStore {
        SqlDataStore {
            database_type: "sqlite3".into(),
            connection_string: path.to_string_lossy().into_owned(),
        }
    }

    /// A PostgreSQL database that several servers may share (HA).
    pub fn postgres(connection_string: &str) -> SqlDataStore {
        SqlDataStore {
            database_type: "postgres".into(),
            connection_string: connection_string.into(),
        }
    }
}

/// A running SPIRE server.
#[derive(Debug)]
pub struct SpireServer {
    bins: SpireBins,
    proc: Proc,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    pub trust_domain: String,
    pub config_path: PathBuf,
}

impl SpireServer {
    /// Writes `server.conf` under `dir` (sqlite3 DataStore, memory KeyManager, the given plugins) and
    /// starts `spire-server run`; returns once the server reports healthy.
    pub fn start(bins: &SpireBins, dir: &Path, settings: &ServerSettings) -> Result<SpireServer> {
        let sqlite = SqlDataStore::sqlite3(&dir.join("data/datastore.sqlite3"));
        SpireServer::start_with_datastore(bins, dir, settings, &sqlite)
    }

    /// As [`SpireServer::start`], with SPIRE's `sql` DataStore on `datastore`: servers in HA share one
    /// PostgreSQL database, so each sees the agents the others attested.
    pub fn start_with_datastore(
        bins: &SpireBins,
        dir: &Path,
        settings: &ServerSettings,
        datastore: &SqlDataStore,
    ) -> Result<SpireServer> {
        fs::create_dir_all(dir.join("data"))?;
        let port = free_port()?;
        let socket = dir.join("server.sock");
        let mut conf = String::new();
        let _ = writeln!(
            conf,
            "server {{\n  bind_address = \"127.0.0.1\"\n  bind_port = \"{port}\"\n  socket_path = {}\n  trust_domain = \"{}\"\n  data_dir = {}\n  log_level = \"DEBUG\"\n  ca_ttl = \"24h\"\n  default_x509_svid_ttl = \"1h\"\n{}\n}}\nplugins {{",
            hcl_string(&socket.to_string_lossy()),
            settings.trust_domain,
            hcl_string(&dir.join("data").to_string_lossy()),
            settings.extra,
        );
        PluginBlock {
            kind: "DataStore".into(),
            name: "sql".into(),
            binary: None,
            args: vec![],
            data: format!(
                "database_type = {}\nconnection_string = {}",
                hcl_string(&datastore.database_type),
                hcl_string(&datastore.connection_string)
            ),
        }
        .render(&mut conf);
        PluginBlock {
            kind: "KeyManager".into(),
            name: "memory".into(),
            binary: None,
            args: vec![],
            data: String::new(),
        }
        .render(&mut conf);
        for p in &settings.plugins {
            p.render(&mut conf);
        }
        conf.push_str("}\n");
        let config_path = dir.join("server.conf");
        fs::write(&config_path, &conf)?;

        let mut cmd = Command::new(&bins.server);
        cmd.arg("run")
            .arg("-config")
            .arg(&config_path)
            .current_dir(dir);
        let proc = Proc::spawn(cmd, &dir.join("server.log"))?;
        let mut server = SpireServer {
            bins: bins.clone(),
            proc,
            dir: dir.to_path_buf(),
            socket,
            port,
            trust_domain: settings.trust_domain.clone(),
            config_path,
        };
        server.wait_healthy(Duration::from_secs(60))?;
        Ok(server)
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.proc.exited() {
                bail!(
                    "spire-server exited ({st}) during start-up; its log:\n{}",
                    tail(&self.log(), 60)
                );
            }
            if self.socket.exists() {
                if let Ok(out) = self.cli(&["healthcheck"]) {
                    if out.status.success() {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "spire-server not healthy after {timeout:?}; its log:\n{}",
                    tail(&self.log(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `spire-server <args> -socketPath <socket>`.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        Command::new(&self.bins.server)
            .args(args)
            .arg("-socketPath")
            .arg(&self.socket)
            .output()
            .with_context(|| format!("running spire-server {}", args.join(" ")))
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "spire-server {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The trust bundle in PEM, for the agent's `trust_bundle_path`.
    pub fn bundle_pem(&self) -> Result<String> {
        self.cli_ok(&["bundle", "show", "-format", "pem"])
    }

    /// Every attested agent with its selectors (`spire-server agent list -output json`).
    pub fn agents(&self) -> Result<Vec<AttestedAgent>> {
        let out = self.cli_ok(&["agent", "list", "-output", "json"])?;
        let v: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("agent list output: {out}"))?;
        let agents = v
            .get("agents")
            .and_then(|a| a.as_array())
            .cloned()
            .unwrap_or_default();
        Ok(agents.iter().map(AttestedAgent::from_json).collect())
    }

    /// `spire-server agent show -spiffeID ID`, the operator's view of one agent (pretty output).
    pub fn agent_show(&self, spiffe_id: &str) -> Result<String> {
        self.cli_ok(&["agent", "show", "-spiffeID", spiffe_id])
    }

    /// Creates a workload registration entry; returns the CLI's output.
    pub fn entry_create(
        &self,
        parent_id: &str,
        spiffe_id: &str,
        selectors: &[&str],
    ) -> Result<String> {
        let mut args = vec![
            "entry",
            "create",
            "-parentID",
            parent_id,
            "-spiffeID",
            spiffe_id,
        ];
        for s in selectors {
            args.push("-selector");
            args.push(s);
        }
        self.cli_ok(&args)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.proc.log_text()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        wait_for(
            &format!("server log line containing {needle:?}"),
            timeout,
            || Ok(self.log().contains(needle).then_some(())),
        )
        .map_err(|e| anyhow!("{e}; server log tail:\n{}", tail(&self.log(), 40)))
    }

    /// Stops the server with SIGTERM (it unloads its plugins).
    pub fn stop(&mut self) {
        self.proc.stop();
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// True while the process is running (false after [`SpireServer::stop`] or a kill).
    pub fn running(&mut self) -> bool {
        self.proc.child.is_some() && self.proc.exited().is_none()
    }

    /// The server's process ID while it runs (its plugins are its children).
    pub fn pid(&self) -> Option<u32> {
        self.proc.child.as_ref().map(Child::id)
    }
}

/// One entry of `spire-server agent list -output json`.
#[derive(Clone, Debug)]
pub struct AttestedAgent {
    pub spiffe_id: String,
    pub attestation_type: String,
    /// `type:value` strings.
    pub selectors: Vec<String>,
    pub can_reattest: bool,
}

impl AttestedAgent {
    fn from_json(a: &serde_json::Value) -> AttestedAgent {
        let id = &a["id"];
        let spiffe_id = format!(
            "spiffe://{}{}",
            id["trust_domain"].as_str().unwrap_or_default(),
            id["path"].as_str().unwrap_or_default()
        );
        let selectors = a["selectors"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|s| {
                        format!(
                            "{}:{}",
                            s["type"].as_str().unwrap_or_default(),
                            s["value"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        AttestedAgent {
            spiffe_id,
            attestation_type: a["attestation_type"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            selectors,
            can_reattest: a["can_reattest"].as_bool().unwrap_or(false),
        }
    }
}

/// Settings of one SPIRE agent.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub node_attestor: PluginBlock,
    /// SVID lifetime the agent asks for is the server's; this only names the agent's own dir.
    pub name: String,
    /// More plugin blocks (e.g. our WorkloadAttestor), written after the built-in `unix` attestor.
    pub extra_plugins: Vec<PluginBlock>,
}

/// A running SPIRE agent.
#[derive(Debug)]
pub struct SpireAgent {
    bins: SpireBins,
    proc: Proc,
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl SpireAgent {
    /// Writes `agent.conf` (memory KeyManager, the built-in `unix` WorkloadAttestor, our node
    /// attestor) bootstrapped with the server's bundle, and starts `spire-agent run`.
    pub fn start(
        bins: &SpireBins,
        server: &SpireServer,
        settings: &AgentSettings,
    ) -> Result<SpireAgent> {
        let dir = server.dir.join(&settings.name);
        fs::create_dir_all(dir.join("data"))?;
        let bundle = dir.join("bundle.pem");
        fs::write(&bundle, server.bundle_pem()?)?;
        let socket = dir.join("agent.sock");
        let mut conf = String::new();
        let _ = writeln!(
            conf,
            "agent {{\n  data_dir = {}\n  log_level = \"DEBUG\"\n  server_address = \"127.0.0.1\"\n  server_port = \"{}\"\n  socket_path = {}\n  trust_bundle_path = {}\n  trust_domain = \"{}\"\n}}\nplugins {{",
            hcl_string(&dir.join("data").to_string_lossy()),
            server.port,
            hcl_string(&socket.to_string_lossy()),
            hcl_string(&bundle.to_string_lossy()),
            server.trust_domain,
        );
        PluginBlock {
            kind: "KeyManager".into(),
            name: "memory".into(),
            binary: None,
            args: vec![],
            data: String::new(),
        }
        .render(&mut conf);
        PluginBlock {
            kind: "WorkloadAttestor".into(),
            name: "unix".into(),
            binary: None,
            args: vec![],
            data: String::new(),
        }
        .render(&mut conf);
        settings.node_attestor.render(&mut conf);
        for p in &settings.extra_plugins {
            p.render(&mut conf);
        }
        conf.push_str("}\n");
        let config_path = dir.join("agent.conf");
        fs::write(&config_path, &conf)?;
        let mut cmd = Command::new(&bins.agent);
        cmd.arg("run")
            .arg("-config")
            .arg(&config_path)
            .current_dir(&dir);
        let proc = Proc::spawn(cmd, &dir.join("agent.log"))?;
        Ok(SpireAgent {
            bins: bins.clone(),
            proc,
            dir,
            socket,
        })
    }

    /// Waits for `Node attestation was successful` and returns the agent's SPIFFE ID from that line;
    /// fails early, with the log, if the agent exits (as it does when attestation is refused).
    pub fn wait_attested(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log
                .lines()
                .find(|l| l.contains("Node attestation was successful"))
            {
                return spiffe_id_field(line).ok_or_else(|| anyhow!("no spiffe_id in: {line}"));
            }
            if let Some(st) = self.proc.exited() {
                bail!(
                    "spire-agent exited ({st}) before attesting; its log:\n{}",
                    tail(&log, 40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "spire-agent did not attest within {timeout:?}; its log:\n{}",
                    tail(&log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the agent process to exit (e.g. after a refused attestation) and returns its log.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.proc.exited().is_some() {
                return Ok(self.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "spire-agent still running after {timeout:?}; its log:\n{}",
                    tail(&self.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `spire-agent api fetch x509 -write DIR` as a workload would; returns the command's output.
    pub fn fetch_x509(&self, write_dir: &Path) -> Result<Output> {
        fs::create_dir_all(write_dir)?;
        Command::new(&self.bins.agent)
            .args(["api", "fetch", "x509", "-timeout", "5s", "-socketPath"])
            .arg(&self.socket)
            .arg("-write")
            .arg(write_dir)
            .output()
            .context("running spire-agent api fetch x509")
    }

    /// Fetches until an SVID arrives (entries take a moment to reach the agent's cache).
    pub fn fetch_x509_until_ok(&self, write_dir: &Path, timeout: Duration) -> Result<Output> {
        let mut last = String::new();
        wait_for("an X.509-SVID from the Workload API", timeout, || {
            let out = self.fetch_x509(write_dir)?;
            if out.status.success() {
                return Ok(Some(out));
            }
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(None)
        })
        .map_err(|e| anyhow!("{e}; last fetch said: {last}"))
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        self.proc.log_text()
    }

    /// Stops the agent with SIGTERM.
    pub fn stop(&mut self) {
        self.proc.stop();
    }
}

/// Extracts `spiffe_id=...` (logrus text format) or `"spiffe_id":"..."` from a log line.
fn spiffe_id_field(line: &str) -> Option<String> {
    let start = line.find("spiffe_id=")? + "spiffe_id=".len();
    let rest = line.get(start..)?;
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest
        .find(|c: char| c == '"' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest.get(..end).map(str::to_string)
}

/// The last `n` lines of a log, for error messages.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .join("\n")
}

/// A short private temp dir under /tmp (Unix socket paths must stay under 108 bytes).
pub fn short_tempdir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .context("creating a temp dir in /tmp")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn spiffe_id_from_log_lines() {
        let text = r#"time="2026-11-23T13:00:00Z" level=info msg="Node attestation was successful" reattestable=true spiffe_id="spiffe://example.org/spire/agent/twi/sim-snp/ab" subsystem_name=attestor"#;
        assert_eq!(
            spiffe_id_field(text).unwrap(),
            "spiffe://example.org/spire/agent/twi/sim-snp/ab"
        );
        let bare = "msg=x spiffe_id=spiffe://td/a/b other=1";
        assert_eq!(spiffe_id_field(bare).unwrap(), "spiffe://td/a/b");
        assert!(spiffe_id_field("nothing here").is_none());
    }

    #[test]
    fn plugin_block_renders_checksum_and_data() {
        let mut s = String::new();
        PluginBlock {
            kind: "NodeAttestor".into(),
            name: "twi".into(),
            binary: Some(PluginBinary {
                path: "/x/y".into(),
                sha256: "ab".repeat(32),
            }),
            args: vec!["tamper".into()],
            data: "snp {\n  allow_debug = false\n}".into(),
        }
        .render(&mut s);
        assert!(s.contains("NodeAttestor \"twi\" {"), "{s}");
        assert!(s.contains("plugin_cmd = \"/x/y\""), "{s}");
        assert!(
            s.contains(&format!("plugin_checksum = \"{}\"", "ab".repeat(32))),
            "{s}"
        );
        assert!(s.contains("allow_debug = false"), "{s}");
        assert!(s.contains("plugin_args = [\"tamper\"]"), "{s}");
    }
}

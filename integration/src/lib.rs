//! Shared set-up for the end-to-end tests: SPIRE binaries, our plugin binaries with their checksums,
//! simulated SEV-SNP root sets, and the HCL our plugins are configured with.
//!
//! The tests run the real SPIRE server and agent v1.15.3. Missing SPIRE or plugin binaries are test
//! failures with a hint, never skips: `scripts/test.sh` provides both.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use twi::spire::{hcl_string, AgentSettings, PluginBinary, PluginBlock, ServerSettings, SpireBins};

pub use twi::spire;

/// The plugin name used on both sides in every test.
pub const PLUGIN_NAME: &str = "twi";
/// The trust domain of every test.
pub const TRUST_DOMAIN: &str = "example.org";

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// SPIRE v1.15.3: `SPIRE_BIN_DIR`, the cache in `target/spire`, or built there now.
pub fn spire_bins() -> Result<SpireBins> {
    SpireBins::locate(&workspace(), None)
}

/// The directory holding this build's binaries: the test executable lives in its `deps/`.
fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("no target dir above the test executable")
}

/// One of the workspace's plugin binaries, with its checksum.
pub fn plugin(name: &str) -> Result<PluginBinary> {
    let p = bin_dir()?.join(name);
    if !p.is_file() {
        bail!("{} is missing: build the plugins first (`cargo build --workspace --bins`, as scripts/test.sh does)", p.display());
    }
    PluginBinary::new(&p)
}

/// The `twi` operator CLI of this build (built by `cargo build --workspace --bins`).
pub fn twi_cli() -> Result<PathBuf> {
    let p = bin_dir()?.join("twi");
    if !p.is_file() {
        bail!(
            "{} is missing: build it first (`cargo build --workspace --bins`)",
            p.display()
        );
    }
    Ok(p)
}

/// The server's `CredentialComposer "twi"` block (our composer, by path and checksum) with these
/// `plugin_data` settings, each written as `key = "value"`: the tests differ only in where the log,
/// keys and results live.
pub fn composer_plugin(settings: &[(&str, String)]) -> Result<PluginBlock> {
    let data: String = settings
        .iter()
        .map(|(key, value)| format!("{key} = {}\n", hcl_string(value)))
        .collect();
    Ok(PluginBlock {
        kind: "CredentialComposer".into(),
        name: PLUGIN_NAME.into(),
        binary: Some(plugin("twi-server-credentialcomposer")?),
        args: vec![],
        data,
    })
}

/// A path as an HCL setting value.
pub fn path_value(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A finished command's exit status, stdout and stderr, for assertion messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Where the server plugin keeps its signed attestation results in a test.
#[derive(Debug, Clone)]
pub struct ResultFiles {
    pub database: PathBuf,
    pub verifier_key: PathBuf,
    pub jwks: PathBuf,
}

impl ResultFiles {
    /// Files under `dir` (which must exist).
    pub fn in_dir(dir: &Path) -> ResultFiles {
        ResultFiles {
            database: dir.join("results.db"),
            verifier_key: dir.join("verifier-key.pem"),
            jwks: dir.join("verifier-jwks.json"),
        }
    }

    /// The `attestation_results` block of the server plugin's `plugin_data`.
    pub fn hcl(&self) -> String {
        self.hcl_with_database(&format!("sqlite://{}", self.database.display()))
    }

    /// The `attestation_results` block with the results in `database` (a `postgres://` URL or a libpq
    /// conninfo) instead of the SQLite file: servers in HA share one database and one verifier key.
    pub fn hcl_with_database(&self, database: &str) -> String {
        format!(
            "attestation_results {{\n  database = {}\n  verifier_key_path = {}\n  jwks_path = {}\n}}\n",
            hcl_string(database),
            hcl_string(&self.verifier_key.to_string_lossy()),
            hcl_string(&self.jwks.to_string_lossy())
        )
    }
}

/// A real PostgreSQL server for one test (stopped on drop); never a skip when missing.
pub use twi_results::testing::PgServer;

/// The faulty agent plugin (test only), with its checksum.
pub fn faulty_agent() -> Result<PluginBinary> {
    plugin("twi-test-faulty-agent")
}

/// A simulated Milan root set shared by every test of one test binary (RSA-4096 keys take seconds).
pub fn shared_sim_dir() -> Result<&'static Path> {
    static DIR: OnceLock<Result<tempfile::TempDir, String>> = OnceLock::new();
    let dir = DIR.get_or_init(|| new_sim_dir(None).map_err(|e| format!("{e:#}")));
    match dir {
        Ok(d) => Ok(d.path()),
        Err(e) => bail!("creating the simulated root set: {e}"),
    }
}

/// A fresh simulated root set; `vcek_not_after` (Unix seconds) lets a test make an expired VCEK.
pub fn new_sim_dir(vcek_not_after: Option<u64>) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("twi-sim-").tempdir()?;
    let mut opts = twi_core::sim::InitOptions::new(unix_now());
    if let Some(t) = vcek_not_after {
        opts.vcek_not_before = Some(t.saturating_sub(3600 * 24 * 30));
        opts.vcek_not_after = Some(t);
    }
    twi_core::sim::init(dir.path(), &opts)?;
    Ok(dir)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Server settings: our server node attestor trusting the given simulated roots, with extra HCL inside
/// its `snp` block.
pub fn server_settings(sim_roots: &[&Path], snp_extra: &str) -> Result<ServerSettings> {
    let roots: Vec<String> = sim_roots
        .iter()
        .map(|d| hcl_string(&d.join("ark.pem").to_string_lossy()))
        .collect();
    Ok(ServerSettings {
        trust_domain: TRUST_DOMAIN.into(),
        plugins: vec![PluginBlock {
            kind: "NodeAttestor".into(),
            name: PLUGIN_NAME.into(),
            binary: Some(plugin("twi-server-nodeattestor")?),
            args: vec![],
            data: format!(
                "snp {{\n  simulated_roots = [{}]\n{snp_extra}\n}}",
                roots.join(", ")
            ),
        }],
        extra: String::new(),
    })
}

/// Agent settings: an agent plugin binary in simulated mode on `sim_dir`, with extra HCL inside its
/// `simulated` block, and plugin arguments (for the faulty agent's mode).
pub fn agent_settings(
    name: &str,
    binary: PluginBinary,
    args: &[&str],
    sim_dir: &Path,
    simulated_extra: &str,
) -> AgentSettings {
    AgentSettings {
        name: name.into(),
        node_attestor: PluginBlock {
            kind: "NodeAttestor".into(),
            name: PLUGIN_NAME.into(),
            binary: Some(binary),
            args: args.iter().map(|s| s.to_string()).collect(),
            data: format!(
                "snp {{\n  source = \"simulated\"\n}}\nsimulated {{\n  dir = {}\n{simulated_extra}\n}}",
                hcl_string(&sim_dir.to_string_lossy())
            ),
        },
        extra_plugins: Vec::new(),
    }
}

/// A fresh simulated Intel TDX root set (root, PCK chain, collateral) in a temp dir.
pub fn new_tdx_sim_dir() -> Result<tempfile::TempDir> {
    new_tdx_sim_dir_with(|_| {})
}

/// As [`new_tdx_sim_dir`], with the options changed by `adjust` first (an out-of-date TCB, stale
/// collateral, a revoked PCK: the platform states the negative tests need).
pub fn new_tdx_sim_dir_with(
    adjust: impl FnOnce(&mut twi_core::sim::tdx::TdxInitOptions),
) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("twi-sim-tdx-").tempdir()?;
    let mut opts = twi_core::sim::tdx::TdxInitOptions::new(unix_now());
    adjust(&mut opts);
    twi_core::sim::tdx::init(dir.path(), &opts)?;
    Ok(dir)
}

/// Server settings for a mixed fleet: our node attestor with an `snp` section trusting `snp_roots` and a
/// `tdx` section trusting the simulated TDX root set `tdx_dir` (its root and collateral), with extra HCL
/// inside the `tdx` block.
pub fn mixed_server_settings(
    snp_roots: &[&Path],
    tdx_dir: &Path,
    tdx_extra: &str,
) -> Result<ServerSettings> {
    let mut settings = server_settings(snp_roots, "")?;
    let layout = twi_core::sim::tdx::TdxSimLayout::in_dir(tdx_dir);
    if let Some(block) = settings.plugins.first_mut() {
        block.data.push_str(&format!(
            "\ntdx {{\n  collateral_dir = {}\n  simulated_roots = [{}]\n{tdx_extra}\n}}",
            hcl_string(&layout.collateral_dir.to_string_lossy()),
            hcl_string(&layout.root_der.to_string_lossy()),
        ));
    }
    Ok(settings)
}

/// Agent settings for a simulated TD on the TDX root set `tdx_dir`, with extra HCL inside its
/// `simulated_tdx` block and the instance key persisted in the agent's own directory.
pub fn tdx_agent_settings(
    name: &str,
    binary: PluginBinary,
    tdx_dir: &Path,
    simulated_tdx_extra: &str,
    instance_key_path: &Path,
) -> AgentSettings {
    AgentSettings {
        name: name.into(),
        node_attestor: PluginBlock {
            kind: "NodeAttestor".into(),
            name: PLUGIN_NAME.into(),
            binary: Some(binary),
            args: vec![],
            data: format!(
                "tdx {{\n  source = \"simulated\"\n}}\nsimulated_tdx {{\n  dir = {}\n{simulated_tdx_extra}\n}}\ninstance_key_path = {}",
                hcl_string(&tdx_dir.to_string_lossy()),
                hcl_string(&instance_key_path.to_string_lossy()),
            ),
        },
        extra_plugins: Vec::new(),
    }
}

//! `twi demo`: the project's main job on one machine. A real SPIRE server and agent load our node
//! attestor by path and checksum; the agent attests with simulated SEV-SNP evidence; a workload fetches
//! its X.509-SVID over the standard Workload API; the attested selectors and the SVID are printed and
//! written under `--out`. Everything is stopped at the end.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::spire::{
    hcl_string, AgentSettings, PluginBinary, PluginBlock, ServerSettings, SpireAgent, SpireBins,
    SpireServer,
};

/// The trust domain of the demo.
pub const TRUST_DOMAIN: &str = "example.org";
/// The plugin name in both `server.conf` and `agent.conf` (SPIRE pairs the halves by name).
pub const PLUGIN_NAME: &str = "twi";

/// Options of `twi demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the demo writes its outputs (selectors, SVID, bundle).
    pub out: PathBuf,
    /// SPIRE binaries to use instead of building them (also read from `SPIRE_BIN_DIR`).
    pub spire_bin_dir: Option<PathBuf>,
}

/// The project's root, for finding `scripts/` and `target/`.
pub fn workspace_root() -> PathBuf {
    let compiled_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if compiled_in.join("scripts/ensure-spire.sh").is_file() {
        compiled_in.canonicalize().unwrap_or(compiled_in)
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    }
}

/// Our plugin binaries: next to the running `twi` binary (same cargo profile), built there if missing.
pub fn plugin_binaries() -> Result<(PluginBinary, PluginBinary)> {
    let exe = std::env::current_exe().context("locating the twi binary")?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let server = dir.join("twi-server-nodeattestor");
    let agent = dir.join("twi-agent-nodeattestor");
    if !server.is_file() || !agent.is_file() {
        let release = dir.ends_with("release");
        eprintln!("building the plugin binaries into {} ...", dir.display());
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "twi-node-attestor", "--bins"])
            .current_dir(workspace_root());
        if release {
            cmd.arg("--release");
        }
        let st = cmd
            .status()
            .context("running cargo build for the plugins")?;
        if !st.success() {
            bail!("building the plugin binaries failed");
        }
    }
    Ok((PluginBinary::new(&server)?, PluginBinary::new(&agent)?))
}

/// Runs the demo end to end.
pub fn run(opts: &DemoOptions) -> Result<()> {
    let root = workspace_root();
    let bins = SpireBins::locate(&root, opts.spire_bin_dir.as_deref())?;
    let (server_plugin, agent_plugin) = plugin_binaries()?;
    fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let out = opts.out.canonicalize()?;

    // 1. A simulated SEV-SNP root set (ARK/ASK/VCEK in AMD's formats, signed by a test root).
    let sim_dir = out.join("sim");
    if !sim_dir.join("ark.pem").is_file() {
        twi_core::sim::init(&sim_dir, &twi_core::sim::InitOptions::new(unix_now())).with_context(
            || {
                format!(
                    "creating the simulated SEV-SNP roots in {}",
                    sim_dir.display()
                )
            },
        )?;
    }
    println!(
        "== simulated SEV-SNP roots in {} (TEST ROOTS, NOT AMD)",
        sim_dir.display()
    );

    // 2. SPIRE server with our server-side node attestor, trusting the simulated root by name.
    let run_dir = crate::spire::short_tempdir("twi-demo-")?;
    let server_data = format!(
        "snp {{\n  simulated_roots = [{}]\n}}",
        hcl_string(&sim_dir.join("ark.pem").to_string_lossy())
    );
    let settings = ServerSettings {
        trust_domain: TRUST_DOMAIN.into(),
        plugins: vec![PluginBlock {
            kind: "NodeAttestor".into(),
            name: PLUGIN_NAME.into(),
            binary: Some(server_plugin),
            args: vec![],
            data: server_data,
        }],
        extra: String::new(),
    };
    let mut server = SpireServer::start(&bins, run_dir.path(), &settings)?;
    println!(
        "== SPIRE server {} running, NodeAttestor \"{PLUGIN_NAME}\" loaded",
        crate::spire::SPIRE_VERSION
    );

    // 3. SPIRE agent with our agent-side node attestor on the simulated device.
    let agent_data = format!(
        "snp {{\n  source = \"simulated\"\n}}\nsimulated {{\n  dir = {}\n}}",
        hcl_string(&sim_dir.to_string_lossy())
    );
    let agent_settings = AgentSettings {
        name: "agent".into(),
        node_attestor: PluginBlock {
            kind: "NodeAttestor".into(),
            name: PLUGIN_NAME.into(),
            binary: Some(agent_plugin),
            args: vec![],
            data: agent_data,
        },
        extra_plugins: Vec::new(),
    };
    let mut agent = SpireAgent::start(&bins, &server, &agent_settings)?;
    let agent_id = agent.wait_attested(Duration::from_secs(60))?;
    println!("== agent attested as {agent_id}");

    let agents = server.agents()?;
    let me = agents
        .iter()
        .find(|a| a.spiffe_id == agent_id)
        .context("attested agent missing from `agent list`")?;
    println!("== attested selectors ({} of them):", me.selectors.len());
    for s in &me.selectors {
        println!("   {s}");
    }
    fs::write(
        out.join("agent-selectors.txt"),
        me.selectors.join("\n") + "\n",
    )?;

    // 4. A workload entry under that agent, and the workload's SVID over the Workload API.
    let workload_id = format!("spiffe://{TRUST_DOMAIN}/demo/workload");
    let uid = current_uid();
    server.entry_create(&agent_id, &workload_id, &[&format!("unix:uid:{uid}")])?;
    let svid_dir = out.join("svid");
    let fetched = agent.fetch_x509_until_ok(&svid_dir, Duration::from_secs(60))?;
    println!(
        "== workload fetched its X.509-SVID:\n{}",
        String::from_utf8_lossy(&fetched.stdout).trim_end()
    );
    let svid_pem = fs::read(svid_dir.join("svid.0.pem")).context("reading the fetched SVID")?;
    println!("== SVID certificate:");
    for line in crate::svid::describe_pem(&svid_pem)? {
        println!("   {line}");
    }

    agent.stop();
    server.stop();
    println!(
        "== outputs in {}: agent-selectors.txt, svid/svid.0.pem, svid/bundle.0.pem, sim/",
        out.display()
    );
    println!("== stopped SPIRE agent and server");
    Ok(())
}

/// The current user's uid, read from /proc (the built-in `unix` workload attestor selects on it).
fn current_uid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, from the system clock.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

//! `twi demo`: the project's main job on one machine. A real SPIRE server loads our node attestor and
//! credential composer, a real SPIRE agent our node attestor, all by path and checksum; the agent attests
//! with simulated SEV-SNP evidence and the verifier's signed attestation result (EAR) is stored; a
//! workload fetches its X.509-SVID over the standard Workload API, carrying the EAR and a logged
//! credential-provenance record; the demo prints the selectors, the SVID and its TWI extensions decoded,
//! checks them with `twi svid verify`, and writes what a relying party needs under `--out`. Everything
//! is stopped at the end.

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

/// The plugin binaries the demo loads into SPIRE.
#[derive(Debug, Clone)]
pub struct DemoPlugins {
    pub server_node_attestor: PluginBinary,
    pub agent_node_attestor: PluginBinary,
    pub credential_composer: PluginBinary,
}

/// Our plugin binaries: next to the running `twi` binary (same cargo profile), built there if missing.
pub fn plugin_binaries() -> Result<DemoPlugins> {
    let exe = std::env::current_exe().context("locating the twi binary")?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let server = dir.join("twi-server-nodeattestor");
    let agent = dir.join("twi-agent-nodeattestor");
    let composer = dir.join("twi-server-credentialcomposer");
    if !server.is_file() || !agent.is_file() || !composer.is_file() {
        let release = dir.ends_with("release");
        eprintln!("building the plugin binaries into {} ...", dir.display());
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "twi-node-attestor",
            "-p",
            "twi-credential-composer",
            "--bins",
        ])
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
    Ok(DemoPlugins {
        server_node_attestor: PluginBinary::new(&server)?,
        agent_node_attestor: PluginBinary::new(&agent)?,
        credential_composer: PluginBinary::new(&composer)?,
    })
}

/// Runs the demo end to end.
pub fn run(opts: &DemoOptions) -> Result<()> {
    let root = workspace_root();
    let bins = SpireBins::locate(&root, opts.spire_bin_dir.as_deref())?;
    let plugins = plugin_binaries()?;
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

    // 2. SPIRE server with our server-side node attestor, trusting the simulated root by name and
    //    storing signed attestation results, and our credential composer logging every credential.
    //    Server state lives in a fresh run dir; what a relying party needs is written under `out`.
    let run_dir = crate::spire::short_tempdir("twi-demo-")?;
    let run = run_dir.path();
    let files = RelyingPartyFiles::in_dir(&out);
    let results_db = format!("sqlite://{}", run.join("results.db").display());
    let server_data = format!(
        "snp {{\n  simulated_roots = [{}]\n}}\nattestation_results {{\n  database = {}\n  verifier_key_path = {}\n  jwks_path = {}\n}}",
        hcl_string(&sim_dir.join("ark.pem").to_string_lossy()),
        hcl_string(&results_db),
        hcl_string(&run.join("verifier-key.pem").to_string_lossy()),
        hcl_string(&files.jwks.to_string_lossy()),
    );
    let log_address = format!("127.0.0.1:{}", crate::spire::free_port()?);
    let composer_data = format!(
        "log_dir = {}\nlog_key_path = {}\nlog_vkey_path = {}\nprovenance_key_path = {}\nprovenance_public_key_path = {}\nattestation_results_database = {}\nserver_socket_path = {}\nlog_serve_address = {}",
        hcl_string(&run.join("cprov-log").to_string_lossy()),
        hcl_string(&run.join("log-key").to_string_lossy()),
        hcl_string(&files.log_key.to_string_lossy()),
        hcl_string(&run.join("provenance-key.pem").to_string_lossy()),
        hcl_string(&files.provenance_key.to_string_lossy()),
        hcl_string(&results_db),
        hcl_string(&run.join("server.sock").to_string_lossy()),
        hcl_string(&log_address),
    );
    let settings = ServerSettings {
        trust_domain: TRUST_DOMAIN.into(),
        plugins: vec![
            PluginBlock {
                kind: "NodeAttestor".into(),
                name: PLUGIN_NAME.into(),
                binary: Some(plugins.server_node_attestor),
                args: vec![],
                data: server_data,
            },
            PluginBlock {
                kind: "CredentialComposer".into(),
                name: PLUGIN_NAME.into(),
                binary: Some(plugins.credential_composer),
                args: vec![],
                data: composer_data,
            },
        ],
        extra: String::new(),
    };
    let mut server = SpireServer::start(&bins, run, &settings)?;
    println!(
        "== SPIRE server {} running, NodeAttestor \"{PLUGIN_NAME}\" and CredentialComposer \"{PLUGIN_NAME}\" loaded",
        crate::spire::SPIRE_VERSION
    );
    println!("== credential-provenance log served at http://{log_address}/ (checkpoint, tile/…)");

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
            binary: Some(plugins.agent_node_attestor),
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

    // 5. Its TWI extensions, decoded and checked the way a relying party does: `twi svid verify`.
    let svid_file = svid_dir.join("svid.0.pem");
    let bundle_file = svid_dir.join("bundle.0.pem");
    let verify_args = files.verify_args(&svid_file, &bundle_file);
    println!(
        "== twi svid verify {}",
        verify_args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let exe = std::env::current_exe().context("locating the twi binary")?;
    let verified = Command::new(&exe)
        .args(["svid", "verify"])
        .args(&verify_args)
        .output()
        .context("running twi svid verify")?;
    print!("{}", String::from_utf8_lossy(&verified.stdout));
    eprint!("{}", String::from_utf8_lossy(&verified.stderr));
    let passed = verified.status.success();

    agent.stop();
    server.stop();
    println!(
        "== outputs in {}: agent-selectors.txt, svid/svid.0.pem, svid/bundle.0.pem, {}, {}, {}, sim/",
        out.display(),
        file_name(&files.jwks),
        file_name(&files.log_key),
        file_name(&files.provenance_key),
    );
    if !passed {
        bail!(
            "twi svid verify refused the demo's SVID (exit {:?})",
            verified.status.code()
        );
    }
    println!("== stopped SPIRE agent and server");
    Ok(())
}

/// The files a relying party needs to check an SVID's TWI extensions, as the demo writes them.
#[derive(Debug, Clone)]
struct RelyingPartyFiles {
    /// The verifier's JWKS (EAR signatures).
    jwks: PathBuf,
    /// The log's signed-note verifier key (checkpoints).
    log_key: PathBuf,
    /// The composer's provenance public key (statements).
    provenance_key: PathBuf,
}

impl RelyingPartyFiles {
    fn in_dir(dir: &Path) -> RelyingPartyFiles {
        RelyingPartyFiles {
            jwks: dir.join("verifier-jwks.json"),
            log_key: dir.join("log-key.txt"),
            provenance_key: dir.join("provenance-key.pub.pem"),
        }
    }

    /// The arguments of `twi svid verify` for `svid` and `bundle`.
    fn verify_args(&self, svid: &Path, bundle: &Path) -> Vec<std::ffi::OsString> {
        vec![
            "--svid".into(),
            svid.into(),
            "--bundle".into(),
            bundle.into(),
            "--jwks".into(),
            self.jwks.clone().into(),
            "--log-key".into(),
            self.log_key.clone().into(),
            "--provenance-key".into(),
            self.provenance_key.clone().into(),
        ]
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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

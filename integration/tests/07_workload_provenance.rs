//! Provenance selectors gate an SVID with the real SPIRE agent 1.15.3: our WorkloadAttestor (plugin name
//! `twi-workload`) reads a directory attestation store; a registration entry demands the builder and the
//! source repository of a signed SLSA provenance. The workload is one binary (a copy of spire-agent, run
//! as `api fetch x509`), and the test changes only the store and the binary:
//!
//! 1. a provenance signed by the trusted key → SVID for the entry;
//! 2. no provenance → no SVID;
//! 3. a provenance signed by an unknown key → no SVID (and the agent logs why);
//! 4. the trusted provenance again → SVID again;
//! 5. the binary changed by one byte → no SVID.
//!
//! The server also runs our credential composer (issue #6 item 4): the SVID issued in case 1 carries a
//! signed credential-provenance record whose workload provenance (`wprov`) is what the entry demanded
//! and our attestor proved: the SLSA provenance's builder and source repository.
//!
//! Keys, signatures and base64 come from OpenSSL, not from our code, so the plugin is checked against an
//! independent DSSE signer (PAE built here from the spec).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use der::DecodePem;
use serde_json::json;
use twi::spire::{hcl_string, PluginBinary, PluginBlock, SpireAgent, SpireServer};
use twi_credential_composer::extension::{TwiProvenance, DEFAULT_PROVENANCE_OID};
use twi_credential_composer::statement::{verify_statement, ProvenancePublicKey};
use twi_integration::*;

/// Our workload attestor's name in agent.conf, hence the selector type.
const WL_PLUGIN: &str = "twi-workload";
const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
const REPO: &str = "https://github.com/twi-spire/payments";
const COMMIT: &str = "3f786850e387550fdab836ed7e6dc881de23001b";
const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

fn openssl(args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (CI installs it)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp paths")
}

/// A P-256 key pair made by OpenSSL: (private PEM, public PEM).
fn keypair(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let key = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        path_str(&key),
    ])?;
    openssl(&[
        "ec",
        "-in",
        path_str(&key),
        "-pubout",
        "-out",
        path_str(&public),
    ])?;
    Ok((key, public))
}

fn base64_file(path: &Path) -> Result<String> {
    let out = openssl(&["base64", "-A", "-in", path_str(path)])?;
    Ok(String::from_utf8(out)?.trim().to_owned())
}

/// A DSSE envelope of an SLSA v1 provenance about `digest_hex`, signed with OpenSSL (DER ECDSA over
/// SHA-256 of the PAE).
fn signed_provenance(work: &Path, key: &Path, digest_hex: &str) -> Result<String> {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "payments", "digest": {"sha256": digest_hex}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": REPO, "path": ".github/workflows/release.yml"}},
                "resolvedDependencies": [{"uri": format!("git+{REPO}@refs/heads/main"), "digest": {"gitCommit": COMMIT}}]
            },
            "runDetails": {"builder": {"id": BUILDER}, "metadata": {"invocationId": "https://github.com/twi-spire/payments/actions/runs/1"}}
        }
    })
    .to_string();
    let payload = work.join("payload.json");
    std::fs::write(&payload, &statement)?;
    let mut pae = format!(
        "DSSEv1 {} {PAYLOAD_TYPE} {} ",
        PAYLOAD_TYPE.len(),
        statement.len()
    )
    .into_bytes();
    pae.extend_from_slice(statement.as_bytes());
    let pae_file = work.join("pae.bin");
    std::fs::write(&pae_file, pae)?;
    let sig = work.join("sig.der");
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        path_str(key),
        "-out",
        path_str(&sig),
        path_str(&pae_file),
    ])?;
    Ok(json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": base64_file(&payload)?,
        "signatures": [{"keyid": "", "sig": base64_file(&sig)?}],
    })
    .to_string())
}

/// Runs the workload binary as a Workload API client (`<workload> api fetch x509`); returns its PID
/// and output.
fn fetch_as(workload: &Path, agent: &SpireAgent, out_dir: &Path) -> Result<(u32, Output)> {
    std::fs::create_dir_all(out_dir)?;
    for _ in 0..50 {
        match Command::new(workload)
            .args(["api", "fetch", "x509", "-timeout", "5s", "-socketPath"])
            .arg(&agent.socket)
            .arg("-write")
            .arg(out_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => {
                let pid = child.id();
                return Ok((pid, child.wait_with_output()?));
            }
            // Just written: busy until every descriptor opened for writing is closed.
            Err(e) if e.raw_os_error() == Some(26) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e).context("running the workload"),
        }
    }
    bail!("{} stayed busy", workload.display())
}

/// The selectors spire-agent logged for `pid` ("PID attested to have selectors", debug level), waiting
/// a moment for the line.
fn logged_selectors(agent: &SpireAgent, pid: u32) -> Result<String> {
    let needle = format!("pid={pid} ");
    spire::wait_for(
        &format!("the agent to log the selectors of PID {pid}"),
        Duration::from_secs(10),
        || {
            Ok(agent
                .log()
                .lines()
                .find(|l| l.contains("PID attested to have selectors") && l.contains(&needle))
                .map(str::to_owned))
        },
    )
}

/// Fetches until an SVID arrives (the entry takes a moment to reach the agent), checks its ID, and
/// that the workload's selectors carried the builder from our attestor.
fn assert_gets_svid(workload: &Path, agent: &SpireAgent, dir: &Path, want_id: &str) -> Result<()> {
    let mut last = String::new();
    let pid = spire::wait_for("the workload's X.509-SVID", Duration::from_secs(60), || {
        let (pid, o) = fetch_as(workload, agent, dir)?;
        if o.status.success() {
            return Ok(Some(pid));
        }
        last = output_text(&o);
        Ok(None)
    })
    .with_context(|| {
        format!(
            "last fetch said: {last}\nagent log:\n{}",
            spire::tail(&agent.log(), 30)
        )
    })?;
    let described = twi::svid::describe_pem(&std::fs::read(dir.join("svid.0.pem"))?)?;
    assert!(
        described
            .iter()
            .any(|l| l == &format!("spiffe id:  {want_id}")),
        "{described:?}"
    );
    let selectors = logged_selectors(agent, pid)?;
    assert!(
        selectors.contains(&format!("slsa:builder:{BUILDER}")),
        "{selectors}"
    );
    Ok(())
}

/// One fetch that must be refused because no entry matches: our attestor did attest the workload (its
/// `sha256:` selector is there, so it did not fail), without provenance selectors.
fn assert_no_svid(workload: &Path, agent: &SpireAgent, dir: &Path, case: &str) -> Result<()> {
    let digest = PluginBinary::new(workload)?.sha256;
    let (pid, o) = fetch_as(workload, agent, dir)?;
    let said = output_text(&o);
    assert!(
        !o.status.success(),
        "{case}: the workload got an SVID: {said}"
    );
    assert!(
        said.contains("no identity issued") || said.contains("PermissionDenied"),
        "{case}: refused for another reason: {said}"
    );
    let selectors = logged_selectors(agent, pid)?;
    assert!(
        selectors.contains(&format!("sha256:{digest}")),
        "{case}: our attestor's selectors are missing: {selectors}"
    );
    assert!(
        !selectors.contains("slsa:") && !selectors.contains("provenance:"),
        "{case}: provenance selectors present: {selectors}"
    );
    Ok(())
}

/// The SVID's signed credential-provenance record names the SLSA provenance the entry demanded: its
/// builder and its source repository (the composer read them from the entry's `twi-workload` selectors).
fn assert_record_names_provenance(svid: &Path, key: &Path, want_id: &str) -> Result<()> {
    let cert = x509_cert::Certificate::from_pem(std::fs::read(svid)?)?;
    let ext = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id.to_string() == DEFAULT_PROVENANCE_OID)
        .context("no TwiProvenance extension in the workload SVID")?;
    let prov = TwiProvenance::from_der(ext.extn_value.as_bytes())?;
    let key = ProvenancePublicKey::from_pem(&std::fs::read_to_string(key)?)?;
    let record = verify_statement(&prov.statement, &key)?.record;
    assert_eq!(record.sub, want_id);
    let slsa = record
        .wprov
        .iter()
        .find(|d| d.annotations.get("role").map(String::as_str) == Some("slsa-provenance"))
        .with_context(|| format!("no SLSA provenance descriptor in wprov: {:?}", record.wprov))?;
    assert_eq!(
        slsa.annotations.get("builderId").map(String::as_str),
        Some(BUILDER),
        "{slsa:?}"
    );
    assert_eq!(slsa.uri.as_deref(), Some(REPO), "{slsa:?}");
    Ok(())
}

#[test]
fn provenance_selectors_gate_the_svid() -> Result<()> {
    let bins = spire_bins()?;
    let sim = shared_sim_dir()?;
    let run = spire::short_tempdir("twi-e2e7-")?;
    let root = run.path().canonicalize()?;
    let keys = root.join("keys");
    let store = root.join("store");
    let work = root.join("work");
    for d in [&keys, &store, &work] {
        std::fs::create_dir_all(d)?;
    }
    let (ci_key, ci_pub) = keypair(&keys, "ci")?;
    let (stranger_key, _) = keypair(&keys, "stranger")?;

    // The workload: a copy of spire-agent (a Workload API client we can run), with its own digest dir.
    let workload = root.join("payments");
    std::fs::copy(&bins.agent, &workload)?;
    let digest = PluginBinary::new(&workload)?.sha256;
    let digest_dir = store.join("sha256").join(&digest);
    std::fs::create_dir_all(&digest_dir)?;
    let trusted = signed_provenance(&work, &ci_key, &digest)?;
    let untrusted = signed_provenance(&work, &stranger_key, &digest)?;

    let plugin_data = format!(
        "provenance {{\n  store_dir = {}\n  trusted_keys = [\n    {{ name = \"ci\", public_key_path = {} }},\n  ]\n}}",
        hcl_string(path_str(&store)),
        hcl_string(path_str(&ci_pub)),
    );
    // The server stores attestation results and composes SVIDs with our credential composer, told that
    // our workload attestor's selectors carry the type `twi-workload`.
    let results = ResultFiles::in_dir(&root);
    let mut settings = server_settings(&[sim], "")?;
    settings.plugins[0].data.push('\n');
    settings.plugins[0].data.push_str(&results.hcl());
    let provenance_pub = root.join("provenance-pub.pem");
    settings.plugins.push(PluginBlock {
        kind: "CredentialComposer".into(),
        name: "twi".into(),
        binary: Some(plugin("twi-server-credentialcomposer")?),
        args: vec![],
        data: format!(
            "log_dir = {}\nlog_key_path = {}\nprovenance_key_path = {}\nprovenance_public_key_path = {}\n\
             attestation_results_database = {}\nserver_socket_path = {}\nworkload_attestor_name = \"{WL_PLUGIN}\"\n",
            hcl_string(path_str(&root.join("cprov-log"))),
            hcl_string(path_str(&root.join("log-key"))),
            hcl_string(path_str(&root.join("provenance-key.pem"))),
            hcl_string(path_str(&provenance_pub)),
            hcl_string(&format!("sqlite://{}", results.database.display())),
            hcl_string(path_str(&root.join("server.sock"))),
        ),
    });
    let server = SpireServer::start(&bins, &root, &settings)?;
    let mut settings = agent_settings("agent", plugin("twi-agent-nodeattestor")?, &[], sim, "");
    settings.extra_plugins.push(PluginBlock {
        kind: "WorkloadAttestor".into(),
        name: WL_PLUGIN.into(),
        binary: Some(plugin("twi-agent-workloadattestor")?),
        args: vec![],
        data: plugin_data.clone(),
    });
    let mut agent = SpireAgent::start(&bins, &server, &settings)?;
    let agent_id = agent.wait_attested(Duration::from_secs(60))?;

    let workload_id = format!("spiffe://{TRUST_DOMAIN}/e2e/provenance/payments");
    server.entry_create(
        &agent_id,
        &workload_id,
        &[
            &format!("{WL_PLUGIN}:slsa:builder:{BUILDER}"),
            &format!("{WL_PLUGIN}:slsa:source:{REPO}"),
        ],
    )?;
    let provenance_file = digest_dir.join("provenance.json");

    // 1. Trusted provenance: the entry matches.
    std::fs::write(&provenance_file, &trusted)?;
    assert_gets_svid(&workload, &agent, &root.join("svid1"), &workload_id)?;
    assert_record_names_provenance(
        &root.join("svid1/svid.0.pem"),
        &provenance_pub,
        &workload_id,
    )?;

    // 2. The same binary without provenance.
    std::fs::remove_file(&provenance_file)?;
    assert_no_svid(&workload, &agent, &root.join("svid2"), "no provenance")?;

    // 3. A provenance signed by a key the agent does not trust: refused, and the agent says why.
    std::fs::write(&provenance_file, &untrusted)?;
    assert_no_svid(&workload, &agent, &root.join("svid3"), "unknown key")?;
    spire::wait_for(
        "the agent to log why the provenance was not used",
        Duration::from_secs(10),
        || {
            let log = agent.log();
            Ok(
                (log.contains("provenance not used") && log.contains("signed by no trusted key"))
                    .then_some(()),
            )
        },
    )
    .with_context(|| spire::tail(&agent.log(), 30))?;

    // 4. Trusted again: the store alone decided.
    std::fs::write(&provenance_file, &trusted)?;
    assert_gets_svid(&workload, &agent, &root.join("svid4"), &workload_id)?;

    // The operator's view of the same binary agrees with what the agent used.
    let config = root.join("plugin.hcl");
    std::fs::write(&config, &plugin_data)?;
    let o = Command::new(twi_cli()?)
        .args(["provenance", "inspect", "--json", "--file"])
        .arg(&workload)
        .arg("--config")
        .arg(&config)
        .output()?;
    assert!(o.status.success(), "{}", output_text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let sel: Vec<&str> = v["selectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for want in [
        format!("slsa:builder:{BUILDER}"),
        format!("slsa:source:{REPO}"),
        format!("slsa:commit:{COMMIT}"),
        "provenance:signer:ci".to_owned(),
    ] {
        assert!(sel.contains(&want.as_str()), "{want} missing from {sel:?}");
    }

    // 5. The binary changed (one byte appended; it still runs): its digest has no provenance.
    let mut bytes = std::fs::read(&workload)?;
    bytes.push(0);
    std::fs::write(&workload, bytes)?;
    assert_ne!(PluginBinary::new(&workload)?.sha256, digest);
    assert_no_svid(&workload, &agent, &root.join("svid5"), "changed binary")?;

    agent.stop();
    Ok(())
}

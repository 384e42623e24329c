//! One SPIRE server, one node attestor with a section per TEE, a mixed fleet: a simulated SEV-SNP agent
//! and a simulated TDX agent both attest and get their TEE's selectors; a debug TD is refused with its
//! reason in the server's log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use twi::spire::{SpireAgent, SpireServer};
use twi_integration::*;

#[test]
fn snp_and_tdx_agents_attest_to_one_server_and_a_debug_td_is_refused() -> anyhow::Result<()> {
    let bins = spire_bins()?;
    let snp_sim = shared_sim_dir()?;
    let tdx_sim = new_tdx_sim_dir()?;
    let run = spire::short_tempdir("twi-e2e4-")?;
    let server = SpireServer::start(
        &bins,
        run.path(),
        &mixed_server_settings(&[snp_sim], tdx_sim.path(), "")?,
    )?;
    let agent_bin = plugin("twi-agent-nodeattestor")?;

    // 1. A simulated SEV-SNP agent.
    let mut snp = SpireAgent::start(
        &bins,
        &server,
        &agent_settings("snp", agent_bin.clone(), &[], snp_sim, ""),
    )?;
    let snp_id = snp.wait_attested(Duration::from_secs(60))?;
    assert!(
        snp_id.starts_with(&format!(
            "spiffe://{TRUST_DOMAIN}/spire/agent/{PLUGIN_NAME}/sim-snp/"
        )),
        "{snp_id}"
    );

    // 2. A simulated TDX agent, its instance key persisted (the TDX agent ID is the key's digest).
    let key_path = run.path().join("tdx-instance-key.pem");
    let mut tdx = SpireAgent::start(
        &bins,
        &server,
        &tdx_agent_settings("tdx", agent_bin.clone(), tdx_sim.path(), "", &key_path),
    )?;
    let tdx_id = tdx.wait_attested(Duration::from_secs(60))?;
    let prefix = format!("spiffe://{TRUST_DOMAIN}/spire/agent/{PLUGIN_NAME}/sim-tdx/");
    assert!(tdx_id.starts_with(&prefix), "{tdx_id}");
    assert_eq!(tdx_id.len(), prefix.len() + 64, "SHA-256 hex: {tdx_id}");

    // 3. Both are listed with their own TEE's selectors, all marked simulated.
    let agents = server.agents()?;
    let sel = |v: &str| format!("{PLUGIN_NAME}:{v}");
    let find = |id: &str| {
        agents
            .iter()
            .find(|a| a.spiffe_id == id)
            .unwrap_or_else(|| panic!("{id} not listed in {agents:?}"))
    };
    let s = find(&snp_id);
    assert!(
        s.selectors.contains(&sel("simulated:tee:snp")),
        "{:?}",
        s.selectors
    );
    assert!(
        !s.selectors.iter().any(|x| x.contains(":tdx:")),
        "{:?}",
        s.selectors
    );
    let t = find(&tdx_id);
    for want in [
        "simulated:tee:tdx",
        "simulated:tdx:debug:false",
        "simulated:tdx:tcb_status:uptodate",
        "simulated:tdx:quote_version:4",
    ] {
        assert!(
            t.selectors.contains(&sel(want)),
            "{want} missing from {:?}",
            t.selectors
        );
    }
    assert!(
        t.selectors
            .iter()
            .any(|x| x.starts_with(&sel("simulated:tdx:mrtd:"))),
        "{:?}",
        t.selectors
    );
    assert!(
        t.selectors
            .iter()
            .all(|x| x.starts_with(&sel("simulated:"))),
        "{:?}",
        t.selectors
    );
    snp.stop();
    tdx.stop();

    // 4. A debug TD: refused, with the reason in the server's log, and not attested.
    let before = server.log().matches("(policy-debug)").count();
    let mut debug = SpireAgent::start(
        &bins,
        &server,
        &tdx_agent_settings(
            "tdx-debug",
            agent_bin,
            tdx_sim.path(),
            "  td_attributes = \"0x10000001\"",
            &run.path().join("tdx-debug-key.pem"),
        ),
    )?;
    spire::wait_for(
        "the server to log the refusal (policy-debug) of the debug TD",
        Duration::from_secs(60),
        || Ok((server.log().matches("(policy-debug)").count() > before).then_some(())),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\nserver log:\n{}\nagent log:\n{}",
            spire::tail(&server.log(), 30),
            spire::tail(&debug.log(), 30)
        )
    })?;
    let log = debug.log();
    assert!(!log.contains("Node attestation was successful"), "{log}");
    debug.stop();
    let ids: Vec<String> = server.agents()?.into_iter().map(|a| a.spiffe_id).collect();
    assert_eq!(ids.len(), 2, "only the two good agents: {ids:?}");
    Ok(())
}

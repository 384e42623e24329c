//! A SPIRE agent in a (simulated) SEV-SNP confidential VM attests through our plugins to a real SPIRE
//! server; a workload under that agent fetches its X.509-SVID over the Workload API; the agent
//! re-attests with fresh evidence and keeps its ID.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use twi::spire::{SpireAgent, SpireServer};
use twi_integration::*;

#[test]
fn agent_attests_workload_gets_svid_and_agent_reattests() -> anyhow::Result<()> {
    let bins = spire_bins()?;
    let sim = shared_sim_dir()?;
    let run = spire::short_tempdir("twi-e2e1-")?;
    let mut settings = server_settings(&[sim], "")?;
    // A short agent SVID lifetime makes the agent rotate, and so re-attest, within the test.
    settings.extra = "  agent_ttl = \"20s\"".into();
    let server = SpireServer::start(&bins, run.path(), &settings)?;
    let mut agent = SpireAgent::start(
        &bins,
        &server,
        &agent_settings("agent", plugin("twi-agent-nodeattestor")?, &[], sim, ""),
    )?;

    // 1. Attestation: the agent ID has SPIRE's form and says the TEE was simulated.
    let agent_id = agent.wait_attested(Duration::from_secs(60))?;
    let prefix = format!("spiffe://{TRUST_DOMAIN}/spire/agent/{PLUGIN_NAME}/sim-snp/");
    assert!(
        agent_id.starts_with(&prefix),
        "agent id {agent_id} lacks {prefix}"
    );
    let report_id = &agent_id[prefix.len()..];
    assert_eq!(
        report_id.len(),
        64,
        "REPORT_ID is 32 bytes hex: {report_id}"
    );

    // 2. The server lists our selectors for that agent (type = plugin name), all marked simulated.
    let agents = server.agents()?;
    let me = agents
        .iter()
        .find(|a| a.spiffe_id == agent_id)
        .expect("agent listed");
    assert_eq!(me.attestation_type, PLUGIN_NAME);
    assert!(me.can_reattest);
    let sel = |v: &str| format!("{PLUGIN_NAME}:{v}");
    for want in [
        "simulated:tee:snp",
        "simulated:snp:product:milan",
        "simulated:snp:policy:debug:false",
        "simulated:snp:vmpl:0",
    ] {
        assert!(
            me.selectors.contains(&sel(want)),
            "selector {want} missing from {:?}",
            me.selectors
        );
    }
    assert!(
        me.selectors
            .iter()
            .any(|s| s.starts_with(&sel("simulated:snp:measurement:"))),
        "{:?}",
        me.selectors
    );
    assert!(
        me.selectors
            .iter()
            .all(|s| s.starts_with(&sel("simulated:"))),
        "unmarked selector in {:?}",
        me.selectors
    );
    let shown = server.agent_show(&agent_id)?;
    assert!(
        shown.contains(&sel("simulated:tee:snp")),
        "agent show: {shown}"
    );

    // 3. A workload entry whose parent is that agent: the workload gets its SVID.
    let workload_id = format!("spiffe://{TRUST_DOMAIN}/e2e/workload");
    server.entry_create(
        &agent_id,
        &workload_id,
        &[&format!("unix:uid:{}", current_uid())],
    )?;
    let svid_dir = run.path().join("svid");
    agent.fetch_x509_until_ok(&svid_dir, Duration::from_secs(60))?;
    let pem = std::fs::read(svid_dir.join("svid.0.pem"))?;
    let described = twi::svid::describe_pem(&pem)?;
    assert!(
        described
            .iter()
            .any(|l| l == &format!("spiffe id:  {workload_id}")),
        "{described:?}"
    );

    // 4. Re-attestation: SPIRE calls our plugins again (fresh nonce, fresh evidence) and the agent
    //    keeps its ID.
    let attested_lines = |log: &str| {
        log.lines()
            .filter(|l| l.contains("Agent attestation request completed"))
            .count()
    };
    spire::wait_for(
        "a second attestation of the same agent",
        Duration::from_secs(90),
        || Ok((attested_lines(&server.log()) >= 2).then_some(())),
    )?;
    let reattested = agent.log();
    assert!(
        reattested.contains("Successfully reattested node") || attested_lines(&server.log()) >= 2
    );
    let agents = server.agents()?;
    assert_eq!(
        agents.len(),
        1,
        "re-attestation must not create another agent: {agents:?}"
    );
    assert_eq!(agents[0].spiffe_id, agent_id);
    Ok(())
}

fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

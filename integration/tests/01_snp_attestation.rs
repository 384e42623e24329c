//! A SPIRE agent in a (simulated) SEV-SNP confidential VM attests through our plugins to a real SPIRE
//! server; a workload under that agent fetches its X.509-SVID over the Workload API; the agent
//! re-attests with fresh evidence and keeps its ID. Each attestation's signed result (EAR) is stored
//! under the agent ID and verifies with the JWKS the server plugin wrote, in code and with `twi ear verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use twi::spire::{SpireAgent, SpireServer};
use twi_core::ear::{self, Jwks, Status as EarStatus, SNP_SUBMOD};
use twi_integration::*;

#[test]
fn agent_attests_workload_gets_svid_and_agent_reattests() -> anyhow::Result<()> {
    let bins = spire_bins()?;
    let sim = shared_sim_dir()?;
    let run = spire::short_tempdir("twi-e2e1-")?;
    let mut settings = server_settings(&[sim], "")?;
    // A short agent SVID lifetime makes the agent rotate, and so re-attest, within the test.
    settings.extra = "  agent_ttl = \"20s\"".into();
    let results_dir = run.path().join("results");
    std::fs::create_dir(&results_dir)?;
    let results = ResultFiles::in_dir(&results_dir);
    settings.plugins[0].data.push('\n');
    settings.plugins[0].data.push_str(&results.hcl());
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

    // 2b. The attestation's signed result is stored under the agent ID and verifies with the JWKS
    //     the plugin wrote at Configure: warning (simulated TEE), with the agent ID and a nonce.
    let store = twi_results::open(&format!("sqlite://{}", results.database.display()))?;
    let row = store
        .latest(&agent_id)?
        .expect("an attestation result stored for the agent");
    let jwks = Jwks::from_json(&std::fs::read(&results.jwks)?)?;
    let claims = ear::verify(&row.ear_jws, &jwks, i64::try_from(unix_now())?)?;
    assert_eq!(claims.status, EarStatus::Warning);
    assert_eq!(claims.agent_id.as_deref(), Some(agent_id.as_str()));
    let snp = &claims.submods[SNP_SUBMOD];
    assert_eq!(snp.simulated, Some(true));
    assert!(snp.nonce.is_some(), "the EAR names the challenge");
    assert_eq!(row.meta.status, "warning");
    let ear_file = run.path().join("agent.ear");
    std::fs::write(&ear_file, &row.ear_jws)?;
    let out = std::process::Command::new(twi_cli()?)
        .args(["ear", "verify", "--json", "--ear"])
        .arg(&ear_file)
        .arg("--jwks")
        .arg(&results.jwks)
        .output()?;
    // Exit 1 by design: valid, but a simulated TEE is never affirming.
    assert_eq!(
        out.status.code(),
        Some(1),
        "twi ear verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["affirming"], false, "{verdict}");
    assert_eq!(verdict["status"], "warning", "{verdict}");
    assert_eq!(
        verdict["ear"]["https://twi-spire.dev/agent-id"],
        agent_id.as_str(),
        "{verdict}"
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
    // Every attestation left its result: at least two now, the newest one fresh.
    let history = store.history(&agent_id, 10)?;
    assert!(history.len() >= 2, "{} results stored", history.len());
    ear::verify(&history[0].ear_jws, &jwks, i64::try_from(unix_now())?)?;
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

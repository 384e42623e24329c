//! Evidence that must not be trusted is refused by the real SPIRE server through our plugin, with the
//! reason visible in SPIRE's own logs, and nothing is issued: tampered report, replayed report (old
//! nonce), debug guest, untrusted root, expired VCEK.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use twi::spire::{PluginBinary, SpireAgent, SpireServer};
use twi_integration::*;

/// Starts an agent that must be refused, waits until the server logged the refusal, and checks that
/// the agent's log and the server's log both carry `reason`, and that no agent was attested.
fn assert_refused(
    server: &SpireServer,
    name: &str,
    binary: PluginBinary,
    args: &[&str],
    sim: &std::path::Path,
    simulated_extra: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let bins = spire_bins()?;
    let before = server.log().matches(reason).count();
    let mut agent = SpireAgent::start(
        &bins,
        server,
        &agent_settings(name, binary, args, sim, simulated_extra),
    )?;
    spire::wait_for(
        &format!("the server to log the refusal {reason:?} for {name}"),
        Duration::from_secs(60),
        || Ok((server.log().matches(reason).count() > before).then_some(())),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\nserver log:\n{}\nagent log:\n{}",
            spire::tail(&server.log(), 30),
            spire::tail(&agent.log(), 30)
        )
    })?;
    spire::wait_for(
        &format!("the agent {name} to log the refusal"),
        Duration::from_secs(30),
        || Ok(agent.log().contains(reason).then_some(())),
    )
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", spire::tail(&agent.log(), 30)))?;
    let agent_log = agent.log();
    assert!(
        !agent_log.contains("Node attestation was successful"),
        "{name} attested:\n{agent_log}"
    );
    agent.stop();
    assert!(
        server.agents()?.is_empty(),
        "{name}: an agent was attested despite {reason}"
    );
    Ok(())
}

#[test]
fn untrusted_evidence_is_refused_with_its_reason() -> anyhow::Result<()> {
    let bins = spire_bins()?;
    let trusted = shared_sim_dir()?;
    let expired = new_sim_dir(Some(unix_now() - 24 * 3600))?;
    let untrusted = new_sim_dir(None)?;
    let run = spire::short_tempdir("twi-e2e2-")?;
    // The server trusts the shared root and the expired-VCEK root, not the third one.
    let server = SpireServer::start(
        &bins,
        run.path(),
        &server_settings(&[trusted, expired.path()], "")?,
    )?;
    let agent = plugin("twi-agent-nodeattestor")?;

    // A report altered after signing: the signature no longer verifies.
    assert_refused(
        &server,
        "tampered",
        faulty_agent()?,
        &["tamper"],
        trusted,
        "",
        "(signature)",
    )?;
    // A genuine report produced for an earlier nonce, replayed.
    assert_refused(
        &server,
        "replay",
        faulty_agent()?,
        &["replay"],
        trusted,
        "",
        "(nonce)",
    )?;
    // A guest whose policy allows debugging (policy bit 19).
    assert_refused(
        &server,
        "debug",
        agent.clone(),
        &[],
        trusted,
        "  policy = \"0xb0000\"",
        "(policy-debug)",
    )?;
    // Evidence from a root the server was not told to trust.
    assert_refused(
        &server,
        "untrusted",
        agent.clone(),
        &[],
        untrusted.path(),
        "",
        "(untrusted-root)",
    )?;
    // A VCEK whose validity ended yesterday.
    assert_refused(
        &server,
        "expired",
        agent,
        &[],
        expired.path(),
        "",
        "(cert-validity)",
    )?;
    Ok(())
}

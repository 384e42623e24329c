//! TDX evidence that must not be trusted is refused by the real SPIRE server through our plugin, with the
//! reason in both SPIRE logs, and nothing is issued: a replayed quote, a TD whose MRTD the policy does
//! not allow, an out-of-date platform TCB, a revoked PCK certificate and stale collateral. (A debug TD
//! is refused in 04_mixed_fleet.) Each platform state is its own simulated root set, hence its own server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use twi::spire::{SpireAgent, SpireServer};
use twi_core::tdx::TcbStatus;
use twi_integration::*;

/// Starts a simulated TD agent (`faulty`: the replaying test agent) on the root set `tdx`, waits until
/// the server logged `reason`, and checks the agent's log carries it too and no agent was attested.
fn assert_refused(
    server: &SpireServer,
    tdx: &Path,
    name: &str,
    faulty: bool,
    simulated_tdx_extra: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let bins = spire_bins()?;
    let before = server.log().matches(reason).count();
    let key = tdx.join(format!("{name}-key.pem"));
    let binary = if faulty {
        faulty_agent()?
    } else {
        plugin("twi-agent-nodeattestor")?
    };
    let mut settings = tdx_agent_settings(name, binary, tdx, simulated_tdx_extra, &key);
    if faulty {
        settings.node_attestor.args = vec!["replay".into()];
    }
    let mut agent = SpireAgent::start(&bins, server, &settings)?;
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
    let log = agent.log();
    assert!(
        !log.contains("Node attestation was successful"),
        "{name} attested:\n{log}"
    );
    agent.stop();
    Ok(())
}

/// A server trusting only the TDX root set `tdx` (its SNP section trusts no simulated root).
fn tdx_server(run: &Path, tdx: &Path, tdx_extra: &str) -> anyhow::Result<SpireServer> {
    SpireServer::start(
        &spire_bins()?,
        run,
        &mixed_server_settings(&[], tdx, tdx_extra)?,
    )
}

#[test]
fn replayed_quote_and_wrong_mrtd_are_refused_and_the_pinned_td_attests() -> anyhow::Result<()> {
    let tdx = new_tdx_sim_dir()?;
    let run = spire::short_tempdir("twi-e2e5a-")?;
    let good: String = twi_core::sim::tdx::default_mrtd()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let server = tdx_server(run.path(), tdx.path(), &format!("  mrtd = [\"{good}\"]"))?;

    assert_refused(&server, tdx.path(), "replay", true, "", "(nonce)")?;
    let other = "ab".repeat(48);
    assert_refused(
        &server,
        tdx.path(),
        "wrong-mrtd",
        false,
        &format!("  mrtd = \"{other}\""),
        "(policy)",
    )?;
    assert!(
        server.log().contains("mrtd"),
        "the policy refusal names the field:\n{}",
        spire::tail(&server.log(), 20)
    );
    assert!(server.agents()?.is_empty(), "{:?}", server.agents()?);

    // The pin is not a blanket refusal: the TD it names attests.
    let key = run.path().join("good-key.pem");
    let mut agent = SpireAgent::start(
        &spire_bins()?,
        &server,
        &tdx_agent_settings(
            "good",
            plugin("twi-agent-nodeattestor")?,
            tdx.path(),
            "",
            &key,
        ),
    )?;
    let id = agent.wait_attested(Duration::from_secs(60))?;
    assert!(id.contains("/sim-tdx/"), "{id}");
    agent.stop();
    assert_eq!(server.agents()?.len(), 1);
    Ok(())
}

/// Changes the simulated platform's options before its root set is made.
type Adjust = Box<dyn FnOnce(&mut twi_core::sim::tdx::TdxInitOptions)>;

#[test]
fn platform_states_that_must_fail_closed() -> anyhow::Result<()> {
    let cases: [(&str, Adjust, &str); 3] = [
        (
            "out-of-date",
            Box::new(|o| o.tcb_status = TcbStatus::OutOfDate),
            "(tcb-out-of-date)",
        ),
        (
            "revoked-pck",
            Box::new(|o| o.revoke_pck = true),
            "(revoked)",
        ),
        (
            "stale-collateral",
            Box::new(|o| {
                let now = unix_now();
                o.collateral_issue_date = Some(now - 40 * 24 * 3600);
                o.collateral_next_update = Some(now - 10 * 24 * 3600);
            }),
            "(collateral-expired)",
        ),
    ];
    for (name, adjust, reason) in cases {
        let tdx = new_tdx_sim_dir_with(adjust)?;
        let run = spire::short_tempdir("twi-e2e5b-")?;
        let server = tdx_server(run.path(), tdx.path(), "")?;
        assert_refused(&server, tdx.path(), name, false, "", reason)?;
        assert!(
            server.agents()?.is_empty(),
            "{name}: attested despite {reason}"
        );
    }
    Ok(())
}

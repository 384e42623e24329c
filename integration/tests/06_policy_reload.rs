//! The appraisal policy document against the real SPIRE server: the server's node attestor reads its
//! policy from `policy_file`; a simulated TD whose MRTD the policy pins attests and gets the policy's
//! `policy-match` selector; the file is then replaced (atomic rename) by a policy pinning another MRTD,
//! and, with the same server process, never restarted or reconfigured, a new TD with the old MRTD is
//! refused with the reason in the server log while a TD with the new MRTD attests under the new
//! policy, whose id, version and digest its stored EAR names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use twi::spire::{hcl_string, SpireAgent, SpireServer};
use twi_core::ear::{self, Jwks, TDX_SUBMOD};
use twi_core::policy::Policy;
use twi_integration::*;

/// A policy allowing TDs with `mrtd` only (no `snp` section), with a rule `rule` naming that MRTD.
fn policy(version: &str, mrtd: &str, rule: &str) -> String {
    format!(
        "id = \"e2e-fleet\"\nversion = \"{version}\"\ntdx {{\n  mrtd = [\"{mrtd}\"]\n}}\n\
         selectors {{\n  match \"{rule}\" {{\n    tdx {{\n      mrtd = [\"{mrtd}\"]\n    }}\n  }}\n}}\n"
    )
}

/// Writes `text` next to `path` and renames it over `path`, as operators are told to.
fn install(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("hcl.new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn logs(server: &SpireServer, agent: &SpireAgent) -> String {
    format!(
        "server log:\n{}\nagent log:\n{}",
        spire::tail(&server.log(), 30),
        spire::tail(&agent.log(), 30)
    )
}

#[test]
fn a_rewritten_policy_file_applies_to_the_next_attestation_without_a_restart() -> anyhow::Result<()>
{
    let bins = spire_bins()?;
    let tdx = new_tdx_sim_dir()?;
    let run = spire::short_tempdir("twi-e2e6-")?;
    let results = ResultFiles::in_dir(run.path());
    let policy_path = run.path().join("policy.hcl");
    let good: String = twi_core::sim::tdx::default_mrtd()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let other = "ab".repeat(48);
    install(&policy_path, &policy("1", &good, "web-v1"))?;

    // plugin_data: the policy file, and only verification keys in the tdx block.
    let mut settings = mixed_server_settings(&[], tdx.path(), "")?;
    if let Some(block) = settings.plugins.first_mut() {
        block.data.push_str(&format!(
            "\npolicy_file = {}\n{}",
            hcl_string(&policy_path.to_string_lossy()),
            results.hcl()
        ));
    }
    let mut server = SpireServer::start(&bins, run.path(), &settings)?;
    let sel = |v: &str| format!("{PLUGIN_NAME}:{v}");
    let agent_bin = plugin("twi-agent-nodeattestor")?;
    let store = twi_results::open(&format!("sqlite://{}", results.database.display()))?;
    let jwks = || -> anyhow::Result<Jwks> { Ok(Jwks::from_json(&std::fs::read(&results.jwks)?)?) };

    // 1. A TD with the pinned MRTD attests and gets the rule's selector; its EAR names policy v1.
    let mut first = SpireAgent::start(
        &bins,
        &server,
        &tdx_agent_settings(
            "td-1",
            agent_bin.clone(),
            tdx.path(),
            "",
            &run.path().join("td-1-key.pem"),
        ),
    )?;
    let id1 = first.wait_attested(Duration::from_secs(60))?;
    let agents = server.agents()?;
    let a1 = agents
        .iter()
        .find(|a| a.spiffe_id == id1)
        .unwrap_or_else(|| panic!("{id1} not listed in {agents:?}"));
    assert!(
        a1.selectors.contains(&sel("simulated:policy-match:web-v1")),
        "{:?}",
        a1.selectors
    );
    let v1 = Policy::load(&policy_path)?;
    let row = store.latest(&id1)?.expect("a stored EAR for td-1");
    let claims = ear::verify(&row.ear_jws, &jwks()?, i64::try_from(unix_now())?)?;
    assert_eq!(
        claims.submods[TDX_SUBMOD].policy_ids[0],
        v1.policy_id().uri()
    );
    assert_eq!(row.meta.policy_id, Some(v1.policy_id().uri()));
    first.stop();

    // 2. The operator installs a policy pinning another MRTD. Same server process from here on.
    install(&policy_path, &policy("2", &other, "web-v2"))?;
    let v2 = Policy::load(&policy_path)?;
    assert_ne!(v2.digest(), v1.digest());

    // 3. A new TD with the old MRTD is refused, with the policy's reason in the server's log.
    let refusals = server.log().matches("(policy)").count();
    let mut refused = SpireAgent::start(
        &bins,
        &server,
        &tdx_agent_settings(
            "td-old",
            agent_bin.clone(),
            tdx.path(),
            "",
            &run.path().join("td-old-key.pem"),
        ),
    )?;
    spire::wait_for(
        "the server to log the policy refusal of td-old",
        Duration::from_secs(60),
        || Ok((server.log().matches("(policy)").count() > refusals).then_some(())),
    )
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&server, &refused)))?;
    let log = server.log();
    assert!(
        log.contains("policy reloaded"),
        "the reload is logged:\n{}",
        spire::tail(&log, 30)
    );
    assert!(
        log.contains(&v2.digest_hex()),
        "the reload log names the new digest:\n{}",
        spire::tail(&log, 30)
    );
    assert!(
        log.lines()
            .any(|l| l.contains("(policy)") && l.contains("mrtd")),
        "the refusal names the field:\n{}",
        spire::tail(&log, 30)
    );
    spire::wait_for(
        "the agent td-old to log the refusal",
        Duration::from_secs(30),
        || Ok(refused.log().contains("(policy)").then_some(())),
    )
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&server, &refused)))?;
    assert!(
        !refused.log().contains("Node attestation was successful"),
        "td-old attested:\n{}",
        refused.log()
    );
    refused.stop();

    // 4. A typo in the next policy: attestations fail closed (Unavailable, naming the file) instead of
    //    going on under the previous policy; fixing the file recovers without a restart.
    install(
        &policy_path,
        &policy("3", &other, "web-v2").replace("mrtd = [", "mrdt = ["),
    )?;
    let unavailable = server.log().matches("policy unavailable").count();
    let mut broken = SpireAgent::start(
        &bins,
        &server,
        &tdx_agent_settings(
            "td-broken",
            agent_bin.clone(),
            tdx.path(),
            &format!("  mrtd = \"{other}\""),
            &run.path().join("td-broken-key.pem"),
        ),
    )?;
    spire::wait_for(
        "the server to log that the policy is unavailable",
        Duration::from_secs(60),
        || Ok((server.log().matches("policy unavailable").count() > unavailable).then_some(())),
    )
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&server, &broken)))?;
    let file = policy_path.to_string_lossy().into_owned();
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("policy unavailable") && l.contains(&file) && l.contains("mrdt")),
        "the refusal names the file and the key:\n{}",
        spire::tail(&server.log(), 30)
    );
    spire::wait_for(
        "the agent td-broken to log the refusal",
        Duration::from_secs(30),
        || Ok(broken.log().contains("policy unavailable").then_some(())),
    )
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&server, &broken)))?;
    assert!(!broken.log().contains("Node attestation was successful"));
    broken.stop();
    install(&policy_path, &policy("2", &other, "web-v2"))?;

    // 5. A TD with the newly pinned MRTD attests under the new policy, with the new rule's selector.
    let mut second = SpireAgent::start(
        &bins,
        &server,
        &tdx_agent_settings(
            "td-2",
            agent_bin,
            tdx.path(),
            &format!("  mrtd = \"{other}\""),
            &run.path().join("td-2-key.pem"),
        ),
    )?;
    let id2 = second
        .wait_attested(Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&server, &second)))?;
    let agents = server.agents()?;
    let a2 = agents
        .iter()
        .find(|a| a.spiffe_id == id2)
        .unwrap_or_else(|| panic!("{id2} not listed in {agents:?}"));
    assert!(
        a2.selectors.contains(&sel("simulated:policy-match:web-v2")),
        "{:?}",
        a2.selectors
    );
    assert!(!a2.selectors.iter().any(|s| s.contains("web-v1")));
    let row = store.latest(&id2)?.expect("a stored EAR for td-2");
    let claims = ear::verify(&row.ear_jws, &jwks()?, i64::try_from(unix_now())?)?;
    assert_eq!(
        claims.submods[TDX_SUBMOD].policy_ids[0],
        v2.policy_id().uri()
    );
    second.stop();

    assert!(server.running(), "the server was never restarted");
    assert_eq!(
        server
            .log()
            .matches("msg=configured @module=\"twi_node_attestor::server\"")
            .count(),
        1,
        "configured once, never reconfigured:\n{}",
        spire::tail(&server.log(), 40)
    );
    Ok(())
}

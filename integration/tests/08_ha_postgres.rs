//! SPIRE servers in HA with a real PostgreSQL server (started here by scripts/postgres.sh; a missing
//! PostgreSQL fails the test, it never skips): two SPIRE 1.15.3 servers share one PostgreSQL database
//! as their own datastore, and their node attestors share one attestation-results database and one
//! verifier key. A simulated TD attests to server A and a simulated SEV-SNP VM to server B: each
//! server lists both agents, the results database holds a signed EAR per agent (each issued by the
//! server the agent went to), and both EARs verify with either server's JWKS. Then server A goes away
//! and the TD attests again to server B: same agent ID, one more EAR in the same history.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use twi::spire::{AttestedAgent, SpireAgent, SpireServer, SqlDataStore};
use twi_core::ear::{self, Jwks, Status as EarStatus, SNP_SUBMOD, TDX_SUBMOD};
use twi_integration::*;

/// The server's log lines recording an attestation whose EAR has digest `ear_sha256`.
fn issued_here(server: &SpireServer, ear_sha256: &str) -> bool {
    server.log().lines().any(|l| {
        l.contains("msg=\"attestation result\"") && l.contains(&format!("ear_sha256={ear_sha256}"))
    })
}

/// The one entry for `id` in `agents`.
fn listed<'a>(agents: &'a [AttestedAgent], id: &str, server: &str) -> &'a AttestedAgent {
    let found: Vec<&AttestedAgent> = agents.iter().filter(|a| a.spiffe_id == id).collect();
    assert_eq!(
        found.len(),
        1,
        "{id} listed once by server {server}: {agents:?}"
    );
    found[0]
}

/// The line of the server's log where our plugin says where results go and whether it generated
/// or loaded the verifier key.
fn results_line(server: &SpireServer) -> String {
    server
        .log()
        .lines()
        .find(|l| l.contains("attestation results are signed and stored"))
        .unwrap_or_else(|| {
            panic!(
                "no results line in the server log:\n{}",
                spire::tail(&server.log(), 40)
            )
        })
        .to_owned()
}

fn read_jwks(path: &Path) -> anyhow::Result<(Vec<u8>, Jwks)> {
    let bytes = std::fs::read(path)?;
    let jwks = Jwks::from_json(&bytes)?;
    Ok((bytes, jwks))
}

#[test]
fn two_servers_share_postgres_for_spire_and_for_attestation_results() -> anyhow::Result<()> {
    // Dropped last (locals drop in reverse): the SPIRE servers stop before PostgreSQL does.
    let pg = PgServer::start()?;
    let spire_db = pg.createdb("spire")?;
    let results_db = pg.createdb("twi_results")?;
    let datastore = SqlDataStore::postgres(&format!("{spire_db} sslmode=disable"));

    let bins = spire_bins()?;
    let snp_sim = shared_sim_dir()?;
    let tdx_sim = new_tdx_sim_dir()?;
    let run = spire::short_tempdir("twi-e2e8-")?;
    let shared_key = run.path().join("verifier-key.pem");
    assert!(!shared_key.exists());

    // One verifier key file for both servers (as on shared storage, or provisioned to each), each
    // server writing its own JWKS.
    let server_settings = |name: &str| -> anyhow::Result<(spire::ServerSettings, ResultFiles)> {
        let results = ResultFiles {
            // Not used: the block names the PostgreSQL database instead of this SQLite file.
            database: run.path().join("unused.db"),
            verifier_key: shared_key.clone(),
            jwks: run.path().join(format!("jwks-{name}.json")),
        };
        let mut settings = mixed_server_settings(&[snp_sim], tdx_sim.path(), "")?;
        settings.plugins[0].data.push('\n');
        settings.plugins[0]
            .data
            .push_str(&results.hcl_with_database(&results_db));
        Ok((settings, results))
    };
    let (settings_a, results_a) = server_settings("a")?;
    let (settings_b, results_b) = server_settings("b")?;

    // Server A first: its plugin generates the verifier key; server B's loads that same key.
    let mut server_a =
        SpireServer::start_with_datastore(&bins, &run.path().join("a"), &settings_a, &datastore)?;
    let server_b =
        SpireServer::start_with_datastore(&bins, &run.path().join("b"), &settings_b, &datastore)?;
    assert_ne!(server_a.port, server_b.port);
    let (line_a, line_b) = (results_line(&server_a), results_line(&server_b));
    assert!(line_a.contains(" key=generated "), "{line_a}");
    assert!(line_b.contains(" key=loaded "), "{line_b}");
    assert!(
        !line_a.contains("postgres") && !line_a.contains(pg.socket_dir().to_str().unwrap()),
        "the results database is not logged (it may hold a password): {line_a}"
    );
    let (jwks_a_bytes, jwks) = read_jwks(&results_a.jwks)?;
    let (jwks_b_bytes, jwks_b) = read_jwks(&results_b.jwks)?;
    assert_eq!(jwks_a_bytes, jwks_b_bytes, "both servers publish one key");
    // ... the key in the shared file, which server A generated.
    let key = ear::VerifierKey::load(&shared_key)?;
    assert_eq!(jwks.to_json(), key.jwks().to_json());
    let kid = format!(" kid={} ", key.kid());
    assert!(line_a.contains(&kid) && line_b.contains(&kid), "{kid}");
    // The shared datastore holds one trust bundle with both servers' CAs, so an agent bootstrapped
    // from either server trusts both (server A sees B's CA once its bundle cache refreshes).
    for server in [&server_a, &server_b] {
        spire::wait_for(
            "both servers' CAs in each server's bundle",
            Duration::from_secs(60),
            || Ok((server.bundle_pem()?.matches("BEGIN CERTIFICATE").count() == 2).then_some(())),
        )?;
    }

    // 1. A simulated TD attests to server A, a simulated SEV-SNP VM to server B.
    let agent_bin = plugin("twi-agent-nodeattestor")?;
    let td_key = run.path().join("td-instance-key.pem");
    let mut td = SpireAgent::start(
        &bins,
        &server_a,
        &tdx_agent_settings("td", agent_bin.clone(), tdx_sim.path(), "", &td_key),
    )?;
    let td_id = td.wait_attested(Duration::from_secs(60))?;
    let mut vm = SpireAgent::start(
        &bins,
        &server_b,
        &agent_settings("vm", agent_bin.clone(), &[], snp_sim, ""),
    )?;
    let vm_id = vm.wait_attested(Duration::from_secs(60))?;
    assert!(
        td_id.starts_with(&format!(
            "spiffe://{TRUST_DOMAIN}/spire/agent/{PLUGIN_NAME}/sim-tdx/"
        )),
        "{td_id}"
    );
    assert!(
        vm_id.starts_with(&format!(
            "spiffe://{TRUST_DOMAIN}/spire/agent/{PLUGIN_NAME}/sim-snp/"
        )),
        "{vm_id}"
    );

    // 2. The shared datastore: each server lists both agents, with the selectors its peer set.
    let sel = |v: &str| format!("{PLUGIN_NAME}:{v}");
    for (name, server) in [("A", &server_a), ("B", &server_b)] {
        let agents = server.agents()?;
        assert_eq!(agents.len(), 2, "server {name}: {agents:?}");
        let t = listed(&agents, &td_id, name);
        let v = listed(&agents, &vm_id, name);
        assert_eq!(t.attestation_type, PLUGIN_NAME);
        assert_eq!(v.attestation_type, PLUGIN_NAME);
        assert!(
            t.selectors.contains(&sel("simulated:tee:tdx")),
            "server {name}: {:?}",
            t.selectors
        );
        assert!(
            v.selectors.contains(&sel("simulated:tee:snp")),
            "server {name}: {:?}",
            v.selectors
        );
    }

    // 3. The shared results database holds a signed EAR per agent, each issued by the server the
    //    agent attested to, and both verify with either server's JWKS.
    let store = twi_results::open(&results_db)?;
    let now = i64::try_from(unix_now())?;
    let td_row = store.latest(&td_id)?.expect("an EAR stored for the TD");
    let vm_row = store.latest(&vm_id)?.expect("an EAR stored for the VM");
    assert!(
        issued_here(&server_a, &td_row.ear_sha256),
        "TD's EAR from A"
    );
    assert!(
        !issued_here(&server_b, &td_row.ear_sha256),
        "TD's EAR from A"
    );
    assert!(
        issued_here(&server_b, &vm_row.ear_sha256),
        "VM's EAR from B"
    );
    assert!(
        !issued_here(&server_a, &vm_row.ear_sha256),
        "VM's EAR from B"
    );
    for (row, id, submod) in [(&td_row, &td_id, TDX_SUBMOD), (&vm_row, &vm_id, SNP_SUBMOD)] {
        for keys in [&jwks, &jwks_b] {
            let claims = ear::verify(&row.ear_jws, keys, now)?;
            assert_eq!(claims.agent_id.as_deref(), Some(id.as_str()));
            // A simulated TEE is never affirming.
            assert_eq!(claims.status, EarStatus::Warning, "{id}");
            assert_eq!(claims.submods.len(), 1, "{:?}", claims.submods.keys());
            let appraisal = &claims.submods[submod];
            assert_eq!(appraisal.simulated, Some(true));
            assert!(appraisal.nonce.is_some(), "the EAR names the challenge");
        }
        assert_eq!(row.meta.status, "warning");
        assert_eq!(&row.agent_id, id);
    }

    // 4. Server A goes away. The TD (same instance key, so the same agent ID) attests to server B:
    //    no second agent, and its new EAR lands in the same history, issued by B.
    td.stop();
    server_a.stop();
    assert!(!server_a.running());
    assert!(
        !server_a.cli(&["healthcheck"])?.status.success(),
        "server A still answers"
    );
    let mut td_again = SpireAgent::start(
        &bins,
        &server_b,
        &tdx_agent_settings("td-again", agent_bin, tdx_sim.path(), "", &td_key),
    )?;
    let td_again_id = td_again.wait_attested(Duration::from_secs(60))?;
    assert_eq!(td_again_id, td_id, "the instance key names the agent");
    let agents = server_b.agents()?;
    assert_eq!(agents.len(), 2, "{agents:?}");
    listed(&agents, &td_id, "B");
    let history = store.history(&td_id, 10)?;
    assert_eq!(history.len(), 2, "one EAR per attestation");
    assert_eq!(history[1].id, td_row.id);
    assert!(history[0].id > td_row.id);
    assert!(issued_here(&server_b, &history[0].ear_sha256), "from B");
    let claims = ear::verify(&history[0].ear_jws, &jwks, i64::try_from(unix_now())?)?;
    assert_eq!(claims.agent_id.as_deref(), Some(td_id.as_str()));
    assert!(claims.submods.contains_key(TDX_SUBMOD));
    td_again.stop();
    vm.stop();
    Ok(())
}

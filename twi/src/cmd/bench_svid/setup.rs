//! The SPIRE servers the issuance latency is compared on, and what the composer reads.
//!
//! All run SPIRE 1.15.3 with the same `server.conf` (sqlite3 DataStore, memory KeyManager, DEBUG
//! log, same trust domain, same registration entry). Server A has no composer; server N loads a
//! pass-through composer ([`super::passthrough`]), the cost of any external composer; server B loads
//! our CredentialComposer with its defaults (fail closed, sequencer batching as shipped). The workload's entry names an agent as
//! parent, and the attestation-result store holds a signed EAR for that agent built from real SEV-SNP
//! evidence (shared/testdata oak-milan-v3, verified by twi-core; a simulated Milan report when the
//! testdata is absent), so the composer takes its full path per SVID: entry lookup on the local API,
//! EAR read, record signing, durable log append, both extensions.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};
use twi::spire::{
    hcl_string, short_tempdir, PluginBinary, PluginBlock, ServerSettings, SpireBins, SpireServer,
};
use twi_core::bench_support::{Fixture, OAK_MILAN_V3};
use twi_core::ear::{self, EarIssuer, PolicyId, SnpOutcome, VerifierKey};
use twi_results::ResultMeta;

/// The trust domain of both servers.
pub(crate) const TRUST_DOMAIN: &str = "example.org";
/// The agent the workload's entry names as parent; its EAR is in the store.
pub(crate) const AGENT_ID: &str = "spiffe://example.org/spire/agent/twi/bench-agent";
/// The SPIFFE ID every benchmark SVID is minted for.
pub(crate) const WORKLOAD_ID: &str = "spiffe://example.org/bench/workload";
/// The composer's plugin name in `server.conf` (its selector type is the default `twi`).
const PLUGIN_NAME: &str = "twi";

/// The selectors of the workload's entry, as our workload attestor emits them: the executable's
/// digest and path (which the composer turns into the record's workload provenance) and a uid.
pub(crate) fn entry_selectors() -> Vec<String> {
    let digest = hex::encode(Sha256::digest(b"twi bench-svid workload executable"));
    vec![
        format!("twi:sha256:{digest}"),
        "twi:path:/usr/local/bin/bench-workload".into(),
        "unix:uid:1000".into(),
    ]
}

/// A signed EAR for [`AGENT_ID`], current at `now`, and the row metadata the node attestor stores.
pub(crate) struct BenchEar {
    pub(crate) jws: String,
    pub(crate) meta: ResultMeta,
    /// Which evidence it was built from.
    pub(crate) source: String,
}

/// Builds the EAR the node attestor would have stored for an agent whose evidence is `oak-milan-v3`
/// (verified at the vector's `as_of`, issued at `now`), or simulated evidence when `testdata` lacks it.
pub(crate) fn bench_ear(testdata: &Path, scratch: &Path, now: i64) -> Result<BenchEar> {
    let fixture = match Fixture::from_vector(testdata, &OAK_MILAN_V3).context("real SNP vector")? {
        Some(f) => f,
        None => {
            eprintln!(
                "{} not found: the EAR is built from simulated SEV-SNP evidence",
                testdata.join(OAK_MILAN_V3.report).display()
            );
            Fixture::simulated_milan(scratch, u64::try_from(now).unwrap_or(0))
                .context("simulated Milan fixture")?
        }
    };
    let verified = fixture
        .warm_verifier()
        .and_then(|v| v.verify(&fixture.report, &fixture.chain, fixture.now))
        .with_context(|| format!("{}: verification", fixture.name))?;
    // The agent's instance key: its SPKI is what the EAR's key binding names.
    let instance = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let spki = p256::pkcs8::EncodePublicKey::to_public_key_der(instance.verifying_key())
        .map_err(|e| anyhow!("instance key SPKI: {e}"))?;
    let issuer = EarIssuer::new(
        concat!("twi-server-nodeattestor@", env!("CARGO_PKG_VERSION")),
        ear::DEFAULT_VALIDITY_SECS,
    );
    let policy_id = PolicyId::new(
        "bench-baseline",
        "1",
        &hex::encode(Sha256::digest(b"baseline")),
    )
    .context("policy id")?;
    let claims = ear::from_snp(
        &issuer,
        SnpOutcome::Verified {
            verified: &verified,
            policy: &fixture.policy,
            expected_report_data: fixture.report.report_data(),
            instance_key_spki: spki.as_bytes(),
        },
        &[0x42; 32],
        Some(AGENT_ID),
        &policy_id,
        now,
    );
    let key = VerifierKey::generate(&mut rand_core::OsRng);
    let jws = ear::sign(&claims, &key).context("signing the EAR")?;
    let submod = claims.submods.values().next();
    Ok(BenchEar {
        meta: ResultMeta {
            status: claims.status.as_str().to_owned(),
            issued_at: claims.iat,
            expires_at: claims.exp,
            evidence_sha256: submod.and_then(|a| a.evidence_sha256.clone()),
            policy_id: Some(policy_id.uri()),
        },
        jws,
        source: fixture.name.clone(),
    })
}

/// Server A (SPIRE alone), server N (SPIRE + a pass-through composer) and server B (SPIRE + our
/// composer), running.
pub(crate) struct Servers {
    pub(crate) plain: SpireServer,
    pub(crate) passthrough: SpireServer,
    pub(crate) composed: SpireServer,
    /// The composer's transparency log directory.
    pub(crate) log_dir: PathBuf,
    /// The attestation-result store (`sqlite://` URL) the composer reads.
    pub(crate) results_url: String,
    /// Holds the directories until the servers are gone (dropped last).
    pub(crate) dir: tempfile::TempDir,
}

/// The composer's `plugin_data`: required keys only, everything else at its default.
pub(crate) fn composer_hcl(dir: &Path, results_url: &str, socket: &Path) -> String {
    let s = |p: &Path| hcl_string(&p.to_string_lossy());
    format!(
        "log_dir = {}\nlog_key_path = {}\nprovenance_key_path = {}\n\
         attestation_results_database = {}\nserver_socket_path = {}\n",
        s(&dir.join("cprov-log")),
        s(&dir.join("log-key")),
        s(&dir.join("provenance-key.pem")),
        hcl_string(results_url),
        s(socket),
    )
}

/// Starts the three servers (A, N, B), stores `ear` for [`AGENT_ID`] and registers [`WORKLOAD_ID`]
/// on each. `passthrough` is this `twi` binary, started by SPIRE with [`super::passthrough::FLAG`].
pub(crate) fn start(
    bins: &SpireBins,
    composer: &PluginBinary,
    passthrough: &PluginBinary,
    ear: &BenchEar,
) -> Result<Servers> {
    let dir = short_tempdir("twi-bsvid-")?;
    let (dir_a, dir_n, dir_b) = (
        dir.path().join("a"),
        dir.path().join("n"),
        dir.path().join("b"),
    );
    std::fs::create_dir_all(&dir_b)?;
    let results_url = format!("sqlite://{}", dir_b.join("results.sqlite3").display());
    twi_results::open(&results_url)
        .and_then(|s| s.put(AGENT_ID, &ear.jws, &ear.meta))
        .context("storing the agent's EAR")?;

    let plain = SpireServer::start(
        bins,
        &dir_a,
        &ServerSettings {
            trust_domain: TRUST_DOMAIN.into(),
            plugins: Vec::new(),
            extra: String::new(),
        },
    )
    .context("server A (SPIRE alone)")?;
    let passthrough = SpireServer::start(
        bins,
        &dir_n,
        &ServerSettings {
            trust_domain: TRUST_DOMAIN.into(),
            plugins: vec![PluginBlock {
                kind: "CredentialComposer".into(),
                name: "passthrough".into(),
                binary: Some(passthrough.clone()),
                args: vec!["bench-svid".into(), super::passthrough::FLAG.into()],
                data: String::new(),
            }],
            extra: String::new(),
        },
    )
    .context("server N (SPIRE + pass-through composer)")?;
    let composed = SpireServer::start(
        bins,
        &dir_b,
        &ServerSettings {
            trust_domain: TRUST_DOMAIN.into(),
            plugins: vec![PluginBlock {
                kind: "CredentialComposer".into(),
                name: PLUGIN_NAME.into(),
                binary: Some(composer.clone()),
                args: Vec::new(),
                data: composer_hcl(&dir_b, &results_url, &dir_b.join("server.sock")),
            }],
            extra: String::new(),
        },
    )
    .context("server B (SPIRE + CredentialComposer)")?;
    let selectors = entry_selectors();
    let selectors: Vec<&str> = selectors.iter().map(String::as_str).collect();
    for s in [&plain, &passthrough, &composed] {
        s.entry_create(AGENT_ID, WORKLOAD_ID, &selectors)?;
    }
    Ok(Servers {
        plain,
        passthrough,
        composed,
        log_dir: dir_b.join("cprov-log"),
        results_url,
        dir,
    })
}

/// The size of the composer's log from its published checkpoint (c2sp.org/tlog-checkpoint: origin
/// line, then the tree size).
pub(crate) fn log_size(log_dir: &Path) -> Result<u64> {
    let path = log_dir.join("checkpoint");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| anyhow!("{}: no tree size on line 2", path.display()))
}

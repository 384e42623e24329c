//! The agent half of the node attestor (`twi-agent-nodeattestor`), running inside the confidential VM.
//!
//! `AidAttestation` is one straight line per challenge: send the [`wire::Hello`] (TEE kind and the
//! per-instance public key) → receive the server's [`wire::Challenge`] → put
//! [`wire::report_data`]`(nonce, key)` into fresh TEE evidence → sign [`wire::key_proof_message`] with the
//! instance key → send the [`wire::EvidenceResponse`]. Evidence is collected anew for every challenge,
//! including on re-attestation.
//!
//! Where evidence comes from is a [`collect::Collector`] chosen at Configure (see [`config`]).

pub mod collect;
pub mod config;
mod key;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use twi_core::sim::tdx::SimTdxDevice;
use twi_core::sim::SimSnpDevice;
use twi_plugin::proto::agent_nodeattestor::node_attestor_server::{
    NodeAttestor, NodeAttestorServer,
};
use twi_plugin::proto::agent_nodeattestor::payload_or_challenge_response::Data;
use twi_plugin::proto::agent_nodeattestor::{
    Challenge as ChallengeMsg, PayloadOrChallengeResponse,
};
use twi_plugin::{ConfigError, ConfigHandler, ConfigSlot, CoreConfig, PluginType};

use crate::wire;
use collect::{CollectError, Collector};
use config::{AgentConfig, Source, TdxSource, TeeChoice};

pub use key::{InstanceKey, KeyError};

/// Replaces the configured collector with another that usually delegates to it.
pub type CollectorWrapper = Box<dyn Fn(Arc<dyn Collector>) -> Arc<dyn Collector> + Send + Sync>;

/// What one successful Configure set up; RPCs hold it for their whole run.
struct Active {
    collector: Arc<dyn Collector>,
    key: Arc<InstanceKey>,
}

struct Inner {
    active: ConfigSlot<Active>,
    wrapper: Option<CollectorWrapper>,
    /// The in-memory key (no `instance_key_path`): made at the first Configure, kept across
    /// reconfigurations so the agent's key stays the same for the life of the process.
    memory_key: Mutex<Option<Arc<InstanceKey>>>,
    /// The simulated device stands for one VM (fixed REPORT_ID); keep it across reconfigurations that
    /// name the same directory.
    sim_device: Mutex<Option<(PathBuf, Arc<SimSnpDevice>)>>,
}

/// The agent NodeAttestor plugin: the gRPC service and its [`ConfigHandler`]. Clones share state.
#[derive(Clone)]
pub struct AgentPlugin {
    inner: Arc<Inner>,
}

impl Default for AgentPlugin {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentPlugin {
    /// An unconfigured plugin: `AidAttestation` answers `FailedPrecondition` until Configure succeeds.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// TEST SEAM: an agent whose configured collector is passed through `wrapper` at every Configure.
    ///
    /// Integration tests use it to build a faulty agent binary (tampering with, or replaying, evidence)
    /// that otherwise runs exactly the real agent code: same configuration, key handling, wire messages
    /// and key proof. Production binaries use [`AgentPlugin::new`].
    pub fn with_collector_wrapper(
        wrapper: impl Fn(Arc<dyn Collector>) -> Arc<dyn Collector> + Send + Sync + 'static,
    ) -> Self {
        Self::build(Some(Box::new(wrapper)))
    }

    fn build(wrapper: Option<CollectorWrapper>) -> Self {
        AgentPlugin {
            inner: Arc::new(Inner {
                active: ConfigSlot::new(),
                wrapper,
                memory_key: Mutex::new(None),
                sim_device: Mutex::new(None),
            }),
        }
    }

    /// The tonic service to hand to [`twi_plugin::run`] or [`twi_plugin::testing::load`].
    pub fn service(&self) -> NodeAttestorServer<AgentPlugin> {
        NodeAttestorServer::new(self.clone())
    }

    /// The Configure/Validate handler to hand to [`twi_plugin::run`] or [`twi_plugin::testing::load`].
    pub fn config_handler(&self) -> Arc<dyn ConfigHandler> {
        Arc::new(self.clone())
    }

    /// Serves this plugin to SPIRE: the whole `main` of an agent NodeAttestor binary.
    #[must_use]
    pub fn run(self) -> std::process::ExitCode {
        twi_plugin::run(
            PluginType::AgentNodeAttestor,
            self.service(),
            self.config_handler(),
        )
    }

    /// Opens the evidence source and the key for `cfg` (blocking: file and device I/O).
    fn activate(&self, cfg: &AgentConfig) -> Result<Active, ConfigError> {
        let collector = self.open_collector(cfg)?;
        let described = collector.describe();
        let collector = match &self.inner.wrapper {
            Some(wrap) => {
                tracing::warn!(source = %described, "collector wrapped by a test seam");
                wrap(collector)
            }
            None => collector,
        };
        let key = self.instance_key(cfg)?;
        if collector.tee() == wire::TeeKind::Tdx && cfg.instance_key_path.is_none() {
            tracing::warn!(
                "TDX without instance_key_path: the agent ID (derived from the instance key, TDX has no \
                 REPORT_ID) changes whenever this plugin restarts; set instance_key_path to keep it"
            );
        }
        let simulated = match cfg.tee {
            TeeChoice::Tdx => cfg.tdx.source == TdxSource::Simulated,
            _ => cfg.source == Source::Simulated,
        };
        if simulated {
            tracing::warn!(
                source = %described,
                instance_key_sha256 = %key.fingerprint(),
                "configured with a SIMULATED TEE: evidence is signed by a test root, not by AMD hardware; for testing only"
            );
        } else {
            tracing::info!(source = %described, instance_key_sha256 = %key.fingerprint(), "configured");
        }
        Ok(Active { collector, key })
    }

    fn open_collector(&self, cfg: &AgentConfig) -> Result<Arc<dyn Collector>, ConfigError> {
        let invalid = |key: &str, detail: String| ConfigError::InvalidValue {
            key: key.to_owned(),
            detail,
        };
        match cfg.tee {
            TeeChoice::Tdx => return self.open_tdx_collector(cfg),
            TeeChoice::Auto => {
                return collect::detect_any(
                    &cfg.configfs_tsm_path,
                    &cfg.sev_guest_device,
                    cfg.vmpl,
                    &cfg.tdx.configfs_tsm_path,
                    &cfg.tdx.tdx_guest_device,
                )
                .map_err(|e| invalid("tee", e.to_string()))
            }
            TeeChoice::Snp => {}
        }
        match cfg.source {
            Source::Auto => {
                collect::detect(&cfg.configfs_tsm_path, &cfg.sev_guest_device, cfg.vmpl)
                    .map_err(|e| invalid("snp.source", e.to_string()))
            }
            Source::ConfigfsTsm => {
                let tsm = collect::ConfigfsTsm::new(cfg.configfs_tsm_path.clone(), cfg.vmpl);
                match tsm.provider() {
                    Ok(p) if p == collect::SEV_GUEST_PROVIDER => Ok(Arc::new(tsm)),
                    Ok(p) => Err(invalid(
                        "snp.configfs_tsm_path",
                        format!(
                            "{} belongs to TSM provider `{p}`, not `{}` (SEV-SNP)",
                            cfg.configfs_tsm_path.display(),
                            collect::SEV_GUEST_PROVIDER
                        ),
                    )),
                    Err(e) => Err(invalid("snp.configfs_tsm_path", e.to_string())),
                }
            }
            Source::SevGuest => {
                if cfg.sev_guest_device.exists() {
                    Ok(Arc::new(collect::SevGuest::new(
                        cfg.sev_guest_device.clone(),
                        cfg.vmpl,
                    )))
                } else {
                    Err(invalid(
                        "snp.sev_guest_device",
                        format!(
                            "{} does not exist (is the sev-guest driver loaded?)",
                            cfg.sev_guest_device.display()
                        ),
                    ))
                }
            }
            Source::Simulated => {
                let Some(sim) = &cfg.simulated else {
                    return Err(ConfigError::MissingKey {
                        key: "simulated".into(),
                    });
                };
                let device = self.sim_device(&sim.dir)?;
                // One trial report, so a guest the simulated firmware refuses fails Configure, not the
                // first attestation.
                device.report(&[0; 64], &sim.guest).map_err(|e| match e {
                    twi_core::sim::SimError::InvalidGuestParam { field, .. } => invalid(
                        &format!(
                            "simulated.{}",
                            if field == "version" {
                                "report_version"
                            } else {
                                field
                            }
                        ),
                        e.to_string(),
                    ),
                    other => invalid("simulated.dir", other.to_string()),
                })?;
                Ok(Arc::new(collect::Simulated::new(
                    device,
                    sim.guest.clone(),
                    sim.dir.clone(),
                )))
            }
        }
    }

    fn open_tdx_collector(&self, cfg: &AgentConfig) -> Result<Arc<dyn Collector>, ConfigError> {
        let invalid = |key: &str, detail: String| ConfigError::InvalidValue {
            key: key.to_owned(),
            detail,
        };
        let t = &cfg.tdx;
        match t.source {
            TdxSource::Auto => collect::detect_tdx(&t.configfs_tsm_path, &t.tdx_guest_device)
                .map_err(|e| invalid("tdx.source", e.to_string())),
            TdxSource::ConfigfsTsm => {
                let tsm = collect::ConfigfsTsm::new_tdx(t.configfs_tsm_path.clone());
                match tsm.provider() {
                    Ok(p) if p == collect::TDX_GUEST_PROVIDER => Ok(Arc::new(tsm)),
                    Ok(p) => Err(invalid(
                        "tdx.configfs_tsm_path",
                        format!(
                            "{} belongs to TSM provider `{p}`, not `{}` (TDX)",
                            t.configfs_tsm_path.display(),
                            collect::TDX_GUEST_PROVIDER
                        ),
                    )),
                    Err(e) => Err(invalid("tdx.configfs_tsm_path", e.to_string())),
                }
            }
            TdxSource::TdxGuest => {
                if !t.tdx_guest_device.exists() {
                    return Err(invalid(
                        "tdx.tdx_guest_device",
                        format!(
                            "{} does not exist (is the tdx_guest driver loaded?)",
                            t.tdx_guest_device.display()
                        ),
                    ));
                }
                // One TDREPORT (no host round trip), so that a node that is not the tdx_guest device
                // fails Configure; whether the kernel has GetQuote shows at the first attestation.
                let guest = collect::TdxGuest::new(t.tdx_guest_device.clone());
                guest
                    .probe()
                    .map_err(|e| invalid("tdx.tdx_guest_device", e.to_string()))?;
                Ok(Arc::new(guest))
            }
            TdxSource::Simulated => {
                let Some(sim) = &t.simulated else {
                    return Err(ConfigError::MissingKey {
                        key: "simulated_tdx".into(),
                    });
                };
                let device = SimTdxDevice::open(&sim.dir).map_err(|e| {
                    invalid(
                        "simulated_tdx.dir",
                        format!("{e} (create it with twi_core::sim::tdx::init)"),
                    )
                })?;
                // One trial quote, so a broken root set fails Configure, not the first attestation.
                device
                    .quote(&[0; 64], &sim.td)
                    .map_err(|e| invalid("simulated_tdx.dir", e.to_string()))?;
                Ok(Arc::new(collect::SimulatedTdx::new(
                    Arc::new(device),
                    sim.td.clone(),
                    sim.dir.clone(),
                )))
            }
        }
    }

    fn sim_device(&self, dir: &std::path::Path) -> Result<Arc<SimSnpDevice>, ConfigError> {
        let mut cached = self
            .inner
            .sim_device
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((d, dev)) = cached.as_ref() {
            if d == dir {
                return Ok(Arc::clone(dev));
            }
        }
        let dev = Arc::new(
            SimSnpDevice::open(dir).map_err(|e| ConfigError::InvalidValue {
                key: "simulated.dir".into(),
                detail: format!("{e} (create it with `twi sim init`)"),
            })?,
        );
        *cached = Some((dir.to_path_buf(), Arc::clone(&dev)));
        Ok(dev)
    }

    fn instance_key(&self, cfg: &AgentConfig) -> Result<Arc<InstanceKey>, ConfigError> {
        let key_err = |e: KeyError| ConfigError::InvalidValue {
            key: "instance_key_path".into(),
            detail: e.to_string(),
        };
        if let Some(path) = &cfg.instance_key_path {
            return InstanceKey::load_or_create(path)
                .map(Arc::new)
                .map_err(key_err);
        }
        let mut slot = self
            .inner
            .memory_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = slot.as_ref() {
            return Ok(Arc::clone(k));
        }
        let k = Arc::new(InstanceKey::generate().map_err(key_err)?);
        *slot = Some(Arc::clone(&k));
        Ok(k)
    }
}

#[tonic::async_trait]
impl ConfigHandler for AgentPlugin {
    async fn configure(&self, core: CoreConfig, hcl: &str) -> Result<(), Status> {
        let cfg = config::build(&core, hcl)?;
        let this = self.clone();
        let active = tokio::task::spawn_blocking(move || this.activate(&cfg))
            .await
            .map_err(|e| Status::internal(format!("configure task failed: {e}")))??;
        self.inner.active.set(active);
        Ok(())
    }

    async fn validate(&self, core: CoreConfig, hcl: &str) -> Result<Vec<String>, Status> {
        let cfg = match config::build(&core, hcl) {
            Ok(cfg) => cfg,
            Err(e) => return Ok(vec![e.to_string()]),
        };
        let mut notes = Vec::new();
        if let Some(path) = &cfg.instance_key_path {
            if let Err(e) = InstanceKey::check_existing(path) {
                notes.push(format!("invalid value for `instance_key_path`: {e}"));
            }
        }
        Ok(notes)
    }
}

type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<PayloadOrChallengeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl NodeAttestor for AgentPlugin {
    type AidAttestationStream = ResponseStream;

    async fn aid_attestation(
        &self,
        request: Request<Streaming<ChallengeMsg>>,
    ) -> Result<Response<Self::AidAttestationStream>, Status> {
        let active = self.inner.active.get()?;
        let hello = wire::encode(&wire::Hello {
            v: wire::WIRE_VERSION,
            tee: active.collector.tee(),
            instance_key: active.key.spki_der().to_vec(),
        })
        .map_err(|e| Status::internal(e.to_string()))?;
        let mut challenges = request.into_inner();
        let (tx, rx) = mpsc::channel(2);
        tx.try_send(Ok(PayloadOrChallengeResponse {
            data: Some(Data::Payload(hello)),
        }))
        .map_err(|_| Status::internal("response stream closed before the payload"))?;

        tokio::spawn(async move {
            loop {
                let challenge = match challenges.message().await {
                    Ok(Some(msg)) => msg.challenge,
                    Ok(None) => break, // SPIRE has no more challenges
                    Err(status) => {
                        tracing::debug!(error = %status, "challenge stream ended");
                        break;
                    }
                };
                let answer = answer_challenge(&active, &challenge).await;
                let failed = answer.is_err();
                if let Err(status) = &answer {
                    tracing::error!(code = ?status.code(), error = status.message(), "attestation challenge failed");
                }
                let msg = answer.map(|bytes| PayloadOrChallengeResponse {
                    data: Some(Data::ChallengeResponse(bytes)),
                });
                if tx.send(msg).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One challenge → one evidence response, with fresh evidence.
async fn answer_challenge(active: &Arc<Active>, challenge: &[u8]) -> Result<Vec<u8>, Status> {
    let challenge = wire::Challenge::decode(challenge)
        .map_err(|e| Status::invalid_argument(format!("bad challenge from the server: {e}")))?;
    let report_data = wire::report_data(&challenge.nonce, active.key.spki_der());
    let collector = Arc::clone(&active.collector);
    let evidence = tokio::task::spawn_blocking(move || collector.collect(&report_data))
        .await
        .map_err(|e| CollectError::Task(e.to_string()))??;
    let key_proof = active
        .key
        .sign(&wire::key_proof_message(&challenge.nonce, &evidence));
    let response = wire::encode(&wire::EvidenceResponse {
        v: wire::WIRE_VERSION,
        evidence,
        key_proof,
    })
    .map_err(|e| Status::internal(e.to_string()))?;
    if response.len() > wire::MAX_EVIDENCE_LEN {
        return Err(Status::internal(format!(
            "evidence response is {} bytes, more than the {} the server accepts (certificate table too large?)",
            response.len(),
            wire::MAX_EVIDENCE_LEN
        )));
    }
    tracing::info!(
        source = %active.collector.describe(),
        bytes = response.len(),
        "answered attestation challenge with fresh evidence"
    );
    Ok(response)
}

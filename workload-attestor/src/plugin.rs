//! The gRPC face: `spire.plugin.agent.workloadattestor.v1.WorkloadAttestor` and Configure/Validate.
//!
//! `Attest` and `AttestReference` each take the configured [`Attestor`] once and run it as blocking work
//! (it reads `/proc` and may hash a file), so concurrent attestations — SPIRE calls every workload
//! attestor concurrently — never stall the runtime. On the plugin's multi-thread runtime that is
//! `block_in_place`: the call runs on the thread that received it while the worker's other tasks move to
//! another thread, which spares every attestation the hand-off to (and wake-up of) a blocking-pool thread
//! that `spawn_blocking` costs — measurable on the cached path (BENCHMARKS.md, workload attestor).
//! A current-thread runtime (which cannot `block_in_place`) falls back to `spawn_blocking`.
//!
//! `AttestReference` (SPIRE ≥ 1.15.2, protocol doc §7.3) is answered for the one reference type that names
//! a process, `spiffe.broker.WorkloadPIDReference`, exactly as `Attest`. Other types get
//! `InvalidArgument`, the answer the SDK's proto comment prescribes for "implemented, but not this type"
//! (SPIRE's `k8s` attestor does the same; its `unix` attestor answers `Unimplemented` to everything and
//! lets SPIRE fall back to `Attest`, with the same result for PIDs).

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};
use twi_plugin::proto::workloadattestor::workload_attestor_server::{
    WorkloadAttestor, WorkloadAttestorServer,
};
use twi_plugin::proto::workloadattestor::{
    AttestReferenceRequest, AttestReferenceResponse, AttestRequest, AttestResponse,
};
use twi_plugin::{ConfigHandler, ConfigSlot, CoreConfig, PluginType};

use crate::attestor::Attestor;
use crate::config::{self, Settings};
use crate::provenance::{NoProvenance, ProvenanceSource};

/// Full name of the Broker API's PID reference (go-spiffe v2.8.1 `exp/proto/spiffe/broker/api.proto`).
pub const PID_REFERENCE_NAME: &str = "spiffe.broker.WorkloadPIDReference";

/// The metadata key carrying the Broker API caller's SPIFFE ID on `AttestReference` (protocol doc §7.3).
const BROKER_CALLER_ID: &str = "spire-agent-broker-caller-id";

/// `spiffe.broker.WorkloadPIDReference`: `int32 pid = 1`, "MUST be a positive integer".
#[derive(Clone, PartialEq, Eq, Message)]
pub struct WorkloadPidReference {
    /// The workload's PID in the agent's PID namespace.
    #[prost(int32, tag = "1")]
    pub pid: i32,
}

struct Inner {
    active: ConfigSlot<Attestor>,
    provenance: Arc<dyn ProvenanceSource>,
}

/// The WorkloadAttestor plugin: the gRPC service and its [`ConfigHandler`]. Clones share state.
#[derive(Clone)]
pub struct WorkloadAttestorPlugin {
    inner: Arc<Inner>,
}

impl Default for WorkloadAttestorPlugin {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkloadAttestorPlugin {
    /// An unconfigured plugin without provenance: RPCs answer `FailedPrecondition` until Configure.
    #[must_use]
    pub fn new() -> Self {
        Self::with_provenance(Arc::new(NoProvenance))
    }

    /// An unconfigured plugin that asks `provenance` for selectors on every attested executable digest,
    /// unless the configuration has a `provenance` block (then its store is asked instead).
    #[must_use]
    pub fn with_provenance(provenance: Arc<dyn ProvenanceSource>) -> Self {
        Self {
            inner: Arc::new(Inner {
                active: ConfigSlot::new(),
                provenance,
            }),
        }
    }

    /// The tonic service to hand to [`twi_plugin::run`] or [`twi_plugin::testing::load`].
    #[must_use]
    pub fn service(&self) -> WorkloadAttestorServer<WorkloadAttestorPlugin> {
        WorkloadAttestorServer::new(self.clone())
    }

    /// The Configure/Validate handler to hand to [`twi_plugin::run`] or [`twi_plugin::testing::load`].
    #[must_use]
    pub fn config_handler(&self) -> Arc<dyn ConfigHandler> {
        Arc::new(self.clone())
    }

    /// Serves this plugin to SPIRE: the whole `main` of the binary.
    #[must_use]
    pub fn run(self) -> std::process::ExitCode {
        twi_plugin::run(
            PluginType::AgentWorkloadAttestor,
            self.service(),
            self.config_handler(),
        )
    }

    /// Attests `pid` with the active configuration on a blocking thread.
    async fn attest_pid(&self, pid: i32) -> Result<Vec<String>, Status> {
        let attestor = self.inner.active.get()?;
        let result = if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(move || attestor.attest(pid))
        } else {
            tokio::task::spawn_blocking(move || attestor.attest(pid))
                .await
                .map_err(|e| Status::internal(format!("attestation task failed: {e}")))?
        };
        result.map_err(|e| {
            tracing::debug!(pid, code = ?e.code(), error = %e, "attestation failed");
            Status::from(e)
        })
    }
}

#[tonic::async_trait]
impl ConfigHandler for WorkloadAttestorPlugin {
    async fn configure(&self, _core: CoreConfig, hcl: &str) -> Result<(), Status> {
        let settings = config::build(hcl)?;
        let fallback = Arc::clone(&self.inner.provenance);
        // Opening the store reads key files: off the runtime's threads.
        let attestor =
            tokio::task::spawn_blocking(move || Attestor::configured(settings, fallback))
                .await
                .map_err(|e| Status::internal(format!("configure task failed: {e}")))??;
        log_settings(attestor.settings(), attestor.provenance());
        self.inner.active.set(attestor);
        Ok(())
    }

    async fn validate(&self, _core: CoreConfig, hcl: &str) -> Result<Vec<String>, Status> {
        let fallback: Arc<dyn ProvenanceSource> = Arc::new(NoProvenance);
        let notes = match config::build(hcl).and_then(|s| Attestor::configured(s, fallback)) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_string()],
        };
        Ok(notes)
    }
}

fn log_settings(s: &Settings, provenance: &dyn ProvenanceSource) {
    tracing::info!(
        discover_path = s.discover_path,
        discover_digest = s.discover_digest,
        max_digest_bytes = s.max_digest_bytes,
        cache_entries = s.cache_entries,
        proc_root = %s.proc_root.display(),
        provenance = %provenance.describe(),
        "configured"
    );
}

#[tonic::async_trait]
impl WorkloadAttestor for WorkloadAttestorPlugin {
    async fn attest(
        &self,
        request: Request<AttestRequest>,
    ) -> Result<Response<AttestResponse>, Status> {
        let pid = request.into_inner().pid;
        let selector_values = self.attest_pid(pid).await?;
        Ok(Response::new(AttestResponse { selector_values }))
    }

    async fn attest_reference(
        &self,
        request: Request<AttestReferenceRequest>,
    ) -> Result<Response<AttestReferenceResponse>, Status> {
        let caller = request
            .metadata()
            .get(BROKER_CALLER_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let Some(reference) = request.into_inner().reference else {
            return Err(Status::invalid_argument(
                "workload reference must be provided",
            ));
        };
        let pid = pid_reference(&reference.type_url, &reference.value)?;
        tracing::debug!(
            pid,
            broker_caller = caller.as_deref().unwrap_or(""),
            "attesting a PID reference"
        );
        let selector_values = self.attest_pid(pid).await?;
        Ok(Response::new(AttestReferenceResponse { selector_values }))
    }
}

/// The PID of a `google.protobuf.Any` holding a `WorkloadPIDReference` (the type name is what follows the
/// last `/` of the type URL, as `anypb` resolves it).
///
/// # Errors
///
/// `InvalidArgument` for any other type, an undecodable value, or a PID that is not positive.
pub fn pid_reference(type_url: &str, value: &[u8]) -> Result<i32, Status> {
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    if name != PID_REFERENCE_NAME {
        return Err(Status::invalid_argument(format!(
            "unsupported reference type: {type_url} (only {PID_REFERENCE_NAME} is supported)"
        )));
    }
    let reference = WorkloadPidReference::decode(value)
        .map_err(|e| Status::invalid_argument(format!("unable to unmarshal PID reference: {e}")))?;
    if reference.pid <= 0 {
        return Err(Status::invalid_argument(format!(
            "invalid PID reference: pid {} is not a positive integer",
            reference.pid
        )));
    }
    Ok(reference.pid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use tonic::Code;

    const URL: &str = "type.googleapis.com/spiffe.broker.WorkloadPIDReference";

    #[test]
    fn pid_reference_decodes_and_checks() {
        let bytes = WorkloadPidReference { pid: 1234 }.encode_to_vec();
        assert_eq!(bytes, vec![0x08, 0xd2, 0x09], "wire form of pid=1234");
        assert_eq!(pid_reference(URL, &bytes).unwrap(), 1234);
        // Any prefix before the last `/` is accepted, as anypb does.
        assert_eq!(
            pid_reference("example.com/x/spiffe.broker.WorkloadPIDReference", &bytes).unwrap(),
            1234
        );
        let other = pid_reference(
            "type.googleapis.com/spiffe.broker.KubernetesObjectReference",
            &bytes,
        )
        .unwrap_err();
        assert_eq!(other.code(), Code::InvalidArgument);
        assert!(
            other.message().starts_with("unsupported reference type"),
            "{}",
            other.message()
        );
        let garbage = pid_reference(URL, &[0x08]).unwrap_err();
        assert_eq!(garbage.code(), Code::InvalidArgument);
        let zero = pid_reference(URL, &[]).unwrap_err();
        assert!(zero.message().contains("pid 0"), "{}", zero.message());
        let negative = WorkloadPidReference { pid: -3 }.encode_to_vec();
        assert_eq!(
            pid_reference(URL, &negative).unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}

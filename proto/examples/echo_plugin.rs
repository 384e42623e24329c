//! A minimal WorkloadAttestor used by the crate's end-to-end test (and handy for trying SPIRE by hand): it
//! answers `Attest{pid}` with the selector `<prefix>pid:<pid>`, where `prefix` comes from `plugin_data`.

use std::process::ExitCode;
use std::sync::Arc;

use serde::Deserialize;
use tonic::{Request, Response, Status};
use twi_plugin::proto::workloadattestor::workload_attestor_server::{
    WorkloadAttestor, WorkloadAttestorServer,
};
use twi_plugin::proto::workloadattestor::{
    AttestReferenceRequest, AttestReferenceResponse, AttestRequest, AttestResponse,
};
use twi_plugin::{from_hcl, ConfigHandler, ConfigSlot, CoreConfig, PluginType};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    prefix: String,
}

#[derive(Clone, Default)]
struct Echo {
    config: ConfigSlot<Config>,
}

#[tonic::async_trait]
impl WorkloadAttestor for Echo {
    async fn attest(
        &self,
        request: Request<AttestRequest>,
    ) -> Result<Response<AttestResponse>, Status> {
        let config = self.config.get()?;
        let pid = request.into_inner().pid;
        tracing::info!(pid, "attesting");
        Ok(Response::new(AttestResponse {
            selector_values: vec![format!("{}pid:{pid}", config.prefix)],
        }))
    }

    async fn attest_reference(
        &self,
        _request: Request<AttestReferenceRequest>,
    ) -> Result<Response<AttestReferenceResponse>, Status> {
        Err(Status::unimplemented("references are not supported"))
    }
}

#[tonic::async_trait]
impl ConfigHandler for Echo {
    async fn configure(&self, _core: CoreConfig, hcl: &str) -> Result<(), Status> {
        self.config.set(from_hcl::<Config>(hcl)?);
        Ok(())
    }

    async fn validate(&self, _core: CoreConfig, hcl: &str) -> Result<Vec<String>, Status> {
        Ok(from_hcl::<Config>(hcl)
            .err()
            .map(|e| e.to_string())
            .into_iter()
            .collect())
    }
}

fn main() -> ExitCode {
    let echo = Echo::default();
    twi_plugin::run(
        PluginType::AgentWorkloadAttestor,
        WorkloadAttestorServer::new(echo.clone()),
        Arc::new(echo),
    )
}

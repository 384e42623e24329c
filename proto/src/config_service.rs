//! `spire.service.common.config.v1.Config` served on top of a plugin's [`ConfigHandler`].

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::config::{ConfigHandler, CoreConfig};
use crate::proto::config::config_server::Config;
use crate::proto::config::{
    ConfigureRequest, ConfigureResponse, CoreConfiguration, ValidateRequest, ValidateResponse,
};

/// Checks what every plugin needs from the core configuration, then hands the HCL to the plugin.
#[derive(Clone)]
pub(crate) struct ConfigService {
    pub(crate) handler: Arc<dyn ConfigHandler>,
}

/// Agent IDs are built from the trust domain, so a plugin must never run with an empty one.
fn core_config(core: Option<CoreConfiguration>) -> Result<CoreConfig, Status> {
    let trust_domain = core.map(|c| c.trust_domain).unwrap_or_default();
    if trust_domain.is_empty() {
        return Err(Status::invalid_argument(
            "core configuration is missing the trust domain",
        ));
    }
    Ok(CoreConfig::new(trust_domain))
}

#[tonic::async_trait]
impl Config for ConfigService {
    async fn configure(
        &self,
        request: Request<ConfigureRequest>,
    ) -> Result<Response<ConfigureResponse>, Status> {
        let req = request.into_inner();
        let core = core_config(req.core_configuration)?;
        match self.handler.configure(core, &req.hcl_configuration).await {
            Ok(()) => {
                tracing::debug!("configured");
                Ok(Response::new(ConfigureResponse {}))
            }
            Err(status) => {
                tracing::error!(code = ?status.code(), error = status.message(), "configure failed");
                Err(status)
            }
        }
    }

    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        let req = request.into_inner();
        let core = core_config(req.core_configuration)?;
        let notes = self.handler.validate(core, &req.hcl_configuration).await?;
        Ok(Response::new(ValidateResponse {
            valid: notes.is_empty(),
            notes,
        }))
    }
}

//! SPIRE's `spire.service.private.init.v1.Init`: the exchange of service names that lets SPIRE bind the plugin.

use tonic::{Request, Response, Status};

use crate::broker::HostServices;
use crate::proto::init::init_server::Init;
use crate::proto::init::{DeinitRequest, DeinitResponse, InitRequest, InitResponse};

/// Answers the services this binary implements and remembers which host services SPIRE offers.
#[derive(Debug, Clone)]
pub(crate) struct InitService {
    /// The plugin-type service plus Config, like the SDK (never Init, health or go-plugin services).
    pub(crate) plugin_service_names: Vec<String>,
    pub(crate) host: HostServices,
}

#[tonic::async_trait]
impl Init for InitService {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let names = request.into_inner().host_service_names;
        tracing::debug!(host_services = ?names, "init");
        self.host.set_names(names);
        Ok(Response::new(InitResponse {
            plugin_service_names: self.plugin_service_names.clone(),
        }))
    }

    async fn deinit(
        &self,
        _request: Request<DeinitRequest>,
    ) -> Result<Response<DeinitResponse>, Status> {
        tracing::debug!("deinit");
        Ok(Response::new(DeinitResponse {}))
    }
}

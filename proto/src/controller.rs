//! go-plugin's `plugin.GRPCController`: the host's orderly "stop now" after Deinit.

use tonic::{Request, Response, Status};

use crate::proto::plugin::grpc_controller_server::GrpcController;
use crate::proto::plugin::Empty;
use crate::shutdown::Shutdown;

/// Ends the server when SPIRE unloads the plugin; the Go server calls `server.Stop()` here and then exits.
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    pub(crate) shutdown: Shutdown,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        tracing::debug!("shutdown requested by host");
        self.shutdown.trigger();
        Ok(Response::new(Empty {}))
    }
}

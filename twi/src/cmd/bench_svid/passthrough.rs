//! A CredentialComposer plugin that changes nothing: `ComposeWorkloadX509SVID` answers the attributes it
//! was given, every other RPC `Unimplemented` (which SPIRE treats as "keep the attributes"). Loaded into
//! a third SPIRE server, it measures what merely having an external composer costs (SPIRE's gRPC call
//! to the plugin process over go-plugin, both encodings), so the composer's own work is the difference
//! between our composer's server and this one's.
//!
//! Served by this same `twi` binary (`twi bench-svid --serve-passthrough-composer`, what the server's
//! `plugin_args` say) with the same plugin runtime as our plugins.

use std::process::ExitCode;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use twi_plugin::proto::credentialcomposer::credential_composer_server::{
    CredentialComposer, CredentialComposerServer,
};
use twi_plugin::proto::credentialcomposer::{
    ComposeAgentX509svidRequest, ComposeAgentX509svidResponse, ComposeServerX509caRequest,
    ComposeServerX509caResponse, ComposeServerX509svidRequest, ComposeServerX509svidResponse,
    ComposeWorkloadJwtsvidRequest, ComposeWorkloadJwtsvidResponse, ComposeWorkloadX509svidRequest,
    ComposeWorkloadX509svidResponse,
};
use twi_plugin::{ConfigHandler, CoreConfig, PluginType};

/// The flag that makes `twi bench-svid` serve this plugin instead of measuring.
pub(crate) const FLAG: &str = "--serve-passthrough-composer";

#[derive(Clone, Copy, Debug, Default)]
struct Passthrough;

#[tonic::async_trait]
impl CredentialComposer for Passthrough {
    async fn compose_server_x509ca(
        &self,
        _: Request<ComposeServerX509caRequest>,
    ) -> Result<Response<ComposeServerX509caResponse>, Status> {
        Err(Status::unimplemented("pass-through composer"))
    }

    async fn compose_server_x509svid(
        &self,
        _: Request<ComposeServerX509svidRequest>,
    ) -> Result<Response<ComposeServerX509svidResponse>, Status> {
        Err(Status::unimplemented("pass-through composer"))
    }

    async fn compose_agent_x509svid(
        &self,
        _: Request<ComposeAgentX509svidRequest>,
    ) -> Result<Response<ComposeAgentX509svidResponse>, Status> {
        Err(Status::unimplemented("pass-through composer"))
    }

    async fn compose_workload_x509svid(
        &self,
        request: Request<ComposeWorkloadX509svidRequest>,
    ) -> Result<Response<ComposeWorkloadX509svidResponse>, Status> {
        Ok(Response::new(ComposeWorkloadX509svidResponse {
            attributes: request.into_inner().attributes,
        }))
    }

    async fn compose_workload_jwtsvid(
        &self,
        _: Request<ComposeWorkloadJwtsvidRequest>,
    ) -> Result<Response<ComposeWorkloadJwtsvidResponse>, Status> {
        Err(Status::unimplemented("pass-through composer"))
    }
}

#[tonic::async_trait]
impl ConfigHandler for Passthrough {
    async fn configure(&self, _: CoreConfig, _: &str) -> Result<(), Status> {
        Ok(())
    }

    async fn validate(&self, _: CoreConfig, _: &str) -> Result<Vec<String>, Status> {
        Ok(Vec::new())
    }
}

/// Serves the plugin over go-plugin (SPIRE started this process).
pub(crate) fn serve() -> ExitCode {
    twi_plugin::run(
        PluginType::ServerCredentialComposer,
        CredentialComposerServer::new(Passthrough),
        Arc::new(Passthrough),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use twi_plugin::proto::credentialcomposer::{X509Extension, X509svidAttributes};

    #[test]
    fn workload_attributes_come_back_unchanged_and_the_rest_is_unimplemented() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let attrs = X509svidAttributes {
            subject: None,
            dns_sans: vec!["a.example".into()],
            extra_extensions: vec![X509Extension {
                oid: "1.2.3".into(),
                value: vec![1, 2],
                critical: false,
            }],
        };
        let got = rt
            .block_on(Passthrough.compose_workload_x509svid(Request::new(
                ComposeWorkloadX509svidRequest {
                    attributes: Some(attrs.clone()),
                    spiffe_id: "spiffe://example.org/w".into(),
                    public_key: vec![9],
                },
            )))
            .unwrap();
        assert_eq!(got.into_inner().attributes, Some(attrs));
        let err = rt
            .block_on(
                Passthrough
                    .compose_agent_x509svid(Request::new(ComposeAgentX509svidRequest::default())),
            )
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
    }
}

//! Loading a plugin in-process for tests, the way SPIRE's `plugintest.Load` does.
//!
//! [`load`] serves the very router [`crate::run`] serves, on a Unix socket in a temporary directory, and
//! returns a client channel to it. Tests then play the host: [`LoadedPlugin::init`], [`LoadedPlugin::configure`],
//! plugin RPCs over [`LoadedPlugin::channel`], and optionally fake host services through the broker
//! ([`LoadedPlugin::offer_host_services`]).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::{Channel, Server};
use tonic::{Status, Streaming};
use tower::Service;

use crate::broker::{unix_channel, HostServices, HOST_SERVICES_BROKER_ID};
use crate::config::ConfigHandler;
use crate::proto::config::config_client::ConfigClient;
use crate::proto::config::{
    ConfigureRequest, CoreConfiguration, ValidateRequest, ValidateResponse,
};
use crate::proto::init::init_client::InitClient;
use crate::proto::init::{DeinitRequest, InitRequest};
use crate::proto::plugin::grpc_broker_client::GrpcBrokerClient;
use crate::proto::plugin::grpc_controller_client::GrpcControllerClient;
use crate::proto::plugin::{ConnInfo, Empty};
use crate::serve::{build_router, serve_until_shutdown, PluginSocket, ServeError};
use crate::shutdown::Shutdown;
use crate::PluginType;

/// How long [`LoadedPlugin::shutdown`] and [`LoadedPlugin::offer_host_services`] wait before failing.
const WAIT: Duration = Duration::from_secs(5);

/// Why loading or driving a plugin in a test failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestingError {
    /// The plugin could not be set up (socket, service mismatch).
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The fake host's socket could not be created.
    #[error("fake host socket: {0}")]
    Io(#[from] std::io::Error),
    /// An RPC failed.
    #[error("rpc failed: {0}")]
    Rpc(#[from] Status),
    /// The plugin did not do something within the wait.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        waited: Duration,
    },
    /// The served future ended with an error or panicked.
    #[error("plugin server failed: {0}")]
    Server(String),
}

/// Fake host services served to the plugin, kept alive as long as the plugin is loaded.
struct FakeHost {
    _dir: TempDir,
    server: JoinHandle<()>,
    /// Holding the sender keeps the broker stream open, as SPIRE does.
    _broker_tx: mpsc::Sender<ConnInfo>,
    _broker_rx: Streaming<ConnInfo>,
}

/// A plugin served in-process, with the helpers a test needs to act as SPIRE.
pub struct LoadedPlugin {
    /// A channel to the plugin: build any generated client on it (e.g. the NodeAttestor client).
    pub channel: Channel,
    /// The plugin-side host-services handle (what the plugin sees after Init and the broker announcement).
    pub host_services: HostServices,
    socket_path: PathBuf,
    shutdown: Shutdown,
    served: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    fake_host: Option<FakeHost>,
    offered: Vec<String>,
    _dir: TempDir,
}

/// Loads `service` like [`crate::run`] would, with a fresh [`HostServices`] handle.
///
/// # Errors
///
/// [`TestingError`] if the socket cannot be bound or `service` does not match `ty`.
pub async fn load<S>(
    ty: PluginType,
    service: S,
    config: Arc<dyn ConfigHandler>,
) -> Result<LoadedPlugin, TestingError>
where
    S: NamedService
        + Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    load_with_host_services(ty, service, config, HostServices::new()).await
}

/// [`load`] with the [`HostServices`] handle the plugin service holds, as with
/// [`crate::run_with_host_services`].
///
/// # Errors
///
/// [`TestingError`] if the socket cannot be bound or `service` does not match `ty`.
pub async fn load_with_host_services<S>(
    ty: PluginType,
    service: S,
    config: Arc<dyn ConfigHandler>,
    host: HostServices,
) -> Result<LoadedPlugin, TestingError>
where
    S: NamedService
        + Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let shutdown = Shutdown::new();
    let router = build_router(ty, service, config, host.clone(), shutdown.clone()).await?;
    let PluginSocket {
        dir,
        path,
        listener,
    } = PluginSocket::bind()?;
    let served = tokio::spawn(serve_until_shutdown(router, listener, shutdown.clone()));
    Ok(LoadedPlugin {
        channel: unix_channel(path.clone()),
        host_services: host,
        socket_path: path,
        shutdown,
        served: Some(served),
        fake_host: None,
        offered: Vec::new(),
        _dir: dir,
    })
}

impl LoadedPlugin {
    /// The plugin's socket (what the handshake line would advertise).
    #[must_use]
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Calls `Init` with the names given to [`LoadedPlugin::offer_host_services`] (none by default) and
    /// returns the plugin's service names.
    ///
    /// # Errors
    ///
    /// The RPC's status.
    pub async fn init(&self) -> Result<Vec<String>, Status> {
        let resp = InitClient::new(self.channel.clone())
            .init(InitRequest {
                host_service_names: self.offered.clone(),
            })
            .await?;
        Ok(resp.into_inner().plugin_service_names)
    }

    /// Calls `Deinit`, as SPIRE does at unload.
    ///
    /// # Errors
    ///
    /// The RPC's status.
    pub async fn deinit(&self) -> Result<(), Status> {
        InitClient::new(self.channel.clone())
            .deinit(DeinitRequest {})
            .await?;
        Ok(())
    }

    /// Calls `Configure` with `trust_domain` (a bare name) and the `plugin_data` text.
    ///
    /// # Errors
    ///
    /// The RPC's status (InvalidArgument for a bad configuration).
    pub async fn configure(&self, trust_domain: &str, hcl: &str) -> Result<(), Status> {
        ConfigClient::new(self.channel.clone())
            .configure(ConfigureRequest {
                core_configuration: Some(CoreConfiguration {
                    trust_domain: trust_domain.to_owned(),
                }),
                hcl_configuration: hcl.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Calls `Validate`, as `spire-server validate` does.
    ///
    /// # Errors
    ///
    /// The RPC's status.
    pub async fn validate(
        &self,
        trust_domain: &str,
        hcl: &str,
    ) -> Result<ValidateResponse, Status> {
        let resp = ConfigClient::new(self.channel.clone())
            .validate(ValidateRequest {
                core_configuration: Some(CoreConfiguration {
                    trust_domain: trust_domain.to_owned(),
                }),
                hcl_configuration: hcl.to_owned(),
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Plays SPIRE's host side of the broker: serves `routes` (fakes of AgentStore, Metrics, ...) on a Unix
    /// socket, announces it as `ConnInfo{service_id=1}` on the broker stream, and waits until the plugin has
    /// recorded it. `names` are then sent by [`LoadedPlugin::init`] as `host_service_names`. Call before `init`.
    ///
    /// # Errors
    ///
    /// [`TestingError`] if the socket, the broker stream or the announcement fails.
    pub async fn offer_host_services(
        &mut self,
        names: &[&str],
        routes: Routes,
    ) -> Result<(), TestingError> {
        let dir = tempfile::Builder::new().prefix("host").tempdir()?;
        let path = dir.path().join("host.sock");
        let listener = UnixListener::bind(&path)?;
        let server = tokio::spawn(async move {
            let result = Server::builder()
                .add_routes(routes)
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await;
            if let Err(err) = result {
                tracing::error!(error = %err, "fake host server failed");
            }
        });
        let (tx, rx) = mpsc::channel(4);
        tx.send(ConnInfo {
            service_id: HOST_SERVICES_BROKER_ID,
            network: "unix".into(),
            address: path.to_string_lossy().into_owned(),
            knock: None,
        })
        .await
        .map_err(|_| TestingError::Server("broker request stream closed".into()))?;
        let broker_rx = GrpcBrokerClient::new(self.channel.clone())
            .start_stream(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let announced = async {
            while !self.host_services.is_announced() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(WAIT, announced)
            .await
            .map_err(|_| TestingError::Timeout {
                what: "the plugin to record the broker ConnInfo",
                waited: WAIT,
            })?;
        self.offered = names.iter().map(|n| (*n).to_owned()).collect();
        self.fake_host = Some(FakeHost {
            _dir: dir,
            server,
            _broker_tx: tx,
            _broker_rx: broker_rx,
        });
        Ok(())
    }

    /// Calls `GRPCController/Shutdown` like SPIRE at unload and waits for the served future to finish.
    ///
    /// # Errors
    ///
    /// [`TestingError`] if the RPC fails or the server does not stop in time.
    pub async fn shutdown(mut self) -> Result<(), TestingError> {
        GrpcControllerClient::new(self.channel.clone())
            .shutdown(Empty {})
            .await?;
        let Some(served) = self.served.take() else {
            return Ok(());
        };
        match tokio::time::timeout(WAIT, served).await {
            Err(_) => Err(TestingError::Timeout {
                what: "the plugin server to stop after Shutdown",
                waited: WAIT,
            }),
            Ok(Err(join)) => Err(TestingError::Server(join.to_string())),
            Ok(Ok(Err(transport))) => Err(TestingError::Server(transport.to_string())),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }
}

impl Drop for LoadedPlugin {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(served) = self.served.take() {
            served.abort();
        }
        if let Some(host) = self.fake_host.take() {
            host.server.abort();
        }
    }
}

//! go-plugin's `plugin.GRPCBroker` and the handle plugins use to reach SPIRE's host services.
//!
//! SPIRE serves its host services (AgentStore, IdentityProvider, Metrics) on a Unix socket of its own and
//! announces it as `ConnInfo{service_id=1}` on the broker stream (protocol doc §1 step 5, §8). The plugin
//! records it and dials it lazily the first time a host service is used.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Response, Status, Streaming};

use crate::proto::agentstore::agent_store_client::AgentStoreClient;
use crate::proto::identityprovider::identity_provider_client::IdentityProviderClient;
use crate::proto::metrics::metrics_client::MetricsClient;
use crate::proto::plugin::grpc_broker_server::GrpcBroker;
use crate::proto::plugin::ConnInfo;
use crate::shutdown::Shutdown;

/// The broker id on which SPIRE serves every host service.
pub const HOST_SERVICES_BROKER_ID: u32 = 1;

/// How long [`HostServices::channel`] waits for the host's `ConnInfo` before giving up. SPIRE sends it before
/// `Init`, so this only covers the race between the broker stream and the first RPC.
const CONN_INFO_WAIT: Duration = Duration::from_secs(2);

/// Why a host service cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostServiceError {
    /// SPIRE did not list the service in `Init` (e.g. AgentStore on the agent side).
    #[error("host service {service} is not offered by the host (offered: {offered:?})")]
    NotOffered {
        /// The fully qualified service name asked for.
        service: String,
        /// What the host offered.
        offered: Vec<String>,
    },
    /// No `ConnInfo` for broker id 1 arrived on the broker stream.
    #[error("the host has not announced its host-service socket (no ConnInfo id {HOST_SERVICES_BROKER_ID} within {waited:?})")]
    NoConnInfo {
        /// How long we waited.
        waited: Duration,
    },
    /// The host announced a network we cannot dial.
    #[error("unsupported host-service network {network:?} (address {address:?})")]
    UnsupportedNetwork {
        /// The `ConnInfo.network` received.
        network: String,
        /// The `ConnInfo.address` received.
        address: String,
    },
    /// The announced TCP address is not a valid URI authority.
    #[error("invalid host-service address {address:?}: {detail}")]
    InvalidAddress {
        /// The `ConnInfo.address` received.
        address: String,
        /// Why it was rejected.
        detail: String,
    },
}

impl From<HostServiceError> for Status {
    fn from(err: HostServiceError) -> Self {
        match err {
            HostServiceError::NotOffered { .. } => Status::failed_precondition(err.to_string()),
            _ => Status::unavailable(err.to_string()),
        }
    }
}

/// Where the host serves its host services, as announced by `ConnInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    network: String,
    address: String,
}

#[derive(Debug)]
struct Inner {
    target: watch::Sender<Option<Target>>,
    names: RwLock<Vec<String>>,
    channel: Mutex<Option<(Target, Channel)>>,
}

/// A plugin's handle on SPIRE's host services: which are offered, and a channel to them.
///
/// Cheap to clone; give one clone to the plugin service and pass the same handle to
/// [`crate::run_with_host_services`], which fills it from `Init` and the broker stream.
#[derive(Debug, Clone)]
pub struct HostServices {
    inner: Arc<Inner>,
}

impl Default for HostServices {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                target: watch::channel(None).0,
                names: RwLock::new(Vec::new()),
                channel: Mutex::new(None),
            }),
        }
    }
}

impl HostServices {
    /// An empty handle: nothing offered and nothing to dial until the host says so.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The fully qualified names SPIRE listed in `InitRequest.host_service_names`.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.inner
            .names
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether SPIRE offers `service` (a fully qualified name); the SDK only wires clients for offered ones.
    #[must_use]
    pub fn offers(&self, service: &str) -> bool {
        self.inner
            .names
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|n| n == service)
    }

    pub(crate) fn set_names(&self, names: Vec<String>) {
        *self
            .inner
            .names
            .write()
            .unwrap_or_else(PoisonError::into_inner) = names;
    }

    /// Records a `ConnInfo` from the broker stream; only id 1 carries host services.
    pub(crate) fn record(&self, info: &ConnInfo) {
        if info.service_id != HOST_SERVICES_BROKER_ID {
            tracing::debug!(
                service_id = info.service_id,
                "ignoring broker ConnInfo for unknown id"
            );
            return;
        }
        tracing::debug!(network = %info.network, address = %info.address, "host services announced");
        self.inner.target.send_replace(Some(Target {
            network: info.network.clone(),
            address: info.address.clone(),
        }));
    }

    /// Whether a `ConnInfo` for id 1 has been recorded.
    #[must_use]
    pub fn is_announced(&self) -> bool {
        self.inner.target.borrow().is_some()
    }

    /// A channel to the host's host-service server (plaintext HTTP/2, no keepalive pings, dialed lazily and
    /// shared by all callers).
    ///
    /// # Errors
    ///
    /// [`HostServiceError`] if no `ConnInfo` arrived within a short wait, or it names an unusable address.
    pub async fn channel(&self) -> Result<Channel, HostServiceError> {
        let mut rx = self.inner.target.subscribe();
        let target = match tokio::time::timeout(CONN_INFO_WAIT, rx.wait_for(Option::is_some)).await
        {
            Ok(Ok(target)) => target.clone(),
            _ => None,
        };
        let Some(target) = target else {
            return Err(HostServiceError::NoConnInfo {
                waited: CONN_INFO_WAIT,
            });
        };
        let mut cached = self
            .inner
            .channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((t, ch)) = cached.as_ref() {
            if *t == target {
                return Ok(ch.clone());
            }
        }
        let ch = dial(&target)?;
        *cached = Some((target, ch.clone()));
        Ok(ch)
    }

    fn require(&self, service: &str) -> Result<(), HostServiceError> {
        if self.offers(service) {
            Ok(())
        } else {
            Err(HostServiceError::NotOffered {
                service: service.to_owned(),
                offered: self.names(),
            })
        }
    }

    /// A client for `spire.hostservice.server.agentstore.v1.AgentStore` (server only; FailedPrecondition from
    /// SPIRE until its catalog is loaded, so do not call it from Configure).
    ///
    /// # Errors
    ///
    /// [`HostServiceError`] if the host does not offer it or cannot be reached.
    pub async fn agent_store(&self) -> Result<AgentStoreClient<Channel>, HostServiceError> {
        self.require(crate::proto::agentstore::agent_store_server::SERVICE_NAME)?;
        Ok(AgentStoreClient::new(self.channel().await?))
    }

    /// A client for `spire.hostservice.server.identityprovider.v1.IdentityProvider` (server only).
    ///
    /// # Errors
    ///
    /// [`HostServiceError`] if the host does not offer it or cannot be reached.
    pub async fn identity_provider(
        &self,
    ) -> Result<IdentityProviderClient<Channel>, HostServiceError> {
        self.require(crate::proto::identityprovider::identity_provider_server::SERVICE_NAME)?;
        Ok(IdentityProviderClient::new(self.channel().await?))
    }

    /// A client for `spire.hostservice.common.metrics.v1.Metrics` (server and agent).
    ///
    /// # Errors
    ///
    /// [`HostServiceError`] if the host does not offer it or cannot be reached.
    pub async fn metrics(&self) -> Result<MetricsClient<Channel>, HostServiceError> {
        self.require(crate::proto::metrics::metrics_server::SERVICE_NAME)?;
        Ok(MetricsClient::new(self.channel().await?))
    }
}

fn dial(target: &Target) -> Result<Channel, HostServiceError> {
    match target.network.as_str() {
        "unix" => Ok(unix_channel(target.address.clone())),
        "tcp" => {
            let endpoint =
                Endpoint::from_shared(format!("http://{}", target.address)).map_err(|e| {
                    HostServiceError::InvalidAddress {
                        address: target.address.clone(),
                        detail: e.to_string(),
                    }
                })?;
            Ok(endpoint.connect_lazy())
        }
        _ => Err(HostServiceError::UnsupportedNetwork {
            network: target.network.clone(),
            address: target.address.clone(),
        }),
    }
}

/// A lazily connected h2c channel to a gRPC server on a Unix socket. The URI is a placeholder: go-plugin
/// dials with authority `unused`, and neither side routes on it (nor does SPIRE's local API socket, which
/// the credential composer dials with this too). Nothing is dialed until the first RPC, so the socket need
/// not exist yet; each RPC whose connection fails answers `Unavailable`.
pub fn unix_channel(path: impl Into<std::path::PathBuf>) -> Channel {
    let path: std::path::PathBuf = path.into();
    Endpoint::from_static("http://unused").connect_with_connector_lazy(tower::service_fn(
        move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        },
    ))
}

/// The plugin side of the broker: records what the host announces and keeps the stream open until shutdown.
#[derive(Debug, Clone)]
pub(crate) struct Broker {
    pub(crate) host: HostServices,
    pub(crate) shutdown: Shutdown,
}

#[tonic::async_trait]
impl GrpcBroker for Broker {
    type StartStreamStream = ReceiverStream<Result<ConnInfo, Status>>;

    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        let mut inbound = request.into_inner();
        // We never offer services to the host, so nothing is sent; `tx` lives as long as the stream should.
        let (tx, rx) = mpsc::channel::<Result<ConnInfo, Status>>(1);
        let host = self.host.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.wait() => break,
                    msg = inbound.message() => match msg {
                        Ok(Some(info)) => host.record(&info),
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(code = ?status.code(), "broker stream ended");
                            break;
                        }
                    },
                }
            }
            drop(tx);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

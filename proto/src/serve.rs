//! Running a plugin process: handshake, socket, the router of every service SPIRE and go-plugin expect, and an
//! orderly stop (protocol doc §1, §11).

use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::Router;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tower::Service;

use crate::broker::{Broker, HostServices};
use crate::config::ConfigHandler;
use crate::config_service::ConfigService;
use crate::controller::Controller;
use crate::init::InitService;
use crate::proto::config::config_server::{ConfigServer, SERVICE_NAME as CONFIG_SERVICE_NAME};
use crate::proto::init::init_server::InitServer;
use crate::proto::plugin::grpc_broker_server::GrpcBrokerServer;
use crate::proto::plugin::grpc_controller_server::GrpcControllerServer;
use crate::proto::plugin::grpc_stdio_server::GrpcStdioServer;
use crate::shutdown::Shutdown;
use crate::stdio::Stdio;
use crate::{handshake, log, PluginType};

/// The health service name go-plugin checks (not the plugin's own service name).
pub const HEALTH_SERVICE: &str = "plugin";

/// Where the socket directory is created when set (go-plugin's variable); otherwise the system temp dir.
pub const SOCKET_DIR_ENV: &str = "PLUGIN_UNIX_SOCKET_DIR";

/// How long open connections may keep the server alive after Shutdown; SPIRE kills the process at 2 s.
const STOP_GRACE: Duration = Duration::from_millis(1000);

/// Why the plugin could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The private socket directory could not be created.
    #[error("cannot create socket directory in {parent}: {source}")]
    SocketDir {
        /// The parent directory used.
        parent: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Unix socket could not be bound.
    #[error("cannot bind unix socket {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The service given does not implement the interface the plugin type promises; SPIRE would fail to bind.
    #[error("plugin type {ty:?} serves {want}, but the service given is {got}")]
    ServiceMismatch {
        /// The plugin type passed.
        ty: PluginType,
        /// The service name the type requires.
        want: &'static str,
        /// The service name of the value passed.
        got: &'static str,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The handshake line could not be written to stdout.
    #[error("cannot write the handshake line: {0}")]
    Handshake(std::io::Error),
    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A bound Unix socket in a fresh private (0700) directory that is removed when this is dropped.
pub(crate) struct PluginSocket {
    pub(crate) dir: TempDir,
    pub(crate) path: PathBuf,
    pub(crate) listener: UnixListener,
}

impl PluginSocket {
    /// Binds `<dir>/plugin.sock`, where `<dir>` is new under `PLUGIN_UNIX_SOCKET_DIR` or the temp dir. The
    /// socket accepts (queues) connections from here on, so the handshake may be printed right after.
    pub(crate) fn bind() -> Result<Self, ServeError> {
        let parent = std::env::var_os(SOCKET_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix("plugin")
            .tempdir_in(&parent)
            .map_err(|source| ServeError::SocketDir { parent, source })?;
        let path = dir.path().join("plugin.sock");
        let listener = UnixListener::bind(&path).map_err(|source| ServeError::Bind {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            path,
            listener,
        })
    }
}

/// Builds the router both [`run`] and [`crate::testing::load`] serve: health, go-plugin's controller, stdio
/// and broker, SPIRE's Init and Config, and the plugin service.
pub(crate) async fn build_router<S>(
    ty: PluginType,
    service: S,
    config: Arc<dyn ConfigHandler>,
    host: HostServices,
    shutdown: Shutdown,
) -> Result<Router, ServeError>
where
    S: NamedService
        + Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    if S::NAME != ty.service_name() {
        return Err(ServeError::ServiceMismatch {
            ty,
            want: ty.service_name(),
            got: S::NAME,
        });
    }
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(HEALTH_SERVICE, ServingStatus::Serving)
        .await;
    let init = InitService {
        plugin_service_names: vec![ty.service_name().to_owned(), CONFIG_SERVICE_NAME.to_owned()],
        host: host.clone(),
    };
    Ok(Server::builder()
        .add_service(health)
        .add_service(GrpcControllerServer::new(Controller {
            shutdown: shutdown.clone(),
        }))
        .add_service(GrpcStdioServer::new(Stdio {
            shutdown: shutdown.clone(),
        }))
        .add_service(GrpcBrokerServer::new(Broker { host, shutdown }))
        .add_service(InitServer::new(init))
        .add_service(ConfigServer::new(ConfigService { handler: config }))
        .add_service(service))
}

/// Serves `router` on `listener` until `shutdown` fires, then lets open calls finish for a short grace period.
pub(crate) async fn serve_until_shutdown(
    router: Router,
    listener: UnixListener,
    shutdown: Shutdown,
) -> Result<(), tonic::transport::Error> {
    let stop = shutdown.clone();
    let server =
        router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            stop.wait().await;
        });
    tokio::select! {
        result = server => result,
        () = async { shutdown.wait().await; tokio::time::sleep(STOP_GRACE).await } => {
            tracing::debug!("connections still open after shutdown; stopping anyway");
            Ok(())
        }
    }
}

/// SIGTERM stops the plugin; SIGINT is ignored like go-plugin does, because a Ctrl-C reaches the whole
/// process group and the host must still be able to Deinit and Shutdown us in order.
fn spawn_signal_handler(shutdown: Shutdown) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("received SIGTERM, stopping");
                    shutdown.trigger();
                    break;
                }
                _ = int.recv() => tracing::debug!("plugin received interrupt signal, ignoring"),
            }
        }
    });
    Ok(())
}

/// How often the plugin checks that SPIRE, its parent process, is still there.
const PARENT_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Stops the plugin when its parent (spire-server or spire-agent) is gone. A SIGKILLed SPIRE cannot call
/// `GRPCController/Shutdown` or send SIGTERM, and unlike a Go plugin (killed by SIGPIPE on its next log
/// line) a Rust process ignores the broken stderr pipe; an orphan would keep its files locked (the
/// composer's transparency log) and the restarted SPIRE's new plugin could not open them. Polling the
/// parent PID is used rather than `PR_SET_PDEATHSIG`, which fires when the spawning *thread* exits, and
/// Go may retire that thread while SPIRE runs on.
fn spawn_parent_watch(shutdown: Shutdown) {
    let parent = std::os::unix::process::parent_id();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PARENT_CHECK_INTERVAL);
        loop {
            tick.tick().await;
            let now = std::os::unix::process::parent_id();
            if now != parent {
                tracing::warn!(parent, now, "SPIRE (the parent process) is gone; stopping");
                shutdown.trigger();
                break;
            }
        }
    });
}

async fn serve_process<S>(
    ty: PluginType,
    service: S,
    config: Arc<dyn ConfigHandler>,
    host: HostServices,
) -> Result<(), ServeError>
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
    let router = build_router(ty, service, config, host, shutdown.clone()).await?;
    let socket = PluginSocket::bind()?;
    spawn_signal_handler(shutdown.clone())?;
    spawn_parent_watch(shutdown.clone());
    let address = socket.path.to_string_lossy().into_owned();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", handshake::line("unix", &address)).map_err(ServeError::Handshake)?;
        out.flush().map_err(ServeError::Handshake)?;
    }
    tracing::debug!(plugin = %ty, socket = %address, "plugin serving");
    let PluginSocket { dir, listener, .. } = socket;
    let result = serve_until_shutdown(router, listener, shutdown).await;
    drop(dir);
    tracing::debug!("plugin stopped");
    Ok(result?)
}

/// Runs a plugin binary: the whole of a plugin's `main`.
///
/// Checks the handshake environment (outside SPIRE: a hint on stderr and exit code 1), installs the hclog
/// logger and panic hook, serves on a Unix socket, prints the handshake line, and returns when SPIRE calls
/// `GRPCController/Shutdown` or on SIGTERM. Host services are not reachable through this entry point; use
/// [`run_with_host_services`] when the plugin needs them.
#[must_use]
pub fn run<S>(ty: PluginType, service: S, config: Arc<dyn ConfigHandler>) -> ExitCode
where
    S: NamedService
        + Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    run_with_host_services(ty, service, config, HostServices::new())
}

/// [`run`], filling `host` (which the plugin service holds a clone of) from `Init` and the broker stream.
#[must_use]
pub fn run_with_host_services<S>(
    ty: PluginType,
    service: S,
    config: Arc<dyn ConfigHandler>,
    host: HostServices,
) -> ExitCode
where
    S: NamedService
        + Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    if let Err(err) = handshake::check(ty, |k| std::env::var(k).ok()) {
        eprintln!("{}", handshake::hint(ty, &err));
        return ExitCode::from(1);
    }
    log::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %ServeError::Runtime(e), "plugin failed to start");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(serve_process(ty, service, config, host));
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "plugin failed");
            ExitCode::from(1)
        }
    }
}

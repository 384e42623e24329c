//! The tlog-tiles HTTP API for auditors and monitors (`twi log serve`): `GET /checkpoint`,
//! `GET /tile/<L>/<N>[.p/<W>]`, `GET /tile/entries/<N>[.p/<W>]`, read-only from a log directory or
//! from a PostgreSQL log ([`TileSource`]: any HA replica serves the shared tree, same URLs and bytes).
//!
//! Tiles are computed from the stored hashes on request and only for trees the current checkpoint
//! contains, so a client never sees a tile the log has not committed to. The checkpoint is served with
//! `no-cache`, tiles (whose bytes never change for a given path, partial ones included) as immutable.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;

use super::backend::TileSource;
use super::reader::LogReader;
use super::tile::TileId;
use super::TlogError;

const TEXT: &str = "text/plain; charset=utf-8";
const OCTETS: &str = "application/octet-stream";

/// What the handlers read from.
type Source = Arc<dyn TileSource>;

/// The routes over a log directory, for embedding in another axum server.
pub fn router(reader: Arc<LogReader>) -> Router {
    router_for(reader)
}

/// The routes over any log (a directory's [`LogReader`] or a [`super::PgLogReader`]).
pub fn router_for(source: Arc<dyn TileSource>) -> Router {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .with_state(source)
}

/// Serves the log in `log_dir` on `addr` until the process ends.
///
/// # Errors
/// [`TlogError::Directory`] if there is no log, [`TlogError::Io`] if the address cannot be bound or
/// the server fails.
pub async fn serve(log_dir: impl AsRef<Path>, addr: SocketAddr) -> Result<(), TlogError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| TlogError::io("bind", addr.to_string(), e))?;
    serve_listener(log_dir, listener, std::future::pending()).await
}

/// Serves on an already bound listener until `shutdown` resolves.
///
/// # Errors
/// As [`serve`].
pub async fn serve_listener(
    log_dir: impl AsRef<Path>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TlogError> {
    let reader = Arc::new(LogReader::open(log_dir.as_ref())?);
    serve_source_listener(reader, listener, shutdown).await
}

/// Serves `source` (e.g. a [`super::PgLogReader`]) on `addr` until the process ends.
///
/// # Errors
/// [`TlogError::Io`] if the address cannot be bound or the server fails.
pub async fn serve_source(source: Arc<dyn TileSource>, addr: SocketAddr) -> Result<(), TlogError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| TlogError::io("bind", addr.to_string(), e))?;
    serve_source_listener(source, listener, std::future::pending()).await
}

/// Serves `source` on an already bound listener until `shutdown` resolves.
///
/// # Errors
/// [`TlogError::Io`] if the server fails.
pub async fn serve_source_listener(
    source: Arc<dyn TileSource>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TlogError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, log = %source.describe(), "serving transparency log tiles");
    axum::serve(listener, router_for(source))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| TlogError::io("serve", addr, e))
}

/// A server running on its own thread (for the CLI and tests, which have no runtime of their own).
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), TlogError>>>,
}

impl ServerHandle {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:41234/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops the server and waits for it.
    ///
    /// # Errors
    /// The server's error, if it failed.
    pub fn shutdown(mut self) -> Result<(), TlogError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), TlogError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(Err(TlogError::io(
                "join",
                "tlog-server",
                std::io::Error::other("server thread panicked"),
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Binds `addr` now (so errors and the chosen port are known on return) and serves `log_dir` on a new
/// thread with its own single-threaded runtime.
///
/// # Errors
/// [`TlogError::Directory`] if there is no log, [`TlogError::Io`] if binding or spawning fails.
pub fn spawn_server(
    log_dir: impl AsRef<Path>,
    addr: SocketAddr,
) -> Result<ServerHandle, TlogError> {
    let dir: PathBuf = log_dir.as_ref().to_path_buf();
    spawn_server_for(Arc::new(LogReader::open(&dir)?), addr)
}

/// [`spawn_server`] for any log, e.g. a [`super::PgLogReader`] on each HA replica.
///
/// # Errors
/// [`TlogError::Io`] if binding or spawning fails.
pub fn spawn_server_for(
    source: Arc<dyn TileSource>,
    addr: SocketAddr,
) -> Result<ServerHandle, TlogError> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| TlogError::io("bind", addr.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| TlogError::io("bind", addr.to_string(), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| TlogError::io("bind", addr.to_string(), e))?;
    let (tx, rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("tlog-server".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| TlogError::io("start runtime", "tlog-server", e))?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| TlogError::io("listen", addr.to_string(), e))?;
                serve_source_listener(source, listener, async {
                    let _ = rx.await;
                })
                .await
            })
        })
        .map_err(|e| TlogError::io("spawn", "tlog-server", e))?;
    Ok(ServerHandle {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

async fn checkpoint(State(reader): State<Source>) -> Response {
    match blocking(move || reader.checkpoint()).await {
        Ok(cp) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, TEXT),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            cp.as_bytes().to_vec(),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn tile(State(reader): State<Source>, UrlPath(rest): UrlPath<String>) -> Response {
    let tile = match TileId::parse(&format!("tile/{rest}")) {
        Ok(t) => t,
        Err(e) => {
            return (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, TEXT)],
                e.to_string(),
            )
                .into_response()
        }
    };
    let result = blocking(move || {
        let size = reader.checkpoint()?.size();
        reader.tile(tile, size)
    })
    .await;
    match result {
        Ok(bytes) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, OCTETS),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TlogError> + Send + 'static,
) -> Result<T, TlogError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(TlogError::io(
            "task",
            "tlog-server",
            std::io::Error::other(e),
        ))
    })
}

fn error_response(e: &TlogError) -> Response {
    let status = match e {
        TlogError::OutOfRange { .. } | TlogError::Malformed { .. } => StatusCode::NOT_FOUND,
        _ => {
            tracing::error!(error = %e, "tile server");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    (status, [(header::CONTENT_TYPE, TEXT)], e.to_string()).into_response()
}

//! The gRPC service `spire.plugin.server.credentialcomposer.v1.CredentialComposer` and the Configure
//! that opens what the [`Composer`] works with.
//!
//! Configure validates ([`crate::config::build`]), then opens, in a blocking task: the provenance key
//! (generated on first start, public key written for relying parties), the log key and the log
//! ([`Log::open_or_create`] for `log_dir`, or [`PgLog::open`] for `log_database`, + [`Sequencer`], vkey
//! written), the attestation-result store, and the tile server when `log_serve_address` is set (from
//! the directory, or from the database: every HA replica serves the shared tree). A reconfiguration
//! (SIGUSR1) reuses what did not change: the log directory is flock'ed by its one writer, so the open
//! log and its sequencer are kept when `log_dir` (or `log_database`) is the same (and changing its key
//! or origin then is refused: it needs a restart); the store when its URL is the same; the tile server
//! when address and log are the same. RPCs already running keep the composer they started with
//! ([`ConfigSlot`]).
//!
//! Validate only runs [`crate::config::build`]: it creates no key, log or database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rand_core::{OsRng, RngCore as _};
use tonic::{Request, Response, Status};
use twi_plugin::proto::credentialcomposer::credential_composer_server::CredentialComposer;
use twi_plugin::proto::credentialcomposer::{
    ComposeAgentX509svidRequest, ComposeAgentX509svidResponse, ComposeServerX509caRequest,
    ComposeServerX509caResponse, ComposeServerX509svidRequest, ComposeServerX509svidResponse,
    ComposeWorkloadJwtsvidRequest, ComposeWorkloadJwtsvidResponse, ComposeWorkloadX509svidRequest,
    ComposeWorkloadX509svidResponse, JwtsvidAttributes,
};
use twi_plugin::{ConfigError, ConfigHandler, ConfigSlot, CoreConfig};
use twi_results::ResultStore;

use crate::composer::{system_clock, Clock, ComposeError, Composer, ComposerParts};
use crate::config::{self, redacted, LogStorage, Settings};
use crate::spire_api::SpireApi;
use crate::statement::ProvenanceKey;
use crate::tlog::{
    Log, LogKey, PgLog, PgLogReader, Sequencer, SequencerConfig, ServerHandle, TlogError,
};

/// Public files (vkey, provenance public key) are world-readable: relying parties need them.
const PUBLIC_FILE_MODE: u32 = 0o644;

/// The open log, kept across reconfigurations of the same `log_dir` or `log_database`.
struct OpenLog {
    storage: LogStorage,
    key_path: PathBuf,
    origin: String,
    vkey: String,
    sequencer: Arc<Sequencer>,
    /// The batching limits it was started with (they change only when a log is opened).
    batching: SequencerConfig,
}

/// What Configure opened and a reconfiguration may reuse.
#[derive(Default)]
struct Opened {
    log: Option<OpenLog>,
    store: Option<(String, Arc<dyn ResultStore>)>,
    server: Option<(SocketAddr, LogStorage, ServerHandle)>,
}

/// The CredentialComposer plugin. Cloning shares the configuration and what it opened.
#[derive(Clone)]
pub struct CredentialComposerPlugin {
    slot: ConfigSlot<Composer>,
    /// One Configure at a time; the std mutex inside is only taken in the blocking task.
    configuring: Arc<tokio::sync::Mutex<()>>,
    opened: Arc<Mutex<Opened>>,
    clock: Clock,
}

impl std::fmt::Debug for CredentialComposerPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialComposerPlugin")
            .field("configured", &self.slot.is_set())
            .finish_non_exhaustive()
    }
}

impl Default for CredentialComposerPlugin {
    fn default() -> Self {
        Self::new()
    }
}

fn invalid(key: &str, detail: impl std::fmt::Display) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        detail: detail.to_string(),
    }
}

/// Whether two configured paths name the same directory (the same flock).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Whether two configured logs are the same log (the same flock, or the same database).
fn same_storage(a: &LogStorage, b: &LogStorage) -> bool {
    match (a, b) {
        (LogStorage::Dir(x), LogStorage::Dir(y)) => same_dir(x, y),
        (LogStorage::Database(x), LogStorage::Database(y)) => x == y,
        _ => false,
    }
}

/// Opens the configured log and starts its sequencer; returns it with the log's size.
fn open_log(s: &Settings, key: LogKey) -> Result<(Sequencer, u64), ConfigError> {
    let storage = &s.log_storage;
    let (sequencer, size) = match storage {
        LogStorage::Dir(dir) => {
            let log = Log::open_or_create(dir, key).map_err(|e| invalid(storage.key(), e))?;
            let size = log.size();
            (Sequencer::start(log, s.sequencer.clone()), size)
        }
        LogStorage::Database(url) => {
            let log = PgLog::open(url, key).map_err(|e| invalid(storage.key(), e))?;
            let size = crate::tlog::LogBackend::size(&log);
            (
                Sequencer::start_backend(Box::new(log), s.sequencer.clone()),
                size,
            )
        }
    };
    Ok((sequencer.map_err(|e| invalid(storage.key(), e))?, size))
}

/// Starts the tile server over the configured log.
fn spawn_log_server(
    storage: &LogStorage,
    origin: &str,
    addr: SocketAddr,
) -> Result<ServerHandle, ConfigError> {
    match storage {
        LogStorage::Dir(dir) => crate::tlog::spawn_server(dir, addr),
        LogStorage::Database(url) => PgLogReader::open(url, origin)
            .and_then(|r| crate::tlog::spawn_server_for(Arc::new(r), addr)),
    }
    .map_err(|e| invalid("log_serve_address", e))
}

/// Refuses a private key file others may read: whoever reads it can forge checkpoints.
fn check_private_mode(key: &str, path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(invalid(
            key,
            format!(
                "{} has mode {:04o}: group and others must have no access (chmod 600)",
                path.display(),
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Writes a public file through a temporary file and a rename, so readers never see half of it.
fn write_public(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp-{}-{:016x}",
        std::process::id(),
        OsRng.next_u64()
    ));
    let tmp = path.with_file_name(name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PUBLIC_FILE_MODE)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        if !contents.ends_with('\n') {
            f.write_all(b"\n")?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Loads the log key, or generates and saves it; its origin must be the configured one.
fn log_key(s: &Settings) -> Result<(LogKey, bool), ConfigError> {
    let path = &s.log_key_path;
    let load = || -> Result<LogKey, ConfigError> {
        check_private_mode("log_key_path", path)?;
        LogKey::load(path).map_err(|e| invalid("log_key_path", e))
    };
    let (key, generated) = if path.exists() {
        (load()?, false)
    } else {
        let key =
            LogKey::generate(&s.log_origin, &mut OsRng).map_err(|e| invalid("log_origin", e))?;
        match key.save_new(path) {
            Ok(()) => (key, true),
            // Another server sharing the path won the race: use its key.
            Err(TlogError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                (load()?, false)
            }
            Err(e) => return Err(invalid("log_key_path", e)),
        }
    };
    if key.origin() != s.log_origin {
        let detail = format!(
            "the key in {} signs for origin {:?}, but the log origin is {:?}",
            path.display(),
            key.origin(),
            s.log_origin
        );
        return Err(if s.log_origin_explicit {
            invalid("log_origin", detail)
        } else {
            invalid(
                "log_key_path",
                format!(
                    "{detail} (the default); set log_origin = {:?}",
                    key.origin()
                ),
            )
        });
    }
    Ok((key, generated))
}

/// Opens (or reuses) everything `s` needs and builds the composer. Blocking.
fn open_all(
    s: &Arc<Settings>,
    opened: &mut Opened,
    clock: &Clock,
) -> Result<Composer, ConfigError> {
    let (prov_key, prov_generated) = ProvenanceKey::load_or_generate(&s.provenance_key_path)
        .map_err(|e| invalid("provenance_key_path", e))?;
    check_private_mode("provenance_key_path", &s.provenance_key_path)?;
    let prov_public = prov_key.public_key();
    if let Some(path) = &s.provenance_public_key_path {
        write_public(path, &prov_public.to_pem()).map_err(|e| {
            invalid(
                "provenance_public_key_path",
                format!("writing {}: {e}", path.display()),
            )
        })?;
    }

    // The log: reuse the open one for the same directory (its flock is ours).
    let mut new_log = None;
    let (sequencer, vkey, log_state) = match opened
        .log
        .as_ref()
        .filter(|l| same_storage(&l.storage, &s.log_storage))
    {
        Some(l) => {
            if l.key_path != s.log_key_path {
                return Err(invalid(
                    "log_key_path",
                    format!(
                        "cannot change while the log in {} is open (it was {}); restart the SPIRE \
                         server to change the log key",
                        l.storage,
                        l.key_path.display()
                    ),
                ));
            }
            if l.origin != s.log_origin {
                return Err(invalid(
                    "log_origin",
                    format!(
                        "cannot change while the log in {} is open (it is {:?})",
                        l.storage, l.origin
                    ),
                ));
            }
            let b = &s.sequencer;
            if (b.max_batch, b.max_wait, b.max_queue)
                != (
                    l.batching.max_batch,
                    l.batching.max_wait,
                    l.batching.max_queue,
                )
            {
                tracing::warn!(
                    "the sequencer block changed, but the open log keeps its batching limits until \
                     it is reopened (restart the SPIRE server)"
                );
            }
            (Arc::clone(&l.sequencer), l.vkey.clone(), "reused")
        }
        None => {
            let (key, generated) = log_key(s)?;
            let vkey = key.vkey().to_owned();
            let (seq, size) = open_log(s, key)?;
            tracing::info!(
                log = %s.log_storage,
                size,
                origin = %s.log_origin,
                key = if generated { "generated" } else { "loaded" },
                "transparency log opened"
            );
            let seq = Arc::new(seq);
            new_log = Some(OpenLog {
                storage: s.log_storage.clone(),
                key_path: s.log_key_path.clone(),
                origin: s.log_origin.clone(),
                vkey: vkey.clone(),
                sequencer: Arc::clone(&seq),
                batching: s.sequencer.clone(),
            });
            (seq, vkey, "opened")
        }
    };
    if let Some(path) = &s.log_vkey_path {
        write_public(path, &vkey)
            .map_err(|e| invalid("log_vkey_path", format!("writing {}: {e}", path.display())))?;
    }

    let store = match opened.store.as_ref().filter(|(url, _)| *url == s.database) {
        Some((_, store)) => Arc::clone(store),
        None => {
            let store: Arc<dyn ResultStore> = Arc::from(
                twi_results::open(&s.database)
                    .map_err(|e| invalid("attestation_results_database", e))?,
            );
            store
        }
    };

    // The tile server: keep it when nothing changed; bind a new port before letting the old go.
    let keep_server = matches!(
        (&opened.server, s.log_serve_address),
        (Some((addr, storage, _)), Some(want)) if *addr == want && same_storage(storage, &s.log_storage)
    );
    if !keep_server {
        let same_port = matches!(
            (&opened.server, s.log_serve_address),
            (Some((addr, _, _)), Some(want)) if *addr == want
        );
        if same_port {
            if let Some((_, _, old)) = opened.server.take() {
                let _ = old.shutdown();
            }
        }
        let new_server = match s.log_serve_address {
            Some(addr) => Some((
                addr,
                s.log_storage.clone(),
                spawn_log_server(&s.log_storage, &s.log_origin, addr)?,
            )),
            None => None,
        };
        if let Some((_, _, old)) = std::mem::replace(&mut opened.server, new_server) {
            let _ = old.shutdown();
        }
        if let Some((_, _, h)) = &opened.server {
            tracing::info!(url = %h.url(), "serving the transparency log's tiles and checkpoint");
        }
    }

    if let Some(l) = new_log {
        // The previous log (another directory) is released when the last composer using it is gone.
        opened.log = Some(l);
    }
    opened.store = Some((s.database.clone(), Arc::clone(&store)));

    tracing::info!(
        trust_domain = %s.trust_domain,
        log = log_state,
        log_storage = %s.log_storage,
        log_origin = %s.log_origin,
        log_vkey = %vkey,
        provenance_key_id = %prov_public.key_id(),
        provenance_key = if prov_generated { "generated" } else { "loaded" },
        provenance_oid = %s.provenance_oid,
        issuer = %s.issuer,
        attestation_results = %redacted(&s.database),
        server_socket = %s.server_socket_path.display(),
        entry_refresh_seconds = s.entry_refresh.as_secs(),
        max_collection = s.max_collection,
        require_key_binding = s.require_key_binding,
        on_missing_attestation_result = s.on_missing.as_str(),
        on_log_failure = s.on_log_failure.as_str(),
        workload_attestor_name = %s.workload_attestor_name,
        "configured"
    );
    Ok(Composer::new(ComposerParts {
        settings: Arc::clone(s),
        provenance_key: Arc::new(prov_key),
        sequencer,
        log_origin: s.log_origin.clone(),
        store,
        registry: Arc::new(SpireApi::new(
            &s.server_socket_path,
            &s.trust_domain,
            s.entry_refresh,
            s.server_api_timeout,
        )),
        clock: Arc::clone(clock),
    }))
}

fn joined(errors: &[ConfigError]) -> Status {
    Status::invalid_argument(
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

impl CredentialComposerPlugin {
    /// An unconfigured plugin on the system clock: RPCs answer FailedPrecondition until Configure.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(system_clock))
    }

    /// As [`CredentialComposerPlugin::new`] with another clock (Unix milliseconds).
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            slot: ConfigSlot::new(),
            configuring: Arc::new(tokio::sync::Mutex::new(())),
            opened: Arc::new(Mutex::new(Opened::default())),
            clock,
        }
    }

    /// The composer of the active configuration.
    ///
    /// # Errors
    ///
    /// `FailedPrecondition "not configured"` before Configure.
    pub fn composer(&self) -> Result<Arc<Composer>, Status> {
        self.slot.get()
    }
}

fn refused(rpc: &'static str, spiffe_id: &str, e: &ComposeError) -> Status {
    let status = e.to_status();
    tracing::warn!(rpc, spiffe_id, code = ?status.code(), error = %e, "credential refused");
    status
}

#[tonic::async_trait]
impl ConfigHandler for CredentialComposerPlugin {
    async fn configure(&self, core: CoreConfig, hcl: &str) -> Result<(), Status> {
        let _one_at_a_time = self.configuring.lock().await;
        let hcl = hcl.to_owned();
        let opened = Arc::clone(&self.opened);
        let clock = Arc::clone(&self.clock);
        let built = tokio::task::spawn_blocking(move || {
            let settings = Arc::new(config::build(&core, &hcl)?);
            let mut opened = opened.lock().unwrap_or_else(PoisonError::into_inner);
            open_all(&settings, &mut opened, &clock).map_err(|e| vec![e])
        })
        .await
        .map_err(|e| Status::internal(format!("configuration task: {e}")))?;
        match built {
            Ok(composer) => {
                self.slot.set(composer);
                Ok(())
            }
            Err(errors) => Err(joined(&errors)),
        }
    }

    async fn validate(&self, core: CoreConfig, hcl: &str) -> Result<Vec<String>, Status> {
        let hcl = hcl.to_owned();
        let built = tokio::task::spawn_blocking(move || config::build(&core, &hcl))
            .await
            .map_err(|e| Status::internal(format!("validation task: {e}")))?;
        Ok(match built {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        })
    }
}

#[tonic::async_trait]
impl CredentialComposer for CredentialComposerPlugin {
    async fn compose_server_x509ca(
        &self,
        _request: Request<ComposeServerX509caRequest>,
    ) -> Result<Response<ComposeServerX509caResponse>, Status> {
        Err(Status::unimplemented(
            "the server CA keeps SPIRE's defaults",
        ))
    }

    async fn compose_server_x509svid(
        &self,
        _request: Request<ComposeServerX509svidRequest>,
    ) -> Result<Response<ComposeServerX509svidResponse>, Status> {
        Err(Status::unimplemented(
            "the server X509-SVID keeps SPIRE's defaults",
        ))
    }

    async fn compose_agent_x509svid(
        &self,
        request: Request<ComposeAgentX509svidRequest>,
    ) -> Result<Response<ComposeAgentX509svidResponse>, Status> {
        let composer = self.slot.get()?;
        let req = request.into_inner();
        let attributes = composer
            .compose_agent_x509(&req.spiffe_id, &req.public_key, req.attributes)
            .await
            .map_err(|e| refused("ComposeAgentX509SVID", &req.spiffe_id, &e))?;
        Ok(Response::new(ComposeAgentX509svidResponse {
            attributes: Some(attributes),
        }))
    }

    async fn compose_workload_x509svid(
        &self,
        request: Request<ComposeWorkloadX509svidRequest>,
    ) -> Result<Response<ComposeWorkloadX509svidResponse>, Status> {
        let composer = self.slot.get()?;
        let req = request.into_inner();
        // `None`: attributes unset, which SPIRE reads as "keep the defaults".
        let attributes = composer
            .compose_workload_x509(&req.spiffe_id, &req.public_key, req.attributes)
            .await
            .map_err(|e| refused("ComposeWorkloadX509SVID", &req.spiffe_id, &e))?;
        Ok(Response::new(ComposeWorkloadX509svidResponse {
            attributes,
        }))
    }

    async fn compose_workload_jwtsvid(
        &self,
        request: Request<ComposeWorkloadJwtsvidRequest>,
    ) -> Result<Response<ComposeWorkloadJwtsvidResponse>, Status> {
        let composer = self.slot.get()?;
        let req = request.into_inner();
        let claims = composer
            .compose_workload_jwt(&req.spiffe_id, req.attributes.and_then(|a| a.claims))
            .await
            .map_err(|e| refused("ComposeWorkloadJWTSVID", &req.spiffe_id, &e))?;
        Ok(Response::new(ComposeWorkloadJwtsvidResponse {
            attributes: Some(JwtsvidAttributes {
                claims: Some(claims),
            }),
        }))
    }
}

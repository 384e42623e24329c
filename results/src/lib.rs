//! The attestation-result store: every EAR the server issues, keyed by the agent's SPIFFE ID, so the
//! credential composer can put an agent's latest EAR into its SVIDs and an auditor can read its history.
//!
//! Two backends behind one [`ResultStore`] trait, chosen by [`open`]'s URL:
//! * SQLite (`sqlite:///path`), the default for a single SPIRE server: WAL, full sync, one transaction
//!   per [`ResultStore::put`], so a crash never leaves a half-written result and an acknowledged one
//!   is on disk;
//! * PostgreSQL (`postgres://…`, `postgresql://…` or a `host=… port=…` conninfo) for SPIRE servers in
//!   HA sharing one database: one table, one transaction per put.
//!
//! Each row keeps the SHA-256 of its EAR; reads recompute it, so a damaged row is reported, never
//! served. The store does not parse EARs: the caller passes what it needs as [`ResultMeta`].
//!
//! Both backends block: call them from a blocking context (`tokio::task::spawn_blocking`). The
//! PostgreSQL client runs its own runtime and panics if called from inside an async task.

mod pg;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use sha2::{Digest, Sha256};

pub use pg::PostgresStore;
pub use sqlite::SqliteStore;

/// EARs longer than this are refused (an EAR is about 1 to 2 KiB).
pub const MAX_EAR_LEN: usize = 64 * 1024;
/// SPIFFE IDs are at most 2048 bytes (SPIFFE-ID standard, section 2.3).
pub const MAX_AGENT_ID_LEN: usize = 2048;
/// Most rows [`ResultStore::history`] returns at once.
pub const MAX_HISTORY: usize = 10_000;

/// The EAR statuses a row may carry (AR4SI tiers).
pub const STATUSES: [&str; 4] = ["affirming", "warning", "contraindicated", "none"];

/// What the store indexes about an EAR, given by the caller (who parsed or built the EAR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultMeta {
    /// `ear_status`: one of [`STATUSES`].
    pub status: String,
    /// `iat`, Unix seconds.
    pub issued_at: i64,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// SHA-256 (hex) of the raw evidence, when there was evidence.
    pub evidence_sha256: Option<String>,
    /// The appraisal policy URI.
    pub policy_id: Option<String>,
}

/// One stored result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResult {
    /// Increasing per store: a later put has a larger id.
    pub id: i64,
    pub agent_id: String,
    /// The EAR, compact JWS, exactly as put.
    pub ear_jws: String,
    /// SHA-256 (hex) of `ear_jws`, checked on every read.
    pub ear_sha256: String,
    pub meta: ResultMeta,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store URL is not usable (never echoed whole: it may hold a password).
    #[error("result store URL: {detail}")]
    Url { detail: String },
    /// A value given to the store breaks its limits.
    #[error("invalid {field}: {detail}")]
    Invalid { field: &'static str, detail: String },
    /// SQLite failed.
    #[error("sqlite {path}: {op}: {source}")]
    Sqlite {
        path: String,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite would not switch to WAL (e.g. a network filesystem): without it readers block the
    /// server and durability is not what we test.
    #[error(
        "sqlite {path}: WAL refused (journal_mode is {mode}); is the file on a network filesystem?"
    )]
    NoWal { path: String, mode: String },
    /// PostgreSQL failed.
    #[error("postgres: {op}: {source}")]
    Postgres {
        op: &'static str,
        #[source]
        source: postgres::Error,
    },
    /// A stored row does not hold what was put.
    #[error("stored result {id} of {agent_id} is corrupt: {detail}")]
    Corrupt {
        id: i64,
        agent_id: String,
        detail: String,
    },
    /// The database was created by a newer version of this crate.
    #[error("result store schema version {found} is newer than {supported}")]
    Schema { found: i64, supported: i64 },
}

/// A store of attestation results, keyed by agent SPIFFE ID.
pub trait ResultStore: Send + Sync {
    /// Stores `ear_jws` for `agent_id` in one transaction and returns its id once it is durable.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for bad input, else the backend's error (nothing was stored).
    fn put(&self, agent_id: &str, ear_jws: &str, meta: &ResultMeta) -> Result<i64, StoreError>;

    /// The most recently put result of `agent_id`.
    ///
    /// # Errors
    /// The backend's error, or [`StoreError::Corrupt`].
    fn latest(&self, agent_id: &str) -> Result<Option<StoredResult>, StoreError>;

    /// Up to `limit` (at most [`MAX_HISTORY`]) results of `agent_id`, newest first.
    ///
    /// # Errors
    /// As [`ResultStore::latest`].
    fn history(&self, agent_id: &str, limit: usize) -> Result<Vec<StoredResult>, StoreError>;
}

/// Opens the store named by `url`: `sqlite:///abs/path` (or `sqlite://rel/path`), `postgres://…`,
/// `postgresql://…`, or a libpq conninfo (`host=/run/pg port=5432 dbname=spire user=spire`). The
/// schema is created if missing.
///
/// # Errors
/// [`StoreError::Url`] for an unknown scheme, else the backend's error.
pub fn open(url: &str) -> Result<Box<dyn ResultStore>, StoreError> {
    let url = url.trim();
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StoreError::Url {
                detail: "sqlite:// without a path (want sqlite:///abs/path)".into(),
            });
        }
        return Ok(Box::new(SqliteStore::open(std::path::Path::new(path))?));
    }
    let conninfo = !url.contains("://")
        && url
            .split_whitespace()
            .next()
            .is_some_and(|t| t.contains('='));
    if url.starts_with("postgres://") || url.starts_with("postgresql://") || conninfo {
        return Ok(Box::new(PostgresStore::connect(url)?));
    }
    let scheme = url.split_once("://").map_or("(none)", |(s, _)| s);
    Err(StoreError::Url {
        detail: format!(
            "scheme {:?} is not sqlite, postgres or postgresql, and it is not a host=… conninfo",
            scheme.chars().take(32).collect::<String>()
        ),
    })
}

/// Hex SHA-256 of an EAR, as stored.
fn ear_digest(ear_jws: &str) -> String {
    hex::encode(Sha256::digest(ear_jws.as_bytes()))
}

fn check_input(agent_id: &str, ear_jws: &str, meta: &ResultMeta) -> Result<(), StoreError> {
    let invalid = |field, detail: String| Err(StoreError::Invalid { field, detail });
    if !agent_id.starts_with("spiffe://") || agent_id.len() > MAX_AGENT_ID_LEN {
        return invalid(
            "agent_id",
            format!(
                "want a spiffe:// ID of at most {MAX_AGENT_ID_LEN} bytes, got {} bytes starting {:?}",
                agent_id.len(),
                agent_id.chars().take(40).collect::<String>()
            ),
        );
    }
    if ear_jws.is_empty() || ear_jws.len() > MAX_EAR_LEN {
        return invalid(
            "ear_jws",
            format!("{} bytes, want 1 to {MAX_EAR_LEN}", ear_jws.len()),
        );
    }
    if !STATUSES.contains(&meta.status.as_str()) {
        return invalid(
            "status",
            format!(
                "{:?} is not one of {STATUSES:?}",
                meta.status.chars().take(40).collect::<String>()
            ),
        );
    }
    if meta.expires_at <= meta.issued_at {
        return invalid(
            "expires_at",
            format!(
                "{} is not after issued_at {}",
                meta.expires_at, meta.issued_at
            ),
        );
    }
    Ok(())
}

/// Checks a row read back: its digest matches its EAR.
fn checked(r: StoredResult) -> Result<StoredResult, StoreError> {
    let digest = ear_digest(&r.ear_jws);
    if digest != r.ear_sha256 {
        return Err(StoreError::Corrupt {
            id: r.id,
            agent_id: r.agent_id,
            detail: format!(
                "EAR digest {digest} does not match the stored {}",
                r.ear_sha256
            ),
        });
    }
    Ok(r)
}

fn history_limit(limit: usize) -> i64 {
    i64::try_from(limit.min(MAX_HISTORY)).unwrap_or(0)
}

//! SQLite backend: one file, WAL journal, `synchronous = FULL`, one IMMEDIATE transaction per put.
//!
//! WAL lets the credential composer and `twi` read while the server writes; FULL makes the commit
//! durable (fsync of the WAL) before `put` returns, so an acknowledged result survives a crash or a
//! power cut, and an interrupted transaction is rolled back on the next open.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::{
    check_input, checked, ear_digest, history_limit, ResultMeta, ResultStore, StoreError,
    StoredResult,
};

/// The schema this code writes; `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// How long a writer waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS attestation_results (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id        TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    issued_at       INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    evidence_sha256 TEXT,
    policy_id       TEXT,
    ear_sha256      TEXT    NOT NULL,
    ear_jws         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS attestation_results_agent ON attestation_results (agent_id, id);
";

const SELECT: &str = "SELECT id, agent_id, ear_jws, ear_sha256, status, issued_at, expires_at, \
                      evidence_sha256, policy_id FROM attestation_results";

/// The SQLite result store. One connection, serialised by a mutex (SQLite has one writer anyway).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, in WAL mode, and creates the schema.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`], or [`StoreError::Schema`] for a database of a newer version.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        let err = |op| {
            let path = shown.clone();
            move |source| StoreError::Sqlite { path, op, source }
        };
        let mut conn = Connection::open(path).map_err(err("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(err("busy_timeout"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err("journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal { path: shown, mode });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("synchronous"))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("schema"))?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err("user_version"))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::Schema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        tx.execute_batch(SCHEMA).map_err(err("schema"))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err("user_version"))?;
        tx.commit().map_err(err("schema"))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    fn err(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.display().to_string(),
            op,
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open: rusqlite rolls it back when
        // the Transaction is dropped during unwinding. The connection is still sound.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredResult> {
    Ok(StoredResult {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        ear_jws: r.get(2)?,
        ear_sha256: r.get(3)?,
        meta: ResultMeta {
            status: r.get(4)?,
            issued_at: r.get(5)?,
            expires_at: r.get(6)?,
            evidence_sha256: r.get(7)?,
            policy_id: r.get(8)?,
        },
    })
}

impl ResultStore for SqliteStore {
    fn put(&self, agent_id: &str, ear_jws: &str, meta: &ResultMeta) -> Result<i64, StoreError> {
        check_input(agent_id, ear_jws, meta)?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err("begin"))?;
        tx.execute(
            "INSERT INTO attestation_results (agent_id, status, issued_at, expires_at, \
             evidence_sha256, policy_id, ear_sha256, ear_jws) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                agent_id,
                meta.status,
                meta.issued_at,
                meta.expires_at,
                meta.evidence_sha256,
                meta.policy_id,
                ear_digest(ear_jws),
                ear_jws
            ],
        )
        .map_err(self.err("insert"))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(self.err("commit"))?;
        Ok(id)
    }

    fn latest(&self, agent_id: &str) -> Result<Option<StoredResult>, StoreError> {
        let conn = self.conn();
        let found = conn
            .query_row(
                &format!("{SELECT} WHERE agent_id = ?1 ORDER BY id DESC LIMIT 1"),
                params![agent_id],
                row,
            )
            .optional()
            .map_err(self.err("latest"))?;
        found.map(checked).transpose()
    }

    fn history(&self, agent_id: &str, limit: usize) -> Result<Vec<StoredResult>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "{SELECT} WHERE agent_id = ?1 ORDER BY id DESC LIMIT ?2"
            ))
            .map_err(self.err("history"))?;
        let rows = stmt
            .query_map(params![agent_id, history_limit(limit)], row)
            .map_err(self.err("history"))?;
        rows.map(|r| r.map_err(self.err("history")).and_then(checked))
            .collect()
    }
}

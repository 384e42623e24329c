//! PostgreSQL backend for SPIRE servers in HA: one table shared by every server, one transaction per
//! put, ids from one sequence (so "latest" is the same answer on every server).
//!
//! The connection is made at open and remade after it breaks (a failover, a restart): a read retries
//! once on a fresh connection; a put does not (it may have committed before the break), it fails and
//! the caller decides.

use std::str::FromStr as _;
use std::sync::{Mutex, PoisonError};

use postgres::{Client, Config, NoTls};

use crate::{
    check_input, checked, ear_digest, history_limit, ResultMeta, ResultStore, StoreError,
    StoredResult,
};

/// Serialises schema creation between servers starting together (`CREATE TABLE IF NOT EXISTS` races
/// on the catalog otherwise). An arbitrary constant: "twi-resu" in ASCII.
const SCHEMA_LOCK: i64 = 0x7477_692d_7265_7375;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS attestation_results (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id        TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    issued_at       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    evidence_sha256 TEXT,
    policy_id       TEXT,
    ear_sha256      TEXT   NOT NULL,
    ear_jws         TEXT   NOT NULL
);
CREATE INDEX IF NOT EXISTS attestation_results_agent ON attestation_results (agent_id, id);
";

const SELECT: &str = "SELECT id, agent_id, ear_jws, ear_sha256, status, issued_at, expires_at, \
                      evidence_sha256, policy_id FROM attestation_results";

/// The PostgreSQL result store (no TLS yet: use a Unix socket or a trusted network).
pub struct PostgresStore {
    config: Config,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config's Debug redacts the password; hosts and database are useful in logs.
        f.debug_struct("PostgresStore")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

fn pg(op: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |source| StoreError::Postgres { op, source }
}

fn row(r: &postgres::Row) -> Result<StoredResult, postgres::Error> {
    Ok(StoredResult {
        id: r.try_get(0)?,
        agent_id: r.try_get(1)?,
        ear_jws: r.try_get(2)?,
        ear_sha256: r.try_get(3)?,
        meta: ResultMeta {
            status: r.try_get(4)?,
            issued_at: r.try_get(5)?,
            expires_at: r.try_get(6)?,
            evidence_sha256: r.try_get(7)?,
            policy_id: r.try_get(8)?,
        },
    })
}

impl PostgresStore {
    /// Connects with `url` (a `postgres://` URL or a libpq conninfo) and creates the schema.
    ///
    /// # Errors
    /// [`StoreError::Url`] if `url` does not parse, [`StoreError::Postgres`] if the server cannot be
    /// reached or the schema cannot be created.
    pub fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        // The parser's message does not echo the input, so no password can leak through it.
        let config = Config::from_str(url).map_err(|e| StoreError::Url {
            detail: format!("not a PostgreSQL URL or conninfo: {e}"),
        })?;
        let mut client = config.connect(NoTls).map_err(pg("connect"))?;
        let mut tx = client.transaction().map_err(pg("schema"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(pg("schema lock"))?;
        tx.batch_execute(SCHEMA).map_err(pg("schema"))?;
        tx.commit().map_err(pg("schema"))?;
        Ok(PostgresStore {
            config,
            client: Mutex::new(Some(client)),
        })
    }

    /// Runs `f` on a live connection, connecting first if the last one broke.
    fn with_client<T>(
        &self,
        op: &'static str,
        f: &mut dyn FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            *slot = Some(self.config.connect(NoTls).map_err(pg("reconnect"))?);
        }
        let Some(client) = slot.as_mut() else {
            return Err(StoreError::Url {
                detail: "no connection".into(),
            });
        };
        let result = f(client);
        if result.is_err() && client.is_closed() {
            *slot = None;
        }
        result.map_err(pg(op))
    }

    /// The last call found the connection broken and dropped it.
    fn connection_dropped(&self) -> bool {
        self.client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// A read, retried once on a fresh connection when the connection broke under it.
    fn read<T>(
        &self,
        op: &'static str,
        f: &mut dyn FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        match self.with_client(op, f) {
            Err(StoreError::Postgres { .. }) if self.connection_dropped() => {
                self.with_client(op, f)
            }
            other => other,
        }
    }
}

impl ResultStore for PostgresStore {
    fn put(&self, agent_id: &str, ear_jws: &str, meta: &ResultMeta) -> Result<i64, StoreError> {
        check_input(agent_id, ear_jws, meta)?;
        let digest = ear_digest(ear_jws);
        self.with_client("put", &mut |client| {
            let mut tx = client.transaction()?;
            let r = tx.query_one(
                "INSERT INTO attestation_results (agent_id, status, issued_at, expires_at, \
                 evidence_sha256, policy_id, ear_sha256, ear_jws) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &agent_id,
                    &meta.status,
                    &meta.issued_at,
                    &meta.expires_at,
                    &meta.evidence_sha256,
                    &meta.policy_id,
                    &digest,
                    &ear_jws,
                ],
            )?;
            let id: i64 = r.try_get(0)?;
            tx.commit()?;
            Ok(id)
        })
    }

    fn latest(&self, agent_id: &str) -> Result<Option<StoredResult>, StoreError> {
        let found = self.read("latest", &mut |client| {
            client
                .query_opt(
                    &format!("{SELECT} WHERE agent_id = $1 ORDER BY id DESC LIMIT 1"),
                    &[&agent_id],
                )?
                .as_ref()
                .map(row)
                .transpose()
        })?;
        found.map(checked).transpose()
    }

    fn history(&self, agent_id: &str, limit: usize) -> Result<Vec<StoredResult>, StoreError> {
        let limit = history_limit(limit);
        let rows = self.read("history", &mut |client| {
            client
                .query(
                    &format!("{SELECT} WHERE agent_id = $1 ORDER BY id DESC LIMIT $2"),
                    &[&agent_id, &limit],
                )?
                .iter()
                .map(row)
                .collect::<Result<Vec<_>, _>>()
        })?;
        rows.into_iter().map(checked).collect()
    }
}

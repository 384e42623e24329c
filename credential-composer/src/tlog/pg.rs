//! The log in PostgreSQL, for SPIRE servers in HA (issue #5 item 2): every replica appends to and
//! serves the same tree.
//!
//! ```text
//! twi_tlog_logs     origin (key), vkey, size, checkpoint   one row per log; its row lock is the
//!                                                          sequencer lock
//! twi_tlog_entries  origin, idx, entry                     the entries (source of truth)
//! twi_tlog_hashes   origin, idx, hash                      every stored Merkle hash, in Go tlog's
//!                                                          stored-hash order (as the file log)
//! ```
//!
//! One append of a batch is one transaction: `SELECT … FOR UPDATE` on the log's row (so one sequencer
//! at a time across all replicas; the others wait on the lock), read the current size and the hashes
//! the new ones need from the database (another replica may have appended since), insert entries and
//! hashes, sign the new checkpoint with the log key (every replica has the same key file), update the
//! row, and COMMIT with `synchronous_commit = on` (durable when it returns). Inclusion proofs are
//! computed inside the transaction against the new tree and returned only after the commit succeeded.
//! A batch whose COMMIT was cut off by a lost connection is reported failed, though PostgreSQL may have
//! committed it: its entries may then be in the log without any credential citing them (harmless), but
//! no credential ever cites an entry that is not.
//!
//! Connections are made at open and remade after they break (a PostgreSQL restart, a failover): while
//! the database is unreachable appends fail (fail closed), and succeed again once it is back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::{Mutex, PoisonError};

use postgres::{Client, Config, GenericClient, NoTls};
use tlog_tiles::{Hash, HashReader, HASH_SIZE};

use super::backend::{LogBackend, TileSource};
use super::checkpoint::{LogKey, SignedCheckpoint, VerifiedCheckpoint};
use super::log::Appended;
use super::proof::InclusionProof;
use super::storage::MAX_ENTRY_SIZE;
use super::tile::{TileId, TileKind, TILE_WIDTH};
use super::TlogError;

/// Serialises schema creation between replicas starting together (`CREATE TABLE IF NOT EXISTS` races
/// on the catalog otherwise). An arbitrary constant: "twi-tlog" in ASCII.
const SCHEMA_LOCK: i64 = 0x7477_692d_746c_6f67;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS twi_tlog_logs (
    origin     TEXT   PRIMARY KEY,
    vkey       TEXT   NOT NULL,
    size       BIGINT NOT NULL CHECK (size >= 0),
    checkpoint BYTEA  NOT NULL
);
CREATE TABLE IF NOT EXISTS twi_tlog_entries (
    origin TEXT   NOT NULL,
    idx    BIGINT NOT NULL,
    entry  BYTEA  NOT NULL,
    PRIMARY KEY (origin, idx)
);
CREATE TABLE IF NOT EXISTS twi_tlog_hashes (
    origin TEXT   NOT NULL,
    idx    BIGINT NOT NULL,
    hash   BYTEA  NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (origin, idx)
);
";

/// Hashes kept between batches. Stored hashes never change once committed, so the cache needs no
/// invalidation; it is only bounded.
const MAX_CACHED_HASHES: usize = 1 << 20;

fn pg(op: &'static str) -> impl Fn(postgres::Error) -> TlogError {
    move |source| TlogError::Postgres { op, source }
}

fn to_i64(what: &'static str, v: u64) -> Result<i64, TlogError> {
    i64::try_from(v).map_err(|_| TlogError::OutOfRange {
        what,
        got: v.to_string(),
        size: i64::MAX.unsigned_abs(),
    })
}

fn to_u64(what: &'static str, v: i64) -> Result<u64, TlogError> {
    u64::try_from(v).map_err(|_| TlogError::corrupt(what, v, ">= 0"))
}

/// Parses a `postgres://` URL or a libpq conninfo; the parser's message does not echo the input, so
/// no password leaks through it.
fn parse_config(conninfo: &str) -> Result<Config, TlogError> {
    Config::from_str(conninfo).map_err(|e| TlogError::Database {
        reason: format!("not a PostgreSQL URL or conninfo: {e}"),
    })
}

/// Hosts and database name, for logs (never the password).
fn describe_config(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "postgresql host={} dbname={}",
        hosts.join(","),
        config.get_dbname().unwrap_or("(default)")
    )
}

/// One connection, made on first use and remade after it broke.
struct Conn {
    config: Config,
    client: Option<Client>,
}

impl Conn {
    fn client(&mut self) -> Result<&mut Client, TlogError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.client = Some(self.config.connect(NoTls).map_err(pg("connect"))?);
        }
        self.client.as_mut().ok_or(TlogError::Database {
            reason: "no connection".into(),
        })
    }

    /// Runs `f` on a live connection; drops the connection when it broke under `f`.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, TlogError>,
    ) -> Result<T, TlogError> {
        let client = self.client()?;
        let result = f(client);
        if result.is_err() && self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
        }
        result
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            close_off_runtime(client);
        }
    }
}

/// Drops a connection. The blocking client runs a runtime of its own to close, which panics on a
/// thread of another runtime (the tile server's, or the plugin's when a composer holding a sequencer is
/// dropped): there, the connection is closed on a thread of its own.
fn close_off_runtime(client: Client) {
    if tokio::runtime::Handle::try_current().is_err() {
        drop(client);
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel::<Client>();
    let spawned = std::thread::Builder::new()
        .name("tlog-pg-close".into())
        .spawn(move || drop(rx.recv()));
    match spawned {
        Ok(_) => {
            if let Err(std::sync::mpsc::SendError(client)) = tx.send(client) {
                std::mem::forget(client);
            }
        }
        Err(e) => {
            // Leak it rather than panic here: the server drops it when the process ends.
            tracing::warn!(error = %e, "closing a PostgreSQL log connection");
            std::mem::forget(client);
        }
    }
}

fn create_schema(client: &mut Client) -> Result<(), TlogError> {
    let mut tx = client.transaction().map_err(pg("schema"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .map_err(pg("schema lock"))?;
    tx.batch_execute(SCHEMA).map_err(pg("schema"))?;
    tx.commit().map_err(pg("schema"))
}

/// Reads stored hashes for the Go-ported tree maths from the database (through a transaction or a
/// client), with this batch's `pending` hashes and a cache in front; keeps the first database error so
/// the caller gets it typed.
struct PgHashReader<'a, C: GenericClient> {
    client: RefCell<&'a mut C>,
    origin: &'a str,
    pending: &'a [Hash],
    pending_base: u64,
    cache: &'a RefCell<HashMap<u64, Hash>>,
    error: RefCell<Option<TlogError>>,
}

impl<'a, C: GenericClient> PgHashReader<'a, C> {
    fn new(
        client: &'a mut C,
        origin: &'a str,
        pending: &'a [Hash],
        pending_base: u64,
        cache: &'a RefCell<HashMap<u64, Hash>>,
    ) -> Self {
        Self {
            client: RefCell::new(client),
            origin,
            pending,
            pending_base,
            cache,
            error: RefCell::new(None),
        }
    }

    fn run<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, tlog_tiles::Error>,
    ) -> Result<T, TlogError> {
        let result = f(self);
        if let Some(e) = self.error.borrow_mut().take() {
            return Err(e);
        }
        result.map_err(|e| TlogError::corrupt("tree hashes", e, "readable Merkle tree"))
    }

    fn pending_hash(&self, x: u64) -> Option<Hash> {
        let k = usize::try_from(x.checked_sub(self.pending_base)?).ok()?;
        self.pending.get(k).copied()
    }

    fn known(&self, x: u64) -> Option<Hash> {
        self.pending_hash(x)
            .or_else(|| self.cache.borrow().get(&x).copied())
    }

    fn fetch(&self, missing: &[u64]) -> Result<(), TlogError> {
        if missing.is_empty() {
            return Ok(());
        }
        let wanted = missing
            .iter()
            .map(|&x| to_i64("stored hash index", x))
            .collect::<Result<Vec<i64>, _>>()?;
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT idx, hash FROM twi_tlog_hashes WHERE origin = $1 AND idx = ANY($2)",
                &[&self.origin, &wanted],
            )
            .map_err(pg("read hashes"))?;
        let mut cache = self.cache.borrow_mut();
        if cache.len() + rows.len() > MAX_CACHED_HASHES {
            cache.clear();
        }
        for row in rows {
            let idx: i64 = row.try_get(0).map_err(pg("read hashes"))?;
            let bytes: &[u8] = row.try_get(1).map_err(pg("read hashes"))?;
            let hash: [u8; HASH_SIZE] = bytes
                .try_into()
                .map_err(|_| TlogError::corrupt("stored hash length", bytes.len(), HASH_SIZE))?;
            cache.insert(to_u64("stored hash index", idx)?, Hash(hash));
        }
        Ok(())
    }
}

impl<C: GenericClient> HashReader for PgHashReader<'_, C> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let missing: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|&x| self.known(x).is_none())
            .collect();
        if let Err(e) = self.fetch(&missing) {
            *self.error.borrow_mut() = Some(e);
            return Err(tlog_tiles::Error::InvalidInput("database error".into()));
        }
        indexes
            .iter()
            .map(|&x| {
                self.known(x).ok_or_else(|| {
                    let mut err = self.error.borrow_mut();
                    if err.is_none() {
                        *err = Some(TlogError::corrupt(
                            "twi_tlog_hashes",
                            format!("stored hash {x} missing"),
                            "every hash below the checkpoint's size",
                        ));
                    }
                    tlog_tiles::Error::IndexesNotInTree
                })
            })
            .collect()
    }
}

/// Reads the log's row: its vkey and checkpoint, checking that the checkpoint is the key's, for the
/// log's origin, and agrees with the row's size.
fn read_row<C: GenericClient>(
    client: &mut C,
    key: &LogKey,
    lock: bool,
) -> Result<VerifiedCheckpoint, TlogError> {
    let sql = if lock {
        "SELECT vkey, size, checkpoint FROM twi_tlog_logs WHERE origin = $1 FOR UPDATE"
    } else {
        "SELECT vkey, size, checkpoint FROM twi_tlog_logs WHERE origin = $1"
    };
    let row = client
        .query_opt(sql, &[&key.origin()])
        .map_err(pg("read log row"))?
        .ok_or_else(|| TlogError::Database {
            reason: format!("no log with origin {:?} in twi_tlog_logs", key.origin()),
        })?;
    let vkey: String = row.try_get(0).map_err(pg("read log row"))?;
    let size: i64 = row.try_get(1).map_err(pg("read log row"))?;
    let note: Vec<u8> = row.try_get(2).map_err(pg("read log row"))?;
    if vkey != key.vkey() {
        return Err(TlogError::LogMismatch {
            what: "log key",
            got: vkey,
            want: key.vkey().to_owned(),
        });
    }
    let verified = key.verifier().verify_checkpoint(&note)?;
    let size = to_u64("twi_tlog_logs.size", size)?;
    if verified.size() != size {
        return Err(TlogError::corrupt(
            "twi_tlog_logs.size",
            size,
            format!("{} (its checkpoint)", verified.size()),
        ));
    }
    Ok(verified)
}

/// A writer of a log kept in PostgreSQL. Several may append to the same log at once (one per replica):
/// the database serialises their batches.
pub struct PgLog {
    conn: Conn,
    key: LogKey,
    checkpoint: SignedCheckpoint,
    cache: RefCell<HashMap<u64, Hash>>,
}

impl std::fmt::Debug for PgLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLog")
            .field("database", &describe_config(&self.conn.config))
            .field("origin", &self.key.origin())
            .field("size", &self.checkpoint.size())
            .finish_non_exhaustive()
    }
}

impl PgLog {
    /// Connects with `conninfo` (a `postgres://` URL or a libpq conninfo), creates the tables if
    /// missing, creates the log of `key`'s origin if the database has none (size 0), and checks an
    /// existing one: it must be signed by `key` and its stored tree must have the checkpoint's root.
    ///
    /// # Errors
    /// [`TlogError::Database`] for a bad conninfo, [`TlogError::Postgres`] if the database cannot be
    /// reached, [`TlogError::LogMismatch`] if the log of this origin has another key, checkpoint
    /// verification errors, [`TlogError::Corrupt`].
    pub fn open(conninfo: &str, key: LogKey) -> Result<Self, TlogError> {
        let config = parse_config(conninfo)?;
        let mut conn = Conn {
            config,
            client: None,
        };
        let empty = key.sign_checkpoint(0, tlog_tiles::EMPTY_HASH)?;
        conn.run(|client| {
            create_schema(client)?;
            client
                .execute(
                    "INSERT INTO twi_tlog_logs (origin, vkey, size, checkpoint) \
                     VALUES ($1, $2, 0, $3) ON CONFLICT (origin) DO NOTHING",
                    &[&key.origin(), &key.vkey(), &empty.as_bytes()],
                )
                .map_err(pg("create log"))
        })?;
        let mut log = Self {
            conn,
            key,
            checkpoint: empty,
            cache: RefCell::new(HashMap::new()),
        };
        LogBackend::recover(&mut log)?;
        Ok(log)
    }

    /// The log's key (for its origin and vkey).
    pub fn key(&self) -> &LogKey {
        &self.key
    }

    fn write_batch(
        client: &mut Client,
        key: &LogKey,
        cache: &RefCell<HashMap<u64, Hash>>,
        entries: &[Vec<u8>],
    ) -> Result<(Vec<Appended>, SignedCheckpoint, u64, Vec<Hash>), TlogError> {
        let origin = key.origin();
        let mut tx = client.transaction().map_err(pg("begin"))?;
        tx.batch_execute("SET LOCAL synchronous_commit = on")
            .map_err(pg("begin"))?;
        // The sequencer lock: other replicas wait here until we commit or roll back.
        let current = read_row(&mut tx, key, true)?;
        let old_size = current.size();
        let base = tlog_tiles::stored_hash_count(old_size);

        let mut pending: Vec<Hash> = Vec::with_capacity(entries.len() * 2);
        let mut leaf_hashes = Vec::with_capacity(entries.len());
        let (checkpoint, new_size, proofs) = {
            for (k, e) in entries.iter().enumerate() {
                let leaf = tlog_tiles::record_hash(e);
                leaf_hashes.push(leaf);
                let reader = PgHashReader::new(&mut tx, origin, &pending, base, cache);
                let hashes = reader.run(|r| {
                    tlog_tiles::stored_hashes_for_record_hash(old_size + k as u64, leaf, r)
                })?;
                pending.extend(hashes);
            }
            let new_size = old_size + entries.len() as u64;
            let reader = PgHashReader::new(&mut tx, origin, &pending, base, cache);
            let root = reader.run(|r| tlog_tiles::tree_hash(new_size, r))?;
            let checkpoint = key.sign_checkpoint(new_size, root)?;
            let mut proofs = Vec::with_capacity(entries.len());
            for k in 0..entries.len() as u64 {
                let index = old_size + k;
                proofs.push(reader.run(|r| tlog_tiles::prove_record(new_size, index, r))?);
            }
            (checkpoint, new_size, proofs)
        };

        let entry_refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        tx.execute(
            "INSERT INTO twi_tlog_entries (origin, idx, entry) \
             SELECT $1, $2::BIGINT + o - 1, e FROM unnest($3::BYTEA[]) WITH ORDINALITY AS t(e, o)",
            &[&origin, &to_i64("tree size", old_size)?, &entry_refs],
        )
        .map_err(pg("insert entries"))?;
        let hash_refs: Vec<&[u8]> = pending.iter().map(|h| h.0.as_slice()).collect();
        tx.execute(
            "INSERT INTO twi_tlog_hashes (origin, idx, hash) \
             SELECT $1, $2::BIGINT + o - 1, h FROM unnest($3::BYTEA[]) WITH ORDINALITY AS t(h, o)",
            &[&origin, &to_i64("stored hash index", base)?, &hash_refs],
        )
        .map_err(pg("insert hashes"))?;
        tx.execute(
            "UPDATE twi_tlog_logs SET size = $2, checkpoint = $3 WHERE origin = $1",
            &[
                &origin,
                &to_i64("tree size", new_size)?,
                &checkpoint.as_bytes(),
            ],
        )
        .map_err(pg("update checkpoint"))?;
        tx.commit().map_err(pg("commit"))?;

        let appended = leaf_hashes
            .into_iter()
            .zip(proofs)
            .enumerate()
            .map(|(k, (leaf_hash, hashes))| {
                let index = old_size + k as u64;
                Appended {
                    index,
                    leaf_hash,
                    proof: InclusionProof {
                        index,
                        hashes,
                        checkpoint: checkpoint.clone(),
                        extra: None,
                    },
                }
            })
            .collect();
        Ok((appended, checkpoint, base, pending))
    }
}

impl LogBackend for PgLog {
    fn append_batch(&mut self, entries: &[Vec<u8>]) -> Result<Vec<Appended>, TlogError> {
        if entries.is_empty() {
            return Err(TlogError::EmptyBatch);
        }
        for (position, e) in entries.iter().enumerate() {
            if e.len() > MAX_ENTRY_SIZE {
                return Err(TlogError::EntrySize {
                    position,
                    len: e.len(),
                    max: MAX_ENTRY_SIZE,
                });
            }
        }
        let key = &self.key;
        let cache = &self.cache;
        let (appended, checkpoint, base, pending) = self
            .conn
            .run(|client| Self::write_batch(client, key, cache, entries))?;
        // Committed: this batch's hashes are now immutable too.
        let mut cache = self.cache.borrow_mut();
        if cache.len() + pending.len() > MAX_CACHED_HASHES {
            cache.clear();
        }
        cache.extend((base..).zip(pending));
        self.checkpoint = checkpoint;
        Ok(appended)
    }

    /// Re-reads the log's row (reconnecting if needed) and checks that the stored hashes lead to its
    /// checkpoint's root.
    fn recover(&mut self) -> Result<(), TlogError> {
        let key = &self.key;
        let cache = &self.cache;
        let verified = self.conn.run(|client| {
            let verified = read_row(client, key, false)?;
            let reader = PgHashReader::new(client, key.origin(), &[], 0, cache);
            let root = reader.run(|r| tlog_tiles::tree_hash(verified.size(), r))?;
            if root != verified.root() {
                return Err(TlogError::corrupt(
                    "tree root",
                    root,
                    format!(
                        "{} (checkpoint of size {})",
                        verified.root(),
                        verified.size()
                    ),
                ));
            }
            Ok(verified)
        })?;
        self.checkpoint = verified.checkpoint().clone();
        Ok(())
    }

    fn size(&self) -> u64 {
        self.checkpoint.size()
    }

    fn checkpoint(&self) -> SignedCheckpoint {
        self.checkpoint.clone()
    }

    fn kind(&self) -> &'static str {
        "postgresql"
    }
}

/// Read-only access to a log in PostgreSQL, for the tile server of any replica and for auditors.
/// Like the file [`super::LogReader`] it reads the checkpoint first and never looks past its size.
pub struct PgLogReader {
    conn: Mutex<Conn>,
    origin: String,
    description: String,
}

impl std::fmt::Debug for PgLogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLogReader")
            .field("database", &self.description)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl PgLogReader {
    /// Connects and checks that the database holds the log of `origin`.
    ///
    /// # Errors
    /// [`TlogError::Database`] for a bad conninfo or when there is no such log (naming the origins
    /// there are), [`TlogError::Postgres`] if the database cannot be reached.
    pub fn open(conninfo: &str, origin: &str) -> Result<Self, TlogError> {
        let config = parse_config(conninfo)?;
        let description = describe_config(&config);
        let reader = Self {
            conn: Mutex::new(Conn {
                config,
                client: None,
            }),
            origin: origin.to_owned(),
            description,
        };
        let found = reader.with_client(|client| {
            let exists = client
                .query_one("SELECT to_regclass('twi_tlog_logs') IS NOT NULL", &[])
                .and_then(|r| r.try_get::<_, bool>(0))
                .map_err(pg("read log row"))?;
            if !exists {
                return Ok(Err(Vec::new()));
            }
            let rows = client
                .query("SELECT origin FROM twi_tlog_logs ORDER BY origin", &[])
                .map_err(pg("read log row"))?;
            let origins = rows
                .iter()
                .map(|r| r.try_get::<_, String>(0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(pg("read log row"))?;
            Ok(if origins.iter().any(|o| o == origin) {
                Ok(())
            } else {
                Err(origins)
            })
        })?;
        if let Err(origins) = found {
            return Err(TlogError::Database {
                reason: format!(
                    "no log with origin {origin:?} in {} (logs there: {origins:?})",
                    reader.description
                ),
            });
        }
        Ok(reader)
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Runs a read on a live connection, retried once on a fresh one when the connection broke under
    /// it (a restart or failover between two requests).
    fn with_client<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, TlogError>,
    ) -> Result<T, TlogError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let had_client = conn.client.is_some();
        match conn.run(&mut f) {
            Err(TlogError::Postgres { .. }) if had_client && conn.client.is_none() => conn.run(f),
            other => other,
        }
    }

    /// The latest committed checkpoint (not verified here: clients verify it with the log's key).
    ///
    /// # Errors
    /// Database or parse errors.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint, TlogError> {
        let note: Vec<u8> = self.with_client(|client| {
            client
                .query_opt(
                    "SELECT checkpoint FROM twi_tlog_logs WHERE origin = $1",
                    &[&self.origin],
                )
                .map_err(pg("read checkpoint"))?
                .ok_or_else(|| TlogError::Database {
                    reason: format!("the log with origin {:?} is gone", self.origin),
                })?
                .try_get(0)
                .map_err(pg("read checkpoint"))
        })?;
        let checkpoint = SignedCheckpoint::parse(&note)?;
        if checkpoint.origin() != self.origin {
            return Err(TlogError::OriginMismatch {
                got: checkpoint.origin().to_owned(),
                want: self.origin.clone(),
            });
        }
        Ok(checkpoint)
    }

    /// The bytes of `tile` if the tree of `tree_size` (a committed checkpoint's size) contains it:
    /// the same bytes a file log serves for the same entries.
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`], database errors, [`TlogError::Corrupt`] if rows are missing.
    pub fn tile(&self, tile: TileId, tree_size: u64) -> Result<Vec<u8>, TlogError> {
        match tile.required_tree_size() {
            Some(needed) if needed <= tree_size => {}
            _ => {
                return Err(TlogError::OutOfRange {
                    what: "tile",
                    got: tile.path(),
                    size: tree_size,
                })
            }
        }
        match tile.kind() {
            TileKind::Hashes { .. } => {
                let go_tile = tile.to_go_tile()?;
                let cache = RefCell::new(HashMap::new());
                self.with_client(|client| {
                    PgHashReader::new(client, &self.origin, &[], 0, &cache)
                        .run(|r| go_tile.read_data(r))
                })
            }
            TileKind::Entries => {
                let first = tile.index().saturating_mul(u64::from(TILE_WIDTH));
                let count = u64::from(tile.width());
                let entries = self.entries(first, count)?;
                let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
                for e in entries {
                    let len = u16::try_from(e.len())
                        .map_err(|_| TlogError::corrupt("entry length", e.len(), MAX_ENTRY_SIZE))?;
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(&e);
                }
                Ok(out)
            }
        }
    }

    /// Entries `first..first + count`, all of which must exist.
    fn entries(&self, first: u64, count: u64) -> Result<Vec<Vec<u8>>, TlogError> {
        let lo = to_i64("index", first)?;
        let hi = to_i64("index", first.saturating_add(count))?;
        let rows = self.with_client(|client| {
            client
                .query(
                    "SELECT idx, entry FROM twi_tlog_entries \
                     WHERE origin = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
                    &[&self.origin, &lo, &hi],
                )
                .map_err(pg("read entries"))
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (want, row) in (lo..).zip(&rows) {
            let idx: i64 = row.try_get(0).map_err(pg("read entries"))?;
            if idx != want {
                return Err(TlogError::corrupt(
                    "twi_tlog_entries",
                    format!("entry {idx}"),
                    format!("entry {want}"),
                ));
            }
            out.push(row.try_get(1).map_err(pg("read entries"))?);
        }
        if out.len() as u64 != count {
            return Err(TlogError::corrupt(
                "twi_tlog_entries",
                format!("{} entries from {first}", out.len()),
                format!("{count} entries"),
            ));
        }
        Ok(out)
    }

    /// Entry `index` of the tree of `tree_size`.
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] or database errors.
    pub fn entry(&self, index: u64, tree_size: u64) -> Result<Vec<u8>, TlogError> {
        TlogError::check_index(index, tree_size)?;
        self.entries(index, 1)?
            .pop()
            .ok_or_else(|| TlogError::corrupt("twi_tlog_entries", "none", index))
    }

    /// Audit path of `index` in the tree of `tree_size` (at most the committed size).
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] or database errors.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, TlogError> {
        self.check_published(tree_size)?;
        TlogError::check_index(index, tree_size)?;
        let cache = RefCell::new(HashMap::new());
        self.with_client(|client| {
            PgHashReader::new(client, &self.origin, &[], 0, &cache)
                .run(|r| tlog_tiles::prove_record(tree_size, index, r))
        })
    }

    /// Consistency proof between two committed tree sizes.
    ///
    /// # Errors
    /// [`TlogError::OutOfRange`] or database errors.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, TlogError> {
        self.check_published(new_size)?;
        TlogError::check_tree_size(old_size, new_size)?;
        if old_size == 0 {
            return Ok(Vec::new());
        }
        let cache = RefCell::new(HashMap::new());
        self.with_client(|client| {
            PgHashReader::new(client, &self.origin, &[], 0, &cache)
                .run(|r| tlog_tiles::prove_tree(new_size, old_size, r))
        })
    }

    fn check_published(&self, tree_size: u64) -> Result<(), TlogError> {
        let published = self.checkpoint()?.size();
        TlogError::check_tree_size(tree_size, published)?;
        Ok(())
    }
}

impl TileSource for PgLogReader {
    fn checkpoint(&self) -> Result<SignedCheckpoint, TlogError> {
        PgLogReader::checkpoint(self)
    }

    fn tile(&self, tile: TileId, tree_size: u64) -> Result<Vec<u8>, TlogError> {
        PgLogReader::tile(self, tile, tree_size)
    }

    fn describe(&self) -> String {
        format!("{} origin {}", self.description, self.origin)
    }
}

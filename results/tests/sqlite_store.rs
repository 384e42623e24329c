#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{agent, exercise, sample_jws, sample_meta};
use twi_results::{open, ResultStore, SqliteStore, StoreError};

#[test]
fn sqlite_store_behaves() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/results.db", dir.path().display());
    let store = open(&url).unwrap();
    exercise(store.as_ref());
}

#[test]
fn sqlite_persists_across_reopen_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let a = agent(7);
    let id = {
        let s = SqliteStore::open(&path).unwrap();
        s.put(&a, &sample_jws(&a, 1, 100), &sample_meta(1)).unwrap()
    };
    let s = SqliteStore::open(&path).unwrap();
    let r = s.latest(&a).unwrap().unwrap();
    assert_eq!(
        (r.id, r.ear_jws.as_str()),
        (id, sample_jws(&a, 1, 100).as_str())
    );

    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn sqlite_reports_a_damaged_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let a = agent(3);
    let s = SqliteStore::open(&path).unwrap();
    let id = s.put(&a, &sample_jws(&a, 1, 100), &sample_meta(1)).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE attestation_results SET ear_jws = ear_jws || 'X' WHERE id = ?1",
            [id],
        )
        .unwrap();
    let e = s.latest(&a).unwrap_err();
    assert!(
        matches!(&e, StoreError::Corrupt { id: got, .. } if *got == id),
        "{e}"
    );
    assert!(s.history(&a, 5).is_err());
}

#[test]
fn sqlite_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 9)
        .unwrap();
    let e = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Schema {
                found: 9,
                supported: 1
            }
        ),
        "{e}"
    );
}

#[test]
fn open_picks_the_backend_by_scheme() {
    for bad in ["mysql://h/db", "/var/lib/results.db", "sqlite://", ""] {
        let e = open(bad).err().unwrap();
        assert!(matches!(e, StoreError::Url { .. }), "{bad}: {e}");
    }
    // A password in a URL of an unknown scheme is never echoed.
    let e = open("mysql://u:hunter2@h/db").err().unwrap();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    // postgres URL and conninfo go to PostgreSQL: a server that does not exist fails to connect.
    for pg in [
        "postgresql://u:hunter2@%2Fnonexistent-twi/db",
        "host=/nonexistent-twi port=1 user=u password=hunter2",
    ] {
        let e = open(pg).err().unwrap();
        assert!(matches!(e, StoreError::Postgres { .. }), "{pg}: {e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}

//! The transparency log in PostgreSQL (HA), against a real server started by scripts/postgres.sh (a
//! missing PostgreSQL fails these tests: they never skip): appends prove and read back; the tiles and
//! checkpoint it serves are byte for byte those of a file log holding the same entries; two replicas
//! appending concurrently build one tree; a log of another key is refused; while PostgreSQL is down
//! appends fail and no checkpoint advances, and once it is back they work again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::leaf;
use rand_core::OsRng;
use twi_credential_composer::tlog::{
    check_consistency, check_inclusion, spawn_server_for, tiles_for_tree_size, Appended, Log,
    LogBackend, LogKey, LogReader, PgLog, PgLogReader, Sequencer, SequencerConfig, TlogError,
};
use twi_results::testing::PgServer;

const ORIGIN: &str = "example.org/twi/cprov";

/// A log key saved to a file, as every replica is configured with the same key file.
fn key_file(dir: &Path, origin: &str) -> PathBuf {
    let path = dir.join(format!("{}.key", origin.replace('/', "_")));
    LogKey::generate(origin, &mut OsRng)
        .unwrap()
        .save_new(&path)
        .unwrap();
    path
}

/// Distinct entries of various lengths (1 to 300 bytes).
fn entry(tag: &str, i: u64) -> Vec<u8> {
    let base = format!("{tag}/{i}/");
    base.bytes()
        .cycle()
        .take(1 + (i as usize * 37) % 300)
        .collect()
}

fn get(url: &str) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let response = agent.get(url).call().unwrap();
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .with_config()
        .limit(20_000_000)
        .read_to_vec()
        .unwrap();
    (status, body)
}

#[test]
fn appends_prove_read_back_and_serve_the_same_bytes_as_a_file_log() {
    let pg = PgServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key_path = key_file(tmp.path(), ORIGIN);
    let mut pg_log = PgLog::open(&pg.conninfo, LogKey::load(&key_path).unwrap()).unwrap();
    let mut file_log =
        Log::create(&tmp.path().join("log"), LogKey::load(&key_path).unwrap()).unwrap();
    assert_eq!(LogBackend::size(&pg_log), 0);
    assert_eq!(
        LogBackend::checkpoint(&pg_log).as_bytes(),
        file_log.checkpoint().as_bytes()
    );
    let verifier = LogKey::load(&key_path).unwrap().verifier();

    // Batches of assorted sizes: 2 full level-0 tiles and a partial one, a partial level-1 tile.
    let batches = [1u64, 2, 255, 1, 300, 7, 1];
    let mut all = Vec::new();
    for (b, &n) in batches.iter().enumerate() {
        let entries: Vec<Vec<u8>> = (0..n)
            .map(|i| entry(&format!("b{b}"), all.len() as u64 + i))
            .collect();
        let from_pg = LogBackend::append_batch(&mut pg_log, &entries).unwrap();
        let from_file = file_log.append_batch(&entries).unwrap();
        // Same entries, same key: the same tree, the same (deterministically signed) checkpoint, the
        // same proofs.
        assert_eq!(from_pg, from_file);
        for (k, (a, e)) in from_pg.iter().zip(&entries).enumerate() {
            assert_eq!(a.index, all.len() as u64 + k as u64);
            assert_eq!(a.leaf_hash, leaf(e));
            let v = verifier.verify_inclusion(e, &a.proof).unwrap();
            assert_eq!(v.checkpoint().size(), all.len() as u64 + n);
        }
        all.extend(entries);
    }
    let size = all.len() as u64;
    assert_eq!(LogBackend::size(&pg_log), size);

    // A reopened handle finds the same log.
    drop(pg_log);
    let reopened = PgLog::open(&pg.conninfo, LogKey::load(&key_path).unwrap()).unwrap();
    assert_eq!(LogBackend::size(&reopened), size);

    let pg_reader = PgLogReader::open(&pg.conninfo, ORIGIN).unwrap();
    let file_reader = LogReader::open(&tmp.path().join("log")).unwrap();
    let cp = pg_reader.checkpoint().unwrap();
    assert_eq!(cp.as_bytes(), file_reader.checkpoint().unwrap().as_bytes());
    verifier.verify_checkpoint(cp.as_bytes()).unwrap();
    let tiles = tiles_for_tree_size(size);
    assert!(tiles.len() > 5, "{tiles:?}");
    for t in &tiles {
        assert_eq!(
            pg_reader.tile(*t, size).unwrap(),
            file_reader.tile(*t, size).unwrap(),
            "{}",
            t.path()
        );
    }
    for (i, e) in all.iter().enumerate() {
        assert_eq!(&pg_reader.entry(i as u64, size).unwrap(), e);
    }
    for (old, new) in [(1, size), (256, 513), (300, size), (size, size)] {
        assert_eq!(
            pg_reader.consistency_proof(old, new).unwrap(),
            file_reader.consistency_proof(old, new).unwrap()
        );
        assert_eq!(
            pg_reader.inclusion_proof(old - 1, new).unwrap(),
            file_reader.inclusion_proof(old - 1, new).unwrap()
        );
    }
    // A tile of the next tree, not of this one.
    let beyond = *tiles_for_tree_size(size + 1)
        .iter()
        .find(|t| !tiles.contains(t))
        .unwrap();
    assert!(matches!(
        pg_reader.tile(beyond, size),
        Err(TlogError::OutOfRange { .. })
    ));
    assert!(matches!(
        pg_reader.consistency_proof(1, size + 1),
        Err(TlogError::OutOfRange { .. })
    ));

    // Over HTTP: the same URLs and bytes as the directory's server.
    let server =
        spawn_server_for(Arc::new(pg_reader), SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let base = server.url();
    let (status, body) = get(&format!("{base}checkpoint"));
    assert_eq!(status, 200);
    assert_eq!(body, cp.as_bytes());
    for t in &tiles {
        let (status, body) = get(&format!("{base}{}", t.path()));
        assert_eq!(status, 200, "{}", t.path());
        assert_eq!(body, file_reader.tile(*t, size).unwrap(), "{}", t.path());
    }
    let (status, _) = get(&format!("{base}{}", beyond.path()));
    assert_eq!(status, 404);
    server.shutdown().unwrap();
}

#[test]
fn two_replicas_appending_concurrently_build_one_tree() {
    const THREADS: u64 = 3;
    const PER_THREAD: u64 = 40;
    let pg = PgServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key_path = key_file(tmp.path(), ORIGIN);
    let verifier = LogKey::load(&key_path).unwrap().verifier();
    let config = SequencerConfig {
        max_batch: 8,
        ..SequencerConfig::default()
    };
    // Two replicas: each its own connection and sequencer, the same key file and database.
    let replicas: Vec<Arc<Sequencer>> = (0..2)
        .map(|_| {
            let log = PgLog::open(&pg.conninfo, LogKey::load(&key_path).unwrap()).unwrap();
            Arc::new(Sequencer::start_backend(Box::new(log), config.clone()).unwrap())
        })
        .collect();

    let acknowledged: Vec<(Vec<u8>, Appended)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .flat_map(|r| (0..THREADS).map(move |t| (r, t)))
            .map(|(r, t)| {
                let seq = Arc::clone(&replicas[r]);
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            let e = entry(&format!("replica{r}/thread{t}"), i);
                            let a = seq.append_blocking(e.clone()).unwrap();
                            (e, a)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let total = 2 * THREADS * PER_THREAD;
    assert_eq!(acknowledged.len() as u64, total);

    let reader = PgLogReader::open(&pg.conninfo, ORIGIN).unwrap();
    let final_cp = verifier
        .verify_checkpoint(reader.checkpoint().unwrap().as_bytes())
        .unwrap();
    assert_eq!(final_cp.size(), total, "final size = acknowledged count");

    let mut indexes = HashSet::new();
    // Every checkpoint any replica published, by size: one root per size (one tree).
    let mut checkpoints = BTreeMap::new();
    for (e, a) in &acknowledged {
        assert!(indexes.insert(a.index), "index {} given twice", a.index);
        let v = verifier.verify_inclusion(e, &a.proof).unwrap();
        check_inclusion(
            leaf(e),
            a.index,
            v.checkpoint().size(),
            v.checkpoint().root(),
            &a.proof.hashes,
        )
        .unwrap();
        assert_eq!(
            &reader.entry(a.index, total).unwrap(),
            e,
            "entry {}",
            a.index
        );
        let root = v.checkpoint().root();
        assert_eq!(
            *checkpoints.entry(v.checkpoint().size()).or_insert(root),
            root,
            "two roots for size {}",
            v.checkpoint().size()
        );
    }
    checkpoints.insert(final_cp.size(), final_cp.root());
    assert!(checkpoints.len() > 2, "{}", checkpoints.len());
    let sizes: Vec<(u64, _)> = checkpoints.into_iter().collect();
    for w in sizes.windows(2) {
        let ((old, old_root), (new, new_root)) = (w[0], w[1]);
        let proof = reader.consistency_proof(old, new).unwrap();
        check_consistency(old, old_root, new, new_root, &proof).unwrap();
    }
    // Both replicas appended (each saw the other's batches in the database).
    for seq in &replicas {
        let log = seq.shutdown_backend().unwrap();
        assert!(log.size() > 0 && log.size() <= total);
    }
}

#[test]
fn a_log_of_another_key_or_origin_is_refused() {
    let pg = PgServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key_path = key_file(tmp.path(), ORIGIN);
    let mut log = PgLog::open(&pg.conninfo, LogKey::load(&key_path).unwrap()).unwrap();
    LogBackend::append_batch(&mut log, &[b"first".to_vec()]).unwrap();

    // Same origin, another key: a replica with the wrong key file must not sign this log.
    let other_key = tmp.path().join("other");
    std::fs::create_dir(&other_key).unwrap();
    let wrong = LogKey::load(&key_file(&other_key, ORIGIN)).unwrap();
    let wrong_vkey = wrong.vkey().to_owned();
    let err = PgLog::open(&pg.conninfo, wrong).unwrap_err();
    match &err {
        TlogError::LogMismatch { what, got, want } => {
            assert_eq!(*what, "log key");
            assert_eq!(got, LogKey::load(&key_path).unwrap().vkey());
            assert_eq!(want, &wrong_vkey);
        }
        other => panic!("{other:?}"),
    }

    // A reader for an origin the database has no log of is refused, naming the logs there are.
    let err = PgLogReader::open(&pg.conninfo, "example.org/other").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TlogError::Database { .. }), "{err:?}");
    assert!(
        msg.contains("example.org/other") && msg.contains(ORIGIN),
        "{msg}"
    );

    // Another origin is another log in the same database, independent of the first.
    let mut second = PgLog::open(
        &pg.conninfo,
        LogKey::load(&key_file(tmp.path(), "example.org/second")).unwrap(),
    )
    .unwrap();
    assert_eq!(LogBackend::size(&second), 0);
    LogBackend::append_batch(&mut second, &[b"a".to_vec(), b"b".to_vec()]).unwrap();
    let first = PgLogReader::open(&pg.conninfo, ORIGIN).unwrap();
    assert_eq!(first.checkpoint().unwrap().size(), 1);
    assert_eq!(first.entry(0, 1).unwrap(), b"first");
    let second_reader = PgLogReader::open(&pg.conninfo, "example.org/second").unwrap();
    assert_eq!(second_reader.checkpoint().unwrap().size(), 2);

    // Not a conninfo at all.
    assert!(matches!(
        PgLog::open(
            "definitely not a conninfo",
            LogKey::load(&key_path).unwrap()
        ),
        Err(TlogError::Database { .. })
    ));
}

#[test]
fn appends_fail_closed_while_postgres_is_down_and_resume_after() {
    let pg = PgServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key_path = key_file(tmp.path(), ORIGIN);
    let verifier = LogKey::load(&key_path).unwrap().verifier();
    // Trust auth ignores the password; it is here to show no error repeats it.
    let conninfo = format!("{} password=s3cret-pw", pg.conninfo);
    let log = PgLog::open(&conninfo, LogKey::load(&key_path).unwrap()).unwrap();
    let seq = Sequencer::start_backend(Box::new(log), SequencerConfig::default()).unwrap();
    for i in 0..3u64 {
        assert_eq!(seq.append_blocking(entry("before", i)).unwrap().index, i);
    }
    let reader = PgLogReader::open(&conninfo, ORIGIN).unwrap();
    let before = reader.checkpoint().unwrap();
    assert_eq!(before.size(), 3);

    pg.stop().unwrap();
    for i in 0..2u64 {
        let err = seq.append_blocking(entry("down", i)).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, TlogError::Batch(inner) if matches!(**inner, TlogError::Postgres { .. })),
            "{err:?}"
        );
        assert!(msg.contains("postgresql log"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
        assert!(!format!("{err:?}").contains("s3cret"));
    }
    assert!(reader.checkpoint().is_err(), "the database is down");

    pg.restart().unwrap();
    // No checkpoint advanced while it was down.
    assert_eq!(reader.checkpoint().unwrap().as_bytes(), before.as_bytes());
    let a = seq.append_blocking(entry("after", 0)).unwrap();
    assert_eq!(a.index, 3, "the failed appends took no index");
    verifier
        .verify_inclusion(&entry("after", 0), &a.proof)
        .unwrap();
    let after = verifier
        .verify_checkpoint(reader.checkpoint().unwrap().as_bytes())
        .unwrap();
    assert_eq!(after.size(), 4);
    let proof = reader.consistency_proof(3, 4).unwrap();
    check_consistency(3, before.root(), 4, after.root(), &proof).unwrap();
    assert_eq!(reader.entry(3, 4).unwrap(), entry("after", 0));
    assert!(matches!(
        seq.shutdown(),
        Err(TlogError::WrongBackend {
            want: "directory",
            got: "postgresql"
        })
    ));
}

//! Crash safety of the SQLite store: a child process puts results as fast as it can and prints each id
//! once `put` has returned; we SIGKILL it mid-burst, reopen, and check that every acknowledged result
//! is there and complete (and that no other row is partial).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent, sample_jws, sample_meta};
use twi_results::{ResultStore, SqliteStore};

const DB_ENV: &str = "TWI_RESULTS_CRASH_DB";
const START_ENV: &str = "TWI_RESULTS_CRASH_START";

/// The child's body; run only by `sqlite_survives_kill_9` (ignored otherwise).
#[test]
#[ignore = "child process of sqlite_survives_kill_9"]
fn crash_child() {
    let (Ok(db), Ok(start)) = (std::env::var(DB_ENV), std::env::var(START_ENV)) else {
        return;
    };
    let start: u64 = start.parse().unwrap();
    let store = SqliteStore::open(std::path::Path::new(&db)).unwrap();
    let mut out = std::io::stdout().lock();
    for i in start.. {
        let a = agent((i % 7) as u32);
        // 1 to 9 KiB: some results span several pages.
        let len = 1024 * (1 + (i % 9) as usize);
        let id = store
            .put(&a, &sample_jws(&a, i, len), &sample_meta(i))
            .unwrap();
        writeln!(out, "ack {id} {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sqlite_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut acked: Vec<(i64, u64)> = Vec::new();
    let mut next = 0u64;
    // Kill after a varying number of acknowledgements, three times on the same database.
    for (round, kill_after) in [37usize, 150, 311].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DB_ENV, &db)
            .env(START_ENV, next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut this_round = 0;
        while this_round < kill_after {
            assert!(Instant::now() < deadline, "round {round}: child too slow");
            let line = lines.next().expect("child ended early").unwrap();
            let Some(rest) = line.strip_prefix("ack ") else {
                continue;
            };
            let (id, i) = rest.split_once(' ').unwrap();
            acked.push((id.parse().unwrap(), i.parse().unwrap()));
            this_round += 1;
        }
        // SIGKILL while the child is in the middle of its next puts.
        child.kill().unwrap();
        child.wait().unwrap();
        // Anything it acknowledged before dying also counts.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ack ") {
                let (id, i) = rest.split_once(' ').unwrap();
                acked.push((id.parse().unwrap(), i.parse().unwrap()));
            }
        }
        next = acked.iter().map(|(_, i)| i + 1).max().unwrap() + 10_000;

        let store = SqliteStore::open(&db).unwrap();
        let integrity: String = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "round {round}");
        let mut total = 0;
        for n in 0..7u32 {
            let a = agent(n);
            // history() checks every row's digest: a partial row would fail here.
            let rows = store.history(&a, 10_000).unwrap();
            total += rows.len();
            for (id, i) in acked.iter().filter(|(_, i)| (i % 7) as u32 == n) {
                let r = rows
                    .iter()
                    .find(|r| r.id == *id)
                    .unwrap_or_else(|| panic!("round {round}: acknowledged result {id} lost"));
                let len = 1024 * (1 + (i % 9) as usize);
                assert_eq!(r.ear_jws, sample_jws(&a, *i, len));
                assert_eq!(r.meta, sample_meta(*i));
            }
        }
        // Every acknowledged put is there. Puts that committed but whose acknowledgement the kill cut off
        // (still in the child's pipe or not yet written) may add rows; they are whole rows (checked above
        // by history's digest check), never partial ones.
        assert!(
            total >= acked.len(),
            "round {round}: {total} rows for {} acknowledgements",
            acked.len()
        );
    }
}

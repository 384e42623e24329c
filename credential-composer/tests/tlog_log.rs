//! The durable log: its trees and proofs against an independent RFC 6962 implementation for many sizes,
//! reopening, locking, and crash recovery (torn tails, unpublished batches, lost derived files, damaged
//! acknowledged data, and a real kill -9 of a process appending through the sequencer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{BufRead as _, Write as _};
use std::path::Path;

use common::{consistency, entry, leaf, log_with, mth, new_key, path};
use twi_credential_composer::tlog::{
    check_consistency, check_inclusion, InclusionProof, Log, LogKey, LogReader, Sequencer,
    SequencerConfig, TlogError,
};

#[test]
fn every_root_and_proof_matches_rfc6962_for_sizes_up_to_140() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key("example.org/sizes");
    let verifier = key.verifier();
    let mut log = Log::create(dir.path(), key).unwrap();
    let mut leaves = Vec::new();
    let mut n = 0u64;
    let mut batch = 1usize;
    // Batches of 1, 2, 3, ... entries, so batch boundaries fall everywhere.
    while n < 140 {
        let entries: Vec<Vec<u8>> = (n..n + batch as u64).map(entry).collect();
        let appended = log.append_batch(&entries).unwrap();
        for (k, a) in appended.iter().enumerate() {
            assert_eq!(a.index, n + k as u64);
            assert_eq!(a.leaf_hash, leaf(&entries[k]));
            // Each returned proof is for the new checkpoint and verifies with the published key.
            assert_eq!(a.proof.tree_size(), n + batch as u64);
            verifier.verify_inclusion(&entries[k], &a.proof).unwrap();
        }
        leaves.extend(entries.iter().map(|e| leaf(e)));
        n += batch as u64;
        batch += 1;
        assert_eq!(log.checkpoint().root(), mth(&leaves), "size {n}");
    }
    let n = n as usize;
    for size in 1..=n {
        for i in 0..size {
            assert_eq!(
                log.inclusion_proof(i as u64, size as u64).unwrap(),
                path(i, &leaves[..size]),
                "inclusion {i} in {size}"
            );
        }
        for old in 0..=size {
            let proof = log.consistency_proof(old as u64, size as u64).unwrap();
            assert_eq!(proof, consistency(old, &leaves[..size]), "{old} -> {size}");
            check_consistency(
                old as u64,
                mth(&leaves[..old]),
                size as u64,
                mth(&leaves[..size]),
                &proof,
            )
            .unwrap();
        }
    }
    log.verify_storage().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    assert_eq!(reader.verify(&verifier).unwrap().size(), n as u64);
}

#[test]
fn large_tree_spot_checks() {
    let (_dir, log) = log_with(5_000, 700);
    let leaves: Vec<_> = (0..5_000).map(|i| leaf(&entry(i))).collect();
    assert_eq!(log.checkpoint().root(), mth(&leaves));
    for (i, size) in [
        (0, 5_000),
        (4_999, 5_000),
        (1_023, 1_024),
        (1_024, 4_097),
        (2_500, 3_333),
    ] {
        assert_eq!(
            log.inclusion_proof(i, size).unwrap(),
            path(i as usize, &leaves[..size as usize])
        );
    }
    for (old, new) in [(1, 5_000), (1_024, 5_000), (4_097, 4_999), (3, 7)] {
        assert_eq!(
            log.consistency_proof(old, new).unwrap(),
            consistency(old as usize, &leaves[..new as usize])
        );
    }
    for i in [0, 1, 255, 256, 4_999] {
        assert_eq!(log.entry(i).unwrap(), entry(i));
    }
    assert!(matches!(
        log.entry(5_000),
        Err(TlogError::OutOfRange { .. })
    ));
    assert!(matches!(
        log.inclusion_proof(0, 5_001),
        Err(TlogError::OutOfRange { .. })
    ));
}

#[test]
fn batch_validation_writes_nothing() {
    let (_dir, mut log) = log_with(3, 3);
    let root = log.checkpoint().root();
    let too_big = vec![0u8; 65_536];
    let err = log.append_batch(&[b"fine".to_vec(), too_big]).unwrap_err();
    assert!(
        matches!(
            err,
            TlogError::EntrySize {
                position: 1,
                len: 65_536,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        log.append_batch::<Vec<u8>>(&[]),
        Err(TlogError::EmptyBatch)
    ));
    assert_eq!((log.size(), log.checkpoint().root()), (3, root));
    // The largest and the empty entry are fine.
    let a = log.append_batch(&[vec![7u8; 65_535], Vec::new()]).unwrap();
    assert_eq!((a[0].index, a[1].index), (3, 4));
    assert_eq!(log.entry(3).unwrap().len(), 65_535);
    assert!(log.entry(4).unwrap().is_empty());
    log.verify_storage().unwrap();
}

#[test]
fn reopen_continues_the_same_log_and_refuses_other_keys_and_second_writers() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("log.key");
    let key = new_key("example.org/reopen");
    key.save_new(&key_path).unwrap();
    let log_dir = dir.path().join("log");
    let mut log = Log::create(&log_dir, key).unwrap();
    log.append_batch(&[b"a".to_vec(), b"b".to_vec()]).unwrap();
    let first = log.checkpoint().clone();

    // A second writer on the same directory, even in this process, is refused.
    let err = Log::open(&log_dir, LogKey::load(&key_path).unwrap()).unwrap_err();
    assert!(matches!(err, TlogError::Locked { .. }), "{err}");
    assert!(matches!(
        Log::create(&log_dir, LogKey::load(&key_path).unwrap()),
        Err(TlogError::Locked { .. })
    ));
    drop(log);
    assert!(matches!(
        Log::create(&log_dir, LogKey::load(&key_path).unwrap()),
        Err(TlogError::Directory { .. })
    ));

    // Another key cannot open it: its checkpoint is not signed by that key.
    let err = Log::open(&log_dir, new_key("example.org/reopen")).unwrap_err();
    assert!(matches!(err, TlogError::Signature { .. }), "{err}");

    let mut log = Log::open(&log_dir, LogKey::load(&key_path).unwrap()).unwrap();
    assert_eq!(log.checkpoint(), &first);
    let a = log.append_batch(&[b"c".to_vec()]).unwrap();
    assert_eq!(a[0].index, 2);
    let leaves: Vec<_> = [b"a", b"b", b"c"].iter().map(|e| leaf(*e)).collect();
    assert_eq!(log.checkpoint().root(), mth(&leaves));
    let proof = log.consistency_proof(2, 3).unwrap();
    check_consistency(2, first.root(), 3, log.checkpoint().root(), &proof).unwrap();
    assert!(matches!(
        Log::open(
            &dir.path().join("nothing"),
            LogKey::load(&key_path).unwrap()
        ),
        Err(TlogError::Directory { .. })
    ));
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Reopens the log in `dir` and checks it holds exactly entries 0..n and verifies fully.
fn assert_holds(dir: &Path, key: &str, n: u64) -> Log {
    let log = Log::open(dir, LogKey::from_skey(key).unwrap()).unwrap();
    assert_eq!(log.size(), n);
    log.verify_storage().unwrap();
    let leaves: Vec<_> = (0..n).map(|i| leaf(&entry(i))).collect();
    assert_eq!(log.checkpoint().root(), mth(&leaves));
    for i in (0..n).step_by(37).chain(n.checked_sub(1)) {
        assert_eq!(log.entry(i).unwrap(), entry(i));
    }
    log
}

fn skey(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log.key")).unwrap()
}

/// A log with entries 0..n, its key saved beside it (dir/log.key), data in dir/log: the first half
/// compacted (data files fsynced, journal restarted there), the rest only in the journal's records.
fn saved_log(n: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    saved_log_compacted_at(n, n / 2)
}

fn saved_log_compacted_at(n: u64, at: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key("example.org/crash");
    key.save_new(&dir.path().join("log.key")).unwrap();
    let log_dir = dir.path().join("log");
    let mut log = Log::create(&log_dir, key).unwrap();
    let entries: Vec<Vec<u8>> = (0..n).map(entry).collect();
    let (first, second) = entries.split_at(at as usize);
    for chunk in first.chunks(50) {
        log.append_batch(chunk).unwrap();
    }
    log.compact().unwrap();
    for chunk in second.chunks(50) {
        log.append_batch(chunk).unwrap();
    }
    (dir, log_dir)
}

#[test]
fn torn_tail_of_an_unacknowledged_batch_is_dropped() {
    let (dir, log_dir) = saved_log(300);
    let key = skey(dir.path());
    // A crash half-way through writing the next batch: part of an entry, part of an index record, part
    // of a hash, no new checkpoint.
    append_bytes(&log_dir.join("entries"), &[0, 40, 1, 2, 3]);
    append_bytes(&log_dir.join("entries.idx"), &[0, 0, 0]);
    append_bytes(&log_dir.join("hashes"), &[9; 45]);
    std::fs::write(log_dir.join("checkpoint.tmp"), b"half a checkpoint").unwrap();
    let mut log = assert_holds(&log_dir, &key, 300);
    // Appending continues at 300 and the leftover temp file does not matter.
    let a = log.append_batch(&[entry(300)]).unwrap();
    assert_eq!(a[0].index, 300);
    drop(log);
    assert_holds(&log_dir, &key, 301);
}

#[test]
fn fully_written_batch_whose_journal_record_is_torn_is_dropped() {
    let (dir, log_dir) = saved_log(200);
    let key = skey(dir.path());
    let old_checkpoint = std::fs::read(log_dir.join("checkpoint")).unwrap();
    let journal = log_dir.join("journal");
    let journal_before = file_len(&journal);
    {
        let mut log = Log::open(&log_dir, LogKey::from_skey(&key).unwrap()).unwrap();
        // Open compacted: the journal is a base record only, whatever it held before.
        assert!(file_len(&journal) < journal_before);
        let journal_before = file_len(&journal);
        let more: Vec<Vec<u8>> = (0..77)
            .map(|i| format!("never acknowledged {i}").into_bytes())
            .collect();
        log.append_batch(&more).unwrap();
        // The crash came during the journal's fdatasync: its record is cut short (all but its
        // last 7 bytes made it), and the new checkpoint was never published.
        set_len(&journal, file_len(&journal) - 7);
        assert!(file_len(&journal) > journal_before);
    }
    std::fs::write(log_dir.join("checkpoint"), &old_checkpoint).unwrap();
    let mut log = assert_holds(&log_dir, &key, 200);
    assert_eq!(
        std::fs::read(log_dir.join("checkpoint")).unwrap(),
        old_checkpoint
    );
    let verifier = log.key().verifier();
    let old = verifier.verify_checkpoint(&old_checkpoint).unwrap();
    let a = log.append_batch(&[entry(200), entry(201)]).unwrap();
    assert_eq!(a[0].index, 200);
    let new = verifier
        .verify_checkpoint(log.checkpoint().as_bytes())
        .unwrap();
    let proof = log.consistency_proof(200, 202).unwrap();
    verifier.verify_consistency(&old, &new, &proof).unwrap();
}

#[test]
fn journal_records_restore_data_files_lost_in_a_crash() {
    // Appends fsync only the journal: a crash may lose every data-file write since the last
    // compaction (here: entries 250..600), and the unpublished checkpoint with them.
    let (dir, log_dir) = saved_log_compacted_at(600, 250);
    let key = skey(dir.path());
    let at_base = {
        // The lengths the three files had at the compaction (a log of 250 entries).
        let (_d, base_dir) = saved_log_compacted_at(250, 250);
        ["entries", "entries.idx", "hashes"].map(|f| file_len(&base_dir.join(f)))
    };
    for (name, len) in ["entries", "entries.idx", "hashes"].iter().zip(at_base) {
        set_len(&log_dir.join(name), len);
    }
    // ... or kept garbage in their place (a file system that exposes zeroed blocks).
    append_bytes(&log_dir.join("hashes"), &[0; 64 * 32]);
    let old = {
        let (_d, d) = saved_log_compacted_at(250, 250);
        std::fs::read(d.join("checkpoint")).unwrap()
    };
    std::fs::write(log_dir.join("checkpoint"), old).unwrap();
    let log = assert_holds(&log_dir, &key, 600);
    // Recovery republished the recovered checkpoint for readers.
    let reader = LogReader::open(&log_dir).unwrap();
    assert_eq!(reader.checkpoint().unwrap(), *log.checkpoint());
    reader.verify(&log.key().verifier()).unwrap();
}

#[test]
fn a_record_that_fails_its_checksum_ends_the_journal() {
    let (dir, log_dir) = saved_log(100);
    let key = skey(dir.path());
    let journal = log_dir.join("journal");
    {
        let mut log = Log::open(&log_dir, LogKey::from_skey(&key).unwrap()).unwrap();
        log.append_batch(&[entry(100), entry(101)]).unwrap();
        let len_after_one = file_len(&journal);
        log.append_batch(&[b"not acknowledged".to_vec()]).unwrap();
        // The last record is whole in length but one byte of it never reached the disk.
        let mut bytes = std::fs::read(&journal).unwrap();
        let at = usize::try_from(len_after_one).unwrap() + 60;
        bytes[at] ^= 0xff;
        std::fs::write(&journal, bytes).unwrap();
    }
    let mut log = assert_holds(&log_dir, &key, 102);
    // Appending continues where the valid journal ended.
    assert_eq!(log.append_batch(&[entry(102)]).unwrap()[0].index, 102);
    drop(log);
    assert_holds(&log_dir, &key, 103);
}

#[test]
fn a_crash_mid_compaction_loses_nothing() {
    let (dir, log_dir) = saved_log(300);
    let key = skey(dir.path());
    // A compaction that crashed after writing its new journal's temp file, before the rename.
    std::fs::write(log_dir.join("journal.tmp"), b"half a journal").unwrap();
    let mut log = assert_holds(&log_dir, &key, 300);
    log.append_batch(&[entry(300)]).unwrap();
    drop(log);
    assert_holds(&log_dir, &key, 301);
}

#[test]
fn lost_derived_files_are_rebuilt_from_the_entries() {
    let (dir, log_dir) = saved_log(1_000);
    let key = skey(dir.path());
    let hashes = log_dir.join("hashes");
    let index = log_dir.join("entries.idx");
    set_len(&hashes, file_len(&hashes) / 3 + 5);
    set_len(&index, 8 * 123 + 3);
    assert_holds(&log_dir, &key, 1_000);
    set_len(&hashes, 0);
    set_len(&index, 0);
    let mut log = assert_holds(&log_dir, &key, 1_000);
    log.append_batch(&[entry(1_000)]).unwrap();
    drop(log);
    assert_holds(&log_dir, &key, 1_001);
}

#[test]
fn damaged_acknowledged_data_is_reported_not_served() {
    // Entries truncated below the journal's base (fsynced data, no journal record left to replay):
    // acknowledged entries are gone.
    let (dir, log_dir) = saved_log_compacted_at(100, 100);
    let key = skey(dir.path());
    let entries = log_dir.join("entries");
    set_len(&entries, file_len(&entries) - 10);
    let err = Log::open(&log_dir, LogKey::from_skey(&key).unwrap()).unwrap_err();
    assert!(matches!(err, TlogError::Corrupt { .. }), "{err}");

    // A stored hash on the root's path altered: the tree no longer matches the signed root.
    let (dir, log_dir) = saved_log_compacted_at(100, 100);
    let key = skey(dir.path());
    let mut bytes = std::fs::read(log_dir.join("hashes")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(log_dir.join("hashes"), &bytes).unwrap();
    let err = Log::open(&log_dir, LogKey::from_skey(&key).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            TlogError::Corrupt {
                what: "tree root",
                ..
            }
        ),
        "{err}"
    );

    // An entry's bytes altered: the full audit finds it.
    let (dir, log_dir) = saved_log_compacted_at(100, 100);
    let key = skey(dir.path());
    let mut bytes = std::fs::read(log_dir.join("entries")).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(log_dir.join("entries"), &bytes).unwrap();
    let log = Log::open(&log_dir, LogKey::from_skey(&key).unwrap()).unwrap();
    let err = log.verify_storage().unwrap_err();
    assert!(matches!(err, TlogError::Corrupt { .. }), "{err}");
    let reader = LogReader::open(&log_dir).unwrap();
    assert!(reader.verify(&log.key().verifier()).is_err());

    // A journal base signed by someone else.
    let (dir, log_dir) = saved_log(10);
    let key = skey(dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    {
        let mut other = Log::create(other_dir.path(), new_key("example.org/crash")).unwrap();
        other.append_batch(&[b"x".to_vec()]).unwrap();
    }
    std::fs::copy(other_dir.path().join("journal"), log_dir.join("journal")).unwrap();
    let err = Log::open(&log_dir, LogKey::from_skey(&key).unwrap()).unwrap_err();
    assert!(matches!(err, TlogError::Signature { .. }), "{err}");

    // A forged `checkpoint` file (what readers see) is not what recovery trusts: the writer
    // recovers from its journal and publishes its own checkpoint over it.
    let (dir, log_dir) = saved_log(10);
    let key = skey(dir.path());
    std::fs::copy(
        other_dir.path().join("checkpoint"),
        log_dir.join("checkpoint"),
    )
    .unwrap();
    let log = assert_holds(&log_dir, &key, 10);
    assert_eq!(
        std::fs::read(log_dir.join("checkpoint")).unwrap(),
        log.checkpoint().as_bytes()
    );
}

/// Environment variable that turns `kill9_child` into the appending child process.
const CHILD_ENV: &str = "TWI_TLOG_KILL9_CHILD_DIR";

/// The child half of `kill9_during_concurrent_appends_loses_no_acknowledged_entry`: appends through
/// the sequencer from 4 threads forever, printing each acknowledgment after it returned. Only that
/// test runs it (as a child process, with `--ignored`).
#[test]
#[ignore = "child process of kill9_during_concurrent_appends_loses_no_acknowledged_entry"]
fn kill9_child() {
    let dir =
        std::env::var(CHILD_ENV).expect("run by the kill9 test, which sets the log directory");
    let dir = Path::new(&dir);
    let key = LogKey::load(&dir.join("log.key")).unwrap();
    let log = Log::open_or_create(&dir.join("log"), key).unwrap();
    let start = log.size();
    let seq = std::sync::Arc::new(
        Sequencer::start(
            log,
            SequencerConfig {
                max_batch: 64,
                ..SequencerConfig::default()
            },
        )
        .unwrap(),
    );
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let seq = seq.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                for k in 0.. {
                    let body = format!("run{start}-t{t}-{k}").into_bytes();
                    let a = seq.append_blocking(body.clone()).unwrap();
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ACK {} {}", a.index, hex::encode(&body)).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn kill9_during_concurrent_appends_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key("example.org/kill9");
    key.save_new(&dir.path().join("log.key")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    for round in 0..3 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "kill9_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut this_round = 0;
        // Kill at a different point each round, while appends are in flight.
        let kill_after = 150 + round * 100;
        while let Some(Ok(line)) = lines.next() {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (i, body) = rest.split_once(' ').unwrap();
                acked.push((i.parse().unwrap(), hex::decode(body).unwrap()));
                this_round += 1;
                if this_round == kill_after {
                    child.kill().unwrap(); // SIGKILL
                }
            }
        }
        child.wait().unwrap();
        assert!(
            this_round >= kill_after,
            "child stopped early in round {round}"
        );
    }
    let log = Log::open(&dir.path().join("log"), key).unwrap();
    log.verify_storage().unwrap();
    let checkpoint = log
        .key()
        .verifier()
        .verify_checkpoint(log.checkpoint().as_bytes())
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    for (i, body) in &acked {
        assert!(seen.insert(*i), "index {i} acknowledged twice");
        assert_eq!(
            &log.entry(*i).unwrap(),
            body,
            "acknowledged entry {i} lost or changed"
        );
        let proof: InclusionProof = log.prove(*i).unwrap();
        assert_eq!(proof.checkpoint, *checkpoint.checkpoint());
        check_inclusion(
            leaf(body),
            *i,
            checkpoint.size(),
            checkpoint.root(),
            &proof.hashes,
        )
        .unwrap();
    }
    assert!(log.size() >= acked.len() as u64);
}

#[test]
fn a_batch_whose_checkpoint_cannot_be_published_is_not_acknowledged_nor_kept() {
    let (dir, log_dir) = saved_log(60);
    let key = skey(dir.path());
    let mut log = Log::open(&log_dir, LogKey::from_skey(&key).unwrap()).unwrap();
    let published = std::fs::read(log_dir.join("checkpoint")).unwrap();
    // Publication for readers fails after the journal record is fsynced (here: the temp name is
    // taken by a directory).
    std::fs::create_dir(log_dir.join("checkpoint.tmp")).unwrap();
    let err = log
        .append_batch(&[b"never acknowledged".to_vec()])
        .unwrap_err();
    assert!(matches!(err, TlogError::Io { .. }), "{err}");
    // Readers still see the old checkpoint, and the writer refuses until it recovers.
    assert_eq!(
        std::fs::read(log_dir.join("checkpoint")).unwrap(),
        published
    );
    assert!(matches!(
        log.append_batch(&[entry(60)]),
        Err(TlogError::Poisoned)
    ));
    std::fs::remove_dir(log_dir.join("checkpoint.tmp")).unwrap();
    // Recovery cuts the journal back to the last acknowledged record: the failed batch's entry is
    // gone, and index 60 goes to the next append.
    log.recover().unwrap();
    assert_eq!(log.size(), 60);
    assert_eq!(log.append_batch(&[entry(60)]).unwrap()[0].index, 60);
    drop(log);
    assert_holds(&log_dir, &key, 61);
}

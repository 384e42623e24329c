//! The sequencer under concurrency: blocking threads and async tasks appending at once each get a
//! unique index, a proof that verifies, and checkpoints that are all consistent with the final one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::{leaf, new_key};
use twi_credential_composer::tlog::{
    check_consistency, check_inclusion, Appended, Log, Sequencer, SequencerConfig, TlogError,
};

#[test]
fn concurrent_blocking_and_async_appends_are_all_logged_once_with_valid_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key("example.org/sequencer");
    let verifier = key.verifier();
    let log = Log::create(dir.path(), key).unwrap();
    let seq = Arc::new(
        Sequencer::start(
            log,
            SequencerConfig {
                max_batch: 100,
                max_wait: Duration::from_millis(2),
                ..SequencerConfig::default()
            },
        )
        .unwrap(),
    );

    let mut results: Vec<(Vec<u8>, Appended)> = Vec::new();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let seq = seq.clone();
            std::thread::spawn(move || {
                (0..150)
                    .map(|k| {
                        let body = format!("thread {t} entry {k}").into_bytes();
                        let a = seq.append_blocking(body.clone()).unwrap();
                        (body, a)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let async_results = runtime.block_on(async {
        let tasks: Vec<_> = (0..300)
            .map(|k| {
                let seq = seq.clone();
                tokio::spawn(async move {
                    let body = format!("task {k}").into_bytes();
                    let a = seq.append(body.clone()).await.unwrap();
                    (body, a)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for t in threads {
        results.extend(t.join().unwrap());
    }
    results.extend(async_results);
    assert_eq!(seq.queued(), 0);
    let log = seq.shutdown().unwrap();
    let total = 6 * 150 + 300;
    assert_eq!(log.size(), total as u64);
    assert_eq!(results.len(), total);

    // Every index 0..total exactly once, holding what its caller submitted.
    let mut indexes = HashSet::new();
    let mut checkpoints = BTreeMap::new();
    for (body, a) in &results {
        assert!(indexes.insert(a.index), "index {} given twice", a.index);
        assert_eq!(log.entry(a.index).unwrap(), *body);
        assert_eq!(a.leaf_hash, leaf(body));
        checkpoints.insert(a.proof.tree_size(), a.proof.checkpoint.clone());
    }
    assert_eq!(indexes.len(), total);
    assert!(indexes.iter().all(|&i| i < total as u64));

    // Every checkpoint handed out verifies, proves its entries, and is a prefix of the final tree.
    let last = verifier
        .verify_checkpoint(log.checkpoint().as_bytes())
        .unwrap();
    let verified: BTreeMap<u64, _> = checkpoints
        .iter()
        .map(|(size, cp)| (*size, verifier.verify_checkpoint(cp.as_bytes()).unwrap()))
        .collect();
    for (body, a) in &results {
        let cp = &verified[&a.proof.tree_size()];
        assert!(a.index < cp.size());
        check_inclusion(leaf(body), a.index, cp.size(), cp.root(), &a.proof.hashes).unwrap();
    }
    for cp in verified.values() {
        let proof = log.consistency_proof(cp.size(), last.size()).unwrap();
        verifier.verify_consistency(cp, &last, &proof).unwrap();
        check_consistency(cp.size(), cp.root(), last.size(), last.root(), &proof).unwrap();
    }
    // How many fsync rounds the 1,200 appends took (informational; timing-dependent, not asserted).
    println!("{total} appends in {} batches", checkpoints.len());
    log.verify_storage().unwrap();
}

#[test]
fn refusals_are_immediate_and_typed() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::create(dir.path(), new_key("example.org/refusals")).unwrap();
    let seq = Sequencer::start(
        log,
        SequencerConfig {
            max_queue: 0,
            ..SequencerConfig::default()
        },
    )
    .unwrap();
    assert!(matches!(
        seq.append_blocking(b"x".to_vec()),
        Err(TlogError::Overloaded { limit: 0, .. })
    ));
    assert!(matches!(
        seq.append_blocking(vec![0; 70_000]),
        Err(TlogError::EntrySize { len: 70_000, .. })
    ));
    let log = seq.shutdown().unwrap();
    assert_eq!(log.size(), 0);
    assert!(matches!(
        seq.append_blocking(b"late".to_vec()),
        Err(TlogError::SequencerStopped)
    ));
    // The log handed back is usable directly.
    let seq = Sequencer::start(log, SequencerConfig::default()).unwrap();
    let a = seq.append_blocking(b"first".to_vec()).unwrap();
    assert_eq!(a.index, 0);
    drop(seq);
}

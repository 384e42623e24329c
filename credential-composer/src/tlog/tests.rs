//! Known-answer tests of the hashing and proof formats: RFC 6962 vectors as published with
//! transparency-dev/merkle (`testonly/constants.go`, `proof/verify_test.go`), and the tlog-proof text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;

/// The reference leaves (hex).
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Root for each tree size 0..=8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (index, tree size, audit path).
const INCLUSION: [(u64, u64, &[&str]); 4] = [
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, consistency proof).
const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn h(hex_str: &str) -> Hash {
    Hash(hex::decode(hex_str).unwrap().try_into().unwrap())
}

fn hashes(list: &[&str]) -> Vec<Hash> {
    list.iter().map(|s| h(s)).collect()
}

/// A log holding the reference leaves, in a temp dir.
fn reference_log() -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().unwrap();
    let key = LogKey::generate("example.org/vectors", &mut rand_core::OsRng).unwrap();
    let mut log = Log::create(dir.path(), key).unwrap();
    for leaf in LEAVES {
        log.append_batch(&[hex::decode(leaf).unwrap()]).unwrap();
    }
    (dir, log)
}

#[test]
fn empty_tree_and_leaf_hash_match_rfc6962() {
    assert_eq!(EMPTY_TREE_HASH, h(ROOTS[0]));
    assert_eq!(leaf_hash(b""), h(ROOTS[1]));
}

#[test]
fn log_roots_match_the_reference_roots_for_every_size() {
    let (dir, log) = reference_log();
    let reader = LogReader::open(dir.path()).unwrap();
    for (size, root) in ROOTS.iter().enumerate() {
        let store_root = storage::Store::open(dir.path(), false)
            .unwrap()
            .tree_hash(size as u64)
            .unwrap();
        assert_eq!(store_root, h(root), "size {size}");
    }
    assert_eq!(log.checkpoint().root(), h(ROOTS[8]));
    assert_eq!(reader.checkpoint().unwrap().root(), h(ROOTS[8]));
}

#[test]
fn log_proofs_match_the_reference_proofs() {
    let (_dir, log) = reference_log();
    for (index, size, path) in INCLUSION {
        assert_eq!(
            log.inclusion_proof(index, size).unwrap(),
            hashes(path),
            "{index}/{size}"
        );
    }
    for (old, new, proof) in CONSISTENCY {
        assert_eq!(
            log.consistency_proof(old, new).unwrap(),
            hashes(proof),
            "{old}->{new}"
        );
    }
}

#[test]
fn reference_inclusion_proofs_verify_and_corruptions_do_not() {
    for (index, size, path) in INCLUSION {
        let leaf = leaf_hash(&hex::decode(LEAVES[index as usize]).unwrap());
        let root = h(ROOTS[size as usize]);
        let path = hashes(path);
        check_inclusion(leaf, index, size, root, &path).unwrap();
        // The corruptions of transparency-dev/merkle's verify_test.go.
        let mut bad: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (index.wrapping_sub(1), size, leaf, root, path.clone()),
            (index + 1, size, leaf, root, path.clone()),
            (index ^ 2, size, leaf, root, path.clone()),
            (index, size * 2, leaf, root, path.clone()),
            (index, size / 2, leaf, root, path.clone()),
            (index, size, leaf_hash(b"WrongLeaf"), root, path.clone()),
            (index, size, leaf, EMPTY_TREE_HASH, path.clone()),
            (index, size, leaf, root, [path.clone(), vec![root]].concat()),
            (index, size, leaf, root, [vec![root], path.clone()].concat()),
            (index, size, leaf, root, path[..path.len() - 1].to_vec()),
        ];
        for i in 0..path.len() {
            let mut p = path.clone();
            p[i].0[0] ^= 8;
            bad.push((index, size, leaf, root, p));
        }
        for (i, (idx, sz, lf, rt, p)) in bad.into_iter().enumerate() {
            assert!(
                check_inclusion(lf, idx, sz, rt, &p).is_err(),
                "corruption {i} of {index}/{size} verified"
            );
        }
    }
}

#[test]
fn reference_consistency_proofs_verify_and_corruptions_do_not() {
    for (old, new, proof) in CONSISTENCY {
        let (r1, r2) = (h(ROOTS[old as usize]), h(ROOTS[new as usize]));
        let proof = hashes(proof);
        check_consistency(old, r1, new, r2, &proof).unwrap();
        let mut bad: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (old - 1, new, r1, r2, proof.clone()),
            (old + 1, new, r1, r2, proof.clone()),
            (old ^ 2, new, r1, r2, proof.clone()),
            (old, new * 2, r1, r2, proof.clone()),
            (old, new / 2, r1, r2, proof.clone()),
            (old, new, r2, r1, proof.clone()),
            (old, new, leaf_hash(b"WrongRoot"), r2, proof.clone()),
            (old, new, r1, leaf_hash(b"WrongRoot"), proof.clone()),
            (old, new, r1, r2, Vec::new()),
            (old, new, r1, r2, [proof.clone(), vec![r1]].concat()),
            (old, new, r1, r2, [vec![proof[0]], proof.clone()].concat()),
            (old, new, r1, r2, proof[..proof.len() - 1].to_vec()),
        ];
        for i in 0..proof.len() {
            let mut p = proof.clone();
            p[i].0[0] ^= 16;
            bad.push((old, new, r1, r2, p));
        }
        for (i, (o, n, a, b, p)) in bad.into_iter().enumerate() {
            // old - 1 == 0 with a non-empty root is refused as well.
            assert!(
                check_consistency(o, a, n, b, &p).is_err(),
                "corruption {i} of {old}->{new} verified"
            );
        }
    }
    // Trivial cases: from the empty tree with an empty proof, and a tree to itself.
    check_consistency(0, EMPTY_TREE_HASH, 5, h(ROOTS[5]), &[]).unwrap();
    check_consistency(5, h(ROOTS[5]), 5, h(ROOTS[5]), &[]).unwrap();
    assert!(check_consistency(5, h(ROOTS[5]), 5, h(ROOTS[6]), &[]).is_err());
    assert!(check_consistency(6, h(ROOTS[6]), 5, h(ROOTS[5]), &[]).is_err());
    assert!(check_consistency(0, EMPTY_TREE_HASH, 5, h(ROOTS[5]), &[EMPTY_TREE_HASH]).is_err());
}

#[test]
fn tlog_proof_text_round_trips_and_matches_the_spec_layout() {
    let (_dir, log) = reference_log();
    let mut proof = log.prove(5).unwrap();
    proof.extra = Some(b"record context".to_vec());
    let text = proof.to_tlog_proof();
    let s = String::from_utf8(text.clone()).unwrap();
    let mut lines = s.lines();
    assert_eq!(lines.next(), Some("c2sp.org/tlog-proof@v1"));
    assert_eq!(lines.next(), Some("extra cmVjb3JkIGNvbnRleHQ="));
    assert_eq!(lines.next(), Some("index 5"));
    for want in &proof.hashes {
        assert_eq!(lines.next(), Some(want.to_string().as_str()));
    }
    assert_eq!(lines.next(), Some(""));
    assert!(s.ends_with(std::str::from_utf8(log.checkpoint().as_bytes()).unwrap()));
    let parsed = InclusionProof::from_tlog_proof(&text).unwrap();
    assert_eq!(parsed, proof);

    let verifier = log.key().verifier();
    let entry = hex::decode(LEAVES[5]).unwrap();
    let ok = verifier.verify_tlog_proof(&entry, &text).unwrap();
    assert_eq!(ok.index(), 5);
    assert_eq!(ok.checkpoint().size(), 8);
    // Another entry, another index, a tampered hash: all refused.
    assert!(verifier.verify_tlog_proof(b"other", &text).is_err());
    let wrong_index = s.replace("index 5\n", "index 4\n");
    assert!(verifier
        .verify_tlog_proof(&entry, wrong_index.as_bytes())
        .is_err());
    let first = proof.hashes[0].to_string();
    let mut flipped = proof.hashes[0];
    flipped.0[31] ^= 1;
    let tampered = s.replace(&first, &flipped.to_string());
    assert!(matches!(
        verifier.verify_tlog_proof(&entry, tampered.as_bytes()),
        Err(TlogError::Proof { .. })
    ));

    // Index 0 of a one-entry tree has an empty path: "index 0", blank line, checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let key = LogKey::generate("example.org/one", &mut rand_core::OsRng).unwrap();
    let mut one = Log::create(dir.path(), key).unwrap();
    let a = one.append_batch(&[b"only".to_vec()]).unwrap();
    let text = a[0].proof.to_tlog_proof();
    assert!(String::from_utf8(text.clone())
        .unwrap()
        .starts_with("c2sp.org/tlog-proof@v1\nindex 0\n\nexample.org/one\n1\n"));
    one.key()
        .verifier()
        .verify_tlog_proof(b"only", &text)
        .unwrap();
}

#[test]
fn malformed_tlog_proofs_are_refused() {
    let (_dir, log) = reference_log();
    let good = String::from_utf8(log.prove(1).unwrap().to_tlog_proof()).unwrap();
    let cases = [
        good.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
        good.replacen("index 1", "index 01", 1),
        good.replacen("index 1", "index -1", 1),
        good.replacen("index 1", "idx 1", 1),
        good.replacen("index 1\n", "index 1\n!!notbase64!!\n", 1),
        good.replacen("index 1\n", &format!("index 1\n{}\n", "A".repeat(88)), 1),
        good.replacen(
            "c2sp.org/tlog-proof@v1\n",
            "c2sp.org/tlog-proof@v1\nextra %%\n",
            1,
        ),
        good.split("\n\n").next().unwrap().to_owned(),
        "c2sp.org/tlog-proof@v1".to_owned(),
        String::new(),
    ];
    for (i, c) in cases.iter().enumerate() {
        assert!(
            matches!(
                InclusionProof::from_tlog_proof(c.as_bytes()),
                Err(TlogError::Malformed { .. })
            ),
            "case {i} parsed: {c:?}"
        );
    }
    let mut many = String::from("c2sp.org/tlog-proof@v1\nindex 0\n");
    for _ in 0..=MAX_PROOF_HASHES {
        many.push_str(&format!("{}\n", EMPTY_TREE_HASH));
    }
    many.push('\n');
    many.push_str(std::str::from_utf8(log.checkpoint().as_bytes()).unwrap());
    assert!(InclusionProof::from_tlog_proof(many.as_bytes()).is_err());
}

#[test]
fn appends_compact_the_journal_by_themselves_and_reopen_holds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let key = LogKey::generate("example.org/compact", &mut rand_core::OsRng).unwrap();
    let skey_verifier = key.verifier();
    let key_dir = tempfile::tempdir().unwrap();
    key.save_new(&key_dir.path().join("log.key")).unwrap();
    let mut log = Log::create(dir.path(), key).unwrap();
    log.set_journal_limit(4_000);
    let journal = dir.path().join(storage::JOURNAL);
    let mut longest = 0;
    let mut compactions = 0;
    let mut last = 0;
    for i in 0..200u32 {
        let e = format!("compacting entry {i} {}", "x".repeat(100)).into_bytes();
        log.append_batch(&[e]).unwrap();
        let len = std::fs::metadata(&journal).unwrap().len();
        if len < last {
            compactions += 1;
        }
        last = len;
        longest = longest.max(len);
    }
    // Each record is ~300 bytes: a compaction at least every ~14 appends, none growing past the
    // limit by more than one record.
    assert!(compactions >= 10, "{compactions} compactions");
    assert!(longest < 4_000 + 1_000, "journal grew to {longest} bytes");
    let checkpoint = log.checkpoint().clone();
    drop(log);
    let key = LogKey::load(&key_dir.path().join("log.key")).unwrap();
    let log = Log::open(dir.path(), key).unwrap();
    assert_eq!(log.checkpoint(), &checkpoint);
    log.verify_storage().unwrap();
    skey_verifier
        .verify_checkpoint(log.checkpoint().as_bytes())
        .unwrap();
}

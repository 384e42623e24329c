//! Shared by the transparency-log tests: an independent RFC 6962 implementation (straight from the RFC's
//! recursive definitions, sharing no code with the log) to compare the log against, and log helpers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    dead_code,
    unreachable_pub
)]

use sha2::{Digest, Sha256};
pub use twi_credential_composer::tlog::Hash;
use twi_credential_composer::tlog::{Log, LogKey};

pub fn leaf(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    Hash(h.finalize().into())
}

pub fn node(l: Hash, r: Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l.0);
    h.update(r.0);
    Hash(h.finalize().into())
}

/// Largest power of two strictly less than n (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Memoised subtree roots, keyed by (first leaf, last leaf, number of leaves).
type Memo = std::collections::HashMap<([u8; 32], [u8; 32], usize), Hash>;

thread_local! {
    /// MTH of leaf-hash slices already computed, keyed by (first leaf, last leaf, length): the
    /// reference recursions below revisit the same subtrees many times, and unoptimised SHA-256 in
    /// debug builds is slow. The key identifies a slice because the tests' leaves are distinct
    /// entries, each always at the same index.
    static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::new());
}

/// RFC 6962 2.1 MTH over leaf hashes.
pub fn mth(leaves: &[Hash]) -> Hash {
    let (Some(first), Some(last)) = (leaves.first(), leaves.last()) else {
        return Hash(Sha256::digest(b"").into());
    };
    let key = (first.0, last.0, leaves.len());
    if let Some(h) = MEMO.with(|m| m.borrow().get(&key).copied()) {
        return h;
    }
    let h = match leaves.len() {
        0 => Hash(Sha256::digest(b"").into()),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(mth(&leaves[..k]), mth(&leaves[k..]))
        }
    };
    MEMO.with(|m| m.borrow_mut().insert(key, h));
    h
}

/// RFC 6962 2.1.1 PATH(m, D[n]).
pub fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// RFC 6962 2.1.2 PROOF(m, D[n]).
pub fn consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if complete {
                Vec::new()
            } else {
                vec![mth(leaves)]
            };
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(m, &leaves[..k], complete);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = subproof(m - k, &leaves[k..], false);
            p.push(mth(&leaves[..k]));
            p
        }
    }
    if m == 0 || m == leaves.len() {
        return Vec::new();
    }
    subproof(m, leaves, true)
}

/// Entry `i` of the test logs: distinct, of varying length (0 to 300 bytes).
pub fn entry(i: u64) -> Vec<u8> {
    let len = (i * 7 % 301) as usize;
    let mut e = format!("entry-{i}-").into_bytes();
    e.resize(e.len().max(len), (i % 251) as u8);
    e
}

pub fn new_key(origin: &str) -> LogKey {
    LogKey::generate(origin, &mut rand_core::OsRng).unwrap()
}

/// A fresh log in a temp dir with entries 0..n appended in batches of `batch`.
pub fn log_with(n: u64, batch: usize) -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::create(dir.path(), new_key("example.org/test-log")).unwrap();
    let entries: Vec<Vec<u8>> = (0..n).map(entry).collect();
    for chunk in entries.chunks(batch.max(1)) {
        log.append_batch(chunk).unwrap();
    }
    (dir, log)
}

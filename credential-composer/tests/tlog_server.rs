//! The tlog-tiles HTTP server, hit over real TCP: every tile and entry bundle of a tree with full and
//! partial tiles on three levels equals what the spec defines (computed here independently), tiles the
//! tree does not contain are 404, and the tile client authenticates them into the same proofs as the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{entry, leaf, mth};
use twi_credential_composer::tlog::{
    spawn_server, tiles_for_tree_size, HttpFetcher, Log, LogReader, TileFetcher, TileId, TileKind,
    TiledLog, TlogError,
};

/// 65,536 + 2 * 256 + 5 entries: full level-0 tiles and a partial one of width 5, a full level-1 tile
/// and a partial one of width 2, and a partial level-2 tile of width 1.
const SIZE: u64 = 65_536 + 2 * 256 + 5;

fn get(url: &str) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let response = agent.get(url).call().unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response
        .into_body()
        .with_config()
        .limit(20_000_000)
        .read_to_vec()
        .unwrap();
    (status, content_type, body)
}

/// What tlog-tiles says tile `t` holds, from the entries alone.
fn expected_tile(t: &TileId, leaves: &[common::Hash]) -> Vec<u8> {
    let start = t.index() * 256;
    match t.kind() {
        TileKind::Entries => (start..start + u64::from(t.width()))
            .flat_map(|i| {
                let e = entry(i);
                let mut framed = (e.len() as u16).to_be_bytes().to_vec();
                framed.extend(e);
                framed
            })
            .collect(),
        TileKind::Hashes { level } => {
            let span = 1usize << (8 * u32::from(level));
            (0..u64::from(t.width()))
                .flat_map(|j| {
                    let lo = (start + j) as usize * span;
                    mth(&leaves[lo..lo + span]).0
                })
                .collect()
        }
    }
}

#[test]
fn serves_every_tile_as_the_spec_defines_and_nothing_beyond_the_checkpoint() {
    let (dir, mut log) = common::log_with(SIZE, 4096);
    let verifier = log.key().verifier();
    let leaves: Vec<_> = (0..SIZE).map(|i| leaf(&entry(i))).collect();
    let server = spawn_server(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let base = server.url();

    let (status, content_type, body) = get(&format!("{base}checkpoint"));
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; charset=utf-8");
    let cp = verifier.verify_checkpoint(&body).unwrap();
    assert_eq!(cp.size(), SIZE);
    assert_eq!(cp.root(), mth(&leaves));

    let tiles = tiles_for_tree_size(SIZE);
    let partial: Vec<String> = tiles
        .iter()
        .filter(|t| !t.is_full())
        .map(TileId::path)
        .collect();
    assert_eq!(
        partial,
        [
            "tile/0/258.p/5",
            "tile/entries/258.p/5",
            "tile/1/001.p/2",
            "tile/2/000.p/1"
        ]
    );
    assert!(tiles.contains(&TileId::hashes(1, 0, 256).unwrap()));
    for t in &tiles {
        let (status, content_type, body) = get(&format!("{base}{}", t.path()));
        assert_eq!(status, 200, "{}", t.path());
        assert_eq!(content_type, "application/octet-stream");
        assert_eq!(body, expected_tile(t, &leaves), "{}", t.path());
        if t.kind() != TileKind::Entries {
            assert_eq!(body.len(), t.width() as usize * 32);
        }
    }
    // A narrower partial tile is a prefix of the wider one and is served too.
    let (status, _, body) = get(&format!("{base}tile/0/258.p/3"));
    assert_eq!(status, 200);
    assert_eq!(
        body,
        expected_tile(&TileId::hashes(0, 258, 3).unwrap(), &leaves)
    );

    // Beyond the checkpoint, malformed, or unknown: 404.
    for path in [
        "tile/0/258",
        "tile/0/258.p/6",
        "tile/0/259.p/1",
        "tile/entries/258",
        "tile/1/001",
        "tile/2/000.p/2",
        "tile/3/000.p/1",
        "tile/0/x258",
        "tile/0/0258",
        "tile/8/0/000",
        "tile/data/000",
    ] {
        assert_eq!(get(&format!("{base}{path}")).0, 404, "{path}");
    }
    assert_eq!(get(&format!("{base}nothing")).0, 404);

    // The log grows while the server runs: the new checkpoint and its tiles appear.
    let old = cp;
    log.append_batch(&[entry(SIZE), entry(SIZE + 1)]).unwrap();
    let (_, _, body) = get(&format!("{base}checkpoint"));
    let new = verifier.verify_checkpoint(&body).unwrap();
    assert_eq!(new.size(), SIZE + 2);
    assert_eq!(get(&format!("{base}tile/0/258.p/7")).0, 200);

    // The tile client: proofs from authenticated tiles equal the log's own, entries come back intact,
    // and the two checkpoints are consistent.
    let remote = TiledLog::new(
        HttpFetcher::new(&base, Duration::from_secs(30)),
        verifier.clone(),
    );
    let latest = remote.checkpoint().unwrap();
    assert_eq!(latest, new);
    for i in [0, 1, 255, 256, 65_535, 65_536, SIZE - 1, SIZE + 1] {
        let proof = remote.inclusion_proof(&latest, i).unwrap();
        assert_eq!(
            proof.hashes,
            log.inclusion_proof(i, SIZE + 2).unwrap(),
            "{i}"
        );
        verifier.verify_inclusion(&entry(i), &proof).unwrap();
        assert_eq!(remote.entry(&latest, i).unwrap(), entry(i));
    }
    let proof = remote.verify_consistency(&old, &latest).unwrap();
    assert_eq!(proof, log.consistency_proof(SIZE, SIZE + 2).unwrap());
    // The same through a directory reader, offline.
    let local = TiledLog::new(LogReader::open(dir.path()).unwrap(), verifier.clone());
    assert_eq!(local.verify_consistency(&old, &latest).unwrap(), proof);
    server.shutdown().unwrap();
}

/// A fetcher that flips one byte of one resource: what a lying or broken server looks like.
struct Tampering<F> {
    inner: F,
    path: String,
}

impl<F: TileFetcher> TileFetcher for Tampering<F> {
    fn fetch(&self, path: &str) -> Result<Vec<u8>, TlogError> {
        let mut bytes = self.inner.fetch(path)?;
        if path == self.path {
            bytes[3] ^= 1;
        }
        Ok(bytes)
    }
}

#[test]
fn tampered_tiles_and_bundles_are_refused() {
    let (dir, log) = common::log_with(600, 600);
    let verifier = log.key().verifier();
    let cp = verifier
        .verify_checkpoint(log.checkpoint().as_bytes())
        .unwrap();
    for path in ["tile/0/000", "tile/0/002.p/88", "tile/1/000.p/2"] {
        let remote = TiledLog::new(
            Tampering {
                inner: LogReader::open(dir.path()).unwrap(),
                path: path.to_owned(),
            },
            verifier.clone(),
        );
        // Refused either by the tile reader's own check against the root or, for tiles that reader
        // does not authenticate, by the proof check against the signed root.
        let err = remote.inclusion_proof(&cp, 10).unwrap_err();
        assert!(
            matches!(err, TlogError::Tile { .. } | TlogError::Proof { .. }),
            "{path}: {err}"
        );
    }
    let remote = TiledLog::new(
        Tampering {
            inner: LogReader::open(dir.path()).unwrap(),
            path: "tile/entries/001".to_owned(),
        },
        verifier.clone(),
    );
    assert!(matches!(
        remote.entry(&cp, 256),
        Err(TlogError::Tile { .. })
    ));
    assert_eq!(remote.entry(&cp, 0).unwrap(), entry(0));
    // A bundle and its level-0 tile tampered together still do not pass: entries are checked by
    // their audit path to the signed root.
    struct Both<F>(F);
    impl<F: TileFetcher> TileFetcher for Both<F> {
        fn fetch(&self, path: &str) -> Result<Vec<u8>, TlogError> {
            let mut bytes = self.0.fetch(path)?;
            if path == "tile/entries/000" {
                bytes[2] ^= 1; // first byte of entry 0
            }
            if path == "tile/0/000" {
                let forged = leaf(&{
                    let mut e = entry(0);
                    e[0] ^= 1;
                    e
                });
                bytes[..32].copy_from_slice(&forged.0);
            }
            Ok(bytes)
        }
    }
    let remote = TiledLog::new(Both(LogReader::open(dir.path()).unwrap()), verifier.clone());
    assert!(remote.entry(&cp, 0).is_err());
    // A checkpoint signed by another key is refused before any tile is read.
    let other = common::new_key("example.org/test-log").verifier();
    let remote = TiledLog::new(LogReader::open(dir.path()).unwrap(), other);
    assert!(matches!(
        remote.checkpoint(),
        Err(TlogError::Signature { .. })
    ));
}

#[test]
fn serving_a_directory_without_a_log_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let err = spawn_server(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0))).unwrap_err();
    assert!(matches!(err, TlogError::Directory { .. }), "{err}");
    let _log = Log::create(dir.path(), common::new_key("example.org/x")).unwrap();
    let server = spawn_server(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    assert_eq!(get(&format!("{}tile/0/000.p/1", server.url())).0, 404);
    assert_eq!(get(&format!("{}checkpoint", server.url())).0, 200);
}

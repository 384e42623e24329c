//! The auditor's side of tlog-tiles: fetch the checkpoint and tiles of a log (over HTTP, or from a
//! directory), authenticate every tile against a verified checkpoint, and derive inclusion and
//! consistency proofs from them (`twi log verify`).
//!
//! Tiles are read through `tlog_tiles::TileHashReader` (a port of Go's `tlog.TileHashReader`), and
//! every proof or entry derived from them is then checked against the verified checkpoint's root:
//! the reader alone does not authenticate every tile it uses (see `TiledLog::entry`). Fetching is a
//! trait, so verification runs offline against a directory or a test double.

use std::cell::RefCell;
use std::time::Duration;

use tlog_tiles::{Hash, HashReader as _, TileHashReader, TileReader};

use super::checkpoint::{LogVerifier, VerifiedCheckpoint};
use super::proof::{check_inclusion, InclusionProof};
use super::reader::LogReader;
use super::storage::MAX_ENTRY_SIZE;
use super::tile::{TileId, TILE_HEIGHT, TILE_WIDTH};
use super::TlogError;

/// Largest resource a log serves: a full entry bundle of maximum-size entries.
const MAX_RESOURCE: u64 = TILE_WIDTH as u64 * (MAX_ENTRY_SIZE as u64 + 2);

/// Where tiles come from. `path` is relative to the log prefix: `checkpoint` or `tile/...`.
pub trait TileFetcher {
    /// The resource's bytes.
    ///
    /// # Errors
    /// [`TlogError::Fetch`] (or I/O errors) when it cannot be had.
    fn fetch(&self, path: &str) -> Result<Vec<u8>, TlogError>;
}

/// Fetches from a tlog-tiles HTTP server.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    base: String,
    agent: ureq::Agent,
}

impl HttpFetcher {
    /// A fetcher for the log at `base_url` (the prefix; a trailing `/` is added if missing).
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let mut base = base_url.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Self { base, agent }
    }
}

impl TileFetcher for HttpFetcher {
    fn fetch(&self, path: &str) -> Result<Vec<u8>, TlogError> {
        let url = format!("{}{path}", self.base);
        let fail = |reason: String| TlogError::Fetch {
            url: url.clone(),
            reason,
        };
        let response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        if status != 200 {
            return Err(fail(format!("HTTP {status}")));
        }
        response
            .into_body()
            .with_config()
            .limit(MAX_RESOURCE)
            .read_to_vec()
            .map_err(|e| fail(e.to_string()))
    }
}

/// Reads tiles straight from a log directory, as the server would serve them.
impl TileFetcher for LogReader {
    fn fetch(&self, path: &str) -> Result<Vec<u8>, TlogError> {
        let checkpoint = self.checkpoint()?;
        if path == "checkpoint" {
            return Ok(checkpoint.as_bytes().to_vec());
        }
        self.tile(TileId::parse(path)?, checkpoint.size())
    }
}

/// A log seen through its tiles, checked against a trusted key.
#[derive(Debug)]
pub struct TiledLog<F> {
    fetcher: F,
    verifier: LogVerifier,
}

impl<F: TileFetcher> TiledLog<F> {
    /// A view of the log served by `fetcher`, trusting `verifier`.
    pub fn new(fetcher: F, verifier: LogVerifier) -> Self {
        Self { fetcher, verifier }
    }

    /// The log's current checkpoint, verified.
    ///
    /// # Errors
    /// Fetch and checkpoint verification errors.
    pub fn checkpoint(&self) -> Result<VerifiedCheckpoint, TlogError> {
        let bytes = self.fetcher.fetch("checkpoint")?;
        self.verifier.verify_checkpoint(&bytes)
    }

    /// Audit path of `index` in the tree of `checkpoint`, computed from authenticated tiles, and
    /// checked.
    ///
    /// # Errors
    /// Fetch errors, [`TlogError::Tile`] for a tile that does not authenticate, [`TlogError::Proof`].
    pub fn inclusion_proof(
        &self,
        checkpoint: &VerifiedCheckpoint,
        index: u64,
    ) -> Result<InclusionProof, TlogError> {
        TlogError::check_index(index, checkpoint.size())?;
        let hashes = self.with_reader(checkpoint, |r| {
            tlog_tiles::prove_record(checkpoint.size(), index, r)
        })?;
        let leaf = self.with_reader(checkpoint, |r| {
            r.read_hashes(&[tlog_tiles::stored_hash_index(0, index)])
        })?;
        let leaf = leaf.first().copied().ok_or_else(|| TlogError::Tile {
            path: "level 0".into(),
            reason: "no leaf hash".into(),
        })?;
        check_inclusion(leaf, index, checkpoint.size(), checkpoint.root(), &hashes)?;
        Ok(InclusionProof {
            index,
            hashes,
            checkpoint: checkpoint.checkpoint().clone(),
            extra: None,
        })
    }

    /// Consistency proof from `old` to `new` computed from tiles of `new`'s tree, and checked: the
    /// auditor's "this log did not rewrite history".
    ///
    /// # Errors
    /// Fetch errors, [`TlogError::Tile`], [`TlogError::Proof`] (the log forked or rewrote history).
    pub fn verify_consistency(
        &self,
        old: &VerifiedCheckpoint,
        new: &VerifiedCheckpoint,
    ) -> Result<Vec<Hash>, TlogError> {
        if old.size() > new.size() {
            return Err(TlogError::Proof {
                kind: "consistency",
                reason: format!("old size {} > new size {}", old.size(), new.size()),
            });
        }
        let proof = if old.size() == 0 || old.size() == new.size() {
            Vec::new()
        } else {
            self.with_reader(new, |r| tlog_tiles::prove_tree(new.size(), old.size(), r))?
        };
        self.verifier.verify_consistency(old, new, &proof)?;
        Ok(proof)
    }

    /// Entry `index` from its entry bundle, checked against the authenticated level-0 tile hash.
    ///
    /// # Errors
    /// Fetch errors, [`TlogError::Tile`] if the bundle is malformed or does not match.
    pub fn entry(&self, checkpoint: &VerifiedCheckpoint, index: u64) -> Result<Vec<u8>, TlogError> {
        TlogError::check_index(index, checkpoint.size())?;
        let width = u64::from(TILE_WIDTH);
        let n = index / width;
        let bundle_width = (checkpoint.size() - n * width).min(width);
        let tile = TileId::entries(n, u32::try_from(bundle_width).unwrap_or(TILE_WIDTH))?;
        let bytes = self.fetcher.fetch(&tile.path())?;
        let entries = split_bundle(&bytes, &tile)?;
        let want = usize::try_from(index - n * width).unwrap_or(usize::MAX);
        let entry = entries
            .into_iter()
            .nth(want)
            .ok_or_else(|| TlogError::Tile {
                path: tile.path(),
                reason: format!("no entry {want}"),
            })?;
        // Authenticate the entry by its audit path to the signed root, not by the leaf hash in a tile:
        // the Go-ported TileHashReader does not authenticate every tile it returns hashes from (its
        // parent check starts at `len(stx)`, past some of the tiles when several tree-hash subtrees
        // share a tile), so nothing read from tiles is trusted without a proof check.
        let hashes = self.with_reader(checkpoint, |r| {
            tlog_tiles::prove_record(checkpoint.size(), index, r)
        })?;
        check_inclusion(
            tlog_tiles::record_hash(&entry),
            index,
            checkpoint.size(),
            checkpoint.root(),
            &hashes,
        )
        .map_err(|e| TlogError::Tile {
            path: tile.path(),
            reason: format!("entry {index} is not the logged entry: {e}"),
        })?;
        Ok(entry)
    }

    fn with_reader<T>(
        &self,
        checkpoint: &VerifiedCheckpoint,
        f: impl FnOnce(&TileHashReader<'_>) -> Result<T, tlog_tiles::Error>,
    ) -> Result<T, TlogError> {
        let tiles = FetchingTileReader {
            fetcher: &self.fetcher,
            error: RefCell::new(None),
        };
        let reader = TileHashReader::new(checkpoint.size(), checkpoint.root(), &tiles);
        let result = f(&reader);
        if let Some(e) = tiles.error.borrow_mut().take() {
            return Err(e);
        }
        result.map_err(|e| TlogError::Tile {
            path: "(tiles of the checkpoint's tree)".into(),
            reason: e.to_string(),
        })
    }
}

/// Splits an entry bundle into its `tile.width()` entries.
///
/// # Errors
/// [`TlogError::Tile`] if the framing is broken or the count differs.
pub(crate) fn split_bundle(bytes: &[u8], tile: &TileId) -> Result<Vec<Vec<u8>>, TlogError> {
    let bad = |reason: &str| TlogError::Tile {
        path: tile.path(),
        reason: reason.to_owned(),
    };
    let mut rest = bytes;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_at_checked(2)
            .ok_or_else(|| bad("truncated length"))?;
        let len = usize::from(u16::from_be_bytes([
            len.first().copied().unwrap_or(0),
            len.get(1).copied().unwrap_or(0),
        ]));
        let (entry, tail) = tail
            .split_at_checked(len)
            .ok_or_else(|| bad("truncated entry"))?;
        out.push(entry.to_vec());
        rest = tail;
    }
    if out.len() != tile.width() as usize {
        return Err(bad(&format!(
            "{} entries, want {}",
            out.len(),
            tile.width()
        )));
    }
    Ok(out)
}

struct FetchingTileReader<'a, F> {
    fetcher: &'a F,
    error: RefCell<Option<TlogError>>,
}

impl<F: TileFetcher> TileReader for FetchingTileReader<'_, F> {
    fn height(&self) -> u8 {
        TILE_HEIGHT
    }

    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        let mut out = Vec::with_capacity(tiles.len());
        for t in tiles {
            let fetched = TileId::from_go_tile(t).and_then(|id| {
                let bytes = self.fetcher.fetch(&id.path())?;
                if bytes.len() != id.width() as usize * tlog_tiles::HASH_SIZE {
                    return Err(TlogError::Tile {
                        path: id.path(),
                        reason: format!("{} bytes, want {}", bytes.len(), id.width() * 32),
                    });
                }
                Ok(bytes)
            });
            match fetched {
                Ok(bytes) => out.push(bytes),
                Err(e) => {
                    *self.error.borrow_mut() = Some(e);
                    return Err(tlog_tiles::Error::InvalidInput("fetch failed".into()));
                }
            }
        }
        Ok(out)
    }

    fn save_tiles(&self, _tiles: &[tlog_tiles::Tile], _data: &[Vec<u8>]) {}
}

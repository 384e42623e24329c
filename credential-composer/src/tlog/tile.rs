//! Tile coordinates and paths of c2sp.org/tlog-tiles.
//!
//! The spec fixes the tile height at 8 (256 hashes per full tile) and names resources
//! `tile/<L>/<N>[.p/<W>]` (hashes) and `tile/entries/<N>[.p/<W>]` (entry bundles), with `<N>` split into
//! 3-digit groups, all but the last prefixed by `x`. Go's `sumdb/tlog` uses the older
//! `tile/<H>/<L>/...` and `tile/<H>/data/...` names for the same bytes; [`TileId::from_go_tile`] maps
//! between the two so a Go client (and `tlog_tiles::TileHashReader`) can read our tiles.

use super::TlogError;

/// Tile height fixed by tlog-tiles: each tile covers 8 levels of the tree.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u32 = 1 << TILE_HEIGHT;
/// Highest level a tile can have (tlog-tiles: 0..=63).
pub const MAX_TILE_LEVEL: u8 = 63;
/// Longer paths cannot be canonical (N < 2^64 has at most 7 groups); refuse before splitting.
const MAX_PATH_LEN: usize = 64;

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Merkle tree hashes at tree level `8 * level`.
    Hashes {
        /// Tile level `<L>`.
        level: u8,
    },
    /// An entry bundle: the log entries themselves, each prefixed by its big-endian uint16 length.
    Entries,
}

/// One tile (or entry bundle) of a tlog-tiles log: kind, index `<N>` within its level, and width.
///
/// Only valid coordinates can be built (level <= 63, width 1..=256), so the tile maths never sees a
/// tile that cannot exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileId {
    kind: TileKind,
    index: u64,
    width: u32,
}

impl TileId {
    /// A hash tile.
    ///
    /// # Errors
    /// [`TlogError::Malformed`] if `level > 63` or `width` is not in `1..=256`.
    pub fn hashes(level: u8, index: u64, width: u32) -> Result<Self, TlogError> {
        if level > MAX_TILE_LEVEL {
            return Err(TlogError::malformed(
                "tile",
                format!("level {level} > {MAX_TILE_LEVEL}"),
            ));
        }
        Self::new(TileKind::Hashes { level }, index, width)
    }

    /// An entry bundle.
    ///
    /// # Errors
    /// [`TlogError::Malformed`] if `width` is not in `1..=256`.
    pub fn entries(index: u64, width: u32) -> Result<Self, TlogError> {
        Self::new(TileKind::Entries, index, width)
    }

    fn new(kind: TileKind, index: u64, width: u32) -> Result<Self, TlogError> {
        if !(1..=TILE_WIDTH).contains(&width) {
            return Err(TlogError::malformed(
                "tile",
                format!("width {width} not in 1..={TILE_WIDTH}"),
            ));
        }
        Ok(Self { kind, index, width })
    }

    /// What the tile holds.
    pub fn kind(&self) -> TileKind {
        self.kind
    }

    /// The tile's index `<N>` within its level.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Number of hashes (or entries) in the tile.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// A full tile has 256 hashes; others are partial and carry `.p/<W>` in their path.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// Tree level of the tile's hashes in units of tiles (0 for entry bundles, which pair with level 0).
    pub fn level(&self) -> u8 {
        match self.kind {
            TileKind::Hashes { level } => level,
            TileKind::Entries => 0,
        }
    }

    /// The smallest tree size that contains this tile; `None` if no `u64` tree size can.
    ///
    /// A server serves a tile only when its checkpoint's size is at least this.
    pub fn required_tree_size(&self) -> Option<u64> {
        let leaves_at_level = self
            .index
            .checked_mul(u64::from(TILE_WIDTH))?
            .checked_add(u64::from(self.width))?;
        let shift = u32::from(self.level()).checked_mul(u32::from(TILE_HEIGHT))?;
        if shift >= 64 {
            return None;
        }
        let size = leaves_at_level.checked_shl(shift)?;
        // checked_shl does not report bits shifted out; check the round trip.
        (size >> shift == leaves_at_level).then_some(size)
    }

    /// The tile's path relative to the log prefix, e.g. `tile/0/x001/234.p/17` or `tile/entries/005`.
    pub fn path(&self) -> String {
        let mut groups = vec![format!("{:03}", self.index % 1000)];
        let mut n = self.index / 1000;
        while n > 0 {
            groups.push(format!("x{:03}", n % 1000));
            n /= 1000;
        }
        groups.reverse();
        let level = match self.kind {
            TileKind::Hashes { level } => level.to_string(),
            TileKind::Entries => "entries".to_owned(),
        };
        let mut path = format!("tile/{level}/{}", groups.join("/"));
        if !self.is_full() {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// Parses a tile path (`tile/...`, no leading slash). Only canonical paths are accepted, so each
    /// tile has exactly one name.
    ///
    /// # Errors
    /// [`TlogError::Malformed`] for anything that is not a canonical tlog-tiles path.
    pub fn parse(path: &str) -> Result<Self, TlogError> {
        let bad = |reason: &str| TlogError::malformed("tile path", format!("{path:?}: {reason}"));
        if path.len() > MAX_PATH_LEN {
            return Err(bad("too long"));
        }
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad("no tile/ prefix"))?;
        let (level_str, rest) = rest.split_once('/').ok_or_else(|| bad("no index"))?;
        let (index_str, width) = match rest.split_once(".p/") {
            Some((n, w)) => (n, Some(w.parse::<u32>().map_err(|_| bad("bad width"))?)),
            None => (rest, None),
        };
        let mut index: u64 = 0;
        for group in index_str.split('/') {
            let digits = group.strip_prefix('x').unwrap_or(group);
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("index groups must be 3 digits"));
            }
            let value: u64 = digits.parse().map_err(|_| bad("bad index"))?;
            index = index
                .checked_mul(1000)
                .and_then(|i| i.checked_add(value))
                .ok_or_else(|| bad("index overflows"))?;
        }
        let width = width.unwrap_or(TILE_WIDTH);
        let tile = if level_str == "entries" {
            Self::entries(index, width)?
        } else {
            let level: u8 = level_str.parse().map_err(|_| bad("bad level"))?;
            Self::hashes(level, index, width)?
        };
        // Leading zeros, a `.p/256`, misplaced `x` prefixes: anything that does not re-encode the same.
        if tile.path() != path {
            return Err(bad("not canonical"));
        }
        Ok(tile)
    }

    /// Go's `tlog.Tile` (height 8) for the same hash tile, as `tlog_tiles` (the Rust port) uses it.
    ///
    /// # Errors
    /// [`TlogError::Malformed`] for an entry bundle (Go's data tiles are not our bundles).
    pub(crate) fn to_go_tile(self) -> Result<tlog_tiles::Tile, TlogError> {
        match self.kind {
            // Valid by construction: height 8, level <= 63, width 1..=256.
            TileKind::Hashes { level } => Ok(tlog_tiles::Tile::new(
                TILE_HEIGHT,
                level,
                self.index,
                self.width,
                false,
            )),
            TileKind::Entries => Err(TlogError::malformed(
                "tile",
                "entry bundles have no Go tile",
            )),
        }
    }

    /// Our coordinates for a Go `tlog.Tile` of height 8.
    ///
    /// # Errors
    /// [`TlogError::Malformed`] if the Go tile has another height or is a data tile.
    pub fn from_go_tile(tile: &tlog_tiles::Tile) -> Result<Self, TlogError> {
        if tile.height() != TILE_HEIGHT || tile.is_data() {
            return Err(TlogError::malformed(
                "tile",
                format!("Go tile {} is not a height-8 hash tile", tile.path()),
            ));
        }
        Self::hashes(tile.level(), tile.level_index(), tile.width())
    }
}

/// Every tile and entry bundle a tree of `size` entries is published as: the full ones and, per level,
/// the rightmost partial one. Lets a mirror or a test walk the whole published log.
pub fn tiles_for_tree_size(size: u64) -> Vec<TileId> {
    let mut tiles = Vec::new();
    let mut level: u8 = 0;
    loop {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        if shift >= 64 {
            break;
        }
        let count = size >> shift; // hashes at this tile level
        if count == 0 {
            break;
        }
        let full = count / u64::from(TILE_WIDTH);
        let partial = u32::try_from(count % u64::from(TILE_WIDTH)).unwrap_or(0);
        for index in 0..full {
            tiles.extend(TileId::hashes(level, index, TILE_WIDTH));
            if level == 0 {
                tiles.extend(TileId::entries(index, TILE_WIDTH));
            }
        }
        if partial > 0 {
            tiles.extend(TileId::hashes(level, full, partial));
            if level == 0 {
                tiles.extend(TileId::entries(full, partial));
            }
        }
        level += 1;
    }
    tiles
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn paths_follow_the_spec_examples() {
        // tlog-tiles: index 1234067 is encoded as x001/x234/067.
        let t = TileId::hashes(0, 1_234_067, 256).unwrap();
        assert_eq!(t.path(), "tile/0/x001/x234/067");
        let t = TileId::hashes(2, 1_234_067, 17).unwrap();
        assert_eq!(t.path(), "tile/2/x001/x234/067.p/17");
        assert_eq!(TileId::entries(5, 256).unwrap().path(), "tile/entries/005");
        assert_eq!(
            TileId::entries(1000, 3).unwrap().path(),
            "tile/entries/x001/000.p/3"
        );
    }

    #[test]
    fn parse_round_trips_and_refuses_non_canonical_paths() {
        for t in [
            TileId::hashes(0, 0, 1).unwrap(),
            TileId::hashes(63, u64::MAX, 255).unwrap(),
            TileId::hashes(1, 999, 256).unwrap(),
            TileId::entries(1_000_000, 256).unwrap(),
        ] {
            assert_eq!(TileId::parse(&t.path()).unwrap(), t, "{}", t.path());
        }
        for bad in [
            "tile/0/1",
            "tile/0/001.p/256",
            "tile/0/001.p/0",
            "tile/0/001.p/07",
            "tile/00/001",
            "tile/64/001",
            "tile/0/x000/001",
            "tile/0/001/x002",
            "tile/0/x1/002",
            "tile/data/001",
            "tile/8/0/001",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "/tile/0/001",
            "tile/0/",
        ] {
            assert!(TileId::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn required_tree_size_follows_the_spec() {
        // A tree of size 70,000: 273 full level-0 tiles, a partial level-0 tile of width 112, one full
        // level-1 tile, a partial level-1 tile of width 17 and a partial level-2 tile of width 1.
        let tiles = tiles_for_tree_size(70_000);
        let level0: Vec<_> = tiles
            .iter()
            .filter(|t| t.kind() == TileKind::Hashes { level: 0 })
            .collect();
        assert_eq!(level0.len(), 274);
        assert_eq!(level0.iter().filter(|t| t.is_full()).count(), 273);
        assert_eq!(level0.last().unwrap().width(), 112);
        let level1: Vec<_> = tiles.iter().filter(|t| t.level() == 1).collect();
        assert_eq!(level1.len(), 2);
        assert!(level1[0].is_full());
        assert_eq!(level1[1].width(), 17);
        let level2: Vec<_> = tiles.iter().filter(|t| t.level() == 2).collect();
        assert_eq!(level2.len(), 1);
        assert_eq!(level2[0].width(), 1);
        for t in &tiles {
            assert!(t.required_tree_size().unwrap() <= 70_000, "{t:?}");
        }
        // Size 256: one full level-0 tile and a partial level-1 tile of width 1.
        let tiles = tiles_for_tree_size(256);
        assert!(tiles.contains(&TileId::hashes(1, 0, 1).unwrap()));
        assert_eq!(
            TileId::hashes(1, 0, 1).unwrap().required_tree_size(),
            Some(256)
        );
        assert_eq!(TileId::hashes(8, 0, 1).unwrap().required_tree_size(), None);
        assert_eq!(
            TileId::hashes(7, 0, 1).unwrap().required_tree_size(),
            Some(1 << 56)
        );
    }

    #[test]
    fn go_tile_mapping() {
        let ours = TileId::hashes(1, 1234, 17).unwrap();
        let go = ours.to_go_tile().unwrap();
        assert_eq!(go.path(), "tile/8/1/x001/234.p/17");
        assert_eq!(TileId::from_go_tile(&go).unwrap(), ours);
        assert!(TileId::entries(0, 1).unwrap().to_go_tile().is_err());
    }
}

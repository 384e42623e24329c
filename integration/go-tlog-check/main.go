// Command go-tlog-check verifies what the twi transparency log produces with Go's own transparency-log
// packages (golang.org/x/mod/sumdb/tlog and sumdb/note), the reference implementation of the hashing,
// proofs and signed notes the log uses:
//
//   - a c2sp.org/tlog-proof@v1 inclusion proof of an entry, against a checkpoint signed by the log key;
//   - with -url, the log's tlog-tiles server: its checkpoint, tree hash and a fresh inclusion proof
//     computed by tlog.TileHashReader from the served tiles, every entry bundle (all entries re-hashed
//     into the checkpoint's root), and, with -old-checkpoint, a consistency proof to an earlier
//     checkpoint.
//
// It prints one "ok ..." line per check and exits 1 on the first failure.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8

func main() {
	vkey := flag.String("vkey", "", "log verifier key (<name>+<hex id>+<base64 key>)")
	proofFile := flag.String("proof", "", "c2sp.org/tlog-proof@v1 file")
	entryFile := flag.String("entry", "", "the logged entry's bytes")
	url := flag.String("url", "", "tlog-tiles prefix URL to check too (optional)")
	oldFile := flag.String("old-checkpoint", "", "earlier signed checkpoint to check consistency with (needs -url)")
	flag.Parse()
	if err := run(*vkey, *proofFile, *entryFile, *url, *oldFile); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}

func run(vkey, proofFile, entryFile, url, oldFile string) error {
	verifier, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return fmt.Errorf("vkey: %w", err)
	}
	proofText, err := os.ReadFile(proofFile)
	if err != nil {
		return err
	}
	entry, err := os.ReadFile(entryFile)
	if err != nil {
		return err
	}
	index, path, cpBytes, err := parseTLogProof(proofText)
	if err != nil {
		return fmt.Errorf("tlog-proof: %w", err)
	}
	tree, err := openCheckpoint(cpBytes, verifier)
	if err != nil {
		return fmt.Errorf("proof checkpoint: %w", err)
	}
	fmt.Printf("ok checkpoint %s size %d signed by %s+%08x\n", verifier.Name(), tree.N, verifier.Name(), verifier.KeyHash())
	if err := tlog.CheckRecord(path, tree.N, tree.Hash, index, tlog.RecordHash(entry)); err != nil {
		return fmt.Errorf("inclusion proof of entry %d: %w", index, err)
	}
	fmt.Printf("ok inclusion index %d tree %d (%d hashes)\n", index, tree.N, len(path))
	if url == "" {
		return nil
	}

	base := strings.TrimSuffix(url, "/") + "/"
	client := &http.Client{Timeout: 30 * time.Second}
	served, err := fetch(client, base+"checkpoint")
	if err != nil {
		return err
	}
	current, err := openCheckpoint(served, verifier)
	if err != nil {
		return fmt.Errorf("served checkpoint: %w", err)
	}
	if current.N < tree.N {
		return fmt.Errorf("served checkpoint size %d is older than the proof's %d", current.N, tree.N)
	}
	tiles := &tileReader{client: client, base: base}
	thr := tlog.TileHashReader(current, tiles)
	th, err := tlog.TreeHash(current.N, thr)
	if err != nil {
		return fmt.Errorf("tree hash from tiles: %w", err)
	}
	if th != current.Hash {
		return fmt.Errorf("tree hash from tiles %v != checkpoint %v", th, current.Hash)
	}
	fmt.Printf("ok tiles: tree hash of size %d matches the served checkpoint (%d tiles fetched)\n", current.N, tiles.fetched)
	p, err := tlog.ProveRecord(current.N, index, thr)
	if err != nil {
		return fmt.Errorf("prove record from tiles: %w", err)
	}
	if err := tlog.CheckRecord(p, current.N, current.Hash, index, tlog.RecordHash(entry)); err != nil {
		return fmt.Errorf("inclusion proof from tiles: %w", err)
	}
	fmt.Printf("ok inclusion from tiles index %d tree %d\n", index, current.N)
	if err := checkAllEntries(client, base, current); err != nil {
		return err
	}
	if current.N > tree.N && tree.N > 0 {
		if err := checkConsistency(thr, tree, current); err != nil {
			return fmt.Errorf("proof checkpoint -> served checkpoint: %w", err)
		}
	}
	if oldFile != "" {
		oldBytes, err := os.ReadFile(oldFile)
		if err != nil {
			return err
		}
		old, err := openCheckpoint(oldBytes, verifier)
		if err != nil {
			return fmt.Errorf("old checkpoint: %w", err)
		}
		if err := checkConsistency(thr, old, current); err != nil {
			return fmt.Errorf("old checkpoint -> served checkpoint: %w", err)
		}
	}
	return nil
}

func checkConsistency(thr tlog.HashReader, old, current tlog.Tree) error {
	if old.N > current.N {
		return fmt.Errorf("old size %d > current %d", old.N, current.N)
	}
	if old.N == 0 {
		return nil
	}
	p, err := tlog.ProveTree(current.N, old.N, thr)
	if err != nil {
		return err
	}
	if err := tlog.CheckTree(p, current.N, current.Hash, old.N, old.Hash); err != nil {
		return err
	}
	fmt.Printf("ok consistency %d -> %d (%d hashes)\n", old.N, current.N, len(p))
	return nil
}

// checkAllEntries fetches every entry bundle, re-hashes every entry and rebuilds the whole tree from
// them: the root must be the checkpoint's, and each level-0 tile must hold the entries' leaf hashes.
func checkAllEntries(client *http.Client, base string, tree tlog.Tree) error {
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if x < 0 || x >= int64(len(stored)) {
				return nil, fmt.Errorf("stored hash %d not computed", x)
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	width := int64(1) << tileHeight
	for n := int64(0); n*width < tree.N; n++ {
		w := min(tree.N-n*width, width)
		t := tlog.Tile{H: tileHeight, L: 0, N: n, W: int(w)}
		bundle, err := fetch(client, base+c2spPath(t, true))
		if err != nil {
			return err
		}
		level0, err := fetch(client, base+c2spPath(t, false))
		if err != nil {
			return err
		}
		entries, err := splitBundle(bundle)
		if err != nil {
			return fmt.Errorf("%s: %w", c2spPath(t, true), err)
		}
		if int64(len(entries)) != w || int64(len(level0)) != w*tlog.HashSize {
			return fmt.Errorf("tile %d: %d entries and %d tile bytes, want width %d", n, len(entries), len(level0), w)
		}
		for k, e := range entries {
			i := n*width + int64(k)
			h := tlog.RecordHash(e)
			if !bytes.Equal(h[:], level0[k*tlog.HashSize:(k+1)*tlog.HashSize]) {
				return fmt.Errorf("entry %d does not hash to its level-0 tile hash", i)
			}
			hashes, err := tlog.StoredHashes(i, e, reader)
			if err != nil {
				return err
			}
			stored = append(stored, hashes...)
		}
	}
	root, err := tlog.TreeHash(tree.N, reader)
	if err != nil {
		return err
	}
	if root != tree.Hash {
		return fmt.Errorf("root of all %d served entries %v != checkpoint %v", tree.N, root, tree.Hash)
	}
	fmt.Printf("ok entries: all %d entries from the bundles rebuild the checkpoint's root\n", tree.N)
	return nil
}

// tileReader serves tlog.TileHashReader from a tlog-tiles server. Go's tlog names tiles
// tile/<H>/<L>/<N>; tlog-tiles drops the fixed height 8.
type tileReader struct {
	client  *http.Client
	base    string
	fetched int
}

func (r *tileReader) Height() int { return tileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := fetch(r.client, r.base+c2spPath(t, false))
		if err != nil {
			return nil, err
		}
		out[i] = data
		r.fetched++
	}
	return out, nil
}

func (r *tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// c2spPath is the tlog-tiles path of a height-8 Go tile (or of its entry bundle).
func c2spPath(t tlog.Tile, entries bool) string {
	p := strings.TrimPrefix(t.Path(), "tile/8/")
	if entries {
		// Go's level path element is the first one; replace it by "entries".
		_, rest, _ := strings.Cut(p, "/")
		return "tile/entries/" + rest
	}
	return "tile/" + p
}

func fetch(client *http.Client, url string) ([]byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<25))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

func splitBundle(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, errors.New("truncated length")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, errors.New("truncated entry")
		}
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out, nil
}

// openCheckpoint verifies a signed checkpoint note with the log key and parses its body
// (c2sp.org/tlog-checkpoint: origin, size, base64 root hash). The origin must be the key name.
func openCheckpoint(msg []byte, verifier note.Verifier) (tlog.Tree, error) {
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		return tlog.Tree{}, err
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return tlog.Tree{}, errors.New("checkpoint has fewer than 3 lines")
	}
	if lines[0] != verifier.Name() {
		return tlog.Tree{}, fmt.Errorf("origin %q, want %q", lines[0], verifier.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return tlog.Tree{}, fmt.Errorf("bad tree size %q", lines[1])
	}
	h, err := tlog.ParseHash(lines[2])
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("bad root hash: %w", err)
	}
	return tlog.Tree{N: size, Hash: h}, nil
}

// parseTLogProof reads c2sp.org/tlog-proof@v1: header, optional "extra", "index N", hashes, blank line,
// then the checkpoint verbatim.
func parseTLogProof(text []byte) (int64, tlog.RecordProof, []byte, error) {
	r := bufio.NewReader(bytes.NewReader(text))
	line := func() (string, error) {
		s, err := r.ReadString('\n')
		if err != nil {
			return "", errors.New("truncated")
		}
		return strings.TrimSuffix(s, "\n"), nil
	}
	l, err := line()
	if err != nil || l != "c2sp.org/tlog-proof@v1" {
		return 0, nil, nil, errors.New("missing c2sp.org/tlog-proof@v1 header")
	}
	if l, err = line(); err != nil {
		return 0, nil, nil, err
	}
	if e, ok := strings.CutPrefix(l, "extra "); ok {
		if _, err := base64.StdEncoding.DecodeString(e); err != nil {
			return 0, nil, nil, errors.New("extra is not base64")
		}
		if l, err = line(); err != nil {
			return 0, nil, nil, err
		}
	}
	idx, ok := strings.CutPrefix(l, "index ")
	if !ok {
		return 0, nil, nil, errors.New("missing index")
	}
	index, err := strconv.ParseInt(idx, 10, 64)
	if err != nil || index < 0 || strconv.FormatInt(index, 10) != idx {
		return 0, nil, nil, fmt.Errorf("bad index %q", idx)
	}
	var path tlog.RecordProof
	for {
		l, err := line()
		if err != nil {
			return 0, nil, nil, err
		}
		if l == "" {
			break
		}
		h, err := tlog.ParseHash(l)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("bad proof hash %q", l)
		}
		path = append(path, h)
	}
	rest, _ := io.ReadAll(r)
	return index, path, rest, nil
}

//! Go's own transparency-log packages (golang.org/x/mod/sumdb/tlog and sumdb/note) accept what the log
//! produces: `integration/go-tlog-check` verifies our tlog-proof and checkpoint signature, and reads our
//! tile server with `tlog.TileHashReader` (tree hash, inclusion, consistency, every entry bundle).
//! Runs `go run` on it: fails (never skips) when Go is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::entry;
use twi_credential_composer::tlog::spawn_server;

fn go_program() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../integration/go-tlog-check")
}

fn go_run(args: &[&str]) -> Output {
    Command::new("go")
        .arg("run")
        .arg(".")
        .args(args)
        .current_dir(go_program())
        // go.sum pins golang.org/x/mod; never rewrite it from a test.
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .output()
        .expect("`go` is required for this test (Go toolchain on PATH); it is not optional")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn go_sumdb_tlog_accepts_our_proofs_checkpoints_and_tiles() {
    // Enough entries for full and partial tiles on levels 0 and 1 and a partial level-2 tile.
    const OLD: u64 = 40_000;
    const SIZE: u64 = 65_536 + 300 + 7;
    let (dir, mut log) = common::log_with(OLD, 4096);
    let old_checkpoint = log.checkpoint().as_bytes().to_vec();
    let early = log.prove(12_345).unwrap();
    let more: Vec<Vec<u8>> = (OLD..SIZE).map(entry).collect();
    for chunk in more.chunks(4096) {
        log.append_batch(chunk).unwrap();
    }
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = files.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let vkey = log.key().vkey().to_owned();
    let index = 65_600u64;
    let proof = write(
        "latest.tlog-proof",
        &log.prove(index).unwrap().to_tlog_proof(),
    );
    let entry_file = write("entry", &entry(index));
    let old = write("old.checkpoint", &old_checkpoint);
    let server = spawn_server(dir.path(), SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let url = server.url();

    let out = go_run(&[
        "-vkey",
        &vkey,
        "-proof",
        &proof,
        "-entry",
        &entry_file,
        "-url",
        &url,
        "-old-checkpoint",
        &old,
    ]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    for want in [
        format!("ok inclusion index {index} tree {SIZE}"),
        format!("ok tiles: tree hash of size {SIZE} matches the served checkpoint"),
        format!("ok inclusion from tiles index {index} tree {SIZE}"),
        format!("ok entries: all {SIZE} entries from the bundles rebuild the checkpoint's root"),
        format!("ok consistency {OLD} -> {SIZE}"),
    ] {
        assert!(report.contains(&want), "missing {want:?} in\n{report}");
    }

    // A proof against the older checkpoint: verified against it, and that checkpoint is shown
    // consistent with the one served now.
    let early_proof = write("early.tlog-proof", &early.to_tlog_proof());
    let early_entry = write("early-entry", &entry(12_345));
    let out = go_run(&[
        "-vkey",
        &vkey,
        "-proof",
        &early_proof,
        "-entry",
        &early_entry,
        "-url",
        &url,
    ]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains(&format!("ok inclusion index 12345 tree {OLD}")),
        "{report}"
    );
    assert!(
        report.contains(&format!("ok consistency {OLD} -> {SIZE}")),
        "{report}"
    );

    // Refusals: another entry, a tampered proof hash, another log's key.
    let other_entry = write("other-entry", b"not the logged entry");
    let out = go_run(&["-vkey", &vkey, "-proof", &proof, "-entry", &other_entry]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("FAIL: inclusion proof"),
        "{}",
        text(&out)
    );

    let good = String::from_utf8(std::fs::read(&proof).unwrap()).unwrap();
    let line = good.lines().nth(2).unwrap().to_owned();
    let mut raw = base64_decode(&line);
    raw[0] ^= 1;
    let tampered = write(
        "tampered.tlog-proof",
        good.replacen(&line, &base64_encode(&raw), 1).as_bytes(),
    );
    let out = go_run(&["-vkey", &vkey, "-proof", &tampered, "-entry", &entry_file]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("FAIL: inclusion proof"),
        "{}",
        text(&out)
    );

    let stranger = common::new_key("example.org/test-log");
    let out = go_run(&[
        "-vkey",
        stranger.vkey(),
        "-proof",
        &proof,
        "-entry",
        &entry_file,
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("FAIL: proof checkpoint"),
        "{}",
        text(&out)
    );
    server.shutdown().unwrap();
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

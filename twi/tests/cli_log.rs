//! `twi log verify` as a monitor uses it, against a real log served over HTTP: a growing log is
//! consistent with the checkpoint saved earlier; a log that rewrote its history under the same key (a
//! fork) is refused with exit 1; an unreachable server or a bad key file is exit 2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Command, Output};

use twi_credential_composer::tlog::{spawn_server, Log, LogKey};

const ORIGIN: &str = "example.org/twi/cprov";

fn twi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twi"))
        .args(args)
        .output()
        .expect("running twi")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn append(log: &mut Log, tag: &str, range: std::ops::Range<u32>) {
    let entries: Vec<Vec<u8>> = range
        .map(|i| format!("{tag} record {i}").into_bytes())
        .collect();
    log.append_batch(&entries).unwrap();
}

fn verify(url: &str, vkey: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "log",
        "verify",
        "--json",
        "--url",
        url,
        "--log-key",
        vkey.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    twi(&args)
}

#[test]
fn a_monitor_accepts_growth_and_refuses_a_fork() {
    let tmp = tempfile::tempdir().unwrap();
    let key_text = {
        let key = LogKey::generate(ORIGIN, &mut rand_core::OsRng).unwrap();
        key.save_new(&tmp.path().join("log-key")).unwrap();
        key.vkey().to_owned()
    };
    let vkey = tmp.path().join("log-vkey.txt");
    std::fs::write(&vkey, &key_text).unwrap();
    let state = tmp.path().join("state");
    let state_s = state.to_str().unwrap().to_owned();

    // The honest log: 300 entries (a full tile and a partial one), served, checked, state saved.
    let dir = tmp.path().join("log");
    let mut log = Log::create(&dir, LogKey::load(&tmp.path().join("log-key")).unwrap()).unwrap();
    append(&mut log, "honest", 0..300);
    let server = spawn_server(&dir, "127.0.0.1:0".parse().unwrap()).unwrap();
    let url = server.url();
    let o = verify(&url, &vkey, &["--entries", "--save-checkpoint", &state_s]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            v["consistent"].as_bool(),
            v["size"].as_u64(),
            v["entries_checked"].as_u64()
        ),
        (Some(true), Some(300), Some(300)),
        "{v}"
    );

    // It grows: consistent with the saved checkpoint, and the state moves on.
    append(&mut log, "honest", 300..420);
    let o = verify(
        &url,
        &vkey,
        &["--old-checkpoint", &state_s, "--save-checkpoint", &state_s],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["old_size"].as_u64(), v["size"].as_u64()),
        (Some(300), Some(420))
    );
    server.shutdown().unwrap();
    drop(log);

    // A fork: the same key signs a log whose history differs (entry 7 rewritten). Its own checkpoint
    // verifies, but it does not extend what the monitor saw.
    let fork_dir = tmp.path().join("fork");
    let mut fork = Log::create(
        &fork_dir,
        LogKey::load(&tmp.path().join("log-key")).unwrap(),
    )
    .unwrap();
    append(&mut fork, "honest", 0..7);
    append(&mut fork, "rewritten", 7..8);
    append(&mut fork, "honest", 8..500);
    let server = spawn_server(&fork_dir, "127.0.0.1:0".parse().unwrap()).unwrap();
    let o = verify(&server.url(), &vkey, &["--old-checkpoint", &state_s]);
    assert_eq!(o.status.code(), Some(1), "a fork passed: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["consistent"], false);
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");

    // Another log's key: the checkpoint signature does not verify.
    let other = tmp.path().join("other-vkey.txt");
    let other_key = LogKey::generate(ORIGIN, &mut rand_core::OsRng).unwrap();
    std::fs::write(&other, other_key.vkey()).unwrap();
    let o = verify(&server.url(), &other, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    server.shutdown().unwrap();

    // Nothing listening, or a key file that is not a key: input errors.
    let o = verify("http://127.0.0.1:9/", &vkey, &["--timeout", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    std::fs::write(tmp.path().join("junk"), "not a key").unwrap();
    let o = verify(&url, &tmp.path().join("junk"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

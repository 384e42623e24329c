//! `PolicyFile`: a change takes effect at the next `current()`, a broken or missing file refuses
//! (fail closed) until it is fixed, and an unchanged file is not re-parsed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use twi_core::policy::{Policy, PolicyError, PolicyFile, PolicySource, Reload};

fn doc(version: &str, measurement_byte: &str) -> String {
    format!(
        "id = \"fleet\"\nversion = \"{version}\"\nsnp {{\n  allowed_measurements = [\"{}\"]\n}}\n",
        measurement_byte.repeat(48)
    )
}

/// Writes `text` so that the stamp surely differs from the previous write: a new file moved into place
/// (new inode), as operators are told to install policies, with an mtime one second further on.
fn install(path: &Path, text: &str, step: u64) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    let f = std::fs::File::options().write(true).open(&tmp).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + step))
        .unwrap();
    drop(f);
    std::fs::rename(&tmp, path).unwrap();
}

/// Rewrites `path` in place (same inode), as an editor without atomic save would.
fn overwrite(path: &Path, text: &str, step: u64) {
    std::fs::write(path, text).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + step))
        .unwrap();
}

#[test]
fn a_change_takes_effect_and_a_broken_file_refuses_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.hcl");
    install(&path, &doc("1", "aa"), 0);
    let file = PolicyFile::open(&path).unwrap();
    let v1 = file.current().unwrap();
    assert_eq!(v1.version(), "1");
    assert_eq!(file.poll().unwrap().1, Reload::Unchanged);
    // Unchanged: the very same Arc, no re-parse.
    assert!(Arc::ptr_eq(&v1, &file.current().unwrap()));

    // A new version is picked up at the next call.
    install(&path, &doc("2", "bb"), 1);
    let (v2, reload) = file.poll().unwrap();
    assert_eq!(v2.version(), "2");
    assert_eq!(
        reload,
        Reload::Reloaded {
            previous: Some(v1.digest())
        }
    );
    assert_eq!(
        v2.snp_policy().unwrap().allowed_measurements,
        vec![[0xbb; 48]]
    );
    // The Arc an attestation already holds is not changed under it.
    assert_eq!(v1.version(), "1");

    // A broken change: refused, naming the file and the key; the old policy is NOT used.
    let broken = doc("3", "cc").replace("allowed_measurements", "allowed_measurement");
    overwrite(&path, &broken, 2);
    for _ in 0..3 {
        let e = file.current().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("`snp.allowed_measurement`"), "{msg}");
        assert!(matches!(e.root(), PolicyError::UnknownKey { .. }), "{e}");
    }

    // Fixed: accepted again; `previous` is None because no policy was in force just before.
    overwrite(&path, &doc("3", "cc"), 3);
    let (v3, reload) = file.poll().unwrap();
    assert_eq!(v3.version(), "3");
    assert_eq!(reload, Reload::Reloaded { previous: None });

    // Gone: refused (a deleted policy does not mean "no policy"), then back.
    std::fs::remove_file(&path).unwrap();
    let e = file.current().unwrap_err();
    assert!(matches!(e, PolicyError::Io { .. }), "{e}");
    assert!(e.to_string().contains("policy.hcl"), "{e}");
    install(&path, &doc("4", "dd"), 4);
    assert_eq!(file.current().unwrap().version(), "4");
}

#[test]
fn same_bytes_rewritten_keep_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    let json = Policy::parse(&doc("1", "aa"))
        .unwrap()
        .canonical_json()
        .to_owned();
    install(&path, &json, 0);
    let file = PolicyFile::open(&path).unwrap();
    let before = file.current().unwrap();
    let sha = file.file_sha256();
    install(&path, &json, 1);
    let (after, reload) = file.poll().unwrap();
    assert_eq!(reload, Reload::Unchanged);
    assert!(Arc::ptr_eq(&before, &after));
    assert_eq!(file.file_sha256(), sha);
    // Reformatted (HCL text in a .hcl file): a new file, same policy digest.
    let hcl_path = dir.path().join("policy.hcl");
    install(&hcl_path, &doc("1", "AA"), 2);
    let hcl = PolicyFile::open(&hcl_path).unwrap();
    assert_eq!(hcl.current().unwrap().digest(), before.digest());
    assert_ne!(hcl.file_sha256(), sha);
}

#[test]
fn open_refuses_a_broken_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.hcl");
    install(
        &path,
        "id = \"p\"\nversion = \"1\"\ntdx {\n  mrtd = [\"abcd\"]\n}\n",
        0,
    );
    let e = PolicyFile::open(&path).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("policy file {}", path.display())),
        "{msg}"
    );
    assert!(
        msg.contains("`tdx.mrtd[0]`") && msg.contains("4 hex digits (2 bytes)"),
        "{msg}"
    );
    // Policy::load says the same.
    assert_eq!(Policy::load(&path).unwrap_err().to_string(), msg);
    assert!(PolicyFile::open(dir.path().join("absent.hcl")).is_err());
    // The extension decides the format: JSON text in a .hcl file is a syntax error.
    install(&path, r#"{"id":"p","version":"1"}"#, 1);
    assert!(matches!(
        Policy::load(&path).unwrap_err().root(),
        PolicyError::Syntax { .. }
    ));
    let other = dir.path().join("policy.conf");
    install(&other, r#"{"id":"p","version":"1"}"#, 2);
    assert_eq!(Policy::load(&other).unwrap().id(), "p");
}

#[test]
fn concurrent_readers_see_whole_policies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.hcl");
    install(&path, &doc("0", "00"), 0);
    let source = Arc::new(PolicySource::File(PolicyFile::open(&path).unwrap()));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let source = Arc::clone(&source);
            std::thread::spawn(move || {
                let mut seen = 0u32;
                for _ in 0..2000 {
                    // Every policy handed out is one of the installed versions, whole.
                    if let Ok(p) = source.current() {
                        let v: u32 = p.version().parse().unwrap();
                        let want = format!("{v:02}");
                        assert_eq!(
                            p.snp_policy().unwrap().allowed_measurements,
                            vec![[u8::from_str_radix(&want, 16).unwrap(); 48]]
                        );
                        seen = seen.max(v);
                    }
                }
                seen
            })
        })
        .collect();
    for step in 1..=20u64 {
        install(&path, &doc(&step.to_string(), &format!("{step:02}")), step);
    }
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(source.current().unwrap().version(), "20");
    let inline = PolicySource::Inline(Arc::new(Policy::parse(&doc("9", "09")).unwrap()));
    assert_eq!(inline.current().unwrap().version(), "9");
}

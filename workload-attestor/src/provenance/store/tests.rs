#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::provenance::jcs;
use crate::provenance::testing::{self, Signer};
use serde_json::json;
use sha2::{Digest as _, Sha256};

const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
const REPO: &str = "https://github.com/twi-spire/app";
const COMMIT: &str = "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d";

/// A temp store for the digest of `b"the app"`, with a trusted signer `ci`.
struct Fixture {
    dir: tempfile::TempDir,
    ci: Signer,
    digest: Sha256Digest,
}

impl Fixture {
    fn new() -> Self {
        Self::with_signer(Signer::generate("ci"))
    }

    fn with_signer(ci: Signer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            dir,
            ci,
            digest: Sha256::digest(b"the app").into(),
        }
    }

    fn root(&self) -> PathBuf {
        fs::canonicalize(self.dir.path()).unwrap()
    }

    fn hex(&self) -> String {
        hex::encode(self.digest)
    }

    fn digest_dir(&self) -> PathBuf {
        let d = self.root().join("sha256").join(self.hex());
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn store(&self) -> DsseStore {
        self.store_with(16, 1 << 20)
    }

    fn store_with(&self, max_attestations: usize, max_bytes: u64) -> DsseStore {
        DsseStore::with_keys(
            self.root(),
            vec![self.ci.trusted_key().unwrap()],
            max_bytes,
            max_attestations,
            8,
        )
    }

    fn provenance(&self) -> Value {
        testing::statement(
            "app",
            &self.hex(),
            slsa::SLSA_V1,
            testing::slsa_v1_predicate(BUILDER, REPO, "refs/heads/main", COMMIT),
        )
    }

    fn put(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.digest_dir().join(name);
        fs::write(&p, content).unwrap();
        p
    }

    fn put_signed(&self, name: &str, signer: &Signer, statement: &Value) -> PathBuf {
        self.put(
            name,
            signer.envelope(statement.to_string().as_bytes()).as_bytes(),
        )
    }
}

fn only(f: &Findings) -> &Verdict {
    assert_eq!(f.examined.len(), 1, "{f:#?}");
    &f.examined[0].verdict
}

fn reason(v: &Verdict) -> &str {
    match v {
        Verdict::Rejected { reason } | Verdict::Ignored { reason } => reason,
        Verdict::Used { .. } => panic!("used: {v:?}"),
    }
}

#[test]
fn signed_slsa_provenance_gives_its_selectors() {
    let fx = Fixture::new();
    fx.put_signed("build.json", &fx.ci, &fx.provenance());
    let f = fx.store().lookup(&fx.digest);
    assert_eq!(
        f.selectors,
        vec![
            "provenance:verified:true".to_owned(),
            "provenance:signer:ci".into(),
            format!("slsa:builder:{BUILDER}"),
            "slsa:build_type:https://actions.github.io/buildtypes/workflow/v1".into(),
            format!("slsa:source:{REPO}"),
            "slsa:source_ref:refs/heads/main".into(),
            format!("slsa:commit:{COMMIT}"),
        ]
    );
    assert!(f.skipped.is_empty());
    match only(&f) {
        Verdict::Used {
            signers,
            predicate_type,
            subject_name,
            notes,
            sbom,
            ..
        } => {
            assert_eq!(signers, &["ci"]);
            assert_eq!(predicate_type, slsa::SLSA_V1);
            assert_eq!(subject_name.as_deref(), Some("app"));
            assert!(notes.is_empty());
            assert!(sbom.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert!(f.examined[0].origin.ends_with("/build.json"));
}

#[test]
fn build_level_comes_from_the_key_and_means_every_level_up_to_it() {
    let fx = Fixture::with_signer(Signer::generate("ci").with_build_level(2));
    fx.put_signed("build.json", &fx.ci, &fx.provenance());
    let sel = fx.store().lookup(&fx.digest).selectors;
    let levels: Vec<&String> = sel
        .iter()
        .filter(|s| s.starts_with("slsa:build_level:"))
        .collect();
    assert_eq!(levels, ["slsa:build_level:1", "slsa:build_level:2"]);
    // Without a configured level, none is claimed.
    let fx = Fixture::new();
    fx.put_signed("build.json", &fx.ci, &fx.provenance());
    assert!(!fx
        .store()
        .lookup(&fx.digest)
        .selectors
        .iter()
        .any(|s| s.starts_with("slsa:build_level")));
}

#[test]
fn sboms_are_recorded_by_canonical_digest() {
    let fx = Fixture::new();
    let bom = testing::cyclonedx_bom(4);
    fx.put_signed(
        "sbom.cdx.json",
        &fx.ci,
        &testing::statement("app", &fx.hex(), "https://cyclonedx.org/bom", bom.clone()),
    );
    let spdx = json!({"spdxVersion": "SPDX-2.3", "packages": [{"name": "x"}]});
    fx.put_signed(
        "sbom.spdx.json",
        &fx.ci,
        &testing::statement("app", &fx.hex(), "https://spdx.dev/Document", spdx.clone()),
    );
    let f = fx.store().lookup(&fx.digest);
    let cdx = hex::encode(Sha256::digest(jcs::canonicalize(&bom)));
    let spd = hex::encode(Sha256::digest(jcs::canonicalize(&spdx)));
    assert_eq!(
        f.selectors,
        vec![
            "provenance:signer:ci".to_owned(),
            format!("sbom:sha256:{cdx}"),
            "sbom:format:cyclonedx".into(),
            format!("sbom:sha256:{spd}"),
            "sbom:format:spdx".into(),
        ],
        "an SBOM alone is not verified provenance"
    );
    let Verdict::Used { sbom: Some(s), .. } = &f.examined[0].verdict else {
        panic!("{f:?}")
    };
    assert_eq!(s.components, Some(4));
}

#[test]
fn unknown_key_tampered_payload_and_subject_mismatch_give_nothing() {
    let fx = Fixture::new();
    let stranger = Signer::generate("ci");
    fx.put_signed("a-unknown-key.json", &stranger, &fx.provenance());
    // Tampered: a valid envelope whose payload was changed after signing.
    let env = fx.ci.envelope(fx.provenance().to_string().as_bytes());
    let mut v: Value = serde_json::from_str(&env).unwrap();
    let mut st = fx.provenance();
    st["predicate"]["runDetails"]["builder"]["id"] = json!("https://evil.example/builder");
    v["payload"] = json!(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        st.to_string()
    ));
    fx.put("b-tampered.json", v.to_string().as_bytes());
    // Signed by the trusted key, but about another file.
    let other = testing::statement(
        "other",
        &"00".repeat(32),
        slsa::SLSA_V1,
        testing::slsa_v1_predicate(BUILDER, REPO, "refs/heads/main", COMMIT),
    );
    fx.put_signed("c-other-subject.json", &fx.ci, &other);
    let f = fx.store().lookup(&fx.digest);
    assert!(f.selectors.is_empty(), "{:?}", f.selectors);
    assert_eq!(f.skipped.len(), 3, "{:?}", f.skipped);
    assert!(
        f.skipped[0].contains("signed by no trusted key"),
        "{}",
        f.skipped[0]
    );
    assert!(
        f.skipped[1].contains("signed by no trusted key"),
        "{}",
        f.skipped[1]
    );
    assert!(
        f.skipped[2].contains("subject mismatch"),
        "{}",
        f.skipped[2]
    );
    assert!(f.skipped[2].contains(&format!("other sha256:{}", "00".repeat(32))));
    assert!(f.skipped[2].contains(&fx.hex()));
}

#[test]
fn one_good_attestation_among_bad_ones_still_counts() {
    let fx = Fixture::new();
    fx.put("a-garbage.json", b"{not json");
    fx.put_signed("b-good.json", &fx.ci, &fx.provenance());
    fx.put("c-notes.txt", b"hello");
    let f = fx.store().lookup(&fx.digest);
    assert!(f.selectors.contains(&"provenance:verified:true".to_owned()));
    assert_eq!(f.skipped.len(), 1);
    assert!(f.skipped[0].contains("not JSON"), "{}", f.skipped[0]);
    assert!(matches!(f.examined[2].verdict, Verdict::Ignored { .. }));
}

#[test]
fn malformed_predicates_and_other_types() {
    let fx = Fixture::new();
    let mut bad = fx.provenance();
    bad["predicate"]["runDetails"] = json!({});
    fx.put_signed("a.json", &fx.ci, &bad);
    fx.put_signed(
        "b.json",
        &fx.ci,
        &testing::statement(
            "app",
            &fx.hex(),
            "https://in-toto.io/attestation/vulns",
            json!({}),
        ),
    );
    let mut bad_type = fx.provenance();
    bad_type["_type"] = json!("https://in-toto.io/Statement/v9");
    fx.put_signed("c.json", &fx.ci, &bad_type);
    let f = fx.store().lookup(&fx.digest);
    assert!(f.selectors.is_empty());
    assert!(reason(&f.examined[0].verdict).contains("runDetails.builder.id"));
    assert!(matches!(f.examined[1].verdict, Verdict::Ignored { .. }));
    assert!(reason(&f.examined[1].verdict).contains("vulns"));
    assert!(reason(&f.examined[2].verdict).contains("Statement/v9"));
    assert_eq!(f.skipped.len(), 2);
}

#[test]
fn jsonl_lines_and_the_count_cap() {
    let fx = Fixture::new();
    let good = fx.ci.envelope(fx.provenance().to_string().as_bytes());
    let sbom = fx.ci.envelope(
        testing::statement(
            "app",
            &fx.hex(),
            "https://cyclonedx.org/bom",
            testing::cyclonedx_bom(1),
        )
        .to_string()
        .as_bytes(),
    );
    fx.put(
        "a.intoto.jsonl",
        format!("garbage\n\n{good}\n{sbom}\n").as_bytes(),
    );
    fx.put_signed("b.json", &fx.ci, &fx.provenance());
    let all = fx.store().lookup(&fx.digest);
    let origins: Vec<&str> = all
        .examined
        .iter()
        .map(|e| e.origin.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        origins,
        [
            "a.intoto.jsonl:1",
            "a.intoto.jsonl:3",
            "a.intoto.jsonl:4",
            "b.json"
        ]
    );
    assert!(all.selectors.iter().any(|s| s.starts_with("sbom:sha256:")));
    // Cap 2: the first two envelopes are read (garbage, provenance); the rest are listed, not read.
    let capped = fx.store_with(2, 1 << 20).lookup(&fx.digest);
    assert!(capped
        .selectors
        .contains(&"provenance:verified:true".to_owned()));
    assert!(!capped.selectors.iter().any(|s| s.starts_with("sbom:")));
    assert_eq!(capped.examined.len(), 4);
    for e in &capped.examined[2..] {
        assert!(reason(&e.verdict).contains("max_attestations = 2"), "{e:?}");
    }
}

#[test]
fn oversized_files_are_not_read() {
    let fx = Fixture::new();
    let p = fx.put_signed("big.json", &fx.ci, &fx.provenance());
    let size = fs::metadata(&p).unwrap().len();
    let f = fx.store_with(16, size - 1).lookup(&fx.digest);
    assert!(f.selectors.is_empty());
    assert!(
        reason(only(&f)).contains(&format!(
            "{size} bytes, over max_attestation_bytes = {}",
            size - 1
        )),
        "{f:?}"
    );
    assert!(!fx
        .store_with(16, size)
        .lookup(&fx.digest)
        .selectors
        .is_empty());
}

#[test]
fn symlinks_are_refused_wherever_they_are() {
    let fx = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let real = outside.path().join("build.json");
    fs::write(
        &real,
        fx.ci.envelope(fx.provenance().to_string().as_bytes()),
    )
    .unwrap();
    // 1. A file in the digest directory that links outside the store.
    std::os::unix::fs::symlink(&real, fx.digest_dir().join("link.json")).unwrap();
    let f = fx.store().lookup(&fx.digest);
    assert!(f.selectors.is_empty());
    assert!(reason(only(&f)).contains("symbolic link"), "{f:?}");
    // 2. The digest directory itself is a link to a directory holding a good attestation.
    fs::remove_dir_all(fx.root().join("sha256")).unwrap();
    fs::create_dir_all(fx.root().join("sha256")).unwrap();
    std::os::unix::fs::symlink(outside.path(), fx.root().join("sha256").join(fx.hex())).unwrap();
    let f = fx.store().lookup(&fx.digest);
    assert!(f.selectors.is_empty());
    assert!(reason(only(&f)).contains("symbolic link"), "{f:?}");
    // 3. `sha256` is a link.
    let elsewhere = tempfile::tempdir().unwrap();
    let d = elsewhere.path().join(fx.hex());
    fs::create_dir_all(&d).unwrap();
    fs::copy(&real, d.join("build.json")).unwrap();
    fs::remove_dir_all(fx.root().join("sha256")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), fx.root().join("sha256")).unwrap();
    let f = fx.store().lookup(&fx.digest);
    assert!(f.selectors.is_empty());
    assert!(reason(only(&f)).contains("symbolic link"), "{f:?}");
    // 4. A store root that is not canonical (configured through a link): every file then resolves
    //    elsewhere than its name says, which the /proc/self/fd check refuses.
    let via = tempfile::tempdir().unwrap();
    let root2 = tempfile::tempdir().unwrap();
    let d2 = root2.path().join("sha256").join(fx.hex());
    fs::create_dir_all(&d2).unwrap();
    fs::copy(&real, d2.join("build.json")).unwrap();
    let link2 = via.path().join("root2");
    std::os::unix::fs::symlink(root2.path(), &link2).unwrap();
    let store2 = DsseStore::with_keys(link2, vec![fx.ci.trusted_key().unwrap()], 1 << 20, 16, 0);
    let f = store2.lookup(&fx.digest);
    assert!(f.selectors.is_empty());
    assert!(reason(only(&f)).contains("resolves to"), "{f:?}");
}

#[test]
fn fifos_and_directories_do_not_block_or_count() {
    let fx = Fixture::new();
    let fifo = fx.digest_dir().join("pipe.json");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    fs::create_dir(fx.digest_dir().join("sub.json")).unwrap();
    let f = fx.store().lookup(&fx.digest);
    assert!(f.selectors.is_empty());
    assert_eq!(f.examined.len(), 2);
    assert!(
        f.examined
            .iter()
            .any(|e| reason(&e.verdict).contains("a FIFO")),
        "{f:?}"
    );
    assert!(
        f.examined
            .iter()
            .any(|e| reason(&e.verdict).contains("a directory")),
        "{f:?}"
    );
}

#[test]
fn no_directory_means_no_provenance_and_no_warning() {
    let fx = Fixture::new();
    assert_eq!(fx.store().lookup(&fx.digest), Findings::default());
    fs::create_dir_all(fx.root().join("sha256")).unwrap();
    assert_eq!(fx.store().lookup(&fx.digest), Findings::default());
    // A file where the digest directory should be is a store problem worth reporting.
    fs::write(fx.root().join("sha256").join(fx.hex()), b"x").unwrap();
    let f = fx.store().lookup(&fx.digest);
    assert!(reason(only(&f)).contains("not a directory"));
}

#[test]
fn sigstore_bundle_envelopes_are_verified_with_the_keys() {
    let fx = Fixture::new();
    let env: Value =
        serde_json::from_str(&fx.ci.envelope(fx.provenance().to_string().as_bytes())).unwrap();
    let bundle = json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "ci"}},
        "dsseEnvelope": env,
    });
    fx.put("att.sigstore.json", bundle.to_string().as_bytes());
    let msg = json!({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "messageSignature": {}});
    fx.put("msg.sigstore.json", msg.to_string().as_bytes());
    let f = fx.store().lookup(&fx.digest);
    assert!(f.selectors.contains(&"provenance:verified:true".to_owned()));
    let Verdict::Used { notes, .. } = &f.examined[0].verdict else {
        panic!("{f:?}")
    };
    assert!(notes[0].contains("transparency-log entries were not checked"));
    assert!(reason(&f.examined[1].verdict).contains("without a dsseEnvelope"));
}

#[test]
fn cache_hits_until_the_directory_changes() {
    let fx = Fixture::new();
    let store = fx.store();
    let p = fx.put_signed("a.json", &Signer::generate("stranger"), &fx.provenance());
    let first = store.lookup(&fx.digest);
    assert!(first.selectors.is_empty());
    assert_eq!(store.cached(), 1);
    assert_eq!(store.lookup(&fx.digest), first);
    // Replacing the file's content (same name) is seen.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&p, fx.ci.envelope(fx.provenance().to_string().as_bytes())).unwrap();
    let second = store.lookup(&fx.digest);
    assert!(second
        .selectors
        .contains(&"provenance:verified:true".to_owned()));
    // Removing it is seen.
    fs::remove_file(&p).unwrap();
    assert!(store.lookup(&fx.digest).selectors.is_empty());
}

#[test]
fn open_checks_store_and_keys() {
    use crate::config::{ProvenanceSettings, TrustedKeySettings};
    let fx = Fixture::new();
    let key_path = fx.root().join("ci.pub");
    fs::write(&key_path, fx.ci.public_key_pem()).unwrap();
    let settings = |store: PathBuf, key: PathBuf| ProvenanceSettings {
        store_dir: store,
        trusted_keys: vec![TrustedKeySettings {
            name: "ci".into(),
            public_key_path: key,
            key_id: None,
            build_level: None,
        }],
        max_attestation_bytes: 1 << 20,
        max_attestations: 4,
    };
    let s = DsseStore::open(&settings(fx.root(), key_path.clone()), 4).unwrap();
    assert_eq!(s.dir(), fx.root());
    assert!(
        s.describe().contains("trusted keys: ci"),
        "{}",
        s.describe()
    );
    let err = DsseStore::open(&settings(fx.root().join("missing"), key_path.clone()), 4)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid value for `provenance.store_dir`"),
        "{err}"
    );
    let err = DsseStore::open(&settings(key_path.clone(), key_path.clone()), 4)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a directory"), "{err}");
    let err = DsseStore::open(&settings(fx.root(), fx.root().join("nope.pub")), 4)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid value for `provenance.trusted_keys[0].public_key_path`"),
        "{err}"
    );
}

#[test]
fn every_documented_provenance_kind_is_emitted() {
    let fx = Fixture::with_signer(Signer::generate("ci").with_build_level(1));
    fx.put_signed("a.json", &fx.ci, &fx.provenance());
    fx.put_signed(
        "b.json",
        &fx.ci,
        &testing::statement(
            "app",
            &fx.hex(),
            "https://cyclonedx.org/bom/v1.5",
            testing::cyclonedx_bom(0),
        ),
    );
    let f = fx.store().lookup(&fx.digest);
    let mut kinds: Vec<&str> = Vec::new();
    for s in &f.selectors {
        let kind = crate::provenance::PROVENANCE_KINDS
            .iter()
            .find(|k| s.starts_with(&format!("{k}:")))
            .unwrap_or_else(|| panic!("{s} is of no documented kind"));
        if !kinds.contains(kind) {
            kinds.push(kind);
        }
    }
    let mut want = crate::provenance::PROVENANCE_KINDS.to_vec();
    want.sort_unstable();
    kinds.sort_unstable();
    assert_eq!(kinds, want);
}

#[test]
fn many_lines_and_blank_files_stay_bounded() {
    let fx = Fixture::new();
    // 200 000 one-byte "envelopes": two are judged, the rest are one summary entry.
    fx.put("a.jsonl", "x\n".repeat(200_000).as_bytes());
    let f = fx.store_with(2, 1 << 20).lookup(&fx.digest);
    assert_eq!(
        f.examined.len(),
        3,
        "{:?}",
        &f.examined[..3.min(f.examined.len())]
    );
    assert!(reason(&f.examined[2].verdict).starts_with("199998 more envelope(s) not read"));
    // Blank files count against the budget too, so they cannot make every file be read.
    let fx = Fixture::new();
    for i in 0..5 {
        fx.put(&format!("{i}.jsonl"), b"\n \n");
    }
    fx.put_signed("9.json", &fx.ci, &fx.provenance());
    let f = fx.store_with(3, 1 << 20).lookup(&fx.digest);
    assert!(f.selectors.is_empty(), "{f:?}");
    assert!(reason(&f.examined.last().unwrap().verdict).contains("were read already"));
}

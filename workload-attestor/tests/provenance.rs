//! Verified provenance through the plugin, loaded in-process and configured with HCL as SPIRE would: a
//! copied `sleep` whose digest has a signed SLSA provenance (made here with a fresh P-256 key) in a temp
//! store is attested as a running child process; the same binary changed by one byte, and a provenance
//! signed by a key the plugin does not trust, give the workload its other selectors and no provenance.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tonic::Code;
use twi_plugin::proto::workloadattestor::workload_attestor_client::WorkloadAttestorClient;
use twi_plugin::proto::workloadattestor::AttestRequest;
use twi_plugin::testing::{self, LoadedPlugin};
use twi_plugin::PluginType;
use twi_workload_attestor::provenance::testing::{self as signing, Signer};
use twi_workload_attestor::WorkloadAttestorPlugin;

const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
const REPO: &str = "https://github.com/twi-spire/sleeper";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn fresh_signer(name: &str) -> Signer {
    use rand_core::RngCore as _;
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut secret);
    Signer::from_secret(name, &secret).unwrap()
}

fn sleep_binary() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("sleep"))
                .find(|p| p.is_file())
        })
        .expect("sleep on PATH")
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// A child process running `binary`, killed on drop.
struct Running(Child);

impl Running {
    fn spawn(binary: &Path) -> Self {
        // A copy just written may still be open for writing in a child forked by a parallel test
        // (ETXTBSY); retry briefly.
        for _ in 0..50 {
            match Command::new(binary).arg("300").stdin(Stdio::null()).spawn() {
                Ok(c) => return Self(c),
                Err(e) if e.raw_os_error() == Some(26) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("spawning {}: {e}", binary.display()),
            }
        }
        panic!("{} stayed busy", binary.display());
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temp dir with a store, a trusted key file and copies of `sleep`.
struct Setup {
    dir: tempfile::TempDir,
    ci: Signer,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        let ci = fresh_signer("ci").with_build_level(2);
        std::fs::write(dir.path().join("ci.pub"), ci.public_key_pem()).unwrap();
        Self { dir, ci }
    }

    /// A copy of `sleep`, plus `extra` bytes at its end (an ELF loader ignores them).
    fn copy(&self, name: &str, extra: &[u8]) -> PathBuf {
        let mut bytes = std::fs::read(sleep_binary()).unwrap();
        bytes.extend_from_slice(extra);
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).unwrap();
        std::fs::canonicalize(p).unwrap()
    }

    /// Files a provenance for `binary`, signed by `signer`.
    fn attest(&self, binary: &Path, signer: &Signer) {
        let hex = sha256_hex(binary);
        let d = self.dir.path().join("store/sha256").join(&hex);
        std::fs::create_dir_all(&d).unwrap();
        let statement = signing::statement(
            binary.file_name().unwrap().to_str().unwrap(),
            &hex,
            "https://slsa.dev/provenance/v1",
            signing::slsa_v1_predicate(BUILDER, REPO, "refs/heads/main", COMMIT),
        );
        std::fs::write(
            d.join(format!("{}.json", signer.name())),
            signer.envelope(statement.to_string().as_bytes()),
        )
        .unwrap();
    }

    fn hcl(&self) -> String {
        format!(
            "provenance {{\n  store_dir = {:?}\n  trusted_keys = [\n    {{ name = \"ci\", public_key_path = {:?}, build_level = 2 }},\n  ]\n}}\n",
            self.dir.path().join("store").to_str().unwrap(),
            self.dir.path().join("ci.pub").to_str().unwrap(),
        )
    }
}

async fn loaded() -> LoadedPlugin {
    let plugin = WorkloadAttestorPlugin::new();
    let loaded = testing::load(
        PluginType::AgentWorkloadAttestor,
        plugin.service(),
        plugin.config_handler(),
    )
    .await
    .unwrap();
    loaded.init().await.unwrap();
    loaded
}

async fn attest(loaded: &LoadedPlugin, pid: i32) -> Vec<String> {
    WorkloadAttestorClient::new(loaded.channel.clone())
        .attest(AttestRequest { pid })
        .await
        .unwrap()
        .into_inner()
        .selector_values
}

fn provenance_of(selectors: &[String]) -> Vec<&str> {
    selectors
        .iter()
        .map(String::as_str)
        .filter(|s| {
            ["provenance:", "slsa:", "sbom:"]
                .iter()
                .any(|p| s.starts_with(p))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_provenance_becomes_selectors_of_the_running_process() {
    let setup = Setup::new();
    let good = setup.copy("sleeper", b"");
    let changed = setup.copy("sleeper-changed", b"\0");
    let foreign = setup.copy("sleeper-foreign", b"\0\0");
    setup.attest(&good, &setup.ci);
    // The changed binary has no provenance of its own; the foreign one is signed by a stranger.
    setup.attest(&foreign, &fresh_signer("stranger"));

    let plugin = loaded().await;
    plugin.configure("example.org", &setup.hcl()).await.unwrap();

    let p = Running::spawn(&good);
    let s = attest(&plugin, p.pid()).await;
    assert_eq!(
        provenance_of(&s),
        vec![
            "provenance:verified:true".to_owned(),
            "provenance:signer:ci".into(),
            format!("slsa:builder:{BUILDER}"),
            "slsa:build_type:https://actions.github.io/buildtypes/workflow/v1".into(),
            format!("slsa:source:{REPO}"),
            "slsa:source_ref:refs/heads/main".into(),
            format!("slsa:commit:{COMMIT}"),
            "slsa:build_level:1".into(),
            "slsa:build_level:2".into(),
        ]
    );
    assert!(
        s.contains(&format!("sha256:{}", sha256_hex(&good))),
        "{s:?}"
    );
    assert!(s.contains(&format!("path:{}", good.display())), "{s:?}");

    for (binary, why) in [(&changed, "changed binary"), (&foreign, "unknown key")] {
        let p = Running::spawn(binary);
        let s = attest(&plugin, p.pid()).await;
        assert!(provenance_of(&s).is_empty(), "{why}: {s:?}");
        assert!(
            s.contains(&format!("sha256:{}", sha256_hex(binary))),
            "{why}: the other selectors stay: {s:?}"
        );
        assert!(s.iter().any(|v| v.starts_with("uid:")), "{why}: {s:?}");
    }

    // Same binary, provenance now removed from the store: seen at the next attestation.
    let d = setup
        .dir
        .path()
        .join("store/sha256")
        .join(sha256_hex(&good));
    std::fs::remove_dir_all(d).unwrap();
    assert!(provenance_of(&attest(&plugin, p.pid()).await).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn configure_refuses_unusable_provenance_settings() {
    let setup = Setup::new();
    let plugin = loaded().await;
    let cases = [
        (
            setup.hcl().replace("ci.pub", "missing.pub"),
            "provenance.trusted_keys[0].public_key_path",
        ),
        (
            setup.hcl().replace("/store", "/no-store"),
            "provenance.store_dir",
        ),
        (
            setup.hcl().replace("build_level = 2", "build_level = 7"),
            "provenance.trusted_keys[0].build_level",
        ),
    ];
    for (hcl, key) in cases {
        let err = plugin.configure("example.org", &hcl).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{hcl}");
        assert!(err.message().contains(key), "{hcl}: {}", err.message());
    }
    // An Ed25519 key is refused, saying so.
    std::fs::write(
        setup.dir.path().join("ci.pub"),
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let err = plugin
        .configure("example.org", &setup.hcl())
        .await
        .unwrap_err();
    assert!(err.message().contains("Ed25519"), "{}", err.message());
}

//! The WorkloadAttestor loaded in-process (as SPIRE's `plugintest.Load` would) and asked about real
//! processes: this test's own and a spawned `sleep`. Expected values come from outside the plugin: `id`
//! for users and groups, the PATH lookup for `sleep`, SHA-256 of the file's bytes as read by std.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tonic::Code;
use twi_plugin::proto::workloadattestor::workload_attestor_client::WorkloadAttestorClient;
use twi_plugin::proto::workloadattestor::{AttestReferenceRequest, AttestRequest};
use twi_plugin::testing::{self, LoadedPlugin};
use twi_plugin::PluginType;
use twi_workload_attestor::plugin::WorkloadPidReference;
use twi_workload_attestor::WorkloadAttestorPlugin;

const TRUST_DOMAIN: &str = "example.org";
const SERVICE: &str = "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor";

async fn loaded() -> LoadedPlugin {
    let plugin = WorkloadAttestorPlugin::new();
    let loaded = testing::load(
        PluginType::AgentWorkloadAttestor,
        plugin.service(),
        plugin.config_handler(),
    )
    .await
    .unwrap();
    let names = loaded.init().await.unwrap();
    assert!(names.contains(&SERVICE.to_owned()), "{names:?}");
    loaded
}

async fn configured(hcl: &str) -> LoadedPlugin {
    let loaded = loaded().await;
    loaded.configure(TRUST_DOMAIN, hcl).await.unwrap();
    loaded
}

fn client(loaded: &LoadedPlugin) -> WorkloadAttestorClient<tonic::transport::Channel> {
    WorkloadAttestorClient::new(loaded.channel.clone())
}

async fn attest(loaded: &LoadedPlugin, pid: u32) -> Result<Vec<String>, tonic::Status> {
    let pid = i32::try_from(pid).unwrap();
    client(loaded)
        .attest(AttestRequest { pid })
        .await
        .map(|r| r.into_inner().selector_values)
}

/// `id <flag> <pid's user>` output, trimmed; `None` if `id` fails (e.g. no name for the ID).
fn id(args: &[&str]) -> Option<String> {
    let out = Command::new("id").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn sha256_hex(path: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn values_of<'a>(selectors: &'a [String], kind: &str) -> Vec<&'a str> {
    let prefix = format!("{kind}:");
    selectors
        .iter()
        .filter_map(|s| s.strip_prefix(&prefix))
        .collect()
}

/// Checks uid/gid/groups/user/group against `id` (this test and its children run as one user).
fn assert_identity_matches_id(selectors: &[String]) {
    let uid = id(&["-u"]).unwrap();
    let gid = id(&["-g"]).unwrap();
    assert_eq!(
        values_of(selectors, "uid"),
        vec![uid.as_str()],
        "{selectors:?}"
    );
    assert_eq!(
        values_of(selectors, "gid"),
        vec![gid.as_str()],
        "{selectors:?}"
    );
    // `id -G` lists the effective group and the supplementary ones.
    let id_groups: BTreeSet<String> = id(&["-G"])
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut ours: BTreeSet<String> = values_of(selectors, "supplementary_gid")
        .into_iter()
        .map(str::to_owned)
        .collect();
    ours.insert(gid.clone());
    assert_eq!(ours, id_groups, "{selectors:?}");
    if let Some(user) = id(&["-un"]) {
        assert_eq!(values_of(selectors, "user"), vec![user.as_str()]);
    }
    if let Some(group) = id(&["-gn"]) {
        assert_eq!(values_of(selectors, "group"), vec![group.as_str()]);
    }
}

/// The `sleep` that PATH resolves to, with symlinks resolved (what `/proc/<pid>/exe` shows).
fn sleep_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|d| d.join("sleep"))
        .find(|p| p.is_file())
        .map(|p| std::fs::canonicalize(p).unwrap())
        .expect("sleep on PATH")
}

/// A child `sleep` that is killed when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn spawn() -> Self {
        // `spawn` returns after the child's exec succeeded, so /proc/<pid>/exe is already `sleep`.
        let child = Command::new(sleep_binary())
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn own_process_matches_what_std_and_id_report() {
    let loaded = configured("").await;
    let s = attest(&loaded, std::process::id()).await.unwrap();
    assert_identity_matches_id(&s);
    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    assert_eq!(values_of(&s, "path"), vec![exe.to_str().unwrap()]);
    assert_eq!(values_of(&s, "sha256"), vec![sha256_hex(&exe).as_str()]);
    let cgroups = values_of(&s, "cgroup");
    assert!(!cgroups.is_empty(), "{s:?}");
    assert!(cgroups.iter().all(|c| c.starts_with('/')), "{cgroups:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn spawned_sleep_matches_its_binary() {
    let loaded = configured("").await;
    let child = Sleeper::spawn();
    let s = attest(&loaded, child.pid()).await.unwrap();
    assert_identity_matches_id(&s);
    let sleep = sleep_binary();
    assert_eq!(values_of(&s, "path"), vec![sleep.to_str().unwrap()]);
    assert_eq!(values_of(&s, "sha256"), vec![sha256_hex(&sleep).as_str()]);
    // Asked again (now from the digest cache), the answer is the same.
    assert_eq!(attest(&loaded, child.pid()).await.unwrap(), s);
    // And concurrently, as SPIRE calls attestors.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let c = client(&loaded);
        let pid = i32::try_from(child.pid()).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut c = c;
            c.attest(AttestRequest { pid })
                .await
                .unwrap()
                .into_inner()
                .selector_values
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), s);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exited_and_zombie_processes_are_not_found() {
    let loaded = configured("").await;
    let mut child = Command::new(sleep_binary()).arg("300").spawn().unwrap();
    let pid = child.id();
    child.kill().unwrap();
    // Not reaped yet: a zombie once the kill lands. Wait for state Z.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        if stat.rsplit_once(") ").unwrap().1.starts_with('Z') {
            break;
        }
        assert!(Instant::now() < deadline, "child never became a zombie");
        std::thread::sleep(Duration::from_millis(5));
    }
    let err = attest(&loaded, pid).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message()
            .contains(&format!("process {pid} has no executable")),
        "{}",
        err.message()
    );
    // Reaped: the PID is gone.
    child.wait().unwrap();
    let err = attest(&loaded, pid).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message().contains(&format!("process {pid} not found")),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_pids_and_unconfigured() {
    let loaded = loaded().await;
    let err = attest(&loaded, std::process::id()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    loaded.configure(TRUST_DOMAIN, "").await.unwrap();
    for pid in [0, -1, i32::MIN] {
        let err = client(&loaded)
            .attest(AttestRequest { pid })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{pid}: {err:?}");
        assert!(
            err.message().contains(&format!("invalid pid {pid}")),
            "{}",
            err.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_errors_name_the_key() {
    let loaded = loaded().await;
    let err = loaded
        .configure(TRUST_DOMAIN, "discover_workload_path = true")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("unknown key `discover_workload_path`"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("discover_path"),
        "lists the known keys: {}",
        err.message()
    );
    let err = loaded
        .configure(TRUST_DOMAIN, "proc_root = \"/no/such/proc\"")
        .await
        .unwrap_err();
    assert!(
        err.message().starts_with("invalid value for `proc_root`"),
        "{}",
        err.message()
    );
    // Validate reports the same as a note and leaves the plugin unconfigured.
    let v = loaded
        .validate(TRUST_DOMAIN, "max_digest_bytes = 0")
        .await
        .unwrap();
    assert!(!v.valid);
    assert!(
        v.notes[0].starts_with("invalid value for `max_digest_bytes`"),
        "{:?}",
        v.notes
    );
    let ok = loaded
        .validate(TRUST_DOMAIN, "cache_entries = 8")
        .await
        .unwrap();
    assert!(ok.valid, "{:?}", ok.notes);
    assert_eq!(
        attest(&loaded, std::process::id())
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_change_what_is_emitted() {
    let loaded = configured("discover_path = false\ndiscover_digest = false").await;
    let s = attest(&loaded, std::process::id()).await.unwrap();
    assert!(
        values_of(&s, "path").is_empty() && values_of(&s, "sha256").is_empty(),
        "{s:?}"
    );
    assert!(!values_of(&s, "uid").is_empty());
    // A limit below this test binary's size refuses the digest with the key named.
    let exe_size = std::fs::metadata(std::env::current_exe().unwrap())
        .unwrap()
        .len();
    loaded
        .configure(
            TRUST_DOMAIN,
            &format!("max_digest_bytes = {}", exe_size - 1),
        )
        .await
        .unwrap();
    let err = attest(&loaded, std::process::id()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("max_digest_bytes"),
        "{}",
        err.message()
    );
    // A fake /proc through proc_root: the PID that exists there is attested from there.
    let fake = tempfile::tempdir().unwrap();
    let p = fake.path().join("12345");
    std::fs::create_dir(&p).unwrap();
    std::fs::write(
        p.join("stat"),
        "12345 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 1 1\n",
    )
    .unwrap();
    std::fs::write(
        p.join("status"),
        "Uid:\t7\t7\t7\t7\nGid:\t8\t8\t8\t8\nGroups:\n",
    )
    .unwrap();
    std::fs::write(p.join("cgroup"), "0::/fake.slice\n").unwrap();
    loaded
        .configure(
            TRUST_DOMAIN,
            &format!(
                "proc_root = \"{}\"\ndiscover_path = false\ndiscover_digest = false",
                fake.path().display()
            ),
        )
        .await
        .unwrap();
    let s = attest(&loaded, 12345).await.unwrap();
    assert_eq!(values_of(&s, "uid"), vec!["7"]);
    assert_eq!(values_of(&s, "gid"), vec!["8"]);
    assert_eq!(values_of(&s, "cgroup"), vec!["/fake.slice"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn attest_reference_answers_pid_references_like_attest() {
    let loaded = configured("").await;
    let child = Sleeper::spawn();
    let by_pid = attest(&loaded, child.pid()).await.unwrap();
    let reference = |type_url: &str, pid: i32| AttestReferenceRequest {
        reference: Some(prost_types::Any {
            type_url: type_url.to_owned(),
            value: prost::Message::encode_to_vec(&WorkloadPidReference { pid }),
        }),
    };
    let url = "type.googleapis.com/spiffe.broker.WorkloadPIDReference";
    let pid = i32::try_from(child.pid()).unwrap();
    let by_ref = client(&loaded)
        .attest_reference(reference(url, pid))
        .await
        .unwrap()
        .into_inner()
        .selector_values;
    assert_eq!(by_ref, by_pid);
    let other = client(&loaded)
        .attest_reference(reference(
            "type.googleapis.com/spiffe.broker.KubernetesObjectReference",
            pid,
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument);
    assert!(
        other.message().contains("unsupported reference type"),
        "{}",
        other.message()
    );
    let missing = client(&loaded)
        .attest_reference(AttestReferenceRequest { reference: None })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    let zero = client(&loaded)
        .attest_reference(reference(url, 0))
        .await
        .unwrap_err();
    assert_eq!(zero.code(), Code::InvalidArgument);
}

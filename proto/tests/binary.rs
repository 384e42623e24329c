//! The real process path: `examples/echo_plugin.rs` launched the way go-plugin launches it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};
use twi_plugin::proto::go_plugin::grpc_controller_client::GrpcControllerClient;
use twi_plugin::proto::go_plugin::Empty;
use twi_plugin::proto::init::init_client::InitClient;
use twi_plugin::proto::init::InitRequest;
use twi_plugin::proto::workloadattestor::workload_attestor_client::WorkloadAttestorClient;
use twi_plugin::proto::workloadattestor::AttestRequest;

/// `cargo test` builds examples next to `deps/`, where this test binary lives.
fn echo_plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join("echo_plugin")
}

fn plugin_command() -> Command {
    let mut cmd = Command::new(echo_plugin());
    cmd.env_remove("WorkloadAttestor")
        .env_remove("PLUGIN_PROTOCOL_VERSIONS")
        .env_remove("TWI_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn run_by_hand_prints_a_hint_and_exits_1() {
    let out = plugin_command().output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing may reach stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not meant to be executed directly"), "{err}");
    assert!(err.contains("`WorkloadAttestor`"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn launched_like_spire_it_handshakes_serves_and_exits_on_shutdown() {
    let sock_parent = tempfile::tempdir().unwrap();
    let mut child = plugin_command()
        .env("WorkloadAttestor", "WorkloadAttestor")
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env("PLUGIN_UNIX_SOCKET_DIR", sock_parent.path())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let fields: Vec<&str> = line.trim_end_matches('\n').split('|').collect();
    assert_eq!(fields.len(), 6, "{line:?}");
    assert_eq!(&fields[..3], &["1", "1", "unix"]);
    assert_eq!(&fields[4..], &["grpc", ""]);
    let socket = PathBuf::from(fields[3]);
    assert!(socket.starts_with(sock_parent.path()), "{socket:?}");

    let path = socket.clone();
    let channel = Endpoint::from_static("http://unused")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap();
    let names = InitClient::new(channel.clone())
        .init(InitRequest {
            host_service_names: vec!["spire.hostservice.common.metrics.v1.Metrics".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .plugin_service_names;
    assert_eq!(
        names[0],
        "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor"
    );

    let mut wa = WorkloadAttestorClient::new(channel.clone());
    let err = wa.attest(AttestRequest { pid: 1 }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    GrpcControllerClient::new(channel)
        .shutdown(Empty {})
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "plugin did not exit within SPIRE's 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "socket left behind");
    assert!(!socket.parent().unwrap().exists(), "socket dir left behind");

    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.is_empty(), "stdout after handshake: {rest:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!stderr.is_empty());
    for l in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        for key in ["@level", "@message", "@timestamp", "@module"] {
            assert!(v[key].is_string(), "{key} in {l}");
        }
    }
}

#[test]
fn sigterm_stops_and_sigint_is_ignored() {
    let sock_parent = tempfile::tempdir().unwrap();
    let mut child = plugin_command()
        .env("WorkloadAttestor", "WorkloadAttestor")
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env("PLUGIN_UNIX_SOCKET_DIR", sock_parent.path())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("1|1|unix|"), "{line:?}");
    let pid = child.id().to_string();

    let kill = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    kill("-INT");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGINT must not stop the plugin"
    );

    kill("-TERM");
    let deadline = Instant::now() + Duration::from_secs(2);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "plugin did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let mut entries = std::fs::read_dir(sock_parent.path()).unwrap();
    assert!(entries.next().is_none(), "socket dir left behind");
}

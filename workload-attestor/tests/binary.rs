//! The built `twi-agent-workloadattestor` launched the way spire-agent (go-plugin) launches it: handshake
//! line, Init, Configure, one Attest of this test's own PID, Shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};
use twi_plugin::proto::config::config_client::ConfigClient;
use twi_plugin::proto::config::{ConfigureRequest, CoreConfiguration};
use twi_plugin::proto::go_plugin::grpc_controller_client::GrpcControllerClient;
use twi_plugin::proto::go_plugin::Empty;
use twi_plugin::proto::init::init_client::InitClient;
use twi_plugin::proto::init::InitRequest;
use twi_plugin::proto::workloadattestor::workload_attestor_client::WorkloadAttestorClient;
use twi_plugin::proto::workloadattestor::AttestRequest;

const BIN: &str = env!("CARGO_BIN_EXE_twi-agent-workloadattestor");

fn plugin_command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("WorkloadAttestor")
        .env_remove("PLUGIN_PROTOCOL_VERSIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

#[test]
fn run_by_hand_exits_1() {
    let out = plugin_command().stderr(Stdio::piped()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`WorkloadAttestor`"));
}

#[tokio::test(flavor = "multi_thread")]
async fn launched_like_spire_it_attests_and_exits() {
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
    let fields: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(fields.len(), 6, "{line:?}");
    assert_eq!(&fields[..3], &["1", "1", "unix"]);
    let socket = PathBuf::from(fields[3]);
    let channel = Endpoint::from_static("http://unused")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap();

    let names = InitClient::new(channel.clone())
        .init(InitRequest {
            host_service_names: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .plugin_service_names;
    assert!(
        names.contains(&"spire.plugin.agent.workloadattestor.v1.WorkloadAttestor".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"spire.service.common.config.v1.Config".to_owned()),
        "{names:?}"
    );
    ConfigClient::new(channel.clone())
        .configure(ConfigureRequest {
            core_configuration: Some(CoreConfiguration {
                trust_domain: "example.org".into(),
            }),
            hcl_configuration: "cache_entries = 16".into(),
        })
        .await
        .unwrap();
    let pid = i32::try_from(std::process::id()).unwrap();
    let selectors = WorkloadAttestorClient::new(channel.clone())
        .attest(AttestRequest { pid })
        .await
        .unwrap()
        .into_inner()
        .selector_values;
    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    assert!(
        selectors.contains(&format!("path:{}", exe.display())),
        "{selectors:?}"
    );
    assert!(selectors.iter().any(|s| s.starts_with("sha256:")));

    GrpcControllerClient::new(channel)
        .shutdown(Empty {})
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "plugin did not exit within SPIRE's 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

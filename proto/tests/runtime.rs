//! The runtime as SPIRE sees it, driven in-process through `twi_plugin::testing`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tonic::{Code, Request, Response, Status};
use twi_plugin::proto::go_plugin::grpc_broker_client::GrpcBrokerClient;
use twi_plugin::proto::go_plugin::grpc_stdio_client::GrpcStdioClient;
use twi_plugin::proto::go_plugin::ConnInfo;
use twi_plugin::proto::health::health_check_response::ServingStatus;
use twi_plugin::proto::health::health_client::HealthClient;
use twi_plugin::proto::health::HealthCheckRequest;
use twi_plugin::proto::metrics::metrics_server::{Metrics, MetricsServer};
use twi_plugin::proto::metrics::{
    AddSampleRequest, EmitKeyRequest, IncrCounterRequest, MeasureSinceRequest, SetGaugeRequest,
};
use twi_plugin::proto::server_nodeattestor::node_attestor_server::NodeAttestorServer;
use twi_plugin::proto::workloadattestor::workload_attestor_client::WorkloadAttestorClient;
use twi_plugin::proto::workloadattestor::workload_attestor_server::{
    WorkloadAttestor, WorkloadAttestorServer,
};
use twi_plugin::proto::workloadattestor::{
    AttestReferenceRequest, AttestReferenceResponse, AttestRequest, AttestResponse,
};
use twi_plugin::testing::{load, load_with_host_services, LoadedPlugin};
use twi_plugin::{
    from_hcl, ConfigHandler, ConfigSlot, CoreConfig, HostServiceError, HostServices, PluginType,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoConfig {
    #[serde(default)]
    prefix: String,
    /// Only there so the "unknown key" message has more than one key to list.
    #[serde(default)]
    #[allow(dead_code)]
    nonce_len: u32,
}

struct Applied {
    trust_domain: String,
    config: EchoConfig,
}

/// A workload attestor answering `<prefix>pid:<pid>`; with host services, it bumps a counter per call.
#[derive(Clone, Default)]
struct Echo {
    config: ConfigSlot<Applied>,
    host: HostServices,
}

#[tonic::async_trait]
impl WorkloadAttestor for Echo {
    async fn attest(
        &self,
        request: Request<AttestRequest>,
    ) -> Result<Response<AttestResponse>, Status> {
        let applied = self.config.get()?;
        if self
            .host
            .offers("spire.hostservice.common.metrics.v1.Metrics")
        {
            let mut metrics = self.host.metrics().await?;
            metrics
                .incr_counter(IncrCounterRequest {
                    key: vec!["echo".into(), "attest".into()],
                    val: 1.0,
                    labels: vec![],
                })
                .await?;
        }
        let pid = request.into_inner().pid;
        Ok(Response::new(AttestResponse {
            selector_values: vec![
                format!("{}pid:{pid}", applied.config.prefix),
                format!("td:{}", applied.trust_domain),
            ],
        }))
    }

    async fn attest_reference(
        &self,
        _request: Request<AttestReferenceRequest>,
    ) -> Result<Response<AttestReferenceResponse>, Status> {
        Err(Status::unimplemented("no references"))
    }
}

#[tonic::async_trait]
impl ConfigHandler for Echo {
    async fn configure(&self, core: CoreConfig, hcl: &str) -> Result<(), Status> {
        let config = from_hcl::<EchoConfig>(hcl)?;
        self.config.set(Applied {
            trust_domain: core.trust_domain,
            config,
        });
        Ok(())
    }

    async fn validate(&self, _core: CoreConfig, hcl: &str) -> Result<Vec<String>, Status> {
        Ok(from_hcl::<EchoConfig>(hcl)
            .err()
            .map(|e| e.to_string())
            .into_iter()
            .collect())
    }
}

async fn load_echo() -> LoadedPlugin {
    let echo = Echo::default();
    load(
        PluginType::AgentWorkloadAttestor,
        WorkloadAttestorServer::new(echo.clone()),
        Arc::new(echo),
    )
    .await
    .unwrap()
}

async fn attest(plugin: &LoadedPlugin, pid: i32) -> Result<Vec<String>, Status> {
    let resp = WorkloadAttestorClient::new(plugin.channel.clone())
        .attest(AttestRequest { pid })
        .await?;
    Ok(resp.into_inner().selector_values)
}

#[tokio::test]
async fn init_answers_plugin_and_config_service_names() {
    let plugin = load_echo().await;
    let names = plugin.init().await.unwrap();
    assert_eq!(
        names,
        vec![
            "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor".to_owned(),
            "spire.service.common.config.v1.Config".to_owned(),
        ]
    );
    plugin.deinit().await.unwrap();
}

#[tokio::test]
async fn rpcs_fail_precondition_until_configured() {
    let plugin = load_echo().await;
    plugin.init().await.unwrap();
    let err = attest(&plugin, 42).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    plugin
        .configure("example.org", "prefix = \"x-\"\nnonce_len = 16\n")
        .await
        .unwrap();
    assert_eq!(
        attest(&plugin, 42).await.unwrap(),
        vec!["x-pid:42".to_owned(), "td:example.org".to_owned()]
    );
}

#[tokio::test]
async fn empty_plugin_data_is_accepted() {
    let plugin = load_echo().await;
    plugin.configure("example.org", "").await.unwrap();
    assert_eq!(attest(&plugin, 7).await.unwrap()[0], "pid:7");
}

#[tokio::test]
async fn bad_hcl_is_invalid_argument_naming_the_key() {
    let plugin = load_echo().await;
    let err = plugin
        .configure("example.org", "fooo = 1")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("unknown key `fooo`"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("nonce_len"), "{}", err.message());

    let err = plugin
        .configure("example.org", "nonce_len = \"sixteen\"")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("invalid value for `nonce_len`"),
        "{}",
        err.message()
    );
    // A failed Configure leaves the plugin unconfigured.
    assert_eq!(
        attest(&plugin, 1).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn empty_trust_domain_is_invalid_argument() {
    let plugin = load_echo().await;
    let err = plugin.configure("", "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("trust domain"), "{}", err.message());
}

#[tokio::test]
async fn validate_reports_notes_without_configuring() {
    let plugin = load_echo().await;
    let resp = plugin
        .validate("example.org", "prefx = \"a\"")
        .await
        .unwrap();
    assert!(!resp.valid);
    assert_eq!(resp.notes.len(), 1);
    assert!(
        resp.notes[0].contains("unknown key `prefx`"),
        "{:?}",
        resp.notes
    );
    let resp = plugin
        .validate("example.org", "prefix = \"a\"")
        .await
        .unwrap();
    assert!(resp.valid);
    assert!(resp.notes.is_empty());
    assert_eq!(
        attest(&plugin, 1).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn health_reports_plugin_serving() {
    let plugin = load_echo().await;
    let mut health = HealthClient::new(plugin.channel.clone());
    let resp = health
        .check(HealthCheckRequest {
            service: "plugin".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status, ServingStatus::Serving as i32);
    let err = health
        .check(HealthCheckRequest {
            service: "other".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn shutdown_ends_the_server_even_with_open_streams() {
    let plugin = load_echo().await;
    // SPIRE keeps the broker and stdio streams open for the plugin's whole life.
    let (_tx, rx) = tokio::sync::mpsc::channel::<ConnInfo>(1);
    let mut broker = GrpcBrokerClient::new(plugin.channel.clone())
        .start_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut stdio = GrpcStdioClient::new(plugin.channel.clone())
        .stream_stdio(())
        .await
        .unwrap()
        .into_inner();
    let path = plugin.socket_path().to_owned();
    assert!(path.exists());

    plugin.shutdown().await.unwrap();

    // Both streams end (cleanly or by the connection closing) instead of hanging.
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        let b = broker.message().await;
        let s = stdio.message().await;
        (b.map(|m| m.is_none()), s.map(|m| m.is_none()))
    })
    .await
    .expect("streams should end after shutdown");
    assert!(!matches!(ended.0, Ok(false)), "broker sent a message");
    assert!(!matches!(ended.1, Ok(false)), "stdio sent a message");
    assert!(
        !path.exists(),
        "socket dir should be removed once the plugin is gone"
    );
}

/// A fake SPIRE Metrics host service recording calls.
#[derive(Clone, Default)]
struct FakeMetrics {
    counters: Arc<Mutex<Vec<Vec<String>>>>,
}

#[tonic::async_trait]
impl Metrics for FakeMetrics {
    async fn set_gauge(&self, _r: Request<SetGaugeRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
    async fn emit_key(&self, _r: Request<EmitKeyRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
    async fn incr_counter(&self, r: Request<IncrCounterRequest>) -> Result<Response<()>, Status> {
        self.counters.lock().unwrap().push(r.into_inner().key);
        Ok(Response::new(()))
    }
    async fn add_sample(&self, _r: Request<AddSampleRequest>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
    async fn measure_since(
        &self,
        _r: Request<MeasureSinceRequest>,
    ) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
}

#[tokio::test]
async fn broker_records_conninfo_and_host_services_are_dialed() {
    let host = HostServices::new();
    let echo = Echo {
        host: host.clone(),
        ..Echo::default()
    };
    let mut plugin = load_with_host_services(
        PluginType::AgentWorkloadAttestor,
        WorkloadAttestorServer::new(echo.clone()),
        Arc::new(echo),
        host.clone(),
    )
    .await
    .unwrap();
    assert!(!host.is_announced());

    let fake = FakeMetrics::default();
    plugin
        .offer_host_services(
            &["spire.hostservice.common.metrics.v1.Metrics"],
            tonic::service::Routes::new(MetricsServer::new(fake.clone())),
        )
        .await
        .unwrap();
    assert!(host.is_announced());
    plugin.init().await.unwrap();
    assert_eq!(
        host.names(),
        vec!["spire.hostservice.common.metrics.v1.Metrics".to_owned()]
    );

    plugin.configure("example.org", "").await.unwrap();
    attest(&plugin, 5).await.unwrap();
    attest(&plugin, 6).await.unwrap();
    assert_eq!(
        *fake.counters.lock().unwrap(),
        vec![vec!["echo".to_owned(), "attest".to_owned()]; 2]
    );

    // The agent offers no AgentStore: asking for it is a clear error, not a hang.
    let err = host.agent_store().await.unwrap_err();
    assert!(
        matches!(err, HostServiceError::NotOffered { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn broker_stream_stays_open() {
    let plugin = load_echo().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<ConnInfo>(1);
    let mut stream = GrpcBrokerClient::new(plugin.channel.clone())
        .start_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(ConnInfo {
        service_id: 1,
        network: "unix".into(),
        address: "/nonexistent/host.sock".into(),
        knock: None,
    })
    .await
    .unwrap();
    let next = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(
        next.is_err(),
        "the broker stream ended or sent something: {next:?}"
    );
    assert!(plugin.host_services.is_announced());
}

#[tokio::test]
async fn host_services_without_conninfo_fail_fast() {
    let host = HostServices::new();
    let err = host.channel().await.unwrap_err();
    assert!(
        matches!(err, HostServiceError::NoConnInfo { .. }),
        "{err:?}"
    );
    assert_eq!(Status::from(err).code(), Code::Unavailable);
}

#[tokio::test]
async fn service_of_another_type_is_refused() {
    #[derive(Clone, Default)]
    struct Na;
    #[tonic::async_trait]
    impl twi_plugin::proto::server_nodeattestor::node_attestor_server::NodeAttestor for Na {
        type AttestStream = tokio_stream::wrappers::ReceiverStream<
            Result<twi_plugin::proto::server_nodeattestor::AttestResponse, Status>,
        >;
        async fn attest(
            &self,
            _r: Request<tonic::Streaming<twi_plugin::proto::server_nodeattestor::AttestRequest>>,
        ) -> Result<Response<Self::AttestStream>, Status> {
            Err(Status::unimplemented("test"))
        }
    }
    let echo = Echo::default();
    let result = load(
        PluginType::AgentNodeAttestor,
        NodeAttestorServer::new(Na),
        Arc::new(echo),
    )
    .await;
    let err = result.err().expect("mismatched service must be refused");
    assert!(
        err.to_string()
            .contains("spire.plugin.agent.nodeattestor.v1.NodeAttestor"),
        "{err}"
    );
}

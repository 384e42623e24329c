//! Compiles the protos in `proto/` with protox (pure Rust, no system `protoc`) and generates tonic servers and
//! clients for all of them: servers because the plugin serves them, clients because tests play the host and
//! plugins dial host services. The SPIRE server API protos (`spire/api/...`) are dialed by the credential
//! composer on the server's local API socket; their servers are generated too, for test doubles.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "plugin/grpc_broker.proto",
    "plugin/grpc_controller.proto",
    "plugin/grpc_stdio.proto",
    "spire/service/private/init/v1/init.proto",
    "spire/service/common/config/v1/config.proto",
    "spire/plugin/types/bundle.proto",
    "spire/plugin/types/jwtkey.proto",
    "spire/plugin/types/witkey.proto",
    "spire/plugin/types/x509certificate.proto",
    "spire/plugin/server/nodeattestor/v1/nodeattestor.proto",
    "spire/plugin/agent/nodeattestor/v1/nodeattestor.proto",
    "spire/plugin/agent/workloadattestor/v1/workloadattestor.proto",
    "spire/plugin/server/credentialcomposer/v1/credentialcomposer.proto",
    "spire/hostservice/server/agentstore/v1/agentstore.proto",
    "spire/hostservice/server/identityprovider/v1/identityprovider.proto",
    "spire/hostservice/common/metrics/v1/metrics.proto",
    "spire/api/types/selector.proto",
    "spire/api/types/spiffeid.proto",
    "spire/api/types/federateswith.proto",
    "spire/api/types/entry.proto",
    "spire/api/types/agent.proto",
    "spire/api/server/entry/v1/entry.proto",
    "spire/api/server/agent/v1/agent.proto",
    "spire/api/types/x509svid.proto",
    "spire/api/server/svid/v1/svid.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .include_file("twi_protos.rs")
        .compile_fds(fds)?;
    Ok(())
}

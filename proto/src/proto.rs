//! Generated protobuf types, tonic servers and tonic clients.
//!
//! Modules follow the protobuf packages exactly (`spire::plugin::server::nodeattestor::v1`, go-plugin's
//! `plugin`), because generated code refers to other packages by relative path. Shorter aliases for the
//! packages plugins use most sit at the top of this module.

#![allow(
    missing_docs,
    unreachable_pub,
    unused_qualifications,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

include!(concat!(env!("OUT_DIR"), "/twi_protos.rs"));

/// `grpc.health.v1`, from tonic-health (go-plugin requires service `plugin` to be SERVING).
pub use tonic_health::pb as health;

/// go-plugin's `plugin` package (GRPCBroker, GRPCController, GRPCStdio).
pub use plugin as go_plugin;
/// `spire.hostservice.common.metrics.v1` (host service, server and agent).
pub use spire::hostservice::common::metrics::v1 as metrics;
/// `spire.hostservice.server.agentstore.v1` (host service, server side only).
pub use spire::hostservice::server::agentstore::v1 as agentstore;
/// `spire.hostservice.server.identityprovider.v1` (host service, server side only).
pub use spire::hostservice::server::identityprovider::v1 as identityprovider;
/// `spire.plugin.agent.nodeattestor.v1` (bidirectional `AidAttestation`).
pub use spire::plugin::agent::nodeattestor::v1 as agent_nodeattestor;
/// `spire.plugin.agent.workloadattestor.v1` (`Attest`, `AttestReference`).
pub use spire::plugin::agent::workloadattestor::v1 as workloadattestor;
/// `spire.plugin.server.credentialcomposer.v1`.
pub use spire::plugin::server::credentialcomposer::v1 as credentialcomposer;
/// `spire.plugin.server.nodeattestor.v1` (bidirectional `Attest`).
pub use spire::plugin::server::nodeattestor::v1 as server_nodeattestor;
/// `spire.plugin.types` (Bundle, X509Certificate, JWTKey, WITKey).
pub use spire::plugin::types;
/// `spire.service.common.config.v1` (Configure, Validate).
pub use spire::service::common::config::v1 as config;
/// `spire.service.private.init.v1` (Init, Deinit).
pub use spire::service::private::init::v1 as init;

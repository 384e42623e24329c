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
/// `spire.api.server.agent.v1` (the SPIRE server API's Agent service: ListAgents, GetAgent), dialed on the
/// server's local API socket.
pub use spire::api::server::agent::v1 as server_agent;
/// `spire.api.server.entry.v1` (the SPIRE server API's Entry service: ListEntries, GetEntry).
pub use spire::api::server::entry::v1 as server_entry;
/// `spire.api.server.svid.v1` (the SPIRE server API's SVID service: MintX509SVID), used by `twi bench-svid` to
/// time SPIRE's own X.509-SVID issuance on the local API socket.
pub use spire::api::server::svid::v1 as server_svid;
/// `spire.api.types` (Entry, Agent, Selector, SPIFFEID, ...), the SPIRE server API's types; not the plugin
/// SDK's `spire.plugin.types` ([`types`]).
pub use spire::api::types as api_types;
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

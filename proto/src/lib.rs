//! twi-plugin: the runtime every twi-spire plugin binary shares.
//!
//! An unmodified SPIRE server or agent (v1.15.x) loads external plugins through hashicorp/go-plugin v1.8.0.
//! This crate implements the plugin side of that protocol as written down in
//! `shared/docs/spire-plugin-protocol.md`, so a plugin crate only writes its gRPC service and a
//! [`ConfigHandler`]:
//!
//! - the handshake: magic cookie and protocol version checks, the `1|1|unix|<path>|grpc|` line ([`handshake`]);
//! - serving on a Unix socket in a private temp dir: `grpc.health.v1` (`plugin` SERVING),
//!   `plugin.GRPCController` (Shutdown ends the process), `plugin.GRPCStdio` (an idle stream),
//!   `plugin.GRPCBroker` (records where SPIRE serves host services), SPIRE's `Init` and `Config`, and the
//!   plugin service ([`run`]);
//! - host services (AgentStore, IdentityProvider, Metrics) dialed lazily through the broker ([`HostServices`]);
//! - `plugin_data` HCL decoded into `#[serde(deny_unknown_fields)]` structs with errors naming the key
//!   ([`from_hcl`]), and the active configuration held in a [`ConfigSlot`];
//! - hclog JSON logs on stderr that SPIRE files under the right level ([`log`]);
//! - the protos, written to match spire-plugin-sdk `5dcde407c4d1` (= v1.15.2) and go-plugin v1.8.0
//!   (`proto/SOURCES.md`), as generated types, servers and clients ([`proto`]);
//! - an in-process loader for tests, like SPIRE's `plugintest.Load` ([`testing`]).
//!
//! A plugin's `main`:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     let slot = twi_plugin::ConfigSlot::new();
//!     let plugin = MyPlugin::new(slot.clone());
//!     twi_plugin::run(
//!         twi_plugin::PluginType::ServerNodeAttestor,
//!         NodeAttestorServer::new(plugin.clone()),
//!         std::sync::Arc::new(plugin),
//!     )
//! }
//! ```
//!
//! What it does not do: TCP listeners (Windows), TLS / AutoMTLS (SPIRE disables it), go-plugin broker
//! multiplexing, serving services *to* the host through the broker, forwarding stdout/stderr through
//! `GRPCStdio`, `PLUGIN_UNIX_SOCKET_GROUP`, and any attestation logic (that lives in `twi-core` and the plugin
//! crates).

pub mod broker;
pub mod config;
mod config_service;
mod controller;
pub mod handshake;
mod init;
pub mod log;
mod plugin_type;
pub mod proto;
mod serve;
mod shutdown;
mod stdio;
pub mod testing;

pub use broker::{HostServiceError, HostServices};
pub use config::{from_hcl, ConfigError, ConfigHandler, ConfigSlot, CoreConfig};
pub use plugin_type::PluginType;
pub use serve::{run, run_with_host_services, ServeError, HEALTH_SERVICE, SOCKET_DIR_ENV};

//! `twi-server-nodeattestor`: the server NodeAttestor plugin binary, started by spire-server.

use std::process::ExitCode;
use std::sync::Arc;

use twi_node_attestor::server::ServerNodeAttestor;
use twi_plugin::proto::server_nodeattestor::node_attestor_server::NodeAttestorServer;

fn main() -> ExitCode {
    // Empty configuration slot: Attest answers FailedPrecondition until SPIRE calls Configure.
    let plugin = ServerNodeAttestor::new();
    twi_plugin::run(
        twi_plugin::PluginType::ServerNodeAttestor,
        NodeAttestorServer::new(plugin.clone()),
        Arc::new(plugin),
    )
}

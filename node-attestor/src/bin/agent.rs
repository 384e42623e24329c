//! `twi-agent-nodeattestor`: the SPIRE agent NodeAttestor plugin for confidential VMs. Loaded by
//! spire-agent through `plugin_cmd`; run by hand it prints a hint and exits 1.

use std::process::ExitCode;

use twi_node_attestor::agent::AgentPlugin;

fn main() -> ExitCode {
    AgentPlugin::new().run()
}

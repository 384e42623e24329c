//! `twi-agent-workloadattestor`: the SPIRE agent WorkloadAttestor plugin. Loaded by spire-agent through
//! `plugin_cmd`; run by hand it prints a hint and exits 1.

use std::process::ExitCode;

use twi_workload_attestor::WorkloadAttestorPlugin;

fn main() -> ExitCode {
    WorkloadAttestorPlugin::new().run()
}

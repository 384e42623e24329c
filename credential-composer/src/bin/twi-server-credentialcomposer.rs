//! `twi-server-credentialcomposer`: the CredentialComposer plugin binary, started by spire-server.

use std::process::ExitCode;
use std::sync::Arc;

use twi_credential_composer::plugin::CredentialComposerPlugin;
use twi_plugin::proto::credentialcomposer::credential_composer_server::CredentialComposerServer;

fn main() -> ExitCode {
    // Empty configuration slot: every Compose RPC answers FailedPrecondition until SPIRE calls Configure.
    let plugin = CredentialComposerPlugin::new();
    twi_plugin::run(
        twi_plugin::PluginType::ServerCredentialComposer,
        CredentialComposerServer::new(plugin.clone()),
        Arc::new(plugin),
    )
}

//! The four plugin kinds this project ships, with what go-plugin and SPIRE need to know about each.

use crate::proto::{agent_nodeattestor, credentialcomposer, server_nodeattestor, workloadattestor};
use tonic::server::NamedService;

/// Which SPIRE plugin interface a binary implements.
///
/// One value decides both the magic cookie the host sets (the HCL plugin type, shared by server and agent
/// NodeAttestors) and the service name answered to `Init`, which SPIRE uses to bind the plugin. Keeping them
/// together means a binary cannot advertise one kind and check the cookie of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PluginType {
    /// `spire.plugin.agent.nodeattestor.v1.NodeAttestor`, loaded by spire-agent as `NodeAttestor`.
    AgentNodeAttestor,
    /// `spire.plugin.server.nodeattestor.v1.NodeAttestor`, loaded by spire-server as `NodeAttestor`.
    ServerNodeAttestor,
    /// `spire.plugin.agent.workloadattestor.v1.WorkloadAttestor`, loaded by spire-agent as `WorkloadAttestor`.
    AgentWorkloadAttestor,
    /// `spire.plugin.server.credentialcomposer.v1.CredentialComposer`, loaded by spire-server.
    ServerCredentialComposer,
}

impl PluginType {
    /// The magic-cookie environment key; SPIRE sets `<key>=<key>` (protocol doc §2.2).
    #[must_use]
    pub const fn cookie_key(self) -> &'static str {
        match self {
            Self::AgentNodeAttestor | Self::ServerNodeAttestor => "NodeAttestor",
            Self::AgentWorkloadAttestor => "WorkloadAttestor",
            Self::ServerCredentialComposer => "CredentialComposer",
        }
    }

    /// The magic-cookie value SPIRE sets; equal to the key for every SPIRE plugin type.
    #[must_use]
    pub const fn cookie_value(self) -> &'static str {
        self.cookie_key()
    }

    /// The fully qualified gRPC service name answered to `Init`, which SPIRE binds by (protocol doc §6.3).
    #[must_use]
    pub const fn service_name(self) -> &'static str {
        match self {
            Self::AgentNodeAttestor => {
                <agent_nodeattestor::node_attestor_server::NodeAttestorServer<()> as NamedService>::NAME
            }
            Self::ServerNodeAttestor => {
                <server_nodeattestor::node_attestor_server::NodeAttestorServer<()> as NamedService>::NAME
            }
            Self::AgentWorkloadAttestor => {
                <workloadattestor::workload_attestor_server::WorkloadAttestorServer<()> as NamedService>::NAME
            }
            Self::ServerCredentialComposer => {
                <credentialcomposer::credential_composer_server::CredentialComposerServer<()> as NamedService>::NAME
            }
        }
    }
}

impl std::fmt::Display for PluginType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.service_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_sdk() {
        assert_eq!(
            PluginType::ServerNodeAttestor.service_name(),
            "spire.plugin.server.nodeattestor.v1.NodeAttestor"
        );
        assert_eq!(
            PluginType::AgentNodeAttestor.service_name(),
            "spire.plugin.agent.nodeattestor.v1.NodeAttestor"
        );
        assert_eq!(
            PluginType::AgentWorkloadAttestor.service_name(),
            "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor"
        );
        assert_eq!(
            PluginType::ServerCredentialComposer.service_name(),
            "spire.plugin.server.credentialcomposer.v1.CredentialComposer"
        );
        assert_eq!(
            PluginType::AgentNodeAttestor.cookie_key(),
            PluginType::ServerNodeAttestor.cookie_key()
        );
    }
}

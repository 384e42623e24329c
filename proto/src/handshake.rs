//! The go-plugin handshake: the environment the host sets, and the one stdout line the plugin answers with
//! (protocol doc §2.2, §3).

use crate::PluginType;

/// go-plugin's core protocol version; the host refuses any other.
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// SPIRE's application protocol version (`HandshakeConfig.ProtocolVersion`).
pub const APP_PROTOCOL_VERSION: u32 = 1;
/// The variable in which the host lists the app protocol versions it speaks.
pub const PROTOCOL_VERSIONS_ENV: &str = "PLUGIN_PROTOCOL_VERSIONS";

/// Why the environment does not look like a SPIRE host launching this plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The magic cookie is absent or wrong: most likely the binary was run by hand.
    #[error("environment variable {key} is {got:?}, want {want:?}")]
    Cookie {
        /// The cookie key.
        key: &'static str,
        /// What the environment held.
        got: Option<String>,
        /// The expected value.
        want: &'static str,
    },
    /// The host does not speak app protocol version 1.
    #[error(
        "{PROTOCOL_VERSIONS_ENV} is {got:?}, which does not list version {APP_PROTOCOL_VERSION}"
    )]
    Version {
        /// What the environment held.
        got: Option<String>,
    },
}

/// Checks the magic cookie and protocol versions, reading variables through `env` so tests need no real
/// environment.
///
/// # Errors
///
/// [`HandshakeError`] naming the variable that was wrong.
pub fn check(ty: PluginType, env: impl Fn(&str) -> Option<String>) -> Result<(), HandshakeError> {
    let got = env(ty.cookie_key());
    if got.as_deref() != Some(ty.cookie_value()) {
        return Err(HandshakeError::Cookie {
            key: ty.cookie_key(),
            got,
            want: ty.cookie_value(),
        });
    }
    let versions = env(PROTOCOL_VERSIONS_ENV);
    let speaks_v1 = versions.as_deref().is_some_and(|v| {
        v.split(',')
            .any(|p| p.trim().parse::<u32>() == Ok(APP_PROTOCOL_VERSION))
    });
    if !speaks_v1 {
        return Err(HandshakeError::Version { got: versions });
    }
    Ok(())
}

/// The text printed on stderr when the binary is run outside SPIRE, like go-plugin's "This binary is a
/// plugin" message.
#[must_use]
pub fn hint(ty: PluginType, err: &HandshakeError) -> String {
    format!(
        "This binary is a SPIRE plugin ({ty}). It is not meant to be executed directly.\n\
         Configure it as `plugin_cmd` of a `{key}` plugin in the SPIRE server or agent configuration.\n\
         ({err})",
        key = ty.cookie_key(),
    )
}

/// The handshake line (without the newline): `1|1|unix|<path>|grpc|`. Field 6 (server certificate) stays
/// empty because SPIRE dials without TLS.
#[must_use]
pub fn line(network: &str, address: &str) -> String {
    format!("{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|{network}|{address}|grpc|")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn accepts_what_spire_sets() {
        let e = env(&[
            ("NodeAttestor", "NodeAttestor"),
            ("PLUGIN_PROTOCOL_VERSIONS", "1"),
        ]);
        assert_eq!(check(PluginType::ServerNodeAttestor, &e), Ok(()));
        assert_eq!(check(PluginType::AgentNodeAttestor, &e), Ok(()));
        let e = env(&[
            ("WorkloadAttestor", "WorkloadAttestor"),
            ("PLUGIN_PROTOCOL_VERSIONS", "2, 1"),
        ]);
        assert_eq!(check(PluginType::AgentWorkloadAttestor, &e), Ok(()));
    }

    #[test]
    fn rejects_missing_or_wrong_cookie() {
        let e = env(&[("PLUGIN_PROTOCOL_VERSIONS", "1")]);
        let err = check(PluginType::ServerNodeAttestor, &e).unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::Cookie {
                key: "NodeAttestor",
                got: None,
                ..
            }
        ));
        let e = env(&[
            ("NodeAttestor", "NodeAttestor"),
            ("PLUGIN_PROTOCOL_VERSIONS", "1"),
        ]);
        let err = check(PluginType::ServerCredentialComposer, &e).unwrap_err();
        assert!(matches!(
            err,
            HandshakeError::Cookie {
                key: "CredentialComposer",
                ..
            }
        ));
        assert!(hint(PluginType::ServerCredentialComposer, &err)
            .contains("`CredentialComposer` plugin"));
    }

    #[test]
    fn rejects_other_protocol_versions() {
        let e = env(&[
            ("NodeAttestor", "NodeAttestor"),
            ("PLUGIN_PROTOCOL_VERSIONS", "2,11"),
        ]);
        assert!(matches!(
            check(PluginType::ServerNodeAttestor, &e),
            Err(HandshakeError::Version { got: Some(_) })
        ));
        let e = env(&[("NodeAttestor", "NodeAttestor")]);
        assert!(matches!(
            check(PluginType::ServerNodeAttestor, &e),
            Err(HandshakeError::Version { got: None })
        ));
    }

    #[test]
    fn line_has_six_fields_and_empty_cert() {
        let l = line("unix", "/tmp/plugin123/plugin.sock");
        assert_eq!(l, "1|1|unix|/tmp/plugin123/plugin.sock|grpc|");
        assert_eq!(l.split('|').count(), 6);
    }
}

//! Making signed attestations, for tests (this crate's, `twi`'s) and for trying the store by hand.
//!
//! The plugin never calls this module. It exists so that every test signs envelopes one way — PAE per the
//! DSSE spec, ECDSA P-256/SHA-256, DER, standard base64 — instead of each test re-implementing it; the
//! end-to-end test signs with OpenSSL instead, so one path is checked against an independent signer.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::{json, Value};

use super::dsse::{pae, IN_TOTO_PAYLOAD_TYPE};
use super::keys::{KeyError, TrustedKey};

/// A P-256 signing key with the name and optional `keyid` it is configured under.
#[derive(Clone)]
pub struct Signer {
    name: String,
    key_id: Option<String>,
    build_level: Option<u8>,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from 32 secret bytes (the caller draws them at random).
    ///
    /// # Errors
    ///
    /// When the bytes are not a valid P-256 scalar (zero or not below the group order).
    pub fn from_secret(name: &str, secret: &[u8; 32]) -> Result<Self, String> {
        let key = SigningKey::from_slice(secret).map_err(|e| format!("not a P-256 scalar: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            key_id: None,
            build_level: None,
            key,
        })
    }

    /// A fresh random signer.
    #[cfg(test)]
    #[must_use]
    pub fn generate(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            key_id: None,
            build_level: None,
            key: SigningKey::random(&mut rand_core::OsRng),
        }
    }

    /// The same key, announcing `keyid` in its signatures and configured with it.
    #[must_use]
    pub fn with_key_id(mut self, key_id: &str) -> Self {
        self.key_id = Some(key_id.to_owned());
        self
    }

    /// The same key, configured with an SLSA build level.
    #[must_use]
    pub fn with_build_level(mut self, level: u8) -> Self {
        self.build_level = Some(level);
        self
    }

    /// The name it is configured under.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key as PEM SubjectPublicKeyInfo (what `public_key_path` names).
    #[must_use]
    pub fn public_key_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// The public key as the store would load it.
    ///
    /// # Errors
    ///
    /// None in practice: the PEM is made from a valid key; the `Result` is the loader's.
    pub fn trusted_key(&self) -> Result<TrustedKey, KeyError> {
        TrustedKey::from_pem(
            &self.name,
            self.key_id.as_deref(),
            self.build_level,
            &self.public_key_pem(),
            std::path::Path::new("(testing)"),
        )
    }

    /// A DER signature over `PAE(payload_type, payload)`.
    #[must_use]
    pub fn sign(&self, payload_type: &str, payload: &[u8]) -> Vec<u8> {
        self.sign_raw(&pae(payload_type, payload))
    }

    /// A DER signature over `message` as is.
    #[must_use]
    pub fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(message);
        sig.to_der().as_bytes().to_vec()
    }

    /// A DSSE envelope (JSON text) of an in-toto `payload`, signed by this key.
    #[must_use]
    pub fn envelope(&self, payload: &[u8]) -> String {
        let mut sig = json!({"sig": STANDARD.encode(self.sign(IN_TOTO_PAYLOAD_TYPE, payload))});
        if let (Some(k), Some(obj)) = (&self.key_id, sig.as_object_mut()) {
            obj.insert("keyid".into(), Value::String(k.clone()));
        }
        json!({
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "payload": STANDARD.encode(payload),
            "signatures": [sig],
        })
        .to_string()
    }
}

/// An in-toto Statement v1 about `subject_name` with SHA-256 `digest_hex`.
#[must_use]
pub fn statement(
    subject_name: &str,
    digest_hex: &str,
    predicate_type: &str,
    predicate: Value,
) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": subject_name, "digest": {"sha256": digest_hex}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

/// An SLSA provenance v1 predicate in the shape GitHub's build provenance uses: the source repository
/// and ref in `externalParameters.workflow`, the commit in the first resolved dependency.
#[must_use]
pub fn slsa_v1_predicate(builder_id: &str, repository: &str, git_ref: &str, commit: &str) -> Value {
    json!({
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {
                "workflow": {"ref": git_ref, "repository": repository, "path": ".github/workflows/release.yml"}
            },
            "internalParameters": {"github": {"event_name": "push"}},
            "resolvedDependencies": [
                {"uri": format!("git+{repository}@{git_ref}"), "digest": {"gitCommit": commit}}
            ]
        },
        "runDetails": {
            "builder": {"id": builder_id},
            "metadata": {"invocationId": "https://example.com/run/1"}
        }
    })
}

/// A small CycloneDX SBOM with `components` components.
#[must_use]
pub fn cyclonedx_bom(components: usize) -> Value {
    let comps: Vec<Value> = (0..components)
        .map(|i| json!({"type": "library", "name": format!("lib{i}"), "version": "1.0.0"}))
        .collect();
    json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": comps})
}

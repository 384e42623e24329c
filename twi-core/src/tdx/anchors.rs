//! Trust anchors: the Intel SGX Root CA a TDX chain may end in, pinned by the SHA-256 of its DER.
//!
//! The root certificate travels with the evidence and collateral (last certificate of the PCK chain
//! and of each issuer chain) and is believed only when its fingerprint is pinned here.

use super::cert::{sha256, X509};
use crate::Error;

/// SHA-256 of the Intel SGX Root CA certificate (DER), `CN=Intel SGX Root CA`, valid 2018-05-21 to
/// 2049-12-31, as served at `https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.cer`.
pub const INTEL_SGX_ROOT_CA_SHA256: [u8; 32] = [
    0x44, 0xa0, 0x19, 0x6b, 0x2b, 0x99, 0xf8, 0x89, 0xb8, 0xe1, 0x49, 0xe9, 0x5b, 0x80, 0x7a, 0x35,
    0x0e, 0x74, 0x24, 0x96, 0x43, 0x99, 0xe8, 0x85, 0xa7, 0xcb, 0xb8, 0xcc, 0xfa, 0xb6, 0x74, 0xd3,
];

/// One trusted root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Root {
    pub(crate) sha256: [u8; 32],
    /// A root of the simulated TEE: evidence chaining to it is marked simulated.
    pub(crate) simulated: bool,
    /// The certificate, when added from bytes: used when a chain omits its root.
    pub(crate) der: Option<Vec<u8>>,
    builtin: bool,
}

/// The set of roots a [`super::TdxVerifier`] accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntelRoots {
    pub(crate) roots: Vec<Root>,
}

impl IntelRoots {
    /// Intel's production SGX Root CA (which also anchors TDX).
    pub fn intel() -> Self {
        IntelRoots {
            roots: vec![Root {
                sha256: INTEL_SGX_ROOT_CA_SHA256,
                simulated: false,
                der: None,
                builtin: true,
            }],
        }
    }

    /// Trusts one more root (DER), by its fingerprint. It must be a self-signed ECDSA P-256
    /// certificate. `simulated` marks roots of the simulated TEE, so that verified evidence says so.
    /// Adding a root already present replaces its flags.
    ///
    /// # Errors
    /// [`Error::Malformed`] when `der` is not a self-signed P-256 certificate.
    pub fn add_root_der(&mut self, der: &[u8], simulated: bool) -> Result<(), Error> {
        let cert = X509::from_der(der, "trust anchor")?;
        if !cert.is_self_issued() {
            return Err(Error::malformed("trust anchor", "root is not self-issued"));
        }
        cert.check_issued_by(&cert)
            .map_err(|e| Error::malformed("trust anchor", format!("self-signature: {e}")))?;
        let fp = sha256(der);
        self.roots.retain(|r| r.sha256 != fp);
        self.roots.push(Root {
            sha256: fp,
            simulated,
            der: Some(der.to_vec()),
            builtin: false,
        });
        Ok(())
    }

    /// Keeps only the roots added with [`IntelRoots::add_root_der`].
    pub fn without_intel(mut self) -> Self {
        self.roots.retain(|r| !r.builtin);
        self
    }

    /// True when no root is trusted.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// `(SHA-256 hex, simulated)` of every root, for logs and `twi` output.
    pub fn describe(&self) -> Vec<(String, bool)> {
        self.roots
            .iter()
            .map(|r| (hex::encode(r.sha256), r.simulated))
            .collect()
    }

    pub(crate) fn find(&self, sha256: &[u8; 32]) -> Option<&Root> {
        self.roots.iter().find(|r| &r.sha256 == sha256)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const ROOT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/vendor-roots/intel/IntelSGXRootCA.der"
    );

    #[test]
    fn pin_matches_the_vendor_root_file() {
        let der = std::fs::read(ROOT).unwrap();
        assert_eq!(sha256(&der), INTEL_SGX_ROOT_CA_SHA256);
        let cert = X509::from_der(&der, "root").unwrap();
        assert!(cert.is_self_issued());
        cert.check_issued_by(&cert).unwrap();
        assert!(IntelRoots::intel().find(&sha256(&der)).is_some());
    }

    #[test]
    fn add_root_replaces_and_without_intel() {
        let der = std::fs::read(ROOT).unwrap();
        let mut r = IntelRoots::intel();
        r.add_root_der(&der, true).unwrap();
        assert_eq!(r.roots.len(), 1);
        assert_eq!(
            r.clone().without_intel().describe(),
            vec![(hex::encode(INTEL_SGX_ROOT_CA_SHA256), true)]
        );
        assert!(IntelRoots::intel().without_intel().is_empty());
        assert_eq!(
            r.add_root_der(b"not a cert", false).unwrap_err().category(),
            "malformed"
        );
    }
}

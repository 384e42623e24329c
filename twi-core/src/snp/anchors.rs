//! Trust anchors: the AMD root keys (ARKs) a chain may end in, pinned by the SHA-256 of the ARK
//! certificate's DER.
//!
//! The ARK certificate itself travels with the evidence (certificate table, cache, or AMD KDS) and is
//! believed only when its fingerprint is pinned here; nothing else about a chain's root is trusted.

use super::cert::{ParsedCert, Role};
use super::Product;
use crate::Error;

/// SHA-256 of AMD's ARK certificates (DER), as published by AMD's KDS (`/vcek/v1/<product>/cert_chain`).
const AMD_ARKS: [(Product, [u8; 32]); 3] = [
    (
        Product::Milan,
        [
            0x69, 0xd0, 0x63, 0xb4, 0x53, 0x44, 0xd2, 0x6a, 0x2e, 0x94, 0xe1, 0xf4, 0x21, 0x0d,
            0xe4, 0x9e, 0xf5, 0x55, 0x30, 0x82, 0x87, 0xd4, 0xc1, 0x74, 0x44, 0x5c, 0x95, 0x63,
            0x9a, 0x54, 0x0b, 0xcd,
        ],
    ),
    (
        Product::Genoa,
        [
            0x4c, 0x65, 0x98, 0xd1, 0x9c, 0x18, 0x71, 0x9c, 0x5d, 0xfd, 0x4a, 0x7d, 0x33, 0x5f,
            0x67, 0x4e, 0x5b, 0xfe, 0x1d, 0x8f, 0x80, 0x0c, 0xea, 0x2c, 0xf2, 0x70, 0xc1, 0x0d,
            0x10, 0x3d, 0xb2, 0xf1,
        ],
    ),
    (
        Product::Turin,
        [
            0x1f, 0x08, 0x41, 0x61, 0xa4, 0x4b, 0xb6, 0xd9, 0x37, 0x78, 0xa9, 0x04, 0x87, 0x7d,
            0x48, 0x19, 0xca, 0xfa, 0x5d, 0x05, 0xef, 0x41, 0x93, 0xb2, 0xde, 0xd9, 0xdd, 0x9c,
            0x73, 0xdd, 0x3f, 0x6a,
        ],
    ),
];

/// One trusted root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Anchor {
    pub(crate) sha256: [u8; 32],
    pub(crate) product: Product,
    /// A root of the simulated TEE: evidence chaining to it is marked simulated.
    pub(crate) simulated: bool,
    /// The ARK certificate, when the anchor was added from a file: used when a chain omits its ARK.
    pub(crate) der: Option<Vec<u8>>,
    /// Built in (AMD), as opposed to added by the operator.
    builtin: bool,
}

/// The set of ARKs a [`super::Verifier`] accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustAnchors {
    pub(crate) anchors: Vec<Anchor>,
}

impl TrustAnchors {
    /// AMD's production ARKs for Milan, Genoa and Turin.
    pub fn amd() -> Self {
        TrustAnchors {
            anchors: AMD_ARKS
                .iter()
                .map(|(product, sha256)| Anchor {
                    sha256: *sha256,
                    product: *product,
                    simulated: false,
                    der: None,
                    builtin: true,
                })
                .collect(),
        }
    }

    /// Trusts one more ARK (PEM or DER), by its fingerprint. The certificate must be self-issued with
    /// subject CN `ARK-<product>` (which selects the product it anchors) and carry a valid
    /// self-signature. `simulated` marks roots of the simulated TEE, so that verified evidence says so.
    /// Adding a root that is already present replaces its flags.
    ///
    /// # Errors
    /// [`Error::Malformed`] when the input is not one such certificate.
    pub fn add_root_pem(&mut self, pem: &[u8], simulated: bool) -> Result<(), Error> {
        let mut chain = super::CertChain::default();
        chain.add_pem_or_der(pem)?;
        let (Some(der), None, None) = (chain.ark, chain.ask, chain.vek) else {
            return Err(Error::malformed(
                "trust anchor",
                "want exactly one ARK certificate (subject CN ARK-<product>)",
            ));
        };
        let cert = ParsedCert::from_der(&der)?;
        let Some(Role::Ark(product)) = cert.role() else {
            return Err(Error::malformed(
                "trust anchor",
                "subject CN is not ARK-<product>",
            ));
        };
        if !cert.is_self_issued() {
            return Err(Error::malformed("trust anchor", "ARK is not self-issued"));
        }
        cert.check_issued_by(&cert)
            .map_err(|e| Error::malformed("trust anchor", format!("self-signature: {e}")))?;
        self.anchors.retain(|a| a.sha256 != cert.sha256);
        self.anchors.push(Anchor {
            sha256: cert.sha256,
            product,
            simulated,
            der: Some(der),
            builtin: false,
        });
        Ok(())
    }

    /// Keeps only the roots added with [`TrustAnchors::add_root_pem`].
    pub fn without_amd(mut self) -> Self {
        self.anchors.retain(|a| !a.builtin);
        self
    }

    /// True when no root is trusted (every verification would fail).
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// `(product, SHA-256 hex, simulated)` of every anchor, for logs and `twi` output.
    pub fn describe(&self) -> Vec<(Product, String, bool)> {
        self.anchors
            .iter()
            .map(|a| (a.product, hex::encode(a.sha256), a.simulated))
            .collect()
    }

    pub(crate) fn find(&self, sha256: &[u8; 32]) -> Option<&Anchor> {
        self.anchors.iter().find(|a| &a.sha256 == sha256)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const ROOTS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/vendor-roots/amd"
    );

    fn read(rel: &str) -> Vec<u8> {
        std::fs::read(format!("{ROOTS}/{rel}")).unwrap()
    }

    #[test]
    fn pins_match_the_vendor_ark_files() {
        let amd = TrustAnchors::amd();
        for (dir, product) in [
            ("milan", Product::Milan),
            ("genoa", Product::Genoa),
            ("turin", Product::Turin),
        ] {
            let pem = read(&format!("{dir}/ark.pem"));
            let (_, der) = der::pem::decode_vec(&pem).unwrap();
            let anchor = amd.find(&super::super::cert::sha256(&der)).expect(dir);
            assert_eq!(anchor.product, product);
            // The pinned cert really is that product's self-signed ARK.
            let cert = ParsedCert::from_der(&der).unwrap();
            assert_eq!(cert.role(), Some(Role::Ark(product)));
            cert.check_issued_by(&cert).unwrap();
            // And the ASK is not pinned.
            let (_, ask) = der::pem::decode_vec(&read(&format!("{dir}/ask.pem"))).unwrap();
            assert!(amd.find(&super::super::cert::sha256(&ask)).is_none());
        }
    }

    #[test]
    fn add_root_and_without_amd() {
        let mut t = TrustAnchors::amd();
        t.add_root_pem(&read("milan/ark.pem"), true).unwrap();
        // Same fingerprint: replaced, not duplicated, and no longer built in.
        assert_eq!(t.anchors.len(), 3);
        let only = t.clone().without_amd();
        assert_eq!(
            only.describe(),
            vec![(
                Product::Milan,
                "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd".into(),
                true
            )]
        );
        assert!(TrustAnchors::amd().without_amd().is_empty());
        // An ASK is not a root.
        assert_eq!(
            t.add_root_pem(&read("milan/ask.pem"), false)
                .unwrap_err()
                .category(),
            "malformed"
        );
    }
}

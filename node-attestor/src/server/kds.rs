//! Opt-in fetching from AMD's Key Distribution Service (KDS), with an on-disk cache.
//!
//! Used only when `snp.kds` is configured and the evidence, `cert_dir` and the cache lack a certificate:
//! the VCEK by hwID and reported TCB, the ASK/ASVK + ARK bundle and the CRL. The URLs, the checks that
//! keep junk out of the cache and the atomic cache writes are `twi_core::collateral::kds::KdsClient`'s,
//! shared with the TDX collateral source; this is the plugin's configuration of it. Nothing fetched is
//! trusted: it only fills a [`CertChain`] the verifier then checks to a pinned root.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use twi_core::collateral::kds::KdsClient;
use twi_core::collateral::{CollateralError, UreqFetch};
use twi_core::snp::{CertChain, Product, SigningKeyKind, TcbParts};

/// AMD's production KDS.
pub(crate) use twi_core::collateral::kds::DEFAULT_KDS_URL;

/// The configured KDS: base URL, cache directory, timeout.
#[derive(Debug, Clone)]
pub(crate) struct Kds {
    client: KdsClient,
}

impl Kds {
    pub(crate) fn new(url: String, cache_dir: PathBuf, timeout: Duration) -> Kds {
        Kds {
            client: KdsClient::new(url, cache_dir, timeout, Arc::new(UreqFetch)),
        }
    }

    /// The directory fetched files are cached in (read like `cert_dir`).
    pub(crate) fn cache_dir(&self) -> &Path {
        self.client.cache_dir()
    }

    /// Fetches the VCEK for `hwid` at `tcb`, checks it is a VCEK, caches it and returns its DER.
    pub(crate) fn fetch_vcek(
        &self,
        product: Product,
        hwid: &[u8],
        tcb: &TcbParts,
        tcb_raw: u64,
    ) -> Result<Vec<u8>, CollateralError> {
        self.client.fetch_vcek(product, hwid, tcb, tcb_raw)
    }

    /// Fetches the ASK (VCEK) or ASVK (VLEK) + ARK bundle, caches it and returns it parsed.
    pub(crate) fn fetch_cert_chain(
        &self,
        product: Product,
        kind: SigningKeyKind,
    ) -> Result<CertChain, CollateralError> {
        self.client.fetch_cert_chain(product, kind)
    }

    /// Fetches the product's CRL (DER), checks it parses, caches it and returns it.
    pub(crate) fn fetch_crl(&self, product: Product) -> Result<Vec<u8>, CollateralError> {
        self.client.fetch_crl(product)
    }
}

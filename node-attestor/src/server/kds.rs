//! Opt-in fetching from AMD's Key Distribution Service (KDS), with an on-disk cache.
//!
//! Used only when `snp.kds` is configured and the evidence, `cert_dir` and the cache lack a certificate:
//! the VCEK by hwID and reported TCB (`/vcek/v1/{product}/{hwid}?blSPL=…`), the ASK/ASVK + ARK bundle
//! (`/{vcek,vlek}/v1/{product}/cert_chain`) and the CRL (`/{vcek,vlek}/v1/{product}/crl`). Nothing fetched is
//! trusted: it only fills a [`CertChain`] the verifier then checks to a pinned root, so a hostile network
//! can make attestation fail but never pass. Responses are checked to parse before they are cached, so
//! the cache cannot be poisoned with junk. The network call is behind [`Fetch`] so tests can replace it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use twi_core::snp::{CertChain, Product, SigningKeyKind, TcbParts, MAX_CERT_FILE_LEN, MAX_CRL_LEN};

use super::certs::{product_dir, vcek_file_name, CHAIN_FILE_VCEK, CHAIN_FILE_VLEK, CRL_FILE};

/// AMD's production KDS.
pub(crate) const DEFAULT_KDS_URL: &str = "https://kdsintf.amd.com";

/// Why a fetch failed (logged by the caller; the attestation then fails as "missing certificate").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FetchError {
    #[error("GET {url}: {detail}")]
    Http { url: String, detail: String },
    #[error("GET {url}: response is not {what}: {detail}")]
    BadResponse {
        url: String,
        what: &'static str,
        detail: String,
    },
    #[error("cache {path}: {detail}")]
    Cache { path: PathBuf, detail: String },
}

/// One HTTP GET with a size cap and a timeout; the seam that keeps the network out of unit tests.
pub(crate) trait Fetch: Send + Sync + std::fmt::Debug {
    fn get(&self, url: &str, max_len: usize, timeout: Duration) -> Result<Vec<u8>, FetchError>;
}

/// [`Fetch`] over `ureq` (blocking: callers run on a blocking thread).
#[derive(Debug, Default)]
pub(crate) struct UreqFetch;

impl Fetch for UreqFetch {
    fn get(&self, url: &str, max_len: usize, timeout: Duration) -> Result<Vec<u8>, FetchError> {
        let err = |detail: String| FetchError::Http {
            url: url.to_owned(),
            detail,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .build()
            .into();
        let mut resp = agent.get(url).call().map_err(|e| err(e.to_string()))?;
        resp.body_mut()
            .with_config()
            .limit(u64::try_from(max_len).unwrap_or(u64::MAX))
            .read_to_vec()
            .map_err(|e| err(e.to_string()))
    }
}

/// The configured KDS: base URL, cache directory, timeout.
#[derive(Debug, Clone)]
pub(crate) struct Kds {
    url: String,
    cache_dir: PathBuf,
    timeout: Duration,
    fetch: Arc<dyn Fetch>,
}

fn kind_path(kind: SigningKeyKind) -> &'static str {
    match kind {
        SigningKeyKind::Vlek => "vlek",
        _ => "vcek",
    }
}

/// Writes `bytes` to `path` via a temporary file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let cache = |detail: String| FetchError::Cache {
        path: path.to_path_buf(),
        detail,
    };
    let dir = path
        .parent()
        .ok_or_else(|| cache("no parent directory".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| cache(e.to_string()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| cache(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| cache(e.to_string()))
}

impl Kds {
    pub(crate) fn new(url: String, cache_dir: PathBuf, timeout: Duration) -> Kds {
        Kds {
            url,
            cache_dir,
            timeout,
            fetch: Arc::new(UreqFetch),
        }
    }

    /// The directory fetched files are cached in (read like `cert_dir`).
    pub(crate) fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// `…/vcek/v1/{product}/{hwid}?[fmcSPL=..&]blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`
    pub(crate) fn vcek_url(&self, product: Product, hwid: &[u8], tcb: &TcbParts) -> String {
        let fmc = match (product, tcb.fmc) {
            (Product::Turin, Some(fmc)) => format!("fmcSPL={fmc}&"),
            _ => String::new(),
        };
        format!(
            "{}/vcek/v1/{}/{}?{fmc}blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            self.url,
            product.kds_name(),
            hex::encode(hwid),
            tcb.bootloader,
            tcb.tee,
            tcb.snp,
            tcb.microcode
        )
    }

    /// Fetches the VCEK for `hwid` at `tcb`, checks it is a VCEK, caches it and returns its DER.
    pub(crate) fn fetch_vcek(
        &self,
        product: Product,
        hwid: &[u8],
        tcb: &TcbParts,
        tcb_raw: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let url = self.vcek_url(product, hwid, tcb);
        let der = self.fetch.get(&url, MAX_CERT_FILE_LEN, self.timeout)?;
        let mut check = CertChain::default();
        let bad = |detail: String| FetchError::BadResponse {
            url: url.clone(),
            what: "a VCEK certificate",
            detail,
        };
        check.add_pem_or_der(&der).map_err(|e| bad(e.to_string()))?;
        let vek = check.vek.ok_or_else(|| bad("not a VCEK".into()))?;
        let path = product_dir(&self.cache_dir, product)
            .join("vcek")
            .join(vcek_file_name(hwid, tcb_raw));
        write_atomic(&path, &vek)?;
        Ok(vek)
    }

    /// Fetches the ASK (VCEK) or ASVK (VLEK) + ARK bundle, caches it and returns it parsed.
    pub(crate) fn fetch_cert_chain(
        &self,
        product: Product,
        kind: SigningKeyKind,
    ) -> Result<CertChain, FetchError> {
        let url = format!(
            "{}/{}/v1/{}/cert_chain",
            self.url,
            kind_path(kind),
            product.kds_name()
        );
        let pem = self.fetch.get(&url, MAX_CERT_FILE_LEN, self.timeout)?;
        let bad = |detail: String| FetchError::BadResponse {
            url: url.clone(),
            what: "an ASK/ASVK + ARK bundle",
            detail,
        };
        let mut chain = CertChain::default();
        chain.add_pem_or_der(&pem).map_err(|e| bad(e.to_string()))?;
        if chain.ask.is_none() || chain.ark.is_none() || chain.vek.is_some() {
            return Err(bad("want exactly an ASK/ASVK and an ARK".into()));
        }
        let name = match kind {
            SigningKeyKind::Vlek => CHAIN_FILE_VLEK,
            _ => CHAIN_FILE_VCEK,
        };
        write_atomic(&product_dir(&self.cache_dir, product).join(name), &pem)?;
        Ok(chain)
    }

    /// Fetches the product's CRL (DER), checks it parses, caches it and returns it.
    pub(crate) fn fetch_crl(&self, product: Product) -> Result<Vec<u8>, FetchError> {
        let url = format!("{}/vcek/v1/{}/crl", self.url, product.kds_name());
        let der = self.fetch.get(&url, MAX_CRL_LEN, self.timeout)?;
        let mut check =
            twi_core::snp::Verifier::new(twi_core::snp::TrustAnchors::amd().without_amd());
        check
            .add_crl_der(&der)
            .map_err(|e| FetchError::BadResponse {
                url: url.clone(),
                what: "a CRL",
                detail: e.to_string(),
            })?;
        write_atomic(&product_dir(&self.cache_dir, product).join(CRL_FILE), &der)?;
        Ok(der)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn vcek_url_matches_kds() {
        let kds = Kds::new(
            "https://kdsintf.amd.com".into(),
            PathBuf::from("/x"),
            Duration::from_secs(1),
        );
        let milan = TcbParts {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        };
        assert_eq!(
            kds.vcek_url(Product::Milan, &[0xab, 0x01], &milan),
            "https://kdsintf.amd.com/vcek/v1/Milan/ab01?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
        );
        let turin = TcbParts {
            fmc: Some(1),
            ..milan
        };
        assert_eq!(
            kds.vcek_url(Product::Turin, &[0xff; 2], &turin),
            "https://kdsintf.amd.com/vcek/v1/Turin/ffff?fmcSPL=1&blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
        );
    }
}

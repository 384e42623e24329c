//! AMD Key Distribution Service (KDS): the VCEK by hwID and reported TCB
//! (`/vcek/v1/{product}/{hwid}?blSPL=…`), the ASK/ASVK + ARK bundle (`/{vcek,vlek}/v1/{product}/cert_chain`)
//! and the product's CRL (`/vcek/v1/{product}/crl`), each checked to parse and written to the cache
//! with [`super::write_atomic`] before it is returned.
//!
//! The cache layout is the one an operator's SNP `cert_dir` has: per product (`milan`, `genoa`,
//! `turin`), `vcek/<hwid hex>-<reported TCB hex>.der`, [`CHAIN_FILE_VCEK`] / [`CHAIN_FILE_VLEK`] and
//! [`CRL_FILE`]. Nothing fetched is trusted: it fills a [`CertChain`] that the SNP verifier checks to a
//! pinned ARK.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{write_atomic, CollateralError, Fetch};
use crate::snp::{CertChain, Product, SigningKeyKind, TcbParts, MAX_CERT_FILE_LEN, MAX_CRL_LEN};

/// AMD's production KDS.
pub const DEFAULT_KDS_URL: &str = "https://kdsintf.amd.com";
/// KDS `/vcek/v1/{product}/cert_chain` (ASK + ARK) as cached.
pub const CHAIN_FILE_VCEK: &str = "cert_chain.pem";
/// KDS `/vlek/v1/{product}/cert_chain` (ASVK + ARK) as cached.
pub const CHAIN_FILE_VLEK: &str = "vlek_cert_chain.pem";
/// The product's CRL as cached.
pub const CRL_FILE: &str = "crl.der";

/// `<base>/<product in lower case>`.
pub fn product_dir(base: &Path, product: Product) -> PathBuf {
    base.join(product.kds_name().to_ascii_lowercase())
}

/// `<hwid hex>-<reported TCB as 16 hex digits>.der`: a VCEK is specific to one chip and one TCB.
pub fn vcek_file_name(hwid: &[u8], tcb_raw: u64) -> String {
    format!("{}-{tcb_raw:016x}.der", hex::encode(hwid))
}

fn kind_path(kind: SigningKeyKind) -> &'static str {
    match kind {
        SigningKeyKind::Vlek => "vlek",
        _ => "vcek",
    }
}

/// A KDS (AMD's or a mirror), its cache directory and per-request timeout.
#[derive(Clone, Debug)]
pub struct KdsClient {
    url: String,
    cache_dir: PathBuf,
    timeout: Duration,
    fetch: Arc<dyn Fetch>,
}

impl KdsClient {
    /// `url` without a trailing `/` (one is dropped).
    pub fn new(
        url: impl Into<String>,
        cache_dir: PathBuf,
        timeout: Duration,
        fetch: Arc<dyn Fetch>,
    ) -> KdsClient {
        let url: String = url.into();
        KdsClient {
            url: url.trim_end_matches('/').to_owned(),
            cache_dir,
            timeout,
            fetch,
        }
    }

    /// The directory fetched files are cached in (read like an SNP `cert_dir`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// `…/vcek/v1/{product}/{hwid}?[fmcSPL=..&]blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`
    pub fn vcek_url(&self, product: Product, hwid: &[u8], tcb: &TcbParts) -> String {
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

    /// `…/{vcek|vlek}/v1/{product}/cert_chain`
    pub fn cert_chain_url(&self, product: Product, kind: SigningKeyKind) -> String {
        format!(
            "{}/{}/v1/{}/cert_chain",
            self.url,
            kind_path(kind),
            product.kds_name()
        )
    }

    /// `…/vcek/v1/{product}/crl`
    pub fn crl_url(&self, product: Product) -> String {
        format!("{}/vcek/v1/{}/crl", self.url, product.kds_name())
    }

    /// Fetches the VCEK for `hwid` at `tcb`, checks it is a VCEK, caches it and returns its DER.
    ///
    /// # Errors
    /// [`CollateralError::Http`] / [`CollateralError::Status`] from the fetch,
    /// [`CollateralError::BadResponse`] when it is not a VCEK, [`CollateralError::Cache`].
    pub fn fetch_vcek(
        &self,
        product: Product,
        hwid: &[u8],
        tcb: &TcbParts,
        tcb_raw: u64,
    ) -> Result<Vec<u8>, CollateralError> {
        let url = self.vcek_url(product, hwid, tcb);
        let der = self
            .fetch
            .get(&url, &[], MAX_CERT_FILE_LEN, self.timeout)?
            .body;
        let bad = |detail: String| CollateralError::BadResponse {
            url: url.clone(),
            what: "a VCEK certificate",
            detail,
        };
        let mut check = CertChain::default();
        check.add_pem_or_der(&der).map_err(|e| bad(e.to_string()))?;
        let vek = check.vek.ok_or_else(|| bad("not a VCEK".into()))?;
        let path = product_dir(&self.cache_dir, product)
            .join("vcek")
            .join(vcek_file_name(hwid, tcb_raw));
        write_atomic(&path, &vek)?;
        Ok(vek)
    }

    /// Fetches the ASK (VCEK) or ASVK (VLEK) + ARK bundle, caches it and returns it parsed.
    ///
    /// # Errors
    /// As [`KdsClient::fetch_vcek`]; [`CollateralError::BadResponse`] unless it is exactly an
    /// ASK/ASVK and an ARK.
    pub fn fetch_cert_chain(
        &self,
        product: Product,
        kind: SigningKeyKind,
    ) -> Result<CertChain, CollateralError> {
        let url = self.cert_chain_url(product, kind);
        let pem = self
            .fetch
            .get(&url, &[], MAX_CERT_FILE_LEN, self.timeout)?
            .body;
        let bad = |detail: String| CollateralError::BadResponse {
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

    /// Fetches the product's CRL (DER), checks it parses as an AMD CRL, caches it and returns it.
    ///
    /// # Errors
    /// As [`KdsClient::fetch_vcek`].
    pub fn fetch_crl(&self, product: Product) -> Result<Vec<u8>, CollateralError> {
        let url = self.crl_url(product);
        let der = self.fetch.get(&url, &[], MAX_CRL_LEN, self.timeout)?.body;
        let mut check = crate::snp::Verifier::new(crate::snp::TrustAnchors::amd().without_amd());
        check
            .add_crl_der(&der)
            .map_err(|e| CollateralError::BadResponse {
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
    use crate::collateral::Response;

    #[derive(Debug)]
    struct Never;
    impl Fetch for Never {
        fn get(
            &self,
            url: &str,
            _: &[&str],
            _: usize,
            _: Duration,
        ) -> Result<Response, CollateralError> {
            Err(CollateralError::Status {
                url: url.into(),
                status: 404,
            })
        }
    }

    #[test]
    fn urls_match_kds() {
        let kds = KdsClient::new(
            "https://kdsintf.amd.com/",
            PathBuf::from("/x"),
            Duration::from_secs(1),
            Arc::new(Never),
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
        assert_eq!(
            kds.cert_chain_url(Product::Genoa, SigningKeyKind::Vlek),
            "https://kdsintf.amd.com/vlek/v1/Genoa/cert_chain"
        );
        assert_eq!(
            kds.crl_url(Product::Milan),
            "https://kdsintf.amd.com/vcek/v1/Milan/crl"
        );
        assert_eq!(
            vcek_file_name(&[0xab, 0xcd], 0x1234),
            "abcd-0000000000001234.der"
        );
        assert_eq!(
            product_dir(Path::new("/c"), Product::Genoa),
            PathBuf::from("/c/genoa")
        );
        let e = kds.fetch_crl(Product::Milan).unwrap_err();
        assert!(
            matches!(e, CollateralError::Status { status: 404, .. }),
            "{e}"
        );
    }
}

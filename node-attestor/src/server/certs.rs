//! Resolving the certificate chain of a report: the evidence's certificate table first, then the
//! operator's `cert_dir`, then the KDS cache, then (only if configured) AMD's KDS.
//!
//! Each source only fills slots still empty, and nothing here is trusted: the verifier checks the
//! result to a pinned root. A directory holds, per product (`milan`, `genoa`, `turin`):
//! `ark.pem`, `ask.pem`, `asvk.pem`, `crl.der`, `vcek/<hwid hex>-<reported TCB hex>.der`, and the KDS
//! bundles `cert_chain.pem` / `vlek_cert_chain.pem` (ASK or ASVK + ARK).

use std::path::{Path, PathBuf};

use twi_core::snp::{
    AttestationReport, CertChain, Product, SigningKeyKind, TcbParts, MAX_CERT_FILE_LEN,
};
use twi_core::Error;

use super::config::read_capped;
use super::kds::Kds;

// The directory layout is the KDS cache's (`twi_core::collateral::kds`), so `cert_dir` and the cache are
// read alike and an operator can copy one into the other.
pub(crate) use twi_core::collateral::kds::{
    product_dir, vcek_file_name, CHAIN_FILE_VCEK, CHAIN_FILE_VLEK,
};

const ALL_PRODUCTS: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

/// Where certificates beyond the evidence come from.
#[derive(Debug)]
pub(crate) struct CertSource {
    cert_dir: Option<PathBuf>,
    kds: Option<Kds>,
}

/// A chain and where its parts came from (for the debug log).
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    pub(crate) chain: CertChain,
    pub(crate) sources: Vec<String>,
}

/// Our own collateral is broken: the server's fault, not the agent's.
fn collateral_error(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::Internal {
        detail: format!("local certificate {}: {detail}", path.display()),
    }
}

/// The hwID the KDS indexes VCEKs by: the first `hwid_len` bytes of CHIP_ID.
fn hwid(report: &AttestationReport, product: Product) -> &[u8] {
    let id = report.chip_id().as_slice();
    id.get(..product.hwid_len()).unwrap_or(id)
}

impl CertSource {
    pub(crate) fn new(cert_dir: Option<PathBuf>, kds: Option<Kds>) -> CertSource {
        CertSource { cert_dir, kds }
    }

    pub(crate) fn kds(&self) -> Option<&Kds> {
        self.kds.as_ref()
    }

    /// The chain for `report`: the evidence's table (`table`), completed from the local directories and
    /// then, when configured, from KDS. A missing certificate is left missing; the verifier names it.
    ///
    /// # Errors
    ///
    /// `malformed` for a bad certificate table; `internal` for a local file that does not parse.
    pub(crate) fn resolve(
        &self,
        report: &AttestationReport,
        table: Option<&[u8]>,
    ) -> Result<Resolved, Error> {
        let mut r = Resolved::default();
        if let Some(table) = table {
            r.chain = CertChain::from_cert_table(table)?;
            r.sources.push("evidence".into());
        }
        if complete(&r.chain) {
            return Ok(r);
        }
        // Without CPUID (reports before v3) the product is unknown: look in every product's directory.
        let cpuid_product = report
            .cpuid()
            .and_then(|(family, model, _)| Product::from_cpuid(family, model));
        let products: Vec<Product> =
            cpuid_product.map_or_else(|| ALL_PRODUCTS.to_vec(), |p| vec![p]);
        let dirs = [
            self.cert_dir.as_deref(),
            self.kds.as_ref().map(Kds::cache_dir),
        ];
        for dir in dirs.into_iter().flatten() {
            for &product in &products {
                if fill_from_dir(&mut r.chain, &product_dir(dir, product), product, report)? {
                    r.sources
                        .push(format!("{}", product_dir(dir, product).display()));
                }
                if complete(&r.chain) {
                    return Ok(r);
                }
            }
        }
        if let (Some(kds), Some(product)) = (&self.kds, cpuid_product) {
            fill_from_kds(kds, &mut r, product, report);
        }
        Ok(r)
    }
}

fn complete(c: &CertChain) -> bool {
    c.vek.is_some() && c.ask.is_some() && c.ark.is_some()
}

/// Parses a local certificate file, or `None` if it does not exist.
fn read_certs(path: &Path) -> Result<Option<CertChain>, Error> {
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = read_capped(path, MAX_CERT_FILE_LEN).map_err(|e| collateral_error(path, e))?;
    let mut chain = CertChain::default();
    chain
        .add_pem_or_der(&bytes)
        .map_err(|e| collateral_error(path, e))?;
    Ok(Some(chain))
}

/// Fills empty slots of `chain` from one product directory; true if anything was taken.
fn fill_from_dir(
    chain: &mut CertChain,
    dir: &Path,
    product: Product,
    report: &AttestationReport,
) -> Result<bool, Error> {
    let before = chain.clone();
    let kind = report.signing_key();
    if chain.vek.is_none() && kind == SigningKeyKind::Vcek && !report.mask_chip_key() {
        let path = dir
            .join("vcek")
            .join(vcek_file_name(hwid(report, product), report.reported_tcb()));
        if let Some(found) = read_certs(&path)? {
            chain.vek = found.vek;
        }
    }
    let (ask_file, bundle) = match kind {
        SigningKeyKind::Vlek => ("asvk.pem", CHAIN_FILE_VLEK),
        _ => ("ask.pem", CHAIN_FILE_VCEK),
    };
    for name in [ask_file, "ark.pem", bundle] {
        if chain.ask.is_some() && chain.ark.is_some() {
            break;
        }
        if let Some(found) = read_certs(&dir.join(name))? {
            if chain.ask.is_none() {
                chain.ask = found.ask;
            }
            if chain.ark.is_none() {
                chain.ark = found.ark;
            }
        }
    }
    Ok(*chain != before)
}

/// Fills empty slots from KDS; failures are logged and leave the slot empty (the verifier then reports
/// the missing certificate, which maps to Unavailable: retry later).
fn fill_from_kds(kds: &Kds, r: &mut Resolved, product: Product, report: &AttestationReport) {
    let kind = report.signing_key();
    if r.chain.vek.is_none() && kind == SigningKeyKind::Vcek && !report.mask_chip_key() {
        let tcb = TcbParts::decode(report.reported_tcb(), product);
        match kds.fetch_vcek(product, hwid(report, product), &tcb, report.reported_tcb()) {
            Ok(der) => {
                r.chain.vek = Some(der);
                r.sources.push("kds:vcek".into());
            }
            Err(e) => tracing::warn!(error = %e, "KDS: VCEK fetch failed"),
        }
    }
    if r.chain.ask.is_none() || r.chain.ark.is_none() {
        match kds.fetch_cert_chain(product, kind) {
            Ok(c) => {
                if r.chain.ask.is_none() {
                    r.chain.ask = c.ask;
                }
                if r.chain.ark.is_none() {
                    r.chain.ark = c.ark;
                }
                r.sources.push("kds:cert_chain".into());
            }
            Err(e) => tracing::warn!(error = %e, "KDS: cert_chain fetch failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    fn report(rel: &str) -> AttestationReport {
        AttestationReport::parse(&std::fs::read(format!("{TESTDATA}/{rel}")).unwrap()).unwrap()
    }

    #[test]
    fn file_names() {
        assert_eq!(
            product_dir(Path::new("/c"), Product::Genoa),
            PathBuf::from("/c/genoa")
        );
        assert_eq!(
            vcek_file_name(&[0xab, 0xcd], 0x1234),
            "abcd-0000000000001234.der"
        );
    }

    #[test]
    fn cert_dir_completes_ask_ark_and_cached_vcek() {
        // Real Milan v3 evidence without a table: the vendor roots directory has the ASK and ARK, a
        // VCEK cached under its hwID and TCB completes the chain.
        let r = report("snp/oak-milan-v3/report.bin");
        let dir = tempfile::tempdir().unwrap();
        let milan = dir.path().join("milan");
        std::fs::create_dir_all(milan.join("vcek")).unwrap();
        for f in ["ark.pem", "ask.pem"] {
            std::fs::copy(
                format!("{TESTDATA}/vendor-roots/amd/milan/{f}"),
                milan.join(f),
            )
            .unwrap();
        }
        let src = CertSource::new(Some(dir.path().to_path_buf()), None);
        let got = src.resolve(&r, None).unwrap();
        assert!(got.chain.vek.is_none(), "no VCEK cached yet");
        assert!(got.chain.ask.is_some() && got.chain.ark.is_some());

        let vcek = std::fs::read(format!("{TESTDATA}/snp/oak-milan-v3/vcek.der")).unwrap();
        std::fs::write(
            milan
                .join("vcek")
                .join(vcek_file_name(&r.chip_id()[..64], r.reported_tcb())),
            &vcek,
        )
        .unwrap();
        let got = src.resolve(&r, None).unwrap();
        assert_eq!(got.chain.vek.as_deref(), Some(vcek.as_slice()));
    }

    #[test]
    fn vlek_report_takes_the_asvk() {
        let r = report("snp/aws-milan-v3-vlek/report.bin");
        let src = CertSource::new(Some(format!("{TESTDATA}/vendor-roots/amd").into()), None);
        let got = src.resolve(&r, None).unwrap();
        let asvk = read_certs(Path::new(&format!(
            "{TESTDATA}/vendor-roots/amd/milan/asvk.pem"
        )))
        .unwrap()
        .unwrap();
        assert_eq!(got.chain.ask, asvk.ask);
        assert!(got.chain.vek.is_none());
    }

    #[test]
    fn broken_local_file_is_internal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("milan")).unwrap();
        std::fs::write(dir.path().join("milan/ask.pem"), b"not a cert").unwrap();
        let src = CertSource::new(Some(dir.path().to_path_buf()), None);
        let e = src
            .resolve(&report("snp/oak-milan-v3/report.bin"), None)
            .unwrap_err();
        assert_eq!(e.category(), "internal", "{e}");
        assert!(e.to_string().contains("ask.pem"), "{e}");
    }
}

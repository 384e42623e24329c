//! Verifying a parsed report: the certificate chain to a pinned AMD root at a caller-given time, the
//! VCEK/VLEK's binding to the report, and the report signature over the received bytes.
//!
//! [`Verifier::verify`] is one straight line of numbered steps. Steps 2–4 and 6 (the RSA chain and
//! revocation) depend only on the certificates, so their result is cached by the SHA-256 of the VEK
//! DER; the cache entry keeps the validity windows (certificates and consulted CRLs), so the time
//! checks (step 5) run on every call. An entry is used only when the call presents the same ASK and
//! ARK (or the same absence of them) as the call that made it, so a verdict never depends on what an
//! earlier call cached. A warm call costs two SHA-256 of the ASK/ARK, one ECDSA verification and
//! comparisons.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use der::Decode;
use p384::ecdsa::signature::Verifier as _;
use x509_cert::crl::CertificateList;

use super::anchors::{Anchor, TrustAnchors};
use super::cert::{name_cn, sha256, signed_part, verify_pss, AmdExtensions, ParsedCert, Role};
use super::claims::SnpClaims;
use super::report::{AttestationReport, SigningKeyKind};
use super::{CertChain, Product, TcbParts};
use crate::Error;

/// CRLs larger than this are refused (AMD's are a few KiB).
pub const MAX_CRL_LEN: usize = 1024 * 1024;
/// The chain cache is emptied when it reaches this many entries (one entry per VCEK/VLEK seen).
pub const MAX_CACHED_CHAINS: usize = 4096;

/// Evidence whose signature and chain verified. Only [`Verifier::verify`] builds one, so holding a
/// `VerifiedSnp` proves those checks ran (the appraisal takes this type, not the parsed report).
#[derive(Clone, Debug)]
pub struct VerifiedSnp {
    report: AttestationReport,
    product: Product,
    signing_key: SigningKeyKind,
    simulated: bool,
    vek_sha256: [u8; 32],
    ark_sha256: [u8; 32],
}

impl VerifiedSnp {
    pub fn report(&self) -> &AttestationReport {
        &self.report
    }
    /// The product line the chain was verified for.
    pub fn product(&self) -> Product {
        self.product
    }
    pub fn signing_key(&self) -> SigningKeyKind {
        self.signing_key
    }
    /// The chain ends in a root added as simulated: never real hardware.
    pub fn simulated(&self) -> bool {
        self.simulated
    }
    pub fn reported_tcb(&self) -> TcbParts {
        TcbParts::decode(self.report.reported_tcb(), self.product)
    }
    /// SHA-256 of the VCEK/VLEK DER.
    pub fn vek_sha256(&self) -> &[u8; 32] {
        &self.vek_sha256
    }
    /// SHA-256 of the ARK DER (the trust anchor the chain ended in).
    pub fn ark_sha256(&self) -> &[u8; 32] {
        &self.ark_sha256
    }
    /// Everything an operator would appraise, as hex strings and decoded parts.
    pub fn claims(&self) -> SnpClaims {
        SnpClaims::new(self)
    }
}

/// A VCEK/VLEK reduced to what the report checks need.
#[derive(Clone, Debug)]
struct Vek {
    kind: SigningKeyKind,
    product: Option<Product>,
    product_name: Option<String>,
    exts: AmdExtensions,
    key: p384::ecdsa::VerifyingKey,
}

impl Vek {
    fn parse(der: &[u8]) -> Result<(Vek, ParsedCert), Error> {
        let cert = ParsedCert::from_der(der)?;
        let kind = match cert.role() {
            Some(Role::Vcek) => SigningKeyKind::Vcek,
            Some(Role::Vlek) => SigningKeyKind::Vlek,
            _ => {
                return Err(Error::chain(
                    "VEK",
                    format!(
                        "subject CN {:?} is not SEV-VCEK or SEV-VLEK",
                        cert.common_name()
                    ),
                ))
            }
        };
        let exts = cert.amd_extensions()?;
        let key = cert
            .p384_key()
            .map_err(|e| Error::chain(kind_name(kind), e))?;
        let product_name = exts.product_name.clone();
        let product = product_name.as_deref().and_then(Product::from_cert_name);
        Ok((
            Vek {
                kind,
                product,
                product_name,
                exts,
                key,
            },
            cert,
        ))
    }
}

fn kind_name(kind: SigningKeyKind) -> &'static str {
    match kind {
        SigningKeyKind::Vlek => "VLEK",
        _ => "VCEK",
    }
}

/// SHA-256 of the ASK/ASVK and ARK a chain came with (`None`: not sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Presented {
    ask: Option<[u8; 32]>,
    ark: Option<[u8; 32]>,
}

/// The result of steps 2–4 and 6 for one VEK, plus the time windows step 5 re-checks.
#[derive(Debug)]
struct ChainEntry {
    vek: Vek,
    presented: Presented,
    product: Product,
    simulated: bool,
    ark_sha256: [u8; 32],
    /// `(certificate, notBefore, notAfter)` of ARK, ASK/ASVK, VEK.
    validity: Vec<(&'static str, i64, i64)>,
    /// `(issuer, thisUpdate, nextUpdate)` of every CRL consulted.
    crl_windows: Vec<(String, i64, Option<i64>)>,
}

impl ChainEntry {
    /// Step 5: certificates and consulted CRLs are current at `now`.
    fn check_time(&self, now: i64) -> Result<(), Error> {
        for &(cert, not_before, not_after) in &self.validity {
            if now < not_before || now > not_after {
                return Err(Error::CertValidity {
                    cert,
                    not_before,
                    not_after,
                    now,
                });
            }
        }
        for (issuer, this_update, next_update) in &self.crl_windows {
            if now < *this_update || next_update.is_some_and(|n| now > n) {
                return Err(Error::CrlExpired {
                    issuer: issuer.clone(),
                    this_update: *this_update,
                    next_update: *next_update,
                    now,
                });
            }
        }
        Ok(())
    }
}

/// A loaded CRL; its signature is checked against the issuing certificate when a chain uses it.
#[derive(Debug)]
struct Crl {
    list: CertificateList,
    tbs: Vec<u8>,
    issuer_cn: String,
    this_update: i64,
    next_update: Option<i64>,
    revoked: HashSet<Vec<u8>>,
}

fn unix(t: x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// Verifies SNP evidence against a fixed set of trust anchors and CRLs. `Send + Sync`: share one
/// verifier (behind an `Arc`) between requests so its chain cache is shared too.
#[derive(Debug)]
pub struct Verifier {
    anchors: TrustAnchors,
    crls: Vec<Crl>,
    cache: Mutex<HashMap<[u8; 32], Arc<ChainEntry>>>,
}

impl Verifier {
    pub fn new(anchors: TrustAnchors) -> Self {
        Verifier {
            anchors,
            crls: Vec::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// Loads an AMD CRL (DER). Its signature is verified against the certificate it names as issuer
    /// (for AMD's: the pinned ARK) each time a chain is checked against it; certificates whose serial
    /// it lists are refused with category `revoked`. Loading a CRL empties the chain cache.
    ///
    /// # Errors
    /// [`Error::Malformed`] when larger than [`MAX_CRL_LEN`] or not a CRL.
    pub fn add_crl_der(&mut self, der: &[u8]) -> Result<(), Error> {
        if der.len() > MAX_CRL_LEN {
            return Err(Error::malformed(
                "CRL",
                format!("{} bytes, cap {MAX_CRL_LEN}", der.len()),
            ));
        }
        let list = CertificateList::from_der(der).map_err(|e| Error::malformed("CRL", e))?;
        let tbs = signed_part(der)
            .map_err(|e| Error::malformed("CRL", e))?
            .to_vec();
        let t = &list.tbs_cert_list;
        let revoked = t
            .revoked_certificates
            .iter()
            .flatten()
            .map(|r| r.serial_number.as_bytes().to_vec())
            .collect();
        let crl = Crl {
            issuer_cn: name_cn(&t.issuer).unwrap_or_else(|| t.issuer.to_string()),
            this_update: unix(t.this_update),
            next_update: t.next_update.map(unix),
            revoked,
            tbs,
            list,
        };
        self.crls.push(crl);
        self.clear_cache();
        Ok(())
    }

    /// Forgets every verified chain (the next call per VEK takes the cold path).
    pub fn clear_cache(&self) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many VEK chains are cached.
    pub fn cached_chains(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Verifies `report` with the certificates in `chain` at `now_unix_secs`.
    ///
    /// # Errors
    /// `missing-certificate` (a needed certificate was not sent), `untrusted-root`, `cert-chain`,
    /// `cert-validity`, `revoked`, `collateral-signature`/`collateral-expired` (a loaded CRL),
    /// `key-mismatch` (VEK of another chip, TCB, product or key kind), `signature`; `malformed` for
    /// certificates that do not parse.
    pub fn verify(
        &self,
        report: &AttestationReport,
        chain: &CertChain,
        now_unix_secs: i64,
    ) -> Result<VerifiedSnp, Error> {
        let now = now_unix_secs;
        let vek_der = chain
            .vek
            .as_deref()
            .ok_or(Error::MissingCertificate { cert: "VCEK/VLEK" })?;
        let vek_sha256 = sha256(vek_der);
        // A hit needs the same ASK and ARK (or the same absence) as when the entry was made, so the
        // verdict never depends on what an earlier call happened to cache.
        let presented = Presented {
            ask: chain.ask.as_deref().map(sha256),
            ark: chain.ark.as_deref().map(sha256),
        };
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&vek_sha256)
            .filter(|e| e.presented == presented)
            .cloned();
        let (vek, vek_cert) = match &cached {
            Some(entry) => (entry.vek.clone(), None),
            None => {
                let (vek, cert) = Vek::parse(vek_der)?;
                (vek, Some(cert))
            }
        };

        // (1) Product: from the v3+ CPUID if the report has one, else from the VEK's productName.
        let cpuid_product = report
            .cpuid()
            .and_then(|(family, model, _)| Product::from_cpuid(family, model));
        let product = cpuid_product.or(vek.product).ok_or_else(|| {
            Error::chain(
                kind_name(vek.kind),
                "product unknown: no CPUID in the report and no productName in the certificate",
            )
        })?;

        // (2)–(4), (6): ARK pinned, ASK/ASVK signed by ARK, VEK signed by ASK/ASVK, not revoked. Cached.
        let entry = match (cached, vek_cert) {
            (Some(entry), _) => entry,
            (None, Some(vek_cert)) => {
                let entry = Arc::new(self.verify_chain(product, vek, &vek_cert, chain, presented)?);
                let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
                if cache.len() >= MAX_CACHED_CHAINS {
                    cache.clear();
                }
                cache.insert(vek_sha256, Arc::clone(&entry));
                entry
            }
            (None, None) => {
                return Err(Error::Internal {
                    detail: "VEK neither cached nor parsed".into(),
                })
            }
        };
        if entry.product != product {
            return Err(Error::chain(
                "ARK",
                format!(
                    "chain ends in the {} root, the report is from {product}",
                    entry.product
                ),
            ));
        }

        // (5) Validity of ARK, ASK/ASVK and VEK (and of consulted CRLs) at `now`, on every call.
        entry.check_time(now)?;

        // (7) The VEK belongs to this report: key kind, product, chip, TCB.
        check_binding(report, &entry.vek, product)?;

        // (8) ECDSA P-384 / SHA-384 over the received bytes [0, 0x2A0).
        let (r, s) = report.signature_scalars()?;
        let sig = p384::ecdsa::Signature::from_scalars(r, s).map_err(|e| Error::Signature {
            detail: format!("R or S out of range: {e}"),
        })?;
        entry
            .vek
            .key
            .verify(report.signed_bytes(), &sig)
            .map_err(|_| Error::Signature {
                detail: format!("does not verify with the {}", kind_name(entry.vek.kind)),
            })?;

        Ok(VerifiedSnp {
            report: report.clone(),
            product,
            signing_key: entry.vek.kind,
            simulated: entry.simulated,
            vek_sha256,
            ark_sha256: entry.ark_sha256,
        })
    }

    /// Steps 2–4 and 6 (the time-independent part of the chain).
    fn verify_chain(
        &self,
        product: Product,
        vek: Vek,
        vek_cert: &ParsedCert,
        chain: &CertChain,
        presented: Presented,
    ) -> Result<ChainEntry, Error> {
        let vek_name = kind_name(vek.kind);
        let ask = chain.ask.as_deref().ok_or(Error::MissingCertificate {
            cert: if vek.kind == SigningKeyKind::Vlek {
                "ASVK"
            } else {
                "ASK"
            },
        })?;
        let ask = ParsedCert::from_der(ask)?;
        let (ask_name, ask_product) = match ask.role() {
            Some(Role::Ask(p)) => ("ASK", p),
            Some(Role::Asvk(p)) => ("ASVK", p),
            _ => {
                return Err(Error::chain(
                    "ASK",
                    format!(
                        "subject CN {:?} is not SEV-<product> or SEV-VLEK-<product>",
                        ask.common_name()
                    ),
                ))
            }
        };

        // (2) The ARK is a trust anchor for this product, and self-signed.
        let (ark, anchor) = self.find_root(chain, &ask, product)?;
        if anchor.product != product {
            return Err(Error::chain(
                "ARK",
                format!(
                    "chain ends in the {} root, the report is from {product}",
                    anchor.product
                ),
            ));
        }
        ark.check_issued_by(&ark)
            .map_err(|e| Error::chain("ARK", format!("self-signature: {e}")))?;

        // (3) ASK/ASVK signed by the ARK, for the same product.
        if ask_product != product {
            return Err(Error::chain(
                ask_name,
                format!("{ask_name} is for {ask_product}, the report is from {product}"),
            ));
        }
        ask.check_issued_by(&ark)
            .map_err(|e| Error::chain(ask_name, e))?;

        // (4) VEK signed by the ASK (VCEK) or ASVK (VLEK).
        match (vek.kind, ask_name) {
            (SigningKeyKind::Vcek, "ASK") | (SigningKeyKind::Vlek, "ASVK") => {}
            _ => {
                return Err(Error::chain(
                    vek_name,
                    format!("a {vek_name} cannot be issued by an {ask_name}"),
                ))
            }
        }
        vek_cert
            .check_issued_by(&ask)
            .map_err(|e| Error::chain(vek_name, e))?;

        // (6) Revocation: each certificate against the loaded CRLs of its issuer.
        let mut crl_windows = self.check_revocation(&ask, ask_name, &ark)?;
        crl_windows.extend(self.check_revocation(vek_cert, vek_name, &ask)?);

        Ok(ChainEntry {
            validity: vec![
                ("ARK", ark.not_before(), ark.not_after()),
                (ask_name, ask.not_before(), ask.not_after()),
                (vek_name, vek_cert.not_before(), vek_cert.not_after()),
            ],
            vek,
            presented,
            product,
            simulated: anchor.simulated,
            ark_sha256: ark.sha256,
            crl_windows,
        })
    }

    /// The ARK the chain gives (accepted only if pinned), or an anchor's own certificate when the
    /// chain omits it.
    fn find_root(
        &self,
        chain: &CertChain,
        ask: &ParsedCert,
        product: Product,
    ) -> Result<(ParsedCert, &Anchor), Error> {
        if let Some(der) = chain.ark.as_deref() {
            let ark = ParsedCert::from_der(der)?;
            let Some(anchor) = self.anchors.find(&ark.sha256) else {
                return Err(Error::UntrustedRoot {
                    subject: ark
                        .common_name()
                        .unwrap_or_else(|| ark.cert.tbs_certificate.subject.to_string()),
                    fingerprint: hex::encode(ark.sha256),
                });
            };
            return Ok((ark, anchor));
        }
        for anchor in self.anchors.anchors.iter().filter(|a| a.product == product) {
            if let Some(der) = &anchor.der {
                let ark = ParsedCert::from_der(der)?;
                if ark.cert.tbs_certificate.subject == ask.cert.tbs_certificate.issuer {
                    return Ok((ark, anchor));
                }
            }
        }
        Err(Error::MissingCertificate { cert: "ARK" })
    }

    /// CRLs whose issuer is `issuer`: verify each one's signature, refuse `cert` if listed. Returns
    /// the windows of the CRLs consulted (checked against `now` in step 5).
    fn check_revocation(
        &self,
        cert: &ParsedCert,
        name: &'static str,
        issuer: &ParsedCert,
    ) -> Result<Vec<(String, i64, Option<i64>)>, Error> {
        let mut windows = Vec::new();
        let issuer_tbs = &issuer.cert.tbs_certificate;
        for crl in self
            .crls
            .iter()
            .filter(|c| c.list.tbs_cert_list.issuer == issuer_tbs.subject)
        {
            let invalid = |detail: String| Error::CrlInvalid {
                issuer: crl.issuer_cn.clone(),
                detail,
            };
            if crl.list.tbs_cert_list.signature != crl.list.signature_algorithm {
                return Err(invalid(
                    "tbsCertList.signature differs from signatureAlgorithm".into(),
                ));
            }
            let sig = crl
                .list
                .signature
                .as_bytes()
                .ok_or_else(|| invalid("signature BIT STRING has unused bits".into()))?;
            verify_pss(
                &issuer_tbs.subject_public_key_info,
                &crl.list.signature_algorithm,
                &crl.tbs,
                sig,
            )
            .map_err(invalid)?;
            if crl
                .revoked
                .contains(cert.cert.tbs_certificate.serial_number.as_bytes())
            {
                return Err(Error::Revoked {
                    cert: name,
                    serial: cert.serial_hex(),
                });
            }
            windows.push((crl.issuer_cn.clone(), crl.this_update, crl.next_update));
        }
        Ok(windows)
    }
}

/// Step 7: the VEK's identity equals the report's (signing key kind, product, hwID, reported TCB).
fn check_binding(report: &AttestationReport, vek: &Vek, product: Product) -> Result<(), Error> {
    let mismatch =
        |field: &'static str, got: String, want: String| Error::KeyMismatch { field, got, want };
    match report.signing_key() {
        SigningKeyKind::None => {
            return Err(Error::Signature {
                detail: "the report says it is unsigned (SIGNING_KEY = none)".into(),
            })
        }
        k if k != vek.kind => {
            return Err(mismatch("signing key", vek.kind.to_string(), k.to_string()))
        }
        _ => {}
    }
    if let Some(cert_product) = vek.product {
        if cert_product != product {
            return Err(mismatch(
                "productName",
                vek.product_name.clone().unwrap_or_default(),
                product.to_string(),
            ));
        }
    }
    if vek.kind == SigningKeyKind::Vcek && !report.mask_chip_key() {
        let want = report
            .chip_id()
            .get(..product.hwid_len())
            .unwrap_or_default();
        match &vek.exts.hwid {
            Some(hwid) if hwid.as_slice() == want => {}
            Some(hwid) => return Err(mismatch("hwID", hex::encode(hwid), hex::encode(want))),
            None => return Err(mismatch("hwID", "absent".into(), hex::encode(want))),
        }
    }
    let reported = TcbParts::decode(report.reported_tcb(), product);
    let e = &vek.exts;
    let cert_tcb = match (
        e.bl_spl,
        e.tee_spl,
        e.snp_spl,
        e.ucode_spl,
        e.fmc_spl,
        product,
    ) {
        (Some(bootloader), Some(tee), Some(snp), Some(microcode), fmc, p)
            if p != Product::Turin || fmc.is_some() =>
        {
            Some(TcbParts {
                fmc: if p == Product::Turin { fmc } else { None },
                bootloader,
                tee,
                snp,
                microcode,
            })
        }
        _ => None,
    };
    match cert_tcb {
        Some(c) if c == reported => Ok(()),
        Some(c) => Err(mismatch("TCB", c.to_string(), reported.to_string())),
        None => Err(mismatch(
            "TCB",
            "incomplete SPL extensions".into(),
            reported.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    fn read(rel: &str) -> Vec<u8> {
        std::fs::read(format!("{TESTDATA}/{rel}")).unwrap()
    }

    fn chain(files: &[&str]) -> CertChain {
        let mut c = CertChain::default();
        for f in files {
            c.add_pem_or_der(&read(f)).unwrap();
        }
        c
    }

    fn rfc3339(s: &str) -> i64 {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    }

    fn vlek_case() -> (AttestationReport, CertChain) {
        let report = AttestationReport::parse(&read("snp/aws-milan-v3-vlek/report.bin")).unwrap();
        let c = chain(&[
            "snp/aws-milan-v3-vlek/vlek.der",
            "vendor-roots/amd/milan/asvk.pem",
            "vendor-roots/amd/milan/ark.pem",
        ]);
        (report, c)
    }

    #[test]
    fn warm_path_rechecks_now() {
        let (report, c) = vlek_case();
        let v = Verifier::new(TrustAnchors::amd());
        let ok = v
            .verify(&report, &c, rfc3339("2024-12-11T00:00:00Z"))
            .unwrap();
        assert_eq!(
            (ok.product(), ok.signing_key(), ok.simulated()),
            (Product::Milan, SigningKeyKind::Vlek, false)
        );
        assert_eq!(v.cached_chains(), 1);
        // Same VEK, warm: after notAfter and before notBefore both fail on time, from the cache.
        for when in ["2025-12-10T22:14:22Z", "2024-12-10T22:14:20Z"] {
            let e = v.verify(&report, &c, rfc3339(when)).unwrap_err();
            assert_eq!(e.category(), "cert-validity", "{when}: {e}");
            assert!(matches!(e, Error::CertValidity { cert: "VLEK", .. }), "{e}");
        }
        assert_eq!(v.cached_chains(), 1);
        // Inside the window again: accepted, still one entry.
        v.verify(&report, &c, rfc3339("2025-06-01T00:00:00Z"))
            .unwrap();
        assert_eq!(v.cached_chains(), 1);
    }

    #[test]
    fn cache_hit_needs_the_same_chain() {
        let report = AttestationReport::parse(&read("snp/virtee-milan-v2/report.bin")).unwrap();
        let now = rfc3339("2023-04-04T00:00:00Z");
        let vcek = "snp/virtee-milan-v2/vcek.der";
        let good = chain(&[
            vcek,
            "vendor-roots/amd/milan/ask.pem",
            "vendor-roots/amd/milan/ark.pem",
        ]);
        let v = Verifier::new(TrustAnchors::amd());
        v.verify(&report, &good, now).unwrap();
        // A cached VEK does not excuse another product's ASK/ARK, nor missing ones.
        let genoa = chain(&[
            vcek,
            "vendor-roots/amd/genoa/ask.pem",
            "vendor-roots/amd/genoa/ark.pem",
        ]);
        assert_eq!(
            v.verify(&report, &genoa, now).unwrap_err().category(),
            "cert-chain"
        );
        let only_vek = chain(&[vcek]);
        let e = v.verify(&report, &only_vek, now).unwrap_err();
        assert!(
            matches!(e, Error::MissingCertificate { cert: "ASK" }),
            "{e}"
        );
        let no_ark = chain(&[vcek, "vendor-roots/amd/milan/ask.pem"]);
        let e = v.verify(&report, &no_ark, now).unwrap_err();
        assert!(
            matches!(e, Error::MissingCertificate { cert: "ARK" }),
            "{e}"
        );
        assert_eq!(e.class(), crate::ErrorClass::Unavailable);
        // And the good chain still verifies (the entry was replaced, then re-made).
        v.verify(&report, &good, now).unwrap();
        assert!(v.verify(&report, &CertChain::default(), now).is_err());
    }

    #[test]
    fn explicit_roots_simulated_flag_and_omitted_ark() {
        let report = AttestationReport::parse(&read("snp/oak-milan-v3/report.bin")).unwrap();
        let now = rfc3339("2025-01-16T00:00:00Z");
        let full = chain(&[
            "snp/oak-milan-v3/vcek.der",
            "vendor-roots/amd/milan/ask.pem",
            "vendor-roots/amd/milan/ark.pem",
        ]);
        // No anchors at all: the real ARK is not trusted.
        let none = Verifier::new(TrustAnchors::amd().without_amd());
        assert_eq!(
            none.verify(&report, &full, now).unwrap_err().category(),
            "untrusted-root"
        );
        // The Milan ARK added explicitly (flagged simulated for the test): trusted, and the flag shows.
        let mut anchors = TrustAnchors::amd().without_amd();
        anchors
            .add_root_pem(&read("vendor-roots/amd/milan/ark.pem"), true)
            .unwrap();
        let v = Verifier::new(anchors);
        let ok = v.verify(&report, &full, now).unwrap();
        assert!(ok.simulated() && ok.claims().simulated);
        // An explicitly added anchor also supplies the ARK when the chain omits it.
        let no_ark = chain(&[
            "snp/oak-milan-v3/vcek.der",
            "vendor-roots/amd/milan/ask.pem",
        ]);
        assert!(v.verify(&report, &no_ark, now).unwrap().simulated());
        // Other products are not anchored by it.
        let genoa = AttestationReport::parse(&read("snp/oak-genoa-v5/report.bin")).unwrap();
        let gchain = chain(&[
            "snp/oak-genoa-v5/vcek.der",
            "vendor-roots/amd/genoa/ask.pem",
            "vendor-roots/amd/genoa/ark.pem",
        ]);
        assert_eq!(
            v.verify(&genoa, &gchain, rfc3339("2025-08-08T00:00:00Z"))
                .unwrap_err()
                .category(),
            "untrusted-root"
        );
    }

    #[test]
    fn signing_key_field_must_match_the_certificate_kind() {
        // A VLEK-signed report presented as if VCEK-signed (SIGNING_KEY edited, not re-signed) fails at
        // the binding step, before the signature.
        let mut bytes = read("snp/aws-milan-v3-vlek/report.bin");
        bytes[super::super::layout::KEY_INFO] &= !0b11100;
        let report = AttestationReport::parse(&bytes).unwrap();
        let (_, c) = vlek_case();
        let e = Verifier::new(TrustAnchors::amd())
            .verify(&report, &c, rfc3339("2024-12-11T00:00:00Z"))
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::KeyMismatch {
                    field: "signing key",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn verifier_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Verifier>();
        assert_send_sync::<VerifiedSnp>();
    }
}

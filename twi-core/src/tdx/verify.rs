//! Verifying a parsed TDX quote against Intel collateral at a caller-given time, in the numbered
//! steps of dcap-qvl's `verify_impl` (see [`TdxVerifier::verify`]).
//!
//! Three caches make the warm path cheap; none of them stores a verdict that depends on `now`:
//! * verified collateral, keyed by [`Collateral::digest`]: steps 1–2 (issuer chains, CRL and JSON
//!   signatures, parsed TCB info and QE identity), with every time window kept for re-checking;
//! * verified PCK chains, keyed by the SHA-256 of the quote's PEM chain: step 3 without revocation
//!   and time (both re-checked per call against the collateral in use);
//! * verified QE report signatures, keyed by SHA-256(PEM hash || QE report || signature): step 4.
//!
//! A warm call thus costs SHA-256 of the PCK chain and QE report, one ECDSA P-256 verification (the
//! quote signature), hash-set lookups and comparisons.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use super::anchors::IntelRoots;
use super::cert::{pem_chain, sha256, verify_raw, Crl, SgxExtension, X509};
use super::claims::TdxClaims;
use super::collateral::{
    hex_field, parse_time, split_qe_identity, split_tcb_info, Collateral, QeIdentity, TcbInfo,
};
use super::quote::Quote;
use super::tcb::{tdx_status, PlatformSvns, TcbStatus};
use crate::Error;

/// Each cache is emptied when it reaches this many entries.
pub const MAX_CACHED: usize = 4096;

/// A TDX quote whose signatures, chains and collateral verified, with its TCB status. Only
/// [`TdxVerifier::verify`] builds one; appraisal takes this type, not the parsed quote.
#[derive(Clone, Debug)]
pub struct VerifiedTdx {
    quote: Quote,
    tcb_status: TcbStatus,
    advisory_ids: Vec<String>,
    fmspc: [u8; 6],
    pce_id: [u8; 2],
    pck_sgx_components: [u8; 16],
    pck_pce_svn: u16,
    pck_not_before: i64,
    pck_not_after: i64,
    pck_sha256: [u8; 32],
    root_sha256: [u8; 32],
    simulated: bool,
    tcb_evaluation_data_number: u32,
    tcb_info_issue_date: i64,
    tcb_info_next_update: i64,
    collateral_valid_from: i64,
    collateral_valid_until: i64,
}

impl VerifiedTdx {
    pub fn quote(&self) -> &Quote {
        &self.quote
    }
    /// Intel's TCB status of the platform (TCB info level, TDX module and QE merged).
    pub fn tcb_status(&self) -> TcbStatus {
        self.tcb_status
    }
    /// The Intel security advisories behind the status (`INTEL-SA-…`).
    pub fn advisory_ids(&self) -> &[String] {
        &self.advisory_ids
    }
    /// The platform's FMSPC, from the PCK certificate.
    pub fn fmspc(&self) -> &[u8; 6] {
        &self.fmspc
    }
    pub fn pce_id(&self) -> &[u8; 2] {
        &self.pce_id
    }
    /// The PCK certificate's 16 SGX TCB component SVNs.
    pub fn pck_sgx_components(&self) -> &[u8; 16] {
        &self.pck_sgx_components
    }
    pub fn pck_pce_svn(&self) -> u16 {
        self.pck_pce_svn
    }
    /// The PCK certificate's validity (Unix seconds).
    pub fn pck_validity(&self) -> (i64, i64) {
        (self.pck_not_before, self.pck_not_after)
    }
    /// SHA-256 of the PCK certificate DER.
    pub fn pck_sha256(&self) -> &[u8; 32] {
        &self.pck_sha256
    }
    /// SHA-256 of the root certificate DER (the trust anchor).
    pub fn root_sha256(&self) -> &[u8; 32] {
        &self.root_sha256
    }
    /// The chain ends in a root added as simulated: never real hardware.
    pub fn simulated(&self) -> bool {
        self.simulated
    }
    pub fn tcb_evaluation_data_number(&self) -> u32 {
        self.tcb_evaluation_data_number
    }
    /// The TCB info's issueDate and nextUpdate (Unix seconds).
    pub fn tcb_info_window(&self) -> (i64, i64) {
        (self.tcb_info_issue_date, self.tcb_info_next_update)
    }
    /// The span in which all the signed collateral (TCB info, QE identity, CRLs) is current:
    /// latest issue date, earliest next update. A verdict should not be cached past the end.
    pub fn collateral_window(&self) -> (i64, i64) {
        (self.collateral_valid_from, self.collateral_valid_until)
    }
    /// Everything an operator would appraise, as hex strings and decoded bits.
    pub fn claims(&self) -> TdxClaims {
        TdxClaims::new(self)
    }
}

/// A time window re-checked on every call.
#[derive(Clone, Debug)]
enum Window {
    Cert {
        name: &'static str,
        not_before: i64,
        not_after: i64,
    },
    Crl {
        issuer: String,
        this_update: i64,
        next_update: Option<i64>,
    },
    Signed {
        what: &'static str,
        issue_date: i64,
        next_update: i64,
    },
}

impl Window {
    fn check(&self, now: i64) -> Result<(), Error> {
        match self {
            Window::Cert {
                name,
                not_before,
                not_after,
            } if now < *not_before || now > *not_after => Err(Error::CertValidity {
                cert: name,
                not_before: *not_before,
                not_after: *not_after,
                now,
            }),
            Window::Crl {
                issuer,
                this_update,
                next_update,
            } if now < *this_update || next_update.is_some_and(|n| now > n) => {
                Err(Error::CrlExpired {
                    issuer: issuer.clone(),
                    this_update: *this_update,
                    next_update: *next_update,
                    now,
                })
            }
            Window::Signed {
                what,
                issue_date,
                next_update,
            } if now < *issue_date || now > *next_update => Err(Error::CollateralExpired {
                what,
                issue_date: *issue_date,
                next_update: *next_update,
                now,
            }),
            _ => Ok(()),
        }
    }
}

fn check_windows(windows: &[Window], now: i64) -> Result<(), Error> {
    windows.iter().try_for_each(|w| w.check(now))
}

/// The QE identity reduced to what step 6 compares.
#[derive(Debug)]
struct QePolicy {
    mrsigner: [u8; 32],
    isvprodid: u16,
    miscselect: u32,
    miscselect_mask: u32,
    attributes: [u8; 16],
    attributes_mask: [u8; 16],
}

/// Steps 1–2 for one collateral set.
#[derive(Debug)]
struct CollateralEntry {
    tcb_info: TcbInfo,
    tcb_fmspc: [u8; 6],
    tcb_pce_id: [u8; 2],
    qe_identity: QeIdentity,
    qe: QePolicy,
    pck_crl: Crl,
    /// Subject and public key of the PCK CRL's issuer (the PCK CA the quote's chain must use).
    pck_ca_subject: String,
    pck_ca_key: Vec<u8>,
    root_crl: Crl,
    root_sha256: [u8; 32],
    simulated: bool,
    windows: Vec<Window>,
    valid_from: i64,
    valid_until: i64,
    tcb_info_window: (i64, i64),
}

/// Step 3 (time- and revocation-independent part) for one PCK chain.
#[derive(Debug)]
struct PckEntry {
    key: p256::ecdsa::VerifyingKey,
    ext: SgxExtension,
    pck_serial: Vec<u8>,
    pck_sha256: [u8; 32],
    ca_serial: Vec<u8>,
    ca_subject: String,
    ca_key: Vec<u8>,
    root_sha256: [u8; 32],
    windows: Vec<Window>,
    pck_validity: (i64, i64),
}

/// Verifies TDX quotes against a fixed set of roots. `Send + Sync`: share one verifier (behind an
/// `Arc`) between requests so its caches are shared too.
#[derive(Debug)]
pub struct TdxVerifier {
    roots: IntelRoots,
    collateral_cache: Mutex<HashMap<[u8; 32], Arc<CollateralEntry>>>,
    pck_cache: Mutex<HashMap<[u8; 32], Arc<PckEntry>>>,
    qe_report_cache: Mutex<HashSet<[u8; 32]>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn spki_bytes(c: &X509) -> Vec<u8> {
    c.cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
        .to_vec()
}

fn cert_window(name: &'static str, c: &X509) -> Window {
    Window::Cert {
        name,
        not_before: c.not_before(),
        not_after: c.not_after(),
    }
}

fn crl_window(c: &Crl) -> Window {
    Window::Crl {
        issuer: c.issuer(),
        this_update: c.this_update,
        next_update: c.next_update,
    }
}

impl TdxVerifier {
    pub fn new(roots: IntelRoots) -> Self {
        TdxVerifier {
            roots,
            collateral_cache: Mutex::new(HashMap::new()),
            pck_cache: Mutex::new(HashMap::new()),
            qe_report_cache: Mutex::new(HashSet::new()),
        }
    }

    pub fn roots(&self) -> &IntelRoots {
        &self.roots
    }

    /// Forgets every cached verification (the next call takes the cold path).
    pub fn clear_cache(&self) {
        lock(&self.collateral_cache).clear();
        lock(&self.pck_cache).clear();
        lock(&self.qe_report_cache).clear();
    }

    /// `(collateral sets, PCK chains, QE reports)` cached.
    pub fn cached(&self) -> (usize, usize, usize) {
        (
            lock(&self.collateral_cache).len(),
            lock(&self.pck_cache).len(),
            lock(&self.qe_report_cache).len(),
        )
    }

    /// Verifies `quote` with `collateral` at `now_unix_secs`:
    ///
    /// 1. collateral issuer chains (TCB/QE-identity signer → root, PCK CA → root) to a pinned root,
    ///    root CA CRL (signed by the root) and PCK CRL (signed by the PCK CA);
    /// 2. TCB info and QE identity signatures over their received bytes; every window at `now`;
    /// 3. the quote's PCK chain (PCK → PCK CA → pinned root), valid at `now`, not revoked, its CA the
    ///    PCK CRL's issuer;
    /// 4. QE report signature by the PCK key;
    /// 5. QE report data binds the attestation key and QE authentication data;
    /// 6. QE report matches the QE identity (MRSIGNER, ISVPRODID, masked MISCSELECT/ATTRIBUTES),
    ///    ISVSVN → QE TCB level;
    /// 7. quote signature by the attestation key over the received header and body;
    /// 8. FMSPC and PCE-ID of the PCK certificate equal the TCB info's (id "TDX", version 3); the TDX
    ///    module signer and SEAM attributes match the TCB info's module identity;
    /// 9. TCB level matching (see `tdx::tcb`) → status and advisories.
    ///
    /// Policy (TD attributes, allowed statuses, measurements) is [`super::appraise`]'s job.
    ///
    /// # Errors
    /// `cert-chain`, `untrusted-root`, `missing-certificate`, `cert-validity`, `revoked`,
    /// `collateral-signature`, `collateral-expired`, `collateral-mismatch`, `signature`,
    /// `qe-binding`, `qe-identity`, `tcb-unsupported`; `malformed` for collateral or certificates that
    /// do not parse.
    pub fn verify(
        &self,
        quote: &Quote,
        collateral: &Collateral,
        now_unix_secs: i64,
    ) -> Result<VerifiedTdx, Error> {
        let now = now_unix_secs;

        // (1)–(2) Collateral: chains, CRLs and signatures once per collateral set; windows every call.
        let cached = lock(&self.collateral_cache)
            .get(collateral.digest())
            .cloned();
        let col = match cached {
            Some(c) => c,
            None => {
                let entry = Arc::new(self.verify_collateral(collateral)?);
                let mut cache = lock(&self.collateral_cache);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(*collateral.digest(), Arc::clone(&entry));
                entry
            }
        };
        check_windows(&col.windows, now)?;

        // (3) PCK chain: signatures once per chain; revocation, CA match and windows every call.
        let pem_sha256 = sha256(quote.pck_chain_pem());
        let cached = lock(&self.pck_cache).get(&pem_sha256).cloned();
        let pck = match cached {
            Some(p) => p,
            None => {
                let entry = Arc::new(self.verify_pck_chain(quote.pck_chain_pem())?);
                let mut cache = lock(&self.pck_cache);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(pem_sha256, Arc::clone(&entry));
                entry
            }
        };
        if pck.root_sha256 != col.root_sha256 {
            return Err(Error::chain(
                "PCK",
                format!(
                    "the PCK chain ends in root {}, the collateral in root {}",
                    hex::encode(pck.root_sha256),
                    hex::encode(col.root_sha256)
                ),
            ));
        }
        if pck.ca_subject != col.pck_ca_subject || pck.ca_key != col.pck_ca_key {
            return Err(Error::CollateralMismatch {
                field: "PCK CRL issuer",
                got: col.pck_ca_subject.clone(),
                want: pck.ca_subject.clone(),
            });
        }
        if col.root_crl.revoked.contains(&pck.ca_serial) {
            return Err(Error::Revoked {
                cert: "PCK CA",
                serial: hex::encode(&pck.ca_serial),
            });
        }
        if col.pck_crl.revoked.contains(&pck.pck_serial) {
            return Err(Error::Revoked {
                cert: "PCK",
                serial: hex::encode(&pck.pck_serial),
            });
        }
        check_windows(&pck.windows, now)?;

        // (4) QE report signed by the PCK key.
        let qe_key = {
            let mut h = Vec::with_capacity(32 + 384 + 64);
            h.extend_from_slice(&pem_sha256);
            h.extend_from_slice(quote.qe_report_bytes());
            h.extend_from_slice(quote.qe_report_signature());
            sha256(&h)
        };
        if !lock(&self.qe_report_cache).contains(&qe_key) {
            verify_raw(
                &pck.key,
                quote.qe_report_bytes(),
                quote.qe_report_signature(),
            )
            .map_err(|e| Error::Signature {
                detail: format!("QE report signature by the PCK key: {e}"),
            })?;
            let mut cache = lock(&self.qe_report_cache);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(qe_key);
        }

        // (5) QE report data = SHA-256(attestation key || QE auth data) || 32 zero bytes.
        let qe = quote.qe_report();
        let binding = {
            let mut h = Vec::with_capacity(64 + quote.qe_auth_data().len());
            h.extend_from_slice(quote.attestation_key());
            h.extend_from_slice(quote.qe_auth_data());
            sha256(&h)
        };
        let (bound, rest) = qe.report_data.split_at(32);
        if bound != binding || rest.iter().any(|&b| b != 0) {
            return Err(Error::QeBinding {
                got: hex::encode(qe.report_data),
                want: format!("{}{}", hex::encode(binding), "00".repeat(32)),
            });
        }

        // (6) The QE is Intel's TD QE; its ISVSVN gives the QE TCB level.
        let (qe_status, qe_advisories) = check_qe_identity(quote, &col)?;

        // (7) Quote signature by the attestation key over the received header and body.
        let mut sec1 = [0x04u8; 65];
        if let Some(d) = sec1.get_mut(1..) {
            d.copy_from_slice(quote.attestation_key());
        }
        let att_key =
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| Error::Signature {
                detail: "attestation key is not a P-256 point".into(),
            })?;
        verify_raw(&att_key, quote.signed_bytes(), quote.signature()).map_err(|e| {
            Error::Signature {
                detail: format!("quote signature by the attestation key: {e}"),
            }
        })?;

        // (8) The collateral is for this platform and TDX module.
        if pck.ext.fmspc != col.tcb_fmspc {
            return Err(Error::CollateralMismatch {
                field: "FMSPC",
                got: hex::encode(col.tcb_fmspc),
                want: hex::encode(pck.ext.fmspc),
            });
        }
        if pck.ext.pce_id != col.tcb_pce_id {
            return Err(Error::CollateralMismatch {
                field: "PCE-ID",
                got: hex::encode(col.tcb_pce_id),
                want: hex::encode(pck.ext.pce_id),
            });
        }
        check_module_identity(quote, &col.tcb_info)?;

        // (9) TCB level.
        let report = quote.td_report();
        let evaluated = tdx_status(
            &col.tcb_info,
            &PlatformSvns {
                sgx_components: &pck.ext.sgx_tcb_components,
                pce_svn: pck.ext.pce_svn,
            },
            &report.tee_tcb_svn,
            report.tee_tcb_svn2.as_ref(),
            qe_status,
            &qe_advisories,
        )?;

        let simulated = self
            .roots
            .find(&col.root_sha256)
            .is_some_and(|r| r.simulated);
        Ok(VerifiedTdx {
            quote: quote.clone(),
            tcb_status: evaluated.status,
            advisory_ids: evaluated.advisory_ids,
            fmspc: pck.ext.fmspc,
            pce_id: pck.ext.pce_id,
            pck_sgx_components: pck.ext.sgx_tcb_components,
            pck_pce_svn: pck.ext.pce_svn,
            pck_not_before: pck.pck_validity.0,
            pck_not_after: pck.pck_validity.1,
            pck_sha256: pck.pck_sha256,
            root_sha256: pck.root_sha256,
            simulated: simulated || col.simulated,
            tcb_evaluation_data_number: col
                .tcb_info
                .tcb_evaluation_data_number
                .min(col.qe_identity.tcb_evaluation_data_number),
            tcb_info_issue_date: col.tcb_info_window.0,
            tcb_info_next_update: col.tcb_info_window.1,
            collateral_valid_from: col.valid_from,
            collateral_valid_until: col.valid_until,
        })
    }

    /// Verifies `chain` (leaf first) up to a pinned root: each certificate issued by the next; the
    /// last one is the pinned root itself, or is issued by an added root that has its certificate.
    /// Returns the root and its pin record.
    fn to_root(&self, chain: &[X509], names: &[&'static str]) -> Result<(X509, [u8; 32]), Error> {
        let name = |i: usize| names.get(i).copied().unwrap_or("intermediate");
        for (i, pair) in chain.windows(2).enumerate() {
            if let [cert, issuer] = pair {
                cert.check_issued_by(issuer)
                    .map_err(|e| Error::chain(name(i), e))?;
            }
        }
        let last = chain
            .last()
            .ok_or(Error::MissingCertificate { cert: "root CA" })?;
        let root = if last.is_self_issued() {
            last.clone()
        } else {
            let added = self.roots.roots.iter().filter_map(|r| r.der.as_deref());
            let mut found = None;
            for der in added {
                let cand = X509::from_der(der, "trust anchor")?;
                if cand.cert.tbs_certificate.subject == last.cert.tbs_certificate.issuer {
                    found = Some(cand);
                    break;
                }
            }
            let root = found.ok_or(Error::MissingCertificate { cert: "root CA" })?;
            last.check_issued_by(&root)
                .map_err(|e| Error::chain(name(chain.len().saturating_sub(1)), e))?;
            root
        };
        if self.roots.find(&root.sha256).is_none() {
            return Err(Error::UntrustedRoot {
                subject: root.subject(),
                fingerprint: hex::encode(root.sha256),
            });
        }
        root.check_issued_by(&root)
            .map_err(|e| Error::chain("root CA", format!("self-signature: {e}")))?;
        let fp = root.sha256;
        Ok((root, fp))
    }

    /// Steps 1–2 (time-independent part) for one collateral set.
    fn verify_collateral(&self, c: &Collateral) -> Result<CollateralEntry, Error> {
        // (1) Issuer chains to one pinned root; root CRL signed by it; PCK CRL by the PCK CA.
        let tcb_chain = pem_chain(&c.tcb_info_issuer_chain, "TCB info issuer chain")?;
        let qe_chain = pem_chain(&c.qe_identity_issuer_chain, "QE identity issuer chain")?;
        let crl_chain = pem_chain(&c.pck_crl_issuer_chain, "PCK CRL issuer chain")?;
        let (root, root_sha256) = self.to_root(&tcb_chain, &["TCB signing"])?;
        for (chain, name) in [(&qe_chain, "QE identity signing"), (&crl_chain, "PCK CA")] {
            let (_, other) = self.to_root(chain, &[name])?;
            if other != root_sha256 {
                return Err(Error::chain(
                    name,
                    "collateral issuer chains end in different roots",
                ));
            }
        }
        let (Some(tcb_signer), Some(qe_signer), Some(pck_ca)) =
            (tcb_chain.first(), qe_chain.first(), crl_chain.first())
        else {
            return Err(Error::MissingCertificate {
                cert: "collateral signer",
            });
        };

        let root_crl = Crl::from_der(&c.root_ca_crl, "root CA CRL")?;
        root_crl
            .check_signed_by(&root)
            .map_err(|detail| Error::CollateralSignature {
                what: "root CA CRL",
                detail,
            })?;
        let pck_crl = Crl::from_der(&c.pck_crl, "PCK CRL")?;
        pck_crl
            .check_signed_by(pck_ca)
            .map_err(|detail| Error::CollateralSignature {
                what: "PCK CRL",
                detail,
            })?;
        for (cert, name) in [
            (tcb_signer, "TCB signing"),
            (qe_signer, "QE identity signing"),
            (pck_ca, "PCK CA"),
        ] {
            if !cert.is_self_issued() && root_crl.lists(cert) {
                return Err(Error::Revoked {
                    cert: name,
                    serial: hex::encode(cert.serial()),
                });
            }
        }

        // (2) TCB info and QE identity: signatures over the received inner objects.
        let signed = split_tcb_info(&c.tcb_info)?;
        let key = tcb_signer
            .key()
            .map_err(|e| Error::chain("TCB signing", e))?;
        verify_raw(&key, signed.body.as_bytes(), &signed.signature).map_err(|detail| {
            Error::CollateralSignature {
                what: "TCB info",
                detail,
            }
        })?;
        let tcb_info: TcbInfo =
            serde_json::from_str(signed.body).map_err(|e| Error::malformed("TCB info", e))?;
        let signed = split_qe_identity(&c.qe_identity)?;
        let key = qe_signer
            .key()
            .map_err(|e| Error::chain("QE identity signing", e))?;
        verify_raw(&key, signed.body.as_bytes(), &signed.signature).map_err(|detail| {
            Error::CollateralSignature {
                what: "QE identity",
                detail,
            }
        })?;
        let qe_identity: QeIdentity =
            serde_json::from_str(signed.body).map_err(|e| Error::malformed("QE identity", e))?;

        if tcb_info.id != "TDX" || tcb_info.version < 3 {
            return Err(Error::CollateralMismatch {
                field: "TCB info id/version",
                got: format!("{} v{}", tcb_info.id, tcb_info.version),
                want: "TDX v3".into(),
            });
        }
        if qe_identity.id != "TD_QE" || !(2..=3).contains(&qe_identity.version) {
            return Err(Error::CollateralMismatch {
                field: "QE identity id/version",
                got: format!("{} v{}", qe_identity.id, qe_identity.version),
                want: "TD_QE v2".into(),
            });
        }
        let tcb_issue = parse_time(&tcb_info.issue_date, "TCB info")?;
        let tcb_next = parse_time(&tcb_info.next_update, "TCB info")?;
        let qe_issue = parse_time(&qe_identity.issue_date, "QE identity")?;
        let qe_next = parse_time(&qe_identity.next_update, "QE identity")?;
        let qe = QePolicy {
            mrsigner: hex_field(&qe_identity.mrsigner, "QE identity mrsigner")?,
            isvprodid: qe_identity.isvprodid,
            miscselect: u32::from_le_bytes(hex_field(&qe_identity.miscselect, "QE miscselect")?),
            miscselect_mask: u32::from_le_bytes(hex_field(
                &qe_identity.miscselect_mask,
                "QE miscselectMask",
            )?),
            attributes: hex_field(&qe_identity.attributes, "QE attributes")?,
            attributes_mask: hex_field(&qe_identity.attributes_mask, "QE attributesMask")?,
        };

        let mut windows = vec![
            cert_window("root CA", &root),
            cert_window("TCB signing", tcb_signer),
            cert_window("QE identity signing", qe_signer),
            cert_window("PCK CA", pck_ca),
            crl_window(&root_crl),
            crl_window(&pck_crl),
        ];
        windows.push(Window::Signed {
            what: "TCB info",
            issue_date: tcb_issue,
            next_update: tcb_next,
        });
        windows.push(Window::Signed {
            what: "QE identity",
            issue_date: qe_issue,
            next_update: qe_next,
        });
        let valid_from = [
            tcb_issue,
            qe_issue,
            root_crl.this_update,
            pck_crl.this_update,
        ]
        .into_iter()
        .max()
        .unwrap_or(tcb_issue);
        let valid_until = [
            Some(tcb_next),
            Some(qe_next),
            root_crl.next_update,
            pck_crl.next_update,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(tcb_next);

        Ok(CollateralEntry {
            tcb_fmspc: hex_field(&tcb_info.fmspc, "TCB info fmspc")?,
            tcb_pce_id: hex_field(&tcb_info.pce_id, "TCB info pceId")?,
            tcb_info_window: (tcb_issue, tcb_next),
            tcb_info,
            qe_identity,
            qe,
            pck_ca_subject: pck_ca.subject(),
            pck_ca_key: spki_bytes(pck_ca),
            pck_crl,
            root_crl,
            simulated: self.roots.find(&root_sha256).is_some_and(|r| r.simulated),
            root_sha256,
            windows,
            valid_from,
            valid_until,
        })
    }

    /// Step 3 (time- and revocation-independent part): PCK → PCK CA → pinned root.
    fn verify_pck_chain(&self, pem: &[u8]) -> Result<PckEntry, Error> {
        let chain = pem_chain(pem, "PCK certificate chain")?;
        let (root, root_sha256) = self.to_root(&chain, &["PCK", "PCK CA"])?;
        let (Some(pck), Some(ca)) = (chain.first(), chain.get(1)) else {
            return Err(Error::MissingCertificate { cert: "PCK CA" });
        };
        if ca.is_self_issued() {
            return Err(Error::chain(
                "PCK",
                "issued directly by a root, not a PCK CA",
            ));
        }
        let key = pck.key().map_err(|e| Error::chain("PCK", e))?;
        let ext = pck.sgx_extension()?;
        Ok(PckEntry {
            key,
            ext,
            pck_serial: pck.serial().to_vec(),
            pck_sha256: pck.sha256,
            ca_serial: ca.serial().to_vec(),
            ca_subject: ca.subject(),
            ca_key: spki_bytes(ca),
            root_sha256,
            windows: vec![
                cert_window("root CA", &root),
                cert_window("PCK CA", ca),
                cert_window("PCK", pck),
            ],
            pck_validity: (pck.not_before(), pck.not_after()),
        })
    }
}

/// Step 6.
fn check_qe_identity(
    quote: &Quote,
    col: &CollateralEntry,
) -> Result<(TcbStatus, Vec<String>), Error> {
    let qe = quote.qe_report();
    let want = &col.qe;
    let mismatch =
        |field: &'static str, got: String, want: String| Error::QeIdentity { field, got, want };
    if qe.mr_signer != want.mrsigner {
        return Err(mismatch(
            "MRSIGNER",
            hex::encode(qe.mr_signer),
            hex::encode(want.mrsigner),
        ));
    }
    if qe.isv_prod_id != want.isvprodid {
        return Err(mismatch(
            "ISVPRODID",
            qe.isv_prod_id.to_string(),
            want.isvprodid.to_string(),
        ));
    }
    if qe.misc_select & want.miscselect_mask != want.miscselect & want.miscselect_mask {
        return Err(mismatch(
            "MISCSELECT",
            format!("{:08x}", qe.misc_select),
            format!(
                "{:08x} under mask {:08x}",
                want.miscselect, want.miscselect_mask
            ),
        ));
    }
    let masked_differs = qe
        .attributes
        .iter()
        .zip(&want.attributes)
        .zip(&want.attributes_mask)
        .any(|((got, exp), mask)| got & mask != exp & mask);
    if masked_differs {
        return Err(mismatch(
            "ATTRIBUTES",
            hex::encode(qe.attributes),
            format!(
                "{} under mask {}",
                hex::encode(want.attributes),
                hex::encode(want.attributes_mask)
            ),
        ));
    }
    let level = col
        .qe_identity
        .tcb_levels
        .iter()
        .find(|l| qe.isv_svn >= l.tcb.isvsvn)
        .ok_or_else(|| Error::TcbUnsupported {
            detail: format!("QE ISVSVN {} is below every QE identity level", qe.isv_svn),
        })?;
    Ok((level.tcb_status, level.advisory_ids.clone()))
}

/// Step 8, second half: MRSIGNERSEAM and SEAMATTRIBUTES against the TCB info's module identity
/// (the `TDX_<major>` identity when TEE_TCB_SVN[1] > 0, else `tdxModule`).
fn check_module_identity(quote: &Quote, info: &TcbInfo) -> Result<(), Error> {
    let report = quote.td_report();
    let (mrsigner, attributes, mask) =
        match super::tcb::module_identity(info, &report.tee_tcb_svn)? {
            Some(m) => (&m.mrsigner, &m.attributes, &m.attributes_mask),
            None => {
                let m = info.tdx_module.as_ref().ok_or_else(|| {
                    Error::malformed("TCB info", "TDX TCB info without tdxModule")
                })?;
                (&m.mrsigner, &m.attributes, &m.attributes_mask)
            }
        };
    let mrsigner: [u8; 48] = hex_field(mrsigner, "TDX module mrsigner")?;
    let attributes: [u8; 8] = hex_field(attributes, "TDX module attributes")?;
    let mask: [u8; 8] = hex_field(mask, "TDX module attributesMask")?;
    if report.mr_signer_seam != mrsigner {
        return Err(Error::CollateralMismatch {
            field: "TDX module MRSIGNER",
            got: hex::encode(mrsigner),
            want: hex::encode(report.mr_signer_seam),
        });
    }
    let differs = report
        .seam_attributes
        .iter()
        .zip(&attributes)
        .zip(&mask)
        .any(|((got, exp), m)| got & m != exp & m || got & !m != 0);
    if differs {
        return Err(Error::CollateralMismatch {
            field: "SEAMATTRIBUTES",
            got: format!(
                "{} under mask {}",
                hex::encode(attributes),
                hex::encode(mask)
            ),
            want: hex::encode(report.seam_attributes),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    fn case(name: &str) -> (Quote, Collateral) {
        let q = Quote::parse(&std::fs::read(format!("{TESTDATA}/tdx/{name}/quote.bin")).unwrap())
            .unwrap();
        let c = Collateral::from_dir(format!("{TESTDATA}/tdx/{name}/collateral")).unwrap();
        (q, c)
    }

    fn at(s: &str) -> i64 {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    }

    #[test]
    fn warm_path_rechecks_time_and_uses_caches() {
        let (q, c) = case("dq-b0c06f-v4");
        let v = TdxVerifier::new(IntelRoots::intel());
        let ok = v.verify(&q, &c, at("2025-07-01T00:00:00Z")).unwrap();
        assert_eq!(ok.tcb_status(), TcbStatus::UpToDate);
        assert!(!ok.simulated());
        assert_eq!(v.cached(), (1, 1, 1));
        // Warm, after the collateral's nextUpdate: expired from the cache.
        let e = v.verify(&q, &c, at("2025-07-20T00:00:00Z")).unwrap_err();
        assert_eq!(e.category(), "collateral-expired", "{e}");
        // Before the TCB info's issue date.
        let e = v.verify(&q, &c, at("2025-06-01T00:00:00Z")).unwrap_err();
        assert_eq!(e.category(), "collateral-expired", "{e}");
        assert_eq!(v.cached(), (1, 1, 1));
        v.verify(&q, &c, at("2025-07-02T00:00:00Z")).unwrap();
        v.clear_cache();
        assert_eq!(v.cached(), (0, 0, 0));
    }

    #[test]
    fn untrusted_without_the_intel_root() {
        let (q, c) = case("near-20a06f-v4");
        let v = TdxVerifier::new(IntelRoots::intel().without_intel());
        let e = v.verify(&q, &c, at("2025-09-15T00:00:00Z")).unwrap_err();
        assert_eq!(e.category(), "untrusted-root", "{e}");
        // The real root added as "simulated": accepted, and flagged.
        let mut roots = IntelRoots::intel().without_intel();
        roots
            .add_root_der(
                &std::fs::read(format!("{TESTDATA}/vendor-roots/intel/IntelSGXRootCA.der"))
                    .unwrap(),
                true,
            )
            .unwrap();
        let ok = TdxVerifier::new(roots)
            .verify(&q, &c, at("2025-09-15T00:00:00Z"))
            .unwrap();
        assert!(ok.simulated() && ok.claims().simulated);
    }

    #[test]
    fn pck_crl_of_another_ca_is_a_mismatch_and_cached_chain_needs_current_crl() {
        // near and gtg collateral: same Intel issuer chains, different CRLs. A warm PCK entry is
        // still checked against the CRL of the collateral in use.
        let (q, c) = case("near-20a06f-v4");
        let v = TdxVerifier::new(IntelRoots::intel());
        v.verify(&q, &c, at("2025-09-15T00:00:00Z")).unwrap();
        let other =
            Collateral::from_dir(format!("{TESTDATA}/tdx/gtg-spr-e4-v4/collateral")).unwrap();
        let e = v
            .verify(&q, &other, at("2023-06-20T00:00:00Z"))
            .unwrap_err();
        // Other collateral: its windows or its FMSPC refuse it, never an accept.
        assert!(
            ["collateral-mismatch", "cert-validity", "collateral-expired"].contains(&e.category()),
            "{e}"
        );
    }

    #[test]
    fn verifier_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TdxVerifier>();
        assert_send_sync::<VerifiedTdx>();
    }
}

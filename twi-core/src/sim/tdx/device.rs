//! The simulated TDX guest quoting path: builds a TD report body and wraps it into an Intel DCAP v4
//! quote, as the TDX module and the TD quoting enclave would (Intel TDX DCAP Quoting Library API, A.3).
//!
//! Layout (all integers little-endian):
//! * header, 48 bytes: version 4, attestation key type 2 (ECDSA P-256), TEE type 0x81 (TDX), two
//!   reserved u16 (zero in every real TDX quote in `shared/testdata`), QE vendor ID, 20 bytes user data;
//! * TD report body (TD10), 584 bytes;
//! * u32 signature data length, then: ECDSA signature (r||s) by the attestation key over header||body,
//!   the attestation public key (x||y), and certification data type 6 (QE report certification data):
//!   QE report (384-byte SGX report body), its signature by the PCK key, u16-length QE authentication
//!   data, and certification data type 5 (the PCK chain, PEM, NUL-terminated as real QEs write it).

use p256::ecdsa::SigningKey;
use p256::elliptic_curve::zeroize::Zeroizing;
use pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256, Sha384};
use std::path::Path;
use x509_cert::Certificate;

use super::certs::sign_raw;
use super::collateral::QE_ATTRIBUTES;
use super::init::{TdxSimJson, TdxSimLayout};
use crate::sim::SimError;

/// Intel's QE vendor ID, `939a7233-f79c-4ca9-940a-0db3957f0607`, in the byte order quotes carry.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

const QUOTE_VERSION: u16 = 4;
const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
const TEE_TYPE_TDX: u32 = 0x81;
const HEADER_LEN: usize = 48;
const TD_REPORT_BODY_LEN: usize = 584;
const QE_REPORT_LEN: usize = 384;
const CERT_DATA_PCK_CHAIN: u16 = 5;
const CERT_DATA_QE_REPORT: u16 = 6;

/// TD report body offsets (TD10).
mod td {
    pub(super) const TEE_TCB_SVN: usize = 0;
    pub(super) const MRSEAM: usize = 16;
    pub(super) const MRSIGNERSEAM: usize = 64;
    pub(super) const SEAM_ATTRIBUTES: usize = 112;
    pub(super) const TD_ATTRIBUTES: usize = 120;
    pub(super) const XFAM: usize = 128;
    pub(super) const MRTD: usize = 136;
    pub(super) const MRCONFIGID: usize = 184;
    pub(super) const MROWNER: usize = 232;
    pub(super) const MROWNERCONFIG: usize = 280;
    pub(super) const RTMR0: usize = 328;
    pub(super) const REPORT_DATA: usize = 520;
}

/// SGX report body offsets of the QE report.
mod qe {
    pub(super) const CPUSVN: usize = 0;
    pub(super) const MISCSELECT: usize = 16;
    pub(super) const ATTRIBUTES: usize = 48;
    pub(super) const MRENCLAVE: usize = 64;
    pub(super) const MRSIGNER: usize = 128;
    pub(super) const ISVPRODID: usize = 256;
    pub(super) const ISVSVN: usize = 258;
    pub(super) const REPORT_DATA: usize = 320;
}

/// What the TD's launch and runtime put into its report. [`TdParams::default`] is "the" simulated TD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdParams {
    /// TD_ATTRIBUTES: bit 0 DEBUG, bit 28 SEPT_VE_DISABLE, ...
    pub td_attributes: u64,
    /// XFAM (extended features the TD may use).
    pub xfam: u64,
    pub mrtd: [u8; 48],
    pub mrconfigid: [u8; 48],
    pub mrowner: [u8; 48],
    pub mrownerconfig: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    /// `None`: the platform's TEE_TCB_SVN from `init`. Anything else makes the quote disagree with the
    /// collateral (for negative tests).
    pub tee_tcb_svn: Option<[u8; 16]>,
    /// Measurement of the TDX module.
    pub mrseam: [u8; 48],
    /// Signer of the TDX module: all zero for Intel's module, as the TCB info's `tdxModule` says.
    pub mrsignerseam: [u8; 48],
    pub seam_attributes: u64,
}

impl TdParams {
    /// TD_ATTRIBUTES.DEBUG: the host can read and change the TD's state.
    pub const DEBUG: u64 = 1;
    /// TD_ATTRIBUTES.SEPT_VE_DISABLE: EPT violations are not turned into #VE in the TD.
    pub const SEPT_VE_DISABLE: u64 = 1 << 28;
    /// XFAM of the real TDs in `shared/testdata` (x87, SSE, AVX, AVX-512 state, PK, CET).
    pub const DEFAULT_XFAM: u64 = 0x0006_02E7;
}

impl Default for TdParams {
    /// A non-debug TD (SEPT_VE_DISABLE only) with the [`default_mrtd`], RTMRs [`default_rtmr`], zero
    /// MRCONFIGID / MROWNER / MROWNERCONFIG, on Intel's TDX module (zero MRSIGNERSEAM).
    fn default() -> TdParams {
        TdParams {
            td_attributes: TdParams::SEPT_VE_DISABLE,
            xfam: TdParams::DEFAULT_XFAM,
            mrtd: default_mrtd(),
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            rtmr: [
                default_rtmr(0),
                default_rtmr(1),
                default_rtmr(2),
                default_rtmr(3),
            ],
            tee_tcb_svn: None,
            mrseam: Sha384::digest(b"twi-spire simulated TDX module - NOT INTEL").into(),
            mrsignerseam: [0; 48],
            seam_attributes: 0,
        }
    }
}

/// MRTD of "the" simulated TD: SHA-384 of `twi-spire simulated TD`, fixed so that policies can pin it.
pub fn default_mrtd() -> [u8; 48] {
    Sha384::digest(b"twi-spire simulated TD").into()
}

/// RTMR `index` of "the" simulated TD: SHA-384 of `twi-spire simulated TD RTMR<index>`.
pub fn default_rtmr(index: u8) -> [u8; 48] {
    Sha384::digest(format!("twi-spire simulated TD RTMR{index}")).into()
}

/// A simulated TDX platform with its quoting enclave, bound to one root set.
pub struct SimTdxDevice {
    attestation_key: SigningKey,
    pck_key: SigningKey,
    /// PCK leaf, platform CA, root (PEM), as certification data type 5 carries them.
    pck_chain_pem: Vec<u8>,
    pck_der: Vec<u8>,
    root_der: Vec<u8>,
    fmspc: [u8; 6],
    tee_tcb_svn: [u8; 16],
    cpusvn: [u8; 16],
    qe_id: [u8; 16],
    qe_isvprodid: u16,
    qe_isvsvn: u16,
    qe_mrsigner: [u8; 32],
    qe_mrenclave: [u8; 32],
}

impl std::fmt::Debug for SimTdxDevice {
    // Hand-written so that the signing keys can never end up in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTdxDevice")
            .field("fmspc", &hex::encode_upper(self.fmspc))
            .field("tee_tcb_svn", &hex::encode(self.tee_tcb_svn))
            .field("qe_isvsvn", &self.qe_isvsvn)
            .finish_non_exhaustive()
    }
}

impl SimTdxDevice {
    /// Opens the root set `init` wrote in `dir`, checking that the PCK key matches the PCK certificate.
    ///
    /// # Errors
    /// I/O errors, and [`SimError::Corrupt`] for files that are not what `init` writes.
    pub fn open(dir: &Path) -> Result<SimTdxDevice, SimError> {
        let layout = TdxSimLayout::in_dir(dir);
        let corrupt = |path: &Path, detail: String| SimError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        let json: TdxSimJson = serde_json::from_slice(&read(&layout.sim_json)?)
            .map_err(|e| corrupt(&layout.sim_json, e.to_string()))?;
        if json.tee != "tdx" {
            return Err(corrupt(
                &layout.sim_json,
                format!("tee {:?}, want \"tdx\"", json.tee),
            ));
        }
        let fmspc: [u8; 6] = hex_array("fmspc", &json.fmspc, &layout.sim_json)?;
        let qe_id: [u8; 16] = hex_array("qe_id", &json.qe_id, &layout.sim_json)?;
        let qe_mrsigner: [u8; 32] = hex_array("qe_mrsigner", &json.qe_mrsigner, &layout.sim_json)?;
        let qe_mrenclave: [u8; 32] =
            hex_array("qe_mrenclave", &json.qe_mrenclave, &layout.sim_json)?;

        let attestation_key = read_key(&layout.attestation_key)?;
        let pck_key = read_key(&layout.pck_key)?;

        let pck_chain_pem = read(&layout.pck_chain_pem)?;
        let pck_der = read_pem_cert(&layout.pck_pem)?;
        let pck = der::Decode::from_der(&pck_der)
            .map_err(|e: der::Error| corrupt(&layout.pck_pem, e.to_string()))?;
        let pck: Certificate = pck;
        let cert_key = pck
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        if cert_key != pck_key.verifying_key().to_encoded_point(false).as_bytes() {
            return Err(corrupt(
                &layout.pck_key,
                "does not match the public key in pck.pem".into(),
            ));
        }
        if !pck_chain_pem.starts_with(&read(&layout.pck_pem)?) {
            return Err(corrupt(
                &layout.pck_chain_pem,
                "does not start with pck.pem".into(),
            ));
        }
        let root_der = read(&layout.root_der)?;

        Ok(SimTdxDevice {
            attestation_key,
            pck_key,
            pck_chain_pem,
            pck_der,
            root_der,
            fmspc,
            tee_tcb_svn: json.tcb.tee_tcb_svn,
            cpusvn: json.tcb.sgx_components,
            qe_id,
            qe_isvprodid: json.qe_isvprodid,
            qe_isvsvn: json.qe_isvsvn,
            qe_mrsigner,
            qe_mrenclave,
        })
    }

    /// Produces a DCAP v4 TDX quote carrying `report_data`, as a TD's TDG.MR.REPORT followed by the
    /// quoting enclave's GetQuote would.
    ///
    /// # Errors
    /// Signing and encoding failures only.
    pub fn quote(&self, report_data: &[u8; 64], td_params: &TdParams) -> Result<Vec<u8>, SimError> {
        let mut header = Buf::new(HEADER_LEN, "quote header");
        header.put(0, &QUOTE_VERSION.to_le_bytes())?;
        header.put(2, &ATT_KEY_TYPE_ECDSA_P256.to_le_bytes())?;
        header.put(4, &TEE_TYPE_TDX.to_le_bytes())?;
        // 8..12: reserved (QE SVN / PCE SVN in SGX quotes), zero in TDX quotes.
        header.put(12, &INTEL_QE_VENDOR_ID)?;
        header.put(28, &self.qe_id)?; // user data: 16-byte QE ID, 4 zero bytes

        let body = self.td_report_body(report_data, td_params)?;
        let mut signed = header.0;
        signed.extend_from_slice(&body.0);
        let quote_signature = sign_raw(&self.attestation_key, &signed, "quote")?;

        let point = self.attestation_key.verifying_key().to_encoded_point(false);
        let attestation_public = point.as_bytes().get(1..).ok_or(SimError::Encode {
            what: "attestation public key",
            detail: "empty point".into(),
        })?;
        let qe_auth_data: Vec<u8> = (0u8..32).collect();
        let qe_report = self.qe_report(attestation_public, &qe_auth_data)?;
        let qe_report_signature = sign_raw(&self.pck_key, &qe_report.0, "QE report")?;

        let mut pck_chain = self.pck_chain_pem.clone();
        pck_chain.push(0);

        let mut qe_cert_data = qe_report.0;
        qe_cert_data.extend_from_slice(&qe_report_signature);
        qe_cert_data.extend_from_slice(&len_u16(qe_auth_data.len(), "QE auth data")?);
        qe_cert_data.extend_from_slice(&qe_auth_data);
        qe_cert_data.extend_from_slice(&CERT_DATA_PCK_CHAIN.to_le_bytes());
        qe_cert_data.extend_from_slice(&len_u32(pck_chain.len(), "PCK chain")?);
        qe_cert_data.extend_from_slice(&pck_chain);

        let mut signature_data = Vec::with_capacity(134 + qe_cert_data.len());
        signature_data.extend_from_slice(&quote_signature);
        signature_data.extend_from_slice(attestation_public);
        signature_data.extend_from_slice(&CERT_DATA_QE_REPORT.to_le_bytes());
        signature_data.extend_from_slice(&len_u32(qe_cert_data.len(), "QE report cert data")?);
        signature_data.extend_from_slice(&qe_cert_data);

        let mut quote = signed;
        quote.extend_from_slice(&len_u32(signature_data.len(), "signature data")?);
        quote.extend_from_slice(&signature_data);
        Ok(quote)
    }

    fn td_report_body(&self, report_data: &[u8; 64], p: &TdParams) -> Result<Buf, SimError> {
        let mut b = Buf::new(TD_REPORT_BODY_LEN, "TD report body");
        b.put(td::TEE_TCB_SVN, &p.tee_tcb_svn.unwrap_or(self.tee_tcb_svn))?;
        b.put(td::MRSEAM, &p.mrseam)?;
        b.put(td::MRSIGNERSEAM, &p.mrsignerseam)?;
        b.put(td::SEAM_ATTRIBUTES, &p.seam_attributes.to_le_bytes())?;
        b.put(td::TD_ATTRIBUTES, &p.td_attributes.to_le_bytes())?;
        b.put(td::XFAM, &p.xfam.to_le_bytes())?;
        b.put(td::MRTD, &p.mrtd)?;
        b.put(td::MRCONFIGID, &p.mrconfigid)?;
        b.put(td::MROWNER, &p.mrowner)?;
        b.put(td::MROWNERCONFIG, &p.mrownerconfig)?;
        for (i, rtmr) in p.rtmr.iter().enumerate() {
            b.put(td::RTMR0 + 48 * i, rtmr)?;
        }
        b.put(td::REPORT_DATA, report_data)?;
        Ok(b)
    }

    /// The QE's own SGX report, its REPORTDATA binding the attestation key:
    /// SHA-256(attestation public key || QE authentication data), then 32 zero bytes.
    fn qe_report(&self, attestation_public: &[u8], auth_data: &[u8]) -> Result<Buf, SimError> {
        let mut hasher = Sha256::new();
        hasher.update(attestation_public);
        hasher.update(auth_data);
        let binding = hasher.finalize();
        let mut r = Buf::new(QE_REPORT_LEN, "QE report");
        r.put(qe::CPUSVN, &self.cpusvn)?;
        r.put(qe::MISCSELECT, &0u32.to_le_bytes())?;
        r.put(qe::ATTRIBUTES, &QE_ATTRIBUTES)?;
        r.put(qe::MRENCLAVE, &self.qe_mrenclave)?;
        r.put(qe::MRSIGNER, &self.qe_mrsigner)?;
        r.put(qe::ISVPRODID, &self.qe_isvprodid.to_le_bytes())?;
        r.put(qe::ISVSVN, &self.qe_isvsvn.to_le_bytes())?;
        r.put(qe::REPORT_DATA, &binding)?;
        Ok(r)
    }

    /// The platform's FMSPC, as in the PCK certificate and the TCB info.
    pub fn fmspc(&self) -> [u8; 6] {
        self.fmspc
    }

    /// The TEE_TCB_SVN this platform reports by default.
    pub fn tee_tcb_svn(&self) -> [u8; 16] {
        self.tee_tcb_svn
    }

    /// The PCK leaf certificate (DER).
    pub fn pck_der(&self) -> &[u8] {
        &self.pck_der
    }

    /// The simulated Intel root (DER). A verifier must trust it explicitly, marked as simulated.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The attestation public key as quotes carry it (x || y, 64 bytes).
    pub fn attestation_public_key(&self) -> [u8; 64] {
        let point = self.attestation_key.verifying_key().to_encoded_point(false);
        let mut out = [0u8; 64];
        if let Some(xy) = point.as_bytes().get(1..65) {
            out.copy_from_slice(xy);
        }
        out
    }
}

/// A zeroed buffer written field by field, every write bounds-checked.
struct Buf(Vec<u8>, &'static str);

impl Buf {
    fn new(len: usize, what: &'static str) -> Buf {
        Buf(vec![0; len], what)
    }

    fn put(&mut self, offset: usize, bytes: &[u8]) -> Result<(), SimError> {
        let what = self.1;
        offset
            .checked_add(bytes.len())
            .and_then(|end| self.0.get_mut(offset..end))
            .map(|dst| dst.copy_from_slice(bytes))
            .ok_or(SimError::Encode {
                what,
                detail: format!("field at {offset:#x} out of range"),
            })
    }
}

fn len_u16(len: usize, what: &'static str) -> Result<[u8; 2], SimError> {
    u16::try_from(len)
        .map(u16::to_le_bytes)
        .map_err(|_| SimError::Encode {
            what,
            detail: format!("{len} bytes do not fit a u16 length"),
        })
}

fn len_u32(len: usize, what: &'static str) -> Result<[u8; 4], SimError> {
    u32::try_from(len)
        .map(u32::to_le_bytes)
        .map_err(|_| SimError::Encode {
            what,
            detail: format!("{len} bytes do not fit a u32 length"),
        })
}

/// A fixed-length hex field of `sim.json`.
fn hex_array<const N: usize>(name: &str, value: &str, path: &Path) -> Result<[u8; N], SimError> {
    hex::decode(value)
        .ok()
        .and_then(|v| <[u8; N]>::try_from(v).ok())
        .ok_or_else(|| SimError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("{name} is not {N} hex-encoded bytes"),
        })
}

fn read(path: &Path) -> Result<Vec<u8>, SimError> {
    std::fs::read(path).map_err(|source| SimError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })
}

fn read_key(path: &Path) -> Result<SigningKey, SimError> {
    let pem = Zeroizing::new(read(path)?);
    let text = std::str::from_utf8(&pem).map_err(|_| SimError::Corrupt {
        path: path.to_path_buf(),
        detail: "not UTF-8 PEM".into(),
    })?;
    // Only the decoder's message is kept, never the input.
    SigningKey::from_pkcs8_pem(text).map_err(|e| SimError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("not a PKCS#8 P-256 key: {e}"),
    })
}

fn read_pem_cert(path: &Path) -> Result<Vec<u8>, SimError> {
    let corrupt = |detail: String| SimError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let pem = read(path)?;
    let (label, der) = der::pem::decode_vec(&pem).map_err(|e| corrupt(e.to_string()))?;
    if label != "CERTIFICATE" {
        return Err(corrupt(format!("PEM label {label}, want CERTIFICATE")));
    }
    Ok(der)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn offsets_add_up_to_intel_layouts() {
        assert_eq!(td::REPORT_DATA + 64, TD_REPORT_BODY_LEN);
        assert_eq!(td::RTMR0 + 4 * 48, td::REPORT_DATA);
        assert_eq!(qe::REPORT_DATA + 64, QE_REPORT_LEN);
    }

    #[test]
    fn default_td_attributes_match_real_quote() {
        // tdx-dq-b0c06f-v4 facts: td_attributes 0000001000000000, xfam e702060000000000.
        let p = TdParams::default();
        assert_eq!(
            hex::encode(p.td_attributes.to_le_bytes()),
            "0000001000000000"
        );
        assert_eq!(hex::encode(p.xfam.to_le_bytes()), "e702060000000000");
        assert_eq!(p.td_attributes & TdParams::DEBUG, 0);
    }

    #[test]
    fn vendor_id_is_intels() {
        let quote = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/tdx/dq-b0c06f-v4/quote.bin"
        ))
        .unwrap();
        assert_eq!(&quote[12..28], &INTEL_QE_VENDOR_ID);
    }

    #[test]
    fn buf_rejects_out_of_range() {
        let mut b = Buf::new(4, "t");
        assert!(b.put(2, &[1, 2]).is_ok());
        assert!(b.put(3, &[1, 2]).is_err());
        assert!(b.put(usize::MAX, &[1]).is_err());
    }
}

//! Parsing an Intel DCAP quote (v4, v5) for TDX: bytes only, no signature checked here.
//!
//! The quote keeps the exact bytes it was parsed from (without trailing padding), so the
//! signature is later checked over the received header and body, never over a re-encoding.

use super::layout::{self as l, td};
use crate::Error;

/// Quotes (without padding) longer than this are refused; real ones are about 5 KB.
pub const MAX_QUOTE_LEN: usize = 64 * 1024;
/// Buffers (quote plus trailing zero padding) longer than this are refused (GCP pads to 8000 bytes).
pub const MAX_QUOTE_BUFFER_LEN: usize = 1024 * 1024;
/// PCK certificate chains (PEM) longer than this are refused; Intel's are about 4 KB.
pub const MAX_PCK_CHAIN_LEN: usize = 32 * 1024;
/// QE authentication data longer than this is refused; Intel's QE sends 32 bytes.
pub const MAX_QE_AUTH_DATA_LEN: usize = 4096;

/// Which TD report the quote body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum BodyType {
    /// TDX 1.0 TD report (584 bytes): quote v4, or v5 body type 2.
    Td10,
    /// TDX 1.5 TD report (648 bytes, adds TEE_TCB_SVN2 and MRSERVICETD): v5 body type 3.
    Td15,
}

/// The TD report of a quote (TDX module ABI `TDREPORT` as it appears in a quote body). Plain data:
/// changing it does not change the quote's signed bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdReport {
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// TDX 1.5 only: the TEE TCB SVN after a TD-preserving module update.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TDX 1.5 only: measurement of the service TD bound to this TD.
    pub mr_service_td: Option<[u8; 48]>,
}

/// The QE report: an SGX enclave REPORT body, signed by the PCK key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnclaveReport {
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    pub attributes: [u8; 16],
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub report_data: [u8; 64],
}

/// A parsed DCAP quote for TDX. Build one with [`Quote::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// The quote bytes, without trailing padding.
    raw: Vec<u8>,
    padding: usize,
    version: u16,
    body_type: BodyType,
    /// Length of header (+ v5 body descriptor) + body: the signed prefix of `raw`.
    signed_len: usize,
    report: TdReport,
    signature: [u8; 64],
    attestation_key: [u8; 64],
    qe_report_raw: [u8; l::ENCLAVE_REPORT_LEN],
    qe_report: EnclaveReport,
    qe_report_signature: [u8; 64],
    qe_auth_data: Vec<u8>,
    pck_chain_pem: Vec<u8>,
}

/// A bounds-checked little-endian reader over the quote bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                Error::malformed(
                    "TDX quote",
                    format!(
                        "truncated in {what}: need {n} bytes at offset {}, {} left",
                        self.pos,
                        self.bytes.len().saturating_sub(self.pos)
                    ),
                )
            })?;
        let out = self.bytes.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
}

/// Copies `N` bytes at `off` of a slice whose length was already checked.
fn at<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = b.get(off..off.saturating_add(N)) {
        a.copy_from_slice(s);
    }
    a
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(at(b, off))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(at(b, off))
}

fn usize_from(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl TdReport {
    /// Decodes a TD report body of `body_type` (the slice must have exactly its length).
    pub fn decode(body: &[u8], body_type: BodyType) -> Result<TdReport, Error> {
        let want = match body_type {
            BodyType::Td10 => l::TD10_LEN,
            BodyType::Td15 => l::TD15_LEN,
        };
        if body.len() != want {
            return Err(Error::malformed(
                "TD report",
                format!("{} bytes, want {want}", body.len()),
            ));
        }
        let td15 = body_type == BodyType::Td15;
        Ok(TdReport {
            tee_tcb_svn: at(body, td::TEE_TCB_SVN),
            mr_seam: at(body, td::MRSEAM),
            mr_signer_seam: at(body, td::MRSIGNERSEAM),
            seam_attributes: at(body, td::SEAM_ATTRIBUTES),
            td_attributes: at(body, td::TD_ATTRIBUTES),
            xfam: at(body, td::XFAM),
            mr_td: at(body, td::MRTD),
            mr_config_id: at(body, td::MRCONFIGID),
            mr_owner: at(body, td::MROWNER),
            mr_owner_config: at(body, td::MROWNERCONFIG),
            rtmr: [
                at(body, td::RTMR0),
                at(body, td::RTMR1),
                at(body, td::RTMR2),
                at(body, td::RTMR3),
            ],
            report_data: at(body, td::REPORT_DATA),
            tee_tcb_svn2: td15.then(|| at(body, td::TEE_TCB_SVN2)),
            mr_service_td: td15.then(|| at(body, td::MRSERVICETD)),
        })
    }

    /// The body bytes of this report (584 bytes, or 648 when it has the TDX 1.5 fields). For
    /// building evidence (the simulated device); verification never re-encodes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(l::TD15_LEN);
        out.extend_from_slice(&self.tee_tcb_svn);
        out.extend_from_slice(&self.mr_seam);
        out.extend_from_slice(&self.mr_signer_seam);
        out.extend_from_slice(&self.seam_attributes);
        out.extend_from_slice(&self.td_attributes);
        out.extend_from_slice(&self.xfam);
        out.extend_from_slice(&self.mr_td);
        out.extend_from_slice(&self.mr_config_id);
        out.extend_from_slice(&self.mr_owner);
        out.extend_from_slice(&self.mr_owner_config);
        for r in &self.rtmr {
            out.extend_from_slice(r);
        }
        out.extend_from_slice(&self.report_data);
        if let (Some(svn2), Some(servtd)) = (&self.tee_tcb_svn2, &self.mr_service_td) {
            out.extend_from_slice(svn2);
            out.extend_from_slice(servtd);
        }
        out
    }

    /// TD_ATTRIBUTES as a little-endian integer (bit 0 = DEBUG).
    pub fn td_attributes_u64(&self) -> u64 {
        u64::from_le_bytes(self.td_attributes)
    }

    /// XFAM as a little-endian integer.
    pub fn xfam_u64(&self) -> u64 {
        u64::from_le_bytes(self.xfam)
    }

    /// TD_ATTRIBUTES.DEBUG: the host can read and alter the TD's state.
    pub fn debug(&self) -> bool {
        self.td_attributes_u64() & 1 != 0
    }
}

impl EnclaveReport {
    /// Decodes a 384-byte SGX REPORT body.
    pub fn decode(b: &[u8; l::ENCLAVE_REPORT_LEN]) -> EnclaveReport {
        use l::enclave as e;
        EnclaveReport {
            cpu_svn: at(b, e::CPUSVN),
            misc_select: u32_at(b, e::MISCSELECT),
            attributes: at(b, e::ATTRIBUTES),
            mr_enclave: at(b, e::MRENCLAVE),
            mr_signer: at(b, e::MRSIGNER),
            isv_prod_id: u16_at(b, e::ISVPRODID),
            isv_svn: u16_at(b, e::ISVSVN),
            report_data: at(b, e::REPORT_DATA),
        }
    }

    /// The 384 bytes of this report, reserved fields zero (for the simulated device).
    pub fn to_bytes(&self) -> [u8; l::ENCLAVE_REPORT_LEN] {
        use l::enclave as e;
        let mut b = [0u8; l::ENCLAVE_REPORT_LEN];
        let mut put = |off: usize, v: &[u8]| {
            if let Some(d) = b.get_mut(off..off.saturating_add(v.len())) {
                d.copy_from_slice(v);
            }
        };
        put(e::CPUSVN, &self.cpu_svn);
        put(e::MISCSELECT, &self.misc_select.to_le_bytes());
        put(e::ATTRIBUTES, &self.attributes);
        put(e::MRENCLAVE, &self.mr_enclave);
        put(e::MRSIGNER, &self.mr_signer);
        put(e::ISVPRODID, &self.isv_prod_id.to_le_bytes());
        put(e::ISVSVN, &self.isv_svn.to_le_bytes());
        put(e::REPORT_DATA, &self.report_data);
        b
    }
}

impl Quote {
    /// Parses a DCAP quote v4 or v5 with a TDX body, ECDSA P-256 attestation key, Intel's QE vendor
    /// ID and QE report certification data (type 6) around a PCK certificate chain (type 5).
    /// Bytes after the quote are accepted only if they are all zero (platforms deliver padded
    /// buffers).
    ///
    /// # Errors
    /// [`Error::Malformed`] naming the field: truncation, unsupported version/type, inconsistent
    /// nested lengths, a length cap exceeded, non-zero trailing bytes.
    pub fn parse(bytes: &[u8]) -> Result<Quote, Error> {
        let bad = |detail: String| Error::malformed("TDX quote", detail);
        if bytes.len() > MAX_QUOTE_BUFFER_LEN {
            return Err(bad(format!(
                "{} bytes, cap {MAX_QUOTE_BUFFER_LEN}",
                bytes.len()
            )));
        }
        let mut c = Cursor { bytes, pos: 0 };
        let header = c.take(l::HEADER_LEN, "header")?;
        let version = u16_at(header, l::VERSION);
        let att_key_type = u16_at(header, l::ATT_KEY_TYPE);
        let tee_type = u32_at(header, l::TEE_TYPE);
        if version != 4 && version != 5 {
            return Err(bad(format!("version {version}, want 4 or 5")));
        }
        if att_key_type != l::ATT_KEY_TYPE_ECDSA_P256 {
            return Err(bad(format!(
                "attestation key type {att_key_type}, want 2 (ECDSA P-256)"
            )));
        }
        if tee_type != l::TEE_TYPE_TDX {
            return Err(bad(format!("TEE type {tee_type:#x}, want 0x81 (TDX)")));
        }
        let vendor: [u8; 16] = at(header, l::QE_VENDOR_ID);
        if vendor != l::INTEL_QE_VENDOR_ID {
            return Err(bad(format!(
                "QE vendor ID {}, want Intel's",
                hex::encode(vendor)
            )));
        }

        let (body_type, body_len) = if version == 4 {
            (BodyType::Td10, l::TD10_LEN)
        } else {
            let ty = c.u16("body type")?;
            let size = usize_from(c.u32("body size")?);
            let (ty, want) = match ty {
                l::BODY_TYPE_TD10 => (BodyType::Td10, l::TD10_LEN),
                l::BODY_TYPE_TD15 => (BodyType::Td15, l::TD15_LEN),
                other => return Err(bad(format!("v5 body type {other}, want 2 or 3"))),
            };
            if size != want {
                return Err(bad(format!(
                    "v5 body type {ty:?} with size {size}, want {want}"
                )));
            }
            (ty, want)
        };
        let body = c.take(body_len, "TD report")?;
        let report = TdReport::decode(body, body_type)?;
        let signed_len = c.pos;

        let sig_data_len = usize_from(c.u32("signature data length")?);
        let sig_start = c.pos;
        let signature = c.array::<64>("quote signature")?;
        let attestation_key = c.array::<64>("attestation key")?;
        let outer_type = c.u16("certification data type")?;
        if outer_type != l::CERT_TYPE_QE_REPORT {
            return Err(bad(format!(
                "certification data type {outer_type}, want 6 (QE report certification data)"
            )));
        }
        let outer_size = usize_from(c.u32("certification data size")?);
        let outer_start = c.pos;
        let qe_report_raw = c.array::<{ l::ENCLAVE_REPORT_LEN }>("QE report")?;
        let qe_report_signature = c.array::<64>("QE report signature")?;
        let auth_len = usize::from(c.u16("QE auth data length")?);
        if auth_len > MAX_QE_AUTH_DATA_LEN {
            return Err(bad(format!(
                "QE auth data of {auth_len} bytes, cap {MAX_QE_AUTH_DATA_LEN}"
            )));
        }
        let qe_auth_data = c.take(auth_len, "QE auth data")?.to_vec();
        let inner_type = c.u16("PCK certification data type")?;
        if inner_type != l::CERT_TYPE_PCK_CHAIN {
            return Err(bad(format!(
                "QE certification data type {inner_type}, want 5 (PCK certificate chain)"
            )));
        }
        let chain_len = usize_from(c.u32("PCK certificate chain size")?);
        if chain_len > MAX_PCK_CHAIN_LEN {
            return Err(bad(format!(
                "PCK certificate chain of {chain_len} bytes, cap {MAX_PCK_CHAIN_LEN}"
            )));
        }
        let pck_chain_pem = c.take(chain_len, "PCK certificate chain")?.to_vec();
        let end = c.pos;

        // The nested lengths must describe exactly the bytes read.
        let outer_read = end.saturating_sub(outer_start);
        if outer_size != outer_read {
            return Err(bad(format!(
                "QE report certification data size {outer_size}, contents take {outer_read}"
            )));
        }
        let sig_read = end.saturating_sub(sig_start);
        if sig_data_len != sig_read {
            return Err(bad(format!(
                "signature data length {sig_data_len}, contents take {sig_read}"
            )));
        }
        if end > MAX_QUOTE_LEN {
            return Err(bad(format!("quote of {end} bytes, cap {MAX_QUOTE_LEN}")));
        }
        // Bytes after the quote are not covered by any signature and carry no meaning: platforms pad
        // their buffers (GCP to 8000 bytes with zeros) and some tools append text. They are dropped,
        // as dcap-qvl and go-tdx-guest do; only the quote's own bytes are kept and verified.
        let (quote, padding) = bytes.split_at_checked(end).unwrap_or((bytes, &[]));

        Ok(Quote {
            raw: quote.to_vec(),
            padding: padding.len(),
            version,
            body_type,
            signed_len,
            report,
            signature,
            attestation_key,
            qe_report: EnclaveReport::decode(&qe_report_raw),
            qe_report_raw,
            qe_report_signature,
            qe_auth_data,
            pck_chain_pem,
        })
    }

    /// The quote bytes as received, without trailing padding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }
    /// How many zero bytes followed the quote in the parsed buffer.
    pub fn padding_len(&self) -> usize {
        self.padding
    }
    pub fn version(&self) -> u16 {
        self.version
    }
    pub fn body_type(&self) -> BodyType {
        self.body_type
    }
    /// `att_key_type` (always 2, ECDSA P-256, for a parsed quote).
    pub fn att_key_type(&self) -> u16 {
        u16_at(&self.raw, l::ATT_KEY_TYPE)
    }
    /// `tee_type` (always 0x81, TDX, for a parsed quote).
    pub fn tee_type(&self) -> u32 {
        u32_at(&self.raw, l::TEE_TYPE)
    }
    pub fn qe_svn(&self) -> u16 {
        u16_at(&self.raw, l::QE_SVN)
    }
    pub fn pce_svn(&self) -> u16 {
        u16_at(&self.raw, l::PCE_SVN)
    }
    pub fn qe_vendor_id(&self) -> [u8; 16] {
        at(&self.raw, l::QE_VENDOR_ID)
    }
    pub fn user_data(&self) -> [u8; 20] {
        at(&self.raw, l::USER_DATA)
    }
    pub fn td_report(&self) -> &TdReport {
        &self.report
    }
    /// REPORTDATA of the TD report (the TD's nonce or key binding).
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report.report_data
    }
    /// The bytes the attestation key signed: header (+ v5 body descriptor) and body, as received.
    pub fn signed_bytes(&self) -> &[u8] {
        self.raw.get(..self.signed_len).unwrap_or_default()
    }
    /// The quote signature `r || s`.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
    /// The attestation public key `x || y`.
    pub fn attestation_key(&self) -> &[u8; 64] {
        &self.attestation_key
    }
    /// The QE report bytes as received (signed by the PCK key).
    pub fn qe_report_bytes(&self) -> &[u8; l::ENCLAVE_REPORT_LEN] {
        &self.qe_report_raw
    }
    pub fn qe_report(&self) -> &EnclaveReport {
        &self.qe_report
    }
    pub fn qe_report_signature(&self) -> &[u8; 64] {
        &self.qe_report_signature
    }
    pub fn qe_auth_data(&self) -> &[u8] {
        &self.qe_auth_data
    }
    /// The PCK certificate chain (PEM: PCK, Platform/Processor CA, root) from the certification data.
    pub fn pck_chain_pem(&self) -> &[u8] {
        &self.pck_chain_pem
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

    #[test]
    fn parses_v4_with_padding_and_v5_td15() {
        let gcp = read("tdx/gcp-00806f-v4/quote.bin");
        let q = Quote::parse(&gcp).unwrap();
        assert_eq!((q.version(), q.body_type()), (4, BodyType::Td10));
        assert_eq!((q.as_bytes().len(), q.padding_len()), (4935, 3065));
        assert_eq!(q.signed_bytes().len(), 48 + 584);
        assert!(q.td_report().tee_tcb_svn2.is_none());
        assert_eq!(q.qe_auth_data().len(), 32);
        assert!(q
            .pck_chain_pem()
            .starts_with(b"-----BEGIN CERTIFICATE-----"));

        let v5 = read("tdx/gtg-90c06f-v5/quote.bin");
        let q = Quote::parse(&v5).unwrap();
        assert_eq!((q.version(), q.body_type()), (5, BodyType::Td15));
        assert_eq!(q.signed_bytes().len(), 48 + 6 + 648);
        assert_eq!(
            hex::encode(q.td_report().tee_tcb_svn2.unwrap()),
            "0d010400000000000000000000000000"
        );
        // Round trip of the TD report through to_bytes (the simulated device's encoder).
        assert_eq!(q.td_report().to_bytes(), &v5[54..54 + 648]);
        assert_eq!(&q.qe_report().to_bytes()[..], &q.qe_report_bytes()[..]);
    }

    #[test]
    fn drops_trailing_bytes_and_refuses_truncation() {
        let mut gcp = read("tdx/gcp-00806f-v4/quote.bin");
        let last = gcp.len() - 1;
        gcp[last] = 1;
        let padded = Quote::parse(&gcp).unwrap();
        assert!(padded.padding_len() > 0);
        assert_eq!(padded.as_bytes(), &gcp[..gcp.len() - padded.padding_len()]);
        let q = read("tdx/near-20a06f-v4/quote.bin");
        let n = Quote::parse(&q).unwrap().as_bytes().len();
        for cut in [0, 47, 48, 631, 632, 636, 1020, n - 1] {
            let e = Quote::parse(&q[..cut]).unwrap_err();
            assert_eq!(e.category(), "malformed", "cut at {cut}: {e}");
        }
        // Exactly the quote, no padding.
        assert_eq!(Quote::parse(&q[..n]).unwrap().padding_len(), 0);
    }

    #[test]
    fn refuses_wrong_header_fields_and_inconsistent_lengths() {
        let q = read("tdx/dq-b0c06f-v4/quote.bin");
        let cases: [(usize, u8, &str); 5] = [
            (0, 3, "version 3"),
            (2, 3, "attestation key type 3"),
            (4, 0, "TEE type 0x0"),
            (12, 0, "QE vendor ID"),
            // Signature data length one too large.
            (632, q[632].wrapping_add(1), "signature data length"),
        ];
        for (off, val, want) in cases {
            let mut m = q.clone();
            m[off] = val;
            let e = Quote::parse(&m).unwrap_err();
            assert!(e.to_string().contains(want), "offset {off}: {e}");
        }
        // v5 with a body size that disagrees with its type.
        let mut v5 = read("tdx/gtg-90c06f-v5/quote.bin");
        v5[50] = 0x48; // size 0x248 = 584 with type 3
        v5[51] = 0x02;
        let e = Quote::parse(&v5).unwrap_err();
        assert!(
            e.to_string().contains("v5 body type Td15 with size 584"),
            "{e}"
        );
        let mut v5 = read("tdx/gtg-90c06f-v5/quote.bin");
        v5[48] = 4;
        assert!(Quote::parse(&v5)
            .unwrap_err()
            .to_string()
            .contains("body type 4"));
    }

    #[test]
    fn td_attribute_bits() {
        let q = Quote::parse(&read("tdx/trustee-50806f-v4-debug/quote.bin")).unwrap();
        assert!(q.td_report().debug());
        let q = Quote::parse(&read("tdx/azure-00806f-v4/quote.bin")).unwrap();
        assert!(!q.td_report().debug());
        assert_eq!(q.td_report().td_attributes_u64(), 0);
    }
}

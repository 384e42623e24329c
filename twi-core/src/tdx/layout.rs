//! Byte layout of an Intel DCAP quote v4/v5 for TDX (Intel TDX DCAP Quoting Library API, appendix
//! "Quote Format"), shared by the parser and the simulated TDX device so both use the same numbers.
//! All integers are little-endian.

/// Quote header length.
pub const HEADER_LEN: usize = 48;
/// Offset of `version` (u16) in the header.
pub const VERSION: usize = 0;
/// Offset of `att_key_type` (u16).
pub const ATT_KEY_TYPE: usize = 2;
/// Offset of `tee_type` (u32).
pub const TEE_TYPE: usize = 4;
/// Offset of `qe_svn` (u16; "reserved" in older specifications).
pub const QE_SVN: usize = 8;
/// Offset of `pce_svn` (u16).
pub const PCE_SVN: usize = 10;
/// Offset of `qe_vendor_id` (16 bytes).
pub const QE_VENDOR_ID: usize = 12;
/// Offset of `user_data` (20 bytes).
pub const USER_DATA: usize = 28;

/// `att_key_type` for ECDSA P-256 (the only one DCAP uses for TDX).
pub const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// `tee_type` of TDX.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Intel's QE vendor ID (`939A7233-F79C-4CA9-940A-0DB3957F0607`).
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9A, 0x72, 0x33, 0xF7, 0x9C, 0x4C, 0xA9, 0x94, 0x0A, 0x0D, 0xB3, 0x95, 0x7F, 0x06, 0x07,
];

/// Quote v5 body descriptor: `type` (u16) then `size` (u32), right after the header.
pub const BODY_DESCRIPTOR_LEN: usize = 6;
/// v5 body type of a TDX 1.0 TD report.
pub const BODY_TYPE_TD10: u16 = 2;
/// v5 body type of a TDX 1.5 TD report (adds TEE_TCB_SVN2 and MRSERVICETD).
pub const BODY_TYPE_TD15: u16 = 3;

/// TD report (TDX 1.0) length.
pub const TD10_LEN: usize = 584;
/// TD report (TDX 1.5) length.
pub const TD15_LEN: usize = 648;

/// TD report field offsets, relative to the start of the body.
pub mod td {
    pub const TEE_TCB_SVN: usize = 0;
    pub const MRSEAM: usize = 16;
    pub const MRSIGNERSEAM: usize = 64;
    pub const SEAM_ATTRIBUTES: usize = 112;
    pub const TD_ATTRIBUTES: usize = 120;
    pub const XFAM: usize = 128;
    pub const MRTD: usize = 136;
    pub const MRCONFIGID: usize = 184;
    pub const MROWNER: usize = 232;
    pub const MROWNERCONFIG: usize = 280;
    pub const RTMR0: usize = 328;
    pub const RTMR1: usize = 376;
    pub const RTMR2: usize = 424;
    pub const RTMR3: usize = 472;
    pub const REPORT_DATA: usize = 520;
    /// TDX 1.5 only.
    pub const TEE_TCB_SVN2: usize = 584;
    /// TDX 1.5 only.
    pub const MRSERVICETD: usize = 600;
}

/// SGX enclave REPORT body (the QE report) length.
pub const ENCLAVE_REPORT_LEN: usize = 384;

/// Enclave report field offsets.
pub mod enclave {
    pub const CPUSVN: usize = 0;
    pub const MISCSELECT: usize = 16;
    pub const ATTRIBUTES: usize = 48;
    pub const MRENCLAVE: usize = 64;
    pub const MRSIGNER: usize = 128;
    pub const ISVPRODID: usize = 256;
    pub const ISVSVN: usize = 258;
    pub const REPORT_DATA: usize = 320;
}

/// ECDSA P-256 signature `r || s`, big-endian.
pub const SIGNATURE_LEN: usize = 64;
/// ECDSA P-256 public key `x || y`, big-endian.
pub const PUBLIC_KEY_LEN: usize = 64;

/// Certification data type: PCK certificate chain (PEM: PCK, intermediate CA, root).
pub const CERT_TYPE_PCK_CHAIN: u16 = 5;
/// Certification data type: QE report certification data (QE report, its signature, QE auth data,
/// and nested certification data).
pub const CERT_TYPE_QE_REPORT: u16 = 6;

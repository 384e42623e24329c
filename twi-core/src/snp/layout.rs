//! Byte layout of the SEV-SNP `ATTESTATION_REPORT` structure (AMD SEV-SNP Firmware ABI Specification,
//! publication 56860, Table 23 "ATTESTATION_REPORT Structure"), shared by the parser and the simulated
//! device so that both read and write exactly the same offsets.
//!
//! All multi-byte integers are little-endian. Versions 2, 3 and 5 (what current firmware emits) share
//! this layout; version 3 filled in the CPUID fields and version 5 the mitigation vectors, both in what
//! were reserved bytes before.

/// Size of every report version this crate accepts.
pub const REPORT_LEN: usize = 0x4A0;
/// The signature covers `report[0..SIGNED_LEN]`, exactly as received.
pub const SIGNED_LEN: usize = 0x2A0;

pub const VERSION: usize = 0x000; // u32
pub const GUEST_SVN: usize = 0x004; // u32
pub const POLICY: usize = 0x008; // u64
pub const FAMILY_ID: usize = 0x010; // [u8; 16]
pub const IMAGE_ID: usize = 0x020; // [u8; 16]
pub const VMPL: usize = 0x030; // u32
pub const SIGNATURE_ALGO: usize = 0x034; // u32, 1 = ECDSA P-384 with SHA-384
pub const CURRENT_TCB: usize = 0x038; // u64
pub const PLATFORM_INFO: usize = 0x040; // u64
/// bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 2..=4 SIGNING_KEY (0 VCEK, 1 VLEK, 7 none).
pub const KEY_INFO: usize = 0x048; // u32
pub const REPORT_DATA: usize = 0x050; // [u8; 64]
pub const MEASUREMENT: usize = 0x090; // [u8; 48]
pub const HOST_DATA: usize = 0x0C0; // [u8; 32]
pub const ID_KEY_DIGEST: usize = 0x0E0; // [u8; 48]
pub const AUTHOR_KEY_DIGEST: usize = 0x110; // [u8; 48]
pub const REPORT_ID: usize = 0x140; // [u8; 32]
pub const REPORT_ID_MA: usize = 0x160; // [u8; 32]
pub const REPORTED_TCB: usize = 0x180; // u64
/// Version 3 and later: CPUID family, model and stepping (one byte each).
pub const CPUID_FAM_ID: usize = 0x188;
pub const CPUID_MOD_ID: usize = 0x189;
pub const CPUID_STEP: usize = 0x18A;
pub const CHIP_ID: usize = 0x1A0; // [u8; 64]
pub const COMMITTED_TCB: usize = 0x1E0; // u64
pub const CURRENT_BUILD: usize = 0x1E8; // build, minor, major (u8 each)
pub const COMMITTED_BUILD: usize = 0x1EC; // build, minor, major (u8 each)
pub const LAUNCH_TCB: usize = 0x1F0; // u64
/// Version 5 and later.
pub const LAUNCH_MIT_VECTOR: usize = 0x1F8; // u64
pub const CURRENT_MIT_VECTOR: usize = 0x200; // u64
/// ECDSA signature: R then S, each 72 bytes little-endian (zero-extended from 48).
pub const SIGNATURE: usize = 0x2A0;
pub const SIGNATURE_COMPONENT_LEN: usize = 72;

pub const REPORT_DATA_LEN: usize = 64;
pub const MEASUREMENT_LEN: usize = 48;
pub const HOST_DATA_LEN: usize = 32;
pub const DIGEST_LEN: usize = 48;
pub const REPORT_ID_LEN: usize = 32;
pub const CHIP_ID_LEN: usize = 64;

/// Guest policy bits (ABI spec Table 9).
pub mod policy_bits {
    pub const SMT: u64 = 1 << 16;
    pub const RESERVED_MUST_BE_ONE: u64 = 1 << 17;
    pub const MIGRATE_MA: u64 = 1 << 18;
    pub const DEBUG: u64 = 1 << 19;
    pub const SINGLE_SOCKET: u64 = 1 << 20;
    pub const CXL_ALLOW: u64 = 1 << 21;
    pub const MEM_AES_256_XTS: u64 = 1 << 22;
    pub const RAPL_DIS: u64 = 1 << 23;
    pub const CIPHERTEXT_HIDING: u64 = 1 << 24;
    pub const PAGE_SWAP_DISABLE: u64 = 1 << 25;
}

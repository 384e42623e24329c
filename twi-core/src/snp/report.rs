//! Parsing an `ATTESTATION_REPORT`: bytes only, no cryptography.
//!
//! The parsed report keeps the exact bytes it was given, because the signature must be checked over
//! what was received and never over a re-encoding (virtee/sev's `to_bytes()` trap). Fields are decoded
//! once at parse time so that accessors cannot fail.

use serde::Serialize;

use super::layout as l;
use crate::Error;

/// Which key the firmware says signed the report (`SIGNING_KEY`, bits 4..=2 of the u32 at 0x48).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum SigningKeyKind {
    /// Versioned Chip Endorsement Key: bound to one chip and one TCB.
    #[serde(rename = "VCEK")]
    Vcek,
    /// Versioned Loaded Endorsement Key: provisioned by a cloud provider, not bound to a chip.
    #[serde(rename = "VLEK")]
    Vlek,
    /// The report is not signed.
    #[serde(rename = "none")]
    None,
}

impl std::fmt::Display for SigningKeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigningKeyKind::Vcek => "VCEK",
            SigningKeyKind::Vlek => "VLEK",
            SigningKeyKind::None => "none",
        })
    }
}

/// The guest policy the VM was launched with (ABI spec Table 9), decoded where an appraiser cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GuestPolicy {
    /// The full 64-bit value, for bits not decoded here.
    pub raw: u64,
    pub abi_minor: u8,
    pub abi_major: u8,
    pub smt: bool,
    /// A migration agent may be associated with the guest (it can read guest memory on migration).
    pub migrate_ma: bool,
    /// The hypervisor may decrypt and alter guest memory: no confidentiality at all.
    pub debug: bool,
    pub single_socket: bool,
}

impl GuestPolicy {
    /// Decodes the raw policy value; every bit pattern is representable.
    pub fn from_raw(raw: u64) -> GuestPolicy {
        let b = |bit: u64| raw & bit != 0;
        let [abi_minor, abi_major, ..] = raw.to_le_bytes();
        GuestPolicy {
            raw,
            abi_minor,
            abi_major,
            smt: b(l::policy_bits::SMT),
            migrate_ma: b(l::policy_bits::MIGRATE_MA),
            debug: b(l::policy_bits::DEBUG),
            single_socket: b(l::policy_bits::SINGLE_SOCKET),
        }
    }
}

/// A firmware version as reported (`CURRENT_*` / `COMMITTED_*` build, minor, major).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// A parsed SEV-SNP attestation report that still holds the exact bytes it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationReport {
    bytes: Vec<u8>,
    version: u32,
    guest_svn: u32,
    policy: u64,
    family_id: [u8; 16],
    image_id: [u8; 16],
    vmpl: u32,
    current_tcb: u64,
    platform_info: u64,
    key_info: u32,
    signing_key: SigningKeyKind,
    report_data: [u8; l::REPORT_DATA_LEN],
    measurement: [u8; l::MEASUREMENT_LEN],
    host_data: [u8; l::HOST_DATA_LEN],
    id_key_digest: [u8; l::DIGEST_LEN],
    author_key_digest: [u8; l::DIGEST_LEN],
    report_id: [u8; l::REPORT_ID_LEN],
    report_id_ma: [u8; l::REPORT_ID_LEN],
    reported_tcb: u64,
    cpuid: [u8; 3],
    chip_id: [u8; l::CHIP_ID_LEN],
    committed_tcb: u64,
    current_build: [u8; 3],
    committed_build: [u8; 3],
    launch_tcb: u64,
    launch_mit_vector: u64,
    current_mit_vector: u64,
    signature_r: [u8; l::SIGNATURE_COMPONENT_LEN],
    signature_s: [u8; l::SIGNATURE_COMPONENT_LEN],
}

/// Lowest and highest report version this parser knows the layout of.
pub const MIN_VERSION: u32 = 2;
/// See [`MIN_VERSION`].
pub const MAX_VERSION: u32 = 5;
/// `SIGNATURE_ALGO` value of ECDSA P-384 with SHA-384, the only algorithm defined.
pub const SIGNATURE_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// Bounds-checked little-endian reads over the received bytes.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn arr<const N: usize>(&self, off: usize) -> Result<[u8; N], Error> {
        off.checked_add(N)
            .and_then(|end| self.0.get(off..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| {
                Error::malformed(
                    "attestation report",
                    format!("field at {off:#x} out of range"),
                )
            })
    }
    fn u32(&self, off: usize) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.arr(off)?))
    }
    fn u64(&self, off: usize) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.arr(off)?))
    }
}

impl AttestationReport {
    /// Parses a report of exactly [`l::REPORT_LEN`] bytes.
    ///
    /// Only the format is checked here; nothing is trusted until [`super::Verifier::verify`].
    ///
    /// # Errors
    /// [`Error::Malformed`] for a wrong length, a version outside 2..=5, a signature algorithm other
    /// than ECDSA P-384/SHA-384, or a reserved `SIGNING_KEY` value.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != l::REPORT_LEN {
            return Err(Error::malformed(
                "attestation report",
                format!("length {} bytes, want {}", bytes.len(), l::REPORT_LEN),
            ));
        }
        let f = Fields(bytes);
        let version = f.u32(l::VERSION)?;
        if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
            return Err(Error::malformed(
                "attestation report",
                format!("version {version}, want {MIN_VERSION}..={MAX_VERSION}"),
            ));
        }
        let algo = f.u32(l::SIGNATURE_ALGO)?;
        if algo != SIGNATURE_ALGO_ECDSA_P384_SHA384 {
            return Err(Error::malformed(
                "attestation report",
                format!("signature algorithm {algo}, want {SIGNATURE_ALGO_ECDSA_P384_SHA384} (ECDSA P-384 SHA-384)"),
            ));
        }
        let key_info = f.u32(l::KEY_INFO)?;
        let signing_key = match (key_info >> 2) & 0x7 {
            0 => SigningKeyKind::Vcek,
            1 => SigningKeyKind::Vlek,
            7 => SigningKeyKind::None,
            other => {
                return Err(Error::malformed(
                    "attestation report",
                    format!("SIGNING_KEY {other} is reserved (want 0 VCEK, 1 VLEK or 7 none)"),
                ))
            }
        };
        let [fam, model, step] = f.arr::<3>(l::CPUID_FAM_ID)?;
        Ok(AttestationReport {
            version,
            guest_svn: f.u32(l::GUEST_SVN)?,
            policy: f.u64(l::POLICY)?,
            family_id: f.arr(l::FAMILY_ID)?,
            image_id: f.arr(l::IMAGE_ID)?,
            vmpl: f.u32(l::VMPL)?,
            current_tcb: f.u64(l::CURRENT_TCB)?,
            platform_info: f.u64(l::PLATFORM_INFO)?,
            key_info,
            signing_key,
            report_data: f.arr(l::REPORT_DATA)?,
            measurement: f.arr(l::MEASUREMENT)?,
            host_data: f.arr(l::HOST_DATA)?,
            id_key_digest: f.arr(l::ID_KEY_DIGEST)?,
            author_key_digest: f.arr(l::AUTHOR_KEY_DIGEST)?,
            report_id: f.arr(l::REPORT_ID)?,
            report_id_ma: f.arr(l::REPORT_ID_MA)?,
            reported_tcb: f.u64(l::REPORTED_TCB)?,
            cpuid: [fam, model, step],
            chip_id: f.arr(l::CHIP_ID)?,
            committed_tcb: f.u64(l::COMMITTED_TCB)?,
            current_build: f.arr(l::CURRENT_BUILD)?,
            committed_build: f.arr(l::COMMITTED_BUILD)?,
            launch_tcb: f.u64(l::LAUNCH_TCB)?,
            launch_mit_vector: f.u64(l::LAUNCH_MIT_VECTOR)?,
            current_mit_vector: f.u64(l::CURRENT_MIT_VECTOR)?,
            signature_r: f.arr(l::SIGNATURE)?,
            signature_s: f.arr(l::SIGNATURE + l::SIGNATURE_COMPONENT_LEN)?,
            bytes: bytes.to_vec(),
        })
    }

    /// The exact bytes received; the signature is verified over `as_bytes()[..SIGNED_LEN]`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The signed part of the received bytes.
    pub fn signed_bytes(&self) -> &[u8] {
        self.bytes.get(..l::SIGNED_LEN).unwrap_or(&self.bytes)
    }

    pub fn version(&self) -> u32 {
        self.version
    }
    pub fn guest_svn(&self) -> u32 {
        self.guest_svn
    }
    pub fn policy(&self) -> GuestPolicy {
        GuestPolicy::from_raw(self.policy)
    }
    pub fn family_id(&self) -> &[u8; 16] {
        &self.family_id
    }
    pub fn image_id(&self) -> &[u8; 16] {
        &self.image_id
    }
    pub fn vmpl(&self) -> u32 {
        self.vmpl
    }
    /// Raw TCB_VERSION; decode with [`super::TcbParts::decode`] once the product is known.
    pub fn current_tcb(&self) -> u64 {
        self.current_tcb
    }
    /// The TCB the report's VCEK is derived from: the one that must match the certificate.
    pub fn reported_tcb(&self) -> u64 {
        self.reported_tcb
    }
    pub fn committed_tcb(&self) -> u64 {
        self.committed_tcb
    }
    pub fn launch_tcb(&self) -> u64 {
        self.launch_tcb
    }
    pub fn platform_info(&self) -> u64 {
        self.platform_info
    }
    pub fn signing_key(&self) -> SigningKeyKind {
        self.signing_key
    }
    /// An ID block with an author key was given at launch.
    pub fn author_key_en(&self) -> bool {
        self.key_info & 1 != 0
    }
    /// The host asked the firmware to zero CHIP_ID (the hwID check is then impossible).
    pub fn mask_chip_key(&self) -> bool {
        self.key_info & 2 != 0
    }
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }
    pub fn measurement(&self) -> &[u8; 48] {
        &self.measurement
    }
    pub fn host_data(&self) -> &[u8; 32] {
        &self.host_data
    }
    pub fn id_key_digest(&self) -> &[u8; 48] {
        &self.id_key_digest
    }
    pub fn author_key_digest(&self) -> &[u8; 48] {
        &self.author_key_digest
    }
    pub fn report_id(&self) -> &[u8; 32] {
        &self.report_id
    }
    pub fn report_id_ma(&self) -> &[u8; 32] {
        &self.report_id_ma
    }
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }
    /// CPUID family, model, stepping: present from version 3 on (and not all zero).
    pub fn cpuid(&self) -> Option<(u8, u8, u8)> {
        let [fam, model, step] = self.cpuid;
        (self.version >= 3 && self.cpuid != [0; 3]).then_some((fam, model, step))
    }
    pub fn current_firmware(&self) -> FirmwareVersion {
        let [build, minor, major] = self.current_build;
        FirmwareVersion {
            major,
            minor,
            build,
        }
    }
    pub fn committed_firmware(&self) -> FirmwareVersion {
        let [build, minor, major] = self.committed_build;
        FirmwareVersion {
            major,
            minor,
            build,
        }
    }
    /// Version 5 and later.
    pub fn launch_mit_vector(&self) -> Option<u64> {
        (self.version >= 5).then_some(self.launch_mit_vector)
    }
    /// Version 5 and later.
    pub fn current_mit_vector(&self) -> Option<u64> {
        (self.version >= 5).then_some(self.current_mit_vector)
    }

    /// The ECDSA signature as (R, S) big-endian 48-byte scalars.
    ///
    /// # Errors
    /// [`Error::Signature`] when the upper 24 bytes of a 72-byte little-endian component are not zero.
    pub(crate) fn signature_scalars(&self) -> Result<([u8; 48], [u8; 48]), Error> {
        Ok((be48("R", &self.signature_r)?, be48("S", &self.signature_s)?))
    }
}

fn be48(name: &str, le72: &[u8; l::SIGNATURE_COMPONENT_LEN]) -> Result<[u8; 48], Error> {
    let (low, high) = le72.split_at(48);
    if high.iter().any(|b| *b != 0) {
        return Err(Error::Signature {
            detail: format!("signature {name} has non-zero bytes above 48"),
        });
    }
    let mut out = [0u8; 48];
    for (o, i) in out.iter_mut().zip(low.iter().rev()) {
        *o = *i;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn minimal(version: u32) -> Vec<u8> {
        let mut b = vec![0u8; l::REPORT_LEN];
        b[l::VERSION..l::VERSION + 4].copy_from_slice(&version.to_le_bytes());
        b[l::SIGNATURE_ALGO..l::SIGNATURE_ALGO + 4].copy_from_slice(&1u32.to_le_bytes());
        b
    }

    #[test]
    fn length_must_be_exact() {
        for len in [0, 1, l::SIGNED_LEN, l::REPORT_LEN - 1, l::REPORT_LEN + 1] {
            let mut b = minimal(2);
            b.resize(len, 0);
            let e = AttestationReport::parse(&b).unwrap_err();
            assert_eq!(e.category(), "malformed", "len {len}: {e}");
        }
        assert!(AttestationReport::parse(&minimal(2)).is_ok());
    }

    #[test]
    fn versions_outside_2_to_5_are_malformed() {
        for v in [0, 1, 6, 0xFFFF_FFFF] {
            let e = AttestationReport::parse(&minimal(v)).unwrap_err();
            assert_eq!(e.category(), "malformed");
            assert!(e.to_string().contains("version"), "{e}");
        }
        for v in 2..=5 {
            assert_eq!(AttestationReport::parse(&minimal(v)).unwrap().version(), v);
        }
    }

    #[test]
    fn only_ecdsa_p384_is_accepted() {
        for algo in [0u32, 2, 0x100] {
            let mut b = minimal(3);
            b[l::SIGNATURE_ALGO..l::SIGNATURE_ALGO + 4].copy_from_slice(&algo.to_le_bytes());
            let e = AttestationReport::parse(&b).unwrap_err();
            assert!(e.to_string().contains("signature algorithm"), "{e}");
        }
    }

    #[test]
    fn reserved_signing_key_is_malformed_and_known_ones_decode() {
        let mut b = minimal(3);
        for (bits, want) in [
            (0u32, Some(SigningKeyKind::Vcek)),
            (1, Some(SigningKeyKind::Vlek)),
            (7, Some(SigningKeyKind::None)),
            (3, None),
        ] {
            let info = (bits << 2) | 0b11;
            b[l::KEY_INFO..l::KEY_INFO + 4].copy_from_slice(&info.to_le_bytes());
            match (AttestationReport::parse(&b), want) {
                (Ok(r), Some(k)) => {
                    assert_eq!(r.signing_key(), k);
                    assert!(r.author_key_en() && r.mask_chip_key());
                }
                (Err(e), None) => assert_eq!(e.category(), "malformed"),
                (got, want) => panic!("bits {bits}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn fields_decode_from_their_offsets() {
        let mut b = minimal(5);
        b[l::POLICY..l::POLICY + 8].copy_from_slice(&0xb_1f03u64.to_le_bytes());
        b[l::CPUID_FAM_ID] = 0x19;
        b[l::CPUID_MOD_ID] = 0x11;
        b[l::CPUID_STEP] = 0x01;
        b[l::CURRENT_BUILD..l::CURRENT_BUILD + 3].copy_from_slice(&[29, 55, 1]);
        b[l::MEASUREMENT] = 0xAA;
        b[l::CHIP_ID + 63] = 0xCC;
        b[l::CURRENT_MIT_VECTOR] = 9;
        let r = AttestationReport::parse(&b).unwrap();
        let p = r.policy();
        assert_eq!(
            (
                p.abi_major,
                p.abi_minor,
                p.smt,
                p.migrate_ma,
                p.debug,
                p.single_socket
            ),
            (0x1f, 3, true, false, true, false)
        );
        assert_eq!(r.cpuid(), Some((0x19, 0x11, 0x01)));
        assert_eq!(r.current_firmware().to_string(), "1.55.29");
        assert_eq!(r.measurement()[0], 0xAA);
        assert_eq!(r.chip_id()[63], 0xCC);
        assert_eq!(r.current_mit_vector(), Some(9));
        assert_eq!(r.as_bytes(), &b[..]);
        // v2: CPUID and mitigation vectors are reserved bytes, not reported.
        let mut b2 = b.clone();
        b2[0] = 2;
        let r2 = AttestationReport::parse(&b2).unwrap();
        assert_eq!((r2.cpuid(), r2.current_mit_vector()), (None, None));
    }

    #[test]
    fn signature_components_reverse_and_require_zero_padding() {
        let mut b = minimal(2);
        b[l::SIGNATURE] = 0x01; // least significant byte of R
        b[l::SIGNATURE + 47] = 0x02; // most significant byte of R
        let r = AttestationReport::parse(&b).unwrap();
        let (rr, _) = r.signature_scalars().unwrap();
        assert_eq!((rr[0], rr[47]), (0x02, 0x01));
        b[l::SIGNATURE + 48] = 0x01; // above 48 bytes
        let e = AttestationReport::parse(&b)
            .unwrap()
            .signature_scalars()
            .unwrap_err();
        assert_eq!(e.category(), "signature");
    }
}

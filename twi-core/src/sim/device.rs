//! The simulated `/dev/sev-guest`: builds ATTESTATION_REPORT structures at the offsets of
//! [`crate::snp::layout`] and signs them with the simulated VCEK, as the AMD secure processor would.

use der::{Decode, Encode};
use p384::ecdsa::signature::Signer;
use p384::ecdsa::{Signature, SigningKey};
use pkcs8::DecodePrivateKey;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha384};
use std::path::Path;
use x509_cert::Certificate;

use super::cert_table::{encode_cert_table, ARK_GUID, ASK_GUID, VCEK_GUID};
use super::certs::amd_oid;
use super::init::{SimJson, SimLayout};
use super::SimError;
use crate::snp::layout::{self as l, policy_bits};
use crate::snp::{Product, TcbParts};

/// What the guest owner and the hypervisor chose at launch, which the firmware copies into every report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestParams {
    /// Report format version: 2, 3 or 5.
    pub version: u32,
    pub guest_svn: u32,
    /// Guest policy (ABI spec Table 9); bit 17 must be set, as the firmware requires at launch.
    pub policy: u64,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    /// VMPL of the requesting guest code, 0..=3.
    pub vmpl: u32,
    pub measurement: [u8; l::MEASUREMENT_LEN],
    pub host_data: [u8; l::HOST_DATA_LEN],
    pub id_key_digest: [u8; l::DIGEST_LEN],
    /// Non-zero sets KEY_INFO.AUTHOR_KEY_EN, as when the ID block carried an author key.
    pub author_key_digest: [u8; l::DIGEST_LEN],
    /// `None`: the device's own REPORT_ID (random per [`SimSnpDevice`], i.e. per simulated VM).
    pub report_id: Option<[u8; l::REPORT_ID_LEN]>,
    /// All 0xFF when the guest has no migration agent, as on real hardware.
    pub report_id_ma: [u8; l::REPORT_ID_LEN],
    /// Version 5 only.
    pub launch_mit_vector: u64,
    /// Version 5 only.
    pub current_mit_vector: u64,
}

impl Default for GuestParams {
    /// A version 5, non-debug guest with SMT allowed (policy 0x30000) at VMPL 0 and the
    /// [`default_measurement`].
    fn default() -> GuestParams {
        GuestParams {
            version: 5,
            guest_svn: 0,
            policy: policy_bits::SMT | policy_bits::RESERVED_MUST_BE_ONE,
            family_id: [0; 16],
            image_id: [0; 16],
            vmpl: 0,
            measurement: default_measurement(),
            host_data: [0; l::HOST_DATA_LEN],
            id_key_digest: [0; l::DIGEST_LEN],
            author_key_digest: [0; l::DIGEST_LEN],
            report_id: None,
            report_id_ma: [0xFF; l::REPORT_ID_LEN],
            launch_mit_vector: 0,
            current_mit_vector: 0,
        }
    }
}

/// The launch measurement of "the" simulated guest: SHA-384 of `twi-spire simulated guest`, fixed so
/// that policies can pin it.
pub fn default_measurement() -> [u8; l::MEASUREMENT_LEN] {
    Sha384::digest(b"twi-spire simulated guest").into()
}

/// What an extended guest request returns: the report and the host's certificate table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimEvidence {
    /// The 1184-byte ATTESTATION_REPORT.
    pub report: Vec<u8>,
    /// GUID table with the VCEK, ASK and ARK (DER), as the host supplies it with an extended report.
    pub cert_table: Vec<u8>,
}

/// A simulated SEV-SNP guest device bound to one root set. Each instance stands for one VM: it has its
/// own random REPORT_ID, stable for its lifetime.
pub struct SimSnpDevice {
    product: Product,
    tcb: TcbParts,
    chip_id: [u8; l::CHIP_ID_LEN],
    vcek_key: SigningKey,
    vcek_der: Vec<u8>,
    ask_der: Vec<u8>,
    ark_der: Vec<u8>,
    report_id: [u8; l::REPORT_ID_LEN],
}

impl std::fmt::Debug for SimSnpDevice {
    // Hand-written so that the signing key can never end up in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimSnpDevice")
            .field("product", &self.product)
            .field("tcb", &self.tcb)
            .field("chip_id", &hex::encode(self.chip_id))
            .field("report_id", &hex::encode(self.report_id))
            .finish_non_exhaustive()
    }
}

/// Firmware version (build, minor, major) the simulated secure processor reports.
fn firmware_build(product: Product) -> [u8; 3] {
    match product {
        Product::Milan => [29, 55, 1],
        Product::Genoa => [43, 55, 1],
        Product::Turin => [61, 55, 1],
    }
}

/// CPUID family, model, stepping for version 3+ reports.
fn cpuid(product: Product) -> [u8; 3] {
    match product {
        Product::Milan => [0x19, 0x01, 0x01],
        Product::Genoa => [0x19, 0x11, 0x01],
        Product::Turin => [0x1A, 0x02, 0x01],
    }
}

/// PLATFORM_INFO: SMT_EN, ECC_EN and ALIAS_CHECK_COMPLETE, as on the real hosts in shared/testdata.
const PLATFORM_INFO: u64 = 0x25;
/// SIGNATURE_ALGO: ECDSA P-384 with SHA-384.
const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

impl SimSnpDevice {
    /// Opens the root set `init` wrote in `dir`, checking that its files belong together (the VCEK key
    /// matches the VCEK certificate, whose hwID matches `sim.json`).
    ///
    /// # Errors
    /// I/O errors, and [`SimError::Corrupt`] for files that are not what `init` writes.
    pub fn open(dir: &Path) -> Result<SimSnpDevice, SimError> {
        let layout = SimLayout::in_dir(dir);
        let corrupt = |path: &Path, detail: String| SimError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };

        let json: SimJson = serde_json::from_slice(&read(&layout.sim_json)?)
            .map_err(|e| corrupt(&layout.sim_json, e.to_string()))?;
        let product = Product::from_cert_name(&json.product).ok_or_else(|| {
            corrupt(
                &layout.sim_json,
                format!("unknown product {:?}", json.product),
            )
        })?;
        let chip_id: [u8; l::CHIP_ID_LEN] = hex::decode(&json.chip_id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| {
                corrupt(
                    &layout.sim_json,
                    "chip_id is not 64 hex-encoded bytes".into(),
                )
            })?;
        let tcb = TcbParts::from(json.tcb);

        let key_pem = String::from_utf8(read(&layout.vcek_key)?)
            .map_err(|_| corrupt(&layout.vcek_key, "not UTF-8 PEM".into()))?;
        // Only the decoder's message is kept, never the input.
        let vcek_key = SigningKey::from_pkcs8_pem(&key_pem)
            .map_err(|e| corrupt(&layout.vcek_key, format!("not a PKCS#8 P-384 key: {e}")))?;
        drop(key_pem);

        let vcek_der = read(&layout.vcek_der)?;
        let vcek = Certificate::from_der(&vcek_der)
            .map_err(|e| corrupt(&layout.vcek_der, e.to_string()))?;
        let cert_key = vcek
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        let our_key = vcek_key.verifying_key().to_encoded_point(false);
        if cert_key != our_key.as_bytes() {
            return Err(corrupt(
                &layout.vcek_key,
                "does not match the public key in vcek.der".into(),
            ));
        }
        let hwid = vcek
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == amd_oid::HW_ID)
            .map(|e| e.extn_value.as_bytes());
        if hwid != chip_id.get(..product.hwid_len()) {
            return Err(corrupt(
                &layout.vcek_der,
                "hwID extension differs from chip_id in sim.json".into(),
            ));
        }

        let mut report_id = [0u8; l::REPORT_ID_LEN];
        OsRng.fill_bytes(&mut report_id);
        Ok(SimSnpDevice {
            product,
            tcb,
            chip_id,
            vcek_key,
            vcek_der,
            ask_der: read_pem_cert(&layout.ask_pem)?,
            ark_der: read_pem_cert(&layout.ark_pem)?,
            report_id,
        })
    }

    /// Produces a signed report carrying `report_data`, and the certificate table to go with it.
    ///
    /// # Errors
    /// [`SimError::InvalidGuestParam`] for values no real firmware would put in a report.
    pub fn report(
        &self,
        report_data: &[u8; l::REPORT_DATA_LEN],
        guest: &GuestParams,
    ) -> Result<SimEvidence, SimError> {
        check_guest(guest)?;
        let tcb_raw = self.tcb.encode(self.product).to_le_bytes();
        let build = firmware_build(self.product);
        let mut key_info = 0u32; // SIGNING_KEY (bits 2..=4) = 0: VCEK; MASK_CHIP_KEY = 0
        if guest.author_key_digest.iter().any(|&b| b != 0) {
            key_info |= 1; // AUTHOR_KEY_EN
        }

        let mut r = ReportBuf::new();
        r.put(l::VERSION, &guest.version.to_le_bytes())?;
        r.put(l::GUEST_SVN, &guest.guest_svn.to_le_bytes())?;
        r.put(l::POLICY, &guest.policy.to_le_bytes())?;
        r.put(l::FAMILY_ID, &guest.family_id)?;
        r.put(l::IMAGE_ID, &guest.image_id)?;
        r.put(l::VMPL, &guest.vmpl.to_le_bytes())?;
        r.put(l::SIGNATURE_ALGO, &SIG_ALGO_ECDSA_P384_SHA384.to_le_bytes())?;
        r.put(l::CURRENT_TCB, &tcb_raw)?;
        r.put(l::PLATFORM_INFO, &PLATFORM_INFO.to_le_bytes())?;
        r.put(l::KEY_INFO, &key_info.to_le_bytes())?;
        r.put(l::REPORT_DATA, report_data)?;
        r.put(l::MEASUREMENT, &guest.measurement)?;
        r.put(l::HOST_DATA, &guest.host_data)?;
        r.put(l::ID_KEY_DIGEST, &guest.id_key_digest)?;
        r.put(l::AUTHOR_KEY_DIGEST, &guest.author_key_digest)?;
        r.put(l::REPORT_ID, &guest.report_id.unwrap_or(self.report_id))?;
        r.put(l::REPORT_ID_MA, &guest.report_id_ma)?;
        r.put(l::REPORTED_TCB, &tcb_raw)?;
        if guest.version >= 3 {
            let [family, model, stepping] = cpuid(self.product);
            r.put(l::CPUID_FAM_ID, &[family])?;
            r.put(l::CPUID_MOD_ID, &[model])?;
            r.put(l::CPUID_STEP, &[stepping])?;
        }
        r.put(l::CHIP_ID, &self.chip_id)?;
        r.put(l::COMMITTED_TCB, &tcb_raw)?;
        r.put(l::CURRENT_BUILD, &build)?;
        r.put(l::COMMITTED_BUILD, &build)?;
        r.put(l::LAUNCH_TCB, &tcb_raw)?;
        if guest.version >= 5 {
            r.put(l::LAUNCH_MIT_VECTOR, &guest.launch_mit_vector.to_le_bytes())?;
            r.put(
                l::CURRENT_MIT_VECTOR,
                &guest.current_mit_vector.to_le_bytes(),
            )?;
        }

        let signed = r.0.get(..l::SIGNED_LEN).ok_or(SimError::Encode {
            what: "report",
            detail: "short".into(),
        })?;
        let signature: Signature = self.vcek_key.try_sign(signed).map_err(|e| SimError::Sign {
            what: "attestation report",
            detail: e.to_string(),
        })?;
        let (sig_r, sig_s) = signature.split_bytes();
        r.put(l::SIGNATURE, &little_endian_component(&sig_r))?;
        r.put(
            l::SIGNATURE + l::SIGNATURE_COMPONENT_LEN,
            &little_endian_component(&sig_s),
        )?;

        let cert_table = encode_cert_table(&[
            (VCEK_GUID, &self.vcek_der),
            (ASK_GUID, &self.ask_der),
            (ARK_GUID, &self.ark_der),
        ])?;
        Ok(SimEvidence {
            report: r.0.to_vec(),
            cert_table,
        })
    }

    /// The product line, which a verifier derives from the chain (and, v3+, from the report's CPUID).
    pub fn product(&self) -> Product {
        self.product
    }

    /// The TCB this simulated platform reports (current, reported, committed and launch alike).
    pub fn tcb(&self) -> TcbParts {
        self.tcb
    }

    /// CHIP_ID, as in the VCEK's hwID extension (Turin: first 8 bytes), for tests that pin it.
    pub fn chip_id(&self) -> &[u8; l::CHIP_ID_LEN] {
        &self.chip_id
    }

    /// The REPORT_ID of this simulated VM.
    pub fn report_id(&self) -> &[u8; l::REPORT_ID_LEN] {
        &self.report_id
    }

    /// The VCEK certificate (DER), for callers that send the chain apart from the report.
    pub fn vcek_der(&self) -> &[u8] {
        &self.vcek_der
    }

    /// The ASK certificate (DER).
    pub fn ask_der(&self) -> &[u8] {
        &self.ask_der
    }

    /// The simulated ARK (DER). A verifier must trust it explicitly, marked as simulated.
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }
}

fn check_guest(g: &GuestParams) -> Result<(), SimError> {
    if !matches!(g.version, 2 | 3 | 5) {
        return Err(SimError::InvalidGuestParam {
            field: "version",
            got: g.version.to_string(),
            want: "2, 3 or 5",
        });
    }
    if g.vmpl > 3 {
        return Err(SimError::InvalidGuestParam {
            field: "vmpl",
            got: g.vmpl.to_string(),
            want: "0..=3",
        });
    }
    if g.policy & policy_bits::RESERVED_MUST_BE_ONE == 0 {
        return Err(SimError::InvalidGuestParam {
            field: "policy",
            got: format!("{:#x}", g.policy),
            want: "bit 17 set (the firmware refuses to launch a guest without it)",
        });
    }
    Ok(())
}

/// An ECDSA component as the report stores it: little-endian, zero-extended to 72 bytes.
fn little_endian_component(big_endian: &[u8]) -> [u8; l::SIGNATURE_COMPONENT_LEN] {
    let mut out = [0u8; l::SIGNATURE_COMPONENT_LEN];
    for (dst, src) in out.iter_mut().zip(big_endian.iter().rev()) {
        *dst = *src;
    }
    out
}

/// A zeroed report buffer written field by field, every write bounds-checked.
struct ReportBuf([u8; l::REPORT_LEN]);

impl ReportBuf {
    fn new() -> ReportBuf {
        ReportBuf([0u8; l::REPORT_LEN])
    }

    fn put(&mut self, offset: usize, bytes: &[u8]) -> Result<(), SimError> {
        offset
            .checked_add(bytes.len())
            .and_then(|end| self.0.get_mut(offset..end))
            .map(|dst| dst.copy_from_slice(bytes))
            .ok_or(SimError::Encode {
                what: "report",
                detail: format!("field at {offset:#x} out of range"),
            })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SimError> {
    std::fs::read(path).map_err(|source| SimError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
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
    // Must be a certificate, and exactly its DER (no trailing bytes).
    let cert = Certificate::from_der(&der).map_err(|e| corrupt(e.to_string()))?;
    if cert.to_der().map_err(|e| corrupt(e.to_string()))? != der {
        return Err(corrupt("certificate is not in DER form".into()));
    }
    Ok(der)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn signature_components_are_little_endian_and_padded() {
        let be: Vec<u8> = (1..=48).collect();
        let le = little_endian_component(&be);
        assert_eq!(le[0], 48);
        assert_eq!(le[47], 1);
        assert!(le[48..].iter().all(|&b| b == 0));
    }

    #[test]
    fn guest_checks() {
        assert!(check_guest(&GuestParams::default()).is_ok());
        for v in [1, 4, 6] {
            let g = GuestParams {
                version: v,
                ..GuestParams::default()
            };
            assert!(matches!(
                check_guest(&g),
                Err(SimError::InvalidGuestParam {
                    field: "version",
                    ..
                })
            ));
        }
        let g = GuestParams {
            vmpl: 4,
            ..GuestParams::default()
        };
        assert!(matches!(
            check_guest(&g),
            Err(SimError::InvalidGuestParam { field: "vmpl", .. })
        ));
        let g = GuestParams {
            policy: policy_bits::SMT,
            ..GuestParams::default()
        };
        assert!(matches!(
            check_guest(&g),
            Err(SimError::InvalidGuestParam {
                field: "policy",
                ..
            })
        ));
    }

    #[test]
    fn report_buf_rejects_out_of_range() {
        let mut r = ReportBuf::new();
        assert!(r.put(l::REPORT_LEN - 2, &[1, 2]).is_ok());
        assert!(r.put(l::REPORT_LEN - 1, &[1, 2]).is_err());
        assert!(r.put(usize::MAX, &[1]).is_err());
    }
}

//! The claims of verified SNP evidence, in the form operators read and policies name: hex strings for
//! byte fields, decoded TCB parts, `major.minor.build` firmware versions.

use serde::Serialize;

use super::report::{GuestPolicy, SigningKeyKind};
use super::verify::VerifiedSnp;
use super::{Product, TcbParts};

/// CPUID family, model and stepping (report version 3 and later), as hex strings (`0x19`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CpuidClaim {
    pub family: String,
    pub model: String,
    pub stepping: String,
}

/// Everything an operator would appraise about verified SNP evidence (see [`VerifiedSnp::claims`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnpClaims {
    pub product: Product,
    /// The chain ended in a simulated root: not real hardware.
    pub simulated: bool,
    pub signing_key: SigningKeyKind,
    pub report_version: u32,
    pub guest_svn: u32,
    /// Raw guest policy, `0x30000`.
    pub policy: String,
    /// The same, decoded.
    pub policy_bits: GuestPolicy,
    /// `major.minor` of the minimum ABI in the policy (`0.31`).
    pub policy_abi_min: String,
    pub family_id: String,
    pub image_id: String,
    pub vmpl: u32,
    pub reported_tcb: TcbParts,
    pub current_tcb: TcbParts,
    pub committed_tcb: TcbParts,
    pub launch_tcb: TcbParts,
    /// Raw reported TCB_VERSION, `0x...` (16 hex digits).
    pub reported_tcb_raw: String,
    pub platform_info: String,
    pub author_key_en: bool,
    pub mask_chip_key: bool,
    pub report_data: String,
    pub measurement: String,
    pub host_data: String,
    pub id_key_digest: String,
    pub author_key_digest: String,
    pub report_id: String,
    pub report_id_ma: String,
    pub chip_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuid: Option<CpuidClaim>,
    pub current_firmware: String,
    pub committed_firmware: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_mit_vector: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_mit_vector: Option<String>,
    /// SHA-256 of the VCEK/VLEK DER.
    pub vek_sha256: String,
    /// SHA-256 of the ARK DER (the trust anchor).
    pub ark_sha256: String,
}

impl SnpClaims {
    pub(crate) fn new(v: &VerifiedSnp) -> SnpClaims {
        let r = v.report();
        let p = v.product();
        let policy = r.policy();
        let tcb = |raw: u64| TcbParts::decode(raw, p);
        SnpClaims {
            product: p,
            simulated: v.simulated(),
            signing_key: v.signing_key(),
            report_version: r.version(),
            guest_svn: r.guest_svn(),
            policy: format!("{:#x}", policy.raw),
            policy_bits: policy,
            policy_abi_min: format!("{}.{}", policy.abi_major, policy.abi_minor),
            family_id: hex::encode(r.family_id()),
            image_id: hex::encode(r.image_id()),
            vmpl: r.vmpl(),
            reported_tcb: tcb(r.reported_tcb()),
            current_tcb: tcb(r.current_tcb()),
            committed_tcb: tcb(r.committed_tcb()),
            launch_tcb: tcb(r.launch_tcb()),
            reported_tcb_raw: format!("{:#018x}", r.reported_tcb()),
            platform_info: format!("{:#x}", r.platform_info()),
            author_key_en: r.author_key_en(),
            mask_chip_key: r.mask_chip_key(),
            report_data: hex::encode(r.report_data()),
            measurement: hex::encode(r.measurement()),
            host_data: hex::encode(r.host_data()),
            id_key_digest: hex::encode(r.id_key_digest()),
            author_key_digest: hex::encode(r.author_key_digest()),
            report_id: hex::encode(r.report_id()),
            report_id_ma: hex::encode(r.report_id_ma()),
            chip_id: hex::encode(r.chip_id()),
            cpuid: r.cpuid().map(|(f, m, s)| CpuidClaim {
                family: format!("{f:#x}"),
                model: format!("{m:#x}"),
                stepping: format!("{s:#x}"),
            }),
            current_firmware: r.current_firmware().to_string(),
            committed_firmware: r.committed_firmware().to_string(),
            launch_mit_vector: r.launch_mit_vector().map(|m| format!("{m:#x}")),
            current_mit_vector: r.current_mit_vector().map(|m| format!("{m:#x}")),
            vek_sha256: hex::encode(v.vek_sha256()),
            ark_sha256: hex::encode(v.ark_sha256()),
        }
    }
}

//! The claims of a verified TDX quote, in the form operators read and policies name: hex strings for
//! byte fields (in quote byte order), decoded TD attribute bits, Intel's TCB status.

use serde::Serialize;

use super::quote::BodyType;
use super::tcb::TcbStatus;
use super::verify::VerifiedTdx;

/// TD_ATTRIBUTES bits an operator decides on (TDX module ABI, `TDINFO_STRUCT.ATTRIBUTES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TdAttributeBits {
    /// Bit 0: the host VMM can read and write the TD's memory and state.
    pub debug: bool,
    /// Bit 28: EPT violations are not converted to #VE (a guest hardening requirement of some
    /// verifiers, e.g. dcap-qvl).
    pub sept_ve_disable: bool,
    /// Bit 30: protection keys for supervisor pages.
    pub pks: bool,
    /// Bit 31: Key Locker.
    pub kl: bool,
    /// Bit 63: the TD may use performance monitoring.
    pub perfmon: bool,
}

impl TdAttributeBits {
    pub fn decode(attributes: u64) -> Self {
        let bit = |n: u32| attributes & (1u64 << n) != 0;
        TdAttributeBits {
            debug: bit(0),
            sept_ve_disable: bit(28),
            pks: bit(30),
            kl: bit(31),
            perfmon: bit(63),
        }
    }
}

/// Everything an operator would appraise about a verified TDX quote (see [`VerifiedTdx::claims`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TdxClaims {
    /// The chain ended in a simulated root: not real hardware.
    pub simulated: bool,
    pub quote_version: u16,
    pub att_key_type: u16,
    /// `0x81`.
    pub tee_type: String,
    pub body: BodyType,
    pub qe_svn: u16,
    pub pce_svn: u16,
    pub tee_tcb_svn: String,
    pub mr_seam: String,
    pub mr_signer_seam: String,
    pub seam_attributes: String,
    /// Raw TD_ATTRIBUTES, 8 bytes in quote (little-endian) order.
    pub td_attributes: String,
    pub td_attributes_bits: TdAttributeBits,
    /// Raw XFAM, 8 bytes in quote order.
    pub xfam: String,
    pub mrtd: String,
    pub mrconfigid: String,
    pub mrowner: String,
    pub mrownerconfig: String,
    pub rtmr0: String,
    pub rtmr1: String,
    pub rtmr2: String,
    pub rtmr3: String,
    pub report_data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tee_tcb_svn2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_service_td: Option<String>,
    pub fmspc: String,
    pub pce_id: String,
    pub tcb_status: TcbStatus,
    pub advisory_ids: Vec<String>,
    pub pck_sgx_tcb_comp_svn: Vec<u8>,
    pub pck_pcesvn: u16,
    pub qe_isvsvn: u16,
    pub tcb_evaluation_data_number: u32,
    /// RFC 3339.
    pub tcb_info_issue_date: String,
    pub tcb_info_next_update: String,
    /// The span in which all signed collateral is current, RFC 3339.
    pub collateral_valid_from: String,
    pub collateral_valid_until: String,
    pub pck_cert_not_before: String,
    pub pck_cert_not_after: String,
    /// SHA-256 of the PCK certificate DER.
    pub pck_sha256: String,
    /// SHA-256 of the root certificate DER (the trust anchor).
    pub root_sha256: String,
}

fn rfc3339(secs: i64) -> String {
    crate::error::fmt_time(secs)
}

impl TdxClaims {
    pub(crate) fn new(v: &VerifiedTdx) -> TdxClaims {
        let q = v.quote();
        let r = q.td_report();
        let (tcb_from, tcb_until) = v.tcb_info_window();
        let (col_from, col_until) = v.collateral_window();
        let (pck_from, pck_until) = v.pck_validity();
        TdxClaims {
            simulated: v.simulated(),
            quote_version: q.version(),
            att_key_type: q.att_key_type(),
            tee_type: format!("{:#x}", q.tee_type()),
            body: q.body_type(),
            qe_svn: q.qe_svn(),
            pce_svn: q.pce_svn(),
            tee_tcb_svn: hex::encode(r.tee_tcb_svn),
            mr_seam: hex::encode(r.mr_seam),
            mr_signer_seam: hex::encode(r.mr_signer_seam),
            seam_attributes: hex::encode(r.seam_attributes),
            td_attributes: hex::encode(r.td_attributes),
            td_attributes_bits: TdAttributeBits::decode(r.td_attributes_u64()),
            xfam: hex::encode(r.xfam),
            mrtd: hex::encode(r.mr_td),
            mrconfigid: hex::encode(r.mr_config_id),
            mrowner: hex::encode(r.mr_owner),
            mrownerconfig: hex::encode(r.mr_owner_config),
            rtmr0: hex::encode(r.rtmr[0]),
            rtmr1: hex::encode(r.rtmr[1]),
            rtmr2: hex::encode(r.rtmr[2]),
            rtmr3: hex::encode(r.rtmr[3]),
            report_data: hex::encode(r.report_data),
            tee_tcb_svn2: r.tee_tcb_svn2.map(hex::encode),
            mr_service_td: r.mr_service_td.map(hex::encode),
            fmspc: hex::encode(v.fmspc()),
            pce_id: hex::encode(v.pce_id()),
            tcb_status: v.tcb_status(),
            advisory_ids: v.advisory_ids().to_vec(),
            pck_sgx_tcb_comp_svn: v.pck_sgx_components().to_vec(),
            pck_pcesvn: v.pck_pce_svn(),
            qe_isvsvn: q.qe_report().isv_svn,
            tcb_evaluation_data_number: v.tcb_evaluation_data_number(),
            tcb_info_issue_date: rfc3339(tcb_from),
            tcb_info_next_update: rfc3339(tcb_until),
            collateral_valid_from: rfc3339(col_from),
            collateral_valid_until: rfc3339(col_until),
            pck_cert_not_before: rfc3339(pck_from),
            pck_cert_not_after: rfc3339(pck_until),
            pck_sha256: hex::encode(v.pck_sha256()),
            root_sha256: hex::encode(v.root_sha256()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_bits() {
        let b = TdAttributeBits::decode(1 | 1 << 28 | 1 << 63);
        assert!(b.debug && b.sept_ve_disable && b.perfmon && !b.pks && !b.kl);
        assert_eq!(TdAttributeBits::decode(0), TdAttributeBits::decode(1 << 5));
    }
}

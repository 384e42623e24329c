//! TCB info and QE identity of the simulated platform, as Intel's PCS v4 API serves them:
//! `{"tcbInfo":{...},"signature":"<hex r||s>"}` and `{"enclaveIdentity":{...},"signature":"..."}`, the
//! signature (ECDSA P-256 / SHA-256 by the TCB signing key) over the exact bytes of the inner object.
//!
//! Field names, order and hex casing follow the real responses in `shared/testdata/tdx/*/collateral`
//! (upper-case hex for identities and FMSPC, lower-case for the signature, RFC 3339 dates to the second).

use p256::ecdsa::SigningKey;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::certs::sign_raw;
use crate::sim::SimError;
use crate::tdx::TcbStatus;

/// Everything the two JSON documents say, decided by `init`.
#[derive(Clone, Debug)]
pub(crate) struct CollateralFacts {
    pub(crate) fmspc: [u8; 6],
    pub(crate) pce_id: [u8; 2],
    pub(crate) sgx_components: [u8; 16],
    pub(crate) pcesvn: u16,
    pub(crate) tee_tcb_svn: [u8; 16],
    /// Status of the TCB level the platform matches.
    pub(crate) status: TcbStatus,
    pub(crate) issue_date: u64,
    pub(crate) next_update: u64,
    pub(crate) tcb_evaluation_data_number: u32,
    /// MRSIGNER of the TDX module (SEAM), 48 bytes; Intel's is all zero.
    pub(crate) seam_mrsigner: [u8; 48],
    pub(crate) qe: QeFacts,
}

/// What the simulated quoting enclave reports about itself, and its identity in the QE identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QeFacts {
    pub(crate) mrsigner: [u8; 32],
    pub(crate) isvprodid: u16,
    pub(crate) isvsvn: u16,
    pub(crate) miscselect: u32,
    /// SGX ATTRIBUTES (flags LE u64, then XFRM LE u64) of the QE report.
    pub(crate) attributes: [u8; 16],
}

/// SGX attribute flags INIT | MODE64BIT | PROVISIONKEY and XFRM 0xE7, as Intel's TD QE reports them.
pub(crate) const QE_ATTRIBUTES: [u8; 16] = [0x15, 0, 0, 0, 0, 0, 0, 0, 0xE7, 0, 0, 0, 0, 0, 0, 0];
/// Intel's QE identity: attributes 0x11 under mask FBFF..FF (PROVISIONKEY ignored), XFRM not checked.
const QE_IDENTITY_ATTRIBUTES: &str = "11000000000000000000000000000000";
const QE_IDENTITY_ATTRIBUTES_MASK: &str = "FBFFFFFFFFFFFFFF0000000000000000";

const DAY: u64 = 86_400;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfo<'a> {
    id: &'static str,
    version: u32,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_type: u32,
    tcb_evaluation_data_number: u32,
    tdx_module: TdxModule,
    tdx_module_identities: Vec<TdxModuleIdentity>,
    tcb_levels: Vec<TcbLevel<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModule {
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModuleIdentity {
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    tcb_levels: Vec<IsvLevel>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IsvLevel {
    tcb: IsvSvn,
    tcb_date: String,
    tcb_status: TcbStatus,
}

#[derive(Serialize)]
struct IsvSvn {
    isvsvn: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbLevel<'a> {
    tcb: Tcb<'a>,
    tcb_date: String,
    tcb_status: TcbStatus,
}

#[derive(Serialize)]
struct Tcb<'a> {
    sgxtcbcomponents: Vec<Component<'a>>,
    pcesvn: u16,
    tdxtcbcomponents: Vec<Component<'a>>,
}

#[derive(Serialize)]
struct Component<'a> {
    svn: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnclaveIdentity {
    id: &'static str,
    version: u32,
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: u32,
    miscselect: String,
    miscselect_mask: String,
    attributes: &'static str,
    attributes_mask: &'static str,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<IsvLevel>,
}

/// Category and type labels Intel gives the SGX TCB components of TDX platforms (index, category, type).
const SGX_LABELS: [(usize, &str, Option<&str>); 7] = [
    (0, "BIOS", Some("Early Microcode Update")),
    (1, "OS/VMM", Some("SGX Late Microcode Update")),
    (2, "OS/VMM", Some("TXT SINIT")),
    (3, "BIOS", None),
    (4, "BIOS", None),
    (5, "BIOS", None),
    (7, "OS/VMM", Some("SEAMLDR ACM")),
];
const TDX_LABELS: [(usize, &str, Option<&str>); 3] = [
    (0, "OS/VMM", Some("TDX Module")),
    (1, "OS/VMM", Some("TDX Module")),
    (2, "OS/VMM", Some("TDX Late Microcode Update")),
];

fn components<'a>(
    svns: &[u8; 16],
    labels: &'a [(usize, &'a str, Option<&'a str>)],
) -> Vec<Component<'a>> {
    svns.iter()
        .enumerate()
        .map(|(i, &svn)| {
            let label = labels.iter().find(|(n, _, _)| *n == i);
            Component {
                svn,
                category: label.map(|(_, c, _)| *c),
                kind: label.and_then(|(_, _, t)| *t),
            }
        })
        .collect()
}

fn level<'a>(
    sgx: &[u8; 16],
    pcesvn: u16,
    tdx: &[u8; 16],
    date: u64,
    status: TcbStatus,
) -> Result<TcbLevel<'a>, SimError> {
    Ok(TcbLevel {
        tcb: Tcb {
            sgxtcbcomponents: components(sgx, &SGX_LABELS),
            pcesvn,
            tdxtcbcomponents: components(tdx, &TDX_LABELS),
        },
        tcb_date: rfc3339(date)?,
        tcb_status: status,
    })
}

/// The TDX TCB info (version 3) for the simulated FMSPC, signed, in PCS v4 response form.
///
/// TCB levels, newest first as Intel orders them: when the platform's level is not `UpToDate`, a newer
/// `UpToDate` level it does not reach comes first (SGX component 0 and PCESVN one higher), as in real
/// TCB info for an outdated platform; when it is `UpToDate` and its PCESVN is above 0, an older
/// `OutOfDate` level (PCESVN one lower) follows, so that a verifier must pick the first match rather
/// than any match.
pub(crate) fn tcb_info_json(f: &CollateralFacts, key: &SigningKey) -> Result<String, SimError> {
    let current_date = day_floor(f.issue_date.saturating_sub(30 * DAY));
    let old_date = day_floor(f.issue_date.saturating_sub(400 * DAY));
    let mut levels = Vec::with_capacity(2);
    if f.status != TcbStatus::UpToDate {
        let mut newer = f.sgx_components;
        if let Some(c) = newer.first_mut() {
            *c = c.saturating_add(1);
        }
        levels.push(level(
            &newer,
            f.pcesvn.saturating_add(1),
            &f.tee_tcb_svn,
            current_date,
            TcbStatus::UpToDate,
        )?);
        levels.push(level(
            &f.sgx_components,
            f.pcesvn,
            &f.tee_tcb_svn,
            old_date,
            f.status,
        )?);
    } else {
        levels.push(level(
            &f.sgx_components,
            f.pcesvn,
            &f.tee_tcb_svn,
            current_date,
            TcbStatus::UpToDate,
        )?);
        if let Some(older) = f.pcesvn.checked_sub(1) {
            levels.push(level(
                &f.sgx_components,
                older,
                &f.tee_tcb_svn,
                old_date,
                TcbStatus::OutOfDate,
            )?);
        }
    }

    // The TDX module identity the verifier looks up by TEE_TCB_SVN[1] (module major version), matched by
    // ISVSVN against TEE_TCB_SVN[0].
    let [module_svn, module_version, ..] = f.tee_tcb_svn;
    let mut module_levels = vec![IsvLevel {
        tcb: IsvSvn {
            isvsvn: module_svn.into(),
        },
        tcb_date: rfc3339(current_date)?,
        tcb_status: TcbStatus::UpToDate,
    }];
    if let Some(older) = module_svn.checked_sub(1) {
        module_levels.push(IsvLevel {
            tcb: IsvSvn {
                isvsvn: older.into(),
            },
            tcb_date: rfc3339(old_date)?,
            tcb_status: TcbStatus::OutOfDate,
        });
    }
    let seam_mrsigner = hex::encode_upper(f.seam_mrsigner);
    let info = TcbInfo {
        id: "TDX",
        version: 3,
        issue_date: rfc3339(f.issue_date)?,
        next_update: rfc3339(f.next_update)?,
        fmspc: hex::encode_upper(f.fmspc),
        pce_id: hex::encode_upper(f.pce_id),
        tcb_type: 0,
        tcb_evaluation_data_number: f.tcb_evaluation_data_number,
        tdx_module: TdxModule {
            mrsigner: seam_mrsigner.clone(),
            attributes: "0000000000000000".into(),
            attributes_mask: "FFFFFFFFFFFFFFFF".into(),
        },
        tdx_module_identities: vec![TdxModuleIdentity {
            id: format!("TDX_{module_version:02X}"),
            mrsigner: seam_mrsigner,
            attributes: "0000000000000000".into(),
            attributes_mask: "FFFFFFFFFFFFFFFF".into(),
            tcb_levels: module_levels,
        }],
        tcb_levels: levels,
    };
    signed_response("tcbInfo", &info, key, "TCB info")
}

/// The TD QE identity (version 2), signed, in PCS v4 response form.
pub(crate) fn qe_identity_json(f: &CollateralFacts, key: &SigningKey) -> Result<String, SimError> {
    let mut levels = vec![IsvLevel {
        tcb: IsvSvn {
            isvsvn: f.qe.isvsvn,
        },
        tcb_date: rfc3339(day_floor(f.issue_date.saturating_sub(30 * DAY)))?,
        tcb_status: TcbStatus::UpToDate,
    }];
    if let Some(older) = f.qe.isvsvn.checked_sub(1) {
        levels.push(IsvLevel {
            tcb: IsvSvn { isvsvn: older },
            tcb_date: rfc3339(day_floor(f.issue_date.saturating_sub(400 * DAY)))?,
            tcb_status: TcbStatus::OutOfDate,
        });
    }
    let identity = EnclaveIdentity {
        id: "TD_QE",
        version: 2,
        issue_date: rfc3339(f.issue_date)?,
        next_update: rfc3339(f.next_update)?,
        tcb_evaluation_data_number: f.tcb_evaluation_data_number,
        miscselect: hex::encode_upper(f.qe.miscselect.to_be_bytes()),
        miscselect_mask: "FFFFFFFF".into(),
        attributes: QE_IDENTITY_ATTRIBUTES,
        attributes_mask: QE_IDENTITY_ATTRIBUTES_MASK,
        mrsigner: hex::encode_upper(f.qe.mrsigner),
        isvprodid: f.qe.isvprodid,
        tcb_levels: levels,
    };
    signed_response("enclaveIdentity", &identity, key, "QE identity")
}

/// `{"<field>":<inner>,"signature":"<hex r||s>"}`, the signature over the exact bytes of `<inner>`.
fn signed_response(
    field: &str,
    inner: &impl Serialize,
    key: &SigningKey,
    what: &'static str,
) -> Result<String, SimError> {
    let inner = serde_json::to_string(inner).map_err(|e| SimError::Encode {
        what,
        detail: e.to_string(),
    })?;
    let signature = sign_raw(key, inner.as_bytes(), what)?;
    Ok(format!(
        "{{\"{field}\":{inner},\"signature\":\"{}\"}}",
        hex::encode(signature)
    ))
}

/// `2025-06-19T10:16:03Z`, as Intel writes dates.
pub(crate) fn rfc3339(unix_secs: u64) -> Result<String, SimError> {
    let enc = |detail: String| SimError::Encode {
        what: "collateral date",
        detail,
    };
    let secs = i64::try_from(unix_secs).map_err(|e| enc(e.to_string()))?;
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| enc(e.to_string()))?
        .format(&Rfc3339)
        .map_err(|e| enc(e.to_string()))
}

fn day_floor(unix_secs: u64) -> u64 {
    unix_secs - unix_secs % DAY
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::Signature;

    fn facts(status: TcbStatus) -> CollateralFacts {
        CollateralFacts {
            fmspc: [0xB0, 0xC0, 0x6F, 0, 0, 0],
            pce_id: [0, 0],
            sgx_components: [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
            pcesvn: 11,
            tee_tcb_svn: [6, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            status,
            issue_date: 1_750_328_163, // 2025-06-19T10:16:03Z
            next_update: 1_752_920_163,
            tcb_evaluation_data_number: 17,
            seam_mrsigner: [0; 48],
            qe: QeFacts {
                mrsigner: [0xAB; 32],
                isvprodid: 2,
                isvsvn: 6,
                miscselect: 0,
                attributes: QE_ATTRIBUTES,
            },
        }
    }

    /// Splits a PCS response into (inner bytes, signature) the way a verifier must: by position, not by
    /// re-serialising.
    fn split<'a>(body: &'a str, field: &str) -> (&'a str, Vec<u8>) {
        let prefix = format!("{{\"{field}\":");
        let rest = body.strip_prefix(&prefix).unwrap();
        let at = rest.rfind(",\"signature\":\"").unwrap();
        let sig = rest[at + 14..].strip_suffix("\"}").unwrap();
        (&rest[..at], hex::decode(sig).unwrap())
    }

    #[test]
    fn rfc3339_matches_intel_spelling() {
        assert_eq!(rfc3339(1_750_328_163).unwrap(), "2025-06-19T10:16:03Z");
    }

    #[test]
    fn tcb_info_is_signed_over_inner_bytes_and_has_intel_shape() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let body = tcb_info_json(&facts(TcbStatus::UpToDate), &key).unwrap();
        let (inner, sig) = split(&body, "tcbInfo");
        let sig = Signature::from_slice(&sig).unwrap();
        assert!(key.verifying_key().verify(inner.as_bytes(), &sig).is_ok());

        // Same key order as the real PCS response.
        let real = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/tdx/dq-b0c06f-v4/collateral/tcb_info.json"
        ))
        .unwrap();
        let keys = |s: &str| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_str(s).unwrap();
            let mut order: Vec<String> = Vec::new();
            let obj = v["tcbInfo"].as_object().unwrap();
            order.extend(obj.keys().cloned());
            order.sort();
            order
        };
        assert_eq!(keys(&body), keys(&real));
        assert!(inner.starts_with(
            r#"{"id":"TDX","version":3,"issueDate":"2025-06-19T10:16:03Z","nextUpdate":"2025-07-19T10:16:03Z","fmspc":"B0C06F000000","pceId":"0000","tcbType":0,"tcbEvaluationDataNumber":17,"tdxModule":{"#
        ));

        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let levels = v["tcbInfo"]["tcbLevels"].as_array().unwrap();
        assert_eq!(levels.len(), 2);
        assert_eq!(levels[0]["tcbStatus"], "UpToDate");
        assert_eq!(levels[0]["tcb"]["pcesvn"], 11);
        assert_eq!(levels[0]["tcb"]["sgxtcbcomponents"][4]["svn"], 4);
        assert_eq!(levels[0]["tcb"]["tdxtcbcomponents"][0]["svn"], 6);
        assert_eq!(levels[1]["tcbStatus"], "OutOfDate");
        assert_eq!(levels[1]["tcb"]["pcesvn"], 10);
        let module = &v["tcbInfo"]["tdxModuleIdentities"][0];
        assert_eq!(module["id"], "TDX_01");
        assert_eq!(module["tcbLevels"][0]["tcb"]["isvsvn"], 6);
    }

    #[test]
    fn out_of_date_platform_sits_below_a_newer_level() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let body = tcb_info_json(&facts(TcbStatus::OutOfDate), &key).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let levels = v["tcbInfo"]["tcbLevels"].as_array().unwrap();
        assert_eq!(levels[0]["tcbStatus"], "UpToDate");
        assert_eq!(levels[0]["tcb"]["pcesvn"], 12);
        assert_eq!(levels[0]["tcb"]["sgxtcbcomponents"][0]["svn"], 4);
        assert_eq!(levels[1]["tcbStatus"], "OutOfDate");
        assert_eq!(levels[1]["tcb"]["pcesvn"], 11);
        assert_eq!(levels[1]["tcb"]["sgxtcbcomponents"][0]["svn"], 3);
    }

    #[test]
    fn qe_identity_has_intel_shape() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let body = qe_identity_json(&facts(TcbStatus::UpToDate), &key).unwrap();
        let (inner, sig) = split(&body, "enclaveIdentity");
        let sig = Signature::from_slice(&sig).unwrap();
        assert!(key.verifying_key().verify(inner.as_bytes(), &sig).is_ok());
        let real = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/tdx/dq-b0c06f-v4/collateral/qe_identity.json"
        ))
        .unwrap();
        let (real_inner, _) = split(&real, "enclaveIdentity");
        // Identical up to the values that differ: every key in the same place.
        let strip = |s: &str| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_str(s).unwrap();
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(strip(inner), strip(real_inner));
        assert!(inner.starts_with(r#"{"id":"TD_QE","version":2,"issueDate":"#));
        assert!(inner.contains(r#""miscselect":"00000000","miscselectMask":"FFFFFFFF","attributes":"11000000000000000000000000000000","attributesMask":"FBFFFFFFFFFFFFFF0000000000000000","mrsigner":"ABAB"#));
        assert!(inner.contains(r#""isvprodid":2,"tcbLevels":[{"tcb":{"isvsvn":6},"#));
    }
}

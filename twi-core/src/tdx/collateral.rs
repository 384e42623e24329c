//! Intel PCS collateral for a TDX quote: TCB info, QE identity, their issuer chains, the PCK CRL and
//! its issuer chain, and the root CA CRL — as bytes, exactly as served (fetching is elsewhere).
//!
//! The TCB info and QE identity are PCS v4 response bodies, `{"tcbInfo":{...},"signature":"hex"}` and
//! `{"enclaveIdentity":{...},"signature":"hex"}`; Intel's signature covers the exact bytes of the
//! inner object, so the inner object is sliced from the received text (serde_json `RawValue`), never
//! re-serialised.

use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::cert::sha256;
use super::tcb::TcbStatus;
use crate::Error;

/// Collateral files larger than this are refused.
pub const MAX_COLLATERAL_FILE_LEN: usize = 4 * 1024 * 1024;

/// The role-named files [`Collateral::from_dir`] reads.
pub const COLLATERAL_FILES: [&str; 7] = [
    "tcb_info.json",
    "tcb_info_issuer_chain.pem",
    "qe_identity.json",
    "qe_identity_issuer_chain.pem",
    "pck_crl.der",
    "pck_crl_issuer_chain.pem",
    "root_ca_crl.der",
];

/// The collateral needed to verify TDX quotes of one platform (FMSPC) and PCK CA, as bytes.
/// Immutable once built; its SHA-256 digest keys the verifier's cache of verified collateral.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collateral {
    pub(crate) tcb_info: Vec<u8>,
    pub(crate) tcb_info_issuer_chain: Vec<u8>,
    pub(crate) qe_identity: Vec<u8>,
    pub(crate) qe_identity_issuer_chain: Vec<u8>,
    pub(crate) pck_crl: Vec<u8>,
    pub(crate) pck_crl_issuer_chain: Vec<u8>,
    pub(crate) root_ca_crl: Vec<u8>,
    digest: [u8; 32],
}

/// The parts of a [`Collateral`], by role (each as served by Intel PCS or a PCCS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollateralParts {
    /// `GET /tdx/certification/v4/tcb` body.
    pub tcb_info: Vec<u8>,
    /// Its `TCB-Info-Issuer-Chain` header, PEM (signer, root).
    pub tcb_info_issuer_chain: Vec<u8>,
    /// `GET /tdx/certification/v4/qe/identity` body.
    pub qe_identity: Vec<u8>,
    /// Its `SGX-Enclave-Identity-Issuer-Chain` header, PEM.
    pub qe_identity_issuer_chain: Vec<u8>,
    /// `GET /sgx/certification/v4/pckcrl?ca=platform|processor` body, DER.
    pub pck_crl: Vec<u8>,
    /// Its `SGX-PCK-CRL-Issuer-Chain` header, PEM (PCK CA, root).
    pub pck_crl_issuer_chain: Vec<u8>,
    /// The Intel SGX Root CA CRL, DER.
    pub root_ca_crl: Vec<u8>,
}

impl Collateral {
    /// Builds collateral from its parts.
    ///
    /// # Errors
    /// [`Error::Malformed`] when a part is empty or larger than [`MAX_COLLATERAL_FILE_LEN`].
    pub fn from_parts(parts: CollateralParts) -> Result<Collateral, Error> {
        let CollateralParts {
            tcb_info,
            tcb_info_issuer_chain,
            qe_identity,
            qe_identity_issuer_chain,
            pck_crl,
            pck_crl_issuer_chain,
            root_ca_crl,
        } = parts;
        let all = [
            &tcb_info,
            &tcb_info_issuer_chain,
            &qe_identity,
            &qe_identity_issuer_chain,
            &pck_crl,
            &pck_crl_issuer_chain,
            &root_ca_crl,
        ];
        let mut h = Vec::with_capacity(all.len() * 40);
        for (name, part) in COLLATERAL_FILES.iter().zip(all) {
            if part.is_empty() || part.len() > MAX_COLLATERAL_FILE_LEN {
                return Err(Error::malformed(
                    "TDX collateral",
                    format!(
                        "{name}: {} bytes, want 1..={MAX_COLLATERAL_FILE_LEN}",
                        part.len()
                    ),
                ));
            }
            // Length-prefixed digests: no two different part lists hash alike.
            h.extend_from_slice(&(part.len() as u64).to_le_bytes());
            h.extend_from_slice(&sha256(part));
        }
        Ok(Collateral {
            digest: sha256(&h),
            tcb_info,
            tcb_info_issuer_chain,
            qe_identity,
            qe_identity_issuer_chain,
            pck_crl,
            pck_crl_issuer_chain,
            root_ca_crl,
        })
    }

    /// Reads the role-named files of [`COLLATERAL_FILES`] from `dir`.
    ///
    /// # Errors
    /// [`Error::Internal`] when a file cannot be read (our side), [`Error::Malformed`] as for
    /// [`Collateral::from_parts`].
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Collateral, Error> {
        let dir = dir.as_ref();
        let read = |name: &str| -> Result<Vec<u8>, Error> {
            let path = dir.join(name);
            let len = std::fs::metadata(&path)
                .map_err(|e| Error::Internal {
                    detail: format!("collateral {}: {e}", path.display()),
                })?
                .len();
            if len > MAX_COLLATERAL_FILE_LEN as u64 {
                return Err(Error::malformed(
                    "TDX collateral",
                    format!("{name}: {len} bytes, cap {MAX_COLLATERAL_FILE_LEN}"),
                ));
            }
            std::fs::read(&path).map_err(|e| Error::Internal {
                detail: format!("collateral {}: {e}", path.display()),
            })
        };
        Collateral::from_parts(CollateralParts {
            tcb_info: read("tcb_info.json")?,
            tcb_info_issuer_chain: read("tcb_info_issuer_chain.pem")?,
            qe_identity: read("qe_identity.json")?,
            qe_identity_issuer_chain: read("qe_identity_issuer_chain.pem")?,
            pck_crl: read("pck_crl.der")?,
            pck_crl_issuer_chain: read("pck_crl_issuer_chain.pem")?,
            root_ca_crl: read("root_ca_crl.der")?,
        })
    }

    /// SHA-256 over the parts (length-prefixed digests, in [`COLLATERAL_FILES`] order).
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

/// The signed inner object of a PCS response body and its signature.
#[derive(Debug)]
pub(crate) struct Signed<'a> {
    /// The inner object's bytes exactly as in the file.
    pub(crate) body: &'a str,
    pub(crate) signature: [u8; 64],
}

#[derive(Deserialize)]
struct TcbInfoEnvelope<'a> {
    #[serde(rename = "tcbInfo", borrow)]
    inner: &'a RawValue,
    signature: &'a str,
}

#[derive(Deserialize)]
struct QeIdentityEnvelope<'a> {
    #[serde(rename = "enclaveIdentity", borrow)]
    inner: &'a RawValue,
    signature: &'a str,
}

fn signature(hex_sig: &str, what: &'static str) -> Result<[u8; 64], Error> {
    let raw =
        hex::decode(hex_sig).map_err(|e| Error::malformed(what, format!("signature: {e}")))?;
    <[u8; 64]>::try_from(raw).map_err(|v| {
        Error::malformed(
            what,
            format!("signature of {} bytes, want 64 (r || s)", v.len()),
        )
    })
}

pub(crate) fn split_tcb_info(bytes: &[u8]) -> Result<Signed<'_>, Error> {
    const WHAT: &str = "TCB info";
    let text = std::str::from_utf8(bytes).map_err(|e| Error::malformed(WHAT, e))?;
    let env: TcbInfoEnvelope<'_> =
        serde_json::from_str(text).map_err(|e| Error::malformed(WHAT, e))?;
    Ok(Signed {
        body: env.inner.get(),
        signature: signature(env.signature, WHAT)?,
    })
}

pub(crate) fn split_qe_identity(bytes: &[u8]) -> Result<Signed<'_>, Error> {
    const WHAT: &str = "QE identity";
    let text = std::str::from_utf8(bytes).map_err(|e| Error::malformed(WHAT, e))?;
    let env: QeIdentityEnvelope<'_> =
        serde_json::from_str(text).map_err(|e| Error::malformed(WHAT, e))?;
    Ok(Signed {
        body: env.inner.get(),
        signature: signature(env.signature, WHAT)?,
    })
}

/// Intel TCB info (v3, id "TDX"), the fields the verifier uses.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TcbInfo {
    pub(crate) id: String,
    pub(crate) version: u32,
    pub(crate) issue_date: String,
    pub(crate) next_update: String,
    pub(crate) fmspc: String,
    pub(crate) pce_id: String,
    pub(crate) tcb_evaluation_data_number: u32,
    #[serde(default)]
    pub(crate) tdx_module: Option<TdxModule>,
    #[serde(default)]
    pub(crate) tdx_module_identities: Vec<TdxModuleIdentity>,
    pub(crate) tcb_levels: Vec<TcbLevel>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TdxModule {
    pub(crate) mrsigner: String,
    pub(crate) attributes: String,
    pub(crate) attributes_mask: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TdxModuleIdentity {
    pub(crate) id: String,
    pub(crate) mrsigner: String,
    pub(crate) attributes: String,
    pub(crate) attributes_mask: String,
    pub(crate) tcb_levels: Vec<TdxModuleTcbLevel>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TdxModuleTcbLevel {
    pub(crate) tcb: IsvSvn,
    pub(crate) tcb_date: String,
    pub(crate) tcb_status: TcbStatus,
    #[serde(rename = "advisoryIDs", default)]
    pub(crate) advisory_ids: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct IsvSvn {
    pub(crate) isvsvn: u16,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TcbLevel {
    pub(crate) tcb: Tcb,
    pub(crate) tcb_date: String,
    pub(crate) tcb_status: TcbStatus,
    #[serde(rename = "advisoryIDs", default)]
    pub(crate) advisory_ids: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct Tcb {
    pub(crate) sgxtcbcomponents: Vec<Component>,
    pub(crate) pcesvn: u16,
    #[serde(default)]
    pub(crate) tdxtcbcomponents: Vec<Component>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct Component {
    pub(crate) svn: u8,
}

/// Intel QE identity (id "TD_QE"), the fields the verifier uses.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QeIdentity {
    pub(crate) id: String,
    pub(crate) version: u32,
    pub(crate) issue_date: String,
    pub(crate) next_update: String,
    pub(crate) tcb_evaluation_data_number: u32,
    pub(crate) miscselect: String,
    pub(crate) miscselect_mask: String,
    pub(crate) attributes: String,
    pub(crate) attributes_mask: String,
    pub(crate) mrsigner: String,
    pub(crate) isvprodid: u16,
    pub(crate) tcb_levels: Vec<QeTcbLevel>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QeTcbLevel {
    pub(crate) tcb: IsvSvn,
    pub(crate) tcb_status: TcbStatus,
    #[serde(rename = "advisoryIDs", default)]
    pub(crate) advisory_ids: Vec<String>,
}

/// Decodes a fixed-length hex field of collateral.
pub(crate) fn hex_field<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], Error> {
    let v = hex::decode(s).map_err(|e| Error::malformed(what, e))?;
    <[u8; N]>::try_from(v)
        .map_err(|v| Error::malformed(what, format!("{} bytes, want {N}", v.len())))
}

/// RFC 3339 to Unix seconds.
pub(crate) fn parse_time(s: &str, what: &'static str) -> Result<i64, Error> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| Error::malformed(what, format!("date {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    #[test]
    fn inner_object_is_sliced_verbatim() {
        let bytes = std::fs::read(format!(
            "{TESTDATA}/tdx/dq-b0c06f-v4/collateral/tcb_info.json"
        ))
        .unwrap();
        let s = split_tcb_info(&bytes).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("{\"tcbInfo\":"));
        assert_eq!(&text[11..11 + s.body.len()], s.body);
        let info: TcbInfo = serde_json::from_str(s.body).unwrap();
        assert_eq!((info.id.as_str(), info.version), ("TDX", 3));
        // Whitespace inside the inner object is kept (it is part of what Intel signed).
        let spaced = text.replacen("\"id\":\"TDX\"", "\"id\" : \"TDX\"", 1);
        let s2 = split_tcb_info(spaced.as_bytes()).unwrap();
        assert!(s2.body.contains("\"id\" : \"TDX\""));
        // A wrong envelope is malformed, not a panic.
        assert_eq!(
            split_qe_identity(&bytes).unwrap_err().category(),
            "malformed"
        );
    }

    #[test]
    fn from_dir_reads_every_role_and_digest_changes_with_content() {
        let dir = format!("{TESTDATA}/tdx/dq-b0c06f-v4/collateral");
        let a = Collateral::from_dir(&dir).unwrap();
        let b = Collateral::from_dir(format!("{TESTDATA}/tdx/near-20a06f-v4/collateral")).unwrap();
        assert_ne!(a.digest(), b.digest());
        let mut parts = CollateralParts {
            tcb_info: a.tcb_info.clone(),
            tcb_info_issuer_chain: a.tcb_info_issuer_chain.clone(),
            qe_identity: a.qe_identity.clone(),
            qe_identity_issuer_chain: a.qe_identity_issuer_chain.clone(),
            pck_crl: a.pck_crl.clone(),
            pck_crl_issuer_chain: a.pck_crl_issuer_chain.clone(),
            root_ca_crl: a.root_ca_crl.clone(),
        };
        assert_eq!(Collateral::from_parts(parts.clone()).unwrap(), a);
        parts.root_ca_crl.clear();
        assert_eq!(
            Collateral::from_parts(parts).unwrap_err().category(),
            "malformed"
        );
        assert!(Collateral::from_dir("/nonexistent").is_err());
    }
}

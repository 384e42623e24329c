//! Intel PCS API v4 (and a PCCS, which serves the same paths): URLs, header names, and the checks a
//! response passes before it is cached. None of these checks is a signature check.

use der::Decode;
use serde::Deserialize;
use x509_cert::crl::CertificateList;
use x509_cert::Certificate;

use super::pck::{common_name, PckCa};
use crate::tdx::{MAX_CERT_LEN, MAX_CHAIN_CERTS, MAX_CRL_LEN};

/// Intel's Provisioning Certification Service.
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// The Intel SGX Root CA CRL (DER), the CRL distribution point of Intel's root certificate.
pub const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// Issuer chain of a TDX TCB info (`/tdx/certification/v4/tcb`).
pub const TCB_INFO_ISSUER_CHAIN: &str = "TCB-Info-Issuer-Chain";
/// The SGX spelling, which some PCCS versions send for TDX TCB info too.
pub const SGX_TCB_INFO_ISSUER_CHAIN: &str = "SGX-TCB-Info-Issuer-Chain";
/// Issuer chain of a QE identity.
pub const ENCLAVE_IDENTITY_ISSUER_CHAIN: &str = "SGX-Enclave-Identity-Issuer-Chain";
/// Issuer chain of a PCK CRL (PCK CA, root).
pub const PCK_CRL_ISSUER_CHAIN: &str = "SGX-PCK-CRL-Issuer-Chain";

/// The URLs of one PCS or PCCS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcsUrls {
    base: String,
    root_ca_crl: String,
}

impl PcsUrls {
    /// `base_url` is the service root (`https://api.trustedservices.intel.com`,
    /// `https://pccs.example:8081`); a trailing `/` or `/{sgx,tdx}/certification/v4` is dropped.
    /// `root_ca_crl_url` defaults to [`INTEL_ROOT_CA_CRL_URL`] for Intel PCS and to the PCCS's
    /// `/sgx/certification/v4/rootcacrl` otherwise.
    pub fn new(base_url: &str, root_ca_crl_url: Option<&str>) -> PcsUrls {
        let mut base = base_url.trim().trim_end_matches('/');
        for suffix in ["/sgx/certification/v4", "/tdx/certification/v4"] {
            base = base.strip_suffix(suffix).unwrap_or(base);
        }
        let base = base.trim_end_matches('/').to_owned();
        let root_ca_crl = match root_ca_crl_url {
            Some(u) => u.to_owned(),
            None if base == INTEL_PCS_URL => INTEL_ROOT_CA_CRL_URL.to_owned(),
            None => format!("{base}/sgx/certification/v4/rootcacrl"),
        };
        PcsUrls { base, root_ca_crl }
    }

    /// The service root, normalised.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `…/tdx/certification/v4/tcb?fmspc=<upper-case hex>`
    pub fn tcb_info(&self, fmspc: &[u8; 6]) -> String {
        format!(
            "{}/tdx/certification/v4/tcb?fmspc={}",
            self.base,
            hex::encode_upper(fmspc)
        )
    }

    /// `…/tdx/certification/v4/qe/identity`
    pub fn qe_identity(&self) -> String {
        format!("{}/tdx/certification/v4/qe/identity", self.base)
    }

    /// `…/sgx/certification/v4/pckcrl?ca=<platform|processor>&encoding=der`
    pub fn pck_crl(&self, ca: PckCa) -> String {
        format!(
            "{}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
            self.base,
            ca.as_str()
        )
    }

    pub fn root_ca_crl(&self) -> &str {
        &self.root_ca_crl
    }
}

/// Decodes an issuer-chain header (URL-encoded PEM) into PEM bytes, checking that it holds 1 to
/// `MAX_CHAIN_CERTS` parsable certificates.
///
/// # Errors
/// A description of the first problem (bad `%` escape, no certificate, unparsable certificate).
pub fn decode_issuer_chain(header_value: &str) -> Result<Vec<u8>, String> {
    let pem = percent_decode(header_value.trim())?;
    let n = check_pem_chain(&pem)?;
    if n == 0 {
        return Err("no PEM certificate".into());
    }
    Ok(pem)
}

/// `%XX` escapes to bytes; everything else (including `+`, which base64 uses) is kept as is.
fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let pair = b
                .get(i.saturating_add(1)..i.saturating_add(3))
                .filter(|p| p.iter().all(u8::is_ascii_hexdigit))
                .ok_or_else(|| format!("bad %-escape at byte {i}"))?;
            let v = std::str::from_utf8(pair)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape at byte {i}"))?;
            out.push(v);
            i = i.saturating_add(3);
        } else {
            out.push(c);
            i = i.saturating_add(1);
        }
    }
    Ok(out)
}

/// Number of `CERTIFICATE` blocks of a PEM text, each parsed as X.509.
pub(crate) fn check_pem_chain(pem: &[u8]) -> Result<usize, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::str::from_utf8(pem).map_err(|_| "not UTF-8 text".to_owned())?;
    let mut rest = text;
    let mut n = 0usize;
    while let Some(start) = rest.find(BEGIN) {
        let from = rest.get(start..).unwrap_or_default();
        let end = from.find(END).ok_or("PEM block without END line")?;
        let block = from
            .get(..end.saturating_add(END.len()))
            .unwrap_or_default();
        let (_, der) = der::pem::decode_vec(block.as_bytes()).map_err(|e| e.to_string())?;
        if der.len() > MAX_CERT_LEN {
            return Err(format!("certificate of {} bytes", der.len()));
        }
        Certificate::from_der(&der).map_err(|e| format!("certificate {}: {e}", n + 1))?;
        n = n.saturating_add(1);
        if n > MAX_CHAIN_CERTS {
            return Err(format!("more than {MAX_CHAIN_CERTS} certificates"));
        }
        rest = from.get(block.len()..).unwrap_or_default();
    }
    Ok(n)
}

/// A CRL response as DER: DER as is, PEM (`X509 CRL`) decoded, or hex text (what a PCCS's
/// `rootcacrl` returns) decoded. The result parses as a CRL.
///
/// # Errors
/// A description of why the body is not a CRL.
pub fn normalize_crl(body: &[u8]) -> Result<Vec<u8>, String> {
    if body.len() > MAX_CRL_LEN.saturating_mul(2) {
        return Err(format!("{} bytes", body.len()));
    }
    let der = if body.first() == Some(&0x30) {
        body.to_vec()
    } else {
        let text = std::str::from_utf8(body)
            .map_err(|_| "neither DER nor text".to_owned())?
            .trim();
        if text.starts_with("-----BEGIN") {
            let (label, der) = der::pem::decode_vec(text.as_bytes()).map_err(|e| e.to_string())?;
            if label != "X509 CRL" {
                return Err(format!("PEM label {label:?}, want \"X509 CRL\""));
            }
            der
        } else {
            hex::decode(text).map_err(|_| "neither DER, PEM nor hex".to_owned())?
        }
    };
    if der.is_empty() || der.len() > MAX_CRL_LEN {
        return Err(format!("{} bytes, want 1..={MAX_CRL_LEN}", der.len()));
    }
    CertificateList::from_der(&der).map_err(|e| format!("not a CRL: {e}"))?;
    Ok(der)
}

/// What the cache needs to know about a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CrlHead {
    pub(crate) issuer_cn: Option<String>,
    pub(crate) this_update: i64,
    pub(crate) next_update: Option<i64>,
}

fn unix(t: x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

pub(crate) fn crl_head(der: &[u8]) -> Result<CrlHead, String> {
    let crl = CertificateList::from_der(der).map_err(|e| format!("not a CRL: {e}"))?;
    let t = &crl.tbs_cert_list;
    Ok(CrlHead {
        issuer_cn: common_name(&t.issuer),
        this_update: unix(t.this_update),
        next_update: t.next_update.map(unix),
    })
}

/// The dated header of a signed PCS document (TCB info, QE identity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SignedHead {
    pub(crate) id: String,
    pub(crate) fmspc: Option<String>,
    pub(crate) issue_date: i64,
    pub(crate) next_update: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inner {
    id: String,
    issue_date: String,
    next_update: String,
    #[serde(default)]
    fmspc: Option<String>,
}

#[derive(Deserialize)]
struct TcbEnvelope {
    #[serde(rename = "tcbInfo")]
    inner: Inner,
    signature: String,
}

#[derive(Deserialize)]
struct QeEnvelope {
    #[serde(rename = "enclaveIdentity")]
    inner: Inner,
    signature: String,
}

fn rfc3339(s: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("date {s:?}: {e}"))
}

fn head(inner: Inner, signature: &str) -> Result<SignedHead, String> {
    if signature.len() != 128 || !signature.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err("signature is not 64 bytes of hex".into());
    }
    let issue_date = rfc3339(&inner.issue_date)?;
    let next_update = rfc3339(&inner.next_update)?;
    if next_update < issue_date {
        return Err("nextUpdate before issueDate".into());
    }
    Ok(SignedHead {
        id: inner.id,
        fmspc: inner.fmspc,
        issue_date,
        next_update,
    })
}

/// `{"tcbInfo":{"id":"TDX",…,"fmspc":…},"signature":"<hex>"}`
pub(crate) fn tcb_info_head(body: &[u8]) -> Result<SignedHead, String> {
    let env: TcbEnvelope = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let h = head(env.inner, &env.signature)?;
    if h.id != "TDX" {
        return Err(format!("id {:?}, want \"TDX\"", h.id));
    }
    if h.fmspc.is_none() {
        return Err("no fmspc".into());
    }
    Ok(h)
}

/// `{"enclaveIdentity":{"id":"TD_QE",…},"signature":"<hex>"}`
pub(crate) fn qe_identity_head(body: &[u8]) -> Result<SignedHead, String> {
    let env: QeEnvelope = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let h = head(env.inner, &env.signature)?;
    if h.id != "TD_QE" {
        return Err(format!("id {:?}, want \"TD_QE\"", h.id));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    #[test]
    fn urls() {
        for base in [
            "https://api.trustedservices.intel.com",
            "https://api.trustedservices.intel.com/",
            "https://api.trustedservices.intel.com/tdx/certification/v4",
        ] {
            let u = PcsUrls::new(base, None);
            assert_eq!(
                u.tcb_info(&[0xb0, 0xc0, 0x6f, 0, 0, 0]),
                "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=B0C06F000000"
            );
            assert_eq!(
                u.qe_identity(),
                "https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity"
            );
            assert_eq!(
                u.pck_crl(PckCa::Processor),
                "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=processor&encoding=der"
            );
            assert_eq!(u.root_ca_crl(), INTEL_ROOT_CA_CRL_URL);
        }
        let pccs = PcsUrls::new("https://pccs.local:8081/sgx/certification/v4/", None);
        assert_eq!(
            pccs.root_ca_crl(),
            "https://pccs.local:8081/sgx/certification/v4/rootcacrl"
        );
        assert_eq!(
            pccs.pck_crl(PckCa::Platform),
            "https://pccs.local:8081/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
        );
        let own = PcsUrls::new("http://x", Some("http://y/root.der"));
        assert_eq!(own.root_ca_crl(), "http://y/root.der");
    }

    #[test]
    fn percent_escapes() {
        assert_eq!(percent_decode("a%20b%2Bc+d").unwrap(), b"a b+c+d");
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("a%+1").is_err());
        assert!(percent_decode("%zz").is_err());
    }

    #[test]
    fn crl_encodings() {
        let der = std::fs::read(format!(
            "{TESTDATA}/tdx/dq-b0c06f-v4/collateral/root_ca_crl.der"
        ))
        .unwrap();
        assert_eq!(normalize_crl(&der).unwrap(), der);
        assert_eq!(normalize_crl(hex::encode(&der).as_bytes()).unwrap(), der);
        let pem = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &der).unwrap();
        assert_eq!(normalize_crl(pem.as_bytes()).unwrap(), der);
        assert!(normalize_crl(b"{\"not\":\"a crl\"}").is_err());
        assert!(normalize_crl(&der[..der.len() - 1]).is_err());
        let h = crl_head(&der).unwrap();
        assert_eq!(h.issuer_cn.as_deref(), Some("Intel SGX Root CA"));
        assert!(h.next_update.unwrap() > h.this_update);
    }

    #[test]
    fn heads_of_real_documents() {
        let dir = format!("{TESTDATA}/tdx/dq-b0c06f-v4/collateral");
        let tcb = tcb_info_head(&std::fs::read(format!("{dir}/tcb_info.json")).unwrap()).unwrap();
        assert_eq!(tcb.fmspc.as_deref(), Some("B0C06F000000"));
        // 2025-07-19T10:16:03Z
        assert_eq!(tcb.next_update, 1_752_920_163);
        let qe = std::fs::read(format!("{dir}/qe_identity.json")).unwrap();
        assert_eq!(qe_identity_head(&qe).unwrap().id, "TD_QE");
        assert!(
            tcb_info_head(&qe).is_err(),
            "a QE identity is not a TCB info"
        );
        assert!(tcb_info_head(b"<html>").is_err());
    }
}

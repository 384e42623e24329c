//! Which collateral a quote needs: the FMSPC of its PCK certificate and the PCK CA that issued it.
//!
//! Read from the quote BEFORE it is verified, so these values are only a lookup key: collateral for
//! another platform than the one claimed fails verification (`collateral-mismatch`). The parsing here
//! is deliberately small (first PEM block, issuer CN, one OCTET STRING of the SGX extension); the full
//! PCK extension parsing used by verification is `tdx::cert`.

use std::fmt;

use der::asn1::{OctetStringRef, PrintableStringRef, Utf8StringRef};
use der::{Any, Decode, Reader, SliceReader, Tag, Tagged};
use spki::ObjectIdentifier;
use x509_cert::name::Name;
use x509_cert::Certificate;

use super::CollateralError;
use crate::tdx::{oid, Quote, MAX_CERT_LEN};

/// The Intel CA that issues a platform's PCK certificates, and signs its PCK CRL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PckCa {
    /// "Intel SGX PCK Platform CA": multi-package (scalable) platforms, every TDX-capable Xeon so far.
    Platform,
    /// "Intel SGX PCK Processor CA": single-package platforms.
    Processor,
}

impl PckCa {
    /// The `ca=` value of the PCS `pckcrl` request.
    pub fn as_str(self) -> &'static str {
        match self {
            PckCa::Platform => "platform",
            PckCa::Processor => "processor",
        }
    }

    /// The CA certificate's common name.
    pub fn common_name(self) -> &'static str {
        match self {
            PckCa::Platform => "Intel SGX PCK Platform CA",
            PckCa::Processor => "Intel SGX PCK Processor CA",
        }
    }

    /// The CA named `cn`, if it is one of the two PCK CAs.
    pub fn from_common_name(cn: &str) -> Option<PckCa> {
        [PckCa::Platform, PckCa::Processor]
            .into_iter()
            .find(|ca| ca.common_name() == cn)
    }
}

/// One platform's collateral key: TCB info is per FMSPC, the PCK CRL per CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlatformKey {
    pub fmspc: [u8; 6],
    pub ca: PckCa,
}

impl fmt::Display for PlatformKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FMSPC {}, PCK {} CA",
            hex::encode(self.fmspc),
            self.ca.as_str()
        )
    }
}

impl PlatformKey {
    /// The key of the quote's PCK certificate (the first certificate of its certification data).
    ///
    /// # Errors
    /// [`CollateralError::PckCertificate`] when the chain has no parsable first certificate, its issuer
    /// is not a PCK CA, or it has no 6-byte FMSPC.
    pub fn from_quote(quote: &Quote) -> Result<PlatformKey, CollateralError> {
        PlatformKey::from_pck_chain_pem(quote.pck_chain_pem())
    }

    /// The key of the first certificate of a PEM chain (PCK, PCK CA, root).
    ///
    /// # Errors
    /// As [`PlatformKey::from_quote`].
    pub fn from_pck_chain_pem(pem: &[u8]) -> Result<PlatformKey, CollateralError> {
        let bad = |detail: String| CollateralError::PckCertificate { detail };
        let der = first_pem_certificate(pem).map_err(bad)?;
        let cert = Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?;
        let issuer = common_name(&cert.tbs_certificate.issuer)
            .ok_or_else(|| bad("issuer has no common name".into()))?;
        let ca = PckCa::from_common_name(&issuer)
            .ok_or_else(|| bad(format!("issuer {issuer:?} is not an Intel SGX PCK CA")))?;
        let fmspc = fmspc(&cert).map_err(|e| bad(format!("FMSPC: {e}")))?;
        Ok(PlatformKey { fmspc, ca })
    }

    /// `<fmspc lower-case hex>-<platform|processor>`: the platform's directory in the cache and in an
    /// offline bundle.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", hex::encode(self.fmspc), self.ca.as_str())
    }
}

/// The DER of the first `CERTIFICATE` block of a PEM text (trailing NULs and other blocks ignored).
pub(crate) fn first_pem_certificate(pem: &[u8]) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let start = text.find(BEGIN).ok_or("no PEM CERTIFICATE block")?;
    let rest = text.get(start..).unwrap_or_default();
    let end = rest.find(END).ok_or("PEM block without END line")?;
    let block = rest
        .get(..end.saturating_add(END.len()))
        .unwrap_or_default();
    let (_, der) = der::pem::decode_vec(block.as_bytes()).map_err(|e| e.to_string())?;
    if der.len() > MAX_CERT_LEN {
        return Err(format!("{} bytes, cap {MAX_CERT_LEN}", der.len()));
    }
    Ok(der)
}

/// The first common name of `name` (UTF8String or PrintableString).
pub(crate) fn common_name(name: &Name) -> Option<String> {
    const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == CN)
        .and_then(|atv| {
            atv.value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    atv.value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
}

/// FMSPC from the SGX extension: `SEQUENCE OF SEQUENCE { OID, ANY }`, the `.4` entry an OCTET STRING.
fn fmspc(cert: &Certificate) -> Result<[u8; 6], String> {
    let ext = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == oid::SGX_EXTENSION)
        .ok_or("no SGX extension")?;
    let outer = Any::from_der(ext.extn_value.as_bytes()).map_err(|e| e.to_string())?;
    if outer.tag() != Tag::Sequence {
        return Err("SGX extension is not a SEQUENCE".into());
    }
    let mut r = SliceReader::new(outer.value()).map_err(|e| e.to_string())?;
    for _ in 0..64 {
        if r.is_finished() {
            break;
        }
        let item = Any::decode(&mut r).map_err(|e| e.to_string())?;
        let mut inner = SliceReader::new(item.value()).map_err(|e| e.to_string())?;
        let id = ObjectIdentifier::decode(&mut inner).map_err(|e| e.to_string())?;
        if id == oid::FMSPC {
            let v = OctetStringRef::decode(&mut inner).map_err(|e| e.to_string())?;
            return <[u8; 6]>::try_from(v.as_bytes())
                .map_err(|_| format!("{} bytes, want 6", v.as_bytes().len()));
        }
    }
    Err("absent".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    #[test]
    fn key_of_real_quotes() {
        for (case, fmspc) in [
            ("dq-b0c06f-v4", "b0c06f000000"),
            ("gtg-90c06f-v5", "90c06f000000"),
            ("gtg-spr-e4-v4", "50806f000000"),
        ] {
            let q =
                Quote::parse(&std::fs::read(format!("{TESTDATA}/tdx/{case}/quote.bin")).unwrap())
                    .unwrap();
            let k = PlatformKey::from_quote(&q).unwrap();
            assert_eq!(hex::encode(k.fmspc), fmspc, "{case}");
            assert_eq!(k.ca, PckCa::Platform, "{case}");
            assert_eq!(k.dir_name(), format!("{fmspc}-platform"));
        }
    }

    #[test]
    fn not_a_pck_chain() {
        let root = std::fs::read(format!(
            "{TESTDATA}/tdx/dq-b0c06f-v4/collateral/tcb_info_issuer_chain.pem"
        ))
        .unwrap();
        // The TCB signing certificate is issued by the root CA, not a PCK CA.
        let e = PlatformKey::from_pck_chain_pem(&root).unwrap_err();
        assert!(e.to_string().contains("not an Intel SGX PCK CA"), "{e}");
        assert!(PlatformKey::from_pck_chain_pem(b"junk").is_err());
        assert_eq!(
            PckCa::from_common_name("Intel SGX PCK Processor CA"),
            Some(PckCa::Processor)
        );
    }
}

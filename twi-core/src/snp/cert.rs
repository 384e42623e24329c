//! One AMD certificate (ARK, ASK/ASVK, VCEK/VLEK): parse with length caps, classify by subject CN,
//! read AMD's extensions, check an RSA-PSS signature by its issuer.
//!
//! Signatures are checked over the `tbsCertificate` bytes exactly as received (taken from the DER
//! with a reader, never re-encoded from the parsed structure).

use const_oid::ObjectIdentifier;
use der::{Decode, Encode, Reader, SliceReader};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::signature::Verifier as _;
use sha2::{Digest, Sha256, Sha384};
use x509_cert::Certificate;

use super::Product;
use crate::Error;

/// AMD's certificate extension OIDs (VCEK/VLEK specification, publication 57230), public so that the
/// simulated device writes the same extensions the verifier reads.
pub mod oid {
    use const_oid::ObjectIdentifier;

    /// Structure version of the VCEK extensions (INTEGER).
    pub const STRUCT_VERSION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
    /// Product name, IA5String (`Milan-B0`, `Genoa`, `Turin`, ...).
    pub const PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
    /// Boot loader security patch level (INTEGER).
    pub const BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
    /// PSP OS (TEE) security patch level (INTEGER).
    pub const TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
    /// SNP firmware security patch level (INTEGER).
    pub const SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
    /// Microcode security patch level (INTEGER).
    pub const UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
    /// FMC security patch level, Turin and later (INTEGER).
    pub const FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
    /// Hardware ID: the raw CHIP_ID bytes (64; Turin: the first 8), VCEK only.
    pub const HWID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
    /// Cloud service provider that owns a VLEK (IA5String), VLEK only.
    pub const CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");
}

/// Certificates larger than this are refused before parsing (AMD's are under 2 KiB).
pub const MAX_CERT_LEN: usize = 16 * 1024;

const ID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const ID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// AMD signs with RSASSA-PSS, SHA-384, MGF1-SHA-384 and a 48-byte salt.
pub(crate) const PSS_SALT_LEN: u8 = 48;

/// What a certificate is in AMD's hierarchy, read from its subject common name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// `SEV-VCEK`
    Vcek,
    /// `SEV-VLEK`
    Vlek,
    /// `SEV-<product>`
    Ask(Product),
    /// `SEV-VLEK-<product>`
    Asvk(Product),
    /// `ARK-<product>`
    Ark(Product),
}

impl Role {
    pub(crate) fn from_cn(cn: &str) -> Option<Role> {
        match cn {
            "SEV-VCEK" => Some(Role::Vcek),
            "SEV-VLEK" => Some(Role::Vlek),
            _ => {
                if let Some(p) = cn.strip_prefix("ARK-") {
                    Product::from_cert_name(p).map(Role::Ark)
                } else if let Some(p) = cn.strip_prefix("SEV-VLEK-") {
                    Product::from_cert_name(p).map(Role::Asvk)
                } else {
                    cn.strip_prefix("SEV-")
                        .and_then(Product::from_cert_name)
                        .map(Role::Ask)
                }
            }
        }
    }
}

/// A parsed certificate with the SHA-256 of its DER and the exact signed TBS bytes.
#[derive(Clone, Debug)]
pub(crate) struct ParsedCert {
    pub(crate) sha256: [u8; 32],
    pub(crate) cert: Certificate,
    tbs: Vec<u8>,
}

/// The AMD extensions of a VCEK/VLEK, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AmdExtensions {
    pub(crate) product_name: Option<String>,
    pub(crate) hwid: Option<Vec<u8>>,
    pub(crate) bl_spl: Option<u8>,
    pub(crate) tee_spl: Option<u8>,
    pub(crate) snp_spl: Option<u8>,
    pub(crate) ucode_spl: Option<u8>,
    pub(crate) fmc_spl: Option<u8>,
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The first element inside the outer SEQUENCE, as received (TBSCertificate / TBSCertList).
pub(crate) fn signed_part(der: &[u8]) -> der::Result<&[u8]> {
    let mut r = SliceReader::new(der)?;
    let outer = der::Header::decode(&mut r)?;
    outer.tag.assert_eq(der::Tag::Sequence)?;
    r.tlv_bytes()
}

fn unix(t: x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

impl ParsedCert {
    /// # Errors
    /// [`Error::Malformed`] when larger than [`MAX_CERT_LEN`] or not an X.509 certificate.
    pub(crate) fn from_der(der: &[u8]) -> Result<ParsedCert, Error> {
        if der.len() > MAX_CERT_LEN {
            return Err(Error::malformed(
                "certificate",
                format!("{} bytes, cap {MAX_CERT_LEN}", der.len()),
            ));
        }
        let cert = Certificate::from_der(der).map_err(|e| Error::malformed("certificate", e))?;
        let tbs = signed_part(der)
            .map_err(|e| Error::malformed("certificate", e))?
            .to_vec();
        Ok(ParsedCert {
            sha256: sha256(der),
            cert,
            tbs,
        })
    }

    /// The subject common name, if it is a string.
    pub(crate) fn common_name(&self) -> Option<String> {
        name_cn(&self.cert.tbs_certificate.subject)
    }

    pub(crate) fn role(&self) -> Option<Role> {
        self.common_name().as_deref().and_then(Role::from_cn)
    }

    pub(crate) fn not_before(&self) -> i64 {
        unix(self.cert.tbs_certificate.validity.not_before)
    }

    pub(crate) fn not_after(&self) -> i64 {
        unix(self.cert.tbs_certificate.validity.not_after)
    }

    pub(crate) fn serial_hex(&self) -> String {
        hex::encode(self.cert.tbs_certificate.serial_number.as_bytes())
    }

    pub(crate) fn is_self_issued(&self) -> bool {
        self.cert.tbs_certificate.issuer == self.cert.tbs_certificate.subject
    }

    /// Checks that `issuer` issued this certificate: names chain and the RSA-PSS SHA-384 signature
    /// (with exactly AMD's parameters) verifies over the received TBS bytes.
    ///
    /// # Errors
    /// A description of the first failure, for the caller to wrap in its category.
    pub(crate) fn check_issued_by(&self, issuer: &ParsedCert) -> Result<(), String> {
        let tbs = &self.cert.tbs_certificate;
        if tbs.issuer != issuer.cert.tbs_certificate.subject {
            return Err(format!(
                "issuer {} is not the subject {}",
                tbs.issuer, issuer.cert.tbs_certificate.subject
            ));
        }
        if tbs.signature != self.cert.signature_algorithm {
            return Err("tbsCertificate.signature differs from signatureAlgorithm".into());
        }
        let sig = self
            .cert
            .signature
            .as_bytes()
            .ok_or("signature BIT STRING has unused bits")?;
        verify_pss(
            &issuer.cert.tbs_certificate.subject_public_key_info,
            &self.cert.signature_algorithm,
            &self.tbs,
            sig,
        )
    }

    /// Decodes AMD's extensions; a duplicated or undecodable one is malformed.
    pub(crate) fn amd_extensions(&self) -> Result<AmdExtensions, Error> {
        let mut out = AmdExtensions::default();
        let Some(exts) = &self.cert.tbs_certificate.extensions else {
            return Ok(out);
        };
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            Error::malformed("certificate", format!("extension {what}: {e}"))
        };
        for ext in exts {
            let v = ext.extn_value.as_bytes();
            let slot: &mut Option<u8> = match ext.extn_id {
                oid::PRODUCT_NAME => {
                    let name =
                        der::asn1::Ia5StringRef::from_der(v).map_err(|e| bad("productName", &e))?;
                    if out.product_name.replace(name.as_str().to_owned()).is_some() {
                        return Err(bad("productName", &"duplicated"));
                    }
                    continue;
                }
                oid::HWID => {
                    if out.hwid.replace(v.to_vec()).is_some() {
                        return Err(bad("hwID", &"duplicated"));
                    }
                    continue;
                }
                oid::BL_SPL => &mut out.bl_spl,
                oid::TEE_SPL => &mut out.tee_spl,
                oid::SNP_SPL => &mut out.snp_spl,
                oid::UCODE_SPL => &mut out.ucode_spl,
                oid::FMC_SPL => &mut out.fmc_spl,
                _ => continue,
            };
            let n = u8::from_der(v).map_err(|e| bad("SPL", &e))?;
            if slot.replace(n).is_some() {
                return Err(bad("SPL", &"duplicated"));
            }
        }
        Ok(out)
    }

    /// The P-384 public key of a VCEK/VLEK.
    pub(crate) fn p384_key(&self) -> Result<p384::ecdsa::VerifyingKey, String> {
        use p384::pkcs8::DecodePublicKey;
        let spki = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| e.to_string())?;
        p384::ecdsa::VerifyingKey::from_public_key_der(&spki)
            .map_err(|e| format!("not a P-384 public key: {e}"))
    }
}

/// The common name of an X.509 name, when it is a string type.
pub(crate) fn name_cn(name: &x509_cert::name::Name) -> Option<String> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == ID_CN)
        .and_then(|atv| {
            let tag = der::Tagged::tag(&atv.value);
            matches!(
                tag,
                der::Tag::Utf8String | der::Tag::PrintableString | der::Tag::Ia5String
            )
            .then(|| {
                std::str::from_utf8(atv.value.value())
                    .ok()
                    .map(str::to_owned)
            })
            .flatten()
        })
}

/// RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48, trailer 1: the only algorithm AMD uses; every
/// parameter of the certificate's AlgorithmIdentifier is checked, not assumed.
pub(crate) fn verify_pss(
    issuer_spki: &spki::SubjectPublicKeyInfoOwned,
    alg: &spki::AlgorithmIdentifierOwned,
    signed: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    if alg.oid != ID_RSASSA_PSS {
        return Err(format!("signature algorithm {}, want RSASSA-PSS", alg.oid));
    }
    let params_der = alg
        .parameters
        .as_ref()
        .ok_or("RSASSA-PSS without parameters")?
        .to_der()
        .map_err(|e| e.to_string())?;
    let params = rsa::pkcs1::RsaPssParams::from_der(&params_der)
        .map_err(|e| format!("RSASSA-PSS parameters: {e}"))?;
    if params.hash.oid != ID_SHA384 {
        return Err(format!("PSS hash {}, want SHA-384", params.hash.oid));
    }
    let mgf_hash = params.mask_gen.parameters.as_ref().map(|h| h.oid);
    if params.mask_gen.oid != ID_MGF1 || mgf_hash != Some(ID_SHA384) {
        return Err("PSS mask generation is not MGF1 with SHA-384".into());
    }
    if params.salt_len != PSS_SALT_LEN {
        return Err(format!(
            "PSS salt length {}, want {PSS_SALT_LEN}",
            params.salt_len
        ));
    }
    if params.trailer_field != rsa::pkcs1::TrailerField::BC {
        return Err("PSS trailer field is not 1".into());
    }
    if issuer_spki.algorithm.oid != RSA_ENCRYPTION && issuer_spki.algorithm.oid != ID_RSASSA_PSS {
        return Err(format!(
            "issuer key algorithm {}, want RSA",
            issuer_spki.algorithm.oid
        ));
    }
    let key_bytes = issuer_spki
        .subject_public_key
        .as_bytes()
        .ok_or("issuer key BIT STRING has unused bits")?;
    let key =
        rsa::RsaPublicKey::from_pkcs1_der(key_bytes).map_err(|e| format!("issuer RSA key: {e}"))?;
    let vk = rsa::pss::VerifyingKey::<Sha384>::new_with_salt_len(key, usize::from(PSS_SALT_LEN));
    let sig =
        rsa::pss::Signature::try_from(signature).map_err(|e| format!("signature encoding: {e}"))?;
    vk.verify(signed, &sig)
        .map_err(|_| "RSA-PSS signature does not verify".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn roles_from_amd_common_names() {
        assert_eq!(Role::from_cn("SEV-VCEK"), Some(Role::Vcek));
        assert_eq!(Role::from_cn("SEV-VLEK"), Some(Role::Vlek));
        assert_eq!(Role::from_cn("SEV-Milan"), Some(Role::Ask(Product::Milan)));
        assert_eq!(
            Role::from_cn("SEV-VLEK-Genoa"),
            Some(Role::Asvk(Product::Genoa))
        );
        assert_eq!(Role::from_cn("ARK-Turin"), Some(Role::Ark(Product::Turin)));
        assert_eq!(Role::from_cn("ARK-Naples"), None);
        assert_eq!(Role::from_cn("SEV-"), None);
        assert_eq!(Role::from_cn("example.com"), None);
    }

    #[test]
    fn oversized_certificate_is_refused_before_parsing() {
        let e = ParsedCert::from_der(&vec![0x30; MAX_CERT_LEN + 1]).unwrap_err();
        assert_eq!(e.category(), "malformed");
        assert!(e.to_string().contains("cap"), "{e}");
    }
}

//! Certificates of the simulated root set, in AMD's own formats.
//!
//! The point of the simulator is that its evidence goes through the same verification code as real
//! evidence, so these certificates copy what AMD's KDS serves byte for byte where it matters: X.509 v3,
//! RSASSA-PSS with SHA-384 / MGF1-SHA-384 / salt 48 (the ARK and ASK spell out the default trailer
//! field, the VCEK omits it — both as AMD does), UTF8String name attributes in AMD's order, AMD's serial
//! numbers, and the VCEK's private extensions under 1.3.6.1.4.1.3704.1 in the order AMD emits them.
//! Only the organisation name differs: it says the set is simulated.

use const_oid::ObjectIdentifier;
use der::asn1::{Any, BitString, GeneralizedTime, Ia5StringRef, OctetString, SetOfVec, UtcTime};
use der::{Decode, Encode, Tag};
use rand::rngs::OsRng;
use rsa::pkcs8::EncodePublicKey;
use rsa::pss::BlindedSigningKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256, Sha384};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use std::time::Duration;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

use super::SimError;
use crate::snp::{Product, TcbParts};

/// The organisation name of every simulated certificate: whoever looks at a chain sees at once that it
/// does not come from AMD.
pub const SIMULATED_ORGANIZATION: &str = "SIMULATED TEST ROOT - NOT AMD";

/// PSS salt length AMD uses (the SHA-384 output size).
const PSS_SALT_LEN: usize = 48;

/// RSASSA-PSS-params { hashAlgorithm sha384, maskGenAlgorithm mgf1(sha384), saltLength 48,
/// trailerField 1 } as in AMD's ARK and ASK (which encode the default trailer field explicitly).
const PSS_PARAMS_WITH_TRAILER: &[u8] = &[
    0x30, 0x39, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
];
/// The same parameters without the trailer field, as in AMD's VCEKs.
const PSS_PARAMS_NO_TRAILER: &[u8] = &[
    0x30, 0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0xa2, 0x03, 0x02, 0x01, 0x30,
];

const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

const OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");
const C: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
const L: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.7");
const ST: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.8");
const O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

const EXT_SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const EXT_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const EXT_AKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");

/// AMD's VCEK extensions (SEV-SNP VCEK Certificate and KDS Interface Specification, publication 57230).
pub(crate) mod amd_oid {
    use const_oid::ObjectIdentifier;
    pub(crate) const STRUCT_VERSION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
    pub(crate) const PRODUCT_NAME: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
    pub(crate) const BL_SPL: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
    pub(crate) const TEE_SPL: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
    pub(crate) const SNP_SPL: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
    pub(crate) const SPL_4: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.4");
    pub(crate) const SPL_5: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.5");
    pub(crate) const SPL_6: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.6");
    pub(crate) const SPL_7: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.7");
    pub(crate) const UCODE_SPL: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
    pub(crate) const FMC_SPL: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
    pub(crate) const HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
}

/// The product name AMD writes into the VCEK (`Milan-B0` for the Milan parts in the field).
pub fn cert_product_name(product: Product) -> &'static str {
    match product {
        Product::Milan => "Milan-B0",
        Product::Genoa => "Genoa",
        Product::Turin => "Turin",
    }
}

/// The validity window of one certificate, in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) not_before: u64,
    pub(crate) not_after: u64,
}

/// Self-signed ARK, as AMD's `ARK-<Product>`.
pub(crate) fn ark_cert(
    ark: &RsaPrivateKey,
    product: Product,
    window: Window,
) -> Result<Vec<u8>, SimError> {
    let name = amd_style_name(&format!("ARK-{}", product.kds_name()))?;
    let spki = rsa_spki(ark, "ARK public key")?;
    let ski = key_identifier(&spki)?;
    let extensions = vec![
        ext(
            EXT_KEY_USAGE,
            true,
            &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            "ARK key usage",
        )?,
        ext(
            EXT_SKI,
            false,
            &SubjectKeyIdentifier(octets(&ski)?),
            "ARK subject key identifier",
        )?,
        ext(
            EXT_BASIC_CONSTRAINTS,
            true,
            &BasicConstraints {
                ca: true,
                path_len_constraint: None,
            },
            "ARK basic constraints",
        )?,
    ];
    let tbs = tbs(
        &[0x01, 0x00, 0x00],
        name.clone(),
        name,
        window,
        spki,
        extensions,
        PSS_PARAMS_WITH_TRAILER,
    )?;
    sign_cert(tbs, ark, PSS_PARAMS_WITH_TRAILER, "ARK certificate")
}

/// ASK (`SEV-<Product>`), signed by the ARK.
pub(crate) fn ask_cert(
    ask: &RsaPrivateKey,
    ark: &RsaPrivateKey,
    product: Product,
    window: Window,
) -> Result<Vec<u8>, SimError> {
    let issuer = amd_style_name(&format!("ARK-{}", product.kds_name()))?;
    let subject = amd_style_name(&format!("SEV-{}", product.kds_name()))?;
    let spki = rsa_spki(ask, "ASK public key")?;
    let ski = key_identifier(&spki)?;
    let aki = key_identifier(&rsa_spki(ark, "ARK public key")?)?;
    let extensions = vec![
        ext(
            EXT_SKI,
            false,
            &SubjectKeyIdentifier(octets(&ski)?),
            "ASK subject key identifier",
        )?,
        ext(
            EXT_AKI,
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(octets(&aki)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            "ASK authority key identifier",
        )?,
        ext(
            EXT_BASIC_CONSTRAINTS,
            true,
            &BasicConstraints {
                ca: true,
                path_len_constraint: Some(0),
            },
            "ASK basic constraints",
        )?,
        ext(
            EXT_KEY_USAGE,
            true,
            &KeyUsage(KeyUsages::KeyCertSign.into()),
            "ASK key usage",
        )?,
    ];
    let tbs = tbs(
        &[0x01, 0x00, 0x01],
        issuer,
        subject,
        window,
        spki,
        extensions,
        PSS_PARAMS_WITH_TRAILER,
    )?;
    sign_cert(tbs, ark, PSS_PARAMS_WITH_TRAILER, "ASK certificate")
}

/// VCEK (`SEV-VCEK`) for an ECDSA P-384 key, signed by the ASK, carrying the TCB and hwID extensions a
/// verifier matches against the report.
pub(crate) fn vcek_cert(
    vcek: &p384::PublicKey,
    ask: &RsaPrivateKey,
    product: Product,
    tcb: &TcbParts,
    chip_id: &[u8],
    window: Window,
) -> Result<Vec<u8>, SimError> {
    let issuer = amd_style_name(&format!("SEV-{}", product.kds_name()))?;
    let subject = amd_style_name("SEV-VCEK")?;
    let spki_der = vcek.to_public_key_der().map_err(|e| SimError::Encode {
        what: "VCEK public key",
        detail: e.to_string(),
    })?;
    let spki =
        SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).map_err(|e| SimError::Encode {
            what: "VCEK public key",
            detail: e.to_string(),
        })?;
    let extensions = vcek_extensions(product, tcb, chip_id)?;
    let tbs = tbs(
        &[0x00],
        issuer,
        subject,
        window,
        spki,
        extensions,
        PSS_PARAMS_NO_TRAILER,
    )?;
    sign_cert(tbs, ask, PSS_PARAMS_NO_TRAILER, "VCEK certificate")
}

/// AMD's VCEK extensions in the order KDS emits them. Milan and Genoa: structVersion 0, then the SPLs
/// 1, 2, 4, 5, 6, 7, 3, 8 and the 64-byte hwID. Turin: structVersion 1, fmcSPL first, no SPL 4, and an
/// 8-byte hwID (observed on real KDS certificates in shared/testdata/snp/*/vcek.der).
pub(crate) fn vcek_extensions(
    product: Product,
    tcb: &TcbParts,
    chip_id: &[u8],
) -> Result<Vec<Extension>, SimError> {
    use amd_oid::*;
    let hwid = chip_id
        .get(..product.hwid_len())
        .ok_or_else(|| SimError::InvalidOption {
            option: "chip_id",
            detail: format!(
                "{} bytes, want at least {}",
                chip_id.len(),
                product.hwid_len()
            ),
        })?;
    let product_name = Ia5StringRef::new(cert_product_name(product))
        .and_then(|s| s.to_der())
        .map_err(|e| SimError::Encode {
            what: "VCEK productName",
            detail: e.to_string(),
        })?;
    let int = |oid: ObjectIdentifier, v: u8| ext(oid, false, &v, "VCEK SPL extension");
    let mut out = Vec::with_capacity(12);
    match product {
        Product::Turin => {
            out.push(int(STRUCT_VERSION, 1)?);
            out.push(raw_ext(PRODUCT_NAME, product_name)?);
            out.push(int(FMC_SPL, tcb.fmc.unwrap_or(0))?);
            out.push(int(BL_SPL, tcb.bootloader)?);
            out.push(int(TEE_SPL, tcb.tee)?);
            out.push(int(SNP_SPL, tcb.snp)?);
            out.push(int(SPL_5, 0)?);
            out.push(int(SPL_6, 0)?);
            out.push(int(SPL_7, 0)?);
            out.push(int(UCODE_SPL, tcb.microcode)?);
        }
        Product::Milan | Product::Genoa => {
            out.push(int(STRUCT_VERSION, 0)?);
            out.push(raw_ext(PRODUCT_NAME, product_name)?);
            out.push(int(BL_SPL, tcb.bootloader)?);
            out.push(int(TEE_SPL, tcb.tee)?);
            out.push(int(SPL_4, 0)?);
            out.push(int(SPL_5, 0)?);
            out.push(int(SPL_6, 0)?);
            out.push(int(SPL_7, 0)?);
            out.push(int(SNP_SPL, tcb.snp)?);
            out.push(int(UCODE_SPL, tcb.microcode)?);
        }
    }
    out.push(raw_ext(HW_ID, hwid.to_vec())?);
    Ok(out)
}

/// AMD's name layout: OU, C, L, ST, O, CN, each a single-valued RDN, UTF8String except the country.
fn amd_style_name(common_name: &str) -> Result<Name, SimError> {
    let rdn = |oid: ObjectIdentifier,
               tag: Tag,
               value: &str|
     -> Result<RelativeDistinguishedName, SimError> {
        let enc = |e: der::Error| SimError::Encode {
            what: "certificate name",
            detail: e.to_string(),
        };
        let value = Any::new(tag, value.as_bytes()).map_err(enc)?;
        let set = SetOfVec::try_from(vec![AttributeTypeAndValue { oid, value }]).map_err(enc)?;
        Ok(RelativeDistinguishedName(set))
    };
    Ok(RdnSequence(vec![
        rdn(OU, Tag::Utf8String, "Engineering")?,
        rdn(C, Tag::PrintableString, "US")?,
        rdn(L, Tag::Utf8String, "Santa Clara")?,
        rdn(ST, Tag::Utf8String, "CA")?,
        rdn(O, Tag::Utf8String, SIMULATED_ORGANIZATION)?,
        rdn(CN, Tag::Utf8String, common_name)?,
    ]))
}

fn tbs(
    serial: &[u8],
    issuer: Name,
    subject: Name,
    window: Window,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    extensions: Vec<Extension>,
    pss_params: &[u8],
) -> Result<TbsCertificate, SimError> {
    let serial_number = SerialNumber::new(serial).map_err(|e| SimError::Encode {
        what: "serial number",
        detail: e.to_string(),
    })?;
    Ok(TbsCertificate {
        version: Version::V3,
        serial_number,
        signature: pss_algorithm(pss_params)?,
        issuer,
        validity: Validity {
            not_before: x509_time(window.not_before)?,
            not_after: x509_time(window.not_after)?,
        },
        subject,
        subject_public_key_info,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    })
}

fn sign_cert(
    tbs_certificate: TbsCertificate,
    issuer_key: &RsaPrivateKey,
    pss_params: &[u8],
    what: &'static str,
) -> Result<Vec<u8>, SimError> {
    let tbs_der = tbs_certificate.to_der().map_err(|e| SimError::Encode {
        what,
        detail: e.to_string(),
    })?;
    let signer = BlindedSigningKey::<Sha384>::new_with_salt_len(issuer_key.clone(), PSS_SALT_LEN);
    let signature = signer
        .try_sign_with_rng(&mut OsRng, &tbs_der)
        .map_err(|e| SimError::Sign {
            what,
            detail: e.to_string(),
        })?
        .to_vec();
    let cert = Certificate {
        tbs_certificate,
        signature_algorithm: pss_algorithm(pss_params)?,
        signature: BitString::from_bytes(&signature).map_err(|e| SimError::Encode {
            what,
            detail: e.to_string(),
        })?,
    };
    cert.to_der().map_err(|e| SimError::Encode {
        what,
        detail: e.to_string(),
    })
}

fn pss_algorithm(params: &[u8]) -> Result<AlgorithmIdentifierOwned, SimError> {
    let parameters = Any::from_der(params).map_err(|e| SimError::Encode {
        what: "RSASSA-PSS parameters",
        detail: e.to_string(),
    })?;
    Ok(AlgorithmIdentifierOwned {
        oid: RSASSA_PSS,
        parameters: Some(parameters),
    })
}

fn rsa_spki(
    key: &RsaPrivateKey,
    what: &'static str,
) -> Result<SubjectPublicKeyInfoOwned, SimError> {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| SimError::Encode {
            what,
            detail: e.to_string(),
        })?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(|e| SimError::Encode {
        what,
        detail: e.to_string(),
    })
}

/// Key identifier per RFC 7093 method 1 (leftmost 160 bits of the SHA-256 of the subjectPublicKey bits).
fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Result<Vec<u8>, SimError> {
    let digest = Sha256::digest(spki.subject_public_key.raw_bytes());
    digest
        .get(..20)
        .map(<[u8]>::to_vec)
        .ok_or(SimError::Encode {
            what: "key identifier",
            detail: "short digest".into(),
        })
}

fn octets(bytes: &[u8]) -> Result<OctetString, SimError> {
    OctetString::new(bytes).map_err(|e| SimError::Encode {
        what: "octet string",
        detail: e.to_string(),
    })
}

fn ext(
    oid: ObjectIdentifier,
    critical: bool,
    value: &impl Encode,
    what: &'static str,
) -> Result<Extension, SimError> {
    let der = value.to_der().map_err(|e| SimError::Encode {
        what,
        detail: e.to_string(),
    })?;
    let mut e = raw_ext(oid, der)?;
    e.critical = critical;
    Ok(e)
}

/// An extension whose extnValue holds `value` as is (AMD's hwID is raw bytes, not DER).
fn raw_ext(extn_id: ObjectIdentifier, value: Vec<u8>) -> Result<Extension, SimError> {
    let extn_value = OctetString::new(value).map_err(|e| SimError::Encode {
        what: "extension value",
        detail: e.to_string(),
    })?;
    Ok(Extension {
        extn_id,
        critical: false,
        extn_value,
    })
}

/// RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 on.
fn x509_time(unix_secs: u64) -> Result<Time, SimError> {
    const Y2050: u64 = 2_524_608_000;
    let d = Duration::from_secs(unix_secs);
    let enc = |e: der::Error| SimError::Encode {
        what: "certificate time",
        detail: e.to_string(),
    };
    if unix_secs < Y2050 {
        Ok(Time::UtcTime(UtcTime::from_unix_duration(d).map_err(enc)?))
    } else {
        Ok(Time::GeneralTime(
            GeneralizedTime::from_unix_duration(d).map_err(enc)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use der::Tagged;

    fn testdata(rel: &str) -> std::path::PathBuf {
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata"
        ))
        .join(rel)
    }

    fn real_cert(rel: &str) -> Certificate {
        let bytes = std::fs::read(testdata(rel)).unwrap();
        if rel.ends_with(".pem") {
            use der::DecodePem;
            Certificate::from_pem(&bytes).unwrap()
        } else {
            Certificate::from_der(&bytes).unwrap()
        }
    }

    #[test]
    fn pss_parameters_match_amd_bytes() {
        let ark = real_cert("vendor-roots/amd/milan/ark.pem");
        let vcek = real_cert("snp/oak-milan-v3/vcek.der");
        assert_eq!(
            ark.signature_algorithm,
            pss_algorithm(PSS_PARAMS_WITH_TRAILER).unwrap()
        );
        assert_eq!(
            ark.tbs_certificate.signature,
            pss_algorithm(PSS_PARAMS_WITH_TRAILER).unwrap()
        );
        assert_eq!(
            vcek.signature_algorithm,
            pss_algorithm(PSS_PARAMS_NO_TRAILER).unwrap()
        );
    }

    #[test]
    fn name_layout_matches_amd_except_organization() {
        let ark = real_cert("vendor-roots/amd/milan/ark.pem");
        let ours = amd_style_name("ARK-Milan").unwrap();
        let theirs = &ark.tbs_certificate.subject;
        assert_eq!(ours.0.len(), theirs.0.len());
        for (a, b) in ours.0.iter().zip(theirs.0.iter()) {
            let (a, b) = (a.0.get(0).unwrap(), b.0.get(0).unwrap());
            assert_eq!(a.oid, b.oid);
            assert_eq!(a.value.tag(), b.value.tag());
            if a.oid != O {
                assert_eq!(a.value.value(), b.value.value());
            } else {
                assert_eq!(a.value.value(), SIMULATED_ORGANIZATION.as_bytes());
            }
        }
    }

    /// Our extensions for the TCB and chip of a real VCEK must equal that VCEK's extensions exactly.
    fn assert_extensions_match_real(rel: &str, product: Product, tcb: TcbParts) {
        let real = real_cert(rel);
        let real_ext = real.tbs_certificate.extensions.unwrap();
        let hwid = real_ext
            .iter()
            .find(|e| e.extn_id == amd_oid::HW_ID)
            .unwrap()
            .extn_value
            .as_bytes();
        let mut chip_id = [0u8; 64];
        chip_id[..hwid.len()].copy_from_slice(hwid);
        let ours = vcek_extensions(product, &tcb, &chip_id).unwrap();
        assert_eq!(ours, real_ext);
    }

    #[test]
    fn milan_vcek_extensions_equal_real_kds_cert() {
        // oak-milan-v3: reported TCB bl 4, tee 0, snp 24, ucode 219.
        let tcb = TcbParts {
            fmc: None,
            bootloader: 4,
            tee: 0,
            snp: 24,
            microcode: 219,
        };
        assert_extensions_match_real("snp/oak-milan-v3/vcek.der", Product::Milan, tcb);
    }

    #[test]
    fn turin_vcek_extensions_equal_real_kds_cert() {
        // oak-turin-v5: reported TCB fmc 0, bl 1, tee 0, snp 2, ucode 0x47.
        let tcb = TcbParts {
            fmc: Some(0),
            bootloader: 1,
            tee: 0,
            snp: 2,
            microcode: 0x47,
        };
        assert_extensions_match_real("snp/oak-turin-v5/vcek.der", Product::Turin, tcb);
    }

    #[test]
    fn times_switch_to_generalized_in_2050() {
        assert!(matches!(
            x509_time(2_524_607_999).unwrap(),
            Time::UtcTime(_)
        ));
        assert!(matches!(
            x509_time(2_524_608_000).unwrap(),
            Time::GeneralTime(_)
        ));
    }
}

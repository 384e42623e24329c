//! Certificates and CRLs of the simulated Intel root set, in Intel's own formats.
//!
//! They copy what Intel's PCS serves where a verifier looks: X.509 v3, ECDSA P-256 with SHA-256
//! everywhere, names CN, O, L, ST, C (UTF8String, the country PrintableString), the extension order
//! AKI, CRL distribution points, SKI, key usage, basic constraints, and in the PCK leaf Intel's SGX
//! extension (1.2.840.113741.1.13.1) with the layout of a PCK certificate issued by the "Intel SGX PCK
//! Platform CA" (SGX type Scalable, platform instance ID and configuration), as in the real quote of
//! `shared/testdata/tdx/dq-b0c06f-v4`. The common names are Intel's, so that code that tells the
//! platform CA from the processor CA by name treats both alike; the organisation says the set is
//! simulated, and the CRL distribution points name a host under `.invalid`, so nothing is ever fetched
//! from Intel for them.

use const_oid::ObjectIdentifier;
use der::asn1::{Any, BitString, GeneralizedTime, Ia5String, OctetString, SetOfVec, UtcTime};
use der::{Decode, Encode, Tag};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use std::time::Duration;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, CrlNumber, CrlReason,
    KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

use crate::sim::SimError;

/// The organisation name of every simulated certificate and CRL issuer: whoever looks at a chain sees
/// at once that it does not come from Intel.
pub const SIMULATED_INTEL_ORGANIZATION: &str = "SIMULATED TEST ROOT - NOT INTEL";

pub(crate) const ROOT_CN: &str = "Intel SGX Root CA";
pub(crate) const PLATFORM_CA_CN: &str = "Intel SGX PCK Platform CA";
pub(crate) const TCB_SIGNING_CN: &str = "Intel SGX TCB Signing";
pub(crate) const PCK_CN: &str = "Intel SGX PCK Certificate";

/// Where Intel's certificates point for their CRLs, with the host replaced by a reserved name.
const ROOT_CRL_URI: &str = "https://simulated-intel-pcs.invalid/IntelSGXRootCA.der";
const PCK_CRL_URI: &str =
    "https://simulated-intel-pcs.invalid/sgx/certification/v4/pckcrl?ca=platform&encoding=der";

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const L: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.7");
const ST: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.8");
const C: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");

const EXT_SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const EXT_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const EXT_CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");
const EXT_CRL_REASON: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.21");
const EXT_CRL_DP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.31");
const EXT_AKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");

/// Intel's SGX PCK certificate extension (Intel SGX PCK Certificate and CRL Profile Specification).
pub(crate) mod sgx_oid {
    use const_oid::ObjectIdentifier;
    pub(crate) const EXTENSION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
    pub(crate) const PPID: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.1");
    pub(crate) const TCB: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.2");
    pub(crate) const PCESVN: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.2.17");
    pub(crate) const CPUSVN: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.2.18");
    pub(crate) const PCE_ID: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.3");
    pub(crate) const FMSPC: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.4");
    pub(crate) const SGX_TYPE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.5");
    pub(crate) const PLATFORM_INSTANCE_ID: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.6");
    pub(crate) const CONFIGURATION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.7");
    pub(crate) const DYNAMIC_PLATFORM: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.7.1");
    pub(crate) const CACHED_KEYS: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.7.2");
    pub(crate) const SMT_ENABLED: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.7.3");

    /// `1.2.840.113741.1.13.1.2.<n>`: SGX TCB component `n` (1..=16).
    pub(crate) fn tcb_component(n: usize) -> Result<ObjectIdentifier, const_oid::Error> {
        ObjectIdentifier::new(&format!("{TCB}.{n}"))
    }
}

/// SGX type "Scalable", what the PCK Platform CA certifies (TDX-capable Xeon platforms).
const SGX_TYPE_SCALABLE: u8 = 1;

/// The platform facts the PCK certificate's SGX extension carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PckPlatform {
    pub(crate) ppid: [u8; 16],
    pub(crate) sgx_components: [u8; 16],
    pub(crate) pcesvn: u16,
    pub(crate) cpusvn: [u8; 16],
    pub(crate) pce_id: [u8; 2],
    pub(crate) fmspc: [u8; 6],
    pub(crate) platform_instance_id: [u8; 16],
}

/// The validity window of one certificate or CRL, in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) not_before: u64,
    pub(crate) not_after: u64,
}

/// A certificate to issue: who, for which key, for how long, with which role-specific extensions.
struct CertSpec<'a> {
    serial: &'a [u8],
    issuer_cn: &'a str,
    subject_cn: &'a str,
    window: Window,
    subject_key: &'a VerifyingKey,
    issuer_key: &'a SigningKey,
    crl_uri: &'a str,
    key_usage: KeyUsage,
    basic_constraints: BasicConstraints,
    extra: Vec<Extension>,
    what: &'static str,
}

/// The self-signed simulated "Intel SGX Root CA" (path length 1, as Intel's).
pub(crate) fn root_cert(root: &SigningKey, window: Window) -> Result<Vec<u8>, SimError> {
    let public = *root.verifying_key();
    let serial = ca_serial(&public)?;
    issue(CertSpec {
        serial: &serial,
        issuer_cn: ROOT_CN,
        subject_cn: ROOT_CN,
        window,
        subject_key: &public,
        issuer_key: root,
        crl_uri: ROOT_CRL_URI,
        key_usage: KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
        basic_constraints: BasicConstraints {
            ca: true,
            path_len_constraint: Some(1),
        },
        extra: Vec::new(),
        what: "root CA certificate",
    })
}

/// The "Intel SGX PCK Platform CA", signed by the root; it issues PCK certificates and the PCK CRL.
pub(crate) fn platform_ca_cert(
    ca: &VerifyingKey,
    root: &SigningKey,
    window: Window,
) -> Result<Vec<u8>, SimError> {
    let serial = ca_serial(ca)?;
    issue(CertSpec {
        serial: &serial,
        issuer_cn: ROOT_CN,
        subject_cn: PLATFORM_CA_CN,
        window,
        subject_key: ca,
        issuer_key: root,
        crl_uri: ROOT_CRL_URI,
        key_usage: KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
        basic_constraints: BasicConstraints {
            ca: true,
            path_len_constraint: Some(0),
        },
        extra: Vec::new(),
        what: "PCK platform CA certificate",
    })
}

/// The "Intel SGX TCB Signing" certificate, signed by the root; its key signs TCB info and QE identity.
pub(crate) fn tcb_signing_cert(
    tcb: &VerifyingKey,
    root: &SigningKey,
    window: Window,
) -> Result<Vec<u8>, SimError> {
    let serial = ca_serial(tcb)?;
    issue(CertSpec {
        serial: &serial,
        issuer_cn: ROOT_CN,
        subject_cn: TCB_SIGNING_CN,
        window,
        subject_key: tcb,
        issuer_key: root,
        crl_uri: ROOT_CRL_URI,
        key_usage: KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation),
        basic_constraints: BasicConstraints {
            ca: false,
            path_len_constraint: None,
        },
        extra: Vec::new(),
        what: "TCB signing certificate",
    })
}

/// The PCK leaf ("Intel SGX PCK Certificate"), signed by the platform CA, with the SGX extension.
pub(crate) fn pck_cert(
    pck: &VerifyingKey,
    ca: &SigningKey,
    platform: &PckPlatform,
    serial: &[u8],
    window: Window,
) -> Result<Vec<u8>, SimError> {
    let sgx = raw_ext(sgx_oid::EXTENSION, sgx_extension(platform)?)?;
    issue(CertSpec {
        serial,
        issuer_cn: PLATFORM_CA_CN,
        subject_cn: PCK_CN,
        window,
        subject_key: pck,
        issuer_key: ca,
        crl_uri: PCK_CRL_URI,
        key_usage: KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation),
        basic_constraints: BasicConstraints {
            ca: false,
            path_len_constraint: None,
        },
        extra: vec![sgx],
        what: "PCK certificate",
    })
}

/// The DER value of the SGX extension: SEQUENCE OF SEQUENCE { OID, value } in Intel's order — PPID,
/// TCB (16 component SVNs, PCESVN, CPUSVN), PCE-ID, FMSPC, SGX type, platform instance ID,
/// configuration { dynamicPlatform, cachedKeys, smtEnabled }.
pub(crate) fn sgx_extension(p: &PckPlatform) -> Result<Vec<u8>, SimError> {
    let enc = |e: der::Error| SimError::Encode {
        what: "PCK SGX extension",
        detail: e.to_string(),
    };
    let oid_err = |e: const_oid::Error| SimError::Encode {
        what: "PCK SGX extension",
        detail: e.to_string(),
    };
    let octets = |b: &[u8]| -> Result<Vec<u8>, SimError> {
        OctetString::new(b).and_then(|o| o.to_der()).map_err(enc)
    };
    let pair = |oid: ObjectIdentifier, value_der: Vec<u8>| -> Result<Vec<u8>, SimError> {
        let mut inner = oid.to_der().map_err(enc)?;
        inner.extend_from_slice(&value_der);
        sequence(&inner)
    };

    let mut tcb = Vec::new();
    for (i, svn) in p.sgx_components.iter().enumerate() {
        let oid = sgx_oid::tcb_component(i + 1).map_err(oid_err)?;
        tcb.extend(pair(oid, svn.to_der().map_err(enc)?)?);
    }
    tcb.extend(pair(sgx_oid::PCESVN, p.pcesvn.to_der().map_err(enc)?)?);
    tcb.extend(pair(sgx_oid::CPUSVN, octets(&p.cpusvn)?)?);

    let sgx_type = Any::new(Tag::Enumerated, [SGX_TYPE_SCALABLE])
        .and_then(|a| a.to_der())
        .map_err(enc)?;
    let mut config = Vec::new();
    for oid in [
        sgx_oid::DYNAMIC_PLATFORM,
        sgx_oid::CACHED_KEYS,
        sgx_oid::SMT_ENABLED,
    ] {
        config.extend(pair(oid, true.to_der().map_err(enc)?)?);
    }

    let mut out = Vec::new();
    out.extend(pair(sgx_oid::PPID, octets(&p.ppid)?)?);
    out.extend(pair(sgx_oid::TCB, sequence(&tcb)?)?);
    out.extend(pair(sgx_oid::PCE_ID, octets(&p.pce_id)?)?);
    out.extend(pair(sgx_oid::FMSPC, octets(&p.fmspc)?)?);
    out.extend(pair(sgx_oid::SGX_TYPE, sgx_type)?);
    out.extend(pair(
        sgx_oid::PLATFORM_INSTANCE_ID,
        octets(&p.platform_instance_id)?,
    )?);
    out.extend(pair(sgx_oid::CONFIGURATION, sequence(&config)?)?);
    sequence(&out)
}

/// A DER SEQUENCE around already-encoded contents.
fn sequence(contents: &[u8]) -> Result<Vec<u8>, SimError> {
    Any::new(Tag::Sequence, contents)
        .and_then(|a| a.to_der())
        .map_err(|e| SimError::Encode {
            what: "DER sequence",
            detail: e.to_string(),
        })
}

/// A CRL as Intel's PCS serves it: v2, ECDSA-SHA256, CRL number 1 and the issuer's AKI, and one entry
/// (reason keyCompromise, as in Intel's PCK CRLs) per revoked serial; no entry list when empty.
pub(crate) fn crl(
    issuer: &SigningKey,
    issuer_cn: &str,
    revoked_serials: &[&[u8]],
    window: Window,
    what: &'static str,
) -> Result<Vec<u8>, SimError> {
    let enc = |e: der::Error| SimError::Encode {
        what,
        detail: e.to_string(),
    };
    let aki = key_identifier(issuer.verifying_key())?;
    let mut revoked = Vec::with_capacity(revoked_serials.len());
    for serial in revoked_serials {
        revoked.push(RevokedCert {
            serial_number: SerialNumber::new(serial).map_err(enc)?,
            revocation_date: x509_time(window.not_before)?,
            crl_entry_extensions: Some(vec![ext(
                EXT_CRL_REASON,
                false,
                &CrlReason::KeyCompromise,
                what,
            )?]),
        });
    }
    let tbs = TbsCertList {
        version: Version::V2,
        signature: ecdsa_sha256(),
        issuer: intel_style_name(issuer_cn)?,
        this_update: x509_time(window.not_before)?,
        next_update: Some(x509_time(window.not_after)?),
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: Some(vec![
            ext(
                EXT_CRL_NUMBER,
                false,
                &CrlNumber(der::asn1::Uint::new(&[1]).map_err(enc)?),
                what,
            )?,
            ext(
                EXT_AKI,
                false,
                &AuthorityKeyIdentifier {
                    key_identifier: Some(octet_string(&aki)?),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                },
                what,
            )?,
        ]),
    };
    let tbs_der = tbs.to_der().map_err(enc)?;
    let signature = sign_der(issuer, &tbs_der, what)?;
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: ecdsa_sha256(),
        signature: BitString::from_bytes(&signature).map_err(enc)?,
    }
    .to_der()
    .map_err(enc)
}

fn issue(spec: CertSpec<'_>) -> Result<Vec<u8>, SimError> {
    let what = spec.what;
    let enc = |e: der::Error| SimError::Encode {
        what,
        detail: e.to_string(),
    };
    let spki = p256_spki(spec.subject_key, what)?;
    let ski = key_identifier(spec.subject_key)?;
    let aki = key_identifier(spec.issuer_key.verifying_key())?;
    let uri = Ia5String::new(spec.crl_uri).map_err(enc)?;
    let crl_dp = CrlDistributionPoints(vec![DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![
            GeneralName::UniformResourceIdentifier(uri),
        ])),
        reasons: None,
        crl_issuer: None,
    }]);
    let mut extensions = vec![
        ext(
            EXT_AKI,
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(octet_string(&aki)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            what,
        )?,
        ext(EXT_CRL_DP, false, &crl_dp, what)?,
        ext(
            EXT_SKI,
            false,
            &SubjectKeyIdentifier(octet_string(&ski)?),
            what,
        )?,
        ext(EXT_KEY_USAGE, true, &spec.key_usage, what)?,
        ext(EXT_BASIC_CONSTRAINTS, true, &spec.basic_constraints, what)?,
    ];
    extensions.extend(spec.extra);
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(spec.serial).map_err(enc)?,
        signature: ecdsa_sha256(),
        issuer: intel_style_name(spec.issuer_cn)?,
        validity: Validity {
            not_before: x509_time(spec.window.not_before)?,
            not_after: x509_time(spec.window.not_after)?,
        },
        subject: intel_style_name(spec.subject_cn)?,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der().map_err(enc)?;
    let signature = sign_der(spec.issuer_key, &tbs_der, what)?;
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha256(),
        signature: BitString::from_bytes(&signature).map_err(enc)?,
    }
    .to_der()
    .map_err(enc)
}

/// Intel's name layout: CN, O, L, ST, C, each a single-valued RDN, UTF8String except the country.
pub(crate) fn intel_style_name(common_name: &str) -> Result<Name, SimError> {
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
        rdn(CN, Tag::Utf8String, common_name)?,
        rdn(O, Tag::Utf8String, SIMULATED_INTEL_ORGANIZATION)?,
        rdn(L, Tag::Utf8String, "Santa Clara")?,
        rdn(ST, Tag::Utf8String, "CA")?,
        rdn(C, Tag::PrintableString, "US")?,
    ]))
}

/// ECDSA P-256 / SHA-256 signature, DER-encoded (as X.509 and CRLs carry it).
fn sign_der(key: &SigningKey, message: &[u8], what: &'static str) -> Result<Vec<u8>, SimError> {
    let signature: Signature = key.try_sign(message).map_err(|e| SimError::Sign {
        what,
        detail: e.to_string(),
    })?;
    Ok(signature.to_der().as_bytes().to_vec())
}

/// ECDSA P-256 / SHA-256 signature as raw `r || s` (32 bytes each, big-endian), as Intel's quote,
/// QE report and TCB info / QE identity JSON carry it.
pub(crate) fn sign_raw(
    key: &SigningKey,
    message: &[u8],
    what: &'static str,
) -> Result<[u8; 64], SimError> {
    let signature: Signature = key.try_sign(message).map_err(|e| SimError::Sign {
        what,
        detail: e.to_string(),
    })?;
    Ok(signature.to_bytes().into())
}

fn ecdsa_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA256,
        parameters: None,
    }
}

fn p256_spki(
    key: &VerifyingKey,
    what: &'static str,
) -> Result<SubjectPublicKeyInfoOwned, SimError> {
    let der = key.to_public_key_der().map_err(|e| SimError::Encode {
        what,
        detail: e.to_string(),
    })?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(|e| SimError::Encode {
        what,
        detail: e.to_string(),
    })
}

/// Key identifier per RFC 7093 method 1 (leftmost 160 bits of the SHA-256 of the subjectPublicKey bits).
pub(crate) fn key_identifier(key: &VerifyingKey) -> Result<[u8; 20], SimError> {
    let point = key.to_encoded_point(false);
    let digest = Sha256::digest(point.as_bytes());
    digest
        .get(..20)
        .and_then(|d| <[u8; 20]>::try_from(d).ok())
        .ok_or(SimError::Encode {
            what: "key identifier",
            detail: "short digest".into(),
        })
}

/// Intel numbers its CA and TCB signing certificates with their key identifier; so do we, with the top
/// bit cleared so that the serial stays a positive 20-byte INTEGER.
fn ca_serial(key: &VerifyingKey) -> Result<[u8; 20], SimError> {
    let mut serial = key_identifier(key)?;
    if let Some(first) = serial.first_mut() {
        *first = (*first & 0x7f) | 0x01;
    }
    Ok(serial)
}

fn octet_string(bytes: &[u8]) -> Result<OctetString, SimError> {
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
pub(crate) fn x509_time(unix_secs: u64) -> Result<Time, SimError> {
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

    /// The PCK leaf of the real quote (certification data type 5 inside type 6), parsed by hand here so
    /// that this test does not depend on the verifier's quote parser.
    fn real_pck() -> Certificate {
        let quote = std::fs::read(testdata("tdx/dq-b0c06f-v4/quote.bin")).unwrap();
        let start = quote
            .windows(27)
            .position(|w| w == b"-----BEGIN CERTIFICATE-----")
            .unwrap();
        let end = start
            + quote[start..]
                .windows(25)
                .position(|w| w == b"-----END CERTIFICATE-----")
                .unwrap()
            + 25;
        use der::DecodePem;
        Certificate::from_pem(&quote[start..end]).unwrap()
    }

    fn real_platform() -> PckPlatform {
        PckPlatform {
            ppid: hex::decode("811DCA2A26B952E85BB6448B097BA4FD")
                .unwrap()
                .try_into()
                .unwrap(),
            sgx_components: [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
            pcesvn: 11,
            cpusvn: [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
            pce_id: [0, 0],
            fmspc: [0xB0, 0xC0, 0x6F, 0, 0, 0],
            platform_instance_id: hex::decode("07828474603E7019DC930775FFE8CDD2")
                .unwrap()
                .try_into()
                .unwrap(),
        }
    }

    #[test]
    fn sgx_extension_equals_real_pck_bytes() {
        let real = real_pck();
        let ext = real
            .tbs_certificate
            .extensions
            .unwrap()
            .into_iter()
            .find(|e| e.extn_id == sgx_oid::EXTENSION)
            .unwrap();
        assert!(!ext.critical);
        assert_eq!(
            hex::encode(sgx_extension(&real_platform()).unwrap()),
            hex::encode(ext.extn_value.as_bytes())
        );
    }

    #[test]
    fn name_layout_matches_intel_except_organization() {
        let real = real_pck();
        for (ours, theirs) in [
            (
                intel_style_name(PCK_CN).unwrap(),
                &real.tbs_certificate.subject,
            ),
            (
                intel_style_name(PLATFORM_CA_CN).unwrap(),
                &real.tbs_certificate.issuer,
            ),
        ] {
            assert_eq!(ours.0.len(), theirs.0.len());
            for (a, b) in ours.0.iter().zip(theirs.0.iter()) {
                let (a, b) = (a.0.get(0).unwrap(), b.0.get(0).unwrap());
                assert_eq!(a.oid, b.oid);
                assert_eq!(a.value.tag(), b.value.tag());
                if a.oid == O {
                    assert_eq!(a.value.value(), SIMULATED_INTEL_ORGANIZATION.as_bytes());
                } else {
                    assert_eq!(a.value.value(), b.value.value());
                }
            }
        }
    }

    #[test]
    fn extension_order_and_criticality_match_real_pck() {
        let real = real_pck();
        let root = SigningKey::random(&mut rand::rngs::OsRng);
        let ca = SigningKey::random(&mut rand::rngs::OsRng);
        let pck = SigningKey::random(&mut rand::rngs::OsRng);
        let _ = root;
        let der = pck_cert(
            pck.verifying_key(),
            &ca,
            &real_platform(),
            &[0x3C; 20],
            Window {
                not_before: 1_738_884_351,
                not_after: 1_960_000_000,
            },
        )
        .unwrap();
        let ours = Certificate::from_der(&der).unwrap();
        let shape = |c: &Certificate| -> Vec<(ObjectIdentifier, bool)> {
            c.tbs_certificate
                .extensions
                .as_ref()
                .unwrap()
                .iter()
                .map(|e| (e.extn_id, e.critical))
                .collect()
        };
        assert_eq!(shape(&ours), shape(&real));
        assert_eq!(ours.signature_algorithm, real.signature_algorithm);
        assert_eq!(
            ours.tbs_certificate.subject_public_key_info.algorithm,
            real.tbs_certificate.subject_public_key_info.algorithm
        );
        // Key usage and basic constraints are byte-identical to Intel's.
        for oid in [EXT_KEY_USAGE, EXT_BASIC_CONSTRAINTS] {
            let get = |c: &Certificate| {
                c.tbs_certificate
                    .extensions
                    .as_ref()
                    .unwrap()
                    .iter()
                    .find(|e| e.extn_id == oid)
                    .unwrap()
                    .extn_value
                    .clone()
            };
            assert_eq!(get(&ours), get(&real));
        }
    }

    #[test]
    fn raw_signature_is_r_then_s() {
        use p256::ecdsa::signature::Verifier;
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let raw = sign_raw(&key, b"msg", "test").unwrap();
        let sig = Signature::from_slice(&raw).unwrap();
        assert!(key.verifying_key().verify(b"msg", &sig).is_ok());
        assert!(key.verifying_key().verify(b"msh", &sig).is_err());
    }

    #[test]
    fn ca_serial_is_positive_and_20_bytes() {
        for _ in 0..16 {
            let key = SigningKey::random(&mut rand::rngs::OsRng);
            let s = ca_serial(key.verifying_key()).unwrap();
            assert!(s[0] & 0x80 == 0 && s[0] != 0);
            let sn = SerialNumber::<x509_cert::certificate::Rfc5280>::new(&s).unwrap();
            assert_eq!(sn.as_bytes().len(), 20);
        }
    }
}

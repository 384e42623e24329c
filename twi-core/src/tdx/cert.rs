//! Intel's X.509 pieces for DCAP: P-256 certificates and CRLs signed with ECDSA-with-SHA256, PEM
//! chains, and the SGX extension of a PCK certificate (FMSPC, PCE-ID, TCB).
//!
//! Signatures are checked over the `tbsCertificate` / `tbsCertList` bytes exactly as received.

use std::collections::HashSet;

use const_oid::ObjectIdentifier;
use der::asn1::OctetStringRef;
use der::{Any, Decode, Reader, SliceReader, Tag, Tagged};
use p256::ecdsa::signature::Verifier as _;
use sha2::{Digest, Sha256};
use x509_cert::crl::CertificateList;
use x509_cert::Certificate;

use crate::Error;

/// Certificates larger than this are refused (Intel's are under 2 KB).
pub const MAX_CERT_LEN: usize = 16 * 1024;
/// CRLs larger than this are refused (Intel's PCK CRLs are tens of KB at most).
pub const MAX_CRL_LEN: usize = 4 * 1024 * 1024;
/// PEM chains with more certificates than this are refused (Intel's have 2 or 3).
pub const MAX_CHAIN_CERTS: usize = 4;

/// Intel's SGX extension OIDs in a PCK certificate (Intel SGX PCK Certificate and CRL Profile).
pub mod oid {
    use const_oid::ObjectIdentifier;

    /// The SGX extension: a SEQUENCE of (OID, value) pairs.
    pub const SGX_EXTENSION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
    /// PPID (OCTET STRING, 16).
    pub const PPID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.1");
    /// TCB: SEQUENCE of (OID .2.1..16 INTEGER component SVNs, .2.17 INTEGER PCESVN,
    /// .2.18 OCTET STRING CPUSVN).
    pub const TCB: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.2");
    /// PCESVN inside TCB.
    pub const PCESVN: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.2.17");
    /// CPUSVN inside TCB.
    pub const CPUSVN: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.2.18");
    /// PCE-ID (OCTET STRING, 2).
    pub const PCEID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.3");
    /// FMSPC (OCTET STRING, 6).
    pub const FMSPC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1.4");
    /// ecdsa-with-SHA256.
    pub const ECDSA_WITH_SHA256: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The DER of the first element (the signed part) of a SEQUENCE, as received.
fn signed_part(der: &[u8]) -> der::Result<&[u8]> {
    let mut r = SliceReader::new(der)?;
    let outer = der::Header::decode(&mut r)?;
    outer.tag.assert_eq(Tag::Sequence)?;
    r.tlv_bytes()
}

fn unix(t: x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// A P-256 public key from an SPKI.
pub(crate) fn p256_key(
    spki: &spki::SubjectPublicKeyInfoOwned,
) -> Result<p256::ecdsa::VerifyingKey, String> {
    let bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or("public key BIT STRING has unused bits")?;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
        .map_err(|_| "public key is not a P-256 point".to_owned())
}

/// Verifies an ECDSA-with-SHA256 DER signature by `key` over `msg`.
fn verify_ecdsa_der(
    key: &p256::ecdsa::VerifyingKey,
    alg: &spki::AlgorithmIdentifierOwned,
    msg: &[u8],
    sig_der: &[u8],
) -> Result<(), String> {
    if alg.oid != oid::ECDSA_WITH_SHA256 {
        return Err(format!(
            "signature algorithm {}, want ecdsa-with-SHA256",
            alg.oid
        ));
    }
    let sig = p256::ecdsa::Signature::from_der(sig_der)
        .map_err(|_| "signature is not a DER ECDSA signature".to_owned())?;
    key.verify(msg, &sig)
        .map_err(|_| "signature does not verify".to_owned())
}

/// Verifies a raw `r || s` ECDSA P-256 / SHA-256 signature.
pub(crate) fn verify_raw(
    key: &p256::ecdsa::VerifyingKey,
    msg: &[u8],
    sig: &[u8; 64],
) -> Result<(), String> {
    let sig =
        p256::ecdsa::Signature::from_slice(sig).map_err(|_| "r or s out of range".to_owned())?;
    key.verify(msg, &sig)
        .map_err(|_| "signature does not verify".to_owned())
}

/// A parsed certificate plus the bytes its issuer signed.
#[derive(Clone, Debug)]
pub(crate) struct X509 {
    pub(crate) sha256: [u8; 32],
    pub(crate) cert: Certificate,
    tbs: Vec<u8>,
}

impl X509 {
    pub(crate) fn from_der(der: &[u8], what: &'static str) -> Result<X509, Error> {
        if der.len() > MAX_CERT_LEN {
            return Err(Error::malformed(
                what,
                format!("{} bytes, cap {MAX_CERT_LEN}", der.len()),
            ));
        }
        let cert = Certificate::from_der(der).map_err(|e| Error::malformed(what, e))?;
        let tbs = signed_part(der)
            .map_err(|e| Error::malformed(what, e))?
            .to_vec();
        Ok(X509 {
            sha256: sha256(der),
            cert,
            tbs,
        })
    }

    pub(crate) fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }
    pub(crate) fn not_before(&self) -> i64 {
        unix(self.cert.tbs_certificate.validity.not_before)
    }
    pub(crate) fn not_after(&self) -> i64 {
        unix(self.cert.tbs_certificate.validity.not_after)
    }
    pub(crate) fn serial(&self) -> &[u8] {
        self.cert.tbs_certificate.serial_number.as_bytes()
    }
    pub(crate) fn is_self_issued(&self) -> bool {
        self.cert.tbs_certificate.subject == self.cert.tbs_certificate.issuer
    }
    pub(crate) fn key(&self) -> Result<p256::ecdsa::VerifyingKey, String> {
        p256_key(&self.cert.tbs_certificate.subject_public_key_info)
    }

    /// Checks that `issuer` issued this certificate: names chain, ECDSA P-256 signature verifies.
    pub(crate) fn check_issued_by(&self, issuer: &X509) -> Result<(), String> {
        let tbs = &self.cert.tbs_certificate;
        if tbs.issuer != issuer.cert.tbs_certificate.subject {
            return Err(format!(
                "issuer {} is not {}",
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
        verify_ecdsa_der(
            &issuer.key()?,
            &self.cert.signature_algorithm,
            &self.tbs,
            sig,
        )
    }

    /// The SGX extension of a PCK certificate.
    pub(crate) fn sgx_extension(&self) -> Result<SgxExtension, Error> {
        let bad = |d: &dyn std::fmt::Display| Error::malformed("PCK SGX extension", d.to_string());
        let ext = self
            .cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == oid::SGX_EXTENSION)
            .ok_or_else(|| bad(&"absent"))?;
        let top = pairs(ext.extn_value.as_bytes()).map_err(|e| bad(&e))?;
        let octets = |id: ObjectIdentifier, name: &str| -> Result<Vec<u8>, Error> {
            let v = top
                .iter()
                .find(|(o, _)| *o == id)
                .ok_or_else(|| bad(&format!("{name} absent")))?;
            v.1.decode_as::<OctetStringRef<'_>>()
                .map(|o| o.as_bytes().to_vec())
                .map_err(|e| bad(&format!("{name}: {e}")))
        };
        let fmspc = <[u8; 6]>::try_from(octets(oid::FMSPC, "FMSPC")?)
            .map_err(|v| bad(&format!("FMSPC of {} bytes, want 6", v.len())))?;
        let pce_id = <[u8; 2]>::try_from(octets(oid::PCEID, "PCEID")?)
            .map_err(|v| bad(&format!("PCEID of {} bytes, want 2", v.len())))?;
        let tcb = top
            .iter()
            .find(|(o, _)| *o == oid::TCB)
            .ok_or_else(|| bad(&"TCB absent"))?;
        if tcb.1.tag() != Tag::Sequence {
            return Err(bad(&"TCB is not a SEQUENCE"));
        }
        let tcb_pairs = pairs_content(tcb.1.value()).map_err(|e| bad(&e))?;
        let mut components = [None::<u8>; 16];
        let (mut pce_svn, mut cpu_svn) = (None, None);
        let tcb_arc = oid::TCB.as_bytes();
        for (id, value) in &tcb_pairs {
            // Children of the TCB OID: one more arc, encoded as a single byte (1..=18).
            let child = id
                .as_bytes()
                .strip_prefix(tcb_arc)
                .and_then(|rest| match rest {
                    [n] => Some(*n),
                    _ => None,
                });
            match child {
                Some(n @ 1..=16) => {
                    let svn = value
                        .decode_as::<u8>()
                        .map_err(|e| bad(&format!("TCB component {n}: {e}")))?;
                    if let Some(slot) = components.get_mut(usize::from(n - 1)) {
                        *slot = Some(svn);
                    }
                }
                Some(17) => {
                    pce_svn = Some(
                        value
                            .decode_as::<u16>()
                            .map_err(|e| bad(&format!("PCESVN: {e}")))?,
                    )
                }
                Some(18) => {
                    let b = value
                        .decode_as::<OctetStringRef<'_>>()
                        .map_err(|e| bad(&format!("CPUSVN: {e}")))?;
                    cpu_svn = Some(
                        <[u8; 16]>::try_from(b.as_bytes())
                            .map_err(|_| bad(&"CPUSVN is not 16 bytes"))?,
                    );
                }
                _ => {}
            }
        }
        let mut sgx_tcb_components = [0u8; 16];
        for (i, (out, c)) in sgx_tcb_components.iter_mut().zip(components).enumerate() {
            *out = c.ok_or_else(|| bad(&format!("TCB component {} absent", i + 1)))?;
        }
        Ok(SgxExtension {
            fmspc,
            pce_id,
            sgx_tcb_components,
            pce_svn: pce_svn.ok_or_else(|| bad(&"PCESVN absent"))?,
            cpu_svn: cpu_svn.ok_or_else(|| bad(&"CPUSVN absent"))?,
        })
    }
}

/// What a PCK certificate says about the platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SgxExtension {
    pub(crate) fmspc: [u8; 6],
    pub(crate) pce_id: [u8; 2],
    pub(crate) sgx_tcb_components: [u8; 16],
    pub(crate) pce_svn: u16,
    pub(crate) cpu_svn: [u8; 16],
}

/// `SEQUENCE OF SEQUENCE { OID, ANY }` from the DER of the outer SEQUENCE.
fn pairs(der: &[u8]) -> der::Result<Vec<(ObjectIdentifier, Any)>> {
    let outer = Any::from_der(der)?;
    outer.tag().assert_eq(Tag::Sequence)?;
    pairs_content(outer.value())
}

/// `SEQUENCE { OID, ANY }` elements from the content octets of a SEQUENCE.
fn pairs_content(content: &[u8]) -> der::Result<Vec<(ObjectIdentifier, Any)>> {
    let mut r = SliceReader::new(content)?;
    let mut out = Vec::new();
    while !r.is_finished() {
        let item = Any::decode(&mut r)?;
        item.tag().assert_eq(Tag::Sequence)?;
        let mut inner = SliceReader::new(item.value())?;
        let id = ObjectIdentifier::decode(&mut inner)?;
        let value = Any::decode(&mut inner)?;
        inner.finish(())?;
        out.push((id, value));
        if out.len() > 64 {
            return Err(der::ErrorKind::Overlength.into());
        }
    }
    Ok(out)
}

/// The certificates of a PEM bundle, in order (trailing NULs and text between blocks ignored).
pub(crate) fn pem_chain(bytes: &[u8], what: &'static str) -> Result<Vec<X509>, Error> {
    let bad = |d: &dyn std::fmt::Display| Error::malformed(what, d.to_string());
    let text = std::str::from_utf8(bytes).map_err(|_| bad(&"not PEM text"))?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = rest.get(start..).unwrap_or_default();
        let end_marker = after
            .find("-----END ")
            .ok_or_else(|| bad(&"PEM block without END line"))?;
        let tail = after
            .get(end_marker.saturating_add("-----END ".len())..)
            .unwrap_or_default();
        let close = tail
            .find("-----")
            .ok_or_else(|| bad(&"PEM END line not closed"))?;
        let block_len = end_marker
            .saturating_add("-----END ".len())
            .saturating_add(close)
            .saturating_add("-----".len());
        let block = after.get(..block_len).unwrap_or_default();
        let (label, der) = der::pem::decode_vec(block.as_bytes()).map_err(|e| bad(&e))?;
        if label != "CERTIFICATE" {
            return Err(bad(&format!("PEM label {label}, want CERTIFICATE")));
        }
        if out.len() >= MAX_CHAIN_CERTS {
            return Err(bad(&format!("more than {MAX_CHAIN_CERTS} certificates")));
        }
        out.push(X509::from_der(&der, what)?);
        rest = after.get(block_len..).unwrap_or_default();
    }
    if out.is_empty() {
        return Err(bad(&"no PEM CERTIFICATE block"));
    }
    Ok(out)
}

/// A CRL, parsed; its signature is checked by [`Crl::check_signed_by`].
#[derive(Clone, Debug)]
pub(crate) struct Crl {
    list: CertificateList,
    tbs: Vec<u8>,
    pub(crate) this_update: i64,
    pub(crate) next_update: Option<i64>,
    pub(crate) revoked: HashSet<Vec<u8>>,
}

impl Crl {
    pub(crate) fn from_der(der: &[u8], what: &'static str) -> Result<Crl, Error> {
        if der.len() > MAX_CRL_LEN {
            return Err(Error::malformed(
                what,
                format!("{} bytes, cap {MAX_CRL_LEN}", der.len()),
            ));
        }
        let list = CertificateList::from_der(der).map_err(|e| Error::malformed(what, e))?;
        let tbs = signed_part(der)
            .map_err(|e| Error::malformed(what, e))?
            .to_vec();
        let t = &list.tbs_cert_list;
        let revoked = t
            .revoked_certificates
            .iter()
            .flatten()
            .map(|r| r.serial_number.as_bytes().to_vec())
            .collect();
        Ok(Crl {
            this_update: unix(t.this_update),
            next_update: t.next_update.map(unix),
            revoked,
            tbs,
            list,
        })
    }

    pub(crate) fn issuer(&self) -> String {
        self.list.tbs_cert_list.issuer.to_string()
    }

    /// The CRL names `issuer` as its issuer and carries its ECDSA signature.
    pub(crate) fn check_signed_by(&self, issuer: &X509) -> Result<(), String> {
        let t = &self.list.tbs_cert_list;
        if t.issuer != issuer.cert.tbs_certificate.subject {
            return Err(format!(
                "CRL issuer {} is not {}",
                t.issuer, issuer.cert.tbs_certificate.subject
            ));
        }
        if t.signature != self.list.signature_algorithm {
            return Err("tbsCertList.signature differs from signatureAlgorithm".into());
        }
        let sig = self
            .list
            .signature
            .as_bytes()
            .ok_or("signature BIT STRING has unused bits")?;
        verify_ecdsa_der(
            &issuer.key()?,
            &self.list.signature_algorithm,
            &self.tbs,
            sig,
        )
    }

    pub(crate) fn lists(&self, cert: &X509) -> bool {
        self.revoked.contains(cert.serial())
    }
}

//! Human-readable summaries of SVIDs, for `twi demo` and operators.

use anyhow::{Context, Result};
use const_oid::db::DB;
use der::{Decode, DecodePem};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// Describes the first certificate of a PEM bundle: subject, issuer, validity, SPIFFE ID and every
/// extension by name (TWI's own extensions included once the credential composer adds them).
pub fn describe_pem(pem: &[u8]) -> Result<Vec<String>> {
    let cert = Certificate::from_pem(pem).context("parsing the SVID PEM")?;
    let tbs = &cert.tbs_certificate;
    let mut lines = vec![
        format!("subject:    {}", tbs.subject),
        format!("issuer:     {}", tbs.issuer),
        format!("serial:     {}", hex::encode(tbs.serial_number.as_bytes())),
        format!(
            "valid:      {} .. {}",
            tbs.validity.not_before, tbs.validity.not_after
        ),
        format!(
            "public key: {}",
            DB.by_oid(&tbs.subject_public_key_info.algorithm.oid)
                .map(str::to_string)
                .unwrap_or_else(|| tbs.subject_public_key_info.algorithm.oid.to_string())
        ),
    ];
    for ext in tbs.extensions.iter().flatten() {
        let name = twi_extension_name(&ext.extn_id)
            .or_else(|| DB.by_oid(&ext.extn_id))
            .map(str::to_string)
            .unwrap_or_else(|| "unregistered".into());
        let crit = if ext.critical { " (critical)" } else { "" };
        lines.push(format!("extension:  {} {name}{crit}", ext.extn_id));
        if ext.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME {
            if let Ok(san) = SubjectAltName::from_der(ext.extn_value.as_bytes()) {
                for n in san.0 {
                    if let GeneralName::UniformResourceIdentifier(uri) = n {
                        lines.push(format!("spiffe id:  {uri}"));
                    }
                }
            }
        }
    }
    Ok(lines)
}

/// Names of the extensions our credential composer adds (absent from const-oid's database).
fn twi_extension_name(oid: &const_oid::ObjectIdentifier) -> Option<&'static str> {
    use twi_credential_composer::{cmw, extension};
    if *oid == cmw::ID_PE_CMW {
        Some("id-pe-cmw (TWI: attestation result, EAR)")
    } else if *oid == extension::DEFAULT_PROVENANCE_OBJECT_ID {
        Some("TwiProvenance (TWI: signed credential-provenance record + log proof)")
    } else {
        None
    }
}

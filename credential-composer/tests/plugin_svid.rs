//! The plugin's extensions in real certificates: what the composer returns is put into X.509-SVIDs
//! the way SPIRE does (extra extensions of a P-256 CA-signed leaf with the SPIFFE URI SAN), and the
//! relying-party verifier (`verify::verify_svid`, what `twi svid verify` runs) accepts them with the
//! published JWKS, log key and provenance key, and refuses a certificate whose key is not the one the
//! record names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod plugin_support;

use std::str::FromStr as _;
use std::time::Duration;

use const_oid::{AssociatedOid, ObjectIdentifier};
use der::asn1::{Ia5String, UtcTime};
use der::Encode;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use plugin_support::*;
use rand_core::OsRng;
use rustls_pki_types::CertificateDer;
use spki::SubjectPublicKeyInfoOwned;
use twi_credential_composer::cmw::ID_PE_CMW;
use twi_credential_composer::extension::DEFAULT_PROVENANCE_OID;
use twi_credential_composer::verify::{verify_svid, Outcome, TrustInputs};
use twi_plugin::proto::credentialcomposer::{
    ComposeAgentX509svidRequest, ComposeWorkloadX509svidRequest, X509svidAttributes,
};
use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::ext::AsExtension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

/// An extnValue under a fixed OID (the builder wants the OID as an associated const).
struct RawExt<const CMW: bool>(Vec<u8>);

impl<const CMW: bool> AssociatedOid for RawExt<CMW> {
    const OID: ObjectIdentifier = if CMW {
        ID_PE_CMW
    } else {
        ObjectIdentifier::new_unwrap(DEFAULT_PROVENANCE_OID)
    };
}

impl<const CMW: bool> Encode for RawExt<CMW> {
    fn encoded_len(&self) -> der::Result<der::Length> {
        der::Length::try_from(self.0.len())
    }
    fn encode(&self, w: &mut impl der::Writer) -> der::Result<()> {
        w.write(&self.0)
    }
}

impl<const CMW: bool> AsExtension for RawExt<CMW> {
    fn critical(&self, _: &Name, _: &[x509_cert::ext::Extension]) -> bool {
        false
    }
}

fn validity() -> Validity {
    let t = |s: i64| {
        Time::UtcTime(
            UtcTime::from_unix_duration(Duration::from_secs(s.try_into().unwrap())).unwrap(),
        )
    };
    Validity {
        not_before: t(now() - 600),
        not_after: t(now() + 3600),
    }
}

struct Ca {
    key: SigningKey,
    cert: Certificate,
}

impl Ca {
    fn new() -> Ca {
        let key = SigningKey::random(&mut OsRng);
        let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
        let cert = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            validity(),
            Name::from_str("C=US,O=SPIFFE").unwrap(),
            spki,
            &key,
        )
        .unwrap()
        .build::<DerSignature>()
        .unwrap();
        Ca { key, cert }
    }

    /// What SPIRE does with the composer's answer: the attributes' extensions into a SPIFFE leaf.
    fn issue(
        &self,
        id: &str,
        leaf: &SigningKey,
        attrs: &X509svidAttributes,
    ) -> CertificateDer<'static> {
        let spki = SubjectPublicKeyInfoOwned::from_key(*leaf.verifying_key()).unwrap();
        let mut b = CertificateBuilder::new(
            Profile::Leaf {
                issuer: self.cert.tbs_certificate.subject.clone(),
                enable_key_agreement: false,
                enable_key_encipherment: true,
            },
            SerialNumber::from(77u32),
            validity(),
            Name::from_str("C=US,O=SPIRE").unwrap(),
            spki,
            &self.key,
        )
        .unwrap();
        b.add_extension(&SubjectAltName(vec![
            GeneralName::UniformResourceIdentifier(Ia5String::new(id).unwrap()),
        ]))
        .unwrap();
        b.add_extension(&ExtendedKeyUsage(vec![
            const_oid::db::rfc5280::ID_KP_SERVER_AUTH,
            const_oid::db::rfc5280::ID_KP_CLIENT_AUTH,
        ]))
        .unwrap();
        for ext in &attrs.extra_extensions {
            assert!(!ext.critical);
            if ext.oid == CMW_OID {
                b.add_extension(&RawExt::<true>(ext.value.clone())).unwrap();
            } else if ext.oid == PROV_OID {
                b.add_extension(&RawExt::<false>(ext.value.clone()))
                    .unwrap();
            } else {
                panic!("unexpected extension {}", ext.oid);
            }
        }
        CertificateDer::from(b.build::<DerSignature>().unwrap().to_der().unwrap())
    }
}

fn spki_der(key: &SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec()
}

fn trust(h: &Harness, ca: &Ca) -> TrustInputs {
    let mut t = TrustInputs::new(vec![CertificateDer::from(ca.cert.to_der().unwrap())], now());
    t.jwks = Some(h.verifier.jwks());
    t.log = Some(h.log_verifier());
    t.provenance_keys = vec![h.provenance_key()];
    t
}

fn failures(report: &twi_credential_composer::verify::SvidReport) -> Vec<String> {
    report
        .steps
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Failed(r) => Some(format!("{}: {r}", s.name)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_workload_svids_verify_end_to_end() {
    let h = Harness::new().await;
    h.configure("").await.unwrap();
    let ca = Ca::new();
    let agent = agent_id("node-1");
    let agent_key = SigningKey::random(&mut OsRng);
    h.seed_current(&agent, Some(sha256(&spki_der(&agent_key))));

    let attrs = h
        .client()
        .compose_agent_x509svid(ComposeAgentX509svidRequest {
            attributes: Some(attributes(Vec::new())),
            spiffe_id: agent.clone(),
            public_key: spki_der(&agent_key),
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
        .unwrap();
    let cert = ca.issue(&agent, &agent_key, &attrs);
    let report = verify_svid(&[cert], &trust(&h, &ca));
    assert!(report.ok(), "{:?}", failures(&report));
    assert_eq!(report.spiffe_id.as_deref(), Some(agent.as_str()));
    assert!(
        report
            .steps
            .iter()
            .all(|s| matches!(s.outcome, Outcome::Passed)),
        "every step ran and passed: {:?}",
        report.to_json()
    );

    // A workload SVID under that agent.
    let wl = format!("spiffe://{TD}/billing");
    h.api
        .set_entries(vec![api_entry("e1", &wl, &agent, &["twi:uid:1000"], 1)]);
    let wl_key = SigningKey::random(&mut OsRng);
    let attrs = h
        .client()
        .compose_workload_x509svid(ComposeWorkloadX509svidRequest {
            attributes: Some(attributes(Vec::new())),
            spiffe_id: wl.clone(),
            public_key: spki_der(&wl_key),
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
        .unwrap();
    let report = verify_svid(&[ca.issue(&wl, &wl_key, &attrs)], &trust(&h, &ca));
    assert!(report.ok(), "{:?}", failures(&report));

    // The same extensions on a certificate for another key: the record does not match it.
    let other = SigningKey::random(&mut OsRng);
    let report = verify_svid(&[ca.issue(&wl, &other, &attrs)], &trust(&h, &ca));
    assert!(!report.ok());
    assert!(!failures(&report).is_empty());
}

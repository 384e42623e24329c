//! CRL handling of the SNP verifier, on a simulated root set (no AMD CRL is shipped with the vectors):
//! CRLs signed by the ARK (and by the ASK) in AMD's RSA-PSS format, revoking the ASK or the VCEK, forged,
//! stale, or not concerning the chain.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use der::{Decode, DecodePem, Encode};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use twi_core::sim::{self, GuestParams, InitOptions, SimLayout, SimSnpDevice};
use twi_core::snp::{AttestationReport, CertChain, TrustAnchors, Verifier};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::time::Time;
use x509_cert::Certificate;

const NOW: u64 = 1_750_000_000;
const DAY: u64 = 86_400;

fn time(secs: u64) -> Time {
    Time::try_from(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).unwrap()
}

/// A CRL by `issuer_cert`'s subject, signed with `key_pem`, listing `serials`.
fn crl(
    issuer_cert: &Certificate,
    key_pem: &str,
    serials: &[&[u8]],
    this_update: u64,
    next_update: u64,
) -> Vec<u8> {
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem).unwrap();
    // AMD's PSS parameters, as in every certificate of the set.
    let alg = issuer_cert.signature_algorithm.clone();
    let revoked = serials
        .iter()
        .map(|s| RevokedCert {
            serial_number: x509_cert::serial_number::SerialNumber::new(s).unwrap(),
            revocation_date: time(this_update),
            crl_entry_extensions: None,
        })
        .collect::<Vec<_>>();
    let tbs = TbsCertList {
        version: x509_cert::Version::V2,
        signature: alg.clone(),
        issuer: issuer_cert.tbs_certificate.subject.clone(),
        this_update: time(this_update),
        next_update: Some(time(next_update)),
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: None,
    };
    let tbs_der = tbs.to_der().unwrap();
    let signer = rsa::pss::SigningKey::<sha2::Sha384>::new_with_salt_len(key, 48);
    let sig = signer
        .sign_with_rng(&mut rand_core::OsRng, &tbs_der)
        .to_vec();
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: alg,
        signature: der::asn1::BitString::from_bytes(&sig).unwrap(),
    }
    .to_der()
    .unwrap()
}

struct Set {
    _dir: tempfile::TempDir,
    layout: SimLayout,
    ark: Certificate,
    ask: Certificate,
    vcek: Certificate,
}

fn root_set() -> Set {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = InitOptions::new(NOW);
    opts.rsa_bits = 2048; // RSA size does not matter here; 4096 keygen is slow unoptimised
    let layout = sim::init(&dir.path().join("roots"), &opts).unwrap();
    let ark = Certificate::from_pem(std::fs::read(&layout.ark_pem).unwrap()).unwrap();
    let ask = Certificate::from_pem(std::fs::read(&layout.ask_pem).unwrap()).unwrap();
    let vcek = Certificate::from_der(&std::fs::read(&layout.vcek_der).unwrap()).unwrap();
    Set {
        _dir: dir,
        layout,
        ark,
        ask,
        vcek,
    }
}

#[test]
fn crls_are_verified_and_applied() {
    let set = root_set();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let (ark_key, ask_key) = (read(&set.layout.ark_key), read(&set.layout.ask_key));
    let ev = SimSnpDevice::open(&set.layout.dir)
        .unwrap()
        .report(&[7; 64], &GuestParams::default())
        .unwrap();
    let report = AttestationReport::parse(&ev.report).unwrap();
    let chain = CertChain::from_cert_table(&ev.cert_table).unwrap();
    let now = i64::try_from(NOW).unwrap();
    let verifier = |crls: &[Vec<u8>]| {
        let mut anchors = TrustAnchors::amd().without_amd();
        anchors
            .add_root_pem(read(&set.layout.ark_pem).as_bytes(), true)
            .unwrap();
        let mut v = Verifier::new(anchors);
        for c in crls {
            v.add_crl_der(c).unwrap();
        }
        v
    };
    let outcome = |crls: &[Vec<u8>]| match verifier(crls).verify(&report, &chain, now) {
        Ok(_) => "accepted",
        Err(e) => {
            eprintln!("{e}");
            e.category()
        }
    };
    let ask_serial = set.ask.tbs_certificate.serial_number.as_bytes();
    let vcek_serial = set.vcek.tbs_certificate.serial_number.as_bytes();
    let (from, to) = (NOW - DAY, NOW + DAY);

    assert_eq!(outcome(&[]), "accepted");
    // The ARK's CRL not listing the ASK, and the ASK's CRL not listing the VCEK: accepted.
    assert_eq!(
        outcome(&[
            crl(&set.ark, &ark_key, &[&[0x42]], from, to),
            crl(&set.ask, &ask_key, &[], from, to)
        ]),
        "accepted"
    );
    // Revoked ASK (ARK's CRL) and revoked VCEK (ASK's CRL).
    assert_eq!(
        outcome(&[crl(&set.ark, &ark_key, &[&[0x42], ask_serial], from, to)]),
        "revoked"
    );
    assert_eq!(
        outcome(&[crl(&set.ask, &ask_key, &[vcek_serial], from, to)]),
        "revoked"
    );
    // A CRL in the ARK's name but signed by another key (the ASK's) is refused as a bad collateral signature.
    assert_eq!(
        outcome(&[crl(&set.ark, &ask_key, &[], from, to)]),
        "collateral-signature"
    );
    // A stale CRL (nextUpdate passed) needs a fresh one.
    assert_eq!(
        outcome(&[crl(&set.ark, &ark_key, &[], NOW - 10 * DAY, NOW - DAY)]),
        "collateral-expired"
    );
    // Warm cache: a CRL window is re-checked at each `now`.
    let v = verifier(&[crl(&set.ark, &ark_key, &[], from, to)]);
    v.verify(&report, &chain, now).unwrap();
    let later = i64::try_from(to + 1).unwrap();
    assert_eq!(
        v.verify(&report, &chain, later).unwrap_err().category(),
        "collateral-expired"
    );
    assert_eq!(v.cached_chains(), 1);
    // Garbage is malformed at load time.
    assert_eq!(
        Verifier::new(TrustAnchors::amd())
            .add_crl_der(b"\x30\x03\x02\x01\x00")
            .unwrap_err()
            .category(),
        "malformed"
    );
}

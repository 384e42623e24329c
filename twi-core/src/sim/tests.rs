//! Checks of a whole simulated root set with independent code (x509-cert, rsa, p384 directly), not with
//! the crate's verifier: the round trip through the verifier is in tests/sim_roundtrip.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::certs::amd_oid;
use super::*;
use crate::snp::layout as l;
use crate::snp::{Product, TcbParts};
use der::{Decode, DecodePem, Encode};
use p384::ecdsa::signature::Verifier as _;
use rsa::pkcs8::DecodePublicKey;
use std::path::Path;
use std::sync::OnceLock;
use x509_cert::Certificate;

const NOW: u64 = 1_750_000_000; // 2025-06-15

/// One root set for the module (RSA-2048 to keep unit tests quick; the round-trip test uses 4096).
fn root_set() -> &'static (tempfile::TempDir, SimLayout) {
    static SET: OnceLock<(tempfile::TempDir, SimLayout)> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = InitOptions::new(NOW);
        opts.rsa_bits = 2048;
        opts.chip_id = Some([0xC5; l::CHIP_ID_LEN]);
        let layout = init(&dir.path().join("sim"), &opts).unwrap();
        (dir, layout)
    })
}

fn pem_cert(path: &Path) -> Certificate {
    Certificate::from_pem(std::fs::read(path).unwrap()).unwrap()
}

fn rsa_key(cert: &Certificate) -> rsa::RsaPublicKey {
    rsa::RsaPublicKey::from_public_key_der(
        &cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap(),
    )
    .unwrap()
}

/// Verifies `cert`'s RSA-PSS(SHA-384, salt 48) signature with `issuer`'s key.
fn pss_verifies(cert: &Certificate, issuer: &Certificate) -> bool {
    let key = rsa::pss::VerifyingKey::<sha2::Sha384>::new(rsa_key(issuer));
    let sig = rsa::pss::Signature::try_from(cert.signature.raw_bytes()).unwrap();
    use rsa::signature::Verifier;
    key.verify(&cert.tbs_certificate.to_der().unwrap(), &sig)
        .is_ok()
}

fn ext_value(cert: &Certificate, oid: const_oid::ObjectIdentifier) -> &[u8] {
    cert.tbs_certificate
        .extensions
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.extn_id == oid)
        .unwrap()
        .extn_value
        .as_bytes()
}

fn common_name(cert: &Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

#[test]
fn chain_signatures_and_names() {
    let (_, layout) = root_set();
    let ark = pem_cert(&layout.ark_pem);
    let ask = pem_cert(&layout.ask_pem);
    let vcek = Certificate::from_der(&std::fs::read(&layout.vcek_der).unwrap()).unwrap();
    assert_eq!(pem_cert(&layout.vcek_pem), vcek);

    assert!(pss_verifies(&ark, &ark), "ARK is self-signed");
    assert!(pss_verifies(&ask, &ark), "ASK is signed by ARK");
    assert!(pss_verifies(&vcek, &ask), "VCEK is signed by ASK");
    assert!(!pss_verifies(&vcek, &ark), "VCEK is not signed by ARK");

    for (cert, cn) in [
        (&ark, "CN=ARK-Milan"),
        (&ask, "CN=SEV-Milan"),
        (&vcek, "CN=SEV-VCEK"),
    ] {
        let subject = common_name(cert);
        assert!(subject.contains(cn), "{subject}");
        assert!(subject.contains(SIMULATED_ORGANIZATION), "{subject}");
        assert_eq!(cert.tbs_certificate.version, x509_cert::Version::V3);
    }
    assert_eq!(ask.tbs_certificate.issuer, ark.tbs_certificate.subject);
    assert_eq!(vcek.tbs_certificate.issuer, ask.tbs_certificate.subject);
    assert_eq!(
        ark.tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes()
            .len(),
        270
    );
}

#[test]
fn vcek_carries_tcb_and_hwid() {
    let (_, layout) = root_set();
    let vcek = pem_cert(&layout.vcek_pem);
    let tcb = InitOptions::default_tcb(Product::Milan);
    assert_eq!(ext_value(&vcek, amd_oid::PRODUCT_NAME), b"\x16\x08Milan-B0");
    assert_eq!(
        u8::from_der(ext_value(&vcek, amd_oid::BL_SPL)).unwrap(),
        tcb.bootloader
    );
    assert_eq!(
        u8::from_der(ext_value(&vcek, amd_oid::TEE_SPL)).unwrap(),
        tcb.tee
    );
    assert_eq!(
        u8::from_der(ext_value(&vcek, amd_oid::SNP_SPL)).unwrap(),
        tcb.snp
    );
    assert_eq!(
        u8::from_der(ext_value(&vcek, amd_oid::UCODE_SPL)).unwrap(),
        tcb.microcode
    );
    assert_eq!(ext_value(&vcek, amd_oid::HW_ID), &[0xC5; 64]);
    let validity = &vcek.tbs_certificate.validity;
    assert_eq!(validity.not_before.to_unix_duration().as_secs(), NOW - 3600);
    assert_eq!(
        validity.not_after.to_unix_duration().as_secs(),
        NOW + 7 * 365 * 86400
    );
}

#[test]
fn report_fields_and_signature() {
    let (_, layout) = root_set();
    let dev = SimSnpDevice::open(&layout.dir).unwrap();
    let report_data = [0x5A; 64];
    let guest = GuestParams {
        guest_svn: 7,
        host_data: [0x11; 32],
        ..GuestParams::default()
    };
    let ev = dev.report(&report_data, &guest).unwrap();
    let r = &ev.report;
    assert_eq!(r.len(), l::REPORT_LEN);
    let u32_at = |o: usize| u32::from_le_bytes(r[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(r[o..o + 8].try_into().unwrap());
    assert_eq!(u32_at(l::VERSION), 5);
    assert_eq!(u32_at(l::GUEST_SVN), 7);
    assert_eq!(u64_at(l::POLICY), 0x30000);
    assert_eq!(u32_at(l::SIGNATURE_ALGO), 1);
    assert_eq!(u32_at(l::KEY_INFO), 0);
    let tcb = InitOptions::default_tcb(Product::Milan);
    for off in [
        l::CURRENT_TCB,
        l::REPORTED_TCB,
        l::COMMITTED_TCB,
        l::LAUNCH_TCB,
    ] {
        assert_eq!(TcbParts::decode(u64_at(off), Product::Milan), tcb);
    }
    assert_eq!(&r[l::REPORT_DATA..l::REPORT_DATA + 64], &report_data);
    assert_eq!(
        &r[l::MEASUREMENT..l::MEASUREMENT + 48],
        &default_measurement()
    );
    assert_eq!(&r[l::HOST_DATA..l::HOST_DATA + 32], &[0x11; 32]);
    assert_eq!(&r[l::REPORT_ID..l::REPORT_ID + 32], dev.report_id());
    assert_eq!(&r[l::REPORT_ID_MA..l::REPORT_ID_MA + 32], &[0xFF; 32]);
    assert_eq!(&r[l::CHIP_ID..l::CHIP_ID + 64], &[0xC5; 64]);
    assert_eq!(
        Product::from_cpuid(r[l::CPUID_FAM_ID], r[l::CPUID_MOD_ID]),
        Some(Product::Milan)
    );

    // Signature: R and S little-endian in 72-byte fields, over report[0..0x2A0], by the VCEK.
    let mut be = [0u8; 96];
    for (i, off) in [l::SIGNATURE, l::SIGNATURE + 72].into_iter().enumerate() {
        let comp = &r[off..off + 72];
        assert!(comp[48..].iter().all(|&b| b == 0));
        for (j, b) in comp[..48].iter().rev().enumerate() {
            be[i * 48 + j] = *b;
        }
    }
    let sig = p384::ecdsa::Signature::from_slice(&be).unwrap();
    let vcek = Certificate::from_der(dev.vcek_der()).unwrap();
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(
        vcek.tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes(),
    )
    .unwrap();
    assert!(key.verify(&r[..l::SIGNED_LEN], &sig).is_ok());
    let mut tampered = r.clone();
    tampered[l::REPORT_DATA] ^= 1;
    assert!(key.verify(&tampered[..l::SIGNED_LEN], &sig).is_err());

    // The certificate table carries the three certificates of the set.
    let t = &ev.cert_table;
    let entry = |i: usize| {
        let e = &t[i * 24..i * 24 + 24];
        let (off, len) = (
            u32::from_le_bytes(e[16..20].try_into().unwrap()) as usize,
            u32::from_le_bytes(e[20..24].try_into().unwrap()) as usize,
        );
        (
            <[u8; 16]>::try_from(&e[..16]).unwrap(),
            t[off..off + len].to_vec(),
        )
    };
    assert_eq!(entry(0), (VCEK_GUID, dev.vcek_der().to_vec()));
    assert_eq!(entry(1), (ASK_GUID, dev.ask_der().to_vec()));
    assert_eq!(entry(2), (ARK_GUID, dev.ark_der().to_vec()));
    assert_eq!(&t[72..96], &[0u8; 24]);
}

#[test]
fn version_2_has_no_cpuid_and_author_key_sets_key_info() {
    let (_, layout) = root_set();
    let dev = SimSnpDevice::open(&layout.dir).unwrap();
    let guest = GuestParams {
        version: 2,
        author_key_digest: [1; 48],
        ..GuestParams::default()
    };
    let r = dev.report(&[0; 64], &guest).unwrap().report;
    assert_eq!(&r[l::CPUID_FAM_ID..l::CPUID_STEP + 1], &[0, 0, 0]);
    assert_eq!(r[l::KEY_INFO], 1);
}

#[test]
fn report_ids_are_per_device() {
    let (_, layout) = root_set();
    let a = SimSnpDevice::open(&layout.dir).unwrap();
    let b = SimSnpDevice::open(&layout.dir).unwrap();
    assert_ne!(a.report_id(), b.report_id());
    let r1 = a.report(&[0; 64], &GuestParams::default()).unwrap().report;
    let r2 = a.report(&[1; 64], &GuestParams::default()).unwrap().report;
    assert_eq!(
        r1[l::REPORT_ID..l::REPORT_ID + 32],
        r2[l::REPORT_ID..l::REPORT_ID + 32]
    );
}

#[cfg(unix)]
#[test]
fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_, layout) = root_set();
    for key in [&layout.ark_key, &layout.ask_key, &layout.vcek_key] {
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            key.display()
        );
    }
    assert_eq!(
        std::fs::metadata(&layout.ark_pem)
            .unwrap()
            .permissions()
            .mode()
            & 0o077,
        0o044
    );
}

#[test]
fn sim_json_says_simulated() {
    let (_, layout) = root_set();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&layout.sim_json).unwrap()).unwrap();
    assert!(json["warning"].as_str().unwrap().contains("NOT AMD"));
    assert_eq!(json["product"], "Milan");
    assert_eq!(json["chip_id"], hex::encode([0xC5; 64]));
}

#[test]
fn refuses_to_overwrite_and_detects_mixed_sets() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = InitOptions::new(NOW);
    opts.rsa_bits = 2048;
    init(dir.path(), &opts).unwrap();
    let vcek_key_before = std::fs::read(dir.path().join("vcek.key")).unwrap();
    assert!(matches!(
        init(dir.path(), &opts),
        Err(SimError::AlreadyInitialized { .. })
    ));
    assert_eq!(
        std::fs::read(dir.path().join("vcek.key")).unwrap(),
        vcek_key_before,
        "nothing was touched"
    );

    // A VCEK key from another set does not match this vcek.der.
    let (_, other) = root_set();
    std::fs::copy(&other.vcek_key, dir.path().join("vcek.key")).unwrap();
    let err = SimSnpDevice::open(dir.path()).unwrap_err();
    assert!(matches!(err, SimError::Corrupt { .. }), "{err}");
    assert!(!format!("{err:?}").contains("PRIVATE KEY"));

    opts.force = true;
    init(dir.path(), &opts).unwrap();
    assert!(SimSnpDevice::open(dir.path()).is_ok());
}

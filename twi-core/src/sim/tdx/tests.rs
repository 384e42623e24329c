//! Checks of a whole simulated Intel root set and its quotes with independent code (x509-cert, p256 and
//! openssl directly), not with the crate's verifier: the round trip through the verifier is in
//! tests/sim_tdx_roundtrip.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::certs::{sgx_oid, PCK_CN, PLATFORM_CA_CN, ROOT_CN, TCB_SIGNING_CN};
use super::collateral;
use super::*;
use crate::sim::SimError;
use der::{Decode, Encode, Tagged};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use x509_cert::crl::CertificateList;
use x509_cert::Certificate;

const NOW: u64 = 1_750_000_000; // 2025-06-15

fn root_set() -> &'static (tempfile::TempDir, TdxSimLayout) {
    static SET: OnceLock<(tempfile::TempDir, TdxSimLayout)> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = TdxInitOptions::new(NOW);
        opts.revoke_pck = true; // so that the CRL entry encoding is checked too
        let layout = init(&dir.path().join("tdx"), &opts).unwrap();
        (dir, layout)
    })
}

fn pem_certs(path: &Path) -> Vec<Certificate> {
    let text = std::fs::read_to_string(path).unwrap();
    Certificate::load_pem_chain(text.as_bytes()).unwrap()
}

fn key_of(cert: &Certificate) -> VerifyingKey {
    VerifyingKey::from_sec1_bytes(
        cert.tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes(),
    )
    .unwrap()
}

fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    let sig = DerSignature::from_bytes(cert.signature.raw_bytes()).unwrap();
    key_of(issuer)
        .verify(&cert.tbs_certificate.to_der().unwrap(), &sig)
        .is_ok()
}

fn cn(cert: &Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

#[test]
fn chain_signatures_names_and_files() {
    let (_, l) = root_set();
    let root = Certificate::from_der(&std::fs::read(&l.root_der).unwrap()).unwrap();
    assert_eq!(pem_certs(&l.root_pem), vec![root.clone()]);
    let chain = pem_certs(&l.pck_chain_pem);
    assert_eq!(chain.len(), 3);
    let (pck, ca) = (&chain[0], &chain[1]);
    assert_eq!(&chain[2], &root);
    assert_eq!(pem_certs(&l.pck_pem), vec![pck.clone()]);
    assert_eq!(pem_certs(&l.platform_ca_pem), vec![ca.clone()]);
    let tcb = &pem_certs(&l.tcb_signing_pem)[0];

    assert!(signed_by(&root, &root), "root is self-signed");
    assert!(signed_by(ca, &root));
    assert!(signed_by(tcb, &root));
    assert!(signed_by(pck, ca));
    assert!(!signed_by(pck, &root));

    for (cert, want) in [
        (&root, ROOT_CN),
        (ca, PLATFORM_CA_CN),
        (tcb, TCB_SIGNING_CN),
        (pck, PCK_CN),
    ] {
        let name = cn(cert);
        assert!(name.contains(&format!("CN={want}")), "{name}");
        assert!(name.contains(SIMULATED_INTEL_ORGANIZATION), "{name}");
        assert!(!name.contains("Intel Corporation"), "{name}");
    }

    // Issuer chains: signer then root, as in the real PCS headers.
    assert_eq!(
        pem_certs(&l.tcb_info_issuer_chain),
        vec![tcb.clone(), root.clone()]
    );
    assert_eq!(
        pem_certs(&l.qe_identity_issuer_chain),
        vec![tcb.clone(), root.clone()]
    );
    assert_eq!(
        pem_certs(&l.pck_crl_issuer_chain),
        vec![ca.clone(), root.clone()]
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [
            &l.root_key,
            &l.platform_ca_key,
            &l.tcb_signing_key,
            &l.pck_key,
            &l.attestation_key,
        ] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
        let mode = std::fs::metadata(&l.dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the set's directory is private");
    }

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&l.sim_json).unwrap()).unwrap();
    assert!(json["warning"]
        .as_str()
        .unwrap()
        .starts_with("SIMULATED INTEL TDX ROOT SET - NOT INTEL"));
}

/// Walks the SGX extension with a generic DER reader and returns `(oid, raw value TLV)` pairs.
fn sgx_entries(value: &[u8]) -> Vec<(String, der::asn1::Any)> {
    let seq = Vec::<der::asn1::Any>::from_der(value).unwrap();
    seq.iter()
        .map(|entry| {
            let inner: Vec<der::asn1::Any> = {
                let mut r = der::SliceReader::new(entry.value()).unwrap();
                let mut v = Vec::new();
                use der::Reader;
                while !r.is_finished() {
                    v.push(r.decode::<der::asn1::Any>().unwrap());
                }
                v
            };
            let oid = inner[0].decode_as::<der::asn1::ObjectIdentifier>().unwrap();
            (oid.to_string(), inner[1].clone())
        })
        .collect()
}

#[test]
fn pck_sgx_extension_decodes_to_the_init_options() {
    let (_, l) = root_set();
    let pck = &pem_certs(&l.pck_pem)[0];
    let ext = pck
        .tbs_certificate
        .extensions
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.extn_id == sgx_oid::EXTENSION)
        .unwrap();
    let entries = sgx_entries(ext.extn_value.as_bytes());
    let oids: Vec<&str> = entries.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        oids,
        [1, 2, 3, 4, 5, 6, 7].map(|n| format!("1.2.840.113741.1.13.1.{n}"))
    );
    let defaults = TdxInitOptions::new(NOW);
    assert_eq!(entries[0].1.value().len(), 16, "PPID");
    assert_eq!(entries[2].1.value(), &[0, 0], "PCE-ID");
    assert_eq!(entries[3].1.value(), &defaults.fmspc, "FMSPC");
    assert_eq!(entries[4].1.tag(), der::Tag::Enumerated);

    let tcb = sgx_entries(&entries[1].1.to_der().unwrap());
    assert_eq!(tcb.len(), 18);
    for (i, (oid, v)) in tcb.iter().take(16).enumerate() {
        assert_eq!(oid, &format!("1.2.840.113741.1.13.1.2.{}", i + 1));
        assert_eq!(v.decode_as::<u8>().unwrap(), defaults.tcb.sgx_components[i]);
    }
    assert_eq!(tcb[16].1.decode_as::<u16>().unwrap(), defaults.tcb.pcesvn);
    assert_eq!(tcb[17].1.value(), &defaults.tcb.sgx_components, "CPUSVN");
}

#[test]
fn crls_are_signed_and_list_the_revoked_pck() {
    let (_, l) = root_set();
    let pck = &pem_certs(&l.pck_pem)[0];
    let ca = &pem_certs(&l.platform_ca_pem)[0];
    let root = &pem_certs(&l.root_pem)[0];
    for (path, issuer, revoked) in [(&l.pck_crl, ca, true), (&l.root_ca_crl, root, false)] {
        let crl = CertificateList::from_der(&std::fs::read(path).unwrap()).unwrap();
        let sig = DerSignature::from_bytes(crl.signature.raw_bytes()).unwrap();
        assert!(key_of(issuer)
            .verify(&crl.tbs_cert_list.to_der().unwrap(), &sig)
            .is_ok());
        assert_eq!(crl.tbs_cert_list.issuer, issuer.tbs_certificate.subject);
        let listed = crl.tbs_cert_list.revoked_certificates.unwrap_or_default();
        assert_eq!(
            listed
                .iter()
                .any(|r| r.serial_number == pck.tbs_certificate.serial_number),
            revoked
        );
        let next = crl.tbs_cert_list.next_update.unwrap().to_unix_duration();
        let this = crl.tbs_cert_list.this_update.to_unix_duration();
        assert_eq!(this.as_secs(), NOW - 3600);
        assert_eq!(next.as_secs(), NOW - 3600 + 30 * 86_400);
    }
}

fn openssl(args: &[&str]) -> Option<(bool, String)> {
    let out = Command::new("openssl").args(args).output().ok()?;
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// openssl parses every certificate and CRL, shows the SGX extension, and verifies the chain and the
/// CRLs at `NOW` (skipped, loudly, when no openssl binary is installed).
#[test]
fn openssl_accepts_certificates_and_crls() {
    let (_, l) = root_set();
    let Some((ok, text)) = openssl(&["x509", "-noout", "-text", "-in", path(&l.pck_pem)]) else {
        eprintln!("SKIPPED: no openssl binary");
        return;
    };
    assert!(ok, "{text}");
    assert!(text.contains("1.2.840.113741.1.13.1"), "{text}");
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    for cert in [&l.root_pem, &l.platform_ca_pem, &l.tcb_signing_pem] {
        let (ok, text) = openssl(&["x509", "-noout", "-text", "-in", path(cert)]).unwrap();
        assert!(ok, "{text}");
    }
    let at = NOW.to_string();
    let (ok, text) = openssl(&[
        "verify",
        "-attime",
        &at,
        "-CAfile",
        path(&l.root_pem),
        "-untrusted",
        path(&l.platform_ca_pem),
        path(&l.tcb_signing_pem),
    ])
    .unwrap();
    assert!(ok, "{text}");
    // The PCK is revoked in this set: with CRL checking openssl must refuse it, without it accept it.
    let (ok, text) = openssl(&[
        "verify",
        "-attime",
        &at,
        "-CAfile",
        path(&l.root_pem),
        "-untrusted",
        path(&l.platform_ca_pem),
        path(&l.pck_pem),
    ])
    .unwrap();
    assert!(ok, "{text}");
    let dir = tempfile::tempdir().unwrap();
    let crls = dir.path().join("crls.pem");
    let mut pem = String::new();
    for crl in [&l.pck_crl, &l.root_ca_crl] {
        let (ok, text) = openssl(&["crl", "-inform", "DER", "-in", path(crl)]).unwrap();
        assert!(ok, "{text}");
        pem.push_str(&text);
        let (ok, text) =
            openssl(&["crl", "-inform", "DER", "-noout", "-text", "-in", path(crl)]).unwrap();
        assert!(ok && text.contains("Next Update"), "{text}");
    }
    std::fs::write(&crls, pem).unwrap();
    let (ok, text) = openssl(&[
        "verify",
        "-attime",
        &at,
        "-crl_check_all",
        "-CRLfile",
        path(&crls),
        "-CAfile",
        path(&l.root_pem),
        "-untrusted",
        path(&l.platform_ca_pem),
        path(&l.pck_pem),
    ])
    .unwrap();
    assert!(!ok && text.contains("revoked"), "{text}");
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Takes a quote apart at Intel's offsets, independently of the crate's parser, and checks every
/// signature and binding.
#[test]
fn quote_layout_signatures_and_binding() {
    let (_, l) = root_set();
    let device = SimTdxDevice::open(&l.dir).unwrap();
    let report_data = [0x5A; 64];
    let q = device.quote(&report_data, &TdParams::default()).unwrap();

    assert_eq!(u16::from_le_bytes([q[0], q[1]]), 4);
    assert_eq!(u16::from_le_bytes([q[2], q[3]]), 2);
    assert_eq!(u32::from_le_bytes(q[4..8].try_into().unwrap()), 0x81);
    assert_eq!(&q[12..28], &INTEL_QE_VENDOR_ID);
    let body = &q[48..632];
    assert_eq!(&body[520..584], &report_data);
    assert_eq!(&body[136..184], &default_mrtd());
    assert_eq!(&body[0..16], &PlatformTcb::default().tee_tcb_svn);
    assert_eq!(
        u64::from_le_bytes(body[120..128].try_into().unwrap()),
        TdParams::SEPT_VE_DISABLE
    );
    let sig_len = u32::from_le_bytes(q[632..636].try_into().unwrap()) as usize;
    assert_eq!(q.len(), 636 + sig_len, "no trailing bytes");
    let s = &q[636..];

    let ak_bytes = &s[64..128];
    assert_eq!(ak_bytes, &device.attestation_public_key());
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(ak_bytes);
    let ak = VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    let quote_sig = Signature::from_slice(&s[..64]).unwrap();
    assert!(ak.verify(&q[..632], &quote_sig).is_ok());

    assert_eq!(u16::from_le_bytes([s[128], s[129]]), 6);
    let outer_len = u32::from_le_bytes(s[130..134].try_into().unwrap()) as usize;
    let cd = &s[134..];
    assert_eq!(cd.len(), outer_len);
    let qe_report = &cd[..384];
    let qe_sig = Signature::from_slice(&cd[384..448]).unwrap();
    let auth_len = u16::from_le_bytes([cd[448], cd[449]]) as usize;
    let auth = &cd[450..450 + auth_len];
    let rest = &cd[450 + auth_len..];
    assert_eq!(u16::from_le_bytes([rest[0], rest[1]]), 5);
    let chain_len = u32::from_le_bytes(rest[2..6].try_into().unwrap()) as usize;
    let chain = &rest[6..];
    assert_eq!(chain.len(), chain_len);
    assert_eq!(chain.last(), Some(&0), "NUL-terminated like real QEs");
    assert_eq!(
        &chain[..chain.len() - 1],
        std::fs::read(&l.pck_chain_pem).unwrap().as_slice()
    );

    let pck = &pem_certs(&l.pck_pem)[0];
    assert!(key_of(pck).verify(qe_report, &qe_sig).is_ok());
    let mut h = Sha256::new();
    h.update(ak_bytes);
    h.update(auth);
    assert_eq!(&qe_report[320..352], &h.finalize()[..]);
    assert!(qe_report[352..384].iter().all(|&b| b == 0));

    // The QE report matches the QE identity the set published.
    let qe_id: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&l.qe_identity).unwrap()).unwrap();
    let id = &qe_id["enclaveIdentity"];
    assert_eq!(
        hex::encode_upper(&qe_report[128..160]),
        id["mrsigner"].as_str().unwrap()
    );
    assert_eq!(
        u16::from_le_bytes([qe_report[256], qe_report[257]]),
        id["isvprodid"].as_u64().unwrap() as u16
    );
    assert_eq!(
        u16::from_le_bytes([qe_report[258], qe_report[259]]),
        id["tcbLevels"][0]["tcb"]["isvsvn"].as_u64().unwrap() as u16
    );

    // A second quote differs only in its signatures (ECDSA here is deterministic, so only if the
    // report data differs): same header and identity.
    let q2 = device.quote(&[0u8; 64], &TdParams::default()).unwrap();
    assert_eq!(q2.len(), q.len());
    assert_eq!(&q2[..48], &q[..48]);
    assert_ne!(&q2[48..632], &q[48..632]);
}

#[test]
fn debug_and_custom_params_land_in_the_body() {
    let (_, l) = root_set();
    let device = SimTdxDevice::open(&l.dir).unwrap();
    let td = TdParams {
        td_attributes: TdParams::DEBUG | TdParams::SEPT_VE_DISABLE,
        mrconfigid: [7; 48],
        rtmr: [[1; 48], [2; 48], [3; 48], [4; 48]],
        tee_tcb_svn: Some([9; 16]),
        ..TdParams::default()
    };
    let q = device.quote(&[0; 64], &td).unwrap();
    let body = &q[48..632];
    assert_eq!(body[120] & 1, 1);
    assert_eq!(&body[184..232], &[7; 48]);
    for i in 0..4 {
        let at = 328 + 48 * i;
        assert_eq!(&body[at..at + 48], &[i as u8 + 1; 48]);
    }
    assert_eq!(&body[0..16], &[9; 16]);
}

/// Our offsets, applied to the REAL quote, find the values the manifest lists for it.
#[test]
fn offsets_read_the_real_quote() {
    let q = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/tdx/dq-b0c06f-v4/quote.bin"
    ))
    .unwrap();
    let body = &q[48..632];
    assert_eq!(
        hex::encode(&body[0..16]),
        "06010300000000000000000000000000"
    );
    assert_eq!(hex::encode(&body[120..128]), "0000001000000000");
    assert_eq!(hex::encode(&body[128..136]), "e702060000000000");
    assert_eq!(
        hex::encode(&body[136..184]),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(
        hex::encode(&body[520..584]),
        "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
    );
    let qe_report = &q[636 + 134..636 + 134 + 384];
    assert_eq!(
        hex::encode_upper(&qe_report[128..160]),
        "DC9E2A7C6F948F17474E34A7FC43ED030F7C1563F1BABDDF6340C82E0E54A8C5"
    );
    assert_eq!(&qe_report[48..64], &collateral::QE_ATTRIBUTES);
}

#[test]
fn init_refuses_to_overwrite_and_open_checks_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("tdx");
    let l = init(&d, &TdxInitOptions::new(NOW)).unwrap();
    assert!(matches!(
        init(&d, &TdxInitOptions::new(NOW)),
        Err(SimError::AlreadyInitialized { .. })
    ));
    let mut force = TdxInitOptions::new(NOW);
    force.force = true;
    init(&d, &force).unwrap();

    // A PCK key from another set must be refused.
    let other = tempfile::tempdir().unwrap();
    let o = init(&other.path().join("tdx"), &TdxInitOptions::new(NOW)).unwrap();
    std::fs::copy(&o.pck_key, &l.pck_key).unwrap();
    let err = SimTdxDevice::open(&d).unwrap_err();
    assert!(matches!(err, SimError::Corrupt { .. }), "{err}");
    let msg = format!("{err} {err:?}");
    assert!(
        !msg.contains("PRIVATE KEY"),
        "no key material in errors: {msg}"
    );
    let dbg = format!("{:?}", SimTdxDevice::open(&o.dir).unwrap());
    assert!(!dbg.contains("PRIVATE") && dbg.contains("fmspc"), "{dbg}");
}

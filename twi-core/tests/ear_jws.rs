//! EAR signing and verification: what a relying party checks, and the verifier key's handling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;
use rand_core::OsRng;
use twi_core::ear::{
    self, sign, verify, Appraisal, Ear, Error, Jwks, KeyOrigin, Status, TrustVector, VerifierId,
    VerifierKey, EAR_PROFILE,
};

/// A test-only key, with its JWK coordinates and RFC 7638 thumbprint computed outside this code
/// (openssl for the point, Python's hashlib and json for the thumbprint).
const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgepzqFEY746tl4P6L
QJB+87fyoA8lyiF9M2BcmuB5C3yhRANCAAQ3U1nlAaa74EYeq3c7/Bpt54JI5GuB
4SQ+RmE6IA3v7wqKh2pIFGWWY0hlyG/eT9ArtU7tYsleuGA5MUPGgw89
-----END PRIVATE KEY-----
";
const TEST_KEY_X: &str = "N1NZ5QGmu-BGHqt3O_wabeeCSORrgeEkPkZhOiAN7-8";
const TEST_KEY_Y: &str = "CoqHakgUZZZjSGXIb95P0Cu1Tu1iyV64YDkxQ8aDDz0";
const TEST_KEY_THUMBPRINT: &str = "76jRodBYCGQ_RxCJ4LiHLk58OgrlPuzywRKg3q0TFZI";

const NOW: i64 = 1_750_000_000;

fn appraisal(status: Status) -> Appraisal {
    Appraisal {
        status,
        trust_vector: TrustVector {
            instance_identity: 2,
            configuration: 2,
            executables: 0,
            hardware: 2,
        },
        policy_ids: vec!["tag:twi-spire.dev,2026:policy/t/1?sha256=00".into()],
        nonce: Some(B64URL.encode([7u8; 32])),
        evidence_sha256: Some("ab".repeat(32)),
        tcb_status: Some("not-evaluated".into()),
        advisory_ids: Vec::new(),
        key_binding: Some("cd".repeat(32)),
        simulated: Some(false),
        reason: None,
    }
}

fn sample_ear() -> Ear {
    Ear {
        profile: EAR_PROFILE.into(),
        iat: NOW,
        exp: NOW + 3600,
        verifier_id: VerifierId {
            developer: ear::VERIFIER_DEVELOPER.into(),
            build: "twi-server-nodeattestor@0.1.0".into(),
        },
        status: Status::Affirming,
        submods: BTreeMap::from([("sev-snp".to_owned(), appraisal(Status::Affirming))]),
        agent_id: Some("spiffe://example.org/spire/agent/twi_snp/snp/00".into()),
    }
}

fn test_key() -> VerifierKey {
    VerifierKey::from_pkcs8_pem(TEST_KEY_PEM).unwrap()
}

/// Signs arbitrary header and payload JSON with the test key, bypassing `sign`'s own checks, to show
/// `verify` enforces them itself.
fn forge(header: &str, payload: &str) -> String {
    let sk = p256::ecdsa::SigningKey::from_pkcs8_pem(TEST_KEY_PEM).unwrap();
    let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let sig: p256::ecdsa::Signature = sk.sign(input.as_bytes());
    format!("{input}.{}", B64URL.encode(sig.to_bytes()))
}

fn header() -> String {
    format!(r#"{{"alg":"ES256","kid":"{TEST_KEY_THUMBPRINT}","typ":"eat+jwt"}}"#)
}

#[test]
fn jwk_and_kid_match_an_independent_computation() {
    let key = test_key();
    assert_eq!(key.kid(), TEST_KEY_THUMBPRINT);
    let jwk = key.public_jwk();
    assert_eq!(jwk.x.as_deref(), Some(TEST_KEY_X));
    assert_eq!(jwk.y.as_deref(), Some(TEST_KEY_Y));
    assert_eq!(jwk.kid.as_deref(), Some(TEST_KEY_THUMBPRINT));
    assert_eq!(jwk.thumbprint().unwrap(), TEST_KEY_THUMBPRINT);
    let jwks: serde_json::Value = serde_json::from_str(&key.jwks().to_json()).unwrap();
    assert_eq!(
        jwks,
        serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": TEST_KEY_X, "y": TEST_KEY_Y,
            "kid": TEST_KEY_THUMBPRINT, "alg": "ES256", "use": "sig"}]})
    );
}

#[test]
fn signed_ear_verifies_and_round_trips() {
    let key = test_key();
    let ear = sample_ear();
    let jws = sign(&ear, &key).unwrap();
    let jwks = Jwks::from_json(key.jwks().to_json().as_bytes()).unwrap();
    assert_eq!(verify(&jws, &jwks, NOW + 10).unwrap(), ear);

    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3);
    let h: serde_json::Value = serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(
        h,
        serde_json::json!({"alg": "ES256", "kid": TEST_KEY_THUMBPRINT, "typ": "eat+jwt"})
    );
    assert_eq!(B64URL.decode(parts[2]).unwrap().len(), 64);

    // The claim names of draft-ietf-rats-ear-04 and our project claims, as a relying party reads them.
    let p: serde_json::Value = serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(p["eat_profile"], "tag:ietf.org,2026:rats/ear#04");
    assert_eq!(p["ear_status"], "affirming");
    assert_eq!(
        p["ear_verifier_id"]["developer"],
        "https://github.com/twi-spire/twi-spire"
    );
    assert_eq!(
        p[ear::CLAIM_AGENT_ID],
        "spiffe://example.org/spire/agent/twi_snp/snp/00"
    );
    let s = &p["submods"]["sev-snp"];
    assert_eq!(s["ear_status"], "affirming");
    assert_eq!(
        s["ear_trustworthiness_vector"],
        serde_json::json!({"instance-identity": 2, "configuration": 2, "executables": 0, "hardware": 2})
    );
    assert_eq!(s["eat_nonce"], B64URL.encode([7u8; 32]));
    assert_eq!(s[ear::CLAIM_EVIDENCE_SHA256], "ab".repeat(32));
    assert_eq!(s[ear::CLAIM_KEY_BINDING], "cd".repeat(32));
    assert_eq!(s[ear::CLAIM_SIMULATED], false);
    assert_eq!(s[ear::CLAIM_TCB_STATUS], "not-evaluated");
    assert!(s.get(ear::CLAIM_ADVISORY_IDS).is_none());
}

#[test]
fn verify_refuses_what_a_relying_party_must_refuse() {
    let key = test_key();
    let jwks = key.jwks();
    let jws = sign(&sample_ear(), &key).unwrap();
    let parts: Vec<&str> = jws.split('.').collect();

    // Freshness, at the caller's clock.
    assert!(matches!(
        verify(&jws, &jwks, NOW + 3600),
        Err(Error::Expired { .. })
    ));
    assert!(verify(&jws, &jwks, NOW + 3599).is_ok());
    assert!(matches!(
        verify(&jws, &jwks, NOW - 61),
        Err(Error::NotYetValid { .. })
    ));

    // Tampered payload or signature.
    let mut other = sample_ear();
    other.agent_id = Some("spiffe://example.org/other".into());
    let other_payload = sign(&other, &key).unwrap();
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        other_payload.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert!(matches!(
        verify(&spliced, &jwks, NOW),
        Err(Error::Signature { .. })
    ));
    let mut sig = B64URL.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], B64URL.encode(sig));
    assert!(matches!(
        verify(&bad_sig, &jwks, NOW),
        Err(Error::Signature { .. })
    ));

    // Another key: unknown kid; another key under our kid: bad signature.
    let stranger = VerifierKey::generate(&mut OsRng);
    assert!(matches!(
        verify(&jws, &stranger.jwks(), NOW),
        Err(Error::UnknownKid { .. })
    ));
    let mut impostor = stranger.public_jwk();
    impostor.kid = Some(key.kid().to_owned());
    let forged_set = Jwks {
        keys: vec![impostor],
    };
    assert!(matches!(
        verify(&jws, &forged_set, NOW),
        Err(Error::Signature { .. })
    ));

    // Header rules, on correctly signed tokens.
    let payload = serde_json::to_string(&sample_ear()).unwrap();
    for (h, what) in [
        (r#"{"alg":"none","kid":"x"}"#.to_owned(), "alg none"),
        (
            format!(r#"{{"alg":"HS256","kid":"{TEST_KEY_THUMBPRINT}"}}"#),
            "HS256",
        ),
        (
            format!(r#"{{"alg":"ES384","kid":"{TEST_KEY_THUMBPRINT}"}}"#),
            "ES384",
        ),
    ] {
        let e = verify(&forge(&h, &payload), &jwks, NOW).unwrap_err();
        assert!(matches!(e, Error::Algorithm { .. }), "{what}: {e}");
    }
    for h in [
        r#"{"alg":"ES256"}"#.to_owned(),
        format!(r#"{{"alg":"ES256","kid":"{TEST_KEY_THUMBPRINT}","crit":["b64"]}}"#),
        format!(r#"{{"alg":"ES256","kid":"{TEST_KEY_THUMBPRINT}","typ":"JWT-SVID+x"}}"#),
    ] {
        let e = verify(&forge(&h, &payload), &jwks, NOW).unwrap_err();
        assert!(
            matches!(e, Error::Malformed { part: "header", .. }),
            "{h}: {e}"
        );
    }
    // The forging helper itself produces tokens verify accepts.
    assert!(verify(&forge(&header(), &payload), &jwks, NOW).is_ok());

    // Claims rules, on correctly signed tokens.
    let mut wrong_profile = serde_json::to_value(sample_ear()).unwrap();
    wrong_profile["eat_profile"] = "tag:github.com,2023:veraison/ear".into();
    let e = verify(&forge(&header(), &wrong_profile.to_string()), &jwks, NOW).unwrap_err();
    assert!(matches!(e, Error::Profile { .. }), "{e}");

    let mut no_exp = serde_json::to_value(sample_ear()).unwrap();
    no_exp.as_object_mut().unwrap().remove("exp");
    let e = verify(&forge(&header(), &no_exp.to_string()), &jwks, NOW).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Malformed {
                part: "payload",
                ..
            }
        ),
        "{e}"
    );

    let mut optimistic = sample_ear();
    optimistic
        .submods
        .insert("sev-snp".into(), appraisal(Status::Contraindicated));
    let e = verify(
        &forge(&header(), &serde_json::to_string(&optimistic).unwrap()),
        &jwks,
        NOW,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Claims { .. }), "{e}");
    // ... and sign refuses to produce it in the first place.
    assert!(matches!(sign(&optimistic, &key), Err(Error::Claims { .. })));

    // Shape.
    for junk in ["", "a.b", "a.b.c.d", "!!!.e30.AA", &format!("{jws}.")] {
        assert!(verify(junk, &jwks, NOW).is_err(), "{junk:?}");
    }
    assert!(matches!(
        verify(&"a".repeat(ear::MAX_JWS_LEN + 1), &jwks, NOW),
        Err(Error::Malformed { part: "jws", .. })
    ));
}

#[test]
fn status_combination_never_hides_a_worse_submod() {
    let mut e = sample_ear();
    assert!(e.is_affirming());
    e.submods.insert("tdx".into(), appraisal(Status::None));
    assert_eq!(e.combined_status(), Status::None);
    assert!(!e.is_affirming());
    assert!(e.check_structure().is_err(), "affirming over a none submod");
    e.status = Status::None;
    e.check_structure().unwrap();
    e.submods.insert("gpu".into(), appraisal(Status::Warning));
    assert_eq!(e.combined_status(), Status::Warning);

    for (v, s) in [
        (-1, Status::None),
        (0, Status::None),
        (1, Status::None),
        (2, Status::Affirming),
        (31, Status::Affirming),
        (32, Status::Warning),
        (95, Status::Warning),
        (96, Status::Contraindicated),
        (99, Status::Contraindicated),
        (-128, Status::Contraindicated),
    ] {
        assert_eq!(Status::of_claim(v), s, "{v}");
    }
}

#[test]
fn verifier_key_file_is_made_once_private_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ear-key.pem");
    let (k1, o1) = VerifierKey::load_or_generate(&path, &mut OsRng).unwrap();
    assert_eq!(o1, KeyOrigin::Generated);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (k2, o2) = VerifierKey::load_or_generate(&path, &mut OsRng).unwrap();
    assert_eq!(o2, KeyOrigin::Loaded);
    assert_eq!(k1.kid(), k2.kid());
    assert_eq!(VerifierKey::load(&path).unwrap().kid(), k1.kid());
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // A result signed before a restart verifies with the key loaded after it.
    let jws = sign(&sample_ear(), &k1).unwrap();
    verify(&jws, &k2.jwks(), NOW).unwrap();

    // The key never shows in Debug output or errors.
    let pem = std::fs::read_to_string(&path).unwrap();
    let body: String = pem.lines().nth(1).unwrap().to_owned();
    assert!(!format!("{k1:?}").contains(&body));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = VerifierKey::load(&path).unwrap_err();
    assert!(
        matches!(e, Error::KeyPermissions { mode: 0o644, .. }),
        "{e}"
    );

    let bad = dir.path().join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LW5vdC1hLWtleQ==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = VerifierKey::load(&bad).unwrap_err();
    assert!(matches!(e, Error::Key { .. }), "{e}");
    assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
}

#[test]
fn policy_id_is_a_tag_uri_with_its_digest() {
    let id = ear::PolicyId::new("twi_snp", "0.1.0", &"AB".repeat(32)).unwrap();
    assert_eq!(
        id.uri(),
        format!(
            "tag:twi-spire.dev,2026:policy/twi_snp/0.1.0?sha256={}",
            "ab".repeat(32)
        )
    );
    for (n, v, d) in [
        ("a/b", "1", "00".repeat(32)),
        ("a", "", "00".repeat(32)),
        ("a", "1", "00".repeat(31)),
        ("a", "1", "zz".repeat(32)),
    ] {
        assert!(ear::PolicyId::new(n, v, &d).is_err(), "{n} {v} {d}");
    }
}

//! The credential formats read by code that is not ours, and the documentation kept in step with the
//! code: ciborium (an independent CBOR decoder) reads the record and sees RFC 8949 §4.2.1 order; coset
//! reads the statement; the CDDL in `doc/record.cddl` names every key the encoder writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use ciborium::value::Value;
use coset::TaggedCborSerializable as _;
use twi_credential_composer::cmw::Cmw;
use twi_credential_composer::jwt::{add_claims, read_claims, CprovRef};
use twi_credential_composer::record::{
    CredentialKind, CredentialProvenanceRecord, EarRef, EarSummary, EvidenceRef, PolicyRef,
    ResourceDescriptor,
};
use twi_credential_composer::statement::{
    sign_statement, verify_statement, ProvenanceKey, STATEMENT_CONTENT_TYPE,
};

fn full_record() -> CredentialProvenanceRecord {
    CredentialProvenanceRecord {
        rid: CredentialProvenanceRecord::new_rid(1_760_000_000_000),
        kind: CredentialKind::X509,
        sub: "spiffe://example.org/w".into(),
        spki_sha256: Some([1; 32]),
        iat: 1_760_000_000,
        ear: EarRef::One(EarSummary {
            sha256: [2; 32],
            status: "affirming".into(),
            verifier: "v".into(),
            policy_ids: vec!["p".into()],
            key_bound: Some(false),
        }),
        evidence: Some(EvidenceRef {
            kind: "tdx".into(),
            sha256: [3; 32],
        }),
        policy: Some(PolicyRef {
            id: "e".into(),
            version: "1".into(),
            sha256: Some([4; 32]),
        }),
        wprov: vec![ResourceDescriptor {
            name: Some("n".into()),
            uri: Some("u".into()),
            digest: BTreeMap::from([("sha256".into(), "00".repeat(32))]),
            media_type: Some("m".into()),
            annotations: BTreeMap::from([("k".into(), "v".into())]),
        }],
    }
}

/// Checks RFC 8949 §4.2.1 on a decoded tree: map keys strictly increasing by encoded bytes.
fn assert_deterministic(v: &Value) {
    match v {
        Value::Map(entries) => {
            let keys: Vec<Vec<u8>> = entries
                .iter()
                .map(|(k, _)| {
                    let mut b = Vec::new();
                    ciborium::ser::into_writer(k, &mut b).unwrap();
                    b
                })
                .collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:02x?}");
            for (k, v) in entries {
                assert_deterministic(k);
                assert_deterministic(v);
            }
        }
        Value::Array(items) => items.iter().for_each(assert_deterministic),
        Value::Tag(..) | Value::Float(_) | Value::Null => panic!("{v:?} in a record"),
        _ => {}
    }
}

#[test]
fn ciborium_reads_the_record_in_deterministic_order() {
    let bytes = full_record().to_cbor();
    let v: Value = ciborium::de::from_reader(bytes.as_slice()).unwrap();
    assert_deterministic(&v);
    // ciborium re-encodes definite-length items with shortest heads: same bytes.
    let mut again = Vec::new();
    ciborium::ser::into_writer(&v, &mut again).unwrap();
    assert_eq!(again, bytes);
    let keys: Vec<i128> = v
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_integer().unwrap().into())
        .collect();
    assert_eq!(keys, (0..=9).collect::<Vec<_>>());
}

#[test]
fn cddl_names_every_key_the_encoder_writes() {
    let cddl =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/doc/record.cddl")).unwrap();
    let bytes = full_record().to_cbor();
    let v: Value = ciborium::de::from_reader(bytes.as_slice()).unwrap();
    let group = |name: &str| -> String {
        let start = cddl
            .find(&format!("{name} = {{"))
            .unwrap_or_else(|| panic!("{name}"));
        let end = start + cddl[start..].find("\n}").unwrap();
        cddl[start..end].to_owned()
    };
    let int_keys = |v: &Value| -> Vec<i128> {
        v.as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_integer().unwrap().into())
            .collect()
    };
    let text_keys = |v: &Value| -> Vec<String> {
        v.as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_text().unwrap().to_owned())
            .collect()
    };
    let record = v.as_map().unwrap();
    let member = |key: i128| {
        &record
            .iter()
            .find(|(k, _)| i128::from(k.as_integer().unwrap()) == key)
            .unwrap()
            .1
    };
    for (name, map) in [
        ("credential-provenance-record", &v),
        ("ear-summary", member(6)),
        ("evidence-ref", member(7)),
        ("policy-ref", member(8)),
    ] {
        let g = group(name);
        for k in int_keys(map) {
            assert!(
                g.contains(&format!("  {k} => ")) || g.contains(&format!("? {k} => ")),
                "{name} lacks key {k}:\n{g}"
            );
        }
    }
    let rd = &member(9).as_array().unwrap()[0];
    let g = group("resource-descriptor");
    for k in text_keys(rd) {
        assert!(
            g.contains(&format!("\"{k}\" =>")),
            "resource-descriptor lacks {k:?}"
        );
    }
}

#[test]
fn coset_reads_the_statement_as_written() {
    let key = ProvenanceKey::generate();
    let st = sign_statement(&full_record(), "example.org/composer", &key);
    let sign1 = coset::CoseSign1::from_tagged_slice(&st).unwrap();
    assert_eq!(
        sign1.protected.header.alg,
        Some(coset::RegisteredLabelWithPrivate::Assigned(
            coset::iana::Algorithm::EdDSA
        ))
    );
    assert_eq!(
        sign1.protected.header.content_type,
        Some(coset::ContentType::Text(STATEMENT_CONTENT_TYPE.into()))
    );
    assert_eq!(
        sign1.protected.header.key_id,
        key.public_key().key_id_bytes().to_vec()
    );
    assert!(sign1.unprotected.is_empty());
    // The payload is the record's deterministic CBOR, unchanged.
    let record = CredentialProvenanceRecord::from_cbor(sign1.payload.as_deref().unwrap()).unwrap();
    assert_eq!(
        record.to_cbor().as_slice(),
        sign1.payload.as_deref().unwrap()
    );
    assert_eq!(
        verify_statement(&st, &key.public_key()).unwrap().record,
        record
    );
    // The protected header is exactly {1: -8, 3: ct, 4: kid, 15: {1: iss, 2: sub}}.
    let hdr: Value =
        ciborium::de::from_reader(sign1.protected.original_data.as_deref().unwrap()).unwrap();
    let keys: Vec<i128> = hdr
        .as_map()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_integer().unwrap().into())
        .collect();
    assert_eq!(keys, vec![1, 3, 4, 15]);
}

#[test]
fn jwt_claims_carry_the_same_cmw() {
    let cmw = Cmw::ear_collection(&[("spiffe://example.org/spire/agent/a".into(), "a.b.c".into())]);
    let mut claims = serde_json::Map::new();
    let st = b"statement";
    let rid = CredentialProvenanceRecord::new_rid(1);
    add_claims(
        &mut claims,
        Some(&cmw),
        &rid,
        &CprovRef::for_statement("o", 3, st),
    );
    let text = serde_json::to_string(&claims).unwrap();
    let back: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let (c, r, p) = read_claims(&back).unwrap();
    assert_eq!(
        c.unwrap(),
        Cmw::from_extn_value(&cmw.to_extn_value()).unwrap()
    );
    assert_eq!(r, rid);
    assert_eq!((p.log.as_str(), p.idx), ("o", 3));
}

#[test]
fn every_single_byte_change_is_refused_or_canonical() {
    use twi_credential_composer::extension::{ProofForm, TwiProvenance};
    let record = full_record().to_cbor();
    let key = ProvenanceKey::generate();
    let st = sign_statement(&full_record(), "example.org/composer", &key);
    let ext = TwiProvenance {
        statement: st.clone(),
        proof: Some(ProofForm::TlogProof(
            "c2sp.org/tlog-proof@v1\nindex 0\n\nx".into(),
        )),
    }
    .to_der();
    let cmw = Cmw::ear("a.b.c").to_extn_value();
    for i in 0..record.len().max(st.len()).max(ext.len()) {
        for delta in [0x01u8, 0x80] {
            if let Some(mut r) = record.get(i).map(|_| record.clone()) {
                r[i] ^= delta;
                // A changed record either fails or is another record in canonical form.
                if let Ok(dec) = CredentialProvenanceRecord::from_cbor(&r) {
                    assert_eq!(dec.to_cbor(), r, "byte {i}");
                }
                assert!(CredentialProvenanceRecord::from_cbor(&r[..i]).is_err() || i == 0);
            }
            // (Ed25519 verification is slow unoptimised: one flip per byte is enough here.)
            if let Some(mut s) = st.get(i).filter(|_| delta == 0x01).map(|_| st.clone()) {
                s[i] ^= delta;
                assert!(
                    verify_statement(&s, &key.public_key()).is_err(),
                    "statement byte {i}"
                );
                assert!(verify_statement(&st[..i], &key.public_key()).is_err());
            }
            if let Some(mut e) = ext.get(i).map(|_| ext.clone()) {
                e[i] ^= delta;
                if let Ok(p) = TwiProvenance::from_der(&e) {
                    assert_eq!(p.to_der(), e, "extension byte {i}");
                }
                assert!(TwiProvenance::from_der(&ext[..i]).is_err());
            }
            if let Some(mut c) = cmw.get(i).map(|_| cmw.clone()) {
                c[i] ^= delta;
                if let Ok(parsed) = Cmw::from_extn_value(&c) {
                    assert_eq!(parsed.to_extn_value(), c, "cmw byte {i}");
                }
            }
        }
    }
}

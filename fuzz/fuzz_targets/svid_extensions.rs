//! What a relying party parses out of an SVID or a JWT-SVID built by our credential composer (issue #5):
//! the `id-pe-cmw` extension value, a CMW in JSON, the credential-provenance record (CBOR), the
//! `TwiProvenance` extension (DER), the COSE_Sign1 statement, and the JWT claims. The first byte picks
//! the parser; the rest is its input. Beyond "no panic":
//! - the record decoder accepts only canonical CBOR, so re-encoding a decoded record gives the input;
//! - `TwiProvenance` is DER, so re-encoding gives the input;
//! - a decoded CMW survives its own extension and JSON encodings unchanged;
//! - claims that read back are written back the same by `add_claims`.
#![no_main]
use twi_credential_composer::cmw::Cmw;
use twi_credential_composer::extension::TwiProvenance;
use twi_credential_composer::jwt;
use twi_credential_composer::record::CredentialProvenanceRecord;
use twi_credential_composer::statement::UnverifiedStatement;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(c) = Cmw::from_extn_value(input) {
                let again = Cmw::from_extn_value(&c.to_extn_value()).expect("own extension encoding");
                assert!(again == c, "CMW changed through its extension encoding");
                let json = Cmw::from_json_value(&c.to_json_value()).expect("own JSON encoding");
                assert!(json == c, "CMW changed through its JSON encoding");
            }
        }
        1 => {
            if let Ok(c) = Cmw::from_json_bytes(input) {
                let again = Cmw::from_json_bytes(c.to_json_string().as_bytes()).expect("own JSON");
                assert!(again == c, "CMW changed through its JSON string");
                for (_, jws) in c.ear_jwss() {
                    let _ = twi_credential_composer::cmw::ear_digest(&jws);
                }
            }
        }
        2 => {
            if let Ok(r) = CredentialProvenanceRecord::from_cbor(input) {
                assert_eq!(r.to_cbor(), input, "a decoded record re-encodes differently");
            }
        }
        3 => {
            if let Ok(t) = TwiProvenance::from_der(input) {
                assert_eq!(t.to_der(), input, "TwiProvenance is DER: one encoding");
            }
        }
        4 => {
            if let Ok(s) = UnverifiedStatement::parse(input) {
                let _ = s.record();
            }
        }
        _ => {
            let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(input) else {
                return;
            };
            if let Ok((cmw, rid, cprov)) = jwt::read_claims(&map) {
                let mut written = serde_json::Map::new();
                jwt::add_claims(&mut written, cmw.as_ref(), &rid, &cprov);
                let (cmw2, rid2, cprov2) = jwt::read_claims(&written).expect("own claims");
                assert!(cmw2 == cmw && rid2 == rid && cprov2 == cprov, "claims changed");
            }
        }
    }
});

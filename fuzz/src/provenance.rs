//! Invariants of the workload attestor's provenance parsers (`twi_workload_attestor::provenance`), the
//! code that reads what an attestation store (an operator's directory, later a registry) hands the agent.
//!
//! Each `check_*` function is one fuzz target's body. Beyond "does not panic", they assert what the
//! provenance pipeline relies on:
//!
//! - [`check_json`]: the strict parser accepts exactly what serde_json accepts minus duplicate keys, with
//!   the same value; parse → serialize → parse is stable; nesting is bounded; RFC 8785 (JCS) output
//!   re-parses to the same value (numbers as doubles) and is a fixed point of canonicalization;
//! - [`check_envelope`]: an accepted DSSE envelope has 1..=`MAX_SIGNATURES` non-empty signatures and
//!   decoded sizes bounded by the input; it survives a round trip through JSON in both base64 alphabets;
//!   a signature by a trusted key over its PAE verifies and the same signature under another payload type
//!   does not;
//! - [`check_statement`]: the payload of a *verified* envelope reads as the same Statement (or the same
//!   error) as the bytes read directly (checked on a sample: signing is slow under the sanitizers); an
//!   accepted Statement round-trips, its SHA-256 subjects are
//!   lower-case and findable; its predicate then goes through [`check_slsa`] or [`check_sbom`] as the
//!   store would dispatch it;
//! - [`check_slsa`]: every value that becomes a selector passes `slsa::clean` (non-empty, bounded, no
//!   control characters); exactly one of source / reason is given; the source (repository and commit)
//!   is one the document names; re-serializing the predicate changes nothing;
//! - [`check_sbom`]: the SBOM digest is the SHA-256 of the JCS bytes, lower-case hex, and does not change
//!   when the SBOM is re-serialized (pretty-printed); the component count is the array's length; only a
//!   non-object or a contradicting format marker is refused.
//!
//! Signing uses one fixed P-256 key ([`keys`]) so that hostile payloads get past the signature check and
//! reach the Statement and predicate readers, as in the TDX targets' re-signing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::GeneralPurpose;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use twi_workload_attestor::provenance::dsse::{Envelope, EnvelopeSignature, MAX_SIGNATURES};
use twi_workload_attestor::provenance::keys::TrustedKey;
use twi_workload_attestor::provenance::sbom::{self, SbomFormat};
use twi_workload_attestor::provenance::statement::{
    Statement, StatementError, STATEMENT_V01, STATEMENT_V1,
};
use twi_workload_attestor::provenance::testing::{self, Signer};
use twi_workload_attestor::provenance::{jcs, json as strict, slsa};

/// serde_json's recursion limit, which bounds the nesting the strict parser accepts.
pub const MAX_DEPTH: usize = 128;

/// The fixed signer of the harness and the same key as the store would trust it.
pub struct Keys {
    pub signer: Signer,
    pub trusted: TrustedKey,
}

/// The per-process signer (a fixed secret: crashes reproduce byte for byte).
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = Signer::from_secret("fuzz", &[0x42; 32]).expect("fixed P-256 scalar");
        let trusted = signer
            .trusted_key()
            .expect("the signer's own public key loads");
        Keys { signer, trusted }
    })
}

/// Nesting depth of `v`: 0 for a scalar, 1 + the deepest child for an array or object.
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `a` and `b` are the same JSON value when every number is read as a double (what JCS keeps).
fn same_as_doubles(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_as_doubles(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| same_as_doubles(p, q)))
        }
        _ => a == b,
    }
}

/// serde_json's private marker for `RawValue` (serde_json/src/raw.rs, `TOKEN`).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Whether the input may use serde_json's `RawValue` marker as an object key: literally in the bytes,
/// or (escaped) as a key of the value the strict parser read.
fn names_raw_value_token(data: &[u8], parsed: Option<&Value>) -> bool {
    fn has_key(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, x)| k == RAW_VALUE_TOKEN || has_key(x)),
            Value::Array(a) => a.iter().any(has_key),
            _ => false,
        }
    }
    data.windows(b"private::RawValue".len())
        .any(|w| w == b"private::RawValue")
        || parsed.is_some_and(has_key)
}

/// JCS of `v`, checked: valid strict JSON, the same value (numbers as doubles), canonicalization is
/// idempotent. Returns the canonical bytes.
pub fn check_jcs(v: &Value) -> Vec<u8> {
    let c = jcs::canonicalize(v);
    let back = strict::parse(&c).unwrap_or_else(|e| {
        panic!(
            "JCS output is not strict JSON ({e}): {}",
            String::from_utf8_lossy(&c)
        )
    });
    assert!(
        same_as_doubles(&back, v),
        "JCS changed the value: {v} became {back}"
    );
    assert_eq!(
        jcs::canonicalize(&back),
        c,
        "JCS is not a fixed point: {}",
        String::from_utf8_lossy(&c)
    );
    c
}

/// `json::parse`: see the module documentation. Returns the value when the input is strict JSON.
pub fn check_json(data: &[u8]) -> Option<Value> {
    let strict_result = strict::parse(data);
    let reference = if names_raw_value_token(data, strict_result.as_ref().ok()) {
        // serde_json is no reference here: with its `raw_value` feature (enabled in this build by
        // feature unification) an object whose key is this token is read as embedded JSON text, not as
        // an object. The strict parser rightly reads an ordinary object; the checks below still run.
        None
    } else {
        Some(serde_json::from_slice::<Value>(data))
    };
    match (&strict_result, reference) {
        (_, None) => {}
        (Ok(s), Some(Ok(l))) => assert_eq!(s, &l, "strict and serde_json read different values"),
        (Ok(_), Some(Err(e))) => panic!("the strict parser accepted what serde_json refuses: {e}"),
        (Err(e), Some(Ok(_))) => assert!(
            e.to_string().contains("duplicate key"),
            "the strict parser refused JSON serde_json accepts, not for a duplicate key: {e}"
        ),
        (Err(_), Some(Err(_))) => {}
    }
    let v = strict_result.ok()?;
    assert!(depth(&v) <= MAX_DEPTH, "nesting {} accepted", depth(&v));
    let text = serde_json::to_vec(&v).unwrap();
    let again = strict::parse(&text).expect("serialized JSON re-parses");
    assert_eq!(again, v, "parse -> serialize -> parse changed the value");
    assert_eq!(
        serde_json::to_vec(&again).unwrap(),
        text,
        "serialization is not stable"
    );
    check_jcs(&v);
    Some(v)
}

/// An envelope as JSON text, payload and signatures in `engine`'s base64.
fn envelope_text(env: &Envelope, engine: &GeneralPurpose) -> Vec<u8> {
    let sigs: Vec<Value> = env
        .signatures
        .iter()
        .map(|s| match &s.keyid {
            Some(k) => json!({"keyid": k, "sig": engine.encode(&s.sig)}),
            None => json!({"sig": engine.encode(&s.sig)}),
        })
        .collect();
    serde_json::to_vec(&json!({
        "payloadType": env.payload_type,
        "payload": engine.encode(&env.payload),
        "signatures": sigs,
    }))
    .unwrap()
}

/// `Envelope::from_json` and `Envelope::verify`: see the module documentation.
pub fn check_envelope(data: &[u8]) {
    let Ok(v) = strict::parse(data) else {
        return;
    };
    let Ok(env) = Envelope::from_json(&v) else {
        return;
    };
    assert!(
        (1..=MAX_SIGNATURES).contains(&env.signatures.len()),
        "{} signatures accepted",
        env.signatures.len()
    );
    assert!(
        env.payload.len() <= data.len(),
        "payload larger than the input"
    );
    for s in &env.signatures {
        assert!(
            !s.sig.is_empty() && s.sig.len() <= data.len(),
            "signature of {} bytes",
            s.sig.len()
        );
        assert_ne!(s.keyid.as_deref(), Some(""), "empty keyid kept");
    }
    for engine in [&STANDARD, &URL_SAFE_NO_PAD] {
        let text = envelope_text(&env, engine);
        let back = Envelope::from_json(&strict::parse(&text).unwrap())
            .expect("a re-encoded envelope parses");
        assert_eq!(back, env, "envelope round trip changed it");
    }
    let k = keys();
    let trusted = std::slice::from_ref(&k.trusted);
    // The envelope's own (hostile) signatures: any outcome but a panic; a success names our key only.
    if let Ok(verified) = env.verify(trusted) {
        assert_eq!(verified.payload(), env.payload.as_slice());
        assert_eq!(verified.signers().len(), 1);
    }
    let ours = EnvelopeSignature {
        keyid: None,
        sig: k.signer.sign(&env.payload_type, &env.payload),
    };
    let mut signed = env.clone();
    signed.signatures.push(ours.clone());
    let verified = signed
        .verify(trusted)
        .expect("a trusted signature over the PAE verifies");
    assert_eq!(verified.payload(), env.payload.as_slice());
    assert_eq!(verified.payload_type(), env.payload_type);
    assert_eq!(verified.signers()[0].name(), "fuzz");
    // The PAE binds the type: our signature presented under another type does not verify.
    let retyped = Envelope {
        payload_type: format!("{}x", env.payload_type),
        payload: env.payload.clone(),
        signatures: vec![ours],
    };
    assert!(
        retyped.verify(trusted).is_err(),
        "a signature verified under another payloadType"
    );
}

/// One input in this many goes through a signed envelope in [`check_statement`].
pub const SIGNED_SAMPLE: u64 = 32;

/// FNV-1a: a cheap, deterministic choice of inputs (a crash reproduces from its bytes alone).
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The Statement as `JSON value` (what `Statement::from_json` should read back as `st`).
fn statement_json(st: &Statement) -> Value {
    let subjects: Vec<Value> = st
        .subjects
        .iter()
        .map(|s| {
            let mut o = serde_json::Map::new();
            if let Some(n) = &s.name {
                o.insert("name".into(), json!(n));
            }
            let mut d = serde_json::Map::new();
            if let Some(h) = &s.sha256 {
                d.insert("sha256".into(), json!(h));
            }
            o.insert("digest".into(), Value::Object(d));
            Value::Object(o)
        })
        .collect();
    json!({
        "_type": st.statement_type,
        "subject": subjects,
        "predicateType": st.predicate_type,
        "predicate": st.predicate,
    })
}

/// `Statement::from_envelope` / `from_json`, then the predicate readers: see the module documentation.
pub fn check_statement(data: &[u8]) {
    let direct: Result<Statement, StatementError> = match strict::parse(data) {
        Ok(v) => Statement::from_json(v),
        Err(e) => Err(StatementError::Json {
            detail: e.to_string(),
        }),
    };
    // Through a signed envelope, as the store reads it. ECDSA under the sanitizers costs milliseconds,
    // so a deterministic 1 in SIGNED_SAMPLE of the inputs take this path; the rest read the bytes.
    if fnv1a(data).is_multiple_of(SIGNED_SAMPLE) {
        let k = keys();
        let text = k.signer.envelope(data);
        let env = Envelope::from_json(&strict::parse(text.as_bytes()).unwrap())
            .expect("the signer's envelope parses");
        assert_eq!(env.payload, data);
        let verified = env
            .verify(std::slice::from_ref(&k.trusted))
            .expect("the signer's envelope verifies");
        assert_eq!(
            Statement::from_envelope(&verified),
            direct,
            "a verified payload reads differently from its bytes"
        );
    }
    let Ok(st) = direct else {
        return;
    };
    assert!(st.statement_type == STATEMENT_V1 || st.statement_type == STATEMENT_V01);
    assert!(!st.subjects.is_empty(), "a Statement without subjects");
    let mut shown = 40usize;
    for s in &st.subjects {
        if let Some(h) = &s.sha256 {
            assert_eq!(h, &h.to_ascii_lowercase(), "sha256 not lower-cased");
            let found = st
                .subject_for(h)
                .expect("a subject's digest finds a subject");
            assert_eq!(found.sha256.as_ref(), Some(h));
        }
        shown +=
            s.name.as_ref().map_or(9, String::len) + s.sha256.as_ref().map_or(6, String::len) + 16;
    }
    assert!(
        st.describe_subjects(3).len() <= shown,
        "subject description longer than its subjects"
    );
    let back = Statement::from_json(statement_json(&st)).expect("a rebuilt Statement parses");
    assert_eq!(back, st, "Statement round trip changed it");
    // The store's dispatch on the predicate type.
    let pt = st.predicate_type.as_str();
    if pt == slsa::SLSA_V1 || pt == slsa::SLSA_V02 {
        check_slsa(pt, &st.predicate);
    } else if let Some(format) = SbomFormat::of_predicate_type(pt) {
        check_sbom(format, &st.predicate);
    }
}

/// Re-serialized and re-parsed (strict): the same value, written another way.
fn reparsed(v: &Value, pretty: bool) -> Value {
    let text = if pretty {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    }
    .unwrap();
    strict::parse(&text).expect("serialized JSON re-parses")
}

fn assert_clean(what: &str, s: &str) {
    assert_eq!(
        slsa::clean(s),
        Ok(s),
        "{what} {s:?} is not a clean selector value"
    );
}

/// `slsa::read`: see the module documentation.
pub fn check_slsa(predicate_type: &str, p: &Value) {
    let got = slsa::read(predicate_type, p);
    assert_eq!(
        slsa::read(predicate_type, &reparsed(p, true)),
        got,
        "re-serializing the predicate changed what it says"
    );
    let Ok(prov) = got else {
        return;
    };
    assert_clean("builder id", &prov.builder_id);
    assert_clean("build type", &prov.build_type);
    assert!(
        prov.source.is_some() != prov.source_note.is_some(),
        "want exactly one of a source and a reason: {prov:?}"
    );
    let Some(src) = &prov.source else {
        return;
    };
    assert_clean("source repository", &src.repository);
    if let Some(r) = &src.git_ref {
        assert_clean("source ref", r);
    }
    assert!(
        matches!(src.commit.len(), 40 | 64)
            && src
                .commit
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "commit {:?}",
        src.commit
    );
    // The source is one the document names, with that commit.
    let candidates: Vec<&Value> = if predicate_type == slsa::SLSA_V02 {
        p.pointer("/invocation/configSource").into_iter().collect()
    } else {
        p.pointer("/buildDefinition/resolvedDependencies")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    };
    let named = candidates.iter().any(|d| {
        let uri = d.get("uri").and_then(Value::as_str);
        let commit = d
            .get("digest")
            .and_then(|g| g.get("gitCommit").or_else(|| g.get("sha1")))
            .and_then(Value::as_str);
        uri.is_some_and(|u| {
            u.strip_prefix("git+")
                .unwrap_or(u)
                .starts_with(&src.repository)
        }) && commit.is_some_and(|c| c.to_ascii_lowercase() == src.commit)
    });
    assert!(named, "source {src:?} is not in the document");
}

/// `sbom::read`: see the module documentation.
pub fn check_sbom(format: SbomFormat, p: &Value) {
    let got = sbom::read(format, p);
    assert_eq!(
        sbom::read(format, &reparsed(p, true)),
        got,
        "re-serializing the SBOM changed its digest or verdict"
    );
    let (marker, prefix, list) = match format {
        SbomFormat::CycloneDx => ("bomFormat", "CycloneDX", "components"),
        SbomFormat::Spdx => ("spdxVersion", "SPDX-", "packages"),
        _ => unreachable!("a format this harness does not know"),
    };
    match got {
        Ok(s) => {
            assert_eq!(s.format, format);
            let want = hex::encode(Sha256::digest(check_jcs(p)));
            assert_eq!(s.sha256, want, "the SBOM digest is not over its JCS form");
            assert_eq!(
                s.components,
                p.get(list).and_then(Value::as_array).map(Vec::len)
            );
        }
        Err(_) => {
            let contradicted = p.as_object().is_none_or(|o| {
                o.get(marker)
                    .is_some_and(|m| !m.as_str().is_some_and(|t| t.starts_with(prefix)))
            });
            assert!(contradicted, "an SBOM refused without a reason: {p}");
        }
    }
}

/// Writes seeds made from the provenance tests' own fixtures (`provenance::testing`) into
/// `$TWI_FUZZ_SEED_DIR`, so a run starts from inputs that get through every step; the envelopes are
/// signed by [`keys`].
pub fn write_seeds(target: &str) {
    let Some(dir) = std::env::var_os("TWI_FUZZ_SEED_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let _ = std::fs::create_dir_all(&dir);
    let digest = "ab".repeat(32);
    let slsa = testing::slsa_v1_predicate(
        "https://github.com/actions/runner/github-hosted",
        "https://github.com/twi-spire/app",
        "refs/heads/main",
        "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d",
    );
    let bom = testing::cyclonedx_bom(3);
    let spdx = json!({"spdxVersion": "SPDX-2.3", "packages": [{"name": "a"}, {"name": "b"}]});
    let statements = [
        (
            "st-slsa-v1.json",
            testing::statement("app", &digest, slsa::SLSA_V1, slsa.clone()),
        ),
        (
            "st-cyclonedx.json",
            testing::statement(
                "app",
                &digest,
                "https://cyclonedx.org/bom/v1.5",
                bom.clone(),
            ),
        ),
        (
            "st-spdx.json",
            testing::statement("app", &digest, "https://spdx.dev/Document", spdx.clone()),
        ),
    ];
    let k = keys();
    let files: Vec<(String, Vec<u8>)> = match target {
        "dsse_envelope" => statements
            .iter()
            .map(|(n, st)| {
                (
                    format!("signed-{n}"),
                    k.signer.envelope(st.to_string().as_bytes()).into_bytes(),
                )
            })
            .collect(),
        "intoto_statement" => statements
            .iter()
            .map(|(n, st)| ((*n).to_owned(), st.to_string().into_bytes()))
            .collect(),
        "slsa_provenance" => vec![("testing-slsa-v1.json".into(), slsa.to_string().into_bytes())],
        "sbom" => vec![
            (
                "testing-cyclonedx.json".into(),
                bom.to_string().into_bytes(),
            ),
            ("testing-spdx.json".into(), spdx.to_string().into_bytes()),
        ],
        _ => Vec::new(),
    };
    for (name, bytes) in files {
        let _ = std::fs::write(dir.join(name), bytes);
    }
}

//! in-toto Statements (v1 and v0.1): what was attested (subjects, by digest) and the predicate.
//!
//! Spec: <https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>. A Statement is
//! `{"_type": …, "subject": [{"name": …, "digest": {"sha256": HEX, …}}, …], "predicateType": URI,
//! "predicate": {…}}`. Only a [`VerifiedEnvelope`]'s payload is parsed, so nothing here reads unsigned
//! data. Subject names are informational: the executable is matched by SHA-256 alone (a name is whatever
//! the builder called the file, not where it was installed).

use serde_json::Value;

use super::dsse::{VerifiedEnvelope, IN_TOTO_PAYLOAD_TYPE};
use super::json;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// `_type` of an in-toto Statement v0.1 (what older cosign and slsa-github-generator v1 write).
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";

/// Why a verified payload is not a usable Statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatementError {
    /// The envelope's `payloadType` is not the in-toto one.
    #[error("payloadType is {got:?}, not {IN_TOTO_PAYLOAD_TYPE:?}")]
    PayloadType {
        /// The type found.
        got: String,
    },
    /// The payload is not JSON (or has duplicate keys).
    #[error("payload is not JSON: {detail}")]
    Json {
        /// The parser's message.
        detail: String,
    },
    /// A field is missing or of the wrong type.
    #[error("malformed statement: {field}: {detail}")]
    Malformed {
        /// The field, e.g. `subject[0].digest`.
        field: String,
        /// What was wrong.
        detail: String,
    },
    /// `_type` is not a Statement version this plugin reads.
    #[error("_type {got:?} is not {STATEMENT_V1:?} or {STATEMENT_V01:?}")]
    UnknownType {
        /// The type found.
        got: String,
    },
}

/// One subject of a Statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementSubject {
    /// `name`, if any.
    pub name: Option<String>,
    /// `digest.sha256`, lower-cased, if any.
    pub sha256: Option<String>,
}

/// A Statement read from a verified envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `_type`.
    pub statement_type: String,
    /// `subject`.
    pub subjects: Vec<StatementSubject>,
    /// `predicateType`.
    pub predicate_type: String,
    /// `predicate` (`null` if absent).
    pub predicate: Value,
}

impl Statement {
    /// Parses the payload of a verified envelope as an in-toto Statement.
    ///
    /// # Errors
    ///
    /// [`StatementError`] naming what was wrong.
    pub fn from_envelope(env: &VerifiedEnvelope) -> Result<Self, StatementError> {
        if env.payload_type() != IN_TOTO_PAYLOAD_TYPE {
            return Err(StatementError::PayloadType {
                got: env.payload_type().to_owned(),
            });
        }
        let value = json::parse(env.payload()).map_err(|e| StatementError::Json {
            detail: e.to_string(),
        })?;
        Self::from_json(value)
    }

    /// Reads a Statement from parsed JSON.
    ///
    /// # Errors
    ///
    /// [`StatementError`] naming what was wrong.
    pub fn from_json(value: Value) -> Result<Self, StatementError> {
        let malformed = |field: &str, detail: &str| StatementError::Malformed {
            field: field.to_owned(),
            detail: detail.to_owned(),
        };
        let Value::Object(mut obj) = value else {
            return Err(malformed("(statement)", "not a JSON object"));
        };
        let string =
            |obj: &serde_json::Map<String, Value>, field: &str| -> Result<String, StatementError> {
                obj.get(field)
                    .ok_or_else(|| malformed(field, "missing"))?
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| malformed(field, "not a string"))
            };
        let statement_type = string(&obj, "_type")?;
        if statement_type != STATEMENT_V1 && statement_type != STATEMENT_V01 {
            return Err(StatementError::UnknownType {
                got: statement_type,
            });
        }
        let predicate_type = string(&obj, "predicateType")?;
        let subjects_json = obj
            .get("subject")
            .ok_or_else(|| malformed("subject", "missing"))?
            .as_array()
            .ok_or_else(|| malformed("subject", "not an array"))?;
        if subjects_json.is_empty() {
            return Err(malformed("subject", "empty"));
        }
        let mut subjects = Vec::with_capacity(subjects_json.len());
        for (i, s) in subjects_json.iter().enumerate() {
            let field = |f: &str| format!("subject[{i}]{f}");
            let s = s
                .as_object()
                .ok_or_else(|| malformed(&field(""), "not a JSON object"))?;
            let name = match s.get("name") {
                None | Some(Value::Null) => None,
                Some(Value::String(n)) => Some(n.clone()),
                Some(_) => return Err(malformed(&field(".name"), "not a string")),
            };
            let digest = s
                .get("digest")
                .ok_or_else(|| malformed(&field(".digest"), "missing"))?
                .as_object()
                .ok_or_else(|| malformed(&field(".digest"), "not a JSON object"))?;
            let sha256 = match digest.get("sha256") {
                None => None,
                Some(Value::String(h)) => Some(h.to_ascii_lowercase()),
                Some(_) => return Err(malformed(&field(".digest.sha256"), "not a string")),
            };
            subjects.push(StatementSubject { name, sha256 });
        }
        let predicate = obj.remove("predicate").unwrap_or(Value::Null);
        Ok(Self {
            statement_type,
            subjects,
            predicate_type,
            predicate,
        })
    }

    /// The subject whose SHA-256 is `digest_hex` (lower-case), if any.
    #[must_use]
    pub fn subject_for(&self, digest_hex: &str) -> Option<&StatementSubject> {
        self.subjects
            .iter()
            .find(|s| s.sha256.as_deref() == Some(digest_hex))
    }

    /// `name sha256:…` of every subject, for messages (at most `max`, then a count).
    #[must_use]
    pub fn describe_subjects(&self, max: usize) -> String {
        let mut parts: Vec<String> = self
            .subjects
            .iter()
            .take(max)
            .map(|s| {
                format!(
                    "{} sha256:{}",
                    s.name.as_deref().unwrap_or("(unnamed)"),
                    s.sha256.as_deref().unwrap_or("(none)")
                )
            })
            .collect();
        if self.subjects.len() > max {
            parts.push(format!(
                "and {} more",
                self.subjects.len().saturating_sub(max)
            ));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::provenance::dsse::Envelope;
    use crate::provenance::testing::{self, Signer};
    use serde_json::json;

    fn verified(signer: &Signer, payload: &[u8]) -> VerifiedEnvelope {
        let text = signer.envelope(payload);
        Envelope::from_json(&json::parse(text.as_bytes()).unwrap())
            .unwrap()
            .verify(&[signer.trusted_key().unwrap()])
            .unwrap()
    }

    #[test]
    fn v1_and_v01_statements_are_read() {
        let signer = Signer::generate("ci");
        let digest = "AB".repeat(32);
        let mut st = testing::statement(
            "app",
            &digest,
            "https://slsa.dev/provenance/v1",
            json!({"k": 1}),
        );
        let s = Statement::from_envelope(&verified(&signer, st.to_string().as_bytes())).unwrap();
        assert_eq!(s.statement_type, STATEMENT_V1);
        assert_eq!(s.predicate_type, "https://slsa.dev/provenance/v1");
        assert_eq!(s.predicate, json!({"k": 1}));
        assert_eq!(
            s.subjects,
            vec![StatementSubject {
                name: Some("app".into()),
                sha256: Some("ab".repeat(32))
            }]
        );
        assert!(s.subject_for(&"ab".repeat(32)).is_some());
        assert!(s.subject_for(&"cd".repeat(32)).is_none());
        st["_type"] = json!(STATEMENT_V01);
        st["subject"] =
            json!([{"digest": {"sha512": "00"}}, {"name": "b", "digest": {"sha256": "cd"}}]);
        let s = Statement::from_envelope(&verified(&signer, st.to_string().as_bytes())).unwrap();
        assert_eq!(s.statement_type, STATEMENT_V01);
        assert_eq!(s.subjects[0].sha256, None);
        assert_eq!(
            s.describe_subjects(1),
            "(unnamed) sha256:(none), and 1 more"
        );
    }

    #[test]
    fn malformed_statements_name_the_field() {
        let good = testing::statement("a", "00", "t", json!({}));
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            f(&mut v);
            v
        };
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "(statement)"),
            (with(&|v| v["_type"] = json!(7)), "_type"),
            (
                with(&|v| {
                    v.as_object_mut().unwrap().remove("predicateType");
                }),
                "predicateType",
            ),
            (with(&|v| v["subject"] = json!({})), "subject"),
            (with(&|v| v["subject"] = json!([])), "subject"),
            (with(&|v| v["subject"] = json!(["x"])), "subject[0]"),
            (
                with(&|v| v["subject"] = json!([{"name": 1, "digest": {}}])),
                "subject[0].name",
            ),
            (
                with(&|v| v["subject"] = json!([{"name": "a"}])),
                "subject[0].digest",
            ),
            (
                with(&|v| v["subject"] = json!([{"digest": {"sha256": 5}}])),
                "subject[0].digest.sha256",
            ),
        ];
        for (value, field) in cases {
            match Statement::from_json(value.clone()) {
                Err(StatementError::Malformed { field: f, .. }) => assert_eq!(f, field, "{value}"),
                other => panic!("{value}: {other:?}"),
            }
        }
        assert!(matches!(
            Statement::from_json(with(
                &|v| v["_type"] = json!("https://in-toto.io/Statement/v2")
            )),
            Err(StatementError::UnknownType { .. })
        ));
    }

    #[test]
    fn payload_type_and_json_are_checked() {
        let signer = Signer::generate("ci");
        let env = Envelope {
            payload_type: "application/json".into(),
            payload: b"{}".to_vec(),
            signatures: vec![crate::provenance::dsse::EnvelopeSignature {
                keyid: None,
                sig: signer.sign("application/json", b"{}"),
            }],
        }
        .verify(&[signer.trusted_key().unwrap()])
        .unwrap();
        assert!(matches!(
            Statement::from_envelope(&env),
            Err(StatementError::PayloadType { .. })
        ));
        let dup = br#"{"_type":"https://in-toto.io/Statement/v1","_type":"x"}"#;
        let err = Statement::from_envelope(&verified(&signer, dup)).unwrap_err();
        assert!(err.to_string().contains("duplicate key"), "{err}");
    }
}

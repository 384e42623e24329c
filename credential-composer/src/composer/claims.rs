//! JWT-SVID claims between SPIRE's `google.protobuf.Struct` and the `serde_json` map
//! [`crate::jwt::add_claims`] works on.
//!
//! SPIRE replaces all claims with what the composer returns (protocol doc §7.4), so the conversion
//! must be faithful both ways: strings, booleans, nulls, lists and objects as they are, numbers as
//! numbers. A Struct number is an f64; an integral one within ±2^53 becomes a JSON integer (so `exp`,
//! `iat` and our log index read as integers), any other finite one a JSON float. NaN and infinities
//! have no JSON form and are refused.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value as PbValue};
use serde_json::{Map, Number, Value};

/// Deepest nesting converted (SPIRE's claims are flat; custom claims may nest a little).
pub const MAX_DEPTH: usize = 32;
/// Largest integer an f64 holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Why claims could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// A number JSON cannot represent.
    #[error("claim {path}: {value} has no JSON form")]
    NotFinite { path: String, value: String },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("claim {path}: nested deeper than {MAX_DEPTH}")]
    TooDeep { path: String },
    /// A JSON number that is not representable as an f64 (cannot happen with serde_json's default
    /// numbers, kept for arbitrary-precision builds).
    #[error("claim {path}: number {value} is not representable")]
    Number { path: String, value: String },
}

/// The claims of a Struct as a JSON object.
///
/// # Errors
///
/// [`ClaimsError`] naming the claim that has no JSON form.
pub fn struct_to_json(s: &Struct) -> Result<Map<String, Value>, ClaimsError> {
    fields_to_json(s, "", 0)
}

/// A JSON object as a Struct.
///
/// # Errors
///
/// [`ClaimsError`] naming the claim that cannot be represented.
pub fn json_to_struct(m: &Map<String, Value>) -> Result<Struct, ClaimsError> {
    object_to_struct(m, "", 0)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn fields_to_json(s: &Struct, path: &str, depth: usize) -> Result<Map<String, Value>, ClaimsError> {
    if depth > MAX_DEPTH {
        return Err(ClaimsError::TooDeep { path: path.into() });
    }
    s.fields
        .iter()
        .map(|(k, v)| Ok((k.clone(), value_to_json(v, &join(path, k), depth + 1)?)))
        .collect()
}

fn value_to_json(v: &PbValue, path: &str, depth: usize) -> Result<Value, ClaimsError> {
    if depth > MAX_DEPTH {
        return Err(ClaimsError::TooDeep { path: path.into() });
    }
    Ok(match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => number_to_json(*n, path)?,
        Some(Kind::StructValue(s)) => Value::Object(fields_to_json(s, path, depth)?),
        Some(Kind::ListValue(l)) => Value::Array(
            l.values
                .iter()
                .enumerate()
                .map(|(i, v)| value_to_json(v, &format!("{path}[{i}]"), depth + 1))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn number_to_json(n: f64, path: &str) -> Result<Value, ClaimsError> {
    if !n.is_finite() {
        return Err(ClaimsError::NotFinite {
            path: path.into(),
            value: n.to_string(),
        });
    }
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        // Exact: the magnitude is at most 2^53.
        #[allow(clippy::cast_possible_truncation)]
        return Ok(Value::from(n as i64));
    }
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| ClaimsError::NotFinite {
            path: path.into(),
            value: n.to_string(),
        })
}

fn object_to_struct(
    m: &Map<String, Value>,
    path: &str,
    depth: usize,
) -> Result<Struct, ClaimsError> {
    if depth > MAX_DEPTH {
        return Err(ClaimsError::TooDeep { path: path.into() });
    }
    Ok(Struct {
        fields: m
            .iter()
            .map(|(k, v)| Ok((k.clone(), json_to_value(v, &join(path, k), depth + 1)?)))
            .collect::<Result<_, ClaimsError>>()?,
    })
}

fn json_to_value(v: &Value, path: &str, depth: usize) -> Result<PbValue, ClaimsError> {
    if depth > MAX_DEPTH {
        return Err(ClaimsError::TooDeep { path: path.into() });
    }
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Number(n) => Kind::NumberValue(n.as_f64().ok_or_else(|| ClaimsError::Number {
            path: path.into(),
            value: n.to_string(),
        })?),
        Value::Array(a) => Kind::ListValue(ListValue {
            values: a
                .iter()
                .enumerate()
                .map(|(i, v)| json_to_value(v, &format!("{path}[{i}]"), depth + 1))
                .collect::<Result<_, _>>()?,
        }),
        Value::Object(o) => Kind::StructValue(object_to_struct(o, path, depth)?),
    };
    Ok(PbValue { kind: Some(kind) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    fn pb(kind: Kind) -> PbValue {
        PbValue { kind: Some(kind) }
    }

    #[test]
    fn spire_claims_round_trip() {
        let claims = json!({
            "sub": "spiffe://example.org/wl",
            "aud": ["a", "b"],
            "exp": 1_767_225_600,
            "iat": 1_767_222_000,
            "ratio": 0.25,
            "neg": -3,
            "flag": true,
            "nothing": null,
            "nested": {"deep": {"x": [1, "two", {"three": 3.5}]}},
        });
        let Value::Object(map) = claims else { panic!() };
        let s = json_to_struct(&map).unwrap();
        assert_eq!(
            s.fields["exp"].kind,
            Some(Kind::NumberValue(1_767_225_600.0))
        );
        let back = struct_to_json(&s).unwrap();
        assert_eq!(Value::Object(back.clone()), Value::Object(map));
        assert!(back["exp"].is_i64(), "integral numbers read as integers");
        assert!(back["ratio"].is_f64());
    }

    #[test]
    fn spire_float_timestamps_become_integers() {
        // SPIRE sends iat/exp as Struct numbers (f64).
        let s = Struct {
            fields: [
                ("exp".to_owned(), pb(Kind::NumberValue(1_767_225_600.0))),
                ("big".to_owned(), pb(Kind::NumberValue(1e300))),
                ("unset".to_owned(), PbValue { kind: None }),
            ]
            .into_iter()
            .collect(),
        };
        let m = struct_to_json(&s).unwrap();
        assert_eq!(m["exp"].as_i64(), Some(1_767_225_600));
        assert_eq!(m["big"].as_f64(), Some(1e300));
        assert_eq!(m["unset"], Value::Null);
    }

    #[test]
    fn non_finite_numbers_are_refused_with_their_path() {
        let s = Struct {
            fields: [(
                "x".to_owned(),
                pb(Kind::ListValue(ListValue {
                    values: vec![pb(Kind::NumberValue(f64::NAN))],
                })),
            )]
            .into_iter()
            .collect(),
        };
        let err = struct_to_json(&s).unwrap_err();
        assert!(
            matches!(&err, ClaimsError::NotFinite { path, .. } if path == "x[0]"),
            "{err:?}"
        );
    }

    #[test]
    fn depth_is_bounded() {
        let mut v = json!(1);
        for _ in 0..(MAX_DEPTH + 2) {
            v = json!({ "k": v });
        }
        let Value::Object(m) = v else { panic!() };
        assert!(matches!(
            json_to_struct(&m),
            Err(ClaimsError::TooDeep { .. })
        ));
    }
}

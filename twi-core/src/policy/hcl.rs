//! HCL text → the JSON value the document types are read from, so HCL and JSON go through one decoder.
//!
//! Stricter than `hcl::from_str`, on purpose:
//! * only literal values: HCL would keep `"${var.x}"`, `upper("a")` or `1 + 2` as the *text* of the
//!   expression, which then reads as a string nobody meant; a policy has no variables, so they are errors;
//! * a key or labelled block given twice is an error (hcl-rs turns repeated blocks into a list and would
//!   let the later `snp { }` win or fail with a type error far from the cause);
//! * `ident "label" { … }` becomes `{"ident": {"label": { … }}}`, the JSON form of labelled blocks.

use hcl::{BlockLabel, Body, Expression, ObjectKey, Structure};
use serde_json::{Map, Number, Value};

use super::{Format, PolicyError};

/// Parses `text` as an HCL body and converts it.
pub(super) fn to_json(text: &str) -> Result<Value, PolicyError> {
    let body: Body = text.parse().map_err(|e: hcl::Error| PolicyError::Syntax {
        format: Format::Hcl,
        detail: e.to_string(),
    })?;
    body_to_object(&body, "").map(Value::Object)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn body_to_object(body: &Body, path: &str) -> Result<Map<String, Value>, PolicyError> {
    let mut out = Map::new();
    for structure in body.iter() {
        match structure {
            Structure::Attribute(a) => {
                let key = join(path, a.key());
                let value = expr_to_json(a.expr(), &key)?;
                insert_new(&mut out, a.key(), value, &key)?;
            }
            Structure::Block(b) => {
                // `ident "l1" "l2" { body }` → out[ident][l1][l2] = body
                let mut names: Vec<&str> = vec![b.identifier()];
                names.extend(b.labels().iter().map(BlockLabel::as_str));
                let key = names.iter().fold(path.to_owned(), |p, n| join(&p, n));
                let value = Value::Object(body_to_object(b.body(), &key)?);
                let Some((last, parents)) = names.split_last() else {
                    continue;
                };
                let mut slot = &mut out;
                let mut at = path.to_owned();
                for name in parents {
                    at = join(&at, name);
                    let entry = slot
                        .entry((*name).to_owned())
                        .or_insert_with(|| Value::Object(Map::new()));
                    slot = match entry {
                        Value::Object(m) => m,
                        _ => return Err(PolicyError::DuplicateKey { key: at }),
                    };
                }
                insert_new(slot, last, value, &key)?;
            }
        }
    }
    Ok(out)
}

fn insert_new(
    map: &mut Map<String, Value>,
    name: &str,
    value: Value,
    key: &str,
) -> Result<(), PolicyError> {
    if map.contains_key(name) {
        return Err(PolicyError::DuplicateKey {
            key: key.to_owned(),
        });
    }
    map.insert(name.to_owned(), value);
    Ok(())
}

fn not_literal(key: &str, what: &str) -> PolicyError {
    PolicyError::one(
        key,
        format!(
            "{what} is not allowed: a policy holds only literal values (quoted strings without \
             ${{…}} interpolation, numbers, true/false, lists, blocks)"
        ),
    )
}

fn expr_to_json(e: &Expression, key: &str) -> Result<Value, PolicyError> {
    Ok(match e {
        Expression::Null => Value::Null,
        Expression::Bool(b) => Value::Bool(*b),
        Expression::Number(n) => {
            let number = if let Some(u) = n.as_u64() {
                Number::from(u)
            } else if let Some(i) = n.as_i64() {
                Number::from(i)
            } else {
                n.as_f64()
                    .and_then(Number::from_f64)
                    .ok_or_else(|| PolicyError::one(key, format!("{n} is not a usable number")))?
            };
            Value::Number(number)
        }
        Expression::String(s) => Value::String(s.clone()),
        Expression::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| expr_to_json(item, &format!("{key}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Expression::Object(object) => {
            let mut out = Map::new();
            for (k, v) in object {
                let name = match k {
                    ObjectKey::Identifier(id) => id.as_str(),
                    ObjectKey::Expression(Expression::String(s)) => s.as_str(),
                    ObjectKey::Expression(_) => {
                        return Err(not_literal(key, "a computed object key"))
                    }
                    // ObjectKey is not exhaustive in spirit; anything new is not a literal name.
                    #[allow(unreachable_patterns)]
                    _ => return Err(not_literal(key, "this object key")),
                };
                let sub = join(key, name);
                let value = expr_to_json(v, &sub)?;
                insert_new(&mut out, name, value, &sub)?;
            }
            Value::Object(out)
        }
        Expression::TemplateExpr(_) => {
            return Err(not_literal(
                key,
                "a template (${…} interpolation or heredoc)",
            ))
        }
        Expression::Variable(v) => {
            return Err(not_literal(key, &format!("the variable `{}`", v.as_str())))
        }
        Expression::FuncCall(_) => return Err(not_literal(key, "a function call")),
        Expression::Traversal(_) => return Err(not_literal(key, "a reference")),
        Expression::Parenthesis(_)
        | Expression::Conditional(_)
        | Expression::Operation(_)
        | Expression::ForExpr(_) => return Err(not_literal(key, "an expression")),
        #[allow(unreachable_patterns)]
        _ => return Err(not_literal(key, "this expression")),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn err(text: &str) -> String {
        to_json(text).unwrap_err().to_string()
    }

    #[test]
    fn labelled_blocks_nest_and_literals_convert() {
        let v = to_json(
            r#"
            id = "p" # comment
            n = 18446744073709551615
            neg = -3
            // comment
            selectors {
              match "a" {
                snp {
                  measurement = ["ab"]
                }
              }
              /* comment */
              match "b" { x = { value = "0x1", "mask" = 2 } }
            }
            "#,
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": "p",
                "n": u64::MAX,
                "neg": -3,
                "selectors": {"match": {
                    "a": {"snp": {"measurement": ["ab"]}},
                    "b": {"x": {"value": "0x1", "mask": 2}}
                }}
            })
        );
    }

    #[test]
    fn duplicates_are_errors_naming_the_key() {
        assert!(err("snp {}\nsnp {}\n").contains("duplicate key `snp`"));
        let e = err("selectors {\n match \"a\" {}\n match \"a\" {}\n}\n");
        assert!(e.contains("`selectors.match.a`"), "{e}");
        // hcl-rs itself refuses repeated attributes
        assert!(err("a = 1\na = 2\n").contains("invalid HCL"));
        let e = err("x = { a = 1, \"a\" = 2 }");
        assert!(e.contains("x.a"), "{e}");
    }

    #[test]
    fn expressions_are_refused_with_their_key() {
        for (text, key, what) in [
            (
                "tdx {\n mrtd = [\"${var.m}\"]\n}",
                "tdx.mrtd[0]",
                "template",
            ),
            ("id = upper(\"a\")", "id", "function call"),
            ("id = local.x", "id", "reference"),
            ("id = x", "id", "variable `x`"),
            ("n = 1 + 2", "n", "expression"),
            ("n = (1)", "n", "expression"),
            ("s = <<EOT\nabc\nEOT\n", "s", "heredoc"),
        ] {
            let e = err(text);
            assert!(e.contains(&format!("`{key}`")), "{text}: {e}");
            assert!(e.contains(what), "{text}: {e}");
        }
    }
}

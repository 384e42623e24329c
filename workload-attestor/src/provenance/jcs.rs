//! RFC 8785 JSON Canonicalization Scheme (JCS): the bytes an SBOM digest is taken over.
//!
//! An SBOM travels as the `predicate` of an in-toto Statement, and the tools that wrap it re-serialize it
//! (cosign re-marshals with Go's `encoding/json`: keys sorted, `<` escaped as `\u003c`, …). A digest of
//! the bytes as they appear in one envelope would therefore differ from the digest of the SBOM file the
//! operator holds. JCS gives one byte string per JSON value, so `sbom:sha256:` names the SBOM's content
//! whoever serialized it, and an operator can compute it from their own copy with any JCS tool.
//!
//! Rules (RFC 8785 §3.2): no whitespace; object members sorted by the UTF-16 code units of their names;
//! strings escaped minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00xx`,
//! everything else as UTF-8); numbers as IEEE-754 doubles printed the way ECMAScript's
//! `Number.prototype.toString` prints them. Integers above 2^53 are therefore rounded, as JCS requires.

use serde_json::Value;

/// The JCS form of `value`.
#[must_use]
pub fn canonicalize(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // serde_json numbers are finite and always convert (without `arbitrary_precision`).
        Value::Number(n) => out.extend_from_slice(es6_number(n.as_f64().unwrap_or(0.0)).as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if u32::from(c) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// ECMAScript `Number.prototype.toString(x)` for a finite double (ECMA-262 §6.1.6.1.20), from the shortest
/// round-tripping digits, which Rust's `{:e}` gives.
fn es6_number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        // -0 prints as 0; non-finite values cannot come from JSON.
        return "0".to_owned();
    }
    if x < 0.0 {
        return format!("-{}", es6_number(-x));
    }
    // "d.ddddde±x" → digits "dddddd", decimal exponent n with x = 0.digits × 10^n.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let e: i64 = exp.parse().unwrap_or(0);
    let k = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    let n = e.saturating_add(1);
    let zeros = |count: i64| "0".repeat(usize::try_from(count).unwrap_or(0));
    if k <= n && n <= 21 {
        format!("{digits}{}", zeros(n - k))
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(usize::try_from(n).unwrap_or(0));
        format!("{int}.{frac}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", zeros(-n))
    } else {
        let sign = if n - 1 < 0 { '-' } else { '+' };
        let exp = (n - 1).abs();
        let (first, rest) = digits.split_at(1.min(digits.len()));
        if rest.is_empty() {
            format!("{first}e{sign}{exp}")
        } else {
            format!("{first}.{rest}e{sign}{exp}")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    /// RFC 8785 §3.2.4 (the example with numbers, strings and literals).
    #[test]
    fn rfc8785_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let v: Value = serde_json::from_str(input).unwrap();
        let want = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
                    \"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(String::from_utf8(canonicalize(&v)).unwrap(), want);
    }

    /// RFC 8785 §3.2.3: sorting by UTF-16 code units, not by code points or UTF-8 bytes.
    #[test]
    fn rfc8785_sorting() {
        let input = r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#;
        let v: Value = serde_json::from_str(input).unwrap();
        let out = String::from_utf8(canonicalize(&v)).unwrap();
        let order: Vec<&str> = [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small",
            "Euro Sign",
            "Emoji",
            "Hebrew",
        ]
        .to_vec();
        let pos: Vec<usize> = order.iter().map(|w| out.find(w).unwrap()).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{out}");
    }

    /// ECMAScript number printing (RFC 8785 Appendix B, and the boundaries of each notation).
    #[test]
    fn numbers() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (9_007_199_254_740_992.0, "9007199254740992"),
            (295_147_905_179_352_830_000.0, "295147905179352830000"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (0.000_001, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (123.456, "123.456"),
            (5e-324, "5e-324"),
            (1.797_693_134_862_315_7e308, "1.7976931348623157e+308"),
            (4.5, "4.5"),
        ];
        for (x, want) in cases {
            assert_eq!(es6_number(*x), *want, "{x:e}");
        }
        // Integers beyond 2^53 are doubles in JCS.
        let v: Value = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(canonicalize(&v), b"18446744073709552000");
    }

    #[test]
    fn whitespace_and_key_order_do_not_matter() {
        let a: Value =
            serde_json::from_str(r#"{"b": [1, 2], "a": {"y": "<", "x": null}}"#).unwrap();
        let b: Value =
            serde_json::from_str("{\"a\":{\"x\":null,\"y\":\"\\u003c\"},\"b\":[1,2.0]}").unwrap();
        assert_eq!(canonicalize(&a), canonicalize(&b));
        assert_eq!(canonicalize(&a), br#"{"a":{"x":null,"y":"<"},"b":[1,2]}"#);
    }
}

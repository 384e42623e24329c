//! The canonical form a policy's digest is taken over.
//!
//! It is built from the *validated* policy, not from the text, so that what the digest covers is what
//! appraisal uses: every key of the format with its default made explicit (an omitted `allow_debug` and
//! `allow_debug = false` are the same policy), hex in lower case, masks as `0x` + 16 hex digits, TCB
//! statuses in Intel's spelling, selector rules by name. Comments, whitespace, key order, HCL vs JSON,
//! `version = 3` vs `version = "3"` do not change it; any change of what is appraised does. The order of
//! list entries is kept: reordering an allow-list changes the digest though not the verdict, which errs
//! on the side of a new digest.
//!
//! The serialisation is RFC 8785 (JCS) for the values this format has (strings, booleans, null, integers
//! below 2^32, arrays, objects): members sorted by key, no whitespace. The canonical JSON is itself a
//! valid policy document that parses back to the same policy and digest.

use serde_json::{json, Map, Value};

use super::selectors::SelectorRule;
use super::Tee;
use crate::snp::SnpPolicy;
use crate::tdx::{Masked, TdxPolicy};

fn hexes<const N: usize>(v: &[[u8; N]]) -> Vec<String> {
    v.iter().map(hex::encode).collect()
}

fn masked(m: Option<&Masked>) -> Value {
    m.map_or(
        Value::Null,
        |m| json!({"value": format!("{:#018x}", m.value), "mask": format!("{:#018x}", m.mask)}),
    )
}

fn snp(p: &SnpPolicy) -> Value {
    json!({
        "allow_debug": p.allow_debug,
        "allow_migrate_ma": p.allow_migrate_ma,
        "minimum_tcb": p.minimum_tcb.map(|t| json!({
            "bootloader": t.bootloader, "tee": t.tee, "snp": t.snp, "microcode": t.microcode, "fmc": t.fmc,
        })),
        "allowed_measurements": hexes(&p.allowed_measurements),
        "allowed_host_data": hexes(&p.allowed_host_data),
        "allowed_id_key_digests": hexes(&p.allowed_id_key_digests),
        "allowed_vmpls": p.allowed_vmpls,
        "minimum_guest_svn": p.minimum_guest_svn,
    })
}

fn tdx(p: &TdxPolicy) -> Value {
    let [r0, r1, r2, r3] = &p.rtmr;
    json!({
        "allow_debug": p.allow_debug,
        "allowed_tcb_statuses": p.allowed_tcb_statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "allowed_advisory_ids": p.allowed_advisory_ids,
        "mrtd": hexes(&p.mrtd),
        "rtmr0": hexes(r0),
        "rtmr1": hexes(r1),
        "rtmr2": hexes(r2),
        "rtmr3": hexes(r3),
        "mrconfigid": hexes(&p.mrconfigid),
        "mrowner": hexes(&p.mrowner),
        "mrownerconfig": hexes(&p.mrownerconfig),
        "xfam": masked(p.xfam.as_ref()),
        "td_attributes": masked(p.td_attributes.as_ref()),
    })
}

fn rule(r: &SelectorRule) -> Value {
    let mut out = Map::new();
    for tee in [Tee::Snp, Tee::Tdx] {
        if let Some(conds) = r.conditions(tee) {
            let fields: Map<String, Value> = conds
                .into_iter()
                .map(|(name, values)| (name.to_owned(), json!(values)))
                .collect();
            out.insert(tee.as_str().to_owned(), Value::Object(fields));
        }
    }
    Value::Object(out)
}

/// The canonical value of a validated policy.
pub(super) fn value(
    id: &str,
    version: &str,
    snp_policy: Option<&SnpPolicy>,
    tdx_policy: Option<&TdxPolicy>,
    rules: &[SelectorRule],
) -> Value {
    let matches: Map<String, Value> = rules
        .iter()
        .map(|r| (r.name().to_owned(), rule(r)))
        .collect();
    json!({
        "id": id,
        "version": version,
        "snp": snp_policy.map_or(Value::Null, snp),
        "tdx": tdx_policy.map_or(Value::Null, tdx),
        "selectors": {"match": matches},
    })
}

/// RFC 8785 serialisation: object members sorted by the UTF-16 code units of their keys, no
/// whitespace, strings escaped as `serde_json` does (which is JCS's escaping), integers in decimal.
pub(super) fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            // Sort explicitly: serde_json's map keeps insertion order when a dependency turns on its
            // `preserve_order` feature, and the digest must not depend on that.
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        // null, booleans, integers and strings print canonically already (the format has no floats).
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn members_are_sorted_at_every_level_without_whitespace() {
        let v = json!({"b": [1, {"z": null, "a": "x\ny"}], "a": true, "B": false});
        assert_eq!(
            to_string(&v),
            r#"{"B":false,"a":true,"b":[1,{"a":"x\ny","z":null}]}"#
        );
    }

    #[test]
    fn jcs_key_order_is_by_utf16_units() {
        // RFC 8785 section 3.2.3: U+FB33 (one unit) sorts after U+1F600 (surrogates 0xD83D…).
        let v = json!({"\u{fb33}": 1, "\u{1f600}": 2, "a": 3});
        assert_eq!(to_string(&v), "{\"a\":3,\"\u{1f600}\":2,\"\u{fb33}\":1}");
    }
}

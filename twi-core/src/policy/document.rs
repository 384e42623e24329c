//! The policy document as written (serde types with the server plugin's key spellings) and its
//! validation into the appraisal types ([`SnpPolicy`], [`TdxPolicy`], [`SelectorRule`]).
//!
//! Decoding stops at the first unknown, missing or mistyped key (serde's way); validation of the values
//! then reports every problem at once, each naming its key.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::selectors::{FieldSpec, SelectorRule, SNP_FIELDS, TDX_FIELDS};
use super::{PolicyError, Problem, Tee};
use crate::snp::{SnpPolicy, TcbParts};
use crate::tdx::{Masked, TcbStatus, TdxPolicy};

/// Keys of the plugin's `snp { }` block that configure verification, not appraisal.
const SNP_PLUGIN_KEYS: [&str; 6] = [
    "trusted_roots",
    "disable_amd_roots",
    "simulated_roots",
    "cert_dir",
    "crl_paths",
    "kds",
];
/// Keys of the plugin's `tdx { }` block that configure verification, not appraisal.
const TDX_PLUGIN_KEYS: [&str; 11] = [
    "collateral_dir",
    "trusted_roots",
    "disable_intel_roots",
    "simulated_roots",
    "pcs_url",
    "root_ca_crl_url",
    "cache_dir",
    "fetch_timeout_seconds",
    "collateral_refresh_before_seconds",
    "collateral_grace_seconds",
    "collateral_retry_seconds",
];

/// A policy document as decoded, before its values are checked. Public so a plugin can embed it in its
/// own HCL configuration (an inline `policy { … }` block) and hand it to [`super::Policy::from_document`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    #[serde(deserialize_with = "string_or_integer")]
    id: String,
    #[serde(deserialize_with = "string_or_integer")]
    version: String,
    #[serde(default)]
    snp: Option<SnpSection>,
    #[serde(default)]
    tdx: Option<TdxSection>,
    #[serde(default)]
    selectors: Option<SelectorsSection>,
}

/// `snp { … }`: the policy keys of the server plugin's `snp` block, same names, same meaning.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnpSection {
    #[serde(default)]
    allow_debug: bool,
    #[serde(default)]
    allow_migrate_ma: bool,
    #[serde(default)]
    minimum_tcb: Option<MinimumTcb>,
    #[serde(default)]
    allowed_measurements: Vec<String>,
    #[serde(default)]
    allowed_host_data: Vec<String>,
    #[serde(default)]
    allowed_id_key_digests: Vec<String>,
    #[serde(default)]
    allowed_vmpls: Vec<u32>,
    #[serde(default)]
    minimum_guest_svn: Option<u32>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MinimumTcb {
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
    #[serde(default)]
    fmc: Option<u8>,
}

/// `tdx { … }`: the policy keys of the server plugin's `tdx` block, same names, same meaning.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TdxSection {
    #[serde(default)]
    allow_debug: bool,
    #[serde(default)]
    allowed_tcb_statuses: Option<Vec<String>>,
    #[serde(default)]
    allowed_advisory_ids: Option<Vec<String>>,
    #[serde(default)]
    mrtd: Vec<String>,
    #[serde(default)]
    rtmr0: Vec<String>,
    #[serde(default)]
    rtmr1: Vec<String>,
    #[serde(default)]
    rtmr2: Vec<String>,
    #[serde(default)]
    rtmr3: Vec<String>,
    #[serde(default)]
    mrconfigid: Vec<String>,
    #[serde(default)]
    mrowner: Vec<String>,
    #[serde(default)]
    mrownerconfig: Vec<String>,
    #[serde(default)]
    xfam: Option<MaskedRaw>,
    #[serde(default)]
    td_attributes: Option<MaskedRaw>,
}

/// `{ value, mask }`, each a number or a string (`"0x10000000"` or decimal): HCL has no hex literals.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaskedRaw {
    value: Value,
    mask: Value,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorsSection {
    #[serde(default, rename = "match")]
    matches: UniqueMap<RuleRaw>,
}

/// `match "<name>" { snp { … } tdx { … } }`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleRaw {
    #[serde(default)]
    snp: Option<UniqueMap<Vec<String>>>,
    #[serde(default)]
    tdx: Option<UniqueMap<Vec<String>>>,
}

/// A map whose keys must be unique: `serde_json::from_str` into a `BTreeMap` keeps the last of two equal
/// keys without a word, which in a policy would hide one of two rules.
#[derive(Clone, Debug)]
struct UniqueMap<V>(BTreeMap<String, V>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        UniqueMap(BTreeMap::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V_<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.contains_key(&key) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    let value = map.next_value::<V>()?;
                    out.insert(key, value);
                }
                Ok(UniqueMap(out))
            }
        }
        d.deserialize_map(V_(PhantomData))
    }
}

/// `id` and `version` may be written `version = 3` as well as `version = "3"`; both mean the same and
/// give the same digest.
fn string_or_integer<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct S;
    impl Visitor<'_> for S {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a non-negative integer")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(S)
}

/// What serde reported at `path`, as the error that names the key.
pub(super) fn classify(path: &str, msg: &str) -> PolicyError {
    let path = if path == "." { "" } else { path };
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else if path == key || path.ends_with(&format!(".{key}")) {
            path.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    let quoted = |prefix: &str| {
        msg.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
            .map(|(k, tail)| (k.to_owned(), tail.to_owned()))
    };
    if let Some((k, tail)) = quoted("unknown field `") {
        let key = join(&k);
        let section = key.rsplit_once('.').map(|(parent, _)| parent);
        if section == Some("snp") && SNP_PLUGIN_KEYS.contains(&k.as_str()) {
            return PolicyError::NotPolicy { key, tee: Tee::Snp };
        }
        if section == Some("tdx") && TDX_PLUGIN_KEYS.contains(&k.as_str()) {
            return PolicyError::NotPolicy { key, tee: Tee::Tdx };
        }
        let expected = tail.trim_start_matches(',').trim();
        let expected = if expected.is_empty() {
            "no keys are expected here".to_owned()
        } else {
            expected.to_owned()
        };
        return PolicyError::UnknownKey { key, expected };
    }
    if let Some((k, _)) = quoted("missing field `") {
        return PolicyError::MissingKey { key: join(&k) };
    }
    if let Some((k, _)) = quoted("duplicate field `").or_else(|| quoted("duplicate key `")) {
        return PolicyError::DuplicateKey { key: join(&k) };
    }
    PolicyError::one(if path.is_empty() { "(top level)" } else { path }, msg)
}

/// Collects problems, each naming its key.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            detail: detail.into(),
        });
    }
}

/// At most this many characters of a bad value are quoted back.
const SHOW: usize = 80;

fn show(v: &str) -> String {
    let mut s: String = v.chars().take(SHOW).collect();
    if v.chars().nth(SHOW).is_some() {
        s.push('…');
    }
    format!("{s:?}")
}

/// Decodes one hex value of exactly `N` bytes; the problem names the key, the length got and wanted.
fn hex_n<const N: usize>(key: &str, v: &str, problems: &mut Problems) -> Option<[u8; N]> {
    hex_len(key, v, N, problems).and_then(|b| <[u8; N]>::try_from(b.as_slice()).ok())
}

/// Decodes one hex value of exactly `len` bytes.
fn hex_len_checked(key: &str, v: &str, len: usize) -> Result<Vec<u8>, Problem> {
    let t = v.trim();
    let bytes = hex::decode(t).map_err(|e| Problem {
        key: key.to_owned(),
        detail: format!("{} is not hex: {e}", show(v)),
    })?;
    if bytes.len() != len {
        return Err(Problem {
            key: key.to_owned(),
            detail: format!(
                "{} hex digits ({} bytes), want {} hex digits ({len} bytes)",
                t.len(),
                bytes.len(),
                len.saturating_mul(2)
            ),
        });
    }
    Ok(bytes)
}

fn hex_len(key: &str, v: &str, len: usize, problems: &mut Problems) -> Option<Vec<u8>> {
    hex_len_checked(key, v, len)
        .map_err(|p| problems.0.push(p))
        .ok()
}

fn hex_list<const N: usize>(key: &str, values: &[String], problems: &mut Problems) -> Vec<[u8; N]> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| hex_n::<N>(&format!("{key}[{i}]"), v, problems))
        .collect()
}

/// A u64 written as a number or a string (`0x…` hex or decimal).
fn parse_u64(key: &str, v: &Value, problems: &mut Problems) -> Option<u64> {
    let parsed = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        }
        _ => None,
    };
    if parsed.is_none() {
        let got = match v {
            Value::String(s) => show(s),
            other => other.to_string(),
        };
        problems.add(
            key,
            format!(
                "{got} is not a 64-bit unsigned number (write e.g. \"0x10000000\" or 268435456)"
            ),
        );
    }
    parsed
}

fn masked(key: &str, m: Option<&MaskedRaw>, problems: &mut Problems) -> Option<Masked> {
    let m = m?;
    let value = parse_u64(&format!("{key}.value"), &m.value, problems);
    let mask = parse_u64(&format!("{key}.mask"), &m.mask, problems);
    Some(Masked {
        value: value?,
        mask: mask?,
    })
}

/// `id`, `version` and selector names: URI path segments, as [`crate::ear::PolicyId`] requires.
pub(super) fn check_segment(key: &str, v: &str, problems: &mut Vec<Problem>) {
    let ok = (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        problems.push(Problem {
            key: key.to_owned(),
            detail: format!(
                "{} is not 1 to 64 characters of letters, digits, '.', '-', '_' (it is a URI path segment)",
                show(v)
            ),
        });
    }
}

/// The validated content of a document.
pub(super) struct Parts {
    pub(super) id: String,
    pub(super) version: String,
    pub(super) snp: Option<SnpPolicy>,
    pub(super) tdx: Option<TdxPolicy>,
    pub(super) rules: Vec<SelectorRule>,
}

fn snp_policy(s: &SnpSection, problems: &mut Problems) -> SnpPolicy {
    let policy = SnpPolicy {
        allow_debug: s.allow_debug,
        allow_migrate_ma: s.allow_migrate_ma,
        minimum_tcb: s.minimum_tcb.map(|t| TcbParts {
            fmc: t.fmc,
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
        }),
        allowed_measurements: hex_list(
            "snp.allowed_measurements",
            &s.allowed_measurements,
            problems,
        ),
        allowed_host_data: hex_list("snp.allowed_host_data", &s.allowed_host_data, problems),
        allowed_id_key_digests: hex_list(
            "snp.allowed_id_key_digests",
            &s.allowed_id_key_digests,
            problems,
        ),
        allowed_vmpls: s.allowed_vmpls.clone(),
        minimum_guest_svn: s.minimum_guest_svn,
    };
    for (i, vmpl) in s.allowed_vmpls.iter().enumerate() {
        if *vmpl > 3 {
            problems.add(
                format!("snp.allowed_vmpls[{i}]"),
                format!("{vmpl} is not a VMPL (0..=3)"),
            );
        }
    }
    policy
}

const TCB_STATUS_NAMES: &str = "UpToDate, SWHardeningNeeded, ConfigurationNeeded, \
    ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked, \
    TDRelaunchAdvised, TDRelaunchAdvisedConfigurationNeeded";

fn tdx_policy(t: &TdxSection, problems: &mut Problems) -> TdxPolicy {
    let statuses = t
        .allowed_tcb_statuses
        .clone()
        .unwrap_or_else(|| vec![TcbStatus::UpToDate.as_str().to_owned()]);
    if statuses.is_empty() {
        problems.add(
            "tdx.allowed_tcb_statuses",
            "empty: no TD could ever be accepted (omit the key for [\"UpToDate\"])",
        );
    }
    let mut allowed_tcb_statuses = Vec::with_capacity(statuses.len());
    for (i, s) in statuses.iter().enumerate() {
        match serde_json::from_value::<TcbStatus>(Value::String(s.clone())) {
            Ok(st) => allowed_tcb_statuses.push(st),
            Err(_) => problems.add(
                format!("tdx.allowed_tcb_statuses[{i}]"),
                format!(
                    "{} is not an Intel TCB status ({TCB_STATUS_NAMES})",
                    show(s)
                ),
            ),
        }
    }
    let allowed_advisory_ids = t.allowed_advisory_ids.as_ref().map(|ids| {
        ids.iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let id = a.trim();
                if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    problems.add(
                        format!("tdx.allowed_advisory_ids[{i}]"),
                        format!(
                            "{} is not an advisory ID (e.g. \"INTEL-SA-00837\")",
                            show(a)
                        ),
                    );
                    None
                } else {
                    Some(id.to_owned())
                }
            })
            .collect()
    });
    TdxPolicy {
        allow_debug: t.allow_debug,
        allowed_tcb_statuses,
        allowed_advisory_ids,
        mrtd: hex_list("tdx.mrtd", &t.mrtd, problems),
        rtmr: [
            hex_list("tdx.rtmr0", &t.rtmr0, problems),
            hex_list("tdx.rtmr1", &t.rtmr1, problems),
            hex_list("tdx.rtmr2", &t.rtmr2, problems),
            hex_list("tdx.rtmr3", &t.rtmr3, problems),
        ],
        mrconfigid: hex_list("tdx.mrconfigid", &t.mrconfigid, problems),
        mrowner: hex_list("tdx.mrowner", &t.mrowner, problems),
        mrownerconfig: hex_list("tdx.mrownerconfig", &t.mrownerconfig, problems),
        xfam: masked("tdx.xfam", t.xfam.as_ref(), problems),
        td_attributes: masked("tdx.td_attributes", t.td_attributes.as_ref(), problems),
    }
}

/// One TEE's conditions of a selector rule: each key must be a field of `fields`, each list non-empty,
/// each value hex of the field's length. Values are kept as lower-case hex, the claims' form.
fn rule_fields<C>(
    key: &str,
    given: &UniqueMap<Vec<String>>,
    fields: &[FieldSpec<C>],
    problems: &mut Problems,
) -> Vec<(usize, Vec<String>)> {
    if given.0.is_empty() {
        problems.add(
            key,
            "no field: a rule must name at least one reference value (an empty rule would match every VM)",
        );
    }
    let mut out = Vec::new();
    for (name, values) in &given.0 {
        let field_key = format!("{key}.{name}");
        let Some(index) = fields.iter().position(|f| f.name == name) else {
            let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
            problems.add(
                field_key,
                format!("unknown field, expected one of {}", names.join(", ")),
            );
            continue;
        };
        if values.is_empty() {
            problems.add(
                field_key,
                "empty list: it could never match (remove the key to leave the field unconstrained)",
            );
            continue;
        }
        let len = fields.get(index).map_or(0, |f| f.len);
        let hexes = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                hex_len(&format!("{field_key}[{i}]"), v, len, problems).map(hex::encode)
            })
            .collect();
        out.push((index, hexes));
    }
    out.sort_by_key(|(i, _)| *i);
    out
}

fn rules(s: &SelectorsSection, allows: (bool, bool), problems: &mut Problems) -> Vec<SelectorRule> {
    let mut out = Vec::new();
    for (name, raw) in &s.matches.0 {
        let key = format!("selectors.match.{name}");
        check_segment(&key, name, &mut problems.0);
        if raw.snp.is_none() && raw.tdx.is_none() {
            problems.add(
                &key,
                "names no TEE: add an `snp { … }` or `tdx { … }` block",
            );
        }
        for (tee, present, allowed) in [
            (Tee::Snp, raw.snp.is_some(), allows.0),
            (Tee::Tdx, raw.tdx.is_some(), allows.1),
        ] {
            if present && !allowed {
                problems.add(
                    format!("{key}.{tee}"),
                    format!("the policy has no `{tee}` section, so no {tee} evidence is accepted and this rule could never match"),
                );
            }
        }
        let snp = raw
            .snp
            .as_ref()
            .map(|m| rule_fields(&format!("{key}.snp"), m, &SNP_FIELDS, problems));
        let tdx = raw
            .tdx
            .as_ref()
            .map(|m| rule_fields(&format!("{key}.tdx"), m, &TDX_FIELDS, problems));
        out.push(SelectorRule::new(name.clone(), snp, tdx));
    }
    out
}

/// Checks every value of `doc`.
///
/// # Errors
/// [`PolicyError::Invalid`] listing every problem.
pub(super) fn validate(doc: &PolicyDocument) -> Result<Parts, PolicyError> {
    let mut problems = Problems::default();
    check_segment("id", &doc.id, &mut problems.0);
    check_segment("version", &doc.version, &mut problems.0);
    let snp = doc.snp.as_ref().map(|s| snp_policy(s, &mut problems));
    let tdx = doc.tdx.as_ref().map(|t| tdx_policy(t, &mut problems));
    let rules = doc
        .selectors
        .as_ref()
        .map(|s| rules(s, (snp.is_some(), tdx.is_some()), &mut problems))
        .unwrap_or_default();
    if !problems.0.is_empty() {
        return Err(PolicyError::Invalid {
            problems: problems.0,
        });
    }
    Ok(Parts {
        id: doc.id.clone(),
        version: doc.version.clone(),
        snp,
        tdx,
        rules,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn classify_names_the_key() {
        let e = classify(
            "snp.allowed_measurementz",
            "unknown field `allowed_measurementz`, expected one of `allow_debug`",
        );
        assert!(
            matches!(&e, PolicyError::UnknownKey { key, .. } if key == "snp.allowed_measurementz"),
            "{e}"
        );
        let e = classify("tdx", "unknown field `collateral_dir`, expected …");
        assert!(
            matches!(&e, PolicyError::NotPolicy { key, tee: Tee::Tdx } if key == "tdx.collateral_dir"),
            "{e}"
        );
        // `collateral_dir` at the top level is just unknown
        let e = classify(".", "unknown field `collateral_dir`, expected `id`");
        assert!(
            matches!(&e, PolicyError::UnknownKey { key, .. } if key == "collateral_dir"),
            "{e}"
        );
        let e = classify("tdx.xfam", "missing field `mask`");
        assert!(
            matches!(&e, PolicyError::MissingKey { key } if key == "tdx.xfam.mask"),
            "{e}"
        );
        let e = classify("selectors.match", "duplicate key `web`");
        assert!(
            matches!(&e, PolicyError::DuplicateKey { key } if key == "selectors.match.web"),
            "{e}"
        );
        let e = classify(
            "snp.allowed_vmpls[0]",
            "invalid type: string \"x\", expected u32",
        );
        assert_eq!(e.keys()[0].0, "snp.allowed_vmpls[0]");
    }

    #[test]
    fn hex_problems_name_field_and_length() {
        let p = hex_len_checked("tdx.mrtd[1]", &"ab".repeat(47), 48).unwrap_err();
        assert_eq!(p.key, "tdx.mrtd[1]");
        assert_eq!(
            p.detail,
            "94 hex digits (47 bytes), want 96 hex digits (48 bytes)"
        );
        let p = hex_len_checked("k", "0xab", 1).unwrap_err();
        assert!(p.detail.contains("not hex"), "{p}");
        assert_eq!(hex_len_checked("k", " ABcd ", 2).unwrap(), [0xab, 0xcd]);
    }

    #[test]
    fn numbers_and_strings_for_masks() {
        let mut p = Problems::default();
        let n = |v: Value, p: &mut Problems| parse_u64("k", &v, p);
        assert_eq!(n(Value::from("0x10000000"), &mut p), Some(1 << 28));
        assert_eq!(n(Value::from("0XFFFFFFFFFFFFFFFF"), &mut p), Some(u64::MAX));
        assert_eq!(n(Value::from("42"), &mut p), Some(42));
        assert_eq!(n(Value::from(7u64), &mut p), Some(7));
        assert!(p.0.is_empty());
        assert_eq!(n(Value::from(-1), &mut p), None);
        assert_eq!(n(Value::from("0x1g"), &mut p), None);
        assert_eq!(p.0.len(), 2);
        assert!(p.0[1].detail.contains("0x1g"));
    }
}

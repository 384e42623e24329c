//! Selector mapping: named reference values → `policy-match:<name>` selector values.
//!
//! A registration entry written against `policy-match:prod-web-v3` keeps working when the operator
//! rolls a new image: only the policy's reference values change, not every entry that names a hash.
//! A rule matches appraised claims of its TEE when every field it lists holds one of the listed values
//! (AND across fields, OR within one field's list).

use crate::snp::{self, SnpClaims};
use crate::tdx::{TdxAppraisal, TdxClaims};

use super::Tee;

/// Prefix of the selector values a policy's rules yield.
pub const POLICY_MATCH_PREFIX: &str = "policy-match:";

/// Prefix of every selector of evidence that chained to a simulated root, as the server plugin prefixes
/// its own selectors: a rule written for real hardware must never vouch for a simulated VM.
pub const SIMULATED_PREFIX: &str = "simulated:";

/// A claim a rule can compare: its name in the document, its length in bytes, how to read it (lower-case
/// hex, as the claims hold it).
pub(super) struct FieldSpec<C> {
    pub(super) name: &'static str,
    pub(super) len: usize,
    pub(super) get: fn(&C) -> &str,
}

/// The SEV-SNP reference values a rule can name (the report fields an image or launch fixes).
pub(super) const SNP_FIELDS: [FieldSpec<SnpClaims>; 6] = [
    FieldSpec {
        name: "measurement",
        len: 48,
        get: |c| &c.measurement,
    },
    FieldSpec {
        name: "host_data",
        len: 32,
        get: |c| &c.host_data,
    },
    FieldSpec {
        name: "id_key_digest",
        len: 48,
        get: |c| &c.id_key_digest,
    },
    FieldSpec {
        name: "author_key_digest",
        len: 48,
        get: |c| &c.author_key_digest,
    },
    FieldSpec {
        name: "family_id",
        len: 16,
        get: |c| &c.family_id,
    },
    FieldSpec {
        name: "image_id",
        len: 16,
        get: |c| &c.image_id,
    },
];

/// The TDX reference values a rule can name (the measurement registers).
pub(super) const TDX_FIELDS: [FieldSpec<TdxClaims>; 8] = [
    FieldSpec {
        name: "mrtd",
        len: 48,
        get: |c| &c.mrtd,
    },
    FieldSpec {
        name: "rtmr0",
        len: 48,
        get: |c| &c.rtmr0,
    },
    FieldSpec {
        name: "rtmr1",
        len: 48,
        get: |c| &c.rtmr1,
    },
    FieldSpec {
        name: "rtmr2",
        len: 48,
        get: |c| &c.rtmr2,
    },
    FieldSpec {
        name: "rtmr3",
        len: 48,
        get: |c| &c.rtmr3,
    },
    FieldSpec {
        name: "mrconfigid",
        len: 48,
        get: |c| &c.mrconfigid,
    },
    FieldSpec {
        name: "mrowner",
        len: 48,
        get: |c| &c.mrowner,
    },
    FieldSpec {
        name: "mrownerconfig",
        len: 48,
        get: |c| &c.mrownerconfig,
    },
];

/// One `match "<name>" { … }` rule, validated: per TEE, the fields it constrains (index into the
/// field table) with their allowed values in lower-case hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorRule {
    name: String,
    snp: Option<Vec<(usize, Vec<String>)>>,
    tdx: Option<Vec<(usize, Vec<String>)>>,
}

/// Claims that passed appraisal. Taking the appraisal types (not bare claims) says in the signature
/// that selectors are only mapped for evidence the policy accepted.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Appraised<'a> {
    Snp(&'a snp::Appraisal),
    Tdx(&'a TdxAppraisal),
}

impl<'a> From<&'a snp::Appraisal> for Appraised<'a> {
    fn from(a: &'a snp::Appraisal) -> Self {
        Appraised::Snp(a)
    }
}

impl<'a> From<&'a TdxAppraisal> for Appraised<'a> {
    fn from(a: &'a TdxAppraisal) -> Self {
        Appraised::Tdx(a)
    }
}

impl Appraised<'_> {
    /// Which TEE the claims are from.
    pub fn tee(&self) -> Tee {
        match self {
            Appraised::Snp(_) => Tee::Snp,
            Appraised::Tdx(_) => Tee::Tdx,
        }
    }

    fn simulated(&self) -> bool {
        match self {
            Appraised::Snp(a) => a.claims.simulated,
            Appraised::Tdx(a) => a.claims.simulated,
        }
    }
}

fn all_match<C>(conds: &[(usize, Vec<String>)], fields: &[FieldSpec<C>], claims: &C) -> bool {
    conds.iter().all(|(i, allowed)| {
        fields
            .get(*i)
            .is_some_and(|f| allowed.iter().any(|v| v == (f.get)(claims)))
    })
}

fn describe<C>(
    conds: &[(usize, Vec<String>)],
    fields: &[FieldSpec<C>],
) -> Vec<(&'static str, Vec<String>)> {
    conds
        .iter()
        .filter_map(|(i, v)| fields.get(*i).map(|f| (f.name, v.clone())))
        .collect()
}

impl SelectorRule {
    pub(super) fn new(
        name: String,
        snp: Option<Vec<(usize, Vec<String>)>>,
        tdx: Option<Vec<(usize, Vec<String>)>>,
    ) -> SelectorRule {
        SelectorRule { name, snp, tdx }
    }

    /// The rule's name, the `<name>` of `policy-match:<name>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The selector value this rule yields (without the `simulated:` prefix).
    pub fn selector(&self) -> String {
        format!("{POLICY_MATCH_PREFIX}{}", self.name)
    }

    /// The conditions on one TEE's claims as `(field, allowed lower-case hex values)`; `None` when the
    /// rule does not apply to that TEE.
    pub fn conditions(&self, tee: Tee) -> Option<Vec<(&'static str, Vec<String>)>> {
        match tee {
            Tee::Snp => self.snp.as_deref().map(|c| describe(c, &SNP_FIELDS)),
            Tee::Tdx => self.tdx.as_deref().map(|c| describe(c, &TDX_FIELDS)),
        }
    }

    /// Whether the appraised claims satisfy every condition the rule sets for their TEE.
    pub fn matches(&self, claims: Appraised<'_>) -> bool {
        match claims {
            Appraised::Snp(a) => self
                .snp
                .as_deref()
                .is_some_and(|c| all_match(c, &SNP_FIELDS, &a.claims)),
            Appraised::Tdx(a) => self
                .tdx
                .as_deref()
                .is_some_and(|c| all_match(c, &TDX_FIELDS, &a.claims)),
        }
    }
}

/// The selector values of the rules that match, in rule-name order, each prefixed `simulated:` when
/// the evidence chained to a simulated root.
pub(super) fn selectors_for(rules: &[SelectorRule], claims: Appraised<'_>) -> Vec<String> {
    let prefix = if claims.simulated() {
        SIMULATED_PREFIX
    } else {
        ""
    };
    rules
        .iter()
        .filter(|r| r.matches(claims))
        .map(|r| format!("{prefix}{}", r.selector()))
        .collect()
}

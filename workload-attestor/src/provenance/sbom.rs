//! SBOM predicates (CycloneDX, SPDX): which SBOM describes the executable, by digest.
//!
//! The in-toto predicate types are `https://cyclonedx.org/bom` and `https://spdx.dev/Document`, each also
//! with a version suffix (`https://cyclonedx.org/bom/v1.5`, `https://spdx.dev/Document/v2.3`); the
//! predicate is the SBOM document itself. This plugin does not interpret components (that is a policy
//! engine's job); it records which SBOM was signed for this executable:
//!
//! - `sha256`: SHA-256 of the predicate in RFC 8785 canonical form ([`super::jcs`]), so the digest is the
//!   same whether the SBOM came straight from the generator or was re-serialized by cosign;
//! - `components`: the length of the top-level `components` (CycloneDX) or `packages` (SPDX) array, for
//!   `twi provenance inspect` (not a selector: counts are not identities).

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::jcs;

/// CycloneDX's in-toto predicate type (without version).
pub const CYCLONEDX: &str = "https://cyclonedx.org/bom";
/// SPDX's in-toto predicate type (without version).
pub const SPDX: &str = "https://spdx.dev/Document";

/// Which SBOM format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SbomFormat {
    /// CycloneDX (JSON).
    CycloneDx,
    /// SPDX (JSON).
    Spdx,
}

impl SbomFormat {
    /// The name used in `sbom:format:<name>`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CycloneDx => "cyclonedx",
            Self::Spdx => "spdx",
        }
    }

    /// The format of an in-toto `predicateType`, if it is an SBOM type.
    #[must_use]
    pub fn of_predicate_type(t: &str) -> Option<Self> {
        let versioned = |base: &str| {
            t == base
                || t.strip_prefix(base)
                    .and_then(|r| r.strip_prefix("/v"))
                    .is_some_and(|v| {
                        !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                    })
        };
        if versioned(CYCLONEDX) {
            Some(Self::CycloneDx)
        } else if versioned(SPDX) {
            Some(Self::Spdx)
        } else {
            None
        }
    }
}

/// Why an SBOM predicate yields nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SbomError {
    /// The predicate is not a JSON object, or says it is another format.
    #[error("{format} SBOM: {detail}")]
    Malformed {
        /// `cyclonedx` or `spdx`.
        format: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// What is recorded about one SBOM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sbom {
    /// The format.
    pub format: SbomFormat,
    /// SHA-256 of the JCS form of the predicate, lower-case hex.
    pub sha256: String,
    /// Top-level component (CycloneDX) or package (SPDX) count, when the array is present.
    pub components: Option<usize>,
}

/// Reads the SBOM predicate of `format`.
///
/// # Errors
///
/// [`SbomError::Malformed`] when the predicate is not an object, or its `bomFormat` / `spdxVersion` says
/// it is not the format its predicate type claims.
pub fn read(format: SbomFormat, predicate: &Value) -> Result<Sbom, SbomError> {
    let malformed = |detail: String| SbomError::Malformed {
        format: format.as_str(),
        detail,
    };
    let obj = predicate
        .as_object()
        .ok_or_else(|| malformed("predicate is not a JSON object".into()))?;
    let (marker, want_prefix, list) = match format {
        SbomFormat::CycloneDx => ("bomFormat", "CycloneDX", "components"),
        SbomFormat::Spdx => ("spdxVersion", "SPDX-", "packages"),
    };
    match obj.get(marker) {
        None => {}
        Some(Value::String(s)) if s.starts_with(want_prefix) => {}
        Some(other) => {
            return Err(malformed(format!(
                "{marker} is {other}, not {want_prefix}…"
            )))
        }
    }
    let components = obj.get(list).and_then(Value::as_array).map(Vec::len);
    Ok(Sbom {
        format,
        sha256: hex::encode(Sha256::digest(jcs::canonicalize(predicate))),
        components,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::provenance::testing;
    use serde_json::json;

    #[test]
    fn predicate_types() {
        for (t, want) in [
            ("https://cyclonedx.org/bom", Some(SbomFormat::CycloneDx)),
            (
                "https://cyclonedx.org/bom/v1.5",
                Some(SbomFormat::CycloneDx),
            ),
            ("https://spdx.dev/Document", Some(SbomFormat::Spdx)),
            ("https://spdx.dev/Document/v2.3", Some(SbomFormat::Spdx)),
            ("https://spdx.dev/Document/vx", None),
            ("https://cyclonedx.org/bom/", None),
            ("https://cyclonedx.org/bomb", None),
            ("https://slsa.dev/provenance/v1", None),
        ] {
            assert_eq!(SbomFormat::of_predicate_type(t), want, "{t}");
        }
    }

    #[test]
    fn digest_is_over_the_canonical_form() {
        let bom = testing::cyclonedx_bom(3);
        let got = read(SbomFormat::CycloneDx, &bom).unwrap();
        assert_eq!(got.components, Some(3));
        // Independent of serialization: the same BOM pretty-printed with other key order.
        let text = serde_json::to_string_pretty(&bom).unwrap();
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            read(SbomFormat::CycloneDx, &reparsed).unwrap().sha256,
            got.sha256
        );
        // And it is the SHA-256 of the JCS bytes (checked against a hand-written canonical form).
        let small = json!({"specVersion": "1.5", "bomFormat": "CycloneDX"});
        let want = hex::encode(Sha256::digest(
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#,
        ));
        assert_eq!(read(SbomFormat::CycloneDx, &small).unwrap().sha256, want);
        assert_eq!(
            read(SbomFormat::CycloneDx, &small).unwrap().components,
            None
        );
        // A changed component changes the digest.
        let mut other = bom.clone();
        other["components"][0]["version"] = json!("1.0.1");
        assert_ne!(
            read(SbomFormat::CycloneDx, &other).unwrap().sha256,
            got.sha256
        );
    }

    #[test]
    fn spdx_and_mismatches() {
        let doc = json!({"spdxVersion": "SPDX-2.3", "packages": [{"name": "a"}, {"name": "b"}]});
        let got = read(SbomFormat::Spdx, &doc).unwrap();
        assert_eq!((got.format, got.components), (SbomFormat::Spdx, Some(2)));
        assert!(
            read(SbomFormat::CycloneDx, &doc).is_ok(),
            "no bomFormat: not contradicted"
        );
        assert!(read(SbomFormat::Spdx, &testing::cyclonedx_bom(1)).is_ok());
        assert!(read(SbomFormat::CycloneDx, &json!({"bomFormat": "SPDX"})).is_err());
        assert!(read(SbomFormat::Spdx, &json!({"spdxVersion": 2})).is_err());
        assert!(read(SbomFormat::Spdx, &json!([])).is_err());
    }
}

//! Workload provenance for the record: what our workload attestor proved, read from the selectors of
//! the registration entry the workload matched.
//!
//! The composer never sees the workload's own selectors, only the entry's: SPIRE issued the SVID
//! because the workload had *every* selector of some entry for its SPIFFE ID. So the selectors of our
//! workload attestor's type (`workload_attestor_name`, `twi` by default) that the entry demands were
//! proven for this workload. With one entry that is all of its selectors of that type; with several
//! (the workload matched at least one, we do not know which) only the selectors every entry demands;
//! with none, nothing.
//!
//! Mapping to in-toto ResourceDescriptors (one annotation `role` says which is which):
//! - `sha256:<hex>` → the executable: `digest.sha256`, `name` = the `path:` selector when there is one;
//! - `slsa:*` and `provenance:*` → the SLSA provenance that verified: `uri` = the source repository,
//!   `digest.gitCommit` = the commit, annotations `builderId`, `buildType`, `source` (`uri@commit`),
//!   `sourceRef`, `buildLevel` (the highest), `signers`; its own digest is not known to the server;
//! - `sbom:sha256:<hex>` (+ `sbom:format`) → the SBOM: `digest.sha256` over its RFC 8785 canonical
//!   JSON, `mediaType` from the format.

use std::collections::{BTreeMap, BTreeSet};

use crate::record::ResourceDescriptor;
use crate::spire_api::EntryInfo;

/// `annotations.role` of the executable's descriptor.
pub const ROLE_EXECUTABLE: &str = "executable";
/// `annotations.role` of the SLSA provenance descriptor.
pub const ROLE_PROVENANCE: &str = "slsa-provenance";
/// `annotations.role` of an SBOM descriptor.
pub const ROLE_SBOM: &str = "sbom";
/// Media type of an in-toto Statement (what the SLSA provenance was).
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";

/// Which selectors the descriptors were built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// No entry: nothing is known.
    None,
    /// The one entry's selectors.
    OneEntry,
    /// The selectors every one of several entries demands.
    Intersection,
}

/// The selector values (after `<attestor>:`) proven for a workload that matched one of `entries`.
pub fn proven_values(entries: &[EntryInfo], attestor: &str) -> (Basis, BTreeSet<String>) {
    let of = |e: &EntryInfo| -> BTreeSet<String> {
        e.selectors
            .iter()
            .filter(|s| s.ty == attestor)
            .map(|s| s.value.clone())
            .collect()
    };
    let mut iter = entries.iter();
    let Some(first) = iter.next() else {
        return (Basis::None, BTreeSet::new());
    };
    let mut common = of(first);
    let mut basis = Basis::OneEntry;
    for e in iter {
        basis = Basis::Intersection;
        let other = of(e);
        common.retain(|v| other.contains(v));
    }
    (basis, common)
}

/// The descriptors for a workload that matched one of `entries`.
pub fn descriptors(entries: &[EntryInfo], attestor: &str) -> Vec<ResourceDescriptor> {
    from_values(&proven_values(entries, attestor).1)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The values of `prefix<value>` selectors, sorted.
fn values<'a>(proven: &'a BTreeSet<String>, prefix: &str) -> Vec<&'a str> {
    proven
        .iter()
        .filter_map(|v| v.strip_prefix(prefix))
        .collect()
}

fn sbom_media_type(format: &str) -> Option<&'static str> {
    match format {
        "cyclonedx" => Some("application/vnd.cyclonedx+json"),
        "spdx" => Some("application/spdx+json"),
        _ => None,
    }
}

/// The descriptors of a set of proven selector values (see the module documentation).
pub fn from_values(proven: &BTreeSet<String>) -> Vec<ResourceDescriptor> {
    let mut out = Vec::new();
    let paths = values(proven, "path:");
    for digest in values(proven, "sha256:") {
        if !is_hex(digest, 64) {
            continue;
        }
        out.push(ResourceDescriptor {
            name: match paths.as_slice() {
                [one] => Some((*one).to_owned()),
                _ => None,
            },
            digest: BTreeMap::from([("sha256".to_owned(), digest.to_ascii_lowercase())]),
            annotations: BTreeMap::from([("role".to_owned(), ROLE_EXECUTABLE.to_owned())]),
            ..ResourceDescriptor::default()
        });
    }

    let builders = values(proven, "slsa:builder:");
    let build_types = values(proven, "slsa:build_type:");
    let sources = values(proven, "slsa:source:");
    let refs = values(proven, "slsa:source_ref:");
    let commits: Vec<&str> = values(proven, "slsa:commit:")
        .into_iter()
        .filter(|c| is_hex(c, 40) || is_hex(c, 64))
        .collect();
    let level = values(proven, "slsa:build_level:")
        .into_iter()
        .filter_map(|l| l.parse::<u8>().ok())
        .max();
    let signers = values(proven, "provenance:signer:");
    let any_slsa = !(builders.is_empty()
        && build_types.is_empty()
        && sources.is_empty()
        && commits.is_empty()
        && level.is_none());
    if any_slsa {
        let mut annotations = BTreeMap::from([("role".to_owned(), ROLE_PROVENANCE.to_owned())]);
        let mut put = |k: &str, v: &[&str]| {
            if !v.is_empty() {
                annotations.insert(k.to_owned(), v.join(","));
            }
        };
        put("builderId", &builders);
        put("buildType", &build_types);
        put("sourceRef", &refs);
        put("signers", &signers);
        if let ([source], [commit]) = (sources.as_slice(), commits.as_slice()) {
            annotations.insert("source".into(), format!("{source}@{commit}"));
        } else {
            put("source", &sources);
        }
        if let Some(level) = level {
            annotations.insert("buildLevel".into(), level.to_string());
        }
        out.push(ResourceDescriptor {
            name: Some(ROLE_PROVENANCE.to_owned()),
            uri: match sources.as_slice() {
                [one] => Some((*one).to_owned()),
                _ => None,
            },
            digest: match commits.as_slice() {
                [one] => BTreeMap::from([("gitCommit".to_owned(), one.to_ascii_lowercase())]),
                _ => BTreeMap::new(),
            },
            media_type: Some(IN_TOTO_MEDIA_TYPE.to_owned()),
            annotations,
        });
    }

    let formats = values(proven, "sbom:format:");
    for digest in values(proven, "sbom:sha256:") {
        if !is_hex(digest, 64) {
            continue;
        }
        let format = match formats.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        let mut annotations = BTreeMap::from([
            ("role".to_owned(), ROLE_SBOM.to_owned()),
            ("canonicalization".to_owned(), "RFC8785".to_owned()),
        ]);
        if let Some(f) = format {
            annotations.insert("format".into(), f.to_owned());
        }
        out.push(ResourceDescriptor {
            name: Some(ROLE_SBOM.to_owned()),
            digest: BTreeMap::from([("sha256".to_owned(), digest.to_ascii_lowercase())]),
            media_type: format.and_then(sbom_media_type).map(str::to_owned),
            annotations,
            ..ResourceDescriptor::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::spire_api::Selector;

    const EXE: &str = "4add4bb89d8ca0e3b1bd861130ddd7ae0fd9617a8055de0a38c8d2ca1ac95723";
    const SBOM: &str = "9a3f5c0e4b1d27f8a6c2e90d1b3f47a5c8e6d2019b7f3a4c5d6e8f9a0b1c2d3e";
    const COMMIT: &str = "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d";

    fn entry(id: &str, selectors: &[&str]) -> EntryInfo {
        EntryInfo {
            id: id.into(),
            spiffe_id: "spiffe://example.org/wl".into(),
            parent_id: "spiffe://example.org/spire/agent/twi/a".into(),
            selectors: selectors
                .iter()
                .map(|s| Selector::parse(s).unwrap())
                .collect(),
            revision: 1,
        }
    }

    #[test]
    fn one_entry_gives_executable_provenance_and_sbom() {
        let e = entry(
            "e1",
            &[
                "twi:uid:1000",
                &format!("twi:sha256:{EXE}"),
                "twi:path:/usr/bin/billing",
                "twi:slsa:builder:https://github.com/actions/runner/github-hosted",
                "twi:slsa:build_type:https://actions.github.io/buildtypes/workflow/v1",
                "twi:slsa:source:https://github.com/example/billing",
                &format!("twi:slsa:commit:{COMMIT}"),
                "twi:slsa:source_ref:refs/tags/v1.4.0",
                "twi:slsa:build_level:1",
                "twi:slsa:build_level:2",
                "twi:provenance:signer:release-ci",
                &format!("twi:sbom:sha256:{SBOM}"),
                "twi:sbom:format:cyclonedx",
                // Another attestor's selector proves nothing here.
                &format!("unix:sha256:{SBOM}"),
            ],
        );
        let d = descriptors(&[e], "twi");
        assert_eq!(d.len(), 3, "{d:#?}");
        let exe = &d[0];
        assert_eq!(exe.name.as_deref(), Some("/usr/bin/billing"));
        assert_eq!(exe.digest["sha256"], EXE);
        assert_eq!(exe.annotations["role"], "executable");
        let prov = &d[1];
        assert_eq!(
            prov.uri.as_deref(),
            Some("https://github.com/example/billing")
        );
        assert_eq!(prov.digest["gitCommit"], COMMIT);
        assert_eq!(
            prov.annotations["builderId"],
            "https://github.com/actions/runner/github-hosted"
        );
        assert_eq!(
            prov.annotations["buildType"],
            "https://actions.github.io/buildtypes/workflow/v1"
        );
        assert_eq!(
            prov.annotations["source"],
            format!("https://github.com/example/billing@{COMMIT}")
        );
        assert_eq!(prov.annotations["sourceRef"], "refs/tags/v1.4.0");
        assert_eq!(prov.annotations["buildLevel"], "2");
        assert_eq!(prov.annotations["signers"], "release-ci");
        let sbom = &d[2];
        assert_eq!(sbom.digest["sha256"], SBOM);
        assert_eq!(
            sbom.media_type.as_deref(),
            Some("application/vnd.cyclonedx+json")
        );
        assert_eq!(sbom.annotations["format"], "cyclonedx");
    }

    #[test]
    fn several_entries_give_the_intersection() {
        let a = entry(
            "e1",
            &[
                &format!("twi:sha256:{EXE}"),
                "twi:uid:0",
                "twi:slsa:builder:b1",
            ],
        );
        let b = entry("e2", &[&format!("twi:sha256:{EXE}"), "twi:uid:1"]);
        let (basis, proven) = proven_values(&[a.clone(), b.clone()], "twi");
        assert_eq!(basis, Basis::Intersection);
        assert_eq!(
            proven.into_iter().collect::<Vec<_>>(),
            [format!("sha256:{EXE}")]
        );
        let d = descriptors(&[a, b], "twi");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].annotations["role"], "executable");
        assert_eq!(d[0].name, None);
    }

    #[test]
    fn nothing_proven_nothing_described() {
        assert_eq!(proven_values(&[], "twi").0, Basis::None);
        assert!(descriptors(&[], "twi").is_empty());
        let e = entry("e1", &["twi:uid:0", "twi:sha256:nothex", "k8s:ns:default"]);
        assert!(descriptors(&[e], "twi").is_empty());
        let e = entry("e1", &[&format!("other:sha256:{EXE}")]);
        assert!(descriptors(std::slice::from_ref(&e), "twi").is_empty());
        assert_eq!(
            descriptors(&[e], "other").len(),
            1,
            "attestor name is configurable"
        );
    }

    #[test]
    fn ambiguous_source_is_not_joined_with_a_commit() {
        let e = entry(
            "e1",
            &[
                "twi:slsa:source:https://a.example/x",
                "twi:slsa:source:https://b.example/y",
                &format!("twi:slsa:commit:{COMMIT}"),
            ],
        );
        let d = descriptors(&[e], "twi");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].uri, None);
        assert_eq!(
            d[0].annotations["source"],
            "https://a.example/x,https://b.example/y"
        );
    }
}

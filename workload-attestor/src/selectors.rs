//! Facts about a process → selector values (`kind:value`; SPIRE adds the plugin name as the type).
//!
//! The first six kinds are exactly those of SPIRE's built-in `unix` attestor, so entries move between the
//! two by changing only the selector type. [`KINDS`] lists every kind this module can emit; the plugin page
//! (`doc/plugin_agent_workloadattestor_twi.md`) documents the same list, which a test checks.

use crate::cgroup::ContainerInfo;
use crate::digest::Sha256Digest;
use crate::names::Names;
use crate::proc::Credentials;

/// Every selector kind the attestor itself measures; provenance sources may not emit these.
pub const KINDS: &[&str] = &[
    "uid",
    "user",
    "gid",
    "group",
    "supplementary_gid",
    "supplementary_group",
    "path",
    "sha256",
    "cgroup",
    "container_id",
    "pod_uid",
];

/// What was measured about one process.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// Effective IDs and supplementary groups.
    pub credentials: Option<&'a Credentials>,
    /// The executable's path, when discovered and UTF-8.
    pub path: Option<&'a str>,
    /// The executable's SHA-256, when discovered.
    pub sha256: Option<&'a Sha256Digest>,
    /// Distinct cgroup paths.
    pub cgroups: Vec<&'a str>,
    /// Container and pod from the cgroup paths.
    pub container: Option<&'a ContainerInfo>,
}

/// The selector values for `facts`, in a fixed order (identity, executable, cgroups, container), with names
/// from `names`.
#[must_use]
pub fn selector_values(facts: &Facts<'_>, names: &Names) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = facts.credentials {
        out.push(format!("uid:{}", c.uid));
        if let Some(user) = names.user(c.uid) {
            out.push(format!("user:{user}"));
        }
        out.push(format!("gid:{}", c.gid));
        if let Some(group) = names.group(c.gid) {
            out.push(format!("group:{group}"));
        }
        for g in &c.groups {
            out.push(format!("supplementary_gid:{g}"));
            if let Some(group) = names.group(*g) {
                out.push(format!("supplementary_group:{group}"));
            }
        }
    }
    if let Some(path) = facts.path {
        out.push(format!("path:{path}"));
    }
    if let Some(digest) = facts.sha256 {
        out.push(format!("sha256:{}", hex::encode(digest)));
    }
    for cg in &facts.cgroups {
        out.push(format!("cgroup:{cg}"));
    }
    if let Some(info) = facts.container {
        if let Some(id) = &info.container_id {
            out.push(format!("container_id:{id}"));
        }
        if let Some(pod) = &info.pod_uid {
            out.push(format!("pod_uid:{pod}"));
        }
    }
    out
}

/// The kind of a selector value: the text before its first `:`.
#[must_use]
pub fn kind_of(value: &str) -> &str {
    value.split_once(':').map_or(value, |(k, _)| k)
}

/// Whether `value` claims a kind the attestor measures itself (and so may not come from provenance).
#[must_use]
pub fn is_measured_kind(value: &str) -> bool {
    KINDS.contains(&kind_of(value))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::names::NameDb;

    fn names() -> (tempfile::TempDir, NameDb) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("passwd"),
            "alice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("group"), "alice:x:1000:\nsudo:x:27:alice\n").unwrap();
        let db = NameDb::new(dir.path().join("passwd"), dir.path().join("group"));
        (dir, db)
    }

    #[test]
    fn all_kinds_in_order() {
        let (_dir, db) = names();
        let creds = Credentials {
            uid: 1000,
            gid: 1000,
            groups: vec![27, 999],
        };
        let digest = [0xab; 32];
        let info = ContainerInfo {
            container_id: Some("c".repeat(64)),
            pod_uid: Some("a2830d0d-b0f0-4ff0-81b5-0ee4e299cf80".into()),
        };
        let facts = Facts {
            credentials: Some(&creds),
            path: Some("/usr/bin/worker"),
            sha256: Some(&digest),
            cgroups: vec!["/kubepods/x"],
            container: Some(&info),
        };
        let got = selector_values(&facts, &db.current());
        let want = vec![
            "uid:1000".to_owned(),
            "user:alice".into(),
            "gid:1000".into(),
            "group:alice".into(),
            "supplementary_gid:27".into(),
            "supplementary_group:sudo".into(),
            "supplementary_gid:999".into(),
            "path:/usr/bin/worker".into(),
            format!("sha256:{}", "ab".repeat(32)),
            "cgroup:/kubepods/x".into(),
            format!("container_id:{}", "c".repeat(64)),
            "pod_uid:a2830d0d-b0f0-4ff0-81b5-0ee4e299cf80".into(),
        ];
        assert_eq!(got, want);
        let kinds: Vec<&str> = got.iter().map(|v| kind_of(v)).collect();
        for k in KINDS {
            assert!(kinds.contains(k), "{k} never emitted");
        }
    }

    #[test]
    fn unknown_ids_get_no_names_and_absent_facts_no_selectors() {
        let (_dir, db) = names();
        let creds = Credentials {
            uid: 4000,
            gid: 4000,
            groups: vec![],
        };
        let facts = Facts {
            credentials: Some(&creds),
            ..Facts::default()
        };
        assert_eq!(
            selector_values(&facts, &db.current()),
            vec!["uid:4000", "gid:4000"]
        );
    }

    const DOC: &str = include_str!("../doc/plugin_agent_workloadattestor_twi.md");
    const DOC_TYPE: &str = "twi:";

    /// The rows of the doc page's `## Selectors` table: (kind, example), without the `twi:` type.
    fn documented_rows() -> Vec<(String, String)> {
        let section = DOC
            .split("\n## Selectors\n")
            .nth(1)
            .expect("doc has a Selectors section");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cols: Vec<&str> = l.split('|').map(str::trim).collect();
                let strip = |c: &str| {
                    c.trim_matches('`')
                        .strip_prefix(DOC_TYPE)
                        .expect("the table shows the selector type")
                        .to_owned()
                };
                (strip(cols[1]), strip(cols[2]))
            })
            .collect()
    }

    #[test]
    fn doc_selector_table_matches_the_code() {
        let rows = documented_rows();
        let documented: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        let mut want: Vec<&str> = KINDS.to_vec();
        want.extend_from_slice(crate::provenance::PROVENANCE_KINDS);
        assert_eq!(
            documented, want,
            "the doc's selector table differs from selectors::KINDS followed by \
             provenance::PROVENANCE_KINDS (same kinds, same order)"
        );
        // Every example is a value of its own row's kind, as the code would print it.
        for (k, example) in &rows {
            if KINDS.contains(&k.as_str()) {
                assert_eq!(kind_of(example), k, "example {example} of row {k}");
            } else {
                assert!(
                    example.starts_with(&format!("{k}:")),
                    "example {example} of row {k}"
                );
            }
            assert!(example.len() > k.len() + 1, "example {example} has a value");
        }
        // And the code emits every kind (all_kinds_in_order checks the values themselves).
        let (_dir, db) = names();
        let creds = Credentials {
            uid: 1000,
            gid: 1000,
            groups: vec![27],
        };
        let info = ContainerInfo {
            container_id: Some("0".repeat(64)),
            pod_uid: Some("p".into()),
        };
        let digest = [0; 32];
        let facts = Facts {
            credentials: Some(&creds),
            path: Some("/x"),
            sha256: Some(&digest),
            cgroups: vec!["/"],
            container: Some(&info),
        };
        let mut emitted: Vec<&str> = Vec::new();
        let values = selector_values(&facts, &db.current());
        for v in &values {
            if !emitted.contains(&kind_of(v)) {
                emitted.push(kind_of(v));
            }
        }
        assert_eq!(emitted, KINDS);
    }

    #[test]
    fn measured_kinds_are_recognised() {
        assert!(is_measured_kind("uid:0"));
        assert!(is_measured_kind("sha256:00"));
        assert!(is_measured_kind("path"));
        assert!(!is_measured_kind("slsa:builder_id:x"));
        assert!(!is_measured_kind("uidx:0"));
        assert_eq!(kind_of("cgroup:/a:b"), "cgroup");
    }
}

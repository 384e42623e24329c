//! SLSA provenance predicates: who built the executable, how, and from which source.
//!
//! - v1 (<https://slsa.dev/spec/v1.0/provenance>, `predicateType` `https://slsa.dev/provenance/v1`):
//!   `runDetails.builder.id`, `buildDefinition.buildType`, `buildDefinition.externalParameters`,
//!   `buildDefinition.resolvedDependencies[]` (`{uri, digest: {gitCommit | sha1, …}}`).
//! - v0.2 (`https://slsa.dev/provenance/v0.2`, what slsa-github-generator v1 writes): `builder.id`,
//!   `buildType`, `invocation.configSource` (`{uri, digest: {sha1}, entryPoint}`).
//!
//! **The source.** SLSA v1 does not say which resolved dependency is "the source". The rule here: the
//! source is a resolved dependency with a `uri` and a git commit digest (`gitCommit`, else `sha1`);
//! if `externalParameters` names a repository (`workflow.repository`, as GitHub's build types do, or
//! `source` / `source.uri`), it must be that repository, otherwise the first such dependency. A
//! provenance whose external parameters name a repository that no dependency matches gets no source
//! selectors (the builder still counts), and the reason is reported. For v0.2, the source is
//! `invocation.configSource`.
//!
//! **Repository form.** `slsa:source` is the dependency URI without a leading `git+` and without the
//! `@<ref>` suffix (`git+https://github.com/o/r@refs/heads/main` → `https://github.com/o/r`); the ref
//! goes to `slsa:source_ref`. Nothing else is normalized (no case folding, no `.git` stripping): an
//! entry must spell the repository as the builder wrote it.
//!
//! **Build level** is not read from the document: the level is a property of the build platform that
//! signed it, which only the operator can vouch for (`build_level` on a trusted key; see `store`).

use serde_json::Value;

/// `predicateType` of SLSA provenance v1.
pub const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
/// `predicateType` of SLSA provenance v0.2.
pub const SLSA_V02: &str = "https://slsa.dev/provenance/v0.2";

/// Longest value taken from a document into a selector; selectors are matched by equality, and a
/// multi-kilobyte "builder ID" is an attack, not an ID.
pub const MAX_VALUE_LEN: usize = 2048;

/// Why a provenance predicate yields nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlsaError {
    /// A required field is missing, of the wrong type, or not usable as a selector value.
    #[error("SLSA provenance: {field}: {detail}")]
    Field {
        /// The field, e.g. `runDetails.builder.id`.
        field: String,
        /// What was wrong.
        detail: String,
    },
}

/// The source a build was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Repository URI (no `git+`, no `@ref`).
    pub repository: String,
    /// The ref (`refs/heads/main`), when the URI or the external parameters give one.
    pub git_ref: Option<String>,
    /// The commit, lower-case hex (40 or 64 digits).
    pub commit: String,
}

/// What a provenance document says, ready to become selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// `runDetails.builder.id` (v1) / `builder.id` (v0.2).
    pub builder_id: String,
    /// `buildDefinition.buildType` (v1) / `buildType` (v0.2).
    pub build_type: String,
    /// The source, when it could be determined.
    pub source: Option<Source>,
    /// Why the source could not be determined, when it could not.
    pub source_note: Option<String>,
}

/// Reads an SLSA provenance predicate of type `predicate_type` ([`SLSA_V1`] or [`SLSA_V02`]).
///
/// # Errors
///
/// [`SlsaError::Field`] when the builder ID or build type is missing or unusable; an unreadable source
/// only sets [`Provenance::source_note`].
pub fn read(predicate_type: &str, predicate: &Value) -> Result<Provenance, SlsaError> {
    if predicate_type == SLSA_V02 {
        read_v02(predicate)
    } else {
        read_v1(predicate)
    }
}

fn read_v1(p: &Value) -> Result<Provenance, SlsaError> {
    let builder_id = text(p, &["runDetails", "builder", "id"])?;
    let build_type = text(p, &["buildDefinition", "buildType"])?;
    let external = p.pointer("/buildDefinition/externalParameters");
    if !external.is_some_and(Value::is_object) {
        return Err(field_err(
            "buildDefinition.externalParameters",
            "missing or not a JSON object",
        ));
    }
    let named = external.and_then(named_repository);
    let ext_ref = p
        .pointer("/buildDefinition/externalParameters/workflow/ref")
        .and_then(Value::as_str);
    let deps = match p.pointer("/buildDefinition/resolvedDependencies") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => {
            return Err(field_err(
                "buildDefinition.resolvedDependencies",
                "not an array",
            ))
        }
    };
    let candidates: Vec<Source> = deps.iter().filter_map(git_dependency).collect();
    let (source, source_note) = match (&named, candidates.first()) {
        (_, None) => (
            None,
            Some("no resolvedDependencies entry with a uri and a gitCommit/sha1 digest".to_owned()),
        ),
        (None, Some(first)) => (Some(first.clone()), None),
        (Some(repo), Some(_)) => match candidates.iter().find(|c| &c.repository == repo) {
            Some(c) => (Some(c.clone()), None),
            None => (
                None,
                Some(format!(
                    "externalParameters names repository {repo:?} but no resolvedDependencies entry \
                     with a git commit is that repository"
                )),
            ),
        },
    };
    let source = source.map(|mut s| {
        if s.git_ref.is_none() {
            s.git_ref = ext_ref.and_then(|r| clean(r).ok()).map(str::to_owned);
        }
        s
    });
    Ok(Provenance {
        builder_id,
        build_type,
        source,
        source_note,
    })
}

fn read_v02(p: &Value) -> Result<Provenance, SlsaError> {
    let builder_id = text(p, &["builder", "id"])?;
    let build_type = text(p, &["buildType"])?;
    let (source, source_note) = match p
        .pointer("/invocation/configSource")
        .and_then(git_dependency)
    {
        Some(s) => (Some(s), None),
        None => (
            None,
            Some("invocation.configSource has no uri with a sha1/gitCommit digest".to_owned()),
        ),
    };
    Ok(Provenance {
        builder_id,
        build_type,
        source,
        source_note,
    })
}

/// The repository `externalParameters` names, normalized like a dependency URI.
fn named_repository(external: &Value) -> Option<String> {
    let s = external
        .pointer("/workflow/repository")
        .or_else(|| external.pointer("/source/uri"))
        .or_else(|| external.get("source").filter(|v| v.is_string()))?
        .as_str()?;
    let (repo, _) = split_uri(s);
    clean(repo).ok().map(str::to_owned)
}

/// A resource descriptor with a `uri` and a git commit digest, as a [`Source`].
fn git_dependency(dep: &Value) -> Option<Source> {
    let uri = dep.get("uri")?.as_str()?;
    let digest = dep.get("digest")?;
    let commit = digest
        .get("gitCommit")
        .or_else(|| digest.get("sha1"))?
        .as_str()?
        .to_ascii_lowercase();
    let hex_ok = matches!(commit.len(), 40 | 64) && commit.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_ok {
        return None;
    }
    let (repo, git_ref) = split_uri(uri);
    Some(Source {
        repository: clean(repo).ok()?.to_owned(),
        git_ref: git_ref.and_then(|r| clean(r).ok()).map(str::to_owned),
        commit,
    })
}

/// `git+https://host/o/r@refs/heads/main` → (`https://host/o/r`, `Some("refs/heads/main")`). The `@`
/// only counts in the path, so `git+ssh://git@host/o/r` keeps its user.
fn split_uri(uri: &str) -> (&str, Option<&str>) {
    let uri = uri.strip_prefix("git+").unwrap_or(uri);
    let authority = uri.find("://").map_or(0, |i| i.saturating_add(3));
    let path_start = uri
        .get(authority..)
        .and_then(|rest| rest.find('/'))
        .map(|j| authority.saturating_add(j));
    match (path_start, uri.rfind('@')) {
        (Some(path), Some(at)) if at > path => (
            uri.get(..at).unwrap_or(uri),
            uri.get(at.saturating_add(1)..).filter(|r| !r.is_empty()),
        ),
        _ => (uri, None),
    }
}

/// The string at `path`, checked to be usable as a selector value.
fn text(p: &Value, path: &[&str]) -> Result<String, SlsaError> {
    let dotted = path.join(".");
    let mut v = p;
    for key in path {
        v = v.get(key).ok_or_else(|| field_err(&dotted, "missing"))?;
    }
    let s = v
        .as_str()
        .ok_or_else(|| field_err(&dotted, "not a string"))?;
    clean(s)
        .map(str::to_owned)
        .map_err(|detail| field_err(&dotted, &detail))
}

/// `s` if it can be a selector value: non-empty, at most [`MAX_VALUE_LEN`] bytes, no control characters.
///
/// # Errors
///
/// What is wrong with it.
pub fn clean(s: &str) -> Result<&str, String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.len() > MAX_VALUE_LEN {
        return Err(format!("{} bytes, over {MAX_VALUE_LEN}", s.len()));
    }
    if s.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    Ok(s)
}

fn field_err(field: &str, detail: &str) -> SlsaError {
    SlsaError::Field {
        field: field.to_owned(),
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::provenance::testing;
    use serde_json::json;

    const BUILDER: &str = "https://github.com/actions/runner/github-hosted";
    const REPO: &str = "https://github.com/twi-spire/app";
    const COMMIT: &str = "7fd1a60b01f91b314f59955a4e4d4e80d8edf11d";

    #[test]
    fn github_style_v1() {
        let p = testing::slsa_v1_predicate(BUILDER, REPO, "refs/tags/v1.2.0", COMMIT);
        let got = read(SLSA_V1, &p).unwrap();
        assert_eq!(
            got,
            Provenance {
                builder_id: BUILDER.into(),
                build_type: "https://actions.github.io/buildtypes/workflow/v1".into(),
                source: Some(Source {
                    repository: REPO.into(),
                    git_ref: Some("refs/tags/v1.2.0".into()),
                    commit: COMMIT.into(),
                }),
                source_note: None,
            }
        );
    }

    #[test]
    fn source_must_be_the_named_repository() {
        let mut p = testing::slsa_v1_predicate(BUILDER, REPO, "refs/heads/main", COMMIT);
        // A dependency pulled from elsewhere comes first; the named repository is still found.
        p["buildDefinition"]["resolvedDependencies"] = json!([
            {"uri": "git+https://github.com/other/lib@refs/heads/main", "digest": {"gitCommit": "1".repeat(40)}},
            {"uri": "oci://registry/image", "digest": {"sha256": "2".repeat(64)}},
            {"uri": format!("git+{REPO}@refs/heads/main"), "digest": {"sha1": COMMIT.to_uppercase()}},
        ]);
        let got = read(SLSA_V1, &p).unwrap();
        assert_eq!(got.source.as_ref().unwrap().repository, REPO);
        assert_eq!(got.source.as_ref().unwrap().commit, COMMIT);
        // Named repository absent from the dependencies: no source, a note, the builder still read.
        p["buildDefinition"]["resolvedDependencies"] = json!([
            {"uri": "git+https://github.com/other/lib", "digest": {"gitCommit": "1".repeat(40)}},
        ]);
        let got = read(SLSA_V1, &p).unwrap();
        assert_eq!(got.source, None);
        assert!(got.source_note.unwrap().contains(REPO));
        assert_eq!(got.builder_id, BUILDER);
        // Nothing named: the first git dependency; bad commits are not git dependencies.
        p["buildDefinition"]["externalParameters"] = json!({});
        p["buildDefinition"]["resolvedDependencies"] = json!([
            {"uri": "git+https://a/x", "digest": {"gitCommit": "xyz"}},
            {"uri": "git+ssh://git@host/o/r", "digest": {"gitCommit": "a".repeat(64)}},
        ]);
        let s = read(SLSA_V1, &p).unwrap().source.unwrap();
        assert_eq!(
            (s.repository.as_str(), s.git_ref, s.commit.len()),
            ("ssh://git@host/o/r", None, 64)
        );
        p["buildDefinition"]
            .as_object_mut()
            .unwrap()
            .remove("resolvedDependencies");
        assert!(read(SLSA_V1, &p).unwrap().source_note.is_some());
    }

    #[test]
    fn v02_reads_config_source() {
        let p = json!({
            "builder": {"id": "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml@refs/tags/v1.9.0"},
            "buildType": "https://github.com/slsa-framework/slsa-github-generator/generic@v1",
            "invocation": {"configSource": {"uri": format!("git+{REPO}@refs/heads/main"), "digest": {"sha1": COMMIT}, "entryPoint": ".github/workflows/x.yml"}},
            "materials": []
        });
        let got = read(SLSA_V02, &p).unwrap();
        assert!(got.builder_id.ends_with("@refs/tags/v1.9.0"));
        assert_eq!(
            got.source,
            Some(Source {
                repository: REPO.into(),
                git_ref: Some("refs/heads/main".into()),
                commit: COMMIT.into()
            })
        );
    }

    #[test]
    fn required_fields_and_values_are_checked() {
        let good = testing::slsa_v1_predicate(BUILDER, REPO, "refs/heads/main", COMMIT);
        let cases: Vec<(Value, &str)> = vec![
            (json!({}), "runDetails.builder.id"),
            (
                json!({"runDetails": {"builder": {"id": 5}}}),
                "runDetails.builder.id",
            ),
            (
                json!({"runDetails": {"builder": {"id": ""}}}),
                "runDetails.builder.id",
            ),
            (
                json!({"runDetails": {"builder": {"id": "a\nb"}}}),
                "runDetails.builder.id",
            ),
            (
                json!({"runDetails": {"builder": {"id": "x".repeat(MAX_VALUE_LEN + 1)}}}),
                "runDetails.builder.id",
            ),
            (
                json!({"runDetails": {"builder": {"id": "b"}}}),
                "buildDefinition.buildType",
            ),
            (
                json!({"runDetails": {"builder": {"id": "b"}}, "buildDefinition": {"buildType": "t"}}),
                "buildDefinition.externalParameters",
            ),
            (
                {
                    let mut v = good.clone();
                    v["buildDefinition"]["resolvedDependencies"] = json!({});
                    v
                },
                "buildDefinition.resolvedDependencies",
            ),
            (json!("string"), "runDetails.builder.id"),
        ];
        for (p, field) in cases {
            match read(SLSA_V1, &p) {
                Err(SlsaError::Field { field: f, .. }) => assert_eq!(f, field, "{p}"),
                other => panic!("{p}: {other:?}"),
            }
        }
        assert!(read(SLSA_V02, &json!({"buildType": "t"})).is_err());
    }

    #[test]
    fn uri_splitting() {
        assert_eq!(
            split_uri("git+https://h/o/r@refs/x"),
            ("https://h/o/r", Some("refs/x"))
        );
        assert_eq!(split_uri("https://h/o/r"), ("https://h/o/r", None));
        assert_eq!(split_uri("git+ssh://git@h/o/r"), ("ssh://git@h/o/r", None));
        assert_eq!(
            split_uri("git+ssh://git@h/o/r@v1"),
            ("ssh://git@h/o/r", Some("v1"))
        );
        assert_eq!(split_uri("git+https://h/o/r@"), ("https://h/o/r", None));
        assert_eq!(split_uri("weird@thing"), ("weird@thing", None));
    }
}

//! One PID → selector values: the whole attestation, with no gRPC in it, so the plugin, tests and
//! `twi provenance inspect` run the same code.

use std::path::Path;
use std::sync::Arc;

use twi_plugin::ConfigError;

use crate::cache::Lru;
use crate::cgroup::{self, CgroupError};
use crate::config::{self, Settings};
use crate::digest::{hash_file, DigestError, FileIdentity, Sha256Digest};
use crate::error::AttestError;
use crate::names::NameDb;
use crate::proc::{ProcDir, ProcFs};
use crate::provenance::store::DsseStore;
use crate::provenance::{Findings, NoProvenance, ProvenanceSource, Subject};
use crate::selectors::{is_measured_kind, selector_values, Facts};
use crate::snapshot::{self, Exe};

/// An attestation with its reasons: what [`Attestor::explain`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The selector values, exactly as [`Attestor::attest`] returns them.
    pub selectors: Vec<String>,
    /// The executable's SHA-256, when it was computed.
    pub sha256: Option<Sha256Digest>,
    /// What the provenance source found, when it was asked (there was a digest).
    pub provenance: Option<Findings>,
    /// Selectors the provenance source emitted that claim a measured kind, and were dropped.
    pub dropped: Vec<String>,
}

/// A configured attestor: settings, the `/proc` it reads, the digest cache, the name files and the
/// provenance source. Shared by concurrent attestations.
#[derive(Debug)]
pub struct Attestor {
    settings: Settings,
    proc: Arc<dyn ProcFs>,
    cache: Lru<FileIdentity, Sha256Digest>,
    names: NameDb,
    provenance: Arc<dyn ProvenanceSource>,
}

impl Attestor {
    /// An attestor reading `settings.proc_root`, `/etc/passwd` and `/etc/group`, with no provenance.
    #[must_use]
    pub fn new(settings: Settings) -> Self {
        let proc = Arc::new(ProcDir::new(settings.proc_root.clone()));
        Self::with_parts(settings, proc, NameDb::default(), Arc::new(NoProvenance))
    }

    /// An attestor from explicit parts (tests: a fake `/proc`, fake name files; phase 2: a real
    /// provenance source).
    #[must_use]
    pub fn with_parts(
        settings: Settings,
        proc: Arc<dyn ProcFs>,
        names: NameDb,
        provenance: Arc<dyn ProvenanceSource>,
    ) -> Self {
        let cache = Lru::new(settings.cache_entries);
        Self {
            settings,
            proc,
            cache,
            names,
            provenance,
        }
    }

    /// An attestor for `settings` as the plugin's Configure makes it: checks `proc_root` and, when a
    /// `provenance` block is set, opens its store and keys ([`DsseStore::open`]); without one, the
    /// source is `fallback`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key whose path is unusable.
    pub fn configured(
        settings: Settings,
        fallback: Arc<dyn ProvenanceSource>,
    ) -> Result<Self, ConfigError> {
        config::check_paths(&settings)?;
        let provenance: Arc<dyn ProvenanceSource> = match &settings.provenance {
            Some(p) => Arc::new(DsseStore::open(p, settings.cache_entries)?),
            None => fallback,
        };
        Ok(Self::new(settings).with_provenance(provenance))
    }

    /// The provenance source in use.
    #[must_use]
    pub fn provenance(&self) -> &dyn ProvenanceSource {
        self.provenance.as_ref()
    }

    /// Replaces the provenance source.
    #[must_use]
    pub fn with_provenance(mut self, provenance: Arc<dyn ProvenanceSource>) -> Self {
        self.provenance = provenance;
        self
    }

    /// The settings in force.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// How many digests are cached.
    #[must_use]
    pub fn cached_digests(&self) -> usize {
        self.cache.len()
    }

    /// The selector values for `pid` (blocking: reads `/proc` and may hash a file).
    ///
    /// # Errors
    ///
    /// [`AttestError`]: see [`snapshot::take`]; also `TooLarge`/`FileChanged` from hashing, `Malformed` or
    /// `CgroupConflict` from the cgroup file.
    pub fn attest(&self, pid: i32) -> Result<Vec<String>, AttestError> {
        self.explain(pid).map(|e| e.selectors)
    }

    /// As [`Attestor::attest`], with the digest and the provenance source's findings (which are also
    /// logged: rejected attestations as warnings).
    ///
    /// # Errors
    ///
    /// As [`Attestor::attest`].
    pub fn explain(&self, pid: i32) -> Result<Explanation, AttestError> {
        let pid = snapshot::checked_pid(pid)?;
        let snap = snapshot::take(self.proc.as_ref(), pid, self.settings.wants_exe())?;

        let lines = cgroup::parse(&snap.cgroup).map_err(|e| self.cgroup_error(pid, e))?;
        let container = cgroup::container_info(&lines).map_err(|e| self.cgroup_error(pid, e))?;

        let exe = snap.exe.as_ref();
        let path = match exe {
            Some(exe) if self.settings.discover_path => {
                let p = exe.path.to_str();
                if p.is_none() {
                    // A lossy conversion could make two different paths one selector; emit none.
                    tracing::warn!(pid, path = %exe.path.display(), "executable path is not UTF-8; no path selector");
                }
                p
            }
            _ => None,
        };
        let digest = match exe {
            Some(exe) if self.settings.discover_digest => Some(self.digest(pid, exe)?),
            _ => None,
        };

        let names = self.names.current();
        let facts = Facts {
            credentials: Some(&snap.credentials),
            path,
            sha256: digest.as_ref(),
            cgroups: cgroup::distinct_paths(&lines),
            container: Some(&container),
        };
        let mut explanation = Explanation {
            selectors: selector_values(&facts, &names),
            sha256: digest,
            provenance: None,
            dropped: Vec::new(),
        };
        if let Some(d) = &digest {
            let subject = Subject::new(d, path, container.container_id.as_deref());
            self.add_provenance(Some(pid), &subject, &mut explanation);
        }
        // Trace, not debug: spire-agent logs the selectors of every attestation at debug itself, and a
        // line per call costs the cached path a write and a parse by go-plugin (BENCHMARKS.md).
        tracing::trace!(pid, selectors = explanation.selectors.len(), "attested");
        Ok(explanation)
    }

    /// What the attestor would emit for a process running the file at `path`, without a process: the
    /// `path:` (canonical, as `/proc/<pid>/exe` names it) and `sha256:` selectors and provenance. The
    /// process-only selectors (user, groups, cgroups, container) are absent. For `twi provenance inspect`.
    ///
    /// # Errors
    ///
    /// `Io`/`Denied` when the file cannot be opened, `TooLarge`/`FileChanged` from hashing.
    pub fn explain_file(&self, path: &Path) -> Result<Explanation, AttestError> {
        let canonical =
            std::fs::canonicalize(path).map_err(|e| AttestError::from_io(path.to_path_buf(), e))?;
        let file = std::fs::File::open(&canonical)
            .map_err(|e| AttestError::from_io(canonical.clone(), e))?;
        let shown = canonical.display().to_string();
        let text = canonical.to_str();
        let mut selectors = Vec::new();
        if self.settings.discover_path {
            if let Some(p) = text {
                selectors.push(format!("path:{p}"));
            }
        }
        let mut explanation = Explanation {
            selectors,
            sha256: None,
            provenance: None,
            dropped: Vec::new(),
        };
        if !self.settings.discover_digest {
            return Ok(explanation);
        }
        let max = self.settings.max_digest_bytes;
        let (_, digest) = hash_file(&file, max).map_err(|e| match e {
            DigestError::TooLarge { size, max } => AttestError::TooLarge {
                pid: 0,
                path: shown.clone(),
                size,
                max,
            },
            DigestError::Changed { before, after } => AttestError::FileChanged {
                pid: 0,
                path: shown.clone(),
                before: Box::new(before),
                after: Box::new(after),
            },
            DigestError::Io(source) => AttestError::from_io(canonical.clone(), source),
        })?;
        explanation
            .selectors
            .push(format!("sha256:{}", hex::encode(digest)));
        explanation.sha256 = Some(digest);
        let subject = Subject::new(&digest, text.filter(|_| self.settings.discover_path), None);
        self.add_provenance(None, &subject, &mut explanation);
        Ok(explanation)
    }

    /// The digest of the executable: from the cache when its identity at open time is known, else hashed
    /// from the open descriptor and cached.
    fn digest(&self, pid: u32, exe: &Exe) -> Result<Sha256Digest, AttestError> {
        let max = self.settings.max_digest_bytes;
        let path = || exe.path.display().to_string();
        if exe.identity.size > max {
            return Err(AttestError::TooLarge {
                pid,
                path: path(),
                size: exe.identity.size,
                max,
            });
        }
        if let Some(d) = self.cache.get(&exe.identity) {
            return Ok(d);
        }
        let (identity, digest) = hash_file(&exe.file, max).map_err(|e| match e {
            DigestError::TooLarge { size, max } => AttestError::TooLarge {
                pid,
                path: path(),
                size,
                max,
            },
            DigestError::Changed { before, after } => AttestError::FileChanged {
                pid,
                path: path(),
                before: Box::new(before),
                after: Box::new(after),
            },
            DigestError::Io(source) => AttestError::from_io(self.proc.path(pid, "exe"), source),
        })?;
        self.cache.insert(identity, digest);
        Ok(digest)
    }

    /// Appends the provenance source's selectors, dropping any that claim a measured kind; logs why
    /// attestations were rejected (warnings: an operator put them there to be used).
    fn add_provenance(&self, pid: Option<u32>, subject: &Subject<'_>, out: &mut Explanation) {
        let findings = self.provenance.provenance(subject);
        let pid = pid.unwrap_or(0);
        for reason in &findings.skipped {
            tracing::warn!(pid, sha256 = %hex::encode(subject.sha256), source = %self.provenance.describe(),
                reason = %reason, "provenance not used");
        }
        for value in &findings.selectors {
            if is_measured_kind(value) {
                tracing::warn!(pid, source = %self.provenance.describe(), selector = %value,
                    "provenance source emitted a measured selector kind; dropped");
                out.dropped.push(value.clone());
            } else if !out.selectors.contains(value) {
                out.selectors.push(value.clone());
            }
        }
        out.provenance = Some(findings);
    }

    fn cgroup_error(&self, pid: u32, e: CgroupError) -> AttestError {
        match e {
            CgroupError::Conflict {
                what,
                first,
                second,
            } => AttestError::CgroupConflict {
                pid,
                what,
                first,
                second,
            },
            other => AttestError::Malformed {
                path: self.proc.path(pid, "cgroup"),
                detail: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::provenance::Findings;
    use sha2::{Digest as _, Sha256};
    use std::path::Path;

    const PID: u32 = 777;
    const CID: &str = "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6";

    /// A fake `/proc` with process [`PID`] in a Docker container, plus passwd/group files.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(exe_content: &[u8]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("proc").join(PID.to_string());
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(
                p.join("stat"),
                format!("{PID} (app) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 900 1 1\n"),
            )
            .unwrap();
            std::fs::write(
                p.join("status"),
                "Uid:\t0\t1000\t1000\t1000\nGid:\t0\t1000\t1000\t1000\nGroups:\t27\n",
            )
            .unwrap();
            std::fs::write(
                p.join("cgroup"),
                format!("0::/system.slice/docker-{CID}.scope\n"),
            )
            .unwrap();
            std::fs::write(dir.path().join("app"), exe_content).unwrap();
            std::os::unix::fs::symlink(dir.path().join("app"), p.join("exe")).unwrap();
            std::fs::write(dir.path().join("passwd"), "alice:x:1000:1000::/:/bin/sh\n").unwrap();
            std::fs::write(dir.path().join("group"), "alice:x:1000:\nsudo:x:27:\n").unwrap();
            Self { dir }
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        fn attestor(&self, settings: Settings, provenance: Arc<dyn ProvenanceSource>) -> Attestor {
            let settings = Settings {
                proc_root: self.root().join("proc"),
                ..settings
            };
            Attestor::with_parts(
                settings.clone(),
                Arc::new(ProcDir::new(settings.proc_root.clone())),
                NameDb::new(self.root().join("passwd"), self.root().join("group")),
                provenance,
            )
        }
    }

    fn pid() -> i32 {
        i32::try_from(PID).unwrap()
    }

    #[test]
    fn full_selector_set_from_a_fake_proc() {
        let fx = Fixture::new(b"the app");
        let a = fx.attestor(Settings::default(), Arc::new(NoProvenance));
        let got = a.attest(pid()).unwrap();
        let digest = hex::encode(Sha256::digest(b"the app"));
        let want = vec![
            "uid:1000".to_owned(),
            "user:alice".into(),
            "gid:1000".into(),
            "group:alice".into(),
            "supplementary_gid:27".into(),
            "supplementary_group:sudo".into(),
            format!("path:{}", fx.root().join("app").display()),
            format!("sha256:{digest}"),
            format!("cgroup:/system.slice/docker-{CID}.scope"),
            format!("container_id:{CID}"),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn discovery_switches() {
        let fx = Fixture::new(b"x");
        let off = Settings {
            discover_path: false,
            discover_digest: false,
            ..Settings::default()
        };
        // With both off, the exe link is never read: a broken link does not matter.
        std::fs::remove_file(fx.root().join("app")).unwrap();
        let got = fx
            .attestor(off, Arc::new(NoProvenance))
            .attest(pid())
            .unwrap();
        assert!(
            got.iter()
                .all(|v| !v.starts_with("path:") && !v.starts_with("sha256:")),
            "{got:?}"
        );
        assert!(got.contains(&"uid:1000".to_owned()));
        std::fs::write(fx.root().join("app"), b"x").unwrap();
        let digest_only = Settings {
            discover_path: false,
            ..Settings::default()
        };
        let got = fx
            .attestor(digest_only, Arc::new(NoProvenance))
            .attest(pid())
            .unwrap();
        assert!(got.iter().any(|v| v.starts_with("sha256:")));
        assert!(!got.iter().any(|v| v.starts_with("path:")));
    }

    #[test]
    fn cache_hits_until_the_file_changes() {
        let fx = Fixture::new(b"first");
        let a = fx.attestor(Settings::default(), Arc::new(NoProvenance));
        let sha = |v: &[String]| {
            v.iter()
                .find(|s| s.starts_with("sha256:"))
                .cloned()
                .unwrap()
        };
        let first = sha(&a.attest(pid()).unwrap());
        assert_eq!(a.cached_digests(), 1);
        assert_eq!(sha(&a.attest(pid()).unwrap()), first);
        assert_eq!(a.cached_digests(), 1, "a repeat is a hit");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(fx.root().join("app"), b"other").unwrap();
        let second = sha(&a.attest(pid()).unwrap());
        assert_eq!(
            second,
            format!("sha256:{}", hex::encode(Sha256::digest(b"other")))
        );
        assert_eq!(a.cached_digests(), 2);
        // No cache: nothing kept, same answer.
        let none = fx.attestor(
            Settings {
                cache_entries: 0,
                ..Settings::default()
            },
            Arc::new(NoProvenance),
        );
        assert_eq!(sha(&none.attest(pid()).unwrap()), second);
        assert_eq!(none.cached_digests(), 0);
    }

    #[test]
    fn over_the_limit_is_refused() {
        let fx = Fixture::new(&[0u8; 100]);
        let a = fx.attestor(
            Settings {
                max_digest_bytes: 99,
                ..Settings::default()
            },
            Arc::new(NoProvenance),
        );
        let err = a.attest(pid()).unwrap_err();
        assert!(
            matches!(
                &err,
                AttestError::TooLarge {
                    size: 100,
                    max: 99,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.to_string().contains("max_digest_bytes = 99"), "{err}");
    }

    #[test]
    fn malformed_and_conflicting_cgroups() {
        let fx = Fixture::new(b"x");
        let a = fx.attestor(Settings::default(), Arc::new(NoProvenance));
        let cg = fx.root().join("proc").join(PID.to_string()).join("cgroup");
        std::fs::write(&cg, "nonsense\n").unwrap();
        let err = a.attest(pid()).unwrap_err();
        assert!(
            matches!(&err, AttestError::Malformed { path, .. } if path.ends_with("cgroup")),
            "{err}"
        );
        let other = "93529524695bb00d91c1f6dba692ea8d3550c3b94fb2463af7bc9ec82f992d26";
        std::fs::write(
            &cg,
            format!("4:memory:/docker/{CID}\n3:cpu:/docker/{other}\n"),
        )
        .unwrap();
        let err = a.attest(pid()).unwrap_err();
        assert!(
            matches!(
                &err,
                AttestError::CgroupConflict {
                    what: "container ID",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    }

    /// What a provenance source was asked: digest (hex), path, container ID.
    type Asked = (String, Option<String>, Option<String>);

    /// A provenance source that records what it was asked and answers fixed findings.
    struct Fixed {
        seen: std::sync::Mutex<Vec<Asked>>,
        answer: Findings,
    }

    impl ProvenanceSource for Fixed {
        fn describe(&self) -> String {
            "fixed".into()
        }
        fn provenance(&self, s: &Subject<'_>) -> Findings {
            self.seen.lock().unwrap().push((
                hex::encode(s.sha256),
                s.path.map(str::to_owned),
                s.container_id.map(str::to_owned),
            ));
            self.answer.clone()
        }
    }

    #[test]
    fn provenance_is_appended_but_cannot_claim_measured_kinds() {
        let fx = Fixture::new(b"prov");
        let source = Arc::new(Fixed {
            seen: std::sync::Mutex::new(Vec::new()),
            answer: Findings {
                selectors: vec![
                    "slsa:builder_id:https://builder.example/v1".into(),
                    "uid:0".into(),
                    "sha256:00".into(),
                ],
                skipped: vec!["sbom signed by an unknown key".into()],
                examined: Vec::new(),
            },
        });
        let a = fx.attestor(Settings::default(), source.clone());
        let got = a.attest(pid()).unwrap();
        assert_eq!(
            got.last().map(String::as_str),
            Some("slsa:builder_id:https://builder.example/v1")
        );
        assert!(!got.contains(&"uid:0".to_owned()));
        assert!(!got.contains(&"sha256:00".to_owned()));
        let seen = source.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, hex::encode(Sha256::digest(b"prov")));
        assert_eq!(seen[0].1.as_deref(), fx.root().join("app").to_str());
        assert_eq!(seen[0].2.as_deref(), Some(CID));
        drop(seen);
        // Without a digest there is nothing to look provenance up by.
        let no_digest = fx.attestor(
            Settings {
                discover_digest: false,
                ..Settings::default()
            },
            source.clone(),
        );
        let got = no_digest.attest(pid()).unwrap();
        assert!(!got.iter().any(|v| v.starts_with("slsa:")));
        assert_eq!(source.seen.lock().unwrap().len(), 1);
    }
}

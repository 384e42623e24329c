//! The directory attestation store: signed in-toto attestations filed under the executable's SHA-256.
//!
//! # Layout
//!
//! ```text
//! <store_dir>/sha256/<64 lower-case hex digits of the executable's SHA-256>/
//!     <anything>.json     one DSSE envelope (cosign attest-blob --output-attestation), or a Sigstore
//!                         bundle holding one (its `dsseEnvelope`)
//!     <anything>.jsonl    one DSSE envelope per line (slsa-github-generator's *.intoto.jsonl,
//!                         `cosign download attestation`)
//! ```
//!
//! Every file of the digest's directory is read (sorted by name; at most `max_attestations` envelopes,
//! each file at most `max_attestation_bytes`). An envelope counts when its `payloadType` is in-toto, a
//! signature verifies with a trusted key, its Statement names the executable's SHA-256 as a subject, and
//! its predicate is SLSA provenance (v1 or v0.2) or an SBOM (CycloneDX or SPDX). Everything else is
//! reported with a reason and contributes nothing. Selectors of all counted envelopes are pooled.
//!
//! # Hostile stores
//!
//! The digest's directory and its files must not be symbolic links: directories are checked with
//! `lstat`, files are opened with `O_NOFOLLOW | O_NONBLOCK` (a FIFO cannot stall the agent), must be
//! regular files, and the path the kernel opened (`/proc/self/fd/N`) must be exactly
//! `<store_dir>/sha256/<hex>/<name>` with `store_dir` canonicalized at Configure, so a symlink anywhere
//! in between is refused too. Sizes are checked with `fstat` before reading and reading stops at the limit.
//!
//! # Cost
//!
//! Findings are cached per digest with a fingerprint of the directory (its own identity and every
//! entry's name and `lstat` identity). A repeat costs two `lstat`s, one directory read and an `lstat` per
//! entry; any change to the directory or a file (new file, rewrite, touch) makes it read again. As for
//! the executable digest cache, a file system that rewrites content without changing size, mtime or ctime
//! would go unnoticed.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io::{self, Read as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use twi_plugin::ConfigError;

use super::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::keys::TrustedKey;
use super::sbom::{self, SbomFormat};
use super::slsa;
use super::statement::Statement;
use super::{json, Examined, Findings, ProvenanceSource, Subject, Verdict};
use crate::cache::Lru;
use crate::config::ProvenanceSettings;
use crate::digest::{FileIdentity, Sha256Digest};

/// Directory entries read from one digest's directory at most; the rest are not looked at.
pub const MAX_DIR_ENTRIES: usize = 1024;

/// Subjects named in a subject-mismatch message at most.
const SUBJECTS_SHOWN: usize = 3;

/// The media type prefix of Sigstore bundles.
const SIGSTORE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle";

/// What a directory looked like: its own identity and each entry's name and `lstat` identity.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    dir: FileIdentity,
    entries: Vec<(OsString, FileIdentity)>,
    truncated: bool,
}

#[derive(Debug)]
struct Cached {
    fingerprint: Fingerprint,
    findings: Findings,
}

/// A [`ProvenanceSource`] over a directory of DSSE envelopes, verified with configured P-256 keys.
#[derive(Debug)]
pub struct DsseStore {
    dir: PathBuf,
    keys: Vec<TrustedKey>,
    max_bytes: u64,
    max_attestations: usize,
    cache: Lru<Sha256Digest, Arc<Cached>>,
}

impl DsseStore {
    /// Opens the store `settings` describe: canonicalizes `store_dir` (which must be a directory) and
    /// loads every key. `cache_entries` digests' findings are cached.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] naming `provenance.store_dir` or
    /// `provenance.trusted_keys[i].public_key_path`.
    pub fn open(settings: &ProvenanceSettings, cache_entries: usize) -> Result<Self, ConfigError> {
        let invalid = |key: String, detail: String| ConfigError::InvalidValue { key, detail };
        let dir = fs::canonicalize(&settings.store_dir).map_err(|e| {
            invalid(
                "provenance.store_dir".into(),
                format!("{}: {e}", settings.store_dir.display()),
            )
        })?;
        if !dir.is_dir() {
            return Err(invalid(
                "provenance.store_dir".into(),
                format!("{} is not a directory", dir.display()),
            ));
        }
        let mut keys = Vec::with_capacity(settings.trusted_keys.len());
        for (i, k) in settings.trusted_keys.iter().enumerate() {
            let key = TrustedKey::load(
                &k.name,
                k.key_id.as_deref(),
                k.build_level,
                &k.public_key_path,
            )
            .map_err(|e| {
                invalid(
                    format!("provenance.trusted_keys[{i}].public_key_path"),
                    e.to_string(),
                )
            })?;
            keys.push(key);
        }
        Ok(Self::with_keys(
            dir,
            keys,
            settings.max_attestation_bytes,
            settings.max_attestations,
            cache_entries,
        ))
    }

    /// A store over `dir` (already canonical) with loaded keys.
    #[must_use]
    pub fn with_keys(
        dir: PathBuf,
        keys: Vec<TrustedKey>,
        max_bytes: u64,
        max_attestations: usize,
        cache_entries: usize,
    ) -> Self {
        Self {
            dir,
            keys,
            max_bytes,
            max_attestations,
            cache: Lru::new(cache_entries),
        }
    }

    /// The store's root.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory that holds attestations for `digest`.
    #[must_use]
    pub fn digest_dir(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join("sha256").join(hex::encode(digest))
    }

    /// How many digests' findings are cached.
    #[must_use]
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The findings for `digest`: from the cache if the directory is unchanged, else read and verified.
    #[must_use]
    pub fn lookup(&self, digest: &Sha256Digest) -> Findings {
        let sha_dir = self.dir.join("sha256");
        let digest_dir = self.digest_dir(digest);
        for d in [&sha_dir, &digest_dir] {
            match fs::symlink_metadata(d) {
                Ok(m) if m.file_type().is_symlink() => {
                    return rejected_only(
                        d,
                        "a symbolic link: refused (the store holds real directories)",
                    );
                }
                Ok(m) if !m.is_dir() => return rejected_only(d, "not a directory"),
                Ok(_) => {}
                // No directory: no provenance, which is not worth a warning.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Findings::default(),
                Err(e) => return rejected_only(d, &format!("cannot be read: {e}")),
            }
        }
        let fingerprint = match fingerprint(&digest_dir) {
            Ok(f) => f,
            Err(e) => return rejected_only(&digest_dir, &format!("cannot be listed: {e}")),
        };
        if let Some(hit) = self.cache.get(digest) {
            if hit.fingerprint == fingerprint {
                return hit.findings.clone();
            }
        }
        let findings = self.examine_dir(&digest_dir, &fingerprint, &hex::encode(digest));
        self.cache.insert(
            *digest,
            Arc::new(Cached {
                fingerprint,
                findings: findings.clone(),
            }),
        );
        findings
    }

    /// Reads and judges every entry of `digest_dir` in name order.
    fn examine_dir(&self, digest_dir: &Path, fp: &Fingerprint, digest_hex: &str) -> Findings {
        let mut examined: Vec<Examined> = Vec::new();
        let mut budget = self.max_attestations;
        for (name, _) in &fp.entries {
            let path = digest_dir.join(name);
            let origin = path.display().to_string();
            if budget == 0 {
                examined.push(Examined {
                    origin,
                    verdict: Verdict::Ignored {
                        reason: format!(
                            "not read: max_attestations = {} envelopes were read already",
                            self.max_attestations
                        ),
                    },
                });
                continue;
            }
            match self.read_entry(digest_dir, name) {
                Err(skip) => examined.push(Examined {
                    origin,
                    verdict: skip.into(),
                }),
                Ok((bytes, lines)) => {
                    // Lazily, so a file of many tiny lines costs no allocation per line it does not read.
                    let docs: Box<dyn Iterator<Item = (Option<usize>, &[u8])>> = if lines {
                        Box::new(
                            bytes
                                .split(|b| *b == b'\n')
                                .enumerate()
                                .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
                                .map(|(i, l)| (Some(i.saturating_add(1)), l)),
                        )
                    } else {
                        Box::new(std::iter::once((None, bytes.as_slice())))
                    };
                    let mut read_any = false;
                    let mut unread = 0usize;
                    for (line, doc) in docs {
                        if budget == 0 {
                            unread = unread.saturating_add(1);
                            continue;
                        }
                        budget = budget.saturating_sub(1);
                        read_any = true;
                        let verdict = self.judge(doc, digest_hex);
                        let doc_origin = match line {
                            Some(n) => format!("{origin}:{n}"),
                            None => origin.clone(),
                        };
                        examined.push(Examined {
                            origin: doc_origin,
                            verdict,
                        });
                    }
                    if unread > 0 {
                        examined.push(Examined {
                            origin: origin.clone(),
                            verdict: Verdict::Ignored {
                                reason: format!(
                                    "{unread} more envelope(s) not read: over max_attestations = {}",
                                    self.max_attestations
                                ),
                            },
                        });
                    }
                    // A file with no envelope still costs a read: it counts, so blank files cannot make
                    // the store read every entry of a large directory.
                    if !read_any && unread == 0 {
                        budget = budget.saturating_sub(1);
                        examined.push(Examined {
                            origin,
                            verdict: Verdict::Ignored {
                                reason: "no envelope in the file".to_owned(),
                            },
                        });
                    }
                }
            }
        }
        if fp.truncated {
            examined.push(Examined {
                origin: digest_dir.display().to_string(),
                verdict: Verdict::Ignored {
                    reason: format!("more than {MAX_DIR_ENTRIES} entries; the rest were not read"),
                },
            });
        }
        summarize(examined)
    }

    /// Opens and reads one entry, refusing symlinks, non-regular files, escapes and oversize files.
    /// `Ok((bytes, is_jsonl))`.
    fn read_entry(&self, digest_dir: &Path, name: &OsString) -> Result<(Vec<u8>, bool), Skip> {
        let rejected = Skip::Rejected;
        let ignored = Skip::Ignored;
        let Some(text_name) = name.to_str() else {
            return Err(ignored("file name is not UTF-8"));
        };
        if text_name.starts_with('.') {
            return Err(ignored("hidden file"));
        }
        let lines = if text_name.ends_with(".jsonl") {
            true
        } else if text_name.ends_with(".json") {
            false
        } else {
            return Err(ignored("not a .json or .jsonl file"));
        };
        let path = digest_dir.join(name);
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    rejected("a symbolic link: refused".into())
                } else {
                    rejected(format!("cannot be opened: {e}"))
                }
            })?;
        let meta = file
            .metadata()
            .map_err(|e| rejected(format!("fstat: {e}")))?;
        if !meta.is_file() {
            return Err(rejected(format!("not a regular file ({})", kind(&meta))));
        }
        if meta.len() > self.max_bytes {
            return Err(rejected(format!(
                "{} bytes, over max_attestation_bytes = {}",
                meta.len(),
                self.max_bytes
            )));
        }
        let opened = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(|e| rejected(format!("cannot check where the file is: {e}")))?;
        if opened != path {
            return Err(rejected(format!(
                "resolves to {}, not inside {}: refused",
                opened.display(),
                digest_dir.display()
            )));
        }
        let mut bytes = Vec::new();
        file.take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| rejected(format!("read: {e}")))?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > self.max_bytes {
            return Err(rejected(format!(
                "grew past max_attestation_bytes = {} while read",
                self.max_bytes
            )));
        }
        Ok((bytes, lines))
    }

    /// The verdict on one envelope's bytes for the executable `digest_hex`.
    fn judge(&self, doc: &[u8], digest_hex: &str) -> Verdict {
        let rejected = |reason: String| Verdict::Rejected { reason };
        let value = match json::parse(doc) {
            Ok(v) => v,
            Err(e) => return rejected(format!("not JSON: {e}")),
        };
        let (envelope_json, mut notes) = match unwrap_bundle(&value) {
            Ok(x) => x,
            Err(reason) => return rejected(reason),
        };
        let envelope = match Envelope::from_json(envelope_json) {
            Ok(e) => e,
            Err(e) => return rejected(e.to_string()),
        };
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Verdict::Ignored {
                reason: format!(
                    "payloadType {:?} is not {IN_TOTO_PAYLOAD_TYPE:?}",
                    envelope.payload_type
                ),
            };
        }
        let verified = match envelope.verify(&self.keys) {
            Ok(v) => v,
            Err(e) => return rejected(e.to_string()),
        };
        let statement = match Statement::from_envelope(&verified) {
            Ok(s) => s,
            Err(e) => return rejected(e.to_string()),
        };
        let Some(subject) = statement.subject_for(digest_hex) else {
            return rejected(format!(
                "subject mismatch: the statement is about {}, the executable is sha256:{digest_hex}",
                statement.describe_subjects(SUBJECTS_SHOWN)
            ));
        };
        let signers: Vec<String> = verified
            .signers()
            .iter()
            .map(|k| k.name().to_owned())
            .collect();
        let mut selectors: Vec<String> = signers
            .iter()
            .map(|s| format!("provenance:signer:{s}"))
            .collect();
        let mut sbom_facts = None;
        let predicate_type = statement.predicate_type.as_str();
        if predicate_type == slsa::SLSA_V1 || predicate_type == slsa::SLSA_V02 {
            let p = match slsa::read(predicate_type, &statement.predicate) {
                Ok(p) => p,
                Err(e) => return rejected(e.to_string()),
            };
            selectors.insert(0, "provenance:verified:true".into());
            selectors.push(format!("slsa:builder:{}", p.builder_id));
            selectors.push(format!("slsa:build_type:{}", p.build_type));
            if let Some(src) = &p.source {
                selectors.push(format!("slsa:source:{}", src.repository));
                if let Some(r) = &src.git_ref {
                    selectors.push(format!("slsa:source_ref:{r}"));
                }
                selectors.push(format!("slsa:commit:{}", src.commit));
            }
            notes.extend(p.source_note);
            let level = verified
                .signers()
                .iter()
                .filter_map(TrustedKey::build_level)
                .max();
            for l in 1..=level.unwrap_or(0) {
                selectors.push(format!("slsa:build_level:{l}"));
            }
        } else if let Some(format) = SbomFormat::of_predicate_type(predicate_type) {
            let s = match sbom::read(format, &statement.predicate) {
                Ok(s) => s,
                Err(e) => return rejected(e.to_string()),
            };
            selectors.push(format!("sbom:sha256:{}", s.sha256));
            selectors.push(format!("sbom:format:{}", s.format.as_str()));
            sbom_facts = Some(s);
        } else {
            return Verdict::Ignored {
                reason: format!(
                    "predicate type {predicate_type:?} is not SLSA provenance or an SBOM (signed by {})",
                    signers.join(", ")
                ),
            };
        }
        Verdict::Used {
            signers,
            predicate_type: statement.predicate_type.clone(),
            subject_name: subject.name.clone(),
            selectors,
            notes,
            sbom: sbom_facts,
        }
    }
}

impl ProvenanceSource for DsseStore {
    fn describe(&self) -> String {
        let names: Vec<&str> = self.keys.iter().map(TrustedKey::name).collect();
        format!(
            "dsse store {} (trusted keys: {})",
            self.dir.display(),
            names.join(", ")
        )
    }

    fn provenance(&self, subject: &Subject<'_>) -> Findings {
        self.lookup(subject.sha256)
    }
}

/// Why a directory entry was not read: the two non-`Used` verdicts, without `Used`'s weight.
#[derive(Debug)]
enum Skip {
    Rejected(String),
    Ignored(&'static str),
}

impl From<Skip> for Verdict {
    fn from(s: Skip) -> Self {
        match s {
            Skip::Rejected(reason) => Verdict::Rejected { reason },
            Skip::Ignored(reason) => Verdict::Ignored {
                reason: reason.to_owned(),
            },
        }
    }
}

/// The envelope inside a Sigstore bundle, or the value itself; with a note for bundles.
fn unwrap_bundle(value: &Value) -> Result<(&Value, Vec<String>), String> {
    let media_type = value.get("mediaType").and_then(Value::as_str);
    let is_bundle = media_type.is_some_and(|m| m.starts_with(SIGSTORE_BUNDLE));
    match (is_bundle, value.get("dsseEnvelope")) {
        (true, Some(env)) => Ok((
            env,
            vec![
                "Sigstore bundle: its DSSE envelope was verified with trusted_keys; its certificate \
                 and transparency-log entries were not checked"
                    .to_owned(),
            ],
        )),
        (true, None) => Err(
            "Sigstore bundle without a dsseEnvelope (a message signature is not an attestation)"
                .to_owned(),
        ),
        (false, _) => Ok((value, Vec::new())),
    }
}

/// The directory's identity and its first [`MAX_DIR_ENTRIES`] entries (by `lstat`), sorted by name.
fn fingerprint(dir: &Path) -> io::Result<Fingerprint> {
    let dir_id = FileIdentity::of(&fs::symlink_metadata(dir)?);
    let mut entries = Vec::new();
    let mut truncated = false;
    for entry in fs::read_dir(dir)? {
        if entries.len() >= MAX_DIR_ENTRIES {
            truncated = true;
            break;
        }
        let entry = entry?;
        // DirEntry::metadata does not follow symlinks.
        let meta = entry.metadata()?;
        entries.push((entry.file_name(), FileIdentity::of(&meta)));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Fingerprint {
        dir: dir_id,
        entries,
        truncated,
    })
}

/// Findings with one rejected "attestation": a problem with the store itself.
fn rejected_only(path: &Path, reason: &str) -> Findings {
    summarize(vec![Examined {
        origin: path.display().to_string(),
        verdict: Verdict::Rejected {
            reason: reason.to_owned(),
        },
    }])
}

/// Pools the selectors of every used attestation (first appearance order, no duplicates) and lists the
/// reasons of rejected ones.
fn summarize(examined: Vec<Examined>) -> Findings {
    let mut selectors: Vec<String> = Vec::new();
    let mut skipped = Vec::new();
    for e in &examined {
        match &e.verdict {
            Verdict::Used { selectors: s, .. } => {
                for v in s {
                    if !selectors.contains(v) {
                        selectors.push(v.clone());
                    }
                }
            }
            Verdict::Rejected { reason } => skipped.push(format!("{}: {reason}", e.origin)),
            Verdict::Ignored { .. } => {}
        }
    }
    Findings {
        selectors,
        skipped,
        examined,
    }
}

fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests;

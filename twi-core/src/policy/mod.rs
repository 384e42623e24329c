//! One appraisal policy for both TEEs: a versioned document (HCL or JSON) that names what SEV-SNP and
//! TDX evidence must satisfy and which selectors accepted evidence earns.
//!
//! * [`Policy::parse`] / [`Policy::load`] — the document, validated; every error names its key (and the
//!   file). Its `snp { }` and `tdx { }` sections use the server plugin's key spellings, so a block moves
//!   from `plugin_data` into a file without renaming. A TEE without a section is refused (fail closed).
//! * [`Policy::digest`] — SHA-256 of the canonical JSON ([`Policy::canonical_json`]): the same for
//!   every spelling of the same policy (HCL or JSON, comments, order, defaults written or omitted), and
//!   different for any change of what is appraised. [`Policy::policy_id`] names it in an EAR.
//! * [`Policy::snp_policy`] / [`Policy::tdx_policy`] — the existing appraisal types, so appraisal itself
//!   ([`crate::snp::appraise`], [`crate::tdx::appraise`]) is unchanged.
//! * [`Policy::selectors_for`] — `policy-match:<name>` selectors from the `selectors { match … }` rules.
//! * [`PolicyFile`] — a policy file re-read when it changes, so a policy change takes effect at the next
//!   attestation without a restart; a broken file refuses rather than keeping the old policy.
//!
//! Not here: trust anchors and collateral/certificate sources (they configure *verification* and stay in
//! the plugin's configuration), and any I/O besides [`Policy::load`] and [`PolicyFile`].

mod canonical;
mod document;
mod error;
mod file;
mod hcl;
mod selectors;

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::ear::PolicyId;
use crate::snp::SnpPolicy;
use crate::tdx::TdxPolicy;

pub use document::PolicyDocument;
pub use error::{PolicyError, Problem};
pub use file::{PolicyFile, PolicySource, Reload};
pub use selectors::{Appraised, SelectorRule, POLICY_MATCH_PREFIX, SIMULATED_PREFIX};

/// Largest policy document accepted, in bytes. A hand-written policy with a few hundred reference values
/// is tens of kilobytes; the cap keeps a wrong path (a device, a log) from being read whole.
pub const MAX_POLICY_LEN: usize = 1024 * 1024;

/// Deepest nesting of `{`/`[`/`(` accepted before parsing (the format needs 5: `selectors` → `match` →
/// rule → TEE → list). The HCL parser recurses per level; this keeps hostile input off the stack limit.
pub const MAX_NESTING: usize = 32;

/// The TEEs a policy has sections for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Tee {
    /// AMD SEV-SNP (`snp { }`).
    Snp,
    /// Intel TDX (`tdx { }`).
    Tdx,
}

impl Tee {
    /// The section name: `snp` or `tdx`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::Snp => "snp",
            Tee::Tdx => "tdx",
        }
    }
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two spellings of a policy document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    Hcl,
    Json,
}

impl Format {
    /// JSON when the first non-whitespace character is `{` (an HCL body cannot start with one), else HCL.
    pub fn sniff(text: &str) -> Format {
        if text.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Hcl
        }
    }

    /// By extension: `.json` → JSON, `.hcl` → HCL, anything else → `None` (then [`Format::sniff`]).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "hcl" => Some(Format::Hcl),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Hcl => "HCL",
            Format::Json => "JSON",
        })
    }
}

/// A validated appraisal policy. Immutable; a changed policy is a new `Policy` (see [`PolicyFile`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    id: String,
    version: String,
    snp: Option<SnpPolicy>,
    tdx: Option<TdxPolicy>,
    rules: Vec<SelectorRule>,
    canonical: String,
    digest: [u8; 32],
    policy_id: PolicyId,
}

/// Refuses input nested deeper than [`MAX_NESTING`], counting brackets everywhere (also inside strings:
/// this over-counts only for strings full of brackets, which no policy value is).
fn check_nesting(text: &str) -> Result<(), PolicyError> {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'{' | b'[' | b'(' => {
                depth = depth.saturating_add(1);
                if depth > MAX_NESTING {
                    return Err(PolicyError::TooDeep { max: MAX_NESTING });
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// serde_json's message without the ` at line L column C` it appends (the key path says where).
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    if e.line() > 0 {
        if let Some((msg, _)) = s.rsplit_once(" at line ") {
            return msg.to_owned();
        }
    }
    s
}

fn decode_json(text: &str) -> Result<PolicyDocument, PolicyError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let doc = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if matches!(
            inner.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        ) {
            PolicyError::Syntax {
                format: Format::Json,
                detail: inner.to_string(),
            }
        } else {
            document::classify(&e.path().to_string(), &json_message(inner))
        }
    })?;
    de.end().map_err(|e| PolicyError::Syntax {
        format: Format::Json,
        detail: e.to_string(),
    })?;
    Ok(doc)
}

fn decode_hcl(text: &str) -> Result<PolicyDocument, PolicyError> {
    let value = hcl::to_json(text)?;
    serde_path_to_error::deserialize(value)
        .map_err(|e| document::classify(&e.path().to_string(), &json_message(e.inner())))
}

impl Policy {
    /// Parses a policy document, choosing the format with [`Format::sniff`].
    ///
    /// # Errors
    /// [`PolicyError`] naming the key that is unknown, missing, duplicated or invalid (all invalid values
    /// at once), or the syntax error.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse_as(text, Format::sniff(text))
    }

    /// Parses a policy document in the given format.
    ///
    /// # Errors
    /// As [`Policy::parse`].
    pub fn parse_as(text: &str, format: Format) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_LEN {
            return Err(PolicyError::TooLarge {
                len: u64::try_from(text.len()).unwrap_or(u64::MAX),
                max: MAX_POLICY_LEN,
            });
        }
        check_nesting(text)?;
        let doc = match format {
            Format::Json => decode_json(text)?,
            Format::Hcl => decode_hcl(text)?,
        };
        Policy::from_document(&doc)
    }

    /// Parses UTF-8 bytes; the format comes from `hint` (e.g. the file extension) or is sniffed.
    ///
    /// # Errors
    /// As [`Policy::parse`], and [`PolicyError::NotUtf8`].
    pub fn from_bytes(bytes: &[u8], hint: Option<Format>) -> Result<Policy, PolicyError> {
        if bytes.len() > MAX_POLICY_LEN {
            return Err(PolicyError::TooLarge {
                len: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                max: MAX_POLICY_LEN,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| PolicyError::NotUtf8 {
            detail: e.to_string(),
        })?;
        Policy::parse_as(text, hint.unwrap_or_else(|| Format::sniff(text)))
    }

    /// Reads and parses a policy file: format by extension (`.json`, `.hcl`), else sniffed.
    ///
    /// # Errors
    /// [`PolicyError::InFile`] naming `path`, around an I/O error or any error of [`Policy::parse`].
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let bytes = file::read_capped(path)?;
        Policy::from_bytes(&bytes, Format::from_path(path)).map_err(|e| e.in_file(path))
    }

    /// Validates a decoded document (e.g. an inline `policy { … }` block of a plugin's configuration).
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] listing every bad value with its key.
    pub fn from_document(doc: &PolicyDocument) -> Result<Policy, PolicyError> {
        Policy::from_parts(document::validate(doc)?)
    }

    /// A policy from appraisal types built elsewhere (a plugin's legacy `snp`/`tdx` keys), without
    /// selector rules, so that it is named and digested by the same rule as a document: the same
    /// content as a document gives the same digest.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] when `id` or `version` is not a URI path segment.
    pub fn from_policies(
        id: &str,
        version: &str,
        snp: Option<SnpPolicy>,
        tdx: Option<TdxPolicy>,
    ) -> Result<Policy, PolicyError> {
        let mut problems = Vec::new();
        document::check_segment("id", id, &mut problems);
        document::check_segment("version", version, &mut problems);
        if !problems.is_empty() {
            return Err(PolicyError::Invalid { problems });
        }
        Policy::from_parts(document::Parts {
            id: id.to_owned(),
            version: version.to_owned(),
            snp,
            tdx,
            rules: Vec::new(),
        })
    }

    fn from_parts(parts: document::Parts) -> Result<Policy, PolicyError> {
        let canonical = canonical::to_string(&canonical::value(
            &parts.id,
            &parts.version,
            parts.snp.as_ref(),
            parts.tdx.as_ref(),
            &parts.rules,
        ));
        let digest: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
        // Cannot fail: id and version were checked with PolicyId's own rule.
        let policy_id = PolicyId::new(&parts.id, &parts.version, &hex::encode(digest))
            .map_err(|e| PolicyError::one("id", e.to_string()))?;
        Ok(Policy {
            id: parts.id,
            version: parts.version,
            snp: parts.snp,
            tdx: parts.tdx,
            rules: parts.rules,
            canonical,
            digest,
            policy_id,
        })
    }

    /// The policy's name (`id` in the document).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The operator's version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// SHA-256 of [`Policy::canonical_json`]: what an appraisal records so the exact policy can be
    /// found again (and pinned by a relying party), whatever its file looked like.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// [`Policy::digest`] in lower-case hex.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }

    /// The canonical JSON the digest is taken over (see the `canonical` module documentation); a
    /// valid policy document itself, so `sha256sum` of it reproduces the digest.
    pub fn canonical_json(&self) -> &str {
        &self.canonical
    }

    /// The EAR policy id: `tag:twi-spire.dev,2026:policy/<id>/<version>?sha256=<digest>`.
    pub fn policy_id(&self) -> PolicyId {
        self.policy_id.clone()
    }

    /// Whether the policy has a section for `tee` (without one, that TEE's evidence is refused).
    pub fn allows(&self, tee: Tee) -> bool {
        match tee {
            Tee::Snp => self.snp.is_some(),
            Tee::Tdx => self.tdx.is_some(),
        }
    }

    fn not_allowed(&self, tee: Tee) -> PolicyError {
        PolicyError::TeeNotAllowed {
            tee,
            policy_id: self.id.clone(),
            version: self.version.clone(),
        }
    }

    /// The SEV-SNP appraisal policy of the `snp` section.
    ///
    /// # Errors
    /// [`PolicyError::TeeNotAllowed`] when the document has no `snp` section.
    pub fn snp_policy(&self) -> Result<&SnpPolicy, PolicyError> {
        self.snp.as_ref().ok_or_else(|| self.not_allowed(Tee::Snp))
    }

    /// The TDX appraisal policy of the `tdx` section.
    ///
    /// # Errors
    /// [`PolicyError::TeeNotAllowed`] when the document has no `tdx` section.
    pub fn tdx_policy(&self) -> Result<&TdxPolicy, PolicyError> {
        self.tdx.as_ref().ok_or_else(|| self.not_allowed(Tee::Tdx))
    }

    /// The `selectors { match … }` rules, by name.
    pub fn selector_rules(&self) -> &[SelectorRule] {
        &self.rules
    }

    /// The `policy-match:<name>` selector values of the rules the appraised claims satisfy, in name
    /// order, each prefixed `simulated:` ([`SIMULATED_PREFIX`]) when the evidence chained to a simulated
    /// root. Call it only with an appraisal made under *this* policy.
    pub fn selectors_for<'a>(&self, appraised: impl Into<Appraised<'a>>) -> Vec<String> {
        selectors::selectors_for(&self.rules, appraised.into())
    }
}

impl std::str::FromStr for Policy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Policy, PolicyError> {
        Policy::parse(s)
    }
}

/// Fuzzing entry point: parses `data` as a policy in both formats and sniffed. An accepted policy must
/// re-parse from its canonical JSON to the same digest (a broken canonical form would let two policies
/// share a digest, or one policy have two); anything else must simply not panic.
#[doc(hidden)]
pub fn fuzz_parse_policy(data: &[u8]) {
    for hint in [Some(Format::Hcl), Some(Format::Json), None] {
        if let Ok(p) = Policy::from_bytes(data, hint) {
            match Policy::parse_as(p.canonical_json(), Format::Json) {
                Ok(again) => assert_eq!(again, p, "canonical JSON re-parses to another policy"),
                Err(e) => panic!("canonical JSON of an accepted policy does not parse: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const SEED_HCL: &str = r#"
id = "p"
version = "1"
snp {
  allow_debug = false
  minimum_tcb {
    bootloader = 3
    tee = 0
    snp = 8
    microcode = 115
    fmc = 1
  }
  allowed_measurements = ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
  allowed_vmpls = [0, 1]
}
tdx {
  allowed_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
  allowed_advisory_ids = ["INTEL-SA-00837"]
  xfam {
    value = "0x602e7"
    mask = 0
  }
}
selectors {
  match "w" {
    snp {
      measurement = ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
    }
  }
}
"#;

    /// A plugin embeds the document in its own HCL configuration (an inline `policy { … }` block,
    /// decoded by hcl-rs as `twi_plugin::from_hcl` does); the result is the same policy.
    #[test]
    fn inline_document_decoded_by_hcl_rs_is_the_same_policy() {
        let doc: PolicyDocument = ::hcl::from_str(SEED_HCL).unwrap();
        let inline = Policy::from_document(&doc).unwrap();
        assert_eq!(inline, Policy::parse(SEED_HCL).unwrap());
        // Unknown keys are refused on that path too.
        let bad = SEED_HCL.replace("allowed_vmpls", "allowed_vmpl");
        assert!(::hcl::from_str::<PolicyDocument>(&bad).is_err());
    }

    #[test]
    fn policies_built_elsewhere_digest_like_documents() {
        let doc =
            Policy::parse("id = \"legacy\"\nversion = \"1\"\nsnp {\n allow_migrate_ma = true\n}\n")
                .unwrap();
        let snp = SnpPolicy {
            allow_migrate_ma: true,
            ..SnpPolicy::default()
        };
        let built = Policy::from_policies("legacy", "1", Some(snp.clone()), None).unwrap();
        assert_eq!(built, doc);
        let with_tdx =
            Policy::from_policies("legacy", "1", Some(snp), Some(TdxPolicy::default())).unwrap();
        assert_ne!(with_tdx.digest(), doc.digest());
        assert!(Policy::from_policies("a b", "1", None, None).is_err());
    }

    #[test]
    fn format_by_extension_or_first_byte() {
        assert_eq!(Format::sniff(" \n\t{\"id\":1}"), Format::Json);
        assert_eq!(Format::sniff("# {\nid = 1"), Format::Hcl);
        assert_eq!(
            Format::from_path(Path::new("/a/b.JSON")),
            Some(Format::Json)
        );
        assert_eq!(Format::from_path(Path::new("b.hcl")), Some(Format::Hcl));
        assert_eq!(Format::from_path(Path::new("b.conf")), None);
        assert_eq!(Format::from_path(Path::new("policy")), None);
    }

    #[test]
    fn nesting_is_capped_before_parsing() {
        let deep = format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        check_nesting(&deep).unwrap();
        let deeper = format!(
            "{}{}",
            "[".repeat(MAX_NESTING + 1),
            "]".repeat(MAX_NESTING + 1)
        );
        assert!(matches!(
            check_nesting(&deeper),
            Err(PolicyError::TooDeep { .. })
        ));
        // Closing brackets never underflow into "deep".
        check_nesting(&"]".repeat(1000)).unwrap();
    }

    #[test]
    fn seed_round_trips() {
        let p = Policy::parse(SEED_HCL).unwrap();
        assert_eq!(Policy::parse(p.canonical_json()).unwrap(), p);
        assert_eq!(p.snp_policy().unwrap().minimum_tcb.unwrap().fmc, Some(1));
    }

    /// Not a fuzzer: truncations and byte flips of a full document (HCL and canonical JSON) through
    /// the fuzz entry point, so that `cargo test` catches crude panics and canonical-form breaks.
    #[test]
    fn fuzz_entry_survives_mutated_documents() {
        let json = Policy::parse(SEED_HCL).unwrap().canonical_json().to_owned();
        let seeds = [SEED_HCL.as_bytes().to_vec(), json.into_bytes()];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for seed in &seeds {
            for cut in (0..seed.len()).step_by(7) {
                fuzz_parse_policy(&seed[..cut]);
            }
            for _ in 0..400 {
                let mut m = seed.clone();
                for _ in 0..1 + next() % 3 {
                    let i = (next() as usize) % m.len();
                    m[i] = match next() % 4 {
                        0 => m[i] ^ (1 << (next() % 8)),
                        1 => {
                            let pick = b"{}[]\"=,0aA \n";
                            pick[(next() as usize) % pick.len()]
                        }
                        2 => b'0' + (next() % 10) as u8,
                        _ => b'f',
                    };
                }
                if Policy::from_bytes(&m, None).is_ok() {
                    accepted += 1;
                }
                fuzz_parse_policy(&m);
            }
        }
        // Some mutations (a hex digit changed) stay valid: the round trip was exercised.
        assert!(accepted > 10, "{accepted}");
    }
}

//! Intel TDX on the server: the `tdx { … }` block, its validated form (roots, a long-lived
//! [`TdxVerifier`], the collateral; its policy keys when no policy document is configured) and the
//! blocking verification of one quote.
//!
//! The verifier lives as long as the configuration, so its caches (verified collateral, PCK chains, QE
//! reports) make warm attestations cost one quote signature. The collateral is read from
//! `collateral_dir` at Configure and re-read when one of its files changes (size or modification time,
//! checked at every attestation — seven `stat`s) or when the verifier finds it stale; stale collateral
//! that nobody refreshed fails closed with `collateral-expired`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use twi_core::policy::Policy;
use twi_core::tdx::{
    appraise, check_report_data, Collateral, IntelRoots, Masked, Quote, TcbStatus, TdxPolicy,
    TdxVerifier, VerifiedTdx, COLLATERAL_FILES,
};

use super::config::{read_capped, Problems};
use super::selectors;
use super::{VerifiedEvidence, VerifyFailure};
use crate::wire;

/// The `tdx { … }` block. Without it the server refuses TDX evidence.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxConfig {
    /// Directory of Intel PCS collateral, files named as [`COLLATERAL_FILES`]. Required.
    #[serde(default)]
    pub collateral_dir: Option<PathBuf>,
    #[serde(default)]
    pub allow_debug: bool,
    /// Intel's spelling (`UpToDate`, `SWHardeningNeeded`, …). Default `["UpToDate"]`.
    #[serde(default)]
    pub allowed_tcb_statuses: Option<Vec<String>>,
    /// If set, every advisory of the platform's TCB level must be listed.
    #[serde(default)]
    pub allowed_advisory_ids: Option<Vec<String>>,
    /// Hex, 48 bytes each (also the RTMRs and the three config registers below).
    #[serde(default)]
    pub mrtd: Vec<String>,
    #[serde(default)]
    pub rtmr0: Vec<String>,
    #[serde(default)]
    pub rtmr1: Vec<String>,
    #[serde(default)]
    pub rtmr2: Vec<String>,
    #[serde(default)]
    pub rtmr3: Vec<String>,
    #[serde(default)]
    pub mrconfigid: Vec<String>,
    #[serde(default)]
    pub mrowner: Vec<String>,
    #[serde(default)]
    pub mrownerconfig: Vec<String>,
    /// `{ value, mask }`: XFAM under a mask.
    #[serde(default)]
    pub xfam: Option<MaskedHcl>,
    /// `{ value, mask }`: TD_ATTRIBUTES under a mask (DEBUG is `allow_debug`'s).
    #[serde(default)]
    pub td_attributes: Option<MaskedHcl>,
    /// Extra (real) Intel SGX root certificates, PEM or DER files.
    #[serde(default)]
    pub trusted_roots: Vec<PathBuf>,
    /// Do not trust Intel's built-in SGX Root CA.
    #[serde(default)]
    pub disable_intel_roots: bool,
    /// DANGER, test only: roots of the simulated TDX platform (`root.der` of a simulated root set).
    #[serde(default)]
    pub simulated_roots: Vec<PathBuf>,
}

/// `{ value = "0x…", mask = "0x…" }`; HCL has no hex literals, so strings (hex with `0x`, or decimal)
/// and plain numbers are both accepted.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedHcl {
    pub value: NumberOrString,
    pub mask: NumberOrString,
}

/// A u64 written as a number or a string.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum NumberOrString {
    Number(u64),
    String(String),
}

fn parse_u64(v: &NumberOrString) -> Result<u64, String> {
    match v {
        NumberOrString::Number(n) => Ok(*n),
        NumberOrString::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            }
            .map_err(|_| format!("`{s}` is not a 64-bit number (e.g. \"0x10000000\")"))
        }
    }
}

/// Modification time and size of each collateral file: what says "the files changed".
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(dir: &Path) -> Stamp {
    COLLATERAL_FILES
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// The collateral in use and the stamp of the files it was read from.
#[derive(Debug)]
pub(crate) struct CollateralState {
    dir: PathBuf,
    current: Mutex<(Arc<Collateral>, Stamp)>,
}

impl CollateralState {
    fn load(dir: &Path) -> Result<CollateralState, twi_core::Error> {
        let before = stamp(dir);
        let c = Collateral::from_dir(dir)?;
        Ok(CollateralState {
            dir: dir.to_path_buf(),
            current: Mutex::new((Arc::new(c), before)),
        })
    }

    /// The collateral to verify with now, re-read first if its files changed since it was read. A
    /// re-read that fails keeps the previous collateral (still verified and window-checked at every use)
    /// and is retried at the next attestation.
    pub(crate) fn get(&self) -> Arc<Collateral> {
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let now = stamp(&self.dir);
        if now != cur.1 {
            match Collateral::from_dir(&self.dir) {
                Ok(c) => {
                    tracing::info!(dir = %self.dir.display(), digest = %hex::encode(c.digest()), "TDX collateral re-read (files changed)");
                    *cur = (Arc::new(c), now);
                }
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "TDX collateral changed but cannot be read; keeping the previous one");
                }
            }
        }
        Arc::clone(&cur.0)
    }

    /// Re-reads the files unconditionally (the verifier found the collateral stale); `Some` only when
    /// the content differs from what is in use.
    pub(crate) fn reread(&self) -> Option<Arc<Collateral>> {
        let mut cur = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let now = stamp(&self.dir);
        match Collateral::from_dir(&self.dir) {
            Ok(c) if c.digest() != cur.0.digest() => {
                tracing::info!(dir = %self.dir.display(), digest = %hex::encode(c.digest()), "TDX collateral re-read (previous one stale)");
                *cur = (Arc::new(c), now);
                Some(Arc::clone(&cur.0))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "TDX collateral cannot be re-read");
                None
            }
        }
    }
}

/// The validated `tdx` block (its verification half: the policy is [`super::config::Configured`]'s).
#[derive(Debug)]
pub(crate) struct TdxConfigured {
    pub(crate) verifier: Arc<TdxVerifier>,
    pub(crate) collateral: CollateralState,
    /// SHA-256 (hex) of the TDX trust anchors (outside the policy digest), named in EARs beside the
    /// policy.
    pub(crate) anchors_digest: String,
    /// Files of the simulated roots with their fingerprints, for the start-up warning.
    pub(crate) simulated_roots: Vec<(PathBuf, String)>,
}

/// A root file's certificate as DER: PEM (`CERTIFICATE`) or DER as is.
fn root_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.starts_with(b"-----BEGIN") {
        let (label, der) = pkcs8::der::pem::decode_vec(bytes).map_err(|e| format!("PEM: {e}"))?;
        if label != "CERTIFICATE" {
            return Err(format!("PEM label {label:?}, want \"CERTIFICATE\""));
        }
        Ok(der)
    } else {
        Ok(bytes.to_vec())
    }
}

fn load_roots(
    key: &str,
    paths: &[PathBuf],
    simulated: bool,
    roots: &mut IntelRoots,
    problems: &mut Problems,
) -> Vec<(PathBuf, String)> {
    let mut loaded = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let der = match read_capped(path, twi_core::tdx::MAX_CERT_LEN).and_then(|b| root_der(&b)) {
            Ok(d) => d,
            Err(e) => {
                problems.add(key, format!("{}: {e}", path.display()));
                continue;
            }
        };
        match roots.add_root_der(&der, simulated) {
            Ok(()) => loaded.push((path.clone(), hex::encode(Sha256::digest(&der)))),
            Err(e) => problems.add(key, format!("{}: {e}", path.display())),
        }
    }
    loaded
}

fn parse_hex48(key: &str, values: &[String], problems: &mut Problems) -> Vec<[u8; 48]> {
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let key = format!("{key}[{i}]");
        match hex::decode(v.trim()) {
            Err(e) => problems.add(key, format!("{v:?} is not hex: {e}")),
            Ok(b) => match <[u8; 48]>::try_from(b.as_slice()) {
                Ok(a) => out.push(a),
                Err(_) => problems.add(key, format!("{} bytes, want 48 (96 hex digits)", b.len())),
            },
        }
    }
    out
}

fn parse_masked(key: &str, m: Option<&MaskedHcl>, problems: &mut Problems) -> Option<Masked> {
    let m = m?;
    let value = parse_u64(&m.value).map_err(|e| problems.add(format!("{key}.value"), e));
    let mask = parse_u64(&m.mask).map_err(|e| problems.add(format!("{key}.mask"), e));
    match (value, mask) {
        (Ok(value), Ok(mask)) => Some(Masked { value, mask }),
        _ => None,
    }
}

/// SHA-256 (hex) of the trust anchors (fingerprint and simulated flag of each, sorted).
fn anchors_digest(roots: &IntelRoots) -> String {
    let mut anchors = roots.describe();
    anchors.sort();
    let canonical = serde_json::json!({ "tee": "tdx", "roots": anchors });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The TDX policy of the block's policy keys (no policy document configured); every problem is added
/// to `problems`.
pub(crate) fn block_policy(t: &TdxConfig, problems: &mut Problems) -> TdxPolicy {
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
        match serde_json::from_value::<TcbStatus>(serde_json::Value::String(s.clone())) {
            Ok(st) => allowed_tcb_statuses.push(st),
            Err(_) => problems.add(
                format!("tdx.allowed_tcb_statuses[{i}]"),
                format!("{s:?} is not an Intel TCB status (UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked, TDRelaunchAdvised, TDRelaunchAdvisedConfigurationNeeded)"),
            ),
        }
    }
    TdxPolicy {
        allow_debug: t.allow_debug,
        allowed_tcb_statuses,
        allowed_advisory_ids: t.allowed_advisory_ids.clone(),
        mrtd: parse_hex48("tdx.mrtd", &t.mrtd, problems),
        rtmr: [
            parse_hex48("tdx.rtmr0", &t.rtmr0, problems),
            parse_hex48("tdx.rtmr1", &t.rtmr1, problems),
            parse_hex48("tdx.rtmr2", &t.rtmr2, problems),
            parse_hex48("tdx.rtmr3", &t.rtmr3, problems),
        ],
        mrconfigid: parse_hex48("tdx.mrconfigid", &t.mrconfigid, problems),
        mrowner: parse_hex48("tdx.mrowner", &t.mrowner, problems),
        mrownerconfig: parse_hex48("tdx.mrownerconfig", &t.mrownerconfig, problems),
        xfam: parse_masked("tdx.xfam", t.xfam.as_ref(), problems),
        td_attributes: parse_masked("tdx.td_attributes", t.td_attributes.as_ref(), problems),
    }
}

/// Validates the block's verification keys, loading its roots and collateral; every problem is added
/// to `problems`.
pub(crate) fn build(t: &TdxConfig, problems: &mut Problems) -> Option<TdxConfigured> {
    let mut roots = if t.disable_intel_roots {
        IntelRoots::intel().without_intel()
    } else {
        IntelRoots::intel()
    };
    let before = problems.len();
    load_roots(
        "tdx.trusted_roots",
        &t.trusted_roots,
        false,
        &mut roots,
        problems,
    );
    let simulated_roots = load_roots(
        "tdx.simulated_roots",
        &t.simulated_roots,
        true,
        &mut roots,
        problems,
    );
    if roots.is_empty() && problems.len() == before {
        problems.add(
            "tdx.disable_intel_roots",
            "no trust anchor left: set tdx.trusted_roots (or tdx.simulated_roots for tests)",
        );
    }

    let collateral = match &t.collateral_dir {
        None => {
            problems.add(
                "tdx.collateral_dir",
                "required: a directory with Intel PCS collateral (tcb_info.json, qe_identity.json, CRLs and issuer chains)",
            );
            None
        }
        Some(dir) => match CollateralState::load(dir) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.add("tdx.collateral_dir", format!("{}: {e}", dir.display()));
                None
            }
        },
    };
    let collateral = collateral?;
    Some(TdxConfigured {
        anchors_digest: anchors_digest(&roots),
        verifier: Arc::new(TdxVerifier::new(roots)),
        collateral,
        simulated_roots,
    })
}

/// A verified, bound and appraised TDX quote.
#[derive(Debug)]
pub(crate) struct AcceptedTdx {
    pub(crate) verified: VerifiedTdx,
    pub(crate) simulated: bool,
    pub(crate) mrtd: String,
    pub(crate) tcb_status: TcbStatus,
    pub(crate) selectors: Vec<String>,
}

/// The blocking part for TDX: parse, verify with the collateral (re-read once if stale), bind, appraise
/// under `policy` (the one taken for this attestation), map the policy's `policy-match` selectors. A
/// refusal after verification carries the verified quote, so its EAR can say what was appraised.
pub(crate) fn verify_tdx(
    tdx: &TdxConfigured,
    policy: &Policy,
    quote: &[u8],
    nonce: &[u8],
    instance_key_der: &[u8],
    now: i64,
) -> Result<AcceptedTdx, VerifyFailure> {
    let tdx_policy = policy.tdx_policy().map_err(|e| twi_core::Error::Internal {
        detail: format!("TDX evidence past the policy's TEE check: {e}"),
    })?;
    let quote = Quote::parse(quote)?;
    let collateral = tdx.collateral.get();
    let verified = match tdx.verifier.verify(&quote, &collateral, now) {
        Err(e) if e.category() == "collateral-expired" => match tdx.collateral.reread() {
            Some(fresh) => tdx.verifier.verify(&quote, &fresh, now),
            None => Err(e),
        },
        other => other,
    }?;
    let checked = check_report_data(&quote, &wire::report_data(nonce, instance_key_der))
        .and_then(|()| appraise(&verified, tdx_policy));
    match checked {
        Ok(appraisal) => {
            // The library prefixes `simulated:` itself; the plugin's own selectors already carry it.
            let mut selectors = selectors::tdx_selectors(&appraisal.claims);
            selectors.extend(policy.selectors_for(&appraisal));
            Ok(AcceptedTdx {
                simulated: verified.simulated(),
                mrtd: appraisal.claims.mrtd.clone(),
                tcb_status: verified.tcb_status(),
                selectors,
                verified,
            })
        }
        Err(error) => Err(VerifyFailure {
            error,
            verified: Some(VerifiedEvidence::Tdx(Box::new(verified))),
        }),
    }
}

/// The TDX agent ID's last segment: SHA-256 of the instance key's SubjectPublicKeyInfo DER, in hex.
///
/// TDX has no firmware-assigned per-TD identifier like SEV-SNP's REPORT_ID; the instance key, bound into
/// REPORTDATA and proven by the key proof, is the one thing unique to this TD instance that it can
/// prove. It is stable across re-attestations as long as the agent keeps the key (`instance_key_path`).
pub(crate) fn agent_id_segment(instance_key_der: &[u8]) -> String {
    hex::encode(Sha256::digest(instance_key_der))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn numbers_and_strings() {
        let n = |s: &str| parse_u64(&NumberOrString::String(s.into()));
        assert_eq!(n("0x10000000").unwrap(), 1 << 28);
        assert_eq!(n("0XFFFFFFFFFFFFFFFF").unwrap(), u64::MAX);
        assert_eq!(n("42").unwrap(), 42);
        assert!(n("0x1g").unwrap_err().contains("0x1g"));
        assert_eq!(parse_u64(&NumberOrString::Number(7)).unwrap(), 7);
    }

    #[test]
    fn pem_and_der_roots() {
        let der = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/vendor-roots/intel/IntelSGXRootCA.der"
        ))
        .unwrap();
        assert_eq!(root_der(&der).unwrap(), der);
        let pem =
            pkcs8::der::pem::encode_string("CERTIFICATE", pkcs8::LineEnding::LF, &der).unwrap();
        assert_eq!(root_der(pem.as_bytes()).unwrap(), der);
        let key =
            pkcs8::der::pem::encode_string("PRIVATE KEY", pkcs8::LineEnding::LF, &der).unwrap();
        assert!(root_der(key.as_bytes())
            .unwrap_err()
            .contains("PRIVATE KEY"));
    }

    #[test]
    fn agent_id_segment_is_the_key_digest() {
        let a = agent_id_segment(b"key-a");
        assert_eq!(a.len(), 64);
        assert_eq!(a, agent_id_segment(b"key-a"));
        assert_ne!(a, agent_id_segment(b"key-b"));
    }
}

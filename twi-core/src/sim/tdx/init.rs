//! Creating a simulated Intel root set on disk: root, PCK platform CA, TCB signing and PCK certificates,
//! the PCK and attestation keys, the collateral a verifier needs (TCB info, QE identity, CRLs, issuer
//! chains) in the file layout of `shared/testdata/tdx/*/collateral`, and `sim.json`.

use crate::sim::init::{create_private_dir, write_file};
use p256::ecdsa::SigningKey;
use pkcs8::{EncodePrivateKey, LineEnding};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

use super::certs::{self, PckPlatform, Window, PLATFORM_CA_CN, ROOT_CN};
use super::collateral::{self, CollateralFacts, QeFacts, QE_ATTRIBUTES};
use crate::sim::SimError;
use crate::tdx::TcbStatus;

/// The text written into `sim.json` so that anyone who finds the directory knows what it is.
pub const TDX_WARNING: &str = "SIMULATED INTEL TDX ROOT SET - NOT INTEL. These keys, certificates and collateral \
imitate Intel's formats so that simulated quotes run through the real verifier, but they prove nothing about any \
hardware: whoever has this directory can sign any quote. Trust root.der only in tests and development, and only \
as a root marked simulated. The *.key files are private keys: never commit or share them.";

/// Version of the `sim.json` format.
const FORMAT: u32 = 1;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
const YEAR: u64 = 365 * DAY;

/// Where the files of a simulated Intel root set live inside its directory. `init` writes them;
/// [`super::SimTdxDevice::open`] and callers that trust the simulated root or load the collateral read
/// them. The directory is the set's own: it must not be shared with a simulated SEV-SNP set (both have a
/// `sim.json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdxSimLayout {
    /// The directory holding the set (mode 0700 when `init` created it).
    pub dir: PathBuf,
    /// Simulated "Intel SGX Root CA" certificate; give it to `IntelRoots::add_root_der(.., simulated = true)`.
    pub root_der: PathBuf,
    pub root_pem: PathBuf,
    pub platform_ca_pem: PathBuf,
    pub tcb_signing_pem: PathBuf,
    pub pck_pem: PathBuf,
    /// PCK leaf, platform CA, root: what every quote carries as certification data type 5.
    pub pck_chain_pem: PathBuf,
    /// Private keys, PKCS#8 PEM, mode 0600. Nothing but `init` and the device should read them.
    pub root_key: PathBuf,
    pub platform_ca_key: PathBuf,
    pub tcb_signing_key: PathBuf,
    pub pck_key: PathBuf,
    /// The quoting enclave's attestation key, which signs quotes.
    pub attestation_key: PathBuf,
    /// The collateral directory, named as in `shared/testdata/tdx/*/collateral`.
    pub collateral_dir: PathBuf,
    pub tcb_info: PathBuf,
    pub tcb_info_issuer_chain: PathBuf,
    pub qe_identity: PathBuf,
    pub qe_identity_issuer_chain: PathBuf,
    pub pck_crl: PathBuf,
    pub pck_crl_issuer_chain: PathBuf,
    pub root_ca_crl: PathBuf,
    /// Platform facts and the warning; written last, so its presence marks a complete set.
    pub sim_json: PathBuf,
}

impl TdxSimLayout {
    /// The file names in `dir` (nothing is read or created).
    pub fn in_dir(dir: &Path) -> TdxSimLayout {
        let c = dir.join("collateral");
        TdxSimLayout {
            dir: dir.to_path_buf(),
            root_der: dir.join("root.der"),
            root_pem: dir.join("root.pem"),
            platform_ca_pem: dir.join("platform_ca.pem"),
            tcb_signing_pem: dir.join("tcb_signing.pem"),
            pck_pem: dir.join("pck.pem"),
            pck_chain_pem: dir.join("pck_chain.pem"),
            root_key: dir.join("root.key"),
            platform_ca_key: dir.join("platform_ca.key"),
            tcb_signing_key: dir.join("tcb_signing.key"),
            pck_key: dir.join("pck.key"),
            attestation_key: dir.join("attestation.key"),
            tcb_info: c.join("tcb_info.json"),
            tcb_info_issuer_chain: c.join("tcb_info_issuer_chain.pem"),
            qe_identity: c.join("qe_identity.json"),
            qe_identity_issuer_chain: c.join("qe_identity_issuer_chain.pem"),
            pck_crl: c.join("pck_crl.der"),
            pck_crl_issuer_chain: c.join("pck_crl_issuer_chain.pem"),
            root_ca_crl: c.join("root_ca_crl.der"),
            collateral_dir: c,
            sim_json: dir.join("sim.json"),
        }
    }

    fn files(&self) -> [(&'static str, &Path); 19] {
        [
            ("sim.json", &self.sim_json),
            ("root.der", &self.root_der),
            ("root.pem", &self.root_pem),
            ("platform_ca.pem", &self.platform_ca_pem),
            ("tcb_signing.pem", &self.tcb_signing_pem),
            ("pck.pem", &self.pck_pem),
            ("pck_chain.pem", &self.pck_chain_pem),
            ("root.key", &self.root_key),
            ("platform_ca.key", &self.platform_ca_key),
            ("tcb_signing.key", &self.tcb_signing_key),
            ("pck.key", &self.pck_key),
            ("attestation.key", &self.attestation_key),
            ("collateral/tcb_info.json", &self.tcb_info),
            (
                "collateral/tcb_info_issuer_chain.pem",
                &self.tcb_info_issuer_chain,
            ),
            ("collateral/qe_identity.json", &self.qe_identity),
            (
                "collateral/qe_identity_issuer_chain.pem",
                &self.qe_identity_issuer_chain,
            ),
            ("collateral/pck_crl.der", &self.pck_crl),
            (
                "collateral/pck_crl_issuer_chain.pem",
                &self.pck_crl_issuer_chain,
            ),
            ("collateral/root_ca_crl.der", &self.root_ca_crl),
        ]
    }
}

/// The platform's TCB: what the PCK certificate certifies and the TDX module reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformTcb {
    /// SGX TCB component SVNs (PCK certificate extension .2.1 to .2.16; also its CPUSVN).
    pub sgx_components: [u8; 16],
    /// PCE SVN (PCK certificate extension .2.17).
    pub pcesvn: u16,
    /// TEE_TCB_SVN of every TD report: byte 0 is the TDX module SVN, byte 1 its major version (which
    /// selects the `TDX_<nn>` module identity of the TCB info).
    pub tee_tcb_svn: [u8; 16],
}

impl Default for PlatformTcb {
    /// The TCB of the real platform in `shared/testdata/tdx/dq-b0c06f-v4`.
    fn default() -> PlatformTcb {
        PlatformTcb {
            sgx_components: [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
            pcesvn: 11,
            tee_tcb_svn: [6, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        }
    }
}

/// What to simulate. Build with [`TdxInitOptions::new`] and change fields as needed.
#[derive(Clone, Debug)]
pub struct TdxInitOptions {
    /// The current time in Unix seconds; every default window is counted from it.
    pub now_unix_secs: u64,
    /// FMSPC of the platform (PCK certificate and TCB info). Default `B0C06F000000`.
    pub fmspc: [u8; 6],
    pub tcb: PlatformTcb,
    /// Status the TCB info gives the level the platform matches: `UpToDate`, or e.g. `OutOfDate` for
    /// negative tests.
    pub tcb_status: TcbStatus,
    /// ISVSVN of the simulated TD quoting enclave (its QE identity level is `UpToDate`). Default 4.
    pub qe_isvsvn: u16,
    /// TCB info, QE identity and CRL issueDate / thisUpdate. `None`: an hour before `now_unix_secs`.
    pub collateral_issue_date: Option<u64>,
    /// TCB info, QE identity and CRL nextUpdate. `None`: 30 days after the issue date (Intel's cadence).
    /// Set it in the past to produce stale collateral.
    pub collateral_next_update: Option<u64>,
    pub tcb_evaluation_data_number: u32,
    /// PCK certificate validity start. `None`: an hour before `now_unix_secs`.
    pub pck_not_before: Option<u64>,
    /// PCK certificate validity end. `None`: seven years after `now_unix_secs` (as Intel's PCKs).
    pub pck_not_after: Option<u64>,
    /// List the PCK certificate's serial in the PCK CRL.
    pub revoke_pck: bool,
    /// Replace an existing root set in the directory.
    pub force: bool,
}

impl TdxInitOptions {
    /// FMSPC `B0C06F000000`, the TCB of [`PlatformTcb::default`] at `UpToDate`, collateral issued an hour
    /// ago for 30 days, a PCK valid for seven years, nothing revoked.
    pub fn new(now_unix_secs: u64) -> TdxInitOptions {
        TdxInitOptions {
            now_unix_secs,
            fmspc: [0xB0, 0xC0, 0x6F, 0x00, 0x00, 0x00],
            tcb: PlatformTcb::default(),
            tcb_status: TcbStatus::UpToDate,
            qe_isvsvn: 4,
            collateral_issue_date: None,
            collateral_next_update: None,
            tcb_evaluation_data_number: 17,
            pck_not_before: None,
            pck_not_after: None,
            revoke_pck: false,
            force: false,
        }
    }
}

/// PCE-ID of every Intel platform so far.
const PCE_ID: [u8; 2] = [0, 0];
/// The simulated TD QE's ISVPRODID, as Intel's TD QE.
const QE_ISVPRODID: u16 = 2;

/// MRSIGNER of the simulated TD quoting enclave: SHA-256 of a label, fixed so that its QE identity and
/// its reports agree across root sets (Intel's is the hash of Intel's enclave signing key).
pub(crate) fn sim_qe_mrsigner() -> [u8; 32] {
    Sha256::digest(b"twi-spire simulated TD QE signer - NOT INTEL").into()
}

/// MRENCLAVE of the simulated TD quoting enclave.
pub(crate) fn sim_qe_mrenclave() -> [u8; 32] {
    Sha256::digest(b"twi-spire simulated TD QE").into()
}

/// The contents of `sim.json`: what a device needs besides the keys, plus the warning.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TdxSimJson {
    pub(crate) warning: String,
    pub(crate) format: u32,
    pub(crate) tee: String,
    /// Hex, 6 bytes.
    pub(crate) fmspc: String,
    pub(crate) tcb: PlatformTcb,
    pub(crate) tcb_status: String,
    /// Hex: the quote header's user data starts with this 16-byte QE/platform ID.
    pub(crate) qe_id: String,
    pub(crate) qe_isvprodid: u16,
    pub(crate) qe_isvsvn: u16,
    /// Hex, 32 bytes each.
    pub(crate) qe_mrsigner: String,
    pub(crate) qe_mrenclave: String,
    /// Hex serial of the PCK certificate (what `revoke_pck` lists in the PCK CRL).
    pub(crate) pck_serial: String,
    pub(crate) pck_revoked: bool,
    pub(crate) pck_not_before: u64,
    pub(crate) pck_not_after: u64,
    pub(crate) collateral_issue_date: u64,
    pub(crate) collateral_next_update: u64,
}

/// Creates a simulated Intel root set and its collateral in `dir` (created if missing, mode 0700).
///
/// # Errors
/// [`SimError::AlreadyInitialized`] when a file of the set exists and `opts.force` is false;
/// [`SimError::InvalidOption`] for inconsistent options; I/O, key generation and encoding failures.
pub fn init(dir: &Path, opts: &TdxInitOptions) -> Result<TdxSimLayout, SimError> {
    let layout = TdxSimLayout::in_dir(dir);
    let plan = Plan::from_options(opts)?;
    if !opts.force {
        for (name, path) in layout.files() {
            if path.exists() {
                return Err(SimError::AlreadyInitialized {
                    dir: dir.to_path_buf(),
                    existing: name,
                });
            }
        }
    }
    create_private_dir(dir)?;
    create_private_dir(&layout.collateral_dir)?;

    let new_key = || SigningKey::random(&mut OsRng);
    let (root, platform_ca, tcb_signing, pck, attestation) =
        (new_key(), new_key(), new_key(), new_key(), new_key());

    let random16 = || {
        let mut b = [0u8; 16];
        OsRng.fill_bytes(&mut b);
        b
    };
    let platform = PckPlatform {
        ppid: random16(),
        sgx_components: opts.tcb.sgx_components,
        pcesvn: opts.tcb.pcesvn,
        cpusvn: opts.tcb.sgx_components,
        pce_id: PCE_ID,
        fmspc: opts.fmspc,
        platform_instance_id: random16(),
    };
    let qe_id = random16();
    let mut pck_serial = [0u8; 20];
    OsRng.fill_bytes(&mut pck_serial);
    if let Some(first) = pck_serial.first_mut() {
        *first = (*first & 0x7f) | 0x01; // positive, exactly 20 bytes
    }

    let root_der = certs::root_cert(&root, plan.ca_window)?;
    let platform_ca_der =
        certs::platform_ca_cert(platform_ca.verifying_key(), &root, plan.ca_window)?;
    let tcb_signing_der =
        certs::tcb_signing_cert(tcb_signing.verifying_key(), &root, plan.ca_window)?;
    let pck_der = certs::pck_cert(
        pck.verifying_key(),
        &platform_ca,
        &platform,
        &pck_serial,
        plan.pck_window,
    )?;
    let revoked: Vec<&[u8]> = if opts.revoke_pck {
        vec![&pck_serial]
    } else {
        Vec::new()
    };
    let pck_crl = certs::crl(
        &platform_ca,
        PLATFORM_CA_CN,
        &revoked,
        plan.collateral_window,
        "PCK CRL",
    )?;
    let root_ca_crl = certs::crl(&root, ROOT_CN, &[], plan.collateral_window, "root CA CRL")?;

    let facts = CollateralFacts {
        fmspc: opts.fmspc,
        pce_id: PCE_ID,
        sgx_components: opts.tcb.sgx_components,
        pcesvn: opts.tcb.pcesvn,
        tee_tcb_svn: opts.tcb.tee_tcb_svn,
        status: opts.tcb_status,
        issue_date: plan.collateral_window.not_before,
        next_update: plan.collateral_window.not_after,
        tcb_evaluation_data_number: opts.tcb_evaluation_data_number,
        seam_mrsigner: [0; 48],
        qe: QeFacts {
            mrsigner: sim_qe_mrsigner(),
            isvprodid: QE_ISVPRODID,
            isvsvn: opts.qe_isvsvn,
            miscselect: 0,
            attributes: QE_ATTRIBUTES,
        },
    };
    let tcb_info = collateral::tcb_info_json(&facts, &tcb_signing)?;
    let qe_identity = collateral::qe_identity_json(&facts, &tcb_signing)?;

    let pem = |der: &[u8]| {
        der::pem::encode_string("CERTIFICATE", LineEnding::LF, der).map_err(|e| SimError::Encode {
            what: "certificate PEM",
            detail: e.to_string(),
        })
    };
    let root_pem = pem(&root_der)?;
    let platform_ca_pem = pem(&platform_ca_der)?;
    let tcb_signing_pem = pem(&tcb_signing_der)?;
    let pck_pem = pem(&pck_der)?;
    // Issuer chains as PCS response headers give them: signer first, then the root.
    let tcb_chain = format!("{tcb_signing_pem}{root_pem}");
    let pck_crl_chain = format!("{platform_ca_pem}{root_pem}");
    let pck_chain = format!("{pck_pem}{platform_ca_pem}{root_pem}");

    let json = TdxSimJson {
        warning: TDX_WARNING.to_string(),
        format: FORMAT,
        tee: "tdx".into(),
        fmspc: hex::encode_upper(opts.fmspc),
        tcb: opts.tcb,
        tcb_status: opts.tcb_status.as_str().into(),
        qe_id: hex::encode(qe_id),
        qe_isvprodid: QE_ISVPRODID,
        qe_isvsvn: opts.qe_isvsvn,
        qe_mrsigner: hex::encode(facts.qe.mrsigner),
        qe_mrenclave: hex::encode(sim_qe_mrenclave()),
        pck_serial: hex::encode(pck_serial),
        pck_revoked: opts.revoke_pck,
        pck_not_before: plan.pck_window.not_before,
        pck_not_after: plan.pck_window.not_after,
        collateral_issue_date: plan.collateral_window.not_before,
        collateral_next_update: plan.collateral_window.not_after,
    };
    let json = serde_json::to_string_pretty(&json).map_err(|e| SimError::Encode {
        what: "sim.json",
        detail: e.to_string(),
    })?;

    // Keys first, sim.json last: a set is complete only once sim.json is there.
    for (path, key, what) in [
        (&layout.root_key, &root, "root private key"),
        (
            &layout.platform_ca_key,
            &platform_ca,
            "platform CA private key",
        ),
        (
            &layout.tcb_signing_key,
            &tcb_signing,
            "TCB signing private key",
        ),
        (&layout.pck_key, &pck, "PCK private key"),
        (
            &layout.attestation_key,
            &attestation,
            "attestation private key",
        ),
    ] {
        write_key(path, key, what)?;
    }
    write_file(&layout.root_der, &root_der, false)?;
    write_file(&layout.root_pem, root_pem.as_bytes(), false)?;
    write_file(&layout.platform_ca_pem, platform_ca_pem.as_bytes(), false)?;
    write_file(&layout.tcb_signing_pem, tcb_signing_pem.as_bytes(), false)?;
    write_file(&layout.pck_pem, pck_pem.as_bytes(), false)?;
    write_file(&layout.pck_chain_pem, pck_chain.as_bytes(), false)?;
    write_file(&layout.tcb_info, tcb_info.as_bytes(), false)?;
    write_file(&layout.tcb_info_issuer_chain, tcb_chain.as_bytes(), false)?;
    write_file(&layout.qe_identity, qe_identity.as_bytes(), false)?;
    write_file(
        &layout.qe_identity_issuer_chain,
        tcb_chain.as_bytes(),
        false,
    )?;
    write_file(&layout.pck_crl, &pck_crl, false)?;
    write_file(
        &layout.pck_crl_issuer_chain,
        pck_crl_chain.as_bytes(),
        false,
    )?;
    write_file(&layout.root_ca_crl, &root_ca_crl, false)?;
    write_file(&layout.sim_json, format!("{json}\n").as_bytes(), false)?;
    Ok(layout)
}

/// Writes a P-256 key as PKCS#8 PEM, mode 0600. The PEM buffer is zeroised on drop; the encoder's error
/// never contains the key, and only its message is kept anyway.
fn write_key(path: &Path, key: &SigningKey, what: &'static str) -> Result<(), SimError> {
    let pem = p256::SecretKey::from(key)
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| SimError::Encode {
            what,
            detail: e.to_string(),
        })?;
    write_file(path, pem.as_bytes(), true)
}

/// Options checked and defaults filled in.
struct Plan {
    ca_window: Window,
    pck_window: Window,
    collateral_window: Window,
}

impl Plan {
    fn from_options(opts: &TdxInitOptions) -> Result<Plan, SimError> {
        let invalid =
            |option: &'static str, detail: String| SimError::InvalidOption { option, detail };
        let now = opts.now_unix_secs;
        let pck_window = Window {
            not_before: opts.pck_not_before.unwrap_or(now.saturating_sub(HOUR)),
            not_after: opts.pck_not_after.unwrap_or(now.saturating_add(7 * YEAR)),
        };
        if pck_window.not_before >= pck_window.not_after {
            return Err(invalid(
                "pck_not_after",
                format!(
                    "{} is not after pck_not_before {}",
                    pck_window.not_after, pck_window.not_before
                ),
            ));
        }
        let issue = opts
            .collateral_issue_date
            .unwrap_or(now.saturating_sub(HOUR));
        let collateral_window = Window {
            not_before: issue,
            not_after: opts
                .collateral_next_update
                .unwrap_or(issue.saturating_add(30 * DAY)),
        };
        if collateral_window.not_before >= collateral_window.not_after {
            return Err(invalid(
                "collateral_next_update",
                format!(
                    "{} is not after the issue date {}",
                    collateral_window.not_after, collateral_window.not_before
                ),
            ));
        }
        // Root, platform CA and TCB signing certificates outlive everything they sign, as Intel's do, and
        // also cover windows set by hand (stale collateral must fail on its dates, not on a certificate).
        let ca_window = Window {
            not_before: pck_window
                .not_before
                .min(collateral_window.not_before)
                .min(now.saturating_sub(HOUR)),
            not_after: pck_window
                .not_after
                .max(collateral_window.not_after)
                .max(now.saturating_add(25 * YEAR)),
        };
        Ok(Plan {
            ca_window,
            pck_window,
            collateral_window,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn plan_rejects_empty_windows() {
        let now = 1_750_000_000;
        let mut o = TdxInitOptions::new(now);
        o.pck_not_before = Some(now);
        o.pck_not_after = Some(now);
        assert!(matches!(
            Plan::from_options(&o),
            Err(SimError::InvalidOption {
                option: "pck_not_after",
                ..
            })
        ));
        let mut o = TdxInitOptions::new(now);
        o.collateral_issue_date = Some(now);
        o.collateral_next_update = Some(now - 1);
        assert!(matches!(
            Plan::from_options(&o),
            Err(SimError::InvalidOption {
                option: "collateral_next_update",
                ..
            })
        ));
    }

    #[test]
    fn ca_window_covers_stale_collateral_and_pck() {
        let now = 1_750_000_000;
        let mut o = TdxInitOptions::new(now);
        o.collateral_issue_date = Some(now - 3 * YEAR);
        o.collateral_next_update = Some(now - 2 * YEAR);
        let p = Plan::from_options(&o).unwrap();
        assert_eq!(p.collateral_window.not_after, now - 2 * YEAR);
        assert!(p.ca_window.not_before <= now - 3 * YEAR);
        assert!(p.ca_window.not_after >= p.pck_window.not_after);
        assert_eq!(
            p.pck_window,
            Window {
                not_before: now - HOUR,
                not_after: now + 7 * YEAR
            }
        );
        let d = Plan::from_options(&TdxInitOptions::new(now)).unwrap();
        assert_eq!(
            d.collateral_window,
            Window {
                not_before: now - HOUR,
                not_after: now - HOUR + 30 * DAY
            }
        );
    }
}

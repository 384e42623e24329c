//! Creating a simulated root set: ARK, ASK and VCEK keys and certificates plus `sim.json`, on disk.

use pkcs8::{EncodePrivateKey, LineEnding};
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::RsaPrivateKey;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::certs::{self, cert_product_name, Window};
use super::SimError;
use crate::snp::layout::CHIP_ID_LEN;
use crate::snp::{Product, TcbParts};

/// The text written into `sim.json` so that anyone who finds the directory knows what it is.
pub const WARNING: &str = "SIMULATED AMD SEV-SNP ROOT SET - NOT AMD. These keys and certificates imitate AMD's \
formats so that simulated evidence runs through the real verifier, but they prove nothing about any hardware: \
whoever has this directory can sign any report. Trust ark.pem only in tests and development, and only as a \
root marked simulated. ark.key, ask.key and vcek.key are private keys: never commit or share them.";

/// Version of the `sim.json` format.
const FORMAT: u32 = 1;

const HOUR: u64 = 3600;
const YEAR: u64 = 365 * 24 * HOUR;

/// Where the files of a root set live inside its directory; `init` writes them, `SimSnpDevice::open`
/// and callers that need the simulated ARK (to trust it) read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimLayout {
    /// The directory holding the set (mode 0700 when `init` created it).
    pub dir: PathBuf,
    /// Simulated ARK certificate; give it to `TrustAnchors::add_root_pem(.., simulated = true)`.
    pub ark_pem: PathBuf,
    pub ask_pem: PathBuf,
    pub vcek_der: PathBuf,
    pub vcek_pem: PathBuf,
    /// Private keys, PKCS#8 PEM, mode 0600. Nothing but `init` and the device should read them.
    pub ark_key: PathBuf,
    pub ask_key: PathBuf,
    pub vcek_key: PathBuf,
    /// Product, CHIP_ID, TCB and the warning; written last, so its presence marks a complete set.
    pub sim_json: PathBuf,
}

impl SimLayout {
    /// The file names in `dir` (nothing is read or created).
    pub fn in_dir(dir: &Path) -> SimLayout {
        SimLayout {
            dir: dir.to_path_buf(),
            ark_pem: dir.join("ark.pem"),
            ask_pem: dir.join("ask.pem"),
            vcek_der: dir.join("vcek.der"),
            vcek_pem: dir.join("vcek.pem"),
            ark_key: dir.join("ark.key"),
            ask_key: dir.join("ask.key"),
            vcek_key: dir.join("vcek.key"),
            sim_json: dir.join("sim.json"),
        }
    }

    fn files(&self) -> [(&'static str, &Path); 8] {
        [
            ("sim.json", &self.sim_json),
            ("ark.pem", &self.ark_pem),
            ("ask.pem", &self.ask_pem),
            ("vcek.der", &self.vcek_der),
            ("vcek.pem", &self.vcek_pem),
            ("ark.key", &self.ark_key),
            ("ask.key", &self.ask_key),
            ("vcek.key", &self.vcek_key),
        ]
    }
}

/// What to simulate. Build with [`InitOptions::new`] and change fields as needed.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Product line: selects names, TCB layout, CPUID values and the VCEK extension set.
    pub product: Product,
    /// The platform's TCB, reported in every report and written into the VCEK.
    /// `None`: [`InitOptions::default_tcb`]. Turin needs `fmc` (taken as 0 when absent); other products
    /// must not set it.
    pub tcb: Option<TcbParts>,
    /// CHIP_ID. `None`: random (Turin: 8 random bytes then zeros, as Turin reports carry it).
    pub chip_id: Option<[u8; CHIP_ID_LEN]>,
    /// The current time in Unix seconds; the defaults of the validity windows are counted from it.
    pub now_unix_secs: u64,
    /// VCEK validity start. `None`: one hour before `now_unix_secs`.
    pub vcek_not_before: Option<u64>,
    /// VCEK validity end. `None`: seven years after `now_unix_secs` (AMD's VCEK lifetime). Set it in
    /// the past to produce an expired VCEK.
    pub vcek_not_after: Option<u64>,
    /// RSA modulus size of ARK and ASK: 4096 as AMD; 2048 and 3072 are accepted only to make tests faster.
    pub rsa_bits: usize,
    /// Replace an existing root set in the directory.
    pub force: bool,
}

impl InitOptions {
    /// Milan, default TCB, random chip, VCEK valid from an hour ago for seven years, RSA-4096.
    pub fn new(now_unix_secs: u64) -> InitOptions {
        InitOptions {
            product: Product::Milan,
            tcb: None,
            chip_id: None,
            now_unix_secs,
            vcek_not_before: None,
            vcek_not_after: None,
            rsa_bits: 4096,
            force: false,
        }
    }

    /// A plausible current TCB for the product (Turin: also an FMC level).
    pub fn default_tcb(product: Product) -> TcbParts {
        match product {
            Product::Turin => TcbParts {
                fmc: Some(1),
                bootloader: 1,
                tee: 0,
                snp: 3,
                microcode: 72,
            },
            Product::Milan | Product::Genoa => TcbParts {
                fmc: None,
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115,
            },
        }
    }
}

/// The contents of `sim.json`: what a device needs besides the keys, plus the warning.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SimJson {
    pub(crate) warning: String,
    pub(crate) format: u32,
    /// `Milan`, `Genoa` or `Turin`.
    pub(crate) product: String,
    /// What the VCEK's productName extension says.
    pub(crate) cert_product_name: String,
    /// Hex, 64 bytes.
    pub(crate) chip_id: String,
    pub(crate) tcb: TcbJson,
    /// The TCB_VERSION as it appears in reports, hex.
    pub(crate) tcb_raw: String,
    pub(crate) vcek_not_before: u64,
    pub(crate) vcek_not_after: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct TcbJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fmc: Option<u8>,
    pub(crate) bootloader: u8,
    pub(crate) tee: u8,
    pub(crate) snp: u8,
    pub(crate) microcode: u8,
}

impl From<TcbParts> for TcbJson {
    fn from(t: TcbParts) -> TcbJson {
        TcbJson {
            fmc: t.fmc,
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
        }
    }
}

impl From<TcbJson> for TcbParts {
    fn from(t: TcbJson) -> TcbParts {
        TcbParts {
            fmc: t.fmc,
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
        }
    }
}

/// Creates a simulated root set in `dir` (created if missing, mode 0700): a self-signed ARK, an ASK and
/// a VCEK in AMD's formats, their private keys (PKCS#8 PEM, mode 0600) and `sim.json`.
///
/// RSA key generation dominates: two RSA-4096 keys, generated in parallel.
///
/// # Errors
/// [`SimError::AlreadyInitialized`] when a root set file exists and `opts.force` is false;
/// [`SimError::InvalidOption`] for inconsistent options; I/O, key generation and encoding failures.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<SimLayout, SimError> {
    let layout = SimLayout::in_dir(dir);
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

    let (ark, ask) = generate_rsa_pair(opts.rsa_bits)?;
    let vcek = p384::SecretKey::random(&mut OsRng);

    let ark_der = certs::ark_cert(&ark, plan.product, plan.ca_window)?;
    let ask_der = certs::ask_cert(&ask, &ark, plan.product, plan.ca_window)?;
    let vcek_der = certs::vcek_cert(
        &vcek.public_key(),
        &ask,
        plan.product,
        &plan.tcb,
        &plan.chip_id,
        plan.vcek_window,
    )?;

    let pem = |der: &[u8]| {
        der::pem::encode_string("CERTIFICATE", LineEnding::LF, der).map_err(|e| SimError::Encode {
            what: "certificate PEM",
            detail: e.to_string(),
        })
    };
    // The error of a PKCS#8 encoder never contains the key; keep only its message anyway.
    let key_err = |key: &'static str| {
        move |e: pkcs8::Error| SimError::Encode {
            what: key,
            detail: e.to_string(),
        }
    };
    let ark_key = ark
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(key_err("ARK private key"))?;
    let ask_key = ask
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(key_err("ASK private key"))?;
    let vcek_key = vcek
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(key_err("VCEK private key"))?;

    let json = SimJson {
        warning: WARNING.to_string(),
        format: FORMAT,
        product: plan.product.kds_name().to_string(),
        cert_product_name: cert_product_name(plan.product).to_string(),
        chip_id: hex::encode(plan.chip_id),
        tcb: plan.tcb.into(),
        tcb_raw: format!("{:#018x}", plan.tcb.encode(plan.product)),
        vcek_not_before: plan.vcek_window.not_before,
        vcek_not_after: plan.vcek_window.not_after,
    };
    let json = serde_json::to_string_pretty(&json).map_err(|e| SimError::Encode {
        what: "sim.json",
        detail: e.to_string(),
    })?;

    // Keys first, sim.json last: a set is complete only once sim.json is there.
    write_file(&layout.ark_key, ark_key.as_bytes(), true)?;
    write_file(&layout.ask_key, ask_key.as_bytes(), true)?;
    write_file(&layout.vcek_key, vcek_key.as_bytes(), true)?;
    write_file(&layout.ark_pem, pem(&ark_der)?.as_bytes(), false)?;
    write_file(&layout.ask_pem, pem(&ask_der)?.as_bytes(), false)?;
    write_file(&layout.vcek_pem, pem(&vcek_der)?.as_bytes(), false)?;
    write_file(&layout.vcek_der, &vcek_der, false)?;
    write_file(&layout.sim_json, format!("{json}\n").as_bytes(), false)?;
    Ok(layout)
}

/// Options checked and defaults filled in.
struct Plan {
    product: Product,
    tcb: TcbParts,
    chip_id: [u8; CHIP_ID_LEN],
    ca_window: Window,
    vcek_window: Window,
}

impl Plan {
    fn from_options(opts: &InitOptions) -> Result<Plan, SimError> {
        let invalid =
            |option: &'static str, detail: String| SimError::InvalidOption { option, detail };
        if !matches!(opts.rsa_bits, 2048 | 3072 | 4096) {
            return Err(invalid(
                "rsa_bits",
                format!("got {}, want 4096 (2048 or 3072 for tests)", opts.rsa_bits),
            ));
        }
        let product = opts.product;
        let mut tcb = opts
            .tcb
            .unwrap_or_else(|| InitOptions::default_tcb(product));
        match product {
            Product::Turin => tcb.fmc = Some(tcb.fmc.unwrap_or(0)),
            Product::Milan | Product::Genoa => {
                if let Some(fmc) = tcb.fmc {
                    return Err(invalid(
                        "tcb.fmc",
                        format!("got {fmc}, but {product} has no FMC SPL"),
                    ));
                }
            }
        }
        let hwid_len = product.hwid_len();
        let chip_id = match opts.chip_id {
            Some(id) => {
                if id.iter().skip(hwid_len).any(|&b| b != 0) {
                    return Err(invalid(
                        "chip_id",
                        format!("{product} chips report only {hwid_len} CHIP_ID bytes; the rest must be zero"),
                    ));
                }
                id
            }
            None => {
                let mut id = [0u8; CHIP_ID_LEN];
                if let Some(head) = id.get_mut(..hwid_len) {
                    OsRng.fill_bytes(head);
                }
                id
            }
        };
        let now = opts.now_unix_secs;
        let vcek_window = Window {
            not_before: opts.vcek_not_before.unwrap_or(now.saturating_sub(HOUR)),
            not_after: opts.vcek_not_after.unwrap_or(now.saturating_add(7 * YEAR)),
        };
        if vcek_window.not_before >= vcek_window.not_after {
            return Err(invalid(
                "vcek_not_after",
                format!(
                    "{} is not after vcek_not_before {}",
                    vcek_window.not_after, vcek_window.not_before
                ),
            ));
        }
        // ARK and ASK outlive the VCEK as AMD's do (25 years), and also cover a VCEK window set by hand.
        let ca_window = Window {
            not_before: vcek_window.not_before.min(now.saturating_sub(HOUR)),
            not_after: vcek_window.not_after.max(now.saturating_add(25 * YEAR)),
        };
        Ok(Plan {
            product,
            tcb,
            chip_id,
            ca_window,
            vcek_window,
        })
    }
}

/// ARK and ASK keys, generated on two threads (RSA-4096 generation takes seconds each).
fn generate_rsa_pair(bits: usize) -> Result<(RsaPrivateKey, RsaPrivateKey), SimError> {
    let gen = |key: &'static str| {
        RsaPrivateKey::new(&mut OsRng, bits).map_err(|e| SimError::KeyGen {
            key,
            detail: e.to_string(),
        })
    };
    std::thread::scope(|s| {
        let ask = s.spawn(|| gen("ASK"));
        let ark = gen("ARK")?;
        let ask = ask.join().map_err(|_| SimError::KeyGen {
            key: "ASK",
            detail: "key generation thread panicked".into(),
        })??;
        Ok((ark, ask))
    })
}

pub(super) fn create_private_dir(dir: &Path) -> Result<(), SimError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| SimError::Io {
        op: "create directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a whole file, replacing any old one; `secret` files are created with mode 0600 (the old file
/// is removed first so that its permissions are not inherited).
pub(super) fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), SimError> {
    let io = |op: &'static str| {
        move |source| SimError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("remove")(e)),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(io("create"))?;
    file.write_all(contents).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn plan_rejects_inconsistent_options() {
        let now = 1_750_000_000;
        let mut o = InitOptions::new(now);
        o.rsa_bits = 1024;
        assert!(matches!(
            Plan::from_options(&o),
            Err(SimError::InvalidOption {
                option: "rsa_bits",
                ..
            })
        ));

        let mut o = InitOptions::new(now);
        o.tcb = Some(TcbParts {
            fmc: Some(1),
            ..InitOptions::default_tcb(Product::Milan)
        });
        assert!(matches!(
            Plan::from_options(&o),
            Err(SimError::InvalidOption {
                option: "tcb.fmc",
                ..
            })
        ));

        let mut o = InitOptions::new(now);
        o.product = Product::Turin;
        o.chip_id = Some([1u8; CHIP_ID_LEN]);
        assert!(matches!(
            Plan::from_options(&o),
            Err(SimError::InvalidOption {
                option: "chip_id",
                ..
            })
        ));

        let mut o = InitOptions::new(now);
        o.vcek_not_before = Some(now);
        o.vcek_not_after = Some(now - 1);
        assert!(matches!(
            Plan::from_options(&o),
            Err(SimError::InvalidOption {
                option: "vcek_not_after",
                ..
            })
        ));
    }

    #[test]
    fn plan_defaults() {
        let now = 1_750_000_000;
        let mut o = InitOptions::new(now);
        o.product = Product::Turin;
        o.tcb = Some(TcbParts {
            fmc: None,
            bootloader: 1,
            tee: 2,
            snp: 3,
            microcode: 4,
        });
        let p = Plan::from_options(&o).unwrap();
        assert_eq!(p.tcb.fmc, Some(0), "Turin always gets an FMC level");
        assert!(
            p.chip_id[8..].iter().all(|&b| b == 0),
            "Turin CHIP_ID is 8 bytes"
        );
        assert!(p.chip_id[..8].iter().any(|&b| b != 0));
        assert_eq!(
            p.vcek_window,
            Window {
                not_before: now - HOUR,
                not_after: now + 7 * YEAR
            }
        );
        assert!(p.ca_window.not_before <= p.vcek_window.not_before);
        assert!(p.ca_window.not_after >= p.vcek_window.not_after);

        let m = Plan::from_options(&InitOptions::new(now)).unwrap();
        assert!(
            m.chip_id[8..].iter().any(|&b| b != 0),
            "Milan CHIP_ID is 64 random bytes"
        );
    }
}

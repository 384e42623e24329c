//! Where the agent gets TEE evidence from.
//!
//! A [`Collector`] turns 64 bytes of REPORT_DATA into evidence signed by the TEE. One implementation per
//! interface the guest kernel offers: [`ConfigfsTsm`] (the vendor-neutral configfs-tsm report interface,
//! preferred; SEV-SNP reports and TDX quotes), [`SevGuest`] (the older `/dev/sev-guest` ioctl),
//! [`TdxGuest`] (the older `/dev/tdx_guest` ioctls: TDREPORT, then the legacy GetQuote),
//! [`Simulated`] (the simulated SNP device of `twi_core::sim`) and [`SimulatedTdx`] (the simulated TDX
//! platform of `twi_core::sim::tdx`), the last two for machines without hardware. [`detect`],
//! [`detect_tdx`] and [`detect_any`] pick a hardware source for `source = "auto"` / `tee = "auto"`.
//!
//! Collection is blocking (file and ioctl I/O that can take a firmware round trip); the service calls it
//! through `spawn_blocking`.

mod configfs_tsm;
mod sev_guest;
mod simulated;
mod simulated_tdx;
mod tdx_guest;

use std::path::{Path, PathBuf};

use twi_core::snp::layout;

use crate::wire::{Evidence, TeeKind};

pub use configfs_tsm::{provider_of, ConfigfsTsm, SEV_GUEST_PROVIDER, TDX_GUEST_PROVIDER};
pub use sev_guest::SevGuest;
pub use simulated::{Simulated, SIMULATED_WARNING};
pub use simulated_tdx::{SimulatedTdx, SIMULATED_TDX_WARNING};
pub use tdx_guest::{GetQuoteCommand, TdxGuest, GET_QUOTE_COMMANDS, GET_QUOTE_TIMEOUT};

/// A source of fresh TEE evidence.
///
/// Implementations must produce NEW evidence on every call: the REPORT_DATA binds the server's nonce, so
/// a cached report would be refused as a replay. Integration tests wrap a collector to tamper with or
/// replay evidence (see [`super::AgentPlugin::with_collector_wrapper`]).
pub trait Collector: Send + Sync {
    /// The TEE kind announced in the Hello; the server picks its verifier by it.
    fn tee(&self) -> TeeKind;

    /// Asks the TEE for evidence carrying `report_data` (blocking).
    ///
    /// # Errors
    ///
    /// [`CollectError`] saying which step failed.
    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, CollectError>;

    /// A short human description for logs (source and device path), never secrets.
    fn describe(&self) -> String;
}

/// Why evidence could not be collected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// A file or device operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configfs-tsm attribute had content we cannot use.
    #[error("{path}: {detail}")]
    BadAttribute { path: PathBuf, detail: String },
    /// The configfs-tsm report entry belongs to another TEE.
    #[error("configfs-tsm provider at {path} is `{got}`, want `{want}`")]
    WrongProvider {
        path: PathBuf,
        got: String,
        want: &'static str,
    },
    /// Someone else wrote to our configfs-tsm entry while we used it; the report may not be ours.
    #[error(
        "configfs-tsm generation of {path} went from {before} to {after} across our {writes} writes: \
         another writer raced us, the report cannot be trusted"
    )]
    Race {
        path: PathBuf,
        before: u64,
        after: u64,
        writes: u64,
    },
    /// The requested VMPL is below what this guest may ask for.
    #[error(
        "snp.vmpl = {want} is below this guest's lowest allowed privilege level {floor} ({path})"
    )]
    PrivlevelFloor {
        path: PathBuf,
        want: u32,
        floor: u32,
    },
    /// The `/dev/sev-guest` ioctl failed.
    #[error("{request} on {path} failed: {errno} (firmware error {fw_error:#x}, hypervisor error {vmm_error:#x})")]
    Ioctl {
        request: &'static str,
        path: PathBuf,
        errno: std::io::Error,
        fw_error: u32,
        vmm_error: u32,
    },
    /// The hypervisor is busy (throttling guest requests); trying again later may succeed.
    #[error("{request} on {path}: the hypervisor is busy, try again later")]
    Busy {
        request: &'static str,
        path: PathBuf,
    },
    /// The host asked for a certificate buffer larger than we allow.
    #[error("the host's certificate table needs {got} bytes, more than the {max} allowed")]
    CertTableTooLarge { got: usize, max: usize },
    /// The firmware answered with a non-zero status.
    #[error("SNP firmware refused the report request with status {status:#x} ({meaning})")]
    FirmwareStatus { status: u32, meaning: &'static str },
    /// The report has the wrong size.
    #[error("{source_name} returned a {got}-byte report, want {want}")]
    ReportLength {
        source_name: &'static str,
        got: usize,
        want: usize,
    },
    /// The report does not carry the REPORT_DATA we asked for (stale or foreign report).
    #[error("{source_name} returned a report whose REPORT_DATA is not the one requested")]
    ReportDataMismatch { source_name: &'static str },
    /// The simulated device failed.
    #[error("simulated SEV-SNP device: {0}")]
    Simulated(#[from] twi_core::sim::SimError),
    /// The simulated TDX platform failed.
    #[error("simulated TDX platform: {0}")]
    SimulatedTdx(twi_core::sim::SimError),
    /// The TDX quote does not parse (truncated, foreign format).
    #[error("{source_name} returned an unusable TDX quote: {detail}")]
    QuoteInvalid {
        source_name: &'static str,
        detail: String,
    },
    /// A `/dev/tdx_guest` ioctl failed.
    #[error("{request} on {path} failed: {errno}{hint}", hint = tdx_ioctl_hint(.errno))]
    TdxIoctl {
        request: &'static str,
        path: PathBuf,
        errno: std::io::Error,
    },
    /// `/dev/tdx_guest` answers TDX_CMD_GET_REPORT0 but knows no TDX_CMD_GET_QUOTE: the device alone
    /// gives only a TDREPORT, which cannot be verified remotely.
    #[error(
        "this kernel's tdx_guest driver has no GetQuote: {device} answered ENOTTY/EINVAL to every known \
         TDX_CMD_GET_QUOTE encoding ({refused}), so it only returns a TDREPORT (TDX_CMD_GET_REPORT0), which \
         is MACed for this platform only and cannot be verified remotely (EINVAL can also mean the driver \
         refused our 16 KiB GetQuote buffer). Use configfs-tsm: kernel 6.7+ with CONFIG_TSM_REPORTS, \
         configfs mounted (`mount -t configfs none /sys/kernel/config`) and a host quote generation \
         service, with tdx {{ source = \"configfs-tsm\" }} or \"auto\""
    )]
    TdxReportOnly { device: PathBuf, refused: String },
    /// The host finished GetQuote with a non-zero status.
    #[error("TDX GetQuote through {path}: the host answered status {status:#x} ({meaning})")]
    GetQuoteStatus {
        path: PathBuf,
        status: u64,
        meaning: &'static str,
    },
    /// The GetQuote reply claims no quote, or more than its buffer holds.
    #[error(
        "TDX GetQuote through {path}: the host reported a {got}-byte quote, want 1 to {max} bytes \
         (the GetQuote buffer's room)"
    )]
    GetQuoteLength { path: PathBuf, got: u32, max: usize },
    /// The host did not finish GetQuote in time; the request stays in flight in the kernel.
    #[error(
        "TDX GetQuote through {path} did not complete within {waited:?}; the request stays in flight \
         in the kernel and later attempts fail until it ends (is the host's quote generation service \
         running?)"
    )]
    GetQuoteTimeout {
        path: PathBuf,
        waited: std::time::Duration,
    },
    /// An earlier GetQuote (one we stopped waiting for, or a concurrent one) is still in the kernel.
    #[error("another TDX GetQuote through {path} is still in flight; try again later")]
    GetQuoteBusy { path: PathBuf },
    /// `source = "auto"` found no TDX quote interface.
    #[error(
        "no TDX quote interface found: configfs-tsm at {configfs} (provider `tdx_guest`) is absent and \
         {device} does not exist. Run the agent inside a TDX guest with the tdx-guest driver, or, for \
         testing only, set tdx {{ source = \"simulated\" }} with a simulated_tdx {{ dir = ... }} block"
    )]
    NoTdxDevice { configfs: PathBuf, device: PathBuf },
    /// `tee = "auto"` found neither TEE.
    #[error("no TEE found: SEV-SNP: {snp}; TDX: {tdx}")]
    NoTee { snp: String, tdx: String },
    /// `source = "auto"` found no SEV-SNP interface.
    #[error(
        "no SEV-SNP device found: neither configfs-tsm at {configfs} (provider `sev_guest`) nor {device} \
         exists. Run the agent inside an SEV-SNP guest with the sev-guest driver loaded, or, for testing \
         only, set snp {{ source = \"simulated\" }} with a simulated {{ dir = ... }} block made by \
         `twi sim init`"
    )]
    NoDevice { configfs: PathBuf, device: PathBuf },
    /// The collection task could not run (panicked or was cancelled).
    #[error("evidence collection task failed: {0}")]
    Task(String),
}

impl CollectError {
    /// Whether the failure is likely to pass on its own (SPIRE retries attestation), as opposed to a
    /// broken setup. Maps to `Unavailable` rather than `Internal`.
    pub fn is_transient(&self) -> bool {
        match self {
            CollectError::Busy { .. }
            | CollectError::Race { .. }
            | CollectError::GetQuoteTimeout { .. }
            | CollectError::GetQuoteBusy { .. } => true,
            CollectError::GetQuoteStatus { status, .. } => *status == tdx_guest::status::IN_FLIGHT,
            CollectError::TdxIoctl { errno, .. } => matches!(
                errno.raw_os_error(),
                Some(libc::EBUSY) | Some(libc::EAGAIN) | Some(libc::EINTR)
            ),
            CollectError::Io { source, .. } => {
                matches!(
                    source.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) || source.raw_os_error() == Some(libc::EBUSY)
                    || source.raw_os_error() == Some(libc::EAGAIN)
            }
            _ => false,
        }
    }
}

/// What a failed `/dev/tdx_guest` ioctl most likely means, appended to its error.
fn tdx_ioctl_hint(errno: &std::io::Error) -> &'static str {
    match errno.raw_os_error() {
        Some(libc::ENOTTY) => {
            " (the file does not understand tdx_guest ioctls: is it the tdx_guest device node?)"
        }
        Some(libc::EIO) => " (the TDX module or the host refused the request)",
        Some(libc::EBUSY) | Some(libc::EAGAIN) | Some(libc::EINTR) => " (transient; try again)",
        _ => "",
    }
}

impl From<CollectError> for tonic::Status {
    fn from(err: CollectError) -> Self {
        if err.is_transient() {
            tonic::Status::unavailable(format!("collecting TEE evidence: {err}"))
        } else {
            tonic::Status::internal(format!("collecting TEE evidence: {err}"))
        }
    }
}

/// Checks what every SNP source must return: a report of the one size we know, carrying exactly the
/// REPORT_DATA we asked for (anything else is stale or foreign, and the server would refuse it anyway).
pub(crate) fn check_snp_report(
    source_name: &'static str,
    report: &[u8],
    report_data: &[u8; 64],
) -> Result<(), CollectError> {
    if report.len() != layout::REPORT_LEN {
        return Err(CollectError::ReportLength {
            source_name,
            got: report.len(),
            want: layout::REPORT_LEN,
        });
    }
    let got = report.get(layout::REPORT_DATA..layout::REPORT_DATA + layout::REPORT_DATA_LEN);
    if got != Some(report_data.as_slice()) {
        return Err(CollectError::ReportDataMismatch { source_name });
    }
    Ok(())
}

/// Checks what every TDX source must return: a quote that parses and carries exactly the REPORTDATA we
/// asked for. Returns the quote without trailing padding (platforms deliver padded buffers; the wire
/// carries only the quote).
pub(crate) fn check_tdx_quote(
    source_name: &'static str,
    quote: &[u8],
    report_data: &[u8; 64],
) -> Result<Vec<u8>, CollectError> {
    let q = twi_core::tdx::Quote::parse(quote).map_err(|e| CollectError::QuoteInvalid {
        source_name,
        detail: e.to_string(),
    })?;
    if q.report_data() != report_data {
        return Err(CollectError::ReportDataMismatch { source_name });
    }
    Ok(q.as_bytes().to_vec())
}

/// The TDX hardware source `tdx { source = "auto" }` uses: configfs-tsm with provider `tdx_guest`;
/// else `/dev/tdx_guest` with the legacy GetQuote ioctl ([`TdxGuest`]), after one TDREPORT as a probe.
///
/// # Errors
///
/// [`CollectError::NoTdxDevice`] when neither interface is present; the probe's error when the device
/// node exists but does not answer `TDX_CMD_GET_REPORT0`.
pub fn detect_tdx(
    configfs_root: &Path,
    tdx_guest_device: &Path,
) -> Result<std::sync::Arc<dyn Collector>, CollectError> {
    if configfs_root.is_dir() {
        let tsm = ConfigfsTsm::new_tdx(configfs_root.to_path_buf());
        match tsm.provider() {
            Ok(p) if p == TDX_GUEST_PROVIDER => return Ok(std::sync::Arc::new(tsm)),
            Ok(other) => {
                tracing::info!(root = %configfs_root.display(), provider = %other, "configfs-tsm is not TDX, trying the tdx_guest device")
            }
            Err(err) => {
                tracing::info!(root = %configfs_root.display(), error = %err, "configfs-tsm unusable for TDX, trying the tdx_guest device")
            }
        }
    }
    if tdx_guest_device.exists() {
        let guest = TdxGuest::new(tdx_guest_device.to_path_buf());
        guest.probe()?;
        return Ok(std::sync::Arc::new(guest));
    }
    Err(CollectError::NoTdxDevice {
        configfs: configfs_root.to_path_buf(),
        device: tdx_guest_device.to_path_buf(),
    })
}

/// `tee = "auto"` with no block deciding: SEV-SNP's interfaces first ([`detect`]), then TDX's
/// ([`detect_tdx`]); when neither answers, an error carrying both explanations.
///
/// # Errors
///
/// [`CollectError::NoTee`], or the TDX probe's error when a tdx_guest device node exists but does not
/// work (that explanation is the useful one).
pub fn detect_any(
    snp_configfs: &Path,
    sev_guest_device: &Path,
    vmpl: Option<u32>,
    tdx_configfs: &Path,
    tdx_guest_device: &Path,
) -> Result<std::sync::Arc<dyn Collector>, CollectError> {
    let snp = match detect(snp_configfs, sev_guest_device, vmpl) {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    match detect_tdx(tdx_configfs, tdx_guest_device) {
        Ok(c) => Ok(c),
        Err(tdx @ CollectError::NoTdxDevice { .. }) => Err(CollectError::NoTee {
            snp: snp.to_string(),
            tdx: tdx.to_string(),
        }),
        Err(e) => Err(e),
    }
}

/// The hardware source `source = "auto"` uses: configfs-tsm if it exists with provider `sev_guest`,
/// else `/dev/sev-guest`, else an error telling the operator what to do.
///
/// Probing configfs-tsm means creating (and removing) one report entry, because the provider is only
/// visible inside an entry.
///
/// # Errors
///
/// [`CollectError::NoDevice`] when neither interface is present.
pub fn detect(
    configfs_root: &Path,
    sev_guest_device: &Path,
    vmpl: Option<u32>,
) -> Result<std::sync::Arc<dyn Collector>, CollectError> {
    if configfs_root.is_dir() {
        let tsm = ConfigfsTsm::new(configfs_root.to_path_buf(), vmpl);
        match tsm.provider() {
            Ok(p) if p == SEV_GUEST_PROVIDER => return Ok(std::sync::Arc::new(tsm)),
            Ok(other) => {
                tracing::info!(root = %configfs_root.display(), provider = %other, "configfs-tsm is not SEV-SNP, trying the sev-guest device")
            }
            Err(err) => {
                tracing::info!(root = %configfs_root.display(), error = %err, "configfs-tsm unusable, trying the sev-guest device")
            }
        }
    }
    if sev_guest_device.exists() {
        return Ok(std::sync::Arc::new(SevGuest::new(
            sev_guest_device.to_path_buf(),
            vmpl,
        )));
    }
    Err(CollectError::NoDevice {
        configfs: configfs_root.to_path_buf(),
        device: sev_guest_device.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn report_checks() {
        let rd = [7u8; 64];
        let mut report = vec![0u8; layout::REPORT_LEN];
        report[layout::REPORT_DATA..layout::REPORT_DATA + 64].copy_from_slice(&rd);
        check_snp_report("t", &report, &rd).unwrap();
        assert!(matches!(
            check_snp_report("t", &report, &[8u8; 64]),
            Err(CollectError::ReportDataMismatch { .. })
        ));
        assert!(matches!(
            check_snp_report("t", &report[..100], &rd),
            Err(CollectError::ReportLength { got: 100, .. })
        ));
    }

    #[test]
    fn detect_without_devices_explains_simulated_mode() {
        let dir = tempfile::tempdir().unwrap();
        let err = detect(&dir.path().join("tsm"), &dir.path().join("sev-guest"), None)
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("no SEV-SNP device found"), "{msg}");
        assert!(msg.contains("simulated"), "{msg}");
    }

    #[test]
    fn detect_tdx_falls_back_to_the_device_and_explains_absence() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("tdx_guest");
        let err = detect_tdx(&dir.path().join("tsm"), &dev).err().unwrap();
        assert!(matches!(err, CollectError::NoTdxDevice { .. }), "{err}");
        assert!(err.to_string().contains("simulated_tdx"), "{err}");
        // A regular file stands in for the device node: the probe's TDX_CMD_GET_REPORT0 gets ENOTTY.
        std::fs::write(&dev, b"").unwrap();
        // A plain directory as configfs root reports no provider, so detection moves on to the device.
        std::fs::create_dir(dir.path().join("tsm")).unwrap();
        let err = detect_tdx(&dir.path().join("tsm"), &dev).err().unwrap();
        let msg = err.to_string();
        assert!(
            matches!(&err, CollectError::TdxIoctl { errno, .. } if errno.raw_os_error() == Some(libc::ENOTTY)),
            "{msg}"
        );
        assert!(
            msg.contains("TDX_CMD_GET_REPORT0") && msg.contains("tdx_guest device node"),
            "{msg}"
        );
        // tee = auto: the broken device's explanation wins over "nothing found".
        let err = detect_any(
            &dir.path().join("tsm"),
            &dir.path().join("sev-guest"),
            None,
            &dir.path().join("tsm"),
            &dev,
        )
        .err()
        .unwrap();
        assert!(matches!(err, CollectError::TdxIoctl { .. }), "{err}");
        std::fs::remove_file(&dev).unwrap();
        let err = detect_any(
            &dir.path().join("tsm"),
            &dir.path().join("sev-guest"),
            None,
            &dir.path().join("tsm"),
            &dev,
        )
        .err()
        .unwrap();
        let msg = err.to_string();
        assert!(matches!(err, CollectError::NoTee { .. }), "{msg}");
        assert!(msg.contains("SEV-SNP") && msg.contains("TDX"), "{msg}");
    }

    #[test]
    fn detect_prefers_configfs_then_device() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("sev-guest");
        std::fs::write(&dev, b"").unwrap();
        // configfs root absent: the device is chosen.
        let c = detect(&dir.path().join("tsm"), &dev, Some(0)).unwrap();
        assert!(c.describe().contains("sev-guest"), "{}", c.describe());
        // A plain directory as configfs root cannot report a provider (no kernel populating the entry),
        // so detection falls through to the device.
        std::fs::create_dir(dir.path().join("tsm")).unwrap();
        let c = detect(&dir.path().join("tsm"), &dev, Some(0)).unwrap();
        assert!(c.describe().contains("sev-guest"), "{}", c.describe());
    }
}

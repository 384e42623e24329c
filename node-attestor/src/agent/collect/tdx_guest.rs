//! TDX quotes through the legacy `/dev/tdx_guest` ioctls, for guest kernels whose tdx-guest driver has a
//! GetQuote ioctl but no configfs-tsm TDX support (Intel's and some distributions' TDX kernels before
//! Linux 6.7; Google's go-tdx-guest `client/linuxabi` speaks the same interface).
//!
//! Two steps per quote:
//!
//! 1. `TDX_CMD_GET_REPORT0` (upstream `include/uapi/linux/tdx-guest.h`): our 64-byte REPORTDATA in, the
//!    1024-byte TDREPORT out. The TDREPORT is MACed for this platform only; we check that it carries our
//!    REPORTDATA (at offset 128, inside REPORTMACSTRUCT) before going on.
//! 2. `TDX_CMD_GET_QUOTE`: a `struct tdx_quote_req { buf, len }` pointing at a 16 KiB GetQuote buffer,
//!    `struct tdx_quote_hdr { version = 1, status = 0, in_len = 1024, out_len = 0 }` followed by the raw
//!    TDREPORT. The kernel hands the buffer to the host with TDG.VP.VMCALL<GetQuote> (GHCI 1.0), waits
//!    for the host's completion interrupt and copies the buffer back: `status` decoded by
//!    [`status_meaning`], the quote in the first `out_len` data bytes. The quote then passes
//!    [`check_tdx_quote`] like every TDX source's.
//!
//! The GetQuote ioctl never reached mainline Linux, and the kernels that carry it disagree on its number:
//! [`GET_QUOTE_COMMANDS`] lists the four encodings found in kernel trees and user-space libraries, all on
//! the same `struct tdx_quote_req`. We try them in order and move on only when the kernel answers
//! `ENOTTY` or `EINVAL`, which it does before touching the host; the one that works is remembered. When
//! none is known, the kernel can only give a TDREPORT and [`CollectError::TdxReportOnly`] says to use
//! configfs-tsm.
//!
//! The payload is the raw TDREPORT, as go-tdx-guest, the kernel's own configfs-tsm path and QEMU's
//! GetQuote handler (10.1+) use it; hosts that pass the payload to the QGS untouched and so expect
//! Intel's framed QGS message (libtdx_attest's legacy mode) answer with an error status.
//!
//! The wait for the host is bounded: the ioctl runs on a worker thread and we give up after
//! [`GET_QUOTE_TIMEOUT`]. Some kernels wait for the host uninterruptibly, so a timed-out request stays
//! in flight in the kernel; until it ends, further collections fail at once with
//! [`CollectError::GetQuoteBusy`] instead of piling up blocked threads.
//!
//! NOT TESTED ON TDX HARDWARE: the layouts, ioctl numbers and buffer handling are checked against the
//! kernel headers in unit tests, and the flow against a simulated kernel and host, but no real
//! `/dev/tdx_guest` was available.

// The ioctls need raw pointers to #[repr(C)] structs the kernel reads and writes; there is no safe
// wrapper in our dependency set. The two `unsafe` blocks are the two ioctl calls themselves, each in a
// function whose argument types fix the struct the kernel sees.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::{check_tdx_quote, CollectError, Collector};
use crate::wire::{Evidence, TdxEvidence, TeeKind};

/// `TDX_REPORTDATA_LEN`.
const REPORTDATA_LEN: usize = 64;
/// `TDX_REPORT_LEN`: the TDREPORT_STRUCT.
const TDREPORT_LEN: usize = 1024;
/// Where REPORTDATA sits in the TDREPORT: REPORTMACSTRUCT's `reportdata` field (TDX module ABI:
/// REPORTTYPE 4, reserved 12, CPUSVN 16, TEE_TCB_INFO_HASH 48, TEE_INFO_HASH 48, then REPORTDATA).
const TDREPORT_REPORTDATA: usize = 128;
/// The GetQuote buffer, header included: 4 pages, the size the kernels allocate for the shared buffer
/// (`GET_QUOTE_MAX_SIZE`) and the `len` go-tdx-guest and libtdx_attest pass. A larger `len` is refused
/// with `EINVAL` by the kernel.
const GET_QUOTE_BUF_LEN: usize = 4 * 4096;
/// `sizeof(struct tdx_quote_hdr)`.
const QUOTE_HDR_LEN: usize = 24;
/// Room for the quote after the header. DCAP quotes with their PCK chain are about 5 KiB.
const GET_QUOTE_DATA_LEN: usize = GET_QUOTE_BUF_LEN - QUOTE_HDR_LEN;
/// GHCI: the GetQuote buffer format version the TD writes.
const GET_QUOTE_VERSION: u64 = 1;

/// GetQuote `status` values written by the host (GHCI 1.0, TDG.VP.VMCALL<GetQuote>).
pub(crate) mod status {
    pub(crate) const SUCCESS: u64 = 0;
    pub(crate) const IN_FLIGHT: u64 = 0xffff_ffff_ffff_ffff;
    pub(crate) const ERROR: u64 = 0x8000_0000_0000_0000;
    pub(crate) const SERVICE_UNAVAILABLE: u64 = 0x8000_0000_0000_0001;
}

/// How long we wait for the host. QEMU gives up on its QGS after 30 s and reports an error, and the
/// kernel's configfs-tsm path polls for 30 s; the margin lets the host's own answer arrive first.
pub const GET_QUOTE_TIMEOUT: Duration = Duration::from_secs(40);

/// `struct tdx_report_req`.
#[repr(C)]
pub(crate) struct TdxReportReq {
    reportdata: [u8; REPORTDATA_LEN],
    tdreport: [u8; TDREPORT_LEN],
}

/// `struct tdx_quote_req`: `buf` is the user address of the GetQuote buffer, `len` its length.
#[repr(C)]
struct TdxQuoteReq {
    buf: u64,
    len: u64,
}

/// `struct tdx_quote_hdr` without its flexible `data[]` (which starts 8-byte aligned, right after it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TdxQuoteHdr {
    version: u64,
    status: u64,
    in_len: u32,
    out_len: u32,
}

/// The whole GetQuote buffer as the kernel copies it to and from the page it shares with the host.
#[repr(C)]
pub(crate) struct GetQuoteBuf {
    hdr: TdxQuoteHdr,
    data: [u8; GET_QUOTE_DATA_LEN],
}

const _: () = assert!(size_of::<TdxReportReq>() == REPORTDATA_LEN + TDREPORT_LEN);
const _: () = assert!(size_of::<TdxQuoteReq>() == 16);
const _: () = assert!(size_of::<TdxQuoteHdr>() == QUOTE_HDR_LEN);
const _: () = assert!(size_of::<GetQuoteBuf>() == GET_QUOTE_BUF_LEN);
const _: () = assert!(TDREPORT_LEN <= GET_QUOTE_DATA_LEN);

/// Linux `asm-generic/ioctl.h` (x86): dir (2 bits: `_IOC_WRITE` = 1, `_IOC_READ` = 2) << 30 |
/// size (14 bits) << 16 | type << 8 | nr.
const fn ioc(dir: u64, ty: u8, nr: u8, size: usize) -> u64 {
    (dir << 30) | ((size as u64 & 0x3fff) << 16) | ((ty as u64) << 8) | nr as u64
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

/// `_IOWR('T', 1, struct tdx_report_req)`.
const TDX_CMD_GET_REPORT0: u64 = ioc(IOC_READ | IOC_WRITE, b'T', 1, size_of::<TdxReportReq>());

/// One encoding of `TDX_CMD_GET_QUOTE` and where it comes from.
#[derive(Clone, Copy, Debug)]
pub struct GetQuoteCommand {
    /// The ioctl request number.
    pub request: u64,
    /// The C definition, for logs and errors.
    pub definition: &'static str,
    /// Which kernels or libraries use it.
    pub origin: &'static str,
}

/// The known encodings of `TDX_CMD_GET_QUOTE` on `/dev/tdx_guest`, in the order we try them. All take a
/// 16-byte `struct tdx_quote_req`; none of them collides with another command of a kernel we know
/// (Intel's TDX 1.5 kernels use `'T'` 2 for `TDX_CMD_VERIFY_REPORT`, but on a 264-byte struct).
pub const GET_QUOTE_COMMANDS: [GetQuoteCommand; 4] = [
    GetQuoteCommand {
        request: ioc(IOC_READ | IOC_WRITE, b'T', 2, size_of::<TdxQuoteReq>()),
        definition: "_IOWR('T', 2, struct tdx_quote_req)",
        origin: "go-tdx-guest client/linuxabi; kernel patch \"virt: tdx-guest: Add Quote generation support\" v3",
    },
    GetQuoteCommand {
        request: ioc(IOC_READ, b'T', 2, size_of::<TdxQuoteReq>()),
        definition: "_IOR('T', 2, struct tdx_quote_req)",
        origin: "the same kernel patch, v1 and v2, as carried by distribution kernels",
    },
    GetQuoteCommand {
        request: ioc(IOC_READ | IOC_WRITE, b'T', 4, size_of::<TdxQuoteReq>()),
        definition: "_IOWR('T', 4, struct tdx_quote_req)",
        origin: "Intel TDX 1.5 guest kernels (uapi with VERIFY_REPORT and EXTEND_RTMR)",
    },
    GetQuoteCommand {
        request: ioc(IOC_READ, b'T', 4, size_of::<TdxQuoteReq>()),
        definition: "_IOR('T', 4, struct tdx_quote_req)",
        origin: "Intel DCAP libtdx_attest (legacy ioctl mode)",
    },
];

/// Marks "no encoding known to work yet" in [`TdxGuest::known_command`].
const UNKNOWN_COMMAND: usize = usize::MAX;

/// What the kernel said when a device operation failed.
#[derive(Debug)]
pub(crate) enum DeviceError {
    /// The device node could not be opened.
    Open(std::io::Error),
    /// The ioctl returned -1.
    Ioctl(std::io::Error),
}

/// The two ioctls, so that tests can play the kernel and the host on top of plain memory.
pub(crate) trait TdxGuestOps: Send + Sync {
    /// `TDX_CMD_GET_REPORT0` on `device`.
    fn get_report0(&self, device: &Path, req: &mut TdxReportReq) -> Result<(), DeviceError>;
    /// `TDX_CMD_GET_QUOTE` with request number `request` on `device`; blocks until the kernel returns.
    fn get_quote(
        &self,
        device: &Path,
        request: u64,
        buf: &mut GetQuoteBuf,
    ) -> Result<(), DeviceError>;
}

/// The real thing: the device node and its ioctls.
struct Ioctls;

fn open_device(device: &Path) -> Result<std::fs::File, DeviceError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(DeviceError::Open)
}

fn last_ioctl_result(rc: libc::c_int) -> Result<(), DeviceError> {
    if rc == -1 {
        Err(DeviceError::Ioctl(std::io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

impl TdxGuestOps for Ioctls {
    fn get_report0(&self, device: &Path, req: &mut TdxReportReq) -> Result<(), DeviceError> {
        let file = open_device(device)?;
        // The request number type differs between libc flavours (c_ulong on glibc, c_int on musl).
        #[allow(clippy::cast_possible_truncation, clippy::useless_conversion)]
        let request = TDX_CMD_GET_REPORT0 as libc::Ioctl;
        // SAFETY: `req` is a live, exclusively borrowed #[repr(C)] `struct tdx_report_req` of exactly
        // the size encoded in TDX_CMD_GET_REPORT0 (1088 bytes, asserted at compile time). The kernel
        // reads `reportdata` and writes `tdreport` within it during the call and keeps no pointer.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, std::ptr::from_mut(req)) };
        last_ioctl_result(rc)
    }

    fn get_quote(
        &self,
        device: &Path,
        request: u64,
        buf: &mut GetQuoteBuf,
    ) -> Result<(), DeviceError> {
        let file = open_device(device)?;
        let mut req = TdxQuoteReq {
            buf: std::ptr::from_mut(buf) as u64,
            len: GET_QUOTE_BUF_LEN as u64,
        };
        #[allow(clippy::cast_possible_truncation, clippy::useless_conversion)]
        let request = request as libc::Ioctl;
        // SAFETY: `req` is a live #[repr(C)] `struct tdx_quote_req` (16 bytes, the size every entry of
        // GET_QUOTE_COMMANDS encodes, which is the only source of `request`). Its `buf`/`len` describe
        // `buf`, a live, exclusively borrowed GetQuoteBuf of exactly GET_QUOTE_BUF_LEN bytes, which
        // the kernel copies in before and out after the host's work, within this call. Both outlive
        // the call and the kernel keeps no pointer to them.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, std::ptr::from_mut(&mut req)) };
        last_ioctl_result(rc)
    }
}

/// Evidence from `/dev/tdx_guest` through the legacy GetQuote ioctl.
pub struct TdxGuest {
    device: PathBuf,
    timeout: Duration,
    ops: Arc<dyn TdxGuestOps>,
    /// Index into [`GET_QUOTE_COMMANDS`] of the encoding this kernel answered, or [`UNKNOWN_COMMAND`].
    known_command: Arc<AtomicUsize>,
    /// Set while a GetQuote worker is inside the kernel (also after we stopped waiting for it).
    in_flight: Arc<AtomicBool>,
}

impl TdxGuest {
    /// A source on the tdx-guest device node `device`; nothing is opened until [`TdxGuest::probe`] or a
    /// collection.
    pub fn new(device: PathBuf) -> Self {
        Self::with_ops(device, GET_QUOTE_TIMEOUT, Arc::new(Ioctls))
    }

    pub(crate) fn with_ops(device: PathBuf, timeout: Duration, ops: Arc<dyn TdxGuestOps>) -> Self {
        TdxGuest {
            device,
            timeout,
            ops,
            known_command: Arc::new(AtomicUsize::new(UNKNOWN_COMMAND)),
            in_flight: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Asks for one TDREPORT (a local TDCALL, no host round trip), so that a node that is not a
    /// tdx-guest device, or a driver without `TDX_CMD_GET_REPORT0`, fails Configure rather than the first
    /// attestation. Whether the kernel has GetQuote shows only at the first collection.
    ///
    /// # Errors
    ///
    /// [`CollectError::Io`] (open), [`CollectError::TdxIoctl`] (e.g. `ENOTTY`), or
    /// [`CollectError::ReportDataMismatch`].
    pub fn probe(&self) -> Result<(), CollectError> {
        self.tdreport(&[0; REPORTDATA_LEN]).map(|_| ())
    }

    fn tdreport(&self, report_data: &[u8; 64]) -> Result<Box<[u8; TDREPORT_LEN]>, CollectError> {
        let mut req = Box::new(TdxReportReq {
            reportdata: *report_data,
            tdreport: [0; TDREPORT_LEN],
        });
        self.ops
            .get_report0(&self.device, &mut req)
            .map_err(|e| self.device_error("TDX_CMD_GET_REPORT0", e))?;
        if tdreport_report_data(&req.tdreport) != Some(report_data.as_slice()) {
            return Err(CollectError::ReportDataMismatch {
                source_name: "tdx_guest TDX_CMD_GET_REPORT0",
            });
        }
        Ok(Box::new(req.tdreport))
    }

    fn device_error(&self, request: &'static str, err: DeviceError) -> CollectError {
        match err {
            DeviceError::Open(source) => CollectError::Io {
                op: "opening",
                path: self.device.clone(),
                source,
            },
            DeviceError::Ioctl(errno) => CollectError::TdxIoctl {
                request,
                path: self.device.clone(),
                errno,
            },
        }
    }

    /// Runs GetQuote on a worker thread and waits at most `self.timeout` for it.
    fn get_quote(&self, tdreport: &[u8; TDREPORT_LEN]) -> Result<Vec<u8>, CollectError> {
        if self
            .in_flight
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(CollectError::GetQuoteBusy {
                path: self.device.clone(),
            });
        }
        let buf = GetQuoteBuf::request(tdreport);
        let (tx, rx) = mpsc::sync_channel(1);
        let worker = Worker {
            ops: Arc::clone(&self.ops),
            device: self.device.clone(),
            known_command: Arc::clone(&self.known_command),
            in_flight: Arc::clone(&self.in_flight),
        };
        let spawned = std::thread::Builder::new()
            .name("tdx-getquote".into())
            .spawn(move || {
                let outcome = worker.run(buf);
                // The receiver is gone when we timed out; the buffer is dropped here then.
                let _ = tx.send(outcome);
            });
        if let Err(source) = spawned {
            self.in_flight.store(false, Ordering::Release);
            return Err(CollectError::Io {
                op: "starting the GetQuote worker thread for",
                path: self.device.clone(),
                source,
            });
        }
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(buf)) => decode_reply(&buf, &self.device).map(<[u8]>::to_vec),
            Ok(Err(e)) => Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(device = %self.device.display(), timeout = ?self.timeout,
                    "TDX GetQuote did not complete in time; the request stays in flight in the kernel");
                Err(CollectError::GetQuoteTimeout {
                    path: self.device.clone(),
                    waited: self.timeout,
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(CollectError::Task(
                "the TDX GetQuote worker ended without an answer".into(),
            )),
        }
    }
}

/// What the GetQuote worker thread owns: everything it touches outlives our wait for it.
struct Worker {
    ops: Arc<dyn TdxGuestOps>,
    device: PathBuf,
    known_command: Arc<AtomicUsize>,
    in_flight: Arc<AtomicBool>,
}

impl Worker {
    /// Issues GetQuote with the known encoding, or each known encoding in turn while the kernel does not
    /// recognise it. Returns the buffer as the kernel copied it back.
    fn run(self, mut buf: Box<GetQuoteBuf>) -> Result<Box<GetQuoteBuf>, CollectError> {
        let _clear = ClearOnDrop(Arc::clone(&self.in_flight));
        let known = self.known_command.load(Ordering::Acquire);
        let order = std::iter::once(known)
            .filter(|&i| i < GET_QUOTE_COMMANDS.len())
            .chain((0..GET_QUOTE_COMMANDS.len()).filter(|&i| i != known));
        let mut refused = Vec::new();
        for i in order {
            let Some(cmd) = GET_QUOTE_COMMANDS.get(i) else {
                continue;
            };
            match self.ops.get_quote(&self.device, cmd.request, &mut buf) {
                Ok(()) => {
                    if known != i {
                        tracing::info!(device = %self.device.display(), command = cmd.definition,
                            request = format_args!("{:#x}", cmd.request), "tdx_guest answers TDX_CMD_GET_QUOTE");
                        self.known_command.store(i, Ordering::Release);
                    }
                    return Ok(buf);
                }
                Err(DeviceError::Ioctl(e)) if not_this_command(&e) => {
                    tracing::debug!(device = %self.device.display(), command = cmd.definition, error = %e,
                        "TDX_CMD_GET_QUOTE encoding not recognised");
                    refused.push(format!("{} ({:#x}): {e}", cmd.definition, cmd.request));
                }
                Err(DeviceError::Ioctl(errno)) => {
                    return Err(CollectError::TdxIoctl {
                        request: cmd.definition,
                        path: self.device,
                        errno,
                    })
                }
                Err(DeviceError::Open(source)) => {
                    return Err(CollectError::Io {
                        op: "opening",
                        path: self.device,
                        source,
                    })
                }
            }
        }
        Err(CollectError::TdxReportOnly {
            device: self.device,
            refused: refused.join("; "),
        })
    }
}

/// `ENOTTY`: the driver has no such command. `EINVAL`: what some drivers answer for unknown commands,
/// and what the GetQuote kernels answer for a `len` they refuse; both before anything reaches the host.
fn not_this_command(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTTY) | Some(libc::EINVAL))
}

/// Clears the in-flight flag however the worker ends.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl GetQuoteBuf {
    /// The request buffer: header for a TDREPORT-sized input, the TDREPORT, zeros after it (the host may
    /// not see stale memory).
    fn request(tdreport: &[u8; TDREPORT_LEN]) -> Box<GetQuoteBuf> {
        let mut buf = Box::new(GetQuoteBuf {
            hdr: TdxQuoteHdr {
                version: GET_QUOTE_VERSION,
                status: status::SUCCESS,
                in_len: TDREPORT_LEN as u32,
                out_len: 0,
            },
            data: [0; GET_QUOTE_DATA_LEN],
        });
        if let Some(head) = buf.data.get_mut(..TDREPORT_LEN) {
            head.copy_from_slice(tdreport);
        }
        buf
    }
}

/// REPORTDATA as the TDREPORT carries it.
fn tdreport_report_data(tdreport: &[u8; TDREPORT_LEN]) -> Option<&[u8]> {
    tdreport.get(TDREPORT_REPORTDATA..TDREPORT_REPORTDATA + REPORTDATA_LEN)
}

/// Names for the GetQuote `status` values (GHCI 1.0, TDG.VP.VMCALL<GetQuote>).
pub(crate) fn status_meaning(status: u64) -> &'static str {
    match status {
        status::SUCCESS => "GET_QUOTE_SUCCESS",
        status::IN_FLIGHT => {
            "GET_QUOTE_IN_FLIGHT: the kernel returned before the host finished; try again later"
        }
        status::ERROR => "GET_QUOTE_ERROR: the host's quote generation failed",
        status::SERVICE_UNAVAILABLE => {
            "GET_QUOTE_SERVICE_UNAVAILABLE: the host has no reachable quote generation service (QGS)"
        }
        _ => "unknown status",
    }
}

/// The quote in a GetQuote buffer the kernel copied back: `status` must be success and `out_len` within
/// the buffer; the bytes are then the quote (possibly zero-padded), for [`check_tdx_quote`] to judge.
pub(crate) fn decode_reply<'a>(
    buf: &'a GetQuoteBuf,
    device: &Path,
) -> Result<&'a [u8], CollectError> {
    let hdr = buf.hdr;
    if hdr.status != status::SUCCESS {
        return Err(CollectError::GetQuoteStatus {
            path: device.to_path_buf(),
            status: hdr.status,
            meaning: status_meaning(hdr.status),
        });
    }
    let bad_len = || CollectError::GetQuoteLength {
        path: device.to_path_buf(),
        got: hdr.out_len,
        max: GET_QUOTE_DATA_LEN,
    };
    let len = usize::try_from(hdr.out_len).map_err(|_| bad_len())?;
    if len == 0 {
        return Err(bad_len());
    }
    buf.data.get(..len).ok_or_else(bad_len)
}

impl Collector for TdxGuest {
    fn tee(&self) -> TeeKind {
        TeeKind::Tdx
    }

    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, CollectError> {
        let tdreport = self.tdreport(report_data)?;
        let quote = self.get_quote(&tdreport)?;
        let quote = check_tdx_quote("tdx_guest TDX_CMD_GET_QUOTE", &quote, report_data)?;
        Ok(Evidence::Tdx(TdxEvidence { quote }))
    }

    fn describe(&self) -> String {
        let known = self.known_command.load(Ordering::Acquire);
        match GET_QUOTE_COMMANDS.get(known) {
            Some(cmd) => format!(
                "tdx_guest ioctls on {} (TDX_CMD_GET_REPORT0, TDX_CMD_GET_QUOTE = {})",
                self.device.display(),
                cmd.definition
            ),
            None => format!(
                "tdx_guest ioctls on {} (TDX_CMD_GET_REPORT0, legacy TDX_CMD_GET_QUOTE)",
                self.device.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::mem::offset_of;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;
    use std::time::Instant;

    #[test]
    fn struct_layouts_match_the_kernel_uapi() {
        assert_eq!(size_of::<TdxReportReq>(), 1088);
        assert_eq!(offset_of!(TdxReportReq, tdreport), 64);
        assert_eq!(size_of::<TdxQuoteReq>(), 16);
        assert_eq!(offset_of!(TdxQuoteReq, len), 8);
        assert_eq!(size_of::<TdxQuoteHdr>(), 24);
        assert_eq!(offset_of!(TdxQuoteHdr, status), 8);
        assert_eq!(offset_of!(TdxQuoteHdr, in_len), 16);
        assert_eq!(offset_of!(TdxQuoteHdr, out_len), 20);
        // `__u64 data[]` starts right after the header.
        assert_eq!(offset_of!(GetQuoteBuf, data), 24);
        assert_eq!(size_of::<GetQuoteBuf>(), 16384);
    }

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        // Values of the header macros as compiled on x86_64.
        assert_eq!(TDX_CMD_GET_REPORT0, 0xC440_5401);
        let numbers: Vec<u64> = GET_QUOTE_COMMANDS.iter().map(|c| c.request).collect();
        assert_eq!(
            numbers,
            [0xC010_5402, 0x8010_5402, 0xC010_5404, 0x8010_5404]
        );
        // Intel's TDX_CMD_VERIFY_REPORT, _IOWR('T', 2, 264-byte struct), is none of them.
        assert_eq!(ioc(IOC_READ | IOC_WRITE, b'T', 2, 264), 0xC108_5402);
        assert!(!numbers.contains(&0xC108_5402));
    }

    #[test]
    fn request_buffer_encoding() {
        let mut tdreport = [0u8; TDREPORT_LEN];
        for (i, b) in tdreport.iter_mut().enumerate() {
            *b = (i % 251) as u8 + 1;
        }
        let buf = GetQuoteBuf::request(&tdreport);
        assert_eq!(
            buf.hdr,
            TdxQuoteHdr {
                version: 1,
                status: 0,
                in_len: 1024,
                out_len: 0
            }
        );
        assert_eq!(&buf.data[..TDREPORT_LEN], &tdreport[..]);
        assert!(buf.data[TDREPORT_LEN..].iter().all(|&b| b == 0));
    }

    fn reply(status: u64, out_len: u32, fill: u8) -> Box<GetQuoteBuf> {
        let mut buf = GetQuoteBuf::request(&[0; TDREPORT_LEN]);
        buf.hdr.status = status;
        buf.hdr.out_len = out_len;
        buf.data.fill(fill);
        buf
    }

    #[test]
    fn reply_decoding() {
        let dev = Path::new("/dev/tdx_guest");
        let buf = reply(0, 5000, 0xab);
        let got = decode_reply(&buf, dev).unwrap();
        assert_eq!(got.len(), 5000);
        assert!(got.iter().all(|&b| b == 0xab));
        // The largest reply that fits.
        assert_eq!(decode_reply(&reply(0, 16360, 1), dev).unwrap().len(), 16360);

        for (st, name) in [
            (status::IN_FLIGHT, "GET_QUOTE_IN_FLIGHT"),
            (status::ERROR, "GET_QUOTE_ERROR"),
            (status::SERVICE_UNAVAILABLE, "GET_QUOTE_SERVICE_UNAVAILABLE"),
            (0x8000_0000_0000_0002, "unknown status"),
        ] {
            let err = decode_reply(&reply(st, 5000, 0), dev).unwrap_err();
            assert!(
                matches!(&err, CollectError::GetQuoteStatus { status, .. } if *status == st),
                "{err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(name) && msg.contains("/dev/tdx_guest"),
                "{msg}"
            );
            assert_eq!(err.is_transient(), st == status::IN_FLIGHT, "{msg}");
        }

        // Empty and oversized replies.
        for out_len in [0u32, 16361, u32::MAX] {
            let err = decode_reply(&reply(0, out_len, 0), dev).unwrap_err();
            assert!(
                matches!(err, CollectError::GetQuoteLength { got, max: 16360, .. } if got == out_len),
                "{err}"
            );
        }
    }

    /// Plays the kernel and the host: TDREPORTs carrying the REPORTDATA at offset 128, and GetQuote
    /// answered with a simulated quote for the TDREPORT in the buffer, under one of the encodings.
    struct FakeKernel {
        device: twi_core::sim::tdx::SimTdxDevice,
        /// Index into GET_QUOTE_COMMANDS this kernel knows; `None`: a TDREPORT-only driver.
        knows: Option<usize>,
        /// Errno for unknown commands.
        unknown_errno: i32,
        /// Overrides of what the host writes back.
        status: u64,
        out_len: Option<u32>,
        padding: usize,
        /// Put another REPORTDATA into the TDREPORT (a broken driver).
        wrong_report_data: bool,
        /// The quote is made for this REPORTDATA instead of the TDREPORT's (a confused host).
        quote_for: Option<[u8; 64]>,
        /// GetQuote blocks this many milliseconds (a host that does not answer in time).
        block_ms: AtomicU64,
        /// Errno of the known command, instead of success.
        fail_errno: Option<i32>,
        calls: Mutex<Vec<u64>>,
        seen: Mutex<Vec<TdxQuoteHdr>>,
    }

    impl FakeKernel {
        fn new(knows: Option<usize>) -> Self {
            FakeKernel {
                device: sim_tdx_device(),
                knows,
                unknown_errno: libc::ENOTTY,
                status: status::SUCCESS,
                out_len: None,
                padding: 0,
                wrong_report_data: false,
                quote_for: None,
                block_ms: AtomicU64::new(0),
                fail_errno: None,
                calls: Mutex::new(Vec::new()),
                seen: Mutex::new(Vec::new()),
            }
        }
    }

    impl TdxGuestOps for FakeKernel {
        fn get_report0(&self, _: &Path, req: &mut TdxReportReq) -> Result<(), DeviceError> {
            req.tdreport.fill(0x77);
            req.tdreport[0] = 0x81; // REPORTTYPE.TYPE = TDX
            let mut rd = req.reportdata;
            if self.wrong_report_data {
                rd[0] ^= 1;
            }
            req.tdreport[128..192].copy_from_slice(&rd);
            Ok(())
        }

        fn get_quote(
            &self,
            _: &Path,
            request: u64,
            buf: &mut GetQuoteBuf,
        ) -> Result<(), DeviceError> {
            self.calls.lock().unwrap().push(request);
            let known = self.knows.map(|i| GET_QUOTE_COMMANDS[i].request);
            if known != Some(request) {
                return Err(DeviceError::Ioctl(std::io::Error::from_raw_os_error(
                    self.unknown_errno,
                )));
            }
            if let Some(errno) = self.fail_errno {
                return Err(DeviceError::Ioctl(std::io::Error::from_raw_os_error(errno)));
            }
            self.seen.lock().unwrap().push(buf.hdr);
            std::thread::sleep(Duration::from_millis(self.block_ms.load(Ordering::SeqCst)));
            let in_len = buf.hdr.in_len as usize;
            assert_eq!(in_len, TDREPORT_LEN, "the host gets a raw TDREPORT");
            let rd: [u8; 64] = self
                .quote_for
                .unwrap_or_else(|| buf.data[128..192].try_into().unwrap());
            let mut q = self
                .device
                .quote(&rd, &twi_core::sim::tdx::TdParams::default())
                .unwrap();
            q.extend(std::iter::repeat_n(0, self.padding));
            buf.data.fill(0);
            buf.data[..q.len()].copy_from_slice(&q);
            buf.hdr.status = self.status;
            buf.hdr.out_len = self.out_len.unwrap_or(q.len() as u32);
            Ok(())
        }
    }

    fn sim_tdx_device() -> twi_core::sim::tdx::SimTdxDevice {
        use std::sync::OnceLock;
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        let dir = DIR.get_or_init(|| {
            let d = tempfile::tempdir().unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            twi_core::sim::tdx::init(d.path(), &twi_core::sim::tdx::TdxInitOptions::new(now))
                .unwrap();
            d
        });
        twi_core::sim::tdx::SimTdxDevice::open(dir.path()).unwrap()
    }

    fn guest(kernel: FakeKernel) -> (TdxGuest, Arc<FakeKernel>) {
        guest_with_timeout(kernel, Duration::from_secs(20))
    }

    fn guest_with_timeout(kernel: FakeKernel, timeout: Duration) -> (TdxGuest, Arc<FakeKernel>) {
        let kernel = Arc::new(kernel);
        let g = TdxGuest::with_ops(PathBuf::from("/dev/tdx_guest"), timeout, kernel.clone());
        (g, kernel)
    }

    #[test]
    fn quote_through_each_known_encoding() {
        for i in 0..GET_QUOTE_COMMANDS.len() {
            let mut k = FakeKernel::new(Some(i));
            k.padding = 100; // padded as platforms deliver it
            let (g, kernel) = guest(k);
            assert_eq!(g.tee(), TeeKind::Tdx);
            let rd = [0x40 + i as u8; 64];
            let Evidence::Tdx(ev) = g.collect(&rd).unwrap() else {
                panic!("TDX source returned non-TDX evidence")
            };
            let q = twi_core::tdx::Quote::parse(&ev.quote).unwrap();
            assert_eq!(q.report_data(), &rd);
            assert_eq!(q.padding_len(), 0, "padding trimmed before sending");
            // Unknown encodings tried first, in table order; the right one once.
            let calls = kernel.calls.lock().unwrap().clone();
            let want: Vec<u64> = GET_QUOTE_COMMANDS[..=i].iter().map(|c| c.request).collect();
            assert_eq!(calls, want);
            // What the host saw: version 1, no status, a 1024-byte input, no output yet.
            assert_eq!(
                kernel.seen.lock().unwrap()[0],
                TdxQuoteHdr {
                    version: 1,
                    status: 0,
                    in_len: 1024,
                    out_len: 0
                }
            );
            assert!(
                g.describe().contains(GET_QUOTE_COMMANDS[i].definition),
                "{}",
                g.describe()
            );
            // The working encoding is remembered: the next quote is one call.
            kernel.calls.lock().unwrap().clear();
            g.collect(&[1; 64]).unwrap();
            assert_eq!(
                *kernel.calls.lock().unwrap(),
                [GET_QUOTE_COMMANDS[i].request]
            );
        }
    }

    #[test]
    fn report_only_driver_gives_the_configfs_advice() {
        for errno in [libc::ENOTTY, libc::EINVAL] {
            let mut k = FakeKernel::new(None);
            k.unknown_errno = errno;
            let (g, kernel) = guest(k);
            let err = g.collect(&[3; 64]).unwrap_err();
            assert!(matches!(err, CollectError::TdxReportOnly { .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains("no GetQuote") && msg.contains("configfs-tsm"),
                "{msg}"
            );
            for c in GET_QUOTE_COMMANDS {
                assert!(msg.contains(c.definition), "{msg}");
            }
            assert_eq!(kernel.calls.lock().unwrap().len(), 4);
            assert!(!err.is_transient());
        }
    }

    #[test]
    fn other_errno_stops_and_names_the_command() {
        let mut k = FakeKernel::new(Some(2));
        k.fail_errno = Some(libc::EIO);
        let (g, kernel) = guest(k);
        let err = g.collect(&[3; 64]).unwrap_err();
        assert!(
            matches!(&err, CollectError::TdxIoctl { errno, .. } if errno.raw_os_error() == Some(libc::EIO)),
            "{err}"
        );
        assert!(err.to_string().contains("_IOWR('T', 4"), "{err}");
        assert_eq!(
            kernel.calls.lock().unwrap().len(),
            3,
            "no further encodings after EIO"
        );

        let mut k = FakeKernel::new(Some(0));
        k.fail_errno = Some(libc::EINTR);
        let (g, _) = guest(k);
        let err = g.collect(&[3; 64]).unwrap_err();
        assert!(err.is_transient(), "{err}");
    }

    #[test]
    fn host_status_and_length_errors() {
        let mut k = FakeKernel::new(Some(0));
        k.status = status::SERVICE_UNAVAILABLE;
        let (g, _) = guest(k);
        let err = g.collect(&[5; 64]).unwrap_err();
        assert!(err.to_string().contains("QGS"), "{err}");

        let mut k = FakeKernel::new(Some(0));
        k.status = status::IN_FLIGHT;
        let (g, _) = guest(k);
        assert!(g.collect(&[5; 64]).unwrap_err().is_transient());

        // A reply whose out_len cuts the quote short.
        let mut k = FakeKernel::new(Some(0));
        k.out_len = Some(600);
        let (g, _) = guest(k);
        let err = g.collect(&[5; 64]).unwrap_err();
        assert!(matches!(err, CollectError::QuoteInvalid { .. }), "{err}");

        // A reply claiming more than the buffer holds.
        let mut k = FakeKernel::new(Some(0));
        k.out_len = Some(20_000);
        let (g, _) = guest(k);
        let err = g.collect(&[5; 64]).unwrap_err();
        assert!(
            matches!(err, CollectError::GetQuoteLength { got: 20_000, .. }),
            "{err}"
        );
    }

    #[test]
    fn report_data_is_checked_in_tdreport_and_quote() {
        let mut k = FakeKernel::new(Some(0));
        k.wrong_report_data = true;
        let (g, kernel) = guest(k);
        let err = g.collect(&[9; 64]).unwrap_err();
        assert!(
            matches!(err, CollectError::ReportDataMismatch { source_name } if source_name.contains("GET_REPORT0")),
            "{err}"
        );
        assert!(
            kernel.calls.lock().unwrap().is_empty(),
            "no quote for a foreign TDREPORT"
        );
        assert!(g.probe().is_err());

        let mut k = FakeKernel::new(Some(0));
        k.quote_for = Some([1; 64]);
        let (g, _) = guest(k);
        let err = g.collect(&[9; 64]).unwrap_err();
        assert!(
            matches!(err, CollectError::ReportDataMismatch { source_name } if source_name.contains("GET_QUOTE")),
            "{err}"
        );
    }

    #[test]
    fn probe_only_asks_for_a_tdreport() {
        let (g, kernel) = guest(FakeKernel::new(None));
        g.probe().unwrap();
        assert!(kernel.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn slow_host_times_out_and_blocks_until_the_request_ends() {
        let k = FakeKernel::new(Some(0));
        k.block_ms.store(600, Ordering::SeqCst);
        let (g, kernel) = guest_with_timeout(k, Duration::from_millis(100));
        let start = Instant::now();
        let err = g.collect(&[2; 64]).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_millis(550),
            "we did not wait for the host"
        );
        assert!(matches!(err, CollectError::GetQuoteTimeout { .. }), "{err}");
        assert!(err.is_transient());
        assert!(err.to_string().contains("100ms"), "{err}");
        // The request is still inside the (fake) kernel: refused at once, no second thread.
        let err = g.collect(&[2; 64]).unwrap_err();
        assert!(matches!(err, CollectError::GetQuoteBusy { .. }), "{err}");
        assert!(err.is_transient());
        assert_eq!(kernel.calls.lock().unwrap().len(), 1);
        // Once it ends, quotes work again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while g.in_flight.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "worker never finished");
            std::thread::sleep(Duration::from_millis(20));
        }
        kernel.block_ms.store(0, Ordering::SeqCst);
        let Evidence::Tdx(ev) = g.collect(&[4; 64]).unwrap() else {
            panic!("TDX source returned non-TDX evidence")
        };
        let q = twi_core::tdx::Quote::parse(&ev.quote).unwrap();
        assert_eq!(q.report_data(), &[4; 64]);
    }

    #[test]
    fn regular_file_is_enotty_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tdx_guest");
        std::fs::write(&path, b"").unwrap();
        let g = TdxGuest::new(path.clone());
        let err = g.probe().unwrap_err();
        assert!(
            matches!(&err, CollectError::TdxIoctl { errno, request: "TDX_CMD_GET_REPORT0", .. }
                if errno.raw_os_error() == Some(libc::ENOTTY)),
            "{err}"
        );
        assert!(err.to_string().contains("tdx_guest device"), "{err}");
        // GetQuote on a regular file: every encoding is ENOTTY, so "no GetQuote".
        let tdreport = [0u8; TDREPORT_LEN];
        let err = g.get_quote(&tdreport).unwrap_err();
        assert!(matches!(err, CollectError::TdxReportOnly { .. }), "{err}");
        assert!(!g.in_flight.load(Ordering::Acquire));
    }

    #[test]
    fn missing_device_names_the_path() {
        let g = TdxGuest::new(PathBuf::from("/nonexistent/tdx_guest"));
        let err = g.collect(&[0; 64]).unwrap_err();
        assert!(matches!(err, CollectError::Io { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/tdx_guest"), "{err}");
    }
}

//! SEV-SNP reports through the legacy `/dev/sev-guest` ioctls (Linux `include/uapi/linux/sev-guest.h`),
//! for kernels without configfs-tsm.
//!
//! `SNP_GET_EXT_REPORT` returns the report and the host's certificate table in one call. When the
//! certificate buffer is too small the kernel fails with `EIO`, `vmm_error = SNP_GUEST_VMM_ERR_INVALID_LEN`
//! and writes the size the host needs into `certs_len`; we retry once with that size. Hosts without
//! extended-request support make the extended call fail, and then `SNP_GET_REPORT` (report only) is used.

// The ioctl needs raw pointers to #[repr(C)] structs the kernel reads and writes; there is no safe
// wrapper in our dependency set. The one `unsafe` block is the ioctl call itself.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use twi_core::snp::{layout, MAX_CERT_TABLE_LEN};

use super::{check_snp_report, CollectError, Collector};
use crate::wire::{Evidence, SnpEvidence, TeeKind};

/// `struct snp_report_req`.
#[repr(C)]
#[derive(Clone, Copy)]
struct SnpReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
}

/// `struct snp_ext_report_req`.
#[repr(C)]
#[derive(Clone, Copy)]
struct SnpExtReportReq {
    data: SnpReportReq,
    certs_address: u64,
    certs_len: u32,
}

/// `struct snp_report_resp`: the firmware's MSG_REPORT_RSP in a fixed 4000-byte buffer.
#[repr(C)]
struct SnpReportResp {
    data: [u8; RESP_LEN],
}

/// `struct snp_guest_request_ioctl` (the `exitinfo2` union read as one u64).
#[repr(C)]
#[derive(Clone, Copy)]
struct SnpGuestRequestIoctl {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

const RESP_LEN: usize = 4000;
/// MSG_REPORT_RSP header: status u32, report_size u32, 24 reserved bytes.
const RESP_HEADER_LEN: usize = 32;
const SNP_GUEST_MSG_VERSION: u8 = 1;

const fn iowr(ty: u8, nr: u8, size: usize) -> u64 {
    // Linux asm-generic/ioctl.h: dir(2 bits, READ|WRITE = 3) << 30 | size(14 bits) << 16 | type << 8 | nr.
    (3u64 << 30) | ((size as u64 & 0x3fff) << 16) | ((ty as u64) << 8) | nr as u64
}

const SNP_GET_REPORT: u64 = iowr(b'S', 0x0, size_of::<SnpGuestRequestIoctl>());
const SNP_GET_EXT_REPORT: u64 = iowr(b'S', 0x2, size_of::<SnpGuestRequestIoctl>());

/// `SNP_GUEST_VMM_ERR_INVALID_LEN`: the certificate buffer is too small.
const VMM_ERR_INVALID_LEN: u32 = 1;
/// `SNP_GUEST_VMM_ERR_BUSY`: the hypervisor throttles guest requests.
const VMM_ERR_BUSY: u32 = 2;
/// The kernel accepts certificate buffers in whole pages.
const PAGE: usize = 4096;
/// First certificate buffer: the kernel's SEV_FW_BLOB_MAX_SIZE, room for VCEK + ASK + ARK.
const INITIAL_CERTS_LEN: usize = 4 * PAGE;

/// Evidence from `/dev/sev-guest`.
pub struct SevGuest {
    device: PathBuf,
    vmpl: u32,
}

impl SevGuest {
    /// `vmpl`: the VMPL to request the report at (0 when unset).
    pub fn new(device: PathBuf, vmpl: Option<u32>) -> Self {
        SevGuest {
            device,
            vmpl: vmpl.unwrap_or(0),
        }
    }

    fn collect_snp(&self, report_data: &[u8; 64]) -> Result<Evidence, CollectError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.device)
            .map_err(|source| CollectError::Io {
                op: "opening",
                path: self.device.clone(),
                source,
            })?;
        let req = SnpReportReq {
            user_data: *report_data,
            vmpl: self.vmpl,
            rsvd: [0; 28],
        };

        let mut certs_len = INITIAL_CERTS_LEN;
        let mut retried = false;
        loop {
            let mut certs = vec![0u8; certs_len];
            let mut ext = SnpExtReportReq {
                data: req,
                certs_address: certs.as_mut_ptr() as u64,
                certs_len: u32::try_from(certs_len).unwrap_or(u32::MAX),
            };
            let mut resp = Box::new(SnpReportResp {
                data: [0; RESP_LEN],
            });
            let outcome = guest_request(
                &file,
                SNP_GET_EXT_REPORT,
                std::ptr::from_mut(&mut ext).cast(),
                &mut resp,
            );
            match outcome {
                Ok(()) => {
                    let report = parse_report_response(&resp.data)?;
                    check_snp_report("SNP_GET_EXT_REPORT", &report, report_data)?;
                    let used = usize::try_from(ext.certs_len)
                        .unwrap_or(usize::MAX)
                        .min(certs.len());
                    certs.truncate(used);
                    return Ok(Evidence::Snp(SnpEvidence {
                        report,
                        cert_table: trim_cert_table(certs),
                    }));
                }
                Err(e) if e.vmm_error == VMM_ERR_INVALID_LEN && !retried => {
                    let want = usize::try_from(ext.certs_len).unwrap_or(usize::MAX);
                    if want > MAX_CERT_TABLE_LEN {
                        return Err(CollectError::CertTableTooLarge {
                            got: want,
                            max: MAX_CERT_TABLE_LEN,
                        });
                    }
                    certs_len = want.div_ceil(PAGE).max(1) * PAGE;
                    retried = true;
                }
                Err(e) if e.vmm_error == VMM_ERR_BUSY => {
                    return Err(CollectError::Busy {
                        request: "SNP_GET_EXT_REPORT",
                        path: self.device.clone(),
                    })
                }
                Err(e) if e.no_extended_support() => {
                    tracing::debug!(errno = %e.errno, "extended report unavailable, requesting the report alone");
                    return self.plain_report(&file, req, report_data);
                }
                Err(e) => return Err(e.into_error("SNP_GET_EXT_REPORT", &self.device)),
            }
        }
    }

    fn plain_report(
        &self,
        file: &std::fs::File,
        mut req: SnpReportReq,
        report_data: &[u8; 64],
    ) -> Result<Evidence, CollectError> {
        let mut resp = Box::new(SnpReportResp {
            data: [0; RESP_LEN],
        });
        guest_request(
            file,
            SNP_GET_REPORT,
            std::ptr::from_mut(&mut req).cast(),
            &mut resp,
        )
        .map_err(|e| {
            if e.vmm_error == VMM_ERR_BUSY {
                CollectError::Busy {
                    request: "SNP_GET_REPORT",
                    path: self.device.clone(),
                }
            } else {
                e.into_error("SNP_GET_REPORT", &self.device)
            }
        })?;
        let report = parse_report_response(&resp.data)?;
        check_snp_report("SNP_GET_REPORT", &report, report_data)?;
        Ok(Evidence::Snp(SnpEvidence {
            report,
            cert_table: None,
        }))
    }
}

impl Collector for SevGuest {
    fn tee(&self) -> TeeKind {
        TeeKind::Snp
    }

    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, CollectError> {
        self.collect_snp(report_data)
    }

    fn describe(&self) -> String {
        format!(
            "sev-guest ioctl on {} (vmpl {})",
            self.device.display(),
            self.vmpl
        )
    }
}

/// A failed guest request as the kernel reported it.
struct RequestFailure {
    errno: std::io::Error,
    fw_error: u32,
    vmm_error: u32,
}

impl RequestFailure {
    /// The extended request is not available: an old kernel without the ioctl (ENOTTY), or a hypervisor
    /// that refuses extended guest requests (EIO with a generic hypervisor error and no firmware error).
    fn no_extended_support(&self) -> bool {
        match self.errno.raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP) => true,
            Some(libc::EIO) => self.fw_error == 0 && self.vmm_error == u32::MAX,
            _ => false,
        }
    }

    fn into_error(self, request: &'static str, path: &std::path::Path) -> CollectError {
        CollectError::Ioctl {
            request,
            path: path.to_path_buf(),
            errno: self.errno,
            fw_error: self.fw_error,
            vmm_error: self.vmm_error,
        }
    }
}

/// Issues one guest request. `req` points at the request struct matching `request`; both it and `resp`
/// are only used for the duration of the call.
fn guest_request(
    file: &std::fs::File,
    request: u64,
    req: *mut libc::c_void,
    resp: &mut SnpReportResp,
) -> Result<(), RequestFailure> {
    let mut ioctl_arg = SnpGuestRequestIoctl {
        msg_version: SNP_GUEST_MSG_VERSION,
        req_data: req as u64,
        resp_data: std::ptr::from_mut(resp) as u64,
        exitinfo2: 0,
    };
    // The request number type differs between libc flavours (c_ulong on glibc, c_int on musl).
    #[allow(clippy::cast_possible_truncation, clippy::useless_conversion)]
    let request = request as libc::Ioctl;
    // SAFETY: `ioctl_arg` is a live, properly aligned #[repr(C)] `snp_guest_request_ioctl`. Its
    // `req_data` and `resp_data` point at live #[repr(C)] structs of the sizes the kernel expects for
    // `request` (the request struct owned by the caller, and a 4000-byte response buffer), and for the
    // extended request, `certs_address`/`certs_len` describe a live buffer of exactly that many bytes.
    // The caller keeps all of them alive and unaliased until this call returns; the kernel does not
    // retain the pointers afterwards.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            request,
            std::ptr::from_mut(&mut ioctl_arg),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let errno = std::io::Error::last_os_error();
    Err(RequestFailure {
        errno,
        fw_error: (ioctl_arg.exitinfo2 & 0xffff_ffff) as u32,
        vmm_error: (ioctl_arg.exitinfo2 >> 32) as u32,
    })
}

/// Names for the MSG_REPORT_RSP status values of the SNP firmware ABI (56860, Table 24).
fn status_meaning(status: u32) -> &'static str {
    match status {
        0x16 => "INVALID_PARAM: e.g. a VMPL below the guest's own",
        0x27 => "INVALID_KEY_SEL",
        _ => "unknown status",
    }
}

/// Extracts the report from MSG_REPORT_RSP, checking the firmware status and the size it claims.
fn parse_report_response(resp: &[u8; RESP_LEN]) -> Result<Vec<u8>, CollectError> {
    let word = |at: usize| {
        resp.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .unwrap_or(0)
    };
    let status = word(0);
    if status != 0 {
        return Err(CollectError::FirmwareStatus {
            status,
            meaning: status_meaning(status),
        });
    }
    let size = usize::try_from(word(4)).unwrap_or(usize::MAX);
    if size != layout::REPORT_LEN {
        return Err(CollectError::ReportLength {
            source_name: "sev-guest MSG_REPORT_RSP",
            got: size,
            want: layout::REPORT_LEN,
        });
    }
    resp.get(RESP_HEADER_LEN..RESP_HEADER_LEN + size)
        .map(<[u8]>::to_vec)
        .ok_or(CollectError::ReportLength {
            source_name: "sev-guest MSG_REPORT_RSP",
            got: size,
            want: layout::REPORT_LEN,
        })
}

/// Cuts the page-sized certificate buffer down to the GUID table the host actually wrote (entries up to
/// the all-zero terminator, and the certificates they point to), so we do not ship kilobytes of zeros.
/// An all-zero buffer means the host has no certificates. A table we cannot make sense of is passed on
/// whole: the server's parser decides.
fn trim_cert_table(mut certs: Vec<u8>) -> Option<Vec<u8>> {
    if certs.iter().all(|&b| b == 0) {
        return None;
    }
    const ENTRY: usize = 24;
    let mut end = 0usize;
    let mut at = 0usize;
    loop {
        let Some(entry) = certs.get(at..at + ENTRY) else {
            return Some(certs); // no terminator: malformed, leave it to the verifier
        };
        at += ENTRY;
        if entry.iter().all(|&b| b == 0) {
            end = end.max(at);
            break;
        }
        let field = |i: usize| {
            entry
                .get(i..i + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .and_then(|v| usize::try_from(v).ok())
        };
        let (Some(offset), Some(len)) = (field(16), field(20)) else {
            return Some(certs);
        };
        end = end.max(offset.saturating_add(len));
    }
    if end <= certs.len() {
        certs.truncate(end);
    }
    Some(certs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn struct_layouts_match_the_kernel_uapi() {
        assert_eq!(size_of::<SnpReportReq>(), 96);
        assert_eq!(offset_of!(SnpReportReq, vmpl), 64);
        assert_eq!(size_of::<SnpExtReportReq>(), 112);
        assert_eq!(offset_of!(SnpExtReportReq, certs_address), 96);
        assert_eq!(offset_of!(SnpExtReportReq, certs_len), 104);
        assert_eq!(size_of::<SnpReportResp>(), 4000);
        assert_eq!(size_of::<SnpGuestRequestIoctl>(), 32);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, req_data), 8);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, resp_data), 16);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, exitinfo2), 24);
    }

    #[test]
    fn ioctl_numbers_match_the_kernel() {
        // Values of _IOWR('S', n, struct snp_guest_request_ioctl) as compiled on x86_64.
        assert_eq!(SNP_GET_REPORT, 0xC020_5300);
        assert_eq!(SNP_GET_EXT_REPORT, 0xC020_5302);
    }

    fn response(status: u32, size: u32, fill: u8) -> [u8; RESP_LEN] {
        let mut r = [0u8; RESP_LEN];
        r[0..4].copy_from_slice(&status.to_le_bytes());
        r[4..8].copy_from_slice(&size.to_le_bytes());
        for b in &mut r[RESP_HEADER_LEN..RESP_HEADER_LEN + layout::REPORT_LEN] {
            *b = fill;
        }
        r
    }

    #[test]
    fn response_parsing() {
        let report = parse_report_response(&response(0, 1184, 0xab)).unwrap();
        assert_eq!(report.len(), 1184);
        assert!(report.iter().all(|&b| b == 0xab));

        let err = parse_report_response(&response(0x16, 1184, 0)).unwrap_err();
        assert!(
            matches!(err, CollectError::FirmwareStatus { status: 0x16, .. }),
            "{err}"
        );
        let err = parse_report_response(&response(0, 4000, 0)).unwrap_err();
        assert!(
            matches!(err, CollectError::ReportLength { got: 4000, .. }),
            "{err}"
        );
        let err = parse_report_response(&response(0, 1000, 0)).unwrap_err();
        assert!(
            matches!(err, CollectError::ReportLength { got: 1000, .. }),
            "{err}"
        );
    }

    fn entry(guid: u8, offset: u32, len: u32) -> Vec<u8> {
        let mut e = vec![guid; 16];
        e.extend_from_slice(&offset.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e
    }

    #[test]
    fn cert_table_trimmed_to_what_the_host_wrote() {
        assert_eq!(trim_cert_table(vec![0; PAGE]), None);

        let mut t = entry(1, 72, 10);
        t.extend(entry(2, 82, 5));
        t.extend([0u8; 24]);
        t.extend([0xcc; 15]);
        let want = t.clone();
        t.resize(PAGE, 0);
        assert_eq!(trim_cert_table(t).unwrap(), want);

        // No terminator within the buffer: passed on whole for the verifier to refuse.
        let junk = vec![0x11; 30];
        assert_eq!(trim_cert_table(junk.clone()).unwrap(), junk);
    }

    #[test]
    fn failure_classification() {
        let f = |errno, fw, vmm| RequestFailure {
            errno: std::io::Error::from_raw_os_error(errno),
            fw_error: fw,
            vmm_error: vmm,
        };
        assert!(f(libc::ENOTTY, 0, 0).no_extended_support());
        assert!(f(libc::EIO, 0, u32::MAX).no_extended_support());
        assert!(!f(libc::EIO, 0, VMM_ERR_INVALID_LEN).no_extended_support());
        assert!(!f(libc::EIO, 0x16, u32::MAX).no_extended_support());
        assert!(!f(libc::EPERM, 0, 0).no_extended_support());
    }

    #[test]
    fn missing_device_names_the_path() {
        let g = SevGuest::new(PathBuf::from("/nonexistent/sev-guest"), None);
        let err = g.collect(&[0; 64]).unwrap_err();
        assert!(matches!(err, CollectError::Io { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/sev-guest"), "{err}");
    }
}

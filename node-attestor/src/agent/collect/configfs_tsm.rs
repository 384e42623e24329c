//! SEV-SNP reports and Intel TDX quotes through the Linux configfs-tsm interface
//! (`Documentation/ABI/testing/configfs-tsm-report`), the vendor-neutral way current kernels expose
//! attestation reports.
//!
//! One report = one fresh entry directory under the report root: check `provider`, write `inblob` (our
//! REPORT_DATA) and optionally `privlevel` (the VMPL), read `outblob` (the ATTESTATION_REPORT) and
//! `auxblob` (the host's certificate table, if any), then remove the entry. The kernel bumps `generation`
//! on every write to the entry; reading it before and after tells us whether someone else wrote to our
//! entry in between, in which case the report may carry their REPORT_DATA.
//!
//! For TDX (provider `tdx_guest`) the same steps give a DCAP quote in `outblob`: the kernel asks the
//! host's quoting service for it; there is no `privlevel` and no `auxblob` (the PCK chain is inside the
//! quote, the collateral is the server's).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand_core::{OsRng, RngCore};
use twi_core::snp::MAX_CERT_TABLE_LEN;

use super::{check_snp_report, check_tdx_quote, CollectError, Collector};
use crate::wire::{Evidence, SnpEvidence, TdxEvidence, TeeKind};

/// The `provider` value of the sev-guest driver.
pub const SEV_GUEST_PROVIDER: &str = "sev_guest";
/// The `provider` value of the tdx-guest driver.
pub const TDX_GUEST_PROVIDER: &str = "tdx_guest";

/// The provider a report entry must have for `tee`.
pub fn provider_of(tee: TeeKind) -> &'static str {
    match tee {
        TeeKind::Tdx => TDX_GUEST_PROVIDER,
        _ => SEV_GUEST_PROVIDER,
    }
}

/// The kernel's own limit for `outblob` of any provider is far above a 1184-byte report; this only keeps a
/// misbehaving attribute from making us read without bound.
const MAX_OUTBLOB_LEN: usize = 16 * 1024;
/// Small text attributes (`provider`, `generation`, `privlevel_floor`).
const MAX_TEXT_LEN: usize = 256;

/// The file operations on a report entry, so that tests can play the kernel's side effects (populating
/// the entry at mkdir, bumping `generation` on writes) on top of a plain directory.
pub(crate) trait EntryOps: Send + Sync {
    fn create_dir(&self, path: &Path) -> std::io::Result<()>;
    /// Writes an existing attribute in one `write` (configfs commits binary attributes at close).
    fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()>;
    /// Reads at most `limit + 1` bytes, so the caller can tell "too large" from "exactly `limit`".
    fn read(&self, path: &Path, limit: usize) -> std::io::Result<Vec<u8>>;
    /// configfs removes an entry with its attributes by `rmdir`.
    fn remove_dir(&self, path: &Path) -> std::io::Result<()>;
}

/// The real thing: plain system calls on configfs.
pub(crate) struct StdOps;

impl EntryOps for StdOps {
    fn create_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)
    }

    fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        // No create, no truncate: attributes exist once the kernel made the entry.
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(data)?;
        f.flush()
    }

    fn read(&self, path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
        let f = std::fs::File::open(path)?;
        let mut buf = Vec::new();
        f.take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
            .read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir(path)
    }
}

/// Evidence from configfs-tsm (`/sys/kernel/config/tsm/report` by default).
pub struct ConfigfsTsm {
    root: PathBuf,
    vmpl: Option<u32>,
    tee: TeeKind,
    ops: Arc<dyn EntryOps>,
}

impl ConfigfsTsm {
    /// SEV-SNP reports. `vmpl`: written to `privlevel` when set; otherwise the kernel's default level
    /// is used.
    pub fn new(root: PathBuf, vmpl: Option<u32>) -> Self {
        ConfigfsTsm {
            root,
            vmpl,
            tee: TeeKind::Snp,
            ops: Arc::new(StdOps),
        }
    }

    /// TDX quotes (provider `tdx_guest`).
    pub fn new_tdx(root: PathBuf) -> Self {
        ConfigfsTsm {
            root,
            vmpl: None,
            tee: TeeKind::Tdx,
            ops: Arc::new(StdOps),
        }
    }

    #[cfg(test)]
    fn with_ops(root: PathBuf, vmpl: Option<u32>, ops: Arc<dyn EntryOps>) -> Self {
        ConfigfsTsm {
            root,
            vmpl,
            tee: TeeKind::Snp,
            ops,
        }
    }

    #[cfg(test)]
    fn tdx_with_ops(root: PathBuf, ops: Arc<dyn EntryOps>) -> Self {
        ConfigfsTsm {
            root,
            vmpl: None,
            tee: TeeKind::Tdx,
            ops,
        }
    }

    fn collect_tdx(&self, report_data: &[u8; 64]) -> Result<Evidence, CollectError> {
        let entry = Entry::create(self)?;
        let provider = entry.read_text("provider")?;
        if provider != TDX_GUEST_PROVIDER {
            return Err(CollectError::WrongProvider {
                path: entry.path.join("provider"),
                got: provider,
                want: TDX_GUEST_PROVIDER,
            });
        }
        let before = entry.read_u64("generation")?;
        entry.write("inblob", report_data)?;
        let quote = entry.read_bin("outblob", twi_core::tdx::MAX_QUOTE_LEN)?;
        let after = entry.read_u64("generation")?;
        if after < before || after - before > 1 {
            return Err(CollectError::Race {
                path: entry.path.clone(),
                before,
                after,
                writes: 1,
            });
        }
        let quote = check_tdx_quote("configfs-tsm outblob", &quote, report_data)?;
        Ok(Evidence::Tdx(TdxEvidence { quote }))
    }

    /// The provider behind this report root (`sev_guest`, `tdx_guest`, ...); needs an entry to read it.
    ///
    /// # Errors
    ///
    /// [`CollectError`] when the entry cannot be made or read.
    pub fn provider(&self) -> Result<String, CollectError> {
        let entry = Entry::create(self)?;
        entry.read_text("provider")
    }

    fn collect_snp(&self, report_data: &[u8; 64]) -> Result<Evidence, CollectError> {
        let entry = Entry::create(self)?;
        let provider = entry.read_text("provider")?;
        if provider != SEV_GUEST_PROVIDER {
            return Err(CollectError::WrongProvider {
                path: entry.path.join("provider"),
                got: provider,
                want: SEV_GUEST_PROVIDER,
            });
        }
        if let Some(want) = self.vmpl {
            // Older kernels have no floor attribute; then the write below is the only check.
            if entry.path.join("privlevel_floor").exists() {
                let floor = entry.read_u64("privlevel_floor")?;
                if u64::from(want) < floor {
                    return Err(CollectError::PrivlevelFloor {
                        path: entry.path.join("privlevel_floor"),
                        want,
                        floor: u32::try_from(floor).unwrap_or(u32::MAX),
                    });
                }
            }
        }

        let before = entry.read_u64("generation")?;
        let mut writes = 0u64;
        entry.write("inblob", report_data)?;
        writes += 1;
        if let Some(vmpl) = self.vmpl {
            entry.write("privlevel", format!("{vmpl}\n").as_bytes())?;
            writes += 1;
        }
        let report = entry.read_bin("outblob", MAX_OUTBLOB_LEN)?;
        let aux = entry.read_optional_bin("auxblob", MAX_CERT_TABLE_LEN)?;
        let after = entry.read_u64("generation")?;
        if after < before || after - before > writes {
            return Err(CollectError::Race {
                path: entry.path.clone(),
                before,
                after,
                writes,
            });
        }
        check_snp_report("configfs-tsm outblob", &report, report_data)?;
        Ok(Evidence::Snp(SnpEvidence {
            report,
            cert_table: aux.filter(|t| !t.is_empty()),
        }))
    }
}

impl Collector for ConfigfsTsm {
    fn tee(&self) -> TeeKind {
        self.tee
    }

    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, CollectError> {
        match self.tee {
            TeeKind::Tdx => self.collect_tdx(report_data),
            _ => self.collect_snp(report_data),
        }
    }

    fn describe(&self) -> String {
        match (self.tee, self.vmpl) {
            (TeeKind::Tdx, _) => format!("configfs-tsm at {} (TDX quotes)", self.root.display()),
            (_, Some(v)) => format!("configfs-tsm at {} (privlevel {v})", self.root.display()),
            (_, None) => format!("configfs-tsm at {}", self.root.display()),
        }
    }
}

/// One report entry, removed when dropped, also when collection failed half-way.
struct Entry<'a> {
    path: PathBuf,
    ops: &'a dyn EntryOps,
}

impl<'a> Entry<'a> {
    fn create(tsm: &'a ConfigfsTsm) -> Result<Self, CollectError> {
        let mut suffix = [0u8; 8];
        OsRng.fill_bytes(&mut suffix);
        let name = format!("twi-{}-{}", std::process::id(), hex::encode(suffix));
        let path = tsm.root.join(name);
        tsm.ops
            .create_dir(&path)
            .map_err(|source| CollectError::Io {
                op: "creating report entry",
                path: path.clone(),
                source,
            })?;
        Ok(Entry {
            path,
            ops: tsm.ops.as_ref(),
        })
    }

    fn read_bin(&self, attr: &str, limit: usize) -> Result<Vec<u8>, CollectError> {
        let path = self.path.join(attr);
        let data = self
            .ops
            .read(&path, limit)
            .map_err(|source| CollectError::Io {
                op: "reading",
                path: path.clone(),
                source,
            })?;
        if data.len() > limit {
            return Err(CollectError::BadAttribute {
                path,
                detail: format!("more than {limit} bytes"),
            });
        }
        Ok(data)
    }

    /// `auxblob` is absent on kernels without it and empty when the host supplied no certificates.
    fn read_optional_bin(&self, attr: &str, limit: usize) -> Result<Option<Vec<u8>>, CollectError> {
        if !self.path.join(attr).exists() {
            return Ok(None);
        }
        self.read_bin(attr, limit).map(Some)
    }

    fn read_text(&self, attr: &str) -> Result<String, CollectError> {
        let path = self.path.join(attr);
        let data = self.read_bin(attr, MAX_TEXT_LEN)?;
        String::from_utf8(data)
            .map(|s| s.trim().to_owned())
            .map_err(|_| CollectError::BadAttribute {
                path,
                detail: "not UTF-8 text".into(),
            })
    }

    fn read_u64(&self, attr: &str) -> Result<u64, CollectError> {
        let text = self.read_text(attr)?;
        text.parse().map_err(|_| CollectError::BadAttribute {
            path: self.path.join(attr),
            detail: format!("`{text}` is not a decimal number"),
        })
    }

    fn write(&self, attr: &str, data: &[u8]) -> Result<(), CollectError> {
        let path = self.path.join(attr);
        self.ops
            .write(&path, data)
            .map_err(|source| CollectError::Io {
                op: "writing",
                path,
                source,
            })
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Err(err) = self.ops.remove_dir(&self.path) {
            // Leaving an entry behind wastes a little kernel memory but does not affect later reports.
            tracing::warn!(path = %self.path.display(), error = %err, "could not remove configfs-tsm report entry");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    use twi_core::snp::layout;

    /// Plays the kernel on top of a plain temp directory: populates a new entry, bumps `generation` on
    /// writes (plus `race_bumps` more, as another writer would), and produces `outblob` from `inblob`.
    struct FakeKernel {
        provider: String,
        floor: Option<u32>,
        aux: Option<Vec<u8>>,
        race_bumps: u64,
        /// When set, `outblob` is this fixed report instead of one carrying the written inblob.
        fixed_outblob: Option<Vec<u8>>,
        created: Mutex<Vec<PathBuf>>,
        generation: AtomicU64,
    }

    impl FakeKernel {
        fn new() -> Self {
            FakeKernel {
                provider: "sev_guest".into(),
                floor: Some(0),
                aux: Some(b"certificate table".to_vec()),
                race_bumps: 0,
                fixed_outblob: None,
                created: Mutex::new(Vec::new()),
                generation: AtomicU64::new(40),
            }
        }
        fn bump(&self, dir: &Path, by: u64) {
            let g = self.generation.fetch_add(by, Ordering::SeqCst) + by;
            std::fs::write(dir.join("generation"), format!("{g}\n")).unwrap();
        }
    }

    impl EntryOps for FakeKernel {
        fn create_dir(&self, path: &Path) -> std::io::Result<()> {
            StdOps.create_dir(path)?;
            self.created.lock().unwrap().push(path.to_path_buf());
            std::fs::write(path.join("provider"), format!("{}\n", self.provider))?;
            std::fs::write(
                path.join("generation"),
                format!("{}\n", self.generation.load(Ordering::SeqCst)),
            )?;
            std::fs::write(path.join("inblob"), b"")?;
            std::fs::write(path.join("privlevel"), b"0\n")?;
            if let Some(f) = self.floor {
                std::fs::write(path.join("privlevel_floor"), format!("{f}\n"))?;
            }
            std::fs::write(path.join("outblob"), b"")?;
            if let Some(aux) = &self.aux {
                std::fs::write(path.join("auxblob"), aux)?;
            }
            Ok(())
        }

        fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
            StdOps.write(path, data)?;
            let dir = path.parent().unwrap();
            self.bump(dir, 1 + self.race_bumps);
            if path.file_name().unwrap() == "inblob" {
                let report = self.fixed_outblob.clone().unwrap_or_else(|| {
                    let mut r = vec![0u8; layout::REPORT_LEN];
                    r[layout::REPORT_DATA..layout::REPORT_DATA + 64].copy_from_slice(data);
                    r
                });
                std::fs::write(dir.join("outblob"), report)?;
            }
            Ok(())
        }

        fn read(&self, path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
            StdOps.read(path, limit)
        }

        fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
            // configfs drops the attributes with the directory; a plain directory must be emptied first.
            for f in std::fs::read_dir(path)? {
                std::fs::remove_file(f?.path())?;
            }
            StdOps.remove_dir(path)
        }
    }

    fn setup(
        kernel: FakeKernel,
        vmpl: Option<u32>,
    ) -> (tempfile::TempDir, Arc<FakeKernel>, ConfigfsTsm) {
        let dir = tempfile::tempdir().unwrap();
        let kernel = Arc::new(kernel);
        let tsm = ConfigfsTsm::with_ops(dir.path().to_path_buf(), vmpl, kernel.clone());
        (dir, kernel, tsm)
    }

    fn assert_all_removed(dir: &Path, kernel: &FakeKernel) {
        assert!(!kernel.created.lock().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            0,
            "entry left behind"
        );
    }

    #[test]
    fn collects_report_and_aux_and_cleans_up() {
        let (dir, kernel, tsm) = setup(FakeKernel::new(), Some(0));
        let rd = [0x5a; 64];
        let Evidence::Snp(ev) = tsm.collect(&rd).unwrap() else {
            panic!("configfs-tsm SNP source returned non-SNP evidence")
        };
        assert_eq!(
            &ev.report[layout::REPORT_DATA..layout::REPORT_DATA + 64],
            &rd
        );
        assert_eq!(ev.cert_table.as_deref(), Some(&b"certificate table"[..]));
        assert_all_removed(dir.path(), &kernel);
        // The entry got exactly what we asked for.
        assert!(tsm.describe().contains("privlevel 0"));
    }

    #[test]
    fn fresh_entry_per_report() {
        let (dir, kernel, tsm) = setup(FakeKernel::new(), None);
        tsm.collect(&[1; 64]).unwrap();
        tsm.collect(&[2; 64]).unwrap();
        let created = kernel.created.lock().unwrap().clone();
        assert_eq!(created.len(), 2);
        assert_ne!(created[0], created[1]);
        assert_all_removed(dir.path(), &kernel);
    }

    #[test]
    fn absent_or_empty_auxblob_means_no_cert_table() {
        let mut k = FakeKernel::new();
        k.aux = None;
        let (_d, _k, tsm) = setup(k, None);
        let Evidence::Snp(ev) = tsm.collect(&[3; 64]).unwrap() else {
            panic!("configfs-tsm SNP source returned non-SNP evidence")
        };
        assert_eq!(ev.cert_table, None);

        let mut k = FakeKernel::new();
        k.aux = Some(Vec::new());
        let (_d, _k, tsm) = setup(k, None);
        let Evidence::Snp(ev) = tsm.collect(&[3; 64]).unwrap() else {
            panic!("configfs-tsm SNP source returned non-SNP evidence")
        };
        assert_eq!(ev.cert_table, None);
    }

    #[test]
    fn wrong_provider_refused_and_cleaned_up() {
        let mut k = FakeKernel::new();
        k.provider = "tdx_guest".into();
        let (dir, kernel, tsm) = setup(k, None);
        let err = tsm.collect(&[1; 64]).unwrap_err();
        assert!(
            matches!(&err, CollectError::WrongProvider { got, .. } if got == "tdx_guest"),
            "{err}"
        );
        assert_eq!(tsm.provider().unwrap(), "tdx_guest");
        assert_all_removed(dir.path(), &kernel);
    }

    #[test]
    fn concurrent_writer_detected() {
        let mut k = FakeKernel::new();
        k.race_bumps = 1;
        let (dir, kernel, tsm) = setup(k, Some(0));
        let err = tsm.collect(&[1; 64]).unwrap_err();
        assert!(
            matches!(
                err,
                CollectError::Race {
                    before: 40,
                    after: 44,
                    writes: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_transient());
        assert_all_removed(dir.path(), &kernel);
    }

    #[test]
    fn privlevel_below_floor_refused() {
        let mut k = FakeKernel::new();
        k.floor = Some(2);
        let (dir, kernel, tsm) = setup(k, Some(0));
        let err = tsm.collect(&[1; 64]).unwrap_err();
        assert!(
            matches!(
                err,
                CollectError::PrivlevelFloor {
                    want: 0,
                    floor: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_all_removed(dir.path(), &kernel);
        // Without an explicit vmpl the kernel's default applies and nothing is checked or written.
        let mut k = FakeKernel::new();
        k.floor = Some(2);
        let (_d, _k, tsm) = setup(k, None);
        tsm.collect(&[1; 64]).unwrap();
    }

    #[test]
    fn stale_report_refused() {
        let mut k = FakeKernel::new();
        k.fixed_outblob = Some(vec![0u8; layout::REPORT_LEN]);
        let (_d, _k, tsm) = setup(k, None);
        assert!(matches!(
            tsm.collect(&[1; 64]).unwrap_err(),
            CollectError::ReportDataMismatch { .. }
        ));
        let mut k = FakeKernel::new();
        k.fixed_outblob = Some(vec![0u8; 100]);
        let (_d, _k, tsm) = setup(k, None);
        assert!(matches!(
            tsm.collect(&[1; 64]).unwrap_err(),
            CollectError::ReportLength { got: 100, .. }
        ));
    }

    #[test]
    fn oversized_outblob_refused() {
        let mut k = FakeKernel::new();
        k.fixed_outblob = Some(vec![0u8; MAX_OUTBLOB_LEN + 1]);
        let (_d, _k, tsm) = setup(k, None);
        assert!(matches!(
            tsm.collect(&[1; 64]).unwrap_err(),
            CollectError::BadAttribute { .. }
        ));
    }

    /// A fake tdx_guest entry: outblob is a real simulated quote for the written inblob.
    struct FakeTdxKernel {
        inner: FakeKernel,
        device: twi_core::sim::tdx::SimTdxDevice,
        race: bool,
    }

    impl EntryOps for FakeTdxKernel {
        fn create_dir(&self, path: &Path) -> std::io::Result<()> {
            self.inner.create_dir(path)
        }
        fn write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
            StdOps.write(path, data)?;
            let dir = path.parent().unwrap();
            self.inner.bump(dir, if self.race { 2 } else { 1 });
            let rd: [u8; 64] = data.try_into().unwrap();
            let mut q = self
                .device
                .quote(&rd, &twi_core::sim::tdx::TdParams::default())
                .unwrap();
            q.extend_from_slice(&[0; 70]); // padded as platforms deliver it
            std::fs::write(dir.join("outblob"), q)
        }
        fn read(&self, path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
            StdOps.read(path, limit)
        }
        fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
            self.inner.remove_dir(path)
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

    #[test]
    fn tdx_quote_through_configfs() {
        let dir = tempfile::tempdir().unwrap();
        let mut inner = FakeKernel::new();
        inner.provider = "tdx_guest".into();
        inner.aux = None;
        inner.floor = None;
        let kernel = Arc::new(FakeTdxKernel {
            inner,
            device: sim_tdx_device(),
            race: false,
        });
        let tsm = ConfigfsTsm::tdx_with_ops(dir.path().to_path_buf(), kernel.clone());
        assert_eq!(tsm.tee(), TeeKind::Tdx);
        let rd = [0x42; 64];
        let Evidence::Tdx(ev) = tsm.collect(&rd).unwrap() else {
            panic!("TDX source returned non-TDX evidence")
        };
        let q = twi_core::tdx::Quote::parse(&ev.quote).unwrap();
        assert_eq!(q.report_data(), &rd);
        assert_eq!(q.padding_len(), 0, "padding trimmed before sending");
        assert_all_removed(dir.path(), &kernel.inner);
        // A SEV-SNP collector on a tdx_guest entry refuses it.
        let snp = ConfigfsTsm::with_ops(dir.path().to_path_buf(), None, kernel.clone());
        assert!(matches!(
            snp.collect(&rd).unwrap_err(),
            CollectError::WrongProvider { .. }
        ));
    }

    #[test]
    fn tdx_race_and_wrong_provider() {
        let dir = tempfile::tempdir().unwrap();
        let mut inner = FakeKernel::new();
        inner.provider = "tdx_guest".into();
        let kernel = Arc::new(FakeTdxKernel {
            inner,
            device: sim_tdx_device(),
            race: true,
        });
        let tsm = ConfigfsTsm::tdx_with_ops(dir.path().to_path_buf(), kernel);
        assert!(matches!(
            tsm.collect(&[1; 64]).unwrap_err(),
            CollectError::Race { .. }
        ));
        let (_d, _k, snp_entry) = setup(FakeKernel::new(), None);
        let tdx_on_snp =
            ConfigfsTsm::tdx_with_ops(snp_entry.root.clone(), Arc::new(FakeKernel::new()));
        assert!(matches!(
            tdx_on_snp.collect(&[1; 64]).unwrap_err(),
            CollectError::WrongProvider {
                want: "tdx_guest",
                ..
            }
        ));
    }

    #[test]
    fn missing_root_is_an_io_error_naming_the_path() {
        let tsm = ConfigfsTsm::new(PathBuf::from("/nonexistent/tsm/report"), None);
        let err = tsm.collect(&[1; 64]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tsm/report"), "{err}");
    }
}

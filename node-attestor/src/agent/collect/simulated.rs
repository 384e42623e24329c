//! Evidence from the simulated SEV-SNP device of `twi_core::sim`: real report and certificate formats,
//! signed by a test root made with `twi sim init`. For development and tests on machines without
//! SEV-SNP; a server accepts it only if its operator explicitly trusts the simulated root.

use std::sync::Arc;

use twi_core::sim::{GuestParams, SimSnpDevice};

use super::{check_snp_report, CollectError, Collector};
use crate::wire::{Evidence, SnpEvidence, TeeKind};

/// Logged on every simulated collection, so nobody mistakes a simulated agent for a confidential one.
pub const SIMULATED_WARNING: &str =
    "SIMULATED TEE: evidence is signed by a test root, not by AMD hardware";

/// Evidence from a simulated SEV-SNP guest.
pub struct Simulated {
    device: Arc<SimSnpDevice>,
    guest: GuestParams,
    dir: std::path::PathBuf,
}

impl Simulated {
    /// `device` stands for one VM (its REPORT_ID stays the same for its lifetime); `guest` is what the
    /// simulated launch put into every report.
    pub fn new(device: Arc<SimSnpDevice>, guest: GuestParams, dir: std::path::PathBuf) -> Self {
        Simulated { device, guest, dir }
    }
}

impl Collector for Simulated {
    fn tee(&self) -> TeeKind {
        TeeKind::Snp
    }

    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, CollectError> {
        tracing::warn!(sim_dir = %self.dir.display(), "{SIMULATED_WARNING}");
        let ev = self.device.report(report_data, &self.guest)?;
        check_snp_report("simulated device", &ev.report, report_data)?;
        Ok(Evidence::Snp(SnpEvidence {
            report: ev.report,
            cert_table: Some(ev.cert_table).filter(|t| !t.is_empty()),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "SIMULATED SEV-SNP device from {} (policy {:#x}, vmpl {}, report version {})",
            self.dir.display(),
            self.guest.policy,
            self.guest.vmpl,
            self.guest.version
        )
    }
}

//! Evidence from the simulated Intel TDX platform of `twi_core::sim::tdx`: real DCAP v4 quotes, PCK
//! chains and collateral formats, signed by a test root. For development and tests on machines without
//! TDX; a server accepts it only if its operator explicitly trusts the simulated root
//! (`tdx.simulated_roots`), and then marks the agent `sim-tdx` with `simulated:` selectors.

use std::sync::Arc;

use twi_core::sim::tdx::{SimTdxDevice, TdParams};

use super::{check_tdx_quote, CollectError, Collector};
use crate::wire::{Evidence, TdxEvidence, TeeKind};

/// Logged on every simulated collection, so nobody mistakes a simulated agent for a confidential one.
pub const SIMULATED_TDX_WARNING: &str =
    "SIMULATED TEE: TDX quote is signed by a test root, not by Intel hardware";

/// Evidence from a simulated TD.
pub struct SimulatedTdx {
    device: Arc<SimTdxDevice>,
    td: TdParams,
    dir: std::path::PathBuf,
}

impl SimulatedTdx {
    /// `device` is the simulated platform (root set of `dir`); `td` is what the simulated launch put
    /// into every TD report.
    pub fn new(device: Arc<SimTdxDevice>, td: TdParams, dir: std::path::PathBuf) -> Self {
        SimulatedTdx { device, td, dir }
    }
}

impl Collector for SimulatedTdx {
    fn tee(&self) -> TeeKind {
        TeeKind::Tdx
    }

    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, CollectError> {
        tracing::warn!(sim_dir = %self.dir.display(), "{SIMULATED_TDX_WARNING}");
        let quote = self
            .device
            .quote(report_data, &self.td)
            .map_err(CollectError::SimulatedTdx)?;
        let quote = check_tdx_quote("simulated TDX platform", &quote, report_data)?;
        Ok(Evidence::Tdx(TdxEvidence { quote }))
    }

    fn describe(&self) -> String {
        format!(
            "SIMULATED TDX platform from {} (td_attributes {:#x}, mrtd {})",
            self.dir.display(),
            self.td.td_attributes,
            hex::encode(self.td.mrtd)
        )
    }
}

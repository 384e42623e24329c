//! Simulated Intel TDX: a test root set, its collateral and a TD quoting device, for machines without TDX.
//!
//! Everything here produces Intel's REAL wire formats — a DCAP v4 quote (48-byte header, 584-byte TD
//! report body, ECDSA P-256 quote signature, QE report certification data with the PCK chain as
//! certification data type 5), PCK certificates with Intel's SGX extension, DER CRLs, and TCB info /
//! QE identity JSON as the PCS v4 API serves them — so that simulated quotes run through exactly the same
//! parse/verify/appraise code as real quotes. The difference is the root: every certificate and CRL
//! names the organisation [`SIMULATED_INTEL_ORGANIZATION`], and a verifier accepts the chain only when
//! its caller adds the simulated root as a root marked simulated; Intel's pinned root never verifies it.
//!
//! Usage: [`init`] once per machine (or test binary) to create the root set and its collateral in a
//! directory, then [`SimTdxDevice::open`] it and call [`SimTdxDevice::quote`]. The collateral directory
//! (`<dir>/collateral`) has the file names of `shared/testdata/tdx/*/collateral`, which
//! `crate::tdx::Collateral::from_dir` reads. TCB statuses are the verifier's [`crate::tdx::TcbStatus`].

mod certs;
mod collateral;
mod device;
mod init;
#[cfg(test)]
mod tests;

pub use certs::SIMULATED_INTEL_ORGANIZATION;
pub use device::{default_mrtd, default_rtmr, SimTdxDevice, TdParams, INTEL_QE_VENDOR_ID};
pub use init::{init, PlatformTcb, TdxInitOptions, TdxSimLayout, TDX_WARNING};

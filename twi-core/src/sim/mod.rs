//! Simulated AMD SEV-SNP: a test root set and a guest device, for machines without SNP hardware.
//!
//! Everything here produces the REAL wire formats — AMD-style X.509 certificates (RSA-PSS ARK and ASK,
//! an ECDSA P-384 VCEK with AMD's TCB and hwID extensions), 1184-byte ATTESTATION_REPORTs signed at the
//! offsets of [`crate::snp::layout`], and the GUID certificate table of an extended report — so that
//! simulated evidence runs through exactly the same parse/verify/appraise code as real evidence. The
//! difference is the root: every certificate names the organisation [`SIMULATED_ORGANIZATION`], and a
//! verifier accepts the chain only when its caller adds the simulated ARK as a root marked simulated;
//! AMD's pinned roots never verify it.
//!
//! Usage: [`init`] once per machine (or test binary) to create the root set in a directory, then
//! [`SimSnpDevice::open`] it and call [`SimSnpDevice::report`].

mod cert_table;
mod certs;
mod device;
mod error;
mod init;
pub mod tdx;
#[cfg(test)]
mod tests;

pub use cert_table::{encode_cert_table, ARK_GUID, ASK_GUID, VCEK_GUID};
pub use certs::{cert_product_name, SIMULATED_ORGANIZATION};
pub use device::{default_measurement, GuestParams, SimEvidence, SimSnpDevice};
pub use error::SimError;
pub use init::{init, InitOptions, SimLayout, WARNING};

//! TWI verifier core.
//!
//! This crate is the one verification path of the project: the SPIRE server plugin, the `twi` CLI and a
//! relying party all call the same functions here. It knows nothing about SPIRE, gRPC or async runtimes.
//!
//! The shape follows go-sev-guest's split into three steps with three types:
//! * **parse** ([`snp::AttestationReport::parse`]): bytes only, keeps the exact signed bytes;
//! * **verify** ([`snp::Verifier::verify`]): signature and certificate chain to a pinned root at a
//!   caller-given time, producing [`snp::VerifiedSnp`], a type only `verify` can build;
//! * **appraise** ([`snp::appraise`]): policy on verified claims, reporting every failure.
//!
//! The simulated TEE (feature `sim`) produces evidence in the real wire formats, signed by a test root;
//! it goes through the same three steps and is trusted only when the caller names its root.

// Shared by `twi bench` and benches/snp_verify.rs; not part of the API.
#[doc(hidden)]
pub mod bench_support;
pub mod collateral;
pub mod ear;
pub mod error;
pub mod keyfile;
pub mod policy;
#[cfg(feature = "sim")]
pub mod sim;
pub mod snp;
pub mod tdx;

pub use error::{Error, ErrorClass, Violation};

//! AMD SEV-SNP attestation reports: parse, verify to AMD's roots, appraise against policy.

pub mod layout;
mod product;

pub use product::{Product, TcbParts};

//! Errors of the simulated device. None of them ever carries key material: key generation and signing
//! failures report only which key and the library's message.

use std::path::PathBuf;

/// Why creating or using the simulated SEV-SNP root set failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Reading or writing a file of the root set failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `init` found an existing root set and was not told to overwrite it.
    #[error("a simulated root set already exists in {dir} ({existing} present); pass force to replace it")]
    AlreadyInitialized {
        dir: PathBuf,
        existing: &'static str,
    },
    /// An `InitOptions` value is out of range or inconsistent with the product.
    #[error("invalid init option {option}: {detail}")]
    InvalidOption {
        option: &'static str,
        detail: String,
    },
    /// A `GuestParams` value cannot appear in a real report.
    #[error("invalid guest parameter {field}: got {got}, want {want}")]
    InvalidGuestParam {
        field: &'static str,
        got: String,
        want: &'static str,
    },
    /// Generating a key pair failed.
    #[error("generating the {key} key failed: {detail}")]
    KeyGen { key: &'static str, detail: String },
    /// Signing a certificate or a report failed.
    #[error("signing the {what} failed: {detail}")]
    Sign { what: &'static str, detail: String },
    /// Encoding a certificate, key or name failed (DER/PEM).
    #[error("encoding the {what} failed: {detail}")]
    Encode { what: &'static str, detail: String },
    /// A file of the root set exists but cannot be used (wrong format, edited by hand, from another tool).
    #[error("unusable root set file {path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

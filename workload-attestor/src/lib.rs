//! SPIRE WorkloadAttestor plugin `twi-agent-workloadattestor`: a PID in, selectors out.
//!
//! spire-agent asks every workload attestor about the PID at the other end of a Workload API connection
//! (protocol doc §7.3). This plugin answers with what SPIRE's built-in `unix` attestor would say (user and
//! groups), plus the executable's path and SHA-256, the cgroup paths and, for containers, the container ID
//! and Kubernetes pod UID — read so that neither PID reuse nor a file changing under the reader can mix two
//! processes or two files into one answer ([`snapshot`], [`digest`]). Digests are cached by file identity
//! ([`cache`]), so attesting the same binary again costs one `fstat`.
//!
//! With a `provenance` block in its configuration it also emits verified provenance selectors: signed
//! in-toto Statements (DSSE envelopes, ECDSA P-256 keys the operator trusts) carrying SLSA provenance or an
//! SBOM, looked up by the executable's digest in a directory store ([`provenance::store`]). Provenance
//! that does not verify yields no selectors and a logged reason, never a failed attestation.
//!
//! Layout: [`config`] (HCL → [`config::Settings`]), [`proc`] (the `/proc` reads, behind a trait),
//! [`snapshot`] (the ordered, checked reads of one process), [`digest`] and [`cache`] (hashing),
//! [`cgroup`] (cgroup v1/v2 parsing and container IDs), [`names`] (user and group names), [`selectors`]
//! (facts → selector values), [`provenance`] (the provenance source contract and the DSSE store),
//! [`attestor`] (all of it for one PID, no gRPC; also used by `twi provenance inspect`), [`plugin`] (the
//! gRPC service), [`error`] (one error type and its gRPC codes).

pub mod attestor;
pub mod cache;
pub mod cgroup;
pub mod config;
pub mod digest;
pub mod error;
pub mod names;
pub mod plugin;
pub mod proc;
pub mod provenance;
pub mod selectors;
pub mod snapshot;

pub use attestor::Attestor;
pub use error::AttestError;
pub use plugin::WorkloadAttestorPlugin;

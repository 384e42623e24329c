//! SPIRE CredentialComposer plugin `twi-server-credentialcomposer` (issue #5) and the transparency log
//! its credential-provenance records go into.
//!
//! Formats (specified in `shared/docs/credential-extensions.md`, departures in `doc/format.md`):
//! - [`cmw`]: the attestation result as a RATS conceptual-message-wrapper in `id-pe-cmw`;
//! - [`record`]: the credential-provenance record (deterministic CBOR) and [`statement`], its COSE_Sign1;
//! - [`extension`]: the `TwiProvenance` X.509 extension carrying the statement and its inclusion proof;
//! - [`jwt`]: the JWT-SVID claims;
//! - [`verify`]: what a relying party checks, step by step (also `twi svid verify`);
//! - [`tlog`]: the embedded, durable C2SP transparency log (tlog-tiles, signed-note checkpoints,
//!   tlog-proof) with its batching sequencer, HTTP tile server and relying-party verification.
//!
//! The plugin: [`config`] (HCL), [`spire_api`] (registration entries and agents from the SPIRE server's
//! local API), [`composer`] (which SVID gets what; each record durably logged before SPIRE gets an
//! answer) and [`plugin`] (the gRPC service).

pub mod cmw;
pub mod composer;
pub mod config;
pub mod extension;
pub mod jwt;
pub mod plugin;
pub mod record;
pub mod spire_api;
pub mod statement;
pub mod tlog;
pub mod verify;

//! SPIRE CredentialComposer plugin `twi-server-credentialcomposer` (issue #5) and the transparency log
//! its credential-provenance records go into.
//!
//! - [`tlog`]: the embedded, durable C2SP transparency log (tlog-tiles, signed-note checkpoints,
//!   tlog-proof) with its batching sequencer, HTTP tile server and relying-party verification.
//!
//! The composer plugin itself (which SVID gets which extension, appending each record to the log before
//! answering SPIRE) is built beside this module.

pub mod tlog;

//! SPIRE NodeAttestor plugins for confidential VMs.
//!
//! The agent half (`twi-agent-nodeattestor`) runs inside the confidential VM and produces fresh TEE
//! evidence bound to the server's nonce and to a per-instance key; the server half
//! (`twi-server-nodeattestor`) verifies that evidence to the vendor's roots with `twi-core`, applies
//! policy, and tells SPIRE the agent's ID and selectors. [`wire`] holds what both halves share.

pub mod agent;
pub mod server;
pub mod status;
pub mod wire;

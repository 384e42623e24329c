//! The server node attestor's `plugin_data` (HCL: `snp { … }` and `tdx { … }` appraisal policies,
//! `attestation_results`) never panics parsing or validation. Configurations that name files are only
//! parsed (validation would read them); see `twi_node_attestor::fuzz_server_config`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| twi_node_attestor::fuzz_server_config(data));

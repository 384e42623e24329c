//! The node attestor's wire messages (what an untrusted agent sends the server) never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| twi_node_attestor::wire::fuzz_decode(data));

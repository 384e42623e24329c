//! The appraisal policy document (HCL or JSON) never panics the parser, and an accepted policy's
//! canonical JSON re-parses to the same policy (`twi_core::policy::fuzz_parse_policy` asserts it).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| twi_core::policy::fuzz_parse_policy(data));

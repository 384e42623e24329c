//! SNP report, certificate table and certificate parsing never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| twi_core::snp::fuzz_parse_snp(data));

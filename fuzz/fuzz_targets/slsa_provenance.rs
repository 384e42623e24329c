//! SLSA provenance predicates, v1 and v0.2 (`provenance::slsa::read`): selector values are clean and
//! bounded, the source is one the document names, and re-serializing changes nothing
//! (`twi_fuzz::provenance::check_slsa`). The input is the predicate JSON; both versions read it.
#![no_main]
use twi_workload_attestor::provenance::slsa::{SLSA_V02, SLSA_V1};

libfuzzer_sys::fuzz_target!(
    init: twi_fuzz::provenance::write_seeds("slsa_provenance"),
    |data: &[u8]| {
        if let Ok(v) = twi_workload_attestor::provenance::json::parse(data) {
            twi_fuzz::provenance::check_slsa(SLSA_V1, &v);
            twi_fuzz::provenance::check_slsa(SLSA_V02, &v);
        }
    }
);

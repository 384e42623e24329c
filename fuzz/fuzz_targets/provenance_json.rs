//! The strict JSON parser every attestation goes through first (`provenance::json::parse`): the same
//! values as serde_json minus duplicate keys, parse -> serialize -> parse stable, nesting bounded, and
//! RFC 8785 canonical output that re-parses to the same value (`twi_fuzz::provenance::check_json`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = twi_fuzz::provenance::check_json(data);
});

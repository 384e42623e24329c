//! DSSE envelopes from the attestation store (`provenance::dsse::Envelope::from_json`, `verify`):
//! bounded signature count and sizes, a lossless round trip in both base64 alphabets, hostile
//! signatures verified without panic, and the PAE binding the payload type
//! (`twi_fuzz::provenance::check_envelope`). Seeds signed by the harness key are written at start.
#![no_main]
libfuzzer_sys::fuzz_target!(
    init: twi_fuzz::provenance::write_seeds("dsse_envelope"),
    |data: &[u8]| twi_fuzz::provenance::check_envelope(data)
);

//! in-toto Statements as the payload of a verified envelope (`provenance::statement::Statement`): the
//! input is signed by the harness key, so hostile payloads pass the signature check, and must read the
//! same as the bytes do; accepted Statements round-trip and their predicates go on to the SLSA and SBOM
//! readers as the store dispatches them (`twi_fuzz::provenance::check_statement`). The signed path is
//! taken for a deterministic sample of inputs (ECDSA is slow under the sanitizers).
#![no_main]
libfuzzer_sys::fuzz_target!(
    init: twi_fuzz::provenance::write_seeds("intoto_statement"),
    |data: &[u8]| twi_fuzz::provenance::check_statement(data)
);

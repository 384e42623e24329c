//! SBOM predicates, CycloneDX and SPDX (`provenance::sbom::read`): the digest is SHA-256 of the RFC 8785
//! form and survives re-serialization, the component count is right, and only a contradicting format
//! marker is refused (`twi_fuzz::provenance::check_sbom`). The input is the SBOM JSON; both formats
//! read it.
#![no_main]
use twi_workload_attestor::provenance::sbom::SbomFormat;

libfuzzer_sys::fuzz_target!(
    init: twi_fuzz::provenance::write_seeds("sbom"),
    |data: &[u8]| {
        if let Ok(v) = twi_workload_attestor::provenance::json::parse(data) {
            twi_fuzz::provenance::check_sbom(SbomFormat::CycloneDx, &v);
            twi_fuzz::provenance::check_sbom(SbomFormat::Spdx, &v);
        }
    }
);

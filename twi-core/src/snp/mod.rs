//! AMD SEV-SNP attestation reports: parse, verify to AMD's roots, appraise against policy.
//!
//! * [`AttestationReport::parse`] — bytes only (ABI spec 56860, Table 23), keeps the received bytes.
//! * [`Verifier::verify`] — chain ARK → ASK/ASVK → VCEK/VLEK to a pinned root ([`TrustAnchors`]) at a
//!   caller-given time, VEK bound to the report (hwID, TCB), ECDSA P-384 signature → [`VerifiedSnp`].
//! * [`appraise`] — [`SnpPolicy`] on the verified claims, every violation reported;
//!   [`check_report_data`] — the relying party's nonce/key binding.
//!
//! Not here: fetching certificates from AMD's KDS (the caller fills [`CertChain`], from the extended
//! report's table, a cache or KDS) and the simulated device (`crate::sim`, feature `sim`).

mod anchors;
mod cert;
mod chain;
mod claims;
pub mod layout;
mod policy;
mod product;
mod report;
mod verify;

pub use anchors::TrustAnchors;
pub use cert::{oid, MAX_CERT_LEN};
pub use chain::{
    guid, CertChain, CERT_TABLE_ENTRY_LEN, MAX_CERT_FILE_LEN, MAX_CERT_TABLE_ENTRIES,
    MAX_CERT_TABLE_LEN,
};
pub use claims::{CpuidClaim, SnpClaims};
pub use policy::{appraise, check_report_data, Appraisal, SnpPolicy};
pub use product::{Product, TcbParts};
pub use report::{
    AttestationReport, FirmwareVersion, GuestPolicy, SigningKeyKind, MAX_VERSION, MIN_VERSION,
    SIGNATURE_ALGO_ECDSA_P384_SHA384,
};
pub use verify::{VerifiedSnp, Verifier, MAX_CACHED_CHAINS, MAX_CRL_LEN};

/// Fuzzing entry point: runs every SNP parser on `data` (report, certificate table, certificate with
/// AMD extensions, certificate file, CRL). Must never panic, whatever `data` is.
#[doc(hidden)]
pub fn fuzz_parse_snp(data: &[u8]) {
    if let Ok(report) = AttestationReport::parse(data) {
        let _ = (report.policy(), report.cpuid(), report.signature_scalars());
    }
    let _ = CertChain::from_cert_table(data).map(|c| c.to_cert_table());
    if let Ok(cert) = cert::ParsedCert::from_der(data) {
        let _ = (
            cert.role(),
            cert.amd_extensions(),
            cert.p384_key(),
            cert.not_after(),
            cert.check_issued_by(&cert),
        );
    }
    let _ = CertChain::default().add_pem_or_der(data);
    let _ = Verifier::new(TrustAnchors::amd()).add_crl_der(data);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    /// Not a fuzzer: a deterministic sweep of truncations and byte flips of real inputs through the
    /// fuzz entry point, so that `cargo test` catches the crude panics before `scripts/fuzz.sh` runs.
    #[test]
    fn fuzz_entry_survives_mutated_real_inputs() {
        let read = |rel: &str| std::fs::read(format!("{TESTDATA}/{rel}")).unwrap();
        let mut chain = CertChain::default();
        for f in [
            "snp/oak-turin-v5/vcek.der",
            "vendor-roots/amd/turin/ask.pem",
            "vendor-roots/amd/turin/ark.pem",
        ] {
            chain.add_pem_or_der(&read(f)).unwrap();
        }
        let seeds = [
            read("snp/oak-turin-v5/report.bin"),
            read("snp/oak-turin-v5/vcek.der"),
            read("vendor-roots/amd/turin/ark.pem"),
            chain.to_cert_table(),
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in &seeds {
            for cut in (0..seed.len()).step_by(97) {
                fuzz_parse_snp(&seed[..cut]);
            }
            for _ in 0..200 {
                let mut m = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % m.len();
                    m[i] ^= 1 << (next() % 8);
                }
                fuzz_parse_snp(&m);
            }
        }
    }
}

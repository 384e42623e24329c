//! Intel TDX quotes: parse, verify to Intel's root with PCS collateral, appraise against policy.
//!
//! * [`Quote::parse`] — DCAP quote v4/v5 bytes only (TDX 1.0 and 1.5 bodies), keeps the signed bytes.
//! * [`TdxVerifier::verify`] — PCK chain to the pinned Intel SGX Root CA ([`IntelRoots`]), collateral
//!   ([`Collateral`]: TCB info, QE identity, CRLs) signatures and windows at a caller-given time, QE
//!   report and quote signatures, Intel's TCB level matching → [`VerifiedTdx`].
//! * [`appraise`] — [`TdxPolicy`] on the verified claims, every violation reported;
//!   [`check_report_data`] — the relying party's nonce/key binding.
//!
//! Not here: fetching collateral from Intel PCS or a PCCS (the caller builds [`Collateral`]), SGX
//! quotes (v3), quotes whose certification data is not a PCK chain (types 1–4), and the simulated
//! TDX device (`crate::sim`, feature `sim`).

mod anchors;
mod cert;
mod claims;
mod collateral;
pub mod layout;
mod policy;
mod quote;
mod tcb;
mod verify;

pub use anchors::{IntelRoots, INTEL_SGX_ROOT_CA_SHA256};
pub use cert::{oid, MAX_CERT_LEN, MAX_CHAIN_CERTS, MAX_CRL_LEN};
pub use claims::{TdAttributeBits, TdxClaims};
pub use collateral::{Collateral, CollateralParts, COLLATERAL_FILES, MAX_COLLATERAL_FILE_LEN};
pub use policy::{appraise, check_report_data, Masked, TdxAppraisal, TdxPolicy};
pub use quote::{
    BodyType, EnclaveReport, Quote, TdReport, MAX_PCK_CHAIN_LEN, MAX_QE_AUTH_DATA_LEN,
    MAX_QUOTE_BUFFER_LEN, MAX_QUOTE_LEN,
};
pub use tcb::TcbStatus;
pub use verify::{TdxVerifier, VerifiedTdx, MAX_CACHED};

/// Fuzzing entry point: runs every TDX parser on `data` (quote, PEM chain, certificate with the SGX
/// extension, CRL, TCB info and QE identity bodies). Must never panic, whatever `data` is.
#[doc(hidden)]
pub fn fuzz_parse_tdx(data: &[u8]) {
    if let Ok(q) = Quote::parse(data) {
        let _ = (q.signed_bytes(), q.td_report().to_bytes(), q.user_data());
        if let Ok(chain) = cert::pem_chain(q.pck_chain_pem(), "fuzz") {
            for c in &chain {
                let _ = (c.sgx_extension(), c.key(), c.check_issued_by(c));
            }
        }
    }
    if let Ok(chain) = cert::pem_chain(data, "fuzz") {
        for c in &chain {
            let _ = (c.sgx_extension(), c.check_issued_by(c));
        }
    }
    if let Ok(c) = cert::X509::from_der(data, "fuzz") {
        let _ = (c.sgx_extension(), c.key(), c.check_issued_by(&c));
    }
    let _ = cert::Crl::from_der(data, "fuzz");
    if let Ok(s) = collateral::split_tcb_info(data) {
        let _ = serde_json::from_str::<collateral::TcbInfo>(s.body);
    }
    if let Ok(s) = collateral::split_qe_identity(data) {
        let _ = serde_json::from_str::<collateral::QeIdentity>(s.body);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    /// Not a fuzzer: truncations and byte flips of real inputs through the fuzz entry point, so that
    /// `cargo test` catches crude panics before `scripts/fuzz.sh` runs.
    #[test]
    fn fuzz_entry_survives_mutated_real_inputs() {
        let read = |rel: &str| std::fs::read(format!("{TESTDATA}/{rel}")).unwrap();
        let quote = read("tdx/gtg-90c06f-v5/quote.bin");
        let pem = Quote::parse(&quote).unwrap().pck_chain_pem().to_vec();
        let seeds = [
            quote,
            read("tdx/dq-b0c06f-v4/quote.bin"),
            pem,
            read("tdx/dq-b0c06f-v4/collateral/tcb_info.json"),
            read("tdx/dq-b0c06f-v4/collateral/qe_identity.json"),
            read("tdx/dq-b0c06f-v4/collateral/pck_crl.der"),
            read("vendor-roots/intel/IntelSGXRootCA.der"),
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in &seeds {
            for cut in (0..seed.len()).step_by(89) {
                fuzz_parse_tdx(&seed[..cut]);
            }
            for _ in 0..150 {
                let mut m = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % m.len();
                    m[i] ^= 1 << (next() % 8);
                }
                fuzz_parse_tdx(&m);
            }
        }
    }
}

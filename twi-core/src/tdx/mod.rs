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

/// Fuzzing entry point for TCB info and QE identity (a PCS body, or its inner object): decodes every
/// field the verifier decodes and runs Intel's TCB level matching with the SVNs of each level of the
/// document itself, plus all-zero and all-0xFF platforms, without any signature in the way. Must
/// never panic, whatever `data` is. True when `data` is a collateral part that parses (TCB info, QE
/// identity, CRL, PEM chain): only then is a harness's slower, signed path worth running.
#[doc(hidden)]
pub fn fuzz_tdx_collateral(data: &[u8]) -> bool {
    use collateral::{hex_field, parse_time, QeIdentity, TcbInfo};
    let mut parsed = cert::Crl::from_der(data, "fuzz").is_ok()
        || cert::pem_chain(data, "fuzz").is_ok_and(|c| !c.is_empty());
    let text = std::str::from_utf8(data).ok();
    let tcb_body = collateral::split_tcb_info(data).ok().map(|s| s.body);
    let qe_body = collateral::split_qe_identity(data).ok().map(|s| s.body);
    for body in [tcb_body, text].into_iter().flatten() {
        let Ok(info) = serde_json::from_str::<TcbInfo>(body) else {
            continue;
        };
        parsed = true;
        let _ = (
            hex_field::<6>(&info.fmspc, "fuzz"),
            hex_field::<2>(&info.pce_id, "fuzz"),
            parse_time(&info.issue_date, "fuzz"),
            parse_time(&info.next_update, "fuzz"),
        );
        let svns = |c: &[collateral::Component]| {
            let mut a = [0u8; 16];
            for (d, s) in a.iter_mut().zip(c) {
                *d = s.svn;
            }
            a
        };
        let mut platforms = vec![
            ([0u8; 16], 0u16, [0u8; 16]),
            ([0xff; 16], u16::MAX, [0xff; 16]),
        ];
        for l in info.tcb_levels.iter().take(8) {
            let t = &l.tcb;
            platforms.push((
                svns(&t.sgxtcbcomponents),
                t.pcesvn,
                svns(&t.tdxtcbcomponents),
            ));
        }
        for (sgx, pce_svn, tee) in &platforms {
            let p = tcb::PlatformSvns {
                sgx_components: sgx,
                pce_svn: *pce_svn,
            };
            let _ = tcb::tdx_status(&info, &p, tee, None, TcbStatus::UpToDate, &[]);
            let _ = tcb::tdx_status(&info, &p, tee, Some(&[0xff; 16]), TcbStatus::OutOfDate, &[]);
        }
    }
    for body in [qe_body, text].into_iter().flatten() {
        let Ok(qe) = serde_json::from_str::<QeIdentity>(body) else {
            continue;
        };
        parsed = true;
        let _ = (
            hex_field::<32>(&qe.mrsigner, "fuzz"),
            hex_field::<4>(&qe.miscselect, "fuzz"),
            hex_field::<4>(&qe.miscselect_mask, "fuzz"),
            hex_field::<16>(&qe.attributes, "fuzz"),
            hex_field::<16>(&qe.attributes_mask, "fuzz"),
            parse_time(&qe.issue_date, "fuzz"),
            parse_time(&qe.next_update, "fuzz"),
        );
    }
    parsed
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
        // The collateral entry's verdict gates a harness's signed path: PEM chain, TCB info, QE
        // identity and CRL parse as collateral; quotes and a bare certificate do not.
        for (i, seed) in seeds.iter().enumerate() {
            assert_eq!(fuzz_tdx_collateral(seed), (2..=5).contains(&i), "seed {i}");
        }
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
                let _ = fuzz_tdx_collateral(&seed[..cut]);
            }
            for _ in 0..150 {
                let mut m = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % m.len();
                    m[i] ^= 1 << (next() % 8);
                }
                fuzz_parse_tdx(&m);
                let _ = fuzz_tdx_collateral(&m);
            }
        }
    }
}

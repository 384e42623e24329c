//! TDX collateral (TCB info and QE identity JSON, CRLs, issuer chains) never panics the parsers, the
//! TCB level matching or the verifier:
//! * `fuzz_tdx_collateral`: every field decoded and Intel's TCB matching run, no signature in the way;
//!   the rest only for inputs that parse as a collateral part;
//! * a TCB info / QE identity envelope re-signed with the simulated TCB signing key (over its exact
//!   inner bytes) replaces the simulated one, and the simulated quote is verified and appraised with
//!   it: hostile but signed collateral reaches everything behind the signature check;
//! * anything else is tried as the PCK CRL, root CA CRL (DER) or TCB info issuer chain (PEM) of the
//!   simulated collateral: CRL and certificate parsing and signature checks meet hostile bytes.
#![no_main]

use twi_core::tdx::{Collateral, Quote};
use twi_fuzz::{resign_envelope, sim, verify_and_appraise, SIM_VERIFY_TIME};

libfuzzer_sys::fuzz_target!(init: twi_fuzz::write_seeds("tdx_collateral"), |data: &[u8]| {
    // The signed path costs a dozen ECDSA operations; it only runs for parts that parse (one that
    // does not would fail at the same parse, after signature checks on trusted bytes only).
    if !twi_core::tdx::fuzz_tdx_collateral(data) {
        return;
    }
    let s = sim();
    let q = Quote::parse(&s.quote).expect("simulated quote");
    let mut variants = Vec::new();
    if let Some((is_tcb, signed)) = resign_envelope(s, data) {
        let mut p = s.parts.clone();
        if is_tcb {
            p.tcb_info = signed;
        } else {
            p.qe_identity = signed;
        }
        variants.push(p);
    } else if data.starts_with(b"-----BEGIN") {
        let mut p = s.parts.clone();
        p.tcb_info_issuer_chain = data.to_vec();
        variants.push(p);
    } else {
        let mut p = s.parts.clone();
        p.pck_crl = data.to_vec();
        variants.push(p);
        let mut p = s.parts.clone();
        p.root_ca_crl = data.to_vec();
        variants.push(p);
    }
    for p in variants {
        let Ok(c) = Collateral::from_parts(p) else {
            continue;
        };
        let _ = verify_and_appraise(&s.verifier, &q, &c, SIM_VERIFY_TIME);
    }
});

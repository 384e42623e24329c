//! TDX quotes (v4/v5, TDX 1.0/1.5 bodies) never panic the parser, the verifier or the appraisal:
//! * every TDX parser on the raw bytes (`fuzz_parse_tdx`);
//! * a quote that parses, verified as is against simulated collateral and (when `shared/testdata` is
//!   present) a real platform's collateral: chains, CRLs and signatures meet hostile bytes;
//! * the same quote re-signed by the simulated platform (its attestation key bound, its PCK chain):
//!   hostile TD report and QE report fields reach QE identity, module identity, TCB level matching
//!   and appraisal.
#![no_main]

use twi_core::tdx::Quote;
use twi_fuzz::{real, resign_quote, sim, verify_and_appraise, SIM_VERIFY_TIME};

libfuzzer_sys::fuzz_target!(init: twi_fuzz::write_seeds("tdx_quote"), |data: &[u8]| {
    twi_core::tdx::fuzz_parse_tdx(data);
    let Ok(q) = Quote::parse(data) else {
        return;
    };
    let s = sim();
    let _ = verify_and_appraise(&s.verifier, &q, &s.collateral, SIM_VERIFY_TIME);
    if let Some(r) = real() {
        let _ = verify_and_appraise(&r.verifier, &q, &r.collateral, r.now);
    }
    let forged = resign_quote(s, &q);
    let q2 = Quote::parse(&forged).expect("a parsed quote, re-signed, parses");
    assert_eq!(q2.signed_bytes(), q.signed_bytes());
    assert_eq!(q2.qe_auth_data(), q.qe_auth_data());
    let _ = verify_and_appraise(&s.verifier, &q2, &s.collateral, SIM_VERIFY_TIME);
});

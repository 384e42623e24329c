//! The simulated TDX platform against the real TDX verifier: simulated quotes and collateral are
//! accepted only when the simulated root is trusted as simulated, and the refusals the verifier makes on
//! real evidence (untrusted root, debug TD, outdated TCB, stale collateral, revoked PCK, tampering,
//! replay) happen on simulated evidence too, with the same reason categories.
#![cfg(feature = "sim")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::OnceLock;
use twi_core::sim::tdx::{self, SimTdxDevice, TdParams, TdxInitOptions, TdxSimLayout};
use twi_core::tdx::{
    appraise, check_report_data, Collateral, IntelRoots, Quote, TcbStatus, TdxPolicy, TdxVerifier,
    VerifiedTdx,
};

/// 2025-06-15T15:06:40Z; every root set is created relative to this instant.
const NOW: u64 = 1_750_000_000;
const DAY: u64 = 86_400;

struct Set {
    _dir: tempfile::TempDir,
    layout: TdxSimLayout,
}

fn make(label: &str, opts: TdxInitOptions) -> Set {
    let dir = tempfile::tempdir().unwrap();
    let layout = tdx::init(&dir.path().join(label), &opts).unwrap();
    Set { _dir: dir, layout }
}

/// One UpToDate platform for most tests.
fn good() -> &'static Set {
    static S: OnceLock<Set> = OnceLock::new();
    S.get_or_init(|| make("good", TdxInitOptions::new(NOW)))
}

fn out_of_date() -> &'static Set {
    static S: OnceLock<Set> = OnceLock::new();
    S.get_or_init(|| {
        let mut o = TdxInitOptions::new(NOW);
        o.tcb_status = TcbStatus::OutOfDate;
        make("outdated", o)
    })
}

/// Collateral issued 60 days before NOW, nextUpdate 30 days before NOW.
fn stale() -> &'static Set {
    static S: OnceLock<Set> = OnceLock::new();
    S.get_or_init(|| {
        let mut o = TdxInitOptions::new(NOW);
        o.collateral_issue_date = Some(NOW - 60 * DAY);
        o.collateral_next_update = Some(NOW - 30 * DAY);
        make("stale", o)
    })
}

fn revoked() -> &'static Set {
    static S: OnceLock<Set> = OnceLock::new();
    S.get_or_init(|| {
        let mut o = TdxInitOptions::new(NOW);
        o.revoke_pck = true;
        make("revoked", o)
    })
}

/// Trusts only the set's simulated root, marked simulated.
fn sim_verifier(set: &Set) -> TdxVerifier {
    let mut roots = IntelRoots::intel().without_intel();
    roots
        .add_root_der(&std::fs::read(&set.layout.root_der).unwrap(), true)
        .unwrap();
    TdxVerifier::new(roots)
}

fn quote(set: &Set, report_data: &[u8; 64], td: &TdParams) -> Vec<u8> {
    SimTdxDevice::open(&set.layout.dir)
        .unwrap()
        .quote(report_data, td)
        .unwrap()
}

fn collateral(set: &Set) -> Collateral {
    Collateral::from_dir(&set.layout.collateral_dir).unwrap()
}

fn verify_at(set: &Set, bytes: &[u8], now: u64) -> Result<VerifiedTdx, twi_core::Error> {
    let q = Quote::parse(bytes)?;
    sim_verifier(set).verify(&q, &collateral(set), now as i64)
}

fn verify(set: &Set, bytes: &[u8]) -> Result<VerifiedTdx, twi_core::Error> {
    verify_at(set, bytes, NOW)
}

fn category<T: std::fmt::Debug>(r: Result<T, twi_core::Error>) -> &'static str {
    r.expect_err("expected a refusal").category()
}

#[test]
fn accepted_with_simulated_root_and_claims_match() {
    let set = good();
    let nonce = [0x42; 64];
    let td = TdParams {
        mrconfigid: [0x11; 48],
        ..TdParams::default()
    };
    let bytes = quote(set, &nonce, &td);
    let v = verify(set, &bytes).unwrap();
    assert!(v.simulated(), "a simulated root must be reported as such");
    assert_eq!(v.tcb_status(), TcbStatus::UpToDate);
    assert_eq!(v.fmspc(), &TdxInitOptions::new(NOW).fmspc);
    let r = v.quote().td_report();
    assert_eq!(r.mr_td, tdx::default_mrtd());
    assert_eq!(r.mr_config_id, [0x11; 48]);
    assert_eq!(r.report_data, nonce);
    assert_eq!(r.tee_tcb_svn, TdxInitOptions::new(NOW).tcb.tee_tcb_svn);
    assert!(!r.debug());
    appraise(&v, &TdxPolicy::default()).unwrap();

    check_report_data(v.quote(), &nonce).unwrap();
    let mut other = nonce;
    other[63] ^= 1;
    assert_eq!(category(check_report_data(v.quote(), &other)), "nonce");
}

#[test]
fn intel_roots_alone_refuse_the_simulated_root() {
    let set = good();
    let q = Quote::parse(&quote(set, &[0; 64], &TdParams::default())).unwrap();
    let r = TdxVerifier::new(IntelRoots::intel()).verify(&q, &collateral(set), NOW as i64);
    assert_eq!(category(r), "untrusted-root");
}

#[test]
fn debug_td_is_verified_but_refused_by_policy() {
    let set = good();
    let td = TdParams {
        td_attributes: TdParams::DEBUG | TdParams::SEPT_VE_DISABLE,
        ..TdParams::default()
    };
    let v = verify(set, &quote(set, &[0; 64], &td)).unwrap();
    assert!(v.quote().td_report().debug());
    assert_eq!(
        category(appraise(&v, &TdxPolicy::default())),
        "policy-debug"
    );
    let allow = TdxPolicy {
        allow_debug: true,
        ..TdxPolicy::default()
    };
    appraise(&v, &allow).unwrap();
}

#[test]
fn out_of_date_tcb_level_is_refused_by_policy() {
    let set = out_of_date();
    let v = verify(set, &quote(set, &[0; 64], &TdParams::default())).unwrap();
    assert_eq!(v.tcb_status(), TcbStatus::OutOfDate);
    assert_eq!(
        category(appraise(&v, &TdxPolicy::default())),
        "tcb-out-of-date"
    );
}

#[test]
fn stale_collateral_is_refused() {
    let set = stale();
    let r = verify(set, &quote(set, &[0; 64], &TdParams::default()));
    assert_eq!(category(r), "collateral-expired");

    // Fresh collateral goes stale too: the good set 31 days on.
    let set = good();
    let bytes = quote(set, &[0; 64], &TdParams::default());
    verify_at(set, &bytes, NOW + 29 * DAY).unwrap();
    assert_eq!(
        category(verify_at(set, &bytes, NOW + 31 * DAY)),
        "collateral-expired"
    );
}

#[test]
fn revoked_pck_is_refused() {
    let set = revoked();
    let r = verify(set, &quote(set, &[0; 64], &TdParams::default()));
    assert_eq!(category(r), "revoked");
}

#[test]
fn tampering_breaks_a_signature_or_the_qe_binding() {
    let set = good();
    let bytes = quote(set, &[7; 64], &TdParams::default());
    verify(set, &bytes).unwrap();

    // A report data byte (TD report body: header 48 + REPORTDATA offset 520): quote signature.
    let mut b = bytes.clone();
    b[48 + 520] ^= 1;
    assert_eq!(category(verify(set, &b)), "signature");

    // The DEBUG bit flipped on after signing: quote signature, not a policy verdict.
    let mut b = bytes.clone();
    b[48 + 120] ^= 1;
    assert_eq!(category(verify(set, &b)), "signature");

    // Signature data: 48 + 584 + 4 = 636; quote signature 64, attestation key 64, type 2, size 4,
    // then the QE report (384), its signature (64), auth data length (2) and auth data.
    let qe_report = 636 + 134;
    let mut b = bytes.clone();
    b[qe_report + 258] ^= 1; // QE ISVSVN
    assert_eq!(category(verify(set, &b)), "signature");

    let auth = qe_report + 384 + 64 + 2;
    let mut b = bytes.clone();
    b[auth] ^= 1;
    assert_eq!(category(verify(set, &b)), "qe-binding");
}

#[test]
fn platform_below_every_tcb_level_is_unsupported() {
    let set = good();
    let td = TdParams {
        tee_tcb_svn: Some([0; 16]),
        ..TdParams::default()
    };
    let r = verify(set, &quote(set, &[0; 64], &td));
    assert_eq!(category(r), "tcb-unsupported");
}

#[test]
fn each_set_has_its_own_root() {
    // A quote of one set does not verify against another set's root, even marked simulated.
    let bytes = quote(revoked(), &[0; 64], &TdParams::default());
    let q = Quote::parse(&bytes).unwrap();
    let r = sim_verifier(good()).verify(&q, &collateral(good()), NOW as i64);
    let cat = category(r);
    assert!(["untrusted-root", "cert-chain"].contains(&cat), "got {cat}");
}

/// dcap-qvl (an independent DCAP verifier, Phala) given the simulated root in place of Intel's:
/// `Ok(status)` or its error text.
fn dcap_qvl(set: &Set, bytes: &[u8], now: u64) -> Result<String, String> {
    dcap_qvl_with_root(
        set,
        bytes,
        now,
        std::fs::read(&set.layout.root_der).unwrap(),
    )
}

fn dcap_qvl_with_root(set: &Set, bytes: &[u8], now: u64, root: Vec<u8>) -> Result<String, String> {
    let l = &set.layout;
    let text = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    // The inner object's exact bytes and the hex signature, split by position.
    let split = |body: String, field: &str| -> (String, Vec<u8>) {
        let rest = body.strip_prefix(&format!("{{\"{field}\":")).unwrap();
        let at = rest.rfind(",\"signature\":\"").unwrap();
        let sig = rest[at + 14..].strip_suffix("\"}").unwrap();
        (rest[..at].to_owned(), hex::decode(sig).unwrap())
    };
    let (tcb_info, tcb_info_signature) = split(text(&l.tcb_info), "tcbInfo");
    let (qe_identity, qe_identity_signature) = split(text(&l.qe_identity), "enclaveIdentity");
    let collateral = dcap_qvl::QuoteCollateralV3 {
        pck_crl_issuer_chain: text(&l.pck_crl_issuer_chain),
        root_ca_crl: std::fs::read(&l.root_ca_crl).unwrap(),
        pck_crl: std::fs::read(&l.pck_crl).unwrap(),
        tcb_info_issuer_chain: text(&l.tcb_info_issuer_chain),
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain: text(&l.qe_identity_issuer_chain),
        qe_identity,
        qe_identity_signature,
        pck_certificate_chain: None,
    };
    dcap_qvl::verify::QuoteVerifier::new(root)
        .verify(bytes, &collateral, now)
        .map(|r| r.status)
        .map_err(|e| format!("{e:#}"))
}

/// The simulated formats are DCAP's, not just what our verifier expects: dcap-qvl, trusting the
/// simulated root, reaches the same verdicts.
#[test]
fn dcap_qvl_agrees_on_simulated_evidence() {
    let ok = quote(good(), &[1; 64], &TdParams::default());
    assert_eq!(dcap_qvl(good(), &ok, NOW).unwrap(), "UpToDate");
    let outdated = quote(out_of_date(), &[1; 64], &TdParams::default());
    assert_eq!(
        dcap_qvl(out_of_date(), &outdated, NOW).unwrap(),
        "OutOfDate"
    );
    for (set, label) in [(stale(), "stale collateral"), (revoked(), "revoked PCK")] {
        let q = quote(set, &[1; 64], &TdParams::default());
        let r = dcap_qvl(set, &q, NOW);
        assert!(r.is_err(), "{label}: dcap-qvl accepted: {r:?}");
        eprintln!("dcap-qvl on {label}: {}", r.unwrap_err());
    }
    let mut tampered = ok.clone();
    tampered[48 + 520] ^= 1;
    assert!(dcap_qvl(good(), &tampered, NOW).is_err());
    // With Intel's production root, dcap-qvl refuses the simulated chain.
    let intel_root = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/vendor-roots/intel/IntelSGXRootCA.der"
    ))
    .unwrap();
    assert!(dcap_qvl_with_root(good(), &ok, NOW, intel_root).is_err());
}

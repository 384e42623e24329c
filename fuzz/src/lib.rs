//! Shared fixtures of the TDX fuzz targets: a simulated Intel root set made once per process, and the
//! re-signing that lets hostile bytes get past signature checks and reach the code behind them.
//! The provenance targets' invariants (DSSE, in-toto, SLSA, SBOM, strict JSON) are in [`provenance`].
//!
//! Hostile input that only ever meets a signature check tests the parser and the signature code, not
//! what a verifier does with signed content (TCB level matching, QE identity, module identity,
//! appraisal). The simulated set holds the private keys, so a harness can take the fuzzer's quote or
//! collateral, re-sign it (and re-bind the attestation key, swap in the simulated PCK chain), and run
//! the real verifier on content that is hostile but correctly signed. Re-signing happens on every run,
//! so a crashing input reproduces with any simulated set: the keys are generated per process.
//!
//! Seeds: when `TWI_FUZZ_SEED_DIR` is set, [`write_seeds`] puts the simulated quote and collateral
//! there (scripts/fuzz.sh passes that directory as an extra corpus), because seeds that already
//! verify let the fuzzer start deep.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod provenance;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256};
use twi_core::sim::tdx::{init, SimTdxDevice, TdParams, TdxInitOptions};
use twi_core::tdx::{
    appraise, check_report_data, Collateral, CollateralParts, IntelRoots, Quote, TdxPolicy,
    TdxVerifier, VerifiedTdx,
};

/// The fixed "now" of the simulated set (2025-06-30T00:00:00Z): fixed so that runs are repeatable.
pub const SIM_INIT_TIME: u64 = 1_751_241_600;
/// When the simulated evidence is verified (2025-07-01T00:00:00Z): a day into the simulated
/// collateral's 30-day window, and inside the real `dq-b0c06f-v4` collateral's window too, so that
/// real TCB info and QE identity re-signed by the simulated key are judged on their content.
pub const SIM_VERIFY_TIME: i64 = 1_751_328_000;
/// REPORTDATA of the simulated seed quote.
pub const SIM_REPORT_DATA: [u8; 64] = [0x5a; 64];

/// The simulated set, loaded into memory (its directory is deleted once read).
pub struct Sim {
    pub attestation_key: SigningKey,
    /// `x || y` of the attestation key, as a quote carries it.
    pub attestation_public: [u8; 64],
    pub pck_key: SigningKey,
    /// Signs TCB info and QE identity.
    pub tcb_signing_key: SigningKey,
    /// PCK, platform CA, root (PEM), as the simulated device puts it in quotes.
    pub pck_chain_pem: Vec<u8>,
    pub parts: CollateralParts,
    pub collateral: Collateral,
    pub quote: Vec<u8>,
    /// Intel's root plus the simulated root (marked simulated).
    pub verifier: TdxVerifier,
}

fn key(path: &Path) -> SigningKey {
    let pem = std::fs::read_to_string(path).expect("simulated key file");
    SigningKey::from_pkcs8_pem(&pem).expect("simulated key is PKCS#8 P-256")
}

fn make_sim() -> Sim {
    let dir = tempfile::tempdir().expect("temp dir");
    let set = dir.path().join("tdx-sim");
    let layout = init(&set, &TdxInitOptions::new(SIM_INIT_TIME)).expect("simulated TDX root set");
    let read = |p: &PathBuf| std::fs::read(p).expect("simulated set file");
    let parts = CollateralParts {
        tcb_info: read(&layout.tcb_info),
        tcb_info_issuer_chain: read(&layout.tcb_info_issuer_chain),
        qe_identity: read(&layout.qe_identity),
        qe_identity_issuer_chain: read(&layout.qe_identity_issuer_chain),
        pck_crl: read(&layout.pck_crl),
        pck_crl_issuer_chain: read(&layout.pck_crl_issuer_chain),
        root_ca_crl: read(&layout.root_ca_crl),
    };
    let collateral = Collateral::from_parts(parts.clone()).expect("simulated collateral");
    let device = SimTdxDevice::open(&set).expect("simulated device");
    let quote = device
        .quote(&SIM_REPORT_DATA, &TdParams::default())
        .expect("simulated quote");
    let mut roots = IntelRoots::intel();
    roots
        .add_root_der(&read(&layout.root_der), true)
        .expect("simulated root");
    let attestation_key = key(&layout.attestation_key);
    let point = attestation_key.verifying_key().to_encoded_point(false);
    let mut attestation_public = [0u8; 64];
    attestation_public.copy_from_slice(&point.as_bytes()[1..]);
    let sim = Sim {
        attestation_key,
        attestation_public,
        pck_key: key(&layout.pck_key),
        tcb_signing_key: key(&layout.tcb_signing_key),
        pck_chain_pem: read(&layout.pck_chain_pem),
        parts,
        collateral,
        quote,
        verifier: TdxVerifier::new(roots),
    };
    // The fixture and the re-signing must themselves verify, or every deep path would be dead.
    let q = Quote::parse(&sim.quote).expect("simulated quote parses");
    sim.verifier
        .verify(&q, &sim.collateral, SIM_VERIFY_TIME)
        .expect("simulated quote verifies with simulated collateral");
    let forged = Quote::parse(&resign_quote(&sim, &q)).expect("re-signed quote parses");
    sim.verifier
        .verify(&forged, &sim.collateral, SIM_VERIFY_TIME)
        .expect("re-signed simulated quote verifies");
    let mut parts = sim.parts.clone();
    parts.tcb_info = resign_envelope(&sim, &sim.parts.tcb_info)
        .expect("TCB info envelope")
        .1;
    parts.qe_identity = resign_envelope(&sim, &sim.parts.qe_identity)
        .expect("QE identity envelope")
        .1;
    let c = Collateral::from_parts(parts).expect("re-signed collateral");
    sim.verifier
        .verify(&q, &c, SIM_VERIFY_TIME)
        .expect("re-signed simulated collateral verifies");
    sim
}

/// The per-process simulated set.
pub fn sim() -> &'static Sim {
    static SIM: OnceLock<Sim> = OnceLock::new();
    SIM.get_or_init(make_sim)
}

/// Writes the simulated quote and collateral into `$TWI_FUZZ_SEED_DIR` (if set), named by target, so
/// that the run starts from inputs that verify.
/// Also builds the simulated set, so that a broken fixture fails at start, not at the first input.
pub fn write_seeds(target: &str) {
    let s = sim();
    let Some(dir) = std::env::var_os("TWI_FUZZ_SEED_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let _ = std::fs::create_dir_all(&dir);
    let files: Vec<(&str, &[u8])> = match target {
        "tdx_quote" => vec![("sim-quote.bin", &s.quote)],
        "tdx_collateral" => vec![
            ("sim-tcb_info.json", &s.parts.tcb_info),
            ("sim-qe_identity.json", &s.parts.qe_identity),
            ("sim-pck_crl.der", &s.parts.pck_crl),
            ("sim-root_ca_crl.der", &s.parts.root_ca_crl),
            (
                "sim-tcb_info_issuer_chain.pem",
                &s.parts.tcb_info_issuer_chain,
            ),
        ],
        _ => Vec::new(),
    };
    for (name, bytes) in files {
        let _ = std::fs::write(dir.join(name), bytes);
    }
}

fn sign(key: &SigningKey, msg: &[u8]) -> [u8; 64] {
    let sig: Signature = key.sign(msg);
    sig.to_bytes().into()
}

/// Rebuilds `q` as the simulated platform would have signed it: same header, body, QE report fields
/// and QE authentication data, but the simulated attestation key (bound in the QE report data), the
/// simulated PCK chain, and fresh signatures over the (hostile) QE report and quote.
pub fn resign_quote(s: &Sim, q: &Quote) -> Vec<u8> {
    let mut qe_report = *q.qe_report_bytes();
    let binding: [u8; 32] = {
        let mut h = Sha256::new();
        h.update(s.attestation_public);
        h.update(q.qe_auth_data());
        h.finalize().into()
    };
    let rd = twi_core::tdx::layout::enclave::REPORT_DATA;
    qe_report[rd..rd + 32].copy_from_slice(&binding);
    qe_report[rd + 32..rd + 64].fill(0);
    let qe_sig = sign(&s.pck_key, &qe_report);
    let quote_sig = sign(&s.attestation_key, q.signed_bytes());

    let auth = q.qe_auth_data();
    let mut qe_cert_data = qe_report.to_vec();
    qe_cert_data.extend_from_slice(&qe_sig);
    qe_cert_data.extend_from_slice(&(auth.len() as u16).to_le_bytes());
    qe_cert_data.extend_from_slice(auth);
    qe_cert_data.extend_from_slice(&twi_core::tdx::layout::CERT_TYPE_PCK_CHAIN.to_le_bytes());
    qe_cert_data.extend_from_slice(&(s.pck_chain_pem.len() as u32).to_le_bytes());
    qe_cert_data.extend_from_slice(&s.pck_chain_pem);

    let mut sig_data = quote_sig.to_vec();
    sig_data.extend_from_slice(&s.attestation_public);
    sig_data.extend_from_slice(&twi_core::tdx::layout::CERT_TYPE_QE_REPORT.to_le_bytes());
    sig_data.extend_from_slice(&(qe_cert_data.len() as u32).to_le_bytes());
    sig_data.extend_from_slice(&qe_cert_data);

    let mut out = q.signed_bytes().to_vec();
    out.extend_from_slice(&(sig_data.len() as u32).to_le_bytes());
    out.extend_from_slice(&sig_data);
    out
}

/// Re-signs a PCS body `{"tcbInfo"|"enclaveIdentity": {...}, "signature": "..."}` with the simulated
/// TCB signing key over the exact inner bytes. `None` when `data` is not such an envelope.
pub fn resign_envelope(s: &Sim, data: &[u8]) -> Option<(bool, Vec<u8>)> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "tcbInfo", borrow, default)]
        tcb_info: Option<&'a serde_json::value::RawValue>,
        #[serde(rename = "enclaveIdentity", borrow, default)]
        enclave_identity: Option<&'a serde_json::value::RawValue>,
    }
    let text = std::str::from_utf8(data).ok()?;
    let env: Envelope<'_> = serde_json::from_str(text).ok()?;
    let (is_tcb, key, inner) = match (env.tcb_info, env.enclave_identity) {
        (Some(t), _) => (true, "tcbInfo", t.get()),
        (None, Some(q)) => (false, "enclaveIdentity", q.get()),
        (None, None) => return None,
    };
    let sig = hex::encode(sign(&s.tcb_signing_key, inner.as_bytes()));
    Some((
        is_tcb,
        format!("{{\"{key}\":{inner},\"signature\":\"{sig}\"}}").into_bytes(),
    ))
}

/// Verifies with `verifier`, then appraises and reads the claims of what verified: everything after
/// verification must take hostile (but signed) content too.
pub fn verify_and_appraise(
    verifier: &TdxVerifier,
    q: &Quote,
    c: &Collateral,
    now: i64,
) -> Option<VerifiedTdx> {
    let v = verifier.verify(q, c, now).ok()?;
    let _ = appraise(&v, &TdxPolicy::default());
    let lax = TdxPolicy {
        allow_debug: true,
        allowed_tcb_statuses: Vec::new(),
        allowed_advisory_ids: Some(Vec::new()),
        ..TdxPolicy::default()
    };
    let _ = appraise(&v, &lax);
    let _ = serde_json::to_string(&v.claims());
    let _ = check_report_data(q, &SIM_REPORT_DATA);
    Some(v)
}

/// A real platform's collateral and the time it is valid at, from `shared/testdata` when present
/// (`TWI_TESTDATA` overrides the location). Real quotes then get through the real chains and
/// collateral up to their own signatures.
pub struct Real {
    pub collateral: Collateral,
    pub now: i64,
    pub verifier: TdxVerifier,
}

pub fn real() -> Option<&'static Real> {
    static REAL: OnceLock<Option<Real>> = OnceLock::new();
    REAL.get_or_init(|| {
        let base = std::env::var_os("TWI_TESTDATA").map_or_else(
            || {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../shared/testdata"
                ))
            },
            PathBuf::from,
        );
        let collateral = Collateral::from_dir(base.join("tdx/dq-b0c06f-v4/collateral")).ok()?;
        Some(Real {
            collateral,
            // The case's as_of (manifest.toml): 2025-07-01T00:00:00Z.
            now: SIM_VERIFY_TIME,
            verifier: TdxVerifier::new(IntelRoots::intel()),
        })
    })
    .as_ref()
}

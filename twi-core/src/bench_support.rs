//! The measured functions of the SNP verification benchmarks, shared by `twi bench` (an in-binary
//! timing loop) and the criterion benches in `benches/snp_verify.rs`, so both measure exactly the same
//! closures on the same inputs and their figures can be compared.
//!
//! Each [`Fixture`] holds one report that verifies, with its chain and trust anchors, and offers four
//! measurements:
//! * [`Fixture::raw_ecdsa`] — the floor of a warm verification: the report's ECDSA P-384 signature
//!   alone, with a pre-parsed key (p384 crate directly);
//! * [`Fixture::warm`] — `Verifier::verify` with the chain already cached, then `appraise`;
//! * [`Fixture::cold`] — a new `Verifier` each time (whole chain verified), then `appraise`;
//! * [`Fixture::raw_chain`] — the floor of a cold verification: every signature of the chain (ARK
//!   self-signature, ASK, VCEK: RSA-PSS SHA-384; the report: ECDSA P-384), keys pre-parsed (rsa and
//!   p384 crates directly).
//!
//! [`TdxFixture`] does the same for an Intel TDX quote with its collateral:
//! * [`TdxFixture::raw_ecdsa`] — the floor: the two ECDSA P-256 verifications a quote needs (quote
//!   signature by the attestation key, QE report signature by the PCK key), keys and signatures
//!   pre-parsed (p256 crate directly); [`TdxFixture::raw_quote_ecdsa`] is the first of them alone;
//! * [`TdxFixture::warm`] — `TdxVerifier::verify` with collateral, PCK chain and QE report cached, then
//!   `tdx::appraise`;
//! * [`TdxFixture::cold`] — a new `TdxVerifier` each time, then `tdx::appraise`;
//! * the comparison with dcap-qvl is timed by the callers (dcap-qvl is not a dependency of this crate):
//!   [`TdxFixture::dcap`] holds its inputs, made from the same files.
//!
//! Not part of the API: hidden from the docs, may change with the benchmarks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use der::{Decode, DecodePem, Encode};
use p384::ecdsa::signature::Verifier as _;
use rsa::pkcs1::DecodeRsaPublicKey;
use sha2::Sha384;
use x509_cert::Certificate;

use crate::snp::{
    appraise, Appraisal, AttestationReport, CertChain, SnpPolicy, TrustAnchors, Verifier,
};
use crate::tdx::{
    appraise as tdx_appraise, Collateral, IntelRoots, Quote, TdxAppraisal, TdxPolicy, TdxVerifier,
};
use crate::Error;

/// AMD's RSA-PSS salt length (SHA-384 digest length).
const PSS_SALT_LEN: usize = 48;

/// The real vector measured besides the simulated evidence: case `snp-oak-milan-v3` of
/// `shared/testdata/manifest.toml` (files relative to the testdata folder, and the case's `as_of`).
pub const OAK_MILAN_V3: VectorCase = VectorCase {
    name: "oak-milan-v3",
    report: "snp/oak-milan-v3/report.bin",
    certs: &[
        "snp/oak-milan-v3/vcek.der",
        "vendor-roots/amd/milan/ask.pem",
        "vendor-roots/amd/milan/ark.pem",
    ],
    as_of: "2025-01-16T00:00:00Z",
};

/// A real-evidence case: where its files are and when it verifies.
#[derive(Clone, Copy, Debug)]
pub struct VectorCase {
    pub name: &'static str,
    pub report: &'static str,
    pub certs: &'static [&'static str],
    pub as_of: &'static str,
}

/// Why a fixture could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The fixture's evidence does not verify: measuring a failing path would mean nothing.
    #[error("fixture {name}: {source}")]
    Verify {
        name: String,
        #[source]
        source: Error,
    },
    /// Extracting keys or signatures for the raw floor failed.
    #[error("fixture {name}: raw floor: {detail}")]
    Floor { name: String, detail: String },
    #[cfg(feature = "sim")]
    #[error("simulated root set: {0}")]
    Sim(#[from] crate::sim::SimError),
}

/// One RSA-PSS certificate signature, ready to verify.
struct RsaSig {
    key: rsa::pss::VerifyingKey<Sha384>,
    tbs: Vec<u8>,
    sig: rsa::pss::Signature,
}

/// Pre-parsed keys and signatures for the raw floors.
struct Floor {
    ecdsa_key: p384::ecdsa::VerifyingKey,
    ecdsa_sig: p384::ecdsa::Signature,
    /// ARK by ARK, ASK by ARK, VEK by ASK.
    rsa: Vec<RsaSig>,
}

/// A report that verifies at `now`, with everything the four measurements need.
pub struct Fixture {
    pub name: String,
    pub report: AttestationReport,
    pub chain: CertChain,
    pub anchors: TrustAnchors,
    pub now: i64,
    pub policy: SnpPolicy,
    floor: Floor,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("name", &self.name)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    /// Builds a fixture and checks once, cold and warm, that it is accepted under the baseline policy.
    ///
    /// # Errors
    /// [`BenchError::Verify`] when the evidence does not verify; [`BenchError::Floor`] when the chain
    /// lacks a certificate (the ARK must be in `chain`) or a key cannot be read.
    pub fn new(
        name: &str,
        report: &[u8],
        chain: CertChain,
        anchors: TrustAnchors,
        now: i64,
    ) -> Result<Fixture, BenchError> {
        let verify_err = |source| BenchError::Verify {
            name: name.to_owned(),
            source,
        };
        let report = AttestationReport::parse(report).map_err(verify_err)?;
        let floor = Floor::new(&report, &chain).map_err(|detail| BenchError::Floor {
            name: name.to_owned(),
            detail,
        })?;
        let fixture = Fixture {
            name: name.to_owned(),
            report,
            chain,
            anchors,
            now,
            policy: SnpPolicy::default(),
            floor,
        };
        fixture.cold().map_err(verify_err)?;
        let warm = fixture.warm_verifier().map_err(verify_err)?;
        fixture.warm(&warm).map_err(verify_err)?;
        if !fixture.raw_ecdsa() || !fixture.raw_chain() {
            return Err(BenchError::Floor {
                name: name.to_owned(),
                detail: "a raw signature does not verify".into(),
            });
        }
        Ok(fixture)
    }

    /// A real vector from the testdata folder; `Ok(None)` when the folder does not have it.
    ///
    /// # Errors
    /// As [`Fixture::new`], and I/O errors other than a missing report.
    pub fn from_vector(testdata: &Path, case: &VectorCase) -> Result<Option<Fixture>, BenchError> {
        let report_path = testdata.join(case.report);
        if !report_path.is_file() {
            return Ok(None);
        }
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| BenchError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let report = read(&report_path)?;
        let mut chain = CertChain::default();
        for cert in case.certs {
            let bytes = read(&testdata.join(cert))?;
            chain
                .add_pem_or_der(&bytes)
                .map_err(|source| BenchError::Verify {
                    name: case.name.to_owned(),
                    source,
                })?;
        }
        let now =
            time::OffsetDateTime::parse(case.as_of, &time::format_description::well_known::Rfc3339)
                .map_err(|e| BenchError::Floor {
                    name: case.name.to_owned(),
                    detail: format!("as_of: {e}"),
                })?
                .unix_timestamp();
        Fixture::new(case.name, &report, chain, TrustAnchors::amd(), now).map(Some)
    }

    /// A fresh simulated Milan root set (RSA-4096, as AMD's) in `dir`, one report signed by it, and
    /// anchors as a server configured with `simulated_roots` has them (AMD's plus the simulated ARK).
    ///
    /// # Errors
    /// Root set creation, device and verification failures.
    #[cfg(feature = "sim")]
    pub fn simulated_milan(dir: &Path, now_unix_secs: u64) -> Result<Fixture, BenchError> {
        use crate::sim::{self, GuestParams, InitOptions, SimSnpDevice};
        let name = "sim-milan";
        let layout = sim::init(
            dir,
            &InitOptions {
                force: true,
                ..InitOptions::new(now_unix_secs)
            },
        )?;
        let device = SimSnpDevice::open(dir)?;
        let evidence = device.report(&[0x5a; 64], &GuestParams::default())?;
        let verify_err = |source| BenchError::Verify {
            name: name.to_owned(),
            source,
        };
        let chain = CertChain::from_cert_table(&evidence.cert_table).map_err(verify_err)?;
        let ark = std::fs::read(&layout.ark_pem).map_err(|source| BenchError::Io {
            path: layout.ark_pem.clone(),
            source,
        })?;
        let mut anchors = TrustAnchors::amd();
        anchors.add_root_pem(&ark, true).map_err(verify_err)?;
        let now = i64::try_from(now_unix_secs).unwrap_or(i64::MAX);
        Fixture::new(name, &evidence.report, chain, anchors, now)
    }

    /// (a) The report's ECDSA P-384 / SHA-384 signature alone, key and signature pre-parsed.
    pub fn raw_ecdsa(&self) -> bool {
        self.floor
            .ecdsa_key
            .verify(self.report.signed_bytes(), &self.floor.ecdsa_sig)
            .is_ok()
    }

    /// (d) Every signature of the chain and the report, keys pre-parsed: three RSA-PSS and one ECDSA.
    pub fn raw_chain(&self) -> bool {
        let rsa_ok = self.floor.rsa.iter().fold(true, |ok, s| {
            use rsa::signature::Verifier as _;
            s.key.verify(&s.tbs, &s.sig).is_ok() && ok
        });
        self.raw_ecdsa() && rsa_ok
    }

    /// A verifier whose chain cache already holds this fixture's chain.
    ///
    /// # Errors
    /// The verification error, if any (not for a fixture built by [`Fixture::new`]).
    pub fn warm_verifier(&self) -> Result<Verifier, Error> {
        let v = Verifier::new(self.anchors.clone());
        v.verify(&self.report, &self.chain, self.now)?;
        Ok(v)
    }

    /// (b) Warm verification plus appraisal under the fixture's policy.
    ///
    /// # Errors
    /// The verification or appraisal error, if any.
    pub fn warm(&self, verifier: &Verifier) -> Result<Appraisal, Error> {
        let v = verifier.verify(&self.report, &self.chain, self.now)?;
        appraise(&v, &self.policy)
    }

    /// (c) Cold verification (a new verifier, so the whole chain is verified) plus appraisal.
    ///
    /// # Errors
    /// The verification or appraisal error, if any.
    pub fn cold(&self) -> Result<Appraisal, Error> {
        let verifier = Verifier::new(self.anchors.clone());
        let v = verifier.verify(&self.report, &self.chain, self.now)?;
        appraise(&v, &self.policy)
    }
}

impl Floor {
    fn new(report: &AttestationReport, chain: &CertChain) -> Result<Floor, String> {
        let parse = |what: &str, der: Option<&Vec<u8>>| -> Result<Certificate, String> {
            let der = der.ok_or_else(|| format!("chain has no {what}"))?;
            Certificate::from_der(der).map_err(|e| format!("{what}: {e}"))
        };
        let vek = parse("VEK", chain.vek.as_ref())?;
        let ask = parse("ASK", chain.ask.as_ref())?;
        let ark = parse("ARK", chain.ark.as_ref())?;

        let vek_key = vek
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        let ecdsa_key = p384::ecdsa::VerifyingKey::from_sec1_bytes(vek_key)
            .map_err(|e| format!("VEK key: {e}"))?;
        let (r, s) = report.signature_scalars().map_err(|e| e.to_string())?;
        let ecdsa_sig = p384::ecdsa::Signature::from_scalars(r, s)
            .map_err(|e| format!("report signature: {e}"))?;

        let rsa_sig =
            |cert: &Certificate, issuer: &Certificate, what: &str| -> Result<RsaSig, String> {
                let key_bits = issuer
                    .tbs_certificate
                    .subject_public_key_info
                    .subject_public_key
                    .raw_bytes();
                let key = rsa::RsaPublicKey::from_pkcs1_der(key_bits)
                    .map_err(|e| format!("{what} issuer key: {e}"))?;
                let tbs = cert
                    .tbs_certificate
                    .to_der()
                    .map_err(|e| format!("{what} TBS: {e}"))?;
                let sig = rsa::pss::Signature::try_from(cert.signature.raw_bytes())
                    .map_err(|e| format!("{what} signature: {e}"))?;
                Ok(RsaSig {
                    key: rsa::pss::VerifyingKey::new_with_salt_len(key, PSS_SALT_LEN),
                    tbs,
                    sig,
                })
            };
        let rsa = vec![
            rsa_sig(&ark, &ark, "ARK")?,
            rsa_sig(&ask, &ark, "ASK")?,
            rsa_sig(&vek, &ask, "VEK")?,
        ];
        Ok(Floor {
            ecdsa_key,
            ecdsa_sig,
            rsa,
        })
    }
}

/// The real TDX vector measured besides the simulated quote: case `tdx-dq-b0c06f-v4` of
/// `shared/testdata/manifest.toml` (paths relative to the testdata folder, and the case's `as_of`).
pub const TDX_DQ_B0C06F_V4: TdxVectorCase = TdxVectorCase {
    name: "tdx-dq-b0c06f-v4",
    quote: "tdx/dq-b0c06f-v4/quote.bin",
    collateral_dir: "tdx/dq-b0c06f-v4/collateral",
    as_of: "2025-07-01T00:00:00Z",
};

/// A real TDX case: its quote, its collateral folder (the files of `tdx::COLLATERAL_FILES`) and when
/// it verifies (against Intel's pinned root).
#[derive(Clone, Copy, Debug)]
pub struct TdxVectorCase {
    pub name: &'static str,
    pub quote: &'static str,
    pub collateral_dir: &'static str,
    pub as_of: &'static str,
}

/// dcap-qvl 0.7.1's inputs for the same quote and collateral: the fields of its `QuoteCollateralV3`,
/// filled from the same files, so that a caller that depends on dcap-qvl builds it field by field.
/// The TCB info and QE identity are split as dcap-qvl wants them: the signed inner object verbatim
/// (exactly the bytes Intel signed) and the signature bytes.
#[derive(Clone, Debug)]
pub struct DcapInputs {
    pub quote: Vec<u8>,
    pub pck_crl_issuer_chain: String,
    pub root_ca_crl: Vec<u8>,
    pub pck_crl: Vec<u8>,
    pub tcb_info_issuer_chain: String,
    pub tcb_info: String,
    pub tcb_info_signature: Vec<u8>,
    pub qe_identity_issuer_chain: String,
    pub qe_identity: String,
    pub qe_identity_signature: Vec<u8>,
    /// `None`: Intel's production root (dcap-qvl's built-in one, `dcap_qvl::verify::verify`);
    /// `Some`: the simulated root's DER (`QuoteVerifier::new(root)`).
    pub root_ca_der: Option<Vec<u8>>,
    pub now_secs: u64,
}

/// Pre-parsed keys and signatures of the TDX floor.
struct TdxFloor {
    att_key: p256::ecdsa::VerifyingKey,
    quote_sig: p256::ecdsa::Signature,
    pck_key: p256::ecdsa::VerifyingKey,
    qe_report_sig: p256::ecdsa::Signature,
}

/// A TDX quote that verifies and passes the baseline policy at `now`, with everything the measurements
/// need.
pub struct TdxFixture {
    pub name: String,
    pub quote: Quote,
    pub collateral: Collateral,
    pub roots: IntelRoots,
    pub now: i64,
    pub policy: TdxPolicy,
    pub dcap: DcapInputs,
    floor: TdxFloor,
}

impl std::fmt::Debug for TdxFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdxFixture")
            .field("name", &self.name)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// The signed inner object (verbatim) and the hex-decoded signature of a PCS v4 body.
fn split_signed(body: &[u8], key: &str) -> Result<(String, Vec<u8>), String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("{key}: {e}"))?;
    let map: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_str(text).map_err(|e| format!("{key}: {e}"))?;
    let inner = map
        .get(key)
        .ok_or_else(|| format!("no {key} object"))?
        .get()
        .to_owned();
    let sig: String = serde_json::from_str(
        map.get("signature")
            .ok_or_else(|| format!("{key}: no signature"))?
            .get(),
    )
    .map_err(|e| format!("{key} signature: {e}"))?;
    let sig = hex::decode(sig).map_err(|e| format!("{key} signature: {e}"))?;
    Ok((inner, sig))
}

impl DcapInputs {
    fn new(
        quote: &[u8],
        c: &Collateral,
        root_ca_der: Option<Vec<u8>>,
        now: i64,
    ) -> Result<DcapInputs, String> {
        let text = |what: &str, b: &[u8]| {
            String::from_utf8(b.to_vec()).map_err(|e| format!("{what}: {e}"))
        };
        let (tcb_info, tcb_info_signature) = split_signed(&c.tcb_info, "tcbInfo")?;
        let (qe_identity, qe_identity_signature) = split_signed(&c.qe_identity, "enclaveIdentity")?;
        Ok(DcapInputs {
            quote: quote.to_vec(),
            pck_crl_issuer_chain: text("PCK CRL issuer chain", &c.pck_crl_issuer_chain)?,
            root_ca_crl: c.root_ca_crl.clone(),
            pck_crl: c.pck_crl.clone(),
            tcb_info_issuer_chain: text("TCB info issuer chain", &c.tcb_info_issuer_chain)?,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: text(
                "QE identity issuer chain",
                &c.qe_identity_issuer_chain,
            )?,
            qe_identity,
            qe_identity_signature,
            root_ca_der,
            now_secs: u64::try_from(now).map_err(|_| format!("now {now} before 1970"))?,
        })
    }
}

impl TdxFloor {
    fn new(quote: &Quote) -> Result<TdxFloor, String> {
        let mut sec1 = [0x04u8; 65];
        if let Some(d) = sec1.get_mut(1..) {
            d.copy_from_slice(quote.attestation_key());
        }
        let att_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
            .map_err(|e| format!("attestation key: {e}"))?;
        let quote_sig = p256::ecdsa::Signature::from_slice(quote.signature())
            .map_err(|e| format!("quote signature: {e}"))?;
        // The leaf is the first PEM block (the chain may end in NUL padding, which the strict chain
        // reader refuses).
        const END: &[u8] = b"-----END CERTIFICATE-----";
        let pem = quote.pck_chain_pem();
        let end = pem
            .windows(END.len())
            .position(|w| w == END)
            .ok_or("PCK chain has no certificate")?;
        let leaf = pem.get(..end + END.len()).ok_or("PCK chain end")?;
        let pck = Certificate::from_pem(leaf).map_err(|e| format!("PCK certificate: {e}"))?;
        let pck_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(
            pck.tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes(),
        )
        .map_err(|e| format!("PCK key: {e}"))?;
        let qe_report_sig = p256::ecdsa::Signature::from_slice(quote.qe_report_signature())
            .map_err(|e| format!("QE report signature: {e}"))?;
        Ok(TdxFloor {
            att_key,
            quote_sig,
            pck_key,
            qe_report_sig,
        })
    }
}

impl TdxFixture {
    /// Builds a fixture and checks once, cold and warm, that the quote verifies and passes the baseline
    /// policy, and that the floor's signatures verify.
    ///
    /// # Errors
    /// [`BenchError::Verify`] when the quote does not verify or pass; [`BenchError::Floor`] when the
    /// keys, signatures or dcap-qvl inputs cannot be extracted.
    pub fn new(
        name: &str,
        quote_bytes: &[u8],
        collateral: Collateral,
        roots: IntelRoots,
        root_ca_der_for_dcap: Option<Vec<u8>>,
        now: i64,
    ) -> Result<TdxFixture, BenchError> {
        let verify_err = |source| BenchError::Verify {
            name: name.to_owned(),
            source,
        };
        let floor_err = |detail| BenchError::Floor {
            name: name.to_owned(),
            detail,
        };
        let quote = Quote::parse(quote_bytes).map_err(verify_err)?;
        let floor = TdxFloor::new(&quote).map_err(floor_err)?;
        let dcap = DcapInputs::new(quote_bytes, &collateral, root_ca_der_for_dcap, now)
            .map_err(floor_err)?;
        let fixture = TdxFixture {
            name: name.to_owned(),
            quote,
            collateral,
            roots,
            now,
            policy: TdxPolicy::default(),
            dcap,
            floor,
        };
        fixture.cold().map_err(verify_err)?;
        let warm = fixture.warm_verifier().map_err(verify_err)?;
        fixture.warm(&warm).map_err(verify_err)?;
        if !fixture.raw_ecdsa() {
            return Err(floor_err("a raw signature does not verify".into()));
        }
        Ok(fixture)
    }

    /// A real vector from the testdata folder; `Ok(None)` when the folder does not have its quote.
    ///
    /// # Errors
    /// As [`TdxFixture::new`], and I/O errors other than a missing quote.
    pub fn from_vector(
        testdata: &Path,
        case: &TdxVectorCase,
    ) -> Result<Option<TdxFixture>, BenchError> {
        let quote_path = testdata.join(case.quote);
        if !quote_path.is_file() {
            return Ok(None);
        }
        let quote = std::fs::read(&quote_path).map_err(|source| BenchError::Io {
            path: quote_path.clone(),
            source,
        })?;
        let collateral =
            Collateral::from_dir(testdata.join(case.collateral_dir)).map_err(|source| {
                BenchError::Verify {
                    name: case.name.to_owned(),
                    source,
                }
            })?;
        let now =
            time::OffsetDateTime::parse(case.as_of, &time::format_description::well_known::Rfc3339)
                .map_err(|e| BenchError::Floor {
                    name: case.name.to_owned(),
                    detail: format!("as_of: {e}"),
                })?
                .unix_timestamp();
        TdxFixture::new(
            case.name,
            &quote,
            collateral,
            IntelRoots::intel(),
            None,
            now,
        )
        .map(Some)
    }

    /// A fresh simulated Intel root set in `dir` (P-256, as Intel's), one quote from its device, its
    /// collateral, and roots as a server configured with the simulated root has them (Intel's plus the
    /// simulated root, marked simulated).
    ///
    /// # Errors
    /// Root set creation, device and verification failures.
    #[cfg(feature = "sim")]
    pub fn simulated(dir: &Path, now_unix_secs: u64) -> Result<TdxFixture, BenchError> {
        use crate::sim::tdx::{init, SimTdxDevice, TdParams, TdxInitOptions};
        let name = "sim-tdx";
        let layout = init(
            dir,
            &TdxInitOptions {
                force: true,
                ..TdxInitOptions::new(now_unix_secs)
            },
        )?;
        let device = SimTdxDevice::open(dir)?;
        let quote = device.quote(&[0x5a; 64], &TdParams::default())?;
        let verify_err = |source| BenchError::Verify {
            name: name.to_owned(),
            source,
        };
        let collateral = Collateral::from_dir(&layout.collateral_dir).map_err(verify_err)?;
        let root = std::fs::read(&layout.root_der).map_err(|source| BenchError::Io {
            path: layout.root_der.clone(),
            source,
        })?;
        let mut roots = IntelRoots::intel();
        roots.add_root_der(&root, true).map_err(verify_err)?;
        let now = i64::try_from(now_unix_secs).unwrap_or(i64::MAX);
        TdxFixture::new(name, &quote, collateral, roots, Some(root), now)
    }

    /// (a) The floor: both P-256 signatures of the quote (quote by the attestation key, QE report by
    /// the PCK key), keys and signatures pre-parsed.
    pub fn raw_ecdsa(&self) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        let qe_ok = self
            .floor
            .pck_key
            .verify(self.quote.qe_report_bytes(), &self.floor.qe_report_sig)
            .is_ok();
        self.raw_quote_ecdsa() && qe_ok
    }

    /// The quote signature alone (the one P-256 verification the warm path still does: the QE report
    /// signature is cached).
    pub fn raw_quote_ecdsa(&self) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        self.floor
            .att_key
            .verify(self.quote.signed_bytes(), &self.floor.quote_sig)
            .is_ok()
    }

    /// A verifier whose caches already hold this fixture's collateral, PCK chain and QE report.
    ///
    /// # Errors
    /// The verification error, if any (not for a fixture built by [`TdxFixture::new`]).
    pub fn warm_verifier(&self) -> Result<TdxVerifier, Error> {
        let v = TdxVerifier::new(self.roots.clone());
        v.verify(&self.quote, &self.collateral, self.now)?;
        Ok(v)
    }

    /// (b) Warm verification plus appraisal under the baseline policy.
    ///
    /// # Errors
    /// The verification or appraisal error, if any.
    pub fn warm(&self, verifier: &TdxVerifier) -> Result<TdxAppraisal, Error> {
        let v = verifier.verify(&self.quote, &self.collateral, self.now)?;
        tdx_appraise(&v, &self.policy)
    }

    /// (c) Cold verification (a new verifier: collateral, PCK chain and QE report all verified) plus
    /// appraisal.
    ///
    /// # Errors
    /// The verification or appraisal error, if any.
    pub fn cold(&self) -> Result<TdxAppraisal, Error> {
        let v =
            TdxVerifier::new(self.roots.clone()).verify(&self.quote, &self.collateral, self.now)?;
        tdx_appraise(&v, &self.policy)
    }
}

/// Timing summary of one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub iterations: usize,
    pub median_ns: u64,
    pub min_ns: u64,
    pub p90_ns: u64,
}

/// Times `f` individually over `iterations` runs after `warmup` untimed ones.
pub fn sample<T>(warmup: usize, iterations: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    for _ in 0..warmup {
        std::hint::black_box(f());
    }
    (0..iterations)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect()
}

/// Median, minimum and 90th percentile of samples (empty: all zero).
pub fn stats(samples: &[Duration]) -> Stats {
    let mut ns: Vec<u64> = samples
        .iter()
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .collect();
    ns.sort_unstable();
    let at = |q: usize| {
        ns.get((ns.len().saturating_sub(1)) * q / 100)
            .copied()
            .unwrap_or(0)
    };
    Stats {
        iterations: ns.len(),
        median_ns: at(50),
        min_ns: ns.first().copied().unwrap_or(0),
        p90_ns: at(90),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata");

    #[test]
    fn vector_fixture_verifies_and_floors_reject_tampering() {
        let mut f = Fixture::from_vector(Path::new(TESTDATA), &OAK_MILAN_V3)
            .unwrap()
            .unwrap();
        assert!(f.raw_ecdsa() && f.raw_chain());
        assert!(f.cold().is_ok());
        let v = f.warm_verifier().unwrap();
        assert_eq!(v.cached_chains(), 1);
        assert!(f.warm(&v).is_ok());
        // The floors really verify: a flipped TBS byte or another message fails them.
        f.floor.rsa[1].tbs[10] ^= 1;
        assert!(!f.raw_chain());
        assert!(f.raw_ecdsa());
        let other = f.floor.ecdsa_sig;
        f.floor.ecdsa_sig =
            p384::ecdsa::Signature::from_scalars(other.s().to_bytes(), other.r().to_bytes())
                .unwrap();
        assert!(!f.raw_ecdsa());
    }

    #[test]
    fn tdx_vector_fixture_verifies_and_floors_reject_tampering() {
        let mut f = TdxFixture::from_vector(Path::new(TESTDATA), &TDX_DQ_B0C06F_V4)
            .unwrap()
            .unwrap();
        assert!(f.raw_ecdsa() && f.raw_quote_ecdsa());
        assert!(f.cold().is_ok());
        let v = f.warm_verifier().unwrap();
        assert_eq!(v.cached(), (1, 1, 1));
        assert!(f.warm(&v).is_ok());
        // dcap-qvl's inputs: the signed objects verbatim from the files, at the case's as_of.
        let tcb = std::str::from_utf8(&f.collateral.tcb_info).unwrap();
        assert!(f.dcap.tcb_info.starts_with('{') && tcb.contains(&f.dcap.tcb_info));
        assert_ne!(f.dcap.tcb_info, tcb);
        let qe = std::str::from_utf8(&f.collateral.qe_identity).unwrap();
        assert!(qe.contains(&f.dcap.qe_identity));
        assert_eq!(
            (
                f.dcap.tcb_info_signature.len(),
                f.dcap.qe_identity_signature.len()
            ),
            (64, 64)
        );
        assert_eq!(f.dcap.now_secs, 1_751_328_000);
        assert!(f.dcap.root_ca_der.is_none());
        // The floor really verifies both signatures: a bad QE report signature fails it, not the
        // quote signature alone.
        let s = f.floor.qe_report_sig;
        f.floor.qe_report_sig =
            p256::ecdsa::Signature::from_scalars(s.s().to_bytes(), s.r().to_bytes()).unwrap();
        assert!(!f.raw_ecdsa());
        assert!(f.raw_quote_ecdsa());
        let s = f.floor.quote_sig;
        f.floor.quote_sig =
            p256::ecdsa::Signature::from_scalars(s.s().to_bytes(), s.r().to_bytes()).unwrap();
        assert!(!f.raw_quote_ecdsa());
    }

    #[cfg(feature = "sim")]
    #[test]
    fn simulated_tdx_fixture_verifies_with_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_751_328_000;
        let f = TdxFixture::simulated(dir.path(), now).unwrap();
        assert!(f.raw_ecdsa());
        assert_eq!(f.dcap.now_secs, now);
        assert!(f.dcap.root_ca_der.is_some());
        // Intel's roots alone do not verify it.
        let other = TdxVerifier::new(IntelRoots::intel());
        assert!(other.verify(&f.quote, &f.collateral, f.now).is_err());
    }

    #[test]
    fn stats_pick_order_statistics() {
        let s: Vec<Duration> = [5u64, 1, 3, 2, 4]
            .iter()
            .map(|n| Duration::from_nanos(*n))
            .collect();
        let st = stats(&s);
        assert_eq!(
            (st.iterations, st.median_ns, st.min_ns, st.p90_ns),
            (5, 3, 1, 4)
        );
        assert_eq!(stats(&[]).median_ns, 0);
        assert_eq!(sample(1, 3, || 7).len(), 3);
    }
}

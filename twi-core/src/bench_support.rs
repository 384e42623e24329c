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
//! Not part of the API: hidden from the docs, may change with the benchmarks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use der::{Decode, Encode};
use p384::ecdsa::signature::Verifier as _;
use rsa::pkcs1::DecodeRsaPublicKey;
use sha2::Sha384;
use x509_cert::Certificate;

use crate::snp::{
    appraise, Appraisal, AttestationReport, CertChain, SnpPolicy, TrustAnchors, Verifier,
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

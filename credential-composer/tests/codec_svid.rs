//! Relying-party verification of X.509-SVIDs carrying both TWI extensions, end to end over the real
//! formats: a SPIRE-like P-256 CA issues a leaf with `id-pe-cmw` (an EAR signed by a verifier key) and
//! `TwiProvenance` (a statement signed by a provenance key, with an inclusion proof from a real log in
//! a temporary directory). The untampered SVID verifies; each tamper fails at the step that checks it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::process::Command;
use std::str::FromStr as _;
use std::time::Duration;

use const_oid::{AssociatedOid, ObjectIdentifier};
use der::asn1::{Ia5String, UtcTime};
use der::{Encode, EncodePem as _};
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use rand_core::OsRng;
use rustls_pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use twi_core::ear::{
    Appraisal, Ear, Status, TrustVector, VerifierId, VerifierKey, EAR_PROFILE, VERIFIER_DEVELOPER,
};
use twi_credential_composer::cmw::{ear_digest, Cmw, ID_PE_CMW};
use twi_credential_composer::extension::{ProofForm, TwiProvenance, DEFAULT_PROVENANCE_OID};
use twi_credential_composer::record::{
    CredentialKind, CredentialProvenanceRecord, EarRef, EarSummary, EvidenceRef, PolicyRef,
    ResourceDescriptor,
};
use twi_credential_composer::statement::{sign_statement, ProvenanceKey};
use twi_credential_composer::tlog::{Log, LogKey, LogVerifier};
use twi_credential_composer::verify::{
    verify_peer, verify_svid, verify_svid_pem, Outcome, SvidReport, TrustInputs, STEPS,
    STEP_BINDING, STEP_EAR, STEP_INCLUSION, STEP_PATH, STEP_SPIFFE_ID, STEP_STATEMENT,
};
use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::ext::AsExtension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

const NOW: i64 = 1_760_000_000;
const TD: &str = "spiffe://example.org";
const AGENT: &str = "spiffe://example.org/spire/agent/twi/node-1";
const WORKLOAD: &str = "spiffe://example.org/workload/api";
const ORIGIN: &str = "example.org/twi/log";

/// A raw extnValue under a fixed OID (x509-cert's builder wants the OID as an associated const).
struct RawExt<const CMW: bool>(Vec<u8>);

impl<const CMW: bool> AssociatedOid for RawExt<CMW> {
    const OID: ObjectIdentifier = if CMW {
        ID_PE_CMW
    } else {
        ObjectIdentifier::new_unwrap(DEFAULT_PROVENANCE_OID)
    };
}

impl<const CMW: bool> Encode for RawExt<CMW> {
    fn encoded_len(&self) -> der::Result<der::Length> {
        der::Length::try_from(self.0.len())
    }
    fn encode(&self, w: &mut impl der::Writer) -> der::Result<()> {
        w.write(&self.0)
    }
}

impl<const CMW: bool> AsExtension for RawExt<CMW> {
    fn critical(&self, _: &Name, _: &[x509_cert::ext::Extension]) -> bool {
        false
    }
}

fn validity(from: i64, to: i64) -> Validity {
    let t =
        |s: i64| Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(s as u64)).unwrap());
    Validity {
        not_before: t(from),
        not_after: t(to),
    }
}

struct Ca {
    key: SigningKey,
    cert: Certificate,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = SigningKey::random(&mut OsRng);
        let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
        let subject = Name::from_str(&format!("C=US,O=SPIFFE,CN={name}")).unwrap();
        let builder = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            validity(NOW - 86_400, NOW + 86_400 * 30),
            subject,
            spki,
            &key,
        )
        .unwrap();
        let cert = builder.build::<DerSignature>().unwrap();
        Ca { key, cert }
    }

    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert.to_der().unwrap())
    }

    /// A SPIFFE X509-SVID: URI SAN, serverAuth + clientAuth, not a CA, our extensions non-critical.
    fn issue(
        &self,
        id: &str,
        leaf: &SigningKey,
        cmw: Option<Vec<u8>>,
        prov: Option<Vec<u8>>,
    ) -> Vec<u8> {
        let spki = SubjectPublicKeyInfoOwned::from_key(*leaf.verifying_key()).unwrap();
        let mut b = CertificateBuilder::new(
            Profile::Leaf {
                issuer: self.cert.tbs_certificate.subject.clone(),
                enable_key_agreement: true,
                enable_key_encipherment: true,
            },
            SerialNumber::from(77u32),
            validity(NOW - 60, NOW + 3600),
            Name::from_str("C=US,O=SPIRE").unwrap(),
            spki,
            &self.key,
        )
        .unwrap();
        b.add_extension(&SubjectAltName(vec![
            GeneralName::UniformResourceIdentifier(Ia5String::new(id).unwrap()),
        ]))
        .unwrap();
        b.add_extension(&ExtendedKeyUsage(vec![
            const_oid::db::rfc5280::ID_KP_SERVER_AUTH,
            const_oid::db::rfc5280::ID_KP_CLIENT_AUTH,
        ]))
        .unwrap();
        if let Some(c) = cmw {
            b.add_extension(&RawExt::<true>(c)).unwrap();
        }
        if let Some(p) = prov {
            b.add_extension(&RawExt::<false>(p)).unwrap();
        }
        b.build::<DerSignature>().unwrap().to_der().unwrap()
    }
}

fn spki_sha256(key: &SigningKey) -> [u8; 32] {
    Sha256::digest(key.verifying_key().to_public_key_der().unwrap().as_bytes()).into()
}

fn ear(key: &VerifierKey, agent: &str, exp: i64, key_binding: Option<[u8; 32]>) -> String {
    let appraisal = Appraisal {
        status: Status::Affirming,
        trust_vector: TrustVector::all(2),
        policy_ids: vec![
            "tag:twi-spire.dev,2026:policy/default/1?sha256=".to_owned() + &"0".repeat(64),
        ],
        nonce: None,
        evidence_sha256: Some(hex::encode([9u8; 32])),
        tcb_status: None,
        advisory_ids: vec![],
        key_binding: key_binding.map(hex::encode),
        simulated: None,
        reason: None,
    };
    let ear = Ear {
        profile: EAR_PROFILE.into(),
        iat: exp - 3600,
        exp,
        verifier_id: VerifierId {
            developer: VERIFIER_DEVELOPER.into(),
            build: "twi-server-nodeattestor@test".into(),
        },
        status: Status::Affirming,
        submods: BTreeMap::from([("sev-snp".to_owned(), appraisal)]),
        agent_id: Some(agent.into()),
    };
    twi_core::ear::sign(&ear, key).unwrap()
}

fn record(sub: &str, spki: [u8; 32], ear: EarRef) -> CredentialProvenanceRecord {
    CredentialProvenanceRecord {
        rid: CredentialProvenanceRecord::new_rid(NOW as u64 * 1000),
        kind: CredentialKind::AgentX509,
        sub: sub.into(),
        spki_sha256: Some(spki),
        iat: NOW,
        ear,
        evidence: Some(EvidenceRef {
            kind: "sev-snp".into(),
            sha256: [9; 32],
        }),
        policy: Some(PolicyRef {
            id: "agent".into(),
            version: "1".into(),
            sha256: None,
        }),
        wprov: vec![ResourceDescriptor {
            name: Some("launch-measurement".into()),
            digest: BTreeMap::from([("sha384".to_owned(), "ab".repeat(48))]),
            ..Default::default()
        }],
    }
}

fn summary(jws: &str, key_bound: Option<bool>) -> EarRef {
    EarRef::One(EarSummary {
        sha256: ear_digest(jws),
        status: "affirming".into(),
        verifier: "twi-server-nodeattestor@test".into(),
        policy_ids: vec![],
        key_bound,
    })
}

/// Everything a composer and a relying party hold.
struct World {
    _dir: tempfile::TempDir,
    ca: Ca,
    verifier: VerifierKey,
    prov: ProvenanceKey,
    log: Log,
    log_verifier: LogVerifier,
    leaf: SigningKey,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let log_key = LogKey::generate(ORIGIN, &mut OsRng).unwrap();
        let log_verifier = log_key.verifier();
        let log = Log::create(&dir.path().join("log"), log_key).unwrap();
        World {
            _dir: dir,
            ca: Ca::new("ca"),
            verifier: VerifierKey::generate(&mut OsRng),
            prov: ProvenanceKey::generate(),
            log,
            log_verifier,
            leaf: SigningKey::random(&mut OsRng),
        }
    }

    fn trust(&self) -> TrustInputs {
        let mut t = TrustInputs::new(vec![self.ca.der()], NOW);
        t.jwks = Some(self.verifier.jwks());
        t.log = Some(self.log_verifier.clone());
        t.provenance_keys = vec![self.prov.public_key()];
        t
    }

    /// Logs `statement` and returns the provenance extnValue carrying it and its proof.
    fn log_and_wrap(&mut self, statement: &[u8]) -> Vec<u8> {
        let appended = self.log.append_batch(&[statement]).unwrap();
        let proof = String::from_utf8(appended[0].proof.to_tlog_proof()).unwrap();
        TwiProvenance {
            statement: statement.to_vec(),
            proof: Some(ProofForm::TlogProof(proof)),
        }
        .to_der()
    }

    /// The honest agent SVID: its EAR binds the SVID key; the record names that EAR.
    fn agent_svid(&mut self) -> (Vec<u8>, String, Vec<u8>) {
        let jws = ear(
            &self.verifier,
            AGENT,
            NOW + 600,
            Some(spki_sha256(&self.leaf)),
        );
        let rec = record(AGENT, spki_sha256(&self.leaf), summary(&jws, Some(true)));
        let st = sign_statement(&rec, "example.org/composer", &self.prov);
        let prov = self.log_and_wrap(&st);
        let cert = self.ca.issue(
            AGENT,
            &self.leaf,
            Some(Cmw::ear(&jws).to_extn_value()),
            Some(prov),
        );
        (cert, jws, st)
    }
}

fn verify(cert: &[u8], trust: &TrustInputs) -> SvidReport {
    verify_svid(&[CertificateDer::from(cert.to_vec())], trust)
}

fn outcome<'a>(r: &'a SvidReport, name: &str) -> &'a Outcome {
    &r.step(name).unwrap().outcome
}

/// The report fails, first at `step`, and every step in `also` fails too; all others pass.
fn assert_fails_at(r: &SvidReport, step: &str, also: &[&str], reason_has: &str) {
    eprintln!("{r}");
    assert!(!r.ok(), "{r}");
    let first = r.first_failure().unwrap();
    assert_eq!(first.name, step, "{r}");
    match &first.outcome {
        Outcome::Failed(reason) => assert!(
            reason.contains(reason_has),
            "{reason:?} lacks {reason_has:?}\n{r}"
        ),
        other => panic!("{other:?}"),
    }
    for s in &r.steps {
        let want_fail = s.name == step || also.contains(&s.name);
        assert_eq!(
            matches!(s.outcome, Outcome::Failed(_)),
            want_fail,
            "step {}:\n{r}",
            s.name
        );
        if !want_fail {
            assert_eq!(s.outcome, Outcome::Passed, "step {}:\n{r}", s.name);
        }
    }
}

#[test]
fn honest_agent_svid_verifies() {
    let mut w = World::new();
    let (cert, jws, st) = w.agent_svid();
    let r = verify(&cert, &w.trust());
    assert!(r.ok(), "{r}");
    assert_eq!(r.steps.iter().map(|s| s.name).collect::<Vec<_>>(), STEPS);
    assert!(r.steps.iter().all(|s| s.outcome == Outcome::Passed), "{r}");
    assert_eq!(r.spiffe_id.as_deref(), Some(AGENT));
    assert_eq!(r.ears.len(), 1);
    assert_eq!(r.ears[0].sha256, ear_digest(&jws));
    assert_eq!(r.ears[0].key_bound, Some(true));
    assert_eq!(r.ears[0].status, Some(Status::Affirming));
    assert_eq!(r.ears[0].exp, Some(NOW + 600));
    assert_eq!(r.ears[0].policy_ids.len(), 1);
    let rec = r.record.as_ref().unwrap();
    assert_eq!(rec.sub, AGENT);
    assert_eq!(r.log_entry, Some((ORIGIN.to_owned(), 0, 1)));
    assert_eq!(r.statement_issuer.as_deref(), Some("example.org/composer"));

    let j = r.to_json();
    assert_eq!(j["ok"], true);
    assert_eq!(j["steps"].as_array().unwrap().len(), 6);
    assert_eq!(j["record"]["kind"], "agent-x509");
    assert_eq!(j["ears"][0]["ear_status"], "affirming");
    let text = r.to_string();
    assert!(
        text.contains("VERIFIED") && text.contains("[ok  ] inclusion"),
        "{text}"
    );

    // The PEM path and the rustls-shaped entry point agree.
    let pem = der_to_pem(&cert);
    assert!(verify_svid_pem(pem.as_bytes(), &w.trust()).unwrap().ok());
    let now = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(NOW as u64));
    assert!(verify_peer(&CertificateDer::from(cert.clone()), &[], now, &w.trust()).is_ok());
    // Long after the certificate and the EAR expired, the peer is refused at the path step.
    let later =
        rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(NOW as u64 + 86_400));
    let refused = verify_peer(&CertificateDer::from(cert), &[], later, &w.trust()).unwrap_err();
    assert!(
        refused.to_string().starts_with("SVID refused at step path"),
        "{refused}"
    );
    let _ = st;
}

fn der_to_pem(der: &[u8]) -> String {
    use der::Decode as _;
    Certificate::from_der(der)
        .unwrap()
        .to_pem(der::pem::LineEnding::LF)
        .unwrap()
}

#[test]
fn missing_inputs_are_skipped_not_passed() {
    let mut w = World::new();
    let (cert, _, _) = w.agent_svid();
    let r = verify(&cert, &TrustInputs::new(vec![w.ca.der()], NOW));
    assert!(r.ok(), "{r}");
    assert_eq!(*outcome(&r, STEP_PATH), Outcome::Passed);
    assert_eq!(*outcome(&r, STEP_SPIFFE_ID), Outcome::Passed);
    for (step, flag) in [
        (STEP_EAR, "--jwks"),
        (STEP_STATEMENT, "--provenance-key"),
        (STEP_INCLUSION, "--log-key"),
    ] {
        match outcome(&r, step) {
            Outcome::Skipped(why) => assert!(why.contains(flag), "{why}"),
            other => panic!("{step}: {other:?}"),
        }
    }
    // Binding still compares the (unverified) record with the certificate.
    assert_eq!(*outcome(&r, STEP_BINDING), Outcome::Passed);
    assert!(r.to_string().contains("[skip] ear"));
}

#[test]
fn wrong_bundle_fails_at_path() {
    let mut w = World::new();
    let (cert, _, _) = w.agent_svid();
    let mut t = w.trust();
    t.bundle = vec![Ca::new("other").der()];
    assert_fails_at(&verify(&cert, &t), STEP_PATH, &[], "no path to the bundle");
}

#[test]
fn ear_signed_by_another_key_fails_at_ear() {
    let mut w = World::new();
    let other = VerifierKey::generate(&mut OsRng);
    let jws = ear(&other, AGENT, NOW + 600, Some(spki_sha256(&w.leaf)));
    // Record and statement are honest about the EAR they carry: only the EAR check can catch it.
    let rec = record(AGENT, spki_sha256(&w.leaf), summary(&jws, None));
    let prov = w.log_and_wrap(&sign_statement(&rec, "c", &w.prov));
    let cert = w.ca.issue(
        AGENT,
        &w.leaf,
        Some(Cmw::ear(&jws).to_extn_value()),
        Some(prov),
    );
    assert_fails_at(&verify(&cert, &w.trust()), STEP_EAR, &[], "no key with kid");
}

#[test]
fn expired_ear_fails_at_ear() {
    let mut w = World::new();
    let jws = ear(&w.verifier, AGENT, NOW - 1, Some(spki_sha256(&w.leaf)));
    let rec = record(AGENT, spki_sha256(&w.leaf), summary(&jws, None));
    let prov = w.log_and_wrap(&sign_statement(&rec, "c", &w.prov));
    let cert = w.ca.issue(
        AGENT,
        &w.leaf,
        Some(Cmw::ear(&jws).to_extn_value()),
        Some(prov),
    );
    assert_fails_at(&verify(&cert, &w.trust()), STEP_EAR, &[], "expired");
}

#[test]
fn statement_signed_by_another_key_fails_at_statement() {
    let mut w = World::new();
    let jws = ear(&w.verifier, AGENT, NOW + 600, Some(spki_sha256(&w.leaf)));
    let rec = record(AGENT, spki_sha256(&w.leaf), summary(&jws, Some(true)));
    let prov = w.log_and_wrap(&sign_statement(&rec, "c", &ProvenanceKey::generate()));
    let cert = w.ca.issue(
        AGENT,
        &w.leaf,
        Some(Cmw::ear(&jws).to_extn_value()),
        Some(prov),
    );
    // Without a verified record there is nothing to bind.
    assert_fails_at(
        &verify(&cert, &w.trust()),
        STEP_STATEMENT,
        &[STEP_BINDING],
        "kid",
    );
}

#[test]
fn statement_for_another_subject_fails_at_binding() {
    let mut w = World::new();
    let jws = ear(&w.verifier, AGENT, NOW + 600, Some(spki_sha256(&w.leaf)));
    let rec = record(WORKLOAD, spki_sha256(&w.leaf), summary(&jws, Some(true)));
    let prov = w.log_and_wrap(&sign_statement(&rec, "c", &w.prov));
    let cert = w.ca.issue(
        AGENT,
        &w.leaf,
        Some(Cmw::ear(&jws).to_extn_value()),
        Some(prov),
    );
    assert_fails_at(
        &verify(&cert, &w.trust()),
        STEP_BINDING,
        &[],
        "is not the SPIFFE ID",
    );
}

#[test]
fn statement_for_another_key_fails_at_binding() {
    let mut w = World::new();
    let other_key = SigningKey::random(&mut OsRng);
    let jws = ear(&w.verifier, AGENT, NOW + 600, Some(spki_sha256(&w.leaf)));
    let rec = record(AGENT, spki_sha256(&other_key), summary(&jws, Some(true)));
    let prov = w.log_and_wrap(&sign_statement(&rec, "c", &w.prov));
    let cert = w.ca.issue(
        AGENT,
        &w.leaf,
        Some(Cmw::ear(&jws).to_extn_value()),
        Some(prov),
    );
    assert_fails_at(
        &verify(&cert, &w.trust()),
        STEP_BINDING,
        &[],
        "is not the certificate's key",
    );
}

#[test]
fn ear_digest_mismatch_fails_at_binding() {
    let mut w = World::new();
    let jws = ear(&w.verifier, AGENT, NOW + 600, Some(spki_sha256(&w.leaf)));
    let older = ear(&w.verifier, AGENT, NOW + 300, Some(spki_sha256(&w.leaf)));
    let rec = record(AGENT, spki_sha256(&w.leaf), summary(&older, Some(true)));
    let prov = w.log_and_wrap(&sign_statement(&rec, "c", &w.prov));
    let cert = w.ca.issue(
        AGENT,
        &w.leaf,
        Some(Cmw::ear(&jws).to_extn_value()),
        Some(prov),
    );
    assert_fails_at(
        &verify(&cert, &w.trust()),
        STEP_BINDING,
        &[],
        "is not the digest of the EAR",
    );
}

#[test]
fn key_bound_claim_must_match_the_ear() {
    let mut w = World::new();
    // The EAR binds another key (a workload SVID under an agent's EAR), but the record claims bound.
    let jws = ear(&w.verifier, AGENT, NOW + 600, Some([1; 32]));
    let rec = record(AGENT, spki_sha256(&w.leaf), summary(&jws, Some(true)));
    let prov = w.log_and_wrap(&sign_statement(&rec, "c", &w.prov));
    let cert = w.ca.issue(
        AGENT,
        &w.leaf,
        Some(Cmw::ear(&jws).to_extn_value()),
        Some(prov),
    );
    let r = verify(&cert, &w.trust());
    assert_eq!(r.ears[0].key_bound, Some(false));
    assert_fails_at(&r, STEP_BINDING, &[], "key_bound true");
}

#[test]
fn proof_for_another_leaf_fails_at_inclusion() {
    let mut w = World::new();
    let jws = ear(&w.verifier, AGENT, NOW + 600, Some(spki_sha256(&w.leaf)));
    let rec = record(AGENT, spki_sha256(&w.leaf), summary(&jws, Some(true)));
    let st = sign_statement(&rec, "c", &w.prov);
    // Log another record first and the real one after; carry the first one's proof.
    let decoy = sign_statement(&record(AGENT, [0; 32], summary(&jws, None)), "c", &w.prov);
    let decoy_ext = TwiProvenance::from_der(&w.log_and_wrap(&decoy)).unwrap();
    w.log.append_batch(&[&st]).unwrap();
    let prov = TwiProvenance {
        statement: st,
        proof: decoy_ext.proof,
    }
    .to_der();
    let cert = w.ca.issue(
        AGENT,
        &w.leaf,
        Some(Cmw::ear(&jws).to_extn_value()),
        Some(prov),
    );
    assert_fails_at(&verify(&cert, &w.trust()), STEP_INCLUSION, &[], "inclusion");
}

#[test]
fn checkpoint_signed_by_another_log_key_fails_at_inclusion() {
    let w = World::new();
    let jws = ear(&w.verifier, AGENT, NOW + 600, Some(spki_sha256(&w.leaf)));
    let rec = record(AGENT, spki_sha256(&w.leaf), summary(&jws, Some(true)));
    let st = sign_statement(&rec, "c", &w.prov);
    // A second log with the same origin but its own key: a forked or fake log.
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Log::create(dir.path(), LogKey::generate(ORIGIN, &mut OsRng).unwrap()).unwrap();
    let appended = fake.append_batch(&[&st]).unwrap();
    let prov = TwiProvenance {
        statement: st,
        proof: Some(ProofForm::TlogProof(
            String::from_utf8(appended[0].proof.to_tlog_proof()).unwrap(),
        )),
    }
    .to_der();
    let cert = w.ca.issue(
        AGENT,
        &w.leaf,
        Some(Cmw::ear(&jws).to_extn_value()),
        Some(prov),
    );
    let r = verify(&cert, &w.trust());
    assert_fails_at(&r, STEP_INCLUSION, &[], "");
    assert!(r.log_entry.is_none());
}

#[test]
fn flipped_byte_in_an_extension_fails_at_path_and_the_statement() {
    let mut w = World::new();
    let (cert, _, st) = w.agent_svid();
    // The last byte of the statement (inside its Ed25519 signature), inside the certificate.
    let pos = cert
        .windows(st.len())
        .position(|win| win == st.as_slice())
        .unwrap()
        + st.len()
        - 1;
    let mut bad = cert.clone();
    bad[pos] ^= 0x01;
    // The CA's signature covers the extension; the statement's signature and the log leaf too.
    assert_fails_at(
        &verify(&bad, &w.trust()),
        STEP_PATH,
        &[STEP_STATEMENT, STEP_BINDING, STEP_INCLUSION],
        "",
    );
    // A flipped byte in the CMW's EAR: path, the EAR signature and the record's EAR digest fail.
    let cmw_ext = w.agent_svid();
    let jws = cmw_ext.1;
    let cert = cmw_ext.0;
    let sig_start = jws.rfind('.').unwrap() + 1;
    let b64 = base64_of(&jws[..]);
    let pos = cert
        .windows(b64.len())
        .position(|win| win == b64.as_bytes())
        .unwrap()
        + sig_start
        + 2;
    let mut bad = cert.clone();
    bad[pos] = if bad[pos] == b'A' { b'B' } else { b'A' };
    assert_fails_at(
        &verify(&bad, &w.trust()),
        STEP_PATH,
        &[STEP_EAR, STEP_BINDING],
        "",
    );
}

/// The base64url text of `jws` as the CMW carries it.
fn base64_of(jws: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jws.as_bytes())
}

#[test]
fn workload_with_candidate_parents() {
    let mut w = World::new();
    let a = ear(&w.verifier, AGENT, NOW + 600, Some([1; 32]));
    let b_agent = format!("{TD}/spire/agent/twi/node-2");
    let b = ear(&w.verifier, &b_agent, NOW + 600, Some([2; 32]));
    let collection =
        Cmw::ear_collection(&[(AGENT.into(), a.clone()), (b_agent.clone(), b.clone())]);
    let mut rec = record(
        WORKLOAD,
        spki_sha256(&w.leaf),
        EarRef::Candidates(vec![ear_digest(&b), ear_digest(&a)]),
    );
    rec.kind = CredentialKind::X509;
    let prov = w.log_and_wrap(&sign_statement(&rec, "c", &w.prov));
    let cert = w.ca.issue(
        WORKLOAD,
        &w.leaf,
        Some(collection.to_extn_value()),
        Some(prov.clone()),
    );
    let r = verify(&cert, &w.trust());
    assert!(r.ok(), "{r}");
    assert_eq!(r.ears.len(), 2);
    assert!(r.ears.iter().all(|e| e.key_bound == Some(false)));

    // Without the CMW (too many candidates to include), the record alone still binds.
    let cert = w.ca.issue(WORKLOAD, &w.leaf, None, Some(prov.clone()));
    let r = verify(&cert, &w.trust());
    assert!(r.ok(), "{r}");
    assert!(matches!(outcome(&r, STEP_EAR), Outcome::Skipped(_)));

    // A collection whose EARs are not the record's candidates.
    let c = ear(&w.verifier, AGENT, NOW + 500, None);
    let other = Cmw::ear_collection(&[(AGENT.into(), c), (b_agent.clone(), b.clone())]);
    let cert = w.ca.issue(
        WORKLOAD,
        &w.leaf,
        Some(other.to_extn_value()),
        Some(prov.clone()),
    );
    assert_fails_at(&verify(&cert, &w.trust()), STEP_BINDING, &[], "candidate");

    // A label that is not the EAR's agent: a swapped collection.
    let swapped = Cmw::ear_collection(&[(AGENT.into(), b.clone()), (b_agent, a.clone())]);
    let cert =
        w.ca.issue(WORKLOAD, &w.leaf, Some(swapped.to_extn_value()), Some(prov));
    assert_fails_at(
        &verify(&cert, &w.trust()),
        STEP_EAR,
        &[],
        "collection label",
    );
}

#[test]
fn svid_without_extensions_is_refused() {
    let w = World::new();
    let cert = w.ca.issue(WORKLOAD, &w.leaf, None, None);
    let r = verify(&cert, &w.trust());
    assert_eq!(r.first_failure().unwrap().name, STEP_STATEMENT, "{r}");
    assert!(matches!(outcome(&r, STEP_EAR), Outcome::Skipped(_)));
    assert!(matches!(outcome(&r, STEP_INCLUSION), Outcome::Failed(_)));
}

#[test]
fn spiffe_id_rules() {
    let w = World::new();
    let cert = w.ca.issue("https://example.org/x", &w.leaf, None, None);
    let r = verify(&cert, &w.trust());
    match outcome(&r, STEP_SPIFFE_ID) {
        Outcome::Failed(why) => assert!(why.contains("not a spiffe://"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.spiffe_id, None);
}

#[test]
fn openssl_parses_the_svid_and_shows_both_extensions() {
    let mut w = World::new();
    let (cert, _, _) = w.agent_svid();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svid.pem");
    std::fs::write(&path, der_to_pem(&cert)).unwrap();
    let out = Command::new("/usr/bin/openssl")
        .args(["x509", "-text", "-noout", "-in"])
        .arg(&path)
        .output()
        .expect("/usr/bin/openssl must be installed (interop test; not skipped)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1.3.6.1.5.5.7.1.35"), "{text}");
    assert!(text.contains(DEFAULT_PROVENANCE_OID), "{text}");
    assert!(
        text.contains("URI:spiffe://example.org/spire/agent/twi/node-1"),
        "{text}"
    );
    // And OpenSSL accepts the path to the bundle.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, w.ca.cert.to_pem(der::pem::LineEnding::LF).unwrap()).unwrap();
    let out = Command::new("/usr/bin/openssl")
        .args(["verify", "-attime", &NOW.to_string(), "-CAfile"])
        .arg(&ca)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

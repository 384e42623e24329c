//! `twi svid verify` exit codes (0 verified, 1 refused, 2 usage or I/O error) on an SVID that OpenSSL
//! issued: a P-256 CA and a leaf made with `/usr/bin/openssl`, carrying our two extensions as raw DER
//! (an EAR in `id-pe-cmw`, the signed provenance statement with its proof from a real log). So this
//! also shows that certificates from another toolchain verify with our checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand_core::OsRng;
use sha2::{Digest as _, Sha256};
use twi_core::ear::{
    Appraisal, Ear, Status, TrustVector, VerifierId, VerifierKey, EAR_PROFILE, VERIFIER_DEVELOPER,
};
use twi_credential_composer::cmw::{ear_digest, Cmw};
use twi_credential_composer::extension::{ProofForm, TwiProvenance, DEFAULT_PROVENANCE_OID};
use twi_credential_composer::record::{
    CredentialKind, CredentialProvenanceRecord, EarRef, EarSummary,
};
use twi_credential_composer::statement::{sign_statement, ProvenanceKey};
use twi_credential_composer::tlog::{Log, LogKey};

const ID: &str = "spiffe://example.org/spire/agent/twi/node-1";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("/usr/bin/openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("/usr/bin/openssl must be installed (interop test; not skipped)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A P-256 CA (`name`.pem / `name`.key) made by OpenSSL.
fn openssl_ca(dir: &Path, name: &str) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let pem = format!("{name}.pem");
    std::fs::write(
        dir.join("ca.cnf"),
        "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/C=US/O=SPIFFE/CN={name}"),
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509", "-req", "-in", &csr, "-signkey", &key, "-days", "30", "-extfile", "ca.cnf",
            "-out", &pem,
        ],
    );
}

struct Files {
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

impl Files {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

/// CA, SVID, JWKS, log vkey and provenance key files; `statement_key` signs the statement (the
/// honest provenance key unless a test wants a forged one).
fn setup(forge_statement: bool) -> Files {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    openssl_ca(&dir, "ca");
    openssl_ca(&dir, "other-ca");
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "leaf.key",
        ],
    );
    openssl(
        &dir,
        &[
            "pkey",
            "-in",
            "leaf.key",
            "-pubout",
            "-outform",
            "DER",
            "-out",
            "leaf.spki",
        ],
    );
    let spki: [u8; 32] = Sha256::digest(std::fs::read(dir.join("leaf.spki")).unwrap()).into();

    let now = now();
    let verifier = VerifierKey::generate(&mut OsRng);
    let ear = Ear {
        profile: EAR_PROFILE.into(),
        iat: now - 10,
        exp: now + 3600,
        verifier_id: VerifierId {
            developer: VERIFIER_DEVELOPER.into(),
            build: "twi-server-nodeattestor@test".into(),
        },
        status: Status::Affirming,
        submods: BTreeMap::from([(
            "sev-snp".to_owned(),
            Appraisal {
                status: Status::Affirming,
                trust_vector: TrustVector::all(2),
                policy_ids: vec![],
                nonce: None,
                evidence_sha256: None,
                tcb_status: None,
                advisory_ids: vec![],
                key_binding: Some(hex::encode(spki)),
                simulated: None,
                reason: None,
            },
        )]),
        agent_id: Some(ID.into()),
    };
    let jws = twi_core::ear::sign(&ear, &verifier).unwrap();
    let record = CredentialProvenanceRecord {
        rid: CredentialProvenanceRecord::new_rid(now as u64 * 1000),
        kind: CredentialKind::AgentX509,
        sub: ID.into(),
        spki_sha256: Some(spki),
        iat: now,
        ear: EarRef::One(EarSummary {
            sha256: ear_digest(&jws),
            status: "affirming".into(),
            verifier: "twi-server-nodeattestor@test".into(),
            policy_ids: vec![],
            key_bound: Some(true),
        }),
        evidence: None,
        policy: None,
        wprov: vec![],
    };
    let prov = ProvenanceKey::generate();
    let signer = if forge_statement {
        ProvenanceKey::generate()
    } else {
        prov.clone()
    };
    let statement = sign_statement(&record, "example.org/composer", &signer);
    let log_key = LogKey::generate("example.org/twi/log", &mut OsRng).unwrap();
    std::fs::write(dir.join("log.vkey"), format!("{}\n", log_key.vkey())).unwrap();
    let mut log = Log::create(&dir.join("log"), log_key).unwrap();
    let appended = log.append_batch(&[&statement]).unwrap();
    let ext = TwiProvenance {
        statement,
        proof: Some(ProofForm::TlogProof(
            String::from_utf8(appended[0].proof.to_tlog_proof()).unwrap(),
        )),
    };

    std::fs::write(dir.join("jwks.json"), verifier.jwks().to_json()).unwrap();
    std::fs::write(dir.join("prov.pub"), prov.public_key().to_pem()).unwrap();
    std::fs::write(
        dir.join("leaf.cnf"),
        format!(
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature, keyEncipherment, keyAgreement\n\
             extendedKeyUsage = serverAuth, clientAuth\n\
             subjectAltName = URI:{ID}\n\
             1.3.6.1.5.5.7.1.35 = DER:{}\n\
             {DEFAULT_PROVENANCE_OID} = DER:{}\n",
            hex::encode(Cmw::ear(&jws).to_extn_value()),
            hex::encode(ext.to_der()),
        ),
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-new",
            "-key",
            "leaf.key",
            "-subj",
            "/C=US/O=SPIRE",
            "-out",
            "leaf.csr",
        ],
    );
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "7",
            "-days",
            "1",
            "-extfile",
            "leaf.cnf",
            "-out",
            "svid.pem",
        ],
    );
    Files { _dir: tmp, dir }
}

fn twi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twi"))
        .arg("svid")
        .arg("verify")
        .args(args)
        .output()
        .unwrap()
}

fn all_inputs(f: &Files, bundle: &str) -> Vec<String> {
    [
        "--svid",
        &f.path("svid.pem"),
        "--bundle",
        &f.path(bundle),
        "--jwks",
        &f.path("jwks.json"),
        "--log-key",
        &f.path("log.vkey"),
        "--provenance-key",
        &f.path("prov.pub"),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn run(args: &[String]) -> Output {
    twi(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn exit_0_when_every_check_passes() {
    let f = setup(false);
    let out = run(&all_inputs(&f, "ca.pem"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("VERIFIED") && stdout.contains(ID),
        "{stdout}"
    );
    for step in [
        "path",
        "spiffe-id",
        "ear",
        "statement",
        "binding",
        "inclusion",
    ] {
        assert!(
            stdout.contains(&format!("[ok  ] {step}")),
            "{step}: {stdout}"
        );
    }

    let mut args = all_inputs(&f, "ca.pem");
    args.push("--json".into());
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["spiffe_id"], ID);
    assert_eq!(v["log"]["index"], 0);

    // Only the required inputs: the other steps are skipped, which is not a failure.
    let out = twi(&["--svid", &f.path("svid.pem"), "--bundle", &f.path("ca.pem")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("[skip] inclusion"), "{}", text(&out));
}

#[test]
fn exit_1_when_a_check_fails() {
    let f = setup(false);
    let out = run(&all_inputs(&f, "other-ca.pem"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("[FAIL] path"), "{}", text(&out));

    let mut args = all_inputs(&f, "other-ca.pem");
    args.push("--json".into());
    let v: serde_json::Value = serde_json::from_slice(&run(&args).stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["steps"][0]["outcome"], "failed");

    // Long after the SVID expired.
    let mut args = all_inputs(&f, "ca.pem");
    args.extend(["--now".to_owned(), "2100-01-01T00:00:00Z".to_owned()]);
    assert_eq!(run(&args).status.code(), Some(1));

    // A file that holds no certificate is a refused credential, not a usage error.
    std::fs::write(f.dir.join("junk.pem"), "not a certificate\n").unwrap();
    let out = twi(&["--svid", &f.path("junk.pem"), "--bundle", &f.path("ca.pem")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let forged = setup(true);
    let out = run(&all_inputs(&forged, "ca.pem"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("[FAIL] statement"), "{}", text(&out));
}

#[test]
fn exit_2_for_usage_and_input_errors() {
    let f = setup(false);
    // Unreadable SVID file.
    let out = twi(&[
        "--svid",
        &f.path("missing.pem"),
        "--bundle",
        &f.path("ca.pem"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Malformed trust inputs.
    for (flag, content) in [
        ("--jwks", "{not json"),
        ("--log-key", "not a vkey"),
        (
            "--provenance-key",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ),
        ("--bundle", "no certificates here"),
    ] {
        std::fs::write(f.dir.join("bad"), content).unwrap();
        // Each flag once, with the bad file in place of the good one.
        let mut args = all_inputs(&f, "ca.pem");
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1] = f.path("bad");
        let out = run(&args);
        assert!(
            !text(&out).contains("cannot be used multiple times"),
            "{}",
            text(&out)
        );
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", text(&out));
    }
    // Missing required flag, bad OID.
    assert_eq!(twi(&["--svid", &f.path("svid.pem")]).status.code(), Some(2));
    let mut args = all_inputs(&f, "ca.pem");
    args.extend(["--provenance-oid".to_owned(), "not-an-oid".to_owned()]);
    assert_eq!(run(&args).status.code(), Some(2));
}

//! The credential composer with the real SPIRE server and agent 1.15.3 (issue #5): a simulated SEV-SNP
//! agent attests through our node attestor, which stores its signed attestation result (EAR); our
//! CredentialComposer puts that EAR (a CMW in `id-pe-cmw`) and a signed credential-provenance record
//! with its inclusion proof (`TwiProvenance`) into the agent's and the workload's X.509-SVIDs, and
//! claims into JWT-SVIDs. Then every independent checker agrees:
//!
//! - the real SPIRE agent serves the SVID to a workload over the Workload API (`api fetch x509`), and
//!   the `spiffe` crate's Workload API client fetches the same SVID;
//! - `openssl x509 -text` parses it and lists both extensions;
//! - `twi svid verify` passes every step with the bundle, the verifier JWKS, the log key and the
//!   provenance key, and refuses a tampered SVID, another log's key and a tampered proof;
//! - Go's `golang.org/x/mod/sumdb/tlog` (integration/go-tlog-check) verifies the record's inclusion proof
//!   and checkpoint, and reads the log's tiles from the composer's HTTP server;
//! - the JWT-SVID carries `cmw`, `jti` = the record id and the provenance reference.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use der::DecodePem;
use twi::spire::{PluginBlock, SpireAgent, SpireServer};
use twi_credential_composer::cmw::{Cmw, ID_PE_CMW};
use twi_credential_composer::extension::{ProofForm, TwiProvenance, DEFAULT_PROVENANCE_OID};
use twi_credential_composer::record::EarRef;
use twi_credential_composer::statement::{verify_statement, ProvenancePublicKey};
use twi_integration::*;
use x509_cert::Certificate;

/// Where the composer keeps its log, keys and the files relying parties get.
struct ComposerFiles {
    log_dir: PathBuf,
    log_key: PathBuf,
    log_vkey: PathBuf,
    provenance_key: PathBuf,
    provenance_pub: PathBuf,
}

impl ComposerFiles {
    fn in_dir(dir: &Path) -> ComposerFiles {
        ComposerFiles {
            log_dir: dir.join("cprov-log"),
            log_key: dir.join("log-key"),
            log_vkey: dir.join("log-vkey.txt"),
            provenance_key: dir.join("provenance-key.pem"),
            provenance_pub: dir.join("provenance-pub.pem"),
        }
    }
}

/// The composer's `CredentialComposer "twi"` block for a server whose local API socket is `socket`.
fn composer_block(
    files: &ComposerFiles,
    results: &ResultFiles,
    socket: &Path,
    serve: &str,
) -> Result<PluginBlock> {
    let mut block = composer_plugin(&[
        ("log_dir", path_value(&files.log_dir)),
        ("log_key_path", path_value(&files.log_key)),
        ("log_vkey_path", path_value(&files.log_vkey)),
        ("provenance_key_path", path_value(&files.provenance_key)),
        (
            "provenance_public_key_path",
            path_value(&files.provenance_pub),
        ),
        (
            "attestation_results_database",
            format!("sqlite://{}", results.database.display()),
        ),
        ("server_socket_path", path_value(socket)),
        ("log_serve_address", serve.to_owned()),
    ])?;
    block.data.push_str("entry_refresh_seconds = 1\n");
    Ok(block)
}

/// The extension `oid` of `cert`, which must be there once and non-critical.
fn extension<'a>(cert: &'a Certificate, oid: &str) -> Result<&'a [u8]> {
    let oid = const_oid::ObjectIdentifier::new(oid).context("oid")?;
    let found: Vec<_> = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == oid)
        .collect();
    match found.as_slice() {
        [one] => {
            assert!(!one.critical, "{oid} must be non-critical");
            Ok(one.extn_value.as_bytes())
        }
        other => bail!("{} {oid} extensions, want 1", other.len()),
    }
}

/// What the TWI extensions of one SVID say, decoded with the library and checked against the
/// verifier's JWKS and the provenance key.
struct Decoded {
    ear_jws: Option<String>,
    statement: Vec<u8>,
    tlog_proof: String,
    record_sub: String,
    rid: String,
}

fn decode(cert: &Certificate, files: &ComposerFiles, results: &ResultFiles) -> Result<Decoded> {
    let ear_jws = match extension(cert, &ID_PE_CMW.to_string()) {
        Ok(v) => {
            let cmw = Cmw::from_extn_value(v)?;
            let ears = cmw.ear_jwss();
            assert_eq!(ears.len(), 1, "one EAR in the CMW: {ears:?}");
            let jwks = twi_core::ear::Jwks::from_json(&std::fs::read(&results.jwks)?)?;
            let ear = twi_core::ear::verify(&ears[0].1, &jwks, unix_now() as i64)
                .context("the EAR in the SVID verifies with the verifier's JWKS")?;
            assert!(ear.check_structure().is_ok());
            Some(ears[0].1.clone())
        }
        Err(_) => None,
    };
    let prov = TwiProvenance::from_der(extension(cert, DEFAULT_PROVENANCE_OID)?)
        .context("TwiProvenance")?;
    let key = ProvenancePublicKey::from_pem(&std::fs::read_to_string(&files.provenance_pub)?)
        .context("provenance public key")?;
    let signed = verify_statement(&prov.statement, &key).context("statement signature")?;
    let tlog_proof = match prov.proof {
        Some(ProofForm::TlogProof(p)) => p,
        other => bail!("want a tlog-proof, got {other:?}"),
    };
    if let (Some(jws), EarRef::One(summary)) = (&ear_jws, &signed.record.ear) {
        use sha2::Digest;
        assert_eq!(
            summary.sha256,
            <[u8; 32]>::from(sha2::Sha256::digest(jws.as_bytes())),
            "the record names the EAR in the CMW"
        );
    }
    Ok(Decoded {
        ear_jws,
        statement: prov.statement,
        tlog_proof,
        record_sub: signed.record.sub.clone(),
        rid: signed.record.rid.to_string(),
    })
}

fn twi_svid_verify(
    svid: &Path,
    bundle: &Path,
    files: &ComposerFiles,
    results: &ResultFiles,
) -> Output {
    Command::new(twi_cli().unwrap())
        .args(["svid", "verify", "--json", "--svid"])
        .arg(svid)
        .arg("--bundle")
        .arg(bundle)
        .arg("--jwks")
        .arg(&results.jwks)
        .arg("--log-key")
        .arg(&files.log_vkey)
        .arg("--provenance-key")
        .arg(&files.provenance_pub)
        .output()
        .expect("running twi svid verify")
}

fn go_tlog_check(args: &[&str]) -> Output {
    Command::new("go")
        .arg("run")
        .arg(".")
        .args(args)
        .current_dir(workspace().join("integration/go-tlog-check"))
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .output()
        .expect("`go` is required for this test (Go toolchain on PATH); it is not optional")
}

/// The workload's SVID through the `spiffe` crate's Workload API client: the same leaf the agent
/// served to `api fetch x509`.
fn fetch_with_spiffe_crate(socket: &Path) -> Result<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client =
            spiffe::WorkloadApiClient::connect_to(&format!("unix:{}", socket.display())).await?;
        let svid = client.fetch_x509_svid().await?;
        let leaf = svid
            .cert_chain()
            .first()
            .context("an empty chain")?
            .as_bytes()
            .to_vec();
        Ok::<_, anyhow::Error>(leaf)
    })
}

#[test]
fn svids_carry_attestation_result_and_logged_provenance() -> Result<()> {
    let bins = spire_bins()?;
    let sim = shared_sim_dir()?;
    let run = spire::short_tempdir("twi-e2e9-")?;
    let root = run.path().canonicalize()?;
    let results = ResultFiles::in_dir(&root);
    let files = ComposerFiles::in_dir(&root);
    let serve = format!("127.0.0.1:{}", spire::free_port()?);

    let mut settings = server_settings(&[sim], "")?;
    settings.plugins[0].data.push('\n');
    settings.plugins[0].data.push_str(&results.hcl());
    settings.plugins.push(composer_block(
        &files,
        &results,
        &root.join("server.sock"),
        &serve,
    )?);
    let server = SpireServer::start(&bins, &root, &settings)?;
    let mut agent = SpireAgent::start(
        &bins,
        &server,
        &agent_settings("agent", plugin("twi-agent-nodeattestor")?, &[], sim, ""),
    )?;
    let agent_id = agent.wait_attested(Duration::from_secs(60))?;

    // The agent's own SVID (persisted by spire-agent in data_dir/agent-data.json, `svid`: the chain, leaf
    // first, each a PEM certificate as base64 JSON bytes) carries its EAR and a record.
    let agent_svid = agent_svid(&agent.dir.join("data/agent-data.json"))?;
    let a = decode(&agent_svid, &files, &results).context("the agent SVID")?;
    assert!(a.ear_jws.is_some(), "the agent SVID carries its EAR");
    assert_eq!(a.record_sub, agent_id);

    // A workload entry parented by exactly that agent: its SVID carries the agent's EAR.
    let uid = String::from_utf8(Command::new("id").arg("-u").output()?.stdout)?;
    let workload_id = format!("spiffe://{TRUST_DOMAIN}/e2e/composer/workload");
    server.entry_create(
        &agent_id,
        &workload_id,
        &[&format!("unix:uid:{}", uid.trim())],
    )?;
    let out_dir = root.join("svid");
    agent.fetch_x509_until_ok(&out_dir, Duration::from_secs(60))?;
    let svid_pem = std::fs::read(out_dir.join("svid.0.pem"))?;
    let svid = Certificate::from_pem(&svid_pem).context("svid.0.pem")?;
    let w = decode(&svid, &files, &results).context("the workload SVID")?;
    assert_eq!(w.record_sub, workload_id);
    assert_eq!(
        w.ear_jws, a.ear_jws,
        "one entry, one parent agent: the workload SVID carries that agent's latest EAR"
    );
    assert_ne!(w.rid, a.rid, "one record per credential");

    // Every checker agrees. twi svid verify: all steps pass.
    let svid_file = out_dir.join("svid.0.pem");
    let bundle_file = out_dir.join("bundle.0.pem");
    let o = twi_svid_verify(&svid_file, &bundle_file, &files, &results);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(report["spiffe_id"], workload_id, "{report}");

    // OpenSSL parses the SVID and lists both extensions.
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&svid_file)
        .output()
        .context("openssl (CI installs it)")?;
    let shown = output_text(&o);
    assert!(o.status.success(), "{shown}");
    for oid in ["1.3.6.1.5.5.7.1.35", DEFAULT_PROVENANCE_OID] {
        assert!(shown.contains(oid), "openssl does not list {oid}: {shown}");
    }

    // Go's sumdb/tlog: the proof in the SVID, and the composer's tile server.
    let statement_file = root.join("statement.cose");
    let proof_file = root.join("proof.txt");
    std::fs::write(&statement_file, &w.statement)?;
    std::fs::write(&proof_file, &w.tlog_proof)?;
    let vkey = std::fs::read_to_string(&files.log_vkey)?;
    let o = go_tlog_check(&[
        "-vkey",
        vkey.trim(),
        "-proof",
        proof_file.to_str().unwrap(),
        "-entry",
        statement_file.to_str().unwrap(),
        "-url",
        &format!("http://{serve}"),
    ]);
    assert!(o.status.success(), "go-tlog-check: {}", output_text(&o));

    // The spiffe crate's Workload API client gets the same SVID.
    let leaf = fetch_with_spiffe_crate(&agent.socket)?;
    assert_eq!(leaf, der::Encode::to_der(&svid)?);

    // Refusals. A flipped byte inside the provenance extension breaks the CA's signature.
    let mut der_bytes = der::Encode::to_der(&svid)?;
    let at = der_bytes
        .windows(w.statement.len().min(64))
        .position(|win| win == &w.statement[..w.statement.len().min(64)])
        .context("statement bytes inside the SVID")?;
    der_bytes[at + 10] ^= 1;
    let tampered = root.join("tampered.der.pem");
    std::fs::write(&tampered, pem_encode("CERTIFICATE", &der_bytes))?;
    let o = twi_svid_verify(&tampered, &bundle_file, &files, &results);
    assert_eq!(
        o.status.code(),
        Some(1),
        "tampered SVID: {}",
        output_text(&o)
    );

    // Another log's key: the checkpoint does not verify.
    let other = ComposerFiles::in_dir(&root.join("other"));
    std::fs::create_dir_all(root.join("other"))?;
    let other_key = twi_credential_composer::tlog::LogKey::generate(
        "example.org/twi/cprov",
        &mut rand_core::OsRng,
    )?;
    std::fs::write(&other.log_vkey, other_key.vkey())?;
    let mixed = ComposerFiles {
        log_vkey: other.log_vkey.clone(),
        ..ComposerFiles::in_dir(&root)
    };
    let o = twi_svid_verify(&svid_file, &bundle_file, &mixed, &results);
    assert_eq!(
        o.status.code(),
        Some(1),
        "other log key: {}",
        output_text(&o)
    );

    // A tampered proof (one hash changed): Go refuses it too.
    let bad_proof = tamper_proof(&w.tlog_proof)?;
    std::fs::write(&proof_file, bad_proof)?;
    let o = go_tlog_check(&[
        "-vkey",
        vkey.trim(),
        "-proof",
        proof_file.to_str().unwrap(),
        "-entry",
        statement_file.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success(),
        "go-tlog-check accepted a tampered proof"
    );

    // JWT-SVID: cmw, jti = the record id, and the log reference.
    let o = Command::new(&bins.agent)
        .args([
            "api",
            "fetch",
            "jwt",
            "-audience",
            "relying-party",
            "-socketPath",
        ])
        .arg(&agent.socket)
        .output()?;
    assert!(o.status.success(), "{}", output_text(&o));
    let token = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .find(|t| t.starts_with("eyJ") && t.matches('.').count() == 2)
        .map(str::to_owned)
        .context("a JWT in the fetch output")?;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    assert_eq!(claims["sub"], workload_id);
    assert!(claims["cmw"].is_array(), "{claims}");
    let jti = claims["jti"].as_str().context("jti")?;
    assert!(uuid::Uuid::parse_str(jti).is_ok(), "{jti}");
    let cprov = &claims[twi_credential_composer::jwt::CPROV_CLAIM];
    assert_eq!(cprov["log"], "example.org/twi/cprov", "{claims}");
    assert!(cprov["idx"].as_u64().is_some(), "{claims}");

    // The server logged one line per record.
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("credential provenance record logged")
                && l.contains(&workload_id)
                && l.contains(&w.rid)),
        "no record line for the workload SVID in the server log:\n{}",
        spire::tail(&log, 40)
    );
    agent.stop();
    Ok(())
}

/// The leaf of the agent SVID spire-agent persisted, waiting a moment for the file.
fn agent_svid(path: &Path) -> Result<Certificate> {
    let data = spire::wait_for(
        "spire-agent to persist its SVID",
        Duration::from_secs(20),
        || Ok(std::fs::read(path).ok()),
    )?;
    let v: serde_json::Value = serde_json::from_slice(&data)?;
    let leaf = v["svid"][0]
        .as_str()
        .context("no svid in agent-data.json")?;
    let pem = base64::engine::general_purpose::STANDARD.decode(leaf)?;
    Ok(Certificate::from_pem(&pem)?)
}

fn pem_encode(label: &str, der_bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der_bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Changes the first audit-path hash of a c2sp.org/tlog-proof@v1 (the lines between `index N` and the
/// empty line before the checkpoint).
fn tamper_proof(proof: &str) -> Result<String> {
    let mut lines: Vec<String> = proof.lines().map(str::to_owned).collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("index "))
        .context("no index line")?
        + 1;
    let line = lines[start..]
        .iter_mut()
        .take_while(|l| !l.is_empty())
        .next()
        .context("no audit path in the proof (a tree of one entry has none)")?;
    let mut raw = base64::engine::general_purpose::STANDARD.decode(line.as_bytes())?;
    raw[0] ^= 1;
    *line = base64::engine::general_purpose::STANDARD.encode(raw);
    Ok(lines.join("\n") + "\n")
}

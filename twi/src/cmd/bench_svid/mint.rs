//! SPIRE's own X.509-SVID issuance, timed from a client: `spire.api.server.svid.v1.SVID/MintX509SVID`
//! on the server's local API socket (what `spire-server x509 mint` calls). SPIRE parses and checks the
//! CSR, builds the template, calls every CredentialComposer (`ComposeWorkloadX509SVID`), and signs.
//!
//! No process is spawned per SVID: one gRPC channel per server, CSRs made before timing (a fresh
//! P-256 key per call, so every SVID and every provenance record is for a distinct key, as for real
//! workloads). Each response is checked outside the timed window: the leaf is for the workload's
//! SPIFFE ID, and carries both TWI extensions exactly when it came from the composer's server.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use der::{Decode, Encode};
use p256::ecdsa::{DerSignature, SigningKey};
use tonic::transport::Channel;
use twi_credential_composer::cmw::ID_PE_CMW;
use twi_credential_composer::extension::{ProofForm, TwiProvenance, DEFAULT_PROVENANCE_OID};
use twi_credential_composer::tlog::InclusionProof;
use twi_plugin::proto::server_svid::svid_client::SvidClient;
use twi_plugin::proto::server_svid::MintX509svidRequest;
use x509_cert::builder::{Builder as _, RequestBuilder};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::name::Name;
use x509_cert::Certificate;

/// SVID lifetime asked for (seconds); the same for both servers.
const TTL_SECS: i32 = 3600;

/// A DER CSR for a fresh P-256 key with `spiffe_id` as its only URI SAN.
pub(crate) fn csr(spiffe_id: &str) -> Result<Vec<u8>> {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let subject = Name::from_str("O=twi-bench").map_err(|e| anyhow!("CSR subject: {e}"))?;
    let mut b = RequestBuilder::new(subject, &key).map_err(|e| anyhow!("CSR builder: {e}"))?;
    let uri = der::asn1::Ia5String::new(spiffe_id).map_err(|e| anyhow!("URI SAN: {e}"))?;
    b.add_extension(&SubjectAltName(vec![
        GeneralName::UniformResourceIdentifier(uri),
    ]))
    .map_err(|e| anyhow!("CSR SAN: {e}"))?;
    let req = b
        .build::<DerSignature>()
        .map_err(|e| anyhow!("signing the CSR: {e}"))?;
    req.to_der().map_err(|e| anyhow!("encoding the CSR: {e}"))
}

/// `n` CSRs, each for its own key.
pub(crate) fn csrs(n: usize, spiffe_id: &str) -> Result<Vec<Vec<u8>>> {
    (0..n).map(|_| csr(spiffe_id)).collect()
}

/// One server under test.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) name: &'static str,
    /// Whether its SVIDs must carry the TWI extensions (server B) or must not (servers A and N).
    pub(crate) composed: bool,
    pub(crate) client: SvidClient<Channel>,
}

impl Target {
    /// A client of the server API on `socket` (h2c over the Unix socket, dialed on first use).
    pub(crate) fn new(name: &'static str, composed: bool, socket: &std::path::Path) -> Self {
        Self {
            name,
            composed,
            client: SvidClient::new(twi_plugin::broker::unix_channel(socket)),
        }
    }

    /// Mints one SVID; returns the call's wall time and the leaf certificate (DER).
    async fn mint(&mut self, csr: Vec<u8>) -> Result<(Duration, Vec<u8>)> {
        let start = Instant::now();
        let resp = self
            .client
            .mint_x509svid(MintX509svidRequest { csr, ttl: TTL_SECS })
            .await;
        let elapsed = start.elapsed();
        let resp =
            resp.map_err(|s| anyhow!("{}: MintX509SVID: {} {}", self.name, s.code(), s.message()))?;
        let leaf = resp
            .into_inner()
            .svid
            .and_then(|s| s.cert_chain.into_iter().next())
            .ok_or_else(|| anyhow!("{}: MintX509SVID answered no certificate", self.name))?;
        Ok((elapsed, leaf))
    }

    /// Mints one SVID and checks it (outside the timed window); with the log's tree size in its
    /// provenance proof when it came from the composer.
    pub(crate) async fn mint_checked(&mut self, csr: Vec<u8>) -> Result<(Duration, Option<u64>)> {
        let (elapsed, leaf) = self.mint(csr).await?;
        let size =
            check_leaf(&leaf, self.composed).with_context(|| format!("{}: the SVID", self.name))?;
        Ok((elapsed, size))
    }
}

/// The leaf names the workload and has both TWI extensions iff `composed`; for a composed one, the
/// tree size of the checkpoint its inclusion proof is against (one checkpoint per log batch).
fn check_leaf(der: &[u8], composed: bool) -> Result<Option<u64>> {
    let cert = Certificate::from_der(der).context("parsing the leaf")?;
    let prov = const_oid::ObjectIdentifier::new(DEFAULT_PROVENANCE_OID)
        .map_err(|e| anyhow!("provenance OID: {e}"))?;
    let exts = cert.tbs_certificate.extensions.unwrap_or_default();
    let find = |oid| exts.iter().find(|e| e.extn_id == oid);
    let (cmw, provenance) = (find(ID_PE_CMW).is_some(), find(prov).is_some());
    if composed && !(cmw && provenance) {
        bail!("lacks TWI extensions (id-pe-cmw: {cmw}, provenance: {provenance}): the composer did not run");
    }
    if !composed && (cmw || provenance) {
        bail!("carries TWI extensions although SPIRE ran without the composer");
    }
    let san_id = SubjectAltName::from_der(
        exts.iter()
            .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)
            .map(|e| e.extn_value.as_bytes())
            .unwrap_or_default(),
    )
    .ok()
    .and_then(|s| {
        s.0.into_iter().find_map(|g| match g {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            _ => None,
        })
    });
    if san_id.as_deref() != Some(super::setup::WORKLOAD_ID) {
        bail!("URI SAN is {san_id:?}, want {}", super::setup::WORKLOAD_ID);
    }
    let Some(ext) = find(prov).filter(|_| composed) else {
        return Ok(None);
    };
    let tree_size = match TwiProvenance::from_der(ext.extn_value.as_bytes())
        .context("TwiProvenance")?
        .proof
    {
        Some(ProofForm::TlogProof(text)) => InclusionProof::from_tlog_proof(text.as_bytes())
            .context("tlog-proof")?
            .tree_size(),
        _ => bail!("the provenance extension has no tlog-proof"),
    };
    Ok(Some(tree_size))
}

/// The order servers are called in at step `i`: rotated each step (A N B, N B A, B A N, ...), so each
/// server is first, middle and last equally often and a slow phase of the machine hits all alike.
fn rotation(i: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (i + k) % n.max(1))
}

/// Sequential, interleaved: `warmup` untimed then `iterations` timed calls per server, one call per
/// server in turn ([`rotation`]). `csrs` must hold `targets.len() * (warmup + iterations)` CSRs.
pub(crate) async fn sequential(
    targets: &mut [Target],
    csrs: &mut Vec<Vec<u8>>,
    warmup: usize,
    iterations: usize,
) -> Result<Vec<Vec<Duration>>> {
    let n = targets.len();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(iterations); n];
    for i in 0..warmup + iterations {
        for k in rotation(i, n) {
            let csr = csrs.pop().context("out of CSRs")?;
            let (target, out) = match (targets.get_mut(k), samples.get_mut(k)) {
                (Some(t), Some(o)) => (t, o),
                _ => bail!("target index {k}"),
            };
            let (d, _) = target.mint_checked(csr).await?;
            if i >= warmup {
                out.push(d);
            }
        }
    }
    Ok(samples)
}

/// What one server did in the concurrent variant.
#[derive(Default)]
pub(crate) struct Concurrent {
    /// Latency of every call.
    pub(crate) samples: Vec<Duration>,
    /// Sum of the rounds' wall times (the server was driven only during its rounds).
    pub(crate) busy: Duration,
    /// Distinct log tree sizes the composed SVIDs' proofs are against: the log batches they went in.
    pub(crate) tree_sizes: std::collections::BTreeSet<u64>,
}

/// `concurrency` callers in flight per server: `rounds` rounds, each giving every server in turn
/// ([`rotation`]) `per_round` calls split among the callers.
pub(crate) async fn concurrent(
    targets: &[Target],
    csrs: &mut Vec<Vec<u8>>,
    concurrency: usize,
    rounds: usize,
    per_round: usize,
) -> Result<Vec<Concurrent>> {
    let n = targets.len();
    let callers = concurrency.max(1);
    let mut out: Vec<Concurrent> = (0..n).map(|_| Concurrent::default()).collect();
    for r in 0..rounds {
        for k in rotation(r, n) {
            let target = targets.get(k).context("target index")?;
            let mut batch: Vec<Vec<Vec<u8>>> = vec![Vec::new(); callers];
            for i in 0..per_round {
                let csr = csrs.pop().context("out of CSRs")?;
                if let Some(slot) = batch.get_mut(i % callers) {
                    slot.push(csr);
                }
            }
            let start = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for chunk in batch {
                let mut t = target.clone();
                set.spawn(async move {
                    let mut ds = Vec::with_capacity(chunk.len());
                    for csr in chunk {
                        ds.push(t.mint_checked(csr).await?);
                    }
                    Ok::<_, anyhow::Error>(ds)
                });
            }
            let slot = out.get_mut(k).context("target index")?;
            while let Some(joined) = set.join_next().await {
                for (d, size) in joined.context("caller task")?? {
                    slot.samples.push(d);
                    slot.tree_sizes.extend(size);
                }
            }
            slot.busy += start.elapsed();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rotation_puts_each_server_in_each_position() {
        let orders: Vec<Vec<usize>> = (0..3).map(|i| rotation(i, 3).collect()).collect();
        assert_eq!(orders, vec![vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1]]);
        assert_eq!(rotation(5, 1).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn csr_has_the_spiffe_id_and_a_valid_signature() {
        use p256::ecdsa::signature::Verifier as _;
        let der = csr("spiffe://example.org/w").unwrap();
        let req = x509_cert::request::CertReq::from_der(&der).unwrap();
        // The URI SAN sits in the extensionRequest attribute (PKCS#9), where Go's parser reads it.
        let ext_req = req
            .info
            .attributes
            .iter()
            .find(|a| a.oid == const_oid::db::rfc5912::ID_EXTENSION_REQ)
            .unwrap();
        let exts: x509_cert::ext::Extensions =
            ext_req.values.iter().next().unwrap().decode_as().unwrap();
        let san = exts
            .iter()
            .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)
            .unwrap();
        let san = SubjectAltName::from_der(san.extn_value.as_bytes()).unwrap();
        assert_eq!(
            san.0,
            vec![GeneralName::UniformResourceIdentifier(
                der::asn1::Ia5String::new("spiffe://example.org/w").unwrap()
            )]
        );
        let spki = req.info.public_key.to_der().unwrap();
        let key =
            <p256::ecdsa::VerifyingKey as p256::pkcs8::DecodePublicKey>::from_public_key_der(&spki)
                .unwrap();
        let sig = DerSignature::try_from(req.signature.raw_bytes()).unwrap();
        key.verify(&req.info.to_der().unwrap(), &sig).unwrap();
        // Two CSRs never share a key.
        let other =
            x509_cert::request::CertReq::from_der(&csr("spiffe://example.org/w").unwrap()).unwrap();
        assert_ne!(other.info.public_key, req.info.public_key);
    }
}

//! Shared by the composer plugin tests: a small in-process double of SPIRE's server API (Entry and
//! Agent services on a Unix socket), an attestation-result store seeded with signed EARs, and the
//! plugin loaded in-process the way SPIRE loads it (`twi_plugin::testing`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    dead_code,
    unreachable_pub
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p256::pkcs8::EncodePublicKey as _;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tonic::codegen::tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use twi_core::ear::{
    self, Appraisal, Ear, Status as EarStatus, TrustVector, VerifierId, VerifierKey,
};
use twi_credential_composer::extension::ProofForm;
use twi_credential_composer::extension::TwiProvenance;
use twi_credential_composer::plugin::CredentialComposerPlugin;
use twi_credential_composer::record::CredentialProvenanceRecord;
use twi_credential_composer::spire_api::{agents_matching, AgentInfo, Selector};
use twi_credential_composer::statement::{verify_statement, ProvenancePublicKey, SignedStatement};
use twi_credential_composer::tlog::{LogReader, LogVerifier};
use twi_plugin::proto::api_types::{self, selector_match::MatchBehavior};
use twi_plugin::proto::credentialcomposer::credential_composer_client::CredentialComposerClient;
use twi_plugin::proto::credentialcomposer::credential_composer_server::CredentialComposerServer;
use twi_plugin::proto::credentialcomposer::{DistinguishedName, X509Extension, X509svidAttributes};
use twi_plugin::proto::server_agent::agent_server::{Agent, AgentServer};
use twi_plugin::proto::server_agent::{GetAgentRequest, ListAgentsRequest, ListAgentsResponse};
use twi_plugin::proto::server_entry::entry_server::{Entry, EntryServer};
use twi_plugin::proto::server_entry::{GetEntryRequest, ListEntriesRequest, ListEntriesResponse};
use twi_plugin::testing::{self, LoadedPlugin};
use twi_plugin::PluginType;
use twi_results::{ResultMeta, ResultStore};

pub const TD: &str = "example.org";
pub const CMW_OID: &str = "1.3.6.1.5.5.7.1.35";
pub const PROV_OID: &str = "1.3.6.1.4.1.32473.1.1";

pub fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

pub fn agent_id(suffix: &str) -> String {
    format!("spiffe://{TD}/spire/agent/twi/{suffix}")
}

fn spiffe(id: &str) -> api_types::Spiffeid {
    let rest = id.strip_prefix("spiffe://").unwrap();
    let (td, path) = rest.split_once('/').unwrap();
    api_types::Spiffeid {
        trust_domain: td.into(),
        path: format!("/{path}"),
    }
}

/// An API entry: `spiffe_id` and `parent` are full `spiffe://` IDs; selectors are `type:value`.
pub fn api_entry(
    id: &str,
    spiffe_id: &str,
    parent: &str,
    selectors: &[&str],
    revision: i64,
) -> api_types::Entry {
    api_types::Entry {
        id: id.into(),
        spiffe_id: Some(spiffe(spiffe_id)),
        parent_id: Some(spiffe(parent)),
        selectors: selectors
            .iter()
            .map(|s| {
                let (t, v) = s.split_once(':').unwrap();
                api_types::Selector {
                    r#type: t.into(),
                    value: v.into(),
                }
            })
            .collect(),
        revision_number: revision,
        // Fields the composer does not ask for; the double returns them anyway.
        x509_svid_ttl: 3600,
        dns_names: vec!["ignored.example".into()],
        ..Default::default()
    }
}

pub fn api_agent(id: &str, selectors: &[&str]) -> api_types::Agent {
    api_types::Agent {
        id: Some(spiffe(id)),
        attestation_type: "twi".into(),
        selectors: selectors
            .iter()
            .map(|s| {
                let (t, v) = s.split_once(':').unwrap();
                api_types::Selector {
                    r#type: t.into(),
                    value: v.into(),
                }
            })
            .collect(),
        ..Default::default()
    }
}

/// The SPIRE server API double: entries and agents in memory, pages of `page_size`, call counters.
#[derive(Default)]
pub struct FakeApi {
    pub entries: Mutex<Vec<api_types::Entry>>,
    pub agents: Mutex<Vec<api_types::Agent>>,
    pub list_entries_calls: AtomicUsize,
    pub list_agents_calls: AtomicUsize,
    pub page_size: AtomicUsize,
    pub delay_ms: AtomicU64,
}

impl FakeApi {
    pub fn new() -> Arc<Self> {
        let api = Self::default();
        api.page_size.store(2, Ordering::Relaxed);
        Arc::new(api)
    }

    pub fn set_entries(&self, e: Vec<api_types::Entry>) {
        *self.entries.lock().unwrap() = e;
    }

    pub fn set_agents(&self, a: Vec<api_types::Agent>) {
        *self.agents.lock().unwrap() = a;
    }

    async fn delay(&self) {
        let ms = self.delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    fn page<T: Clone>(&self, all: &[T], token: &str) -> Result<(Vec<T>, String), Status> {
        let start: usize = if token.is_empty() {
            0
        } else {
            token
                .parse()
                .map_err(|_| Status::invalid_argument("bad page token"))?
        };
        let size = self.page_size.load(Ordering::Relaxed).max(1);
        let end = (start + size).min(all.len());
        let page = all.get(start..end).unwrap_or_default().to_vec();
        let next = if end < all.len() {
            end.to_string()
        } else {
            String::new()
        };
        Ok((page, next))
    }
}

#[derive(Clone)]
pub struct FakeApiService(pub Arc<FakeApi>);

#[tonic::async_trait]
impl Entry for FakeApiService {
    async fn list_entries(
        &self,
        request: Request<ListEntriesRequest>,
    ) -> Result<Response<ListEntriesResponse>, Status> {
        self.0.list_entries_calls.fetch_add(1, Ordering::SeqCst);
        self.0.delay().await;
        let req = request.into_inner();
        if req.filter.is_some() {
            return Err(Status::unimplemented("the double lists all entries only"));
        }
        let all = self.0.entries.lock().unwrap().clone();
        let (entries, next_page_token) = self.0.page(&all, &req.page_token)?;
        Ok(Response::new(ListEntriesResponse {
            entries,
            next_page_token,
        }))
    }

    async fn get_entry(
        &self,
        request: Request<GetEntryRequest>,
    ) -> Result<Response<api_types::Entry>, Status> {
        let id = request.into_inner().id;
        self.0
            .entries
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.id == id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found("no such entry"))
    }
}

fn to_info(a: &api_types::Agent) -> AgentInfo {
    twi_credential_composer::spire_api::agent_info(a)
}

#[tonic::async_trait]
impl Agent for FakeApiService {
    async fn list_agents(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        self.0.list_agents_calls.fetch_add(1, Ordering::SeqCst);
        self.0.delay().await;
        let req = request.into_inner();
        let filter = req
            .filter
            .ok_or_else(|| Status::invalid_argument("the double wants a filter"))?;
        let m = filter
            .by_selector_match
            .ok_or_else(|| Status::invalid_argument("the double wants by_selector_match"))?;
        if m.r#match != i32::from(MatchBehavior::MatchSuperset) {
            return Err(Status::invalid_argument(
                "the double only does MATCH_SUPERSET",
            ));
        }
        let want: Vec<Selector> = m
            .selectors
            .iter()
            .map(|s| Selector::new(&s.r#type, &s.value))
            .collect();
        let all = self.0.agents.lock().unwrap().clone();
        let infos: Vec<AgentInfo> = all.iter().map(to_info).collect();
        let matching = agents_matching(&want, &infos);
        let mut selected: Vec<api_types::Agent> = all
            .into_iter()
            .filter(|a| matching.contains(&to_info(a).id))
            .collect();
        if filter.by_banned == Some(true) {
            selected.clear();
        }
        // The output mask asks for no field but the ID.
        for a in &mut selected {
            a.selectors.clear();
            a.attestation_type.clear();
        }
        let (agents, next_page_token) = self.0.page(&selected, &req.page_token)?;
        Ok(Response::new(ListAgentsResponse {
            agents,
            next_page_token,
        }))
    }

    async fn get_agent(
        &self,
        _request: Request<GetAgentRequest>,
    ) -> Result<Response<api_types::Agent>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

/// Serves the double on `socket`.
pub fn serve_api(api: Arc<FakeApi>, socket: &Path) -> JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    let svc = FakeApiService(api);
    tokio::spawn(async move {
        let _ = Server::builder()
            .add_service(EntryServer::new(svc.clone()))
            .add_service(AgentServer::new(svc))
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await;
    })
}

/// A fresh P-256 SubjectPublicKeyInfo (DER), as in a CSR.
pub fn new_spki() -> Vec<u8> {
    p256::SecretKey::random(&mut OsRng)
        .public_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec()
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Default subject SPIRE sends.
pub fn attributes(extra: Vec<X509Extension>) -> X509svidAttributes {
    X509svidAttributes {
        subject: Some(DistinguishedName {
            country: vec!["US".into()],
            organization: vec!["SPIRE".into()],
            ..Default::default()
        }),
        dns_sans: vec!["wl.example".into()],
        extra_extensions: extra,
    }
}

/// Test environment: temp dir, seeded store, API double, plugin loaded and initialised (not
/// configured).
pub struct Harness {
    pub dir: TempDir,
    pub verifier: VerifierKey,
    pub store: Box<dyn ResultStore>,
    pub api: Arc<FakeApi>,
    pub socket: PathBuf,
    pub plugin: CredentialComposerPlugin,
    pub loaded: LoadedPlugin,
    _api_server: JoinHandle<()>,
}

impl Harness {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store =
            twi_results::open(&format!("sqlite://{}/results.db", dir.path().display())).unwrap();
        let api = FakeApi::new();
        let socket = dir.path().join("api.sock");
        let server = serve_api(Arc::clone(&api), &socket);
        let plugin = CredentialComposerPlugin::new();
        let loaded = testing::load(
            PluginType::ServerCredentialComposer,
            CredentialComposerServer::new(plugin.clone()),
            Arc::new(plugin.clone()),
        )
        .await
        .unwrap();
        let names = loaded.init().await.unwrap();
        assert!(names
            .contains(&"spire.plugin.server.credentialcomposer.v1.CredentialComposer".to_owned()));
        Self {
            dir,
            verifier: VerifierKey::generate(&mut OsRng),
            store,
            api,
            socket,
            plugin,
            loaded,
            _api_server: server,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The plugin_data with every required key, then `extra` lines.
    pub fn hcl(&self, extra: &str) -> String {
        format!(
            r#"
            log_dir = "{d}/log"
            log_key_path = "{d}/log.key"
            log_vkey_path = "{d}/log.vkey"
            provenance_key_path = "{d}/prov.pem"
            provenance_public_key_path = "{d}/prov.pub.pem"
            attestation_results_database = "sqlite://{d}/results.db"
            server_socket_path = "{s}"
            server_api_timeout_seconds = 2
            {extra}
            "#,
            d = self.dir.path().display(),
            s = self.socket.display()
        )
    }

    pub async fn configure(&self, extra: &str) -> Result<(), Status> {
        self.loaded.configure(TD, &self.hcl(extra)).await
    }

    pub fn client(&self) -> CredentialComposerClient<Channel> {
        CredentialComposerClient::new(self.loaded.channel.clone())
    }

    /// Signs and stores an EAR for `agent` valid over `[iat, exp)`, binding `key_binding` (the SPKI
    /// SHA-256) in its SEV-SNP submod, with an evidence digest. Returns the JWS.
    pub fn seed_ear(
        &self,
        agent: &str,
        key_binding: Option<[u8; 32]>,
        iat: i64,
        exp: i64,
    ) -> String {
        let policy = format!(
            "tag:twi-spire.dev,2026:policy/prod/2?sha256={}",
            "cd".repeat(32)
        );
        let appraisal = Appraisal {
            status: EarStatus::Affirming,
            trust_vector: TrustVector {
                instance_identity: 2,
                configuration: 2,
                executables: 3,
                hardware: 2,
            },
            policy_ids: vec![policy.clone()],
            nonce: Some("bm9uY2U".into()),
            evidence_sha256: Some("ee".repeat(32)),
            tcb_status: Some("meets-minimum".into()),
            advisory_ids: Vec::new(),
            key_binding: key_binding.map(hex::encode),
            simulated: Some(true),
            reason: None,
        };
        let claims = Ear {
            profile: ear::EAR_PROFILE.into(),
            iat,
            exp,
            verifier_id: VerifierId {
                developer: ear::VERIFIER_DEVELOPER.into(),
                build: "twi-server-nodeattestor@test".into(),
            },
            status: EarStatus::Affirming,
            submods: BTreeMap::from([("sev-snp".to_owned(), appraisal)]),
            agent_id: Some(agent.to_owned()),
        };
        let jws = ear::sign(&claims, &self.verifier).unwrap();
        self.store
            .put(
                agent,
                &jws,
                &ResultMeta {
                    status: "affirming".into(),
                    issued_at: iat,
                    expires_at: exp,
                    evidence_sha256: Some("ee".repeat(32)),
                    policy_id: Some(policy),
                },
            )
            .unwrap();
        jws
    }

    /// A current EAR for `agent`.
    pub fn seed_current(&self, agent: &str, key_binding: Option<[u8; 32]>) -> String {
        self.seed_ear(agent, key_binding, now() - 10, now() + 3600)
    }

    pub fn log_verifier(&self) -> LogVerifier {
        let vkey = std::fs::read_to_string(self.path("log.vkey")).unwrap();
        LogVerifier::new(vkey.trim()).unwrap()
    }

    pub fn provenance_key(&self) -> ProvenancePublicKey {
        ProvenancePublicKey::from_pem(&std::fs::read_to_string(self.path("prov.pub.pem")).unwrap())
            .unwrap()
    }

    pub fn log_size(&self) -> u64 {
        LogReader::open(&self.path("log"))
            .unwrap()
            .checkpoint()
            .unwrap()
            .size()
    }

    /// Checks a provenance extension value: the statement verifies with the published key, the proof
    /// against the published log key and the log's own entry; returns the statement and the index.
    pub fn check_provenance(&self, value: &[u8]) -> (SignedStatement, u64) {
        let ext = TwiProvenance::from_der(value).unwrap();
        let signed = verify_statement(&ext.statement, &self.provenance_key()).unwrap();
        let Some(ProofForm::TlogProof(proof)) = ext.proof else {
            panic!("no tlog proof")
        };
        let inclusion = self
            .log_verifier()
            .verify_tlog_proof(&ext.statement, proof.as_bytes())
            .unwrap();
        let index = inclusion.index();
        let reader = LogReader::open(&self.path("log")).unwrap();
        let size = reader.checkpoint().unwrap().size();
        assert_eq!(
            reader.entry(index, size).unwrap(),
            ext.statement,
            "the log holds the statement"
        );
        (signed, index)
    }
}

/// The extensions of `attrs` by OID.
pub fn by_oid(attrs: &X509svidAttributes) -> BTreeMap<String, X509Extension> {
    attrs
        .extra_extensions
        .iter()
        .map(|e| (e.oid.clone(), e.clone()))
        .collect()
}

pub fn record_of(signed: &SignedStatement) -> &CredentialProvenanceRecord {
    &signed.record
}

//! Registration entries and agents from the SPIRE server's local API, for workload SVIDs.
//!
//! SPIRE tells the composer only a workload's SPIFFE ID and key (protocol doc §7.4), not the entry it
//! matched or the agent asking. To say which attestation stands behind a workload SVID, the composer
//! reads the registration entries for that ID and resolves their parents to agents:
//!
//! - a parent that is an agent ID (`spiffe://<td>/spire/agent/…`) is that agent;
//! - a parent that is a node alias (an entry whose own parent is `spiffe://<td>/spire/server`) stands
//!   for every agent whose node selectors are a superset of the alias's selectors (what SPIRE itself
//!   uses to give agents the alias);
//! - several entries give the union of their agents.
//!
//! The resolution is a pure function over data ([`plan_parents`], [`agents_matching`],
//! [`resolve_with`]) so it is tested without a server; [`SpireApi`] feeds it from the API with a cache:
//! all entries (paged `ListEntries`) at most every `entry_refresh_seconds`, once more (rate-limited)
//! when an ID is not found, and `ListAgents` (selector match SUPERSET) per alias, cached as long.
//! The connection is lazy: SPIRE configures plugins before it opens its API socket.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tonic::transport::Channel;
use twi_plugin::proto::api_types::{self, selector_match::MatchBehavior};
use twi_plugin::proto::server_agent::agent_client::AgentClient;
use twi_plugin::proto::server_agent::{list_agents_request, ListAgentsRequest};
use twi_plugin::proto::server_entry::entry_client::EntryClient;
use twi_plugin::proto::server_entry::ListEntriesRequest;

/// Path prefix of agent SPIFFE IDs.
pub const AGENT_PATH_PREFIX: &str = "/spire/agent/";
/// Path of the SPIRE server's own ID, the parent of node (alias) entries.
pub const SERVER_PATH: &str = "/spire/server";
/// A miss triggers a re-read of the entries at most this often.
pub const MISS_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Page size asked of `ListEntries` / `ListAgents` (the server may use less).
pub const PAGE_SIZE: i32 = 1000;
/// Most pages read in one listing: a server that never ends a listing is an error, not a hang.
pub const MAX_PAGES: usize = 10_000;

/// A selector as SPIRE stores it: `type:value` (the type is the plugin name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    /// The selector type (`twi`, `unix`, …).
    pub ty: String,
    /// The value after the first colon.
    pub value: String,
}

impl Selector {
    /// A selector from its parts.
    pub fn new(ty: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            ty: ty.into(),
            value: value.into(),
        }
    }

    /// Parses `type:value`, split on the first colon as SPIRE's CLI does.
    pub fn parse(text: &str) -> Option<Self> {
        let (ty, value) = text.split_once(':')?;
        Some(Self::new(ty, value))
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.ty, self.value)
    }
}

/// The parts of a registration entry the composer uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// The entry ID.
    pub id: String,
    /// `spiffe://…` of the identity.
    pub spiffe_id: String,
    /// `spiffe://…` of the parent (an agent, a node alias, or the server for node entries).
    pub parent_id: String,
    pub selectors: Vec<Selector>,
    /// Bumped by SPIRE on every update of the entry.
    pub revision: i64,
}

/// An agent as listed by the API (its selectors, for resolving node aliases in tests and doubles).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    /// `spiffe://<td>/spire/agent/…`.
    pub id: String,
    pub selectors: Vec<Selector>,
    pub banned: bool,
}

/// What the composer learns about a SPIFFE ID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The registration entries for the ID.
    pub entries: Vec<EntryInfo>,
    /// Every agent that can be the parent of one of them.
    pub agents: BTreeSet<String>,
    /// Parent IDs that are neither an agent nor a node alias (nothing to attribute them to).
    pub unresolved_parents: Vec<String>,
}

/// Which agents stand behind the entries of an ID, before node aliases are looked up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentPlan {
    /// Parents that are agent IDs.
    pub agents: BTreeSet<String>,
    /// The selector sets of node aliases some entry is parented to: each stands for the agents whose
    /// selectors are a superset.
    pub aliases: BTreeSet<Vec<Selector>>,
    /// Parents that are neither.
    pub unresolved: Vec<String>,
}

/// Why the local API could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SpireApiError {
    /// A call failed (socket missing, server down, permission); the gRPC status is kept.
    #[error("SPIRE server API {call} on {socket}: {code:?}: {message}")]
    Call {
        call: &'static str,
        socket: String,
        code: tonic::Code,
        message: String,
    },
    /// A call took longer than `server_api_timeout_seconds`.
    #[error("SPIRE server API {call} on {socket}: no answer within {timeout:?}")]
    Timeout {
        call: &'static str,
        socket: String,
        timeout: Duration,
    },
    /// The server kept returning pages (or repeated a page token).
    #[error("SPIRE server API {call}: {detail}")]
    Paging { call: &'static str, detail: String },
}

impl From<SpireApiError> for tonic::Status {
    fn from(e: SpireApiError) -> Self {
        tonic::Status::unavailable(e.to_string())
    }
}

/// `spiffe://<td>/spire/server`.
pub fn server_id(trust_domain: &str) -> String {
    format!("spiffe://{trust_domain}{SERVER_PATH}")
}

/// Whether `id` is an agent ID of `trust_domain` (`spiffe://<td>/spire/agent/<something>`).
pub fn is_agent_id(id: &str, trust_domain: &str) -> bool {
    id.strip_prefix("spiffe://")
        .and_then(|rest| rest.strip_prefix(trust_domain))
        .and_then(|path| path.strip_prefix(AGENT_PATH_PREFIX))
        .is_some_and(|suffix| !suffix.is_empty())
}

/// `spiffe://<trust_domain><path>` of the API's SPIFFEID message (path normalised to start with `/`).
pub fn spiffe_id_string(id: Option<&api_types::Spiffeid>) -> String {
    match id {
        None => String::new(),
        Some(id) if id.path.is_empty() || id.path.starts_with('/') => {
            format!("spiffe://{}{}", id.trust_domain, id.path)
        }
        Some(id) => format!("spiffe://{}/{}", id.trust_domain, id.path),
    }
}

/// The API's Entry as [`EntryInfo`].
pub fn entry_info(e: &api_types::Entry) -> EntryInfo {
    EntryInfo {
        id: e.id.clone(),
        spiffe_id: spiffe_id_string(e.spiffe_id.as_ref()),
        parent_id: spiffe_id_string(e.parent_id.as_ref()),
        selectors: e
            .selectors
            .iter()
            .map(|s| Selector::new(&s.r#type, &s.value))
            .collect(),
        revision: e.revision_number,
    }
}

/// The API's Agent as [`AgentInfo`].
pub fn agent_info(a: &api_types::Agent) -> AgentInfo {
    AgentInfo {
        id: spiffe_id_string(a.id.as_ref()),
        selectors: a
            .selectors
            .iter()
            .map(|s| Selector::new(&s.r#type, &s.value))
            .collect(),
        banned: a.banned,
    }
}

/// Registration entries indexed by SPIFFE ID.
#[derive(Clone, Debug, Default)]
pub struct EntryIndex {
    by_id: HashMap<String, Vec<EntryInfo>>,
    len: usize,
}

impl EntryIndex {
    /// Indexes `entries`.
    pub fn new(entries: impl IntoIterator<Item = EntryInfo>) -> Self {
        let mut by_id: HashMap<String, Vec<EntryInfo>> = HashMap::new();
        let mut len = 0;
        for e in entries {
            len += 1;
            by_id.entry(e.spiffe_id.clone()).or_default().push(e);
        }
        for list in by_id.values_mut() {
            list.sort_by(|a, b| a.id.cmp(&b.id));
        }
        Self { by_id, len }
    }

    /// The entries whose SPIFFE ID is `spiffe_id` (sorted by entry ID).
    pub fn entries_for(&self, spiffe_id: &str) -> &[EntryInfo] {
        self.by_id.get(spiffe_id).map_or(&[], Vec::as_slice)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Sorted, de-duplicated selectors: the key of a node alias.
fn selector_set(selectors: &[Selector]) -> Vec<Selector> {
    let set: BTreeSet<Selector> = selectors.iter().cloned().collect();
    set.into_iter().collect()
}

/// Classifies the parents of `entries` (the entries of one SPIFFE ID) against `index`.
///
/// An alias with no selectors is unresolved: SUPERSET of nothing would be every agent.
pub fn plan_parents(entries: &[EntryInfo], index: &EntryIndex, trust_domain: &str) -> ParentPlan {
    let server = server_id(trust_domain);
    let mut plan = ParentPlan::default();
    for entry in entries {
        let parent = &entry.parent_id;
        if is_agent_id(parent, trust_domain) {
            plan.agents.insert(parent.clone());
            continue;
        }
        let aliases: Vec<&EntryInfo> = index
            .entries_for(parent)
            .iter()
            .filter(|a| a.parent_id == server && !a.selectors.is_empty())
            .collect();
        if aliases.is_empty() {
            if !plan.unresolved.contains(parent) {
                plan.unresolved.push(parent.clone());
            }
            continue;
        }
        for alias in aliases {
            plan.aliases.insert(selector_set(&alias.selectors));
        }
    }
    plan
}

/// The agents whose selectors are a superset of `alias` (SPIRE's `MATCH_SUPERSET`), banned ones left
/// out (they cannot be issued anything). What the API double answers and what the API computes.
pub fn agents_matching(alias: &[Selector], agents: &[AgentInfo]) -> BTreeSet<String> {
    if alias.is_empty() {
        return BTreeSet::new();
    }
    agents
        .iter()
        .filter(|a| !a.banned && alias.iter().all(|s| a.selectors.contains(s)))
        .map(|a| a.id.clone())
        .collect()
}

/// The resolution of `spiffe_id` over `index`, with `alias_agents` giving the agents of one alias.
pub fn resolve_with(
    spiffe_id: &str,
    index: &EntryIndex,
    trust_domain: &str,
    mut alias_agents: impl FnMut(&[Selector]) -> BTreeSet<String>,
) -> Resolution {
    let entries = index.entries_for(spiffe_id).to_vec();
    let plan = plan_parents(&entries, index, trust_domain);
    let mut agents = plan.agents;
    for alias in &plan.aliases {
        agents.extend(alias_agents(alias));
    }
    Resolution {
        entries,
        agents,
        unresolved_parents: plan.unresolved,
    }
}

/// Where the composer gets registration data: the local API ([`SpireApi`]) or, in tests, a fixed set
/// ([`StaticRegistry`]).
#[tonic::async_trait]
pub trait Registry: Send + Sync + 'static {
    /// The entries of `spiffe_id` and their candidate parent agents.
    ///
    /// # Errors
    ///
    /// [`SpireApiError`] when the data cannot be read.
    async fn resolve(&self, spiffe_id: &str) -> Result<Resolution, SpireApiError>;
}

/// Registration data fixed in memory, resolved with the same functions as the API's.
#[derive(Clone, Debug)]
pub struct StaticRegistry {
    trust_domain: String,
    index: EntryIndex,
    agents: Vec<AgentInfo>,
}

impl StaticRegistry {
    /// Entries and agents of `trust_domain`.
    pub fn new(trust_domain: &str, entries: Vec<EntryInfo>, agents: Vec<AgentInfo>) -> Self {
        Self {
            trust_domain: trust_domain.to_owned(),
            index: EntryIndex::new(entries),
            agents,
        }
    }
}

#[tonic::async_trait]
impl Registry for StaticRegistry {
    async fn resolve(&self, spiffe_id: &str) -> Result<Resolution, SpireApiError> {
        Ok(resolve_with(
            spiffe_id,
            &self.index,
            &self.trust_domain,
            |alias| agents_matching(alias, &self.agents),
        ))
    }
}

/// The cached snapshot and alias answers.
#[derive(Default)]
struct Cache {
    index: Option<Arc<EntryIndex>>,
    /// When the last listing was attempted (successful or not): the refresh and miss limits count
    /// from here, so a failing server is not asked on every SVID.
    attempted: Option<Instant>,
    /// Why the last listing failed, answered without asking again while it is recent and nothing
    /// was ever read (a hung server must not make every SVID wait for the timeout).
    last_error: Option<SpireApiError>,
    aliases: HashMap<Vec<Selector>, (Instant, BTreeSet<String>)>,
}

/// The SPIRE server's local API with a cache (see the module documentation).
pub struct SpireApi {
    channel: Channel,
    socket: String,
    trust_domain: String,
    refresh: Duration,
    timeout: Duration,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for SpireApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpireApi")
            .field("socket", &self.socket)
            .field("trust_domain", &self.trust_domain)
            .field("refresh", &self.refresh)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SpireApi {
    /// A client of the API on the Unix socket `socket`; nothing is dialed until the first lookup.
    pub fn new(
        socket: &std::path::Path,
        trust_domain: &str,
        refresh: Duration,
        timeout: Duration,
    ) -> Self {
        Self {
            channel: twi_plugin::broker::unix_channel(socket),
            socket: socket.display().to_string(),
            trust_domain: trust_domain.to_owned(),
            refresh,
            timeout,
            cache: Mutex::new(Cache::default()),
        }
    }

    async fn call<T>(
        &self,
        call: &'static str,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, SpireApiError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(SpireApiError::Timeout {
                call,
                socket: self.socket.clone(),
                timeout: self.timeout,
            }),
            Ok(Err(status)) => Err(SpireApiError::Call {
                call,
                socket: self.socket.clone(),
                code: status.code(),
                message: status.message().to_owned(),
            }),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
        }
    }

    /// Every registration entry (only the fields the composer uses), page by page.
    ///
    /// # Errors
    ///
    /// [`SpireApiError`] if a page cannot be read or the listing does not end.
    pub async fn list_entries(&self) -> Result<Vec<EntryInfo>, SpireApiError> {
        let mut client = EntryClient::new(self.channel.clone());
        let mut out = Vec::new();
        let mut token = String::new();
        let mut seen = BTreeSet::new();
        for _ in 0..MAX_PAGES {
            let req = ListEntriesRequest {
                filter: None,
                output_mask: Some(api_types::EntryMask {
                    spiffe_id: true,
                    parent_id: true,
                    selectors: true,
                    revision_number: true,
                    ..Default::default()
                }),
                page_size: PAGE_SIZE,
                page_token: token.clone(),
            };
            let page = self.call("ListEntries", client.list_entries(req)).await?;
            out.extend(page.entries.iter().map(entry_info));
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            if !seen.insert(page.next_page_token.clone()) {
                return Err(SpireApiError::Paging {
                    call: "ListEntries",
                    detail: "the server repeated a page token".into(),
                });
            }
            token = page.next_page_token;
        }
        Err(SpireApiError::Paging {
            call: "ListEntries",
            detail: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// The (not banned) agents whose selectors are a superset of `alias`.
    ///
    /// # Errors
    ///
    /// [`SpireApiError`] if a page cannot be read or the listing does not end.
    pub async fn agents_for_alias(
        &self,
        alias: &[Selector],
    ) -> Result<BTreeSet<String>, SpireApiError> {
        let mut client = AgentClient::new(self.channel.clone());
        let mut out = BTreeSet::new();
        let mut token = String::new();
        let mut seen = BTreeSet::new();
        for _ in 0..MAX_PAGES {
            let req = ListAgentsRequest {
                filter: Some(list_agents_request::Filter {
                    by_selector_match: Some(api_types::SelectorMatch {
                        selectors: alias
                            .iter()
                            .map(|s| api_types::Selector {
                                r#type: s.ty.clone(),
                                value: s.value.clone(),
                            })
                            .collect(),
                        r#match: MatchBehavior::MatchSuperset.into(),
                    }),
                    by_banned: Some(false),
                    ..Default::default()
                }),
                // Only the ID (always returned) is needed.
                output_mask: Some(api_types::AgentMask::default()),
                page_size: PAGE_SIZE,
                page_token: token.clone(),
            };
            let page = self.call("ListAgents", client.list_agents(req)).await?;
            out.extend(
                page.agents
                    .iter()
                    .filter(|a| !a.banned)
                    .map(|a| spiffe_id_string(a.id.as_ref()))
                    .filter(|id| !id.is_empty()),
            );
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            if !seen.insert(page.next_page_token.clone()) {
                return Err(SpireApiError::Paging {
                    call: "ListAgents",
                    detail: "the server repeated a page token".into(),
                });
            }
            token = page.next_page_token;
        }
        Err(SpireApiError::Paging {
            call: "ListAgents",
            detail: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// The entry index to resolve `spiffe_id` with: re-read when older than `refresh`, or when the
    /// ID is not in it and the last read is older than [`MISS_REFRESH_INTERVAL`]. A failed re-read
    /// falls back to the previous index (logged) when there is one.
    async fn index_for(
        &self,
        cache: &mut Cache,
        spiffe_id: &str,
        now: Instant,
    ) -> Result<Arc<EntryIndex>, SpireApiError> {
        let age = cache.attempted.map(|t| now.saturating_duration_since(t));
        let stale = age.is_none_or(|a| a >= self.refresh);
        let miss = cache
            .index
            .as_ref()
            .is_none_or(|i| i.entries_for(spiffe_id).is_empty());
        let miss_due = miss && age.is_none_or(|a| a >= MISS_REFRESH_INTERVAL);
        if !(stale || miss_due) {
            match (&cache.index, &cache.last_error) {
                (Some(index), _) => return Ok(Arc::clone(index)),
                (None, Some(e)) if age.is_some_and(|a| a < MISS_REFRESH_INTERVAL) => {
                    return Err(e.clone())
                }
                _ => {}
            }
        }
        cache.attempted = Some(now);
        match self.list_entries().await {
            Ok(entries) => {
                cache.last_error = None;
                let index = Arc::new(EntryIndex::new(entries));
                tracing::debug!(
                    entries = index.len(),
                    "registration entries read from the SPIRE server API"
                );
                cache.index = Some(Arc::clone(&index));
                Ok(index)
            }
            Err(e) => {
                cache.last_error = Some(e.clone());
                match &cache.index {
                    Some(index) => {
                        tracing::warn!(error = %e, "registration entries not refreshed; using the previous ones");
                        Ok(Arc::clone(index))
                    }
                    None => Err(e),
                }
            }
        }
    }

    async fn alias_agents(
        &self,
        cache: &mut Cache,
        alias: &[Selector],
        now: Instant,
    ) -> Result<BTreeSet<String>, SpireApiError> {
        if let Some((at, agents)) = cache.aliases.get(alias) {
            if now.saturating_duration_since(*at) < self.refresh {
                return Ok(agents.clone());
            }
        }
        match self.agents_for_alias(alias).await {
            Ok(agents) => {
                // Answers for aliases no entry names any more are dropped once stale.
                let refresh = self.refresh;
                cache
                    .aliases
                    .retain(|_, (at, _)| now.saturating_duration_since(*at) < refresh);
                cache.aliases.insert(alias.to_vec(), (now, agents.clone()));
                Ok(agents)
            }
            Err(e) => match cache.aliases.get(alias) {
                Some((_, agents)) => {
                    tracing::warn!(error = %e, "agents of a node alias not refreshed; using the previous answer");
                    Ok(agents.clone())
                }
                None => Err(e),
            },
        }
    }
}

#[tonic::async_trait]
impl Registry for SpireApi {
    async fn resolve(&self, spiffe_id: &str) -> Result<Resolution, SpireApiError> {
        // One lookup at a time refreshes; the others wait for its answer rather than ask again.
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let index = self.index_for(&mut cache, spiffe_id, now).await?;
        let entries = index.entries_for(spiffe_id);
        let plan = plan_parents(entries, &index, &self.trust_domain);
        let mut agents = plan.agents;
        for alias in &plan.aliases {
            agents.extend(self.alias_agents(&mut cache, alias, now).await?);
        }
        Ok(Resolution {
            entries: entries.to_vec(),
            agents,
            unresolved_parents: plan.unresolved,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const TD: &str = "example.org";

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    fn entry(id: &str, spiffe_id: &str, parent: &str, selectors: &[&str]) -> EntryInfo {
        EntryInfo {
            id: id.into(),
            spiffe_id: format!("spiffe://{TD}{spiffe_id}"),
            parent_id: format!("spiffe://{TD}{parent}"),
            selectors: selectors.iter().map(|s| sel(s)).collect(),
            revision: 0,
        }
    }

    fn agent(suffix: &str, selectors: &[&str]) -> AgentInfo {
        AgentInfo {
            id: format!("spiffe://{TD}/spire/agent/twi/{suffix}"),
            selectors: selectors.iter().map(|s| sel(s)).collect(),
            banned: false,
        }
    }

    fn ids(agents: &BTreeSet<String>) -> Vec<String> {
        agents
            .iter()
            .map(|a| a.rsplit('/').next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn agent_ids_are_recognised() {
        assert!(is_agent_id("spiffe://example.org/spire/agent/twi/abc", TD));
        assert!(!is_agent_id("spiffe://example.org/spire/agent/", TD));
        assert!(!is_agent_id("spiffe://example.org/spire/server", TD));
        assert!(!is_agent_id("spiffe://other.org/spire/agent/twi/abc", TD));
        assert!(!is_agent_id(
            "spiffe://example.org.evil/spire/agent/twi/abc",
            TD
        ));
        assert!(!is_agent_id("spiffe://example.org/nodes/a", TD));
    }

    #[test]
    fn spiffe_ids_from_the_api_are_normalised() {
        let id = |td: &str, path: &str| api_types::Spiffeid {
            trust_domain: td.into(),
            path: path.into(),
        };
        assert_eq!(
            spiffe_id_string(Some(&id(TD, "/wl"))),
            "spiffe://example.org/wl"
        );
        assert_eq!(
            spiffe_id_string(Some(&id(TD, "wl"))),
            "spiffe://example.org/wl"
        );
        assert_eq!(spiffe_id_string(None), "");
    }

    #[test]
    fn direct_agent_parent() {
        let entries = vec![entry("e1", "/wl", "/spire/agent/twi/a1", &["twi:uid:0"])];
        let index = EntryIndex::new(entries);
        let r = resolve_with("spiffe://example.org/wl", &index, TD, |_| {
            panic!("no alias to look up")
        });
        assert_eq!(r.entries.len(), 1);
        assert_eq!(ids(&r.agents), ["a1"]);
        assert!(r.unresolved_parents.is_empty());
    }

    #[test]
    fn node_alias_resolves_to_superset_agents() {
        let agents = vec![
            agent("a1", &["twi:tee:sev-snp", "twi:policy-match:prod"]),
            agent(
                "a2",
                &["twi:tee:sev-snp", "twi:policy-match:prod", "twi:x:y"],
            ),
            agent("a3", &["twi:tee:sev-snp"]),
            AgentInfo {
                banned: true,
                ..agent("a4", &["twi:tee:sev-snp", "twi:policy-match:prod"])
            },
        ];
        let entries = vec![
            entry(
                "alias",
                "/nodes/prod",
                "/spire/server",
                &["twi:policy-match:prod", "twi:tee:sev-snp"],
            ),
            entry("e1", "/wl", "/nodes/prod", &["twi:uid:0"]),
        ];
        let index = EntryIndex::new(entries);
        let plan = plan_parents(index.entries_for("spiffe://example.org/wl"), &index, TD);
        assert!(plan.agents.is_empty());
        assert_eq!(
            plan.aliases.iter().next().unwrap(),
            &vec![sel("twi:policy-match:prod"), sel("twi:tee:sev-snp")],
            "sorted selector set"
        );
        let r = resolve_with("spiffe://example.org/wl", &index, TD, |a| {
            agents_matching(a, &agents)
        });
        assert_eq!(
            ids(&r.agents),
            ["a1", "a2"],
            "a3 lacks a selector, a4 is banned"
        );
    }

    #[test]
    fn several_entries_give_the_union() {
        let agents = vec![
            agent("a2", &["k8s:cluster:c1"]),
            agent("a3", &["k8s:cluster:c1"]),
        ];
        let entries = vec![
            entry("alias", "/nodes/c1", "/spire/server", &["k8s:cluster:c1"]),
            entry("e1", "/wl", "/spire/agent/twi/a1", &["twi:uid:0"]),
            entry("e2", "/wl", "/nodes/c1", &["twi:uid:0"]),
            entry("e3", "/wl", "/spire/agent/twi/a1", &["twi:uid:1"]),
            entry("e4", "/other", "/spire/agent/twi/a9", &["twi:uid:0"]),
        ];
        let index = EntryIndex::new(entries);
        let r = resolve_with("spiffe://example.org/wl", &index, TD, |a| {
            agents_matching(a, &agents)
        });
        assert_eq!(
            r.entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["e1", "e2", "e3"]
        );
        assert_eq!(ids(&r.agents), ["a1", "a2", "a3"]);
    }

    #[test]
    fn unknown_parents_and_empty_aliases_are_unresolved() {
        let entries = vec![
            entry("alias", "/nodes/empty", "/spire/server", &[]),
            entry("e1", "/wl", "/nodes/empty", &["twi:uid:0"]),
            entry("e2", "/wl", "/some/workload", &["twi:uid:0"]),
            // A node entry whose parent is not the server is not an alias.
            entry("n", "/nodes/fake", "/spire/agent/twi/a1", &["twi:x:y"]),
            entry("e3", "/wl", "/nodes/fake", &["twi:uid:0"]),
        ];
        let index = EntryIndex::new(entries);
        let r = resolve_with("spiffe://example.org/wl", &index, TD, |_| {
            panic!("no alias to look up")
        });
        assert!(r.agents.is_empty());
        assert_eq!(
            r.unresolved_parents,
            [
                "spiffe://example.org/nodes/empty",
                "spiffe://example.org/some/workload",
                "spiffe://example.org/nodes/fake"
            ]
        );
    }

    #[test]
    fn superset_match_needs_every_alias_selector() {
        let agents = vec![agent("a1", &["a:1", "b:2"]), agent("a2", &["a:1"])];
        assert_eq!(
            ids(&agents_matching(&[sel("a:1"), sel("b:2")], &agents)),
            ["a1"]
        );
        assert_eq!(ids(&agents_matching(&[sel("a:1")], &agents)), ["a1", "a2"]);
        assert!(agents_matching(&[], &agents).is_empty());
    }

    #[tokio::test]
    async fn static_registry_resolves_like_the_api() {
        let agents = vec![agent("a2", &["k8s:cluster:c1"])];
        let entries = vec![
            entry("alias", "/nodes/c1", "/spire/server", &["k8s:cluster:c1"]),
            entry("e1", "/wl", "/spire/agent/twi/a1", &["twi:uid:0"]),
            entry("e2", "/wl", "/nodes/c1", &["twi:uid:0"]),
        ];
        let r = StaticRegistry::new(TD, entries, agents)
            .resolve("spiffe://example.org/wl")
            .await
            .unwrap();
        assert_eq!(ids(&r.agents), ["a1", "a2"]);
        assert_eq!(r.entries.len(), 2);
    }

    #[test]
    fn no_entry_no_agent() {
        let index = EntryIndex::new(vec![]);
        let r = resolve_with("spiffe://example.org/wl", &index, TD, |_| BTreeSet::new());
        assert_eq!(r, Resolution::default());
    }
}

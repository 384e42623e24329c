//! TDX collateral for one platform, from an offline bundle, the cache, or Intel PCS / a PCCS.
//!
//! Order of preference for a [`PlatformKey`]:
//! 1. the offline bundle (`<offline_dir>/<fmspc>-<ca>/`, else `<offline_dir>` itself when its TCB info
//!    and PCK CRL are for that platform) while it is current: the operator's copy wins;
//! 2. the copy in memory or in the cache (`<cache_dir>/tdx/<fmspc>-<ca>/`), refetched online (when
//!    configured) from `refresh_before` ahead of its earliest `nextUpdate`;
//! 3. whichever copy has the latest `nextUpdate` when none is current: served flagged [`Stale`] within
//!    the grace period, refused with [`CollateralError::Expired`] past it.
//!
//! Every directory, cached or offline, has the files of [`COLLATERAL_FILES`] and is read by
//! [`Collateral::from_dir`], so a cache directory can be copied as an offline bundle. An offline
//! bundle for another platform is served only when nothing else exists, so that the verifier names the
//! mismatch (`collateral-mismatch`) rather than "missing".

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, SystemTime};

use super::cache::write_atomic;
use super::freshness::{collateral_times, CollateralTimes, RefreshPolicy, Stale};
use super::pck::{PckCa, PlatformKey};
use super::pcs::{
    crl_head, decode_issuer_chain, normalize_crl, qe_identity_head, tcb_info_head, PcsUrls,
    ENCLAVE_IDENTITY_ISSUER_CHAIN, PCK_CRL_ISSUER_CHAIN, SGX_TCB_INFO_ISSUER_CHAIN,
    TCB_INFO_ISSUER_CHAIN,
};
use super::{CollateralError, Fetch, Response, DEFAULT_TIMEOUT};
use crate::tdx::{
    Collateral, CollateralParts, Quote, COLLATERAL_FILES, MAX_COLLATERAL_FILE_LEN, MAX_CRL_LEN,
};

/// Platforms tracked at once. FMSPCs come from quotes before they are verified, so an attacker can
/// name arbitrary ones; past this many, platforms without collateral are forgotten first, and new ones
/// are not fetched for until room is made.
pub const MAX_PLATFORMS: usize = 1024;

/// Online fetching: where from, how, and with what.
#[derive(Clone, Debug)]
pub struct PcsConfig {
    /// Intel PCS ([`super::INTEL_PCS_URL`]) or a PCCS (`https://pccs.example:8081`).
    pub base_url: String,
    /// The Intel SGX Root CA CRL; `None`: see [`PcsUrls::new`].
    pub root_ca_crl_url: Option<String>,
    /// Per request.
    pub timeout: Duration,
    pub fetch: Arc<dyn Fetch>,
}

impl PcsConfig {
    /// `base_url` with the default root CRL URL and [`DEFAULT_TIMEOUT`].
    pub fn new(base_url: impl Into<String>, fetch: Arc<dyn Fetch>) -> PcsConfig {
        PcsConfig {
            base_url: base_url.into(),
            root_ca_crl_url: None,
            timeout: DEFAULT_TIMEOUT,
            fetch,
        }
    }

    /// Intel PCS over HTTPS (feature `fetch`).
    #[cfg(feature = "fetch")]
    pub fn intel() -> PcsConfig {
        PcsConfig::new(super::INTEL_PCS_URL, Arc::new(super::UreqFetch))
    }
}

/// What a [`TdxCollateralSource`] reads and fetches.
#[derive(Clone, Debug, Default)]
pub struct TdxSourceConfig {
    /// The operator's bundle: a directory of [`COLLATERAL_FILES`], or of `<fmspc>-<ca>/` such
    /// directories. Re-read when its files change.
    pub offline_dir: Option<PathBuf>,
    /// Where fetched collateral is kept (`<cache_dir>/tdx/<fmspc>-<ca>/`); also read at start, so a
    /// restart does not refetch, and re-read before fetching, so servers sharing it fetch once.
    pub cache_dir: Option<PathBuf>,
    /// Opt-in online fetching. `None`: offline bundle and cache only.
    pub online: Option<PcsConfig>,
    pub policy: RefreshPolicy,
}

/// Where served collateral came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The operator's bundle directory.
    Offline(PathBuf),
    /// The cache directory (fetched earlier, possibly by another process).
    Cache(PathBuf),
    /// Fetched from this PCS / PCCS base URL.
    Fetched(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Offline(p) => write!(f, "offline bundle {}", p.display()),
            Origin::Cache(p) => write!(f, "cache {}", p.display()),
            Origin::Fetched(u) => write!(f, "fetched from {u}"),
        }
    }
}

/// Collateral to verify with, where it came from, and what the caller should log.
#[derive(Clone, Debug)]
pub struct Served {
    pub collateral: Arc<Collateral>,
    pub origin: Origin,
    pub times: CollateralTimes,
    /// `Some` when past `nextUpdate` within the grace period: log it at warn.
    pub stale: Option<Stale>,
    /// Problems met on the way that did not prevent serving (a failed refresh, a cache write that
    /// failed, an unreadable offline bundle): log each at warn.
    pub warnings: Vec<CollateralError>,
}

impl Served {
    /// The time to verify at. `now` for current collateral; for stale collateral (within grace) its
    /// earliest `nextUpdate`, the last instant it was current, since the verifier checks every window
    /// and would refuse it at `now`. Certificates are then checked at that instant too; an item issued
    /// after it (a fresh TCB info beside an old CRL) still fails, closed.
    pub fn verification_time(&self, now: i64) -> i64 {
        match self.stale {
            Some(s) => now.min(s.since),
            None => now,
        }
    }
}

/// One loaded collateral set.
#[derive(Clone, Debug)]
struct Loaded {
    collateral: Arc<Collateral>,
    times: CollateralTimes,
    /// The platform the set is for (TCB info FMSPC, PCK CRL issuer), if recognisable.
    key: Option<PlatformKey>,
    origin: Origin,
}

#[derive(Debug, Default)]
struct Entry {
    current: Option<Loaded>,
    /// Last fetch attempt (success or failure), for the retry interval.
    last_attempt: Option<i64>,
    last_error: Option<CollateralError>,
    /// Last time the cache directory was read for this platform.
    cache_checked: Option<i64>,
}

/// Modification time and size of each file of a bundle directory.
type Stamp = Vec<Option<(SystemTime, u64)>>;

#[derive(Debug)]
struct OfflineEntry {
    stamp: Stamp,
    good: Option<Loaded>,
    error: Option<CollateralError>,
}

/// TDX collateral by platform; see the module documentation. `Send + Sync`: share one per verifier.
#[derive(Debug)]
pub struct TdxCollateralSource {
    offline_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    online: Option<(PcsConfig, PcsUrls)>,
    policy: RefreshPolicy,
    state: Mutex<HashMap<PlatformKey, Entry>>,
    offline: Mutex<HashMap<PathBuf, OfflineEntry>>,
    /// One fetch at a time: concurrent attestations of a platform whose collateral is due do not each
    /// fetch it.
    fetching: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn stamp(dir: &Path) -> Stamp {
    COLLATERAL_FILES
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// The platform a set is for, from its TCB info FMSPC and PCK CRL issuer.
fn bundle_key(t: &CollateralTimes) -> Option<PlatformKey> {
    let fmspc = <[u8; 6]>::try_from(hex::decode(&t.fmspc).ok()?).ok()?;
    let ca = PckCa::from_common_name(t.pck_crl_issuer.as_deref()?)?;
    Some(PlatformKey { fmspc, ca })
}

fn load_dir(dir: &Path, origin: Origin) -> Result<Loaded, String> {
    let c = Collateral::from_dir(dir).map_err(|e| e.to_string())?;
    let times = collateral_times(&c)?;
    Ok(Loaded {
        collateral: Arc::new(c),
        key: bundle_key(&times),
        times,
        origin,
    })
}

fn parts_of(c: &Collateral) -> [&[u8]; 7] {
    [
        &c.tcb_info,
        &c.tcb_info_issuer_chain,
        &c.qe_identity,
        &c.qe_identity_issuer_chain,
        &c.pck_crl,
        &c.pck_crl_issuer_chain,
        &c.root_ca_crl,
    ]
}

/// The first of `names` the response carries, decoded from URL-encoded PEM.
fn issuer_chain(
    url: &str,
    r: &Response,
    names: &[&'static str],
) -> Result<Vec<u8>, CollateralError> {
    let (name, value) = names
        .iter()
        .find_map(|n| r.header(n).map(|v| (*n, v)))
        .ok_or_else(|| CollateralError::MissingHeader {
            url: url.to_owned(),
            header: names.first().copied().unwrap_or_default(),
        })?;
    decode_issuer_chain(value).map_err(|detail| CollateralError::BadResponse {
        url: url.to_owned(),
        what: name,
        detail,
    })
}

impl TdxCollateralSource {
    pub fn new(config: TdxSourceConfig) -> TdxCollateralSource {
        let online = config.online.map(|p| {
            let urls = PcsUrls::new(&p.base_url, p.root_ca_crl_url.as_deref());
            (p, urls)
        });
        TdxCollateralSource {
            offline_dir: config.offline_dir,
            cache_dir: config.cache_dir,
            online,
            policy: config.policy,
            state: Mutex::new(HashMap::new()),
            offline: Mutex::new(HashMap::new()),
            fetching: Mutex::new(()),
        }
    }

    pub fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    /// The normalised PCS / PCCS URLs, when fetching is on.
    pub fn pcs_urls(&self) -> Option<&PcsUrls> {
        self.online.as_ref().map(|(_, u)| u)
    }

    /// `<cache_dir>/tdx/<fmspc>-<ca>`: where `key`'s collateral is cached.
    pub fn cache_path(&self, key: &PlatformKey) -> Option<PathBuf> {
        self.cache_dir
            .as_ref()
            .map(|d| d.join("tdx").join(key.dir_name()))
    }

    /// Collateral for the platform of `quote`'s PCK certificate at `now`.
    ///
    /// # Errors
    /// As [`TdxCollateralSource::get`], plus [`CollateralError::PckCertificate`].
    pub fn get_for_quote(&self, quote: &Quote, now: i64) -> Result<Served, CollateralError> {
        self.get(&PlatformKey::from_quote(quote)?, now)
    }

    /// Collateral for `key` at `now` (see the module documentation for the order).
    ///
    /// # Errors
    /// [`CollateralError::Expired`] when the best copy is past `nextUpdate` by more than the grace
    /// period; [`CollateralError::Missing`] when there is none.
    pub fn get(&self, key: &PlatformKey, now: i64) -> Result<Served, CollateralError> {
        self.serve(key, now, false)
    }

    /// As [`TdxCollateralSource::get`], but fetches (when online and the retry interval allows) even if
    /// the copy in use is current, and takes the fetched copy whatever its dates. For a caller whose
    /// verification failed on collateral the source thought good (a bad signature, a window the
    /// verifier refuses): a cache poisoned with well-formed junk is replaced this way. A current
    /// offline bundle still comes first (the operator's copy is not second-guessed).
    ///
    /// # Errors
    /// As [`TdxCollateralSource::get`].
    pub fn refresh(&self, key: &PlatformKey, now: i64) -> Result<Served, CollateralError> {
        self.serve(key, now, true)
    }

    fn serve(&self, key: &PlatformKey, now: i64, force: bool) -> Result<Served, CollateralError> {
        let mut warnings = Vec::new();
        let (offline_match, offline_other) = match self.offline_candidate(key, &mut warnings) {
            Some(l) if l.key.as_ref() == Some(key) => (Some(l), None),
            Some(l) => (None, Some(l)),
            None => (None, None),
        };
        if let Some(o) = &offline_match {
            if now <= o.times.next_update {
                return Ok(served(o.clone(), None, warnings));
            }
        }
        let mut current = self.current(key, now, &mut warnings);
        if self.wants_fetch(key, current.as_ref(), now, force) {
            current = self.fetch_and_adopt(key, current, now, force, &mut warnings);
        }
        let best = [current, offline_match]
            .into_iter()
            .flatten()
            .max_by_key(|l| l.times.next_update)
            .or(offline_other);
        let Some(best) = best else {
            return Err(CollateralError::Missing {
                platform: key.to_string(),
                detail: self.why_no_fresh_copy(key, &warnings),
            });
        };
        let next = best.times.next_update;
        if now <= next {
            return Ok(served(best, None, warnings));
        }
        let grace = self.policy.grace_seconds;
        if now.saturating_sub(next) <= secs(grace) {
            let stale = Stale {
                since: next,
                item: best.times.next_update_item,
                grace_seconds: grace,
            };
            return Ok(served(best, Some(stale), warnings));
        }
        Err(CollateralError::Expired {
            platform: key.to_string(),
            what: best.times.next_update_item,
            issue_date: best.times.next_update_item_issued,
            next_update: next,
            grace_seconds: grace,
            now,
            why: self.why_no_fresh_copy(key, &warnings),
        })
    }

    fn why_no_fresh_copy(&self, key: &PlatformKey, warnings: &[CollateralError]) -> String {
        if let Some(w) = warnings.last() {
            return w.to_string();
        }
        if self.online.is_none() {
            return "online fetching is off (no offline bundle or cached copy is current)".into();
        }
        match lock(&self.state)
            .get(key)
            .and_then(|e| e.last_error.clone())
        {
            Some(e) => format!("last fetch failed: {e}"),
            None => "no fetch allowed yet (retry interval)".into(),
        }
    }

    /// The offline bundle for `key`: its own subdirectory, else the top directory.
    fn offline_candidate(
        &self,
        key: &PlatformKey,
        warnings: &mut Vec<CollateralError>,
    ) -> Option<Loaded> {
        let base = self.offline_dir.as_ref()?;
        [base.join(key.dir_name()), base.clone()]
            .iter()
            .find_map(|dir| self.offline_bundle(dir, warnings))
    }

    /// The bundle in `dir`, re-read when its files changed. A re-read that fails keeps the last good
    /// copy (still window-checked) and reports the failure.
    fn offline_bundle(&self, dir: &Path, warnings: &mut Vec<CollateralError>) -> Option<Loaded> {
        let now_stamp = stamp(dir);
        if now_stamp.iter().all(Option::is_none) {
            return None;
        }
        let mut map = lock(&self.offline);
        let fresh_read = map.get(dir).is_none_or(|e| e.stamp != now_stamp);
        if fresh_read {
            let (good, error) = match load_dir(dir, Origin::Offline(dir.to_path_buf())) {
                Ok(l) => (Some(l), None),
                Err(detail) => (
                    map.get(dir).and_then(|e| e.good.clone()),
                    Some(CollateralError::Offline {
                        path: dir.to_path_buf(),
                        detail,
                    }),
                ),
            };
            map.insert(
                dir.to_path_buf(),
                OfflineEntry {
                    stamp: now_stamp,
                    good,
                    error,
                },
            );
        }
        let entry = map.get(dir)?;
        if let Some(e) = &entry.error {
            warnings.push(e.clone());
        }
        entry.good.clone()
    }

    /// The copy in memory, or else (at most once per retry interval) the one in the cache directory.
    fn current(
        &self,
        key: &PlatformKey,
        now: i64,
        warnings: &mut Vec<CollateralError>,
    ) -> Option<Loaded> {
        let mut state = lock(&self.state);
        if !state.contains_key(key) && state.len() >= MAX_PLATFORMS {
            state.retain(|_, e| e.current.is_some());
        }
        if !state.contains_key(key) && state.len() >= MAX_PLATFORMS {
            return None;
        }
        let entry = state.entry(*key).or_default();
        let due = self.needs_refresh(entry.current.as_ref(), now)
            && self.interval_passed(entry.cache_checked, now);
        if due {
            entry.cache_checked = Some(now);
            if let Some(cached) = self.read_cache(key, warnings) {
                let newer = entry
                    .current
                    .as_ref()
                    .is_none_or(|c| cached.times.next_update > c.times.next_update);
                if newer {
                    entry.current = Some(cached);
                }
            }
        }
        entry.current.clone()
    }

    fn read_cache(&self, key: &PlatformKey, warnings: &mut Vec<CollateralError>) -> Option<Loaded> {
        let dir = self.cache_path(key)?;
        if !dir.join(COLLATERAL_FILES[0]).exists() {
            return None;
        }
        match load_dir(&dir, Origin::Cache(dir.clone())) {
            Ok(l) if l.key.as_ref() == Some(key) => Some(l),
            Ok(l) => {
                warnings.push(CollateralError::Cache {
                    path: dir,
                    detail: format!(
                        "holds collateral for {}, not {key}",
                        l.key
                            .map_or_else(|| "an unknown platform".into(), |k| k.to_string())
                    ),
                });
                None
            }
            Err(detail) => {
                warnings.push(CollateralError::Cache { path: dir, detail });
                None
            }
        }
    }

    fn needs_refresh(&self, current: Option<&Loaded>, now: i64) -> bool {
        current.is_none_or(|c| {
            now >= c
                .times
                .next_update
                .saturating_sub(secs(self.policy.refresh_before_seconds))
        })
    }

    fn interval_passed(&self, last: Option<i64>, now: i64) -> bool {
        // A clock that went backwards does not block retries.
        last.is_none_or(|t| {
            now < t || now >= t.saturating_add(secs(self.policy.retry_interval_seconds))
        })
    }

    fn wants_fetch(
        &self,
        key: &PlatformKey,
        current: Option<&Loaded>,
        now: i64,
        force: bool,
    ) -> bool {
        if self.online.is_none() || !(force || self.needs_refresh(current, now)) {
            return false;
        }
        let state = lock(&self.state);
        match state.get(key) {
            Some(e) => self.interval_passed(e.last_attempt, now),
            // Not tracked: the platform table is full of platforms that have collateral.
            None => false,
        }
    }

    /// Fetches `key`'s set (one fetch at a time), caches it and makes it current. Returns the copy to
    /// use: the fetched one, or `current` when the fetch failed (the failure goes to `warnings`).
    fn fetch_and_adopt(
        &self,
        key: &PlatformKey,
        current: Option<Loaded>,
        now: i64,
        force: bool,
        warnings: &mut Vec<CollateralError>,
    ) -> Option<Loaded> {
        let usable = current.as_ref().is_some_and(|c| now <= c.times.next_update);
        // Someone else is fetching: with a current copy, do not wait for them.
        let _guard = if usable {
            match self.fetching.try_lock() {
                Ok(g) => g,
                Err(TryLockError::WouldBlock) => return current,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
            }
        } else {
            lock(&self.fetching)
        };
        // While we waited, another thread may have fetched.
        let current = {
            let state = lock(&self.state);
            state
                .get(key)
                .and_then(|e| e.current.clone())
                .into_iter()
                .chain(current)
                .max_by_key(|l| l.times.next_update)
        };
        if !self.wants_fetch(key, current.as_ref(), now, force) {
            return current;
        }
        let result = self.fetch_set(key);
        let mut state = lock(&self.state);
        let entry = state.entry(*key).or_default();
        entry.last_attempt = Some(now);
        match result {
            Err(e) => {
                entry.last_error = Some(e.clone());
                warnings.push(e);
                current
            }
            Ok(fetched) => {
                entry.last_error = None;
                let take = force
                    || current
                        .as_ref()
                        .is_none_or(|c| fetched.times.next_update >= c.times.next_update);
                if !take {
                    return current;
                }
                entry.current = Some(fetched.clone());
                drop(state);
                if let Some(dir) = self.cache_path(key) {
                    for (name, bytes) in COLLATERAL_FILES.iter().zip(parts_of(&fetched.collateral))
                    {
                        if let Err(e) = write_atomic(&dir.join(name), bytes) {
                            warnings.push(e);
                            break;
                        }
                    }
                }
                Some(fetched)
            }
        }
    }

    /// GETs the four items of `key`'s set and checks each is what it claims to be.
    fn fetch_set(&self, key: &PlatformKey) -> Result<Loaded, CollateralError> {
        let Some((pcs, urls)) = &self.online else {
            return Err(CollateralError::Missing {
                platform: key.to_string(),
                detail: "online fetching is off".into(),
            });
        };
        let get =
            |url: &str, headers: &[&str], cap: usize| pcs.fetch.get(url, headers, cap, pcs.timeout);
        let bad = |url: &str, what: &'static str, detail: String| CollateralError::BadResponse {
            url: url.to_owned(),
            what,
            detail,
        };

        let url = urls.tcb_info(&key.fmspc);
        let names = [TCB_INFO_ISSUER_CHAIN, SGX_TCB_INFO_ISSUER_CHAIN];
        let r = get(&url, &names, MAX_COLLATERAL_FILE_LEN)?;
        let head = tcb_info_head(&r.body).map_err(|d| bad(&url, "a TDX TCB info", d))?;
        let want = hex::encode(key.fmspc);
        if !head
            .fmspc
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case(&want))
        {
            return Err(bad(
                &url,
                "a TDX TCB info",
                format!(
                    "FMSPC {:?}, asked for {want}",
                    head.fmspc.unwrap_or_default()
                ),
            ));
        }
        let tcb_info_issuer_chain = issuer_chain(&url, &r, &names)?;
        let tcb_info = r.body;

        let url = urls.qe_identity();
        let r = get(
            &url,
            &[ENCLAVE_IDENTITY_ISSUER_CHAIN],
            MAX_COLLATERAL_FILE_LEN,
        )?;
        qe_identity_head(&r.body).map_err(|d| bad(&url, "a TD QE identity", d))?;
        let qe_identity_issuer_chain = issuer_chain(&url, &r, &[ENCLAVE_IDENTITY_ISSUER_CHAIN])?;
        let qe_identity = r.body;

        let crl_cap = MAX_CRL_LEN.saturating_mul(2); // hex or PEM before decoding
        let url = urls.pck_crl(key.ca);
        let r = get(&url, &[PCK_CRL_ISSUER_CHAIN], crl_cap)?;
        let pck_crl = normalize_crl(&r.body).map_err(|d| bad(&url, "a PCK CRL", d))?;
        let issuer = crl_head(&pck_crl)
            .map_err(|d| bad(&url, "a PCK CRL", d))?
            .issuer_cn;
        if issuer.as_deref() != Some(key.ca.common_name()) {
            return Err(bad(
                &url,
                "a PCK CRL",
                format!("issued by {issuer:?}, want {:?}", key.ca.common_name()),
            ));
        }
        let pck_crl_issuer_chain = issuer_chain(&url, &r, &[PCK_CRL_ISSUER_CHAIN])?;

        let url = urls.root_ca_crl().to_owned();
        let r = get(&url, &[], crl_cap)?;
        let root_ca_crl = normalize_crl(&r.body).map_err(|d| bad(&url, "a root CA CRL", d))?;

        let base = urls.base();
        let collateral = Collateral::from_parts(CollateralParts {
            tcb_info,
            tcb_info_issuer_chain,
            qe_identity,
            qe_identity_issuer_chain,
            pck_crl,
            pck_crl_issuer_chain,
            root_ca_crl,
        })
        .map_err(|e| bad(base, "TDX collateral", e.to_string()))?;
        let times = collateral_times(&collateral).map_err(|d| bad(base, "TDX collateral", d))?;
        Ok(Loaded {
            collateral: Arc::new(collateral),
            key: bundle_key(&times),
            times,
            origin: Origin::Fetched(base.to_owned()),
        })
    }
}

fn served(l: Loaded, stale: Option<Stale>, warnings: Vec<CollateralError>) -> Served {
    Served {
        collateral: l.collateral,
        origin: l.origin,
        times: l.times,
        stale,
        warnings,
    }
}

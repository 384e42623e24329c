//! A bounded least-recently-used map, used for executable digests keyed by [`crate::digest::FileIdentity`].
//!
//! Most attestations are of a handful of binaries (the same workloads reconnecting, the agent's own health
//! check), so a small cache turns a full read of the executable into one `fstat`. It is bounded because
//! workloads choose how many distinct files the agent sees; the least recently used entry is dropped
//! first. One lock around the whole map is enough: a hit holds it for a hash-map lookup and an ordered-map
//! update, far shorter than the `/proc` reads around it.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

/// A map holding at most `capacity` entries, evicting the least recently used. Capacity 0 caches nothing.
#[derive(Debug)]
pub struct Lru<K, V> {
    capacity: usize,
    inner: Mutex<State<K, V>>,
}

#[derive(Debug)]
struct State<K, V> {
    /// Entry and the tick of its last use.
    map: HashMap<K, (V, u64)>,
    /// Tick of last use → key; the first entry is the least recently used.
    order: BTreeMap<u64, K>,
    tick: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> Lru<K, V> {
    /// An empty cache for `capacity` entries.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(State {
                map: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
            }),
        }
    }

    /// The configured capacity.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value for `key`, marking it most recently used.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut st = self.lock();
        let tick = st.next_tick();
        let (value, used) = st.map.get_mut(key)?;
        let old = std::mem::replace(used, tick);
        let value = value.clone();
        st.order.remove(&old);
        st.order.insert(tick, key.clone());
        Some(value)
    }

    /// Stores `value` for `key`, evicting the least recently used entry if full.
    pub fn insert(&self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        let mut st = self.lock();
        let tick = st.next_tick();
        if let Some((_, old)) = st.map.insert(key.clone(), (value, tick)) {
            st.order.remove(&old);
        }
        st.order.insert(tick, key);
        while st.map.len() > self.capacity {
            let Some((_, oldest)) = st.order.pop_first() else {
                break;
            };
            st.map.remove(&oldest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K, V>> {
        // Every critical section leaves the map and the order consistent before it can panic (allocation
        // aside), so a poisoned lock still guards a usable cache.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, V> State<K, V> {
    fn next_tick(&mut self) -> u64 {
        self.tick = self.tick.wrapping_add(1);
        self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let c = Lru::new(2);
        c.insert("a", 1);
        c.insert("b", 2);
        assert_eq!(c.get(&"a"), Some(1)); // a is now newer than b
        c.insert("c", 3);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&"b"), None, "b was least recently used");
        assert_eq!(c.get(&"a"), Some(1));
        assert_eq!(c.get(&"c"), Some(3));
    }

    #[test]
    fn reinsert_replaces_without_growing() {
        let c = Lru::new(2);
        c.insert("a", 1);
        c.insert("a", 5);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&"a"), Some(5));
        c.insert("b", 2);
        c.insert("c", 3);
        assert_eq!(c.get(&"a"), None);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let c = Lru::new(0);
        c.insert(1u32, 1u32);
        assert!(c.is_empty());
        assert_eq!(c.get(&1), None);
    }

    #[test]
    fn stays_bounded_under_many_keys() {
        let c = Lru::new(16);
        for i in 0..10_000u32 {
            c.insert(i, i);
            let _ = c.get(&(i / 2));
        }
        assert_eq!(c.len(), 16);
        assert_eq!(c.get(&9_999), Some(9_999));
    }
}

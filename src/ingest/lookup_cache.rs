//! A short-lived memory of store lookups that every message repeats (which account a
//! forwarding address belongs to, the account's settings). Each one would otherwise be a
//! round trip to the database at RCPT and again at end of data, for every message.
//!
//! Entries live a few seconds only, so a new account, a removed address or a changed
//! policy (made by the CLI in another process) takes effect within that time. Only hits are
//! remembered: an unknown recipient is looked up each time, so an account created a moment
//! ago is found at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LookupCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> LookupCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        match entries.get(key) {
            Some((at, v)) if at.elapsed() < self.ttl => Some(v.clone()),
            _ => None,
        }
    }

    pub fn insert(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            // Expired entries first; if all are fresh, start over rather than grow.
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_ttl_and_forgets_after() {
        let cache = LookupCache::new(Duration::from_millis(50), 10);
        cache.insert("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        assert_eq!(cache.get(&"b"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&"a"), None);
    }

    #[test]
    fn never_grows_past_capacity() {
        let cache = LookupCache::new(Duration::from_secs(60), 3);
        for i in 0..10 {
            cache.insert(i, i);
        }
        assert!(cache.entries.lock().unwrap().len() <= 3);
        assert_eq!(cache.get(&9), Some(9));
    }

    #[test]
    fn zero_ttl_disables_it() {
        let cache = LookupCache::new(Duration::ZERO, 3);
        cache.insert(1, 1);
        assert_eq!(cache.get(&1), None);
    }
}

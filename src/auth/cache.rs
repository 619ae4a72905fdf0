//! A bounded DNS cache shared by every SMTP session: repeats cost nothing, and a flood of
//! distinct names cannot grow memory without limit.

use mail_auth::ResolverCache;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

pub struct BoundedCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> BoundedCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for BoundedCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.lock().ok()?;
        match entries.get(name) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.lock().ok()?.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            // Drop what has expired; if that is not enough, drop the entries closest to expiry.
            let now = Instant::now();
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                let mut expiries: Vec<Instant> = entries.values().map(|(_, u)| *u).collect();
                expiries.sort_unstable();
                let cut = expiries[expiries.len() / 4];
                entries.retain(|_, (_, until)| *until > cut);
            }
        }
        entries.insert(key, (value, valid_until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bounded_and_expiring() {
        let c: BoundedCache<Box<str>, u32> = BoundedCache::new(8);
        let later = Instant::now() + Duration::from_secs(60);
        for i in 0..100u32 {
            c.insert(
                format!("n{i}").into(),
                i,
                later + Duration::from_secs(i as u64),
            );
        }
        assert!(c.len() <= 8);
        assert_eq!(c.get("n99"), Some(99));
        c.insert("old".into(), 1, Instant::now() - Duration::from_secs(1));
        assert_eq!(c.get("old"), None);
    }
}

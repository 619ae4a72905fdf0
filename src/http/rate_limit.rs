//! A per-client rate limit kept in memory: a token bucket per client network (see
//! [`super::client_addr::ClientAddresses::group`]) that holds `limit` tokens and refills `limit` per
//! `window`. Memory is bounded: at most [`MAX_TRACKED_CLIENTS`] buckets; a full bucket is
//! forgotten when room is needed (it says nothing a fresh one would not), and when every
//! bucket is in use a new client goes unlimited rather than locking everyone out.

use crate::net::ClientGroup;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients tracked at once (about 50 bytes each).
pub const MAX_TRACKED_CLIENTS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    /// 0: no limit.
    limit: u32,
    window: Duration,
    buckets: Mutex<HashMap<ClientGroup, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Takes one token for `key`; Err(wait) when there is none, `wait` being how long until
    /// there is.
    pub fn check(&self, key: ClientGroup) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let per_second = f64::from(self.limit) / self.window.as_secs_f64().max(0.001);
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(f64::from(self.limit));
        bucket.updated = now;
    }

    fn check_at(&self, key: ClientGroup, now: Instant) -> Result<(), Duration> {
        if self.limit == 0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED_CLIENTS {
            let limit = f64::from(self.limit);
            buckets.retain(|_, b| {
                self.refill(b, now);
                b.tokens < limit
            });
            if buckets.len() >= MAX_TRACKED_CLIENTS {
                tracing::warn!(
                    tracked = buckets.len(),
                    "rate limit: too many clients at once to track another; letting it through"
                );
                return Ok(());
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: f64::from(self.limit),
            updated: now,
        });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let per_second = f64::from(self.limit) / self.window.as_secs_f64().max(0.001);
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::net::PrefixLengths;
    use std::net::IpAddr;

    fn ip(s: &str) -> ClientGroup {
        PrefixLengths::default().group(s.parse().unwrap())
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_refill() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(ip("192.0.2.1"), t0).is_ok());
        }
        let wait = limiter.check_at(ip("192.0.2.1"), t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Another client is not affected.
        assert!(limiter.check_at(ip("192.0.2.2"), t0).is_ok());
        // One token back after a third of the window.
        let later = t0 + Duration::from_secs(20);
        assert!(limiter.check_at(ip("192.0.2.1"), later).is_ok());
        assert!(limiter.check_at(ip("192.0.2.1"), later).is_err());
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::new(0, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.check_at(ip("192.0.2.1"), t0).is_ok());
        }
    }

    #[test]
    fn memory_is_bounded_and_idle_clients_are_forgotten_first() {
        let limiter = RateLimiter::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_CLIENTS as u32 {
            let _ = limiter.check_at(
                PrefixLengths::default().group(IpAddr::from(i.to_be_bytes())),
                t0,
            );
        }
        // Full of fresh buckets: a newcomer passes untracked, the table does not grow.
        assert!(limiter.check_at(ip("203.0.113.1"), t0).is_ok());
        assert_eq!(limiter.buckets.lock().unwrap().len(), MAX_TRACKED_CLIENTS);
        // Once they have refilled they are forgotten and the newcomer is tracked again.
        let later = t0 + Duration::from_secs(2);
        assert!(limiter.check_at(ip("203.0.113.1"), later).is_ok());
        assert!(limiter.check_at(ip("203.0.113.1"), later).is_ok());
        assert!(limiter.check_at(ip("203.0.113.1"), later).is_err());
        assert_eq!(limiter.buckets.lock().unwrap().len(), 1);
    }
}

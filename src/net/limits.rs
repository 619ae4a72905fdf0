//! Caps on simultaneous connections, overall and per client group (see [`PrefixLengths`]).

use super::client::{ClientGroup, PrefixLengths};
use std::collections::HashMap;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Refusals are logged at most this often: a flood would fill the disk otherwise.
const LOG_REFUSALS_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    max_total: usize,
    per_client: Arc<Mutex<HashMap<ClientGroup, usize>>>,
    max_per_client: usize,
    groups: PrefixLengths,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Total,
    PerClient(ClientGroup),
}

/// Held for the life of a connection; frees its places when dropped.
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    group: ClientGroup,
    per_client: Arc<Mutex<HashMap<ClientGroup, usize>>>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.per_client.lock() {
            if let Some(n) = map.get_mut(&self.group) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.group);
                }
            }
        }
    }
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_client: usize, groups: PrefixLengths) -> Self {
        Self {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            per_client: Arc::new(Mutex::new(HashMap::new())),
            max_per_client,
            groups,
        }
    }

    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionSlot, LimitHit> {
        let group = self.groups.group(ip);
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| LimitHit::Total)?;
        let mut map = self
            .per_client
            .lock()
            .map_err(|_| LimitHit::PerClient(group))?;
        let n = map.entry(group).or_insert(0);
        if *n >= self.max_per_client {
            return Err(LimitHit::PerClient(group));
        }
        *n += 1;
        Ok(ConnectionSlot {
            _permit: permit,
            group,
            per_client: self.per_client.clone(),
        })
    }

    /// Connections held right now.
    pub fn in_use(&self) -> usize {
        self.max_total - self.total.available_permits()
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }
}

/// Logs connections refused by a cap, at most once every 10 s with the count since.
#[derive(Debug)]
pub struct RefusalLog {
    listener: &'static str,
    since_last: u64,
    last: Option<Instant>,
}

impl RefusalLog {
    pub fn new(listener: &'static str) -> Self {
        Self {
            listener,
            since_last: 0,
            last: None,
        }
    }

    pub fn note(&mut self, peer: SocketAddr, hit: LimitHit) {
        self.since_last += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < LOG_REFUSALS_EVERY)
        {
            return;
        }
        let cap = match hit {
            LimitHit::Total => format!("{}.max_connections", self.listener),
            LimitHit::PerClient(group) => {
                format!("{}.max_connections_per_ip for {group}", self.listener)
            }
        };
        tracing::warn!(
            listener = self.listener,
            %peer,
            refused = self.since_last,
            %cap,
            "connections refused: limit reached (logged at most every 10 s)"
        );
        self.since_last = 0;
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ipv6_64_shares_the_per_client_cap() {
        let limits = ConnectionLimits::new(10, 2, PrefixLengths::default());
        let a = limits
            .try_acquire("2001:db8:0:1::1".parse().unwrap())
            .unwrap();
        let b = limits
            .try_acquire("2001:db8:0:1::2".parse().unwrap())
            .unwrap();
        let third = limits.try_acquire("2001:db8:0:1:abcd::9".parse().unwrap());
        assert!(
            matches!(third, Err(LimitHit::PerClient(g)) if g.to_string() == "2001:db8:0:1::/64"),
            "a third address of the same /64 is refused"
        );
        assert!(limits
            .try_acquire("2001:db8:0:2::1".parse().unwrap())
            .is_ok());
        drop(a);
        assert!(limits
            .try_acquire("2001:db8:0:1::3".parse().unwrap())
            .is_ok());
        drop(b);
    }

    #[test]
    fn the_total_cap_counts_everyone() {
        let limits = ConnectionLimits::new(2, 5, PrefixLengths::default());
        let _a = limits.try_acquire("192.0.2.1".parse().unwrap()).unwrap();
        let _b = limits.try_acquire("192.0.2.2".parse().unwrap()).unwrap();
        assert_eq!(limits.in_use(), 2);
        assert!(matches!(
            limits.try_acquire("192.0.2.3".parse().unwrap()),
            Err(LimitHit::Total)
        ));
    }
}

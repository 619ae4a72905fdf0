//! A cap on the message bytes held in memory by all sessions together. Each message buffer
//! grows only as its session obtains room for it; when the budget is spent, sessions wait
//! (and stop reading, which slows their senders through TCP) instead of exhausting memory.
//!
//! One client must not be able to hold everyone's mail back with it, so:
//! - each client group (an IPv4 address or an IPv6 /64, see `net::client`) may hold at most
//!   `per_client` bytes, however many sessions it opens;
//! - room is given to whichever waiter it fits, not in arrival order, so a waiter that
//!   needs much never holds back one that needs little;
//! - an eighth of the budget is kept for messages under [`SMALL`]: large messages from many
//!   clients cannot take the last of the room ordinary mail needs;
//! - a session whose message is already too big gives its room back at once (see
//!   `session.rs`): it goes on reading only to find the end of the data.

use crate::net::{ClientGroup, PrefixLengths};
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Room is handed out in units of this many bytes.
const UNIT: usize = 64 * 1024;

/// Messages up to this size may use the room kept back from large ones.
pub const SMALL: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct DataBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total_units: usize,
    per_client_units: usize,
    /// Units only reservations of at most `small_units` may take.
    kept_for_small: usize,
    small_units: usize,
    groups: PrefixLengths,
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    held: HashMap<ClientGroup, usize>,
}

/// The room one message holds; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: DataBudget,
    group: ClientGroup,
    units: usize,
}

impl DataBudget {
    /// `total_bytes` for everyone, at most `per_client_bytes` for one client group.
    pub fn new(total_bytes: usize, per_client_bytes: usize, groups: PrefixLengths) -> Self {
        let total_units = (total_bytes / UNIT).max(1);
        // One unit of slack: a session asks for one unit ahead of what it holds.
        let per_client_units = per_client_bytes.div_ceil(UNIT) + 1;
        Self {
            inner: Arc::new(Inner {
                total_units,
                per_client_units,
                kept_for_small: total_units / 8,
                small_units: SMALL / UNIT,
                groups,
                state: Mutex::new(State {
                    free: total_units,
                    held: HashMap::new(),
                }),
                freed: Notify::new(),
            }),
        }
    }

    /// A budget with no per-client cap (tests).
    pub fn shared(total_bytes: usize) -> Self {
        Self::new(total_bytes, total_bytes, PrefixLengths::default())
    }

    pub fn reserve(&self, client: IpAddr) -> Reservation {
        Reservation {
            budget: self.clone(),
            group: self.inner.groups.group(client),
            units: 0,
        }
    }

    /// Room free right now (for tests and metrics).
    pub fn available_bytes(&self) -> usize {
        self.inner.lock().free * UNIT
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain counters behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most units one reservation can ever get.
    fn ceiling(&self) -> usize {
        self.per_client_units
            .min(self.total_units - self.kept_for_small)
            .max(1)
    }

    /// Grows a reservation of `group` from `has` to `wants` units if that fits now.
    fn try_grow(&self, group: ClientGroup, has: usize, wants: usize) -> bool {
        let more = wants - has;
        let mut state = self.lock();
        let held = state.held.get(&group).copied().unwrap_or(0);
        let floor = if wants > self.small_units {
            self.kept_for_small
        } else {
            0
        };
        if held + more > self.per_client_units || state.free < more + floor {
            return false;
        }
        state.free -= more;
        *state.held.entry(group).or_insert(0) += more;
        true
    }

    fn give_back(&self, group: ClientGroup, units: usize) {
        let mut state = self.lock();
        state.free += units;
        if let Some(held) = state.held.get_mut(&group) {
            *held = held.saturating_sub(units);
            if *held == 0 {
                state.held.remove(&group);
            }
        }
        drop(state);
        self.freed.notify_waiters();
    }
}

impl Reservation {
    /// Waits until the reservation covers `bytes` (or as much as one reservation may hold).
    pub async fn cover(&mut self, bytes: usize) {
        let inner = self.budget.inner.clone();
        // One unit ahead, so that the next read always has room.
        let needed = (bytes.div_ceil(UNIT) + 1).min(inner.ceiling());
        if needed <= self.units {
            return;
        }
        loop {
            // Registered before the check, so that room freed in between is not missed.
            let mut freed = pin!(inner.freed.notified());
            freed.as_mut().enable();
            if inner.try_grow(self.group, self.units, needed) {
                self.units = needed;
                return;
            }
            freed.await;
        }
    }

    pub fn bytes(&self) -> usize {
        self.units * UNIT
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.units > 0 {
            self.budget.inner.give_back(self.group, self.units);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_room_and_gives_it_back() {
        let budget = DataBudget::shared(4 * UNIT);
        let mut a = budget.reserve(ip("192.0.2.1"));
        a.cover(2 * UNIT).await; // 3 units
        assert_eq!(budget.available_bytes(), UNIT);
        let mut b = budget.reserve(ip("192.0.2.2"));
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.cover(2 * UNIT)).await;
        assert!(waiting.is_err(), "no room until a gives it back");
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), b.cover(2 * UNIT))
            .await
            .unwrap();
        assert_eq!(b.bytes(), 3 * UNIT);
        drop(b);
        assert_eq!(budget.available_bytes(), 4 * UNIT);
    }

    #[tokio::test(start_paused = true)]
    async fn one_client_cannot_hold_more_than_its_share() {
        // 64 units in all, 8 (+1 of slack) per client group.
        let budget = DataBudget::new(64 * UNIT, 8 * UNIT, PrefixLengths::default());
        let mut first = budget.reserve(ip("2001:db8:0:1::1"));
        first.cover(7 * UNIT).await; // 8 units
                                     // Another session of the same /64 would take it over its cap: it waits.
        let mut second = budget.reserve(ip("2001:db8:0:1::2"));
        let blocked = tokio::time::timeout(Duration::from_secs(5), second.cover(2 * UNIT)).await;
        assert!(blocked.is_err(), "the /64 is at its cap");
        // Another client is served at once.
        let mut other = budget.reserve(ip("2001:db8:0:2::1"));
        tokio::time::timeout(Duration::from_millis(10), other.cover(7 * UNIT))
            .await
            .expect("another client is not held back");
        drop(first);
        tokio::time::timeout(Duration::from_millis(10), second.cover(2 * UNIT))
            .await
            .expect("room of the same client comes back to it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_waiter_does_not_block_a_small_one() {
        let budget = DataBudget::shared(64 * UNIT); // 8 units kept for small messages
        let mut holder = budget.reserve(ip("192.0.2.1"));
        holder.cover(39 * UNIT).await; // 40 units: 24 free
        let mut large = budget.reserve(ip("192.0.2.2"));
        let large_wait = tokio::spawn(async move {
            large.cover(29 * UNIT).await; // 30 units: cannot fit until the holder leaves
            large
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut small = budget.reserve(ip("192.0.2.3"));
        tokio::time::timeout(Duration::from_millis(10), small.cover(UNIT))
            .await
            .expect("the small request is served past the large waiter");
        assert!(!large_wait.is_finished());
        drop(holder);
        let large = tokio::time::timeout(Duration::from_secs(1), large_wait)
            .await
            .expect("the large waiter gets room once it exists")
            .unwrap();
        assert_eq!(large.bytes(), 30 * UNIT);
    }

    #[tokio::test(start_paused = true)]
    async fn large_messages_leave_the_kept_room_to_small_ones() {
        let budget = DataBudget::shared(64 * UNIT); // 8 units kept, small: up to 16
        let mut a = budget.reserve(ip("192.0.2.1"));
        a.cover(39 * UNIT).await; // 40 units: 24 free
        let mut b = budget.reserve(ip("192.0.2.2"));
        b.cover(15 * UNIT).await; // 16 units, still small: 8 free
        let grow = tokio::time::timeout(Duration::from_millis(50), b.cover(16 * UNIT)).await;
        assert!(
            grow.is_err(),
            "b is large now and may not take the kept room"
        );
        let mut small = budget.reserve(ip("192.0.2.3"));
        tokio::time::timeout(Duration::from_millis(10), small.cover(6 * UNIT))
            .await
            .expect("a small message uses the kept room");
        assert_eq!(budget.available_bytes(), UNIT);
    }
}

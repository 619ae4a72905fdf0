//! Deadlines for a peer that sends slowly on purpose (slowloris). A timeout that restarts
//! on every byte never fires against a client that sends one byte a minute; so a transfer
//! also has a total time limit and, after a grace period, a minimum average rate. Each
//! wait for more bytes ends at the earliest of the three deadlines.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceLimits {
    /// Longest wait for the next bytes.
    pub idle: Duration,
    /// Longest time for the whole transfer; `None`: no limit.
    pub total: Option<Duration>,
    /// Least average rate in bytes per second, checked once `grace` has passed; 0: none.
    pub min_rate: u64,
    pub grace: Duration,
}

/// Which limit a transfer ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaceBreach {
    /// No bytes for `idle`.
    Idle(Duration),
    /// Not finished within `total`.
    Total(Duration),
    /// Slower than `min_rate` on average: `bytes` in `elapsed`.
    TooSlow {
        bytes: u64,
        elapsed: Duration,
        min_rate: u64,
    },
}

/// One transfer's progress against its [`PaceLimits`].
#[derive(Debug, Clone)]
pub struct Pace {
    limits: PaceLimits,
    started: Instant,
    bytes: u64,
    /// Time the server itself made the sender wait (not held against it).
    excused: Duration,
}

impl Pace {
    pub fn start(limits: PaceLimits) -> Self {
        Self {
            limits,
            started: Instant::now(),
            bytes: 0,
            excused: Duration::ZERO,
        }
    }

    pub fn received(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// The server made the sender wait this long (e.g. for memory): not its fault.
    pub fn excuse(&mut self, waited: Duration) {
        self.excused += waited;
    }

    /// When a wait for more bytes that begins now must give up, and why.
    pub fn deadline(&self) -> (Instant, PaceBreach) {
        let now = Instant::now();
        let origin = self.started + self.excused;
        let mut best = (now + self.limits.idle, PaceBreach::Idle(self.limits.idle));
        if let Some(total) = self.limits.total {
            let at = origin + total;
            if at < best.0 {
                best = (at, PaceBreach::Total(total));
            }
        }
        if self.limits.min_rate > 0 {
            // The moment the average would fall below the minimum with no more bytes.
            let earned = Duration::from_secs_f64(self.bytes as f64 / self.limits.min_rate as f64);
            let at = origin + earned.max(self.limits.grace);
            if at < best.0 {
                let elapsed = at.saturating_duration_since(origin);
                best = (
                    at,
                    PaceBreach::TooSlow {
                        bytes: self.bytes,
                        elapsed,
                        min_rate: self.limits.min_rate,
                    },
                );
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PaceLimits {
        PaceLimits {
            idle: Duration::from_secs(60),
            total: Some(Duration::from_secs(600)),
            min_rate: 100,
            grace: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_too_slow_after_the_grace() {
        let pace = Pace::start(limits());
        let (at, why) = pace.deadline();
        assert_eq!(at - Instant::now(), Duration::from_secs(10));
        assert!(
            matches!(why, PaceBreach::TooSlow { bytes: 0, .. }),
            "{why:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_buy_time_until_the_total_limit() {
        let mut pace = Pace::start(limits());
        pace.received(3000); // 30 s worth at 100 B/s
        let (at, why) = pace.deadline();
        assert_eq!(at - Instant::now(), Duration::from_secs(30));
        assert!(matches!(why, PaceBreach::TooSlow { .. }));
        pace.received(1_000_000);
        let (_, why) = pace.deadline();
        assert_eq!(why, PaceBreach::Idle(Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(590)).await;
        let (at, why) = pace.deadline();
        assert_eq!(why, PaceBreach::Total(Duration::from_secs(600)));
        assert_eq!(at - Instant::now(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_server_imposed_is_excused() {
        let mut pace = Pace::start(limits());
        tokio::time::advance(Duration::from_secs(100)).await;
        pace.excuse(Duration::from_secs(100));
        let (at, _) = pace.deadline();
        assert_eq!(at - Instant::now(), Duration::from_secs(10));
    }
}

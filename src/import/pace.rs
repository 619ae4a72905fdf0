//! An import's speed limit (`imports.max_rate`, `postern import --max-rate`).
//!
//! A large import commits through the same storage writer as live SMTP intake, and reads an
//! IMAP server that may limit how fast it is read. Capping messages per second leaves room
//! for both. Each pass of an import (reading, committing) keeps its own pace.

use std::time::{Duration, Instant};

/// Keeps a stream of work at or under a number of messages per second, on average since it
/// started.
#[derive(Debug)]
pub struct Pace {
    rate: u32,
    start: Instant,
    done: u64,
}

impl Pace {
    /// At most `rate` messages per second; 0: no limit.
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            start: Instant::now(),
            done: 0,
        }
    }

    /// Counts `n` more messages; returns how long to wait before the next one so that the
    /// average stays under the rate (zero when there is no limit or the work is behind).
    pub fn advance(&mut self, n: u64) -> Duration {
        self.advance_at(n, Instant::now())
    }

    fn advance_at(&mut self, n: u64, now: Instant) -> Duration {
        self.done = self.done.saturating_add(n);
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let due = Duration::from_secs_f64(self.done as f64 / f64::from(self.rate));
        due.saturating_sub(now.saturating_duration_since(self.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_never_waits() {
        let mut pace = Pace::new(0);
        assert_eq!(pace.advance(1_000_000), Duration::ZERO);
    }

    #[test]
    fn work_ahead_of_the_rate_waits_for_the_difference() {
        let mut pace = Pace::new(100);
        let t0 = pace.start;
        // 50 messages at once: due at 0.5 s.
        assert_eq!(pace.advance_at(50, t0), Duration::from_millis(500));
        // 0.2 s later, 50 more: due at 1 s, 0.8 s away.
        assert_eq!(
            pace.advance_at(50, t0 + Duration::from_millis(200)),
            Duration::from_millis(800)
        );
    }

    #[test]
    fn work_behind_the_rate_does_not_wait_nor_build_up_credit_beyond_the_average() {
        let mut pace = Pace::new(10);
        let t0 = pace.start;
        // 1 message after 5 s: far behind.
        assert_eq!(
            pace.advance_at(1, t0 + Duration::from_secs(5)),
            Duration::ZERO
        );
        // 100 more right after: the average since the start is what is limited.
        assert_eq!(
            pace.advance_at(100, t0 + Duration::from_secs(5)),
            Duration::from_millis(5_100)
        );
    }
}

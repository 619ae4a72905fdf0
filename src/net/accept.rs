//! What a listener does when `accept` fails. Out of file descriptors (EMFILE, ENFILE) or
//! kernel memory (ENOBUFS, ENOMEM), the pending connection stays in the backlog and the
//! next `accept` fails the same way at once: retrying without a pause spins a core and
//! floods the log. The listener pauses instead, longer while the failures last (50 ms
//! doubling up to 1 s), and logs at most once every 10 s. An error that concerns only the
//! connection being accepted (reset or aborted before we took it) is skipped at once.

use std::io;
use std::time::Duration;
use tokio::time::Instant;

const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct AcceptBackoff {
    listener: &'static str,
    pause: Duration,
    /// Failures in the current run of failures.
    failures: u64,
    last_logged: Option<Instant>,
}

impl AcceptBackoff {
    pub fn new(listener: &'static str) -> Self {
        Self {
            listener,
            pause: FIRST_PAUSE,
            failures: 0,
            last_logged: None,
        }
    }

    /// An `accept` failed with `e`: how long to wait before accepting again.
    pub fn failed(&mut self, e: &io::Error) -> Duration {
        if concerns_one_connection(e) {
            tracing::debug!(listener = self.listener, error = %e, "a connection was gone before it was accepted");
            return Duration::ZERO;
        }
        self.failures += 1;
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
        {
            tracing::error!(
                listener = self.listener,
                error = %e,
                failures = self.failures,
                "accept failed, pausing new connections (out of file descriptors? see the open-file limit logged at start)"
            );
            self.last_logged = Some(now);
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        pause
    }

    /// A connection was accepted: the trouble, if any, is over.
    pub fn accepted(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                listener = self.listener,
                failures = self.failures,
                "accepting connections again"
            );
        }
        self.failures = 0;
        self.pause = FIRST_PAUSE;
        self.last_logged = None;
    }
}

fn concerns_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pauses_grow_on_resource_errors_and_reset_after_success() {
        let mut b = AcceptBackoff::new("test");
        let emfile = io::Error::from_raw_os_error(24); // EMFILE
        let pauses: Vec<Duration> = (0..7).map(|_| b.failed(&emfile)).collect();
        assert_eq!(pauses[0], Duration::from_millis(50));
        assert_eq!(pauses[1], Duration::from_millis(100));
        assert_eq!(pauses[6], Duration::from_secs(1), "{pauses:?}");
        b.accepted();
        assert_eq!(b.failed(&emfile), Duration::from_millis(50));
        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(b.failed(&reset), Duration::ZERO);
    }
}

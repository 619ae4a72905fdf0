//! The open-file budget. Every connection is a file descriptor; when the process runs
//! out, `accept` fails for every listener at once. So the soft RLIMIT_NOFILE is raised to
//! the hard limit at start, and HTTP's connection cap is derived from what is left once
//! SMTP and the rest of the process have their share, so that HTTP clients can never take
//! the descriptors SMTP needs:
//!
//! ```text
//! smtp  = 2 × smtp.max_connections + SMTP_REFUSALS + 2
//!         (a socket and a DNS query in flight per session; 421 replies being written to
//!          connections over the cap; the listener and the connection being accepted)
//! rest  = http.reserved_descriptors
//!         (database and its WAL, logs, outbound deliveries, DNS, import files, ...)
//! http  = min(http.max_connections, (limit − smtp − rest − 2) / 2)
//!         (a socket and an upload file per connection; the listener and the connection
//!          being refused)
//! ```
//!
//! When the limit cannot hold `smtp.max_connections` beside at least 32 HTTP connections,
//! SMTP's cap is lowered too (both are logged at start); below 8 SMTP connections the
//! server refuses to start.

use std::io;

/// 421 replies to connections over SMTP's cap that may be in flight at once; beyond it,
/// such connections are closed without a reply (see `smtp::server`).
pub const SMTP_REFUSALS: usize = 32;

/// HTTP connections kept when the open-file limit is short (SMTP is lowered for them).
const HTTP_FLOOR: u64 = 32;

/// Fewest SMTP connections worth starting with.
const SMTP_FLOOR: u64 = 8;

/// The soft limit on open files before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub before: u64,
    pub now: u64,
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard limit (as far as the kernel allows).
#[cfg(unix)]
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before: u64 = lim.rlim_cur;
    let hard: u64 = lim.rlim_max;
    // An "unlimited" hard limit still stops at the kernel's per-process ceiling.
    let target = if hard == libc::RLIM_INFINITY {
        kernel_ceiling()
    } else {
        hard
    };
    // macOS refuses more than OPEN_MAX (10240) whatever the hard limit says.
    for attempt in [target, target.min(10_240)] {
        if attempt <= before {
            break;
        }
        let raised = libc::rlimit {
            rlim_cur: attempt,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(OpenFileLimit {
                before,
                now: attempt,
                hard,
            });
        }
        let e = io::Error::last_os_error();
        tracing::warn!(error = %e, soft = before, wanted = attempt, hard, "cannot raise the open-file limit");
    }
    Ok(OpenFileLimit {
        before,
        now: before,
        hard,
    })
}

#[cfg(unix)]
fn kernel_ceiling() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

#[cfg(not(unix))]
pub fn raise_open_file_limit() -> io::Result<OpenFileLimit> {
    Err(io::Error::other(
        "open-file limits are only managed on Unix",
    ))
}

/// How the open files are shared out (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePlan {
    pub limit: u64,
    /// SMTP connections allowed at once (the configured cap unless the limit is short).
    pub smtp_connections: usize,
    /// Descriptors SMTP may use with that many connections.
    pub smtp_descriptors: u64,
    pub reserved: u64,
    /// HTTP connections allowed at once.
    pub http_connections: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the open-file limit ({limit}) is too low: {reserved} descriptors are kept for the \
     process (http.reserved_descriptors) and too few are left for SMTP and HTTP connections; \
     raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower http.reserved_descriptors"
)]
pub struct FilePlanError {
    limit: u64,
    reserved: u64,
}

impl FilePlan {
    /// Shares `limit` descriptors out. When it cannot hold both configured caps, SMTP (mail
    /// intake) keeps all it can while HTTP still gets [`HTTP_FLOOR`] connections; the caller
    /// logs the lowered caps.
    pub fn new(
        limit: u64,
        smtp_wanted: usize,
        reserved: u64,
        http_wanted: usize,
    ) -> Result<Self, FilePlanError> {
        let error = FilePlanError { limit, reserved };
        // Fixed costs: SMTP's refusals, listener and connection being accepted; the
        // reserve; HTTP's listener and connection being refused.
        let fixed = SMTP_REFUSALS as u64 + 2 + reserved + 2;
        // Each connection of either kind may take two descriptors.
        let pairs = limit.checked_sub(fixed).ok_or(error.clone())? / 2;
        let http_floor = (http_wanted as u64).min(HTTP_FLOOR);
        let smtp = (smtp_wanted as u64).min(pairs.saturating_sub(http_floor));
        if smtp < (smtp_wanted as u64).min(SMTP_FLOOR) {
            return Err(error);
        }
        let http = (http_wanted as u64).min(pairs - smtp);
        Ok(Self {
            limit,
            smtp_connections: smtp as usize,
            smtp_descriptors: 2 * smtp + SMTP_REFUSALS as u64 + 2,
            reserved,
            http_connections: http as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_gets_what_smtp_and_the_reserve_leave() {
        // 1024 files, 100 SMTP connections: 234 for SMTP, 256 kept, (1024-234-256-2)/2 = 266.
        let plan = FilePlan::new(1024, 100, 256, 1000).unwrap();
        assert_eq!(plan.smtp_connections, 100);
        assert_eq!(plan.smtp_descriptors, 234);
        assert_eq!(plan.http_connections, 266);
        assert!(
            plan.smtp_descriptors + plan.reserved + 2 * plan.http_connections as u64 + 2 <= 1024
        );
        // Plenty of files: the configured caps stand.
        let plan = FilePlan::new(1 << 20, 500, 256, 1024).unwrap();
        assert_eq!((plan.smtp_connections, plan.http_connections), (500, 1024));
    }

    #[test]
    fn a_short_limit_lowers_smtp_to_keep_some_http_and_too_short_refuses() {
        // The defaults under a hard limit of 1024: (1024 - 292) / 2 = 366 pairs, 32 for HTTP.
        let plan = FilePlan::new(1024, 500, 256, 1024).unwrap();
        assert_eq!((plan.smtp_connections, plan.http_connections), (334, 32));
        assert!(
            plan.smtp_descriptors + plan.reserved + 2 * plan.http_connections as u64 + 2 <= 1024
        );
        let err = FilePlan::new(300, 500, 256, 1024).unwrap_err();
        assert!(err.to_string().contains("LimitNOFILE"), "{err}");
    }

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_open_file_limit().unwrap();
        assert!(limit.now >= limit.before);
        assert!(limit.now <= limit.hard);
    }
}

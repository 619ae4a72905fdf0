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

use std::io;

/// 421 replies to connections over SMTP's cap that may be in flight at once; beyond it,
/// such connections are closed without a reply (see `smtp::server`).
pub const SMTP_REFUSALS: usize = 32;

/// Fewest HTTP connections worth starting with.
const HTTP_MIN: u64 = 8;

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
    if target > before {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            let e = io::Error::last_os_error();
            tracing::warn!(error = %e, soft = before, hard, "cannot raise the open-file limit");
            return Ok(OpenFileLimit {
                before,
                now: before,
                hard,
            });
        }
    }
    Ok(OpenFileLimit {
        before,
        now: target.max(before),
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
    pub smtp: u64,
    pub reserved: u64,
    /// HTTP connections allowed at once.
    pub http_connections: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the open-file limit ({limit}) is too low: SMTP needs {smtp} descriptors for \
     smtp.max_connections = {smtp_connections}, {reserved} are kept for the rest \
     (http.reserved_descriptors), leaving fewer than {http_min} HTTP connections; raise the \
     hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower smtp.max_connections"
)]
pub struct FilePlanError {
    limit: u64,
    smtp: u64,
    smtp_connections: usize,
    reserved: u64,
    http_min: u64,
}

impl FilePlan {
    pub fn new(
        limit: u64,
        smtp_connections: usize,
        reserved: u64,
        http_wanted: usize,
    ) -> Result<Self, FilePlanError> {
        let smtp = 2 * smtp_connections as u64 + SMTP_REFUSALS as u64 + 2;
        let http_room = limit.saturating_sub(smtp + reserved).saturating_sub(2) / 2;
        if http_room < HTTP_MIN.min(http_wanted as u64) {
            return Err(FilePlanError {
                limit,
                smtp,
                smtp_connections,
                reserved,
                http_min: HTTP_MIN.min(http_wanted as u64),
            });
        }
        Ok(Self {
            limit,
            smtp,
            reserved,
            http_connections: http_room.min(http_wanted as u64) as usize,
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
        assert_eq!(plan.smtp, 234);
        assert_eq!(plan.http_connections, 266);
        assert!(plan.smtp + plan.reserved + 2 * plan.http_connections as u64 + 2 <= 1024);
        // Plenty of files: the configured cap stands.
        assert_eq!(
            FilePlan::new(1 << 20, 500, 256, 1024)
                .unwrap()
                .http_connections,
            1024
        );
        // Too few: refuse to start rather than let HTTP starve SMTP.
        let err = FilePlan::new(1024, 500, 256, 1024).unwrap_err();
        assert!(err.to_string().contains("smtp.max_connections"), "{err}");
    }

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_open_file_limit().unwrap();
        assert!(limit.now >= limit.before);
        assert!(limit.now <= limit.hard);
    }
}

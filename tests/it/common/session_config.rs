//! The SMTP session settings the in-memory session tests and `tests/accept_emfile.rs` start
//! from (that binary includes this file by path: it cannot link the `it` crate).

use postern::net::PaceLimits;
use postern::smtp::{DataBudget, SessionConfig};
use std::time::Duration;

/// Small limits, so that tests reach them quickly; 5 s command and idle timeouts.
pub fn session_config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.test".into(),
        max_message_size: 10_000,
        max_recipients: 3,
        max_line_length: 512,
        max_received_headers: 5,
        max_errors: 10,
        command_timeout: Duration::from_secs(5),
        data_pace: PaceLimits {
            idle: Duration::from_secs(5),
            total: Some(Duration::from_secs(60)),
            min_rate: 0,
            grace: Duration::from_secs(5),
        },
        data_budget: DataBudget::shared(1 << 20),
        busy: None,
    }
}

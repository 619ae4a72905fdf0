//! Outbound mail: sending domains (DKIM keys and the DNS records to publish), composing an
//! agent's reply, signing it once, the durable queue and the worker that delivers it through
//! a relay or to the recipients' MX hosts, with retries and leases.
//!
//! Uses `store` and `domain` only; the DNS resolver is handed in by the caller (app, CLI).

mod attachment_type;
pub mod compose;
pub mod delivery;
pub mod dkim;
pub mod dns;
pub mod domains;
pub mod queue;
pub mod recipient;

pub use attachment_type::content_type_of;
pub use compose::{DraftAttachment, ReplyDraft};
pub use delivery::DeliveryError;
pub use domains::{DomainReport, RecordCheck, RecordStatus};
pub use queue::{OutboundQueue, QueuedReply};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The request itself is wrong (header injection, sizes, addresses): 400.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The sending domain is missing or not verified: 409.
    #[error("{0}")]
    DomainNotReady(String),
    /// A recipient that mail can never reach (an address literal, an IP address, not a
    /// domain name): 422, nothing queued.
    #[error(
        "{recipient} cannot receive mail: {reason}; remove it, or give an address at a domain name"
    )]
    Undeliverable {
        /// Which recipient, e.g. `cc a@[127.0.0.1]`.
        recipient: String,
        reason: String,
    },
    #[error("DKIM: {0}")]
    Dkim(String),
    #[error("composing the message: {0}")]
    Compose(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for OutboundError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::NotFound(m),
            StoreError::Invalid(m) => Self::Invalid(m),
            other => Self::Store(other),
        }
    }
}

/// A domain name as stored (for the CLI: the same check as [`clean_domain`]).
pub fn dns_name(input: &str) -> Result<String, OutboundError> {
    clean_domain(input)
}

/// A domain name as stored: lower case, no trailing dot; refused when it is not one.
pub fn clean_domain(input: &str) -> Result<String, OutboundError> {
    let d = input.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if d.len() > 253 || !d.contains('.') || !d.split('.').all(label_ok) {
        return Err(OutboundError::Invalid(format!(
            "{input:?} is not a domain name such as brand.com (internationalised names: give the xn-- form)"
        )));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_checked() {
        assert_eq!(clean_domain(" Brand.COM. ").unwrap(), "brand.com");
        for bad in ["brand", "a..b", "-a.com", "a b.com", "a.com\r\nX: y", ""] {
            assert!(clean_domain(bad).is_err(), "{bad:?}");
        }
    }
}

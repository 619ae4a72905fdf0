//! What the SMTP session needs from the rest of Postern: a yes/no on recipients, and
//! somewhere durable to put an accepted message. The session knows nothing else.

use crate::domain::{EmailAddress, Envelope};
use std::future::Future;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientVerdict {
    /// A mailbox we host.
    Accept,
    /// Our domain, but no such forwarding address: 550 5.1.1.
    UnknownUser,
    /// Not a domain of ours: 550 5.7.1, we never relay.
    RelayDenied,
    /// The lookup itself failed (storage down): 451 4.3.0, the client retries.
    TemporaryFailure(String),
}

/// A refused or failed delivery, carrying the SMTP reply to give (as in maddy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {enhanced} {message}")]
pub struct DeliveryError {
    pub code: u16,
    pub enhanced: &'static str,
    pub message: String,
}

impl DeliveryError {
    pub fn temporary(enhanced: &'static str, message: impl Into<String>) -> Self {
        Self {
            code: 451,
            enhanced,
            message: message.into(),
        }
    }

    /// A 4xx: the sender keeps the message and tries again later.
    pub fn is_transient(&self) -> bool {
        self.code < 500
    }
}

/// The receipt of a durable commit: the message is safe, the session may answer 250.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub queue_id: String,
}

pub trait Delivery: Send + Sync + 'static {
    fn check_recipient(
        &self,
        recipient: &EmailAddress,
    ) -> impl Future<Output = RecipientVerdict> + Send;

    /// Must return only once the message is durably stored (or has failed).
    fn deliver(
        &self,
        envelope: Envelope,
        message: Vec<u8>,
    ) -> impl Future<Output = Result<Accepted, DeliveryError>> + Send;
}

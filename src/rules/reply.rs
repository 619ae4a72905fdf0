//! The seam between rules and the outbound queue: the engine hands an automated reply to a
//! [`ReplySender`]. `postern serve` wires [`RecordOnlySender`] until the outbound queue
//! (issue 7) lands; the lead swaps in the queue there (src/app.rs, `reply_sender`).

use crate::domain::{AccountId, MessageId, TicketId};
use crate::store::{Store, StoreError};

/// An automated reply to a ticket's customer.
#[derive(Debug, Clone)]
pub struct AutoReply {
    pub account: AccountId,
    pub ticket: TicketId,
    pub rule_id: i64,
    pub to: String,
    pub subject: String,
    pub text: String,
    /// Always true for rules: the message is marked as automatic (Auto-Submitted:
    /// auto-replied) so that the customer's robots do not answer it.
    pub automated: bool,
    /// The (virtual) time of the reply, ms since the epoch.
    pub at: i64,
}

#[derive(Debug, Clone)]
pub struct SentReply {
    /// The outbound message recorded in the ticket.
    pub message: MessageId,
    /// Whether it was handed to a queue that will deliver it.
    pub queued: bool,
    /// Said in the rule log when it was not queued.
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(String),
}

#[async_trait::async_trait]
pub trait ReplySender: Send + Sync {
    async fn send_reply(&self, reply: &AutoReply) -> Result<SentReply, ReplyError>;
}

/// Records the reply in the ticket as an outbound message written by the rule, without
/// sending it: what `postern serve` does while there is no outbound queue.
pub struct RecordOnlySender {
    pub store: Store,
    /// Key and domain of our reply tokens, so the Message-ID threads answers back.
    pub secret: Vec<u8>,
    pub inbound_domain: String,
}

pub const NOT_SENT: &str = "not sent: outbound queue not available";

#[async_trait::async_trait]
impl ReplySender for RecordOnlySender {
    async fn send_reply(&self, reply: &AutoReply) -> Result<SentReply, ReplyError> {
        let message = self
            .store
            .record_rule_reply(
                reply.account,
                reply.ticket,
                reply.rule_id,
                &reply.to,
                &reply.subject,
                &reply.text,
                &self.secret,
                &self.inbound_domain,
                reply.at,
            )
            .await?;
        tracing::warn!(
            ticket = reply.ticket.0,
            rule = reply.rule_id,
            "automated reply recorded but {NOT_SENT}"
        );
        Ok(SentReply {
            message,
            queued: false,
            note: Some(NOT_SENT.into()),
        })
    }
}

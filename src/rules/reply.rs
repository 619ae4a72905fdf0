//! The seam between rules and the outbound queue: the engine hands an automated reply to a
//! [`ReplySender`]; `postern serve` and `postern rules tick` wire [`QueueReplySender`].

use crate::domain::{AccountId, MessageId, TicketId};
use crate::outbound::{OutboundError, OutboundQueue, ReplyDraft};
use crate::store::{Store, StoreError};
use std::sync::Arc;

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
    #[error(transparent)]
    Outbound(#[from] OutboundError),
}

#[async_trait::async_trait]
pub trait ReplySender: Send + Sync {
    async fn send_reply(&self, reply: &AutoReply) -> Result<SentReply, ReplyError>;
}

/// Hands automated replies to the outbound queue: composed with the macro's subject,
/// DKIM-signed, queued and delivered like an agent's reply, marked `Auto-Submitted:
/// auto-replied`, written by the rule (not an agent: the ticket's last agent reply does not
/// move). When the queue refuses because the brand's sending domain is not set up or not
/// verified, or because the customer's address can never receive mail (an address literal
/// in a sender's From), the reply is recorded in the ticket, flagged `not_sent`, and the
/// note returned for the rule log says why and what the admin should do.
pub struct QueueReplySender {
    pub store: Store,
    pub queue: Arc<OutboundQueue>,
}

#[async_trait::async_trait]
impl ReplySender for QueueReplySender {
    async fn send_reply(&self, reply: &AutoReply) -> Result<SentReply, ReplyError> {
        let draft = ReplyDraft {
            text: reply.text.clone(),
            subject: Some(reply.subject.clone()),
            author_rule_id: Some(reply.rule_id),
            ..Default::default()
        };
        let (queued, note) = match self
            .queue
            .enqueue_reply(reply.account, reply.ticket, draft.clone(), reply.automated)
            .await
        {
            Ok(q) => (q, None),
            Err(e @ (OutboundError::DomainNotReady(_) | OutboundError::Undeliverable { .. })) => {
                let why = e.to_string();
                let note = format!("not sent, recorded in the ticket only: {why}");
                let q = self
                    .queue
                    .record_unsent_reply(reply.account, reply.ticket, draft, reply.automated, &why)
                    .await?;
                tracing::warn!(
                    ticket = reply.ticket.0,
                    rule = reply.rule_id,
                    reason = %why,
                    "automated reply recorded but not sent"
                );
                (q, Some(note))
            }
            Err(e) => return Err(e.into()),
        };
        // The window guard (one automated reply per customer per rule) counts replies
        // recorded unsent too: the rule did answer, as far as the customer's robots and the
        // agents are concerned.
        self.store
            .note_auto_reply(
                reply.account,
                reply.rule_id,
                &reply.to,
                reply.ticket.0,
                Some(queued.message),
                reply.at,
            )
            .await?;
        Ok(SentReply {
            message: MessageId(queued.message),
            queued: note.is_none(),
            note,
        })
    }
}

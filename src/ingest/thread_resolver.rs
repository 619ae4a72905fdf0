//! The threading order of live and imported mail, as code over facts the store looks up;
//! first match wins, always within the receiving account:
//! 1. one of our reply tokens in In-Reply-To or References (newest first);
//! 2. In-Reply-To, then References newest first, against the account's stored Message-IDs;
//! 3. a ticket found by 1 or 2 takes the message only if the sender may join it (a
//!    participant, the brand, or DMARC passed for a participant's domain); otherwise the
//!    message opens a new ticket, flagged `unverified_reply`;
//! 4. the parent of replies that came first joins their ticket; a reply to a message we
//!    never saw joins another reply to it (JWZ's empty container);
//! 5. subject fallback: same customer, normalised subject, within the window;
//! 6. otherwise a new ticket.
//!
//! A suspected spoof never joins an existing conversation. Imported history differs in one
//! place: an import reads a mailbox in file order, not date order, so the subject window
//! holds on both sides of the message's date. The store answers the questions through
//! [`ThreadingFacts`]; nothing here knows how they are stored.

use crate::domain::{normalize_subject, verify_reply_token, Mailbox, ThreadReason, TicketId};
use crate::store::{StoreError, SubjectQuery, ThreadingFacts};

/// What threading needs from the settings.
#[derive(Clone)]
pub struct ThreadingConfig {
    /// Key of the MAC in our reply tokens.
    pub secret: Vec<u8>,
    /// Domain of our forwarding addresses and of the Message-IDs we write.
    pub inbound_domain: String,
    /// How recent a ticket must be for the subject fallback, in milliseconds.
    pub subject_window_ms: i64,
}

/// The facts of one message that threading looks at.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    pub message_id: Option<&'a str>,
    pub in_reply_to: Option<&'a str>,
    /// Oldest first, as in the header.
    pub references: &'a [String],
    /// The From address (lower-cased).
    pub sender: &'a str,
    /// Whose ticket it is: the sender, or whom the brand wrote to or forwarded from.
    pub customer: &'a str,
    /// To and Cc (addresses lower-cased).
    pub to: &'a [Mailbox],
    pub cc: &'a [Mailbox],
    pub subject: &'a str,
    pub received_at: i64,
    /// The domain DMARC passed for, if any.
    pub dmarc_pass_domain: Option<&'a str>,
    pub spoof_suspected: bool,
    /// Historic mail of an import job (its dates are not in arrival order).
    pub importing: bool,
}

impl Incoming<'_> {
    /// In-Reply-To, then References from the newest.
    fn parents_newest_first(&self) -> impl Iterator<Item = &str> {
        self.in_reply_to
            .into_iter()
            .chain(self.references.iter().rev().map(String::as_str))
    }
}

/// Ticket flags a placement may set.
pub mod flag {
    pub const SPOOF_SUSPECTED: &str = "spoof_suspected";
    pub const UNVERIFIED_REPLY: &str = "unverified_reply";
}

/// Where the message goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `None`: a new ticket.
    pub ticket: Option<TicketId>,
    pub reason: ThreadReason,
    /// Set on the new ticket.
    pub flag: Option<&'static str>,
    /// Tickets of replies that came before this message (their parent), to merge in.
    pub orphans: Vec<TicketId>,
}

impl Placement {
    fn new_ticket(reason: ThreadReason, flag: Option<&'static str>) -> Self {
        Self {
            ticket: None,
            reason,
            flag,
            orphans: vec![],
        }
    }
}

/// The threading order, configured.
#[derive(Clone)]
pub struct ThreadResolver {
    config: ThreadingConfig,
}

impl ThreadResolver {
    pub fn new(config: ThreadingConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &ThreadingConfig {
        &self.config
    }

    /// Decides where `m` goes. The look-ups are the few a new message without references
    /// needs (replies waiting for it, then the subject), more only as the headers ask.
    pub fn place<R: ThreadingFacts + ?Sized>(
        &self,
        repo: &mut R,
        m: &Incoming<'_>,
    ) -> Result<Placement, StoreError> {
        if m.spoof_suspected {
            return Ok(Placement::new_ticket(
                ThreadReason::SpoofSuspected,
                Some(flag::SPOOF_SUSPECTED),
            ));
        }
        let mut orphans = Vec::new();
        if let Some(id) = m.message_id {
            for t in repo.tickets_referring_to(id)? {
                if may_merge(repo, m, t)? {
                    orphans.push(t);
                }
            }
        }
        if let Some((ticket, reason)) = self.header_match(repo, m)? {
            if may_join(repo, m, ticket)? {
                return Ok(Placement {
                    ticket: Some(ticket),
                    reason,
                    flag: None,
                    orphans,
                });
            }
            tracing::warn!(
                ticket = ticket.0,
                sender = m.sender,
                "reply from a non-participant: opening a new ticket"
            );
            return Ok(Placement::new_ticket(
                ThreadReason::UnverifiedReply,
                Some(flag::UNVERIFIED_REPLY),
            ));
        }
        let found = match orphans.first() {
            Some(&first) => Some((first, ThreadReason::ParentOfExisting)),
            None => match sibling_match(repo, m)? {
                Some(t) => Some((t, ThreadReason::SharedParent)),
                None => self
                    .subject_match(repo, m)?
                    .map(|t| (t, ThreadReason::Subject)),
            },
        };
        Ok(match found {
            Some((ticket, reason)) => Placement {
                ticket: Some(ticket),
                reason,
                flag: None,
                orphans,
            },
            None => Placement {
                orphans,
                ..Placement::new_ticket(ThreadReason::NewTicket, None)
            },
        })
    }

    /// Steps 1 and 2: our reply tokens, then In-Reply-To, then References newest first.
    fn header_match<R: ThreadingFacts + ?Sized>(
        &self,
        repo: &mut R,
        m: &Incoming<'_>,
    ) -> Result<Option<(TicketId, ThreadReason)>, StoreError> {
        let cfg = &self.config;
        for id in m.parents_newest_first() {
            if let Some(t) = verify_reply_token(&cfg.secret, id, &cfg.inbound_domain) {
                if let Some(t) = repo.live_ticket(TicketId(t))? {
                    return Ok(Some((t, ThreadReason::ReplyToken)));
                }
            }
        }
        if let Some(irt) = m.in_reply_to {
            if let Some(t) = repo.ticket_of_message_id(irt, None)? {
                return Ok(Some((t, ThreadReason::InReplyTo)));
            }
        }
        for r in m.references.iter().rev() {
            if let Some(t) = repo.ticket_of_message_id(r, None)? {
                return Ok(Some((t, ThreadReason::References)));
            }
        }
        Ok(None)
    }

    /// Step 5: same customer, same normalised subject, updated within the window.
    fn subject_match<R: ThreadingFacts + ?Sized>(
        &self,
        repo: &mut R,
        m: &Incoming<'_>,
    ) -> Result<Option<TicketId>, StoreError> {
        let normalized = normalize_subject(m.subject);
        if normalized.is_empty() {
            return Ok(None);
        }
        let window = self.config.subject_window_ms;
        // Live mail arrives in date order: a ticket updated within the window before it. An
        // import reads its mailbox in file order, so the window holds on both sides: the
        // ticket's span, widened by the window, must contain the message's date.
        let created_until = if m.importing {
            m.received_at + window
        } else {
            i64::MAX
        };
        repo.ticket_by_subject(&SubjectQuery {
            customer: m.customer,
            normalized_subject: &normalized,
            updated_since: m.received_at - window,
            created_until,
        })
    }
}

/// Step 2, continued: a message whose parent we never saw joins the conversation of a
/// message that referred to the same parent (JWZ's empty container: two replies to one
/// missing message are one thread). Taken only when the sender may join; otherwise it is
/// no match at all, as if the ids were unknown.
fn sibling_match<R: ThreadingFacts + ?Sized>(
    repo: &mut R,
    m: &Incoming<'_>,
) -> Result<Option<TicketId>, StoreError> {
    for id in m.parents_newest_first() {
        let Some(found) = repo.first_ticket_referring_to(id)? else {
            continue;
        };
        if let Some(t) = repo.live_ticket(found)? {
            if may_join(repo, m, t)? {
                return Ok(Some(t));
            }
        }
    }
    Ok(None)
}

/// Step 3: may the sender join `ticket`?
fn may_join<R: ThreadingFacts + ?Sized>(
    repo: &mut R,
    m: &Incoming<'_>,
    ticket: TicketId,
) -> Result<bool, StoreError> {
    if repo.is_participant(ticket, m.sender)? || repo.is_brand(m.sender)? {
        return Ok(true);
    }
    match m.dmarc_pass_domain {
        Some(d) => repo.has_participant_at(ticket, &d.to_ascii_lowercase()),
        None => Ok(false),
    }
}

/// May the conversation in `other` (replies that came before their parent `m`) be merged
/// into `m`'s? Exactly when the reply would have joined `m`'s ticket had `m` come first (the
/// participant rule, step 3): its author is `m`'s sender, one of `m`'s recipients or the
/// brand. The order in which mail arrives, or an import reads it, never changes the result.
fn may_merge<R: ThreadingFacts + ?Sized>(
    repo: &mut R,
    m: &Incoming<'_>,
    other: TicketId,
) -> Result<bool, StoreError> {
    let Some(customer) = repo.ticket_customer(other)? else {
        return Ok(false);
    };
    Ok(customer == m.sender
        || m.to.iter().chain(m.cc).any(|p| p.address == customer)
        || repo.is_brand(&customer)?)
}

#[cfg(test)]
mod tests;

//! Filing one inbound message, inside the writer's batch transaction: deduplicate, route by
//! what classification made of it (own mail, forwarding confirmation, bounce, auto-reply),
//! choose its customer, find its ticket ([`ThreadResolver`]), store it, and merge tickets
//! that turn out to be one conversation. Messages are filed one at a time in arrival order
//! even when many sessions deliver at once, each seeing what the ones before it wrote.

use super::bounce_filing::mark_bounced;
use super::duplicates::{dedup, DedupDecision};
use super::thread_resolver::{Incoming, ThreadResolver, ThreadingConfig};
use crate::domain::{normalize_subject, Direction, Mailbox, MessageKind, ThreadReason, TicketId};
use crate::store::{
    now_ms, Filing, IntakeOutcome, IntakeWrites, MessageFiler, NewMessage, NewQuarantine,
    NewTicket, QuarantineStatus, StoreError, ThreadingFacts, ThreadingRepository, TicketUpdate,
};

/// The writer's [`MessageFiler`]: ingest's decisions over the store's repository.
pub struct MessageFiling {
    resolver: ThreadResolver,
}

impl MessageFiling {
    pub fn new(config: ThreadingConfig) -> Self {
        Self {
            resolver: ThreadResolver::new(config),
        }
    }
}

impl From<ThreadingConfig> for Box<dyn MessageFiler> {
    fn from(config: ThreadingConfig) -> Self {
        Box::new(MessageFiling::new(config))
    }
}

impl MessageFiler for MessageFiling {
    fn file(
        &self,
        repo: &mut dyn ThreadingRepository,
        m: &NewMessage,
    ) -> Result<IntakeOutcome, StoreError> {
        file_message(&self.resolver, repo, m)
    }
}

fn domain_of(addr: &str) -> &str {
    addr.rsplit_once('@').map_or("", |(_, d)| d)
}

/// Keeps the message whole in quarantine with its reason.
fn quarantine<R: IntakeWrites + ?Sized>(
    repo: &mut R,
    m: &NewMessage,
    reason: &str,
    detail: String,
    status: QuarantineStatus,
) -> Result<IntakeOutcome, StoreError> {
    let q = NewQuarantine {
        account_id: Some(m.account_id),
        reason: reason.to_string(),
        detail: Some(detail),
        raw: m.raw.clone(),
        raw_sha256: m.raw_sha256.clone(),
        envelope_json: Some(m.envelope_json.clone()),
        source: m.source,
        source_position: None,
        received_at: m.received_at,
    };
    repo.quarantine(&q, status)
}

/// The customer of a message the brand sent: its first recipient that is neither the brand
/// nor one of our forwarding addresses.
fn first_customer_recipient<R: ThreadingFacts + ?Sized>(
    repo: &mut R,
    inbound_domain: &str,
    m: &NewMessage,
) -> Result<Option<Mailbox>, StoreError> {
    for p in m.to.iter().chain(m.cc.iter()) {
        if !domain_of(&p.address).eq_ignore_ascii_case(inbound_domain)
            && !repo.is_brand(&p.address)?
        {
            return Ok(Some(p.clone()));
        }
    }
    Ok(None)
}

/// A delivery report joins the ticket of the message of ours it reports on (and marks its
/// failed recipients); one about anything else is held in quarantine.
fn file_bounce<R: ThreadingRepository + ?Sized>(
    repo: &mut R,
    m: &NewMessage,
    dedup_key: &str,
    original_message_id: Option<&str>,
    report: &serde_json::Value,
) -> Result<IntakeOutcome, StoreError> {
    let ticket = match original_message_id {
        Some(id) => repo.ticket_of_message_id(id, Some(Direction::Outbound))?,
        None => None,
    };
    let Some(ticket) = ticket else {
        return quarantine(
            repo,
            m,
            "bounce",
            format!("delivery report not about a message of ours: {report}"),
            QuarantineStatus::Held,
        );
    };
    repo.add_ticket_event(ticket, "bounce", report)?;
    if let Some(id) = original_message_id {
        mark_bounced(repo, id, report)?;
    }
    let message = repo.insert_message(
        m,
        &Filing {
            ticket,
            dedup_key,
            direction: Direction::Inbound,
            classification: "bounce",
            reason: ThreadReason::BounceOfOurMessage,
            flags: &["bounce".to_string()],
        },
    )?;
    Ok(IntakeOutcome::Stored { message, ticket })
}

pub fn file_message<R: ThreadingRepository + ?Sized>(
    resolver: &ThreadResolver,
    repo: &mut R,
    m: &NewMessage,
) -> Result<IntakeOutcome, StoreError> {
    let dedup_key = match dedup(repo, m)? {
        DedupDecision::Duplicate(stored) => {
            return Ok(IntakeOutcome::Duplicate {
                message: stored.message,
                ticket: stored.ticket,
            })
        }
        DedupDecision::Store { dedup_key } => dedup_key,
    };
    let mut classification = "normal";
    let mut flags: Vec<String> = Vec::new();
    match &m.kind {
        MessageKind::OwnMail { reason } => {
            tracing::warn!(%reason, "our own mail came back: dropped, no ticket");
            return quarantine(
                repo,
                m,
                "own_mail_loop",
                reason.clone(),
                QuarantineStatus::Discarded,
            );
        }
        MessageKind::ForwardingConfirmation {
            provider,
            code,
            url,
        } => {
            if let Some(support) = m.support_address_id {
                repo.record_forwarding_confirmation(support, code.as_deref(), url.as_deref())?;
            }
            tracing::info!(%provider, "forwarding confirmation received");
            return quarantine(
                repo,
                m,
                "forwarding_confirmation",
                format!("{provider} forwarding confirmation"),
                QuarantineStatus::Discarded,
            );
        }
        MessageKind::Bounce {
            original_message_id,
            report,
        } => {
            return file_bounce(repo, m, &dedup_key, original_message_id.as_deref(), report);
        }
        MessageKind::AutoGenerated { reason } => {
            classification = "auto_generated";
            flags.push(format!("auto_generated: {reason}"));
        }
        MessageKind::Normal => {}
    }
    let sender = m.from.address.as_str();
    let importing = m.import_job.is_some();
    let sender_is_brand = repo.is_brand(sender)?;
    // Historic mail the brand sent is an agent's reply; its customer is whom it went to.
    let outbound = importing && sender_is_brand;
    // Forwarded by hand by the brand or an agent: the customer is the original sender.
    let customer = match &m.forwarded_from {
        Some(original) if original.address != sender && sender_is_brand => original.clone(),
        _ if outbound => first_customer_recipient(repo, &resolver.config().inbound_domain, m)?
            .unwrap_or_else(|| m.from.clone()),
        _ => m.from.clone(),
    };
    let placement = resolver.place(
        repo,
        &Incoming {
            message_id: m.message_id.as_deref(),
            in_reply_to: m.in_reply_to.as_deref(),
            references: &m.references,
            sender,
            customer: &customer.address,
            to: &m.to,
            cc: &m.cc,
            subject: &m.subject,
            received_at: m.received_at,
            dmarc_pass_domain: m.dmarc_pass_domain.as_deref(),
            spoof_suspected: m.spoof_suspected,
            importing,
        },
    )?;
    let ticket = match placement.ticket {
        Some(t) => {
            let update = if importing {
                // History never reopens a ticket; it only extends its span.
                TicketUpdate::History {
                    at: m.received_at,
                    by_brand: outbound,
                }
            } else {
                // A person writing again reopens the ticket (a snoozed one too, ending its
                // snooze); an auto-reply does not.
                TicketUpdate::Live {
                    at: m.received_at,
                    reopen: classification == "normal",
                }
            };
            repo.update_ticket(t, update)?;
            t
        }
        None => {
            let customer_row = repo.customer(&customer, now_ms())?;
            let subject = if m.subject.trim().is_empty() {
                "(no subject)"
            } else {
                m.subject.as_str()
            };
            let ticket_flags: Vec<&str> = placement.flag.into_iter().collect();
            repo.create_ticket(&NewTicket {
                subject,
                normalized_subject: &normalize_subject(&m.subject),
                customer: customer_row,
                support_address: m.support_address_id,
                flags: &ticket_flags,
                at: m.received_at,
                by_brand: outbound,
                import_job: m.import_job,
            })?
        }
    };
    if let Some(flag) = placement.flag {
        flags.push(flag.to_string());
    }
    repo.add_participant(ticket, &customer.address, "customer")?;
    if customer.address != sender {
        let role = if sender_is_brand { "brand" } else { "cc" };
        repo.add_participant(ticket, sender, role)?;
    }
    // Chosen and capped by ingest (sender first, our forwarding addresses left out).
    for p in &m.participants {
        repo.add_participant(ticket, &p.address, "cc")?;
    }
    let message = repo.insert_message(
        m,
        &Filing {
            ticket,
            dedup_key: &dedup_key,
            direction: if outbound {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            classification,
            reason: placement.reason,
            flags: &flags,
        },
    )?;
    let winner = merge_orphans(repo, ticket, &placement.orphans)?;
    if let Some(support) = m.support_address_id.filter(|_| !importing) {
        repo.activate_support_address(support)?;
    }
    Ok(IntakeOutcome::Stored {
        message,
        ticket: winner,
    })
}

/// Merges the tickets of replies that came before their parent into one, the oldest
/// ticket winning; returns it.
fn merge_orphans<R: ThreadingFacts + IntakeWrites + ?Sized>(
    repo: &mut R,
    ticket: TicketId,
    orphans: &[TicketId],
) -> Result<TicketId, StoreError> {
    let mut winner = ticket;
    for &other in orphans {
        let Some(other) = repo.live_ticket(other)? else {
            continue;
        };
        if other == winner {
            continue;
        }
        let (keep, drop) = if other < winner {
            (other, winner)
        } else {
            (winner, other)
        };
        repo.merge_tickets(keep, drop, "parent arrived after its replies")?;
        winner = keep;
    }
    Ok(winner)
}

#[cfg(test)]
mod tests {
    //! Filing as a table: `testdata/filing.json` holds a store's facts and one message
    //! (its kind, sender, recipients, import job...), each with the outcome and every write
    //! filing makes, in order: the customer it chooses, how a ticket is opened or updated
    //! (closed history, the brand's mail as outbound), participants, merges, bounces.

    use super::*;
    use crate::ingest::decision_table::{self, TableMessage};
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Expected {
        outcome: String,
        writes: Vec<String>,
    }

    #[test]
    fn filing_decides_every_case_of_the_table() {
        let resolver = ThreadResolver::new(ThreadingConfig {
            secret: b"filing-table-secret".to_vec(),
            inbound_domain: "in.postern.test".into(),
            subject_window_ms: 1_000,
        });
        let table = include_str!("testdata/filing.json");
        decision_table::check(table, 12, |store, m: TableMessage| {
            let outcome = file_message(&resolver, store, &m.into_new_message())?;
            Ok(Expected {
                outcome: match outcome {
                    IntakeOutcome::Stored { message, ticket } => {
                        format!("stored {message} in {ticket}")
                    }
                    IntakeOutcome::Duplicate { message, ticket } => {
                        format!("duplicate of {message} in {ticket}")
                    }
                    IntakeOutcome::Quarantined { id } => format!("quarantined {id}"),
                    IntakeOutcome::Checkpointed => "checkpointed".into(),
                },
                writes: std::mem::take(&mut store.writes),
            })
        });
    }
}

//! `postern tickets list` and `postern ticket show`.

use super::output::{print_list, print_one, JsonFlag};
use super::queue::print_delivery;
use super::{open_store, scope};
use crate::config::Settings;
use crate::domain::StoredAuthResults;
use crate::domain::{AccountId, TicketId};
use anyhow::Result;
use clap::Subcommand;
use serde::Deserialize;

#[derive(Subcommand)]
pub enum TicketsCommand {
    /// Tickets of an account, most recently updated first.
    List {
        #[arg(long)]
        account: AccountId,
        /// Show at most N tickets (all by default).
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand)]
pub enum TicketCommand {
    /// A ticket with its messages.
    Show {
        id: TicketId,
        /// Only if the ticket belongs to this account.
        #[arg(long)]
        account: Option<AccountId>,
        #[command(flatten)]
        out: JsonFlag,
    },
}

pub(super) async fn list(cmd: TicketsCommand, settings: &Settings) -> Result<()> {
    let TicketsCommand::List {
        account,
        limit,
        out,
    } = cmd;
    let store = open_store(settings).await?;
    let tickets = store.tickets(account, limit).await?;
    print_list(&out, &tickets, "no tickets", |t| {
        outln!(
            "#{:<6} {:<8} {:<30} {} ({} messages)",
            t.id,
            t.status,
            t.customer.as_deref().unwrap_or_default(),
            t.subject,
            t.message_count
        );
    })
}

pub(super) async fn show(cmd: TicketCommand, settings: &Settings) -> Result<()> {
    let TicketCommand::Show { id, account, out } = cmd;
    let store = open_store(settings).await?;
    let t = store.ticket(id, scope(account)).await?;
    print_one(&out, &t, |t| {
        outln!(
            "Ticket #{} [{}] {}",
            t.ticket.id,
            t.ticket.status,
            t.ticket.subject
        );
        outln!(
            "Customer: {}",
            t.ticket.customer.clone().unwrap_or_default()
        );
        for m in &t.messages {
            outln!();
            outln!(
                "--- message {} ({}, {}, thread: {}) ---",
                m.id,
                m.direction,
                m.classification,
                m.thread_reason
            );
            outln!("From: {}", m.from.clone().unwrap_or_default());
            if !m.flags.is_empty() {
                outln!("Flags: {}", m.flags.join(", "));
            }
            if let Some(a) = m
                .auth_results
                .as_ref()
                .and_then(|a| StoredAuthResults::deserialize(a).ok())
            {
                outln!("{}", auth_line(&a));
            }
            outln!("Subject: {}", m.subject);
            if let Some(d) = m.date {
                outln!("Date: {}", d.to_rfc2822());
            }
            for a in &m.attachments {
                outln!(
                    "Attachment: {} ({}, {} bytes)",
                    a.filename.clone().unwrap_or_else(|| "(unnamed)".into()),
                    a.content_type,
                    a.size
                );
            }
            outln!();
            outln!("{}", m.text.clone().unwrap_or_default().trim_end());
        }
        if !t.deliveries.is_empty() {
            outln!();
            outln!("--- deliveries ---");
            for d in &t.deliveries {
                print_delivery(d);
            }
        }
    })?;
    Ok(())
}

/// One line of what sender authentication found, e.g.
/// `Auth: dmarc=pass (p=reject, From brand.com) spf=fail dkim=[pass (brand.com)] arc=none iprev=pass; authenticated: brand.com`.
fn auth_line(a: &StoredAuthResults) -> String {
    let v = &a.verdicts;
    let dkim: Vec<String> = v
        .dkim
        .iter()
        .map(|d| {
            format!(
                "{}{}",
                d.result,
                d.domain
                    .as_deref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    format!(
        "Auth: dmarc={} (p={}, From {}) spf={} dkim=[{}] arc={} iprev={}{}",
        v.dmarc.result,
        v.dmarc.policy,
        v.dmarc.from_domain,
        v.spf_mail_from.result,
        dkim.join(", "),
        v.arc.result,
        v.iprev.result,
        match &a.policy.authenticated_domain {
            Some(d) => format!("; authenticated: {d}"),
            None => String::new(),
        }
    )
}

#[cfg(test)]
mod tests {
    use super::auth_line;
    use crate::domain::StoredAuthResults;

    #[test]
    fn auth_line_sums_up_the_stored_verdicts() {
        let stored = r#"{"verdicts":{"iprev":{"result":"pass"},"spf_helo":{"result":"none"},"spf_mail_from":{"result":"fail","domain":"fwd.example"},"dkim":[{"result":"pass","domain":"brand.com","selector":"s1"},{"result":"fail"}],"arc":{"result":"none","sealers":[],"hop_dmarc":[]},"dmarc":{"result":"pass","from_domain":"brand.com","policy":"reject","spf_aligned":false,"dkim_aligned":true},"header":"mx.test; dmarc=pass"},"policy":{"authenticated_domain":"brand.com","via_trusted_arc":null,"spoof_suspected":false,"reject":null}}"#;
        let a = StoredAuthResults::parse(stored).expect("a stored document");
        assert_eq!(
            auth_line(&a),
            "Auth: dmarc=pass (p=reject, From brand.com) spf=fail dkim=[pass (brand.com), fail] arc=none iprev=pass; authenticated: brand.com"
        );
    }
}

//! `postern tickets list` and `postern ticket show`.

use super::open_store;
use super::output::{print_json, JsonFlag};
use super::queue::print_delivery;
use crate::config::Settings;
use crate::domain::{AccountId, TicketId};
use anyhow::Result;
use clap::Subcommand;

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
    if out.json {
        print_json(&tickets)?;
    } else if tickets.is_empty() {
        println!("no tickets");
    } else {
        for t in tickets {
            println!(
                "#{:<6} {:<8} {:<30} {} ({} messages)",
                t.id,
                t.status,
                t.customer.unwrap_or_default(),
                t.subject,
                t.message_count
            );
        }
    }
    Ok(())
}

pub(super) async fn show(cmd: TicketCommand, settings: &Settings) -> Result<()> {
    let TicketCommand::Show { id, account, out } = cmd;
    let store = open_store(settings).await?;
    let t = store.ticket(id, account).await?;
    if out.json {
        print_json(&t)?;
    } else {
        println!(
            "Ticket #{} [{}] {}",
            t.ticket.id, t.ticket.status, t.ticket.subject
        );
        println!(
            "Customer: {}",
            t.ticket.customer.clone().unwrap_or_default()
        );
        for m in &t.messages {
            println!();
            println!(
                "--- message {} ({}, {}, thread: {}) ---",
                m.id, m.direction, m.classification, m.thread_reason
            );
            println!("From: {}", m.from.clone().unwrap_or_default());
            if !m.flags.is_empty() {
                println!("Flags: {}", m.flags.join(", "));
            }
            if let Some(a) = &m.auth_results {
                let v = &a["verdicts"];
                let dkim: Vec<String> = v["dkim"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .map(|d| {
                                format!(
                                    "{}{}",
                                    d["result"].as_str().unwrap_or("?"),
                                    d["domain"]
                                        .as_str()
                                        .map(|x| format!(" ({x})"))
                                        .unwrap_or_default()
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "Auth: dmarc={} (p={}, From {}) spf={} dkim=[{}] arc={} iprev={}{}",
                    v["dmarc"]["result"].as_str().unwrap_or("?"),
                    v["dmarc"]["policy"].as_str().unwrap_or("?"),
                    v["dmarc"]["from_domain"].as_str().unwrap_or("?"),
                    v["spf_mail_from"]["result"].as_str().unwrap_or("?"),
                    dkim.join(", "),
                    v["arc"]["result"].as_str().unwrap_or("?"),
                    v["iprev"]["result"].as_str().unwrap_or("?"),
                    match a["policy"]["authenticated_domain"].as_str() {
                        Some(d) => format!("; authenticated: {d}"),
                        None => String::new(),
                    }
                );
            }
            println!("Subject: {}", m.subject);
            if let Some(d) = m.date {
                println!("Date: {}", d.to_rfc2822());
            }
            for a in &m.attachments {
                println!(
                    "Attachment: {} ({}, {} bytes)",
                    a.filename.clone().unwrap_or_else(|| "(unnamed)".into()),
                    a.content_type,
                    a.size
                );
            }
            println!();
            println!("{}", m.text.clone().unwrap_or_default().trim_end());
        }
        if !t.deliveries.is_empty() {
            println!();
            println!("--- deliveries ---");
            for d in &t.deliveries {
                print_delivery(d);
            }
        }
    }
    Ok(())
}

//! `postern reply`: a reply to the customer of a ticket, queued for `postern serve`.

use super::context::read_stdin;
use super::open_store;
use super::output::{print_one, JsonFlag};
use super::text_file::{read_any_text, read_bytes};
use crate::config::Settings;
use crate::domain::{AccountId, Scope, TicketId};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReplyArgs {
    #[arg(long)]
    ticket: TicketId,
    /// File with the plain-text reply ("-" for standard input).
    #[arg(long, value_name = "FILE")]
    body_file: PathBuf,
    /// Only if the ticket belongs to this account.
    #[arg(long)]
    account: Option<AccountId>,
    /// File with an HTML alternative.
    #[arg(long, value_name = "FILE")]
    html_file: Option<PathBuf>,
    /// Copy to this address too (repeat for several).
    #[arg(long, value_name = "ADDR")]
    cc: Vec<String>,
    /// Attach this file (repeat for several); its type is guessed from its name.
    #[arg(long, value_name = "FILE")]
    attach: Vec<PathBuf>,
    /// Quote the customer's last message under the reply.
    #[arg(long)]
    quote: bool,
    #[command(flatten)]
    out: JsonFlag,
}

impl ReplyArgs {
    /// Whether the body comes from standard input (`--body-file -`): a client of the admin
    /// socket sends it along with the command.
    pub(super) fn body_from_stdin(&self) -> bool {
        reads_stdin(&self.body_file)
    }
}

fn reads_stdin(body_file: &std::path::Path) -> bool {
    body_file.as_os_str() == "-"
}

pub(super) async fn run(args: ReplyArgs, settings: &Settings) -> Result<()> {
    let ReplyArgs {
        ticket,
        body_file,
        account,
        html_file,
        cc,
        attach,
        quote,
        out,
    } = args;
    let text = if reads_stdin(&body_file) {
        read_stdin()?
    } else {
        read_any_text(&body_file)?
    };
    let html = html_file.map(|f| read_any_text(&f)).transpose()?;
    let mut attachments = Vec::new();
    for f in attach {
        let data = read_bytes(&f)?;
        let filename = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".into());
        attachments.push(crate::outbound::DraftAttachment {
            content_type: crate::outbound::content_type_of(&filename).to_string(),
            filename,
            data,
        });
    }
    let store = open_store(settings).await?;
    let account = match account {
        Some(a) => a,
        None => AccountId(
            store
                .ticket(ticket, Scope::Operator)
                .await?
                .ticket
                .account_id,
        ),
    };
    let outbound = crate::app::outbound_queue(settings, &store).await?;
    let draft = crate::outbound::ReplyDraft {
        text,
        html,
        attachments,
        cc,
        quote,
        ..Default::default()
    };
    let q = outbound
        .enqueue_reply(account, ticket, draft, false)
        .await?;
    print_one(&out, &q, |q| {
        outln!(
            "reply {} queued in ticket {} ({}): {}",
            q.message,
            q.ticket_id,
            q.subject,
            q.deliveries
                .iter()
                .map(|d| format!("{} [queue {}]", d.recipient, d.id))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !settings.outbound.enabled {
            errln!("postern: note: outbound.enabled is false; `postern serve` will not deliver it");
        }
    })?;
    Ok(())
}

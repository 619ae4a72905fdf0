//! `postern queue`: the outbound queue, one entry per recipient of each reply.

use super::output::{print_list, print_one, JsonFlag};
use super::{open_store, scope};
use crate::config::Settings;
use crate::domain::AccountId;
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Queue entries, newest first: queued, deferred (with the last error), delivered, bounced.
    List {
        #[arg(long)]
        account: Option<AccountId>,
        /// Show at most N entries (default 100).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Try a deferred or bounced entry again now (with a fresh lifetime).
    Retry {
        id: i64,
        #[arg(long)]
        account: Option<AccountId>,
        #[command(flatten)]
        out: JsonFlag,
    },
}

pub(super) fn print_delivery(d: &crate::store::DeliveryView) {
    let when = match d.status.as_str() {
        "delivered" => d
            .delivered_at
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| format!(" at {}", t.to_rfc3339()))
            .unwrap_or_default(),
        "queued" | "deferred" => d
            .next_attempt_at
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| format!(", next attempt {}", t.to_rfc3339()))
            .unwrap_or_default(),
        _ => String::new(),
    };
    outln!(
        "queue {:<6} ticket {:<6} message {:<6} {:<32} {:<9} attempts {}{}{}",
        d.id,
        d.ticket_id,
        d.message_id,
        d.recipient,
        d.status,
        d.attempts,
        when,
        d.last_error
            .as_deref()
            .map(|e| format!("  last error: {e}"))
            .unwrap_or_default()
    );
}

pub(super) async fn run(cmd: QueueCommand, settings: &Settings) -> Result<()> {
    let store = open_store(settings).await?;
    match cmd {
        QueueCommand::List {
            account,
            limit,
            out,
        } => {
            let entries = store.queue_entries(scope(account), limit).await?;
            print_list(&out, &entries, "the queue is empty", print_delivery)?;
        }
        QueueCommand::Retry { id, account, out } => {
            let lifetime =
                i64::try_from(settings.outbound.lifetime.as_millis()).unwrap_or(i64::MAX / 2);
            let d = store.retry_delivery(id, scope(account), lifetime).await?;
            print_one(&out, &d, |d| {
                outln!(
                    "queue entry {} to {} will be tried again now",
                    d.id,
                    d.recipient
                );
            })?;
        }
    }
    Ok(())
}

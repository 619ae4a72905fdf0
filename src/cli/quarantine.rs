//! `postern quarantine`: accepted mail that could not become a ticket.

use super::output::{print_one, JsonFlag};
use super::{open_store, scope};
use crate::config::Settings;
use crate::domain::AccountId;
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// Quarantined messages, newest first.
    List {
        #[arg(long)]
        account: Option<AccountId>,
        #[command(flatten)]
        out: JsonFlag,
    },
}

pub(super) async fn run(cmd: QuarantineCommand, settings: &Settings) -> Result<()> {
    let QuarantineCommand::List { account, out } = cmd;
    let store = open_store(settings).await?;
    let items = store.quarantine(scope(account)).await?;
    print_one(&out, &items, |items| {
        for q in items {
            outln!(
                "q{} account={} {} ({} bytes) {}",
                q.id,
                q.account_id.map_or("-".into(), |a| a.to_string()),
                q.reason,
                q.size,
                q.detail.as_deref().unwrap_or_default()
            );
        }
    })?;
    Ok(())
}

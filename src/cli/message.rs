//! `postern message raw`: download a stored message.

use super::open_store;
use crate::config::Settings;
use crate::domain::AccountId;
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum MessageCommand {
    /// The message as stored, with Postern's Authentication-Results header on top
    /// (--original: the bytes exactly as received).
    Raw {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[arg(long)]
        original: bool,
    },
}

pub(super) async fn run(cmd: MessageCommand, settings: &Settings) -> Result<()> {
    let MessageCommand::Raw {
        id,
        account,
        original,
    } = cmd;
    let store = open_store(settings).await?;
    let bytes = if original {
        store.raw_message(id, account).await?
    } else {
        store.raw_message_for_download(id, account).await?
    };
    super::context::write_out(&bytes)?;
    Ok(())
}

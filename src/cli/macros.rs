//! `postern macros`: reply templates for rules and agents.

use super::open_store;
use super::output::{print_deleted, print_list, print_one, JsonFlag};
use super::text_file::read_text;
use crate::config::Settings;
use crate::domain::AccountId;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum MacrosCommand {
    /// Add a macro; a template that does not compile is refused with its line and column.
    Add {
        #[arg(long)]
        account: AccountId,
        #[arg(long)]
        name: String,
        /// The body template (a text file).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Subject template (default: "Re: " and the ticket's subject).
        #[arg(long)]
        subject: Option<String>,
        /// What missing variables render as (default: nothing).
        #[arg(long, value_name = "TEXT")]
        fallback: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    List {
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    Show {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    Delete {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Render a macro on a ticket without sending anything.
    Preview {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[arg(long)]
        ticket: i64,
        #[command(flatten)]
        out: JsonFlag,
    },
}

pub(super) async fn run(cmd: MacrosCommand, settings: &Settings) -> Result<()> {
    use crate::rules;
    let store = open_store(settings).await?;
    let show = |m: &crate::store::MacroRecord| {
        outln!("{:<5} {}", m.id, m.name);
    };
    match cmd {
        MacrosCommand::Add {
            account,
            name,
            file,
            subject,
            fallback,
            out,
        } => {
            let body = read_text(&file)?;
            let m = rules::save_macro(
                &store,
                account,
                &name,
                subject.as_deref(),
                &body,
                fallback.as_deref(),
            )
            .await?;
            print_one(&out, &m, |m| {
                outln!("macro {} added: {}", m.id, m.name);
            })?;
        }
        MacrosCommand::List { account, out } => {
            print_list(&out, &store.macros(account).await?, "no macros", show)?;
        }
        MacrosCommand::Show { id, account, out } => {
            let m = store.macro_record(id, account).await?;
            print_one(&out, &m, |m| {
                show(m);
                if let Some(s) = &m.subject {
                    outln!("Subject: {s}");
                }
                outln!("{}", m.body);
            })?;
        }
        MacrosCommand::Delete { id, account, out } => {
            store.delete_macro(id, account).await?;
            print_deleted(&out, "macro", id)?;
        }
        MacrosCommand::Preview {
            id,
            account,
            ticket,
            out,
        } => {
            let rendered = rules::preview_macro(&store, account, id, ticket).await?;
            print_one(&out, &rendered, |rendered| {
                outln!("Subject: {}", rendered.subject);
                outln!();
                outln!("{}", rendered.body);
            })?;
        }
    }
    Ok(())
}

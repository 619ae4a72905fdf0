//! The `postern` command line: one module per command group, each with its clap
//! definitions beside its handler. `anyhow` lives here, at the edge, and nowhere below.

#[macro_use]
mod context;

mod account;
mod domain;
mod import;
mod macros;
mod message;
mod output;
mod quarantine;
mod queue;
mod remote;
mod reply;
mod rules;
mod serve;
mod sso;
mod text_file;
mod tickets;
mod token;
mod verify;

use crate::config::Settings;
use crate::domain::{AccountId, Scope};
use crate::store::{ServeLock, ServeLockError, Store};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub use remote::ServerCommands;

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "Email ingestion gateway for support teams"
)]
pub struct Cli {
    /// Configuration file (TOML) layered over the embedded defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the SMTP server, the HTTP server and the workers.
    Serve(serve::ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Internal: the parse probe `serve` and `import` start (reads messages on stdin).
    #[command(hide = true)]
    ParseProbe,
    /// Manage accounts (stores) and their forwarding addresses.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// List the tickets of an account.
    #[command(subcommand)]
    Tickets(tickets::TicketsCommand),
    /// Show one ticket.
    #[command(subcommand)]
    Ticket(tickets::TicketCommand),
    /// Accepted mail that could not become a ticket.
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// SAML single sign-on of an account: the IdP's metadata, the role mapping, our SP URLs.
    #[command(subcommand)]
    Sso(sso::SsoCommand),
    /// Download a stored message.
    #[command(subcommand)]
    Message(message::MessageCommand),
    /// API tokens for the HTTP API (shown once; only their hash is stored).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Rules: add, list, enable, simulate on past tickets, and their log (docs/RULES.md).
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Macros: reply templates for rules and agents.
    #[command(subcommand)]
    Macros(macros::MacrosCommand),
    /// Import past mail (mbox, Maildir, .eml folder, IMAP) into an account's tickets, with
    /// no side effect; running the same import again resumes it and imports nothing twice.
    Import(import::ImportArgs),
    /// Sending domains: DKIM keys and the DNS records replies need.
    #[command(subcommand)]
    Domain(domain::DomainCommand),
    /// Reply to the customer of a ticket (queued, DKIM-signed, delivered by `postern serve`).
    Reply(reply::ReplyArgs),
    /// The outbound queue: one entry per recipient of each reply.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Check SPF, DKIM, ARC and DMARC for a message file, as if it arrived over SMTP.
    Verify(verify::VerifyArgs),
}

/// Runs a parsed command line (every command but `parse-probe`, which `main` runs before
/// any runtime exists: see [`Command::ParseProbe`]) and says how the process exits.
///
/// A command on the database runs here while no server runs on it, holding the serve lock
/// shared so that no server starts beside it; while `postern serve` runs, it runs in the
/// server, through the admin socket (remote.rs), so that the server stays the one writer.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => serve::serve(args, settings).await?,
        Command::Migrate => serve::migrate(&settings).await?,
        Command::ParseProbe => {}
        Command::Import(args) => import::run(args, &settings).await?,
        Command::Verify(args) => verify::run(args, &settings).await?,
        command => return run_on_database(command, &settings).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// A command on the database: here, or through the server when one runs. A server that is
/// starting (locked, not listening yet) or stopping (not listening, still locked) is given a
/// few seconds: the command then goes through it, or runs here once it has stopped.
async fn run_on_database(command: Command, settings: &Settings) -> Result<ExitCode> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(_no_server) = database_lock(settings)? {
            run_command(command, settings).await?;
            return Ok(ExitCode::SUCCESS);
        }
        match remote::connect(settings).await {
            Ok(server) => return remote::send(server, &command).await,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => return Err(e),
        }
    }
}

/// The serve lock, shared, for a command on the database; `None` while a server runs.
fn database_lock(settings: &Settings) -> Result<Option<ServeLock>> {
    let database = create_data_folder(settings)?;
    match ServeLock::command(&database) {
        Ok(lock) => Ok(Some(lock)),
        Err(ServeLockError::ServerRunning { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Creates the data folder (0700) when missing, before anything takes a lock in it; returns
/// the database's path.
fn create_data_folder(settings: &Settings) -> Result<std::path::PathBuf> {
    let database = settings.database_path();
    if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::private_files::create_dir_all(parent)
            .with_context(|| format!("creating the data folder {}", parent.display()))?;
    }
    Ok(database)
}

/// A command's error as one line, as `postern` prints it after "postern: ".
pub fn error_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}

/// Runs a command on the database, here or in the server for a client of the admin socket.
async fn run_command(command: Command, settings: &Settings) -> Result<()> {
    match command {
        Command::Account(cmd) => account::run(cmd, settings).await,
        Command::Tickets(cmd) => tickets::list(cmd, settings).await,
        Command::Ticket(cmd) => tickets::show(cmd, settings).await,
        Command::Quarantine(cmd) => quarantine::run(cmd, settings).await,
        Command::Sso(cmd) => sso::run(cmd, settings).await,
        Command::Message(cmd) => message::run(cmd, settings).await,
        Command::Token(cmd) => token::run(cmd, settings).await,
        Command::Rules(cmd) => rules::run(cmd, settings).await,
        Command::Macros(cmd) => macros::run(cmd, settings).await,
        Command::Domain(cmd) => domain::run(cmd, settings).await,
        Command::Reply(args) => reply::run(args, settings).await,
        Command::Queue(cmd) => queue::run(cmd, settings).await,
        // serve, migrate, parse-probe, import, verify: `run` runs them itself.
        other => anyhow::bail!(
            "{}",
            remote::runs_only_here(&other).unwrap_or("this command runs on its own")
        ),
    }
}

/// The store for a CLI command: the server's own when the command runs in the server.
/// Else it creates the data folder and the database private (0700, 0600) when they are
/// missing; making an existing folder private is left to `postern serve`, which says so in
/// its log (a command's stderr is its one-line error).
async fn open_store(settings: &Settings) -> Result<Store> {
    if let Some(store) = context::server_store() {
        return Ok(store);
    }
    Store::open_with(
        &settings.database_path(),
        crate::app::store_options(settings, None),
    )
    .await
    .with_context(|| format!("opening {}", settings.database_path().display()))
}

/// `--account` narrows a command to one account; without it the operator on this machine
/// sees every account (the only place `Scope::Operator` comes from).
fn scope(account: Option<AccountId>) -> Scope {
    account.map_or(Scope::Operator, Scope::Account)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        // clap's own check: every conflicts_with / required_unless names an argument, no
        // two arguments share a flag, ...
        Cli::command().debug_assert();
    }

    #[test]
    fn operator_scope_only_without_account() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Quarantine(quarantine::QuarantineCommand::List { account, .. })) => {
                Some(scope(account))
            }
            _ => None,
        };
        assert_eq!(
            parse(&["postern", "quarantine", "list"]),
            Some(Scope::Operator)
        );
        assert_eq!(
            parse(&["postern", "quarantine", "list", "--account", "4"]),
            Some(Scope::Account(AccountId(4)))
        );
        assert_eq!(
            parse(&["postern", "quarantine", "list", "--account", "x"]),
            None
        );
    }
}

//! The `postern` command line.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use postern::app::Application;
use postern::config::{LogFormat, Settings};
use postern::domain::{AccountId, EmailAddress, TicketId};
use postern::store::Store;
use serde::Serialize;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "Email ingestion gateway for support teams"
)]
struct Cli {
    /// Configuration file (TOML) layered over the embedded defaults.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SMTP server, the HTTP server and the workers.
    Serve {
        /// Log JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts (stores) and their forwarding addresses.
    #[command(subcommand)]
    Account(AccountCommand),
    /// List the tickets of an account.
    #[command(subcommand)]
    Tickets(TicketsCommand),
    /// Show one ticket.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Accepted mail that could not become a ticket.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
}

#[derive(Args)]
struct JsonFlag {
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account with a forwarding address for each support address.
    Create {
        #[arg(long)]
        name: String,
        /// A support mailbox of the store (repeat for several).
        #[arg(long = "support-address", required = true, value_name = "ADDR")]
        support_addresses: Vec<String>,
        /// Default sending address (defaults to the first support address).
        #[arg(long, value_name = "ADDR")]
        from: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List every account.
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show one account with its support and forwarding addresses.
    Show {
        id: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand)]
enum TicketsCommand {
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
enum TicketCommand {
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

#[derive(Subcommand)]
enum QuarantineCommand {
    /// Quarantined messages, newest first.
    List {
        #[arg(long)]
        account: Option<AccountId>,
        #[command(flatten)]
        out: JsonFlag,
    },
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("postern: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("postern: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn parse_address(s: &str, what: &str) -> Result<EmailAddress> {
    EmailAddress::parse(s).with_context(|| format!("{what} {s:?} is not a valid address"))
}

async fn open_store(settings: &Settings) -> Result<Store> {
    Store::open(&settings.database_path(), settings.store.read_connections)
        .await
        .with_context(|| format!("opening {}", settings.database_path().display()))
}

async fn run(cli: Cli) -> Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { log_json } => {
            let format = if log_json {
                LogFormat::Json
            } else {
                settings.log.format
            };
            postern::telemetry::init(format, &settings.log.level);
            let app = Application::build(settings).await?;
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutdown requested");
                signal.cancel();
            });
            app.run(shutdown).await?;
        }
        Command::Migrate => {
            open_store(&settings).await?;
            println!(
                "database {} is up to date",
                settings.database_path().display()
            );
        }
        Command::Account(cmd) => account(cmd, &settings).await?,
        Command::Tickets(TicketsCommand::List {
            account,
            limit,
            out,
        }) => {
            let store = open_store(&settings).await?;
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
        }
        Command::Ticket(TicketCommand::Show { id, account, out }) => {
            let store = open_store(&settings).await?;
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
            }
        }
        Command::Quarantine(QuarantineCommand::List { account, out }) => {
            let store = open_store(&settings).await?;
            let items = store.quarantine(account).await?;
            if out.json {
                print_json(&items)?;
            } else {
                for q in items {
                    println!(
                        "q{} account={} {} ({} bytes) {}",
                        q.id,
                        q.account_id.map_or("-".into(), |a| a.to_string()),
                        q.reason,
                        q.size,
                        q.detail.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

async fn account(cmd: AccountCommand, settings: &Settings) -> Result<()> {
    let store = open_store(settings).await?;
    match cmd {
        AccountCommand::Create {
            name,
            support_addresses,
            from,
            out,
        } => {
            let addrs = support_addresses
                .iter()
                .map(|s| parse_address(s, "support address"))
                .collect::<Result<Vec<_>>>()?;
            let from = from.map(|f| parse_address(&f, "--from")).transpose()?;
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let account = store
                .create_account(&name, &addrs, from.as_ref(), &settings.inbound.domain)
                .await?;
            if out.json {
                #[derive(Serialize)]
                struct Created<'a> {
                    forwarding_address: &'a str,
                    #[serde(flatten)]
                    account: &'a postern::store::AccountView,
                }
                let first = account
                    .support_addresses
                    .first()
                    .map(|s| s.forwarding_address.as_str())
                    .unwrap_or_default();
                print_json(&Created {
                    forwarding_address: first,
                    account: &account,
                })?;
            } else {
                println!("Account {} created: {}", account.id, account.name);
                print_addresses(&account);
            }
        }
        AccountCommand::List { out } => {
            let accounts = store.accounts().await?;
            if out.json {
                print_json(&accounts)?;
            } else {
                for a in accounts {
                    println!("{:<6} {:<30} from {}", a.id, a.name, a.from_address);
                }
            }
        }
        AccountCommand::Show { id, out } => {
            let account = store.account(id).await?;
            if out.json {
                print_json(&account)?;
            } else {
                println!("Account {}: {}", account.id, account.name);
                println!("Sends from: {}", account.from_address);
                print_addresses(&account);
            }
        }
    }
    Ok(())
}

fn print_addresses(account: &postern::store::AccountView) {
    for s in &account.support_addresses {
        println!(
            "  {} -> forward to {} ({})",
            s.address, s.forwarding_address, s.status
        );
        if let Some(code) = &s.confirmation_code {
            println!("    forwarding confirmation code: {code}");
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

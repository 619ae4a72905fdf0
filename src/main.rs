//! The `postern` command line.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use postern::app::Application;
use postern::config::{LogFormat, Settings};
use postern::domain::{AccountId, EmailAddress, Role, TicketId};
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
    /// Internal: the parse probe `serve` and `import` start (reads messages on stdin).
    #[command(hide = true)]
    ParseProbe,
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
    /// SAML single sign-on of an account: the IdP's metadata, the role mapping, our SP URLs.
    #[command(subcommand)]
    Sso(SsoCommand),
    /// Download a stored message.
    #[command(subcommand)]
    Message(MessageCommand),
    /// API tokens for the HTTP API (shown once; only their hash is stored).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Rules: add, list, enable, simulate on past tickets, and their log (docs/RULES.md).
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Macros: reply templates for rules and agents.
    #[command(subcommand)]
    Macros(MacrosCommand),
    /// Import past mail (mbox, Maildir, .eml folder, IMAP) into an account's tickets, with
    /// no side effect; running the same import again resumes it and imports nothing twice.
    Import(ImportArgs),
    /// Sending domains: DKIM keys and the DNS records replies need.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Reply to the customer of a ticket (queued, DKIM-signed, delivered by `postern serve`).
    Reply {
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
    },
    /// The outbound queue: one entry per recipient of each reply.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Check SPF, DKIM, ARC and DMARC for a message file, as if it arrived over SMTP.
    Verify {
        /// The message (.eml) exactly as received.
        file: PathBuf,
        /// IP address of the client that sent it.
        #[arg(long)]
        ip: std::net::IpAddr,
        /// Name the client gave in EHLO/HELO.
        #[arg(long)]
        helo: String,
        /// Envelope sender (MAIL FROM); omit for the null sender <>.
        #[arg(long = "mail-from")]
        mail_from: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand)]
enum DomainCommand {
    /// Generate the DKIM keys of a domain replies leave from, and print the records to publish.
    Add {
        #[arg(long)]
        account: AccountId,
        /// The brand's domain, e.g. brand.com.
        domain: String,
        /// DKIM selector (default: outbound.dkim_selector).
        #[arg(long)]
        selector: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Look the domain's records up and say, for each, ok, missing or wrong.
    Check {
        #[arg(long)]
        account: AccountId,
        domain: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Sending domains (of one account, or all) with the records to publish.
    List {
        #[arg(long)]
        account: Option<AccountId>,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
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

#[derive(Subcommand)]
enum RulesCommand {
    /// Add a rule from a JSON or TOML file (.toml is TOML); it starts disabled unless it says
    /// `enabled = true`.
    Add {
        #[arg(long)]
        account: AccountId,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Replace the rule with this id instead of adding one.
        #[arg(long, value_name = "ID")]
        replace: Option<i64>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// The account's rules in the order they run.
    List {
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// One rule as stored.
    Show {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Switch a rule on.
    Enable {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Switch a rule off.
    Disable {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Delete a rule (its log stays).
    Delete {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// What a rule would have done on past tickets, without changing anything.
    Simulate {
        #[arg(long)]
        account: AccountId,
        /// A rule file (JSON or TOML), not stored.
        #[arg(
            long,
            alias = "rule-file",
            value_name = "FILE",
            conflicts_with = "rule"
        )]
        file: Option<PathBuf>,
        /// A stored rule, enabled or not.
        #[arg(long, value_name = "ID", required_unless_present = "file")]
        rule: Option<i64>,
        /// How far back: 90d, 12w, 48h...
        #[arg(long, default_value = "90d")]
        since: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// The rule log: every run, what matched, what was done or skipped and why.
    Log {
        #[arg(long)]
        account: AccountId,
        #[arg(long)]
        rule: Option<i64>,
        #[arg(long)]
        ticket: Option<i64>,
        /// Only runs whose conditions matched.
        #[arg(long)]
        matched: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show or set the account's business hours (a JSON file, see docs/RULES.md).
    BusinessHours {
        #[arg(long)]
        account: AccountId,
        #[arg(long, value_name = "FILE", conflicts_with = "clear")]
        file: Option<PathBuf>,
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Run the scheduler's pass once now (what `postern serve` does every minute).
    Tick {
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand)]
enum MacrosCommand {
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

#[derive(Subcommand)]
enum SsoCommand {
    /// Set the account's identity provider from its metadata XML (and the role mapping).
    Set {
        #[arg(long)]
        account: AccountId,
        /// The IdP's SAML metadata (XML file); it must carry a signing certificate.
        #[arg(long, value_name = "FILE")]
        metadata: PathBuf,
        /// Attribute of the assertion that gives the user's role (default "role").
        #[arg(long, value_name = "NAME")]
        role_attribute: Option<String>,
        /// Values of that attribute that make an admin, comma-separated (default "admin").
        #[arg(long, value_name = "A,B", value_delimiter = ',')]
        admin_values: Option<Vec<String>>,
        /// Values that make an agent, comma-separated (default "agent").
        #[arg(long, value_name = "C,D", value_delimiter = ',')]
        agent_values: Option<Vec<String>>,
        /// With no matching value, sign the user in as an agent instead of refusing.
        #[arg(long)]
        default_agent: Option<bool>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// What to give the IdP (SP entity ID, ACS URL, metadata URL) and what is configured.
    Show {
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (once).
    Create {
        #[arg(long)]
        account: AccountId,
        /// admin (everything, including users and tokens) or agent (tickets and customers).
        #[arg(long)]
        role: Role,
        /// What the token is for.
        #[arg(long)]
        name: Option<String>,
        /// Stop working after this long, e.g. 90d or 12h. Without it the token never
        /// expires (an operator's token: revoke it with `postern token revoke`).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// The account's tokens (never their secrets): who made each, expiry, last use.
    List {
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        id: i64,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand)]
enum MessageCommand {
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

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["mbox", "maildir", "eml", "imap"])))]
struct ImportArgs {
    #[arg(long)]
    account: AccountId,
    /// An mbox file (mboxrd, mboxo, mboxcl/cl2; LF or CRLF; .mbox.gz too).
    #[arg(long, value_name = "FILE")]
    mbox: Option<PathBuf>,
    /// A Maildir or Maildir++ tree (every folder below it with cur/ or new/).
    #[arg(long, value_name = "DIR")]
    maildir: Option<PathBuf>,
    /// A folder tree of .eml files.
    #[arg(long, value_name = "DIR")]
    eml: Option<PathBuf>,
    /// An IMAP account: imaps://user@host[:port][/Folder] (imap:// for STARTTLS). The
    /// password comes from POSTERN_IMAP_PASSWORD, or is asked for on a terminal.
    #[arg(long, value_name = "URL")]
    imap: Option<String>,
    /// Maildir or IMAP folder to read (repeat for several); default: every Maildir folder,
    /// or the IMAP INBOX.
    #[arg(long = "folder", value_name = "NAME")]
    folders: Vec<String>,
    /// Oldest mail to import: an age (2y, 18m, 90d, 3w) or a date (YYYY-MM-DD).
    #[arg(long, value_name = "AGE|DATE")]
    since: Option<String>,
    /// Newest mail to import: a date (YYYY-MM-DD), included.
    #[arg(long, value_name = "DATE")]
    until: Option<String>,
    /// Leave this many of the newest imported tickets open (the others are closed).
    #[arg(long, default_value_t = 0, value_name = "N")]
    open_newest: u32,
    /// Read and count everything, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// mbox dialect, when detection is not wanted: auto (default), mboxrd, mboxo, mboxcl, mboxcl2.
    #[arg(long, value_name = "DIALECT")]
    mbox_dialect: Option<String>,
    /// Per-message size cap in bytes; larger messages are quarantined (default 50 MiB).
    #[arg(long, value_name = "BYTES")]
    max_message_size: Option<u64>,
    /// Messages per transaction.
    #[arg(long, default_value_t = 500, value_name = "N")]
    batch_size: usize,
    /// Most messages per second to read, and then to commit (0: no limit). Spares a busy
    /// server's live mail and an IMAP server that throttles heavy readers.
    #[arg(long, default_value_t = 0, value_name = "N")]
    max_rate: u32,
    /// Extra CA certificate (PEM) to trust for the IMAP server.
    #[arg(long, value_name = "FILE")]
    imap_ca_file: Option<PathBuf>,
    /// Plain progress lines even on a terminal.
    #[arg(long)]
    no_progress_bar: bool,
    #[command(flatten)]
    out: JsonFlag,
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
    /// Show or change how sender authentication treats the account's mail.
    Policy {
        id: AccountId,
        /// Refuse direct mail failing DMARC p=reject with 550 5.7.1 (true/false).
        #[arg(long)]
        strict_dmarc: Option<bool>,
        /// Forwarders whose ARC seals are believed (repeat; replaces the list).
        #[arg(long = "trust-arc", value_name = "DOMAIN")]
        trust_arc: Vec<String>,
        /// Go back to the server's defaults.
        #[arg(long)]
        reset: bool,
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
    if matches!(cli.command, Command::ParseProbe) {
        // No runtime, no settings: one small process that may die on a message.
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        if let Err(e) = postern::ingest::parse_probe::serve_probe(stdin, stdout) {
            eprintln!("postern parse-probe: {e}");
            std::process::exit(1);
        }
        return;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(postern::ingest::PARSE_THREAD_STACK)
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

/// Messages that may hold attached messages are parsed first in a child process of this
/// binary (docs/SECURITY.md, "Hostile messages").
fn install_parse_probe() {
    match std::env::current_exe() {
        Ok(program) => {
            postern::ingest::parse_probe::install(postern::ingest::parse_probe::ParseProbe::new(
                program,
                std::time::Duration::from_secs(30),
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this program's path: messages are parsed without the probe")
        }
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A listing: one JSON array with --json, else a line per item (`line`), or `empty`.
fn print_list<T: Serialize>(
    out: &JsonFlag,
    items: &[T],
    empty: &str,
    line: impl FnMut(&T),
) -> Result<()> {
    if out.json {
        print_json(&items)
    } else {
        if items.is_empty() {
            println!("{empty}");
        }
        items.iter().for_each(line);
        Ok(())
    }
}

/// One record: JSON with --json, else as `text` shows it.
fn print_one<T: Serialize>(out: &JsonFlag, value: &T, text: impl FnOnce(&T)) -> Result<()> {
    if out.json {
        print_json(value)
    } else {
        text(value);
        Ok(())
    }
}

fn print_deleted(out: &JsonFlag, what: &str, id: i64) -> Result<()> {
    print_one(out, &serde_json::json!({ "deleted": id }), |_| {
        println!("{what} {id} deleted")
    })
}

fn parse_address(s: &str, what: &str) -> Result<EmailAddress> {
    EmailAddress::parse(s).with_context(|| format!("{what} {s:?} is not a valid address"))
}

/// The store for a CLI command. It creates the data folder and the database private (0700,
/// 0600) when they are missing; making an existing folder private is left to `postern
/// serve`, which says so in its log (a command's stderr is its one-line error).
async fn open_store(settings: &Settings) -> Result<Store> {
    Store::open(&settings.database_path(), settings.store.read_connections)
        .await
        .map(|store| store.with_wal_append_buffer(settings.store.wal_append_buffer))
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
            install_parse_probe();
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
        Command::Token(cmd) => token(cmd, &settings).await?,
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
        }
        Command::Message(MessageCommand::Raw {
            id,
            account,
            original,
        }) => {
            use std::io::Write;
            let store = open_store(&settings).await?;
            let bytes = if original {
                store.raw_message(id, account).await?
            } else {
                store.raw_message_for_download(id, account).await?
            };
            std::io::stdout().write_all(&bytes)?;
        }
        Command::Import(args) => {
            install_parse_probe();
            import(args, &settings).await?
        }
        Command::ParseProbe => {}
        Command::Verify {
            file,
            ip,
            helo,
            mail_from,
            out,
        } => {
            let raw =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let auth = postern::auth::Authenticator::new(
                &settings.dns.nameservers,
                settings.dns.timeout,
                settings.dns.cache_size,
                &settings.smtp.hostname,
            )?;
            let facts = postern::auth::SmtpFacts {
                ip,
                helo: &helo,
                mail_from: mail_from.as_deref(),
            };
            let v = auth.verify(&raw, &facts).await;
            let policy = postern::auth::AuthPolicy {
                trusted_arc_forwarders: settings.auth.trusted_arc_forwarders.clone(),
                strict_dmarc: settings.auth.strict_dmarc,
            };
            let envelope_domain = mail_from
                .as_deref()
                .and_then(|m| m.rsplit_once('@'))
                .map(|(_, d)| d);
            let outcome = postern::auth::evaluate(&v, &policy, envelope_domain);
            if out.json {
                print_json(&serde_json::json!({"verdicts": v, "policy": outcome}))?;
            } else {
                print_verdicts(&v, &outcome);
            }
        }
        Command::Sso(cmd) => sso(cmd, &settings).await?,
        Command::Rules(cmd) => rules_cli(cmd, &settings).await?,
        Command::Macros(cmd) => macros_cli(cmd, &settings).await?,
        Command::Domain(cmd) => domain(cmd, &settings).await?,
        Command::Queue(cmd) => queue(cmd, &settings).await?,
        Command::Reply {
            ticket,
            body_file,
            account,
            html_file,
            cc,
            attach,
            quote,
            out,
        } => {
            let text = if body_file.as_os_str() == "-" {
                let mut t = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)?;
                t
            } else {
                std::fs::read_to_string(&body_file)
                    .with_context(|| format!("reading {}", body_file.display()))?
            };
            let html = html_file
                .map(|f| {
                    std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))
                })
                .transpose()?;
            let mut attachments = Vec::new();
            for f in attach {
                let data = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                let filename = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "attachment".into());
                attachments.push(postern::outbound::DraftAttachment {
                    content_type: guess_type(&filename).to_string(),
                    filename,
                    data,
                });
            }
            let store = open_store(&settings).await?;
            let account = match account {
                Some(a) => a,
                None => AccountId(store.ticket(ticket, None).await?.ticket.account_id),
            };
            let outbound = postern::app::outbound_queue(&settings, &store).await?;
            let draft = postern::outbound::ReplyDraft {
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
            if out.json {
                print_json(&q)?;
            } else {
                println!(
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
                    eprintln!("postern: note: outbound.enabled is false; `postern serve` will not deliver it");
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

fn read_text(path: &std::path::Path) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > 1024 * 1024 {
        bail!("{} is larger than 1 MiB", path.display());
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("reading {} (UTF-8 text)", path.display()))
}

fn print_rule(r: &postern::store::RuleRecord) {
    println!(
        "{:<5} {:<9} pos {:<5} {:<17} {}",
        r.id,
        if r.enabled { "enabled" } else { "disabled" },
        r.position,
        r.trigger,
        r.name
    );
}

fn print_rule_run(r: &postern::store::RuleRunView) {
    println!(
        "{} run {} rule {:?} ticket {} {} depth {}: {}",
        r.created_at.to_rfc3339(),
        r.id,
        r.rule_name,
        r.ticket_id.map_or("-".into(), |t| t.to_string()),
        r.trigger,
        r.depth,
        if r.matched { "matched" } else { "no match" }
    );
    if let Some(e) = &r.error {
        println!("    error: {e}");
    }
    for a in r.actions.as_array().into_iter().flatten() {
        println!(
            "    {} {}{}",
            a["outcome"].as_str().unwrap_or("?"),
            a["action"]["type"].as_str().unwrap_or("?"),
            a["reason"]
                .as_str()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
    }
}

async fn rules_cli(cmd: RulesCommand, settings: &Settings) -> Result<()> {
    use postern::rules;
    let store = open_store(settings).await?;
    match cmd {
        RulesCommand::Add {
            account,
            file,
            replace,
            out,
        } => {
            let text = read_text(&file)?;
            let r = rules::save_rule(
                &store,
                account,
                &text,
                rules::Format::of_path(&file),
                replace,
            )
            .await?;
            if out.json {
                print_json(&r)?;
            } else {
                println!(
                    "rule {} {}: {} ({}, {})",
                    r.id,
                    if replace.is_some() {
                        "replaced"
                    } else {
                        "added"
                    },
                    r.name,
                    r.trigger,
                    if r.enabled {
                        "enabled"
                    } else {
                        "disabled: `postern rules enable` switches it on"
                    }
                );
            }
        }
        RulesCommand::List { account, out } => {
            print_list(&out, &store.rules(account).await?, "no rules", print_rule)?;
        }
        RulesCommand::Show { id, account, out } => {
            print_one(&out, &store.rule(id, account).await?, |r| {
                print_rule(r);
                println!("{:#}", r.definition);
            })?;
        }
        RulesCommand::Enable { id, account, out } => {
            print_one(
                &out,
                &store.set_rule_enabled(id, account, true).await?,
                print_rule,
            )?;
        }
        RulesCommand::Disable { id, account, out } => {
            print_one(
                &out,
                &store.set_rule_enabled(id, account, false).await?,
                print_rule,
            )?;
        }
        RulesCommand::Delete { id, account, out } => {
            store.delete_rule(id, account).await?;
            print_deleted(&out, "rule", id)?;
        }
        RulesCommand::Simulate {
            account,
            file,
            rule,
            since,
            out,
        } => {
            let minutes = rules::schema::parse_minutes(&since)
                .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            let (parsed, id) = match (file, rule) {
                (Some(f), _) => {
                    let text = read_text(&f)?;
                    (
                        rules::parse_rule_text(&text, rules::Format::of_path(&f))?,
                        None,
                    )
                }
                (None, Some(id)) => {
                    let r = store.rule(id, account).await?;
                    (rules::parse_rule(&r.definition)?, Some(id))
                }
                (None, None) => bail!("give --file FILE or --rule ID"),
            };
            let now = postern::store::now_ms();
            let report = rules::simulate::simulate(
                &store,
                account,
                &parsed,
                id,
                now - minutes * 60_000,
                now,
                settings.rules.reply_window.as_millis() as i64,
            )
            .await?;
            if out.json {
                print_json(&report)?;
            } else {
                print_simulation(&report);
            }
        }
        RulesCommand::Log {
            account,
            rule,
            ticket,
            matched,
            limit,
            out,
        } => {
            let filter = postern::store::RunFilter {
                rule_id: rule,
                ticket_id: ticket,
                matched_only: matched,
                before: None,
            };
            let runs = store
                .rule_runs(account, &filter, limit.clamp(1, 1000))
                .await?;
            print_list(&out, &runs, "no rule runs", print_rule_run)?;
        }
        RulesCommand::BusinessHours {
            account,
            file,
            clear,
            out,
        } => {
            if let Some(f) = file {
                let v: serde_json::Value = serde_json::from_str(&read_text(&f)?)
                    .with_context(|| format!("{} is not JSON", f.display()))?;
                rules::business_hours::BusinessHours::parse(&v).map_err(|e| anyhow::anyhow!(e))?;
                store
                    .set_account_setting(account, "business_hours", v)
                    .await?;
            } else if clear {
                store
                    .set_account_setting(account, "business_hours", serde_json::Value::Null)
                    .await?;
            }
            let v = store.account_settings(account).await?["business_hours"].clone();
            if out.json {
                print_json(&v)?;
            } else if v.is_null() {
                println!("no business hours: every hour counts as within business hours");
            } else {
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
        }
        RulesCommand::Tick { out } => {
            let outbound = postern::app::outbound_queue(settings, &store).await?;
            let engine = postern::app::rules_engine(settings, &store, outbound);
            let report = engine.scheduler_pass().await?;
            if out.json {
                print_json(&report)?;
            } else {
                println!(
                    "{} time-based rules, {} candidate tickets, {} fired",
                    report.rules, report.candidates, report.fired
                );
            }
        }
    }
    Ok(())
}

fn print_simulation(r: &postern::rules::simulate::SimulationReport) {
    println!(
        "Simulation of {:?} ({}) from {} to {}",
        r.rule,
        r.trigger.as_str(),
        r.since.format("%Y-%m-%d %H:%M"),
        r.until.format("%Y-%m-%d %H:%M")
    );
    let t = &r.totals;
    println!(
        "{} tickets and {} messages replayed, {} evaluations: {} matches on {} tickets; {} actions would be taken ({} replies), {} blocked or failed",
        t.tickets_examined, t.messages_replayed, t.evaluations, t.matches, t.tickets_matched,
        t.actions_planned, t.replies_planned, t.actions_blocked
    );
    if !r.per_day.is_empty() {
        println!();
        println!("Per day:");
        for (day, n) in &r.per_day {
            println!("  {day}  {n:>5}  {}", "#".repeat((*n).min(60)));
        }
    }
    if !r.matches.is_empty() {
        println!();
        println!("Would have acted on:");
    }
    for m in &r.matches {
        println!(
            "  {} ticket #{} {:?} ({}) on {}",
            m.at.format("%Y-%m-%d %H:%M"),
            m.ticket_id,
            m.subject,
            m.customer.clone().unwrap_or_default(),
            m.trigger
        );
        for c in &m.conditions {
            // A test under `not` holds for the rule when it does not match.
            let negated = c.path.contains(".not");
            if c.matched != negated {
                let op = serde_json::to_value(c.operator).unwrap_or_default();
                println!(
                    "      matched {}{} {} {} (was {})",
                    if negated { "not " } else { "" },
                    c.field,
                    op.as_str().unwrap_or("?"),
                    c.value,
                    c.actual
                );
            }
        }
        for a in &m.actions {
            println!(
                "      {:?} {}{}",
                a.outcome,
                a.action["type"].as_str().unwrap_or("?"),
                a.reason
                    .as_deref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            );
            if let Some(rendered) = &a.rendered {
                for line in rendered.body.lines().take(6) {
                    println!("        | {line}");
                }
            }
        }
    }
    if !r.blocked.is_empty() {
        println!();
        println!("Stopped by a guard or failed:");
        for b in &r.blocked {
            println!(
                "  {} ticket #{} {}: {}",
                b.at.format("%Y-%m-%d %H:%M"),
                b.ticket_id,
                b.action["type"].as_str().unwrap_or("?"),
                b.reason
            );
        }
    }
    for n in &r.notes {
        println!("note: {n}");
    }
}

async fn macros_cli(cmd: MacrosCommand, settings: &Settings) -> Result<()> {
    use postern::rules;
    let store = open_store(settings).await?;
    let show = |m: &postern::store::MacroRecord| {
        println!("{:<5} {}", m.id, m.name);
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
            if out.json {
                print_json(&m)?;
            } else {
                println!("macro {} added: {}", m.id, m.name);
            }
        }
        MacrosCommand::List { account, out } => {
            print_list(&out, &store.macros(account).await?, "no macros", show)?;
        }
        MacrosCommand::Show { id, account, out } => {
            let m = store.macro_record(id, account).await?;
            if out.json {
                print_json(&m)?;
            } else {
                show(&m);
                if let Some(s) = &m.subject {
                    println!("Subject: {s}");
                }
                println!("{}", m.body);
            }
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
            if out.json {
                print_json(&rendered)?;
            } else {
                println!("Subject: {}", rendered.subject);
                println!();
                println!("{}", rendered.body);
            }
        }
    }
    Ok(())
}

async fn sso(cmd: SsoCommand, settings: &Settings) -> Result<()> {
    use postern::http::saml::{certificate_summary, parse_idp_metadata, SpEndpoints};
    let store = open_store(settings).await?;
    let base = settings.public_base_url(settings.http.listen);
    if settings.http.public_url.trim().is_empty() {
        eprintln!(
            "postern: note: http.public_url is not set; the URLs below use {base}, which an IdP outside this machine cannot reach"
        );
    }
    let (account, out) = match &cmd {
        SsoCommand::Set { account, out, .. } | SsoCommand::Show { account, out } => {
            (*account, out.json)
        }
    };
    store.account(account).await?;
    if let SsoCommand::Set {
        metadata,
        role_attribute,
        admin_values,
        agent_values,
        default_agent,
        ..
    } = cmd
    {
        let xml = std::fs::read_to_string(&metadata)
            .with_context(|| format!("reading {}", metadata.display()))?;
        let idp = parse_idp_metadata(&xml)?;
        let mut roles = store
            .sso_provider(account)
            .await?
            .map(|p| p.roles)
            .unwrap_or_default();
        if let Some(a) = role_attribute {
            if a.trim().is_empty() {
                bail!("--role-attribute must not be empty");
            }
            roles.attribute = a.trim().to_string();
        }
        let clean = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        if let Some(v) = admin_values {
            roles.admin_values = clean(v);
        }
        if let Some(v) = agent_values {
            roles.agent_values = clean(v);
        }
        if let Some(d) = default_agent {
            roles.default_agent = d;
        }
        store.set_sso_provider(account, &idp, Some(&roles)).await?;
    }
    let sp = SpEndpoints::new(&base, account);
    let provider = store.sso_provider(account).await?;
    if out {
        let idp = provider.as_ref().map(|p| {
            serde_json::json!({
                "entity_id": p.idp.idp_entity_id,
                "sso_url": p.idp.sso_url,
                "signing_certificates": p.idp.signing_certs.iter().map(|c| certificate_summary(c)).collect::<Vec<_>>(),
                "roles": p.roles,
            })
        });
        print_json(&serde_json::json!({
            "account_id": account,
            "sp_entity_id": sp.entity_id,
            "acs_url": sp.acs_url,
            "sp_metadata_url": sp.metadata_url,
            "login_url": sp.login_url,
            "logout_url": sp.logout_url,
            "idp": idp,
        }))?;
    } else {
        println!("SP entity ID:     {}", sp.entity_id);
        println!("ACS URL:          {} (HTTP-POST)", sp.acs_url);
        println!("SP metadata URL:  {}", sp.metadata_url);
        println!("Sign-in URL:      {}", sp.login_url);
        match provider {
            None => println!(
                "IdP:              not set (postern sso set --account {account} --metadata FILE)"
            ),
            Some(p) => {
                println!("IdP entity ID:    {}", p.idp.idp_entity_id);
                println!("IdP sign-in URL:  {}", p.idp.sso_url);
                for c in &p.idp.signing_certs {
                    println!("IdP certificate:  {}", certificate_summary(c));
                }
                println!(
                    "Roles:            attribute {:?}; admin {:?}; agent {:?}; no match: {}",
                    p.roles.attribute,
                    p.roles.admin_values,
                    p.roles.agent_values,
                    if p.roles.default_agent {
                        "agent"
                    } else {
                        "refused"
                    }
                );
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
        AccountCommand::Policy {
            id,
            strict_dmarc,
            trust_arc,
            reset,
            out,
        } => {
            let mut settings_doc = store.account_settings(id).await?;
            let mut auth = if reset {
                serde_json::json!({})
            } else {
                settings_doc["auth"].take()
            };
            if !auth.is_object() {
                auth = serde_json::json!({});
            }
            if let Some(strict) = strict_dmarc {
                auth["strict_dmarc"] = strict.into();
            }
            if !trust_arc.is_empty() {
                let list: Vec<String> = trust_arc
                    .iter()
                    .map(|d| d.trim().to_ascii_lowercase())
                    .collect();
                if let Some(bad) = list
                    .iter()
                    .find(|d| d.is_empty() || d.contains(['@', ' ', '/']))
                {
                    bail!("--trust-arc {bad:?} is not a domain name");
                }
                auth["trusted_arc_forwarders"] = list.into();
            }
            if reset || strict_dmarc.is_some() || !trust_arc.is_empty() {
                store.set_account_setting(id, "auth", auth.clone()).await?;
            }
            let defaults = postern::auth::AuthPolicy {
                trusted_arc_forwarders: settings.auth.trusted_arc_forwarders.clone(),
                strict_dmarc: settings.auth.strict_dmarc,
            };
            let effective =
                postern::ingest::account_policy(&serde_json::json!({"auth": auth}), &defaults);
            if out.json {
                print_json(&effective)?;
            } else {
                println!(
                    "Account {id}: strict DMARC {}",
                    if effective.strict_dmarc { "on" } else { "off" }
                );
                println!(
                    "Trusted ARC forwarders: {}",
                    effective.trusted_arc_forwarders.join(", ")
                );
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

async fn token(cmd: TokenCommand, settings: &Settings) -> Result<()> {
    let store = open_store(settings).await?;
    match cmd {
        TokenCommand::Create {
            account,
            role,
            name,
            expires_in,
            out,
        } => {
            let expires_at = match expires_in {
                Some(d) if d.is_zero() => bail!("--expires-in must be more than 0s"),
                Some(d) => Some(
                    postern::store::now_ms()
                        .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                ),
                None => None,
            };
            let (info, secret) = store
                .create_api_token_by(
                    account,
                    role,
                    name.as_deref().unwrap_or(""),
                    postern::store::TokenCreator::Operator,
                    expires_at,
                )
                .await?;
            if out.json {
                #[derive(Serialize)]
                struct Created<'a> {
                    token: &'a str,
                    #[serde(flatten)]
                    info: &'a postern::store::ApiTokenView,
                }
                print_json(&Created {
                    token: &secret,
                    info: &info,
                })?;
            } else {
                println!("{secret}");
                eprintln!(
                    "token {} ({}) for account {account}: shown once, store it now",
                    info.id, info.role
                );
            }
        }
        TokenCommand::List { account, out } => {
            let tokens = store.api_tokens(account).await?;
            if out.json {
                print_json(&tokens)?;
            } else if tokens.is_empty() {
                println!("no tokens");
            } else {
                for t in tokens {
                    let when = |d: Option<chrono::DateTime<chrono::Utc>>, none: &str| {
                        d.map_or(none.to_string(), |d| d.to_rfc3339())
                    };
                    println!(
                        "{:<6} {:<6} {:<14} {:<24} {:<17} by {:<24} expires {:<26} last used {}",
                        t.id,
                        t.role,
                        format!("{}...", t.prefix),
                        t.name,
                        t.status,
                        t.created_by.as_deref().unwrap_or("operator"),
                        when(t.expires_at, "never"),
                        when(t.last_used_at, "never"),
                    );
                }
            }
        }
        TokenCommand::Revoke { id, out } => {
            let t = store.revoke_api_token(id, None).await?;
            if out.json {
                print_json(&t)?;
            } else {
                println!("token {} revoked", t.id);
            }
        }
    }
    Ok(())
}

fn guess_type(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

fn print_delivery(d: &postern::store::DeliveryView) {
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
    println!(
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

fn print_records(records: &[postern::outbound::RecordCheck]) {
    for r in records {
        println!();
        println!(
            "{} record{}",
            r.kind.to_uppercase(),
            match r.status {
                Some(s) => format!(
                    ": {}",
                    serde_json::to_value(s)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
                None => String::new(),
            }
        );
        println!("  name:  {} (TXT)", r.name);
        println!("  value: {}", r.expected);
        for f in &r.found {
            println!("  found: {f}");
        }
        if let Some(n) = &r.note {
            println!("  note:  {n}");
        }
    }
}

async fn domain(cmd: DomainCommand, settings: &Settings) -> Result<()> {
    let store = open_store(settings).await?;
    let outbound = postern::app::outbound_queue(settings, &store).await?;
    match cmd {
        DomainCommand::Add {
            account,
            domain,
            selector,
            out,
        } => {
            let (d, records) = outbound
                .add_domain(account, &domain, selector.as_deref())
                .await?;
            if out.json {
                print_json(&serde_json::json!({"domain": d, "records": records}))?;
            } else {
                println!(
                    "Sending domain {} added to account {} (id {}). Publish these DNS records, then run `postern domain check --account {} {}`:",
                    d.domain, d.account_id, d.id, d.account_id, d.domain
                );
                print_records(&records);
            }
        }
        DomainCommand::Check {
            account,
            domain,
            out,
        } => {
            let name = postern::outbound::dns_name(&domain)?;
            let keys = store.sending_domain(account, None, Some(&name)).await?;
            let report = outbound.check_domain(account, keys.id).await?;
            if out.json {
                print_json(&report)?;
            } else {
                println!(
                    "{}: {}",
                    report.domain,
                    if report.verified {
                        "verified: replies may leave from it"
                    } else {
                        "not verified: publish the DKIM record below, then check again"
                    }
                );
                print_records(&report.records);
            }
        }
        DomainCommand::List { account, out } => {
            let list = store.sending_domains(account).await?;
            if out.json {
                let docs: Vec<serde_json::Value> = list
                    .iter()
                    .map(|d| {
                        let mut v = serde_json::to_value(d).unwrap_or_default();
                        v["records"] =
                            serde_json::to_value(outbound.records(d)).unwrap_or_default();
                        v
                    })
                    .collect();
                print_json(&docs)?;
            } else if list.is_empty() {
                println!(
                    "no sending domains (add one with `postern domain add --account ID DOMAIN`)"
                );
            } else {
                for d in list {
                    println!(
                        "{:<6} account {:<6} {:<30} selector {:<12} {}",
                        d.id,
                        d.account_id,
                        d.domain,
                        d.selector,
                        if d.verified {
                            "verified"
                        } else {
                            "not verified"
                        }
                    );
                }
            }
        }
    }
    Ok(())
}

async fn queue(cmd: QueueCommand, settings: &Settings) -> Result<()> {
    let store = open_store(settings).await?;
    match cmd {
        QueueCommand::List {
            account,
            limit,
            out,
        } => {
            let entries = store.queue_entries(account, limit).await?;
            print_list(&out, &entries, "the queue is empty", print_delivery)?;
        }
        QueueCommand::Retry { id, account, out } => {
            let lifetime =
                i64::try_from(settings.outbound.lifetime.as_millis()).unwrap_or(i64::MAX / 2);
            let d = store.retry_delivery(id, account, lifetime).await?;
            if out.json {
                print_json(&d)?;
            } else {
                println!(
                    "queue entry {} to {} will be tried again now",
                    d.id, d.recipient
                );
            }
        }
    }
    Ok(())
}

fn line(name: &str, v: &postern::auth::Verdict) {
    let mut s = format!("{name:<14} {}", v.result);
    if let Some(d) = &v.domain {
        s.push_str(&format!("  ({d}"));
        if let Some(sel) = &v.selector {
            s.push_str(&format!(", selector {sel}"));
        }
        s.push(')');
    }
    if let Some(r) = &v.reason {
        s.push_str(&format!("  {r}"));
    }
    println!("{s}");
}

fn print_verdicts(v: &postern::auth::AuthVerdicts, o: &postern::auth::PolicyOutcome) {
    println!("Authentication-Results: {}", v.header);
    println!();
    line("iprev", &v.iprev);
    line("spf (helo)", &v.spf_helo);
    line("spf (mailfrom)", &v.spf_mail_from);
    for d in &v.dkim {
        line("dkim", d);
    }
    println!(
        "{:<14} {}  sealed by: {}{}",
        "arc",
        v.arc.result,
        if v.arc.sealers.is_empty() {
            "-".to_string()
        } else {
            v.arc.sealers.join(", ")
        },
        v.arc
            .reason
            .as_deref()
            .map(|r| format!("  {r}"))
            .unwrap_or_default()
    );
    println!(
        "{:<14} {}  (From: {}, policy {}, spf aligned {}, dkim aligned {}){}",
        "dmarc",
        v.dmarc.result,
        v.dmarc.from_domain,
        v.dmarc.policy,
        v.dmarc.spf_aligned,
        v.dmarc.dkim_aligned,
        v.dmarc
            .reason
            .as_deref()
            .map(|r| format!("  {r}"))
            .unwrap_or_default()
    );
    println!();
    match (&o.authenticated_domain, &o.via_trusted_arc) {
        (Some(d), Some(arc)) => {
            println!("Verdict: {d} authenticated through the ARC seal of {arc}")
        }
        (Some(d), None) => println!("Verdict: {d} authenticated (DMARC pass)"),
        _ if o.spoof_suspected => println!(
            "Verdict: spoof suspected (the From domain's DMARC policy is enforcing and fails)"
        ),
        _ => println!("Verdict: not authenticated (shown to agents as such; not a spoof flag)"),
    }
    if let Some(r) = &o.reject {
        println!("Strict mode would refuse it: 550 5.7.1 {r}");
    }
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

async fn import(args: ImportArgs, settings: &Settings) -> Result<()> {
    use postern::import::progress::{LineProgress, TerminalProgress};
    use postern::import::{
        run_import, DateRange, ImapConfig, ImportProgress, ImportRequest, MboxDialect, SourceSpec,
    };
    use std::io::IsTerminal;
    use std::sync::Arc;

    // A second group-commit writer beside a running server's would compete with it for the
    // database file (and slow its SMTP 250s): the server runs imports itself. Held until the
    // import ends, so that no server starts beside it either.
    let _writers = postern::store::ServeLock::command(&settings.database_path())?;
    let today = chrono::Utc::now().date_naive();
    let range = DateRange {
        since: args
            .since
            .as_deref()
            .map(|s| DateRange::parse_since(s, today))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(DateRange::parse_date)
            .transpose()?,
    };
    if let (Some(s), Some(u)) = (range.since, range.until) {
        if s > u {
            bail!("--since {s} is after --until {u}: nothing would be imported");
        }
    }
    let dialect = match args.mbox_dialect.as_deref() {
        None => None,
        Some(d) => Some(
            d.parse::<MboxDialect>()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
    };
    let source = if let Some(path) = args.mbox {
        SourceSpec::Mbox { path, dialect }
    } else if let Some(path) = args.maildir {
        SourceSpec::Maildir { path }
    } else if let Some(path) = args.eml {
        SourceSpec::Eml { path }
    } else if let Some(url) = args.imap {
        // The URL first: a mistake in it is reported before any password is asked for.
        let mut config = ImapConfig::from_url(&url, String::new())?;
        config.password = match std::env::var("POSTERN_IMAP_PASSWORD") {
            Ok(p) => p,
            Err(_) if std::io::stdin().is_terminal() => {
                rpassword::prompt_password(format!("IMAP password for {url}: "))
                    .context("reading the IMAP password")?
            }
            Err(_) => bail!(
                "no IMAP password: set POSTERN_IMAP_PASSWORD (it is never taken from the URL or the command line)"
            ),
        };
        config.ca_file = args.imap_ca_file;
        SourceSpec::Imap {
            config: Box::new(config),
        }
    } else {
        bail!("give one source: --mbox, --maildir, --eml or --imap");
    };
    let store = open_store(settings).await?;
    let threading = postern::app::threading_config(&store, settings).await?;
    let (writer, writer_task) = postern::store::CommitWriter::spawn(
        store.database_file(),
        settings.store.batch_max,
        threading,
        Box::new(|_, _| {}),
    )?;
    let mut request = ImportRequest::new(args.account, source, settings.data_dir.join("imports"));
    request.folders = args.folders;
    request.range = range;
    request.open_newest = args.open_newest;
    request.dry_run = args.dry_run;
    request.batch_size = args.batch_size.clamp(1, 10_000);
    request.max_rate = args.max_rate;
    if let Some(max) = args.max_message_size {
        request.max_message_size = max;
    }
    request.decompress = postern::import::DecompressLimits {
        max_size: settings.imports.max_decompressed_size,
        max_ratio: settings.imports.max_compression_ratio,
    };
    request.max_staged_size = settings.imports.max_staged_size;
    request.max_participants = settings.threading.max_participants_per_message;
    let progress: Arc<dyn ImportProgress> =
        if std::io::stderr().is_terminal() && !args.no_progress_bar {
            Arc::new(TerminalProgress::new())
        } else {
            Arc::new(LineProgress::new(std::time::Duration::from_secs(5)))
        };
    // Ctrl-C stops after the current batch; the same command resumes later.
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("import: stopping after the current batch (run the same command to resume)");
        on_signal.cancel();
    });
    let result = run_import(
        &store,
        &writer,
        &settings.inbound.domain.to_ascii_lowercase(),
        request,
        progress,
        cancel,
    )
    .await;
    drop(writer);
    let _ = writer_task.await;
    let summary = result?;
    if args.out.json {
        print_json(&summary)?;
    } else {
        println!(
            "{}{} {}: {} seen, {} imported, {} duplicates, {} quarantined, {} outside the dates; tickets: {} created, {} merged with existing ones; {:.1} s",
            if summary.dry_run { "dry run, nothing written: " } else { "" },
            summary.status,
            summary.source,
            summary.seen,
            summary.imported,
            summary.duplicates,
            summary.quarantined,
            summary.skipped,
            summary.tickets_created.map_or("-".to_string(), |n| n.to_string()),
            summary.tickets_merged.map_or("-".to_string(), |n| n.to_string()),
            summary.elapsed_seconds
        );
        if let Some(job) = summary.job_id {
            println!("import job {job}");
        }
    }
    if summary.status == "interrupted" || summary.status == "cancelled" {
        bail!(
            "import {} before its end; run the same command again to resume",
            summary.status
        );
    }
    Ok(())
}

//! `postern import`: past mail (mbox, Maildir, .eml folder, IMAP) into an account's tickets.

use super::open_store;
use super::output::{print_json, JsonFlag};
use super::serve::{install_parse_probe, wait_for_signal};
use crate::config::Settings;
use crate::domain::AccountId;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["mbox", "maildir", "eml", "imap"])))]
pub struct ImportArgs {
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

pub(super) async fn run(args: ImportArgs, settings: &Settings) -> Result<()> {
    install_parse_probe();
    use crate::import::progress::{LineProgress, TerminalProgress};
    use crate::import::{
        run_import, DateRange, ImapConfig, ImportProgress, ImportRequest, MboxDialect, SourceSpec,
    };
    use std::io::IsTerminal;
    use std::sync::Arc;

    // A second group-commit writer beside a running server's would compete with it for the
    // database file (and slow its SMTP 250s): the server runs imports itself. Held until the
    // import ends, so that no server starts beside it either.
    let _writers = crate::store::ServeLock::command(&super::create_data_folder(settings)?)?;
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
    let threading = crate::app::threading_config(&store, settings).await?;
    let writer = crate::store::CommitWriter::new(&store, threading);
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
    request.decompress = crate::import::DecompressLimits {
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
        errln!("import: stopping after the current batch (run the same command to resume)");
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
    store.close().await;
    let summary = result?;
    if args.out.json {
        print_json(&summary)?;
    } else {
        outln!(
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
            outln!("import job {job}");
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

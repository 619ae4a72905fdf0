//! `postern serve` and `postern migrate`, and what a long-running command needs: the parse
//! probe and the shutdown signal.

use super::open_store;
use crate::app::Application;
use crate::config::{LogFormat, Settings};
use anyhow::Result;
use clap::Args;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct ServeArgs {
    /// Log JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

pub(super) async fn serve(args: ServeArgs, settings: Settings) -> Result<()> {
    let format = if args.log_json {
        LogFormat::Json
    } else {
        settings.log.format
    };
    crate::telemetry::init(format, &settings.log.level);
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
    Ok(())
}

pub(super) async fn migrate(settings: &Settings) -> Result<()> {
    // Held until the migrations are applied: no server starts beside them.
    let _no_server = match crate::store::ServeLock::command(&settings.database_path()) {
        Ok(lock) => lock,
        Err(crate::store::ServeLockError::ServerRunning { path }) => anyhow::bail!(
            "`postern serve` is running on this database (lock {} is held) and applied every \
             migration when it started: there is nothing to do; to migrate with another \
             postern binary, stop the server first",
            path.display()
        ),
        Err(e) => return Err(e.into()),
    };
    open_store(settings).await?;
    outln!(
        "database {} is up to date",
        settings.database_path().display()
    );
    Ok(())
}

/// Messages that may hold attached messages are parsed first in a child process of this
/// binary (docs/SECURITY.md, "Hostile messages").
pub(super) fn install_parse_probe() {
    match std::env::current_exe() {
        Ok(program) => {
            crate::ingest::parse_probe::install(crate::ingest::parse_probe::ParseProbe::new(
                program,
                std::time::Duration::from_secs(30),
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this program's path: messages are parsed without the probe")
        }
    }
}

/// Ctrl-C or SIGTERM.
pub(super) async fn wait_for_signal() {
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

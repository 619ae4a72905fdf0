//! Commands against a running server go through it (docs/ARCHITECTURE.md, "One writer per
//! database"): the client side sends the command line over the admin socket
//! (`admin_socket`) and prints what comes back; the server side runs the very same command
//! code with the server's store, its output captured (context.rs).

use super::context::{run_remote, RemoteRun};
use super::{error_line, run_command, Cli, Command};
use crate::admin_socket::protocol::{self, Answer, Request};
use crate::admin_socket::{socket_path, AdminCommands};
use crate::config::Settings;
use crate::store::Store;
use anyhow::{bail, Context, Result};
use clap::Parser;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use tokio::io::{AsyncWriteExt, BufReader};

/// How long a client waits for its answer: longer than the server's bounds (read, queue,
/// command, write: see admin_socket::Limits).
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Why a command does not run through the server, or `None` when it does.
pub(super) fn runs_only_here(command: &Command) -> Option<&'static str> {
    match command {
        Command::Serve(_) => Some("`postern serve` is a server of its own"),
        Command::Migrate => Some(
            "`postern migrate` does not run through a server: the server applied every \
             migration when it started",
        ),
        Command::ParseProbe => Some("`postern parse-probe` is internal to a server or an import"),
        Command::Import(_) => Some(
            "`postern import` does not run through the admin socket: import through the server's \
             API instead (POST /api/v1/imports, see docs/IMPORT.md), or stop it and run the \
             import again",
        ),
        Command::Verify(_) => Some(
            "`postern verify` reads a message file and asks DNS; it needs no database and runs \
             where it is started",
        ),
        _ => None,
    }
}

/// The command lines of the admin socket, run in `postern serve` with its settings and store.
pub struct ServerCommands {
    settings: Settings,
    store: Store,
}

impl ServerCommands {
    pub fn new(settings: Settings, store: Store) -> Self {
        Self { settings, store }
    }

    async fn answer(&self, request: Request) -> Answer {
        let cli = match Cli::try_parse_from(&request.argv) {
            Ok(cli) => cli,
            Err(e) => {
                return Answer {
                    status: e.exit_code(),
                    stdout: Vec::new(),
                    stderr: e.render().to_string(),
                }
            }
        };
        if let Some(why) = runs_only_here(&cli.command) {
            return Answer::refused(why);
        }
        let cwd = PathBuf::from(&request.cwd);
        if !cwd.is_absolute() {
            return Answer::refused(format!(
                "the client's directory {:?} is not an absolute path",
                request.cwd
            ));
        }
        // `--config` named the client's file, which only found this database: the command
        // runs with the server's settings.
        let run = RemoteRun::new(cwd, request.stdin, self.store.clone());
        let result = run_remote(run.clone(), run_command(cli.command, &self.settings)).await;
        let (stdout, mut stderr) = run.take_output();
        let status = match result {
            Ok(()) => 0,
            Err(e) => {
                stderr.push_str(&format!("postern: {}\n", error_line(&e)));
                1
            }
        };
        Answer {
            status,
            stdout,
            stderr,
        }
    }
}

impl AdminCommands for ServerCommands {
    fn run(&self, request: Request) -> Pin<Box<dyn Future<Output = Answer> + Send + '_>> {
        Box::pin(self.answer(request))
    }
}

/// The admin socket of the server running on the database of `settings`.
pub(super) async fn connect(settings: &Settings) -> Result<Connection> {
    let path = socket_path(&settings.database_path());
    match tokio::net::UnixStream::connect(&path).await {
        Ok(stream) => Ok(Connection { stream, path }),
        Err(e) => Err(e).with_context(|| {
            format!(
                "`postern serve` is running on this database, but its admin socket {} does not \
                 answer; commands go through the running server: restart it (a server older \
                 than this postern has no admin socket), or stop it and run this command again",
                path.display()
            )
        }),
    }
}

pub(super) struct Connection {
    stream: tokio::net::UnixStream,
    path: PathBuf,
}

/// The client side: sends this process's command line to the server, prints its output
/// and returns its exit status.
pub(super) async fn send(server: Connection, command: &Command) -> Result<ExitCode> {
    let argv = std::env::args_os()
        .map(|a| {
            a.into_string().map_err(|a| {
                anyhow::anyhow!(
                    "the argument {a:?} is not UTF-8 and cannot be sent to the running server"
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let cwd = cwd
        .into_os_string()
        .into_string()
        .map_err(|d| anyhow::anyhow!("the current directory {d:?} is not UTF-8"))?;
    let stdin = match command {
        Command::Reply(args) if args.body_from_stdin() => Some(read_stdin_bounded()?),
        _ => None,
    };
    let request = protocol::encode_request(&Request {
        v: protocol::VERSION,
        argv,
        cwd,
        stdin,
    });
    if request.len() > protocol::MAX_REQUEST {
        bail!(
            "this command with its standard input is larger than the {} bytes a running server \
             accepts; put the text in a file and pass its path instead of \"-\"",
            protocol::MAX_REQUEST
        );
    }
    let Connection { mut stream, path } = server;
    let talk = async {
        stream.write_all(&request).await?;
        protocol::read_answer(&mut BufReader::new(&mut stream)).await
    };
    // The server bounds a command (admin_socket::Limits); this bounds a server that hangs.
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, talk)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the running server did not answer on {} within {} minutes; see its log",
                path.display(),
                ANSWER_TIMEOUT.as_secs() / 60
            )
        })?
        .with_context(|| format!("talking to the running server on {}", path.display()))?;
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&answer.stdout)?;
    stdout.flush()?;
    eprint!("{}", answer.stderr);
    Ok(ExitCode::from(u8::try_from(answer.status).unwrap_or(1)))
}

/// Standard input for the server, at most what a request may hold.
fn read_stdin_bounded() -> Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(protocol::MAX_REQUEST as u64 + 1)
        .read_to_end(&mut bytes)
        .context("reading standard input")?;
    if bytes.len() > protocol::MAX_REQUEST {
        bail!(
            "standard input is larger than the {} bytes a running server accepts with a \
             command; put the text in a file and pass its path instead of \"-\"",
            protocol::MAX_REQUEST
        );
    }
    String::from_utf8(bytes).context("standard input is not UTF-8 text")
}

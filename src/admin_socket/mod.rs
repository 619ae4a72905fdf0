//! The admin socket: how `postern` commands on the command line reach a running `postern
//! serve`, so that the server stays the one writer of its database (docs/ARCHITECTURE.md,
//! "One writer per database"). A Unix socket beside the database (`<database>.admin.sock`,
//! mode 0600 in the 0700 data folder) takes one command line per connection and answers
//! with its exit status and output (protocol.rs).
//!
//! Who and how much (docs/SECURITY.md): only a peer running as the server's own user or
//! root; a request of at most 1 MiB, read within 30 s; at most four commands at once (the
//! next waits up to a minute for one to finish); a command stopped after 10 minutes.
//!
//! What a command is and how it runs is the business of [`AdminCommands`] (the command line's
//! own code, `cli::remote`); this module knows sockets, limits and the wire.
//!
//! The socket is served on a thread of its own with its own small runtime
//! ([`AdminSocket::spawn_thread`]): an operator's commands (a long `rules simulate`) never
//! take a worker from SMTP or HTTP. They share the server's store, whose connection pool
//! also lives on the server's runtime.

pub mod protocol;

use protocol::{Answer, ProtocolError, Request};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Runs the command lines that arrive on the socket.
pub trait AdminCommands: Send + Sync + 'static {
    fn run(&self, request: Request) -> Pin<Box<dyn Future<Output = Answer> + Send + '_>>;
}

/// The socket of the database at `database`.
pub fn socket_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".admin.sock");
    PathBuf::from(name)
}

/// The bounds of the socket.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_request: usize,
    /// To read the request, from the connection's accept.
    pub read_timeout: Duration,
    /// Commands running at once.
    pub max_commands: usize,
    /// How long a command waits for one of the others to finish before it is refused.
    pub queue_timeout: Duration,
    /// How long a command may run.
    pub command_timeout: Duration,
    /// Connections open at once (waiting, reading or running).
    pub max_connections: usize,
    /// To write the answer.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request: protocol::MAX_REQUEST,
            read_timeout: Duration::from_secs(30),
            max_commands: 4,
            queue_timeout: Duration::from_secs(60),
            command_timeout: Duration::from_secs(600),
            max_connections: 32,
            write_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    #[error(
        "cannot remove the stale admin socket {path}: {source}; remove it by hand and start \
         again"
    )]
    Stale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on the admin socket {path}: {source}; check that the data folder is \
         writable by the user running postern (a socket path longer than about 100 bytes does \
         not fit: choose a shorter data_dir or database path)"
    )]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The bound socket; its file goes when this is dropped.
pub struct AdminSocket {
    /// A std listener (non-blocking): it joins the runtime that serves it, not the one that
    /// bound it.
    listener: std::os::unix::net::UnixListener,
    file: SocketFile,
    server_uid: u32,
}

/// Removes the socket file when dropped: a stopped server leaves none behind.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl AdminSocket {
    /// Binds `path`, replacing a socket a stopped server left behind. Call it holding the
    /// serve lock (store/serve_lock.rs): no other server can be listening there.
    pub fn bind(path: &Path) -> Result<Self, AdminSocketError> {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(socket = %path.display(), "removed a stale admin socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(AdminSocketError::Stale {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        let bind_error = |source| AdminSocketError::Bind {
            path: path.to_path_buf(),
            source,
        };
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_error)?;
        let file = SocketFile(path.to_path_buf());
        listener.set_nonblocking(true).map_err(bind_error)?;
        // The data folder is 0700 already; the socket is the server user's alone as well.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(bind_error)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let server_uid = unsafe { libc::geteuid() };
        Ok(Self {
            listener,
            file,
            server_uid,
        })
    }

    pub fn path(&self) -> &Path {
        &self.file.0
    }

    /// Serves on a new thread (`postern-admin`, with `stack_size`) and its own runtime, as
    /// [`AdminSocket::serve`], until [`AdminThread::stop`] or the handle is dropped.
    pub fn spawn_thread(
        self,
        commands: Arc<dyn AdminCommands>,
        limits: Limits,
        grace: Duration,
        stack_size: usize,
    ) -> std::io::Result<AdminThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (done, finished) = tokio::sync::oneshot::channel();
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let path = self.path().to_path_buf();
        std::thread::Builder::new()
            .name("postern-admin".into())
            .stack_size(stack_size)
            .spawn(move || {
                runtime.block_on(self.serve(commands, limits, shutdown, grace));
                // What commands left behind (a connection going back to its pool) gets a
                // moment; the grace above has passed already.
                runtime.shutdown_timeout(Duration::from_secs(1));
                let _ = done.send(());
            })?;
        Ok(AdminThread {
            stop,
            finished: Some(finished),
            path,
        })
    }

    /// Serves until `shutdown`; then removes the socket and gives commands in flight `grace`
    /// to finish. Runs on the runtime it is polled on.
    pub async fn serve(
        self,
        commands: Arc<dyn AdminCommands>,
        limits: Limits,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        let connections = Arc::new(Semaphore::new(limits.max_connections));
        let running = Arc::new(Semaphore::new(limits.max_commands));
        let limits = Arc::new(limits);
        let tasks = TaskTracker::new();
        let Self {
            listener,
            file,
            server_uid,
        } = self;
        let listener = match UnixListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, socket = %file.0.display(), "admin socket: cannot serve; commands on the command line will fail while this server runs");
                return;
            }
        };
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(connection) = connections.clone().try_acquire_owned() else {
                let limit = limits.max_connections;
                tasks.spawn(async move {
                    let mut stream = stream;
                    let refusal = Answer::refused(format!(
                        "the server has {limit} admin connections open already; try again in a \
                         moment"
                    ));
                    answer(&mut stream, &refusal, Duration::from_secs(5)).await;
                });
                continue;
            };
            let (commands, running, limits) = (commands.clone(), running.clone(), limits.clone());
            tasks.spawn(async move {
                serve_connection(stream, server_uid, &*commands, &running, &limits).await;
                drop(connection);
            });
        }
        drop(listener);
        drop(file);
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(
                "admin commands still running at shutdown were left to stop with the process"
            );
        }
    }
}

/// The thread serving the admin socket.
pub struct AdminThread {
    stop: CancellationToken,
    finished: Option<tokio::sync::oneshot::Receiver<()>>,
    path: PathBuf,
}

impl AdminThread {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, removes the socket, waits for the commands in flight (within the
    /// grace given at spawn).
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(finished) = self.finished.take() {
            let _ = finished.await;
        }
    }
}

impl Drop for AdminThread {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One connection: who it is, its request, a slot, the command, the answer.
async fn serve_connection(
    mut stream: UnixStream,
    server_uid: u32,
    commands: &dyn AdminCommands,
    running: &Arc<Semaphore>,
    limits: &Limits,
) {
    let refuse = |message: String| Answer::refused(message);
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(e) => {
            tracing::warn!(error = %e, "admin socket: cannot tell who connected; refused");
            return;
        }
    };
    if uid != server_uid && uid != 0 {
        tracing::warn!(uid, "admin socket: refused a peer of another user");
        let refusal = refuse(format!(
            "the admin socket accepts only the user running `postern serve` (uid {server_uid}) \
             and root, not uid {uid}: run this command as that user"
        ));
        answer(&mut stream, &refusal, limits.write_timeout).await;
        return;
    }
    let mut reader = BufReader::new(&mut stream);
    let read = protocol::read_request(&mut reader, limits.max_request);
    let request = match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(Ok(request)) => {
            drop(reader);
            request
        }
        Ok(Err(e)) => {
            drop(reader);
            let message = match e {
                ProtocolError::TooLarge { limit } => format!(
                    "the command is larger than the {limit} bytes the admin socket accepts \
                     (with its standard input); pass a file instead"
                ),
                other => format!("bad admin request: {other}"),
            };
            answer(&mut stream, &refuse(message), limits.write_timeout).await;
            return;
        }
        Err(_) => {
            drop(reader);
            let message = format!(
                "no whole command arrived within {} s",
                limits.read_timeout.as_secs()
            );
            answer(&mut stream, &refuse(message), limits.write_timeout).await;
            return;
        }
    };
    let slot = match tokio::time::timeout(limits.queue_timeout, running.acquire()).await {
        Ok(Ok(slot)) => slot,
        _ => {
            let message = format!(
                "the server is running {} admin commands already and none finished within {} s; \
                 try again later",
                limits.max_commands,
                limits.queue_timeout.as_secs()
            );
            answer(&mut stream, &refuse(message), limits.write_timeout).await;
            return;
        }
    };
    crate::metrics::admin_command();
    let result = match tokio::time::timeout(limits.command_timeout, commands.run(request)).await {
        Ok(result) => result,
        Err(_) => refuse(format!(
            "the command ran longer than {} s and was stopped; what it committed before stays",
            limits.command_timeout.as_secs()
        )),
    };
    drop(slot);
    answer(&mut stream, &result, limits.write_timeout).await;
}

async fn answer<W: AsyncWrite + Unpin>(stream: &mut W, answer: &Answer, timeout: Duration) {
    match tokio::time::timeout(timeout, protocol::write_answer(stream, answer)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "admin socket: the client left before its answer")
        }
        Err(_) => tracing::warn!("admin socket: the client did not read its answer in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::AsyncWriteExt;

    /// Sleeps as many milliseconds as its first argument says, then answers its arguments.
    struct Sleeper;

    impl AdminCommands for Sleeper {
        fn run(&self, request: Request) -> Pin<Box<dyn Future<Output = Answer> + Send + '_>> {
            Box::pin(async move {
                let ms = request.argv[1].parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Answer {
                    status: 0,
                    stdout: request.argv.join(" ").into_bytes(),
                    stderr: String::new(),
                }
            })
        }
    }

    async fn ask(path: PathBuf, ms: u64) -> Answer {
        let mut stream = UnixStream::connect(&path).await.expect("connect");
        let request = protocol::encode_request(&Request {
            v: protocol::VERSION,
            argv: vec!["postern".into(), ms.to_string()],
            cwd: "/".into(),
            stdin: None,
        });
        stream.write_all(&request).await.expect("send");
        protocol::read_answer(&mut BufReader::new(stream))
            .await
            .expect("answer")
    }

    #[tokio::test]
    async fn commands_wait_for_a_slot_are_bounded_and_the_socket_goes_at_shutdown() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = socket_path(&dir.path().join("postern.db"));
        std::fs::write(&path, b"left by a stopped server").expect("stale file");
        let socket = AdminSocket::bind(&path).expect("bind over the stale file");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let limits = Limits {
            max_commands: 1,
            queue_timeout: Duration::from_millis(300),
            command_timeout: Duration::from_secs(1),
            ..Limits::default()
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(socket.serve(
            Arc::new(Sleeper),
            limits,
            shutdown.clone(),
            Duration::from_secs(1),
        ));

        let first = tokio::spawn(ask(path.clone(), 800));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = ask(path.clone(), 0).await;
        assert_eq!(second.status, 1);
        assert!(
            second.stderr.contains("running 1 admin commands already"),
            "{}",
            second.stderr
        );
        let first = first.await.expect("first");
        assert_eq!((first.status, &first.stdout[..]), (0, &b"postern 800"[..]));

        let long = ask(path.clone(), 5_000).await;
        assert_eq!(long.status, 1);
        assert!(
            long.stderr.contains("ran longer than 1 s"),
            "{}",
            long.stderr
        );

        shutdown.cancel();
        server.await.expect("serve");
        assert!(!path.exists(), "removed at shutdown");
    }
}

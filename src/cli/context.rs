//! Where a command's output goes and what its inputs mean. A command runs either here, for
//! the terminal that started it, or inside `postern serve` for a `postern` process that sent
//! it over the admin socket (cli/remote.rs). The command code is the same: it prints with
//! [`outln!`]/[`errln!`]/[`write_out`], reads files through [`resolve`] and standard input
//! through [`read_stdin`], and opens the database with `open_store`. Outside a remote run
//! these are stdout, stderr, the process's own directory and stdin; inside one, they are
//! buffers that go back to the client, the client's directory, the standard input the client
//! sent, and the server's own store.

use crate::store::Store;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A command run for a client of the admin socket.
pub(crate) struct RemoteRun {
    pub(crate) out: Mutex<Vec<u8>>,
    pub(crate) err: Mutex<String>,
    /// The client's working directory: relative paths are relative to it.
    cwd: PathBuf,
    /// What the client read from its standard input, if the command reads it.
    stdin: Mutex<Option<String>>,
    /// The server's store: a remote command writes through the server's writer.
    store: Store,
}

impl RemoteRun {
    pub(crate) fn new(cwd: PathBuf, stdin: Option<String>, store: Store) -> Arc<Self> {
        Arc::new(Self {
            out: Mutex::new(Vec::new()),
            err: Mutex::new(String::new()),
            cwd,
            stdin: Mutex::new(stdin),
            store,
        })
    }

    /// Everything the command wrote: (stdout, stderr).
    pub(crate) fn take_output(&self) -> (Vec<u8>, String) {
        let out = self.out.lock().map(|mut o| std::mem::take(&mut *o));
        let err = self.err.lock().map(|mut e| std::mem::take(&mut *e));
        (out.unwrap_or_default(), err.unwrap_or_default())
    }
}

tokio::task_local! {
    static REMOTE: Arc<RemoteRun>;
}

/// Runs `command` for a client of the admin socket: its output goes into `run`.
pub(crate) async fn run_remote<F: std::future::Future>(
    run: Arc<RemoteRun>,
    command: F,
) -> F::Output {
    REMOTE.scope(run, command).await
}

fn with_remote<T>(f: impl FnOnce(&RemoteRun) -> T) -> Option<T> {
    REMOTE.try_with(|r| f(r)).ok()
}

/// Standard output of the command: bytes as they are (`message raw`).
pub(crate) fn write_out(bytes: &[u8]) -> std::io::Result<()> {
    let remote = with_remote(|r| {
        if let Ok(mut out) = r.out.lock() {
            out.extend_from_slice(bytes);
        }
    });
    match remote {
        Some(()) => Ok(()),
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), bytes),
    }
}

/// One line of text on the command's standard output (what `println!` was).
pub(crate) fn out_line(args: std::fmt::Arguments<'_>) {
    let remote = with_remote(|r| {
        if let Ok(mut out) = r.out.lock() {
            out.extend_from_slice(format!("{args}\n").as_bytes());
        }
    });
    if remote.is_none() {
        println!("{args}");
    }
}

/// One line of text on the command's standard error (notes beside the output).
pub(crate) fn err_line(args: std::fmt::Arguments<'_>) {
    let remote = with_remote(|r| {
        if let Ok(mut err) = r.err.lock() {
            err.push_str(&format!("{args}\n"));
        }
    });
    if remote.is_none() {
        eprintln!("{args}");
    }
}

/// `println!` for commands: see the module documentation.
macro_rules! outln {
    () => {
        $crate::cli::context::out_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::context::out_line(format_args!($($arg)*))
    };
}

/// `eprintln!` for commands: see the module documentation.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::context::err_line(format_args!($($arg)*))
    };
}

/// A path given on the command line, as the command must open it: relative to the
/// client's working directory when the command runs for a client.
pub(crate) fn resolve(path: &Path) -> PathBuf {
    with_remote(|r| r.cwd.join(path)).unwrap_or_else(|| path.to_path_buf())
}

/// The command's standard input as text (read once).
pub(crate) fn read_stdin() -> Result<String> {
    match with_remote(|r| r.stdin.lock().ok().and_then(|mut s| s.take())) {
        Some(Some(text)) => Ok(text),
        Some(None) => bail!(
            "this command's standard input did not reach the server; pass a file instead of \"-\""
        ),
        None => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            Ok(text)
        }
    }
}

/// The server's store when the command runs for a client of the admin socket.
pub(crate) fn server_store() -> Option<Store> {
    with_remote(|r| r.store.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_callers_own_outside_a_remote_run() {
        assert_eq!(
            resolve(Path::new("rules.toml")),
            PathBuf::from("rules.toml")
        );
        assert!(server_store().is_none());
    }
}

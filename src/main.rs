//! The `postern` command line: parse, dispatch to `postern::cli`, and print the one-line
//! error with a non-zero exit status.

use clap::Parser;
use postern::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::ParseProbe) {
        // No runtime, no settings: one small process that may die on a message.
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        if let Err(e) = postern::ingest::parse_probe::serve_probe(stdin, stdout) {
            eprintln!("postern parse-probe: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(postern::ingest::PARSE_THREAD_STACK)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("postern: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(postern::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postern: {}", postern::cli::error_line(&e));
            // As before: no wait for the runtime's blocking threads on the way out.
            std::process::exit(1)
        }
    }
}

//! The `splitdns` binary: parse the command line, set up logging, run, map the result to an
//! exit code. Everything else lives in the library.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use splitdns::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // A panic in any thread ends the process, in every build (release also sets
    // `panic = "abort"`): a dead worker thread would otherwise leave its SO_REUSEPORT socket
    // receiving queries that nobody answers. kubelet restarts the container.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let cli = Cli::parse();
    if let Some(Command::Check { path }) = cli.command {
        return match splitdns::check_mapping(&path) {
            // A closed stdout/stderr must not panic a CLI run either: write, ignore errors.
            Ok(summary) => {
                let _ = writeln!(std::io::stdout(), "{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "{e}");
                ExitCode::FAILURE
            }
        };
    }
    let serve = cli.serve;
    init_tracing(serve.log_level.as_deref(), serve.log_format);
    let result = serve
        .into_config()
        .map_err(anyhow::Error::from)
        .and_then(|config| splitdns::run(config).map_err(anyhow::Error::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every error of ours carries its cause in its own message.
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(level: Option<&str>, format: LogFormat) {
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // When stderr is gone (log collector died, pipe closed) tracing would report that on
        // stderr with eprintln!, which panics: a lost log line must never stop the DNS.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

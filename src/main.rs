//! The `splitdns` binary: parse the command line, set up logging, run, map the result to an
//! exit code. Everything else lives in the library.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use splitdns::cli::{Cli, Command, LogFormat};
use tracing_subscriber::filter::Targets;

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

/// Logging to stderr. The filter is `Targets` (`info`, `splitdns=debug,warn`, ...), the
/// `RUST_LOG` syntax without span and field filters: `EnvFilter` compiles regular expressions at
/// start-up, which alone kept a few hundred KiB of code resident for the life of the process.
fn init_tracing(level: Option<&str>, format: LogFormat) {
    let spec = level
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter: Targets = match spec.parse() {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "splitdns: ignoring log filter {spec:?}: {e}"
            );
            Targets::new().with_default(tracing::Level::INFO)
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // When stderr is gone (log collector died, pipe closed) tracing would report that on
        // stderr with eprintln!, which panics: a lost log line must never stop the DNS.
        .log_internal_errors(false);
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    match format {
        LogFormat::Text => builder.finish().with(filter).init(),
        LogFormat::Json => builder.json().finish().with(filter).init(),
    }
}

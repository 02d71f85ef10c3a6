//! `loadtest`: Telemed's load and network test tools. One subcommand per tool; see `--help`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Telemed load and network test tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Emulate a slow line (rate, queue, delay, jitter, loss) between UDP clients and a server.
    Link(Box<cli::link::LinkArgs>),
    /// Run a bandwidth-adaptation scenario through a real relay with media bots and report it.
    Bwe(cli::bwe::BweArgs),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Link(args) => cli::link::run(*args).await,
        Command::Bwe(args) => cli::bwe::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `ferry`: run the sync engine (`ferry run`).

mod chain;
mod config;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Sync kcp workspaces to Kubernetes clusters through Wasm plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sync engine until interrupted.
    Run(run::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One readable message with its causes; no backtrace.
            eprintln!("error: {err:#}");
            ExitCode::from(err.downcast_ref::<config::ConfigError>().map_or(1, |_| 2))
        }
    }
}

//! `ferry`: run the sync engine (`ferry run`), and write, test and try plugins
//! (`ferry plugin test|run|new`).

mod chain;
mod check;
mod config;
mod plugin;
mod plugin_lookup;
mod preview;
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
    /// Write, test and try plugins without a cluster.
    Plugin(plugin::Args),
    /// Show what Ferry would place where, and how each copy differs from what is live,
    /// without writing anything.
    Preview(preview::Args),
    /// Audit both sides: report copies missing, orphaned, divergent or duplicated, stale
    /// statuses and stuck finalizers. Read-only; exit code 0 when clean, 1 when not.
    Check(check::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::main(args),
        Command::Plugin(args) => plugin::main(args),
        Command::Preview(args) => preview::main(args),
        Command::Check(args) => match check::main(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(err) => Err(err),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `ferry plugin` failures are phrased for the user already, with their own code.
            if let Some(failure) = err.downcast_ref::<plugin::Failure>() {
                eprintln!("error: {failure}");
                return ExitCode::from(failure.code);
            }
            // One readable message with its causes; no backtrace.
            eprintln!("error: {err:#}");
            ExitCode::from(err.downcast_ref::<config::ConfigError>().map_or(1, |_| 2))
        }
    }
}

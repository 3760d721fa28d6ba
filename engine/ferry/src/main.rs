//! `ferry`: run the sync engine (`ferry run`), and write, test and try plugins
//! (`ferry plugin test|run|new`).

mod chain;
mod check;
mod config;
mod endpoint;
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
            // A configuration error lists one problem per line under its header.
            if err.downcast_ref::<config::ConfigError>().is_some() {
                eprintln!("error: {err:#}");
                return ExitCode::from(2);
            }
            // One readable line with its causes; no backtrace.
            eprintln!("error: {}", one_line(&format!("{err:#}")));
            ExitCode::from(1)
        }
    }
}

/// `text` on one line: a cause may print a multi-line dump (wasmtime shows the bytes it
/// expected as a pretty-printed array), which would break the one-line `error:` message.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_multi_line_cause_is_shown_on_one_line() {
        let text = "resources[0].transform: loading plugin x.wasm: magic header not detected: \
                    expected=[\n    0x0,\n    0x61,\n] (at offset 0x0)";
        assert_eq!(
            super::one_line(text),
            "resources[0].transform: loading plugin x.wasm: magic header not detected: \
             expected=[ 0x0, 0x61, ] (at offset 0x0)"
        );
        assert_eq!(super::one_line("already one line"), "already one line");
    }
}

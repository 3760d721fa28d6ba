//! `ferry`: run the sync engine (`ferry run`), audit it (`preview`, `check`), remove it
//! (`uninstall`), and write, test and try plugins (`ferry plugin test|run|new|record`).

mod chain;
mod check;
mod config;
mod endpoint;
mod live_chain;
mod logging;
mod plugin;
mod plugin_lookup;
mod preview;
mod recording_chain;
mod reload;
mod run;
mod uninstall;

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
    /// Log format on stderr: `text` for people, `json` (one object per line) for log
    /// pipelines.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "FERRY_LOG_FORMAT"
    )]
    log_format: logging::LogFormat,
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
    /// Remove Ferry's finalizer from every upstream object (tenants' deletes then complete
    /// without Ferry) and, with --delete-copies, its copies and namespaces on every target.
    /// Stop Ferry first. Exit code 0 when done, 1 when a step failed, 2 on bad input.
    Uninstall(uninstall::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `plugin` subcommands print their own reports and do not log.
    let logs = match &cli.command {
        Command::Run(_) => Some("info,kube=warn"),
        Command::Preview(_) | Command::Check(_) | Command::Uninstall(_) => Some("warn"),
        Command::Plugin(_) => None,
    };
    if let Some(default_filter) = logs {
        logging::init(cli.log_format, default_filter);
    }
    let json = logs.is_some() && cli.log_format == logging::LogFormat::Json;
    let result = match cli.command {
        Command::Run(args) => run::main(args),
        Command::Plugin(args) => plugin::main(args),
        Command::Preview(args) => preview::main(args),
        Command::Check(args) => match check::main(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(err) => Err(err),
        },
        Command::Uninstall(args) => match uninstall::main(args) {
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
            // A log pipeline reads the reason the process ended like any other line.
            if json {
                tracing::error!(error = %format!("{err:#}"), "stopped");
                let config = err.downcast_ref::<config::ConfigError>().is_some();
                return ExitCode::from(if config { 2 } else { 1 });
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

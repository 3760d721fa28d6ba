//! `cargo xtask`: the project's own build, environment and test commands.
//!
//! Everything a developer or CI runs goes through here so that the README, CI and the
//! scripts can never disagree about how something is done.

mod bench;
mod chaos;
mod env;
mod gobuild;
mod kwok;
mod languages;
mod paths;
mod pki;
mod plugins;
mod schemas;
mod shards;
mod syncagent;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Ferry's project commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the local test environment: one kcp and two Kubernetes API servers on loopback.
    Env {
        #[command(subcommand)]
        action: env::Action,
    },
    /// Build the Wasm plugins (first-party and test fixtures) into components.
    Plugins(plugins::Args),
    /// The plugin loop in every language through the `ferry` CLI: the Python and JavaScript
    /// ports of label-placement pass its golden cases, and `ferry plugin new/build/test`
    /// passes for Python, JavaScript and Rust in a temporary folder.
    Languages,
    /// Run a benchmark and print its table (`cargo xtask bench plugins`).
    Bench(bench::Args),
    /// Lint, bring the environment up if needed, run every test, bring it down again.
    Test(test::Args),
    /// Check formatting and run clippy (warnings are errors) on the host and plugins workspaces.
    Lint,
    /// Churn under faults (Ferry killed, API servers paused and restarted, kcp restarted),
    /// then require convergence and check every copy.
    Chaos(chaos::Args),
    /// Quick start: environment up, then a short tour of what Ferry builds on.
    Demo,
    /// Regenerate the APIResourceSchemas in examples/provider from Kubernetes' OpenAPI.
    GenSchemas,
}

fn main() -> std::process::ExitCode {
    // Errors are for people: the whole cause chain on one screen, no backtrace.
    match dispatch(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Env { action } => env::run(action),
        Command::Plugins(args) => plugins::run(args),
        Command::Languages => languages::run(),
        Command::Bench(args) => bench::run(args),
        Command::Test(args) => test::run(args),
        Command::Lint => test::lint(),
        Command::Chaos(args) => chaos::run(args),
        Command::Demo => test::demo(),
        Command::GenSchemas => schemas::run(),
    }
}

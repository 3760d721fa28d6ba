//! `cargo xtask bench <what>`: benchmarks that print tables. They assert nothing; the numbers
//! go into notes and docs, where a reader can judge them against the machine they ran on.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};

use crate::plugins;

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Wasm transform per object (fresh and reused instance) beside the same logic in native
    /// Rust, with instantiation and compile times.
    Plugins {
        /// Calls measured per row.
        #[arg(long, default_value_t = 2000)]
        iterations: u32,
    },
    /// First sync of 100 objects in 5 workspaces to 2 clusters, on the real environment:
    /// time until every copy exists and every status is back, and the writes it took.
    Sync,
}

/// Runs a benchmark.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.what {
        What::Plugins { iterations } => {
            // The benchmark measures the components the build produces; build them first.
            plugins::run(plugins::Args::default())?;
            let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(repo_root())
                .args(["bench", "--package", "ferry-wasm", "--bench", "plugins"])
                .env("FERRY_BENCH_ITERATIONS", iterations.to_string())
                .status()
                .context("running cargo bench")?;
            ensure!(status.success(), "the plugin benchmark failed ({status})");
            Ok(())
        }
        What::Sync => {
            plugins::run(plugins::Args::default())?;
            let env = crate::env::up()?;
            let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(&cargo)
                .current_dir(repo_root())
                .args(["build", "--package", "ferry"])
                .status()
                .context("running cargo build")?;
            ensure!(status.success(), "building ferry failed ({status})");
            // The end-to-end scale test measures and prints; --nocapture shows its numbers.
            let status = Command::new(&cargo)
                .current_dir(repo_root())
                .args([
                    "test",
                    "--package",
                    "ferry-e2e",
                    "--test",
                    "scale",
                    "--",
                    "--nocapture",
                ])
                .env("FERRY_ENV_DIR", &env.dir)
                .env("FERRY_E2E", "required")
                .status()
                .context("running the scale test")?;
            ensure!(status.success(), "the sync benchmark failed ({status})");
            Ok(())
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

//! `cargo xtask chaos`: churn across tenant workspaces while Ferry is killed, target API
//! servers are paused and restarted and kcp is restarted; then convergence is required and
//! every copy checked (see `tests/e2e/src/bin/chaos.rs` for what is done and checked).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{env, paths};

/// Options of `cargo xtask chaos`.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Minutes of churn (faults happen during churn only).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Tenant workspaces.
    #[arg(long, default_value_t = 4)]
    workspaces: usize,
    /// At most this many objects alive at once.
    #[arg(long, default_value_t = 40)]
    objects: usize,
    /// Seed of the churn and fault sequence (default: from the clock; printed at the start).
    #[arg(long)]
    seed: Option<u64>,
    /// Leave the environment running afterwards (it is stopped by default if this run started it).
    #[arg(long)]
    keep_env: bool,
}

impl Args {
    /// The short run `cargo xtask test` ends with: about three minutes of churn.
    pub fn short() -> Self {
        Self {
            minutes: 3.0,
            workspaces: 4,
            objects: 40,
            seed: None,
            keep_env: true,
        }
    }
}

/// Builds the plugins, brings the environment up if needed, runs the chaos run, and brings the
/// environment down again if this run started it (its servers were killed and restarted; the
/// data stays in the environment directory until the next `env up`).
pub fn run(args: Args) -> Result<()> {
    crate::plugins::run(crate::plugins::Args::default())?;
    let was_running = crate::test::env_running();
    let env = env::up()?;
    let result = run_in(&env.dir, &args);
    if !was_running && !args.keep_env {
        env::down()?;
    }
    result
}

/// Builds `ferry` and the chaos binary and runs it against the environment in `env_dir`.
pub fn run_in(env_dir: &Path, args: &Args) -> Result<()> {
    eprintln!("==> building ferry and the chaos run");
    crate::test::build_binaries()?;
    // Ferry is restarted many times during the run: a private copy keeps every restart on the
    // same binary even if the target directory is rebuilt meanwhile.
    let debug = paths::target_dir().join("debug");
    let run_dir = env_dir.join("chaos");
    std::fs::create_dir_all(&run_dir)?;
    let ferry = run_dir.join("ferry");
    std::fs::copy(debug.join("ferry"), &ferry).context("copying the ferry binary")?;
    let xtask = std::env::current_exe().context("locating the xtask binary")?;
    let mut command = Command::new(debug.join("chaos"));
    command
        .args(["--minutes", &args.minutes.to_string()])
        .args(["--workspaces", &args.workspaces.to_string()])
        .args(["--objects", &args.objects.to_string()])
        .env("FERRY_ENV_DIR", env_dir)
        .env("FERRY_E2E", "required")
        .env("FERRY_BIN", &ferry)
        .env("FERRY_PLUGIN_DIR", paths::target_dir().join("plugins"))
        .env("FERRY_XTASK", xtask);
    if let Some(seed) = args.seed {
        command.args(["--seed", &seed.to_string()]);
    }
    eprintln!(
        "==> chaos: {} min of churn, {} workspaces, at most {} objects",
        args.minutes, args.workspaces, args.objects
    );
    let status = command.status().context("running the chaos binary")?;
    if !status.success() {
        bail!("the chaos run failed (its output above says why)");
    }
    Ok(())
}

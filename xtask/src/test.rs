//! `cargo xtask test` and `cargo xtask demo`.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{env, paths};

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct Args {
    /// Leave the environment running afterwards (it is stopped by default if this run started it).
    #[arg(long)]
    keep_env: bool,
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

/// Builds the plugins, brings the environment up if needed, runs every test of the workspace, and brings the
/// environment down again if this run started it (also when tests fail).
pub fn run(args: Args) -> Result<()> {
    // Components first: the runtime's tests and golden cases load them.
    crate::plugins::run(crate::plugins::Args::with_guest_tests())?;
    let was_running = env_running();
    let env = env::up()?;
    let result = cargo_test(&env.dir, &args.cargo_args);
    if !was_running && !args.keep_env {
        env::down()?;
    }
    result
}

fn env_running() -> bool {
    // `env up` reuses a healthy environment; remember whether there was one so we only stop
    // what we started.
    paths::env_dir().join("state.json").exists()
        && env::kubectl(
            &paths::env_dir().join("kcp.kubeconfig"),
            &["get", "--raw", "/readyz"],
        )
        .is_ok()
}

fn cargo_test(env_dir: &std::path::Path, extra: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // End-to-end tests run the real binary, which `cargo test` does not build for another
    // package's tests.
    eprintln!("==> cargo build -p ferry");
    let status = Command::new(&cargo)
        .current_dir(paths::repo_root())
        .args(["build", "--package", "ferry"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building ferry failed");
    }
    eprintln!("==> cargo test --workspace");
    let status = Command::new(cargo)
        .current_dir(paths::repo_root())
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(extra)
        .env("FERRY_ENV_DIR", env_dir)
        // End-to-end tests fail (rather than skip) when the environment is missing.
        .env("FERRY_E2E", "required")
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("tests failed");
    }
    Ok(())
}

/// The quick start: environment up, then a guided tour of the kcp model Ferry builds on.
pub fn demo() -> Result<()> {
    let env = env::up()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!(
        "==> touring the kcp model (provider workspace, export, tenant binding, virtual workspace)"
    );
    let status = Command::new(cargo)
        .current_dir(paths::repo_root())
        .args([
            "run",
            "--quiet",
            "--package",
            "ferry-e2e",
            "--bin",
            "kcp-tour",
        ])
        .env("FERRY_ENV_DIR", &env.dir)
        .status()
        .context("running the tour")?;
    if !status.success() {
        bail!("the tour failed");
    }
    eprintln!("==> the environment keeps running; stop it with `cargo xtask env down`");
    Ok(())
}

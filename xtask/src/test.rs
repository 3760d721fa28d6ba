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

/// The quick start: environment up, plugins built, a provider and two tenant workspaces, Ferry
/// started, a Deployment applied in a tenant workspace and followed to both clusters and back.
/// Everything keeps running afterwards; `cargo xtask env down` stops it.
pub fn demo() -> Result<()> {
    let env = env::up()?;
    crate::plugins::run(crate::plugins::Args::default())?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> building ferry");
    let status = Command::new(&cargo)
        .current_dir(paths::repo_root())
        .args([
            "build",
            "--quiet",
            "--package",
            "ferry",
            "--package",
            "ferry-e2e",
            "--bins",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building ferry failed");
    }
    let bin = |name: &str| paths::target_dir().join("debug").join(name);
    let demo = |step: &str| -> Result<()> {
        let status = Command::new(bin("demo"))
            .arg(step)
            .env("FERRY_ENV_DIR", &env.dir)
            .status()
            .with_context(|| format!("running the demo's {step} step"))?;
        if !status.success() {
            bail!("the demo's {step} step failed");
        }
        Ok(())
    };
    eprintln!("==> setting up kcp: a provider workspace and two tenant workspaces");
    demo("setup")?;

    // examples/ferry.yaml, with the environment's actual location.
    let example = std::fs::read_to_string(paths::repo_root().join("examples/ferry.yaml"))?;
    let config_dir = env.dir.join("demo");
    std::fs::create_dir_all(&config_dir)?;
    let config = config_dir.join("ferry.yaml");
    std::fs::write(
        &config,
        example.replace("../target/ferry-env/", &format!("{}/", env.dir.display())),
    )?;
    eprintln!(
        "==> starting Ferry with examples/ferry.yaml (copied to {})",
        config.display()
    );
    let log = env::start_service(
        "ferry",
        &bin("ferry"),
        &[
            "run".into(),
            "--config".into(),
            config.display().to_string(),
        ],
    )?;
    eprintln!("    Ferry runs in the background; log: {}", log.display());
    demo("show")
}

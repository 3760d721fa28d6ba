//! `cargo xtask test`, `cargo xtask lint` and `cargo xtask demo`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{env, paths};

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct Args {
    /// Leave the environment running afterwards (it is stopped by default if this run started it).
    #[arg(long)]
    keep_env: bool,
    /// Skip the lint steps (`cargo xtask lint`: formatting and clippy) for quick local
    /// iterations. CI never skips them.
    #[arg(long)]
    no_lint: bool,
    /// Skip the short chaos run that ends a successful test run (`cargo xtask chaos`).
    #[arg(long)]
    no_chaos: bool,
    /// Skip the two-shard pass (the sync, shard and replica tests on `env up --shards 2`) that follows
    /// a successful run.
    #[arg(long)]
    no_shards: bool,
    /// Skip the plugin loop in every language (`cargo xtask languages`: the Python and
    /// JavaScript ports against the golden cases, `ferry plugin new/build/test` for Python,
    /// JavaScript and Rust). CI never skips it.
    #[arg(long)]
    no_languages: bool,
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

/// Lints both workspaces, builds the plugins, brings the environment up if needed, runs every
/// test of the workspace, then (if they all passed) a short chaos run, and brings the
/// environment down again if this run started it (also when tests fail).
pub fn run(args: Args) -> Result<()> {
    // Lints first: a formatting or clippy failure then costs seconds to minutes, not a plugin
    // build, an environment and a full test run.
    if !args.no_lint {
        lint()?;
    }
    // Components first: the runtime's tests and golden cases load them.
    crate::plugins::run(crate::plugins::Args::with_guest_tests())?;
    // Before the environment: it needs no servers, and a platform team's first steps
    // (`ferry plugin new`, `build`, `test`) must work in every language from a clean clone.
    if !args.no_languages {
        crate::languages::run()?;
    }
    let was_running = env_running();
    let env = env::up()?;
    let mut result = cargo_test(&env.dir, &args.cargo_args);
    // Last, and only after every test passed: the chaos run kills and restarts the servers.
    if result.is_ok() && !args.no_chaos {
        result = crate::chaos::run_in(&env.dir, &crate::chaos::Args::short());
    }
    if !was_running && !args.keep_env {
        env::down()?;
    }
    // Then the core scenarios and the shard tests once more on a two-shard kcp, in an
    // environment of its own (started after the first one stopped: the machine holds one).
    if result.is_ok() && !args.no_shards {
        result = sharded_pass(&args);
    }
    result
}

/// Test files run again on a two-shard kcp: the core sync scenarios (tenants spread over
/// both shards by the harness), the shard-specific tests and the replicas that share the
/// work (about 2 minutes), which skip on one shard.
pub const SHARDED_TESTS: [&str; 3] = ["sync", "shards", "replicas"];

/// The environment directory of the two-shard pass: beside the single-shard one.
pub fn sharded_env_dir() -> PathBuf {
    let dir = paths::env_dir();
    let name = dir
        .file_name()
        .map_or_else(|| "ferry-env".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!("{name}-shards"))
}

/// `env up --shards 2` in [`sharded_env_dir`], [`SHARDED_TESTS`], then down again (unless
/// `--keep-env`).
fn sharded_pass(args: &Args) -> Result<()> {
    let dir = sharded_env_dir();
    eprintln!(
        "==> two-shard pass: {} on a sharded kcp in {}",
        SHARDED_TESTS.join(", "),
        dir.display()
    );
    let env = env::up_in(dir, 2)?;
    let mut extra = Vec::new();
    for test in SHARDED_TESTS {
        extra.extend(["--test".to_string(), test.to_string()]);
    }
    extra.extend(args.cargo_args.iter().cloned());
    let result = cargo_test_in(&env.dir, &["--package", "ferry-e2e"], &extra);
    if !args.keep_env {
        env::down_in(&env.dir)?;
    }
    result
}

/// A cargo workspace to lint.
struct Workspace {
    name: &'static str,
    dir: PathBuf,
    /// Its own target directory, if it must not share the host's.
    target_dir: Option<PathBuf>,
}

impl Workspace {
    /// Runs `cargo <args>` in the workspace; whether it succeeded.
    fn cargo(&self, args: &[&str]) -> Result<bool> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("==> cargo {} ({})", args.join(" "), self.name);
        let mut command = Command::new(cargo);
        command.current_dir(&self.dir).args(args);
        if let Some(dir) = &self.target_dir {
            command.env("CARGO_TARGET_DIR", dir);
        }
        let status = command
            .status()
            .with_context(|| format!("running cargo {}", args.join(" ")))?;
        Ok(status.success())
    }
}

/// `cargo xtask lint`: `cargo fmt --check` and `cargo clippy -D warnings` on the host workspace
/// and on the plugins workspace (`plugins/`, whose members include `tests/plugins/*` and
/// `examples/custom-placement`). Formatting is checked first and stops the run on its own: it
/// takes seconds and `cargo fmt --all` fixes it. Both clippy runs always run, so one run lists
/// every warning.
pub fn lint() -> Result<()> {
    let root = paths::repo_root();
    let host = Workspace {
        name: "host workspace",
        dir: root.clone(),
        target_dir: None,
    };
    // The guests are linted natively, for the host target, with the project's toolchain: they
    // are plain Rust plus wit-bindgen glue that compiles on any target (their unit tests run
    // natively too, see `cargo xtask plugins --test`), and no code is behind a wasm32 `cfg`,
    // so a native clippy sees all of it. The Wasm build routes cannot do better: rustup's
    // wasm32-wasip2 target is not installable on CI's machines, and the Debian route's
    // toolchain (Rust 1.96, `-Zbuild-std`) would need its own clippy package, rebuild std,
    // and lint with another clippy than the host workspace's. Same target directory as the
    // guests' native unit tests; never the host's (see `plugins.rs`).
    let guests = Workspace {
        name: "plugins workspace",
        dir: root.join("plugins"),
        target_dir: Some(paths::plugins_build_dir("plugins-host-target")),
    };
    let workspaces = [&host, &guests];

    let mut failed = Vec::new();
    for workspace in workspaces {
        if !workspace.cargo(&["fmt", "--all", "--", "--check"])? {
            failed.push(workspace.name);
        }
    }
    if !failed.is_empty() {
        bail!(
            "formatting differs in the {} (`cargo fmt --all` in the repository and in plugins/ \
             fixes it)",
            failed.join(" and the ")
        );
    }
    for workspace in workspaces {
        let clippy = [
            "clippy",
            "--workspace",
            "--all-targets",
            // Past a crate with warnings, so that one run lists them all.
            "--keep-going",
            "--",
            "-D",
            "warnings",
        ];
        if !workspace.cargo(&clippy)? {
            failed.push(workspace.name);
        }
    }
    if !failed.is_empty() {
        bail!("clippy found problems in the {}", failed.join(" and the "));
    }
    Ok(())
}

pub fn env_running() -> bool {
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
    cargo_test_in(env_dir, &["--workspace"], extra)
}

/// `cargo test <scope> --no-fail-fast <extra>` against the environment in `env_dir`.
fn cargo_test_in(env_dir: &std::path::Path, scope: &[&str], extra: &[String]) -> Result<()> {
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
    eprintln!("==> cargo test {}", scope.join(" "));
    let status = Command::new(cargo)
        .current_dir(paths::repo_root())
        .arg("test")
        .args(scope)
        .arg("--no-fail-fast")
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

/// Builds the `ferry` binary and the e2e crate's binaries (demo steps, chaos run).
pub fn build_binaries() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
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
        bail!("building ferry or the e2e binaries failed");
    }
    Ok(())
}

/// The quick start: environment up, plugins built, a provider and two tenant workspaces, Ferry
/// started, a Deployment applied in a tenant workspace and followed to both clusters and back.
/// Everything keeps running afterwards; `cargo xtask env down` stops it.
pub fn demo() -> Result<()> {
    let env = env::up()?;
    crate::plugins::run(crate::plugins::Args::default())?;
    eprintln!("==> building ferry");
    build_binaries()?;
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

//! `cargo xtask bench <what>`: benchmarks that print tables. They assert nothing; the numbers
//! go into notes and docs, where a reader can judge them against the machine they ran on.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};

use crate::{paths, plugins, syncagent};

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Wasm transform per object (fresh and reused instance) beside the same logic in native
    /// Rust, with instantiation and compile times; then a placement's cost per call and
    /// memory per instance in Rust, Python and JavaScript beside native.
    Plugins {
        /// Calls measured per row.
        #[arg(long, default_value_t = 2000)]
        iterations: u32,
    },
    /// Ferry (one target, then two), kcp's api-syncagent v0.7.0 (with upstream PR #177's
    /// status fix) and a bare-client floor, one at a time on the same kcp and target, all
    /// release builds: propagation latency under churn, status latency, cold convergence,
    /// restart, memory and CPU. Writes target/bench/sync.{json,md,png}.
    Sync(SyncArgs),
    /// Ferry's resident memory at rest (release build, one target) with several object
    /// counts in one run, and the growth per object. Writes target/bench/memory.{json,md}.
    Memory(MemoryArgs),
    /// Cold convergence of N objects with 1, 2 and 3 replicas of `ferry run --share-work`
    /// (release build) on the two-shard environment: objects/s, and per replica its share,
    /// memory, CPU and Lease traffic. Writes target/bench/replicas.{json,md}.
    Replicas(ReplicasArgs),
}

/// Options of `cargo xtask bench replicas`.
#[derive(clap::Args)]
struct ReplicasArgs {
    /// Objects (0-replica Deployments) created upstream once; every round copies them all.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Replica counts, one round each, in this order.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    replicas: Vec<usize>,
    /// Tenant workspaces the objects are spread over, alternating between the shards.
    #[arg(long, default_value_t = 12)]
    workspaces: usize,
    /// How long the replicas are measured at rest after each round.
    #[arg(long, default_value_t = 20)]
    rest_seconds: u64,
    /// Skip the unreported first round that sets finalizers and status upstream.
    #[arg(long)]
    no_prime: bool,
    /// kcp shards of the environment (2: workspaces on both; 1 where a second shard does
    /// not fit).
    #[arg(long, default_value_t = 2)]
    shards: u8,
    /// A note printed with the results (e.g. what else ran on the machine). Repeatable.
    #[arg(long)]
    note: Vec<String>,
}

/// Options of `cargo xtask bench memory`.
#[derive(clap::Args)]
struct MemoryArgs {
    /// Objects (0-replica Deployments) at each measurement, ascending; objects are only added.
    #[arg(long, value_delimiter = ',', default_value = "0,2000,10000")]
    sizes: Vec<usize>,
    /// Tenant workspaces the objects are spread over.
    #[arg(long, default_value_t = 10)]
    workspaces: usize,
    /// How long RSS is sampled at rest at each size.
    #[arg(long, default_value_t = 20)]
    rest_seconds: u64,
    /// Skip the restart at each size (the fresh process's RSS and relist peak).
    #[arg(long)]
    no_restart: bool,
    /// Another `ferry` binary restarted on the same objects at each size, as NAME=PATH
    /// (e.g. the build before a change). Repeatable.
    #[arg(long)]
    variant: Vec<String>,
    /// A note printed with the results (e.g. what else ran on the machine). Repeatable.
    #[arg(long)]
    note: Vec<String>,
}

/// Options of `cargo xtask bench sync`; the defaults take about 15 minutes on 2 cores.
#[derive(clap::Args)]
struct SyncArgs {
    /// Engines, in order: ferry (one target), ferry-2 (two), api-syncagent, raw (the floor),
    /// raw-finalizer (the floor that adds a finalizer through kcp before each copy).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ferry,ferry-2,api-syncagent,raw,raw-finalizer"
    )]
    engines: Vec<String>,
    /// Objects (Deployments) per engine.
    #[arg(long, default_value_t = 1000)]
    objects: usize,
    /// Tenant workspaces they are spread over.
    #[arg(long, default_value_t = 5)]
    workspaces: usize,
    /// Changes per second during churn.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// How long churn lasts.
    #[arg(long, default_value_t = 120)]
    churn_seconds: u64,
    /// Objects scaled to one replica to measure status latency (at most 75).
    #[arg(long, default_value_t = 50)]
    status_objects: usize,
    /// How long writes, memory and CPU are measured at rest.
    #[arg(long, default_value_t = 30)]
    rest_seconds: u64,
    /// How long writes are counted after a restart.
    #[arg(long, default_value_t = 20)]
    restart_seconds: u64,
    /// How long an engine may take to copy every object (default: 120 s plus 0.25 s per
    /// object). One that has not by then is measured on the objects it copied, and its cold
    /// figure says how far it got.
    #[arg(long)]
    cold_limit_seconds: Option<u64>,
    /// Keys added to Ferry's `engine:` section, YAML flow style (e.g. `workers: 16`), to
    /// measure a setting against the defaults; the results' plan records it.
    #[arg(long)]
    ferry_engine: Option<String>,
    /// A note printed with the results (e.g. what else ran on the machine). Repeatable.
    #[arg(long)]
    note: Vec<String>,
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
            // Then each language's cost beside Rust's and native; the Python and JavaScript
            // components come from `cargo xtask languages` (rows are skipped without them).
            let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(repo_root())
                .args(["bench", "--package", "ferry-wasm", "--bench", "languages"])
                .env(
                    "FERRY_BENCH_ITERATIONS",
                    (iterations / 4).max(50).to_string(),
                )
                .status()
                .context("running cargo bench")?;
            ensure!(
                status.success(),
                "the languages benchmark failed ({status})"
            );
            Ok(())
        }
        What::Sync(args) => sync(args),
        What::Memory(args) => memory(args),
        What::Replicas(args) => replicas(args),
    }
}

/// Release builds of `ferry` and of the benchmark binary `bench` (in the cache's target
/// directory, like every other build); returns the directory they are in.
fn release_build(bench: &str) -> anyhow::Result<PathBuf> {
    let target = paths::target_dir();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("==> building ferry and the benchmark in release mode (once; minutes on 2 cores)");
    // One build each: together, cargo would unify their dependencies' features and build a
    // `ferry` that differs from `cargo build --release -p ferry`'s.
    for (package, bin) in [("ferry", "ferry"), ("ferry-e2e", bench)] {
        let status = Command::new(&cargo)
            .current_dir(repo_root())
            .args(["build", "--release", "--package", package, "--bin", bin])
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .context("running cargo build --release")?;
        ensure!(
            status.success(),
            "the release build of {bin} failed ({status})"
        );
    }
    Ok(target.join("release"))
}

fn memory(args: MemoryArgs) -> anyhow::Result<()> {
    plugins::run(plugins::Args::default())?;
    let env = crate::env::up()?;
    let release = release_build("bench-memory")?;
    let sizes: Vec<String> = args.sizes.iter().map(ToString::to_string).collect();
    let mut bench = Command::new(release.join("bench-memory"));
    bench
        .current_dir(repo_root())
        .args(["--sizes", &sizes.join(",")])
        .args(["--workspaces", &args.workspaces.to_string()])
        .args(["--rest-seconds", &args.rest_seconds.to_string()])
        .arg("--out")
        .arg(repo_root().join("target").join("bench"))
        .args(["--note", "ferry is a release build"]);
    if args.no_restart {
        bench.arg("--no-restart");
    }
    for variant in &args.variant {
        bench.args(["--variant", variant]);
    }
    for note in &args.note {
        bench.args(["--note", note]);
    }
    let status = bench
        .env("FERRY_ENV_DIR", &env.dir)
        .env("FERRY_BIN", release.join("ferry"))
        .env("FERRY_PLUGIN_DIR", paths::target_dir().join("plugins"))
        .status()
        .context("running bench-memory")?;
    ensure!(status.success(), "the memory benchmark failed ({status})");
    Ok(())
}

fn replicas(args: ReplicasArgs) -> anyhow::Result<()> {
    ensure!(
        !args.replicas.is_empty() && !args.replicas.contains(&0),
        "--replicas must list replica counts of at least 1, e.g. 1,2,3"
    );
    plugins::run(plugins::Args::default())?;
    let env = crate::env::up_with(args.shards)?;
    let release = release_build("bench-replicas")?;
    let counts: Vec<String> = args.replicas.iter().map(ToString::to_string).collect();
    let mut bench = Command::new(release.join("bench-replicas"));
    bench
        .current_dir(repo_root())
        .args(["--objects", &args.objects.to_string()])
        .args(["--replicas", &counts.join(",")])
        .args(["--workspaces", &args.workspaces.to_string()])
        .args(["--rest-seconds", &args.rest_seconds.to_string()])
        .arg("--out")
        .arg(repo_root().join("target").join("bench"))
        .args(["--note", "ferry is a release build"]);
    if args.no_prime {
        bench.arg("--no-prime");
    }
    for note in &args.note {
        bench.args(["--note", note]);
    }
    let status = bench
        .env("FERRY_ENV_DIR", &env.dir)
        .env("FERRY_BIN", release.join("ferry"))
        .env("FERRY_PLUGIN_DIR", paths::target_dir().join("plugins"))
        .status()
        .context("running bench-replicas")?;
    ensure!(status.success(), "the replicas benchmark failed ({status})");
    Ok(())
}

fn sync(args: SyncArgs) -> anyhow::Result<()> {
    plugins::run(plugins::Args::default())?;
    let env = crate::env::up()?;
    // Release builds of the engine and of the benchmark (its watches time the engines).
    let release = release_build("bench-sync")?;
    let target = paths::target_dir();
    let mut bench = Command::new(release.join("bench-sync"));
    if args.engines.iter().any(|e| e == "api-syncagent") {
        syncagent::publish_once(&env.dir, "cluster-1")?;
        bench
            .arg("--agent-command")
            .arg(syncagent::command_file(&env.dir));
    }
    bench
        .current_dir(repo_root())
        .arg("--engines")
        .arg(args.engines.join(","))
        .args(["--objects", &args.objects.to_string()])
        .args(["--workspaces", &args.workspaces.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--churn-seconds", &args.churn_seconds.to_string()])
        .args(["--status-objects", &args.status_objects.to_string()])
        .args(["--rest-seconds", &args.rest_seconds.to_string()])
        .args(["--restart-seconds", &args.restart_seconds.to_string()])
        .arg("--out")
        .arg(repo_root().join("target").join("bench"))
        .args([
            "--note",
            "every engine is a release build; api-syncagent is v0.7.0 with the \
                two-line status fix of its upstream PR #177 applied (v0.7.0 itself never \
                writes a Deployment's status back)",
        ]);
    if let Some(limit) = args.cold_limit_seconds {
        bench.args(["--cold-limit-seconds", &limit.to_string()]);
    }
    if let Some(engine) = &args.ferry_engine {
        bench.args(["--ferry-engine", engine]);
    }
    for note in &args.note {
        bench.args(["--note", note]);
    }
    let status = bench
        .env("FERRY_ENV_DIR", &env.dir)
        .env("FERRY_BIN", release.join("ferry"))
        .env("FERRY_PLUGIN_DIR", target.join("plugins"))
        .status()
        .context("running bench-sync")?;
    ensure!(status.success(), "the sync benchmark failed ({status})");
    Ok(())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

//! Shared helpers for the end-to-end tests: finding the environment started by
//! `cargo xtask env up`, and talking to kcp workspaces, virtual workspaces and target clusters.

pub mod bench;
pub mod deploy;
pub mod ferry;
pub mod kcp;
pub mod kcp_model;
pub mod scenario;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The running test environment.
#[derive(Clone, Debug)]
pub struct Env {
    /// Directory with the kubeconfigs and state of `cargo xtask env up`.
    pub dir: PathBuf,
}

/// Names of the target clusters, as `cargo xtask env up` starts them.
pub const CLUSTERS: [&str; 2] = ["cluster-1", "cluster-2"];

impl Env {
    /// The environment named by `FERRY_ENV_DIR` (else `target/ferry-env`), if one is running.
    ///
    /// When it is not running: with `FERRY_E2E=required` (as `cargo xtask test` sets) this is an
    /// error, otherwise `None` so a plain `cargo test` skips end-to-end tests with a notice.
    pub fn get() -> Result<Option<Env>> {
        let dir = match std::env::var_os("FERRY_ENV_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ferry-env"),
        };
        let present = dir.join("state.json").exists() && dir.join("kcp.kubeconfig").exists();
        if present {
            return Ok(Some(Env { dir }));
        }
        if std::env::var("FERRY_E2E").as_deref() == Ok("required") {
            bail!(
                "no test environment in {} (run the tests with `cargo xtask test`, or start one \
                 with `cargo xtask env up`)",
                dir.display()
            );
        }
        eprintln!(
            "skipping end-to-end test: no environment in {} (use `cargo xtask test`)",
            dir.display()
        );
        Ok(None)
    }

    /// Path of the kcp admin kubeconfig.
    pub fn kcp_kubeconfig(&self) -> PathBuf {
        self.dir.join("kcp.kubeconfig")
    }

    /// Path of a target cluster's admin kubeconfig.
    pub fn cluster_kubeconfig(&self, cluster: &str) -> PathBuf {
        self.dir.join(format!("{cluster}.kubeconfig"))
    }

    /// A client for a target cluster.
    pub async fn cluster_client(&self, cluster: &str) -> Result<kube::Client> {
        client_from_kubeconfig(&self.cluster_kubeconfig(cluster), None).await
    }

    /// The kcp shards the environment runs, root first: `["root"]`, or `["root", "shard-1"]`
    /// for `cargo xtask env up --shards 2` (recorded in `state.json`).
    pub fn shards(&self) -> Result<Vec<String>> {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.join("state.json"))?)?;
        let count = state["shards"].as_u64().unwrap_or(1).max(1);
        Ok((0..count)
            .map(|i| {
                if i == 0 {
                    "root".to_string()
                } else {
                    format!("shard-{i}")
                }
            })
            .collect())
    }

    /// The shard a scenario's provider workspace is placed on: none on a single shard, else
    /// the root shard (kcp would pick one at random), so that the tests that stop `shard-1`
    /// know the export and its endpoint slice stay reachable.
    pub fn provider_shard(&self) -> Result<Option<String>> {
        let shards = self.shards()?;
        Ok((shards.len() > 1).then(|| shards[0].clone()))
    }

    /// The shard a scenario's tenant `i` is placed on: none on a single shard (kcp's
    /// default), else round robin starting with the second shard, so that a scenario with
    /// one tenant puts it on another shard than its provider workspace (on root) and one with
    /// two tenants has one on each shard.
    pub fn tenant_shard(&self, i: usize) -> Result<Option<String>> {
        let shards = self.shards()?;
        Ok((shards.len() > 1).then(|| shards[(i + 1) % shards.len()].clone()))
    }

    /// The shard-admin kubeconfig of one shard, straight to it (context `shard-base`); only a
    /// sharded environment writes them.
    pub fn shard_kubeconfig(&self, shard: &str) -> PathBuf {
        self.dir.join("shards").join(format!("{shard}.kubeconfig"))
    }

    /// The shard that holds logical cluster `cluster` (asks each shard directly).
    pub async fn shard_holding(&self, cluster: &str) -> Result<String> {
        for shard in self.shards()? {
            let config = config_from_kubeconfig(&self.shard_kubeconfig(&shard), None).await?;
            let mut config = config;
            config.cluster_url = format!(
                "{}/clusters/{cluster}",
                config.cluster_url.to_string().trim_end_matches('/')
            )
            .parse()?;
            let client = kube::Client::try_from(config)?;
            let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(
                client,
                &kube::discovery::ApiResource::from_gvk_with_plural(
                    &kube::core::GroupVersionKind::gvk("core.kcp.io", "v1alpha1", "LogicalCluster"),
                    "logicalclusters",
                ),
            );
            if api.get_opt("cluster").await?.is_some() {
                return Ok(shard);
            }
        }
        bail!("no shard holds logical cluster {cluster}")
    }
}

/// A server process of the environment stopped with SIGSTOP (it accepts connections but
/// never answers, like a hung or partitioned API server) until this guard is dropped.
pub struct Paused {
    pid: u32,
}

impl Env {
    /// Pauses process `name` (e.g. `cluster-2-apiserver`) from `state.json`.
    pub fn pause(&self, name: &str) -> Result<Paused> {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.join("state.json"))?)?;
        let pid = state["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| p["pid"].as_u64())
            .with_context(|| format!("no process {name} in the environment"))?;
        let pid = u32::try_from(pid)?;
        signal(pid, "-STOP")?;
        Ok(Paused { pid })
    }
}

impl Env {
    /// Runs `cargo xtask env restart <name>` (with `--kill`: SIGKILL, a crash): the process
    /// starts again with the same command line and data, and this returns once it is ready.
    /// The xtask binary is `$FERRY_XTASK`, else the one `cargo xtask` built beside the tests.
    pub fn restart_process(&self, name: &str, kill: bool) -> Result<()> {
        let xtask = std::env::var_os("FERRY_XTASK")
            .map(PathBuf::from)
            .unwrap_or_else(|| ferry::target_dir().join("debug").join("xtask"));
        let mut command = std::process::Command::new(&xtask);
        command.args(["env", "restart", name]);
        if kill {
            command.arg("--kill");
        }
        let output = command
            .env("FERRY_ENV_DIR", &self.dir)
            .output()
            .with_context(|| format!("running {} (set FERRY_XTASK)", xtask.display()))?;
        let text = String::from_utf8_lossy(&output.stderr);
        eprintln!("{}", text.trim_end());
        if !output.status.success() {
            bail!("restarting {name} failed:\n{text}");
        }
        Ok(())
    }
}

/// Sends `signal` (e.g. `-STOP`) to process `pid`.
pub(crate) fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill {signal} {pid} failed");
    }
    Ok(())
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = signal(self.pid, "-CONT");
    }
}

/// Builds a client from a kubeconfig file and optional context.
pub async fn client_from_kubeconfig(path: &Path, context: Option<&str>) -> Result<kube::Client> {
    let config = config_from_kubeconfig(path, context).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Loads a kube config from a kubeconfig file and optional context.
pub async fn config_from_kubeconfig(path: &Path, context: Option<&str>) -> Result<kube::Config> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?)
}

/// Polls `check` every 250 ms until it returns `Some`, or fails after `timeout` with the last
/// error so a failing test says what it was waiting for.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("condition not met");
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last = format!("{err:#}"),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Exit status of a helper binary: errors shown as one readable `error: …` with causes,
/// never a backtrace.
pub fn exit_code(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A name suffix unique to this process, so tests can share one environment and rerun.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}", (nanos as u64) ^ u64::from(std::process::id()))
        .chars()
        .rev()
        .take(8)
        .collect()
}

/// The repository root, for reading files under `examples/`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

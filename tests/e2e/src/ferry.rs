//! Running the real `ferry` binary against the environment: a provider workspace with its
//! export, tenant workspaces bound to it, and a Ferry process configured for them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_core::identity::downstream_namespace;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

use crate::kcp::{self, KcpAdmin, Workspace};
use crate::{Env, eventually};

/// The directory cargo builds into (from the running test executable: `<dir>/debug/deps/…`).
pub(crate) fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| crate::repo_root().join("target"))
}

/// The `ferry` binary: `$FERRY_BIN`, else `<target>/debug/ferry` (built by `cargo xtask test`).
pub fn ferry_bin() -> Result<PathBuf> {
    let path = std::env::var_os("FERRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug").join("ferry"));
    if !path.is_file() {
        bail!(
            "{} not found: build it with `cargo build -p ferry` (cargo xtask test does)",
            path.display()
        );
    }
    Ok(path)
}

/// Where `cargo xtask plugins` put the components.
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("FERRY_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("plugins"))
}

/// The Deployment resource as served by the export and by the clusters.
pub fn deployments() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apps", "v1", "Deployment"),
        "deployments",
    )
}

/// A provider workspace exporting Deployments and Services (the examples' export).
pub async fn platform(admin: &KcpAdmin, name: &str) -> Result<Workspace> {
    platform_on(admin, name, None).await
}

/// [`platform`], on kcp shard `shard` (`None`: wherever kcp schedules it).
pub async fn platform_on(admin: &KcpAdmin, name: &str, shard: Option<&str>) -> Result<Workspace> {
    let provider = admin.create_workspace_on("root", name, shard).await?;
    let client = admin.workspace(&provider.path)?;
    for file in [
        "provider/apiresourceschema-deployments.apps.yaml",
        "provider/apiresourceschema-services.core.yaml",
        "provider/apiexport-kubernetes.yaml",
    ] {
        kcp::apply_manifest(&client, &kcp::example(file)?).await?;
    }
    Ok(provider)
}

/// What a tenant's APIBinding says to the export's permission claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claims {
    /// Accepts every claim (the example binding).
    AcceptAll,
    /// Accepts only `events`; rejects `logicalclusters`, `configmaps` and `secrets`.
    EventsOnly,
}

/// The example APIBinding for `provider`, answering its claims as `claims` says.
pub fn binding_manifest(provider: &Workspace, claims: Claims) -> Result<String> {
    let text = kcp::example("tenant/apibinding-kubernetes.yaml")?
        .replace("path: root:platform", &format!("path: {}", provider.path));
    if claims == Claims::AcceptAll {
        return Ok(text);
    }
    let mut binding: serde_json::Value = serde_yaml::from_str(&text)?;
    for claim in binding
        .pointer_mut("/spec/permissionClaims")
        .and_then(serde_json::Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if claim["resource"] != "events" {
            claim["state"] = "Rejected".into();
        }
    }
    Ok(serde_yaml::to_string(&binding)?)
}

/// A tenant workspace bound to `provider`'s export, with namespace `namespace` created.
pub async fn tenant(
    admin: &KcpAdmin,
    provider: &Workspace,
    name: &str,
    namespace: &str,
) -> Result<Workspace> {
    tenant_in(admin, provider, name, namespace, Claims::AcceptAll, None).await
}

/// [`tenant`], answering the export's permission claims as `claims` says.
pub async fn tenant_with(
    admin: &KcpAdmin,
    provider: &Workspace,
    name: &str,
    namespace: &str,
    claims: Claims,
) -> Result<Workspace> {
    tenant_in(admin, provider, name, namespace, claims, None).await
}

/// [`tenant`], on kcp shard `shard` (`None`: wherever kcp schedules it).
pub async fn tenant_on(
    admin: &KcpAdmin,
    provider: &Workspace,
    name: &str,
    namespace: &str,
    shard: Option<&str>,
) -> Result<Workspace> {
    tenant_in(admin, provider, name, namespace, Claims::AcceptAll, shard).await
}

/// A tenant workspace on `shard` (`None`: wherever kcp schedules it) bound to `provider`'s
/// export, answering its permission claims as `claims` says.
pub async fn tenant_in(
    admin: &KcpAdmin,
    provider: &Workspace,
    name: &str,
    namespace: &str,
    claims: Claims,
    shard: Option<&str>,
) -> Result<Workspace> {
    let tenant = admin.create_workspace_on("root", name, shard).await?;
    let client = admin.workspace(&tenant.path)?;
    let binding = binding_manifest(provider, claims)?;
    kcp::apply_manifest(&client, &binding).await?;
    let bindings: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apis.kcp.io", "v1alpha2", "APIBinding"),
            "apibindings",
        ),
    );
    eventually(
        "the APIBinding to be Bound",
        Duration::from_secs(60),
        || async {
            let b = bindings.get("kubernetes").await?;
            Ok(
                (b.data.pointer("/status/phase").and_then(|p| p.as_str()) == Some("Bound"))
                    .then_some(()),
            )
        },
    )
    .await?;
    let ns = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n");
    kcp::apply_manifest(&client, &ns).await?;
    // The bound API is served a moment after the binding reports Bound.
    let deployments: Api<DynamicObject> = Api::namespaced_with(client, namespace, &deployments());
    eventually(
        "the tenant to serve deployments",
        Duration::from_secs(30),
        || async {
            Ok(Some(
                deployments.list(&Default::default()).await.map(|_| ())?,
            ))
        },
    )
    .await?;
    Ok(tenant)
}

/// The namespace a tenant namespace maps to on every target.
pub fn mapped_namespace(tenant: &Workspace, namespace: &str) -> String {
    downstream_namespace(&tenant.logical_cluster, namespace)
}

/// Options for the Ferry configuration a test runs with.
#[derive(Clone, Debug)]
pub struct FerryOptions {
    /// `label-placement`'s default selector ("" = every target).
    pub placement_default: String,
    /// The Deployments' whole `placement:` entry in YAML flow style (e.g. `{plugin: x,
    /// config: {...}}`), replacing label-placement with `placement_default`.
    pub placement: Option<String>,
    /// Transform plugin name or path.
    pub transform: String,
    /// Status plugin name.
    pub status: String,
    /// Resync period.
    pub resync_seconds: u64,
    /// Per-target time limit of a reconcile.
    pub target_timeout_seconds: u64,
    /// Write the configuration but do not start the process (call [`Ferry::restart`]).
    pub defer_start: bool,
    /// Context of the kcp kubeconfig Ferry uses (`root`: the admin; `user`: a non-admin).
    pub kcp_context: String,
    /// `--log-format` (`text` or `json`).
    pub log_format: String,
    /// Kubeconfigs of `cluster-1` and `cluster-2`, in that order; empty: the admin ones.
    pub target_kubeconfigs: Vec<PathBuf>,
    /// YAML appended to the configuration as is (top-level sections such as `namespaces:`).
    pub extra_config: String,
    /// Run with `--leader-elect`.
    pub leader_elect: bool,
    /// Run with `--share-work` (replicas that share the workspaces).
    pub share_work: bool,
    /// Keys of the `leaderElection:` section, in YAML flow style (e.g. `retryPeriodSeconds: 1`).
    pub leader_election: String,
    /// Lines appended to the `kcp:` section, indented (e.g. `  workspaceLabels: [team]\n`).
    pub kcp_extra: String,
    /// Entries appended to `resources:` as is (each starting with `- `).
    pub extra_resources: String,
    /// Deployments name their dependencies with this plugin, and ConfigMaps and Secrets
    /// are synced with `placement: dependents`.
    pub dependencies: Option<String>,
    /// Keys added to the `plugins:` section, in YAML flow style (e.g.
    /// `reloadIntervalMs: 300`).
    pub plugins_extra: String,
    /// Keys added to every target's entry, in YAML flow style after a comma (e.g.
    /// `writesPerSecond: 1000`).
    pub target_extra: String,
    /// Keys added to the `engine:` section, in YAML flow style after a comma (e.g.
    /// `workers: 32`).
    pub engine_extra: String,
}

impl Default for FerryOptions {
    fn default() -> Self {
        Self {
            placement_default: String::new(),
            placement: None,
            transform: "default-transform".into(),
            status: "deployment-status".into(),
            resync_seconds: 600,
            target_timeout_seconds: 30,
            defer_start: false,
            kcp_context: "root".into(),
            log_format: "text".into(),
            target_kubeconfigs: Vec::new(),
            extra_config: String::new(),
            leader_elect: false,
            share_work: false,
            leader_election: String::new(),
            kcp_extra: String::new(),
            extra_resources: String::new(),
            dependencies: None,
            plugins_extra: String::new(),
            target_extra: String::new(),
            engine_extra: String::new(),
        }
    }
}

/// `, keys` for a flow map's extra keys, or nothing.
fn comma_prefixed(keys: &str) -> String {
    if keys.is_empty() {
        String::new()
    } else {
        format!(", {keys}")
    }
}

/// A running `ferry run` process, killed when dropped. Its log is kept in the test's
/// directory and printed when a test that started it fails (see [`Ferry::log`]).
pub struct Ferry {
    child: Option<Child>,
    /// The test's scratch directory (config, log).
    pub dir: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
    /// Port of the metrics endpoint.
    pub metrics_port: u16,
    /// `--log-format`.
    log_format: String,
    /// Extra arguments of `ferry run`.
    args: Vec<String>,
    /// The binary [`Ferry::restart`] runs; `None`: [`ferry_bin`].
    binary: Option<PathBuf>,
}

impl Ferry {
    /// Writes a configuration for `provider` and starts Ferry with it.
    pub fn start(env: &Env, provider: &Workspace, options: &FerryOptions) -> Result<Ferry> {
        let dir = env.dir.join("e2e").join(format!(
            "{}-{}",
            provider.path.replace(':', "-"),
            crate::unique_suffix()
        ));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("ferry.yaml");
        let target_kubeconfig = |i: usize| {
            options
                .target_kubeconfigs
                .get(i)
                .cloned()
                .unwrap_or_else(|| env.cluster_kubeconfig(crate::CLUSTERS[i]))
        };
        let mut text = format!(
            "kcp:\n  kubeconfig: {kcp}\n  context: {context}\n  workspace: \"{workspace}\"\n  export: kubernetes\n\
             {kcp_extra}\
             targets:\n\
             - {{name: cluster-1, kubeconfig: {c1}, labels: {{region: eu}}{target_extra}}}\n\
             - {{name: cluster-2, kubeconfig: {c2}, labels: {{region: us}}{target_extra}}}\n\
             resources:\n\
             - group: apps\n  resource: deployments\n\
             \x20 placement: {placement}\n\
             \x20 transform: {{plugin: {transform}}}\n\
             \x20 status: {{plugin: {status}}}\n\
             {dependencies}\
             - group: \"\"\n  resource: services\n\
             \x20 placement: {{plugin: label-placement, config: {{default: \"\"}}}}\n\
             \x20 transform: {{plugin: default-transform}}\n\
             \x20 status: {{plugin: passthrough-status, config: {{target: cluster-1}}}}\n\
             {extra_resources}\
             plugins: {{dir: {plugins}{plugins_extra}}}\n\
             engine: {{resyncSeconds: {resync}, targetTimeoutSeconds: {timeout}{engine_extra}}}\n\
             leaderElection: {{{election}}}\n",
            kcp = env.kcp_kubeconfig().display(),
            context = options.kcp_context,
            workspace = provider.path,
            c1 = target_kubeconfig(0).display(),
            c2 = target_kubeconfig(1).display(),
            placement = options.placement.clone().unwrap_or_else(|| format!(
                "{{plugin: label-placement, config: {{default: \"{}\"}}}}",
                options.placement_default
            )),
            transform = options.transform,
            status = options.status,
            plugins = plugin_dir().display(),
            plugins_extra = comma_prefixed(&options.plugins_extra),
            resync = options.resync_seconds,
            timeout = options.target_timeout_seconds,
            election = options.leader_election,
            kcp_extra = options.kcp_extra,
            extra_resources = options.extra_resources,
            target_extra = comma_prefixed(&options.target_extra),
            engine_extra = comma_prefixed(&options.engine_extra),
            dependencies = match &options.dependencies {
                Some(plugin) => format!(
                    "  dependencies: {{plugin: {plugin}}}\n\
                     - {{resource: configmaps, placement: dependents, transform: {{plugin: default-transform}}}}\n\
                     - {{resource: secrets, placement: dependents, transform: {{plugin: default-transform}}}}\n"
                ),
                None => String::new(),
            },
        );
        text.push_str(&options.extra_config);
        std::fs::write(&config, text)?;
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut ferry = Ferry {
            child: None,
            dir,
            config,
            metrics_port,
            log_format: options.log_format.clone(),
            args: [
                (options.leader_elect, "--leader-elect"),
                (options.share_work, "--share-work"),
            ]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, arg)| arg.to_string())
            .collect(),
            binary: None,
        };
        if !options.defer_start {
            ferry.restart()?;
        }
        Ok(ferry)
    }

    /// (Re)starts the process with the same configuration, appending to the same log.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        writeln!(log, "===== ferry run =====")?;
        let binary = match &self.binary {
            Some(binary) => binary.clone(),
            None => ferry_bin()?,
        };
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(&self.config)
            .arg(format!("--metrics-addr=127.0.0.1:{}", self.metrics_port))
            .arg(format!("--log-format={}", self.log_format))
            .args(&self.args)
            .env("FERRY_LOG", "info,ferry_sync=debug,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting ferry")?;
        self.child = Some(child);
        Ok(())
    }

    /// Runs `binary` instead of [`ferry_bin`] from the next [`Ferry::restart`] on (the memory
    /// benchmark compares builds on the same objects).
    pub fn use_binary(&mut self, binary: PathBuf) {
        self.binary = Some(binary);
    }

    /// Kills the process at once (SIGKILL: no graceful shutdown, as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The running process's peak resident memory in MiB (`VmHWM`), if it runs.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    /// Sends SIGTERM, as the kubelet does to stop a pod.
    pub fn terminate(&self) -> Result<()> {
        let child = self.child.as_ref().context("ferry is not running")?;
        crate::signal(child.id(), "-TERM")
    }

    /// Waits at most `timeout` for the process to exit, and returns its exit code (None if
    /// a signal ended it).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().context("ferry is not running")?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status.code());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("ferry did not exit within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET `path` on the metrics endpoint: (status code, body).
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        socket
            .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await?;
        let mut text = String::new();
        socket.read_to_string(&mut text).await?;
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no status line in {text:?}"))?;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        Ok((status, body.to_string()))
    }

    /// Fails if the process exited (e.g. a configuration error), with its log.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait()?
        {
            bail!("ferry exited with {status}:\n{}", self.log());
        }
        Ok(())
    }

    /// The sum of a counter over its labels, from the running process's metrics endpoint
    /// (counters start at zero with each process).
    pub async fn metric(&self, name: &str) -> Result<u64> {
        Ok(self
            .scrape_text()
            .await?
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    }

    /// The body of the metrics endpoint (the Prometheus text format).
    pub async fn scrape_text(&self) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        socket.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await?;
        let mut text = String::new();
        socket.read_to_string(&mut text).await?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or(text.as_str(), |(_, body)| body);
        Ok(body.to_string())
    }

    /// The metrics endpoint, parsed as a scraper reads it.
    pub async fn scrape(&self) -> Result<prometheus_parse::Scrape> {
        let text = self.scrape_text().await?;
        Ok(prometheus_parse::Scrape::parse(
            text.lines().map(|l| Ok(l.to_string())),
        )?)
    }

    /// Runs `ferry check` with this configuration: the audit of both sides that tests use
    /// as their oracle. Returns whether it was clean, and its output.
    pub fn check(&self) -> Result<(bool, String)> {
        let output = Command::new(ferry_bin()?)
            .args(["check", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .context("running ferry check")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        match output.status.code() {
            Some(0) => Ok((true, text)),
            Some(1) => Ok((false, text)),
            other => bail!("ferry check failed ({other:?}):\n{text}"),
        }
    }

    /// Runs `ferry <subcommand> --config <this config> <args…>` to completion: its exit code
    /// and its output (stdout, then stderr).
    pub fn command(&self, subcommand: &str, args: &[&str]) -> Result<(i32, String)> {
        let output = Command::new(ferry_bin()?)
            .args([subcommand, "--config"])
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running ferry {subcommand}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok((output.status.code().unwrap_or(-1), text))
    }

    /// Waits until `ferry check` reports no problem (it may take a moment to converge).
    pub async fn wait_clean(&self, timeout: Duration) -> Result<String> {
        eventually("ferry check to report no problem", timeout, || async {
            let (clean, text) = self.check()?;
            if clean {
                Ok(Some(text))
            } else {
                bail!("{text}")
            }
        })
        .await
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("ferry.log")
    }

    /// The identity the process gave itself in its Lease (and its user agent), from its log
    /// (`identity=…` on the line that says it joined or waits to lead); the latest run's.
    pub fn identity(&self) -> Option<String> {
        self.log()
            .lines()
            .rev()
            .filter(|l| l.contains("joining the replicas") || l.contains("waiting to lead"))
            .find_map(|l| {
                let rest = &l[l.find("identity=")? + "identity=".len()..];
                let value = rest.split_whitespace().next()?;
                Some(value.trim_matches('"').to_string())
            })
    }

    /// The process's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- ferry log ({}) ----\n{}",
                self.log_path().display(),
                self.log()
            );
        }
    }
}

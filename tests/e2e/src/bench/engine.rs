//! The engines the benchmark compares, behind one face: set up their workspaces, start,
//! stop, say when they are ready and how many writes they made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde::Deserialize;
use serde_json::{Value, json};

use super::raw;
use super::run::Plan;
use crate::ferry::{self, Ferry, FerryOptions};
use crate::kcp::{self, KcpAdmin, Workspace};
use crate::{CLUSTERS, Env, eventually};

/// Which engine a run measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Ferry (release build) syncing to the first `targets` clusters.
    Ferry { targets: usize },
    /// kcp's api-syncagent, started from the command `cargo xtask` prepared.
    ApiSyncagent { command: PathBuf },
    /// The floor: this process watches upstream and applies each copy straight to the first
    /// cluster (and each copy's status straight back), nothing else.
    Raw,
    /// The floor that keeps invariant I3: [`Kind::Raw`], but each object gets a finalizer
    /// through kcp before its copy is applied.
    RawFinalizer,
}

impl Kind {
    /// The engine's key in `sync.json`.
    pub fn key(&self) -> String {
        match self {
            Kind::Ferry { targets: 1 } => "ferry".into(),
            Kind::Ferry { targets } => format!("ferry-{targets}-targets"),
            Kind::ApiSyncagent { .. } => "api-syncagent".into(),
            Kind::Raw => "raw-floor".into(),
            Kind::RawFinalizer => "raw-finalizer-floor".into(),
        }
    }

    /// Target clusters the engine syncs to.
    pub fn targets(&self) -> &'static [&'static str] {
        match self {
            Kind::Ferry { targets } => &CLUSTERS[..(*targets).clamp(1, CLUSTERS.len())],
            _ => &CLUSTERS[..1],
        }
    }

    /// Whether the engine is one of the floors, which run inside the benchmark.
    pub fn is_floor(&self) -> bool {
        matches!(self, Kind::Raw | Kind::RawFinalizer)
    }

    /// The upstream `status.readyReplicas` the engine makes of every copy having `ready`.
    pub fn upstream_ready(&self, ready: i64) -> i64 {
        match self {
            // deployment-status sums the copies.
            Kind::Ferry { .. } => ready * self.targets().len() as i64,
            _ => ready,
        }
    }
}

/// How `cargo xtask` tells the benchmark to start api-syncagent (written by
/// `xtask/src/syncagent.rs`).
#[derive(Deserialize)]
struct AgentCommand {
    binary: PathBuf,
    args: Vec<String>,
    /// The provider workspace and export consumers bind.
    workspace: String,
    export: String,
}

/// One engine with its tenant workspaces.
pub struct Engine {
    pub kind: Kind,
    pub tenants: Vec<Workspace>,
    /// Target namespace of each tenant's `demo` namespace.
    pub copy_namespaces: Vec<String>,
    process: Process,
}

enum Process {
    Ferry(Box<Ferry>),
    Agent {
        command: AgentCommand,
        log: PathBuf,
        child: Option<Child>,
    },
    Raw {
        admin: Box<KcpAdmin>,
        target: kube::Client,
        floor: raw::Floor,
        writes: Arc<AtomicU64>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    },
}

impl Engine {
    /// Creates `plan.workspaces` tenant workspaces for the engine (each with namespace `demo`) and
    /// prepares the engine without starting it.
    pub async fn set_up(
        env: &Env,
        admin: &KcpAdmin,
        kind: Kind,
        plan: &Plan,
        suffix: &str,
    ) -> Result<Engine> {
        let key = kind.key();
        let workspaces = plan.workspaces;
        let (tenants, copy_namespaces, process) = match &kind {
            Kind::Ferry { targets } => {
                let provider = ferry::platform(admin, &format!("bench-{key}-{suffix}")).await?;
                let tenants = ferry_tenants(admin, &provider, &key, suffix, workspaces).await?;
                let namespaces = tenants
                    .iter()
                    .map(|t| ferry::mapped_namespace(t, "demo"))
                    .collect();
                let options = FerryOptions {
                    defer_start: true,
                    // label-placement: every target, or only cluster-1 (region=eu).
                    placement_default: if *targets == 1 {
                        "region=eu".into()
                    } else {
                        String::new()
                    },
                    engine_extra: plan.ferry_engine.clone(),
                    ..FerryOptions::default()
                };
                let ferry = Ferry::start(env, &provider, &options)?;
                (tenants, namespaces, Process::Ferry(Box::new(ferry)))
            }
            Kind::ApiSyncagent { command } => {
                let text = std::fs::read_to_string(command)
                    .with_context(|| format!("reading {}", command.display()))?;
                let command: AgentCommand = serde_json::from_str(&text)?;
                // The agent serves every consumer of its export: those of an interrupted
                // run must be gone before it starts.
                super::leftovers::remove_stale(admin, &format!("bench-{key}-")).await?;
                let mut tenants = Vec::new();
                for i in 0..workspaces {
                    let name = format!("bench-{key}-{i}-{suffix}");
                    tenants.push(
                        agent_consumer(admin, &command.workspace, &command.export, &name).await?,
                    );
                }
                let namespaces = tenants
                    .iter()
                    .map(|t| format!("{}-demo", t.logical_cluster))
                    .collect();
                let log = env.dir.join("logs").join("bench-api-syncagent.log");
                (
                    tenants,
                    namespaces,
                    Process::Agent {
                        command,
                        log,
                        child: None,
                    },
                )
            }
            Kind::Raw | Kind::RawFinalizer => {
                let provider = ferry::platform(admin, &format!("bench-{key}-{suffix}")).await?;
                let tenants = ferry_tenants(admin, &provider, &key, suffix, workspaces).await?;
                let floor = if kind == Kind::RawFinalizer {
                    raw::Floor::Finalizer {
                        url: export_url(admin, &provider).await?,
                    }
                } else {
                    raw::Floor::Bare
                };
                let namespaces = tenants
                    .iter()
                    .map(|t| format!("raw-{}", t.logical_cluster))
                    .collect();
                let target = env.cluster_client(CLUSTERS[0]).await?;
                (
                    tenants,
                    namespaces,
                    Process::Raw {
                        admin: Box::new(admin.clone()),
                        target,
                        floor,
                        writes: Arc::default(),
                        tasks: Vec::new(),
                    },
                )
            }
        };
        Ok(Engine {
            kind,
            tenants,
            copy_namespaces,
            process,
        })
    }

    /// Starts the engine (again).
    pub async fn start(&mut self) -> Result<()> {
        match &mut self.process {
            Process::Ferry(ferry) => ferry.restart(),
            Process::Agent {
                command,
                log,
                child,
            } => {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&*log)?;
                *child = Some(
                    Command::new(&command.binary)
                        .args(&command.args)
                        .stdin(Stdio::null())
                        .stdout(out.try_clone()?)
                        .stderr(out)
                        .spawn()
                        .context("starting api-syncagent")?,
                );
                Ok(())
            }
            Process::Raw {
                admin,
                target,
                floor,
                writes,
                tasks,
            } => {
                *tasks = raw::start(
                    admin,
                    target,
                    &self.tenants,
                    &self.copy_namespaces,
                    floor,
                    writes.clone(),
                )
                .await?;
                Ok(())
            }
        }
    }

    /// Stops the engine at once (SIGKILL for a process).
    pub fn stop(&mut self) {
        match &mut self.process {
            Process::Ferry(ferry) => ferry.kill(),
            Process::Agent { child, .. } => {
                if let Some(mut child) = child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Process::Raw { tasks, .. } => {
                for task in tasks.drain(..) {
                    task.abort();
                }
            }
        }
    }

    /// The engine's process, if it is one.
    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            Process::Ferry(ferry) => ferry.pid(),
            Process::Agent { child, .. } => child.as_ref().map(Child::id),
            Process::Raw { .. } => None,
        }
    }

    /// Whether the engine says it is ready (`/readyz`); the floor always is.
    pub async fn ready(&self) -> bool {
        match &self.process {
            Process::Ferry(ferry) => matches!(ferry.get("/readyz").await, Ok((200, _))),
            // v0.7.0 registers no readiness check (its /readyz is a 404): ready is when its
            // sync controller has finished a reconcile (its caches synced, its workers run).
            Process::Agent { command, .. } => {
                let Some(addr) = flag(&command.args, "--metrics-address") else {
                    return false;
                };
                match http_get(&addr, "/metrics").await {
                    Ok((200, body)) => agent_syncing(&body),
                    _ => false,
                }
            }
            Process::Raw { .. } => true,
        }
    }

    /// Mutating requests the engine's current process made to kcp so far, from its metrics
    /// (kcp does not audit requests to virtual workspaces). `None` if it cannot say.
    pub async fn upstream_writes(&self, kcp_host: &str) -> Option<u64> {
        match &self.process {
            Process::Ferry(ferry) => ferry.metric("ferry_upstream_writes_total").await.ok(),
            Process::Agent { command, .. } => {
                let addr = flag(&command.args, "--metrics-address")?;
                let (_, body) = http_get(&addr, "/metrics").await.ok()?;
                Some(client_go_writes(&body, kcp_host))
            }
            Process::Raw { writes, .. } => Some(writes.load(Ordering::Relaxed)),
        }
    }

    /// The user agent prefix of the engine's requests in the targets' audit logs.
    pub fn user_agent(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Ferry { .. } => Some("ferry/"),
            Kind::ApiSyncagent { .. } => Some("api-syncagent/"),
            Kind::Raw | Kind::RawFinalizer => None,
        }
    }

    /// The engine's metrics as it serves them (Prometheus text), if it has an endpoint Ferry's
    /// way: after the cold phase they say where the time went (reconciles, writes, plugins).
    pub async fn metrics_text(&self) -> Option<String> {
        match &self.process {
            Process::Ferry(ferry) => ferry.scrape_text().await.ok(),
            _ => None,
        }
    }

    /// The namespace on the target where api-syncagent keeps its state (`None` for the others).
    pub fn agent_state_namespace(&self) -> Option<String> {
        match &self.process {
            Process::Agent { command, .. } => flag(&command.args, "--namespace"),
            _ => None,
        }
    }

    /// The engine's log, for a failed run.
    pub fn log(&self) -> String {
        match &self.process {
            Process::Ferry(ferry) => ferry.log(),
            Process::Agent { log, .. } => std::fs::read_to_string(log).unwrap_or_default(),
            Process::Raw { .. } => String::new(),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The URL of `provider`'s export `kubernetes` in its virtual workspace (what an engine
/// watches and writes through), once a binding made kcp publish it.
async fn export_url(admin: &KcpAdmin, provider: &Workspace) -> Result<String> {
    let slices: Api<DynamicObject> = Api::all_with(
        admin.workspace(&provider.path)?,
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("apis.kcp.io", "v1alpha1", "APIExportEndpointSlice"),
            "apiexportendpointslices",
        ),
    );
    eventually(
        "the export's endpoint slice to list a URL",
        Duration::from_secs(60),
        || async {
            let slice = slices.get("kubernetes").await?;
            Ok(slice
                .data
                .pointer("/status/endpoints/0/url")
                .and_then(|u| u.as_str())
                .map(str::to_string))
        },
    )
    .await
}

/// `workspaces` tenant workspaces `bench-<key>-<i>-<suffix>` bound to `provider`'s export,
/// each with namespace `demo`.
pub async fn ferry_tenants(
    admin: &KcpAdmin,
    provider: &Workspace,
    key: &str,
    suffix: &str,
    workspaces: usize,
) -> Result<Vec<Workspace>> {
    let mut tenants = Vec::new();
    for i in 0..workspaces {
        let name = format!("bench-{key}-{i}-{suffix}");
        tenants.push(ferry::tenant(admin, provider, &name, "demo").await?);
    }
    Ok(tenants)
}

/// A consumer workspace `root:<name>` of api-syncagent's `export` in workspace `provider`, with
/// namespace `demo`, serving Deployments. Its APIBinding accepts every permission claim of the
/// export (the agent claims Events, to report what it did on each object), as a tenant
/// following the agent's documentation does.
pub async fn agent_consumer(
    admin: &KcpAdmin,
    provider: &str,
    export: &str,
    name: &str,
) -> Result<Workspace> {
    let exports: Api<DynamicObject> = Api::all_with(
        admin.workspace(provider)?,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apis.kcp.io", "v1alpha2", "APIExport"),
            "apiexports",
        ),
    );
    let claims = exports
        .get(export)
        .await
        .with_context(|| format!("reading APIExport {export} in {provider}"))?
        .data
        .pointer("/spec/permissionClaims")
        .cloned()
        .unwrap_or(Value::Null);
    let tenant = admin.create_workspace("root", name).await?;
    let client = admin.workspace(&tenant.path)?;
    let binding = agent_binding(provider, export, &claims);
    kcp::apply_manifest(&client, &serde_yaml::to_string(&binding)?).await?;
    kcp::apply_manifest(
        &client,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n",
    )
    .await?;
    let deployments: Api<DynamicObject> =
        Api::namespaced_with(client, "demo", &ferry::deployments());
    // The agent publishes its schema once it runs; it must have run once (`cargo xtask env
    // api-syncagent` proves it) for the export to carry Deployments.
    eventually(
        "the api-syncagent consumer to serve deployments",
        Duration::from_secs(120),
        || async {
            Ok(Some(
                deployments.list(&Default::default()).await.map(|_| ())?,
            ))
        },
    )
    .await?;
    Ok(tenant)
}

/// The APIBinding of api-syncagent's `export` in `provider` that accepts every claim of
/// `claims` (the export's `spec.permissionClaims`, v1alpha2) for every object.
fn agent_binding(provider: &str, export: &str, claims: &Value) -> Value {
    let accepted: Vec<Value> = claims
        .as_array()
        .into_iter()
        .flatten()
        .map(|claim| {
            let mut accepted = claim.clone();
            accepted["selector"] = json!({"matchAll": true});
            accepted["state"] = "Accepted".into();
            accepted
        })
        .collect();
    json!({
        "apiVersion": "apis.kcp.io/v1alpha2",
        "kind": "APIBinding",
        "metadata": {"name": export},
        "spec": {
            "reference": {"export": {"path": provider, "name": export}},
            "permissionClaims": accepted,
        },
    })
}

/// The value of `--name=value` in `args`.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_string)
}

/// Mutating requests to `host` in client-go's `rest_client_requests_total` (the metric
/// controller-runtime serves), summed.
pub fn client_go_writes(metrics: &str, host: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("rest_client_requests_total{"))
        .filter(|l| l.contains(&format!("host=\"{host}\"")))
        .filter(|l| {
            ["POST", "PUT", "PATCH", "DELETE"]
                .iter()
                .any(|m| l.contains(&format!("method=\"{m}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Whether api-syncagent's metrics show its sync controller has finished a reconcile.
pub fn agent_syncing(metrics: &str) -> bool {
    metrics
        .lines()
        .filter(|l| l.starts_with("controller_runtime_reconcile_total{"))
        .filter(|l| l.contains("controller=\"syncagent-sync\""))
        .filter(|l| l.contains("result=\"success\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .any(|reconciles| reconciles > 0.0)
}

async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    socket
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut text = String::new();
    socket.read_to_string(&mut text).await?;
    let Some(status) = text.split(' ').nth(1).and_then(|s| s.parse().ok()) else {
        bail!("no status line from {addr}");
    };
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// Mutating requests by user agent `prefix` in a server's audit logs (rotated ones too).
pub fn audited_writes(audit_log: &Path, prefix: &str) -> Result<usize> {
    crate::scenario::writes_by_user_agent(audit_log, prefix, |_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_go_writes_count_mutating_requests_to_one_host() {
        let metrics = "\
rest_client_requests_total{code=\"200\",host=\"127.0.0.1:1\",method=\"GET\"} 40
rest_client_requests_total{code=\"200\",host=\"127.0.0.1:1\",method=\"PATCH\"} 3
rest_client_requests_total{code=\"201\",host=\"127.0.0.1:1\",method=\"POST\"} 2
rest_client_requests_total{code=\"200\",host=\"127.0.0.1:2\",method=\"PUT\"} 9
";
        assert_eq!(client_go_writes(metrics, "127.0.0.1:1"), 5);
    }

    #[test]
    fn the_agent_is_ready_once_its_sync_controller_reconciled() {
        let starting = "controller_runtime_reconcile_total{controller=\"syncagent-sync\",result=\"success\"} 0\n";
        let ready = "controller_runtime_reconcile_total{controller=\"syncagent-apiexport\",result=\"success\"} 3\n\
                     controller_runtime_reconcile_total{controller=\"syncagent-sync\",result=\"error\"} 1\n\
                     controller_runtime_reconcile_total{controller=\"syncagent-sync\",result=\"success\"} 7\n";
        assert!(!agent_syncing(starting));
        assert!(agent_syncing(ready));
        assert!(!agent_syncing(""));
    }

    #[test]
    fn the_agent_binding_accepts_every_claim_of_the_export() {
        let claims = json!([
            {"group": "", "resource": "events", "verbs": ["*"]},
            {"group": "", "resource": "namespaces", "verbs": ["get"], "identityHash": "h"},
        ]);
        let binding = agent_binding("root:api-syncagent", "api-syncagent", &claims);
        assert_eq!(
            binding["spec"]["reference"]["export"]["path"],
            "root:api-syncagent"
        );
        let accepted = binding["spec"]["permissionClaims"]
            .as_array()
            .expect("a list");
        assert_eq!(accepted.len(), 2);
        assert_eq!(accepted[0]["resource"], "events");
        assert_eq!(accepted[0]["verbs"], json!(["*"]));
        assert_eq!(accepted[1]["identityHash"], "h");
        for claim in accepted {
            assert_eq!(claim["state"], "Accepted");
            assert_eq!(claim["selector"], json!({"matchAll": true}));
        }
        let none = agent_binding("root:p", "e", &Value::Null);
        assert_eq!(none["spec"]["permissionClaims"], json!([]));
    }

    #[test]
    fn engine_keys_and_targets() {
        assert_eq!(Kind::Ferry { targets: 1 }.key(), "ferry");
        assert_eq!(Kind::Ferry { targets: 2 }.key(), "ferry-2-targets");
        assert_eq!(Kind::Ferry { targets: 2 }.targets().len(), 2);
        assert_eq!(Kind::Ferry { targets: 2 }.upstream_ready(1), 2);
        assert_eq!(Kind::Raw.upstream_ready(1), 1);
        assert_eq!(Kind::RawFinalizer.key(), "raw-finalizer-floor");
        assert!(Kind::RawFinalizer.is_floor() && Kind::Raw.is_floor());
        assert!(!Kind::Ferry { targets: 1 }.is_floor());
        assert_eq!(
            flag(&["--a=1".into(), "--ab=2".into()], "--ab"),
            Some("2".into())
        );
    }
}

//! `ferry run --config ferry.yaml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_sync::dependencies::PlacementSource;
use ferry_sync::leader::LeaderElectionSettings;
use ferry_sync::metrics::Metrics;
use ferry_sync::settings::defaults;
use ferry_sync::{Engine, KcpSettings, ResourceSettings, SyncSettings, TargetSettings};
use ferry_wasm::{Runtime, RuntimeConfig};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::config;
use crate::reload::{Reloader, component};

/// Options of `ferry run`.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file.
    #[arg(long, short, default_value = "ferry.yaml")]
    config: PathBuf,
    /// Serve Prometheus metrics (/metrics) and the health probes (/healthz, /readyz) on
    /// this address (e.g. 0.0.0.0:9090).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Run as one of several replicas: only the holder of a Lease on a target cluster
    /// writes, the others keep their caches warm (see `leaderElection:` in the file).
    #[arg(long)]
    leader_elect: bool,
    /// Run as one of several replicas that share the work: each holds a Lease of its own
    /// on the leader election target, and each workspace is written by exactly one live
    /// replica (implies --leader-elect's Lease settings; `leaderElection.shareWork: true`
    /// in the file does the same).
    #[arg(long)]
    share_work: bool,
}

pub fn main(args: Args) -> Result<()> {
    let loaded = config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mode = Replicas::of(&args, &loaded.config);
    runtime.block_on(run(loaded, args.metrics_addr, mode))
}

async fn kube_config(
    path: &std::path::Path,
    context: Option<&str>,
    key: &str,
) -> Result<kube::Config> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("{key}: reading {}", path.display()))?;
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| format!("{key}: loading {}", path.display()))?;
    // Audit logs and server-side metrics attribute requests by user agent.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("ferry/", env!("CARGO_PKG_VERSION"))),
    ));
    Ok(config)
}

/// How this process works with other replicas.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replicas {
    /// Alone: it writes everything.
    Alone,
    /// One leader writes everything, the others stand by.
    ElectLeader,
    /// Each writes the workspaces it owns.
    ShareWork,
}

impl Replicas {
    fn of(args: &Args, config: &config::Config) -> Self {
        if args.share_work || config.leader_election.share_work {
            Replicas::ShareWork
        } else if args.leader_elect {
            Replicas::ElectLeader
        } else {
            Replicas::Alone
        }
    }
}

async fn run(
    loaded: config::Loaded,
    metrics_addr: Option<SocketAddr>,
    mode: Replicas,
) -> Result<()> {
    let (mut settings, reloader) =
        settings_and_plugins(&loaded, Arc::new(Metrics::default())).await?;
    if loaded.config.plugins.reload.unwrap_or(true) {
        let interval = Duration::from_millis(
            loaded
                .config
                .plugins
                .reload_interval_ms
                .unwrap_or(config::DEFAULT_RELOAD_INTERVAL_MS),
        );
        reloader
            .watch(interval)
            .context("starting the plugin file watcher")?;
    }
    if mode != Replicas::Alone {
        let election = LeaderElectionSettings {
            share_work: mode == Replicas::ShareWork,
            ..leader_election(&loaded.config)
        };
        // Audit logs then say which replica made each request.
        let agent = user_agent(&election.identity);
        settings
            .kcp
            .config
            .headers
            .retain(|(name, _)| name != http::header::USER_AGENT);
        settings.kcp.config.headers.push(agent.clone());
        for target in &mut settings.targets {
            target
                .config
                .headers
                .retain(|(name, _)| name != http::header::USER_AGENT);
            target.config.headers.push(agent.clone());
        }
        settings.leader_election = Some(election);
    }
    let engine = Engine::new(settings);
    if let Some(addr) = metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let sources = crate::endpoint::Sources {
            metrics: engine.metrics(),
            health: engine.health(),
        };
        tokio::spawn(crate::endpoint::serve(listener, sources));
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stop.send(true);
    });
    engine.run(shutdown).await?;
    Ok(())
}

/// Leader election as `leaderElection:` says, defaults filled in.
fn leader_election(config: &config::Config) -> LeaderElectionSettings {
    let election = &config.leader_election;
    LeaderElectionSettings {
        target: election
            .target
            .clone()
            .or_else(|| config.targets.first().map(|t| t.name.clone()))
            .unwrap_or_default(),
        namespace: election
            .namespace
            .clone()
            .unwrap_or_else(|| config::DEFAULT_LEASE_NAMESPACE.to_string()),
        name: election.name.clone(),
        identity: identity(),
        timings: election.timings(),
        share_work: false,
    }
}

/// `ferry/<version> (<identity>)`: the same product token as a single replica's, with the
/// replica's identity as a comment.
fn user_agent(identity: &str) -> (http::HeaderName, http::HeaderValue) {
    let value = format!("ferry/{} ({identity})", env!("CARGO_PKG_VERSION"));
    let value = http::HeaderValue::from_str(&value).unwrap_or_else(|_| {
        http::HeaderValue::from_static(concat!("ferry/", env!("CARGO_PKG_VERSION")))
    });
    (http::header::USER_AGENT, value)
}

/// This process in the Lease: the pod's name (`POD_NAME` from the downward API, else the
/// host name, which is the pod's name in Kubernetes) and a random suffix, so that two
/// processes on one host, or a restarted pod, never pass for each other.
fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| hostname::get().ok()?.into_string().ok())
        .unwrap_or_else(|| "ferry".into());
    let suffix = (ferry_sync::leader::random_fraction() * f64::from(u32::MAX)) as u32;
    format!("{host}_{suffix:08x}")
}

/// The engine's settings from a validated configuration: plugins loaded (and configured),
/// kubeconfigs read, plugin calls and API requests recorded in `metrics`. Shared by
/// `ferry preview`, `ferry check` and `ferry uninstall`.
pub async fn settings(loaded: &config::Loaded, metrics: Arc<Metrics>) -> Result<SyncSettings> {
    Ok(settings_and_plugins(loaded, metrics).await?.0)
}

/// [`settings`], and the plugins behind its chains, which `ferry run` hot-reloads.
pub async fn settings_and_plugins(
    loaded: &config::Loaded,
    metrics: Arc<Metrics>,
) -> Result<(SyncSettings, Reloader)> {
    let config = &loaded.config;
    let runtime = Runtime::new(RuntimeConfig::default()).context("starting the Wasm runtime")?;
    let reloader = Reloader::start(runtime, component::references(loaded), metrics.clone())?;
    let mut resources = Vec::new();
    for (i, resource) in config.resources.iter().enumerate() {
        let chain = reloader
            .chain(i)
            .with_context(|| format!("resources[{i}] has no plugin chain"))?;
        resources.push(ResourceSettings {
            group: resource.group.clone(),
            resource: resource.resource.clone(),
            plugins: chain,
            placement: match resource.placement {
                config::PlacementConfig::Plugin(_) => PlacementSource::Plugin,
                config::PlacementConfig::Dependents => PlacementSource::Dependents,
            },
            lists_dependencies: resource.dependencies.is_some(),
        });
    }
    let mut targets = Vec::new();
    for (i, target) in config.targets.iter().enumerate() {
        targets.push(TargetSettings {
            name: target.name.clone(),
            labels: target.labels.clone(),
            config: kube_config(
                &target.kubeconfig,
                target.context.as_deref(),
                &format!("targets[{i}].kubeconfig"),
            )
            .await?,
            max_in_flight: target.max_in_flight.unwrap_or(defaults::MAX_IN_FLIGHT),
            writes_per_second: target.writes_per_second,
        });
    }
    let settings = SyncSettings {
        kcp: KcpSettings {
            config: kube_config(
                &config.kcp.kubeconfig,
                config.kcp.context.as_deref(),
                "kcp.kubeconfig",
            )
            .await?,
            workspace: config.kcp.workspace.clone(),
            export: config.kcp.export.clone(),
            workspace_keys: ferry_sync::workspaces::OptedIn {
                labels: config.kcp.workspace_labels.iter().cloned().collect(),
                annotations: config.kcp.workspace_annotations.iter().cloned().collect(),
            },
        },
        targets,
        resources,
        workers: config.engine.workers.unwrap_or(defaults::WORKERS),
        resync: config
            .engine
            .resync_seconds
            .map_or(defaults::RESYNC, Duration::from_secs),
        target_timeout: config
            .engine
            .target_timeout_seconds
            .map_or(defaults::TARGET_TIMEOUT, Duration::from_secs),
        metrics,
        pod_security: config.namespaces.pod_security,
        drain_timeout: defaults::DRAIN_TIMEOUT,
        leader_election: None,
    };
    Ok((settings, reloader))
}

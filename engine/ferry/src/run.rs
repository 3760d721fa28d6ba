//! `ferry run --config ferry.yaml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_sync::metrics::Metrics;
use ferry_sync::settings::defaults;
use ferry_sync::{Engine, KcpSettings, ResourceSettings, SyncSettings, TargetSettings};
use ferry_wasm::{CallReport, Limits, PluginOptions, Runtime, RuntimeConfig};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::io::AsyncWriteExt;

use crate::chain::WasmChain;
use crate::config::{self, PluginRef};

/// Options of `ferry run`.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file.
    #[arg(long, short, default_value = "ferry.yaml")]
    config: PathBuf,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9090).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

pub fn main(args: Args) -> Result<()> {
    let loaded = config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(loaded, args.metrics_addr))
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

fn load_plugin(
    runtime: &Runtime,
    loaded: &config::Loaded,
    key: &str,
    reference: &PluginRef,
    metrics: &Arc<Metrics>,
) -> Result<ferry_wasm::Plugin> {
    let mut limits = Limits::default();
    if let Some(ms) = reference.deadline_ms {
        limits = limits.deadline(Duration::from_millis(ms));
    }
    if let Some(mib) = reference.memory_mib {
        limits = limits.memory(mib * 1024 * 1024);
    }
    let options = PluginOptions::default()
        .name(reference.plugin.clone())
        .config(reference.config.clone())
        .limits(limits)
        .observer(plugin_call_observer(metrics.clone()));
    let path = loaded.plugin_path(key);
    runtime.load_file(path, options).with_context(|| {
        format!(
            "{key}: loading plugin {} ({})",
            reference.plugin,
            path.display()
        )
    })
}

/// Records every plugin hook call in `metrics`.
fn plugin_call_observer(metrics: Arc<Metrics>) -> impl Fn(&CallReport<'_>) + Send + Sync {
    move |call| {
        metrics.plugin_call(
            call.plugin,
            call.hook,
            call.error,
            call.elapsed,
            call.peak_memory,
        );
    }
}

async fn run(loaded: config::Loaded, metrics_addr: Option<SocketAddr>) -> Result<()> {
    let settings = settings(&loaded, Arc::new(Metrics::default())).await?;
    let engine = Engine::new(settings);
    if let Some(addr) = metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tokio::spawn(serve_metrics(listener, engine.metrics()));
        tracing::info!(%addr, "serving metrics at /metrics");
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

/// The engine's settings from a validated configuration: plugins loaded (and configured),
/// kubeconfigs read, plugin calls and API requests recorded in `metrics`. Shared by
/// `ferry run` and `ferry preview`.
pub async fn settings(loaded: &config::Loaded, metrics: Arc<Metrics>) -> Result<SyncSettings> {
    let config = &loaded.config;
    let runtime = Runtime::new(RuntimeConfig::default()).context("starting the Wasm runtime")?;
    let mut resources = Vec::new();
    for (i, resource) in config.resources.iter().enumerate() {
        let key = format!("resources[{i}]");
        let chain = WasmChain {
            placement: load_plugin(
                &runtime,
                loaded,
                &format!("{key}.placement"),
                &resource.placement,
                &metrics,
            )?,
            transform: load_plugin(
                &runtime,
                loaded,
                &format!("{key}.transform"),
                &resource.transform,
                &metrics,
            )?,
            status: match &resource.status {
                Some(reference) => Some(load_plugin(
                    &runtime,
                    loaded,
                    &format!("{key}.status"),
                    reference,
                    &metrics,
                )?),
                None => None,
            },
        };
        resources.push(ResourceSettings {
            group: resource.group.clone(),
            resource: resource.resource.clone(),
            plugins: Arc::new(chain),
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
            writes_per_second: target
                .writes_per_second
                .unwrap_or(defaults::WRITES_PER_SECOND),
        });
    }
    Ok(SyncSettings {
        kcp: KcpSettings {
            config: kube_config(
                &config.kcp.kubeconfig,
                config.kcp.context.as_deref(),
                "kcp.kubeconfig",
            )
            .await?,
            workspace: config.kcp.workspace.clone(),
            export: config.kcp.export.clone(),
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
    })
}

/// A minimal HTTP endpoint for Prometheus: every request gets the metrics.
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let body = metrics.render();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tokio::spawn(async move {
            let mut buffer = [0u8; 1024];
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::io::AsyncReadExt::read(&mut socket, &mut buffer),
            )
            .await;
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

//! Ferry's sync engine: watches an APIExport's virtual workspace in kcp, places and
//! transforms each object through its plugin chain, applies it to target clusters, and brings
//! status back (DESIGN §2).
//!
//! ```text
//! endpoint slice ──► one upstream watch per shard URL ──► UpstreamStore ─┐
//! target clusters ─► one watch of Ferry's copies each ──► DownstreamStore ┤
//!                                                                        ▼
//!                          WorkQueue<UpstreamKey> ──► workers ──► ResourceSync::reconcile
//! ```
//!
//! Each synced resource has its own stores, queue and workers; watches only enqueue keys, the
//! reconcile reads the stores. Depends on the plugin chain only through [`PluginChain`].
#![deny(missing_docs)]

pub mod desired;
pub mod error;
pub mod events;
pub mod kcp;
pub mod metrics;
pub mod plugins;
pub mod preview;
pub mod queue;
pub mod reconcile;
pub mod settings;
pub mod store;
pub mod target;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

pub use error::SyncError;
pub use plugins::{HookError, PluginChain};
pub use settings::{KcpSettings, ResourceSettings, SyncSettings, TargetSettings};

use ferry_core::identity::{self, UpstreamKey};
use metrics::Metrics;
use queue::{Receiver, WorkQueue};
use reconcile::{KcpClients, Next, ResourceSync};
use target::TargetCluster;

/// Waiting keys per resource before watches wait for workers (backpressure, not loss: a key
/// is level-triggered state, not an event).
const QUEUE_CAPACITY: usize = 4096;

/// The engine, ready to run.
pub struct Engine {
    settings: SyncSettings,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// An engine for `settings`.
    pub fn new(settings: SyncSettings) -> Self {
        Self {
            settings,
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// The engine's counters (for a metrics endpoint).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` turns true. Fails early if kcp or the export is not what the
    /// settings say; afterwards errors are per object (retried, reported) and never stop it.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), SyncError> {
        let workers = self.settings.workers;
        let resync_period = self.settings.resync;
        let connected = Connected::connect(self.settings, self.metrics.clone()).await?;
        let mut tasks = JoinSet::new();
        let mut resources = Vec::new();
        for sync in &connected.resources {
            let (queue, receiver) = WorkQueue::new(
                QUEUE_CAPACITY,
                settings::defaults::RETRY_MIN,
                settings::defaults::RETRY_MAX,
            );
            let receiver = Arc::new(receiver);
            for _ in 0..workers.max(1) {
                tasks.spawn(worker(sync.clone(), queue.clone(), receiver.clone()));
            }
            tasks.spawn(resync(sync.clone(), queue.clone(), resync_period));
            for target in connected.targets.iter() {
                tasks.spawn(watch_downstream(
                    sync.clone(),
                    target.clone(),
                    queue.clone(),
                ));
            }
            resources.push((sync.clone(), queue));
        }
        let (provider, export, kcp_clients) = (
            connected.provider.clone(),
            connected.export.clone(),
            connected.kcp.clone(),
        );
        tasks.spawn(watch_endpoint_slice(
            provider,
            export,
            resources,
            kcp_clients,
        ));

        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => {
                tracing::info!("shutting down");
            }
            Some(ended) = tasks.join_next() => {
                // Tasks loop forever; one ending means a bug or a panic.
                tracing::error!(?ended, "an engine task ended unexpectedly");
            }
        }
        tasks.abort_all();
        Ok(())
    }
}

/// Clients and per-resource state, after checking kcp, the export and the targets.
pub(crate) struct Connected {
    pub(crate) provider: kube::Client,
    pub(crate) export: String,
    pub(crate) targets: Arc<Vec<Arc<TargetCluster>>>,
    pub(crate) kcp: Arc<KcpClients>,
    pub(crate) resources: Vec<Arc<ResourceSync>>,
}

impl Connected {
    /// Learns the provider's logical cluster and each resource's version and kind from the
    /// export; fails with a precise error if kcp or the export is not as configured.
    pub(crate) async fn connect(
        settings: SyncSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SyncError> {
        let kcp_config = settings.kcp.config.clone();
        let base = kcp::base_url(&kcp_config);
        let provider = kcp::client_for(
            &kcp_config,
            &format!("{base}/clusters/{}", settings.kcp.workspace),
        )?;
        let provider_cluster = kcp::logical_cluster(&provider).await?;
        tracing::info!(workspace = %settings.kcp.workspace, logical_cluster = %provider_cluster, export = %settings.kcp.export, "provider workspace");
        let mut targets = Vec::new();
        for t in settings.targets {
            let client = kube::Client::try_from(t.config).map_err(|e| {
                SyncError::api(format!("building a client for target {}", t.name), e)
            })?;
            targets.push(Arc::new(TargetCluster::new(
                t.name,
                t.labels,
                client,
                t.max_in_flight,
                t.writes_per_second,
            )));
        }
        let targets = Arc::new(targets);
        let kcp_clients = Arc::new(KcpClients::new(kcp_config));
        let events = Arc::new(events::EventRecorder::default());
        let owner = identity::owner_id(&provider_cluster, &settings.kcp.export);
        let mut resources = Vec::new();
        for resource in settings.resources {
            let api = kcp::resolve_resource(
                &provider,
                &settings.kcp.export,
                &resource.group,
                &resource.resource,
            )
            .await?;
            tracing::info!(resource = %resource.display_name(), version = %api.version, kind = %api.kind, "syncing");
            resources.push(Arc::new(ResourceSync {
                name: resource.display_name(),
                api,
                plugins: resource.plugins,
                upstream: Default::default(),
                downstream: Default::default(),
                targets: targets.clone(),
                kcp: kcp_clients.clone(),
                events: events.clone(),
                metrics: metrics.clone(),
                owner: owner.clone(),
                target_timeout: settings.target_timeout,
            }));
        }
        Ok(Self {
            provider,
            export: settings.kcp.export,
            targets,
            kcp: kcp_clients,
            resources,
        })
    }
}

async fn worker(
    sync: Arc<ResourceSync>,
    queue: WorkQueue<UpstreamKey>,
    receiver: Arc<Receiver<UpstreamKey>>,
) {
    while let Some(lease) = queue.next(&receiver).await {
        let key = lease.0.clone();
        match sync.reconcile(&key).await {
            Ok(Next::Done) => queue.done(lease, false).await,
            Ok(Next::CheckAfter(delay)) => {
                queue.done(lease, false).await;
                queue.add_after(key, delay);
            }
            Err(_) => queue.done(lease, true).await,
        }
    }
}

/// Level-triggered safety net: every object (and every copy's origin, to find orphans) is
/// reconciled again each period even if no event arrived.
async fn resync(
    sync: Arc<ResourceSync>,
    queue: WorkQueue<UpstreamKey>,
    period: std::time::Duration,
) {
    let mut ticker = tokio::time::interval(period);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let keys: BTreeSet<UpstreamKey> = sync
            .upstream
            .keys()
            .into_iter()
            .chain(sync.downstream.origins())
            .collect();
        for key in keys {
            queue.add(key).await;
        }
    }
}

/// Items of a list response carry no apiVersion/kind; watch events do. Plugins and the
/// comparison with the desired state need them, so they are set from the resource.
fn with_types(sync: &ResourceSync, mut object: DynamicObject) -> DynamicObject {
    if object
        .types
        .as_ref()
        .is_none_or(|t| t.api_version.is_empty() || t.kind.is_empty())
    {
        object.types = Some(kube::core::TypeMeta {
            api_version: sync.api.api_version.clone(),
            kind: sync.api.kind.clone(),
        });
    }
    object
}

/// Which cache a watch feeds.
enum Side {
    /// Upstream objects seen through one shard's virtual workspace.
    Upstream(Arc<str>),
    /// This installation's copies on one target.
    Downstream(Arc<TargetCluster>),
}

impl Side {
    /// A completed (re)list replaces what this watch fed before; returns the keys to look at.
    fn replace(&self, sync: &ResourceSync, objects: Vec<DynamicObject>) -> Vec<UpstreamKey> {
        match self {
            Side::Upstream(shard) => {
                let mut keys = sync.upstream.replace_shard(shard, objects);
                // With a complete view, copies without an upstream object are orphans.
                keys.extend(sync.downstream.origins());
                keys
            }
            Side::Downstream(target) => sync.downstream.replace_target(target.name(), objects),
        }
    }

    fn apply(&self, sync: &ResourceSync, object: DynamicObject) -> Option<UpstreamKey> {
        match self {
            Side::Upstream(shard) => sync.upstream.apply(shard, object),
            Side::Downstream(target) => sync.downstream.apply(target.name(), object),
        }
    }

    fn delete(&self, sync: &ResourceSync, object: &DynamicObject) -> Option<UpstreamKey> {
        match self {
            Side::Upstream(_) => sync.upstream.delete(object),
            Side::Downstream(target) => sync.downstream.delete(target.name(), object),
        }
    }

    fn describe(&self) -> String {
        match self {
            Side::Upstream(shard) => format!("upstream objects on shard {shard}"),
            Side::Downstream(target) => format!("copies on {}", target.name()),
        }
    }
}

/// Feeds one cache from one watch and enqueues every key an event touches. List items are
/// buffered until the list is complete, so a relist replaces the cache in one step.
async fn follow(
    sync: Arc<ResourceSync>,
    queue: WorkQueue<UpstreamKey>,
    api: Api<DynamicObject>,
    config: watcher::Config,
    side: Side,
) {
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut buffer = Vec::new();
    while let Some(event) = stream.next().await {
        let keys = match event {
            Ok(Event::Init) => {
                buffer.clear();
                continue;
            }
            Ok(Event::InitApply(object)) => {
                buffer.push(with_types(&sync, object));
                continue;
            }
            Ok(Event::InitDone) => {
                tracing::info!(resource = %sync.name, count = buffer.len(), "listed {}", side.describe());
                side.replace(&sync, std::mem::take(&mut buffer))
            }
            Ok(Event::Apply(object)) => side
                .apply(&sync, with_types(&sync, object))
                .into_iter()
                .collect(),
            Ok(Event::Delete(object)) => side.delete(&sync, &object).into_iter().collect(),
            Err(err) => {
                tracing::warn!(resource = %sync.name, error = %err, "watch of {} failed; retrying", side.describe());
                continue;
            }
        };
        for key in keys {
            queue.add(key).await;
        }
    }
}

async fn watch_downstream(
    sync: Arc<ResourceSync>,
    target: Arc<TargetCluster>,
    queue: WorkQueue<UpstreamKey>,
) {
    let api: Api<DynamicObject> = Api::all_with(target.client.clone(), &sync.api);
    let config = watcher::Config::default().labels(&identity::managed_selector(&sync.owner));
    follow(sync, queue, api, config, Side::Downstream(target)).await;
}

async fn watch_upstream(
    sync: Arc<ResourceSync>,
    queue: WorkQueue<UpstreamKey>,
    client: kube::Client,
    shard: Arc<str>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &sync.api);
    follow(
        sync,
        queue,
        api,
        watcher::Config::default(),
        Side::Upstream(shard),
    )
    .await;
}

/// Follows the export's APIBindings on one shard: which workspaces are bound (logged as they
/// come and go, and exported as a gauge). Binding and unbinding need no action of their own:
/// a new workspace's objects appear in the resource watches, and kcp deletes a workspace's
/// objects when it unbinds, which Ferry's finalizer turns into downstream deletions first.
async fn watch_bindings(
    client: kube::Client,
    shard: Arc<str>,
    export: String,
    metrics: Arc<Metrics>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &kcp::api_bindings());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut bound = BTreeSet::new();
    let mut listing = BTreeSet::new();
    let cluster_of = |b: &DynamicObject| store::upstream_key(b).map(|k| k.cluster);
    let references_export = |b: &DynamicObject| {
        b.data
            .pointer("/spec/reference/export/name")
            .and_then(|n| n.as_str())
            == Some(export.as_str())
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(binding)) => {
                listing.extend(cluster_of(&binding).filter(|_| references_export(&binding)))
            }
            Ok(Event::InitDone) => bound = std::mem::take(&mut listing),
            Ok(Event::Apply(binding)) => {
                if let Some(cluster) = cluster_of(&binding).filter(|_| references_export(&binding))
                    && bound.insert(cluster.clone())
                {
                    tracing::info!(%shard, logical_cluster = %cluster, "workspace bound the export");
                }
            }
            Ok(Event::Delete(binding)) => {
                if let Some(cluster) = cluster_of(&binding)
                    && bound.remove(&cluster)
                {
                    tracing::info!(%shard, logical_cluster = %cluster, "workspace unbound the export");
                }
            }
            Err(err) => {
                tracing::warn!(%shard, error = %err, "watch of APIBindings failed; retrying");
                continue;
            }
        }
        let count = u64::try_from(bound.len()).unwrap_or(u64::MAX);
        metrics.set(
            metrics::names::BOUND_WORKSPACES,
            &[("shard", &shard)],
            count,
        );
    }
}

/// Follows the endpoint slice: one upstream watch per resource per shard URL. An empty slice
/// means no workspace has bound the export yet; Ferry waits.
async fn watch_endpoint_slice(
    provider: kube::Client,
    export: String,
    resources: Vec<(Arc<ResourceSync>, WorkQueue<UpstreamKey>)>,
    kcp: Arc<KcpClients>,
) {
    let api: Api<DynamicObject> = Api::all_with(provider, &kcp::endpoint_slices());
    let config = watcher::Config::default().fields(&format!("metadata.name={export}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut shards: HashMap<String, Vec<AbortHandle>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut announced_empty = false;
    while let Some(event) = stream.next().await {
        let urls = match event {
            Ok(Event::Apply(slice) | Event::InitApply(slice)) => kcp::endpoint_urls(&slice),
            Ok(Event::Delete(_)) => BTreeSet::new(),
            Ok(Event::Init | Event::InitDone) => continue,
            Err(err) => {
                tracing::warn!(%export, error = %err, "watch of the endpoint slice failed; retrying");
                continue;
            }
        };
        if urls.is_empty() && !announced_empty {
            tracing::info!(%export, "the endpoint slice lists no URL yet (no workspace has bound the export); waiting");
            announced_empty = true;
        }
        for gone in shards
            .keys()
            .filter(|u| !urls.contains(*u))
            .cloned()
            .collect::<Vec<_>>()
        {
            tracing::info!(shard = %gone, "shard left the endpoint slice");
            for handle in shards.remove(&gone).into_iter().flatten() {
                handle.abort();
            }
            let shard: Arc<str> = Arc::from(gone.as_str());
            for (sync, _) in &resources {
                sync.upstream.remove_shard(&shard);
            }
        }
        for url in urls {
            if shards.contains_key(&url) {
                continue;
            }
            tracing::info!(shard = %url, "watching shard");
            let client = match kcp.for_url(&format!("{url}/clusters/*")) {
                Ok(client) => client,
                Err(err) => {
                    tracing::error!(shard = %url, error = %err, "cannot watch shard");
                    continue;
                }
            };
            let shard: Arc<str> = Arc::from(url.as_str());
            let mut handles: Vec<AbortHandle> = resources
                .iter()
                .map(|(sync, queue)| {
                    sync.upstream.add_shard(&shard);
                    tasks.spawn(watch_upstream(
                        sync.clone(),
                        queue.clone(),
                        client.clone(),
                        shard.clone(),
                    ))
                })
                .collect();
            if let Some((sync, _)) = resources.first() {
                handles.push(tasks.spawn(watch_bindings(
                    client.clone(),
                    shard.clone(),
                    export.clone(),
                    sync.metrics.clone(),
                )));
            }
            shards.insert(url, handles);
        }
    }
}

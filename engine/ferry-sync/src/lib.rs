//! Ferry's sync engine: watches an APIExport's virtual workspace in kcp, places and
//! transforms each object through its plugin chain, applies it to target clusters, and brings
//! status back (DESIGN §2).
//!
//! ```text
//! endpoint slice ──► one upstream watch per shard URL ──► UpstreamStore ─┐
//!                ──► one LogicalCluster watch per shard ─► Workspaces ───┤
//! target clusters ─► one watch of Ferry's copies each ──► DownstreamStore ┤
//!                                                                        ▼
//!                          WorkQueue<UpstreamKey> ──► workers ──► ResourceSync::reconcile
//! ```
//!
//! Each synced resource has its own stores, queue and workers; watches only enqueue keys, the
//! reconcile reads the stores. Depends on the plugin chain only through [`PluginChain`].
#![deny(missing_docs)]

pub mod compact;
pub mod dependencies;
pub mod desired;
pub mod error;
pub mod events;
pub mod explain;
pub mod health;
#[cfg(test)]
mod heap_count;
pub mod kcp;
pub mod lag;
pub mod leader;
pub mod lease;
pub mod metrics;
pub mod namespace;
pub mod namespace_cleanup;
pub mod pacing;
pub mod plan;
pub mod plugins;
pub mod preview;
pub mod queue;
pub mod reconcile;
pub mod replicas;
pub mod settings;
pub mod shards;
mod startup;
pub mod store;
pub mod target;
pub mod uninstall;
pub mod workspaces;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};

pub use error::SyncError;
pub use plugins::{HookError, PluginChain, Transformed};
pub use settings::{KcpSettings, ResourceSettings, SyncSettings, TargetSettings};

use ferry_core::identity::{self, UpstreamKey};
use health::{Health, Role, WatchGuard, WatchId};
use leader::{Elector, Leadership};
use metrics::Metrics;
use queue::{Outcome, WorkQueue};
use reconcile::{KcpClients, Next, ResourceSync};
use replicas::gate::Gate;
use replicas::handover::Handover;
use replicas::membership::{Membership, MembershipSettings};
use shards::Shards;
use target::TargetCluster;
use workspaces::Workspaces;

/// How often a target's prober asks it `GET /version`, and how long it waits for the answer.
/// A hung API server (accepting connections, answering nothing) is noticed within about
/// twice this, and work for it stops holding workers.
const PROBE_PERIOD: Duration = Duration::from_secs(5);

/// A synced resource with its queue.
type Resource = (Arc<ResourceSync>, WorkQueue<UpstreamKey>);

/// The engine, ready to run.
pub struct Engine {
    settings: SyncSettings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Why the engine stops.
enum Stop {
    /// SIGTERM or Ctrl-C: drain, release the Lease, exit 0.
    Requested,
    /// The Lease was lost: cancel the reconciles in flight at once, then exit with an error.
    LeadershipLost,
    /// A task that should run forever ended (a bug, a panic).
    TaskEnded(String),
}

impl Engine {
    /// An engine for `settings`; it records into `settings.metrics`.
    pub fn new(settings: SyncSettings) -> Self {
        let metrics = settings.metrics.clone();
        Self {
            settings,
            metrics,
            health: Arc::new(Health::default()),
        }
    }

    /// The engine's metrics (for a metrics endpoint).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Connects to kcp, waiting out a kcp that is down or still starting ([`startup`]);
    /// `None` if shut down meanwhile.
    async fn connect(
        settings: &SyncSettings,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Connected>, SyncError> {
        let connecting = startup::patiently("connecting to kcp", || {
            Connected::connect(settings.clone(), Unexported::Fail)
        });
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => Ok(None),
            connected = connecting => connected.map(Some),
        }
    }

    /// The engine's readiness (for a readiness probe).
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Runs until `shutdown` turns true. Waits for a kcp that is down or starting; fails early
    /// if kcp or the export is not what the settings say; afterwards errors are per object
    /// (retried, reported) and never stop it.
    /// A task of the engine that ends (a bug, a panic) is an error: the process should exit
    /// and be restarted rather than run on with a watch silently gone.
    ///
    /// Watches, stores and probers run from the start; the workers, the only part that
    /// writes, run only while this process leads (always, without leader election). On
    /// shutdown the workers take no new key, the reconciles in flight finish (at most
    /// [`settings::defaults::DRAIN_TIMEOUT`]), and only then is the Lease released. A lost
    /// Lease cancels the reconciles in flight at once and ends with
    /// [`SyncError::LeadershipLost`].
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), SyncError> {
        let workers = self.settings.workers.max(1);
        let resync_period = self.settings.resync;
        let drain_timeout = self.settings.drain_timeout;
        let election = self.settings.leader_election.clone();
        let health = self.health.clone();
        let connected = match Self::connect(&self.settings, &mut shutdown).await? {
            Some(connected) => connected,
            None => return Ok(()),
        };
        let mut tasks = JoinSet::new();
        let mut resources: Vec<Resource> = Vec::new();
        for sync in &connected.resources {
            let queue =
                WorkQueue::new(settings::defaults::RETRY_MIN, settings::defaults::RETRY_MAX);
            if let Some(linked) = sync.links.resources.iter().find(|l| l.name == sync.name) {
                let _ = linked.queue.set(queue.clone());
            }
            tasks.spawn(named(
                "resync",
                resync(sync.clone(), queue.clone(), resync_period),
            ));
            tasks.spawn(named(
                "queue metrics",
                queue_metrics(sync.clone(), queue.clone()),
            ));
            for target in connected.targets.iter() {
                let guard = health.watch(format!("copies of {} on {}", sync.name, target.name()));
                tasks.spawn(named(
                    "downstream watch",
                    watch_downstream(sync.clone(), target.clone(), queue.clone(), guard),
                ));
            }
            resources.push((sync.clone(), queue));
        }
        for target in connected.targets.iter() {
            tasks.spawn(named(
                "target prober",
                probe_target(target.clone(), resources.clone(), self.metrics.clone()),
            ));
        }
        tasks.spawn(watch_endpoint_slice(
            connected.provider.clone(),
            connected.export.clone(),
            resources.clone(),
            connected.kcp.clone(),
            connected.shards.clone(),
            connected.workspaces.clone(),
            health.clone(),
        ));

        // Leadership: decided by the elector, or always leading without election.
        let (leadership_tx, mut leadership) = watch::channel(Leadership::Standby);
        let (release, release_rx) = oneshot::channel::<()>();
        // Which logical clusters the workers may write: all, except for replicas sharing the
        // work.
        let mut gate = Gate::everything();
        let sharing = election.as_ref().is_some_and(|e| e.share_work);
        let (elector, _always_leading) = match election {
            None => {
                leadership_tx.send_replace(Leadership::Leading);
                (None, Some(leadership_tx))
            }
            Some(election) => {
                let Some(target) = connected
                    .targets
                    .iter()
                    .find(|t| t.name() == election.target)
                else {
                    return Err(SyncError::LeaderElection(format!(
                        "the Lease is to be held on target {:?}, which is not configured",
                        election.target
                    )));
                };
                let name = election
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("ferry-{}", connected.owner));
                if election.share_work {
                    gate = Gate::shared(Handover::new(&election.identity));
                    let membership = Membership::new(
                        target.client.clone(),
                        MembershipSettings {
                            namespace: election.namespace.clone(),
                            prefix: name,
                            group: connected.owner.clone(),
                            identity: election.identity.clone(),
                            timings: election.timings,
                        },
                    );
                    tracing::info!(target = %election.target, lease = %membership.lease(), identity = %election.identity, "sharing the work with the other replicas");
                    self.metrics.leader(false);
                    let (owned, allows) = (resources.clone(), gate.clone());
                    let confirmed = move |_members: usize| enqueue_writable(&owned, &allows);
                    let task = tokio::spawn(replicas::membership::run(
                        membership,
                        gate.clone(),
                        leadership_tx,
                        release_rx,
                        confirmed,
                        self.metrics.clone(),
                    ));
                    tasks.spawn(named(
                        "replica metrics",
                        replicas::report::publish(
                            gate.clone(),
                            connected.shards.clone(),
                            self.metrics.clone(),
                        ),
                    ));
                    (Some((task, election.timings)), None)
                } else {
                    let elector = Elector::new(
                        target.client.clone(),
                        &election.namespace,
                        &name,
                        &election.identity,
                        election.timings,
                    );
                    tracing::info!(target = %election.target, lease = %elector.lease(), identity = %election.identity, "leader election");
                    self.metrics.leader(false);
                    let task = tokio::spawn(leader::elect(elector, leadership_tx, release_rx));
                    (Some((task, election.timings)), None)
                }
            }
        };
        health.set_role(Role::Standby);

        let mut pool: JoinSet<String> = JoinSet::new();
        let stop = loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => {
                    tracing::info!("shutting down: no new work; draining the reconciles in flight");
                    break Stop::Requested;
                }
                Some(ended) = tasks.join_next() => break Stop::TaskEnded(why_ended(ended)),
                Some(ended) = pool.join_next() => break Stop::TaskEnded(why_ended(ended)),
                changed = leadership.changed() => {
                    if changed.is_err() {
                        // The elector is gone without saying why: assume the worst.
                        break Stop::LeadershipLost;
                    }
                    match *leadership.borrow_and_update() {
                        Leadership::Leading if pool.is_empty() => {
                            for (sync, queue) in &resources {
                                for _ in 0..workers {
                                    pool.spawn(named("worker", worker(sync.clone(), queue.clone(), gate.clone())));
                                }
                            }
                            health.set_role(Role::Leading);
                            health.set_workers_running(true);
                            // A replica sharing the work leads nothing: it writes its share
                            // (ferry_replica_owned_workspaces), so the fleet's sum of
                            // ferry_leader stays the number of elected leaders, at most 1.
                            self.metrics.leader(!sharing);
                        }
                        Leadership::Lost => break Stop::LeadershipLost,
                        Leadership::Leading | Leadership::Standby => {}
                    }
                }
            }
        };

        // Writes stop first: no worker takes a new key; then the reconciles in flight
        // finish (or, with the Lease lost, are cancelled at once).
        health.set_role(Role::Stopping);
        for (_, queue) in &resources {
            queue.shutdown();
        }
        if matches!(stop, Stop::LeadershipLost) {
            pool.shutdown().await;
        } else {
            drain(&mut pool, drain_timeout, &mut leadership).await;
        }
        health.set_workers_running(false);
        self.metrics.leader(false);
        // Only with every worker stopped may another process lead.
        drop(release);
        if let Some((task, timings)) = elector {
            let _ = tokio::time::timeout(timings.renew_deadline, task).await;
        }
        // Watches and probers write nothing: they may stop anywhere.
        tasks.abort_all();
        match stop {
            Stop::Requested => Ok(()),
            Stop::LeadershipLost => Err(SyncError::LeadershipLost),
            Stop::TaskEnded(why) => {
                tracing::error!(%why, "an engine task ended unexpectedly; stopped");
                Err(SyncError::Internal(why))
            }
        }
    }
}

/// Waits for the workers to finish their reconcile in flight (they take no new key), at
/// most `within`; after that, or if the Lease is lost meanwhile, cancels the rest. A
/// cancelled reconcile stops at its next await: each write is one request the server
/// applies whole or not at all, and the next reconcile (here or in the next leader)
/// completes what was left, so nothing is left half-written that a reconcile cannot see.
async fn drain(
    pool: &mut JoinSet<String>,
    within: Duration,
    leadership: &mut watch::Receiver<Leadership>,
) {
    let started = tokio::time::Instant::now();
    let deadline = started + within;
    loop {
        tokio::select! {
            ended = pool.join_next() => {
                if ended.is_none() {
                    tracing::info!(after = ?started.elapsed(), "reconciles drained");
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(running = pool.len(), after = ?within, "reconciles still running at the drain timeout; cancelling them");
                pool.shutdown().await;
                return;
            }
            _ = leadership.wait_for(|l| *l == Leadership::Lost) => {
                tracing::warn!(running = pool.len(), "leadership lost while draining; cancelling the reconciles in flight");
                pool.shutdown().await;
                return;
            }
        }
    }
}

fn why_ended(ended: Result<String, tokio::task::JoinError>) -> String {
    match ended {
        Ok(name) => format!("the {name} task ended"),
        Err(join) if join.is_panic() => {
            format!("a task panicked: {}", panic_message(join.into_panic()))
        }
        Err(join) => format!("a task was cancelled: {join}"),
    }
}

/// Tasks loop forever; each returns its name if it ever ends, for the error.
async fn named(name: &'static str, work: impl std::future::Future<Output = ()>) -> String {
    work.await;
    name.to_string()
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Clients and per-resource state, after checking kcp, the export and the targets.
pub(crate) struct Connected {
    pub(crate) provider: kube::Client,
    pub(crate) export: String,
    pub(crate) targets: Arc<Vec<Arc<TargetCluster>>>,
    pub(crate) kcp: Arc<KcpClients>,
    pub(crate) shards: Arc<Shards>,
    /// Workspace paths, labels and annotations (shared by every resource).
    pub(crate) workspaces: Arc<workspaces::Workspaces>,
    pub(crate) resources: Vec<Arc<ResourceSync>>,
    /// Configured resources the export does not declare, with the error, when connecting
    /// with [`Unexported::Skip`].
    pub(crate) unexported: Vec<(String, SyncError)>,
    /// This installation's owner id (its copies' owner label).
    pub(crate) owner: String,
}

/// What [`Connected::connect`] does with a configured resource the export does not declare.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unexported {
    /// Fail: the engine does not start on a configuration that does not match the export.
    Fail,
    /// Leave it out and say so: an audit still looks at every other resource.
    Skip,
}

impl Connected {
    /// The virtual workspace URLs of the export's endpoint slice, read once (the engine
    /// watches the slice instead; audits and uninstall take one look).
    pub(crate) async fn shard_urls(&self) -> Result<BTreeSet<String>, SyncError> {
        let slices: Api<DynamicObject> =
            Api::all_with(self.provider.clone(), &kcp::endpoint_slices());
        let slice = slices
            .get(&self.export)
            .await
            .map_err(|e| SyncError::api(format!("reading endpoint slice {}", self.export), e))?;
        Ok(kcp::endpoint_urls(&slice))
    }

    /// Learns the provider's logical cluster and each resource's version and kind from the
    /// export; fails with a precise error if kcp or the export is not as configured.
    pub(crate) async fn connect(
        settings: SyncSettings,
        unexported_resources: Unexported,
    ) -> Result<Self, SyncError> {
        let metrics = settings.metrics.clone();
        let kcp_config = settings.kcp.config.clone();
        let base = kcp::base_url(&kcp_config);
        let provider = kcp::client_for(
            &kcp_config,
            &format!("{base}/clusters/{}", settings.kcp.workspace),
            &metrics,
        )?;
        let provider_cluster = kcp::logical_cluster(&provider).await?;
        tracing::info!(workspace = %settings.kcp.workspace, logical_cluster = %provider_cluster, export = %settings.kcp.export, "provider workspace");
        let mut targets = Vec::new();
        for t in settings.targets {
            let client =
                crate::metrics::api::counted_client(t.config, &metrics, &t.name).map_err(|e| {
                    SyncError::api(format!("building a client for target {}", t.name), e)
                })?;
            let pacing = metrics.pacing(&t.name);
            targets.push(Arc::new(TargetCluster::new(
                t.name,
                t.labels,
                client,
                pacing::WriteLimiter::with_metrics(t.max_in_flight, t.writes_per_second, pacing),
                settings.pod_security,
            )));
        }
        let targets = Arc::new(targets);
        let kcp_clients = Arc::new(KcpClients::new(kcp_config, metrics.clone()));
        let events = Arc::new(events::EventRecorder::default());
        let owner = identity::owner_id(&provider_cluster, &settings.kcp.export);
        let shards = Arc::new(Shards::default());
        let export = kcp::read_export(&provider, &settings.kcp.export).await?;
        let workspaces = Arc::new(workspaces::Workspaces::new(
            workspaces::claims_logical_clusters(&export, &settings.kcp.export),
            settings.kcp.workspace_keys.clone(),
        ));
        let mut resolved = Vec::new();
        let mut unexported = Vec::new();
        for resource in settings.resources {
            let api = match kcp::resolve_resource(
                &provider,
                &export,
                &resource.group,
                &resource.resource,
            )
            .await
            {
                Ok(api) => api,
                Err(err @ SyncError::NotExported { .. })
                    if unexported_resources == Unexported::Skip =>
                {
                    unexported.push((resource.display_name(), err));
                    continue;
                }
                Err(err) => return Err(err),
            };
            tracing::info!(resource = %resource.display_name(), version = %api.version, kind = %api.kind, "syncing");
            resolved.push((resource, api));
        }
        let synced = Arc::new(resolved.iter().map(|(_, api)| api.clone()).collect());
        // Stores are shared: a dependency object's plan reads its dependents' objects, a
        // dependent's plan reads where its dependencies' copies are.
        let links = Arc::new(dependencies::Links {
            resources: resolved
                .iter()
                .map(|(resource, _)| dependencies::Linked {
                    name: resource.display_name(),
                    id: (resource.group.clone(), resource.resource.clone()),
                    placement: resource.placement,
                    lists_dependencies: resource.lists_dependencies,
                    plugins: resource.plugins.clone(),
                    upstream: Default::default(),
                    downstream: Default::default(),
                    queue: Default::default(),
                })
                .collect(),
            memo: Default::default(),
        });
        let resources = resolved
            .into_iter()
            .zip(&links.resources)
            .map(|((resource, api), linked)| {
                Arc::new(ResourceSync {
                    name: resource.display_name(),
                    api,
                    plugins: resource.plugins,
                    upstream: linked.upstream.clone(),
                    downstream: linked.downstream.clone(),
                    links: links.clone(),
                    shards: shards.clone(),
                    workspaces: workspaces.clone(),
                    targets: targets.clone(),
                    kcp: kcp_clients.clone(),
                    events: events.clone(),
                    metrics: metrics.clone(),
                    propagation: Default::default(),
                    status_lag: Default::default(),
                    owner: owner.clone(),
                    target_timeout: settings.target_timeout,
                    status_memo: Default::default(),
                    synced: Arc::clone(&synced),
                })
            })
            .collect();
        Ok(Self {
            provider,
            export: settings.kcp.export,
            targets,
            kcp: kcp_clients,
            shards,
            workspaces,
            resources,
            unexported,
            owner,
        })
    }
}

async fn worker(sync: Arc<ResourceSync>, queue: WorkQueue<UpstreamKey>, gate: Arc<Gate>) {
    while let Some(lease) = queue.next().await {
        let key = lease.0.clone();
        // Another replica's logical cluster: not ours to write (it is enqueued again if
        // this replica gains it).
        let Some(permit) = gate.permit(&key.cluster) else {
            queue.done(lease, Outcome::Done);
            continue;
        };
        let result = tokio::select! {
            result = sync.reconcile(&key) => result,
            // Handed over meanwhile: stop at once; the new owner reconciles it again.
            _ = permit.revoked() => Ok(Next::Done),
        };
        drop(permit);
        let outcome = match result {
            Ok(Next::Done) => {
                if !sync.upstream.contains(&key) && sync.downstream.count_copies_of(&key) == 0 {
                    sync.forget(&key);
                }
                Outcome::Done
            }
            Ok(Next::Wait) => Outcome::Backoff,
            Ok(Next::Again) => Outcome::After(Duration::ZERO),
            // A plugin is deterministic: retrying the same input on a timer repeats the same
            // failure. The object's next change (or the periodic resync) tries again.
            Err(SyncError::Plugin(hook)) if !hook.transient => Outcome::Done,
            Err(_) => Outcome::Backoff,
        };
        queue.done(lease, outcome);
    }
}

/// Level-triggered safety net: every object (and every copy's origin, to find orphans) is
/// reconciled again each period even if no event arrived, and at once when the resource's
/// plugin chain changes (hot reload), so every object follows the new plugins.
async fn resync(sync: Arc<ResourceSync>, queue: WorkQueue<UpstreamKey>, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.tick().await;
    let mut changes = sync.plugins.changes();
    loop {
        let changed = async {
            if let Some(changes) = changes.as_mut()
                && changes.changed().await.is_ok()
            {
                return Some(*changes.borrow_and_update());
            }
            // A chain that never changes (or whose sender is gone) never wakes this.
            std::future::pending::<Option<u64>>().await
        };
        tokio::select! {
            _ = ticker.tick() => enqueue_all(&sync, &queue),
            Some(version) = changed => {
                tracing::info!(resource = %sync.name, version, "plugin chain changed: reconciling every object");
                enqueue_all(&sync, &queue);
            }
        }
    }
}

/// Enqueues every object and copy's origin whose logical cluster this replica may write now
/// (after it gained clusters).
fn enqueue_writable(resources: &[Resource], gate: &Gate) {
    for (sync, queue) in resources {
        let keys: BTreeSet<UpstreamKey> = sync
            .upstream
            .keys()
            .into_iter()
            .chain(sync.downstream.origins())
            .filter(|key| gate.allows(&key.cluster))
            .collect();
        for key in keys {
            queue.add(key);
        }
    }
}

/// Enqueues every upstream object and every copy's origin of a resource.
fn enqueue_all(sync: &ResourceSync, queue: &WorkQueue<UpstreamKey>) {
    let keys: BTreeSet<UpstreamKey> = sync
        .upstream
        .keys()
        .into_iter()
        .chain(sync.downstream.origins())
        .collect();
    for key in keys {
        queue.add(key);
    }
}

/// Publishes the queue's depth and the age of its oldest waiting key, and how many copies
/// are kept for objects out of sight.
async fn queue_metrics(sync: Arc<ResourceSync>, queue: WorkQueue<UpstreamKey>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        ticker.tick().await;
        let depth = queue.depth();
        sync.metrics.queue(
            &sync.name,
            depth.ready,
            depth.delayed,
            queue.oldest_ready_age(),
        );
        let kept = sync
            .downstream
            .origins()
            .into_iter()
            .filter(|key| {
                !sync.upstream.contains(key)
                    && matches!(
                        sync.shards.absence(key, &sync.upstream),
                        plan::Absence::Unknown(_)
                    )
            })
            .map(|key| sync.downstream.count_copies_of(&key))
            .sum::<usize>();
        sync.metrics.copies_kept(&sync.name, kept);
    }
}

/// Asks a target `GET /version` every [`PROBE_PERIOD`]. No answer marks it unreachable
/// (which also cancels the requests in flight to it); an answer after that marks it
/// reachable again and enqueues everything, since work for it was skipped meanwhile.
async fn probe_target(target: Arc<TargetCluster>, resources: Vec<Resource>, metrics: Arc<Metrics>) {
    metrics.target_up(target.name(), true);
    let mut ticker = tokio::time::interval(PROBE_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let answer = tokio::time::timeout(PROBE_PERIOD, target.client.apiserver_version()).await;
        match answer {
            Ok(Ok(_)) => {
                if target.mark_reachable() {
                    tracing::info!(target = %target.name(), "target answers again; resuming its work");
                    metrics.target_up(target.name(), true);
                    for (sync, queue) in &resources {
                        enqueue_all(sync, queue);
                    }
                }
            }
            Ok(Err(err)) => {
                if target.mark_unreachable() {
                    tracing::warn!(target = %target.name(), error = %explain::api_error(&err), "target unreachable; pausing work for it");
                    metrics.target_up(target.name(), false);
                }
            }
            Err(_) => {
                if target.mark_unreachable() {
                    tracing::warn!(target = %target.name(), after = ?PROBE_PERIOD, "target does not answer; pausing work for it");
                    metrics.target_up(target.name(), false);
                }
            }
        }
    }
}

/// Items of a list response carry no apiVersion/kind; watch events do, and so do write
/// responses not always. Plugins and the comparison with the desired state need them, so
/// they are set from the resource.
pub(crate) fn with_types(api: &ApiResource, mut object: DynamicObject) -> DynamicObject {
    if object
        .types
        .as_ref()
        .is_none_or(|t| t.api_version.is_empty() || t.kind.is_empty())
    {
        object.types = Some(kube::core::TypeMeta {
            api_version: api.api_version.clone(),
            kind: api.kind.clone(),
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

/// What a (re)list in progress has put into a store so far.
#[derive(Default)]
struct Listing {
    /// Items listed.
    items: usize,
    /// Upstream keys of the items (for copies: their origins).
    keys: BTreeSet<UpstreamKey>,
    /// Where the items are (copies only).
    copies: HashSet<store::CopyRef>,
}

/// Every upstream event starts the propagation clock of its object, every copy's status
/// change the status clock ([`lag`]); the reconcile decides whether it needed a write.
impl Side {
    /// One item of a (re)list: it goes into the store at once (trimmed there), so a relist
    /// never holds a second full copy of what the store has. Nothing is enqueued yet.
    fn list_item(&self, sync: &ResourceSync, object: DynamicObject, listing: &mut Listing) {
        listing.items += 1;
        match self {
            Side::Upstream(shard) => listing.keys.extend(sync.upstream.apply(shard, object)),
            Side::Downstream(target) => {
                listing
                    .copies
                    .insert(store::copy_ref(target.name(), &object));
                listing
                    .keys
                    .extend(sync.downstream.apply(target.name(), object));
            }
        }
    }

    /// A (re)list completed: what it did not return is gone. Returns every key listed or
    /// gone, to look at.
    fn finish_list(&self, sync: &ResourceSync, listing: Listing) -> Vec<UpstreamKey> {
        let mut keys = listing.keys;
        match self {
            Side::Upstream(shard) => {
                let gone = sync.upstream.finish_list(shard, &keys);
                keys.extend(gone);
                keys.iter().for_each(|key| sync.propagation.started(key));
                // With this shard listed, copies of its objects that are gone are orphans.
                keys.extend(sync.downstream.origins());
            }
            Side::Downstream(target) => {
                keys.extend(sync.downstream.finish_list(target.name(), &listing.copies));
                keys.iter().for_each(|key| sync.status_lag.started(key));
            }
        }
        keys.into_iter().collect()
    }

    /// Takes a watch event's object into the store; returns its key, and whether the event
    /// only echoes a write of Ferry's own whose answer is in the store already
    /// (the same UID and resourceVersion, [`compact::same_state`]): such a key needs no reconcile (and starts no latency clock).
    fn apply(&self, sync: &ResourceSync, object: DynamicObject) -> Option<(UpstreamKey, bool)> {
        match self {
            Side::Upstream(shard) => {
                let key = store::upstream_key(&object)?;
                if sync.upstream.holds(&key, &object) {
                    return Some((key, true));
                }
                let key = sync.upstream.apply(shard, object)?;
                sync.propagation.started(&key);
                Some((key, false))
            }
            Side::Downstream(target) => {
                let at = store::CopyRef {
                    target: target.name().to_string(),
                    namespace: object.metadata.namespace.clone().unwrap_or_default(),
                    name: object.metadata.name.clone().unwrap_or_default(),
                };
                let echo = sync.downstream.holds(&at, &object);
                let status_changed =
                    !echo && sync.downstream.status_differs(target.name(), &object);
                // Stored even when an echo: it is how the copy's origin is found.
                let key = sync.downstream.apply(target.name(), object)?;
                if status_changed {
                    sync.status_lag.started(&key);
                }
                Some((key, echo))
            }
        }
    }

    fn delete(&self, sync: &ResourceSync, object: &DynamicObject) -> Option<UpstreamKey> {
        match self {
            Side::Upstream(_) => {
                let key = sync.upstream.delete(object)?;
                sync.propagation.started(&key);
                Some(key)
            }
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

/// Whether a watch event's `incoming` object is the very version already `stored`: the
/// answer to one of Ferry's own writes, which the reconcile that wrote took into the store at
/// once. A watch never delivers one version twice otherwise (list items go through their own
/// path), so the event can change nothing, and reconciling it again only delayed the keys
/// behind it: with two targets every change came back as four such echoes (two copies
/// applied, two statuses written upstream), more than half of all reconciles.
#[cfg(test)]
fn is_echo(stored: &DynamicObject, incoming: &DynamicObject) -> bool {
    compact::same_version(
        stored.metadata.uid.as_deref(),
        stored.metadata.resource_version.as_deref(),
        incoming,
    )
}

/// Feeds one cache from one watch and enqueues every key an event touches. List items go
/// into the cache as they arrive (never a second full copy of it during a relist); their
/// keys are enqueued, and what the list did not return is forgotten, once the list is
/// complete. The first complete list marks the watch synced in `guard`.
async fn follow(
    sync: Arc<ResourceSync>,
    queue: WorkQueue<UpstreamKey>,
    api: Api<DynamicObject>,
    config: watcher::Config,
    side: Side,
    guard: WatchGuard,
) {
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut listing = Listing::default();
    // Said once per stretch: the virtual workspace stopped serving the resource.
    let mut unserved = false;
    while let Some(event) = stream.next().await {
        // Whether the event can change what depends on what, or where: every upstream
        // event, and a copy appearing in a list or going away. A copy's update (its status,
        // every few seconds) cannot.
        let structural = matches!(side, Side::Upstream(_))
            || matches!(event, Ok(Event::InitDone | Event::Delete(_)));
        // An echo of Ferry's own write: what depends on it is told (a dependency's copy
        // arriving releases its dependents), the object itself needs no reconcile.
        let mut echo = false;
        let keys = match event {
            Ok(Event::Init) => {
                listing = Listing::default();
                continue;
            }
            Ok(Event::InitApply(object)) => {
                side.list_item(&sync, with_types(&sync.api, object), &mut listing);
                continue;
            }
            Ok(Event::InitDone) => {
                if std::mem::take(&mut unserved) {
                    tracing::warn!(resource = %sync.name, "{} are served again", side.describe());
                }
                tracing::info!(resource = %sync.name, count = listing.items, "listed {}", side.describe());
                let keys = side.finish_list(&sync, std::mem::take(&mut listing));
                guard.synced();
                keys
            }
            Ok(Event::Apply(object)) => match side.apply(&sync, with_types(&sync.api, object)) {
                Some((key, true)) => {
                    echo = true;
                    vec![key]
                }
                Some((key, false)) => vec![key],
                None => Vec::new(),
            },
            Ok(Event::Delete(object)) => side.delete(&sync, &object).into_iter().collect(),
            Err(err) if matches!(side, Side::Upstream(_)) && not_served(&err) => {
                if !std::mem::replace(&mut unserved, true) {
                    tracing::error!(
                        resource = %sync.name, error = %explain::chain(&err),
                        "the export's virtual workspace no longer serves {} (was it removed from \
                         the APIExport's resources?): its objects are out of sight, their copies \
                         are kept as they are and not updated; retrying until it is served again",
                        sync.name
                    );
                } else {
                    tracing::debug!(resource = %sync.name, "still not served; retrying");
                }
                continue;
            }
            Err(err) => {
                tracing::warn!(resource = %sync.name, error = %explain::chain(&err), "watch of {} failed; retrying", side.describe());
                continue;
            }
        };
        // Objects of other resources that depend on these, or that these depend on: once
        // per namespace (a relist touches thousands of keys in a few namespaces).
        let namespaces: BTreeSet<(&str, &str)> = keys
            .iter()
            .map(|k| (k.cluster.as_str(), k.namespace.as_str()))
            .collect();
        for (cluster, namespace) in namespaces {
            sync.links
                .touched(&sync.name, cluster, namespace, structural);
        }
        if echo {
            continue;
        }
        for key in keys {
            queue.add(key);
        }
    }
}

/// A list or watch answered 404: the server does not serve the resource (any more).
fn not_served(err: &watcher::Error) -> bool {
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => error::is_not_found(e),
        watcher::Error::WatchError(status) => status.code == 404,
        watcher::Error::NoResourceVersion => false,
    }
}

async fn watch_downstream(
    sync: Arc<ResourceSync>,
    target: Arc<TargetCluster>,
    queue: WorkQueue<UpstreamKey>,
    guard: WatchGuard,
) {
    let api: Api<DynamicObject> = Api::all_with(target.client.clone(), &sync.api);
    let config = watcher::Config::default().labels(&identity::managed_selector(&sync.owner));
    follow(sync, queue, api, config, Side::Downstream(target), guard).await;
}

async fn watch_upstream(
    sync: Arc<ResourceSync>,
    queue: WorkQueue<UpstreamKey>,
    client: kube::Client,
    shard: Arc<str>,
    guard: WatchGuard,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &sync.api);
    follow(
        sync,
        queue,
        api,
        watcher::Config::default(),
        Side::Upstream(shard),
        guard,
    )
    .await;
}

/// Follows the export's APIBindings on one shard: which workspaces are bound there. That is
/// the evidence orphan collection needs ([`shards`]): a copy's object is gone only if its
/// workspace is bound on a listed shard and the object is absent there. Bindings coming and
/// going are logged and counted; when the list completes (or a binding goes) every copy's
/// origin is looked at again.
async fn watch_bindings(
    client: kube::Client,
    shard: Arc<str>,
    export: String,
    resources: Vec<Resource>,
    shards: Arc<Shards>,
    metrics: Arc<Metrics>,
    guard: WatchGuard,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &kcp::api_bindings());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing = BTreeSet::new();
    let cluster_of = |b: &DynamicObject| store::upstream_key(b).map(|k| k.cluster);
    let references_export = |b: &DynamicObject| {
        b.data
            .pointer("/spec/reference/export/name")
            .and_then(|n| n.as_str())
            == Some(export.as_str())
    };
    let recheck = || {
        for (sync, queue) in &resources {
            for key in sync.downstream.origins() {
                queue.add(key);
            }
        }
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(binding)) => {
                listing.extend(cluster_of(&binding).filter(|_| references_export(&binding)))
            }
            Ok(Event::InitDone) => {
                tracing::info!(%shard, bound = listing.len(), "listed the export's bindings");
                shards.listed(&shard, std::mem::take(&mut listing));
                guard.synced();
                recheck();
            }
            Ok(Event::Apply(binding)) => {
                if let Some(cluster) = cluster_of(&binding).filter(|_| references_export(&binding))
                    && shards.set(&shard, &cluster, true)
                {
                    tracing::info!(%shard, logical_cluster = %cluster, "workspace bound the export");
                }
            }
            Ok(Event::Delete(binding)) => {
                if let Some(cluster) = cluster_of(&binding)
                    && shards.set(&shard, &cluster, false)
                {
                    tracing::info!(%shard, logical_cluster = %cluster, "workspace unbound the export; its copies are kept until it binds again");
                    recheck();
                }
            }
            Err(err) => {
                tracing::warn!(%shard, error = %explain::chain(&err), "watch of APIBindings failed; retrying");
                continue;
            }
        }
        metrics.bound_workspaces(&shard, shards.count(&shard));
    }
}

/// Follows the endpoint slice: one upstream watch per resource per shard URL, and one
/// APIBindings watch per shard. An empty slice means no workspace has bound the export yet;
/// Ferry waits. A shard that leaves the slice stops its watches; its objects are forgotten
/// but never taken for deleted (their copies stay, see [`shards`]). Ends (an error) only if
/// one of the watches it started ends.
async fn watch_endpoint_slice(
    provider: kube::Client,
    export: String,
    resources: Vec<Resource>,
    kcp: Arc<KcpClients>,
    shards: Arc<Shards>,
    workspaces: Arc<Workspaces>,
    health: Arc<Health>,
) -> String {
    let api: Api<DynamicObject> = Api::all_with(provider, &kcp::endpoint_slices());
    let config = watcher::Config::default().fields(&format!("metadata.name={export}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let guard = health.watch(format!("the endpoint slice of {export}"));
    // Each shard's watch tasks, with their health entries to retire when the shard leaves.
    let mut open: HashMap<String, Vec<(AbortHandle, WatchId)>> = HashMap::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    let mut announced_empty = false;
    loop {
        let event = tokio::select! {
            event = stream.next() => match event {
                Some(event) => event,
                None => return "endpoint slice watch".into(),
            },
            Some(ended) = tasks.join_next() => match ended {
                // Aborted because its shard left: expected.
                Err(join) if join.is_cancelled() => continue,
                Err(join) => std::panic::resume_unwind(join.into_panic()),
                Ok(name) => return name,
            },
        };
        let urls = match event {
            Ok(Event::Apply(slice) | Event::InitApply(slice)) => kcp::endpoint_urls(&slice),
            Ok(Event::Delete(_)) => BTreeSet::new(),
            Ok(Event::InitDone) => {
                guard.synced();
                continue;
            }
            Ok(Event::Init) => continue,
            Err(err) => {
                tracing::warn!(%export, error = %explain::chain(&err), "watch of the endpoint slice failed; retrying");
                continue;
            }
        };
        if urls.is_empty() && !announced_empty {
            tracing::info!(%export, "the endpoint slice lists no URL yet (no workspace has bound the export); waiting");
            announced_empty = true;
        }
        for gone in open
            .keys()
            .filter(|u| !urls.contains(*u))
            .cloned()
            .collect::<Vec<_>>()
        {
            tracing::warn!(shard = %gone, "shard left the endpoint slice; its copies are kept until it returns");
            for (handle, id) in open.remove(&gone).into_iter().flatten() {
                health.retire(id);
                handle.abort();
            }
            shards.remove(&gone);
            workspaces.remove_shard(&gone);
            let shard: Arc<str> = Arc::from(gone.as_str());
            for (sync, _) in &resources {
                sync.upstream.remove_shard(&shard);
            }
        }
        for url in urls {
            if open.contains_key(&url) {
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
            let mut handles: Vec<(AbortHandle, WatchId)> = resources
                .iter()
                .map(|(sync, queue)| {
                    sync.upstream.add_shard(&shard);
                    let guard = health.watch(format!("{} on shard {url}", sync.name));
                    let id = guard.id();
                    let handle = tasks.spawn(named(
                        "upstream watch",
                        watch_upstream(
                            sync.clone(),
                            queue.clone(),
                            client.clone(),
                            shard.clone(),
                            guard,
                        ),
                    ));
                    (handle, id)
                })
                .collect();
            if let Some((sync, _)) = resources.first() {
                let guard = health.watch(format!("APIBindings on shard {url}"));
                let id = guard.id();
                let handle = tasks.spawn(named(
                    "bindings watch",
                    watch_bindings(
                        client.clone(),
                        shard.clone(),
                        export.clone(),
                        resources.clone(),
                        shards.clone(),
                        sync.metrics.clone(),
                        guard,
                    ),
                ));
                handles.push((handle, id));
            }
            if workspaces.claimed() {
                workspaces.add_shard(&shard);
                let guard = health.watch(format!("LogicalClusters on shard {url}"));
                let id = guard.id();
                let handle = tasks.spawn(named(
                    "workspaces watch",
                    workspaces::watch(
                        client.clone(),
                        shard.clone(),
                        resources.clone(),
                        workspaces.clone(),
                        guard,
                    ),
                ));
                handles.push((handle, id));
            }
            open.insert(url, handles);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Box<kube::core::Status> {
        Box::new(kube::core::Status::failure("x", "NotFound").with_code(code))
    }

    fn object(uid: Option<&str>, version: Option<&str>) -> DynamicObject {
        let mut object = DynamicObject::new(
            "web",
            &ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
                "apps",
                "v1",
                "Deployment",
            )),
        );
        object.metadata.uid = uid.map(str::to_string);
        object.metadata.resource_version = version.map(str::to_string);
        object
    }

    #[test]
    fn only_the_version_already_stored_is_an_echo() {
        let stored = object(Some("u1"), Some("100"));
        assert!(is_echo(&stored, &object(Some("u1"), Some("100"))));
        // A newer version, an older one (out of order), another object of the same name.
        assert!(!is_echo(&stored, &object(Some("u1"), Some("101"))));
        assert!(!is_echo(&stored, &object(Some("u1"), Some("99"))));
        assert!(!is_echo(&stored, &object(Some("u2"), Some("100"))));
        // Without a version or UID nothing can be told: reconcile.
        let bare = object(None, None);
        assert!(!is_echo(&bare, &bare));
        assert!(!is_echo(
            &object(Some("u1"), None),
            &object(Some("u1"), None)
        ));
    }

    #[test]
    fn a_resource_the_virtual_workspace_stops_serving_is_told_apart_from_other_watch_errors() {
        // kcp answers 404 on the virtual workspace once a resource leaves the export.
        let gone = || kube::Error::Api(status(404));
        assert!(not_served(&watcher::Error::WatchStartFailed(gone())));
        assert!(not_served(&watcher::Error::InitialListFailed(gone())));
        assert!(not_served(&watcher::Error::WatchError(status(404))));
        let forbidden = kube::Error::Api(status(403));
        assert!(!not_served(&watcher::Error::InitialListFailed(forbidden)));
        assert!(!not_served(&watcher::Error::WatchError(status(410))));
        assert!(!not_served(&watcher::Error::NoResourceVersion));
    }

    /// A pool of one worker whose reconcile takes `takes`, recording when it finishes.
    fn pool_with_reconcile_of(
        takes: Duration,
    ) -> (JoinSet<String>, Arc<std::sync::atomic::AtomicBool>) {
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut pool = JoinSet::new();
        let done = finished.clone();
        pool.spawn(named("worker", async move {
            tokio::time::sleep(takes).await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        }));
        (pool, finished)
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_lets_a_reconcile_in_flight_finish() {
        let (mut pool, finished) = pool_with_reconcile_of(Duration::from_secs(3));
        let (_keep, mut leadership) = watch::channel(Leadership::Leading);
        let started = tokio::time::Instant::now();
        drain(&mut pool, Duration::from_secs(10), &mut leadership).await;
        assert!(finished.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_still_running_at_the_drain_timeout_is_cancelled() {
        let (mut pool, finished) = pool_with_reconcile_of(Duration::from_secs(60));
        let (_keep, mut leadership) = watch::channel(Leadership::Leading);
        let started = tokio::time::Instant::now();
        drain(&mut pool, Duration::from_secs(10), &mut leadership).await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(pool.is_empty());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !finished.load(std::sync::atomic::Ordering::SeqCst),
            "cancelled"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_lost_while_draining_cancels_the_reconciles_at_once() {
        let (mut pool, finished) = pool_with_reconcile_of(Duration::from_secs(8));
        let (leadership_tx, mut leadership) = watch::channel(Leadership::Leading);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            leadership_tx.send_replace(Leadership::Lost);
            // Kept alive: only the value says the Lease is lost.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let started = tokio::time::Instant::now();
        drain(&mut pool, Duration::from_secs(10), &mut leadership).await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !finished.load(std::sync::atomic::Ordering::SeqCst),
            "cancelled"
        );
    }
}

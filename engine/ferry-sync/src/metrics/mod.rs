//! What an operator watches and alerts on: how far behind Ferry is, what fails, what it asks
//! of kcp, the targets and its plugins. Kept in a `prometheus-client` registry and rendered
//! in the Prometheus text format (docs/operations.md lists every metric).
//!
//! The engine records through the methods of [`Metrics`], which name the event ("a reconcile
//! ended", "a copy was written"); label sets are typed here, in one place.

pub mod api;
mod reload;
mod replicas;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_core::{CallErrorKind, Hook};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use api::CountRequests;

/// The `Content-Type` of [`Metrics::render`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Bucket bounds, in seconds, of the propagation and status latencies: from a few
/// milliseconds (an idle engine on a local network) to five minutes (retries after a
/// target outage, a deep queue). An alert on the p99 needs resolution around the
/// objective (seconds), and the last bucket shows "more than minutes" without `+Inf`
/// swallowing everything.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 300.0,
];

/// Bucket bounds, in seconds, of one reconcile: 1 ms (nothing to write) to 30 s (the
/// per-target time limit of a reconcile defaults to 30 s).
pub const RECONCILE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds, in seconds, of one plugin call: a transform takes tens of microseconds,
/// the default deadline is 250 ms, and an operator may raise it to seconds.
pub const PLUGIN_CALL_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// `resource`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByResource {
    resource: String,
}

/// `resource`, `result` (`ok`, `waiting`, `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    resource: String,
    result: String,
}

/// `resource`, `kind` (of error).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    resource: String,
    kind: String,
}

/// `target`, `verb`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    target: String,
    verb: String,
}

/// `write` (`finalizer`, `status`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamWriteLabels {
    write: String,
}

/// `reason` (of an Event).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    reason: String,
}

/// `shard`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    shard: String,
}

/// `target`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

/// `cluster`: `kcp` or a target's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

/// `plugin`, `hook`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    hook: String,
}

/// `plugin`, `hook`, `outcome` (`ok` or the error kind).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCallLabels {
    plugin: String,
    hook: String,
    outcome: String,
}

/// `cluster` (`kcp` or a target's name), `verb`, `code` (HTTP status, or `error` when no
/// response came).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiRequestLabels {
    cluster: String,
    verb: String,
    code: String,
}

/// `cluster`, `verb`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiVerbLabels {
    cluster: String,
    verb: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

fn plugin_call_histogram() -> Histogram {
    Histogram::new(PLUGIN_CALL_BUCKETS)
}

/// Every metric of one Ferry process; shared by reference (`Arc`), no global state.
pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histograms<ReconcileLabels>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    propagation_latency: Histograms<ByResource>,
    status_latency: Histograms<ByResource>,
    downstream_writes: Family<WriteLabels, Counter>,
    upstream_writes: Family<UpstreamWriteLabels, Counter>,
    events: Family<EventLabels, Counter>,
    bound_workspaces: Family<ShardLabels, Gauge>,
    target_up: Family<TargetLabels, Gauge>,
    leader: Gauge,
    queue_ready: Family<ByResource, Gauge>,
    queue_delayed: Family<ByResource, Gauge>,
    queue_oldest_age: Family<ByResource, Gauge<f64, AtomicU64>>,
    copies_kept: Family<ByResource, Gauge>,
    plugin_calls: Family<PluginCallLabels, Counter>,
    plugin_call_duration: Histograms<PluginLabels>,
    plugin_peak_memory: Family<PluginLabels, Gauge>,
    api_requests: Family<ApiRequestLabels, Counter>,
    api_request_duration: Histograms<ApiVerbLabels>,
    reload: reload::ReloadMetrics,
    replicas: replicas::ReplicaMetrics,
    write_rate: Family<ClusterLabels, Gauge<f64, AtomicU64>>,
    write_throttled: Family<ClusterLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            reconcile_duration: Family::new_with_constructor(reconcile_histogram),
            reconcile_errors: Family::default(),
            propagation_latency: Family::new_with_constructor(latency_histogram),
            status_latency: Family::new_with_constructor(latency_histogram),
            downstream_writes: Family::default(),
            upstream_writes: Family::default(),
            events: Family::default(),
            bound_workspaces: Family::default(),
            target_up: Family::default(),
            leader: Gauge::default(),
            queue_ready: Family::default(),
            queue_delayed: Family::default(),
            queue_oldest_age: Family::default(),
            copies_kept: Family::default(),
            plugin_calls: Family::default(),
            plugin_call_duration: Family::new_with_constructor(plugin_call_histogram),
            plugin_peak_memory: Family::default(),
            api_requests: Family::default(),
            api_request_duration: Family::new_with_constructor(reconcile_histogram),
            reload: reload::ReloadMetrics::default(),
            replicas: replicas::ReplicaMetrics::default(),
            write_rate: Family::default(),
            write_throttled: Family::default(),
            registry: Registry::default(),
        };
        // Counters get their `_total` suffix, units their `_seconds`/`_bytes`, from the
        // registry; the names here are the stems.
        let m = &metrics;
        registry.register_with_unit(
            "ferry_reconcile_duration",
            "Time one reconcile of an object took, by resource and result (ok, waiting, \
             error); its _count is the number of reconciles",
            Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        registry.register(
            "ferry_reconcile_errors",
            "Failed reconciles, by resource and error kind",
            m.reconcile_errors.clone(),
        );
        registry.register_with_unit(
            "ferry_propagation_latency",
            "From an upstream change seen by the watch to the last copy of the object written \
             (created, updated or deleted) on every placed target, by resource",
            Unit::Seconds,
            m.propagation_latency.clone(),
        );
        registry.register_with_unit(
            "ferry_status_latency",
            "From a copy's status change seen by the watch to the upstream status written, by \
             resource",
            Unit::Seconds,
            m.status_latency.clone(),
        );
        registry.register(
            "ferry_downstream_writes",
            "Mutating requests to target clusters that succeeded, by target and verb",
            m.downstream_writes.clone(),
        );
        registry.register(
            "ferry_upstream_writes",
            "Mutating requests to kcp that succeeded, by what was written (finalizer, status)",
            m.upstream_writes.clone(),
        );
        registry.register(
            "ferry_events",
            "Events recorded on upstream objects, by reason",
            m.events.clone(),
        );
        registry.register(
            "ferry_bound_workspaces",
            "Workspaces bound to the export, by shard",
            m.bound_workspaces.clone(),
        );
        registry.register(
            "ferry_target_up",
            "Whether a target cluster answers (1) or not (0), by target",
            m.target_up.clone(),
        );
        registry.register(
            "ferry_leader",
            "Whether this process was elected leader and its workers write everything (1) or \
             not (0: a standby, or a replica sharing the work, which leads nothing; see \
             ferry_replica_owned_workspaces)",
            m.leader.clone(),
        );
        registry.register(
            "ferry_queue_ready",
            "Objects waiting to be reconciled now, by resource",
            m.queue_ready.clone(),
        );
        registry.register(
            "ferry_queue_delayed",
            "Objects waiting for a retry or a check-back delay, by resource",
            m.queue_delayed.clone(),
        );
        registry.register_with_unit(
            "ferry_queue_oldest_age",
            "Age of the oldest object waiting to be reconciled now (0 when none), by resource",
            Unit::Seconds,
            m.queue_oldest_age.clone(),
        );
        registry.register(
            "ferry_copies_kept_unknown_origin",
            "Copies kept because their upstream object is out of sight but not proven gone \
             (a shard left the endpoint slice, a workspace unbound), by resource",
            m.copies_kept.clone(),
        );
        registry.register(
            "ferry_plugin_calls",
            "Plugin hook calls, by plugin, hook and outcome (ok or the error kind)",
            m.plugin_calls.clone(),
        );
        registry.register_with_unit(
            "ferry_plugin_call_duration",
            "Wall time of one plugin hook call (instantiation, hook, output validation), by \
             plugin and hook",
            Unit::Seconds,
            m.plugin_call_duration.clone(),
        );
        registry.register_with_unit(
            "ferry_plugin_peak_memory",
            "Largest linear memory one call of the plugin's hook reached since Ferry started, \
             by plugin and hook",
            Unit::Bytes,
            m.plugin_peak_memory.clone(),
        );
        registry.register(
            "ferry_api_requests",
            "Requests to kcp and the target clusters, watches included, by cluster (kcp or \
             the target's name), verb and HTTP status code (error: no response)",
            m.api_requests.clone(),
        );
        registry.register_with_unit(
            "ferry_api_request_duration",
            "Time from sending a request to kcp or a target to its response head, watches \
             excepted, by cluster and verb: with ferry_reconcile_duration_seconds, whether a \
             reconcile waits on kcp, on a target, or on neither",
            Unit::Seconds,
            m.api_request_duration.clone(),
        );
        m.reload.register(&mut registry);
        m.replicas.register(&mut registry);
        registry.register(
            "ferry_write_rate",
            "Mutating requests per second the adaptive pacing allows now, by cluster (kcp or \
             the target's name): lowered on 429 answers and rising latency, recovering \
             additively up to writesPerSecond",
            m.write_rate.clone(),
        );
        registry.register(
            "ferry_write_throttled",
            "Mutating requests answered 429 (Too Many Requests), by cluster",
            m.write_throttled.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// A reconcile of a `resource` object ended with `result` after `elapsed`.
    pub fn reconciled(&self, resource: &str, result: &str, elapsed: Duration) {
        self.reconcile_duration
            .get_or_create(&ReconcileLabels {
                resource: resource.into(),
                result: result.into(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A reconcile of a `resource` object failed with an error of `kind`.
    pub fn reconcile_failed(&self, resource: &str, kind: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                resource: resource.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// An upstream change of a `resource` object reached every placed target `latency`
    /// after the watch delivered it.
    pub fn propagated(&self, resource: &str, latency: Duration) {
        self.propagation_latency
            .get_or_create(&ByResource {
                resource: resource.into(),
            })
            .observe(latency.as_secs_f64());
    }

    /// A copy's status change of a `resource` object reached the upstream status `latency`
    /// after the watch delivered it.
    pub fn status_propagated(&self, resource: &str, latency: Duration) {
        self.status_latency
            .get_or_create(&ByResource {
                resource: resource.into(),
            })
            .observe(latency.as_secs_f64());
    }

    /// A mutating request to `target` succeeded.
    pub fn downstream_write(&self, target: &str, verb: &str) {
        self.downstream_writes
            .get_or_create(&WriteLabels {
                target: target.into(),
                verb: verb.into(),
            })
            .inc();
    }

    /// A mutating request to kcp succeeded.
    pub fn upstream_write(&self, write: &str) {
        self.upstream_writes
            .get_or_create(&UpstreamWriteLabels {
                write: write.into(),
            })
            .inc();
    }

    /// An Event with `reason` was recorded on an upstream object.
    pub fn event_recorded(&self, reason: &str) {
        self.events
            .get_or_create(&EventLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// `count` workspaces are bound to the export on `shard`.
    pub fn bound_workspaces(&self, shard: &str, count: usize) {
        self.bound_workspaces
            .get_or_create(&ShardLabels {
                shard: shard.into(),
            })
            .set(gauge_value(count));
    }

    /// Whether `target` answers.
    pub fn target_up(&self, target: &str, up: bool) {
        self.target_up
            .get_or_create(&TargetLabels {
                target: target.into(),
            })
            .set(i64::from(up));
    }

    /// Where the write pacing of `cluster` (`kcp` or a target's name) reports its rate and
    /// its 429 answers.
    pub fn pacing(&self, cluster: &str) -> crate::pacing::PacingMetrics {
        let labels = ClusterLabels {
            cluster: cluster.into(),
        };
        crate::pacing::PacingMetrics {
            rate: self.write_rate.get_or_create(&labels).clone(),
            throttled: self.write_throttled.get_or_create(&labels).clone(),
        }
    }

    /// Whether this process leads (its workers write) or is a standby.
    pub fn leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// A replica sharing the work acts on a member set of `members` (0: none, it holds no
    /// member Lease) and may write `owned` of the bound workspaces.
    pub fn replica_share(&self, members: usize, owned: usize) {
        self.replicas.members(members);
        self.replicas.owned_workspaces(owned);
    }

    /// A replica sharing the work adopted a new member set.
    pub fn replica_member_set_adopted(&self) {
        self.replicas.adopted();
    }

    /// A handover ended: every member advertised the member set this replica adopted
    /// `elapsed` ago.
    pub fn replica_handover_completed(&self, elapsed: Duration) {
        self.replicas.handover_completed(elapsed.as_secs_f64());
    }

    /// The queue of `resource`: keys ready, keys delayed, and how long the oldest ready key
    /// has waited.
    pub fn queue(&self, resource: &str, ready: usize, delayed: usize, oldest: Option<Duration>) {
        let labels = ByResource {
            resource: resource.into(),
        };
        self.queue_ready
            .get_or_create(&labels)
            .set(gauge_value(ready));
        self.queue_delayed
            .get_or_create(&labels)
            .set(gauge_value(delayed));
        self.queue_oldest_age
            .get_or_create(&labels)
            .set(oldest.map_or(0.0, |age| age.as_secs_f64()));
    }

    /// `count` copies of `resource` objects are kept for objects out of sight.
    pub fn copies_kept(&self, resource: &str, count: usize) {
        self.copies_kept
            .get_or_create(&ByResource {
                resource: resource.into(),
            })
            .set(gauge_value(count));
    }

    /// One call of `plugin`'s `hook` ended (`error` if it failed) after `elapsed`, its
    /// instance's memory having reached `peak_memory` bytes.
    pub fn plugin_call(
        &self,
        plugin: &str,
        hook: Hook,
        error: Option<CallErrorKind>,
        elapsed: Duration,
        peak_memory: u64,
    ) {
        let labels = PluginLabels {
            plugin: plugin.into(),
            hook: hook.wit_name().into(),
        };
        self.plugin_calls
            .get_or_create(&PluginCallLabels {
                plugin: labels.plugin.clone(),
                hook: labels.hook.clone(),
                outcome: error.map_or("ok", CallErrorKind::as_str).into(),
            })
            .inc();
        self.plugin_call_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        let peak = i64::try_from(peak_memory).unwrap_or(i64::MAX);
        self.plugin_peak_memory
            .get_or_create(&labels)
            .inner()
            .fetch_max(peak, Ordering::Relaxed);
    }

    /// The component with SHA-256 `digest` now answers `plugin` as `resource`'s `hook`
    /// (at start-up, or after a hot reload from the component `previous`).
    pub fn plugin_component(
        &self,
        plugin: &str,
        resource: &str,
        hook: &str,
        digest: &str,
        previous: Option<&str>,
    ) {
        self.reload
            .component(plugin, resource, hook, digest, previous);
    }

    /// A hot reload of `plugin` to the component with SHA-256 `digest` ended: `loaded`, or
    /// the reason it was refused.
    pub fn plugin_reload(&self, plugin: &str, digest: &str, outcome: &str) {
        self.reload.reload(plugin, digest, outcome);
    }

    /// A request to `cluster` got an answer with HTTP status `code` (`None`: no answer).
    pub fn api_request(&self, cluster: &str, verb: &str, code: Option<u16>) {
        self.api_requests
            .get_or_create(&ApiRequestLabels {
                cluster: cluster.into(),
                verb: verb.into(),
                code: code.map_or_else(|| "error".into(), |c| c.to_string()),
            })
            .inc();
    }

    /// A request (not a watch) to `cluster` got its answer, or failed, `elapsed` after it was
    /// sent.
    pub fn api_request_duration(&self, cluster: &str, verb: &str, elapsed: Duration) {
        self.api_request_duration
            .get_or_create(&ApiVerbLabels {
                cluster: cluster.into(),
                verb: verb.into(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A tower layer for a kube client of `cluster` that counts its requests
    /// ([`Metrics::api_request`]).
    pub fn count_requests(self: &Arc<Self>, cluster: &str) -> CountRequests {
        CountRequests::new(self.clone(), cluster)
    }

    /// The Prometheus text exposition (format 0.0.4, [`CONTENT_TYPE`]) of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests;

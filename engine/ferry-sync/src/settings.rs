//! What the engine is told to do, already validated and with clients' configs loaded. The
//! binary builds this from the configuration file; tests build it directly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::dependencies::PlacementSource;
use crate::metrics::Metrics;
use crate::plugins::PluginChain;

/// Everything [`crate::Engine`] needs.
#[derive(Clone)]
pub struct SyncSettings {
    /// kcp connection and the export to serve.
    pub kcp: KcpSettings,
    /// Target clusters.
    pub targets: Vec<TargetSettings>,
    /// Synced resources with their plugin chains.
    pub resources: Vec<ResourceSettings>,
    /// Concurrent reconciles per resource.
    pub workers: usize,
    /// Every object is reconciled again this often even without events (level-triggered
    /// safety net for missed events; at rest it writes nothing).
    pub resync: Duration,
    /// How long one target's part of a reconcile may take before it counts as failed (and is
    /// retried), so an unreachable cluster does not hold up the others.
    pub target_timeout: Duration,
    /// Where the engine records its metrics (the binary also records plugin calls there).
    pub metrics: Arc<Metrics>,
    /// Pod Security Admission level of the namespaces Ferry creates on targets.
    pub pod_security: crate::namespace::PodSecurityLevel,
    /// How long a shutdown waits for the reconciles in flight before it cancels them.
    pub drain_timeout: Duration,
    /// Leader election; `None`: this process always leads (run one replica).
    pub leader_election: Option<crate::leader::LeaderElectionSettings>,
}

/// The kcp side.
#[derive(Clone)]
pub struct KcpSettings {
    /// Client configuration for Ferry's kcp identity. Its URL may point at any workspace;
    /// the engine keeps only scheme, host and port.
    pub config: kube::Config,
    /// Path of the provider workspace that holds the APIExport, e.g. `root:platform`.
    pub workspace: String,
    /// Name of the APIExport (its endpoint slice has the same name).
    pub export: String,
    /// Which keys of a workspace's `LogicalCluster` labels and annotations plugins see.
    pub workspace_keys: crate::workspaces::OptedIn,
}

/// One target cluster.
#[derive(Clone)]
pub struct TargetSettings {
    /// Unique name, e.g. `cluster-1`.
    pub name: String,
    /// Labels placement plugins see.
    pub labels: BTreeMap<String, String>,
    /// Client configuration.
    pub config: kube::Config,
    /// Mutating requests in flight at once on this target.
    pub max_in_flight: usize,
    /// The most mutating requests per second on this target; below that the rate adapts to
    /// the target's answers ([`crate::pacing`]). `None`: [`crate::pacing::DEFAULT_CEILING`].
    pub writes_per_second: Option<f64>,
}

/// One synced resource of the export.
#[derive(Clone)]
pub struct ResourceSettings {
    /// API group, "" for the core group.
    pub group: String,
    /// Plural resource name, e.g. `deployments`.
    pub resource: String,
    /// The plugin chain.
    pub plugins: Arc<dyn PluginChain>,
    /// Where its objects go: the placement plugin, or wherever the objects that reference
    /// them are ([`crate::dependencies`]).
    pub placement: PlacementSource,
    /// Whether the chain has a `dependencies` plugin: its objects name what they need.
    pub lists_dependencies: bool,
}

impl ResourceSettings {
    /// `deployments.apps` style name for logs and errors.
    pub fn display_name(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// Defaults a production deployment starts from.
pub mod defaults {
    use std::time::Duration;

    /// Concurrent reconciles per resource: enough to hide API latency, few enough that
    /// plugin calls (CPU-bound, on the blocking pool) do not starve a 2-core node.
    pub const WORKERS: usize = 8;
    /// Level-triggered resync period.
    pub const RESYNC: Duration = Duration::from_secs(600);
    /// Mutating requests in flight per target.
    pub const MAX_IN_FLIGHT: usize = 16;
    /// Mutating requests in flight to kcp: kcp serves every tenant, and its writes are
    /// paced by its answers ([`crate::pacing`]); this only bounds a burst.
    pub const KCP_MAX_IN_FLIGHT: usize = 64;
    /// Per-target time limit of a reconcile.
    pub const TARGET_TIMEOUT: Duration = Duration::from_secs(30);
    /// Minimum retry delay after a failed reconcile.
    pub const RETRY_MIN: Duration = Duration::from_millis(500);
    /// Maximum retry delay after repeated failures.
    pub const RETRY_MAX: Duration = Duration::from_secs(60);
    /// How long a shutdown waits for the reconciles in flight: within Kubernetes' default
    /// 30 s termination grace period, with room for releasing the Lease.
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
}

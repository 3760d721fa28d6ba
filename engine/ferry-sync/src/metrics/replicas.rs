//! Replicas that share the work (`--share-work`): how many members this replica acts with,
//! how many workspaces it writes, and how often and how long its handovers take. Without
//! sharing they stay 0 (and the histogram empty).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Bucket bounds, in seconds, of a handover: from a fraction of a second (every member
/// advertised the new set at its next renewal) through a few retry periods (2 s each by
/// default) to minutes (a member that cannot renew, an API server that does not answer).
pub const HANDOVER_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 45.0, 60.0, 120.0,
];

/// The replica metrics, registered with the others.
#[derive(Clone)]
pub(super) struct ReplicaMetrics {
    members: Gauge,
    owned_workspaces: Gauge,
    handovers: Counter,
    handover_duration: Histogram,
}

impl Default for ReplicaMetrics {
    fn default() -> Self {
        Self {
            members: Gauge::default(),
            owned_workspaces: Gauge::default(),
            handovers: Counter::default(),
            handover_duration: Histogram::new(HANDOVER_BUCKETS),
        }
    }
}

impl ReplicaMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "ferry_replica_members",
            "Replicas sharing the work in the member set this replica acts on, itself \
             included (0 without --share-work or while it holds no member Lease)",
            self.members.clone(),
        );
        registry.register(
            "ferry_replica_owned_workspaces",
            "Workspaces bound to the export that this replica writes now (with \
             --share-work; summed over the replicas, the bound workspaces once a handover \
             is complete)",
            self.owned_workspaces.clone(),
        );
        registry.register(
            "ferry_replica_handovers",
            "Member sets this replica adopted (its own joining, a replica joining or leaving), \
             with --share-work; a handover may adopt several before one is confirmed",
            self.handovers.clone(),
        );
        registry.register_with_unit(
            "ferry_replica_handover_duration",
            "From adopting a new member set until every member advertised it (the workspaces \
             that move wait this long), with --share-work",
            Unit::Seconds,
            self.handover_duration.clone(),
        );
    }

    pub(super) fn members(&self, members: usize) {
        self.members.set(super::gauge_value(members));
    }

    pub(super) fn owned_workspaces(&self, owned: usize) {
        self.owned_workspaces.set(super::gauge_value(owned));
    }

    pub(super) fn adopted(&self) {
        self.handovers.inc();
    }

    pub(super) fn handover_completed(&self, seconds: f64) {
        self.handover_duration.observe(seconds);
    }
}

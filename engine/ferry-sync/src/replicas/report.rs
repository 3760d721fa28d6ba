//! What a replica sharing the work tells its metrics: the members it acts with, the bound
//! workspaces it writes, and how long each handover took (from the first member set adopted
//! after a confirmation until a member set is confirmed again: the time the workspaces that
//! move to this replica wait).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gate::Gate;
use crate::metrics::Metrics;
use crate::shards::Shards;

/// How often the gauges are refreshed: bindings come and go without the membership loop
/// noticing, so they are read on their own schedule (cheap: one hash per bound workspace and
/// member).
const REFRESH: Duration = Duration::from_secs(2);

/// The start of the handover under way, if any.
#[derive(Debug, Default)]
pub struct HandoverTimer {
    since: Option<Instant>,
}

impl HandoverTimer {
    /// A member set was adopted at `now`; returns whether that began a handover (rather than
    /// changing the target of one under way, e.g. a second replica joining meanwhile).
    pub fn adopted(&mut self, now: Instant) -> bool {
        if self.since.is_some() {
            return false;
        }
        self.since = Some(now);
        true
    }

    /// A member set was confirmed at `now`: how long the handover took (None if none was
    /// under way).
    pub fn confirmed(&mut self, now: Instant) -> Option<Duration> {
        self.since
            .take()
            .map(|since| now.saturating_duration_since(since))
    }

    /// The replica stopped (Lease lost, shut down): no handover is under way any more.
    pub fn stopped(&mut self) {
        self.since = None;
    }
}

/// Members of the member set this replica acts on (0 before its first listing and after it
/// stopped), and how many of `bound` it may write now.
pub fn share<'a>(gate: &Gate, bound: impl IntoIterator<Item = &'a String>) -> (usize, usize) {
    let members = gate.read(|h| h.and_then(|h| h.view().map(|v| v.len())).unwrap_or(0));
    let owned = bound.into_iter().filter(|c| gate.allows(c)).count();
    (members, owned)
}

/// Refreshes the members and owned workspaces gauges every [`REFRESH`]; never ends.
pub async fn publish(gate: Arc<Gate>, shards: Arc<Shards>, metrics: Arc<Metrics>) {
    let mut ticker = tokio::time::interval(REFRESH);
    loop {
        ticker.tick().await;
        let (members, owned) = share(&gate, &shards.bound());
        metrics.replica_share(members, owned);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::replicas::handover::Handover;
    use crate::replicas::rendezvous;

    #[test]
    fn a_handover_lasts_from_the_first_adoption_to_the_confirmation() {
        let mut timer = HandoverTimer::default();
        let t0 = Instant::now();
        assert!(timer.adopted(t0));
        // A second replica joins before the first join is confirmed: the same handover.
        assert!(!timer.adopted(t0 + Duration::from_secs(1)));
        assert_eq!(
            timer.confirmed(t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(timer.confirmed(t0 + Duration::from_secs(4)), None);
        assert!(timer.adopted(t0 + Duration::from_secs(5)));
        timer.stopped();
        assert_eq!(timer.confirmed(t0 + Duration::from_secs(6)), None);
    }

    #[test]
    fn a_replica_counts_the_members_and_the_bound_workspaces_it_owns() {
        let bound: BTreeSet<String> = (0..300).map(|i| format!("lc-{i}")).collect();
        let mut a = Handover::new("a");
        let gate = Gate::shared(a.clone());
        assert_eq!(
            share(&gate, &bound),
            (0, 0),
            "nothing before the first listing"
        );

        let listing = |h: Option<&Handover>| -> BTreeMap<String, Option<String>> {
            let digest = h.and_then(Handover::advertised);
            BTreeMap::from([("a".into(), digest.clone()), ("b".into(), digest)])
        };
        a.observe(&listing(None));
        let gate = Gate::shared(a.clone());
        assert_eq!(
            share(&gate, &bound),
            (2, 0),
            "two members, nothing written before the view is confirmed"
        );

        let published = a.clone();
        a.observe(&listing(Some(&published)));
        let gate = Gate::shared(a);
        let view: BTreeSet<String> = ["a", "b"].map(String::from).into();
        let expected = bound
            .iter()
            .filter(|c| rendezvous::owner(&view, c) == Some("a"))
            .count();
        assert_eq!(share(&gate, &bound), (2, expected));
        assert!((100..200).contains(&expected), "{expected} of 300");

        assert_eq!(
            share(&Gate::everything(), &bound),
            (0, 300),
            "without sharing: no members, every workspace"
        );
    }
}

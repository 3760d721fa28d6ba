//! The workers' side of sharing the work: before a reconcile, a worker asks the gate for a
//! permit for the key's logical cluster; the gate refuses clusters this replica may not write,
//! and counts the permits in flight per cluster so that a narrowing can wait until every
//! reconcile of a cluster given up has stopped (they are cancelled, see [`Permit::revoked`]).
//!
//! Without sharing (one replica, or leader election) the gate allows everything and costs a
//! branch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::handover::Handover;

/// Which logical clusters this process may write.
enum Rule {
    /// All of them (no sharing).
    Everything,
    /// Those the handover state allows.
    Shared(Handover),
}

impl Rule {
    fn allows(&self, cluster: &str) -> bool {
        match self {
            Rule::Everything => true,
            Rule::Shared(handover) => handover.may_write(cluster),
        }
    }
}

struct State {
    rule: Rule,
    /// Permits in flight per logical cluster.
    in_flight: HashMap<String, usize>,
}

/// The gate; shared by the workers and the membership task.
pub struct Gate {
    state: Mutex<State>,
    /// Bumped on every change of the rule (permits watch it to notice a revocation) and on
    /// every permit returned (a narrowing waits on it for the drain).
    changed: watch::Sender<u64>,
}

impl Gate {
    /// A gate that allows every cluster.
    pub fn everything() -> Arc<Self> {
        Self::with(Rule::Everything)
    }

    /// A gate for a replica that shares the work, allowing nothing until `handover` does.
    pub fn shared(handover: Handover) -> Arc<Self> {
        Self::with(Rule::Shared(handover))
    }

    fn with(rule: Rule) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                rule,
                in_flight: HashMap::new(),
            }),
            changed: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether `cluster` may be written now (for filtering keys; a reconcile takes a permit).
    pub fn allows(&self, cluster: &str) -> bool {
        self.lock().rule.allows(cluster)
    }

    /// A permit to reconcile an object of `cluster`, or None if this replica may not write it.
    pub fn permit(self: &Arc<Self>, cluster: &str) -> Option<Permit> {
        let mut state = self.lock();
        if !state.rule.allows(cluster) {
            return None;
        }
        *state.in_flight.entry(cluster.to_string()).or_insert(0) += 1;
        Some(Permit {
            gate: self.clone(),
            cluster: cluster.to_string(),
        })
    }

    /// Changes the handover state with `change` (which may narrow or widen what is
    /// writable), then waits until no permit is in flight for a cluster no longer writable.
    /// Returns what `change` returned. No-op on a gate that allows everything.
    pub async fn update<T>(&self, change: impl FnOnce(&mut Handover) -> T) -> Option<T> {
        let result = {
            let mut state = self.lock();
            match &mut state.rule {
                Rule::Everything => return None,
                Rule::Shared(handover) => change(handover),
            }
        };
        let mut changed = self.changed.subscribe();
        self.bump();
        loop {
            changed.borrow_and_update();
            if self.drained() {
                return Some(result);
            }
            // A permit returned bumps the counter; the sender lives as long as the gate.
            if changed.changed().await.is_err() {
                return Some(result);
            }
        }
    }

    /// A read of the handover state.
    pub fn read<T>(&self, read: impl FnOnce(Option<&Handover>) -> T) -> T {
        match &self.lock().rule {
            Rule::Everything => read(None),
            Rule::Shared(handover) => read(Some(handover)),
        }
    }

    /// Whether no permit is in flight for a cluster the rule does not allow.
    fn drained(&self) -> bool {
        let state = self.lock();
        state
            .in_flight
            .keys()
            .all(|cluster| state.rule.allows(cluster))
    }
}

/// A reconcile of one logical cluster's object in flight; returned when dropped.
pub struct Permit {
    gate: Arc<Gate>,
    cluster: String,
}

impl Permit {
    /// Resolves when the cluster is no longer writable: the reconcile must stop (select on
    /// it; a cancelled reconcile stops at its next await, the next owner completes it).
    pub async fn revoked(&self) {
        let mut changed = self.gate.changed.subscribe();
        loop {
            changed.borrow_and_update();
            if !self.gate.allows(&self.cluster) {
                return;
            }
            if changed.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut state = self.gate.lock();
            if let Some(count) = state.in_flight.get_mut(&self.cluster) {
                *count -= 1;
                if *count == 0 {
                    state.in_flight.remove(&self.cluster);
                }
            }
        }
        self.gate.bump();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::replicas::rendezvous;

    /// A gate for replica `a` with the confirmed view {a, b}.
    fn gate_of_a_with_b() -> Arc<Gate> {
        let mut a = Handover::new("a");
        let listing = |h: Option<&Handover>| -> BTreeMap<String, Option<String>> {
            let digest = h.and_then(Handover::advertised);
            BTreeMap::from([("a".into(), digest.clone()), ("b".into(), digest)])
        };
        a.observe(&listing(None));
        let published = a.clone();
        a.observe(&listing(Some(&published)));
        assert!(a.is_confirmed());
        Gate::shared(a)
    }

    fn owned_by(view: &[&str], member: &str) -> String {
        let view = view.iter().map(|m| m.to_string()).collect();
        (0..)
            .map(|i| format!("lc-{i}"))
            .find(|c| rendezvous::owner(&view, c) == Some(member))
            .expect("some cluster")
    }

    #[test]
    fn without_sharing_everything_is_allowed() {
        let gate = Gate::everything();
        assert!(gate.allows("anything"));
        assert!(gate.permit("anything").is_some());
    }

    #[test]
    fn a_replica_gets_permits_only_for_its_own_clusters() {
        let gate = gate_of_a_with_b();
        assert!(gate.permit(&owned_by(&["a", "b"], "a")).is_some());
        assert!(gate.permit(&owned_by(&["a", "b"], "b")).is_none());
    }

    #[tokio::test]
    async fn a_narrowing_cancels_and_waits_for_the_reconciles_of_what_it_gives_up() {
        let gate = gate_of_a_with_b();
        // c joins: a keeps some clusters and gives some to c.
        let given = (0..)
            .map(|i| format!("lc-{i}"))
            .find(|c| {
                rendezvous::owner(&["a", "b"].map(String::from).into(), c) == Some("a")
                    && rendezvous::owner(&["a", "b", "c"].map(String::from).into(), c) == Some("c")
            })
            .expect("a free cluster exists");
        let permit = gate.permit(&given).expect("a writes it");
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stopped.clone();
        // A reconcile that would run for an hour unless revoked.
        let reconcile = tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = permit.revoked() => {}
            }
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(permit);
        });
        let listing: BTreeMap<String, Option<String>> = ["a", "b", "c"]
            .iter()
            .map(|m| (m.to_string(), None))
            .collect();
        let updated =
            tokio::time::timeout(Duration::from_secs(5), gate.update(|h| h.observe(&listing)))
                .await
                .expect("the narrowing waits only for the cancelled reconcile");
        assert_eq!(updated, Some(crate::replicas::handover::Step::Adopted));
        assert!(
            stopped.load(std::sync::atomic::Ordering::SeqCst),
            "the update returned only after the reconcile had stopped"
        );
        reconcile.await.expect("the reconcile task ends");
        assert!(gate.permit(&given).is_none());
    }
}

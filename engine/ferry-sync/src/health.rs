//! Whether the engine is ready, for a readiness probe.
//!
//! Ready means: every watch the engine runs has listed its objects once (the caches are
//! synced), none of them has died, and, if this process leads (or runs without leader
//! election), its workers run. A standby with synced caches is ready: it is a healthy replica
//! that takes over at once when the leader goes. Each watch holds a [`WatchGuard`]; a watch
//! task that ends or panics drops its guard, which marks the watch dead until it is retired.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What this process does about writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not connected yet (the engine is starting).
    Starting,
    /// Waiting for the leader Lease: caches warm, no writes.
    Standby,
    /// Holding the Lease, or running without leader election: workers run and write.
    Leading,
    /// Stopping (a signal, or the Lease lost): draining, then exiting.
    Stopping,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Standby => "standby",
            Role::Leading => "leading",
            Role::Stopping => "stopping",
        }
    }
}

#[derive(Debug)]
struct WatchState {
    name: String,
    synced: bool,
    dead: bool,
}

#[derive(Debug)]
struct State {
    role: Role,
    workers_running: bool,
    watches: BTreeMap<u64, WatchState>,
    next_id: u64,
}

/// The engine's readiness, shared with the health endpoint.
#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                role: Role::Starting,
                workers_running: false,
                watches: BTreeMap::new(),
                next_id: 0,
            }),
        }
    }
}

/// The answer of a readiness probe: ready or not, and why, in a line an operator can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Whether the process is ready.
    pub ready: bool,
    /// The role and, when not ready, each reason.
    pub detail: String,
}

impl Health {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Updates are single assignments; a panic elsewhere cannot leave them half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a watch named `name` (e.g. `copies of deployments.apps on cluster-1`), not
    /// yet synced. Hand the guard to the task that runs the watch.
    pub fn watch(self: &Arc<Self>, name: impl Into<String>) -> WatchGuard {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.watches.insert(
            id,
            WatchState {
                name: name.into(),
                synced: false,
                dead: false,
            },
        );
        WatchGuard {
            health: self.clone(),
            id,
        }
    }

    /// Forgets a watch that was stopped on purpose (its shard left the endpoint slice), so
    /// that its end does not count as a death.
    pub fn retire(&self, id: WatchId) {
        self.lock().watches.remove(&id.0);
    }

    /// Sets the role.
    pub fn set_role(&self, role: Role) {
        self.lock().role = role;
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.lock().role
    }

    /// Records whether the workers run.
    pub fn set_workers_running(&self, running: bool) {
        self.lock().workers_running = running;
    }

    /// Whether the process is ready, and why not.
    pub fn readiness(&self) -> Readiness {
        let state = self.lock();
        let mut reasons = Vec::new();
        match state.role {
            Role::Starting => reasons.push("connecting to kcp and the targets".to_string()),
            Role::Stopping => reasons.push("shutting down".to_string()),
            Role::Leading if !state.workers_running => {
                reasons.push("leading but the workers do not run".to_string())
            }
            Role::Leading | Role::Standby => {}
        }
        for watch in state.watches.values() {
            if watch.dead {
                reasons.push(format!("the watch of {} ended", watch.name));
            } else if !watch.synced {
                reasons.push(format!("{} not listed yet", watch.name));
            }
        }
        let role = state.role.as_str();
        if reasons.is_empty() {
            Readiness {
                ready: true,
                detail: format!("ready ({role})"),
            }
        } else {
            Readiness {
                ready: false,
                detail: format!("not ready ({role}): {}", reasons.join("; ")),
            }
        }
    }
}

/// Identifies a registered watch, to [`Health::retire`] it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchId(u64);

/// A watch's entry in [`Health`]; dropping it while registered marks the watch dead.
#[derive(Debug)]
pub struct WatchGuard {
    health: Arc<Health>,
    id: u64,
}

impl WatchGuard {
    /// The watch listed its objects: its cache is synced.
    pub fn synced(&self) {
        if let Some(watch) = self.health.lock().watches.get_mut(&self.id) {
            watch.synced = true;
        }
    }

    /// Its id, to retire it when it is stopped on purpose.
    pub fn id(&self) -> WatchId {
        WatchId(self.id)
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let Some(watch) = self.health.lock().watches.get_mut(&self.id) {
            watch.dead = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(health: &Health) -> bool {
        health.readiness().ready
    }

    #[test]
    fn a_starting_engine_is_not_ready() {
        let health = Health::default();
        let readiness = health.readiness();
        assert!(!readiness.ready);
        assert!(readiness.detail.contains("connecting"), "{readiness:?}");
    }

    #[test]
    fn ready_once_every_watch_listed_and_the_leaders_workers_run() {
        let health = Arc::new(Health::default());
        let upstream = health.watch("upstream objects");
        let copies = health.watch("copies on cluster-1");
        health.set_role(Role::Leading);
        health.set_workers_running(true);
        upstream.synced();
        assert!(!ready(&health), "one watch has not listed yet");
        assert!(
            health
                .readiness()
                .detail
                .contains("copies on cluster-1 not listed yet")
        );
        copies.synced();
        assert!(ready(&health));
        health.set_workers_running(false);
        assert!(!ready(&health), "a leader without workers is not ready");
    }

    #[test]
    fn a_standby_with_synced_caches_is_ready_without_workers() {
        let health = Arc::new(Health::default());
        let watch = health.watch("upstream objects");
        watch.synced();
        health.set_role(Role::Standby);
        assert!(ready(&health));
        assert_eq!(health.readiness().detail, "ready (standby)");
    }

    #[test]
    fn a_dead_watch_makes_the_process_unready_but_a_retired_one_does_not() {
        let health = Arc::new(Health::default());
        health.set_role(Role::Standby);
        let dying = health.watch("upstream objects on shard a");
        dying.synced();
        drop(dying);
        let readiness = health.readiness();
        assert!(!readiness.ready);
        assert!(
            readiness
                .detail
                .contains("the watch of upstream objects on shard a ended"),
            "{readiness:?}"
        );

        let health = Arc::new(Health::default());
        health.set_role(Role::Standby);
        let leaving = health.watch("upstream objects on shard b");
        health.retire(leaving.id());
        drop(leaving);
        assert!(ready(&health));
    }

    #[test]
    fn a_stopping_process_is_not_ready() {
        let health = Health::default();
        health.set_role(Role::Stopping);
        assert!(!ready(&health));
    }
}

//! How long a change takes to be carried through: the clock behind the propagation and
//! status latencies.
//!
//! A watch event *starts* the clock of its object (the first unsettled one counts: a change
//! that waits behind an earlier one waits as long as that one). A write that carries a change
//! marks it *acted on*. When a reconcile ends, the clock *settles*: with a write, the time
//! since the start is the latency; without one, the event needed no write (Ferry's own
//! status write coming back, a copy's unchanged status) and is dropped without a sample.
//! A reconcile that began before the event started the clock worked from an older view and
//! settles nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_core::identity::UpstreamKey;

/// One object's unsettled change.
#[derive(Clone, Copy, Debug)]
struct Pending {
    since: Instant,
    acted: bool,
}

/// Unsettled changes per object.
#[derive(Debug, Default)]
pub struct Lag {
    pending: Mutex<HashMap<UpstreamKey, Pending>>,
}

impl Lag {
    /// A watch delivered a change of `key`'s object now.
    pub fn started(&self, key: &UpstreamKey) {
        self.started_at(key, Instant::now());
    }

    fn started_at(&self, key: &UpstreamKey, now: Instant) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.entry(key.clone()).or_insert(Pending {
                since: now,
                acted: false,
            });
        }
    }

    /// A write carrying `key`'s change succeeded.
    pub fn acted(&self, key: &UpstreamKey) {
        if let Ok(mut pending) = self.pending.lock()
            && let Some(entry) = pending.get_mut(key)
        {
            entry.acted = true;
        }
    }

    /// A reconcile of `key` that took its view at `began` ended; `finished` says whether
    /// it left nothing to do. Returns the latency when a write carried the change through.
    pub fn settle(&self, key: &UpstreamKey, began: Instant, finished: bool) -> Option<Duration> {
        self.settle_at(key, began, finished, Instant::now())
    }

    fn settle_at(
        &self,
        key: &UpstreamKey,
        began: Instant,
        finished: bool,
        now: Instant,
    ) -> Option<Duration> {
        let mut pending = self.pending.lock().ok()?;
        let entry = *pending.get(key)?;
        if entry.since > began {
            return None;
        }
        if entry.acted {
            pending.remove(key);
            return Some(now.saturating_duration_since(entry.since));
        }
        if finished {
            pending.remove(key);
        }
        None
    }

    /// The object is gone and forgotten.
    pub fn forget(&self, key: &UpstreamKey) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(key);
        }
    }

    /// How many objects have an unsettled change (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> UpstreamKey {
        UpstreamKey {
            cluster: "c1".into(),
            namespace: "demo".into(),
            name: "web".into(),
        }
    }

    #[test]
    fn a_change_written_through_gives_the_time_from_its_first_event() {
        let lag = Lag::default();
        let t0 = Instant::now();
        lag.started_at(&key(), t0);
        // A second event before it is carried through does not restart the clock.
        lag.started_at(&key(), t0 + Duration::from_millis(100));
        // A failed reconcile that wrote nothing keeps it running.
        let began = t0 + Duration::from_millis(200);
        assert_eq!(lag.settle_at(&key(), began, false, began), None);
        lag.acted(&key());
        let ended = t0 + Duration::from_millis(700);
        assert_eq!(
            lag.settle_at(&key(), began, true, ended),
            Some(Duration::from_millis(700))
        );
        assert_eq!(lag.len(), 0);
    }

    #[test]
    fn a_change_that_needed_no_write_is_dropped_without_a_sample() {
        let lag = Lag::default();
        let t0 = Instant::now();
        lag.started_at(&key(), t0);
        assert_eq!(lag.settle_at(&key(), t0, true, t0), None);
        assert_eq!(lag.len(), 0);
        // And a later write does not measure from that event.
        lag.acted(&key());
        assert_eq!(lag.settle_at(&key(), t0, true, t0), None);
    }

    #[test]
    fn a_reconcile_that_began_before_the_event_settles_nothing() {
        let lag = Lag::default();
        let t0 = Instant::now();
        lag.started_at(&key(), t0 + Duration::from_millis(10));
        assert_eq!(lag.settle_at(&key(), t0, true, t0), None);
        assert_eq!(lag.len(), 1);
        lag.forget(&key());
        assert_eq!(lag.len(), 0);
    }
}

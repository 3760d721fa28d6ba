//! Matches what the benchmark saw upstream with what it saw on the copies.
//!
//! **Propagation**: each change sets a marker on the upstream object (a sequence number that
//! only grows); a change has arrived once every copy shows that marker *or a later one* (an
//! engine may fold two quick changes into one write, and the newer state contains the older
//! change). Its latency runs from the moment the change was first known upstream (the write's
//! response or the upstream watch, whichever came first) to the moment the last copy showed it.
//!
//! **Status**: a copy's status becomes what the benchmark waits for (e.g. one ready replica);
//! the latency runs from the moment the last copy showed it to the moment the upstream object
//! showed the status the engine makes of them.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Propagation latencies of marked changes, per object `K`, to `targets` copies each.
pub struct Propagation<K> {
    targets: usize,
    objects: HashMap<K, ObjectChanges>,
    latencies: Vec<Duration>,
}

#[derive(Default)]
struct ObjectChanges {
    /// Changes known upstream and not yet on every copy: (marker, when known).
    pending: Vec<(u64, Instant)>,
    /// Every marker seen upstream, so a second report of one is not a second change.
    known: HashSet<u64>,
    /// Per target: the newest marker seen on its copy, and when.
    copies: HashMap<usize, (u64, Instant)>,
}

impl<K: Hash + Eq + Clone> Propagation<K> {
    pub fn new(targets: usize) -> Self {
        Self {
            targets,
            objects: HashMap::new(),
            latencies: Vec::new(),
        }
    }

    /// Change `marker` of `key` is known upstream at `at` (called by the writer and by the
    /// upstream watch; the first call counts).
    pub fn upstream(&mut self, key: &K, marker: u64, at: Instant) {
        let object = self.objects.entry(key.clone()).or_default();
        if let Some(pending) = object.pending.iter_mut().find(|(m, _)| *m == marker) {
            pending.1 = pending.1.min(at);
            return;
        }
        if !object.known.insert(marker) {
            // Counted already: the second of the two calls, after the change arrived.
            return;
        }
        // Already on every copy (the copies' watch was served first): arrived, at once.
        if object.copies.len() == self.targets && object.copies.values().all(|(m, _)| *m >= marker)
        {
            let last = object.copies.values().map(|(_, t)| *t).max().unwrap_or(at);
            self.latencies.push(last.saturating_duration_since(at));
            return;
        }
        object.pending.push((marker, at));
    }

    /// The copy of `key` on `target` shows `marker` at `at`.
    pub fn copy(&mut self, key: &K, target: usize, marker: u64, at: Instant) {
        let object = self.objects.entry(key.clone()).or_default();
        let seen = object.copies.entry(target).or_insert((marker, at));
        if marker > seen.0 {
            *seen = (marker, at);
        }
        if object.copies.len() < self.targets {
            return;
        }
        let everywhere = object.copies.values().map(|(m, _)| *m).min().unwrap_or(0);
        let latencies = &mut self.latencies;
        object.pending.retain(|(m, known)| {
            if *m <= everywhere {
                latencies.push(at.saturating_duration_since(*known));
                false
            } else {
                true
            }
        });
    }

    /// Latencies of the changes that arrived.
    pub fn latencies(&self) -> &[Duration] {
        &self.latencies
    }

    /// Changes known upstream that have not reached every copy.
    pub fn pending(&self) -> usize {
        self.objects.values().map(|o| o.pending.len()).sum()
    }
}

/// Status latencies: per object, from the last copy reaching the wanted status to the upstream
/// object showing the engine's view of it.
pub struct StatusLatency<K> {
    targets: usize,
    objects: HashMap<K, StatusTimes>,
}

#[derive(Default)]
struct StatusTimes {
    copies: HashMap<usize, Instant>,
    upstream: Option<Instant>,
}

impl<K: Hash + Eq + Clone> StatusLatency<K> {
    pub fn new(targets: usize) -> Self {
        Self {
            targets,
            objects: HashMap::new(),
        }
    }

    /// The copy on `target` first shows the wanted status at `at`.
    pub fn copy(&mut self, key: &K, target: usize, at: Instant) {
        let times = self.objects.entry(key.clone()).or_default();
        times.copies.entry(target).or_insert(at);
    }

    /// The upstream object first shows the wanted status at `at`.
    pub fn upstream(&mut self, key: &K, at: Instant) {
        let times = self.objects.entry(key.clone()).or_default();
        times.upstream.get_or_insert(at);
    }

    /// Latencies of the objects whose every copy and upstream object got there; a negative
    /// one (the upstream watch served first) counts as zero.
    pub fn latencies(&self) -> Vec<Duration> {
        self.objects
            .values()
            .filter(|t| t.copies.len() == self.targets)
            .filter_map(|t| {
                let last_copy = t.copies.values().max()?;
                Some(t.upstream?.saturating_duration_since(*last_copy))
            })
            .collect()
    }

    /// Objects that have not got there on every side yet.
    pub fn unfinished(&self, expected: usize) -> usize {
        expected.saturating_sub(self.latencies().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn a_change_arrives_when_every_copy_shows_it() {
        let t = Instant::now();
        let mut p = Propagation::new(2);
        p.upstream(&"a", 1, ms(t, 0));
        p.copy(&"a", 0, 1, ms(t, 40));
        assert!(p.latencies().is_empty(), "one of two copies is not enough");
        p.copy(&"a", 1, 1, ms(t, 90));
        assert_eq!(p.latencies(), [Duration::from_millis(90)]);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn the_first_time_a_change_is_known_upstream_counts() {
        let t = Instant::now();
        let mut p = Propagation::new(1);
        p.upstream(&"a", 1, ms(t, 10)); // the upstream watch
        p.upstream(&"a", 1, ms(t, 5)); // the write's response, handled later
        p.copy(&"a", 0, 1, ms(t, 30));
        assert_eq!(p.latencies(), [Duration::from_millis(25)]);
    }

    #[test]
    fn a_newer_marker_on_the_copy_carries_the_older_changes() {
        let t = Instant::now();
        let mut p = Propagation::new(1);
        p.upstream(&"a", 1, ms(t, 0));
        p.upstream(&"a", 2, ms(t, 10));
        p.copy(&"a", 0, 2, ms(t, 50));
        let mut got = p.latencies().to_vec();
        got.sort();
        assert_eq!(got, [40, 50].map(Duration::from_millis));
    }

    #[test]
    fn a_copy_seen_before_the_upstream_event_counts_once_not_negative() {
        let t = Instant::now();
        let mut p = Propagation::new(1);
        p.copy(&"a", 0, 3, ms(t, 20));
        p.upstream(&"a", 3, ms(t, 25));
        p.upstream(&"a", 3, ms(t, 26));
        assert_eq!(p.latencies(), [Duration::ZERO]);
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn an_older_copy_leaves_the_change_pending() {
        let t = Instant::now();
        let mut p = Propagation::new(1);
        p.upstream(&"a", 5, ms(t, 0));
        p.copy(&"a", 0, 4, ms(t, 10));
        assert!(p.latencies().is_empty());
        assert_eq!(p.pending(), 1);
    }

    #[test]
    fn status_latency_runs_from_the_last_copy_to_upstream() {
        let t = Instant::now();
        let mut s = StatusLatency::new(2);
        s.copy(&"a", 0, ms(t, 100));
        s.copy(&"a", 1, ms(t, 300));
        s.copy(&"a", 1, ms(t, 900)); // later events change nothing
        s.upstream(&"a", ms(t, 420));
        s.copy(&"b", 0, ms(t, 100));
        s.upstream(&"b", ms(t, 200));
        assert_eq!(s.latencies(), [Duration::from_millis(120)]);
        assert_eq!(s.unfinished(2), 1);
    }
}

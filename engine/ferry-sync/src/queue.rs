//! A bounded, de-duplicating work queue with per-key exclusivity and retry backoff.
//!
//! The same guarantees as client-go's workqueue and kube-runtime's scheduler: a key waits in
//! the queue at most once; a key is never reconciled by two workers at once (an event that
//! arrives while it is being reconciled makes it run once more afterwards); failures are
//! retried with exponential backoff that resets on success.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

struct State<K> {
    queued: HashSet<K>,
    running: HashSet<K>,
    /// Keys added while running: they go back to the queue when their run ends.
    dirty: HashSet<K>,
    failures: HashMap<K, u32>,
}

/// The sending side; cheap to clone.
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    tx: mpsc::Sender<K>,
    retry_min: Duration,
    retry_max: Duration,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            tx: self.tx.clone(),
            retry_min: self.retry_min,
            retry_max: self.retry_max,
        }
    }
}

/// The receiving side, shared by the workers.
pub struct Receiver<K> {
    rx: tokio::sync::Mutex<mpsc::Receiver<K>>,
}

/// A key taken from the queue; hand it back with [`WorkQueue::done`].
#[must_use]
pub struct Lease<K>(pub K);

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// A queue holding at most `capacity` distinct waiting keys (adders wait when it is full).
    pub fn new(capacity: usize, retry_min: Duration, retry_max: Duration) -> (Self, Receiver<K>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let state = State {
            queued: HashSet::new(),
            running: HashSet::new(),
            dirty: HashSet::new(),
            failures: HashMap::new(),
        };
        let queue = Self {
            state: Arc::new(Mutex::new(state)),
            tx,
            retry_min,
            retry_max,
        };
        (
            queue,
            Receiver {
                rx: tokio::sync::Mutex::new(rx),
            },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        // A panic while holding this lock leaves consistent sets behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Schedules `key` for reconciliation (no-op if already waiting).
    pub async fn add(&self, key: K) {
        {
            let mut state = self.lock();
            if state.running.contains(&key) {
                state.dirty.insert(key);
                return;
            }
            if !state.queued.insert(key.clone()) {
                return;
            }
        }
        // Only fails when every worker is gone, i.e. at shutdown.
        let _ = self.tx.send(key).await;
    }

    /// Takes the next key, marking it running.
    pub async fn next(&self, receiver: &Receiver<K>) -> Option<Lease<K>> {
        let key = receiver.rx.lock().await.recv().await?;
        let mut state = self.lock();
        state.queued.remove(&key);
        state.running.insert(key.clone());
        Some(Lease(key))
    }

    /// Ends a run. On failure the key comes back after a backoff delay; a key that changed
    /// while running comes back at once.
    pub async fn done(&self, lease: Lease<K>, failed: bool) {
        let key = lease.0;
        let (again, delay) = {
            let mut state = self.lock();
            state.running.remove(&key);
            let dirty = state.dirty.remove(&key);
            let delay = if failed {
                let count = state.failures.entry(key.clone()).or_insert(0);
                *count = count.saturating_add(1);
                Some(backoff(self.retry_min, self.retry_max, *count))
            } else {
                state.failures.remove(&key);
                None
            };
            (dirty, delay)
        };
        match delay {
            Some(delay) => {
                let queue = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    queue.add(key).await;
                });
            }
            None if again => self.add(key).await,
            None => {}
        }
    }

    /// Re-adds `key` after `delay` (e.g. to check back on a deletion in progress).
    pub fn add_after(&self, key: K, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key).await;
        });
    }
}

/// `min * 2^(failures-1)`, capped at `max`.
fn backoff(min: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    min.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_waits_in_the_queue_only_once() {
        let (queue, rx) = WorkQueue::new(8, Duration::from_millis(10), Duration::from_secs(1));
        queue.add("a").await;
        queue.add("a").await;
        queue.add("b").await;
        let first = queue.next(&rx).await.expect("a");
        let second = queue.next(&rx).await.expect("b");
        assert_eq!((first.0, second.0), ("a", "b"));
        assert!(
            rx.rx.lock().await.try_recv().is_err(),
            "the duplicate was queued"
        );
        queue.done(first, false).await;
        queue.done(second, false).await;
    }

    #[tokio::test]
    async fn a_key_changed_while_running_runs_once_more_afterwards() {
        let (queue, rx) = WorkQueue::new(8, Duration::from_millis(10), Duration::from_secs(1));
        queue.add("a").await;
        let lease = queue.next(&rx).await.expect("a");
        queue.add("a").await;
        assert!(rx.rx.lock().await.try_recv().is_err(), "ran twice at once");
        queue.done(lease, false).await;
        assert_eq!(queue.next(&rx).await.expect("again").0, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_come_back_after_growing_delays_and_success_resets_them() {
        let (queue, rx) = WorkQueue::new(8, Duration::from_secs(1), Duration::from_secs(60));
        queue.add("a").await;
        let mut lease = queue.next(&rx).await.expect("a");
        let mut delays = Vec::new();
        for _ in 0..3 {
            let failed_at = tokio::time::Instant::now();
            queue.done(lease, true).await;
            lease = queue.next(&rx).await.expect("retried");
            delays.push(failed_at.elapsed().as_secs());
        }
        assert_eq!(delays, [1, 2, 4]);
        queue.done(lease, false).await;
        queue.add("a").await;
        let lease = queue.next(&rx).await.expect("a");
        let failed_at = tokio::time::Instant::now();
        queue.done(lease, true).await;
        let _lease = queue.next(&rx).await.expect("retried");
        assert_eq!(
            failed_at.elapsed().as_secs(),
            1,
            "success did not reset the backoff"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(60));
        assert_eq!(backoff(min, max, 1), Duration::from_millis(500));
        assert_eq!(backoff(min, max, 2), Duration::from_secs(1));
        assert_eq!(backoff(min, max, 30), max);
    }
}

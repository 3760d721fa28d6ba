//! A de-duplicating work queue with per-key exclusivity, delays and retry backoff.
//!
//! The same guarantees as client-go's workqueue and kube-runtime's scheduler: a key waits in
//! the queue at most once; a key is never reconciled by two workers at once (an event that
//! arrives while it is being reconciled makes it run once more afterwards); failures are
//! retried with exponential backoff that resets on success.
//!
//! # Why there is no channel, and no capacity
//!
//! An earlier version fed keys through a bounded channel. Workers were both its only readers
//! and, when a key changed while it ran, one of its writers: once the channel was full, every
//! worker waited to send a key back into a channel that only workers drain, and the engine
//! stopped for good (5,000 objects were enough). So nothing here ever waits to *add*: `add`,
//! `add_after` and `done` take a short lock and return. The only operation that waits is
//! [`WorkQueue::next`], and it waits for work, never for room.
//!
//! Dropping the capacity does not make the queue unbounded in practice: a key is held at most
//! once (ready, or delayed, plus at most one "run again" mark while it runs), so the queue
//! never holds more entries than there are distinct keys, and keys come from objects in the
//! engine's stores. Memory follows the size of the watched world, not the rate of events.
//!
//! # Why delays need no task per key
//!
//! Retries and check-backs sit in one ordered map by due time. A worker waiting in `next`
//! sleeps until the earliest due time or until it is notified, whichever comes first, then
//! moves every due key to the ready list. 20,000 keys in backoff cost 20,000 map entries, not
//! 20,000 sleeping tasks, and nothing keeps running after [`WorkQueue::shutdown`].
//!
//! Ready keys are served first come, first served; a delayed key takes its place in that order
//! at its due time, so a burst of events cannot starve a key that was waiting for a retry.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Where a delayed key sits in the due-time order: its due time, then the order in which it
/// was scheduled (keys need not be `Ord`, and equal due times keep FIFO order).
type Slot = (Instant, u64);

/// Everything the queue knows, behind one `std` mutex that is never held across an `.await`
/// (every operation is a few map updates).
///
/// Each key is in at most one of `ready` and `delayed`, and a ready key is never running:
/// a key that becomes due or is added while running is marked `dirty` instead.
struct State<K> {
    /// Keys ready to run, oldest first.
    ready: VecDeque<K>,
    /// The keys in `ready`, with the time each became ready (for [`WorkQueue::oldest_ready_age`]).
    queued: HashMap<K, Instant>,
    /// Keys leased to a worker.
    running: HashSet<K>,
    /// Running keys that were added meanwhile: they become ready when their run ends.
    dirty: HashSet<K>,
    /// Consecutive failures per key (absent means none).
    failures: HashMap<K, u32>,
    /// Delayed keys and their slot in `due`.
    delayed: HashMap<K, Slot>,
    /// Delayed keys by due time.
    due: BTreeMap<Slot, K>,
    /// Breaks ties between equal due times.
    next_seq: u64,
    shutdown: bool,
}

impl<K: Clone + Eq + Hash> State<K> {
    /// Makes `key` ready now (ready since `since`), unless it is already ready, or it is
    /// running, in which case it runs once more when its run ends. A pending delay is dropped:
    /// ready at once is earlier. Returns whether a key joined `ready`.
    fn make_ready(&mut self, key: K, since: Instant) -> bool {
        if self.running.contains(&key) {
            self.dirty.insert(key);
            return false;
        }
        if self.queued.contains_key(&key) {
            return false;
        }
        if let Some(slot) = self.delayed.remove(&key) {
            self.due.remove(&slot);
        }
        self.queued.insert(key.clone(), since);
        self.ready.push_back(key);
        true
    }

    /// Makes `key` ready at `at`, unless it will be ready earlier anyway (ready now, about to
    /// run again, or already delayed to an earlier time). Returns whether `at` became the
    /// earliest due time, i.e. whether waiting workers must look again.
    fn schedule(&mut self, key: K, at: Instant) -> bool {
        if self.queued.contains_key(&key) || self.dirty.contains(&key) {
            return false;
        }
        match self.delayed.get(&key) {
            Some(&(earlier, _)) if earlier <= at => return false,
            Some(slot) => {
                let slot = *slot;
                self.due.remove(&slot);
            }
            None => {}
        }
        let slot = (at, self.next_seq);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.due.insert(slot, key.clone());
        self.delayed.insert(key, slot);
        self.due.first_key_value().map(|(first, _)| *first) == Some(slot)
    }

    /// Moves every key due at `now` to `ready`, in due order. Called at the start of every
    /// operation, so `ready` stays ordered by the time keys became ready even when no worker
    /// was waiting at a due time. Returns whether a key joined `ready`.
    fn promote_due(&mut self, now: Instant) -> bool {
        let mut promoted = false;
        while let Some(entry) = self.due.first_entry() {
            let (at, _) = *entry.key();
            if at > now {
                break;
            }
            let key = entry.remove();
            self.delayed.remove(&key);
            promoted |= self.make_ready(key, at);
        }
        promoted
    }

    /// Leases the oldest ready key.
    fn take_ready(&mut self) -> Option<K> {
        let key = self.ready.pop_front()?;
        self.queued.remove(&key);
        self.running.insert(key.clone());
        Some(key)
    }

    fn earliest_due(&self) -> Option<Instant> {
        self.due.first_key_value().map(|((at, _), _)| *at)
    }
}

struct Shared<K> {
    state: Mutex<State<K>>,
    /// `notify_one` when a key becomes ready, `notify_waiters` when the earliest due time moves
    /// earlier or at shutdown.
    wake: Notify,
    retry_min: Duration,
    retry_max: Duration,
}

/// The queue; cheap to clone (clones share it). Watches add keys, workers take them with
/// [`next`](Self::next) and hand them back with [`done`](Self::done).
pub struct WorkQueue<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// A key taken from the queue; no other worker gets it until it is handed back with
/// [`WorkQueue::done`]. Dropping it without `done` leaves the key running for good.
#[derive(Debug)]
#[must_use = "hand the lease back with WorkQueue::done, or the key never runs again"]
pub struct Lease<K>(
    /// The key to reconcile.
    pub K,
);

/// How a run ended, for [`WorkQueue::done`].
///
/// Whatever the outcome, a key added while it ran runs again at once: the event may have
/// changed what the run depended on, and a delay the run asked for is never kept longer than
/// that. A failure is still counted, so the next backoff is longer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reconciled: forget failures; a key added meanwhile runs again at once.
    Done,
    /// Failed or must wait for something: comes back after an exponential backoff
    /// (retry_min doubling to retry_max, per key; reset by Done).
    Backoff,
    /// Come back after this delay (no failure counted, backoff not reset either).
    After(Duration),
}

/// How many keys the queue holds, by state (see [`WorkQueue::depth`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Keys waiting to run now (including delayed keys that are due).
    pub ready: usize,
    /// Keys waiting for a delay (a retry backoff or a check-back).
    pub delayed: usize,
    /// Keys leased to workers.
    pub running: usize,
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue whose failed keys come back after `retry_min`, doubling per consecutive
    /// failure up to `retry_max`.
    pub fn new(retry_min: Duration, retry_max: Duration) -> Self {
        let state = State {
            ready: VecDeque::new(),
            queued: HashMap::new(),
            running: HashSet::new(),
            dirty: HashSet::new(),
            failures: HashMap::new(),
            delayed: HashMap::new(),
            due: BTreeMap::new(),
            next_seq: 0,
            shutdown: false,
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                wake: Notify::new(),
                retry_min,
                retry_max,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // No operation can panic halfway through an update that matters (they only move keys
        // between maps); after a panic elsewhere while holding the lock, keep going.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Schedules `key` to run. Never blocks. No-op if the key is already ready; if running, it
    /// runs once more afterwards; if delayed, it becomes ready at once.
    pub fn add(&self, key: K) {
        let woke = {
            let mut state = self.lock();
            let now = Instant::now();
            let promoted = state.promote_due(now);
            state.make_ready(key, now) | promoted
        };
        if woke {
            self.shared.wake.notify_one();
        }
    }

    /// Never blocks. Makes the key ready after `delay` (unless it becomes ready earlier).
    ///
    /// A key delayed twice comes back at the earlier time; a key that falls due while running
    /// runs once more after its run. Spawns nothing: waiting workers wake at the due time.
    pub fn add_after(&self, key: K, delay: Duration) {
        let (ready, earlier) = {
            let mut state = self.lock();
            let now = Instant::now();
            // A due time past what an Instant can hold would never come: nothing to schedule.
            let earlier = match now.checked_add(delay) {
                Some(at) => state.schedule(key, at),
                None => false,
            };
            (state.promote_due(now), earlier)
        };
        self.wake(ready, earlier);
    }

    /// Waits for the next ready key (due delayed keys count as ready), marks it running.
    /// Returns None once `shutdown` was called (immediately, even if keys are waiting).
    ///
    /// Cancel-safe: dropping the future before it returns takes no key.
    pub async fn next(&self) -> Option<Lease<K>> {
        loop {
            // Registered before looking at the state, so a wake-up sent after the look (a key
            // added, an earlier due time, shutdown) is not lost.
            let notified = self.shared.wake.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                let mut state = self.lock();
                if state.shutdown {
                    return None;
                }
                state.promote_due(Instant::now());
                if let Some(key) = state.take_ready() {
                    let more = !state.ready.is_empty();
                    drop(state);
                    if more {
                        // One notification per ready key may have been spent on this worker
                        // (or on none); pass it on so an idle worker picks up the rest.
                        self.shared.wake.notify_one();
                    }
                    return Some(Lease(key));
                }
                state.earliest_due()
            };
            match wake_at {
                Some(at) => {
                    // Either outcome means: look again.
                    let _ = tokio::time::timeout_at(at, notified).await;
                }
                None => notified.await,
            }
        }
    }

    /// Ends a run. Never blocks.
    ///
    /// [`Outcome::Done`] forgets the key's failures, [`Outcome::Backoff`] counts one and brings
    /// the key back after the backoff, [`Outcome::After`] brings it back after its delay. A key
    /// added while it ran is ready at once in every case (see [`Outcome`]). A lease for a key
    /// that is not running (only possible by building a `Lease` by hand) changes nothing.
    pub fn done(&self, lease: Lease<K>, outcome: Outcome) {
        let Lease(key) = lease;
        let (ready, earlier) = {
            let mut state = self.lock();
            let now = Instant::now();
            let mut ready = state.promote_due(now);
            if !state.running.remove(&key) {
                return;
            }
            let delay = match outcome {
                Outcome::Done => {
                    state.failures.remove(&key);
                    None
                }
                Outcome::Backoff => {
                    let count = state.failures.entry(key.clone()).or_insert(0);
                    *count = count.saturating_add(1);
                    let count = *count;
                    Some(backoff(self.shared.retry_min, self.shared.retry_max, count))
                }
                Outcome::After(delay) => Some(delay),
            };
            let mut earlier = false;
            if state.dirty.remove(&key) {
                ready |= state.make_ready(key, now);
            } else if let Some(at) = delay.and_then(|delay| now.checked_add(delay)) {
                // (A due time past what an Instant can hold would never come.)
                earlier = state.schedule(key, at);
                // A zero delay is due at once.
                ready |= state.promote_due(now);
            }
            (ready, earlier)
        };
        self.wake(ready, earlier);
    }

    /// Wakes every waiting `next` with None; later calls return None at once. Keys still in
    /// the queue stay there (and adding keys keeps working, to no effect).
    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.shared.wake.notify_waiters();
    }

    /// Keys waiting to run now (ready), and keys waiting for a delay.
    pub fn depth(&self) -> QueueDepth {
        let (depth, promoted) = {
            let mut state = self.lock();
            let promoted = state.promote_due(Instant::now());
            let depth = QueueDepth {
                ready: state.ready.len(),
                delayed: state.delayed.len(),
                running: state.running.len(),
            };
            (depth, promoted)
        };
        self.wake(promoted, false);
        depth
    }

    /// How long the oldest ready key has been waiting (None when nothing is ready). A delayed
    /// key counts from its due time.
    pub fn oldest_ready_age(&self) -> Option<Duration> {
        let (age, promoted) = {
            let mut state = self.lock();
            let now = Instant::now();
            let promoted = state.promote_due(now);
            let age = state
                .ready
                .front()
                .and_then(|key| state.queued.get(key))
                .map(|since| now.saturating_duration_since(*since));
            (age, promoted)
        };
        self.wake(promoted, false);
        age
    }

    /// After the lock is released: one worker for new ready keys (it passes the wake-up on if
    /// more are ready), all waiting workers when the earliest due time moved earlier (each
    /// sleeps until the earliest due time it saw).
    fn wake(&self, ready: bool, earlier_due: bool) {
        if earlier_due {
            self.shared.wake.notify_waiters();
        } else if ready {
            self.shared.wake.notify_one();
        }
    }
}

/// `min * 2^(failures-1)`, capped at `max`.
fn backoff(min: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    min.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn queue<K: Clone + Eq + Hash + Send + 'static>() -> WorkQueue<K> {
        WorkQueue::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// The key `next` returns, failing (instead of hanging) if none comes within a minute of
    /// (possibly paused) time.
    async fn next<K: Clone + Eq + Hash + Send + 'static>(queue: &WorkQueue<K>) -> K {
        tokio::time::timeout(Duration::from_secs(60), queue.next())
            .await
            .expect("no key came")
            .expect("the queue was shut down")
            .0
    }

    /// Whether `next` would wait (nothing ready now).
    fn nothing_ready<K: Clone + Eq + Hash + Send + 'static>(queue: &WorkQueue<K>) -> bool {
        queue.depth().ready == 0
    }

    #[tokio::test]
    async fn a_key_waits_in_the_queue_only_once() {
        let queue = queue();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.depth().ready, 2);
        let first = queue.next().await.expect("a");
        let second = queue.next().await.expect("b");
        assert_eq!((first.0, second.0), ("a", "b"));
        assert!(nothing_ready(&queue), "the duplicate was queued");
        queue.done(first, Outcome::Done);
        queue.done(second, Outcome::Done);
        assert_eq!(queue.depth(), QueueDepth::default());
    }

    #[tokio::test]
    async fn ready_keys_are_served_first_come_first_served() {
        let queue = queue();
        for key in 0..100 {
            queue.add(key);
        }
        queue.add(0);
        for expected in 0..100 {
            let lease = queue.next().await.expect("key");
            assert_eq!(lease.0, expected);
            queue.done(lease, Outcome::Done);
        }
    }

    #[tokio::test]
    async fn a_key_changed_while_running_runs_once_more_afterwards() {
        let queue = queue();
        queue.add("a");
        let lease = queue.next().await.expect("a");
        queue.add("a");
        queue.add("a");
        assert!(nothing_ready(&queue), "ran twice at once");
        queue.done(lease, Outcome::Done);
        let lease = queue.next().await.expect("again");
        assert_eq!(lease.0, "a");
        queue.done(lease, Outcome::Done);
        assert_eq!(
            queue.depth(),
            QueueDepth::default(),
            "ran more than once more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_changed_while_running_runs_again_at_once_even_when_its_run_asked_for_a_delay() {
        let queue = queue();
        queue.add("a");
        for outcome in [Outcome::Backoff, Outcome::After(Duration::from_secs(30))] {
            let lease = queue.next().await.expect("a");
            queue.add("a");
            let ended = Instant::now();
            queue.done(lease, outcome);
            assert_eq!(queue.depth().delayed, 0);
            assert_eq!(next(&queue).await, "a");
            assert_eq!(ended.elapsed(), Duration::ZERO);
            queue.done(Lease("a"), Outcome::Backoff);
        }
        // The failure during the dirty run still counted: two failures, then this third one.
        let before = Instant::now();
        assert_eq!(next(&queue).await, "a");
        assert_eq!(before.elapsed(), Duration::from_secs(4));
    }

    /// The regression test for the stall: workers re-add keys while the queue holds far more
    /// keys than the old channel's capacity (4,096).
    ///
    /// With the old design this never finishes: the first 4,096 `add`s fill the channel and
    /// the 4,097th waits for room; and even with workers started first, every worker that
    /// re-adds a key waits in `done` to send it into the full channel, which only workers
    /// drain, so all eight soon wait there forever (0% CPU; this test ported to the old API
    /// stalled after 771 of its 40,000 runs). The timeout turns that hang into a failure.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn twenty_thousand_keys_drain_while_workers_re_add_every_key_they_run() {
        const KEYS: usize = 20_000;
        const WORKERS: usize = 8;
        let queue = WorkQueue::new(Duration::from_millis(1), Duration::from_millis(10));
        let runs: Arc<Vec<AtomicUsize>> =
            Arc::new((0..KEYS).map(|_| AtomicUsize::new(0)).collect());
        let total = Arc::new(AtomicUsize::new(0));

        let drained = tokio::time::timeout(Duration::from_secs(60), async {
            for key in 0..KEYS {
                queue.add(key);
            }
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..WORKERS {
                let (queue, runs, total) = (queue.clone(), runs.clone(), total.clone());
                workers.spawn(async move {
                    while let Some(lease) = queue.next().await {
                        let key = lease.0;
                        if runs[key].fetch_add(1, Ordering::SeqCst) == 0 {
                            // Changed while running: must run once more.
                            queue.add(key);
                        }
                        tokio::task::yield_now().await;
                        queue.done(lease, Outcome::Done);
                        if total.fetch_add(1, Ordering::SeqCst) + 1 == 2 * KEYS {
                            queue.shutdown();
                        }
                    }
                });
            }
            while let Some(worker) = workers.join_next().await {
                worker.expect("a worker panicked");
            }
        })
        .await;

        assert!(drained.is_ok(), "the queue stalled: {:?} runs", total);
        let wrong: Vec<_> = (0..KEYS)
            .filter(|&key| runs[key].load(Ordering::SeqCst) != 2)
            .collect();
        assert!(
            wrong.is_empty(),
            "keys that did not run exactly twice: {wrong:?}"
        );
        assert_eq!(queue.depth(), QueueDepth::default());
        assert_eq!(queue.oldest_ready_age(), None);
    }

    /// Synchronous on purpose: there is no runtime to wait in, so `add` cannot wait.
    #[test]
    fn adders_never_wait_even_with_no_worker_running() {
        let queue = WorkQueue::new(Duration::from_millis(1), Duration::from_secs(1));
        for key in 0..100_000u32 {
            queue.add(key);
        }
        for key in 0..100_000u32 {
            queue.add(key);
            queue.add_after(key, Duration::from_secs(1));
        }
        for key in 100_000..200_000u32 {
            queue.add_after(key, Duration::from_secs(3600));
        }
        assert_eq!(
            queue.depth(),
            QueueDepth {
                ready: 100_000,
                delayed: 100_000,
                running: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_come_back_at_their_due_time_in_due_order_without_spawned_tasks() {
        let queue = queue();
        let (late, early) = (1_000_000, 2_000_000);
        let start = Instant::now();
        queue.add_after(late, Duration::from_secs(5));
        queue.add_after(early, Duration::from_secs(2));
        for key in 0..1_000 {
            queue.add_after(key, Duration::from_secs(3600));
        }
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            0,
            "a delay spawned a task"
        );
        assert_eq!(queue.depth().delayed, 1_002);
        assert_eq!(next(&queue).await, early);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(next(&queue).await, late);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(queue.depth().delayed, 1_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_already_waiting_wakes_for_a_key_delayed_after_it_began_waiting() {
        let queue = queue();
        queue.add_after("much later", Duration::from_secs(60));
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { next(&queue).await }
        });
        tokio::task::yield_now().await;
        let start = Instant::now();
        queue.add_after("soon", Duration::from_secs(1));
        assert_eq!(waiting.await.expect("worker"), "soon");
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_key_added_normally_runs_at_once_and_only_once() {
        let queue = queue();
        queue.add_after("a", Duration::from_secs(10));
        queue.add("a");
        let start = Instant::now();
        let lease = queue.next().await.expect("a");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(queue.depth().delayed, 0, "the delay was kept");
        queue.done(lease, Outcome::Done);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(queue.depth(), QueueDepth::default());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_delayed_twice_keeps_the_earlier_due_time() {
        let queue = queue();
        let start = Instant::now();
        queue.add_after("a", Duration::from_secs(10));
        queue.add_after("a", Duration::from_secs(3));
        queue.add_after("b", Duration::from_secs(3));
        queue.add_after("b", Duration::from_secs(10));
        assert_eq!(queue.depth().delayed, 2);
        assert_eq!(next(&queue).await, "a");
        assert_eq!(next(&queue).await, "b");
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(queue.depth().delayed, 0, "the later time was kept too");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_key_delayed_stays_ready() {
        let queue = queue();
        queue.add("a");
        queue.add_after("a", Duration::from_secs(10));
        assert_eq!(
            queue.depth(),
            QueueDepth {
                ready: 1,
                delayed: 0,
                running: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_key_that_falls_due_while_running_runs_once_more_after_the_run() {
        let queue = queue();
        queue.add("a");
        let lease = queue.next().await.expect("a");
        queue.add_after("a", Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            queue.depth(),
            QueueDepth {
                ready: 0,
                delayed: 0,
                running: 1
            }
        );
        queue.done(lease, Outcome::Done);
        assert_eq!(
            queue.depth(),
            QueueDepth {
                ready: 1,
                delayed: 0,
                running: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_delay_is_ready_at_once() {
        let queue = queue();
        queue.add_after("a", Duration::ZERO);
        assert_eq!(queue.depth().ready, 1);
        let lease = queue.next().await.expect("a");
        queue.done(lease, Outcome::After(Duration::ZERO));
        assert_eq!(queue.depth().ready, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_come_back_after_growing_delays_and_success_resets_them() {
        let queue = queue();
        queue.add("a");
        let mut lease = queue.next().await.expect("a");
        let mut delays = Vec::new();
        for _ in 0..3 {
            let failed_at = Instant::now();
            queue.done(lease, Outcome::Backoff);
            lease = Lease(next(&queue).await);
            delays.push(failed_at.elapsed().as_secs());
        }
        assert_eq!(delays, [1, 2, 4]);
        queue.done(lease, Outcome::Done);
        queue.add("a");
        let lease = queue.next().await.expect("a");
        let failed_at = Instant::now();
        queue.done(lease, Outcome::Backoff);
        let _lease = Lease(next(&queue).await);
        assert_eq!(
            failed_at.elapsed().as_secs(),
            1,
            "success did not reset the backoff"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_requested_delay_neither_counts_nor_resets_failures() {
        let queue = queue();
        queue.add("a");
        let mut delays = Vec::new();
        for outcome in [
            Outcome::Backoff,
            Outcome::Backoff,
            Outcome::After(Duration::from_secs(10)),
            Outcome::After(Duration::from_secs(10)),
            Outcome::Backoff,
        ] {
            let lease = queue.next().await.expect("a");
            let ended = Instant::now();
            queue.done(lease, outcome);
            assert_eq!(next(&queue).await, "a");
            delays.push(ended.elapsed().as_secs());
            queue.add("a");
            // `add` on a running key only marks it; hand it back so it is ready again.
            queue.done(Lease("a"), Outcome::After(Duration::from_secs(1000)));
        }
        assert_eq!(delays, [1, 2, 10, 10, 4]);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(60));
        assert_eq!(backoff(min, max, 1), Duration::from_millis(500));
        assert_eq!(backoff(min, max, 2), Duration::from_secs(1));
        assert_eq!(backoff(min, max, 30), max);
        assert_eq!(backoff(min, max, u32::MAX), max);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_stops_growing_at_the_maximum() {
        let queue = WorkQueue::new(Duration::from_secs(1), Duration::from_secs(5));
        queue.add("a");
        let mut delays = Vec::new();
        for _ in 0..6 {
            let lease = queue.next().await.expect("a");
            let failed_at = Instant::now();
            queue.done(lease, Outcome::Backoff);
            let lease = Lease(next(&queue).await);
            delays.push(failed_at.elapsed().as_secs());
            queue.add("a");
            queue.done(lease, Outcome::Backoff);
        }
        assert_eq!(delays, [1, 4, 5, 5, 5, 5]);
    }

    #[tokio::test]
    async fn shutdown_wakes_every_waiting_worker_with_none() {
        let queue: WorkQueue<&str> = queue();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let queue = queue.clone();
            workers.spawn(async move { queue.next().await.map(|lease| lease.0) });
        }
        // Let every worker start waiting.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        queue.shutdown();
        let results = tokio::time::timeout(Duration::from_secs(10), workers.join_all())
            .await
            .expect("a worker kept waiting");
        assert_eq!(results, [None; 4]);
    }

    #[tokio::test]
    async fn after_shutdown_next_returns_none_even_with_keys_waiting() {
        let queue = queue();
        queue.add("a");
        queue.shutdown();
        assert!(queue.next().await.is_none());
        queue.add("b");
        queue.add_after("c", Duration::ZERO);
        assert!(queue.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn depth_and_oldest_ready_age_follow_the_keys() {
        let queue = queue();
        assert_eq!(queue.depth(), QueueDepth::default());
        assert_eq!(queue.oldest_ready_age(), None);

        queue.add("a");
        tokio::time::advance(Duration::from_secs(3)).await;
        queue.add("b");
        queue.add_after("c", Duration::from_secs(5));
        assert_eq!(
            queue.depth(),
            QueueDepth {
                ready: 2,
                delayed: 1,
                running: 0
            }
        );
        assert_eq!(queue.oldest_ready_age(), Some(Duration::from_secs(3)));

        let a = queue.next().await.expect("a");
        assert_eq!(
            queue.depth(),
            QueueDepth {
                ready: 1,
                delayed: 1,
                running: 1
            }
        );
        assert_eq!(queue.oldest_ready_age(), Some(Duration::ZERO));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(queue.oldest_ready_age(), Some(Duration::from_secs(1)));

        let b = queue.next().await.expect("b");
        assert_eq!(queue.oldest_ready_age(), None);
        // "c" falls due at +5s; nobody takes it, so at +7s it has waited 2s.
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            queue.depth(),
            QueueDepth {
                ready: 1,
                delayed: 0,
                running: 2
            }
        );
        assert_eq!(queue.oldest_ready_age(), Some(Duration::from_secs(2)));

        queue.done(a, Outcome::Done);
        queue.done(b, Outcome::Backoff);
        assert_eq!(
            queue.depth(),
            QueueDepth {
                ready: 1,
                delayed: 1,
                running: 0
            }
        );
        let c = queue.next().await.expect("c");
        assert_eq!(c.0, "c");
        queue.done(c, Outcome::Done);
        assert_eq!(queue.oldest_ready_age(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            queue.depth(),
            QueueDepth {
                ready: 1,
                delayed: 0,
                running: 0
            }
        );
        assert_eq!(queue.oldest_ready_age(), Some(Duration::ZERO));
    }

    /// Many workers, a few hot keys added over and over (and some runs asking to come back
    /// later): no key is ever held by two workers at once, and everything drains.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_key_is_never_leased_to_two_workers_at_once() {
        const KEYS: u64 = 50;
        const WORKERS: usize = 16;
        let queue = WorkQueue::new(Duration::from_millis(1), Duration::from_millis(4));
        let held = Arc::new(Mutex::new(HashSet::new()));
        let runs = Arc::new(AtomicUsize::new(0));

        let finished = tokio::time::timeout(Duration::from_secs(60), async {
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..WORKERS {
                let (queue, held, runs) = (queue.clone(), held.clone(), runs.clone());
                workers.spawn(async move {
                    while let Some(lease) = queue.next().await {
                        let key = lease.0;
                        assert!(
                            held.lock().expect("held").insert(key),
                            "key {key} leased twice"
                        );
                        tokio::task::yield_now().await;
                        tokio::task::yield_now().await;
                        assert!(held.lock().expect("held").remove(&key));
                        let outcome = match runs.fetch_add(1, Ordering::SeqCst) % 10 {
                            0 => Outcome::Backoff,
                            1 => Outcome::After(Duration::from_millis(1)),
                            2 => Outcome::After(Duration::ZERO),
                            _ => Outcome::Done,
                        };
                        queue.done(lease, outcome);
                    }
                });
            }
            let mut adders = tokio::task::JoinSet::new();
            for seed in 1..=4u64 {
                let queue = queue.clone();
                adders.spawn(async move {
                    let mut x = seed;
                    for i in 0..20_000u32 {
                        // xorshift: a cheap, repeatable spread over the keys.
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if i % 16 == 0 {
                            queue.add_after(x % KEYS, Duration::from_millis(x % 3));
                        } else {
                            queue.add(x % KEYS);
                        }
                        if i % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                });
            }
            adders.join_all().await;
            while queue.depth() != QueueDepth::default() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            queue.shutdown();
            while let Some(worker) = workers.join_next().await {
                worker.expect("a worker failed");
            }
        })
        .await;
        assert!(finished.is_ok(), "the queue did not drain");
        assert!(runs.load(Ordering::SeqCst) >= KEYS as usize);
    }
}

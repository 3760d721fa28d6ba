//! Adaptive write pacing per cluster (kcp, and each target).
//!
//! An API server protects itself with priority and fairness: when Ferry's flow is over its
//! share, the server answers 429 with a `Retry-After`, and before that its latency rises.
//! Those are the signals Ferry paces by, not a fixed guess. [`Aimd`] is the controller
//! (additive increase, multiplicative decrease, as TCP does): it starts at its ceiling,
//! halves on a 429 (and holds every write for the server's `Retry-After`), cuts by a fifth
//! when the write latency climbs well above its recent floor, and recovers additively while
//! writes succeed. [`WriteLimiter`] spaces writes at the controller's rate, keeps at most
//! `max_in_flight` of them in flight, and feeds each answer back.
//!
//! One decrease per congestion signal: answers to requests that were already on their way
//! when the rate last dropped were sent at the old rate, so they decrease nothing again (16
//! requests in flight answered 429 together halve the rate once, not 16 times).

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The rate a cluster's writes start at and recover to when no `writesPerSecond` caps them.
/// High enough that `maxInFlight` and the server's answers are what limit Ferry.
pub const DEFAULT_CEILING: f64 = 1000.0;
/// The rate never goes below this (or below the ceiling, if that is lower): a server that
/// throttles every write still gets one a second, each one a chance to see it recover.
pub const FLOOR: f64 = 1.0;
/// What a 429 does to the rate.
const THROTTLED_FACTOR: f64 = 0.5;
/// What rising latency does to the rate: gentler than a 429, which is the server saying so.
const SLOW_FACTOR: f64 = 0.8;
/// Rising latency alone never takes the rate below this share of the ceiling, and cuts it at
/// most once per [`FLOOR_WINDOW`]. On a shared machine latency climbs for reasons that are
/// not Ferry's writes (the first benchmark run with a cut per round trip took kcp's rate to
/// 1 write/s within a minute of a cold start, at a load average of 39, without a single 429):
/// only the server's 429 may take the rate lower.
const SLOW_LIMIT: f64 = 0.1;
/// How long writes wait after a 429 that names no `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Full recovery from the floor to the ceiling takes about this long while writes succeed.
const RECOVERY: Duration = Duration::from_secs(20);
/// Latency counts as rising when its recent average is this many times its floor...
const SLOW_RATIO: f64 = 3.0;
/// ...and at least this much above it (a few milliseconds of jitter on a fast server are
/// not congestion).
const SLOW_MARGIN: Duration = Duration::from_millis(100);
/// The latency floor is the lowest latency of the last one or two windows of this length,
/// so it follows a server that became slower for good instead of backing off forever.
const FLOOR_WINDOW: Duration = Duration::from_secs(10);
/// Weight of a new sample in the recent latency average.
const RECENT_WEIGHT: f64 = 0.25;

/// Why the rate last went down (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decrease {
    /// The server answered 429.
    Throttled,
    /// The write latency rose well above its floor.
    Slow,
}

/// The recent write latency against its floor.
#[derive(Clone, Debug)]
struct LatencyTrend {
    /// Exponential moving average of recent samples, seconds.
    recent: Option<f64>,
    /// Lowest sample of the current window, and when the window began.
    window_min: f64,
    window_start: Instant,
    /// Lowest sample of the previous window.
    previous_min: f64,
}

impl LatencyTrend {
    fn new(now: Instant) -> Self {
        Self {
            recent: None,
            window_min: f64::INFINITY,
            window_start: now,
            previous_min: f64::INFINITY,
        }
    }

    /// Takes a sample; returns whether latency is now rising.
    fn sample(&mut self, now: Instant, latency: Duration) -> bool {
        let seconds = latency.as_secs_f64();
        if now.saturating_duration_since(self.window_start) >= FLOOR_WINDOW {
            self.previous_min = self.window_min;
            self.window_min = f64::INFINITY;
            self.window_start = now;
        }
        self.window_min = self.window_min.min(seconds);
        let recent = match self.recent {
            Some(recent) => recent + RECENT_WEIGHT * (seconds - recent),
            None => seconds,
        };
        self.recent = Some(recent);
        let floor = self.window_min.min(self.previous_min);
        recent > floor * SLOW_RATIO && recent - floor > SLOW_MARGIN.as_secs_f64()
    }
}

/// The pacing controller of one cluster: a rate in writes per second. Pure (every method
/// takes the time), so tests drive it with a fake clock.
#[derive(Clone, Debug)]
pub struct Aimd {
    rate: f64,
    ceiling: f64,
    floor: f64,
    /// Writes per second regained per second of successful writes.
    recovery: f64,
    /// When the rate last recovered (recovery is by elapsed time, not by answer count).
    recovered_at: Instant,
    /// When the rate last went down, and why.
    decreased: Option<(Instant, Decrease)>,
    /// No write starts before this (a 429's `Retry-After`).
    hold_until: Option<Instant>,
    latency: LatencyTrend,
}

impl Aimd {
    /// A controller starting at `ceiling` writes per second, never above it.
    pub fn new(ceiling: f64, now: Instant) -> Self {
        let ceiling = if ceiling.is_finite() && ceiling > 0.0 {
            ceiling
        } else {
            DEFAULT_CEILING
        };
        let floor = FLOOR.min(ceiling);
        Self {
            rate: ceiling,
            ceiling,
            floor,
            recovery: (ceiling - floor) / RECOVERY.as_secs_f64(),
            recovered_at: now,
            decreased: None,
            hold_until: None,
            latency: LatencyTrend::new(now),
        }
    }

    /// The current rate, writes per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Time between two writes at the current rate.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }

    /// No write may start before this (a `Retry-After` still running), if anything.
    pub fn hold_until(&self, now: Instant) -> Option<Instant> {
        self.hold_until.filter(|until| *until > now)
    }

    /// When and why the rate last went down.
    pub fn last_decrease(&self) -> Option<(Instant, Decrease)> {
        self.decreased
    }

    /// A write that started at `started` was answered 429 at `now`: hold every write for
    /// `retry_after` (1 s if the server named none) and halve the rate, unless the write was
    /// sent before the rate last dropped.
    pub fn throttled(&mut self, now: Instant, started: Instant, retry_after: Option<Duration>) {
        let until = now + retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
        self.hold_until = Some(self.hold_until.map_or(until, |held| held.max(until)));
        self.decrease(now, started, THROTTLED_FACTOR, Decrease::Throttled);
    }

    /// A write that started at `started` was answered (not 429) at `now`: recover
    /// additively, or cut the rate when the latency is rising.
    pub fn answered(&mut self, now: Instant, started: Instant) {
        let latency = now.saturating_duration_since(started);
        if self.latency.sample(now, latency) {
            self.decrease(now, started, SLOW_FACTOR, Decrease::Slow);
        } else {
            self.recover(now);
        }
    }

    fn decrease(&mut self, now: Instant, started: Instant, factor: f64, why: Decrease) {
        // Sent at the old rate: that congestion was answered already.
        if self.decreased.is_some_and(|(at, _)| started < at) {
            return;
        }
        let mut lowest = self.floor;
        if why == Decrease::Slow {
            let recently = self
                .decreased
                .is_some_and(|(at, _)| now.saturating_duration_since(at) < FLOOR_WINDOW);
            lowest = lowest.max(self.ceiling * SLOW_LIMIT);
            if recently || self.rate <= lowest {
                return;
            }
        }
        self.rate = (self.rate * factor).max(lowest);
        self.decreased = Some((now, why));
        self.recovered_at = now;
    }

    fn recover(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.recovered_at);
        self.rate = (self.rate + self.recovery * elapsed.as_secs_f64()).min(self.ceiling);
        self.recovered_at = now;
    }
}

/// Where a limiter reports its rate: a gauge of the current writes per second and a
/// counter of 429 answers.
#[derive(Clone, Default)]
pub struct PacingMetrics {
    /// Current writes per second.
    pub rate: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// 429 answers.
    pub throttled: Counter,
}

/// The schedule: the controller and the next free slot.
struct Schedule {
    aimd: Aimd,
    next: Instant,
}

/// Paces one cluster's mutating requests: at most `max_in_flight` at once, spaced at the
/// [`Aimd`] controller's rate (bursts of up to `max_in_flight` after a quiet spell).
pub struct WriteLimiter {
    in_flight: Semaphore,
    burst_slots: u32,
    schedule: Mutex<Schedule>,
    metrics: PacingMetrics,
}

impl WriteLimiter {
    /// A limiter whose rate adapts up to `cap` writes per second ([`DEFAULT_CEILING`] when
    /// `None`).
    pub fn new(max_in_flight: usize, cap: Option<f64>) -> Self {
        Self::with_metrics(max_in_flight, cap, PacingMetrics::default())
    }

    /// The same, reporting into `metrics`.
    pub fn with_metrics(max_in_flight: usize, cap: Option<f64>, metrics: PacingMetrics) -> Self {
        let now = Instant::now();
        let aimd = Aimd::new(cap.unwrap_or(DEFAULT_CEILING), now);
        metrics.rate.set(aimd.rate());
        let burst_slots = u32::try_from(max_in_flight.saturating_sub(1)).unwrap_or(u32::MAX);
        // `max_in_flight` writes may start at once from the start.
        let burst = aimd.interval().saturating_mul(burst_slots);
        Self {
            in_flight: Semaphore::new(max_in_flight.max(1)),
            burst_slots,
            schedule: Mutex::new(Schedule {
                aimd,
                next: now.checked_sub(burst).unwrap_or(now),
            }),
            metrics,
        }
    }

    /// The current rate, writes per second.
    pub fn rate(&self) -> f64 {
        self.lock().aimd.rate()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        // Every update is a few assignments: a panic elsewhere cannot leave it half-done.
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `request` when its slot comes and a place in flight is free, and feeds its
    /// answer back to the pacing.
    pub async fn write<T>(
        &self,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, kube::Error> {
        let slot = {
            let mut schedule = self.lock();
            let now = Instant::now();
            let interval = schedule.aimd.interval();
            // After a quiet spell, `max_in_flight` writes may start at once.
            let burst = interval.saturating_mul(self.burst_slots);
            let earliest = now.checked_sub(burst).unwrap_or(now);
            let mut slot = schedule.next.max(earliest);
            if let Some(held) = schedule.aimd.hold_until(now) {
                slot = slot.max(held);
            }
            schedule.next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
        // The semaphore is never closed.
        let _permit = self
            .in_flight
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("semaphore closed"));
        let started = Instant::now();
        let result = request.await;
        self.observe(started, &result);
        result
    }

    /// Feeds one answer to the controller.
    fn observe<T>(&self, started: Instant, result: &Result<T, kube::Error>) {
        let now = Instant::now();
        let mut schedule = self.lock();
        let before = schedule.aimd.rate();
        match result {
            Err(kube::Error::Api(status)) if status.code == 429 => {
                self.metrics.throttled.inc();
                let retry_after = status
                    .details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(u64::from(s)));
                schedule.aimd.throttled(now, started, retry_after);
                if let Some(held) = schedule.aimd.hold_until(now) {
                    // Slots handed out before the 429 come after the hold too.
                    schedule.next = schedule.next.max(held);
                }
            }
            // Any other answer of the server (a conflict too) is a latency sample.
            Ok(_) | Err(kube::Error::Api(_)) => schedule.aimd.answered(now, started),
            // No answer: the target's prober judges reachability, not the pacing.
            Err(_) => {}
        }
        let after = schedule.aimd.rate();
        drop(schedule);
        if after != before {
            self.metrics.rate.set(after);
            if after < before {
                tracing::debug!(rate = after, "write rate lowered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn starts_at_the_cap_or_the_default_ceiling() {
        let now = Instant::now();
        assert_eq!(Aimd::new(50.0, now).rate(), 50.0);
        assert_eq!(Aimd::new(f64::INFINITY, now).rate(), DEFAULT_CEILING);
    }

    #[test]
    fn a_429_halves_the_rate_once_per_round_and_holds_for_retry_after() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(400.0, t0);
        let t1 = t0 + ms(100);
        aimd.throttled(t1, t0, Some(Duration::from_secs(3)));
        assert_eq!(aimd.rate(), 200.0);
        assert_eq!(aimd.hold_until(t1), Some(t1 + Duration::from_secs(3)));
        assert_eq!(aimd.last_decrease(), Some((t1, Decrease::Throttled)));
        // Answers to writes sent before that decrease do not halve again...
        aimd.throttled(t1 + ms(5), t0 + ms(50), None);
        assert_eq!(aimd.rate(), 200.0);
        // ...but they do extend the hold, when later.
        assert_eq!(aimd.hold_until(t1), Some(t1 + Duration::from_secs(3)));
        // A write sent after it that is throttled again halves again.
        let t2 = t1 + Duration::from_secs(4);
        aimd.throttled(t2, t1 + ms(10), None);
        assert_eq!(aimd.rate(), 100.0);
        assert_eq!(aimd.hold_until(t2), Some(t2 + DEFAULT_RETRY_AFTER));
        assert_eq!(aimd.hold_until(t2 + DEFAULT_RETRY_AFTER), None);
    }

    #[test]
    fn the_rate_never_falls_below_the_floor() {
        let mut now = Instant::now();
        let mut aimd = Aimd::new(100.0, now);
        for _ in 0..50 {
            let sent = now;
            now += ms(10);
            aimd.throttled(now, sent, None);
        }
        assert_eq!(aimd.rate(), FLOOR);
        // A cap below the floor is the floor.
        let mut slow = Aimd::new(0.1, now);
        slow.throttled(now, now, None);
        assert_eq!(slow.rate(), 0.1);
    }

    #[test]
    fn successful_writes_recover_additively_up_to_the_cap() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(201.0, t0);
        aimd.throttled(t0, t0, Some(ms(1)));
        assert!(close(aimd.rate(), 100.5));
        // (201 - 1) / 20 s = 10 writes/s regained per second.
        let fast = ms(5);
        let mut now = t0;
        for _ in 0..5 {
            now += Duration::from_secs(1);
            aimd.answered(now, now - fast);
        }
        assert!(close(aimd.rate(), 150.5), "{}", aimd.rate());
        now += Duration::from_secs(60);
        aimd.answered(now, now - fast);
        assert_eq!(aimd.rate(), 201.0, "the cap holds");
    }

    #[test]
    fn rising_latency_cuts_the_rate_and_steady_latency_does_not() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(500.0, t0);
        let mut now = t0;
        // Steady 20 ms answers: no decrease.
        for _ in 0..100 {
            now += ms(10);
            aimd.answered(now, now - ms(20));
        }
        assert_eq!(aimd.rate(), 500.0);
        // The server slows down to 400 ms: the average climbs past 3x the floor.
        let mut cut_at = None;
        for i in 0..20 {
            now += ms(10);
            aimd.answered(now, now - ms(400));
            if aimd.rate() < 500.0 {
                cut_at = Some(i);
                break;
            }
        }
        assert!(cut_at.is_some(), "no decrease");
        assert_eq!(aimd.rate(), 400.0);
        assert_eq!(
            aimd.last_decrease().map(|(_, why)| why),
            Some(Decrease::Slow)
        );
    }

    #[test]
    fn latency_alone_cuts_once_per_window_and_never_below_a_tenth_of_the_ceiling() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(1000.0, t0);
        let mut now = t0;
        aimd.answered(now, now - ms(5));
        // Latency climbs and stays high for a minute (a loaded machine): one cut per
        // window at most, and never below 100 writes/s.
        let mut cuts = 0;
        let mut last = aimd.rate();
        for _ in 0..600 {
            now += ms(100);
            aimd.answered(now, now - ms(2000));
            if aimd.rate() < last {
                cuts += 1;
            }
            last = aimd.rate();
            assert!(aimd.rate() >= 100.0, "{}", aimd.rate());
        }
        assert!(cuts <= 7, "{cuts} cuts in 60 s");
        // A 429 still goes lower, as low as the server says.
        for _ in 0..10 {
            now += ms(100);
            aimd.throttled(now, now - ms(10), None);
        }
        assert!(aimd.rate() < 100.0, "{}", aimd.rate());
    }

    #[test]
    fn a_server_slow_for_good_becomes_the_new_floor() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(500.0, t0);
        let mut now = t0;
        for _ in 0..10 {
            now += ms(100);
            aimd.answered(now, now - ms(10));
        }
        // 300 ms from now on: cut at first, then no more once the floor window has rolled
        // over twice, and back at the ceiling.
        let slower = now;
        for _ in 0..400 {
            now += ms(100);
            aimd.answered(now, now - ms(300));
        }
        let (cut, why) = aimd.last_decrease().expect("a cut when it slowed down");
        assert_eq!(why, Decrease::Slow);
        assert!(
            cut < slower + 2 * FLOOR_WINDOW,
            "still cutting at {:?}",
            cut - slower
        );
        assert_eq!(aimd.rate(), 500.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_limiter_spaces_writes_at_the_rate_after_the_burst() {
        let limiter = WriteLimiter::new(2, Some(10.0));
        let start = Instant::now();
        for _ in 0..6 {
            limiter
                .write(async { Ok::<_, kube::Error>(()) })
                .await
                .expect("ok");
        }
        // 2 in the burst, then 4 more at 100 ms each.
        let elapsed = start.elapsed();
        assert!(elapsed >= ms(350) && elapsed <= ms(450), "{elapsed:?}");
    }

    fn too_many_requests(retry_after: u32) -> kube::Error {
        // What an API server's priority and fairness answers.
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 429, "reason": "TooManyRequests",
            "message": "Too many requests, please try again later.",
            "details": {"retryAfterSeconds": retry_after},
        }))
        .expect("status");
        kube::Error::Api(Box::new(status))
    }

    #[tokio::test(start_paused = true)]
    async fn the_limiter_honours_retry_after_and_reports_its_rate() {
        let metrics = PacingMetrics::default();
        let limiter = WriteLimiter::with_metrics(4, Some(100.0), metrics.clone());
        assert_eq!(metrics.rate.get(), 100.0);
        let answer = limiter
            .write(async { Err::<(), _>(too_many_requests(2)) })
            .await;
        assert!(answer.is_err());
        assert_eq!(metrics.rate.get(), 50.0);
        assert_eq!(metrics.throttled.get(), 1);
        let start = Instant::now();
        limiter
            .write(async { Ok::<_, kube::Error>(()) })
            .await
            .expect("ok");
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(limiter.rate() > 50.0, "recovering: {}", limiter.rate());
    }
}

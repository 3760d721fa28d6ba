//! A target cluster at run time: its client, its write limits, the namespaces Ferry has
//! verified there.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use ferry_core::Target;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Paces mutating requests: at most `max_in_flight` at once and `per_second` sustained.
pub struct WriteLimiter {
    in_flight: Semaphore,
    interval: Duration,
    /// How far behind "now" the schedule may fall, i.e. the burst allowance.
    burst: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl WriteLimiter {
    /// A limiter; `per_second <= 0` means unlimited rate.
    pub fn new(max_in_flight: usize, per_second: f64) -> Self {
        let interval = if per_second > 0.0 {
            Duration::from_secs_f64(1.0 / per_second)
        } else {
            Duration::ZERO
        };
        // `max_in_flight` requests may start at once after an idle period.
        let burst = interval
            .saturating_mul(u32::try_from(max_in_flight.saturating_sub(1)).unwrap_or(u32::MAX));
        let now = Instant::now();
        Self {
            in_flight: Semaphore::new(max_in_flight.max(1)),
            interval,
            burst,
            next: tokio::sync::Mutex::new(now.checked_sub(burst).unwrap_or(now)),
        }
    }

    /// Waits for a slot; hold the permit for the duration of the request.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let earliest = now.checked_sub(self.burst).unwrap_or(now);
            let slot = (*next).max(earliest);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
        // The semaphore is never closed.
        self.in_flight
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("semaphore closed"))
    }
}

/// One target cluster.
pub struct TargetCluster {
    /// What plugins see.
    pub target: Target,
    /// Client for the cluster.
    pub client: kube::Client,
    /// Write pacing.
    pub limiter: WriteLimiter,
    /// Downstream namespaces verified (or created) as Ferry's on this cluster, so that
    /// steady state needs no namespace request at all.
    pub namespaces: Mutex<HashSet<String>>,
}

impl TargetCluster {
    /// A target from its parts.
    pub fn new(
        name: String,
        labels: BTreeMap<String, String>,
        client: kube::Client,
        max_in_flight: usize,
        per_second: f64,
    ) -> Self {
        Self {
            target: Target { name, labels },
            client,
            limiter: WriteLimiter::new(max_in_flight, per_second),
            namespaces: Mutex::new(HashSet::new()),
        }
    }

    /// Name of the target.
    pub fn name(&self) -> &str {
        &self.target.name
    }

    /// Whether `namespace` was verified as Ferry's.
    pub fn knows_namespace(&self, namespace: &str) -> bool {
        self.namespaces
            .lock()
            .map(|set| set.contains(namespace))
            .unwrap_or(false)
    }

    /// Records (or forgets) a verified namespace.
    pub fn remember_namespace(&self, namespace: &str, known: bool) {
        if let Ok(mut set) = self.namespaces.lock() {
            if known {
                set.insert(namespace.to_string());
            } else {
                set.remove(namespace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn writes_are_paced_after_the_burst_allowance() {
        let limiter = WriteLimiter::new(2, 10.0);
        let start = Instant::now();
        for _ in 0..6 {
            drop(limiter.acquire().await);
        }
        // 2 in the burst, then 4 more at 100 ms each.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(350) && elapsed <= Duration::from_millis(450),
            "{elapsed:?}"
        );
    }
}

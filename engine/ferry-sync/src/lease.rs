//! The decisions of leader election on a `coordination.k8s.io/v1` Lease, as pure functions
//! (the calls to the API server are in [`crate::leader`]).
//!
//! The rules are client-go's (and so controller-runtime's):
//!
//! - A Lease held by another identity is valid for its `leaseDurationSeconds` from the moment
//!   *this process* last saw its record change. Only the local monotonic clock is used, never
//!   the holder's `renewTime`, so clocks that disagree between nodes cannot shorten a lease.
//! - A Lease without a holder (released), or whose holder stopped renewing for a whole lease
//!   duration, may be claimed. Every claim and renewal is a write conditional on the
//!   `resourceVersion` that was read (optimistic concurrency): of two claims, one fails.
//! - The holder renews every retry period; if no renewal succeeded for the renew deadline
//!   (shorter than the lease duration), it has lost the Lease and must stop writing before
//!   another process may claim it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

/// Timings of leader election (controller-runtime's names and defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a standby waits, after it last saw the Lease change, before it claims it.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// How often the leader renews, and a standby tries to claim.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The last record of the Lease this process read or wrote, and when it first saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The Lease's spec.
    pub spec: LeaseSpec,
    /// Its resourceVersion, for the next conditional write.
    pub resource_version: Option<String>,
    /// When this record was first seen here (local monotonic clock).
    pub since: Instant,
}

/// Records that the Lease reads `spec` at `now`: the time it was first seen is kept while
/// the record stays the same, and restarts when it changes (a renewal by its holder).
pub fn observe(
    previous: Option<&Observed>,
    spec: LeaseSpec,
    resource_version: Option<String>,
    now: Instant,
) -> Observed {
    let since = match previous {
        Some(p) if p.spec == spec => p.since,
        _ => now,
    };
    Observed {
        spec,
        resource_version,
        since,
    }
}

/// What to do about the Lease as observed.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Another identity holds it and it has not expired: wait.
    HeldBy {
        /// The holder.
        holder: String,
        /// How long until it expires, if it is not renewed meanwhile.
        expires_in: Duration,
    },
    /// Write this spec (conditionally on the observed resourceVersion): a renewal if this
    /// process holds the Lease, a claim otherwise.
    Claim(LeaseSpec),
}

/// The holder of `spec`, if any (a released Lease has an empty holder).
pub fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// What `me` should do about `observed` at `now` (`wall` is the wall-clock time recorded in
/// the Lease for people and tools to read; decisions never depend on it).
pub fn decide(
    observed: &Observed,
    me: &str,
    timings: &LeaseTimings,
    now: Instant,
    wall: Timestamp,
) -> Decision {
    let spec = &observed.spec;
    let current = holder(spec);
    if let Some(other) = current.filter(|h| *h != me) {
        let expires = valid_until(observed, timings);
        if now < expires {
            return Decision::HeldBy {
                holder: other.to_string(),
                expires_in: expires - now,
            };
        }
    }
    let transitions = spec.lease_transitions.unwrap_or(0);
    let renewing = current == Some(me);
    Decision::Claim(LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(seconds(timings.lease_duration)),
        acquire_time: if renewing {
            spec.acquire_time.clone()
        } else {
            Some(MicroTime(wall))
        },
        renew_time: Some(MicroTime(wall)),
        lease_transitions: Some(if renewing {
            transitions
        } else {
            transitions.saturating_add(1)
        }),
        ..LeaseSpec::default()
    })
}

/// Until when the observed record holds: its holder's own duration (the promise it made when
/// it wrote; `timings`' when it states none) from when this process first saw the record.
pub fn valid_until(observed: &Observed, timings: &LeaseTimings) -> Instant {
    let duration = observed
        .spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(timings.lease_duration, Duration::from_secs);
    observed.since + duration
}

/// The spec of a new Lease claimed by `me`.
pub fn first_claim(me: &str, timings: &LeaseTimings, wall: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(seconds(timings.lease_duration)),
        acquire_time: Some(MicroTime(wall)),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: Some(0),
        ..LeaseSpec::default()
    }
}

/// The spec that releases a Lease `me` holds, or None if `me` does not hold it (then there
/// is nothing to release, and writing would take it from its holder). As client-go does:
/// no holder and a one-second duration, so a standby claims it at its next try instead of
/// waiting out the lease duration.
pub fn release(observed: &Observed, me: &str, wall: Timestamp) -> Option<LeaseSpec> {
    (holder(&observed.spec) == Some(me)).then(|| LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(wall)),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: observed.spec.lease_transitions,
        ..LeaseSpec::default()
    })
}

/// Whether the leader, whose last successful renewal was sent at `last_renewal`, has passed
/// its renew deadline at `now` and must give up.
pub fn renew_deadline_passed(last_renewal: Instant, timings: &LeaseTimings, now: Instant) -> bool {
    now >= last_renewal + timings.renew_deadline
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "ferry-a_1";
    const OTHER: &str = "ferry-b_2";

    fn wall() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("timestamp")
    }

    fn held_by(holder: &str, duration: i32, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(MicroTime(
                Timestamp::from_second(1_700_000_000).expect("timestamp"),
            )),
            renew_time: Some(MicroTime(wall())),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    fn claimed(decision: Decision) -> LeaseSpec {
        match decision {
            Decision::Claim(spec) => spec,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_held_by_another_is_left_alone_until_a_whole_duration_passed_since_it_last_changed()
     {
        let timings = LeaseTimings::default();
        let start = Instant::now();
        let seen = observe(None, held_by(OTHER, 15, 3), Some("7".into()), start);
        assert_eq!(
            decide(&seen, ME, &timings, start + Duration::from_secs(14), wall()),
            Decision::HeldBy {
                holder: OTHER.into(),
                expires_in: Duration::from_secs(1)
            }
        );
        // The holder renewed at 10 s: the record changed, so the clock starts again.
        let mut renewed = held_by(OTHER, 15, 3);
        renewed.renew_time = Some(MicroTime(
            Timestamp::from_second(1_800_000_010).expect("timestamp"),
        ));
        let later = start + Duration::from_secs(10);
        let seen = observe(Some(&seen), renewed, Some("8".into()), later);
        assert_eq!(seen.since, later);
        assert!(matches!(
            decide(&seen, ME, &timings, start + Duration::from_secs(20), wall()),
            Decision::HeldBy { .. }
        ));
        // Unchanged for 15 s: expired, claimed with one more transition.
        let seen = observe(Some(&seen), seen.spec.clone(), Some("8".into()), later);
        let spec = claimed(decide(
            &seen,
            ME,
            &timings,
            start + Duration::from_secs(25),
            wall(),
        ));
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(wall())));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[tokio::test(start_paused = true)]
    async fn the_holders_own_duration_decides_when_its_lease_expires() {
        let timings = LeaseTimings::default();
        let start = Instant::now();
        let seen = observe(None, held_by(OTHER, 60, 0), None, start);
        assert!(matches!(
            decide(&seen, ME, &timings, start + Duration::from_secs(30), wall()),
            Decision::HeldBy { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_keeps_the_acquire_time_and_the_transitions() {
        let timings = LeaseTimings::default();
        let now = Instant::now();
        let seen = observe(None, held_by(ME, 15, 5), None, now);
        let spec = claimed(decide(&seen, ME, &timings, now, wall()));
        assert_eq!(spec.lease_transitions, Some(5));
        assert_eq!(spec.acquire_time, seen.spec.acquire_time);
        assert_eq!(spec.renew_time, Some(MicroTime(wall())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_lease_is_claimed_at_once() {
        let timings = LeaseTimings::default();
        let now = Instant::now();
        let holding = observe(None, held_by(OTHER, 15, 2), None, now);
        let released = release(&holding, OTHER, wall()).expect("the holder releases");
        assert_eq!(holder(&released), None);
        assert_eq!(released.lease_duration_seconds, Some(1));
        let seen = observe(Some(&holding), released, None, now);
        let spec = claimed(decide(&seen, ME, &timings, now, wall()));
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_holder_releases() {
        let seen = observe(None, held_by(OTHER, 15, 2), None, Instant::now());
        assert_eq!(release(&seen, ME, wall()), None);
    }

    #[test]
    fn a_new_lease_starts_with_no_transition() {
        let spec = first_claim(ME, &LeaseTimings::default(), wall());
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[tokio::test(start_paused = true)]
    async fn the_leader_gives_up_at_the_renew_deadline_before_the_lease_can_expire() {
        let timings = LeaseTimings::default();
        let renewed = Instant::now();
        assert!(!renew_deadline_passed(
            renewed,
            &timings,
            renewed + Duration::from_millis(9_999)
        ));
        assert!(renew_deadline_passed(
            renewed,
            &timings,
            renewed + Duration::from_secs(10)
        ));
        // A standby saw that renewal no earlier than it was sent, so it waits at least the
        // lease duration from then: the leader has stopped 5 s before anyone may claim.
        assert!(timings.renew_deadline < timings.lease_duration);
    }
}

//! Leader election: one task that claims, renews and releases the Lease on one target
//! cluster, and publishes whether this process leads (see [`crate::lease`] for the rules).
//!
//! The engine starts its workers when this says [`Leadership::Leading`] and stops them
//! when it says [`Leadership::Lost`]; it asks for the release only after its workers have
//! stopped, so nothing is written once another process may lead.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::error::{is_conflict, is_not_found};
use crate::explain;
use crate::lease::{self, Decision, LeaseTimings, Observed};

/// Where the Lease is and who this process is.
#[derive(Clone, Debug)]
pub struct LeaderElectionSettings {
    /// Name of the target cluster that holds the Lease.
    pub target: String,
    /// Namespace of the Lease (created if missing).
    pub namespace: String,
    /// Name of the Lease; `None`: `ferry-<owner>`, the installation's owner id, so that
    /// installations of different exports sharing a cluster do not share a Lease.
    pub name: Option<String>,
    /// This process's identity in the Lease (host or pod name and a random suffix).
    pub identity: String,
    /// Lease duration, renew deadline, retry period.
    pub timings: LeaseTimings,
    /// Share the work instead of electing a leader: every replica holds a member Lease
    /// (`<name>-member-…`) and writes the logical clusters it owns ([`crate::replicas`]).
    pub share_work: bool,
}

/// Whether this process may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// Waiting for the Lease.
    Standby,
    /// Holding the Lease.
    Leading,
    /// Held the Lease and could not renew it within the renew deadline, or saw another
    /// holder: stop writing at once.
    Lost,
}

/// The Lease as this process knows it, and the calls that change it.
pub struct Elector {
    leases: Api<Lease>,
    namespaces: Api<Namespace>,
    name: String,
    namespace: String,
    identity: String,
    timings: LeaseTimings,
    observed: Option<Observed>,
}

impl Elector {
    /// An elector for Lease `name` in `namespace` through `client`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: LeaseTimings,
    ) -> Self {
        Self {
            leases: Api::namespaced(client.clone(), namespace),
            namespaces: Api::all(client),
            name: name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            timings,
            observed: None,
        }
    }

    /// `namespace/name` of the Lease, for logs.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// One try to claim or renew the Lease. Ok(true): this process holds it now.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let Some(current) = self.leases.get_opt(&self.name).await? else {
            return self.create().await;
        };
        let observed = lease::observe(
            self.observed.as_ref(),
            current.spec.clone().unwrap_or_default(),
            current.metadata.resource_version.clone(),
            now,
        );
        let decision = lease::decide(
            &observed,
            &self.identity,
            &self.timings,
            now,
            Timestamp::now(),
        );
        self.observed = Some(observed);
        match decision {
            Decision::HeldBy { holder, expires_in } => {
                tracing::debug!(lease = %self.lease(), %holder, ?expires_in, "the Lease is held by another process");
                Ok(false)
            }
            Decision::Claim(spec) => self.write(spec).await,
        }
    }

    /// Creates the Lease held by this process (and its namespace if missing).
    async fn create(&mut self) -> Result<bool, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(lease::first_claim(
                &self.identity,
                &self.timings,
                Timestamp::now(),
            )),
        };
        let created = match self.leases.create(&PostParams::default(), &lease).await {
            Err(err) if is_not_found(&err) => {
                self.create_namespace().await?;
                self.leases.create(&PostParams::default(), &lease).await
            }
            other => other,
        };
        match created {
            Ok(created) => {
                self.remember(created);
                Ok(true)
            }
            // Another process created it first.
            Err(err) if is_conflict(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn create_namespace(&self) -> Result<(), kube::Error> {
        create_namespace(&self.namespaces, &self.namespace).await
    }

    /// Replaces the Lease's spec, conditionally on the resourceVersion observed. Ok(false)
    /// if it changed meanwhile (another process wrote first).
    async fn write(&mut self, spec: LeaseSpec) -> Result<bool, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: self
                    .observed
                    .as_ref()
                    .and_then(|o| o.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                let held = written
                    .spec
                    .as_ref()
                    .and_then(|s| lease::holder(s).map(|h| h == self.identity))
                    .unwrap_or(false);
                self.remember(written);
                Ok(held)
            }
            Err(err) if is_conflict(&err) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Records a Lease this process wrote as observed now.
    fn remember(&mut self, lease: Lease) {
        self.observed = Some(lease::observe(
            None,
            lease.spec.unwrap_or_default(),
            lease.metadata.resource_version,
            Instant::now(),
        ));
    }

    /// Releases the Lease if this process holds it, so a standby claims it at its next try.
    async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(spec) = self
            .observed
            .as_ref()
            .and_then(|o| lease::release(o, &self.identity, Timestamp::now()))
        else {
            return Ok(());
        };
        self.write(spec).await.map(|_| ())
    }
}

/// Runs leader election until the Lease is lost or `release` fires (or its sender is
/// dropped), publishing each change on `state`. On release, a held Lease is released.
pub async fn elect(
    mut elector: Elector,
    state: watch::Sender<Leadership>,
    mut release: oneshot::Receiver<()>,
) {
    let timings = elector.timings;
    tracing::info!(lease = %elector.lease(), identity = %elector.identity, "waiting to lead");
    // Said once per stretch of failures, then at debug level.
    let mut failing = false;
    let mut last_renewal = loop {
        let started = Instant::now();
        match tokio::time::timeout(timings.renew_deadline, elector.try_acquire_or_renew()).await {
            Ok(Ok(true)) => break started,
            Ok(Ok(false)) => failing = false,
            Ok(Err(err)) => report(&mut failing, &elector, &explain::api_error(&err)),
            Err(_) => report(&mut failing, &elector, "no answer"),
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(timings.retry_period)) => {}
            _ = &mut release => return,
        }
    };
    tracing::info!(lease = %elector.lease(), identity = %elector.identity, "leading");
    state.send_replace(Leadership::Leading);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(timings.retry_period) => {}
            _ = &mut release => {
                let lease = elector.lease();
                match tokio::time::timeout(timings.renew_deadline, elector.release()).await {
                    Ok(Ok(())) => tracing::info!(%lease, "released the Lease"),
                    Ok(Err(err)) => tracing::warn!(%lease, error = %explain::api_error(&err), "could not release the Lease; a standby takes over when it expires"),
                    Err(_) => tracing::warn!(%lease, "releasing the Lease got no answer; a standby takes over when it expires"),
                }
                return;
            }
        }
        // Renew, retrying until the deadline counted from the last renewal that succeeded.
        let deadline = last_renewal + timings.renew_deadline;
        loop {
            let started = Instant::now();
            if lease::renew_deadline_passed(last_renewal, &timings, started) {
                tracing::error!(lease = %elector.lease(), deadline = ?timings.renew_deadline, "could not renew the Lease within the renew deadline: leadership lost");
                state.send_replace(Leadership::Lost);
                return;
            }
            match tokio::time::timeout_at(deadline, elector.try_acquire_or_renew()).await {
                Ok(Ok(true)) => {
                    last_renewal = started;
                    break;
                }
                Ok(Ok(false)) => {
                    let holder = elector
                        .observed
                        .as_ref()
                        .and_then(|o| lease::holder(&o.spec).map(str::to_string))
                        .unwrap_or_default();
                    tracing::error!(lease = %elector.lease(), %holder, "another process holds the Lease: leadership lost");
                    state.send_replace(Leadership::Lost);
                    return;
                }
                Ok(Err(err)) => {
                    tracing::warn!(lease = %elector.lease(), error = %explain::api_error(&err), "renewing the Lease failed; retrying");
                    tokio::time::sleep_until(deadline.min(Instant::now() + timings.retry_period))
                        .await;
                }
                // The deadline passed: the next turn says so.
                Err(_) => {}
            }
        }
    }
}

fn report(failing: &mut bool, elector: &Elector, error: &str) {
    if std::mem::replace(failing, true) {
        tracing::debug!(lease = %elector.lease(), %error, "still cannot reach the Lease");
    } else {
        tracing::warn!(lease = %elector.lease(), %error, "cannot reach the Lease; retrying");
    }
}

/// `period` plus up to 20% at random, so standbys started together do not try in step.
fn jittered(period: Duration) -> Duration {
    period + period.mul_f64(random_fraction() * 0.2)
}

/// A number in [0, 1) that differs between calls and processes: std's hasher is seeded at
/// random per process and per `RandomState`, which is all the randomness jitter and the
/// identity suffix need.
pub fn random_fraction() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Creates the namespace the Leases live in (leader election's and the members'), when the
/// first Lease write found it missing; one created meanwhile by another replica is fine.
pub(crate) async fn create_namespace(
    namespaces: &Api<Namespace>,
    name: &str,
) -> Result<(), kube::Error> {
    tracing::info!(namespace = %name, "creating the leader election namespace");
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match namespaces.create(&PostParams::default(), &namespace).await {
        Err(err) if !is_conflict(&err) => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth_of_the_period() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(2));
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_millis(2400),
                "{d:?}"
            );
        }
    }

    #[test]
    fn random_fractions_differ() {
        let values: std::collections::BTreeSet<u64> =
            (0..10).map(|_| random_fraction().to_bits()).collect();
        assert!(values.len() > 5, "{values:?}");
    }
}

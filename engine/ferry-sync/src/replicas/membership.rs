//! Membership of replicas that share the work: this replica's own `coordination.k8s.io/v1`
//! Lease, renewed every retry period with the view it acts on, and after each renewal a fresh
//! list of every member's Lease, fed to the handover state ([`super::handover`]) through the
//! workers' gate ([`super::gate`]); a view adopted from a listing is advertised right after
//! the gate has narrowed.
//!
//! The timing rules are leader election's ([`crate::lease`]): another member's Lease holds for
//! its duration from when this process last saw it change (local monotonic clock only); this
//! replica stops writing everything when it could not renew for the renew deadline, which
//! comes before anyone else may drop it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::gate::Gate;
use super::handover::Step;
use super::report::HandoverTimer;
use crate::error::{is_conflict, is_not_found};
use crate::explain;
use crate::leader::Leadership;
use crate::lease::{self, LeaseTimings, Observed};
use crate::metrics::Metrics;

/// Label on every member Lease of one installation: the members are the Leases carrying it.
pub const MEMBER_OF: &str = "sync.ferry.dev/member-of";
/// Annotation on a member Lease: the digest of the member set its holder acts on.
pub const VIEW: &str = "sync.ferry.dev/view";

/// Where the member Leases are and who this replica is.
#[derive(Clone, Debug)]
pub struct MembershipSettings {
    /// Namespace of the Leases (created if missing).
    pub namespace: String,
    /// Prefix of the Lease names (the leader Lease's name): this replica's is
    /// `<prefix>-member-<digest of identity>`.
    pub prefix: String,
    /// Value of [`MEMBER_OF`] (the installation's owner id).
    pub group: String,
    /// This replica's identity.
    pub identity: String,
    /// Lease duration, renew deadline, retry period.
    pub timings: LeaseTimings,
}

impl MembershipSettings {
    /// This replica's Lease name.
    pub fn lease_name(&self) -> String {
        let digest = Sha256::digest(self.identity.as_bytes());
        let short: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("{}-member-{short}", self.prefix)
    }
}

/// This replica's Lease and the calls about it.
pub struct Membership {
    leases: Api<Lease>,
    namespaces: Api<Namespace>,
    settings: MembershipSettings,
    name: String,
    /// Every other member's Lease as last seen, by name.
    observed: HashMap<String, Observed>,
}

impl Membership {
    /// Membership through `client` (the leader election target's).
    pub fn new(client: kube::Client, settings: MembershipSettings) -> Self {
        Self {
            leases: Api::namespaced(client.clone(), &settings.namespace),
            namespaces: Api::all(client),
            name: settings.lease_name(),
            settings,
            observed: HashMap::new(),
        }
    }

    /// `namespace/name` of this replica's Lease, for logs.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.settings.namespace, self.name)
    }

    fn spec(&self) -> LeaseSpec {
        lease::first_claim(
            &self.settings.identity,
            &self.settings.timings,
            Timestamp::now(),
        )
    }

    /// Creates this replica's Lease (and the namespace if missing), advertising no view yet.
    async fn create(&self) -> Result<(), kube::Error> {
        let mut labels = BTreeMap::new();
        labels.insert(MEMBER_OF.to_string(), self.settings.group.clone());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec: Some(self.spec()),
        };
        match self.leases.create(&PostParams::default(), &lease).await {
            Err(err) if is_not_found(&err) => {
                crate::leader::create_namespace(&self.namespaces, &self.settings.namespace).await?;
                self.leases
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// Renews this replica's Lease, advertising `view`. Only this replica writes it, so the
    /// write is a plain patch; a Lease deleted meanwhile is an error (404): others may
    /// already have dropped this replica.
    async fn renew(&self, view: Option<&str>) -> Result<(), kube::Error> {
        let spec = self.spec();
        let patch = serde_json::json!({
            "metadata": {"annotations": {VIEW: view}},
            "spec": {
                "holderIdentity": spec.holder_identity,
                "leaseDurationSeconds": spec.lease_duration_seconds,
                "renewTime": spec.renew_time,
            },
        });
        self.leases
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }

    /// Lists the member Leases (a fresh read from the server) and returns the live members
    /// with the view each advertises. This replica's own Lease counts as listed.
    async fn live_members(&mut self) -> Result<BTreeMap<String, Option<String>>, kube::Error> {
        let params = ListParams::default().labels(&format!("{MEMBER_OF}={}", self.settings.group));
        let listed = self.leases.list(&params).await?;
        let now = Instant::now();
        let mut live = BTreeMap::new();
        let mut seen = HashMap::new();
        for item in listed.items {
            let Some(name) = item.metadata.name.clone() else {
                continue;
            };
            let view = item
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(VIEW))
                .filter(|v| !v.is_empty())
                .cloned();
            let spec = item.spec.unwrap_or_default();
            let Some(holder) = lease::holder(&spec).map(str::to_string) else {
                continue;
            };
            // Every renewal changes renewTime, so the spec alone tells a renewal apart.
            let observed = lease::observe(
                self.observed.get(&name),
                spec,
                item.metadata.resource_version,
                now,
            );
            let until = lease::valid_until(&observed, &self.settings.timings);
            if name == self.name || now < until {
                live.insert(holder, view);
            } else if now >= until + self.settings.timings.lease_duration {
                // Expired for a whole duration more: its holder stopped long ago (a crash
                // leaves its Lease behind). Removing it keeps the list short; losing the
                // race with another member's removal is fine.
                tracing::info!(lease = %name, member = %holder, "deleting the member Lease of a replica gone for good");
                let _ = self.leases.delete(&name, &DeleteParams::default()).await;
            }
            seen.insert(name, observed);
        }
        self.observed = seen;
        Ok(live)
    }

    /// Deletes this replica's Lease (after its workers stopped): the others drop it at their
    /// next listing instead of a lease duration later.
    async fn release(&self) -> Result<(), kube::Error> {
        match self
            .leases
            .delete(&self.name, &DeleteParams::default())
            .await
        {
            Err(err) if !is_not_found(&err) => Err(err),
            _ => Ok(()),
        }
    }
}

/// Runs membership until the Lease is lost or `release` fires (or its sender is dropped).
/// Publishes [`Leadership::Leading`] once the Lease exists (workers may start; the gate
/// allows nothing until a view is confirmed) and [`Leadership::Lost`] when it could not
/// renew within the renew deadline. Calls `confirmed` each time a view is confirmed, so the
/// clusters that became writable are enqueued. On release, the Lease is deleted. Counts
/// each handover, and its duration, in `metrics`.
pub async fn run(
    mut membership: Membership,
    gate: Arc<Gate>,
    state: watch::Sender<Leadership>,
    mut release: oneshot::Receiver<()>,
    confirmed: impl Fn(usize),
    metrics: Arc<Metrics>,
) {
    let timings = membership.settings.timings;
    let lease_name = membership.lease();
    tracing::info!(lease = %lease_name, identity = %membership.settings.identity, "joining the replicas that share the work");
    let mut failing = false;
    loop {
        match tokio::time::timeout(timings.renew_deadline, membership.create()).await {
            Ok(Ok(())) => break,
            Ok(Err(err)) if is_conflict(&err) => {
                // Only a process with the same identity would have created it.
                tracing::error!(lease = %lease_name, "a member Lease with this replica's name exists already; is another process running with the same identity?");
            }
            Ok(Err(err)) => report(&mut failing, &lease_name, &explain::api_error(&err)),
            Err(_) => report(&mut failing, &lease_name, "no answer"),
        }
        tokio::select! {
            _ = tokio::time::sleep(timings.retry_period) => {}
            _ = &mut release => return,
        }
    }
    let mut last_renewal = Instant::now();
    let mut handover = HandoverTimer::default();
    state.send_replace(Leadership::Leading);
    loop {
        let started = Instant::now();
        // Renew first: a slow listing must not cost the Lease (a listing that took most of
        // the renew deadline once stopped a healthy replica on a loaded machine).
        let mut renewed = match renew(&membership, &gate).await {
            Renewal::Renewed => {
                last_renewal = started;
                true
            }
            Renewal::Failed => false,
            Renewal::Deleted => {
                tracing::error!(lease = %lease_name, "this replica's member Lease was deleted: others may have taken its share; stopping");
                lost(&gate, &state).await;
                return;
            }
        };
        if lease::renew_deadline_passed(last_renewal, &timings, Instant::now()) {
            tracing::error!(lease = %lease_name, deadline = ?timings.renew_deadline, "could not renew the member Lease within the renew deadline: stopping");
            lost(&gate, &state).await;
            return;
        }
        let listing = tokio::time::timeout(timings.renew_deadline, membership.live_members()).await;
        match listing {
            Ok(Ok(live)) => match gate.update(|h| h.observe(&live)).await {
                Some(Step::Adopted) => {
                    metrics.replica_member_set_adopted();
                    handover.adopted(Instant::now().into_std());
                    tracing::info!(
                        members = live.len().max(1),
                        "replicas changed; stopped writing what this replica gives up, advertising the new member set"
                    );
                    // Advertised at once: the others wait for it.
                    let again = Instant::now();
                    match renew(&membership, &gate).await {
                        Renewal::Renewed => last_renewal = again,
                        Renewal::Failed => renewed = false,
                        Renewal::Deleted => {
                            tracing::error!(lease = %lease_name, "this replica's member Lease was deleted: others may have taken its share; stopping");
                            lost(&gate, &state).await;
                            return;
                        }
                    }
                }
                Some(Step::Confirmed) => {
                    let members = gate.read(|h| h.and_then(|h| h.view().map(|v| v.len())));
                    let members = members.unwrap_or(1);
                    tracing::info!(
                        members,
                        "every replica acts on the same member set: writing this replica's share"
                    );
                    if let Some(took) = handover.confirmed(Instant::now().into_std()) {
                        metrics.replica_handover_completed(took);
                    }
                    confirmed(members);
                }
                _ => {}
            },
            Ok(Err(err)) => {
                tracing::warn!(lease = %lease_name, error = %explain::api_error(&err), "listing the member Leases failed; retrying")
            }
            Err(_) => {
                tracing::warn!(lease = %lease_name, "listing the member Leases got no answer; retrying")
            }
        }
        // While a handover is under way, look again soon: the others' advertisements are
        // what this replica waits for, and each of them renews on its own schedule. After a
        // failed renewal, retry soon too.
        let settled = gate.read(|h| h.is_some_and(|h| h.is_confirmed()));
        let next = if settled && renewed {
            timings.retry_period
        } else {
            timings.retry_period / 4
        };
        tokio::select! {
            _ = tokio::time::sleep_until(started + next) => {}
            _ = &mut release => {
                gate.update(|h| h.stop()).await;
                match tokio::time::timeout(timings.renew_deadline, membership.release()).await {
                    Ok(Ok(())) => tracing::info!(lease = %lease_name, "left the replicas: deleted the member Lease"),
                    Ok(Err(err)) => tracing::warn!(lease = %lease_name, error = %explain::api_error(&err), "could not delete the member Lease; the others drop it when it expires"),
                    Err(_) => tracing::warn!(lease = %lease_name, "deleting the member Lease got no answer; the others drop it when it expires"),
                }
                return;
            }
        }
    }
}

/// How a renewal went.
enum Renewal {
    Renewed,
    /// An error or no answer within a retry period: retried soon, until the renew deadline.
    Failed,
    /// The Lease is gone (404).
    Deleted,
}

/// Renews this replica's Lease with the view it acts on; one retry period at most.
async fn renew(membership: &Membership, gate: &Gate) -> Renewal {
    let advertised = gate.read(|h| h.and_then(|h| h.advertised()));
    let lease = membership.lease();
    let period = membership.settings.timings.retry_period;
    match tokio::time::timeout(period, membership.renew(advertised.as_deref())).await {
        Ok(Ok(())) => Renewal::Renewed,
        Ok(Err(err)) if is_not_found(&err) => Renewal::Deleted,
        Ok(Err(err)) => {
            tracing::warn!(%lease, error = %explain::api_error(&err), "renewing the member Lease failed; retrying");
            Renewal::Failed
        }
        Err(_) => {
            tracing::warn!(%lease, after = ?period, "renewing the member Lease got no answer; retrying");
            Renewal::Failed
        }
    }
}

/// Stops every write, then says so.
async fn lost(gate: &Gate, state: &watch::Sender<Leadership>) {
    gate.update(|h| h.stop()).await;
    state.send_replace(Leadership::Lost);
}

fn report(failing: &mut bool, lease: &str, error: &str) {
    if std::mem::replace(failing, true) {
        tracing::debug!(%lease, %error, "still cannot create the member Lease");
    } else {
        tracing::warn!(%lease, %error, "cannot create the member Lease; retrying");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_identity_has_its_own_lease_name_within_the_dns_limits() {
        let settings = |identity: &str| MembershipSettings {
            namespace: "ferry-system".into(),
            prefix: "ferry-0123456789abcdef".into(),
            group: "0123456789abcdef".into(),
            identity: identity.into(),
            timings: LeaseTimings::default(),
        };
        let a = settings("pod-a_0000beef").lease_name();
        let b = settings("pod-a_0000bef0").lease_name();
        assert_ne!(a, b);
        assert!(a.starts_with("ferry-0123456789abcdef-member-"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{a}"
        );
    }
}

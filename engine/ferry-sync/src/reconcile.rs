//! The executor: reconciling one upstream object means taking a [`Snapshot`] of what the
//! stores hold, letting the planner ([`crate::plan`]) decide, and carrying the [`Plan`] out.
//!
//! Level-triggered and idempotent (DESIGN §2): a reconcile may run any number of times, after
//! missed events or a restart, and converges to the same result; when nothing differs the
//! plan has no write and the executor sends no mutating request.
//!
//! Each write is guarded so that a decision made on a stale view can never do harm:
//! - the finalizer is added and removed with a JSON patch that tests `resourceVersion`;
//! - a copy is created with `metadata.resourceVersion: "1"` in the applied body: the server
//!   creates the object when the name is free and answers 409 when *any* object has it (its
//!   resourceVersion is not 1), so a foreign object that appeared since the last look is
//!   refused, never taken over. A copy is updated with the live copy's UID in the body (the
//!   server answers 409 if the name now holds another object, or none). Both proven against
//!   a real kube-apiserver by the e2e tests;
//! - copies are deleted with a UID precondition;
//! - the upstream status is written with a JSON patch that tests the object's UID;
//! - before the finalizer is released, absence is confirmed by name on every target.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::identity::{self, FINALIZER, MANAGER, Origin, UpstreamKey};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::dependencies::Links;
use crate::desired::digest;
use crate::error::{SyncError, is_conflict, is_not_found, is_transport};
use crate::events::EventRecorder;
use crate::lag::Lag;
use crate::metrics::Metrics;
use crate::namespace;
use crate::namespace_cleanup;
use crate::plan::{
    self, CopyAction, CopyPlan, FinalizerPlan, MISSING_DEPENDENCIES, MissingPlan, Plan,
    PlanContext, Snapshot, StatusMemo, StatusPlan, TargetView,
};
use crate::plugins::PluginChain;
use crate::shards::Shards;
use crate::store::{DownstreamStore, Upstream, UpstreamStore};
use crate::target::TargetCluster;
use crate::workspaces::{Lookup, Workspace};

/// The resourceVersion that turns a server-side apply into "create, or fail if the name is
/// taken": ignored when the object is created, and never the version of an existing copy
/// (etcd revision 1 is the first write of the cluster's life, long before any Ferry
/// namespace existed).
pub const CREATE_ONLY: &str = "1";

/// Which part of an upstream object a write patches.
#[derive(Clone, Copy, Debug)]
enum Subresource {
    /// The object (metadata: finalizers, annotations).
    Object,
    /// Its status.
    Status,
}

/// What an apply is conditional on.
#[derive(Clone, Copy, Debug)]
enum Precondition<'a> {
    /// The name must be free.
    Absent,
    /// The name must hold this object (UID).
    Uid(&'a str),
}

/// What to do after a reconcile that did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing until the next event or resync.
    Done,
    /// Something is in progress (copies being deleted, a target's first list): look again
    /// with backoff. A normal state, not an error.
    Wait,
}

/// Clients for kcp virtual-workspace URLs: one per URL (each shard's virtual workspace),
/// and for writes to one workspace a light client over its shard's
/// ([`crate::kcp::cluster_client`]), so connections and TLS set-up do not multiply with the
/// number of workspaces.
pub struct KcpClients {
    config: kube::Config,
    clients: Mutex<HashMap<String, kube::Client>>,
    metrics: Arc<Metrics>,
    /// Paces every write to kcp (one kcp, whichever workspace or shard the write is for).
    pub writes: crate::pacing::WriteLimiter,
}

impl KcpClients {
    /// Clients with Ferry's kcp identity from `config`, their requests counted in `metrics`.
    pub fn new(config: kube::Config, metrics: Arc<Metrics>) -> Self {
        Self {
            writes: crate::pacing::WriteLimiter::with_metrics(
                crate::settings::defaults::KCP_MAX_IN_FLIGHT,
                None,
                metrics.pacing("kcp"),
            ),
            config,
            clients: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// A client for `url` (cached).
    pub fn for_url(&self, url: &str) -> Result<kube::Client, SyncError> {
        if let Some(client) = self.clients.lock().ok().and_then(|c| c.get(url).cloned()) {
            return Ok(client);
        }
        let client = crate::kcp::client_for(&self.config, url, &self.metrics)?;
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(url.to_string(), client.clone());
        }
        Ok(client)
    }

    /// A client for writes to one workspace through the virtual workspace of `shard`.
    /// (A workspace path is rejected there: it must be the logical cluster name.)
    pub fn scoped(&self, shard: &str, cluster: &str) -> Result<kube::Client, SyncError> {
        Ok(crate::kcp::cluster_client(&self.for_url(shard)?, cluster))
    }
}

/// Everything one synced resource needs at run time.
pub struct ResourceSync {
    /// `deployments.apps`.
    pub name: String,
    /// The resource as kcp serves it (and targets are expected to serve it too).
    pub api: ApiResource,
    /// Placement, transform and status plugins.
    pub plugins: Arc<dyn PluginChain>,
    /// Upstream objects seen through the virtual workspace (shared with the resources that
    /// depend on this one or that it depends on, through `links`).
    pub upstream: Arc<UpstreamStore>,
    /// Ferry's copies seen on the targets.
    pub downstream: Arc<DownstreamStore>,
    /// Every resource of the installation, for dependencies between them.
    pub links: Arc<Links>,
    /// Bound workspaces per shard (shared by every resource).
    pub shards: Arc<Shards>,
    /// Workspace paths, labels and annotations (shared by every resource).
    pub workspaces: Arc<crate::workspaces::Workspaces>,
    /// Target clusters, in configuration order.
    pub targets: Arc<Vec<Arc<TargetCluster>>>,
    /// kcp clients.
    pub kcp: Arc<KcpClients>,
    /// Events on upstream objects.
    pub events: Arc<EventRecorder>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Upstream changes not yet carried to every copy (the propagation latency).
    pub propagation: Lag,
    /// Copies' status changes not yet written upstream (the status latency).
    pub status_lag: Lag,
    /// This installation's owner id ([`identity::owner_id`]).
    pub owner: String,
    /// How long one target's part of a reconcile may take.
    pub target_timeout: Duration,
    /// The last status written per object (see [`StatusMemo`]).
    pub status_memo: Mutex<HashMap<UpstreamKey, StatusMemo>>,
    /// Every resource this installation syncs: a `ferry-` namespace holding none of them
    /// is deleted ([`crate::namespace_cleanup`]).
    pub synced: Arc<Vec<ApiResource>>,
}

fn apply_params() -> PatchParams {
    // force: Ferry owns the fields it sets downstream; a manual edit of one is drift to undo.
    PatchParams::apply(MANAGER).force()
}

/// `Api::patch` with `Patch::Apply(body)`, but with the body from [`yaml_safe_json`]: the API
/// server decodes an apply body as YAML, and YAML refuses characters that JSON carries raw
/// (DEL, the C1 controls U+0080–U+009F, U+FFFE, U+FFFF: "yaml: control characters are not
/// allowed") or reads as line breaks (U+0085, U+2028, U+2029: the space before one is
/// folded away), which kube's `serde_json` body leaves raw. A tenant can put them in any
/// string with a JSON create, and kcp stores them, so the copy could never be applied, or
/// differed from its object.
async fn apply_yaml_safe(
    client: &kube::Client,
    api: &ApiResource,
    namespace: &str,
    name: &str,
    body: &Value,
) -> kube::Result<DynamicObject> {
    use kube::Resource as _;
    let mut request = kube::core::Request::new(DynamicObject::url_path(api, Some(namespace)))
        .patch(name, &apply_params(), &Patch::Apply(body))
        .map_err(kube::Error::BuildRequest)?;
    *request.body_mut() = yaml_safe_json(body).into_bytes();
    request.extensions_mut().insert("patch");
    client.request::<DynamicObject>(request).await
}

/// `body` as JSON in which every character YAML does not take literally (also the byte-order
/// mark, which YAML may drop) is written as a `\uXXXX`
/// escape (the same string to a JSON and to a YAML reader). Outside strings JSON text is
/// ASCII, so a plain replacement only ever touches string contents.
pub(crate) fn yaml_safe_json(body: &Value) -> String {
    fn refused_by_yaml(c: char) -> bool {
        matches!(
            c,
            '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
    }
    let text = body.to_string();
    if !text.chars().any(refused_by_yaml) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 32);
    for c in text.chars() {
        if refused_by_yaml(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

impl ResourceSync {
    /// What the stores hold about `key` now.
    pub fn snapshot(&self, key: &UpstreamKey) -> Snapshot {
        self.snapshot_with(key, self.upstream.get(key))
    }

    /// The snapshot of `key` around `found`, the upstream object as the caller read it from
    /// the store: the reconcile plans and executes on the same read (and the workspace it
    /// looked up for it), not on two reads that an update could fall between.
    fn snapshot_with(&self, key: &UpstreamKey, found: Option<Upstream>) -> Snapshot {
        let shard = found.as_ref().map(|u| u.shard.clone());
        let upstream = found.map(|u| u.object);
        let absence = match upstream {
            Some(_) => plan::Absence::Gone,
            None => self.shards.absence(key, &self.upstream),
        };
        Snapshot {
            key: key.clone(),
            upstream,
            absence,
            copies: self.downstream.copies_of(key),
            targets: self
                .targets
                .iter()
                .map(|t| TargetView {
                    target: t.target.clone(),
                    listed: self.downstream.synced(t.name()),
                    reachable: t.is_reachable(),
                })
                .collect(),
            last_status: self
                .status_memo
                .lock()
                .ok()
                .and_then(|m| m.get(key).cloned()),
            dependents: self.links.dependents_of(&self.name, key, shard.as_deref()),
            dependencies: self
                .links
                .dependencies_of(&self.name, key, shard.as_deref()),
        }
    }

    /// Plans `snapshot` on the blocking pool: plugin calls are CPU-bound and bounded by their
    /// deadlines, and must not stall the async workers.
    pub async fn plan(
        &self,
        snapshot: Snapshot,
        workspace: Option<Arc<Workspace>>,
    ) -> Result<Plan, SyncError> {
        let plugins = self.plugins.clone();
        let owner = self.owner.clone();
        let name = self.name.clone();
        let links = self.links.clone();
        // The blocking thread does not inherit the task's span: without it, plugin log
        // lines would not say which object they are about.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let cx = PlanContext {
                owner: &owner,
                workspace: workspace.as_deref(),
                resource: &name,
                memo: &links.memo,
            };
            plan::plan(&snapshot, plugins.as_ref(), cx)
        })
        .await
        .map_err(|join| SyncError::Internal(format!("planning did not complete: {join}")))
    }

    /// Reconciles `key`; on failure also records an Event on the upstream object. Every log
    /// line on the way is inside [`object_span`], so it names the object.
    pub async fn reconcile(&self, key: &UpstreamKey) -> Result<Next, SyncError> {
        let upstream = self.upstream.get(key);
        let workspace = match &upstream {
            Some(u) => self.workspaces.lookup(&u.shard, &key.cluster),
            // Not live: no plugin is asked, the context does not matter.
            None => Lookup::Absent,
        };
        let path = match &workspace {
            Lookup::Known(w) => w.path.clone(),
            _ => self
                .workspaces
                .find(&key.cluster)
                .and_then(|w| w.path.clone()),
        };
        let workspace = match workspace {
            Lookup::Known(w) => Some(w),
            Lookup::Absent => None,
            // Planned without its path, a placement by path would move copies away and back.
            Lookup::Pending => {
                tracing::debug!(resource = %self.name, workspace = %key.cluster, "waiting for the workspace's LogicalCluster list");
                return Ok(Next::Wait);
            }
        };
        self.reconcile_inner(key, upstream, workspace)
            .instrument(object_span(&self.name, key, path.as_deref()))
            .await
    }

    async fn reconcile_inner(
        &self,
        key: &UpstreamKey,
        upstream: Option<Upstream>,
        workspace: Option<Arc<Workspace>>,
    ) -> Result<Next, SyncError> {
        let started = std::time::Instant::now();
        let snapshot = self.snapshot_with(key, upstream.clone());
        let dependency = snapshot.dependents.is_some();
        let result = match self.plan(snapshot, workspace).await {
            Ok(plan) => {
                if dependency {
                    self.record_skipped(key, &plan);
                }
                self.execute(&plan, upstream.as_ref()).await
            }
            Err(err) => Err(err),
        };
        let outcome = match &result {
            Ok(Next::Done) => "ok",
            Ok(Next::Wait) => "waiting",
            Err(_) => "error",
        };
        self.metrics
            .reconciled(&self.name, outcome, started.elapsed());
        let finished = matches!(result, Ok(Next::Done));
        if finished && let Some(latency) = self.propagation.settle(key, started, true) {
            self.metrics.propagated(&self.name, latency);
        }
        if let Some(latency) = self.status_lag.settle(key, started, finished) {
            self.metrics.status_propagated(&self.name, latency);
        }
        match &result {
            Ok(_) => self.events.clear(&self.name, key),
            Err(err) => {
                self.metrics
                    .reconcile_failed(&self.name, &err.metric_kind());
                tracing::warn!(error = %err, "reconcile failed");
                if let Some(upstream) = &upstream
                    && let Ok(client) = self.kcp.scoped(&upstream.shard, &key.cluster)
                {
                    let uid = upstream.object.metadata.uid.as_deref();
                    self.events
                        .warn(
                            client,
                            &self.name,
                            &self.api,
                            key,
                            uid,
                            err.reason(),
                            &err.to_string(),
                            &self.metrics,
                        )
                        .await;
                }
            }
        }
        result
    }

    /// Carries `plan` out. Every step that can run does; the errors are collected.
    pub async fn execute(
        &self,
        plan: &Plan,
        upstream: Option<&Upstream>,
    ) -> Result<Next, SyncError> {
        let key = &plan.key;
        let mut errors: Vec<SyncError> = plan
            .plugin_errors()
            .into_iter()
            .cloned()
            .map(SyncError::Plugin)
            .collect();
        // A placed target that does not answer: the tenant's object is not (fully) synced,
        // and the tenant should see why. Nothing was attempted there.
        for copy in &plan.copies {
            if copy.action == CopyAction::TargetUnreachable
                && matches!(&plan.placement, crate::plan::Placement::Chosen(t) if t.contains(&copy.target))
            {
                errors.push(SyncError::Unreachable {
                    target: copy.target.clone(),
                });
            }
        }
        let mut wait = false;
        if plan.finalizer == FinalizerPlan::Add
            && let Some(upstream) = upstream
        {
            // No copy may exist without the finalizer that guarantees its deletion.
            self.add_finalizer(key, upstream).await?;
        }

        let mut by_target: BTreeMap<&str, Vec<&CopyPlan>> = BTreeMap::new();
        for copy in &plan.copies {
            by_target
                .entry(copy.target.as_str())
                .or_default()
                .push(copy);
        }
        let work = by_target.into_iter().filter_map(|(name, copies)| {
            let target = self.targets.iter().find(|t| t.name() == name)?;
            Some(self.bounded(target, self.execute_target(key, target, copies)))
        });
        // The status goes up while the copies are applied: it was aggregated from the copies
        // as the plan saw them, so it does not wait for these applies, and the reconcile
        // costs one round trip less (the key behind it waits that much less).
        let status = async {
            match (&plan.status, upstream) {
                (StatusPlan::Write { value }, Some(upstream)) => {
                    self.write_status(key, upstream, value).await
                }
                _ => Ok(()),
            }
        };
        let (copies, status) = futures::future::join(futures::future::join_all(work), status).await;
        for result in copies {
            match result {
                Ok(waiting) => wait |= waiting,
                Err(err) => errors.push(err),
            }
        }
        if let Err(err) = status {
            errors.push(err);
        }
        if let Some(upstream) = upstream
            && let Err(err) = self.report_missing(plan, upstream).await
        {
            errors.push(err);
        }
        match &plan.finalizer {
            FinalizerPlan::Release if errors.is_empty() => {
                if let Some(upstream) = upstream {
                    match self.release_finalizer(key, upstream).await {
                        Ok(released) => wait |= !released,
                        Err(err) => errors.push(err),
                    }
                }
            }
            FinalizerPlan::Hold(reason) => {
                tracing::debug!(%reason, "finalizer held");
                wait = true;
            }
            _ => {}
        }
        match errors.len() {
            0 if wait => Ok(Next::Wait),
            0 => Ok(Next::Done),
            1 => Err(errors.remove(0)),
            _ => Err(SyncError::Several(errors)),
        }
    }

    /// One target's share of a plan, in order. Returns whether something is still in
    /// progress there.
    async fn execute_target(
        &self,
        key: &UpstreamKey,
        target: &TargetCluster,
        copies: Vec<&CopyPlan>,
    ) -> Result<bool, SyncError> {
        let mut waiting = false;
        for copy in copies {
            match &copy.action {
                CopyAction::Create { body } => {
                    waiting |= self
                        .apply(key, target, copy, body, Precondition::Absent)
                        .await?;
                }
                CopyAction::Update {
                    body,
                    live_uid,
                    changes,
                } => {
                    tracing::info!(
                        target = %copy.target,
                        fields = %changes.fields().join(", "),
                        "copy differs from the desired state"
                    );
                    waiting |= self
                        .apply(key, target, copy, body, Precondition::Uid(live_uid))
                        .await?;
                }
                CopyAction::Delete { uid, reason } => {
                    tracing::info!(target = %copy.target, ?reason, "deleting copy");
                    self.delete_copy(key, target, copy, uid).await?;
                }
                CopyAction::AwaitGone => waiting = true,
                // Looked at again soon (and at once when the dependency's copy arrives).
                CopyAction::AwaitDependency { dependencies } => {
                    tracing::debug!(target = %copy.target, waiting_for = %dependencies.join(", "), "create waits for its dependencies");
                    waiting = true;
                }
                // The namespace is verified once per process even when the copy needs no
                // write (one read; a write only if it lacks the Pod Security level), so a
                // namespace created by an older Ferry is labelled after an upgrade.
                CopyAction::Unchanged => {
                    self.ensure_namespace(target, &copy.namespace, key).await?;
                }
                // The target's prober re-enqueues everything when it answers again.
                CopyAction::TargetUnreachable
                | CopyAction::Failed { .. }
                | CopyAction::Skip
                | CopyAction::Held { .. } => {}
            }
        }
        Ok(waiting)
    }

    /// Server-side apply of `body`, conditional on `precondition` (see the module docs).
    /// Returns whether to look again (the name turned out to hold Ferry's own copy, not yet
    /// seen, or nothing any more).
    async fn apply(
        &self,
        key: &UpstreamKey,
        target: &TargetCluster,
        copy: &CopyPlan,
        body: &Value,
        precondition: Precondition<'_>,
    ) -> Result<bool, SyncError> {
        if !self.ensure_namespace(target, &copy.namespace, key).await? {
            // Being deleted: the copy goes into the namespace created anew once it is gone.
            return Ok(true);
        }
        let mut body = body.clone();
        match precondition {
            Precondition::Absent => body["metadata"]["resourceVersion"] = json!(CREATE_ONLY),
            Precondition::Uid(uid) => body["metadata"]["uid"] = json!(uid),
        }
        let result = target
            .limiter
            .write(apply_yaml_safe(
                &target.client,
                &self.api,
                &copy.namespace,
                &copy.name,
                &body,
            ))
            .await;
        let what = || {
            format!(
                "applying {} {}/{} on {}",
                self.api.kind, copy.namespace, copy.name, copy.target
            )
        };
        match result {
            Ok(applied) => {
                self.metrics.downstream_write(&copy.target, "apply");
                self.propagation.acted(key);
                tracing::info!(target = %copy.target, "applied");
                self.downstream
                    .apply(target.name(), crate::with_types(&self.api, applied));
                Ok(false)
            }
            Err(err) if is_conflict(&err) => {
                // The name holds another object than the one planned for. Find out whose.
                let found = self
                    .downstream_api(target, &copy.namespace)
                    .get_opt(&copy.name)
                    .await
                    .map_err(|e| self.target_error(target, what(), e))?;
                match found {
                    Some(found) if self.is_own_copy(&found, key) => {
                        // Ferry's own copy, not yet in the store: take it in and plan again.
                        self.downstream
                            .apply(target.name(), crate::with_types(&self.api, found));
                        Ok(true)
                    }
                    Some(_) => Err(SyncError::Collision {
                        target: copy.target.clone(),
                        kind: self.api.kind.clone(),
                        namespace: copy.namespace.clone(),
                        name: copy.name.clone(),
                        reason: "exists and is not this object's copy".into(),
                    }),
                    // Deleted meanwhile: the next round creates it.
                    None => Ok(true),
                }
            }
            // The namespace is being deleted (Ferry collected it a moment ago, when it held no
            // copy): look again with backoff until it is gone, then create it anew.
            Err(err) if namespace_cleanup::is_terminating(&err) => {
                tracing::info!(resource = %self.name, object = %key, target = %copy.target, namespace = %copy.namespace, "namespace is being deleted; the copy waits for it to go");
                target.remember_namespace(&copy.namespace, false);
                Ok(true)
            }
            Err(err) => {
                if is_not_found(&err) {
                    // The namespace went away under us: verify it again next time.
                    target.remember_namespace(&copy.namespace, false);
                }
                Err(self.target_error(target, what(), err))
            }
        }
    }

    /// Whether `object` (found on a target) is this installation's copy of `key`.
    fn is_own_copy(&self, object: &DynamicObject, key: &UpstreamKey) -> bool {
        let owner = object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(identity::OWNER));
        owner == Some(&self.owner)
            && serde_json::to_value(&object.metadata)
                .ok()
                .and_then(|m| Origin::of(&m))
                .is_some_and(|o| o.key == *key)
    }

    /// A failed request to a target; a transport failure marks the target unreachable so
    /// that nothing else waits for it.
    fn target_error(&self, target: &TargetCluster, action: String, err: kube::Error) -> SyncError {
        if is_transport(&err) && target.mark_unreachable() {
            tracing::warn!(target = %target.name(), error = %crate::explain::api_error(&err), "target unreachable; pausing work for it");
            self.metrics.target_up(target.name(), false);
        }
        SyncError::api(action, err)
    }

    fn downstream_api(&self, target: &TargetCluster, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(target.client.clone(), namespace, &self.api)
    }

    /// Makes sure the downstream namespace exists and is Ferry's for this (cluster, namespace).
    /// Returns `false` when it is being deleted (the caller waits and looks again).
    async fn ensure_namespace(
        &self,
        target: &TargetCluster,
        namespace: &str,
        key: &UpstreamKey,
    ) -> Result<bool, SyncError> {
        if target.knows_namespace(namespace) {
            return Ok(true);
        }
        let api: Api<Namespace> = Api::all(target.client.clone());
        let action = || format!("reading namespace {namespace} on {}", target.name());
        // Two rounds: a create can race with another worker creating the same namespace for
        // another object of the tenant; the 409 then sends us back to reading it.
        for _ in 0..2 {
            let existing = api
                .get_opt(namespace)
                .await
                .map_err(|e| self.target_error(target, action(), e))?;
            if let Some(existing) = existing {
                let labels = existing.metadata.labels.unwrap_or_default();
                let annotations = existing.metadata.annotations.unwrap_or_default();
                let ours = labels.get(identity::MANAGED_BY).map(String::as_str) == Some(MANAGER)
                    && labels.get(identity::CLUSTER) == Some(&key.cluster)
                    && annotations.get(identity::NAMESPACE) == Some(&key.namespace);
                if ours && existing.metadata.deletion_timestamp.is_some() {
                    tracing::debug!(target = %target.name(), %namespace, object = %key, "namespace is being deleted; the copy waits for it to go");
                    return Ok(false);
                }
                if !ours {
                    return Err(SyncError::Collision {
                        target: target.name().to_string(),
                        kind: "Namespace".into(),
                        namespace: namespace.to_string(),
                        name: namespace.to_string(),
                        reason: "exists and is not Ferry's namespace for this workspace".into(),
                    });
                }
                if namespace::needs_level(&labels, target.pod_security) {
                    // Created before the level was configured (or by an older Ferry): the
                    // tenant's Pods there must not escape Pod Security Admission.
                    self.label_namespace(target, namespace, key).await?;
                }
                target.remember_namespace(namespace, true);
                return Ok(true);
            }
            let mut object =
                namespace::desired(namespace, &key.cluster, &key.namespace, target.pod_security);
            object["metadata"]["resourceVersion"] = json!(CREATE_ONLY);
            let result = target
                .limiter
                .write(api.patch(
                    namespace,
                    &PatchParams::apply(MANAGER),
                    &Patch::Apply(&object),
                ))
                .await;
            match result {
                Ok(_) => {
                    self.metrics
                        .downstream_write(target.name(), "create-namespace");
                    target.remember_namespace(namespace, true);
                    return Ok(true);
                }
                // Created by someone else since the read: read it again.
                Err(err) if is_conflict(&err) => {}
                Err(err) => {
                    return Err(self.target_error(
                        target,
                        format!("creating namespace {namespace} on {}", target.name()),
                        err,
                    ));
                }
            }
        }
        Err(SyncError::NotReady(format!(
            "namespace {namespace} on {} keeps changing while Ferry creates it",
            target.name()
        )))
    }

    /// Applies Ferry's namespace object again over an existing namespace of Ferry's, so it
    /// gets the configured Pod Security level.
    async fn label_namespace(
        &self,
        target: &TargetCluster,
        name: &str,
        key: &UpstreamKey,
    ) -> Result<(), SyncError> {
        let api: Api<Namespace> = Api::all(target.client.clone());
        let object = namespace::desired(name, &key.cluster, &key.namespace, target.pod_security);
        let result = target
            .limiter
            .write(api.patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&object)))
            .await;
        result.map_err(|e| {
            self.target_error(
                target,
                format!("labelling namespace {name} on {}", target.name()),
                e,
            )
        })?;
        self.metrics
            .downstream_write(target.name(), "label-namespace");
        tracing::info!(target = %target.name(), namespace = %name, level = %target.pod_security, "namespace given the pod security level");
        Ok(())
    }

    /// Runs one target's part of a reconcile within [`ResourceSync::target_timeout`], and
    /// gives up at once if the target is marked unreachable meanwhile (by another request
    /// or its prober): a dead target must not hold a worker for the whole timeout.
    async fn bounded<T>(
        &self,
        target: &TargetCluster,
        work: impl std::future::Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        tokio::select! {
            result = tokio::time::timeout(self.target_timeout, work) => match result {
                Ok(result) => result,
                Err(_) => {
                    if target.mark_unreachable() {
                        tracing::warn!(target = %target.name(), after = ?self.target_timeout, "target did not answer in time; pausing work for it");
                        self.metrics.target_up(target.name(), false);
                    }
                    Err(SyncError::Timeout {
                        target: target.name().to_string(),
                        after: self.target_timeout,
                    })
                }
            },
            () = target.lost() => Err(SyncError::Unreachable { target: target.name().to_string() }),
        }
    }

    /// Deletes one copy, only if it is still the object Ferry saw (UID precondition).
    async fn delete_copy(
        &self,
        key: &UpstreamKey,
        target: &TargetCluster,
        copy: &CopyPlan,
        uid: &str,
    ) -> Result<(), SyncError> {
        let params = DeleteParams {
            preconditions: (!uid.is_empty()).then(|| Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        let result = target
            .limiter
            .write(
                self.downstream_api(target, &copy.namespace)
                    .delete(&copy.name, &params),
            )
            .await;
        // The answer goes into the store at once: a reconcile that runs again before the
        // watch event arrives must see the copy terminating (or gone), not delete it again.
        match result {
            Ok(answer) => {
                self.metrics.downstream_write(&copy.target, "delete");
                self.propagation.acted(key);
                match answer.left() {
                    // Still there, held by a finalizer: terminating.
                    Some(terminating) => {
                        self.downstream
                            .apply(target.name(), crate::with_types(&self.api, terminating));
                    }
                    None => {
                        self.downstream.forget(&copy.at());
                        self.collect_namespace(target, &copy.namespace).await;
                    }
                }
                Ok(())
            }
            // Gone already, or replaced by a newer object that the next reconcile judges.
            Err(err) if is_not_found(&err) => {
                self.downstream.forget(&copy.at());
                Ok(())
            }
            Err(err) if is_conflict(&err) => Ok(()),
            Err(err) => Err(self.target_error(
                target,
                format!(
                    "deleting {} {}/{} on {}",
                    self.api.kind, copy.namespace, copy.name, copy.target
                ),
                err,
            )),
        }
    }

    /// Deletes the copy's namespace if that was the last object of Ferry's resources in it
    /// ([`crate::namespace_cleanup`]). Best effort: a failure leaves an empty namespace behind (the
    /// next delete in it, or `ferry uninstall --delete-copies`, collects it), never a copy.
    async fn collect_namespace(&self, target: &TargetCluster, namespace: &str) {
        match namespace_cleanup::collect(target, namespace, &self.synced).await {
            Ok(namespace_cleanup::Collected::Deleted) => {
                self.metrics
                    .downstream_write(target.name(), "delete-namespace");
                tracing::info!(target = %target.name(), %namespace, "deleted the namespace: its last copy is gone");
            }
            Ok(namespace_cleanup::Collected::Kept) => {}
            Err(err) => {
                tracing::warn!(target = %target.name(), %namespace, error = %err, "could not delete an empty namespace");
            }
        }
    }

    fn upstream_api(
        &self,
        key: &UpstreamKey,
        upstream: &Upstream,
    ) -> Result<Api<DynamicObject>, SyncError> {
        let client = self.kcp.scoped(&upstream.shard, &key.cluster)?;
        Ok(Api::namespaced_with(client, &key.namespace, &self.api))
    }

    /// Sends a JSON patch of `key`'s object (or of its status) to kcp, paced by kcp's
    /// [`crate::pacing::WriteLimiter`].
    async fn write_upstream(
        &self,
        key: &UpstreamKey,
        upstream: &Upstream,
        patch: Value,
        subresource: Subresource,
        action: impl FnOnce() -> String,
    ) -> Result<DynamicObject, SyncError> {
        let api = self.upstream_api(key, upstream)?;
        let patch = json_patch(patch)?;
        let params = PatchParams::default();
        let request = async {
            match subresource {
                Subresource::Object => api.patch(&key.name, &params, &patch).await,
                Subresource::Status => api.patch_status(&key.name, &params, &patch).await,
            }
        };
        self.kcp
            .writes
            .write(request)
            .await
            .map_err(|e| SyncError::api(action(), e))
    }

    /// Takes the response of a write to kcp into the store, so the next plan sees it even
    /// before the watch event arrives.
    fn remember_upstream(&self, upstream: &Upstream, object: DynamicObject) {
        self.upstream
            .apply(&upstream.shard, crate::with_types(&self.api, object));
    }

    async fn add_finalizer(&self, key: &UpstreamKey, upstream: &Upstream) -> Result<(), SyncError> {
        let object = &upstream.object;
        let add = if object
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty())
        {
            json!({ "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER })
        } else {
            json!({ "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] })
        };
        let patch = json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": object.metadata.resource_version },
            add,
        ]);
        let updated = self
            .write_upstream(key, upstream, patch, Subresource::Object, || {
                format!("adding finalizer to {}", key.name)
            })
            .await?;
        self.metrics.upstream_write("finalizer");
        self.remember_upstream(upstream, updated);
        Ok(())
    }

    /// Confirms on every target, by name, that no copy is left, then removes the finalizer.
    /// Returns `false` when a copy turned up (it is deleted; the release waits).
    async fn release_finalizer(
        &self,
        key: &UpstreamKey,
        upstream: &Upstream,
    ) -> Result<bool, SyncError> {
        let object = &upstream.object;
        let namespace = key.downstream_namespace();
        for target in self.targets.iter() {
            let api = self.downstream_api(target, &namespace);
            let found = self
                .bounded(target, async {
                    api.get_opt(&key.name).await.map_err(|e| {
                        self.target_error(
                            target,
                            format!(
                                "reading {} {namespace}/{} on {}",
                                self.api.kind,
                                key.name,
                                target.name()
                            ),
                            e,
                        )
                    })
                })
                .await?;
            if let Some(found) = found
                && self.is_own_copy(&found, key)
            {
                // A copy the store had not seen yet (applied a moment ago).
                tracing::info!(target = %target.name(), "a copy appeared before the finalizer was released; deleting it first");
                let uid = found.metadata.uid.clone().unwrap_or_default();
                let terminating = found.metadata.deletion_timestamp.is_some();
                self.downstream
                    .apply(target.name(), crate::with_types(&self.api, found));
                if !terminating {
                    let copy = CopyPlan {
                        target: target.name().to_string(),
                        namespace: namespace.clone(),
                        name: key.name.clone(),
                        action: CopyAction::AwaitGone,
                    };
                    self.bounded(target, self.delete_copy(key, target, &copy, &uid))
                        .await?;
                }
                return Ok(false);
            }
        }
        let Some(index) = object
            .metadata
            .finalizers
            .iter()
            .flatten()
            .position(|f| f == FINALIZER)
        else {
            return Ok(true);
        };
        let patch = json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": object.metadata.resource_version },
            { "op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER },
            { "op": "remove", "path": format!("/metadata/finalizers/{index}") },
        ]);
        self.write_upstream(key, upstream, patch, Subresource::Object, || {
            format!("removing finalizer from {}", key.name)
        })
        .await?;
        self.metrics.upstream_write("finalizer");
        tracing::info!("copies deleted; finalizer removed");
        Ok(true)
    }

    async fn write_status(
        &self,
        key: &UpstreamKey,
        upstream: &Upstream,
        status: &Value,
    ) -> Result<(), SyncError> {
        let uid = upstream.object.metadata.uid.clone().unwrap_or_default();
        // Pinned to the UID: never the status of another object that took the name since.
        let patch = json!([
            { "op": "test", "path": "/metadata/uid", "value": uid },
            { "op": "add", "path": "/status", "value": status },
        ]);
        let updated = self
            .write_upstream(key, upstream, patch, Subresource::Status, || {
                format!("writing status of {}", key.name)
            })
            .await?;
        self.metrics.upstream_write("status");
        self.status_lag.acted(key);
        let stored = updated.data.get("status").cloned().unwrap_or(Value::Null);
        if let Ok(mut memo) = self.status_memo.lock() {
            memo.insert(
                key.clone(),
                StatusMemo {
                    uid,
                    sent: digest(status),
                    stored: crate::compact::CompactValue::new(&stored),
                },
            );
        }
        self.remember_upstream(upstream, updated);
        Ok(())
    }

    /// The dependencies the object references and that do not exist: a Warning Event
    /// `DependencyMissing` naming them, and the [`MISSING_DEPENDENCIES`] annotation (set,
    /// changed or removed as the plan says; the patch tests the object's UID).
    async fn report_missing(&self, plan: &Plan, upstream: &Upstream) -> Result<(), SyncError> {
        let key = &plan.key;
        // The Events' de-duplication is per (resource, object); this one has its own entry
        // so that errors and missing dependencies do not clear each other.
        let channel = format!("{}:dependencies", self.name);
        if plan.missing.is_empty() {
            self.events.clear(&channel, key);
        } else if let Ok(client) = self.kcp.scoped(&upstream.shard, &key.cluster) {
            let message = format!(
                "references {} that Ferry cannot see (they do not exist, or this workspace's \
                 binding does not accept the export's claim on them): synced without them",
                plan.missing.join(", ")
            );
            tracing::info!(missing = %plan.missing.join(", "), "dependencies missing");
            self.events
                .warn(
                    client,
                    &channel,
                    &self.api,
                    key,
                    upstream.object.metadata.uid.as_deref(),
                    "DependencyMissing",
                    &message,
                    &self.metrics,
                )
                .await;
        }
        let Some(patch) = missing_patch(&plan.missing_annotation, &upstream.object) else {
            return Ok(());
        };
        let updated = self
            .write_upstream(key, upstream, patch, Subresource::Object, || {
                format!("writing the missing dependencies of {}", key.name)
            })
            .await?;
        self.metrics.upstream_write("missing-dependencies");
        self.remember_upstream(upstream, updated);
        Ok(())
    }

    /// A dependency object: remembers the targets its transform skips, for its dependents'
    /// plans, and wakes them when that changes (one waiting for it there need not wait).
    fn record_skipped(&self, key: &UpstreamKey, plan: &Plan) {
        let skipped = plan
            .copies
            .iter()
            .filter(|c| {
                matches!(
                    c.action,
                    CopyAction::Skip
                        | CopyAction::Delete {
                            reason: crate::plan::DeleteReason::Skipped,
                            ..
                        }
                )
            })
            .map(|c| c.target.clone())
            .collect();
        if self.links.memo.record_skipped(&self.name, key, skipped) {
            self.links
                .touched(&self.name, &key.cluster, &key.namespace, false);
        }
    }

    /// Forgets what is only needed while the object exists.
    pub fn forget(&self, key: &UpstreamKey) {
        self.links.memo.forget(&self.name, key);
        self.propagation.forget(key);
        self.status_lag.forget(key);
        if let Ok(mut memo) = self.status_memo.lock() {
            memo.remove(key);
        }
    }
}

/// The span of everything Ferry does about one object: its fields (`workspace`: the
/// logical cluster, `resource`, `namespace`, `object`: the name) are on every log line
/// inside, so a log pipeline can select one object's or one workspace's history. (Not
/// `name`: a JSON log line has the span's own name there.)
/// The workspace path is there when known: a logical cluster name alone tells an operator
/// little.
pub fn object_span(resource: &str, key: &UpstreamKey, path: Option<&str>) -> tracing::Span {
    tracing::info_span!(
        "reconcile",
        workspace = %key.cluster,
        path = path.map(tracing::field::display),
        resource = %resource,
        namespace = %key.namespace,
        object = %key.name,
    )
}

/// A JSON patch from its operations (the `test` operations make writes to kcp conditional on
/// what Ferry decided on).
/// The JSON patch that carries out `change` of the [`MISSING_DEPENDENCIES`] annotation on
/// `object`, pinned to its UID; `None` when there is nothing to write.
fn missing_patch(change: &MissingPlan, object: &DynamicObject) -> Option<Value> {
    let pointer = format!(
        "/metadata/annotations/{}",
        MISSING_DEPENDENCIES.replace('~', "~0").replace('/', "~1")
    );
    let change = match change {
        MissingPlan::Keep => return None,
        // JSON patch cannot add a key to a map that is not there.
        MissingPlan::Set(value) if object.metadata.annotations.is_none() => {
            json!({ "op": "add", "path": "/metadata/annotations", "value": { MISSING_DEPENDENCIES: value } })
        }
        MissingPlan::Set(value) => json!({ "op": "add", "path": pointer, "value": value }),
        MissingPlan::Remove => json!({ "op": "remove", "path": pointer }),
    };
    let uid = object.metadata.uid.clone().unwrap_or_default();
    Some(json!([{ "op": "test", "path": "/metadata/uid", "value": uid }, change]))
}

fn json_patch(operations: Value) -> Result<Patch<()>, SyncError> {
    serde_json::from_value(operations)
        .map(Patch::Json)
        .map_err(|e| SyncError::Internal(format!("building a JSON patch: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_dependencies_patch_is_pinned_to_the_uid_and_escapes_the_key() {
        let mut object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "uid": "u-1", "annotations": {"a": "b"}},
        }))
        .expect("object");
        assert_eq!(missing_patch(&MissingPlan::Keep, &object), None);
        let set = missing_patch(&MissingPlan::Set("configmaps/x".into()), &object);
        assert_eq!(
            set,
            Some(json!([
                {"op": "test", "path": "/metadata/uid", "value": "u-1"},
                {"op": "add", "path": "/metadata/annotations/sync.ferry.dev~1missing-dependencies", "value": "configmaps/x"},
            ]))
        );
        let remove = missing_patch(&MissingPlan::Remove, &object).expect("patch");
        assert_eq!(remove[1]["op"], "remove");
        object.metadata.annotations = None;
        let first =
            missing_patch(&MissingPlan::Set("configmaps/x".into()), &object).expect("patch");
        assert_eq!(
            first[1],
            json!({"op": "add", "path": "/metadata/annotations", "value": {MISSING_DEPENDENCIES: "configmaps/x"}})
        );
    }

    #[test]
    fn an_apply_body_carries_characters_yaml_refuses_as_escapes_of_the_same_string() {
        // The defects: a tenant's annotation with DEL or a C1 control made every apply of the
        // copy fail with "yaml: control characters are not allowed", and the space before a
        // U+2028 or U+2029 was missing on the copy (YAML folds line breaks).
        let body = json!({"metadata": {"annotations": {
            "odd": "a\u{7f}b\u{85}c\u{9b}d\u{fffe}\u{ffff}",
            "breaks": "zw \u{2028}ls \u{2029}ps \u{feff}",
            "fine": "é 🚢 \"quoted\" \\ \u{1b}",
        }}});
        let text = yaml_safe_json(&body);
        assert!(
            !text.chars().any(|c| matches!(
                c,
                '\u{7f}'
                    ..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
            )),
            "{text}"
        );
        assert!(
            text.contains(r"a\u007fb\u0085c\u009bd\ufffe\uffff"),
            "{text}"
        );
        assert!(text.contains(r"zw \u2028ls \u2029ps \ufeff"), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).expect("JSON"), body);
        // Nothing else changes.
        let plain = json!({"a": "é 🚢 \u{200b}"});
        assert_eq!(yaml_safe_json(&plain), plain.to_string());
    }
}

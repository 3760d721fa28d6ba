//! Reconciling one upstream object: the whole desired state from what exists now.
//!
//! Level-triggered and idempotent (DESIGN §2): a reconcile may run any number of times, after
//! missed events or a restart, and converges to the same result; when nothing differs it
//! makes no request that mutates anything.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::identity::{self, FINALIZER, MANAGER, Origin, UpstreamKey};
use ferry_core::{Downstream, ObjectContext};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::desired::{first_difference, is_subset, prepare};
use crate::error::{SyncError, is_conflict, is_not_found};
use crate::events::EventRecorder;
use crate::metrics::{Metrics, names};
use crate::plugins::{HookError, PluginChain};
use crate::store::{CopyRef, DownstreamStore, Upstream, UpstreamStore};
use crate::target::TargetCluster;

/// What to do after a successful reconcile.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing until the next event or resync.
    Done,
    /// Look again soon (a deletion is in progress).
    CheckAfter(Duration),
}

/// Clients for kcp virtual-workspace URLs, built once per (shard, logical cluster).
pub struct KcpClients {
    config: kube::Config,
    clients: Mutex<HashMap<String, kube::Client>>,
}

impl KcpClients {
    /// Clients with Ferry's kcp identity from `config`.
    pub fn new(config: kube::Config) -> Self {
        Self {
            config,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A client for `url` (cached).
    pub fn for_url(&self, url: &str) -> Result<kube::Client, SyncError> {
        if let Some(client) = self.clients.lock().ok().and_then(|c| c.get(url).cloned()) {
            return Ok(client);
        }
        let client = crate::kcp::client_for(&self.config, url)?;
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(url.to_string(), client.clone());
        }
        Ok(client)
    }

    /// A client for writes to one workspace through the virtual workspace of `shard`.
    /// (A workspace path is rejected there: it must be the logical cluster name.)
    pub fn scoped(&self, shard: &str, cluster: &str) -> Result<kube::Client, SyncError> {
        self.for_url(&format!("{shard}/clusters/{cluster}"))
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
    /// Upstream objects seen through the virtual workspace.
    pub upstream: UpstreamStore,
    /// Ferry's copies seen on the targets.
    pub downstream: DownstreamStore,
    /// Target clusters, in configuration order.
    pub targets: Arc<Vec<Arc<TargetCluster>>>,
    /// kcp clients.
    pub kcp: Arc<KcpClients>,
    /// Events on upstream objects.
    pub events: Arc<EventRecorder>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// This installation's owner id ([`identity::owner_id`]).
    pub owner: String,
    /// How long one target's part of a reconcile may take.
    pub target_timeout: Duration,
}

fn apply_params() -> PatchParams {
    // force: Ferry owns the fields it sets downstream; a manual edit of one is drift to undo.
    PatchParams::apply(MANAGER).force()
}

impl ResourceSync {
    pub(crate) fn context(&self, key: &UpstreamKey) -> ObjectContext {
        ObjectContext {
            logical_cluster: key.cluster.clone(),
            workspace_path: None,
            namespace: key.namespace.clone(),
            downstream_namespace: key.downstream_namespace(),
        }
    }

    fn downstream_api(&self, target: &TargetCluster, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(target.client.clone(), namespace, &self.api)
    }

    /// Reconciles `key`; on failure also records an Event on the upstream object.
    pub async fn reconcile(&self, key: &UpstreamKey) -> Result<Next, SyncError> {
        let upstream = self.upstream.get(key);
        let result = match &upstream {
            None => self.remove_orphans(key).await.map(|()| Next::Done),
            Some(upstream) => self.reconcile_object(key, upstream).await,
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics.inc(
            names::RECONCILES,
            &[("resource", &self.name), ("result", outcome)],
        );
        match &result {
            Ok(_) => self.events.clear(key),
            Err(err) => {
                self.metrics.inc(
                    names::ERRORS,
                    &[("resource", &self.name), ("kind", &err.metric_kind())],
                );
                tracing::warn!(resource = %self.name, object = %key, error = %err, "reconcile failed");
                if let Some(upstream) = &upstream
                    && let Ok(client) = self.kcp.scoped(&upstream.shard, &key.cluster)
                {
                    let uid = upstream.object.metadata.uid.as_deref();
                    self.events
                        .warn(
                            client,
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

    async fn reconcile_object(
        &self,
        key: &UpstreamKey,
        upstream: &Upstream,
    ) -> Result<Next, SyncError> {
        let object = &upstream.object;
        let client = self.kcp.scoped(&upstream.shard, &key.cluster)?;
        let api: Api<DynamicObject> = Api::namespaced_with(client, &key.namespace, &self.api);
        if object.metadata.deletion_timestamp.is_some() {
            return self.finalize(key, object, &api).await;
        }
        let uid = object.metadata.uid.clone().unwrap_or_default();
        if !object
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
        {
            self.add_finalizer(key, object, &api).await?;
        }

        let value = serde_json::to_value(object.as_ref())
            .map_err(|e| SyncError::Internal(e.to_string()))?;
        let context = self.context(key);
        let targets: Vec<ferry_core::Target> =
            self.targets.iter().map(|t| t.target.clone()).collect();
        let placed: BTreeSet<String> = {
            let (plugins, context, value) = (self.plugins.clone(), context.clone(), value.clone());
            run_plugin(move || plugins.place(&context, &value, &targets))
                .await?
                .into_iter()
                .collect()
        };

        let mut errors = Vec::new();
        let mut kept = BTreeSet::new();
        let mut copies = Vec::new();
        // Targets in parallel, each bounded in time: a slow or unreachable cluster must not
        // hold up the others (or this worker) for long.
        let chosen: Vec<&Arc<TargetCluster>> = self
            .targets
            .iter()
            .filter(|t| placed.contains(t.name()))
            .collect();
        let results = futures::future::join_all(chosen.iter().map(|target| {
            self.bounded(
                target,
                self.sync_target(key, &uid, &value, &context, target),
            )
        }))
        .await;
        for (target, result) in chosen.into_iter().zip(results) {
            match result {
                Ok(Some((at, live))) => {
                    kept.insert(at);
                    copies.push(Downstream {
                        target: target.target.clone(),
                        object: Some(live),
                    });
                }
                Ok(None) => {}
                Err(err) => {
                    // Keep whatever copy exists there: a failing target is not a reason to
                    // delete (it may be unreachable), and its last known state still counts.
                    for (at, live) in self.downstream.copies_of(key) {
                        if at.target == target.name() {
                            kept.insert(at);
                            copies.push(Downstream {
                                target: target.target.clone(),
                                object: serde_json::to_value(live.as_ref()).ok(),
                            });
                        }
                    }
                    errors.push(err);
                }
            }
        }

        // Copies on targets no longer chosen (or skipped by the transform) go.
        for (at, copy) in self.downstream.copies_of(key) {
            if !kept.contains(&at)
                && let Err(err) = self.delete_copy_bounded(&at, &copy).await
            {
                errors.push(err);
            }
        }

        if let Err(err) = self
            .write_status(key, object, &value, &context, copies, &api)
            .await
        {
            errors.push(err);
        }
        match errors.len() {
            0 => Ok(Next::Done),
            1 => Err(errors.remove(0)),
            _ => Err(SyncError::Targets(errors)),
        }
    }

    /// Applies the transform's output on one target, unless the live copy already matches.
    /// Returns where the copy is and its live state, or `None` if the transform skipped it.
    async fn sync_target(
        &self,
        key: &UpstreamKey,
        uid: &str,
        value: &Value,
        context: &ObjectContext,
        target: &TargetCluster,
    ) -> Result<Option<(CopyRef, Value)>, SyncError> {
        let desired = {
            let (plugins, context, value, t) = (
                self.plugins.clone(),
                context.clone(),
                value.clone(),
                target.target.clone(),
            );
            run_plugin(move || plugins.transform(&context, &value, &t)).await?
        };
        let Some(mut desired) = desired else {
            return Ok(None);
        };
        let namespace = context.downstream_namespace.clone();
        prepare(
            &mut desired,
            key,
            uid,
            &self.owner,
            &namespace,
            context.workspace_path.as_deref(),
        );
        let name = desired
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(&key.name)
            .to_string();
        let at = CopyRef {
            target: target.name().to_string(),
            namespace: namespace.clone(),
            name: name.clone(),
        };
        let api = self.downstream_api(target, &namespace);

        let live = match self.downstream.get(&at) {
            Some(live) => Some(
                serde_json::to_value(live.as_ref())
                    .map_err(|e| SyncError::Internal(e.to_string()))?,
            ),
            // Not among Ferry's copies: it may not exist, or be someone else's.
            None => match api.get_opt(&name).await {
                Ok(found) => found.map(|o| serde_json::to_value(o).unwrap_or(Value::Null)),
                Err(err) => {
                    return Err(SyncError::api(
                        format!(
                            "reading {} {namespace}/{name} on {}",
                            self.api.kind, at.target
                        ),
                        err,
                    ));
                }
            },
        };
        if let Some(live) = &live {
            self.check_owner(live, key, &at)?;
            if is_subset(&desired, live) {
                return Ok(Some((at, live.clone())));
            }
            tracing::info!(
                resource = %self.name, object = %key, target = %at.target,
                field = first_difference(&desired, live).as_deref().unwrap_or("?"),
                "copy differs from the desired state"
            );
        }

        self.ensure_namespace(target, &namespace, key, context)
            .await?;
        let _permit = target.limiter.acquire().await;
        let applied = api
            .patch(&name, &apply_params(), &Patch::Apply(&desired))
            .await
            .map_err(|err| {
                if is_not_found(&err) {
                    // The namespace went away under us: verify it again next time.
                    target.remember_namespace(&namespace, false);
                }
                SyncError::api(
                    format!(
                        "applying {} {namespace}/{name} on {}",
                        self.api.kind, at.target
                    ),
                    err,
                )
            })?;
        self.metrics.inc(
            names::DOWNSTREAM_WRITES,
            &[("target", &at.target), ("verb", "apply")],
        );
        tracing::info!(resource = %self.name, object = %key, target = %at.target, "applied");
        let live = serde_json::to_value(applied).map_err(|e| SyncError::Internal(e.to_string()))?;
        Ok(Some((at, live)))
    }

    /// Refuses a copy that is not Ferry's, or is Ferry's for another upstream object.
    pub(crate) fn check_owner(
        &self,
        live: &Value,
        key: &UpstreamKey,
        at: &CopyRef,
    ) -> Result<(), SyncError> {
        let collision = |reason: String| SyncError::Collision {
            target: at.target.clone(),
            kind: self.api.kind.clone(),
            namespace: at.namespace.clone(),
            name: at.name.clone(),
            reason,
        };
        let owner = live.pointer(&format!(
            "/metadata/labels/{}",
            identity::OWNER.replace('/', "~1")
        ));
        if let Some(owner) = owner.and_then(Value::as_str).filter(|o| *o != self.owner) {
            return Err(collision(format!(
                "is managed by another Ferry installation (owner {owner})"
            )));
        }
        match live.get("metadata").and_then(Origin::of) {
            // Same upstream identity; a different UID is a copy of an earlier object of the
            // same name in the same workspace, which this object replaces.
            Some(origin) if origin.key == *key => Ok(()),
            Some(origin) => Err(collision(format!("belongs to {}", origin.key))),
            None => Err(collision("exists and is not managed by Ferry".into())),
        }
    }

    /// Makes sure the downstream namespace exists and is Ferry's for this (cluster, namespace).
    async fn ensure_namespace(
        &self,
        target: &TargetCluster,
        namespace: &str,
        key: &UpstreamKey,
        context: &ObjectContext,
    ) -> Result<(), SyncError> {
        if target.knows_namespace(namespace) {
            return Ok(());
        }
        let api: Api<Namespace> = Api::all(target.client.clone());
        let existing = api.get_opt(namespace).await.map_err(|e| {
            SyncError::api(
                format!("reading namespace {namespace} on {}", target.name()),
                e,
            )
        })?;
        if let Some(existing) = existing {
            let labels = existing.metadata.labels.unwrap_or_default();
            let annotations = existing.metadata.annotations.unwrap_or_default();
            let ours = labels.get(identity::MANAGED_BY).map(String::as_str) == Some(MANAGER)
                && labels.get(identity::CLUSTER) == Some(&key.cluster)
                && annotations.get(identity::NAMESPACE) == Some(&key.namespace);
            if !ours {
                return Err(SyncError::Collision {
                    target: target.name().to_string(),
                    kind: "Namespace".into(),
                    namespace: namespace.to_string(),
                    name: namespace.to_string(),
                    reason: "exists and is not Ferry's namespace for this workspace".into(),
                });
            }
        } else {
            let mut annotations = json!({ identity::NAMESPACE: key.namespace });
            if let Some(path) = &context.workspace_path {
                annotations[identity::WORKSPACE] = json!(path);
            }
            let object = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    "labels": { identity::MANAGED_BY: MANAGER, identity::CLUSTER: key.cluster },
                    "annotations": annotations,
                },
            });
            let _permit = target.limiter.acquire().await;
            api.patch(
                namespace,
                &PatchParams::apply(MANAGER),
                &Patch::Apply(&object),
            )
            .await
            .map_err(|e| {
                SyncError::api(
                    format!("creating namespace {namespace} on {}", target.name()),
                    e,
                )
            })?;
            self.metrics.inc(
                names::DOWNSTREAM_WRITES,
                &[("target", target.name()), ("verb", "create-namespace")],
            );
        }
        target.remember_namespace(namespace, true);
        Ok(())
    }

    /// Runs one target's part of a reconcile within [`ResourceSync::target_timeout`].
    async fn bounded<T>(
        &self,
        target: &TargetCluster,
        work: impl std::future::Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        match tokio::time::timeout(self.target_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(SyncError::Timeout {
                target: target.name().to_string(),
                after: self.target_timeout,
            }),
        }
    }

    async fn delete_copy_bounded(
        &self,
        at: &CopyRef,
        copy: &DynamicObject,
    ) -> Result<(), SyncError> {
        match self.targets.iter().find(|t| t.name() == at.target) {
            Some(target) => self.bounded(target, self.delete_copy(at, copy)).await,
            None => Ok(()),
        }
    }

    /// Deletes one copy, only if it is still the object Ferry saw (UID precondition).
    async fn delete_copy(&self, at: &CopyRef, copy: &DynamicObject) -> Result<(), SyncError> {
        let Some(target) = self.targets.iter().find(|t| t.name() == at.target) else {
            // A target removed from the configuration: its copies are out of reach.
            return Ok(());
        };
        let params = DeleteParams {
            preconditions: copy.metadata.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        let _permit = target.limiter.acquire().await;
        match self
            .downstream_api(target, &at.namespace)
            .delete(&at.name, &params)
            .await
        {
            Ok(_) => {
                self.metrics.inc(
                    names::DOWNSTREAM_WRITES,
                    &[("target", &at.target), ("verb", "delete")],
                );
                tracing::info!(resource = %self.name, target = %at.target, namespace = %at.namespace, name = %at.name, "deleted copy");
                Ok(())
            }
            // Gone already, or replaced by a newer object that the next reconcile judges.
            Err(err) if is_not_found(&err) || is_conflict(&err) => Ok(()),
            Err(err) => Err(SyncError::api(
                format!(
                    "deleting {} {}/{} on {}",
                    self.api.kind, at.namespace, at.name, at.target
                ),
                err,
            )),
        }
    }

    /// Copies whose upstream object is gone (DESIGN I2). Only decided when every shard's
    /// list is complete; otherwise "absent" may just mean "not seen yet".
    async fn remove_orphans(&self, key: &UpstreamKey) -> Result<(), SyncError> {
        if !self.upstream.complete() {
            return Ok(());
        }
        for (at, copy) in self.downstream.copies_of(key) {
            self.delete_copy_bounded(&at, &copy).await?;
        }
        Ok(())
    }

    /// Upstream deletion: copies first, then the finalizer (DESIGN I3).
    async fn finalize(
        &self,
        key: &UpstreamKey,
        object: &DynamicObject,
        api: &Api<DynamicObject>,
    ) -> Result<Next, SyncError> {
        let Some(index) = object
            .metadata
            .finalizers
            .iter()
            .flatten()
            .position(|f| f == FINALIZER)
        else {
            return Ok(Next::Done);
        };
        let copies = self.downstream.copies_of(key);
        let mut errors = Vec::new();
        for (at, copy) in &copies {
            if let Err(err) = self.delete_copy_bounded(at, copy).await {
                errors.push(err);
            }
        }
        if !errors.is_empty() {
            return Err(if errors.len() == 1 {
                errors.remove(0)
            } else {
                SyncError::Targets(errors)
            });
        }
        if !copies.is_empty() {
            // Deleted; the watches will confirm. Check back before letting the object go.
            return Ok(Next::CheckAfter(Duration::from_millis(500)));
        }
        // "No copies" is only trustworthy where the target's list has completed.
        if let Some(target) = self
            .targets
            .iter()
            .find(|t| !self.downstream.synced(t.name()))
        {
            return Err(SyncError::NotReady(format!(
                "waiting for the first list of {} on {} before releasing the finalizer",
                self.name,
                target.name()
            )));
        }
        let patch = json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": object.metadata.resource_version },
            { "op": "remove", "path": format!("/metadata/finalizers/{index}") },
        ]);
        api.patch(&key.name, &PatchParams::default(), &json_patch(patch)?)
            .await
            .map_err(|e| SyncError::api(format!("removing finalizer from {key}"), e))?;
        self.metrics
            .inc(names::UPSTREAM_WRITES, &[("write", "finalizer")]);
        tracing::info!(resource = %self.name, object = %key, "copies deleted; finalizer removed");
        Ok(Next::Done)
    }

    async fn add_finalizer(
        &self,
        key: &UpstreamKey,
        object: &DynamicObject,
        api: &Api<DynamicObject>,
    ) -> Result<(), SyncError> {
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
        api.patch(&key.name, &PatchParams::default(), &json_patch(patch)?)
            .await
            .map_err(|e| SyncError::api(format!("adding finalizer to {key}"), e))?;
        self.metrics
            .inc(names::UPSTREAM_WRITES, &[("write", "finalizer")]);
        Ok(())
    }

    async fn write_status(
        &self,
        key: &UpstreamKey,
        object: &DynamicObject,
        value: &Value,
        context: &ObjectContext,
        copies: Vec<Downstream>,
        api: &Api<DynamicObject>,
    ) -> Result<(), SyncError> {
        let status = {
            let (plugins, context, value) = (self.plugins.clone(), context.clone(), value.clone());
            run_plugin(move || plugins.aggregate_status(&context, &value, &copies)).await?
        };
        let Some(status) = status else {
            return Ok(());
        };
        if object.data.get("status") == Some(&status) {
            return Ok(());
        }
        let patch = json!([{ "op": "add", "path": "/status", "value": status }]);
        api.patch_status(&key.name, &PatchParams::default(), &json_patch(patch)?)
            .await
            .map_err(|e| SyncError::api(format!("writing status of {key}"), e))?;
        self.metrics
            .inc(names::UPSTREAM_WRITES, &[("write", "status")]);
        Ok(())
    }
}

/// A JSON patch from its operations (the `test` operations make writes to kcp conditional on
/// the resourceVersion Ferry decided on).
fn json_patch(operations: Value) -> Result<Patch<()>, SyncError> {
    serde_json::from_value(operations)
        .map(Patch::Json)
        .map_err(|e| SyncError::Internal(format!("building a JSON patch: {e}")))
}

/// Runs a plugin call on the blocking pool: calls are CPU-bound and bounded by the plugin's
/// deadline, and must not stall the async workers.
pub(crate) async fn run_plugin<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, HookError> + Send + 'static,
) -> Result<T, SyncError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(SyncError::Plugin),
        Err(join) => Err(SyncError::Internal(format!(
            "plugin call did not complete: {join}"
        ))),
    }
}

//! `ferry uninstall`: takes Ferry out of kcp and, on request, off the targets.
//!
//! 1. Ferry's finalizer comes off every upstream object of every configured resource in every
//!    bound workspace, through the virtual workspace, each patch guarded by a JSON-patch test
//!    of `resourceVersion` and of the finalizer's position (a changed object is read again).
//!    Afterwards a tenant's delete completes at once.
//! 2. With `delete_copies`: every copy this installation made (label selector
//!    [`identity::managed_selector`]) is deleted on every target, with a UID precondition,
//!    then every namespace Ferry created there ([`is_ferry_namespace`]) for a workspace bound
//!    to the export (or that a copy came from) that holds no object of the configured
//!    resources any more but this installation's copies.
//!
//! Ferry must be stopped first: a running Ferry adds its finalizer back on its next
//! reconcile and recreates the copies (see docs/operations.md). Nothing here stops it.
//!
//! With `dry_run` nothing is written; the report says what would have been done.

use std::collections::{BTreeMap, BTreeSet};

use ferry_core::identity::{self, FINALIZER, MANAGER};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{SyncError, is_not_found};
use crate::reconcile::ResourceSync;
use crate::{Connected, SyncSettings, kcp};

/// How often a finalizer removal is tried again when the object changed under it.
const PATCH_ATTEMPTS: usize = 3;

/// What `uninstall` does besides removing finalizers.
#[derive(Clone, Copy, Debug, Default)]
pub struct UninstallOptions {
    /// Also delete every copy on every target, and the namespaces Ferry created there.
    pub delete_copies: bool,
    /// Write nothing; report what would be done.
    pub dry_run: bool,
}

/// What was done (or would be) for one workspace (logical cluster).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkspaceReport {
    /// Upstream objects whose finalizer was removed.
    pub finalizers_removed: usize,
    /// Copies deleted on the targets.
    pub copies_deleted: usize,
    /// Downstream namespaces deleted.
    pub namespaces_deleted: usize,
}

/// The outcome of an uninstall.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UninstallReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Per logical cluster.
    pub workspaces: BTreeMap<String, WorkspaceReport>,
    /// Ferry namespaces left in place, with why (`target/namespace: reason`).
    pub namespaces_kept: Vec<String>,
    /// Steps that failed, one line each; the rest was done.
    pub failures: Vec<String>,
}

impl UninstallReport {
    /// Records a failed request (what Ferry was doing, and the server's answer); the rest
    /// goes on.
    fn api_failed(&mut self, action: String, err: kube::Error) {
        self.failures.push(SyncError::api(action, err).to_string());
    }

    fn workspace(&mut self, cluster: &str) -> &mut WorkspaceReport {
        self.workspaces.entry(cluster.to_string()).or_default()
    }

    /// The totals over every workspace.
    pub fn totals(&self) -> WorkspaceReport {
        self.workspaces
            .values()
            .fold(WorkspaceReport::default(), |mut sum, w| {
                sum.finalizers_removed += w.finalizers_removed;
                sum.copies_deleted += w.copies_deleted;
                sum.namespaces_deleted += w.namespaces_deleted;
                sum
            })
    }

    /// The closing line operators and tests read.
    pub fn summary_line(&self) -> String {
        let t = self.totals();
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        format!(
            "{} workspaces: {verb} {} finalizers, {} copies, {} namespaces; {} namespaces kept, \
             {} failures",
            self.workspaces.len(),
            t.finalizers_removed,
            t.copies_deleted,
            t.namespaces_deleted,
            self.namespaces_kept.len(),
            self.failures.len()
        )
    }
}

/// The JSON patch that removes Ferry's finalizer from `object`, conditional on the object
/// being exactly the version read (`None` when it has no such finalizer).
pub fn finalizer_removal(object: &DynamicObject) -> Option<Value> {
    let index = object
        .metadata
        .finalizers
        .iter()
        .flatten()
        .position(|f| f == FINALIZER)?;
    Some(json!([
        { "op": "test", "path": "/metadata/resourceVersion", "value": object.metadata.resource_version },
        { "op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER },
        { "op": "remove", "path": format!("/metadata/finalizers/{index}") },
    ]))
}

/// Whether a downstream namespace is one Ferry created: it carries Ferry's managed-by label
/// and the logical cluster it stands for. Ferry never deletes any other namespace.
pub fn is_ferry_namespace(namespace: &Namespace) -> bool {
    let labels = namespace.metadata.labels.as_ref();
    labels
        .and_then(|l| l.get(identity::MANAGED_BY))
        .map(String::as_str)
        == Some(MANAGER)
        && labels.is_some_and(|l| l.contains_key(identity::CLUSTER))
}

/// Runs the uninstall. Connection and configuration problems are errors; a failing step
/// (one object, one target) is recorded in [`UninstallReport::failures`] and the rest goes on.
pub async fn uninstall(
    settings: SyncSettings,
    options: UninstallOptions,
) -> Result<UninstallReport, SyncError> {
    let connected = Connected::connect(settings, crate::Unexported::Fail).await?;
    let mut report = UninstallReport {
        dry_run: options.dry_run,
        ..UninstallReport::default()
    };
    let mut clusters = remove_finalizers(&connected, options, &mut report).await?;
    if options.delete_copies {
        for target in connected.targets.iter() {
            delete_copies(&connected, target, options, &mut clusters, &mut report).await;
        }
    }
    Ok(report)
}

/// Removes the finalizers; returns the logical clusters bound to the export (whose
/// namespaces on the targets are this installation's).
async fn remove_finalizers(
    connected: &Connected,
    options: UninstallOptions,
    report: &mut UninstallReport,
) -> Result<BTreeSet<String>, SyncError> {
    let mut clusters = BTreeSet::new();
    for url in connected.shard_urls().await? {
        let client = connected.kcp.for_url(&format!("{url}/clusters/*"))?;
        let bindings: Api<DynamicObject> = Api::all_with(client.clone(), &kcp::api_bindings());
        match bindings.list(&ListParams::default()).await {
            Ok(list) => clusters.extend(
                list.items
                    .iter()
                    .filter(|b| {
                        b.data
                            .pointer("/spec/reference/export/name")
                            .and_then(Value::as_str)
                            == Some(connected.export.as_str())
                    })
                    .filter_map(|b| crate::store::upstream_key(b).map(|k| k.cluster)),
            ),
            Err(err) => report.api_failed(format!("listing APIBindings through {url}"), err),
        }
        for sync in &connected.resources {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &sync.api);
            let list = match api.list(&ListParams::default()).await {
                Ok(list) => list,
                Err(err) => {
                    report.api_failed(format!("listing {} through {url}", sync.name), err);
                    continue;
                }
            };
            for object in list.items {
                let Some(cluster) = crate::store::upstream_key(&object).map(|k| k.cluster) else {
                    continue;
                };
                clusters.insert(cluster.clone());
                if finalizer_removal(&object).is_none() {
                    continue;
                }
                report.workspace(&cluster);
                if options.dry_run {
                    report.workspace(&cluster).finalizers_removed += 1;
                    continue;
                }
                match remove_finalizer(connected, sync, &url, &cluster, object).await {
                    Ok(true) => report.workspace(&cluster).finalizers_removed += 1,
                    Ok(false) => {}
                    Err(err) => report.failures.push(err.to_string()),
                }
            }
        }
    }
    Ok(clusters)
}

/// Removes the finalizer from one object; reads it again when it changed since the list.
/// Returns whether a finalizer was removed (`false`: gone, or no finalizer any more).
async fn remove_finalizer(
    connected: &Connected,
    sync: &ResourceSync,
    shard: &str,
    cluster: &str,
    mut object: DynamicObject,
) -> Result<bool, SyncError> {
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    let client = connected.kcp.scoped(shard, cluster)?;
    let api: Api<DynamicObject> = if namespace.is_empty() {
        Api::all_with(client, &sync.api)
    } else {
        Api::namespaced_with(client, &namespace, &sync.api)
    };
    let what = || {
        format!(
            "removing Ferry's finalizer from {} {cluster}|{namespace}/{name}",
            sync.name
        )
    };
    for _ in 0..PATCH_ATTEMPTS {
        let Some(patch) = finalizer_removal(&object) else {
            return Ok(false);
        };
        let patch: Patch<()> = serde_json::from_value(patch)
            .map(Patch::Json)
            .map_err(|e| SyncError::Internal(format!("building a JSON patch: {e}")))?;
        match api.patch(&name, &PatchParams::default(), &patch).await {
            Ok(_) => return Ok(true),
            Err(err) if is_not_found(&err) => return Ok(false),
            // A failed `test` (409 or 422): the object changed since it was read.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 422 => {
                match api.get_opt(&name).await {
                    Ok(Some(fresh)) => object = fresh,
                    Ok(None) => return Ok(false),
                    Err(err) => return Err(SyncError::api(what(), err)),
                }
            }
            Err(err) => return Err(SyncError::api(what(), err)),
        }
    }
    Err(SyncError::NotReady(format!(
        "{}: the object kept changing",
        what()
    )))
}

/// Deletes every copy of this installation on `target`, then the Ferry namespaces of
/// `clusters` (bound workspaces, and those the copies came from) that hold nothing else of the
/// configured resources. Namespaces of other workspaces (another installation's) stay.
async fn delete_copies(
    connected: &Connected,
    target: &crate::target::TargetCluster,
    options: UninstallOptions,
    clusters: &mut BTreeSet<String>,
    report: &mut UninstallReport,
) {
    let owner = connected
        .resources
        .first()
        .map(|s| s.owner.clone())
        .unwrap_or_default();
    let selector = identity::managed_selector(&owner);
    for sync in &connected.resources {
        let api: Api<DynamicObject> = Api::all_with(target.client.clone(), &sync.api);
        let copies = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list.items,
            Err(err) => {
                report.api_failed(
                    format!("listing {} copies on {}", sync.name, target.name()),
                    err,
                );
                continue;
            }
        };
        for copy in copies {
            let cluster = copy
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(identity::CLUSTER))
                .cloned()
                .unwrap_or_default();
            clusters.insert(cluster.clone());
            if copy.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if !options.dry_run
                && let Err(err) = delete_by_uid(target, sync, &copy).await
            {
                report.failures.push(err.to_string());
                continue;
            }
            report.workspace(&cluster).copies_deleted += 1;
        }
    }
    let namespaces: Api<Namespace> = Api::all(target.client.clone());
    let params = ListParams::default().labels(&format!("{}={MANAGER}", identity::MANAGED_BY));
    let list = match namespaces.list(&params).await {
        Ok(list) => list.items,
        Err(err) => {
            report.api_failed(
                format!("listing Ferry's namespaces on {}", target.name()),
                err,
            );
            return;
        }
    };
    for namespace in list.into_iter().filter(is_ferry_namespace) {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let cluster = namespace
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(identity::CLUSTER))
            .cloned()
            .unwrap_or_default();
        if namespace.metadata.deletion_timestamp.is_some() || !clusters.contains(&cluster) {
            continue;
        }
        match others_in(connected, target, &name, &owner).await {
            Ok(Some(other)) => {
                report
                    .namespaces_kept
                    .push(format!("{}/{name}: still holds {other}", target.name()));
                continue;
            }
            Ok(None) => {}
            Err(err) => {
                report.failures.push(err.to_string());
                continue;
            }
        }
        if !options.dry_run {
            let params = DeleteParams {
                preconditions: namespace.metadata.uid.clone().map(|uid| Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            match namespaces.delete(&name, &params).await {
                Ok(_) => {}
                Err(err) if is_not_found(&err) => continue,
                Err(err) => {
                    report.api_failed(
                        format!("deleting namespace {name} on {}", target.name()),
                        err,
                    );
                    continue;
                }
            }
        }
        report.workspace(&cluster).namespaces_deleted += 1;
    }
}

/// One object of a configured resource in `namespace` that is not a copy of this
/// installation (which the uninstall deletes), if there is one: `kind name`.
async fn others_in(
    connected: &Connected,
    target: &crate::target::TargetCluster,
    namespace: &str,
    owner: &str,
) -> Result<Option<String>, SyncError> {
    for sync in &connected.resources {
        let api: Api<DynamicObject> =
            Api::namespaced_with(target.client.clone(), namespace, &sync.api);
        let list = api.list(&ListParams::default()).await.map_err(|e| {
            SyncError::api(
                format!("listing {} in {namespace} on {}", sync.name, target.name()),
                e,
            )
        })?;
        let other = list.items.into_iter().find(|o| {
            let copy_owner = o
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(identity::OWNER))
                .map(String::as_str);
            copy_owner != Some(owner)
        });
        if let Some(other) = other {
            return Ok(Some(format!(
                "{} {}",
                sync.api.kind,
                other.metadata.name.unwrap_or_default()
            )));
        }
    }
    Ok(None)
}

async fn delete_by_uid(
    target: &crate::target::TargetCluster,
    sync: &ResourceSync,
    copy: &DynamicObject,
) -> Result<(), SyncError> {
    let namespace = copy.metadata.namespace.clone().unwrap_or_default();
    let name = copy.metadata.name.clone().unwrap_or_default();
    let api: Api<DynamicObject> =
        Api::namespaced_with(target.client.clone(), &namespace, &sync.api);
    let params = DeleteParams {
        preconditions: copy.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(err) if is_not_found(&err) => Ok(()),
        Err(err) => Err(SyncError::api(
            format!(
                "deleting {} {namespace}/{name} on {}",
                sync.api.kind,
                target.name()
            ),
            err,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(finalizers: &[&str]) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "default", "resourceVersion": "42",
                "finalizers": finalizers,
            },
        }))
        .expect("object")
    }

    #[test]
    fn the_finalizer_patch_tests_the_version_and_the_position_it_removes() {
        let patch = finalizer_removal(&object(&["other.io/keep", FINALIZER])).expect("patch");
        assert_eq!(
            patch,
            json!([
                { "op": "test", "path": "/metadata/resourceVersion", "value": "42" },
                { "op": "test", "path": "/metadata/finalizers/1", "value": FINALIZER },
                { "op": "remove", "path": "/metadata/finalizers/1" },
            ])
        );
        assert_eq!(finalizer_removal(&object(&["other.io/keep"])), None);
        assert_eq!(finalizer_removal(&object(&[])), None);
    }

    fn namespace(labels: &[(&str, &str)]) -> Namespace {
        serde_json::from_value(json!({
            "metadata": {
                "name": "ferry-x",
                "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            },
        }))
        .expect("namespace")
    }

    #[test]
    fn only_a_namespace_with_both_of_ferrys_labels_is_ferrys() {
        assert!(is_ferry_namespace(&namespace(&[
            (identity::MANAGED_BY, MANAGER),
            (identity::CLUSTER, "abc"),
        ])));
        assert!(!is_ferry_namespace(&namespace(&[(
            identity::MANAGED_BY,
            MANAGER
        )])));
        assert!(!is_ferry_namespace(&namespace(&[
            (identity::MANAGED_BY, "helm"),
            (identity::CLUSTER, "abc"),
        ])));
        assert!(!is_ferry_namespace(&namespace(&[])));
    }

    #[test]
    fn the_summary_counts_every_workspace_and_says_when_nothing_was_written() {
        let mut report = UninstallReport {
            dry_run: true,
            ..UninstallReport::default()
        };
        report.workspace("a").finalizers_removed = 2;
        report.workspace("b").finalizers_removed = 1;
        report.workspace("b").copies_deleted = 4;
        assert_eq!(
            report.summary_line(),
            "2 workspaces: would remove 3 finalizers, 4 copies, 0 namespaces; 0 namespaces \
             kept, 0 failures"
        );
        report.dry_run = false;
        assert!(report.summary_line().contains(": removed 3 finalizers"));
    }
}

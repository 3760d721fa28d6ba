//! What Ferry knows about each tenant workspace beyond its logical cluster name: its path and
//! the labels and annotations the operator opted into, read from the workspace's
//! `LogicalCluster` (`core.kcp.io`, name `cluster`) through the export's permission claim.
//!
//! One wildcard watch of `logicalclusters` per shard feeds this store (only workspaces whose
//! APIBinding accepted the claim are visible there). The planner hands what it holds to
//! plugins ([`ferry_core::ObjectContext`]); a workspace the store does not know simply has no
//! path. Until a shard's list has completed, an object of that shard is not planned: a
//! placement by path must not see "no path" for a workspace whose path is merely not read
//! yet (it would move copies away and back).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use ferry_core::identity::UpstreamKey;
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::Serialize;

use crate::health::WatchGuard;
use crate::store::KCP_CLUSTER_ANNOTATION;
use crate::{Resource, enqueue_all, error, explain, kcp};

/// Annotation kcp puts on a `LogicalCluster`: the workspace's path, e.g. `root:org-eu:team-a`.
pub const KCP_PATH_ANNOTATION: &str = "kcp.io/path";

/// The `logicalclusters` resource of `core.kcp.io`.
pub fn logical_clusters() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("core.kcp.io", "v1alpha1", "LogicalCluster"),
        "logicalclusters",
    )
}

/// What plugins may see of one workspace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Workspace {
    /// The workspace path (`kcp.io/path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The `LogicalCluster`'s labels whose keys are opted in.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The `LogicalCluster`'s annotations whose keys are opted in.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Which label and annotation keys of a `LogicalCluster` reach plugins (configuration
/// `kcp.workspaceLabels` / `kcp.workspaceAnnotations`). Everything else stays out: a
/// workspace's metadata may hold what its owner never meant a provider's plugin to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptedIn {
    /// Label keys.
    pub labels: BTreeSet<String>,
    /// Annotation keys.
    pub annotations: BTreeSet<String>,
}

impl OptedIn {
    /// The logical cluster name and what plugins may see of a `LogicalCluster` object; `None`
    /// without the `kcp.io/cluster` annotation (not something kcp serves).
    pub fn read(&self, object: &DynamicObject) -> Option<(String, Workspace)> {
        let annotations = object.metadata.annotations.as_ref()?;
        let cluster = annotations.get(KCP_CLUSTER_ANNOTATION)?.clone();
        let pick = |map: Option<&BTreeMap<String, String>>, keys: &BTreeSet<String>| {
            map.into_iter()
                .flatten()
                .filter(|(k, _)| keys.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let workspace = Workspace {
            path: annotations.get(KCP_PATH_ANNOTATION).cloned(),
            labels: pick(object.metadata.labels.as_ref(), &self.labels),
            annotations: pick(Some(annotations), &self.annotations),
        };
        Some((cluster, workspace))
    }
}

/// Whether the workspace context of an object on a shard can be looked up yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Known (the workspace accepted the claim).
    Known(Arc<Workspace>),
    /// Not known and not going to be: the shard's list is complete and the workspace is not
    /// in it (its binding did not accept the claim), or the export does not claim
    /// `logicalclusters` at all, or they cannot be read on this shard.
    Absent,
    /// The shard's list has not completed yet: wait before planning.
    Pending,
}

#[derive(Default)]
struct Shard {
    /// Whether the shard's list has completed, or reading it was given up.
    listed: bool,
    /// Workspaces seen on the shard, by logical cluster name.
    workspaces: HashMap<String, Arc<Workspace>>,
}

/// Workspace context per shard, fed by each shard's `logicalclusters` watch.
pub struct Workspaces {
    /// Whether the export claims `logicalclusters` (otherwise every lookup is
    /// [`Lookup::Absent`] and no watch runs).
    claimed: bool,
    opted_in: OptedIn,
    inner: RwLock<HashMap<Arc<str>, Shard>>,
}

impl Workspaces {
    /// A store for an export that claims `logicalclusters` (`claimed`) or not.
    pub fn new(claimed: bool, opted_in: OptedIn) -> Self {
        Self {
            claimed,
            opted_in,
            inner: RwLock::default(),
        }
    }

    /// Whether the export claims `logicalclusters`, so there is something to watch.
    pub fn claimed(&self) -> bool {
        self.claimed
    }

    /// The opted-in keys.
    pub fn opted_in(&self) -> &OptedIn {
        &self.opted_in
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Shard>> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Shard>> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A shard joined the endpoint slice: its objects wait for its list.
    pub fn add_shard(&self, shard: &Arc<str>) {
        if self.claimed {
            self.write().entry(shard.clone()).or_default();
        }
    }

    /// A shard left the endpoint slice.
    pub fn remove_shard(&self, shard: &str) {
        self.write().remove(shard);
    }

    /// The shard's list completed with these `LogicalCluster`s. Returns the logical clusters
    /// whose context changed (appeared, went or differs).
    pub fn replace_shard(&self, shard: &Arc<str>, objects: &[DynamicObject]) -> Vec<String> {
        let fresh: HashMap<String, Arc<Workspace>> = objects
            .iter()
            .filter_map(|o| self.opted_in.read(o))
            .map(|(cluster, workspace)| (cluster, Arc::new(workspace)))
            .collect();
        let mut inner = self.write();
        let entry = inner.entry(shard.clone()).or_default();
        let old = std::mem::replace(&mut entry.workspaces, fresh);
        entry.listed = true;
        let mut changed: BTreeSet<String> = old
            .iter()
            .filter(|(cluster, ws)| entry.workspaces.get(*cluster) != Some(*ws))
            .map(|(cluster, _)| cluster.clone())
            .collect();
        changed.extend(
            entry
                .workspaces
                .iter()
                .filter(|(cluster, ws)| old.get(*cluster) != Some(*ws))
                .map(|(cluster, _)| cluster.clone()),
        );
        changed.into_iter().collect()
    }

    /// A `LogicalCluster` was added or changed. Returns its logical cluster if what plugins
    /// see of it changed.
    pub fn apply(&self, shard: &Arc<str>, object: &DynamicObject) -> Option<String> {
        let (cluster, workspace) = self.opted_in.read(object)?;
        let mut inner = self.write();
        let entry = inner.entry(shard.clone()).or_default();
        let workspace = Arc::new(workspace);
        match entry.workspaces.insert(cluster.clone(), workspace.clone()) {
            Some(old) if old == workspace => None,
            _ => Some(cluster),
        }
    }

    /// A `LogicalCluster` went out of sight (the workspace was deleted, or its binding no
    /// longer accepts the claim). Returns its logical cluster if it was known.
    pub fn delete(&self, shard: &Arc<str>, object: &DynamicObject) -> Option<String> {
        let (cluster, _) = self.opted_in.read(object)?;
        let mut inner = self.write();
        inner
            .get_mut(shard)?
            .workspaces
            .remove(&cluster)
            .map(|_| cluster)
    }

    /// Reading the shard's `LogicalCluster`s is given up (not allowed, not served): its
    /// objects are planned without workspace context rather than not at all.
    pub fn give_up(&self, shard: &Arc<str>) {
        let mut inner = self.write();
        let entry = inner.entry(shard.clone()).or_default();
        entry.listed = true;
        entry.workspaces.clear();
    }

    /// The context of `cluster`'s workspace for an object seen through `shard`.
    pub fn lookup(&self, shard: &str, cluster: &str) -> Lookup {
        if !self.claimed {
            return Lookup::Absent;
        }
        let inner = self.read();
        match inner.get(shard) {
            Some(s) => match s.workspaces.get(cluster) {
                Some(workspace) => Lookup::Known(workspace.clone()),
                None if s.listed => Lookup::Absent,
                None => Lookup::Pending,
            },
            None => Lookup::Pending,
        }
    }

    /// The context of `cluster`'s workspace as far as known on any shard (for logs and
    /// audits, where waiting is not an option).
    pub fn find(&self, cluster: &str) -> Option<Arc<Workspace>> {
        self.read()
            .values()
            .find_map(|s| s.workspaces.get(cluster).cloned())
    }
}

/// Whether `export` claims `logicalclusters`, so workspace paths (and opted-in labels and
/// annotations) can be read; says once, at start-up, when they cannot (not an error: objects
/// sync without them).
pub(crate) fn claims_logical_clusters(export: &DynamicObject, name: &str) -> bool {
    let claimed = kcp::claimed(export).contains(&("core.kcp.io".into(), "logicalclusters".into()));
    if !claimed {
        tracing::info!(
            export = %name,
            "the APIExport does not claim logicalclusters (core.kcp.io): workspace paths, labels \
             and annotations are unavailable to plugins"
        );
    }
    claimed
}

/// Follows the workspaces' `LogicalCluster`s on one shard (those whose binding accepted the
/// export's claim) into [`Workspaces`]. A workspace whose path, or opted-in label or
/// annotation, appears or changes has its objects planned again (a placement by path may
/// change). Not allowed or not served: given up on with one error, so the shard's objects
/// sync without workspace context rather than wait forever; retried meanwhile.
pub(crate) async fn watch(
    client: kube::Client,
    shard: Arc<str>,
    resources: Vec<Resource>,
    workspaces: Arc<Workspaces>,
    guard: WatchGuard,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &logical_clusters());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing = Vec::new();
    let mut given_up = false;
    let enqueue = |clusters: &[String]| {
        if clusters.is_empty() {
            return;
        }
        for (sync, queue) in &resources {
            let keys: BTreeSet<UpstreamKey> = sync
                .upstream
                .keys()
                .into_iter()
                .chain(sync.downstream.origins())
                .filter(|k| clusters.contains(&k.cluster))
                .collect();
            for key in keys {
                queue.add(key);
            }
        }
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(object)) => listing.push(object),
            Ok(Event::InitDone) => {
                let changed = workspaces.replace_shard(&shard, &std::mem::take(&mut listing));
                tracing::info!(%shard, known = changed.len(), "listed the workspaces' LogicalClusters");
                guard.synced();
                given_up = false;
                // Objects that waited for this list (their workspaces may not be in it).
                for (sync, queue) in &resources {
                    enqueue_all(sync, queue);
                }
            }
            Ok(Event::Apply(object)) => {
                if let Some(cluster) = workspaces.apply(&shard, &object) {
                    let path = workspaces.find(&cluster).and_then(|w| w.path.clone());
                    tracing::info!(%shard, logical_cluster = %cluster, path = path.as_deref().map(tracing::field::display), "workspace context changed; planning its objects again");
                    enqueue(&[cluster]);
                }
            }
            Ok(Event::Delete(object)) => {
                if let Some(cluster) = workspaces.delete(&shard, &object) {
                    tracing::info!(%shard, logical_cluster = %cluster, "workspace context out of sight (workspace deleted or claim no longer accepted)");
                    enqueue(&[cluster]);
                }
            }
            Err(err) => {
                let refused = match &err {
                    watcher::Error::InitialListFailed(e)
                    | watcher::Error::WatchStartFailed(e)
                    | watcher::Error::WatchFailed(e) => {
                        error::is_not_found(e) || error::is_forbidden(e)
                    }
                    watcher::Error::WatchError(status) => matches!(status.code, 403 | 404),
                    watcher::Error::NoResourceVersion => false,
                };
                if refused && !std::mem::replace(&mut given_up, true) {
                    tracing::error!(
                        %shard, error = %explain::chain(&err),
                        "cannot read the workspaces' LogicalClusters (does Ferry's identity have \
                         apiexports/content, and the claim the verbs get, list and watch?): \
                         objects on this shard sync without workspace paths; retrying"
                    );
                    workspaces.give_up(&shard);
                    guard.synced();
                    for (sync, queue) in &resources {
                        enqueue_all(sync, queue);
                    }
                } else {
                    tracing::warn!(%shard, error = %explain::chain(&err), "watch of LogicalClusters failed; retrying");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn logical_cluster(cluster: &str, path: &str, labels: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "core.kcp.io/v1alpha1", "kind": "LogicalCluster",
            "metadata": {"name": "cluster", "labels": labels, "annotations": {
                "kcp.io/cluster": cluster, "kcp.io/path": path,
                "experimental.tenancy.kcp.io/owner": "{\"username\":\"alice\"}",
                "region.example.com/zone": "eu-1",
            }},
        }))
        .expect("logical cluster")
    }

    fn opted_in() -> OptedIn {
        OptedIn {
            labels: BTreeSet::from(["team".to_string()]),
            annotations: BTreeSet::from(["region.example.com/zone".to_string()]),
        }
    }

    #[test]
    fn only_the_path_and_opted_in_keys_reach_plugins() {
        let object = logical_cluster(
            "lc-a",
            "root:org-eu:team-a",
            json!({"team": "alpha", "cost-center": "42", "tenancy.kcp.io/phase": "Ready"}),
        );
        let (cluster, workspace) = opted_in().read(&object).expect("read");
        assert_eq!(cluster, "lc-a");
        assert_eq!(workspace.path.as_deref(), Some("root:org-eu:team-a"));
        assert_eq!(
            workspace.labels,
            BTreeMap::from([("team".to_string(), "alpha".to_string())])
        );
        assert_eq!(
            workspace.annotations,
            BTreeMap::from([("region.example.com/zone".to_string(), "eu-1".to_string())])
        );
        let (_, nothing_opted_in) = OptedIn::default().read(&object).expect("read");
        assert!(nothing_opted_in.labels.is_empty() && nothing_opted_in.annotations.is_empty());
    }

    #[test]
    fn an_object_waits_for_its_shards_list_and_a_workspace_not_in_it_has_no_context() {
        let store = Workspaces::new(true, opted_in());
        let shard: Arc<str> = Arc::from("https://s1");
        store.add_shard(&shard);
        assert_eq!(store.lookup(&shard, "lc-a"), Lookup::Pending);
        let changed = store.replace_shard(
            &shard,
            &[logical_cluster("lc-a", "root:a", json!({"team": "alpha"}))],
        );
        assert_eq!(changed, vec!["lc-a".to_string()]);
        assert!(
            matches!(store.lookup(&shard, "lc-a"), Lookup::Known(w) if w.path.as_deref() == Some("root:a"))
        );
        // A tenant whose binding did not accept the claim.
        assert_eq!(store.lookup(&shard, "lc-b"), Lookup::Absent);
        // Another shard is not listed yet.
        assert_eq!(store.lookup("https://s2", "lc-a"), Lookup::Pending);
    }

    #[test]
    fn only_a_change_plugins_can_see_counts_as_a_change() {
        let store = Workspaces::new(true, opted_in());
        let shard: Arc<str> = Arc::from("https://s1");
        store.replace_shard(&shard, &[logical_cluster("lc-a", "root:a", json!({}))]);
        // A label nobody opted into: nothing to re-plan.
        let unseen = logical_cluster("lc-a", "root:a", json!({"cost-center": "7"}));
        assert_eq!(store.apply(&shard, &unseen), None);
        let seen = logical_cluster("lc-a", "root:a", json!({"team": "beta"}));
        assert_eq!(store.apply(&shard, &seen), Some("lc-a".to_string()));
        assert_eq!(store.delete(&shard, &seen), Some("lc-a".to_string()));
        assert_eq!(store.lookup(&shard, "lc-a"), Lookup::Absent);
        // A relist that drops a workspace reports it too.
        store.apply(&shard, &seen);
        assert_eq!(store.replace_shard(&shard, &[]), vec!["lc-a".to_string()]);
    }

    #[test]
    fn without_the_claim_or_after_giving_up_nothing_waits() {
        let unclaimed = Workspaces::new(false, OptedIn::default());
        assert_eq!(unclaimed.lookup("https://s1", "lc-a"), Lookup::Absent);
        let store = Workspaces::new(true, OptedIn::default());
        let shard: Arc<str> = Arc::from("https://s1");
        store.add_shard(&shard);
        store.give_up(&shard);
        assert_eq!(store.lookup(&shard, "lc-a"), Lookup::Absent);
    }

    #[test]
    fn workspace_paths_are_read_only_when_the_export_claims_logicalclusters() {
        let export = |claims: serde_json::Value| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "apis.kcp.io/v1alpha2", "kind": "APIExport",
                "metadata": {"name": "kubernetes"},
                "spec": {"permissionClaims": claims},
            }))
            .expect("export")
        };
        let events = serde_json::json!({"group": "", "resource": "events"});
        let lcs = serde_json::json!({"group": "core.kcp.io", "resource": "logicalclusters"});
        assert!(!claims_logical_clusters(
            &export(serde_json::json!([events])),
            "kubernetes"
        ));
        assert!(claims_logical_clusters(
            &export(serde_json::json!([events, lcs])),
            "kubernetes"
        ));
        // The same resource name in another group is not the workspace's LogicalCluster.
        let other = serde_json::json!({"group": "example.com", "resource": "logicalclusters"});
        assert!(!claims_logical_clusters(
            &export(serde_json::json!([other])),
            "kubernetes"
        ));
    }
}

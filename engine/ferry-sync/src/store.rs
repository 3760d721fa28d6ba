//! In-memory caches of what the watches saw, keyed the way Ferry needs.
//!
//! kube-runtime's reflector keys objects by (namespace, name), which a wildcard watch across
//! kcp workspaces breaks: two workspaces may both have `demo/web`. These stores key upstream
//! objects by [`UpstreamKey`] (with the logical cluster) and index downstream copies by the
//! upstream object they record as their origin.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ferry_core::identity::{Origin, UpstreamKey};
use kube::api::DynamicObject;

use crate::compact::{self, CompactObject};

/// Annotation kcp puts on every object: the logical cluster it lives in.
pub const KCP_CLUSTER_ANNOTATION: &str = "kcp.io/cluster";

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `incoming` is older than `stored`: the same object (UID) at a lower
/// resourceVersion. Resource versions are opaque in general, but for one object on one
/// server they are etcd revisions that only grow; Ferry stores the responses of its own
/// writes at once (so a reconcile right after a write sees it), and a watch event that was
/// already on its way must not replace that newer state with an older one. Anything that
/// does not parse as a number is taken as newer.
fn is_older(incoming: &DynamicObject, stored: &CompactObject) -> bool {
    if incoming.metadata.uid.as_deref() != stored.uid() {
        return false;
    }
    let version = |v: Option<&str>| v?.parse::<u64>().ok();
    matches!(
        (version(incoming.metadata.resource_version.as_deref()), version(stored.resource_version())),
        (Some(i), Some(s)) if i < s
    )
}

/// Drops what Ferry never reads from an upstream object before it is stored: its
/// `managedFields` (often the largest part of an object). At 5,000 objects with 10,000
/// copies the stores were most of Ferry's memory.
fn trim_upstream(mut object: DynamicObject) -> DynamicObject {
    object.metadata.managed_fields = None;
    object
}

/// Keeps only Ferry's own server-side-apply entry of a copy's `managedFields`: the one
/// [`crate::desired::compare`] reads.
fn trim_copy(mut object: DynamicObject) -> DynamicObject {
    if let Some(fields) = &mut object.metadata.managed_fields {
        fields.retain(|f| {
            f.manager.as_deref() == Some(ferry_core::identity::MANAGER)
                && f.operation.as_deref() == Some("Apply")
        });
    }
    object
}

/// The upstream key of an object seen through a virtual workspace.
pub fn upstream_key(object: &DynamicObject) -> Option<UpstreamKey> {
    let cluster = object
        .metadata
        .annotations
        .as_ref()?
        .get(KCP_CLUSTER_ANNOTATION)?;
    Some(UpstreamKey::new(
        cluster.clone(),
        object.metadata.namespace.clone().unwrap_or_default(),
        object.metadata.name.clone()?,
    ))
}

/// An upstream object and the virtual-workspace URL (shard) it was seen through, which is
/// where writes for it must go.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The object as last seen.
    pub object: Arc<DynamicObject>,
    /// Endpoint URL of the shard it lives on.
    pub shard: Arc<str>,
}

/// What the upstream store holds per object: [`Upstream`] with the object in its compact
/// form (read back on each [`UpstreamStore::get`]).
#[derive(Debug)]
struct StoredUpstream {
    object: CompactObject,
    shard: Arc<str>,
}

impl StoredUpstream {
    fn read(&self) -> Upstream {
        Upstream {
            object: Arc::new(self.object.object()),
            shard: self.shard.clone(),
        }
    }
}

#[derive(Default)]
struct UpstreamInner {
    /// Ordered by (logical cluster, namespace, name), so one namespace of one workspace is
    /// a range ([`UpstreamStore::in_namespace`]).
    objects: BTreeMap<UpstreamKey, StoredUpstream>,
    /// Shards whose initial list has completed.
    synced: HashSet<Arc<str>>,
    /// Shards currently in the endpoint slice.
    shards: HashSet<Arc<str>>,
}

/// Upstream objects of one resource, across all shards and workspaces.
#[derive(Default)]
pub struct UpstreamStore {
    inner: RwLock<UpstreamInner>,
}

impl UpstreamStore {
    /// The object for `key`, if any shard has it.
    pub fn get(&self, key: &UpstreamKey) -> Option<Upstream> {
        read(&self.inner).objects.get(key).map(StoredUpstream::read)
    }

    /// Whether the store has `key` (without reading the object back).
    pub fn contains(&self, key: &UpstreamKey) -> bool {
        read(&self.inner).objects.contains_key(key)
    }

    /// Whether `incoming` is the state stored for its key (same UID and resourceVersion):
    /// a watch event echoing what the store already has.
    pub fn holds(&self, key: &UpstreamKey, incoming: &DynamicObject) -> bool {
        read(&self.inner)
            .objects
            .get(key)
            .is_some_and(|s| compact::same_state(&s.object, incoming))
    }

    /// The objects of one namespace of one workspace (dependents and dependencies live
    /// next to each other there). A range of the ordered map, not a scan of the store.
    pub fn in_namespace(&self, cluster: &str, namespace: &str) -> Vec<(UpstreamKey, Upstream)> {
        let start = UpstreamKey::new(cluster, namespace, "");
        read(&self.inner)
            .objects
            .range(start..)
            .take_while(|(k, _)| k.cluster == cluster && k.namespace == namespace)
            .map(|(k, u)| (k.clone(), u.read()))
            .collect()
    }

    /// The keys of [`UpstreamStore::in_namespace`], each with whether its object is being
    /// deleted, without reading the objects back.
    pub fn keys_in_namespace(&self, cluster: &str, namespace: &str) -> Vec<(UpstreamKey, bool)> {
        let start = UpstreamKey::new(cluster, namespace, "");
        read(&self.inner)
            .objects
            .range(start..)
            .take_while(|(k, _)| k.cluster == cluster && k.namespace == namespace)
            .map(|(k, u)| (k.clone(), u.object.deleting()))
            .collect()
    }

    /// All keys (for periodic resync).
    pub fn keys(&self) -> Vec<UpstreamKey> {
        read(&self.inner).objects.keys().cloned().collect()
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        read(&self.inner).objects.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `shard`'s list has completed (and it is still in the endpoint slice), so that
    /// an object of a workspace on that shard that is absent here really is gone.
    pub fn listed(&self, shard: &str) -> bool {
        let inner = read(&self.inner);
        inner.shards.contains(shard) && inner.synced.contains(shard)
    }

    /// A shard appeared in the endpoint slice.
    pub fn add_shard(&self, shard: &Arc<str>) {
        write(&self.inner).shards.insert(shard.clone());
    }

    /// A shard left the endpoint slice: forget its objects. Returns their keys. Their copies
    /// are *not* orphans: nothing proves the objects gone (see [`crate::plan::Absence`]).
    pub fn remove_shard(&self, shard: &Arc<str>) -> Vec<UpstreamKey> {
        let mut inner = write(&self.inner);
        inner.shards.remove(shard);
        inner.synced.remove(shard);
        let keys: Vec<_> = inner
            .objects
            .iter()
            .filter(|(_, u)| &u.shard == shard)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            inner.objects.remove(key);
        }
        keys
    }

    /// A watch event (or the response to Ferry's own write) added or changed an object.
    /// An older state of the same object than the one stored is ignored.
    pub fn apply(&self, shard: &Arc<str>, object: DynamicObject) -> Option<UpstreamKey> {
        let object = trim_upstream(object);
        let key = upstream_key(&object)?;
        let mut inner = write(&self.inner);
        if let Some(stored) = inner.objects.get(&key)
            && is_older(&object, &stored.object)
        {
            return Some(key);
        }
        let entry = StoredUpstream {
            object: CompactObject::new(&object),
            shard: shard.clone(),
        };
        inner.objects.insert(key.clone(), entry);
        Some(key)
    }

    /// A watch event deleted an object.
    pub fn delete(&self, object: &DynamicObject) -> Option<UpstreamKey> {
        let key = upstream_key(object)?;
        write(&self.inner).objects.remove(&key);
        Some(key)
    }

    /// A (re)list of `shard` completed; its items went in one by one through
    /// [`UpstreamStore::apply`] as they arrived (a relist never holds a second full copy of
    /// the shard's objects) and `listed` holds their keys. Forgets the shard's objects the
    /// list did not return and marks the shard listed. Returns the forgotten keys.
    pub fn finish_list(
        &self,
        shard: &Arc<str>,
        listed: &BTreeSet<UpstreamKey>,
    ) -> Vec<UpstreamKey> {
        let mut inner = write(&self.inner);
        let gone: Vec<UpstreamKey> = inner
            .objects
            .iter()
            .filter(|(k, u)| &u.shard == shard && !listed.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            inner.objects.remove(key);
        }
        inner.synced.insert(shard.clone());
        gone
    }

    /// A (re)list of `shard` completed with `objects`: replaces what the shard had.
    /// Returns every key that is new, changed or gone.
    pub fn replace_shard(&self, shard: &Arc<str>, objects: Vec<DynamicObject>) -> Vec<UpstreamKey> {
        let mut inner = write(&self.inner);
        let mut touched: BTreeSet<UpstreamKey> = inner
            .objects
            .iter()
            .filter(|(_, u)| &u.shard == shard)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &touched {
            inner.objects.remove(key);
        }
        for object in objects.into_iter().map(trim_upstream) {
            if let Some(key) = upstream_key(&object) {
                inner.objects.insert(
                    key.clone(),
                    StoredUpstream {
                        object: CompactObject::new(&object),
                        shard: shard.clone(),
                    },
                );
                touched.insert(key);
            }
        }
        inner.synced.insert(shard.clone());
        touched.into_iter().collect()
    }
}

/// Where a downstream copy lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CopyRef {
    /// Target cluster name.
    pub target: String,
    /// Downstream namespace.
    pub namespace: String,
    /// Downstream name.
    pub name: String,
}

#[derive(Default)]
struct DownstreamInner {
    /// Each copy in its compact form, with the origin its labels record.
    objects: HashMap<CopyRef, (CompactObject, Option<UpstreamKey>)>,
    /// Where each origin's copies are, sorted. A sorted `Vec`, not a `BTreeSet`: an object
    /// has a copy per target (one or a few), and a `BTreeSet` of one allocates a node with
    /// room for eleven (about 800 bytes per object).
    by_origin: HashMap<UpstreamKey, Vec<CopyRef>>,
    synced: HashSet<String>,
}

impl DownstreamInner {
    fn insert(&mut self, at: CopyRef, object: DynamicObject) -> Option<UpstreamKey> {
        let object = trim_copy(object);
        self.remove(&at);
        let origin = serde_json::to_value(&object.metadata)
            .ok()
            .and_then(|m| Origin::of(&m))
            .map(|o| o.key);
        if let Some(key) = &origin {
            let copies = self.by_origin.entry(key.clone()).or_default();
            if let Err(place) = copies.binary_search(&at) {
                copies.insert(place, at.clone());
            }
        }
        self.objects
            .insert(at, (CompactObject::new(&object), origin.clone()));
        origin
    }

    fn remove(&mut self, at: &CopyRef) -> Option<UpstreamKey> {
        let (_, origin) = self.objects.remove(at)?;
        if let Some(key) = &origin
            && let Some(set) = self.by_origin.get_mut(key)
        {
            set.retain(|c| c != at);
            if set.is_empty() {
                self.by_origin.remove(key);
            }
        }
        origin
    }
}

/// Ferry-managed downstream objects of one resource on all targets.
#[derive(Default)]
pub struct DownstreamStore {
    inner: RwLock<DownstreamInner>,
}

/// Where `object`, a copy on `target`, lives.
pub fn copy_ref(target: &str, object: &DynamicObject) -> CopyRef {
    CopyRef {
        target: target.to_string(),
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        name: object.metadata.name.clone().unwrap_or_default(),
    }
}

impl DownstreamStore {
    /// The copy at `at`, if the watch has seen it.
    pub fn get(&self, at: &CopyRef) -> Option<Arc<DynamicObject>> {
        read(&self.inner)
            .objects
            .get(at)
            .map(|(o, _)| Arc::new(o.object()))
    }

    /// Whether `incoming` is the state stored at `at` (same UID and resourceVersion): a
    /// watch event echoing what the store already has.
    pub fn holds(&self, at: &CopyRef, incoming: &DynamicObject) -> bool {
        read(&self.inner)
            .objects
            .get(at)
            .is_some_and(|(o, _)| compact::same_state(o, incoming))
    }

    /// How many copies record `key` as their origin (without reading them back).
    pub fn count_copies_of(&self, key: &UpstreamKey) -> usize {
        read(&self.inner).by_origin.get(key).map_or(0, Vec::len)
    }

    /// Every copy that records `key` as its origin.
    pub fn copies_of(&self, key: &UpstreamKey) -> Vec<(CopyRef, Arc<DynamicObject>)> {
        self.map_copies_of(key, |at, copy| (at.clone(), Arc::new(copy.object())))
    }

    /// Where the copies of `key` are, each with whether it is being deleted, without
    /// reading them back.
    pub fn copy_places(&self, key: &UpstreamKey) -> Vec<(CopyRef, bool)> {
        self.map_copies_of(key, |at, copy| (at.clone(), copy.deleting()))
    }

    /// `each` over the copies that record `key` as their origin, under one read lock.
    fn map_copies_of<T>(
        &self,
        key: &UpstreamKey,
        each: impl Fn(&CopyRef, &CompactObject) -> T,
    ) -> Vec<T> {
        let inner = read(&self.inner);
        inner
            .by_origin
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|at| inner.objects.get(at).map(|(copy, _)| each(at, copy)))
            .collect()
    }

    /// Every origin with at least one copy (to find orphans).
    pub fn origins(&self) -> Vec<UpstreamKey> {
        read(&self.inner).by_origin.keys().cloned().collect()
    }

    /// Whether `target`'s initial list has completed.
    pub fn synced(&self, target: &str) -> bool {
        read(&self.inner).synced.contains(target)
    }

    /// A watch event (or the response to Ferry's own write) added or changed a copy;
    /// returns its origin. An older state of the same copy than the one stored is ignored.
    pub fn apply(&self, target: &str, object: DynamicObject) -> Option<UpstreamKey> {
        let at = copy_ref(target, &object);
        let mut inner = write(&self.inner);
        if let Some((stored, origin)) = inner.objects.get(&at)
            && is_older(&object, stored)
        {
            return origin.clone();
        }
        inner.insert(at, object)
    }

    /// Forgets the copy at `at` (Ferry deleted it; the watch event may still be on its way).
    /// Returns its origin.
    pub fn forget(&self, at: &CopyRef) -> Option<UpstreamKey> {
        write(&self.inner).remove(at)
    }

    /// Every copy on `target` (for `ferry check`'s duplicate and orphan reports).
    pub fn on_target(&self, target: &str) -> Vec<(CopyRef, Arc<DynamicObject>)> {
        read(&self.inner)
            .objects
            .iter()
            .filter(|(at, _)| at.target == target)
            .map(|(at, (o, _))| (at.clone(), Arc::new(o.object())))
            .collect()
    }

    /// A watch event deleted a copy; returns its origin.
    pub fn delete(&self, target: &str, object: &DynamicObject) -> Option<UpstreamKey> {
        write(&self.inner).remove(&copy_ref(target, object))
    }

    /// Whether `object` (a copy on `target`) has another status than the stored one, or
    /// none is stored.
    pub fn status_differs(&self, target: &str, object: &DynamicObject) -> bool {
        read(&self.inner)
            .objects
            .get(&copy_ref(target, object))
            .is_none_or(|(stored, _)| stored.status().as_ref() != object.data.get("status"))
    }

    /// Whether taking `object` (a write's answer) in would change the status stored for its
    /// copy on `target`. A copy not stored yet has no status: an answer without one (or
    /// with `null`) is no news.
    pub fn status_is_news(&self, target: &str, object: &DynamicObject) -> bool {
        let incoming = object.data.get("status").filter(|s| !s.is_null());
        let stored = read(&self.inner)
            .objects
            .get(&copy_ref(target, object))
            .and_then(|(stored, _)| stored.status())
            .filter(|s| !s.is_null());
        stored.as_ref() != incoming
    }

    /// A (re)list of `target` completed; its items went in one by one through
    /// [`DownstreamStore::apply`] as they arrived and `listed` holds where they are. Forgets
    /// the copies on `target` the list did not return and marks the target listed. Returns
    /// the forgotten copies' origins.
    pub fn finish_list(&self, target: &str, listed: &HashSet<CopyRef>) -> Vec<UpstreamKey> {
        let mut inner = write(&self.inner);
        let gone: Vec<CopyRef> = inner
            .objects
            .keys()
            .filter(|at| at.target == target && !listed.contains(*at))
            .cloned()
            .collect();
        let origins = gone.iter().filter_map(|at| inner.remove(at)).collect();
        inner.synced.insert(target.to_string());
        origins
    }

    /// A (re)list of `target` completed: replaces its copies, returns every origin touched.
    pub fn replace_target(&self, target: &str, objects: Vec<DynamicObject>) -> Vec<UpstreamKey> {
        let mut inner = write(&self.inner);
        let old: Vec<CopyRef> = inner
            .objects
            .keys()
            .filter(|at| at.target == target)
            .cloned()
            .collect();
        let mut touched = BTreeSet::new();
        for at in old {
            touched.extend(inner.remove(&at));
        }
        for object in objects {
            let at = copy_ref(target, &object);
            touched.extend(inner.insert(at, object));
        }
        inner.synced.insert(target.to_string());
        touched.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::identity::{identity_annotations, identity_labels};
    use serde_json::json;

    fn upstream(cluster: &str, ns: &str, name: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "annotations": {KCP_CLUSTER_ANNOTATION: cluster}},
        }))
        .expect("object")
    }

    #[test]
    fn the_same_namespace_and_name_in_two_workspaces_are_two_objects() {
        let store = UpstreamStore::default();
        let shard: Arc<str> = Arc::from("https://shard");
        let a = store
            .apply(&shard, upstream("ws-a", "demo", "web"))
            .expect("key");
        let b = store
            .apply(&shard, upstream("ws-b", "demo", "web"))
            .expect("key");
        assert_ne!(a, b);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_relist_reports_objects_that_disappeared_while_the_watch_was_down() {
        let store = UpstreamStore::default();
        let shard: Arc<str> = Arc::from("https://shard");
        store.add_shard(&shard);
        assert!(!store.listed(&shard), "listed before the first list");
        store.apply(&shard, upstream("ws", "demo", "gone"));
        let touched = store.replace_shard(&shard, vec![upstream("ws", "demo", "kept")]);
        assert_eq!(touched.len(), 2);
        assert!(store.get(&UpstreamKey::new("ws", "demo", "gone")).is_none());
        assert!(store.listed(&shard));
        store.remove_shard(&shard);
        assert!(
            !store.listed(&shard),
            "a departed shard is not a complete view"
        );
    }

    #[test]
    fn an_older_state_of_an_object_never_replaces_a_newer_one() {
        let store = UpstreamStore::default();
        let shard: Arc<str> = Arc::from("https://shard");
        let at = |rv: &str| {
            let mut o = upstream("ws", "demo", "web");
            o.metadata.uid = Some("u".into());
            o.metadata.resource_version = Some(rv.into());
            o
        };
        let key = store.apply(&shard, at("10")).expect("key");
        store.apply(&shard, at("9"));
        assert_eq!(
            store
                .get(&key)
                .and_then(|u| u.object.metadata.resource_version.clone())
                .as_deref(),
            Some("10")
        );
        store.apply(&shard, at("11"));
        assert_eq!(
            store
                .get(&key)
                .and_then(|u| u.object.metadata.resource_version.clone())
                .as_deref(),
            Some("11")
        );
    }

    /// A copy as a target returns it: Ferry's apply entry, the target's controller's status
    /// entry and a manual edit in `managedFields`, Ferry's digest, a spec and a status.
    fn live_copy(key: &UpstreamKey) -> DynamicObject {
        let mut annotations = identity_annotations(key, None);
        annotations.insert(crate::desired::APPLIED.into(), "digest-1".into());
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": key.downstream_namespace(),
                "uid": "copy-uid", "resourceVersion": "7", "generation": 3,
                "labels": identity_labels(key, "uid-1", "owner-1"),
                "annotations": annotations,
                "managedFields": [
                    {"manager": "ferry", "operation": "Apply", "apiVersion": "apps/v1",
                     "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}},
                    {"manager": "kube-controller-manager", "operation": "Update",
                     "subresource": "status", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:status": {"f:replicas": {}}}},
                    {"manager": "kubectl-edit", "operation": "Update", "apiVersion": "apps/v1",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:paused": {}}}},
                ]},
            "spec": {"replicas": 2, "paused": true, "template": {"spec": {"containers": []}}},
            "status": {"replicas": 2, "readyReplicas": 1, "observedGeneration": 3},
        }))
        .expect("object")
    }

    #[test]
    fn an_upstream_object_is_stored_without_managed_fields_and_with_everything_else() {
        let store = UpstreamStore::default();
        let shard: Arc<str> = Arc::from("https://shard");
        let mut object = upstream("ws", "demo", "web");
        object.metadata.managed_fields = Some(vec![Default::default(); 3]);
        object.metadata.finalizers = Some(vec!["sync.ferry.dev/x".into()]);
        object.metadata.uid = Some("u".into());
        object.metadata.generation = Some(4);
        object.data = json!({"spec": {"replicas": 1}, "status": {"readyReplicas": 1}});
        let key = store.apply(&shard, object.clone()).expect("key");
        let stored = store.get(&key).expect("stored").object;
        assert_eq!(stored.metadata.managed_fields, None);
        let mut expected = object;
        expected.metadata.managed_fields = None;
        assert_eq!(
            serde_json::to_value(&*stored).expect("json"),
            serde_json::to_value(&expected).expect("json"),
            "only managedFields may go"
        );
    }

    #[test]
    fn a_copy_keeps_only_ferrys_apply_entry_and_compares_as_the_live_copy() {
        let store = DownstreamStore::default();
        let key = UpstreamKey::new("ws", "demo", "web");
        let live = live_copy(&key);
        store.apply("cluster-1", live.clone());
        let stored = store
            .get(&copy_ref("cluster-1", &live))
            .expect("the copy is stored");
        let managers: Vec<_> = stored
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .map(|f| f.manager.clone().unwrap_or_default())
            .collect();
        assert_eq!(managers, ["ferry"]);
        let (stored, live) = (
            serde_json::to_value(&*stored).expect("json"),
            serde_json::to_value(&live).expect("json"),
        );
        // Everything the planner and the status plugins read is kept as is.
        for pointer in [
            "/spec",
            "/status",
            "/metadata/labels",
            "/metadata/annotations",
            "/metadata/uid",
            "/metadata/resourceVersion",
            "/metadata/generation",
        ] {
            assert_eq!(stored.pointer(pointer), live.pointer(pointer), "{pointer}");
        }
        // Drift and changes are decided the same on the stored copy as on the live one: a
        // desired state that sets `paused` (owned by the manual edit, not by Ferry) drifted,
        // with another digest and another replica count.
        let mut desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"annotations": {crate::desired::APPLIED: "digest-2"}},
            "spec": {"replicas": 3, "paused": true, "template": {"spec": {"containers": []}}}});
        let (on_stored, on_live) = (
            crate::desired::compare(&desired, &stored),
            crate::desired::compare(&desired, &live),
        );
        assert_eq!(format!("{on_stored:?}"), format!("{on_live:?}"));
        assert!(
            on_stored.drifted.contains(&"spec.paused".to_string()),
            "{on_stored:?}"
        );
        desired["metadata"]["annotations"][crate::desired::APPLIED] = json!("digest-1");
        assert_eq!(
            format!("{:?}", crate::desired::compare(&desired, &stored)),
            format!("{:?}", crate::desired::compare(&desired, &live))
        );
    }

    #[test]
    fn a_relist_fed_item_by_item_forgets_only_what_it_did_not_return() {
        let store = UpstreamStore::default();
        let shard: Arc<str> = Arc::from("https://shard");
        let other: Arc<str> = Arc::from("https://other");
        store.add_shard(&shard);
        store.apply(&shard, upstream("ws", "demo", "gone"));
        store.apply(&other, upstream("ws2", "demo", "elsewhere"));
        let mut listed = BTreeSet::new();
        listed.extend(store.apply(&shard, upstream("ws", "demo", "kept")));
        assert!(!store.listed(&shard), "listed only once the list completes");
        let gone = store.finish_list(&shard, &listed);
        assert_eq!(gone, [UpstreamKey::new("ws", "demo", "gone")]);
        assert!(store.get(&UpstreamKey::new("ws", "demo", "kept")).is_some());
        assert!(
            store
                .get(&UpstreamKey::new("ws2", "demo", "elsewhere"))
                .is_some(),
            "another shard's objects are not this list's business"
        );
        assert!(store.listed(&shard));

        let copies = DownstreamStore::default();
        let key = UpstreamKey::new("ws", "demo", "web");
        let copy = live_copy(&key);
        copies.apply("cluster-1", copy.clone());
        copies.apply("cluster-2", copy.clone());
        assert!(copies.finish_list("cluster-1", &HashSet::new()) == [key.clone()]);
        assert!(copies.synced("cluster-1"));
        assert_eq!(copies.copies_of(&key).len(), 1, "cluster-2's copy stays");
        let mut seen = HashSet::new();
        seen.insert(copy_ref("cluster-2", &copy));
        assert!(copies.finish_list("cluster-2", &seen).is_empty());
        assert_eq!(copies.copies_of(&key).len(), 1);
    }

    #[test]
    fn copies_are_indexed_by_the_origin_their_labels_record() {
        let store = DownstreamStore::default();
        let key = UpstreamKey::new("ws", "demo", "web");
        let copy: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": key.downstream_namespace(),
                "labels": identity_labels(&key, "uid-1", "owner-1"),
                "annotations": identity_annotations(&key, None)},
        }))
        .expect("object");
        assert_eq!(store.apply("cluster-1", copy.clone()), Some(key.clone()));
        assert_eq!(store.copies_of(&key).len(), 1);
        assert_eq!(store.delete("cluster-1", &copy), Some(key.clone()));
        assert!(store.copies_of(&key).is_empty());
        assert!(store.origins().is_empty());
    }

    #[test]
    fn only_a_new_copy_or_another_status_counts_as_a_status_change() {
        // The status latency starts on a status change only: Ferry's own applies come back
        // through the watch with the status they had.
        let store = DownstreamStore::default();
        let key = UpstreamKey::new("ws", "demo", "web");
        let copy = |status: serde_json::Value, spec: i64| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": key.downstream_namespace(),
                    "labels": identity_labels(&key, "uid-1", "owner-1"),
                    "annotations": identity_annotations(&key, None)},
                "spec": {"replicas": spec},
                "status": status,
            }))
            .expect("object")
        };
        assert!(store.status_differs("cluster-1", &copy(json!({}), 1)));
        store.apply("cluster-1", copy(json!({}), 1));
        assert!(!store.status_differs("cluster-1", &copy(json!({}), 2)));
        assert!(store.status_differs("cluster-1", &copy(json!({"replicas": 1}), 1)));
        assert!(store.status_differs("cluster-2", &copy(json!({}), 1)));
    }

    #[test]
    fn a_write_answer_with_a_status_the_store_lacks_is_news() {
        // A Service's create answer carries `status.loadBalancer`; no later event brings it
        // (the watch event of that version is an echo), so the reconcile must see it as news.
        let store = DownstreamStore::default();
        let key = UpstreamKey::new("ws", "demo", "web");
        let copy = |status: Option<serde_json::Value>| -> DynamicObject {
            let mut object = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": key.downstream_namespace(),
                    "labels": identity_labels(&key, "uid-1", "owner-1"),
                    "annotations": identity_annotations(&key, None)},
                "spec": {"ports": [{"port": 80}]},
            });
            if let Some(status) = status {
                object["status"] = status;
            }
            serde_json::from_value(object).expect("object")
        };
        let balanced = || Some(json!({"loadBalancer": {}}));
        // Nothing stored: an answer without a status (or with null) is no news, one with a
        // status is.
        assert!(!store.status_is_news("cluster-1", &copy(None)));
        assert!(!store.status_is_news("cluster-1", &copy(Some(serde_json::Value::Null))));
        assert!(store.status_is_news("cluster-1", &copy(balanced())));
        // Stored with that status: the same status again is no news, another one is.
        store.apply("cluster-1", copy(balanced()));
        assert!(!store.status_is_news("cluster-1", &copy(balanced())));
        assert!(store.status_is_news(
            "cluster-1",
            &copy(Some(
                json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}})
            ))
        ));
        assert!(store.status_is_news("cluster-1", &copy(None)));
        // Another target's copy is its own.
        assert!(store.status_is_news("cluster-2", &copy(balanced())));
    }
}

//! Which workspaces are bound to the export on which shard: the evidence Ferry needs before
//! it may call an upstream object gone.
//!
//! An object absent from the store may be gone, or merely out of sight: its shard left the
//! endpoint slice (a shard restarting, a network split), its shard's watch has not listed yet,
//! or Ferry restarted and never saw that shard. Deleting copies on any of those grounds would
//! delete tenants' workloads. So Ferry calls an object gone only when its workspace's
//! APIBinding is listed on a shard whose objects are listed too: then the object would be in
//! the store if it existed. Everything else keeps the copies (and `ferry check` shows them).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use ferry_core::identity::UpstreamKey;

use crate::plan::Absence;
use crate::store::UpstreamStore;

#[derive(Default)]
struct Bindings {
    /// Whether the APIBindings list of the shard has completed.
    listed: bool,
    /// Logical clusters with a binding to the export on the shard.
    bound: BTreeSet<String>,
}

/// Bound workspaces per shard, fed by each shard's APIBindings watch.
#[derive(Default)]
pub struct Shards {
    inner: RwLock<HashMap<Arc<str>, Bindings>>,
}

impl Shards {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Bindings>> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Bindings>> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A shard left the endpoint slice: what it said about bindings no longer counts.
    pub fn remove(&self, shard: &str) {
        self.write().remove(shard);
    }

    /// The shard's APIBindings list completed with these bound logical clusters.
    pub fn listed(&self, shard: &Arc<str>, bound: BTreeSet<String>) {
        let mut inner = self.write();
        let entry = inner.entry(shard.clone()).or_default();
        entry.listed = true;
        entry.bound = bound;
    }

    /// A binding appeared (`true`) or went (`false`) on the shard. Returns whether that
    /// changed anything.
    pub fn set(&self, shard: &Arc<str>, cluster: &str, bound: bool) -> bool {
        let mut inner = self.write();
        let entry = inner.entry(shard.clone()).or_default();
        if bound {
            entry.bound.insert(cluster.to_string())
        } else {
            entry.bound.remove(cluster)
        }
    }

    /// Number of bound workspaces on the shard (for the gauge).
    pub fn count(&self, shard: &str) -> usize {
        self.read().get(shard).map_or(0, |b| b.bound.len())
    }

    /// Every logical cluster bound to the export on any shard in the slice.
    pub fn bound(&self) -> BTreeSet<String> {
        self.read()
            .values()
            .flat_map(|b| b.bound.iter().cloned())
            .collect()
    }

    /// Whether an object absent from `store` is known to be gone.
    pub fn absence(&self, key: &UpstreamKey, store: &UpstreamStore) -> Absence {
        let inner = self.read();
        let homes: Vec<&Arc<str>> = inner
            .iter()
            .filter(|(_, b)| b.listed && b.bound.contains(&key.cluster))
            .map(|(shard, _)| shard)
            .collect();
        if homes.iter().any(|shard| store.listed(shard)) {
            return Absence::Gone;
        }
        match homes.first() {
            Some(shard) => {
                Absence::Unknown(format!("the objects on shard {shard} are not listed yet"))
            }
            None if inner.values().any(|b| !b.listed) => {
                Absence::Unknown("the APIBindings of every shard are not listed yet".into())
            }
            None => Absence::Unknown(format!(
                "workspace {} is not bound to the export on any shard in the endpoint slice",
                key.cluster
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(cluster: &str) -> kube::api::DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "demo",
                "annotations": {"kcp.io/cluster": cluster}},
        }))
        .expect("object")
    }

    #[test]
    fn an_object_is_gone_only_where_its_workspace_is_bound_and_listed() {
        let shards = Shards::default();
        let store = UpstreamStore::default();
        let shard: Arc<str> = Arc::from("https://s1");
        let key = UpstreamKey::new("lc-a", "demo", "web");
        assert!(matches!(shards.absence(&key, &store), Absence::Unknown(_)));
        store.add_shard(&shard);
        shards.listed(&shard, BTreeSet::from(["lc-a".to_string()]));
        assert!(
            matches!(shards.absence(&key, &store), Absence::Unknown(r) if r.contains("not listed yet")),
            "bindings listed, objects not"
        );
        store.replace_shard(&shard, vec![object("lc-b")]);
        assert_eq!(shards.absence(&key, &store), Absence::Gone);
        let other = UpstreamKey::new("lc-unknown", "demo", "web");
        assert!(
            matches!(shards.absence(&other, &store), Absence::Unknown(r) if r.contains("not bound"))
        );
    }

    #[test]
    fn a_shard_that_leaves_the_endpoint_slice_proves_nothing_about_its_objects() {
        let shards = Shards::default();
        let store = UpstreamStore::default();
        let shard: Arc<str> = Arc::from("https://s1");
        store.add_shard(&shard);
        shards.listed(&shard, BTreeSet::from(["lc-a".to_string()]));
        store.replace_shard(&shard, vec![object("lc-a")]);
        let key = UpstreamKey::new("lc-a", "demo", "web");
        store.remove_shard(&shard);
        shards.remove(&shard);
        assert!(matches!(shards.absence(&key, &store), Absence::Unknown(_)));
    }

    #[test]
    fn an_unbound_workspace_proves_nothing_either() {
        let shards = Shards::default();
        let store = UpstreamStore::default();
        let shard: Arc<str> = Arc::from("https://s1");
        store.add_shard(&shard);
        store.replace_shard(&shard, Vec::new());
        shards.listed(&shard, BTreeSet::from(["lc-a".to_string()]));
        let key = UpstreamKey::new("lc-a", "demo", "web");
        assert_eq!(shards.absence(&key, &store), Absence::Gone);
        assert!(shards.set(&shard, "lc-a", false));
        assert!(matches!(shards.absence(&key, &store), Absence::Unknown(_)));
    }

    #[test]
    fn the_bound_workspaces_are_those_of_every_shard_in_the_slice() {
        let shards = Shards::default();
        let (s1, s2): (Arc<str>, Arc<str>) = (Arc::from("https://s1"), Arc::from("https://s2"));
        shards.listed(&s1, BTreeSet::from(["lc-a".to_string()]));
        shards.set(&s2, "lc-b", true);
        assert_eq!(
            shards.bound(),
            BTreeSet::from(["lc-a".into(), "lc-b".into()])
        );
        shards.remove(&s1);
        assert_eq!(shards.bound(), BTreeSet::from(["lc-b".into()]));
    }
}

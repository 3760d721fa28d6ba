//! Who an object is, upstream and downstream, and the labels that record it.
//!
//! Tenant isolation (DESIGN I4) rests on this module: `(logical cluster, namespace, name)`
//! maps injectively to `(downstream namespace, name)` on every target, and a downstream object
//! names its origin in labels and annotations that only the engine writes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of every label, annotation and finalizer Ferry owns.
pub const PREFIX: &str = "sync.ferry.dev/";
/// Label on every downstream object and namespace Ferry writes; value [`MANAGER`].
pub const MANAGED_BY: &str = "sync.ferry.dev/managed-by";
/// Value of [`MANAGED_BY`], and Ferry's server-side-apply field manager.
pub const MANAGER: &str = "ferry";
/// Label: the upstream object's logical cluster.
pub const CLUSTER: &str = "sync.ferry.dev/cluster";
/// Label: which Ferry installation wrote the copy ([`owner_id`]), so that several
/// installations (different exports) can sync to the same clusters without taking each
/// other's copies for orphans.
pub const OWNER: &str = "sync.ferry.dev/owner";
/// Label: the upstream object's UID (status goes back only to this object).
pub const UID: &str = "sync.ferry.dev/uid";
/// Annotation: the upstream object's namespace (names may exceed label-value limits).
pub const NAMESPACE: &str = "sync.ferry.dev/namespace";
/// Annotation: the upstream object's name.
pub const NAME: &str = "sync.ferry.dev/name";
/// Annotation: the upstream workspace path, when known.
pub const WORKSPACE: &str = "sync.ferry.dev/workspace";
/// Finalizer on upstream objects: downstream copies are deleted before the object goes.
pub const FINALIZER: &str = "sync.ferry.dev/cleanup";

/// The owner id of the installation that serves APIExport `export` of logical cluster
/// `export_cluster`: 16 hex digits of SHA-256, a valid label value.
pub fn owner_id(export_cluster: &str, export: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(export_cluster.as_bytes());
    hasher.update(b"\0");
    hasher.update(export.as_bytes());
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Label selector matching the copies one installation manages downstream.
pub fn managed_selector(owner: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{OWNER}={owner}")
}

/// Identity of an upstream object across all workspaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UpstreamKey {
    /// kcp logical cluster name (`kcp.io/cluster`).
    pub cluster: String,
    /// Namespace ("" for cluster-scoped objects, which Ferry does not sync).
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl UpstreamKey {
    /// A key from its parts.
    pub fn new(
        cluster: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The namespace this object's copies live in on every target.
    pub fn downstream_namespace(&self) -> String {
        downstream_namespace(&self.cluster, &self.namespace)
    }
}

impl fmt::Display for UpstreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}/{}", self.cluster, self.namespace, self.name)
    }
}

/// Default namespace mapping: `ferry-` and 16 hex digits of SHA-256 over
/// `(logical cluster, namespace)`.
///
/// A cryptographic hash, because tenants choose namespace names: with a fast non-cryptographic
/// hash a tenant could craft a name that lands in another tenant's namespace. The engine also
/// refuses a downstream namespace whose recorded origin differs, so even a collision could not
/// mix tenants; it would only fail loudly.
pub fn downstream_namespace(cluster: &str, namespace: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(cluster.as_bytes());
    // A separator that cannot occur in either name keeps ("a", "bc") and ("ab", "c") apart.
    hasher.update(b"\0");
    hasher.update(namespace.as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("ferry-{hex}")
}

/// The identity labels Ferry puts on a downstream object (on top of whatever the transform
/// produced, which may not forge them).
pub fn identity_labels(key: &UpstreamKey, uid: &str, owner: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (OWNER.to_string(), owner.to_string()),
        (CLUSTER.to_string(), key.cluster.clone()),
        (UID.to_string(), uid.to_string()),
    ])
}

/// The identity annotations Ferry puts on a downstream object.
pub fn identity_annotations(
    key: &UpstreamKey,
    workspace: Option<&str>,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::from([
        (NAMESPACE.to_string(), key.namespace.clone()),
        (NAME.to_string(), key.name.clone()),
    ]);
    if let Some(path) = workspace {
        annotations.insert(WORKSPACE.to_string(), path.to_string());
    }
    annotations
}

/// What a downstream object's labels and annotations say about its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The upstream object it was made from.
    pub key: UpstreamKey,
    /// The upstream object's UID.
    pub uid: String,
}

impl Origin {
    /// Reads the origin from a downstream object's metadata; `None` if it is not Ferry's or
    /// its identity is incomplete (then Ferry treats it as foreign and never touches it).
    pub fn of(metadata: &serde_json::Value) -> Option<Origin> {
        let labels = metadata.get("labels")?;
        let annotations = metadata.get("annotations")?;
        if labels.get(MANAGED_BY)?.as_str()? != MANAGER {
            return None;
        }
        let text = |map: &serde_json::Value, key: &str| map.get(key)?.as_str().map(str::to_string);
        Some(Origin {
            key: UpstreamKey {
                cluster: text(labels, CLUSTER)?,
                namespace: text(annotations, NAMESPACE)?,
                name: text(annotations, NAME)?,
            },
            uid: text(labels, UID)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn downstream_namespaces_are_stable_and_distinct_per_cluster_and_namespace() {
        let a = downstream_namespace("abc", "demo");
        assert_eq!(a, downstream_namespace("abc", "demo"));
        assert_ne!(a, downstream_namespace("abd", "demo"));
        assert_ne!(a, downstream_namespace("abc", "demo2"));
        assert_ne!(
            downstream_namespace("a", "bc"),
            downstream_namespace("ab", "c")
        );
        assert!(a.starts_with("ferry-") && a.len() == 22, "{a}");
    }

    #[test]
    fn origin_round_trips_through_identity_metadata() {
        let key = UpstreamKey::new("2x8", "demo", "web");
        let metadata = json!({
            "labels": identity_labels(&key, "u-1", "o"),
            "annotations": identity_annotations(&key, Some("root:team")),
        });
        assert_eq!(
            Origin::of(&metadata),
            Some(Origin {
                key,
                uid: "u-1".into()
            })
        );
    }

    #[test]
    fn objects_without_complete_identity_are_foreign() {
        assert_eq!(Origin::of(&json!({"labels": {"app": "x"}})), None);
        let partial = json!({
            "labels": {MANAGED_BY: MANAGER, CLUSTER: "c"},
            "annotations": {NAMESPACE: "n", NAME: "x"},
        });
        assert_eq!(Origin::of(&partial), None);
    }
}

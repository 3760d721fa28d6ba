//! How the stores hold an object: its compact JSON text, parsed again when it is read.
//!
//! A `DynamicObject` keeps everything but its metadata as a `serde_json::Value` tree: every
//! JSON object in it is a `BTreeMap` whose nodes have room for eleven entries, and every key
//! and string its own allocation. A small Deployment copy of 2.2 KB of JSON took about
//! 18 KiB of heap that way (see the tests), and the stores hold every upstream object and
//! every copy for the life of the process: most of Ferry's memory per object. Its text
//! takes about an eighth of that. Reads parse the text back (microseconds for such an
//! object, against the milliseconds of the write or the plugin call that follows a read);
//! the few fields the stores compare on every watch event (UID, resourceVersion, the
//! status) are read without building the tree.

use kube::api::DynamicObject;
use serde::Deserialize;
use serde_json::Value;

/// An object as a store keeps it. Reading it back ([`CompactObject::object`]) gives an
/// object that serialises to the same JSON as the one stored.
#[derive(Debug)]
pub struct CompactObject {
    /// The object's JSON, as `serde_json` writes it (keys in a fixed order).
    text: Box<str>,
    /// `metadata.uid`, compared on every watch event to tell an echo or an older state.
    uid: Option<Box<str>>,
    /// `metadata.resourceVersion`, for the same comparisons.
    resource_version: Option<Box<str>>,
    /// Whether `metadata.deletionTimestamp` is set (dependency views skip such objects
    /// without parsing them).
    deleting: bool,
}

/// Only the status of an object, for [`CompactObject::status`]: every other field is
/// skipped by the parser without being built.
#[derive(Deserialize)]
struct StatusOnly {
    #[serde(default)]
    status: Option<Value>,
}

impl CompactObject {
    /// The compact form of `object`. Serialising a `DynamicObject` cannot fail (its
    /// metadata is plain strings, maps and timestamps, its data a JSON value); if it ever
    /// did, the object is kept as an empty one with its identity, which a reader sees as
    /// an object without spec or status (its next watch event or relist replaces it).
    pub fn new(object: &DynamicObject) -> Self {
        let text = serde_json::to_string(object).unwrap_or_else(|_| {
            let mut identity = DynamicObject {
                types: object.types.clone(),
                metadata: object.metadata.clone(),
                data: Value::Object(Default::default()),
            };
            identity.metadata.managed_fields = None;
            serde_json::to_string(&identity).unwrap_or_default()
        });
        let meta = &object.metadata;
        Self {
            text: text.into_boxed_str(),
            uid: meta.uid.as_deref().map(Box::from),
            resource_version: meta.resource_version.as_deref().map(Box::from),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    /// The object, parsed from its text. An object whose data was `null` (never one read
    /// from an API server, whose objects are JSON objects) reads back with an empty object
    /// as its data: both answer `None` to every field a reader looks up.
    pub fn object(&self) -> DynamicObject {
        // The text was written by serde_json from a DynamicObject: it parses back.
        serde_json::from_str(&self.text).unwrap_or_else(|_| DynamicObject {
            types: None,
            metadata: Default::default(),
            data: Value::Object(Default::default()),
        })
    }

    /// The object's `status`, if any, parsed alone.
    pub fn status(&self) -> Option<Value> {
        serde_json::from_str::<StatusOnly>(&self.text)
            .ok()
            .and_then(|s| s.status)
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// `metadata.resourceVersion`.
    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    /// Whether the object is being deleted.
    pub fn deleting(&self) -> bool {
        self.deleting
    }

    /// Bytes of heap the compact form holds (its text and copied identity fields).
    pub fn heap_bytes(&self) -> usize {
        self.text.len()
            + self.uid.as_deref().map_or(0, str::len)
            + self.resource_version.as_deref().map_or(0, str::len)
    }
}

/// A JSON value kept as its compact text, for per-object state held between reconciles
/// (the status kcp stored, [`crate::plan::StatusMemo`]): a few conditions as a `Value`
/// tree take several KiB, their text a few hundred bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactValue(Box<str>);

impl CompactValue {
    /// The compact form of `value` (serialising a `Value` cannot fail).
    pub fn new(value: &Value) -> Self {
        Self(value.to_string().into_boxed_str())
    }

    /// The value, parsed from its text (which serde_json wrote, so it parses).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

/// Whether `incoming` is the state `stored` holds: the same object (UID) at the same
/// resourceVersion. Objects without either are never the same state.
pub fn same_state(stored: &CompactObject, incoming: &DynamicObject) -> bool {
    same_version(stored.uid(), stored.resource_version(), incoming)
}

/// [`same_state`] on the stored object's UID and resourceVersion.
pub fn same_version(
    uid: Option<&str>,
    resource_version: Option<&str>,
    incoming: &DynamicObject,
) -> bool {
    let meta = &incoming.metadata;
    uid.is_some()
        && uid == meta.uid.as_deref()
        && resource_version.is_some()
        && resource_version == meta.resource_version.as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap_count;
    use serde_json::json;

    /// A copy as the memory benchmark's target returns it: the benchmark's Deployment with
    /// Ferry's identity labels and annotations, the defaults the API server fills in, its
    /// status and Ferry's apply entry of `managedFields` (the only one the copy store keeps).
    fn copy() -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "obj-1234", "namespace": "ferry-0a1b2c3d-demo",
                "uid": "6f1c1a5e-2a0b-4a55-8a3f-0c9d2f8e7b61", "resourceVersion": "123456",
                "generation": 1, "creationTimestamp": "2026-11-30T10:00:00Z",
                "labels": {"app": "obj-1234", "sync.ferry.dev/owner": "0123456789abcdef",
                    "sync.ferry.dev/upstream-uid": "0d6b7a4e-9c7d-4a8e-b1f2-3c4d5e6f7a8b"},
                "annotations": {"sync.ferry.dev/origin": "2x3y4z5w6v7u8t9s/demo/obj-1234",
                    "sync.ferry.dev/applied": "sha256:0123456789abcdef0123456789abcdef",
                    "deployment.kubernetes.io/revision": "1"},
                "managedFields": [{"manager": "ferry", "operation": "Apply",
                    "apiVersion": "apps/v1", "time": "2026-11-30T10:00:00Z",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:annotations":
                        {"f:sync.ferry.dev/applied": {}, "f:sync.ferry.dev/origin": {}},
                        "f:labels": {"f:app": {}, "f:sync.ferry.dev/owner": {}}},
                        "f:spec": {"f:minReadySeconds": {}, "f:replicas": {},
                            "f:selector": {}, "f:template": {"f:metadata": {"f:labels":
                                {"f:app": {}}}, "f:spec": {"f:containers":
                                {"k:{\"name\":\"web\"}": {".": {}, "f:image": {},
                                    "f:name": {}}}}}}}}],
            },
            "spec": {
                "replicas": 0, "minReadySeconds": 0, "progressDeadlineSeconds": 600,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": {"app": "obj-1234"}},
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "obj-1234"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                            "resources": {}, "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
                        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                        "dnsPolicy": "ClusterFirst", "securityContext": {},
                        "schedulerName": "default-scheduler"},
                },
            },
            "status": {"observedGeneration": 1, "conditions": [
                {"type": "Available", "status": "True",
                    "lastUpdateTime": "2026-11-30T10:00:00Z",
                    "lastTransitionTime": "2026-11-30T10:00:00Z",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True",
                    "lastUpdateTime": "2026-11-30T10:00:01Z",
                    "lastTransitionTime": "2026-11-30T10:00:00Z",
                    "reason": "NewReplicaSetAvailable",
                    "message": "ReplicaSet \"obj-1234-5d8f9c7b6\" has successfully progressed."}]},
        }))
        .expect("a Deployment")
    }

    #[test]
    fn an_object_reads_back_as_the_json_it_was_stored_as() {
        let mut object = copy();
        object.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-11-30T11:00:00Z")).expect("a timestamp"));
        object.metadata.finalizers = Some(vec!["sync.ferry.dev/cleanup".into()]);
        object.data["spec"]["odd"] = json!([1.5, -3, 18446744073709551615u64, null, "\u{2028}é"]);
        let compact = CompactObject::new(&object);
        let read = compact.object();
        assert_eq!(
            serde_json::to_value(&read).expect("json"),
            serde_json::to_value(&object).expect("json"),
            "nothing is lost, nothing is added"
        );
        assert_eq!(read.types, object.types, "apiVersion and kind are kept");
        assert_eq!(compact.uid(), object.metadata.uid.as_deref());
        assert_eq!(
            compact.resource_version(),
            object.metadata.resource_version.as_deref()
        );
        assert!(compact.deleting());
        assert!(!CompactObject::new(&copy()).deleting());
        assert_eq!(compact.status().as_ref(), object.data.get("status"));
    }

    #[test]
    fn an_object_without_types_or_status_reads_back_without_them() {
        let object = DynamicObject {
            types: None,
            metadata: Default::default(),
            data: json!({"spec": {}}),
        };
        let compact = CompactObject::new(&object);
        let read = compact.object();
        assert_eq!(read.types, None);
        assert_eq!(read.data, json!({"spec": {}}));
        assert_eq!(compact.status(), None);
        assert_eq!(compact.uid(), None);
        // `null` data (only objects built in code have it) reads back as an empty object:
        // every field looked up in either is absent.
        let null = DynamicObject {
            data: Value::Null,
            ..object
        };
        assert_eq!(CompactObject::new(&null).object().data, json!({}));
    }

    #[test]
    fn a_status_kept_compact_reads_back_equal_in_a_fraction_of_the_heap() {
        let status = copy().data["status"].clone();
        let (compact, held) = heap_count::held_by(|| CompactValue::new(&status));
        let (_, tree) = heap_count::held_by(|| status.clone());
        assert_eq!(compact.value(), status);
        assert_eq!(CompactValue::new(&Value::Null).value(), Value::Null);
        eprintln!("a Deployment's status: {tree} bytes as a Value, {held} bytes compact");
        assert!(held * 4 < tree, "compact {held} bytes against {tree} bytes");
    }

    #[test]
    fn the_compact_form_takes_a_fraction_of_the_heap_of_the_parsed_object() {
        let (object, tree) = heap_count::held_by(copy);
        let (compact, held) = heap_count::held_by(|| CompactObject::new(&object));
        let text = serde_json::to_string(&object).expect("json").len();
        eprintln!(
            "a copy of {text} bytes of JSON: {tree} bytes as a DynamicObject, \
             {held} bytes compact"
        );
        assert!(held >= compact.heap_bytes(), "the counter sees the text");
        assert!(
            held * 5 < tree,
            "compact {held} bytes against {tree} bytes parsed"
        );
    }
}

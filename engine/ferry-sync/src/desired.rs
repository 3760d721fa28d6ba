//! Turning a transform's output into the object Ferry applies, and deciding whether the live
//! copy already matches it (the key to making no writes at rest).

use ferry_core::identity::{UpstreamKey, identity_annotations, identity_labels};
use serde_json::{Map, Value};

/// Metadata the server owns; a transform that copies it through must not make Ferry apply it.
const SERVER_METADATA: &[&str] = &[
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "ownerReferences",
    "finalizers",
];

/// Makes `object` ready to apply: no status (a subresource Ferry never writes downstream),
/// no server-owned metadata, the mapped namespace, and Ferry's identity labels and
/// annotations, which override anything the transform put there (a plugin cannot forge them).
pub fn prepare(
    object: &mut Value,
    key: &UpstreamKey,
    uid: &str,
    owner: &str,
    namespace: &str,
    workspace: Option<&str>,
) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    map.remove("status");
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    for field in SERVER_METADATA {
        metadata.remove(*field);
    }
    metadata.insert("namespace".into(), Value::String(namespace.into()));
    merge_strings(metadata, "labels", identity_labels(key, uid, owner));
    merge_strings(
        metadata,
        "annotations",
        identity_annotations(key, workspace),
    );
}

fn merge_strings(
    metadata: &mut Map<String, Value>,
    field: &str,
    values: std::collections::BTreeMap<String, String>,
) {
    let entry = metadata
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Some(map) = entry.as_object_mut() {
        for (k, v) in values {
            map.insert(k, Value::String(v));
        }
    }
}

/// Whether every field of `desired` is present in `live` with the same value. Fields only
/// `live` has (server defaults, other controllers' fields, status) do not matter: applying
/// `desired` again would change nothing Ferry owns.
///
/// Lists compare element by element and must have the same length: an applied list
/// replaces the live one (or merges by key, with the same result for Ferry's entries).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => is_subset(dv, lv),
            // An explicit null or an empty collection means "absent" to the API server.
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (d, l) => d == l,
    }
}

/// The first path at which `desired` is not a subset of `live` (for logs: "why apply?").
pub fn first_difference(desired: &Value, live: &Value) -> Option<String> {
    differences(desired, live).into_iter().next()
}

/// Every path at which `desired` is not a subset of `live`, shallowest first per branch
/// (for `ferry preview`).
pub fn differences(desired: &Value, live: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_differences(desired, live, "", &mut out);
    out
}

fn collect_differences(desired: &Value, live: &Value, at: &str, out: &mut Vec<String>) {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (k, dv) in d {
                let path = join(at, k);
                match l.get(k) {
                    Some(lv) => collect_differences(dv, lv, &path, out),
                    None if is_empty(dv) => {}
                    None => out.push(path),
                }
            }
        }
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => {
            for (i, (dv, lv)) in d.iter().zip(l).enumerate() {
                collect_differences(dv, lv, &join(at, &format!("[{i}]")), out);
            }
        }
        _ if is_subset(desired, live) => {}
        _ => out.push(at.to_string()),
    }
}

fn join(head: &str, rest: &str) -> String {
    match (head.is_empty(), rest.starts_with('[')) {
        (true, _) => rest.to_string(),
        (false, true) => format!("{head}{rest}"),
        (false, false) => format!("{head}.{rest}"),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prepared_objects_carry_identity_and_no_status_or_server_fields() {
        let key = UpstreamKey::new("lc", "demo", "web");
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "demo", "uid": "x", "resourceVersion": "9",
                "labels": {"app": "web", "sync.ferry.dev/uid": "forged"}},
            "spec": {"replicas": 1},
            "status": {"replicas": 1},
        });
        prepare(&mut object, &key, "uid-1", "owner-1", "ferry-abc", None);
        assert_eq!(object["metadata"]["namespace"], "ferry-abc");
        assert_eq!(object["metadata"]["labels"]["sync.ferry.dev/uid"], "uid-1");
        assert_eq!(object["metadata"]["labels"]["app"], "web");
        assert_eq!(
            object["metadata"]["annotations"]["sync.ferry.dev/name"],
            "web"
        );
        assert!(object.get("status").is_none());
        assert!(object["metadata"].get("uid").is_none());
        assert!(object["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn a_live_object_with_extra_defaults_matches_what_was_applied() {
        let desired = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let live = json!({"spec": {"replicas": 2, "progressDeadlineSeconds": 600,
            "template": {"spec": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}]}}},
            "status": {"replicas": 2}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_or_removed_field_does_not_match() {
        let desired = json!({"spec": {"replicas": 2, "paused": false}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"replicas": 3, "paused": false}})
        ));
        assert!(!is_subset(&desired, &json!({"spec": {"replicas": 2}})));
        let list = json!({"args": ["a", "b"]});
        assert!(!is_subset(&list, &json!({"args": ["a"]})));
        assert!(!is_subset(&list, &json!({"args": ["a", "b", "c"]})));
    }

    #[test]
    fn the_first_difference_names_its_path() {
        let desired =
            json!({"spec": {"replicas": 2, "containers": [{"name": "a"}, {"name": "b"}]}});
        let live = json!({"spec": {"replicas": 2, "containers": [{"name": "a"}, {"name": "c"}]}});
        assert_eq!(
            first_difference(&desired, &live).as_deref(),
            Some("spec.containers[1].name")
        );
        assert_eq!(first_difference(&desired, &desired), None);
        let live = json!({"spec": {"replicas": 3}});
        assert_eq!(
            differences(&desired, &live),
            ["spec.containers", "spec.replicas"]
        );
    }

    #[test]
    fn empty_values_match_absent_fields_and_numbers_compare_by_value() {
        assert!(is_subset(&json!({"a": {}, "b": [], "c": null}), &json!({})));
        assert!(is_subset(&json!({"n": 1.0}), &json!({"n": 1})));
    }
}

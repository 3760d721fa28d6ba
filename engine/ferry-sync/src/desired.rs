//! Turning a transform's output into the object Ferry applies, and deciding whether the live
//! copy already is what Ferry last applied (the key to making no writes at rest).
//!
//! ## How Ferry decides that a copy needs an apply
//! Comparing values is not enough: the API server normalises what it stores (`cpu: "0.5"`
//! comes back as `500m`, `1` as `"1"`), defaults fields, and other controllers add their own.
//! And looking only at the fields Ferry wants now misses the fields it *no longer* wants: a
//! field removed upstream would stay on every copy. So the decision rests on two records the
//! copy itself carries:
//!
//! - the [`APPLIED`] annotation: a digest of the exact body Ferry last applied. If what Ferry
//!   wants now has another digest, something changed (a value, an added or a removed field)
//!   and Ferry applies; server-side apply then drops every field Ferry owned but no longer
//!   sends.
//! - the `ferry` entry of `metadata.managedFields`: which fields Ferry owns. Whoever changes a
//!   field Ferry set (`kubectl edit`, another applier with force) takes its ownership away, so
//!   a desired field that Ferry does not own any more is drift, and Ferry applies again.
//!
//! Neither depends on how the server spells a value, so normalised values cause no writes.

use std::collections::BTreeMap;

use ferry_core::identity::{MANAGER, PREFIX, UpstreamKey, identity_annotations, identity_labels};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Annotation on every copy: the digest of the body Ferry last applied (see the module docs).
pub const APPLIED: &str = "sync.ferry.dev/applied";

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
/// no server-owned metadata, the mapped namespace, Ferry's identity labels and annotations,
/// which override anything the transform put there (a plugin cannot forge them), and last
/// the [`APPLIED`] digest of all that. Returns the digest.
pub fn prepare(
    object: &mut Value,
    key: &UpstreamKey,
    uid: &str,
    owner: &str,
    namespace: &str,
    workspace: Option<&str>,
) -> String {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let Some(map) = object.as_object_mut() else {
        unreachable!("made an object above");
    };
    map.remove("status");
    let metadata = object_entry(map, "metadata");
    for field in SERVER_METADATA {
        metadata.remove(*field);
    }
    metadata.insert("namespace".into(), Value::String(namespace.into()));
    // A plugin's own `sync.ferry.dev/` annotations could shadow the digest; only Ferry
    // writes that prefix.
    if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
        annotations.retain(|k, _| !k.starts_with(PREFIX));
    }
    merge_strings(metadata, "labels", identity_labels(key, uid, owner));
    merge_strings(
        metadata,
        "annotations",
        identity_annotations(key, workspace),
    );
    let digest = digest(object);
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        merge_strings(
            metadata,
            "annotations",
            BTreeMap::from([(APPLIED.to_string(), digest.clone())]),
        );
    }
    digest
}

/// 32 hex digits of SHA-256 over the canonical JSON of `value` (object keys sorted, as
/// `serde_json` keeps them), so the same body always has the same digest.
pub fn digest(value: &Value) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn object_entry<'a>(map: &'a mut Map<String, Value>, field: &str) -> &'a mut Map<String, Value> {
    let entry = map
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(map) => map,
        _ => unreachable!("made an object above"),
    }
}

fn merge_strings(metadata: &mut Map<String, Value>, field: &str, values: BTreeMap<String, String>) {
    let map = object_entry(metadata, field);
    for (k, v) in values {
        map.insert(k, Value::String(v));
    }
}

/// How a live copy differs from what Ferry wants, by the records described in the module
/// docs. Empty means: no request needed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    /// Fields whose value Ferry wants differently (or wants and the copy lacks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Fields Ferry owns on the copy but no longer wants: the apply removes them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Fields Ferry wants whose ownership someone else took (a manual edit): drift.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drifted: Vec<String>,
    /// The copy was last applied from another body, but no field shows it by value (the
    /// server normalises what it stores): still applied, to be sure.
    pub stale_digest: bool,
}

impl Changes {
    /// Whether an apply is needed.
    pub fn any(&self) -> bool {
        self.stale_digest
            || !self.changed.is_empty()
            || !self.removed.is_empty()
            || !self.drifted.is_empty()
    }

    /// Every field path named, for logs and `ferry preview`.
    pub fn fields(&self) -> Vec<String> {
        let mut out = self.changed.clone();
        out.extend(self.removed.iter().map(|f| format!("-{f}")));
        out.extend(
            self.drifted
                .iter()
                .map(|f| format!("{f} (edited on the copy)")),
        );
        out
    }
}

/// Compares `desired` (from [`prepare`]) with the `live` copy.
pub fn compare(desired: &Value, live: &Value) -> Changes {
    let digest_now = desired
        .pointer(&annotation_pointer(APPLIED))
        .and_then(Value::as_str);
    let digest_then = live
        .pointer(&annotation_pointer(APPLIED))
        .and_then(Value::as_str);
    let mut changes = Changes::default();
    match owned_fields(live) {
        Some(owned) => {
            walk_missing(desired, owned, "", true, &mut changes.drifted);
            walk_removed(owned, Some(desired), "", &mut changes.removed);
        }
        // Never applied by Ferry (or applied by a version without the digest): apply once.
        None => changes.drifted.push("metadata.managedFields".into()),
    }
    if digest_now != digest_then {
        changes.changed = differences(desired, live);
        // A drifted field shows up as a changed value too: name it once.
        changes.changed.retain(|f| !changes.drifted.contains(f));
        changes.stale_digest = changes.changed.is_empty() && changes.removed.is_empty();
    }
    changes
}

fn annotation_pointer(key: &str) -> String {
    format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    )
}

/// The `fieldsV1` tree of Ferry's server-side-apply entry in `managedFields`.
fn owned_fields(live: &Value) -> Option<&Map<String, Value>> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| {
            e.get("manager").and_then(Value::as_str) == Some(MANAGER)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
                && e.get("subresource").is_none_or(|s| s.as_str() == Some(""))
        })?
        .get("fieldsV1")?
        .as_object()
}

/// Fields the server never records as owned (they identify the object).
fn untracked(at: &str) -> bool {
    matches!(
        at,
        "apiVersion" | "kind" | "metadata.name" | "metadata.namespace" | "metadata.uid"
    )
}

/// Paths of `desired` leaves that `owned` does not cover.
fn walk_missing(
    desired: &Value,
    owned: &Map<String, Value>,
    at: &str,
    top: bool,
    out: &mut Vec<String>,
) {
    match desired {
        Value::Object(fields) => {
            for (name, value) in fields {
                let path = join(at, name);
                if value.is_null() || (top && untracked(&path)) || untracked(&path) {
                    continue;
                }
                match owned.get(&format!("f:{name}")).and_then(Value::as_object) {
                    None => {
                        if !is_empty(value) {
                            out.push(path);
                        }
                    }
                    // `{}`: the whole value is one owned leaf (a scalar or an atomic list).
                    Some(node) if node.is_empty() => {}
                    Some(node) => walk_missing(value, node, &path, false, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = join(at, &format!("[{i}]"));
                match list_entry(owned, item, i) {
                    None => out.push(path),
                    Some(node) if node.is_empty() => {}
                    Some(node) => walk_missing(item, node, &path, false, out),
                }
            }
        }
        _ => {}
    }
}

/// The `fieldsV1` node of list item `item` (at index `index`): by associative key
/// (`k:{"name":"a"}`), by value for sets (`v:"x"`), or by index (`i:0`).
fn list_entry<'a>(
    owned: &'a Map<String, Value>,
    item: &Value,
    index: usize,
) -> Option<&'a Map<String, Value>> {
    owned.iter().find_map(|(entry, node)| {
        let matches = if let Some(keys) = entry.strip_prefix("k:") {
            // A key field the item leaves out was defaulted by the server (a port's
            // `protocol: TCP`): it cannot tell items apart, the fields that are there must.
            serde_json::from_str::<Map<String, Value>>(keys).is_ok_and(|keys| {
                let present: Vec<_> = keys
                    .iter()
                    .filter_map(|(k, v)| Some((item.get(k)?, v)))
                    .collect();
                !present.is_empty() && present.iter().all(|(i, v)| same(i, v))
            })
        } else if let Some(value) = entry.strip_prefix("v:") {
            serde_json::from_str::<Value>(value).is_ok_and(|v| same(item, &v))
        } else if let Some(i) = entry.strip_prefix("i:") {
            i.parse::<usize>() == Ok(index)
        } else {
            false
        };
        if matches { node.as_object() } else { None }
    })
}

/// Paths of owned leaves that `desired` no longer has.
fn walk_removed(
    owned: &Map<String, Value>,
    desired: Option<&Value>,
    at: &str,
    out: &mut Vec<String>,
) {
    walk_removed_except(owned, desired, at, &[], out);
}

/// [`walk_removed`], not counting the fields in `keys`: a list item's key fields are recorded
/// as owned even when the server defaulted them.
fn walk_removed_except(
    owned: &Map<String, Value>,
    desired: Option<&Value>,
    at: &str,
    keys: &[String],
    out: &mut Vec<String>,
) {
    for (entry, node) in owned {
        let node = node.as_object();
        if let Some(name) = entry.strip_prefix("f:") {
            let path = join(at, name);
            if untracked(&path) || keys.iter().any(|k| k == name) {
                continue;
            }
            match desired.and_then(|d| d.get(name)).filter(|v| !v.is_null()) {
                None => out.push(path),
                Some(value) => {
                    if let Some(node) = node.filter(|n| !n.is_empty()) {
                        walk_removed(node, Some(value), &path, out);
                    }
                }
            }
        } else if entry.starts_with("k:") || entry.starts_with("v:") || entry.starts_with("i:") {
            let items = desired.and_then(Value::as_array);
            let found = items.and_then(|items| {
                items.iter().enumerate().find(|(i, item)| {
                    let single = Map::from_iter([(entry.clone(), Value::Object(Map::new()))]);
                    list_entry(&single, item, *i).is_some()
                })
            });
            let label = entry.get(2..).unwrap_or_default();
            match found {
                None => out.push(format!("{at}[{label}]")),
                Some((i, item)) => {
                    let keys: Vec<String> = entry
                        .strip_prefix("k:")
                        .and_then(|k| serde_json::from_str::<Map<String, Value>>(k).ok())
                        .map(|k| k.keys().cloned().collect())
                        .unwrap_or_default();
                    if let Some(node) = node.filter(|n| !n.is_empty()) {
                        let path = join(at, &format!("[{i}]"));
                        walk_removed_except(node, Some(item), &path, &keys, out);
                    }
                }
            }
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Whether every field of `desired` is present in `live` with the same value (ignoring
/// fields only `live` has). Not how Ferry decides to write (see [`compare`]); used to say
/// *which* values differ.
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
        (d, l) => same(d, l),
    }
}

/// The first path at which `desired` is not a subset of `live` (for logs: "why apply?").
pub fn first_difference(desired: &Value, live: &Value) -> Option<String> {
    differences(desired, live).into_iter().next()
}

/// Every path at which `desired` is not a subset of `live`, shallowest first per branch.
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
                if path == "metadata.annotations" {
                    // The digest differs whenever anything does; it is not a difference itself.
                    if let (Some(dv), Some(lv)) = (dv.as_object(), l.get(k)) {
                        let mut dv = dv.clone();
                        dv.remove(APPLIED);
                        collect_differences(&Value::Object(dv), lv, &path, out);
                        continue;
                    }
                }
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

    fn key() -> UpstreamKey {
        UpstreamKey::new("lc", "demo", "web")
    }

    fn prepared(mut object: Value) -> Value {
        prepare(&mut object, &key(), "uid-1", "owner-1", "ferry-abc", None);
        object
    }

    /// What the API server stores after Ferry applied `applied`: the body, the server's
    /// normalisations `normalise` on top, and Ferry's managedFields entry for `applied`
    /// (computed as the server does for a Deployment: containers keyed by name).
    fn live_after_apply(applied: &Value, normalise: impl Fn(&mut Value)) -> Value {
        let mut live = applied.clone();
        normalise(&mut live);
        let fields = fields_v1(applied, "");
        live["metadata"]["managedFields"] = json!([{"manager": "ferry", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": fields}]);
        live["metadata"]["uid"] = json!("copy-uid");
        live
    }

    fn fields_v1(value: &Value, at: &str) -> Value {
        match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let path = join(at, k);
                    if untracked(&path) {
                        continue;
                    }
                    out.insert(format!("f:{k}"), fields_v1(v, &path));
                }
                Value::Object(out)
            }
            Value::Array(items) if items.iter().all(|i| i.get("name").is_some()) => {
                let mut out = Map::new();
                for item in items {
                    let mut node = fields_v1(item, at);
                    node["."] = json!({});
                    out.insert(format!("k:{}", json!({"name": item["name"]})), node);
                }
                Value::Object(out)
            }
            _ => json!({}),
        }
    }

    fn deployment(extra: impl Fn(&mut Value)) -> Value {
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx", "resources": {"limits": {"cpu": 1}, "requests": {"cpu": "0.5"}}}
            ]}}},
        });
        extra(&mut object);
        prepared(object)
    }

    #[test]
    fn prepared_objects_carry_identity_and_digest_and_no_status_or_server_fields() {
        let object = prepared(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "demo", "uid": "x", "resourceVersion": "9",
                "labels": {"app": "web", "sync.ferry.dev/uid": "forged"},
                "annotations": {"sync.ferry.dev/applied": "forged"}},
            "spec": {"replicas": 1},
            "status": {"replicas": 1},
        }));
        assert_eq!(object["metadata"]["namespace"], "ferry-abc");
        assert_eq!(object["metadata"]["labels"]["sync.ferry.dev/uid"], "uid-1");
        assert_eq!(object["metadata"]["labels"]["app"], "web");
        assert_eq!(
            object["metadata"]["annotations"]["sync.ferry.dev/name"],
            "web"
        );
        assert_ne!(object["metadata"]["annotations"][APPLIED], "forged");
        assert!(object.get("status").is_none());
        assert!(object["metadata"].get("uid").is_none());
        assert!(object["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn the_digest_depends_on_content_not_on_key_order() {
        let a = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}});
        let b: Value =
            serde_json::from_str(r#"{"b": {"d": "x", "c": [1, 2]}, "a": 1}"#).expect("json");
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&json!({"a": 1})));
    }

    #[test]
    fn a_copy_as_last_applied_needs_nothing_even_with_normalised_values_and_defaults() {
        let desired = deployment(|_| {});
        let live = live_after_apply(&desired, |live| {
            let c = &mut live["spec"]["template"]["spec"]["containers"][0];
            c["resources"]["requests"]["cpu"] = json!("500m");
            c["resources"]["limits"]["cpu"] = json!("1");
            c["imagePullPolicy"] = json!("Always");
            live["spec"]["progressDeadlineSeconds"] = json!(600);
            live["status"] = json!({"replicas": 2});
        });
        let changes = compare(&desired, &live);
        assert!(!changes.any(), "{changes:?}");
    }

    #[test]
    fn a_field_removed_upstream_is_removed_from_the_copy() {
        let with = deployment(|o| {
            o["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
            o["spec"]["template"]["spec"]["containers"][0]["env"] =
                json!([{"name": "A", "value": "1"}]);
            o["metadata"]["labels"]["tier"] = json!("front");
            o["metadata"]["annotations"] = json!({"note": "x"});
        });
        let live = live_after_apply(&with, |_| {});
        let without = deployment(|_| {});
        let changes = compare(&without, &live);
        assert!(changes.any());
        let mut removed = changes.removed.clone();
        removed.sort();
        assert_eq!(
            removed,
            [
                "metadata.annotations.note",
                "metadata.labels.tier",
                "spec.template.spec.containers[0].env",
                "spec.template.spec.nodeSelector",
            ]
        );
    }

    #[test]
    fn a_removed_list_item_and_map_key_are_named() {
        let two = deployment(|o| {
            o["spec"]["template"]["spec"]["containers"]
                .as_array_mut()
                .expect("list")
                .push(json!({"name": "sidecar", "image": "busybox"}));
        });
        let live = live_after_apply(&two, |_| {});
        let changes = compare(&deployment(|_| {}), &live);
        assert_eq!(
            changes.removed,
            [r#"spec.template.spec.containers[{"name":"sidecar"}]"#]
        );
    }

    #[test]
    fn a_changed_value_is_an_update_naming_the_field() {
        let live = live_after_apply(&deployment(|_| {}), |_| {});
        let changes = compare(&deployment(|o| o["spec"]["replicas"] = json!(3)), &live);
        assert!(changes.any());
        assert_eq!(changes.changed, ["spec.replicas"]);
        assert!(changes.removed.is_empty() && changes.drifted.is_empty());
    }

    #[test]
    fn a_manual_edit_that_took_a_field_from_ferry_is_drift() {
        let desired = deployment(|_| {});
        let mut live = live_after_apply(&desired, |live| live["spec"]["replicas"] = json!(5));
        // kubectl edit: the field moves to kubectl's Update entry.
        if let Some(Value::Object(spec)) =
            live.pointer_mut("/metadata/managedFields/0/fieldsV1/f:spec")
        {
            spec.remove("f:replicas");
        }
        let changes = compare(&desired, &live);
        assert!(changes.any());
        assert_eq!(changes.drifted, ["spec.replicas"]);
    }

    #[test]
    fn a_list_key_field_the_server_defaulted_is_no_difference() {
        let desired = deployment(|o| {
            o["spec"]["template"]["spec"]["containers"][0]["ports"] =
                json!([{"containerPort": 80}]);
        });
        let mut live = live_after_apply(&desired, |_| {});
        // The server keys the port by (containerPort, protocol), protocol defaulted to TCP.
        let path = "/metadata/managedFields/0/fieldsV1/f:spec/f:template/f:spec/f:containers";
        let containers = live
            .pointer_mut(path)
            .and_then(Value::as_object_mut)
            .expect("containers");
        let app = containers
            .values_mut()
            .next()
            .and_then(Value::as_object_mut)
            .expect("app");
        app.insert(
            "f:ports".into(),
            json!({r#"k:{"containerPort":80,"protocol":"TCP"}"#: {".": {}, "f:containerPort": {}, "f:protocol": {}}}),
        );
        let changes = compare(&desired, &live);
        assert!(!changes.any(), "{changes:?}");
    }

    #[test]
    fn a_copy_never_applied_by_ferry_is_applied() {
        let desired = deployment(|_| {});
        let mut live = desired.clone();
        live["metadata"]["managedFields"] =
            json!([{"manager": "kubectl", "operation": "Update", "fieldsV1": {}}]);
        assert!(compare(&desired, &live).any());
    }

    #[test]
    fn a_changed_digest_with_no_visible_difference_is_still_applied() {
        let desired = deployment(|_| {});
        let mut live = live_after_apply(&desired, |_| {});
        live["metadata"]["annotations"][APPLIED] = json!("older");
        let changes = compare(&desired, &live);
        assert!(changes.stale_digest && changes.any(), "{changes:?}");
    }

    #[test]
    fn is_subset_ignores_extra_live_fields_and_compares_numbers_by_value() {
        assert!(is_subset(&json!({"a": {}, "b": [], "c": null}), &json!({})));
        assert!(is_subset(&json!({"n": 1.0}), &json!({"n": 1, "x": 2})));
        assert!(!is_subset(
            &json!({"args": ["a", "b"]}),
            &json!({"args": ["a"]})
        ));
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
    }
}

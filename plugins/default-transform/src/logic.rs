//! The transformation itself, free of any Wasm or SDK type so that the benchmark can compile
//! the very same code natively (`engine/ferry-wasm/benches/plugins.rs` includes this file).

use serde_json::{Map, Value};

/// Label marking an object as Ferry's; the engine watches targets with this selector.
pub const MANAGED_BY: &str = "sync.ferry.dev/managed-by";
/// Label: kcp logical cluster of the upstream object.
pub const CLUSTER: &str = "sync.ferry.dev/cluster";
/// Label: UID of the upstream object (status goes back only to that object, invariant I4, docs/reliability.md).
pub const UID: &str = "sync.ferry.dev/uid";
/// Annotation: upstream namespace (names may exceed the 63 characters of a label value).
pub const NAMESPACE: &str = "sync.ferry.dev/namespace";
/// Annotation: upstream name.
pub const NAME: &str = "sync.ferry.dev/name";
/// Annotation: upstream workspace path, when known.
pub const WORKSPACE: &str = "sync.ferry.dev/workspace";
/// Prefix of every label and annotation Ferry owns.
pub const PREFIX: &str = "sync.ferry.dev/";

/// Where the object comes from and goes.
pub struct Origin<'a> {
    /// kcp logical cluster.
    pub logical_cluster: &'a str,
    /// Workspace path, when known.
    pub workspace_path: Option<&'a str>,
    /// Mapped namespace on the target.
    pub downstream_namespace: &'a str,
}

/// Metadata fields the server that stored the upstream object owns, or that refer to
/// other objects there (owner references, finalizers): none of them may travel.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "ownerReferences",
    "finalizers",
    "generateName",
];

/// Annotations that describe the upstream copy only.
fn upstream_only_annotation(key: &str) -> bool {
    key.starts_with("kcp.io/")
        || key.contains(".kcp.io/")
        || key.starts_with(PREFIX)
        || key == "kubectl.kubernetes.io/last-applied-configuration"
}

/// Transforms an upstream object into the object to apply on a target. The plugin itself
/// parses only `metadata` ([`transform_metadata`]); this whole-`Value` form is the
/// benchmark's native baseline and what the plugin's tests compare against.
#[cfg_attr(not(test), allow(dead_code))]
pub fn transform(mut object: Value, origin: &Origin<'_>) -> Result<Value, String> {
    let root = object
        .as_object_mut()
        .ok_or_else(|| "object is not a JSON object".to_owned())?;
    // Status belongs to the target's controllers; Ferry aggregates it back separately.
    root.remove("status");
    let metadata = root
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| NO_METADATA.to_owned())?;
    transform_metadata(metadata, origin)?;
    Ok(object)
}

/// The error of an object without a `metadata` object.
pub const NO_METADATA: &str = "object has no metadata";

/// What [`transform`] does to `metadata`, the only member it edits besides dropping
/// `status`: for callers that parse nothing else (the plugin, with the SDK's `LazyObject`).
pub fn transform_metadata(
    metadata: &mut Map<String, Value>,
    origin: &Origin<'_>,
) -> Result<(), String> {
    let uid = metadata
        .get("uid")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let name = metadata
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| "object has no metadata.name".to_owned())?
        .to_owned();
    let namespace = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    for field in SERVER_METADATA {
        metadata.remove(*field);
    }
    metadata.insert(
        "namespace".into(),
        Value::String(origin.downstream_namespace.to_owned()),
    );

    // A tenant must not be able to forge Ferry's ownership marks: drop any they set.
    let mut labels = take_map(metadata, "labels");
    labels.retain(|k, _| !k.starts_with(PREFIX));
    labels.insert(MANAGED_BY.into(), Value::String("ferry".into()));
    labels.insert(CLUSTER.into(), Value::String(origin.logical_cluster.into()));
    if let Some(uid) = uid {
        labels.insert(UID.into(), Value::String(uid));
    }
    metadata.insert("labels".into(), Value::Object(labels));

    let mut annotations = take_map(metadata, "annotations");
    annotations.retain(|k, _| !upstream_only_annotation(k));
    annotations.insert(NAMESPACE.into(), Value::String(namespace));
    annotations.insert(NAME.into(), Value::String(name));
    if let Some(path) = origin.workspace_path {
        annotations.insert(WORKSPACE.into(), Value::String(path.into()));
    }
    metadata.insert("annotations".into(), Value::Object(annotations));
    Ok(())
}

/// Removes a string map (labels, annotations) from `metadata`; a missing or malformed one
/// counts as empty.
fn take_map(metadata: &mut Map<String, Value>, key: &str) -> Map<String, Value> {
    match metadata.remove(key) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Refuses a Service that asks for `spec.externalIPs` unless `allowed`: any tenant could
/// otherwise intercept traffic the target cluster's nodes send to an address it does not own
/// (CVE-2020-8554). An empty list asks for nothing and passes.
#[cfg_attr(not(test), allow(dead_code))]
pub fn check_external_ips(object: &Value, allowed: bool) -> Result<(), String> {
    if !needs_external_ips_check(object.get("kind").and_then(Value::as_str), allowed) {
        return Ok(());
    }
    check_spec_external_ips(object.get("spec"))
}

/// Whether an object of `kind` must have its `spec` checked by [`check_spec_external_ips`]
/// (so that other kinds need not parse their `spec` at all).
pub fn needs_external_ips_check(kind: Option<&str>, allowed: bool) -> bool {
    !allowed && kind == Some("Service")
}

/// [`check_external_ips`] on a Service's `spec` alone.
pub fn check_spec_external_ips(spec: Option<&Value>) -> Result<(), String> {
    let ips = match spec.and_then(|spec| spec.get("externalIPs")) {
        Some(Value::Array(ips)) if !ips.is_empty() => ips,
        _ => return Ok(()),
    };
    let shown: Vec<&str> = ips.iter().filter_map(Value::as_str).collect();
    Err(format!(
        "Service spec.externalIPs ({}) is refused: external IPs let a Service capture traffic \
         for addresses it does not own on the target cluster (CVE-2020-8554); set \
         `allowExternalIPs: true` in default-transform's configuration to allow them",
        shown.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn a_service_with_external_ips_is_refused_naming_them_and_the_cve() {
        let err = check_external_ips(&service(json!({"externalIPs": ["203.0.113.7"]})), false)
            .expect_err("refused");
        assert!(err.contains("203.0.113.7"), "{err}");
        assert!(err.contains("CVE-2020-8554"), "{err}");
        assert!(err.contains("allowExternalIPs"), "{err}");
    }

    #[test]
    fn external_ips_pass_when_the_configuration_allows_them() {
        let object = service(json!({"externalIPs": ["203.0.113.7"]}));
        assert_eq!(check_external_ips(&object, true), Ok(()));
    }

    #[test]
    fn a_service_without_external_ips_or_with_an_empty_list_passes() {
        assert_eq!(
            check_external_ips(&service(json!({"ports": []})), false),
            Ok(())
        );
        assert_eq!(
            check_external_ips(&service(json!({"externalIPs": []})), false),
            Ok(())
        );
    }

    #[test]
    fn other_kinds_are_not_judged_by_a_field_of_the_same_name() {
        let object = json!({"kind": "Deployment", "spec": {"externalIPs": ["203.0.113.7"]}});
        assert_eq!(check_external_ips(&object, false), Ok(()));
    }
}

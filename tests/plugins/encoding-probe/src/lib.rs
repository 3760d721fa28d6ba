//! Benchmark fixture: `default-transform`'s logic (the frozen copy in `../frozen-v0-1-0`)
//! behind four boundary encodings, so that `cargo xtask bench plugins` measures what each
//! costs per call on the same transformation (see `wit/probe.wit`):
//!
//! - JSON text in and out, as contract v0.2.0;
//! - MessagePack and CBOR bytes in and out (`list<u8>`), parsed into the same `Value`;
//! - the object as a host resource: the guest reads the few fields it needs and answers the
//!   edits the host applies to its own parsed copy ([`patch`]).

// The export glue wit-bindgen generates takes a flattened `origin` record plus the object:
// more arguments than clippy likes, in code this crate does not write.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "probe",
    path: "wit",
});

#[path = "../../frozen-v0-1-0/src/logic.rs"]
#[allow(dead_code)]
mod logic;

use serde_json::Value;

struct Probe;

fn origin(origin: &Origin) -> logic::Origin<'_> {
    logic::Origin {
        logical_cluster: &origin.logical_cluster,
        workspace_path: origin.workspace_path.as_deref(),
        downstream_namespace: &origin.downstream_namespace,
    }
}

impl Guest for Probe {
    fn transform_json(o: Origin, object: String) -> Result<String, String> {
        let object: Value = serde_json::from_str(&object).map_err(|e| e.to_string())?;
        let out = logic::transform(object, &origin(&o))?;
        serde_json::to_string(&out).map_err(|e| e.to_string())
    }

    fn transform_msgpack(o: Origin, object: Vec<u8>) -> Result<Vec<u8>, String> {
        let object: Value = rmp_serde::from_slice(&object).map_err(|e| e.to_string())?;
        let out = logic::transform(object, &origin(&o))?;
        rmp_serde::to_vec(&out).map_err(|e| e.to_string())
    }

    fn transform_cbor(o: Origin, object: Vec<u8>) -> Result<Vec<u8>, String> {
        let object: Value = ciborium::from_reader(object.as_slice()).map_err(|e| e.to_string())?;
        let out = logic::transform(object, &origin(&o))?;
        let mut bytes = Vec::with_capacity(object_len_hint(&out));
        ciborium::into_writer(&out, &mut bytes).map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    fn transform_patch(o: Origin, object: &Object) -> Result<Vec<Edit>, String> {
        patch(&o, object)
    }
}

/// A first guess at the encoded size, to avoid regrowing the output buffer.
fn object_len_hint(_: &Value) -> usize {
    4096
}

/// `logic::transform` as edits on the host's copy: the same result, reading only the fields
/// the transformation looks at.
fn patch(o: &Origin, object: &Object) -> Result<Vec<Edit>, String> {
    let mut edits = vec![Edit::Remove("/status".into())];
    let uid = object.get_string("/metadata/uid");
    let name = object
        .get_string("/metadata/name")
        .ok_or_else(|| "object has no metadata.name".to_owned())?;
    let namespace = object.get_string("/metadata/namespace").unwrap_or_default();
    for field in SERVER_METADATA {
        edits.push(Edit::Remove(format!("/metadata/{field}")));
    }
    let set = |pointer: String, value: &str| Edit::Set((pointer, json_string(value)));
    edits.push(set("/metadata/namespace".into(), &o.downstream_namespace));

    for key in object.keys("/metadata/labels") {
        if key.starts_with(logic::PREFIX) {
            edits.push(Edit::Remove(format!("/metadata/labels/{}", escape(&key))));
        }
    }
    let label = |key: &str| format!("/metadata/labels/{}", escape(key));
    edits.push(set(label(logic::MANAGED_BY), "ferry"));
    edits.push(set(label(logic::CLUSTER), &o.logical_cluster));
    if let Some(uid) = uid {
        edits.push(set(label(logic::UID), &uid));
    }

    for key in object.keys("/metadata/annotations") {
        if upstream_only_annotation(&key) {
            edits.push(Edit::Remove(format!(
                "/metadata/annotations/{}",
                escape(&key)
            )));
        }
    }
    let annotation = |key: &str| format!("/metadata/annotations/{}", escape(key));
    edits.push(set(annotation(logic::NAMESPACE), &namespace));
    edits.push(set(annotation(logic::NAME), &name));
    if let Some(path) = &o.workspace_path {
        edits.push(set(annotation(logic::WORKSPACE), path));
    }
    Ok(edits)
}

/// `logic.rs`'s private lists, repeated here (it stays frozen); the benchmark checks that
/// every encoding gives the same object, so a drift fails it.
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

fn upstream_only_annotation(key: &str) -> bool {
    key.starts_with("kcp.io/")
        || key.contains(".kcp.io/")
        || key.starts_with(logic::PREFIX)
        || key == "kubectl.kubernetes.io/last-applied-configuration"
}

/// A string as JSON text.
fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// One reference token of a JSON pointer (RFC 6901): `~` and `/` escaped.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

export!(Probe);

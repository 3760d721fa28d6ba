//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use ferry_core::{ObjectContext, Target};
use ferry_wasm::{Limits, Plugin, PluginOptions, Runtime, RuntimeConfig};
use serde_json::{Value, json};

/// A runtime with a small pool, as tests load few plugins at once.
pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default().max_instances(16)).expect("runtime starts")
}

/// The built component of `name`, or a panic telling to run `cargo xtask plugins`.
pub fn component(name: &str) -> PathBuf {
    match ferry_wasm::testing::component(name) {
        Ok(path) => path,
        Err(missing) => panic!("{missing}"),
    }
}

/// Loads plugin `name` with default options except the limits.
pub fn load(runtime: &Runtime, name: &str, limits: Limits) -> Plugin {
    runtime
        .load_file(component(name), PluginOptions::default().limits(limits))
        .unwrap_or_else(|e| panic!("{name} loads: {e:?}"))
}

pub fn context() -> ObjectContext {
    ObjectContext {
        logical_cluster: "2x8mfrq3b9tmwx1v".into(),
        workspace_path: Some("root:team-a".into()),
        workspace_labels: Default::default(),
        workspace_annotations: Default::default(),
        namespace: "default".into(),
        downstream_namespace: "ferry-1a2b3c4d".into(),
    }
}

pub fn targets() -> Vec<Target> {
    vec![
        Target::new("cluster-1").label("region", "eu"),
        Target::new("cluster-2").label("region", "us"),
    ]
}

pub fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "0b6f9d52-3a57-4c3e-9a0e-2f5d8c1e7a11",
            "resourceVersion": "42",
            "annotations": {"kcp.io/cluster": "2x8mfrq3b9tmwx1v"}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
            }
        }
    })
}

pub fn short(deadline_ms: u64) -> Limits {
    Limits::default().deadline(Duration::from_millis(deadline_ms))
}

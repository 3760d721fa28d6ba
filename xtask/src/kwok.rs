//! kwok in the test environment: a few fake nodes per target cluster, so that the scheduler
//! binds the Pods of synced Deployments and kwok marks them Running and Ready (without it,
//! every Deployment stays at `readyReplicas: 0`).
//!
//! One kwok process per cluster, with the cluster's admin kubeconfig, managing only the nodes
//! the environment creates (annotation [`NODE_ANNOTATION`]). The nodes are small on purpose:
//! the scale test and the chaos run create thousands of single-replica Deployments, and a
//! 2-core machine must not simulate thousands of Pods. With [`NODES`] × [`PODS_PER_NODE`] Pods
//! at most per cluster, the rest stay Pending, as they did before kwok.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::gobuild::KWOK;
use crate::paths;

/// Fake nodes per target cluster.
pub const NODES: usize = 3;

/// The `pods` capacity of each fake node: with [`NODES`], at most 150 running Pods per
/// cluster, whatever a test creates.
pub const PODS_PER_NODE: usize = 50;

/// The annotation (and its value) that marks a node as kwok's; kwok manages only these.
pub const NODE_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// Name of the `i`-th fake node.
pub fn node_name(i: usize) -> String {
    format!("kwok-node-{i}")
}

/// The manifest of the fake nodes (a `List`, for one `kubectl apply`). The capacity goes into
/// `status`: kwok's node-initialize stage keeps a capacity that is set and only invents one
/// (a million Pods) when there is none.
pub fn nodes_manifest() -> String {
    let (key, value) = NODE_ANNOTATION;
    let items: Vec<serde_json::Value> = (0..NODES)
        .map(|i| {
            let name = node_name(i);
            let resources = serde_json::json!({
                "cpu": "8", "memory": "32Gi", "pods": PODS_PER_NODE.to_string(),
            });
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": { key: value, "node.alpha.kubernetes.io/ttl": "0" },
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
                "status": { "allocatable": resources, "capacity": resources },
            })
        })
        .collect();
    serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items }).to_string()
}

/// The stages file passed to every kwok (committed in the wrapper module beside go.mod).
pub fn stages_file() -> PathBuf {
    paths::repo_root().join(KWOK.module_dir).join("stages.yaml")
}

/// kwok's command line for one cluster.
pub fn args(kubeconfig: &Path) -> Vec<String> {
    let (key, value) = NODE_ANNOTATION;
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--config={}", stages_file().display()),
        format!("--manage-nodes-with-annotation-selector={key}={value}"),
        // Node Leases, renewed every 10 s (a quarter of this): they keep the nodes Ready.
        // Without them (kwok's default when run alone) the only heartbeat is the node status
        // every ~10 minutes, the node lifecycle controller marks the nodes NotReady after 50 s,
        // which turns every Pod unready for good (kwok makes only Pending Pods ready).
        "--node-lease-duration-seconds=40".into(),
        // Pod IPs are invented from this range; it has room for every Pod the nodes can hold.
        // (No --server-address or --node-port: kwok then serves no port; nothing talks to
        // the fake kubelets here.)
        "--cidr=10.244.0.0/16".into(),
    ]
}

/// The names of the fake nodes that are Ready, from `kubectl get nodes -o json`.
pub fn ready_nodes(nodes_json: &str) -> Result<Vec<String>> {
    let list: serde_json::Value = serde_json::from_str(nodes_json)?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|node| {
            node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|node| node["metadata"]["name"].as_str().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_carry_kwoks_annotation_and_a_small_pod_capacity() {
        let list: serde_json::Value = serde_json::from_str(&nodes_manifest()).expect("json");
        let items = list["items"].as_array().expect("items");
        assert_eq!(items.len(), NODES);
        for node in items {
            assert_eq!(
                node["metadata"]["annotations"]["kwok.x-k8s.io/node"],
                "fake"
            );
            assert_eq!(node["status"]["capacity"]["pods"], "50");
        }
    }

    #[test]
    fn only_nodes_with_a_true_ready_condition_count() {
        let json = r#"{"items":[
            {"metadata":{"name":"a"},"status":{"conditions":[{"type":"Ready","status":"True"}]}},
            {"metadata":{"name":"b"},"status":{"conditions":[{"type":"Ready","status":"False"}]}},
            {"metadata":{"name":"c"},"status":{}}]}"#;
        assert_eq!(ready_nodes(json).expect("parse"), vec!["a".to_string()]);
    }
}

//! What an engine's run leaves behind, removed so that it cannot slow the next engine.
//!
//! An engine puts a finalizer on every object it syncs and removes it only while it runs. Once
//! the benchmark has stopped it, deleting its tenant workspaces would leave them terminating
//! for ever, their objects waiting on a finalizer nobody removes; and an engine that serves the
//! same export again (api-syncagent, under the same agent name) would spend its next run
//! deleting those objects' copies instead of copying the new ones. So the benchmark releases
//! the objects (drops their finalizers: their copies go with their namespaces on the target)
//! before it deletes the workspaces, and removes the leftovers of an interrupted run before it
//! starts the engine again.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch};
use kube::api::{ListParams, PatchParams};
use serde_json::json;

use crate::ferry::deployments;
use crate::kcp::{KcpAdmin, Workspace};

/// Drops every finalizer of the Deployments in `tenant`.
pub async fn release_objects(admin: &KcpAdmin, path: &str) -> Result<usize> {
    let api: Api<DynamicObject> = Api::all_with(admin.workspace(path)?, &deployments());
    let held: Vec<DynamicObject> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|o| {
            o.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
        })
        .collect();
    let count = held.len();
    let patch = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    futures::stream::iter(held)
        .for_each_concurrent(16, |object| {
            let (patch, params) = (&patch, PatchParams::default());
            let api = match object.metadata.namespace.as_deref() {
                Some(ns) => Api::namespaced_with(api.clone().into_client(), ns, &deployments()),
                None => api.clone(),
            };
            async move {
                let name = object.metadata.name.unwrap_or_default();
                let _ = api.patch(&name, &params, patch).await;
            }
        })
        .await;
    Ok(count)
}

/// Releases the objects of every tenant and deletes its workspace (under `root`).
pub async fn remove_tenants(admin: &KcpAdmin, tenants: &[Workspace]) {
    for tenant in tenants {
        let Some(name) = tenant.path.strip_prefix("root:") else {
            continue;
        };
        if let Err(err) = release_objects(admin, &tenant.path).await {
            eprintln!(
                "    (could not release the objects of {}: {err:#})",
                tenant.path
            );
        }
        let _ = admin.delete_workspace("root", name).await;
    }
}

/// Workspaces under `root` whose name starts with `prefix`: what an interrupted run of the
/// same engine left behind (a finished run deletes its own).
pub async fn stale_workspaces(admin: &KcpAdmin, prefix: &str) -> Result<Vec<String>> {
    let api = workspaces(admin)?;
    let names = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|w| w.metadata.name)
        .collect::<Vec<_>>();
    Ok(matching(names, prefix))
}

fn matching(names: Vec<String>, prefix: &str) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Removes the workspaces of an interrupted run of the same engine (names starting with
/// `prefix`) and waits until they are gone: an engine must not start on them.
pub async fn remove_stale(admin: &KcpAdmin, prefix: &str) -> Result<()> {
    let stale = stale_workspaces(admin, prefix).await?;
    if stale.is_empty() {
        return Ok(());
    }
    eprintln!(
        "    removing {} workspace(s) an earlier run left behind: {}",
        stale.len(),
        stale.join(", ")
    );
    for name in &stale {
        let path = format!("root:{name}");
        // A workspace already terminating may refuse requests; deleting it is what matters.
        let _ = release_objects(admin, &path).await;
        admin.delete_workspace("root", name).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let left = stale_workspaces(admin, prefix).await?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "workspaces of an earlier run are still being deleted after 180 s: {} (delete \
                 them, or start a fresh environment with `cargo xtask env down`)",
                left.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Deletes api-syncagent's state Secrets (`obj-state-<logical cluster>-…` in `namespace` on the
/// target) of the given consumers' logical clusters: one per object, read by the agent on
/// every reconcile and cached by it.
pub async fn remove_agent_state(
    target: kube::Client,
    namespace: &str,
    logical_clusters: &[String],
) -> Result<usize> {
    let api: Api<Secret> = Api::namespaced(target, namespace);
    let names: Vec<String> = api
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .filter(|n| {
            logical_clusters
                .iter()
                .any(|lc| n.starts_with(&format!("obj-state-{lc}-")))
        })
        .collect();
    let count = names.len();
    futures::stream::iter(names)
        .for_each_concurrent(16, |name| {
            let api = api.clone();
            async move {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
        })
        .await;
    Ok(count)
}

fn workspaces(admin: &KcpAdmin) -> Result<Api<DynamicObject>> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tenancy.kcp.io", "v1alpha1", "Workspace"),
        "workspaces",
    );
    Ok(Api::all_with(admin.workspace("root")?, &resource))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_engines_own_workspaces_are_stale() {
        let names = [
            "bench-api-syncagent-0-ab",
            "bench-ferry-0-ab",
            "api-syncagent",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            matching(names, "bench-api-syncagent-"),
            ["bench-api-syncagent-0-ab"]
        );
    }
}

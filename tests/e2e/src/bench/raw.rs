//! The floor: the least an engine must do, with a bare kube client. It watches each tenant's
//! Deployments and server-side applies each one's copy (metadata name and labels, spec) straight
//! to the target, 16 requests in flight (Ferry's default per target); it watches the copies and
//! merge-patches each copy's status onto its upstream object. No placement, no plugins, no
//! deletes, no store beyond what the watches deliver.
//!
//! Two variants ([`Floor`]): the bare floor writes nothing to kcp before a copy exists; the
//! finalizer floor first adds a finalizer to each upstream object that lacks it, through the
//! export's virtual workspace with a JSON patch testing `resourceVersion` (as Ferry does), and
//! applies the copy only once that write succeeded. No engine that keeps invariant I3 (no copy
//! without the finalizer that guarantees its deletion, docs/reliability.md) can do less.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use futures::StreamExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::ferry::deployments;
use crate::kcp::{KcpAdmin, Workspace};

/// Requests in flight towards the target (with the finalizer floor: objects in flight, each
/// a finalizer write then an apply).
const IN_FLIGHT: usize = 16;

/// The finalizer the finalizer floor adds (its own: it never touches Ferry's).
pub const FINALIZER: &str = "bench.ferry.dev/raw-floor";

/// Which floor runs.
#[derive(Clone, Debug)]
pub enum Floor {
    /// Copies only: nothing is written to kcp before a copy exists.
    Bare,
    /// A finalizer on each upstream object before its copy, written through the export's
    /// virtual workspace at `url` (`…/clusters/<logical cluster>` is appended per tenant).
    Finalizer { url: String },
}

/// Starts the floor's tasks for `tenants` (copies in `namespaces`, one per tenant, on
/// `target`); every write it makes is counted in `writes`.
pub async fn start(
    admin: &KcpAdmin,
    target: &kube::Client,
    tenants: &[Workspace],
    namespaces: &[String],
    floor: &Floor,
    writes: Arc<AtomicU64>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    // Where the finalizer floor writes each tenant's finalizers: the virtual workspace, as an
    // engine does (it has no access to the tenants' workspaces themselves).
    let finalizers: Vec<Option<Api<DynamicObject>>> = tenants
        .iter()
        .map(|tenant| match floor {
            Floor::Bare => Ok(None),
            Floor::Finalizer { url } => {
                let client =
                    admin.client_for_url(&format!("{url}/clusters/{}", tenant.logical_cluster))?;
                Ok(Some(Api::namespaced_with(client, "demo", &deployments())))
            }
        })
        .collect::<Result<_>>()?;
    let (send, receive) = tokio::sync::mpsc::unbounded_channel::<(usize, Value)>();
    for (i, tenant) in tenants.iter().enumerate() {
        let upstream: Api<DynamicObject> =
            Api::namespaced_with(admin.workspace(&tenant.path)?, "demo", &deployments());
        let send = send.clone();
        tasks.push(tokio::spawn(async move {
            let mut events = watcher(upstream, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event
                    && let Ok(value) = serde_json::to_value(&o)
                {
                    let _ = send.send((i, value));
                }
            }
        }));
    }
    let apis: Vec<Api<DynamicObject>> = namespaces
        .iter()
        .map(|ns| Api::namespaced_with(target.clone(), ns, &deployments()))
        .collect();
    let apply_writes = writes.clone();
    tasks.push(tokio::spawn(async move {
        tokio_stream_of(receive)
            .map(|(i, object)| {
                let api = apis[i].clone();
                let finalizer = finalizers[i].clone();
                let writes = apply_writes.clone();
                async move {
                    let copy = copy_of(&object);
                    let name = object["metadata"]["name"].as_str().unwrap_or_default();
                    if let Some(upstream) = finalizer
                        && let Some(patch) = finalizer_patch(&object)
                    {
                        // No copy without the finalizer: if the write fails (the object
                        // changed meanwhile), its next event tries again.
                        let patch: Patch<()> = match serde_json::from_value(patch) {
                            Ok(operations) => Patch::Json(operations),
                            Err(_) => return,
                        };
                        if upstream
                            .patch(name, &PatchParams::default(), &patch)
                            .await
                            .is_err()
                        {
                            return;
                        }
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                    let params = PatchParams::apply("bench-raw").force();
                    if api.patch(name, &params, &Patch::Apply(&copy)).await.is_ok() {
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .for_each(|()| async {})
            .await;
    }));
    for (i, ns) in namespaces.iter().enumerate() {
        let copies: Api<DynamicObject> = Api::namespaced_with(target.clone(), ns, &deployments());
        let upstream: Api<DynamicObject> =
            Api::namespaced_with(admin.workspace(&tenants[i].path)?, "demo", &deployments());
        let writes = writes.clone();
        tasks.push(tokio::spawn(async move {
            let mut events = watcher(copies, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                let Ok(watcher::Event::Apply(copy) | watcher::Event::InitApply(copy)) = event
                else {
                    continue;
                };
                let (Some(name), Some(status)) =
                    (copy.metadata.name.as_deref(), copy.data.get("status"))
                else {
                    continue;
                };
                let patch = Patch::Merge(json!({ "status": status }));
                if upstream
                    .patch_status(name, &PatchParams::default(), &patch)
                    .await
                    .is_ok()
                {
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    Ok(tasks)
}

/// The JSON patch adding [`FINALIZER`] to `object`, conditional on its `resourceVersion`;
/// `None` when it has it already.
fn finalizer_patch(object: &Value) -> Option<Value> {
    let finalizers = object["metadata"]["finalizers"].as_array();
    if finalizers.is_some_and(|f| f.iter().any(|f| f == FINALIZER)) {
        return None;
    }
    let add = match finalizers {
        Some(f) if !f.is_empty() => {
            json!({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER})
        }
        _ => json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}),
    };
    Some(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": object["metadata"]["resourceVersion"]},
        add,
    ]))
}

/// The copy the floor applies: what any engine must carry, nothing more.
fn copy_of(object: &Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": object["metadata"]["name"],
            "labels": object["metadata"]["labels"],
        },
        "spec": object["spec"],
    })
}

fn tokio_stream_of<T: Send + 'static>(
    mut receive: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receive.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_carries_name_labels_and_spec_only() {
        let upstream = json!({
            "metadata": {"name": "a", "namespace": "demo", "uid": "u", "labels": {"app": "a"},
                         "managedFields": []},
            "spec": {"replicas": 0},
            "status": {"replicas": 0},
        });
        let copy = copy_of(&upstream);
        assert_eq!(
            copy["metadata"],
            json!({"name": "a", "labels": {"app": "a"}})
        );
        assert_eq!(copy["spec"], json!({"replicas": 0}));
        assert!(copy.get("status").is_none());
    }

    #[test]
    fn the_finalizer_is_added_once_and_only_to_the_version_seen() {
        let bare = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        assert_eq!(
            finalizer_patch(&bare),
            Some(json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
            ]))
        );
        let other = json!({"metadata": {"resourceVersion": "8", "finalizers": ["x"]}});
        assert_eq!(
            finalizer_patch(&other).expect("a patch")[1],
            json!({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER})
        );
        let done = json!({"metadata": {"resourceVersion": "9", "finalizers": ["x", FINALIZER]}});
        assert_eq!(finalizer_patch(&done), None);
    }
}

//! `ferry preview` and `ferry check`: the engine's own plan for every object, computed by the
//! same planner the engine runs ([`crate::plan`]) from a fresh list of both sides, without
//! writing anything anywhere.

use std::collections::BTreeSet;
use std::sync::Arc;

use ferry_core::identity::{self, UpstreamKey};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, ListParams};
use serde::Serialize;

use crate::error::SyncError;
use crate::plan::{CopyAction, Plan};
use crate::reconcile::ResourceSync;
use crate::store::upstream_key;
use crate::workspaces::{self, Workspace};
use crate::{Connected, SyncSettings, Unexported, kcp, with_types};

/// One object's plan, with what a fresh look at the targets adds to it.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectPlan {
    /// `deployments.apps`.
    pub resource: String,
    /// The engine's plan.
    #[serde(flatten)]
    pub plan: Plan,
    /// The object's workspace as plugins see it (path, opted-in labels and annotations);
    /// absent when the workspace's binding did not accept the claim on `logicalclusters`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,
    /// Creates that would be refused: the name is taken by an object that is not this
    /// object's copy (target, name, why). The engine finds out when its create is refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refusal>,
    /// Copies of this object beyond one per target (should never happen).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<String>,
}

/// A create the target would refuse.
#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    /// Target name.
    pub target: String,
    /// Downstream name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// What a survey found: every object's plan, and what it could not look at.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Survey {
    /// One plan per object, sorted by resource and key.
    pub plans: Vec<ObjectPlan>,
    /// Configured resources that could not be listed: the export does not declare them, or a
    /// shard's virtual workspace does not serve them (404). Their objects are not surveyed and
    /// their copies are not judged (an audit must not call them orphans).
    pub unserved: Vec<Unserved>,
}

/// A configured resource whose objects could not be listed.
#[derive(Clone, Debug, Serialize)]
pub struct Unserved {
    /// `deployments.apps`.
    pub resource: String,
    /// Why, in a sentence.
    pub why: String,
}

/// How many objects are planned at once: planning runs plugins on blocking threads and may GET
/// a name on a target, so a few in flight keep both the cores and the connections busy.
const PLANS_IN_FLIGHT: usize = 8;

/// Lists both sides and plans every upstream object, and every object that copies record as
/// their origin, of every resource (or of one logical cluster). A resource the virtual workspace
/// does not serve is reported in [`Survey::unserved`] and the others are still surveyed.
pub async fn survey(settings: SyncSettings, cluster: Option<&str>) -> Result<Survey, SyncError> {
    let mut connected = Connected::connect(settings, Unexported::Skip).await?;
    let mut unserved: Vec<Unserved> = std::mem::take(&mut connected.unexported)
        .into_iter()
        .map(|(resource, err)| Unserved {
            resource,
            why: err.to_string(),
        })
        .collect();
    let urls = connected.shard_urls().await?;
    for url in &urls {
        let shard: Arc<str> = Arc::from(url.as_str());
        let client = connected.kcp.for_url(&format!("{url}/clusters/*"))?;
        let bindings: Api<DynamicObject> = Api::all_with(client.clone(), &kcp::api_bindings());
        let list = bindings
            .list(&ListParams::default())
            .await
            .map_err(|e| SyncError::api(format!("listing APIBindings through {url}"), e))?;
        let bound: BTreeSet<String> = list
            .items
            .iter()
            .filter(|b| {
                b.data
                    .pointer("/spec/reference/export/name")
                    .and_then(|n| n.as_str())
                    == Some(connected.export.as_str())
            })
            .filter_map(|b| upstream_key(b).map(|k| k.cluster))
            .collect();
        connected.shards.listed(&shard, bound);
        if connected.workspaces.claimed() {
            list_workspaces(&connected, &client, &shard).await;
        }
        for sync in &connected.resources {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &sync.api);
            let list = match api.list(&ListParams::default()).await {
                Ok(list) => list,
                // Not served: the shard stays unlisted for this resource, which is exactly
                // what the planner needs to keep (not delete) the copies of its objects.
                Err(err) if crate::error::is_not_found(&err) => {
                    unserved.push(Unserved {
                        resource: sync.name.clone(),
                        why: format!("the export's virtual workspace at {url} does not serve it"),
                    });
                    continue;
                }
                Err(err) => {
                    return Err(SyncError::api(
                        format!("listing {} through {url}", sync.name),
                        err,
                    ));
                }
            };
            sync.upstream.add_shard(&shard);
            sync.upstream.replace_shard(
                &shard,
                list.items
                    .into_iter()
                    .map(|o| with_types(&sync.api, o))
                    .collect(),
            );
        }
    }
    for sync in &connected.resources {
        for target in connected.targets.iter() {
            let api: Api<DynamicObject> = Api::all_with(target.client.clone(), &sync.api);
            let params = ListParams::default().labels(&identity::managed_selector(&sync.owner));
            match api.list(&params).await {
                Ok(list) => {
                    sync.downstream.replace_target(
                        target.name(),
                        list.items
                            .into_iter()
                            .map(|o| with_types(&sync.api, o))
                            .collect(),
                    );
                }
                Err(err) => {
                    tracing::warn!(target = %target.name(), error = %crate::explain::api_error(&err), "cannot list copies");
                    target.mark_unreachable();
                }
            }
        }
    }
    let mut work = Vec::new();
    for sync in &connected.resources {
        let keys: BTreeSet<UpstreamKey> = sync
            .upstream
            .keys()
            .into_iter()
            .chain(sync.downstream.origins())
            .filter(|k| cluster.is_none_or(|c| c == k.cluster))
            .collect();
        work.extend(keys.into_iter().map(|key| (sync, key)));
    }
    let mut plans: Vec<ObjectPlan> = futures::stream::iter(work)
        .map(|(sync, key)| async move { object_plan(sync, &key).await })
        .buffer_unordered(PLANS_IN_FLIGHT)
        .try_collect()
        .await?;
    plans.sort_by(|a, b| (&a.resource, &a.plan.key).cmp(&(&b.resource, &b.plan.key)));
    Ok(Survey { plans, unserved })
}

/// Reads the shard's `LogicalCluster`s into the workspace store. A shard where they cannot be
/// read is surveyed without workspace context (said once), as the engine would sync it.
async fn list_workspaces(connected: &Connected, client: &kube::Client, shard: &Arc<str>) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &workspaces::logical_clusters());
    match api.list(&ListParams::default()).await {
        Ok(list) => {
            connected.workspaces.replace_shard(shard, &list.items);
        }
        Err(err) => {
            tracing::warn!(%shard, error = %crate::explain::api_error(&err), "cannot list the workspaces' LogicalClusters: planning without workspace paths");
            connected.workspaces.give_up(shard);
        }
    }
}

async fn object_plan(sync: &ResourceSync, key: &UpstreamKey) -> Result<ObjectPlan, SyncError> {
    let snapshot = sync.snapshot(key);
    let workspace = sync.workspaces.find(&key.cluster);
    let mut duplicates = Vec::new();
    let mut per_target = std::collections::BTreeMap::<&str, usize>::new();
    for (at, _) in &snapshot.copies {
        *per_target.entry(at.target.as_str()).or_default() += 1;
    }
    for (target, count) in per_target {
        if count > 1 {
            duplicates.push(format!("{count} copies on {target}"));
        }
    }
    let plan = sync.plan(snapshot, workspace.clone()).await?;
    let mut refused = Vec::new();
    for copy in &plan.copies {
        if !matches!(copy.action, CopyAction::Create { .. }) {
            continue;
        }
        let Some(target) = sync.targets.iter().find(|t| t.name() == copy.target) else {
            continue;
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(target.client.clone(), &copy.namespace, &sync.api);
        if let Ok(Some(found)) = api.get_opt(&copy.name).await {
            let origin = serde_json::to_value(&found.metadata)
                .ok()
                .and_then(|m| identity::Origin::of(&m));
            let reason = match origin {
                Some(o) if o.key == *key => {
                    "a copy of this object made by another Ferry installation"
                }
                Some(_) => "a copy of another object",
                None => "an object that is not Ferry's",
            };
            refused.push(Refusal {
                target: copy.target.clone(),
                name: copy.name.clone(),
                reason: format!("the name is taken by {reason}"),
            });
        }
    }
    Ok(ObjectPlan {
        resource: sync.name.clone(),
        plan,
        workspace: workspace.as_deref().cloned(),
        refused,
        duplicates,
    })
}

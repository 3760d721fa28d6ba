//! `ferry preview`: what the engine would do now, computed through the real plugin chain
//! against live objects, without writing anything anywhere.

use std::sync::Arc;

use ferry_core::identity::UpstreamKey;
use kube::api::{Api, DynamicObject, ListParams};
use serde::Serialize;
use serde_json::Value;

use crate::desired::{differences, is_subset, prepare};
use crate::error::SyncError;
use crate::metrics::Metrics;
use crate::reconcile::run_plugin;
use crate::store::{CopyRef, upstream_key};
use crate::{Connected, SyncSettings, kcp};

/// What would happen to one copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    /// Absent on the target: would be created.
    Create,
    /// Differs in these fields: would be applied.
    Update {
        /// Paths of the fields that differ (e.g. `spec.replicas`).
        fields: Vec<String>,
    },
    /// Already as desired: no request.
    Unchanged,
    /// Not (or no longer) placed there, or the upstream object is being deleted: would be deleted.
    Delete,
    /// The transform leaves this target out.
    Skip,
    /// The name is taken by an object Ferry will not overwrite.
    Refuse {
        /// Whose it is.
        reason: String,
    },
    /// The target could not be read.
    Error {
        /// What failed.
        message: String,
    },
}

/// One copy's plan.
#[derive(Clone, Debug, Serialize)]
pub struct CopyPlan {
    /// Target name.
    pub target: String,
    /// Downstream namespace.
    pub namespace: String,
    /// Downstream name.
    pub name: String,
    /// What would happen.
    #[serde(flatten)]
    pub action: Action,
}

/// One upstream object's plan.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectPlan {
    /// `deployments.apps`.
    pub resource: String,
    /// Upstream identity.
    pub key: UpstreamKey,
    /// The chosen targets, or the plugin error that stops this object.
    pub placement: Result<Vec<String>, String>,
    /// Per-copy plans.
    pub copies: Vec<CopyPlan>,
}

/// Computes the plan for every object of every resource (or of one logical cluster).
pub async fn preview(
    settings: SyncSettings,
    cluster: Option<&str>,
) -> Result<Vec<ObjectPlan>, SyncError> {
    let connected = Connected::connect(settings, Arc::new(Metrics::default())).await?;
    let slices: Api<DynamicObject> =
        Api::all_with(connected.provider.clone(), &kcp::endpoint_slices());
    let slice = slices
        .get(&connected.export)
        .await
        .map_err(|e| SyncError::api(format!("reading endpoint slice {}", connected.export), e))?;
    let urls = kcp::endpoint_urls(&slice);
    let mut plans = Vec::new();
    for sync in &connected.resources {
        for url in &urls {
            let client = connected.kcp.for_url(&format!("{url}/clusters/*"))?;
            let api: Api<DynamicObject> = Api::all_with(client, &sync.api);
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| SyncError::api(format!("listing {} through {url}", sync.name), e))?;
            for mut object in list.items {
                let Some(key) = upstream_key(&object) else {
                    continue;
                };
                if cluster.is_some_and(|c| c != key.cluster) {
                    continue;
                }
                object.types = Some(kube::core::TypeMeta {
                    api_version: sync.api.api_version.clone(),
                    kind: sync.api.kind.clone(),
                });
                plans.push(sync.plan(&key, &object).await);
            }
        }
    }
    plans.sort_by(|a, b| (&a.resource, &a.key).cmp(&(&b.resource, &b.key)));
    Ok(plans)
}

impl crate::reconcile::ResourceSync {
    async fn plan(&self, key: &UpstreamKey, object: &DynamicObject) -> ObjectPlan {
        let namespace = key.downstream_namespace();
        let mut plan = ObjectPlan {
            resource: self.name.clone(),
            key: key.clone(),
            placement: Ok(Vec::new()),
            copies: Vec::new(),
        };
        let value = serde_json::to_value(object).unwrap_or(Value::Null);
        let context = self.context(key);
        let chosen = if object.metadata.deletion_timestamp.is_some() {
            Vec::new()
        } else {
            let targets: Vec<ferry_core::Target> =
                self.targets.iter().map(|t| t.target.clone()).collect();
            let (plugins, ctx, v) = (self.plugins.clone(), context.clone(), value.clone());
            match run_plugin(move || plugins.place(&ctx, &v, &targets)).await {
                Ok(chosen) => chosen,
                Err(err) => {
                    plan.placement = Err(err.to_string());
                    return plan;
                }
            }
        };
        plan.placement = Ok(chosen.clone());
        let uid = object.metadata.uid.clone().unwrap_or_default();
        for target in self.targets.iter() {
            let api: Api<DynamicObject> =
                Api::namespaced_with(target.client.clone(), &namespace, &self.api);
            let mut copy = CopyPlan {
                target: target.name().to_string(),
                namespace: namespace.clone(),
                name: key.name.clone(),
                action: Action::Unchanged,
            };
            let live = match api.get_opt(&key.name).await {
                Ok(live) => live.map(|l| serde_json::to_value(l).unwrap_or(Value::Null)),
                Err(err) => {
                    copy.action = Action::Error {
                        message: err.to_string(),
                    };
                    plan.copies.push(copy);
                    continue;
                }
            };
            let at = CopyRef {
                target: copy.target.clone(),
                namespace: namespace.clone(),
                name: key.name.clone(),
            };
            let owned = live.as_ref().map(|l| self.check_owner(l, key, &at));
            if !chosen.contains(&copy.target) {
                match owned {
                    Some(Ok(())) => copy.action = Action::Delete,
                    _ => continue,
                }
                plan.copies.push(copy);
                continue;
            }
            let (plugins, ctx, v, t) = (
                self.plugins.clone(),
                context.clone(),
                value.clone(),
                target.target.clone(),
            );
            let desired = match run_plugin(move || plugins.transform(&ctx, &v, &t)).await {
                Ok(Some(desired)) => desired,
                Ok(None) => {
                    copy.action = if matches!(owned, Some(Ok(()))) {
                        Action::Delete
                    } else {
                        Action::Skip
                    };
                    plan.copies.push(copy);
                    continue;
                }
                Err(err) => {
                    copy.action = Action::Error {
                        message: err.to_string(),
                    };
                    plan.copies.push(copy);
                    continue;
                }
            };
            let mut desired = desired;
            prepare(
                &mut desired,
                key,
                &uid,
                &self.owner,
                &namespace,
                context.workspace_path.as_deref(),
            );
            copy.action = match (&live, owned) {
                (None, _) => Action::Create,
                (Some(_), Some(Err(err))) => Action::Refuse {
                    reason: err.to_string(),
                },
                (Some(live), _) if is_subset(&desired, live) => Action::Unchanged,
                (Some(live), _) => Action::Update {
                    fields: differences(&desired, live),
                },
            };
            plan.copies.push(copy);
        }
        plan
    }
}

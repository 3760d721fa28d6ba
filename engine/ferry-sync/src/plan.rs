//! The planner: everything Ferry should do for one upstream object, computed from a
//! [`Snapshot`] of what exists, through the plugin chain, without a single API call.
//!
//! The executor ([`crate::reconcile`]) carries a [`Plan`] out; `ferry preview` and
//! `ferry check` print one. Because all three use this one function, what Ferry says it would
//! do and what it does can never drift apart, and every branch of the decision is a unit
//! test with a fake plugin chain (below).
//!
//! The rules, in order of precedence:
//! - **Gone upstream** (absent from the store): copies are orphans and go, but only when the
//!   absence is proven ([`Absence::Gone`]: the object's workspace is bound on a shard whose
//!   list is complete). Otherwise they are kept: a shard that left the endpoint slice, a
//!   watch not listed yet, or an unknown workspace is never a reason to delete.
//! - **Being deleted**: every copy goes; a copy already terminating is waited for, never
//!   deleted again; the finalizer is released only when no copy is left on any target and
//!   every target has been listed and is reachable (the executor then confirms absence by
//!   name on every target before it releases).
//! - **Live**: finalizer first; placement; per placed target the transform's output is
//!   compared with the copy ([`crate::desired::compare`]); copies on targets no longer placed,
//!   or left out by the transform, go. A failing plugin or an unreachable target never
//!   deletes anything: the copy there is kept and its last known state counts for status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferry_core::identity::{FINALIZER, UpstreamKey};
use ferry_core::{Downstream, ObjectContext, Target};
use kube::api::DynamicObject;
use serde::Serialize;
use serde_json::Value;

use crate::compact::CompactValue;
use crate::dependencies::{
    DependenciesView, DependentsPlacement, DependentsView, HookMemo, Recall, chain_fingerprint,
    describe, merge, place_by_dependents, placement_fingerprint,
};
use crate::desired::{Changes, compare, digest, prepare};
use crate::plugins::{HookError, PluginChain, Transformed};
use crate::store::CopyRef;
use crate::workspaces::Workspace;

/// Whether an upstream object that is absent from the store is known to be gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Absence {
    /// Its workspace is bound on a shard whose list is complete: it is really gone.
    Gone,
    /// Not provable (why, for logs and `ferry check`): its copies are kept.
    Unknown(String),
}

/// A target as the planner sees it.
#[derive(Clone, Debug)]
pub struct TargetView {
    /// Name and labels (what plugins see).
    pub target: Target,
    /// Whether the watch of Ferry's copies there has completed its first list, so that
    /// "no copy in the store" means "no copy".
    pub listed: bool,
    /// Whether the target answers; work for an unreachable target waits for it on its own
    /// schedule and never holds up the others.
    pub reachable: bool,
}

/// What Ferry last wrote as the upstream status, and what kcp stored of it (kcp prunes
/// fields the schema does not know and normalises values).
#[derive(Clone, Debug, PartialEq)]
pub struct StatusMemo {
    /// UID of the upstream object it was written to.
    pub uid: String,
    /// Digest of the aggregated status Ferry sent.
    pub sent: String,
    /// The status as kcp returned it, compact: one is held per object between reconciles.
    pub stored: CompactValue,
}

/// Everything the planner looks at for one upstream object.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The object's identity.
    pub key: UpstreamKey,
    /// The object, if the store has it (with apiVersion and kind set).
    pub upstream: Option<Arc<DynamicObject>>,
    /// When `upstream` is `None`: whether that means it is gone.
    pub absence: Absence,
    /// Every copy the stores record for this object, on any target.
    pub copies: Vec<(CopyRef, Arc<DynamicObject>)>,
    /// The configured targets, in configuration order.
    pub targets: Vec<TargetView>,
    /// The last status write for this object, if any.
    pub last_status: Option<StatusMemo>,
    /// For an object of a resource placed by its dependents: who may need it.
    pub dependents: Option<DependentsView>,
    /// For an object of a resource with a `dependencies` plugin: the dependency objects of
    /// its namespace and where their copies are.
    pub dependencies: Option<DependenciesView>,
}

/// The upstream annotation that lists the dependencies an object references and that do
/// not exist (`configmaps/app-config, secrets/db`); absent when there are none.
pub const MISSING_DEPENDENCIES: &str = "sync.ferry.dev/missing-dependencies";

/// Facts about the installation the planner needs.
#[derive(Clone, Copy, Debug)]
pub struct PlanContext<'a> {
    /// This installation's owner id.
    pub owner: &'a str,
    /// The object's workspace (path, opted-in labels and annotations), if known
    /// ([`crate::workspaces`]).
    pub workspace: Option<&'a Workspace>,
    /// The object's resource (`deployments.apps`): the memo's key.
    pub resource: &'a str,
    /// Memoised `dependencies` and `place` answers of dependents.
    pub memo: &'a HookMemo,
}

impl PlanContext<'_> {
    /// The object's workspace path, if known.
    pub fn workspace_path(&self) -> Option<&str> {
        self.workspace.and_then(|w| w.path.as_deref())
    }
}

/// What happens to the upstream object itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "reason")]
pub enum UpstreamState {
    /// Exists and is not being deleted.
    Live,
    /// Has a deletion timestamp.
    Deleting,
    /// Proven gone: its copies are orphans.
    Gone,
    /// Absent, but not provably gone: its copies are kept.
    Unknown(String),
}

/// Ferry's finalizer on the upstream object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "reason")]
pub enum FinalizerPlan {
    /// Nothing to do.
    Keep,
    /// Add it (before any copy is written, so no copy can outlive the object).
    Add,
    /// Every copy is gone: release it (after confirming absence on every target).
    Release,
    /// Deletion in progress (or, for a dependency object nothing references, the removal
    /// of its copies): keep it until the reason is resolved, and look again.
    Hold(String),
}

/// The placement decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "value")]
pub enum Placement {
    /// Not asked (the object is not live).
    NotApplicable,
    /// The targets chosen.
    Chosen(Vec<String>),
    /// The placement plugin failed: nothing is created or deleted for this object.
    Failed(HookError),
}

/// Why a copy is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteReason {
    /// Its target is no longer chosen.
    NotPlaced,
    /// The transform leaves this target out.
    Skipped,
    /// The upstream object is being deleted.
    Deleting,
    /// The upstream object is gone.
    Orphan,
    /// The transform now names the copy differently; this one is left over.
    Renamed,
    /// A dependency object no dependent placed on this target references any more.
    Unreferenced,
}

/// What happens to one copy.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum CopyAction {
    /// No copy (in Ferry's view): create it, refusing to take over anything already there.
    Create {
        /// The body to apply (targets that get the same body share it).
        #[serde(skip)]
        body: Arc<Value>,
    },
    /// The copy differs: apply, pinned to the copy's UID.
    Update {
        /// The body to apply (targets that get the same body share it).
        #[serde(skip)]
        body: Arc<Value>,
        /// UID of the live copy.
        #[serde(skip)]
        live_uid: String,
        /// How it differs.
        changes: Changes,
    },
    /// Already as desired: no request.
    Unchanged,
    /// Delete it (UID precondition).
    Delete {
        /// UID of the copy.
        #[serde(skip)]
        uid: String,
        /// Why.
        reason: DeleteReason,
    },
    /// Terminating (another finalizer holds it): wait, never delete again.
    AwaitGone,
    /// The target does not answer: nothing is done there until it does.
    TargetUnreachable,
    /// The transform failed for this target: the copy there is kept as it is.
    Failed {
        /// The plugin's error.
        error: HookError,
    },
    /// The transform leaves this target out and there is no copy.
    Skip,
    /// Not created yet: dependencies that exist upstream are not on this target yet
    /// (a dependency is applied before its dependents). Looked at again soon.
    AwaitDependency {
        /// The dependencies it waits for (`configmaps/app-config`).
        dependencies: Vec<String>,
    },
    /// A dependency object's copy on a target no known dependent needs, kept because the
    /// knowledge is incomplete (a store not listed, a dependent's plugin failing).
    Held {
        /// Why.
        reason: String,
    },
}

/// One copy's plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CopyPlan {
    /// Target name.
    pub target: String,
    /// Downstream namespace.
    pub namespace: String,
    /// Downstream name.
    pub name: String,
    /// What happens.
    #[serde(flatten)]
    pub action: CopyAction,
}

impl CopyPlan {
    /// Where the copy is.
    pub fn at(&self) -> CopyRef {
        CopyRef {
            target: self.target.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// The upstream status.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum StatusPlan {
    /// Nothing to write (not live, no status plugin, or it returned nothing).
    None,
    /// Already as aggregated.
    Unchanged,
    /// Write this status (pinned to the object's UID).
    Write {
        /// The aggregated status.
        value: Value,
    },
    /// The status plugin failed.
    Failed {
        /// The plugin's error.
        error: HookError,
    },
}

/// The [`MISSING_DEPENDENCIES`] annotation on the upstream object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "value")]
pub enum MissingPlan {
    /// Nothing to write (as it should be, or not known).
    Keep,
    /// Set it to this list.
    Set(String),
    /// Remove it: every dependency exists now.
    Remove,
}

/// Everything Ferry should do for one upstream object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// The object.
    pub key: UpstreamKey,
    /// Its state.
    pub upstream: UpstreamState,
    /// The finalizer.
    pub finalizer: FinalizerPlan,
    /// Placement.
    pub placement: Placement,
    /// Per copy.
    pub copies: Vec<CopyPlan>,
    /// The upstream status.
    pub status: StatusPlan,
    /// For a dependency object: the dependents it is placed for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependents: Option<DependentsPlacement>,
    /// For a dependent: the configured dependency objects it references that do not exist
    /// (`configmaps/app-config`). Reported as an Event and in [`MISSING_DEPENDENCIES`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// The [`MISSING_DEPENDENCIES`] annotation.
    pub missing_annotation: MissingPlan,
    /// The `dependencies` plugin failed (its previous answer, if any, was used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependencies_error: Option<HookError>,
}

impl Plan {
    /// Whether carrying it out would send any mutating request.
    pub fn writes(&self) -> bool {
        matches!(self.finalizer, FinalizerPlan::Add | FinalizerPlan::Release)
            || matches!(self.status, StatusPlan::Write { .. })
            || self.missing_annotation != MissingPlan::Keep
            || self.copies.iter().any(|c| {
                matches!(
                    c.action,
                    CopyAction::Create { .. }
                        | CopyAction::Update { .. }
                        | CopyAction::Delete { .. }
                )
            })
    }

    /// The plugin errors in it (reported on the object).
    pub fn plugin_errors(&self) -> Vec<&HookError> {
        let mut out = Vec::new();
        if let Placement::Failed(error) = &self.placement {
            out.push(error);
        }
        if let Some(error) = &self.dependencies_error {
            out.push(error);
        }
        for copy in &self.copies {
            if let CopyAction::Failed { error } = &copy.action {
                out.push(error);
            }
        }
        if let StatusPlan::Failed { error } = &self.status {
            out.push(error);
        }
        out
    }
}

/// The object context plugins see.
pub fn object_context(key: &UpstreamKey, workspace: Option<&Workspace>) -> ObjectContext {
    ObjectContext {
        logical_cluster: key.cluster.clone(),
        workspace_path: workspace.and_then(|w| w.path.clone()),
        workspace_labels: workspace.map(|w| w.labels.clone()).unwrap_or_default(),
        workspace_annotations: workspace.map(|w| w.annotations.clone()).unwrap_or_default(),
        namespace: key.namespace.clone(),
        downstream_namespace: key.downstream_namespace(),
    }
}

/// Plans one object. Pure apart from the plugin calls (which are deterministic).
pub fn plan(snapshot: &Snapshot, plugins: &dyn PluginChain, cx: PlanContext<'_>) -> Plan {
    let key = &snapshot.key;
    let mut plan = Plan {
        key: key.clone(),
        upstream: UpstreamState::Live,
        finalizer: FinalizerPlan::Keep,
        placement: Placement::NotApplicable,
        copies: Vec::new(),
        status: StatusPlan::None,
        dependents: None,
        missing: Vec::new(),
        missing_annotation: MissingPlan::Keep,
        dependencies_error: None,
    };
    let targets: BTreeMap<&str, &TargetView> = snapshot
        .targets
        .iter()
        .map(|t| (t.target.name.as_str(), t))
        .collect();
    let Some(object) = &snapshot.upstream else {
        match &snapshot.absence {
            Absence::Gone => {
                plan.upstream = UpstreamState::Gone;
                plan.copies = remove_all(snapshot, &targets, DeleteReason::Orphan);
            }
            Absence::Unknown(why) => plan.upstream = UpstreamState::Unknown(why.clone()),
        }
        return plan;
    };
    let has_finalizer = object
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER);
    if object.metadata.deletion_timestamp.is_some() {
        plan.upstream = UpstreamState::Deleting;
        plan.copies = remove_all(snapshot, &targets, DeleteReason::Deleting);
        if has_finalizer {
            plan.finalizer = release_or_hold(snapshot, &plan.copies);
        }
        return plan;
    }
    // A dependency object gets the finalizer only once it is to have a copy (below): a
    // tenant's ConfigMaps and Secrets that nothing references are not Ferry's business.
    if !has_finalizer && snapshot.dependents.is_none() {
        plan.finalizer = FinalizerPlan::Add;
    }

    let value = serde_json::to_value(object.as_ref()).unwrap_or(Value::Null);
    let context = object_context(key, cx.workspace);
    let all: Vec<Target> = snapshot.targets.iter().map(|t| t.target.clone()).collect();
    // Dependents name what they need first: the memo then answers their dependency
    // objects' reconciles without another call.
    let needs = snapshot
        .dependencies
        .as_ref()
        .map(|view| needs(view, object, &context, &value, plugins, cx));
    let (chosen, held, leaving) = match &snapshot.dependents {
        Some(view) => {
            let by_dependents = place_by_dependents(
                view,
                &key.name,
                &all,
                &|dependent| object_context(dependent, cx.workspace),
                cx.memo,
            );
            let held = by_dependents.held.clone();
            let chosen = by_dependents.targets.clone();
            let leaving = by_dependents.leaving.clone();
            plan.dependents = Some(by_dependents);
            (chosen, held, leaving)
        }
        None => match place(
            key,
            object,
            &context,
            &value,
            &all,
            plugins,
            cx,
            needs.is_some(),
        ) {
            Ok(chosen) => (chosen.into_iter().collect(), None, BTreeSet::new()),
            Err(error) => {
                // Keep everything as it is: a broken plugin must not delete copies.
                plan.placement = Placement::Failed(error);
                return plan;
            }
        },
    };
    plan.placement = Placement::Chosen(chosen.iter().cloned().collect());
    if !has_finalizer && (!chosen.is_empty() || !snapshot.copies.is_empty()) {
        plan.finalizer = FinalizerPlan::Add;
    }
    let uid = object.metadata.uid.clone().unwrap_or_default();
    let namespace = context.downstream_namespace.clone();
    let mut downstream = Vec::new();
    // One transform call for every placed target that answers: a v0.2.0 plugin then sees
    // (and Ferry serialises) the object once per reconcile instead of once per target.
    let to_transform: Vec<Target> = snapshot
        .targets
        .iter()
        .filter(|view| view.reachable && chosen.contains(view.target.name.as_str()))
        .map(|view| view.target.clone())
        .collect();
    let ready = |body: &mut Value| {
        prepare(body, key, &uid, cx.owner, &namespace, cx.workspace_path());
    };
    let mut transformed = prepared_once(
        to_transform
            .iter()
            .map(|target| target.name.clone())
            .zip(plugins.transform_all(&context, &value, &to_transform)),
        ready,
    );
    for view in &snapshot.targets {
        let name = view.target.name.as_str();
        let here: Vec<&(CopyRef, Arc<DynamicObject>)> = snapshot
            .copies
            .iter()
            .filter(|(at, _)| at.target == name)
            .collect();
        if !chosen.contains(name) {
            // A dependent leaving this target takes its dependencies with it, after it.
            let held = match &held {
                None if leaving.contains(name) => {
                    Some("a dependent that references it still has a copy there".to_string())
                }
                held => held.clone(),
            };
            plan.copies
                .extend(here.iter().map(|(at, copy)| match &held {
                    // Proof, not absence of evidence: a dependent not seen (yet) may need it.
                    Some(reason)
                        if view.reachable && copy.metadata.deletion_timestamp.is_none() =>
                    {
                        CopyPlan {
                            target: at.target.clone(),
                            namespace: at.namespace.clone(),
                            name: at.name.clone(),
                            action: CopyAction::Held {
                                reason: reason.clone(),
                            },
                        }
                    }
                    _ if snapshot.dependents.is_some() => {
                        removal(at, copy, view, DeleteReason::Unreferenced)
                    }
                    _ => removal(at, copy, view, DeleteReason::NotPlaced),
                }));
            continue;
        }
        let copy_plan = |name: &str, action| CopyPlan {
            target: view.target.name.clone(),
            namespace: namespace.clone(),
            name: name.to_string(),
            action,
        };
        let last_known = |name: &str| {
            here.iter()
                .find(|(at, _)| at.name == name)
                .and_then(|(_, copy)| serde_json::to_value(copy.as_ref()).ok())
        };
        if !view.reachable {
            plan.copies
                .push(copy_plan(&key.name, CopyAction::TargetUnreachable));
            downstream.push(Downstream {
                target: view.target.clone(),
                object: last_known(&key.name),
            });
            continue;
        }
        let transformed = transformed.remove(name).unwrap_or_else(|| {
            // transform_all answered fewer targets than asked: a chain bug, not a plugin's.
            let copy = plugins.transform(&context, &value, &view.target)?;
            Ok(copy.map(|mut body| {
                ready(&mut body);
                Arc::new(body)
            }))
        });
        let desired = match transformed {
            Ok(Some(desired)) => desired,
            Ok(None) => {
                if here.is_empty() {
                    plan.copies.push(copy_plan(&key.name, CopyAction::Skip));
                }
                plan.copies.extend(
                    here.iter()
                        .map(|(at, copy)| removal(at, copy, view, DeleteReason::Skipped)),
                );
                continue;
            }
            Err(error) => {
                plan.copies
                    .push(copy_plan(&key.name, CopyAction::Failed { error }));
                downstream.push(Downstream {
                    target: view.target.clone(),
                    object: last_known(&key.name),
                });
                continue;
            }
        };
        let copy_name = desired
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(&key.name)
            .to_string();
        let live = here.iter().find(|(at, _)| at.name == copy_name);
        let action = match live {
            None => CopyAction::Create { body: desired },
            Some((_, copy)) if copy.metadata.deletion_timestamp.is_some() => CopyAction::AwaitGone,
            Some((_, copy)) => {
                let live_value = serde_json::to_value(copy.as_ref()).unwrap_or(Value::Null);
                let changes = compare(&desired, &live_value);
                if changes.any() {
                    CopyAction::Update {
                        body: desired,
                        live_uid: copy.metadata.uid.clone().unwrap_or_default(),
                        changes,
                    }
                } else {
                    CopyAction::Unchanged
                }
            }
        };
        plan.copies.push(copy_plan(&copy_name, action));
        downstream.push(Downstream {
            target: view.target.clone(),
            object: last_known(&copy_name),
        });
        plan.copies.extend(
            here.iter()
                .filter(|(at, _)| at.name != copy_name)
                .map(|(at, copy)| removal(at, copy, view, DeleteReason::Renamed)),
        );
    }
    if let Some(needs) = needs {
        needs.apply(&mut plan, object);
    }
    // A dependency object no dependent references any more is not Ferry's business again
    // once its last copy is gone: its finalizer goes, as it never came for an object nothing
    // referenced. Only on proof (every dependent answered, every target listed); while its
    // copies are being deleted the finalizer is held, so the reconcile looks again.
    if has_finalizer && snapshot.dependents.is_some() && chosen.is_empty() && held.is_none() {
        plan.finalizer = release_or_hold(snapshot, &plan.copies);
    }
    plan.status = match plugins.aggregate_status(&context, &value, &downstream) {
        Ok(None) => StatusPlan::None,
        Ok(Some(status)) => status_plan(object, &uid, status, snapshot.last_status.as_ref()),
        Err(error) => StatusPlan::Failed { error },
    };
    plan
}

/// The object's placement plugin's answer. A dependent's goes through the memo, where its
/// dependency objects' reconciles find it; a failure is a failure here (the memo's previous
/// answer is only for the dependency objects, which keep their copies on it).
#[allow(clippy::too_many_arguments)]
fn place(
    key: &UpstreamKey,
    object: &DynamicObject,
    context: &ObjectContext,
    value: &Value,
    targets: &[Target],
    plugins: &dyn PluginChain,
    cx: PlanContext<'_>,
    memoise: bool,
) -> Result<Vec<String>, HookError> {
    if !memoise {
        return plugins.place(context, value, targets);
    }
    let stamp = placement_fingerprint(&chain_fingerprint(object, context, plugins), targets);
    match cx.memo.placement(cx.resource, key, &stamp, || {
        plugins.place(context, value, targets)
    }) {
        Recall::Fresh(chosen) => Ok(chosen),
        Recall::Previous(_, error) | Recall::Failed(error) => Err(error),
    }
}

/// What a dependent needs: its `dependencies` answer checked against the dependency
/// objects of its namespace.
struct Needs {
    /// Non-optional dependencies that exist upstream, with the targets holding a copy or
    /// left out by its transform.
    present: Vec<(String, BTreeSet<String>)>,
    /// Non-optional dependencies that do not exist; `None` when that is not known (the
    /// plugin failed without an earlier answer, or a dependency store is not listed).
    missing: Option<Vec<String>>,
    /// The plugin's failure.
    error: Option<HookError>,
}

fn needs(
    view: &DependenciesView,
    object: &DynamicObject,
    context: &ObjectContext,
    value: &Value,
    plugins: &dyn PluginChain,
    cx: PlanContext<'_>,
) -> Needs {
    let key = UpstreamKey::new(
        context.logical_cluster.clone(),
        context.namespace.clone(),
        object.metadata.name.clone().unwrap_or_default(),
    );
    let stamp = chain_fingerprint(object, context, plugins);
    let answer = cx.memo.dependencies(cx.resource, &key, &stamp, || {
        plugins.dependencies(context, value)
    });
    let mut needs = Needs {
        present: Vec::new(),
        missing: None,
        error: answer.error().cloned(),
    };
    let Some(references) = answer.value() else {
        return needs;
    };
    let mut missing = Some(Vec::new());
    for reference in merge(references) {
        // References to resources not configured as dependencies are ignored.
        let Some(resource) = view
            .resources
            .get(&crate::dependencies::resource_of(&reference))
        else {
            continue;
        };
        if reference.optional {
            continue;
        }
        match resource.objects.get(&reference.name) {
            // A target its transform skips is as good as one holding it: it never comes.
            Some(state) => needs.present.push((
                describe(&reference),
                state.on.union(&state.skipped).cloned().collect(),
            )),
            None if resource.listed => {
                if let Some(missing) = &mut missing {
                    missing.push(describe(&reference));
                }
            }
            None => missing = None,
        }
    }
    needs.missing = missing;
    needs
}

impl Needs {
    /// Holds back the creates whose dependencies are not on their target yet, and plans the
    /// missing-dependency report.
    fn apply(self, plan: &mut Plan, object: &DynamicObject) {
        plan.dependencies_error = self.error;
        for copy in &mut plan.copies {
            if !matches!(copy.action, CopyAction::Create { .. }) {
                continue;
            }
            let waiting: Vec<String> = self
                .present
                .iter()
                .filter(|(_, on)| !on.contains(&copy.target))
                .map(|(name, _)| name.clone())
                .collect();
            if !waiting.is_empty() {
                copy.action = CopyAction::AwaitDependency {
                    dependencies: waiting,
                };
            }
        }
        let Some(missing) = self.missing else {
            return;
        };
        let current = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MISSING_DEPENDENCIES));
        let wanted = (!missing.is_empty()).then(|| missing.join(", "));
        plan.missing_annotation = match (current, &wanted) {
            (Some(now), Some(wanted)) if now == wanted => MissingPlan::Keep,
            (_, Some(wanted)) => MissingPlan::Set(wanted.clone()),
            (Some(_), None) => MissingPlan::Remove,
            (None, None) => MissingPlan::Keep,
        };
        plan.missing = missing;
    }
}

fn status_plan(
    object: &DynamicObject,
    uid: &str,
    status: Value,
    memo: Option<&StatusMemo>,
) -> StatusPlan {
    let current = object.data.get("status").unwrap_or(&Value::Null);
    if json_eq(current, &status) {
        return StatusPlan::Unchanged;
    }
    // kcp may store less than Ferry sent (pruned unknown fields, normalised values): if
    // what is there is exactly what kcp made of this very status, writing it again would
    // change nothing and repeat forever.
    if let Some(memo) = memo
        && memo.uid == uid
        && memo.sent == digest(&status)
        && json_eq(&memo.stored.value(), current)
    {
        return StatusPlan::Unchanged;
    }
    StatusPlan::Write { value: status }
}

/// Equality of JSON values with numbers compared by value (`1` equals `1.0`).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_eq(v, w))
        }
        _ => a == b,
    }
}

fn removal(
    at: &CopyRef,
    copy: &DynamicObject,
    view: &TargetView,
    reason: DeleteReason,
) -> CopyPlan {
    let action = if !view.reachable {
        CopyAction::TargetUnreachable
    } else if copy.metadata.deletion_timestamp.is_some() {
        CopyAction::AwaitGone
    } else {
        CopyAction::Delete {
            uid: copy.metadata.uid.clone().unwrap_or_default(),
            reason,
        }
    };
    CopyPlan {
        target: at.target.clone(),
        namespace: at.namespace.clone(),
        name: at.name.clone(),
        action,
    }
}

fn remove_all(
    snapshot: &Snapshot,
    targets: &BTreeMap<&str, &TargetView>,
    reason: DeleteReason,
) -> Vec<CopyPlan> {
    // Copies are only ever seen on configured targets (those are the ones watched).
    snapshot
        .copies
        .iter()
        .filter_map(|(at, copy)| {
            let view = targets.get(at.target.as_str())?;
            Some(removal(at, copy, view, reason))
        })
        .collect()
}

fn release_or_hold(snapshot: &Snapshot, copies: &[CopyPlan]) -> FinalizerPlan {
    if !copies.is_empty() {
        let waiting = copies.len();
        return FinalizerPlan::Hold(format!(
            "waiting for {waiting} cop{} to be deleted",
            if waiting == 1 { "y" } else { "ies" }
        ));
    }
    if let Some(view) = snapshot.targets.iter().find(|t| !t.reachable) {
        return FinalizerPlan::Hold(format!("target {} does not answer", view.target.name));
    }
    if let Some(view) = snapshot.targets.iter().find(|t| !t.listed) {
        return FinalizerPlan::Hold(format!(
            "waiting for the first list of copies on {}",
            view.target.name
        ));
    }
    FinalizerPlan::Release
}

/// Each target's transform answer, with every object to apply made ready by `prepare` once
/// per distinct object: a plugin that gives several targets the same object (the usual
/// case) is answered with one shared `Value`, so the engine prepares and digests it once
/// and no target pays for a copy of it.
fn prepared_once(
    answers: impl Iterator<Item = (String, Transformed)>,
    prepare: impl Fn(&mut Value),
) -> BTreeMap<String, Transformed> {
    // First the distinct objects, each held once, so that each can be prepared in place.
    let mut distinct: Vec<Arc<Value>> = Vec::new();
    let indexed: Vec<(String, Result<Option<usize>, HookError>)> = answers
        .map(|(name, answer)| {
            let at = answer.map(|copy| {
                copy.map(
                    |body| match distinct.iter().position(|seen| Arc::ptr_eq(seen, &body)) {
                        Some(at) => at,
                        None => {
                            distinct.push(body);
                            distinct.len() - 1
                        }
                    },
                )
            });
            (name, at)
        })
        .collect();
    let prepared: Vec<Arc<Value>> = distinct
        .into_iter()
        .map(|body| {
            // Nobody else holds it any more (the chain answered and let go), so this takes
            // it without a copy; a chain that kept a handle costs one clone, not a mistake.
            let mut body = Arc::unwrap_or_clone(body);
            prepare(&mut body);
            Arc::new(body)
        })
        .collect();
    indexed
        .into_iter()
        .map(|(name, at)| (name, at.map(|at| at.map(|at| Arc::clone(&prepared[at])))))
        .collect()
}

#[cfg(test)]
mod tests;

//! Dependencies between synced resources (contract v0.2.0 `dependencies` hook).
//!
//! A resource with a `dependencies` plugin has *dependents*: each of its objects names the
//! objects it needs (ConfigMaps, Secrets, ...) in its own workspace and namespace. A resource
//! configured with `placement: dependents` has *dependency objects*: each goes exactly to the
//! union of the targets of the live dependents that reference it.
//!
//! This module holds the data the planner reads ([`DependentsView`] in a dependency object's
//! snapshot, [`DependenciesView`] in a dependent's), the pure function that computes a
//! dependency object's placement ([`place_by_dependents`]), the memo that keeps a namespace
//! with many dependents from costing a plugin call per dependent per reconcile
//! ([`HookMemo`]), and the links between resources' stores and queues ([`Links`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use ferry_core::identity::UpstreamKey;
use ferry_core::{ObjectContext, ObjectRef, Target};
use kube::api::DynamicObject;
use serde::Serialize;
use serde_json::Value;

use crate::desired::digest;
use crate::plugins::{HookError, PluginChain};
use crate::queue::WorkQueue;
use crate::store::{DownstreamStore, UpstreamStore};

/// How a resource's objects are placed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlacementSource {
    /// By the resource's placement plugin.
    #[default]
    Plugin,
    /// Wherever the objects that reference them are (`placement: dependents`).
    Dependents,
}

/// A resource as a [`ObjectRef`] names it: (API group, plural resource).
pub type ResourceId = (String, String);

/// The resource an [`ObjectRef`] points into.
pub fn resource_of(reference: &ObjectRef) -> ResourceId {
    (reference.group.clone(), reference.resource.clone())
}

/// `configmaps/app-config`, `deployments.apps/web`: how reports name a reference.
pub fn describe(reference: &ObjectRef) -> String {
    if reference.group.is_empty() {
        format!("{}/{}", reference.resource, reference.name)
    } else {
        format!(
            "{}.{}/{}",
            reference.resource, reference.group, reference.name
        )
    }
}

/// One possible dependent of a dependency object: an upstream object of a resource with a
/// `dependencies` plugin, in the same workspace and namespace.
#[derive(Clone)]
pub struct Dependent {
    /// Its resource (`deployments.apps`).
    pub resource: String,
    /// Its identity.
    pub key: UpstreamKey,
    /// The object.
    pub object: Arc<DynamicObject>,
    /// Its resource's plugin chain (its `dependencies` and `place`).
    pub plugins: Arc<dyn PluginChain>,
    /// Targets that still hold a copy of it: its dependencies stay there until it is gone
    /// (the reverse of the creation order).
    pub on: BTreeSet<String>,
}

impl fmt::Debug for Dependent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dependent")
            .field("resource", &self.resource)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What a dependency object's snapshot carries about who may need it.
#[derive(Clone, Debug, Default)]
pub struct DependentsView {
    /// The object as references name it: its resource's group and plural name.
    pub reference: ResourceId,
    /// Every upstream object of every resource with a `dependencies` plugin in the object's
    /// workspace and namespace.
    pub dependents: Vec<Dependent>,
    /// Why that list may be incomplete (a dependent resource has not listed the object's
    /// shard): then no copy is deleted for want of a reference.
    pub incomplete: Option<String>,
}

/// A dependency object as a dependent's planner sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DependencyState {
    /// Targets that hold a copy of it (not terminating).
    pub on: BTreeSet<String>,
    /// Targets its transform leaves out (`skip`): it is never coming there, so a dependent
    /// is not held back waiting for it.
    pub skipped: BTreeSet<String>,
}

/// The dependency objects of one resource in a dependent's workspace and namespace.
#[derive(Clone, Debug, Default)]
pub struct DependencyResourceView {
    /// Whether its upstream store has listed the dependent's shard: without that, an absent
    /// object is not known to be missing.
    pub listed: bool,
    /// Its live upstream objects by name.
    pub objects: BTreeMap<String, DependencyState>,
}

/// What a dependent's snapshot carries about the objects it may reference.
#[derive(Clone, Debug, Default)]
pub struct DependenciesView {
    /// Per configured dependency resource (`placement: dependents`). References to any other
    /// resource are ignored.
    pub resources: BTreeMap<ResourceId, DependencyResourceView>,
}

/// The result of a memoised hook call.
#[derive(Clone, Debug, PartialEq)]
pub enum Recall<T> {
    /// The hook's answer for this very state of the object (called now or remembered).
    Fresh(T),
    /// The hook failed now; this is its last answer for an earlier state of the object.
    Previous(T, HookError),
    /// The hook failed and never answered for this object.
    Failed(HookError),
}

impl<T> Recall<T> {
    /// The answer to act on, fresh or previous.
    pub fn value(&self) -> Option<&T> {
        match self {
            Recall::Fresh(v) | Recall::Previous(v, _) => Some(v),
            Recall::Failed(_) => None,
        }
    }

    /// The failure, if the hook failed now.
    pub fn error(&self) -> Option<&HookError> {
        match self {
            Recall::Fresh(_) => None,
            Recall::Previous(_, e) | Recall::Failed(e) => Some(e),
        }
    }
}

#[derive(Default)]
struct Remembered {
    /// (fingerprint of the state asked about, answer).
    dependencies: Option<(String, Vec<ObjectRef>)>,
    placement: Option<(String, Vec<String>)>,
    /// A dependency object's targets its last plan's transform skipped.
    skipped: BTreeSet<String>,
}

/// The last successful `dependencies` and `place` answer per dependent object.
///
/// Keyed by (resource, object) and stamped with a fingerprint of everything the answer
/// depends on: the object's UID and resourceVersion (the server changes the version on every
/// change of the object), the context plugins see (workspace path, labels, annotations) and,
/// for placement, the targets. A different fingerprint is a different question: the memo
/// answers only the same question, so it cannot be wrong after an update. A failing call
/// falls back to the last answer ([`Recall::Previous`]): the dependent keeps its previous
/// contribution instead of dropping its dependencies' copies.
#[derive(Default)]
pub struct HookMemo {
    entries: Mutex<HashMap<(String, UpstreamKey), Remembered>>,
}

impl fmt::Debug for HookMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookMemo").finish_non_exhaustive()
    }
}

/// The fingerprint of what a dependent's `dependencies` answer depends on.
pub fn fingerprint(object: &DynamicObject, context: &ObjectContext) -> String {
    let meta = &object.metadata;
    format!(
        "{}/{}/{}",
        meta.uid.as_deref().unwrap_or_default(),
        meta.resource_version.as_deref().unwrap_or_default(),
        digest(&serde_json::to_value(context).unwrap_or(Value::Null)),
    )
}

/// [`fingerprint`] for the answers of `plugins` in the version that runs now: an answer of
/// a plugin that has since been swapped (hot reload) is a different question.
pub fn chain_fingerprint(
    object: &DynamicObject,
    context: &ObjectContext,
    plugins: &dyn PluginChain,
) -> String {
    format!("{}/v{}", fingerprint(object, context), plugins.version())
}

/// The fingerprint of a placement: the object's and the targets'.
pub fn placement_fingerprint(object_fingerprint: &str, targets: &[Target]) -> String {
    format!(
        "{object_fingerprint}/{}",
        digest(&serde_json::to_value(targets).unwrap_or(Value::Null))
    )
}

impl HookMemo {
    fn recall<T: Clone>(
        &self,
        id: (String, UpstreamKey),
        fingerprint: &str,
        slot: impl Fn(&mut Remembered) -> &mut Option<(String, T)>,
        call: impl FnOnce() -> Result<T, HookError>,
    ) -> Recall<T> {
        let lock = || {
            self.entries
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        {
            let mut entries = lock();
            if let Some((seen, answer)) = entries.get_mut(&id).and_then(|r| slot(r).as_ref())
                && seen == fingerprint
            {
                return Recall::Fresh(answer.clone());
            }
        }
        // The plugin runs without the lock: other reconciles go on meanwhile.
        let result = call();
        let mut entries = lock();
        match result {
            Ok(answer) => {
                *slot(entries.entry(id).or_default()) =
                    Some((fingerprint.to_string(), answer.clone()));
                Recall::Fresh(answer)
            }
            Err(error) => match entries.get_mut(&id).and_then(|r| slot(r).clone()) {
                Some((_, previous)) => Recall::Previous(previous, error),
                None => Recall::Failed(error),
            },
        }
    }

    /// `dependencies` of `key` (of `resource`) in the state `fingerprint` names.
    pub fn dependencies(
        &self,
        resource: &str,
        key: &UpstreamKey,
        fingerprint: &str,
        call: impl FnOnce() -> Result<Vec<ObjectRef>, HookError>,
    ) -> Recall<Vec<ObjectRef>> {
        self.recall(
            (resource.to_string(), key.clone()),
            fingerprint,
            |r| &mut r.dependencies,
            call,
        )
    }

    /// `place` of `key` (of `resource`) in the state `fingerprint` names.
    pub fn placement(
        &self,
        resource: &str,
        key: &UpstreamKey,
        fingerprint: &str,
        call: impl FnOnce() -> Result<Vec<String>, HookError>,
    ) -> Recall<Vec<String>> {
        self.recall(
            (resource.to_string(), key.clone()),
            fingerprint,
            |r| &mut r.placement,
            call,
        )
    }

    /// Records the targets a dependency object's transform skips in its latest plan.
    /// Returns whether that changed (its dependents then need another look).
    pub fn record_skipped(
        &self,
        resource: &str,
        key: &UpstreamKey,
        skipped: BTreeSet<String>,
    ) -> bool {
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        let id = (resource.to_string(), key.clone());
        match entries.get_mut(&id) {
            Some(remembered) if remembered.skipped == skipped => false,
            Some(remembered) => {
                remembered.skipped = skipped;
                true
            }
            None if skipped.is_empty() => false,
            None => {
                entries.insert(
                    id,
                    Remembered {
                        skipped,
                        ..Default::default()
                    },
                );
                true
            }
        }
    }

    /// The targets a dependency object's transform skipped in its latest plan.
    pub fn skipped(&self, resource: &str, key: &UpstreamKey) -> BTreeSet<String> {
        self.entries
            .lock()
            .ok()
            .and_then(|e| {
                e.get(&(resource.to_string(), key.clone()))
                    .map(|r| r.skipped.clone())
            })
            .unwrap_or_default()
    }

    /// Forgets an object that is gone (and has no copy left).
    pub fn forget(&self, resource: &str, key: &UpstreamKey) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&(resource.to_string(), key.clone()));
        }
    }

    /// Number of objects remembered.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The references a dependent makes, merged: one per object, optional only if every
/// mention of it is (the contract's rule), in a stable order.
pub fn merge(references: &[ObjectRef]) -> Vec<ObjectRef> {
    let mut merged: BTreeMap<(String, String, String), bool> = BTreeMap::new();
    for r in references {
        let id = (r.group.clone(), r.resource.clone(), r.name.clone());
        let optional = merged.entry(id).or_insert(true);
        *optional &= r.optional;
    }
    merged
        .into_iter()
        .map(|((group, resource, name), optional)| ObjectRef {
            group,
            resource,
            name,
            optional,
        })
        .collect()
}

/// Who a dependency object is placed for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DependentsPlacement {
    /// The union of the targets of the dependents that reference it.
    pub targets: BTreeSet<String>,
    /// The dependents that reference it (`deployments.apps/web`).
    pub referenced_by: Vec<String>,
    /// Targets outside `targets` where a dependent that references it still has a copy
    /// (it is moving away): the dependency's copy there stays until the dependent's goes.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub leaving: BTreeSet<String>,
    /// Why copies on targets outside the union are kept: the list of dependents may be
    /// incomplete, or a dependent's hook failed with no earlier answer to go by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Hook failures of dependents (their previous answers were used where there were any).
    #[serde(skip)]
    pub errors: Vec<HookError>,
}

/// The placement of the dependency object `name` (of the resource `view.reference`):
/// the union over the dependents whose `dependencies` answer names it of their `place`
/// answer. Pure apart from the plugin calls, which `memo` answers when it can.
pub fn place_by_dependents(
    view: &DependentsView,
    name: &str,
    targets: &[Target],
    context_of: &dyn Fn(&UpstreamKey) -> ObjectContext,
    memo: &HookMemo,
) -> DependentsPlacement {
    let mut out = DependentsPlacement {
        held: view.incomplete.clone(),
        ..Default::default()
    };
    let (group, resource) = &view.reference;
    for dependent in &view.dependents {
        let context = context_of(&dependent.key);
        let object = serde_json::to_value(dependent.object.as_ref()).unwrap_or(Value::Null);
        let stamp = chain_fingerprint(&dependent.object, &context, dependent.plugins.as_ref());
        let references = memo.dependencies(&dependent.resource, &dependent.key, &stamp, || {
            dependent.plugins.dependencies(&context, &object)
        });
        out.errors.extend(references.error().cloned());
        let Some(references) = references.value() else {
            out.held.get_or_insert_with(|| {
                format!(
                    "the dependencies of {} {} are not known (its plugin fails)",
                    dependent.resource, dependent.key
                )
            });
            continue;
        };
        let needed = references
            .iter()
            .any(|r| &r.group == group && &r.resource == resource && r.name == name);
        if !needed {
            continue;
        }
        out.referenced_by
            .push(format!("{} {}", dependent.resource, dependent.key));
        out.leaving.extend(dependent.on.iter().cloned());
        let stamp = placement_fingerprint(&stamp, targets);
        let placed = memo.placement(&dependent.resource, &dependent.key, &stamp, || {
            dependent.plugins.place(&context, &object, targets)
        });
        out.errors.extend(placed.error().cloned());
        match placed.value() {
            Some(chosen) => out.targets.extend(chosen.iter().cloned()),
            None => {
                out.held.get_or_insert_with(|| {
                    format!(
                        "the placement of {} {} is not known (its plugin fails)",
                        dependent.resource, dependent.key
                    )
                });
            }
        }
    }
    let targets = out.targets.clone();
    out.leaving.retain(|t| !targets.contains(t));
    out
}

/// One synced resource as the others see it: enough to find its objects and wake them.
pub struct Linked {
    /// `configmaps`, `deployments.apps`.
    pub name: String,
    /// As references name it.
    pub id: ResourceId,
    /// How its objects are placed.
    pub placement: PlacementSource,
    /// Whether its objects name their dependencies.
    pub lists_dependencies: bool,
    /// Its plugin chain.
    pub plugins: Arc<dyn PluginChain>,
    /// Its upstream objects.
    pub upstream: Arc<UpstreamStore>,
    /// Its copies.
    pub downstream: Arc<DownstreamStore>,
    /// Its work queue, once the engine runs (audits have none).
    pub queue: OnceLock<WorkQueue<UpstreamKey>>,
}

/// Every synced resource of the installation, for the ones that depend on each other.
#[derive(Default)]
pub struct Links {
    /// In configuration order.
    pub resources: Vec<Linked>,
    /// Memoised `dependencies` and `place` answers of dependents.
    pub memo: HookMemo,
}

impl Links {
    /// The resources with a `dependencies` plugin.
    pub fn dependents(&self) -> impl Iterator<Item = &Linked> {
        self.resources.iter().filter(|r| r.lists_dependencies)
    }

    /// The resources placed by their dependents.
    pub fn dependencies(&self) -> impl Iterator<Item = &Linked> {
        self.resources
            .iter()
            .filter(|r| r.placement == PlacementSource::Dependents)
    }

    fn find(&self, name: &str) -> Option<&Linked> {
        self.resources.iter().find(|r| r.name == name)
    }

    /// A dependency object's snapshot part: its possible dependents, and whether that list
    /// is complete (every dependent resource has listed the shard `shard`).
    pub fn dependents_of(
        &self,
        resource: &str,
        key: &UpstreamKey,
        shard: Option<&str>,
    ) -> Option<DependentsView> {
        let linked = self.find(resource)?;
        if linked.placement != PlacementSource::Dependents {
            return None;
        }
        let mut view = DependentsView {
            reference: linked.id.clone(),
            ..Default::default()
        };
        for dependent in self.dependents() {
            if !shard.is_some_and(|s| dependent.upstream.listed(s)) {
                view.incomplete.get_or_insert_with(|| {
                    format!(
                        "the {} of this workspace are not all listed yet",
                        dependent.name
                    )
                });
            }
            view.dependents.extend(
                dependent
                    .upstream
                    .in_namespace(&key.cluster, &key.namespace)
                    .into_iter()
                    .map(|(key, upstream)| Dependent {
                        on: dependent
                            .downstream
                            .copy_places(&key)
                            .into_iter()
                            .map(|(at, _)| at.target)
                            .collect(),
                        resource: dependent.name.clone(),
                        key,
                        object: upstream.object,
                        plugins: dependent.plugins.clone(),
                    }),
            );
        }
        Some(view)
    }

    /// A dependent's snapshot part: the dependency objects of its workspace and namespace
    /// and which targets hold them.
    pub fn dependencies_of(
        &self,
        resource: &str,
        key: &UpstreamKey,
        shard: Option<&str>,
    ) -> Option<DependenciesView> {
        if !self.find(resource)?.lists_dependencies {
            return None;
        }
        let mut view = DependenciesView::default();
        for dependency in self.dependencies() {
            let objects = dependency
                .upstream
                .keys_in_namespace(&key.cluster, &key.namespace)
                .into_iter()
                .filter(|(_, deleting)| !deleting)
                .map(|(key, _)| {
                    let on = dependency
                        .downstream
                        .copy_places(&key)
                        .into_iter()
                        .filter(|(_, deleting)| !deleting)
                        .map(|(at, _)| at.target)
                        .collect();
                    let skipped = self.memo.skipped(&dependency.name, &key);
                    (key.name, DependencyState { on, skipped })
                })
                .collect();
            view.resources.insert(
                dependency.id.clone(),
                DependencyResourceView {
                    listed: shard.is_some_and(|s| dependency.upstream.listed(s)),
                    objects,
                },
            );
        }
        Some(view)
    }

    /// Keys of `resource` in one namespace were touched: wakes the objects whose plan may
    /// change with it. A dependent's `structural` change (upstream, or a copy gone) can add
    /// or remove a reference to, or release the copy on a target of, any dependency object
    /// of its namespace; an update of its copies (their status, every few seconds) cannot,
    /// and wakes nothing. A dependency object's change (created, deleted, its copy arrived
    /// on a target) can release a dependent that waits for it or clear a missing-dependency
    /// report.
    pub fn touched(&self, resource: &str, cluster: &str, namespace: &str, structural: bool) {
        let Some(linked) = self.find(resource) else {
            return;
        };
        let mut wake: Vec<&Linked> = Vec::new();
        if linked.lists_dependencies && structural {
            wake.extend(self.dependencies());
        }
        if linked.placement == PlacementSource::Dependents {
            wake.extend(self.dependents());
        }
        for other in wake {
            let Some(queue) = other.queue.get() else {
                continue;
            };
            for (key, _) in other.upstream.keys_in_namespace(cluster, namespace) {
                queue.add(key);
            }
        }
    }
}

#[cfg(test)]
mod tests;

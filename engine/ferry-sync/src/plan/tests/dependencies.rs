//! The planner's dependency rules: a dependency object's placement is the union of the
//! placements of the dependents that reference it; it is deleted only on complete
//! knowledge; a dependent's create waits for its dependencies; a missing dependency is
//! reported. Dependents here carry their answers in their spec (`refs`, `targets`), read
//! by a fake chain that counts its calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_core::ObjectRef;
use proptest::prelude::*;

use super::*;
use crate::dependencies::{
    DependenciesView, DependencyResourceView, DependencyState, Dependent, DependentsView,
};

/// A dependent's plugin chain: `dependencies` answers `spec.refs` (`"configmaps/name"`,
/// `"?configmaps/name"` for optional), `place` answers `spec.targets`; `spec.fail` makes
/// both fail.
#[derive(Default)]
struct Refs {
    dependencies_calls: AtomicUsize,
    place_calls: AtomicUsize,
    /// The chain's version: a hot reload bumps it.
    version: std::sync::atomic::AtomicU64,
}

fn fails(object: &Value) -> bool {
    object.pointer("/spec/fail") == Some(&json!(true))
}

impl PluginChain for Refs {
    fn place(
        &self,
        _: &ObjectContext,
        object: &Value,
        _: &[Target],
    ) -> Result<Vec<String>, HookError> {
        self.place_calls.fetch_add(1, Ordering::SeqCst);
        if fails(object) {
            return Err(failure(Hook::Place));
        }
        Ok(strings(object, "/spec/targets"))
    }
    fn transform(
        &self,
        _: &ObjectContext,
        object: &Value,
        _: &Target,
    ) -> Result<Option<Value>, HookError> {
        Ok(Some(object.clone()))
    }
    fn aggregate_status(
        &self,
        _: &ObjectContext,
        _: &Value,
        _: &[Downstream],
    ) -> Result<Option<Value>, HookError> {
        Ok(None)
    }
    fn dependencies(&self, _: &ObjectContext, object: &Value) -> Result<Vec<ObjectRef>, HookError> {
        self.dependencies_calls.fetch_add(1, Ordering::SeqCst);
        if fails(object) {
            return Err(failure(Hook::Dependencies));
        }
        Ok(strings(object, "/spec/refs")
            .iter()
            .map(|r| reference(r))
            .collect())
    }
    fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
}

fn strings(object: &Value, pointer: &str) -> Vec<String> {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `"configmaps/a"`, `"apps.deployments/a"` (group first), `"?secrets/b"` (optional).
fn reference(text: &str) -> ObjectRef {
    let (optional, text) = match text.strip_prefix('?') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (resource, name) = text.split_once('/').expect("resource/name");
    let (group, resource) = resource.rsplit_once('.').unwrap_or(("", resource));
    ObjectRef {
        group: group.into(),
        resource: resource.into(),
        name: name.into(),
        optional,
    }
}

/// A Deployment `name` in lc-a/demo referencing `refs`, placed on `targets`.
fn dependent_object(name: &str, version: u32, refs: &[&str], targets: &[&str]) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "demo", "uid": format!("uid-{name}"),
            "resourceVersion": version.to_string(), "finalizers": [FINALIZER],
            "annotations": {"kcp.io/cluster": "lc-a"}},
        "spec": {"refs": refs, "targets": targets},
    }))
    .expect("dependent")
}

fn dependent(chain: &Arc<Refs>, object: DynamicObject) -> Dependent {
    Dependent {
        resource: "deployments.apps".into(),
        key: UpstreamKey::new(
            "lc-a",
            "demo",
            object.metadata.name.clone().unwrap_or_default(),
        ),
        object: Arc::new(object),
        plugins: chain.clone(),
        on: BTreeSet::new(),
    }
}

/// The ConfigMap `name` in lc-a/demo (with Ferry's finalizer).
fn config_map(name: &str) -> Arc<DynamicObject> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "demo", "uid": format!("uid-{name}"),
                "resourceVersion": "3", "finalizers": [FINALIZER],
                "annotations": {"kcp.io/cluster": "lc-a"}},
            "data": {"k": "v"},
        }))
        .expect("config map"),
    )
}

/// The snapshot of ConfigMap `name` with these possible dependents, on targets c1..c3.
fn dependency_snapshot(name: &str, dependents: Vec<Dependent>) -> Snapshot {
    Snapshot {
        key: UpstreamKey::new("lc-a", "demo", name),
        upstream: Some(config_map(name)),
        absence: Absence::Gone,
        copies: Vec::new(),
        targets: targets(&["c1", "c2", "c3"]),
        last_status: None,
        dependents: Some(DependentsView {
            reference: (String::new(), "configmaps".into()),
            dependents,
            incomplete: None,
        }),
        dependencies: None,
    }
}

fn dependency_cx(memo: &HookMemo) -> PlanContext<'_> {
    PlanContext {
        resource: "configmaps",
        ..cx_with(memo)
    }
}

fn chosen(plan: &Plan) -> Vec<String> {
    match &plan.placement {
        Placement::Chosen(targets) => targets.clone(),
        other => panic!("not chosen: {other:?}"),
    }
}

/// A copy of the dependency on `target`, as Ferry applied it.
fn dependency_copy(name: &str, target: &str) -> (CopyRef, Arc<DynamicObject>) {
    let chain = Arc::new(Refs::default());
    let everywhere = dependency_snapshot(
        name,
        vec![dependent(
            &chain,
            dependent_object(
                "all",
                1,
                &[&format!("configmaps/{name}")],
                &["c1", "c2", "c3"],
            ),
        )],
    );
    let memo = HookMemo::default();
    let plan = plan(&everywhere, &Fake::default(), dependency_cx(&memo));
    applied_copy(&plan, target)
}

#[test]
fn a_dependency_goes_to_exactly_the_union_of_the_targets_of_the_dependents_that_reference_it() {
    let chain = Arc::new(Refs::default());
    let snapshot = dependency_snapshot(
        "app-config",
        vec![
            dependent(
                &chain,
                dependent_object("web", 1, &["configmaps/app-config"], &["c1"]),
            ),
            dependent(
                &chain,
                dependent_object("api", 1, &["configmaps/app-config", "secrets/db"], &["c2"]),
            ),
            // References something else: its target is not the ConfigMap's.
            dependent(
                &chain,
                dependent_object("batch", 1, &["configmaps/other"], &["c3"]),
            ),
            // A Secret of the same name is not this ConfigMap.
            dependent(
                &chain,
                dependent_object("job", 1, &["secrets/app-config"], &["c3"]),
            ),
        ],
    );
    let memo = HookMemo::default();
    let plan = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert_eq!(chosen(&plan), vec!["c1", "c2"]);
    assert_eq!(actions(&plan), pairs(&[("c1", "create"), ("c2", "create")]));
    let dependents = plan.dependents.as_ref().expect("placed by dependents");
    assert_eq!(
        dependents.referenced_by,
        vec![
            "deployments.apps lc-a|demo/web",
            "deployments.apps lc-a|demo/api"
        ]
    );
    assert_eq!(dependents.held, None);
    // Its own placement plugin is never asked.
    let fake = Fake {
        place: Box::new(|_, _| panic!("a dependency has no placement plugin")),
        ..Fake::default()
    };
    let again = super::plan(&snapshot, &fake, dependency_cx(&memo));
    assert_eq!(chosen(&again), vec!["c1", "c2"]);
}

#[test]
fn a_dependency_no_longer_referenced_on_a_target_is_deleted_there_and_kept_where_it_still_is() {
    let chain = Arc::new(Refs::default());
    let mut snapshot = dependency_snapshot(
        "app-config",
        // `web` (on c1) is gone; `api` on c2 still references it.
        vec![dependent(
            &chain,
            dependent_object("api", 1, &["configmaps/app-config"], &["c2"]),
        )],
    );
    snapshot.copies = vec![
        dependency_copy("app-config", "c1"),
        dependency_copy("app-config", "c2"),
    ];
    let memo = HookMemo::default();
    let plan = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert_eq!(
        actions(&plan),
        pairs(&[("c1", "delete:Unreferenced"), ("c2", "unchanged")])
    );
}

#[test]
fn a_dependency_leaves_a_target_only_after_the_dependent_that_moved_away_from_it() {
    let chain = Arc::new(Refs::default());
    // `web` moved from c1 to c2; its copy on c1 is not deleted yet.
    let mut moving = dependent(
        &chain,
        dependent_object("web", 2, &["configmaps/app-config"], &["c2"]),
    );
    moving.on = ["c1".to_string()].into();
    let mut snapshot = dependency_snapshot("app-config", vec![moving.clone()]);
    snapshot.copies = vec![dependency_copy("app-config", "c1")];
    let memo = HookMemo::default();
    let plan_moving = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert_eq!(
        actions(&plan_moving),
        pairs(&[("c1", "held"), ("c2", "create")])
    );
    // Its copy on c1 is gone: the dependency goes too.
    moving.on = ["c2".to_string()].into();
    snapshot.dependents = Some(DependentsView {
        reference: (String::new(), "configmaps".into()),
        dependents: vec![moving],
        incomplete: None,
    });
    let plan_moved = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert_eq!(
        actions(&plan_moved),
        pairs(&[("c1", "delete:Unreferenced"), ("c2", "create")])
    );
}

#[test]
fn a_dependency_nobody_references_is_placed_nowhere() {
    let chain = Arc::new(Refs::default());
    let mut snapshot = dependency_snapshot(
        "lonely",
        vec![dependent(
            &chain,
            dependent_object("web", 1, &["configmaps/app-config"], &["c1"]),
        )],
    );
    let memo = HookMemo::default();
    let plan_without = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert!(chosen(&plan_without).is_empty());
    assert!(plan_without.copies.is_empty(), "{:?}", plan_without.copies);
    snapshot.copies = vec![dependency_copy("lonely", "c3")];
    let plan = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert_eq!(actions(&plan), pairs(&[("c3", "delete:Unreferenced")]));
}

#[test]
fn a_dependency_gets_ferrys_finalizer_only_once_it_is_to_have_a_copy() {
    let chain = Arc::new(Refs::default());
    let memo = HookMemo::default();
    let mut object = (*config_map("app-config")).clone();
    object.metadata.finalizers = None;
    let mut snapshot = dependency_snapshot("app-config", Vec::new());
    snapshot.upstream = Some(Arc::new(object));
    let nobody = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert_eq!(nobody.finalizer, FinalizerPlan::Keep);
    assert!(!nobody.writes(), "{nobody:?}");
    if let Some(view) = &mut snapshot.dependents {
        view.dependents = vec![dependent(
            &chain,
            dependent_object("web", 1, &["configmaps/app-config"], &["c1"]),
        )];
    }
    let needed = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert_eq!(needed.finalizer, FinalizerPlan::Add);
    assert_eq!(actions(&needed), pairs(&[("c1", "create")]));
}

#[test]
fn a_dependency_no_longer_referenced_drops_ferrys_finalizer_once_its_last_copy_is_gone() {
    let chain = Arc::new(Refs::default());
    let memo = HookMemo::default();
    // `web` no longer references it; its copy on c1 is still there.
    let mut snapshot = dependency_snapshot(
        "app-config",
        vec![dependent(
            &chain,
            dependent_object("web", 2, &["configmaps/other"], &["c1"]),
        )],
    );
    snapshot.copies = vec![dependency_copy("app-config", "c1")];
    let deleting = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert_eq!(actions(&deleting), pairs(&[("c1", "delete:Unreferenced")]));
    assert!(
        matches!(&deleting.finalizer, FinalizerPlan::Hold(r) if r.contains("1 copy")),
        "a copy is left, and the reconcile looks again: {:?}",
        deleting.finalizer
    );
    // The copy is gone: the finalizer goes too, and the object stays.
    snapshot.copies.clear();
    let released = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert!(released.copies.is_empty(), "{:?}", released.copies);
    assert_eq!(released.finalizer, FinalizerPlan::Release);
    // Not while a dependent store is not listed: an unseen dependent may still need it.
    if let Some(view) = &mut snapshot.dependents {
        view.incomplete = Some("not listed".into());
    }
    let unproven = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert_eq!(unproven.finalizer, FinalizerPlan::Keep);
    // Nor while a target has not been listed (a copy there would be unknown).
    if let Some(view) = &mut snapshot.dependents {
        view.incomplete = None;
    }
    snapshot.targets[0].listed = false;
    let unlisted = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert!(
        matches!(&unlisted.finalizer, FinalizerPlan::Hold(r) if r.contains("first list")),
        "{:?}",
        unlisted.finalizer
    );
}

#[test]
fn a_dependency_is_never_deleted_while_its_dependents_are_not_all_listed() {
    let chain = Arc::new(Refs::default());
    let mut snapshot = dependency_snapshot(
        "app-config",
        vec![dependent(
            &chain,
            dependent_object("api", 1, &["configmaps/app-config"], &["c2"]),
        )],
    );
    snapshot.copies = vec![dependency_copy("app-config", "c1")];
    if let Some(view) = &mut snapshot.dependents {
        view.incomplete =
            Some("the deployments.apps of this workspace are not all listed yet".into());
    }
    let memo = HookMemo::default();
    let plan = plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    // What is known is still acted on: c2 gets its copy; c1's is kept.
    assert_eq!(actions(&plan), pairs(&[("c1", "held"), ("c2", "create")]));
    assert!(
        matches!(&plan.copies[0].action, CopyAction::Held { reason } if reason.contains("not all listed"))
    );
}

#[test]
fn a_dependent_whose_hooks_fail_keeps_its_previous_contribution() {
    let chain = Arc::new(Refs::default());
    let memo = HookMemo::default();
    let before = dependency_snapshot(
        "app-config",
        vec![dependent(
            &chain,
            dependent_object("web", 1, &["configmaps/app-config"], &["c1"]),
        )],
    );
    assert_eq!(
        chosen(&plan(&before, &Fake::default(), dependency_cx(&memo))),
        vec!["c1"]
    );

    // `web` changed and its plugins now fail: it still counts as it did.
    let mut failing = dependent_object("web", 2, &[], &[]);
    failing.data["spec"]["fail"] = json!(true);
    let mut after = dependency_snapshot("app-config", vec![dependent(&chain, failing.clone())]);
    after.copies = vec![dependency_copy("app-config", "c1")];
    let plan_after = plan(&after, &Fake::default(), dependency_cx(&memo));
    assert_eq!(chosen(&plan_after), vec!["c1"]);
    assert_eq!(actions(&plan_after), pairs(&[("c1", "unchanged")]));
    // Both of its hooks failed (and were answered from before).
    assert_eq!(
        plan_after.dependents.as_ref().map(|d| d.errors.len()),
        Some(2)
    );

    // Never answered: nothing is known about it, so no copy is deleted.
    let fresh = HookMemo::default();
    let unknown = plan(&after, &Fake::default(), dependency_cx(&fresh));
    assert_eq!(actions(&unknown), pairs(&[("c1", "held")]));
}

#[test]
fn hook_answers_are_remembered_per_dependent_state_and_asked_again_after_an_update() {
    let chain = Arc::new(Refs::default());
    let memo = HookMemo::default();
    let many: Vec<Dependent> = (0..50)
        .map(|i| {
            dependent(
                &chain,
                dependent_object(
                    &format!("web-{i}"),
                    1,
                    &["configmaps/a", "configmaps/b"],
                    &["c1"],
                ),
            )
        })
        .collect();
    // Two ConfigMaps, each reconciled twice: every dependent is asked once per hook.
    for name in ["a", "b", "a", "b"] {
        let plan = plan(
            &dependency_snapshot(name, many.clone()),
            &Fake::default(),
            dependency_cx(&memo),
        );
        assert_eq!(chosen(&plan), vec!["c1"]);
    }
    assert_eq!(chain.dependencies_calls.load(Ordering::SeqCst), 50);
    assert_eq!(chain.place_calls.load(Ordering::SeqCst), 50);

    // One dependent changes (new resourceVersion): it alone is asked again, and its new
    // answer counts at once (it moved to c2 and dropped `b`).
    let mut changed = many.clone();
    changed[0] = dependent(
        &chain,
        dependent_object("web-0", 2, &["configmaps/a"], &["c2"]),
    );
    let a = plan(
        &dependency_snapshot("a", changed.clone()),
        &Fake::default(),
        dependency_cx(&memo),
    );
    assert_eq!(chosen(&a), vec!["c1", "c2"]);
    let b = plan(
        &dependency_snapshot("b", changed),
        &Fake::default(),
        dependency_cx(&memo),
    );
    assert_eq!(chosen(&b), vec!["c1"]);
    assert_eq!(chain.dependencies_calls.load(Ordering::SeqCst), 51);
    assert_eq!(chain.place_calls.load(Ordering::SeqCst), 51);
}

#[test]
fn answers_of_a_plugin_since_swapped_are_not_reused() {
    let chain = Arc::new(Refs::default());
    let memo = HookMemo::default();
    let snapshot = dependency_snapshot(
        "a",
        vec![dependent(
            &chain,
            dependent_object("web", 1, &["configmaps/a"], &["c1"]),
        )],
    );
    plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert_eq!(chain.dependencies_calls.load(Ordering::SeqCst), 1);
    assert_eq!(chain.place_calls.load(Ordering::SeqCst), 1);
    // A hot reload: the same object, the same context, another component answers.
    chain.version.store(1, Ordering::SeqCst);
    plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    assert_eq!(chain.dependencies_calls.load(Ordering::SeqCst), 2);
    assert_eq!(chain.place_calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_changed_workspace_context_is_a_new_question_for_the_memo() {
    let chain = Arc::new(Refs::default());
    let memo = HookMemo::default();
    let snapshot = dependency_snapshot(
        "a",
        vec![dependent(
            &chain,
            dependent_object("web", 1, &["configmaps/a"], &["c1"]),
        )],
    );
    plan(&snapshot, &Fake::default(), dependency_cx(&memo));
    let workspace = crate::workspaces::Workspace {
        path: Some("root:org-eu".into()),
        ..Default::default()
    };
    let with_path = PlanContext {
        workspace: Some(&workspace),
        ..dependency_cx(&memo)
    };
    plan(&snapshot, &Fake::default(), with_path);
    assert_eq!(chain.dependencies_calls.load(Ordering::SeqCst), 2);
}

/// The snapshot of the Deployment `web` with the ConfigMaps of its namespace.
fn dependent_snapshot(refs: &[&str], config_maps: &[(&str, &[&str])], listed: bool) -> Snapshot {
    let object = dependent_object("web", 7, refs, &["c1", "c2"]);
    let objects = config_maps
        .iter()
        .map(|(name, on)| {
            (
                name.to_string(),
                DependencyState {
                    on: on.iter().map(|t| t.to_string()).collect(),
                    skipped: BTreeSet::new(),
                },
            )
        })
        .collect();
    Snapshot {
        key: key(),
        upstream: Some(Arc::new(object)),
        absence: Absence::Gone,
        copies: Vec::new(),
        targets: targets(&["c1", "c2"]),
        last_status: None,
        dependents: None,
        dependencies: Some(DependenciesView {
            resources: BTreeMap::from([(
                (String::new(), "configmaps".to_string()),
                DependencyResourceView { listed, objects },
            )]),
        }),
    }
}

#[test]
fn a_dependent_is_created_on_a_target_only_once_its_dependencies_are_there() {
    let snapshot = dependent_snapshot(
        &["configmaps/app-config", "configmaps/extra"],
        &[("app-config", &["c1", "c2"]), ("extra", &["c1"])],
        true,
    );
    let chain = Refs::default();
    let plan = plan(&snapshot, &chain, cx());
    assert_eq!(
        actions(&plan),
        pairs(&[("c1", "create"), ("c2", "await:configmaps/extra")])
    );
    assert!(plan.missing.is_empty());
    assert_eq!(plan.missing_annotation, MissingPlan::Keep);
}

#[test]
fn a_dependent_is_not_held_back_on_a_target_its_dependencys_transform_skips() {
    let mut snapshot =
        dependent_snapshot(&["configmaps/app-config"], &[("app-config", &["c1"])], true);
    let waiting = plan(&snapshot, &Refs::default(), cx());
    assert_eq!(
        actions(&waiting),
        pairs(&[("c1", "create"), ("c2", "await:configmaps/app-config")])
    );
    // The ConfigMap's transform leaves c2 out: it never comes there, nothing to wait for.
    if let Some(view) = &mut snapshot.dependencies {
        for resource in view.resources.values_mut() {
            for state in resource.objects.values_mut() {
                state.skipped = ["c2".to_string()].into();
            }
        }
    }
    let plan = plan(&snapshot, &Refs::default(), cx());
    assert_eq!(actions(&plan), pairs(&[("c1", "create"), ("c2", "create")]));
}

#[test]
fn an_update_of_an_existing_copy_is_not_held_back_by_a_dependency() {
    let mut snapshot = dependent_snapshot(&["configmaps/app-config"], &[("app-config", &[])], true);
    let first = plan(&dependent_snapshot(&[], &[], true), &Refs::default(), cx());
    snapshot.copies = vec![applied_copy(&first, "c1")];
    let plan = plan(&snapshot, &Refs::default(), cx());
    assert_eq!(
        actions(&plan),
        pairs(&[("c1", "update"), ("c2", "await:configmaps/app-config")])
    );
}

#[test]
fn optional_and_unconfigured_dependencies_hold_nothing_back_and_are_not_reported() {
    let snapshot = dependent_snapshot(
        &[
            "?configmaps/app-config",
            "?configmaps/absent",
            "secrets/not-synced",
            "apps.deployments/x",
        ],
        &[("app-config", &[])],
        true,
    );
    let plan = plan(&snapshot, &Refs::default(), cx());
    assert_eq!(actions(&plan), pairs(&[("c1", "create"), ("c2", "create")]));
    assert!(plan.missing.is_empty());
}

#[test]
fn a_reference_optional_in_one_place_and_required_in_another_is_required() {
    let snapshot = dependent_snapshot(
        &["?configmaps/app-config", "configmaps/app-config"],
        &[("app-config", &["c2"])],
        true,
    );
    let plan = plan(&snapshot, &Refs::default(), cx());
    assert_eq!(
        actions(&plan),
        pairs(&[("c1", "await:configmaps/app-config"), ("c2", "create")])
    );
}

#[test]
fn a_missing_dependency_is_reported_without_holding_the_dependent_back_and_cleared_when_it_appears()
{
    let missing = dependent_snapshot(&["configmaps/absent", "configmaps/gone"], &[], true);
    let plan_missing = plan(&missing, &Refs::default(), cx());
    assert_eq!(
        actions(&plan_missing),
        pairs(&[("c1", "create"), ("c2", "create")])
    );
    assert_eq!(
        plan_missing.missing,
        vec!["configmaps/absent", "configmaps/gone"]
    );
    assert_eq!(
        plan_missing.missing_annotation,
        MissingPlan::Set("configmaps/absent, configmaps/gone".into())
    );
    assert!(plan_missing.writes());

    // Already reported: no write.
    let mut reported = missing.clone();
    let mut object = (**reported.upstream.as_ref().expect("object")).clone();
    object
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            MISSING_DEPENDENCIES.into(),
            "configmaps/absent, configmaps/gone".into(),
        );
    reported.upstream = Some(Arc::new(object.clone()));
    assert_eq!(
        plan(&reported, &Refs::default(), cx()).missing_annotation,
        MissingPlan::Keep
    );

    // Both appear: the report is removed.
    let mut appeared = dependent_snapshot(
        &["configmaps/absent", "configmaps/gone"],
        &[("absent", &["c1", "c2"]), ("gone", &["c1", "c2"])],
        true,
    );
    appeared.upstream = Some(Arc::new(object));
    let plan_appeared = plan(&appeared, &Refs::default(), cx());
    assert!(plan_appeared.missing.is_empty());
    assert_eq!(plan_appeared.missing_annotation, MissingPlan::Remove);
}

#[test]
fn a_dependency_not_in_an_unlisted_store_is_not_called_missing() {
    let snapshot = dependent_snapshot(&["configmaps/absent"], &[], false);
    let plan = plan(&snapshot, &Refs::default(), cx());
    assert!(plan.missing.is_empty());
    assert_eq!(plan.missing_annotation, MissingPlan::Keep);
    assert_eq!(actions(&plan), pairs(&[("c1", "create"), ("c2", "create")]));
}

#[test]
fn a_failing_dependencies_plugin_is_reported_and_holds_nothing_back() {
    let mut snapshot = dependent_snapshot(&["configmaps/app-config"], &[("app-config", &[])], true);
    let mut object = (**snapshot.upstream.as_ref().expect("object")).clone();
    object.data["spec"]["fail"] = json!(true);
    snapshot.upstream = Some(Arc::new(object));
    let chain = Fake {
        place: Box::new(|_, _| Ok(vec!["c1".into()])),
        ..Fake::default()
    };
    struct FailingDependencies(Fake);
    impl PluginChain for FailingDependencies {
        fn place(
            &self,
            c: &ObjectContext,
            o: &Value,
            t: &[Target],
        ) -> Result<Vec<String>, HookError> {
            self.0.place(c, o, t)
        }
        fn transform(
            &self,
            c: &ObjectContext,
            o: &Value,
            t: &Target,
        ) -> Result<Option<Value>, HookError> {
            self.0.transform(c, o, t)
        }
        fn aggregate_status(
            &self,
            c: &ObjectContext,
            o: &Value,
            d: &[Downstream],
        ) -> Result<Option<Value>, HookError> {
            self.0.aggregate_status(c, o, d)
        }
        fn dependencies(&self, _: &ObjectContext, _: &Value) -> Result<Vec<ObjectRef>, HookError> {
            Err(failure(Hook::Dependencies))
        }
    }
    let plan = plan(&snapshot, &FailingDependencies(chain), cx());
    assert_eq!(actions(&plan), pairs(&[("c1", "create")]));
    assert_eq!(plan.plugin_errors().len(), 1);
    assert_eq!(plan.plugin_errors()[0].hook, Hook::Dependencies);
    assert_eq!(plan.missing_annotation, MissingPlan::Keep);
}

const NAMES: [&str; 3] = ["a", "b", "c"];
const TARGETS: [&str; 3] = ["c1", "c2", "c3"];

/// One random dependent: which ConfigMaps it references, where it is placed, whether its
/// hooks fail now (after having answered before, or never).
#[derive(Clone, Debug)]
struct RandomDependent {
    refs: Vec<usize>,
    targets: Vec<usize>,
    answered_before: bool,
    fails_now: bool,
}

fn random_dependent() -> impl Strategy<Value = RandomDependent> {
    (
        proptest::sample::subsequence(vec![0usize, 1, 2], 0..=3),
        proptest::sample::subsequence(vec![0usize, 1, 2], 0..=3),
        any::<bool>(),
        proptest::bool::weighted(0.2),
    )
        .prop_map(
            |(refs, targets, answered_before, fails_now)| RandomDependent {
                refs,
                targets,
                answered_before,
                fails_now,
            },
        )
}

fn object_for(i: usize, d: &RandomDependent, version: u32, fail: bool) -> DynamicObject {
    let refs: Vec<String> = d
        .refs
        .iter()
        .map(|r| format!("configmaps/{}", NAMES[*r]))
        .collect();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let targets: Vec<&str> = d.targets.iter().map(|t| TARGETS[*t]).collect();
    let mut object = dependent_object(&format!("d{i}"), version, &refs, &targets);
    if fail {
        object.data["spec"]["fail"] = json!(true);
    }
    object
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// For random dependents, references, placements, hook failures, existing copies and
    /// listed or unlisted stores, each dependency object's planned targets equal the union a
    /// naive oracle computes, and no copy is deleted unless every answer is known and every
    /// store listed.
    #[test]
    fn dependency_placement_is_the_union_of_the_referencing_dependents_placements(
        dependents in proptest::collection::vec(random_dependent(), 0..6),
        copies in proptest::sample::subsequence(vec![0usize, 1, 2], 0..=3),
        listed in any::<bool>(),
        name in 0usize..3,
    ) {
        let chain = Arc::new(Refs::default());
        let memo = HookMemo::default();
        // Dependents that answered before did so for this same content (version 1).
        for (i, d) in dependents.iter().enumerate().filter(|(_, d)| d.answered_before) {
            let earlier = dependency_snapshot(NAMES[name], vec![dependent(&chain, object_for(i, d, 1, false))]);
            plan(&earlier, &Fake::default(), dependency_cx(&memo));
        }
        let now: Vec<Dependent> = dependents
            .iter()
            .enumerate()
            .map(|(i, d)| dependent(&chain, object_for(i, d, 2, d.fails_now)))
            .collect();
        let mut snapshot = dependency_snapshot(NAMES[name], now);
        snapshot.copies = copies.iter().map(|t| dependency_copy(NAMES[name], TARGETS[*t])).collect();
        if !listed && let Some(view) = &mut snapshot.dependents {
            view.incomplete = Some("not listed".into());
        }
        let plan = plan(&snapshot, &Fake::default(), dependency_cx(&memo));

        // The oracle: a failing dependent counts with its earlier answer, if any.
        let mut union = BTreeSet::new();
        let mut unknown = !listed;
        for d in &dependents {
            if d.fails_now && !d.answered_before {
                unknown = true;
                continue;
            }
            if d.refs.contains(&name) {
                union.extend(d.targets.iter().map(|t| TARGETS[*t].to_string()));
            }
        }
        let planned: BTreeSet<String> = chosen(&plan).into_iter().collect();
        prop_assert_eq!(&planned, &union);
        for copy in &plan.copies {
            let deleted = matches!(copy.action, CopyAction::Delete { .. });
            if unknown {
                prop_assert!(!deleted, "deleted on incomplete knowledge: {:?}", copy);
            }
            prop_assert_eq!(deleted, !union.contains(&copy.target) && !unknown, "{:?}", copy);
            if union.contains(&copy.target) {
                prop_assert!(matches!(copy.action, CopyAction::Create { .. } | CopyAction::Unchanged | CopyAction::Update { .. }), "{:?}", copy);
            }
        }
        let created: BTreeSet<String> = plan
            .copies
            .iter()
            .filter(|c| matches!(c.action, CopyAction::Create { .. }))
            .map(|c| c.target.clone())
            .collect();
        let expected_creates: BTreeSet<String> = union
            .iter()
            .filter(|t| !copies.iter().any(|c| TARGETS[*c] == t.as_str()))
            .cloned()
            .collect();
        prop_assert_eq!(created, expected_creates);
    }
}

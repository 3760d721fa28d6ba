//! Every branch of the planner, with a fake plugin chain and snapshots built in memory.

use std::sync::Arc;
use std::sync::Mutex;

use ferry_core::identity::{FINALIZER, UpstreamKey, identity_annotations, identity_labels};
use ferry_core::{Downstream, Hook, ObjectContext, Target};
use kube::api::DynamicObject;
use serde_json::{Value, json};

use super::*;
use crate::desired::APPLIED;
use crate::plugins::{HookError, PluginChain, Transformed};
use crate::store::CopyRef;

const OWNER: &str = "owner-1";

type PlaceFn = Box<dyn Fn(&Value, &[Target]) -> Result<Vec<String>, HookError> + Send + Sync>;
type TransformFn = Box<dyn Fn(&Value, &Target) -> Result<Option<Value>, HookError> + Send + Sync>;
type StatusFn = Box<dyn Fn(&[Downstream]) -> Result<Option<Value>, HookError> + Send + Sync>;

/// A plugin chain whose behaviour each test sets.
struct Fake {
    place: PlaceFn,
    transform: TransformFn,
    status: StatusFn,
    seen_status_input: Mutex<Vec<Downstream>>,
}

impl Default for Fake {
    fn default() -> Self {
        Self {
            place: Box::new(|_, targets| Ok(targets.iter().map(|t| t.name.clone()).collect())),
            // The default transform: the object as it is (the engine maps the namespace).
            transform: Box::new(|object, _| {
                let mut copy = object.clone();
                if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("annotations");
                }
                Ok(Some(copy))
            }),
            status: Box::new(|_| Ok(None)),
            seen_status_input: Mutex::new(Vec::new()),
        }
    }
}

impl PluginChain for Fake {
    fn place(
        &self,
        _: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Result<Vec<String>, HookError> {
        (self.place)(object, targets)
    }
    fn transform(
        &self,
        _: &ObjectContext,
        object: &Value,
        target: &Target,
    ) -> Result<Option<Value>, HookError> {
        (self.transform)(object, target)
    }
    fn aggregate_status(
        &self,
        _: &ObjectContext,
        _: &Value,
        downstream: &[Downstream],
    ) -> Result<Option<Value>, HookError> {
        if let Ok(mut seen) = self.seen_status_input.lock() {
            *seen = downstream.to_vec();
        }
        (self.status)(downstream)
    }
}

fn failure(hook: Hook) -> HookError {
    HookError {
        plugin: "p".into(),
        hook,
        kind: ferry_core::CallErrorKind::Failed,
        message: "boom".into(),
        transient: false,
        component: None,
    }
}

fn key() -> UpstreamKey {
    UpstreamKey::new("lc-a", "demo", "web")
}

fn upstream(
    spec: Value,
    finalizer: bool,
    deleting: bool,
    status: Option<Value>,
) -> Arc<DynamicObject> {
    let mut object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo", "uid": "up-1", "resourceVersion": "7",
            "annotations": {"kcp.io/cluster": "lc-a"}},
        "spec": spec,
    });
    if finalizer {
        object["metadata"]["finalizers"] = json!([FINALIZER]);
    }
    if deleting {
        object["metadata"]["deletionTimestamp"] = json!("2026-11-30T00:00:00Z");
    }
    if let Some(status) = status {
        object["status"] = status;
    }
    Arc::new(serde_json::from_value(object).expect("object"))
}

fn live() -> Arc<DynamicObject> {
    upstream(json!({"replicas": 2}), true, false, None)
}

fn targets(names: &[&str]) -> Vec<TargetView> {
    names
        .iter()
        .map(|n| TargetView {
            target: Target::new(*n),
            listed: true,
            reachable: true,
        })
        .collect()
}

fn snapshot(upstream: Option<Arc<DynamicObject>>) -> Snapshot {
    Snapshot {
        key: key(),
        upstream,
        absence: Absence::Gone,
        copies: Vec::new(),
        targets: targets(&["c1", "c2"]),
        last_status: None,
        dependents: None,
        dependencies: None,
    }
}

fn cx() -> PlanContext<'static> {
    // A memo of its own per plan: tests that look at memoisation build their context.
    cx_with(Box::leak(Box::default()))
}

fn cx_with(memo: &HookMemo) -> PlanContext<'_> {
    PlanContext {
        owner: OWNER,
        workspace: None,
        resource: "deployments.apps",
        memo,
    }
}

/// The copy Ferry would have after applying what `plan` says for `target` (managedFields as
/// the server records them for a flat object).
fn applied_copy(plan: &Plan, target: &str) -> (CopyRef, Arc<DynamicObject>) {
    let copy = plan
        .copies
        .iter()
        .find(|c| c.target == target)
        .expect("copy plan");
    let body = match &copy.action {
        CopyAction::Create { body } | CopyAction::Update { body, .. } => Value::clone(body),
        other => panic!("not a write: {other:?}"),
    };
    copy_from_body(target, body)
}

fn copy_from_body(target: &str, mut body: Value) -> (CopyRef, Arc<DynamicObject>) {
    let fields = fields_v1(&body);
    body["metadata"]["managedFields"] = json!([{"manager": "ferry", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": fields}]);
    body["metadata"]["uid"] = json!(format!("copy-{target}"));
    let object: DynamicObject = serde_json::from_value(body).expect("copy");
    let at = CopyRef {
        target: target.into(),
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        name: object.metadata.name.clone().unwrap_or_default(),
    };
    (at, Arc::new(object))
}

fn fields_v1(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "apiVersion" | "kind" | "name" | "namespace" | "uid"
                    )
                })
                .map(|(k, v)| (format!("f:{k}"), fields_v1(v)))
                .collect(),
        ),
        _ => json!({}),
    }
}

fn foreign_copy(target: &str, origin: &UpstreamKey) -> (CopyRef, Arc<DynamicObject>) {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": origin.name, "namespace": origin.downstream_namespace(), "uid": format!("copy-{target}"),
            "labels": identity_labels(origin, "up-1", OWNER),
            "annotations": identity_annotations(origin, None)},
        "spec": {"replicas": 2},
    }))
    .expect("copy");
    (
        CopyRef {
            target: target.into(),
            namespace: origin.downstream_namespace(),
            name: origin.name.clone(),
        },
        Arc::new(object),
    )
}

fn actions(plan: &Plan) -> Vec<(String, String)> {
    plan.copies
        .iter()
        .map(|c| {
            let word = match &c.action {
                CopyAction::Create { .. } => "create".to_string(),
                CopyAction::Update { .. } => "update".to_string(),
                CopyAction::Unchanged => "unchanged".to_string(),
                CopyAction::Delete { reason, .. } => format!("delete:{reason:?}"),
                CopyAction::AwaitGone => "await-gone".to_string(),
                CopyAction::TargetUnreachable => "unreachable".to_string(),
                CopyAction::Failed { .. } => "failed".to_string(),
                CopyAction::Skip => "skip".to_string(),
                CopyAction::AwaitDependency { dependencies } => {
                    format!("await:{}", dependencies.join("+"))
                }
                CopyAction::Held { .. } => "held".to_string(),
            };
            (c.target.clone(), word)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn a_new_object_gets_the_finalizer_and_a_copy_created_on_every_placed_target() {
    let plan = plan(
        &snapshot(Some(upstream(json!({"replicas": 2}), false, false, None))),
        &Fake::default(),
        cx(),
    );
    assert_eq!(plan.finalizer, FinalizerPlan::Add);
    assert_eq!(
        plan.placement,
        Placement::Chosen(vec!["c1".into(), "c2".into()])
    );
    assert_eq!(actions(&plan), pairs(&[("c1", "create"), ("c2", "create")]));
    let CopyAction::Create { body } = &plan.copies[0].action else {
        panic!()
    };
    assert_eq!(
        body["metadata"]["namespace"],
        json!(key().downstream_namespace())
    );
    assert_eq!(body["metadata"]["labels"]["sync.ferry.dev/uid"], "up-1");
    assert!(body["metadata"]["annotations"][APPLIED].is_string());
    assert!(plan.writes());
}

#[test]
fn a_synced_object_plans_no_write_at_all() {
    let first = plan(&snapshot(Some(live())), &Fake::default(), cx());
    let mut now = snapshot(Some(live()));
    now.copies = vec![applied_copy(&first, "c1"), applied_copy(&first, "c2")];
    let again = plan(&now, &Fake::default(), cx());
    assert_eq!(
        actions(&again),
        pairs(&[("c1", "unchanged"), ("c2", "unchanged")])
    );
    assert_eq!(again.finalizer, FinalizerPlan::Keep);
    assert!(!again.writes(), "{again:#?}");
}

#[test]
fn a_field_removed_upstream_makes_an_update_that_names_it() {
    let with = upstream(
        json!({"replicas": 2, "paused": true, "selector": {"app": "web"}}),
        true,
        false,
        None,
    );
    let first = plan(&snapshot(Some(with)), &Fake::default(), cx());
    let mut now = snapshot(Some(upstream(json!({"replicas": 2}), true, false, None)));
    now.copies = vec![applied_copy(&first, "c1"), applied_copy(&first, "c2")];
    let again = plan(&now, &Fake::default(), cx());
    assert_eq!(
        actions(&again),
        pairs(&[("c1", "update"), ("c2", "update")])
    );
    let CopyAction::Update {
        changes,
        live_uid,
        body,
    } = &again.copies[0].action
    else {
        panic!()
    };
    assert_eq!(changes.removed, ["spec.paused", "spec.selector"]);
    assert_eq!(live_uid, "copy-c1");
    assert!(body["spec"].get("paused").is_none());
}

#[test]
fn a_placement_change_creates_on_the_new_target_and_deletes_from_the_old() {
    let first = plan(&snapshot(Some(live())), &Fake::default(), cx());
    let mut now = snapshot(Some(live()));
    now.copies = vec![applied_copy(&first, "c1")];
    let fake = Fake {
        place: Box::new(|_, _| Ok(vec!["c2".into()])),
        ..Fake::default()
    };
    let again = plan(&now, &fake, cx());
    assert_eq!(
        actions(&again),
        pairs(&[("c1", "delete:NotPlaced"), ("c2", "create")])
    );
    let CopyAction::Delete { uid, .. } = &again.copies[0].action else {
        panic!()
    };
    assert_eq!(uid, "copy-c1", "deletes are pinned to the copy's UID");
}

#[test]
fn a_failing_placement_keeps_every_copy_and_writes_nothing() {
    let first = plan(&snapshot(Some(live())), &Fake::default(), cx());
    let mut now = snapshot(Some(live()));
    now.copies = vec![applied_copy(&first, "c1")];
    let fake = Fake {
        place: Box::new(|_, _| Err(failure(Hook::Place))),
        ..Fake::default()
    };
    let again = plan(&now, &fake, cx());
    assert!(matches!(again.placement, Placement::Failed(_)));
    assert!(again.copies.is_empty());
    assert!(!again.writes());
    assert_eq!(again.plugin_errors().len(), 1);
}

#[test]
fn a_failing_transform_keeps_that_copy_and_still_syncs_the_other_target() {
    let first = plan(&snapshot(Some(live())), &Fake::default(), cx());
    let mut now = snapshot(Some(upstream(json!({"replicas": 3}), true, false, None)));
    now.copies = vec![applied_copy(&first, "c1"), applied_copy(&first, "c2")];
    let fake = Fake {
        transform: Box::new(|object, target| {
            if target.name == "c1" {
                Err(failure(Hook::Transform))
            } else {
                Ok(Some(object.clone()))
            }
        }),
        status: Box::new(|_| Ok(Some(json!({"replicas": 1})))),
        ..Fake::default()
    };
    let again = plan(&now, &fake, cx());
    assert_eq!(
        actions(&again),
        pairs(&[("c1", "failed"), ("c2", "update")])
    );
    // The kept copy's last known state still counts for status.
    let seen = fake.seen_status_input.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|d| d.object.is_some()));
}

#[test]
fn a_transform_that_leaves_a_target_out_deletes_the_copy_there_or_skips_it() {
    let first = plan(&snapshot(Some(live())), &Fake::default(), cx());
    let mut now = snapshot(Some(live()));
    now.copies = vec![applied_copy(&first, "c1")];
    let fake = Fake {
        transform: Box::new(|_, _| Ok(None)),
        ..Fake::default()
    };
    let again = plan(&now, &fake, cx());
    assert_eq!(
        actions(&again),
        pairs(&[("c1", "delete:Skipped"), ("c2", "skip")])
    );
}

#[test]
fn a_renamed_copy_is_created_under_the_new_name_and_the_old_one_deleted() {
    let first = plan(&snapshot(Some(live())), &Fake::default(), cx());
    let mut now = snapshot(Some(live()));
    now.copies = vec![applied_copy(&first, "c1")];
    now.targets = targets(&["c1"]);
    let fake = Fake {
        transform: Box::new(|object, _| {
            let mut copy = object.clone();
            copy["metadata"]["name"] = json!("web-renamed");
            Ok(Some(copy))
        }),
        ..Fake::default()
    };
    let again = plan(&now, &fake, cx());
    assert_eq!(
        actions(&again),
        pairs(&[("c1", "create"), ("c1", "delete:Renamed")])
    );
    assert_eq!(again.copies[0].name, "web-renamed");
}

#[test]
fn an_unreachable_target_is_left_alone_while_the_other_syncs() {
    let first = plan(&snapshot(Some(live())), &Fake::default(), cx());
    let mut now = snapshot(Some(upstream(json!({"replicas": 5}), true, false, None)));
    now.copies = vec![applied_copy(&first, "c1"), applied_copy(&first, "c2")];
    now.targets[1].reachable = false;
    let again = plan(&now, &Fake::default(), cx());
    assert_eq!(
        actions(&again),
        pairs(&[("c1", "update"), ("c2", "unreachable")])
    );
}

#[test]
fn an_unreachable_target_that_is_no_longer_placed_keeps_its_copy_until_it_answers() {
    let first = plan(&snapshot(Some(live())), &Fake::default(), cx());
    let mut now = snapshot(Some(live()));
    now.copies = vec![applied_copy(&first, "c2")];
    now.targets[1].reachable = false;
    let fake = Fake {
        place: Box::new(|_, _| Ok(vec!["c1".into()])),
        ..Fake::default()
    };
    assert_eq!(
        actions(&plan(&now, &fake, cx())),
        pairs(&[("c1", "create"), ("c2", "unreachable")])
    );
}

#[test]
fn a_deleted_object_deletes_its_copies_and_holds_the_finalizer_until_they_are_gone() {
    let first = plan(&snapshot(Some(live())), &Fake::default(), cx());
    let mut now = snapshot(Some(upstream(json!({"replicas": 2}), true, true, None)));
    now.copies = vec![applied_copy(&first, "c1"), applied_copy(&first, "c2")];
    let again = plan(&now, &Fake::default(), cx());
    assert_eq!(again.upstream, UpstreamState::Deleting);
    assert_eq!(
        actions(&again),
        pairs(&[("c1", "delete:Deleting"), ("c2", "delete:Deleting")])
    );
    assert!(matches!(again.finalizer, FinalizerPlan::Hold(_)));
}

#[test]
fn a_terminating_copy_is_waited_for_and_never_deleted_again() {
    let first = plan(&snapshot(Some(live())), &Fake::default(), cx());
    let (at, copy) = applied_copy(&first, "c1");
    let mut terminating = (*copy).clone();
    terminating.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let mut now = snapshot(Some(upstream(json!({"replicas": 2}), true, true, None)));
    now.copies = vec![(at, Arc::new(terminating))];
    let again = plan(&now, &Fake::default(), cx());
    assert_eq!(actions(&again), pairs(&[("c1", "await-gone")]));
    assert!(!again.writes());
    assert!(matches!(again.finalizer, FinalizerPlan::Hold(_)));
}

#[test]
fn the_finalizer_is_released_only_when_every_target_is_listed_and_reachable() {
    let mut now = snapshot(Some(upstream(json!({}), true, true, None)));
    assert_eq!(
        plan(&now, &Fake::default(), cx()).finalizer,
        FinalizerPlan::Release
    );
    now.targets[0].listed = false;
    assert!(
        matches!(plan(&now, &Fake::default(), cx()).finalizer, FinalizerPlan::Hold(r) if r.contains("first list"))
    );
    now.targets[0].listed = true;
    now.targets[1].reachable = false;
    assert!(
        matches!(plan(&now, &Fake::default(), cx()).finalizer, FinalizerPlan::Hold(r) if r.contains("c2"))
    );
}

#[test]
fn a_deleted_object_without_ferrys_finalizer_needs_nothing_from_ferry() {
    let now = snapshot(Some(upstream(json!({}), false, true, None)));
    let plan = plan(&now, &Fake::default(), cx());
    assert_eq!(plan.finalizer, FinalizerPlan::Keep);
    assert!(!plan.writes());
}

#[test]
fn copies_of_an_object_proven_gone_are_orphans_and_go() {
    let mut now = snapshot(None);
    now.copies = vec![foreign_copy("c1", &key())];
    let plan = plan(&now, &Fake::default(), cx());
    assert_eq!(plan.upstream, UpstreamState::Gone);
    assert_eq!(actions(&plan), pairs(&[("c1", "delete:Orphan")]));
}

#[test]
fn copies_of_an_object_not_provably_gone_are_kept() {
    // E.g. its shard left the endpoint slice, or its workspace's binding is not listed yet.
    let mut now = snapshot(None);
    now.absence = Absence::Unknown("shard left".into());
    now.copies = vec![foreign_copy("c1", &key())];
    let plan = plan(&now, &Fake::default(), cx());
    assert_eq!(plan.upstream, UpstreamState::Unknown("shard left".into()));
    assert!(plan.copies.is_empty());
    assert!(!plan.writes());
}

#[test]
fn a_copy_of_an_earlier_object_of_the_same_name_is_taken_over_by_the_new_one() {
    // The copy was made for an object of the same name that was deleted and created again.
    let mut earlier = (*live()).clone();
    earlier.metadata.uid = Some("up-0".into());
    let first = plan(&snapshot(Some(Arc::new(earlier))), &Fake::default(), cx());
    let mut now = snapshot(Some(live()));
    now.targets = targets(&["c1"]);
    now.copies = vec![applied_copy(&first, "c1")];
    let again = plan(&now, &Fake::default(), cx());
    assert_eq!(actions(&again), pairs(&[("c1", "update")]));
    let CopyAction::Update { body, .. } = &again.copies[0].action else {
        panic!()
    };
    assert_eq!(body["metadata"]["labels"]["sync.ferry.dev/uid"], "up-1");
}

#[test]
fn status_is_written_when_it_differs_and_not_again_when_kcp_stored_less() {
    let fake = Fake {
        status: Box::new(|_| Ok(Some(json!({"replicas": 4, "extra": "pruned by kcp"})))),
        ..Fake::default()
    };
    let now = snapshot(Some(upstream(
        json!({"replicas": 2}),
        true,
        false,
        Some(json!({"replicas": 2})),
    )));
    let first = plan(&now, &fake, cx());
    let StatusPlan::Write { value } = &first.status else {
        panic!("{:?}", first.status)
    };
    // kcp pruned "extra"; the memo records what it kept.
    let stored = json!({"replicas": 4});
    let mut later = snapshot(Some(upstream(
        json!({"replicas": 2}),
        true,
        false,
        Some(stored.clone()),
    )));
    later.last_status = Some(StatusMemo {
        uid: "up-1".into(),
        sent: crate::desired::digest(value),
        stored: crate::compact::CompactValue::new(&stored),
    });
    assert_eq!(plan(&later, &fake, cx()).status, StatusPlan::Unchanged);
    // A memo of another object (same name, new UID) does not count.
    if let Some(memo) = &mut later.last_status {
        memo.uid = "up-0".into();
    }
    assert!(matches!(
        plan(&later, &fake, cx()).status,
        StatusPlan::Write { .. }
    ));
}

#[test]
fn status_equal_up_to_number_spelling_is_unchanged() {
    let fake = Fake {
        status: Box::new(|_| Ok(Some(json!({"replicas": 2.0})))),
        ..Fake::default()
    };
    let now = snapshot(Some(upstream(
        json!({}),
        true,
        false,
        Some(json!({"replicas": 2})),
    )));
    assert_eq!(plan(&now, &fake, cx()).status, StatusPlan::Unchanged);
}

#[test]
fn a_failing_status_plugin_is_reported_without_stopping_the_copies() {
    let fake = Fake {
        status: Box::new(|_| Err(failure(Hook::AggregateStatus))),
        ..Fake::default()
    };
    let plan = plan(&snapshot(Some(live())), &fake, cx());
    assert_eq!(actions(&plan), pairs(&[("c1", "create"), ("c2", "create")]));
    assert!(matches!(plan.status, StatusPlan::Failed { .. }));
}

#[test]
fn a_plugin_cannot_forge_ferrys_identity_or_digest() {
    let fake = Fake {
        transform: Box::new(|object, _| {
            let mut copy = object.clone();
            copy["metadata"]["labels"] =
                json!({"sync.ferry.dev/uid": "someone-else", "sync.ferry.dev/cluster": "lc-b"});
            copy["metadata"]["annotations"] =
                json!({"sync.ferry.dev/applied": "x", "sync.ferry.dev/name": "other"});
            Ok(Some(copy))
        }),
        ..Fake::default()
    };
    let plan = plan(&snapshot(Some(live())), &fake, cx());
    let CopyAction::Create { body } = &plan.copies[0].action else {
        panic!()
    };
    assert_eq!(body["metadata"]["labels"]["sync.ferry.dev/uid"], "up-1");
    assert_eq!(body["metadata"]["labels"]["sync.ferry.dev/cluster"], "lc-a");
    assert_eq!(
        body["metadata"]["annotations"]["sync.ferry.dev/name"],
        "web"
    );
    assert_ne!(body["metadata"]["annotations"][APPLIED], "x");
}

/// A chain that places by workspace path (like a `root:org-eu:*` rule) and records the
/// contexts it was called with.
#[derive(Default)]
struct ByWorkspace {
    seen: Mutex<Vec<ObjectContext>>,
}

impl PluginChain for ByWorkspace {
    fn place(
        &self,
        context: &ObjectContext,
        _: &Value,
        targets: &[Target],
    ) -> Result<Vec<String>, HookError> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(context.clone());
        }
        let eu = context
            .workspace_path
            .as_deref()
            .is_some_and(|p| p.starts_with("root:org-eu:"));
        Ok(targets
            .iter()
            .filter(|t| eu == (t.name == "c1"))
            .map(|t| t.name.clone())
            .collect())
    }
    fn transform(
        &self,
        context: &ObjectContext,
        object: &Value,
        _: &Target,
    ) -> Result<Option<Value>, HookError> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(context.clone());
        }
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
}

#[test]
fn the_workspace_context_reaches_every_hook_and_its_path_is_recorded_on_the_copy() {
    let workspace = crate::workspaces::Workspace {
        path: Some("root:org-eu:team-a".into()),
        labels: [("team".to_string(), "alpha".to_string())].into(),
        annotations: Default::default(),
    };
    let chain = ByWorkspace::default();
    let in_eu = PlanContext {
        workspace: Some(&workspace),
        ..cx()
    };
    let planned = plan(&snapshot(Some(live())), &chain, in_eu);
    assert_eq!(planned.placement, Placement::Chosen(vec!["c1".into()]));
    let seen = chain.seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 2, "place and one transform");
    for context in seen {
        assert_eq!(
            context.workspace_path.as_deref(),
            Some("root:org-eu:team-a")
        );
        assert_eq!(context.workspace_labels, workspace.labels);
    }
    let (_, copy) = applied_copy(&planned, "c1");
    let annotations = copy.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get(ferry_core::identity::WORKSPACE)
            .map(String::as_str),
        Some("root:org-eu:team-a")
    );

    // A tenant that did not accept the claim: no path, placed by the rest of the rule.
    let chain = ByWorkspace::default();
    let planned = plan(&snapshot(Some(live())), &chain, cx());
    assert_eq!(planned.placement, Placement::Chosen(vec!["c2".into()]));
    let seen = chain.seen.lock().expect("seen").clone();
    assert!(
        seen.iter()
            .all(|c| c.workspace_path.is_none() && c.workspace_labels.is_empty())
    );
}

mod dependencies;

/// How a [`OneCall`] chain answers the targets of its one call.
type Answer = fn(&Fake, &ObjectContext, &Value, &[Target]) -> Vec<Transformed>;

/// A chain that answers every target in one `transform_all` call, as a v0.2.0 plugin does,
/// and records which targets each call was asked about.
struct OneCall {
    inner: Fake,
    calls: Mutex<Vec<Vec<String>>>,
    answer: Answer,
}

impl OneCall {
    fn new(inner: Fake, answer: Answer) -> Self {
        Self {
            inner,
            calls: Mutex::default(),
            answer,
        }
    }
}

/// `c2` fails, every other target gets `inner`'s transform.
fn c2_fails(inner: &Fake, c: &ObjectContext, o: &Value, targets: &[Target]) -> Vec<Transformed> {
    targets
        .iter()
        .map(|t| {
            if t.name == "c2" {
                Err(failure(Hook::Transform))
            } else {
                Ok(inner.transform(c, o, t)?.map(Arc::new))
            }
        })
        .collect()
}

/// `c1` and `c2` get one shared object and `c3` an equal one of its own, as the Wasm host
/// answers when a plugin applies one text on several targets.
fn c3_apart(_: &Fake, _: &ObjectContext, o: &Value, targets: &[Target]) -> Vec<Transformed> {
    let shared = Arc::new(o.clone());
    targets
        .iter()
        .map(|t| match t.name.as_str() {
            "c3" => Ok(Some(Arc::new(o.clone()))),
            _ => Ok(Some(Arc::clone(&shared))),
        })
        .collect()
}

impl PluginChain for OneCall {
    fn place(&self, c: &ObjectContext, o: &Value, t: &[Target]) -> Result<Vec<String>, HookError> {
        self.inner.place(c, o, t)
    }
    fn transform(
        &self,
        _: &ObjectContext,
        _: &Value,
        _: &Target,
    ) -> Result<Option<Value>, HookError> {
        panic!("the planner asked per target although the chain answers all at once")
    }
    fn transform_all(&self, c: &ObjectContext, o: &Value, targets: &[Target]) -> Vec<Transformed> {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(targets.iter().map(|t| t.name.clone()).collect());
        }
        (self.answer)(&self.inner, c, o, targets)
    }
    fn aggregate_status(
        &self,
        c: &ObjectContext,
        o: &Value,
        d: &[Downstream],
    ) -> Result<Option<Value>, HookError> {
        self.inner.aggregate_status(c, o, d)
    }
}

#[test]
fn every_placed_reachable_target_is_transformed_in_one_call_with_per_target_results() {
    let mut now = snapshot(Some(live()));
    now.targets = targets(&["c1", "c2", "c3", "c4"]);
    now.targets[2].reachable = false;
    let chain = OneCall::new(
        Fake {
            place: Box::new(|_, _| Ok(vec!["c1".into(), "c2".into(), "c3".into()])),
            ..Fake::default()
        },
        c2_fails,
    );
    let planned = plan(&now, &chain, cx());
    // c3 does not answer, c4 is not placed: neither is asked about.
    assert_eq!(
        *chain.calls.lock().expect("calls"),
        vec![vec!["c1".to_string(), "c2".to_string()]]
    );
    // One target's failure leaves the other's result in force.
    assert_eq!(
        actions(&planned),
        pairs(&[("c1", "create"), ("c2", "failed"), ("c3", "unreachable")])
    );
}

#[test]
fn targets_given_one_object_share_one_prepared_body_and_others_get_their_own() {
    let mut now = snapshot(Some(live()));
    now.targets = targets(&["c1", "c2", "c3"]);
    let chain = OneCall::new(
        Fake {
            place: Box::new(|_, _| Ok(vec!["c1".into(), "c2".into(), "c3".into()])),
            ..Fake::default()
        },
        c3_apart,
    );
    let planned = plan(&now, &chain, cx());
    let bodies: Vec<&Arc<Value>> = planned
        .copies
        .iter()
        .map(|copy| match &copy.action {
            CopyAction::Create { body } => body,
            other => panic!("{}: {other:?}", copy.target),
        })
        .collect();
    assert_eq!(bodies.len(), 3);
    assert!(Arc::ptr_eq(bodies[0], bodies[1]), "c1 and c2 share a body");
    assert!(!Arc::ptr_eq(bodies[0], bodies[2]), "c3's object is its own");
    // Each body is prepared (identity, mapped namespace, digest), and alike.
    for body in &bodies {
        assert!(
            body["metadata"]["annotations"][APPLIED].is_string(),
            "{body}"
        );
        assert!(body["metadata"]["namespace"].is_string(), "{body}");
        assert_eq!(***body, **bodies[0]);
    }
}

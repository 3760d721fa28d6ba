//! The purity memo on built components: an unchanged call is answered without running the
//! plugin, and any change of what the answer depends on runs it again.

mod common;

use std::sync::{Arc, Mutex};

use common::{component, context, deployment, runtime};
use ferry_core::{Hook, Target};
use ferry_wasm::{Plugin, PluginOptions, Runtime};
use serde_json::{Value, json};

const FIXTURE: &str = "contract-v0-2-0";

/// Hooks the plugin actually ran, in order.
type Calls = Arc<Mutex<Vec<Hook>>>;

fn load(runtime: &Runtime, name: &str, options: PluginOptions) -> (Plugin, Calls) {
    let calls: Calls = Arc::default();
    let sink = Arc::clone(&calls);
    let plugin = runtime
        .load_file(
            component(name),
            options.observer(move |r| sink.lock().expect("calls lock").push(r.hook)),
        )
        .unwrap_or_else(|e| panic!("{name} loads: {e:?}"));
    (plugin, calls)
}

fn count(calls: &Calls) -> usize {
    calls.lock().expect("calls lock").len()
}

fn three() -> Vec<Target> {
    ["cluster-1", "cluster-2", "cluster-3"]
        .into_iter()
        .map(Target::new)
        .collect()
}

fn objects(results: Vec<ferry_wasm::TargetResult>) -> Vec<Value> {
    results
        .into_iter()
        .map(|(name, r)| match r {
            Ok(Some(object)) => Value::clone(&object),
            other => panic!("{name}: {other:?}"),
        })
        .collect()
}

#[test]
fn an_unchanged_transform_is_answered_without_a_call_and_with_the_same_objects() {
    for name in [FIXTURE, "frozen-v0-1-0"] {
        let runtime = runtime();
        let (plugin, calls) = load(&runtime, name, PluginOptions::default());
        let first = plugin
            .transform_all(&context(), &deployment(), &three())
            .expect("succeeds");
        let ran = count(&calls);
        assert!(ran >= 1, "{name}");
        let again = plugin
            .transform_all(&context(), &deployment(), &three())
            .expect("succeeds");
        assert_eq!(count(&calls), ran, "{name}: the second call ran the plugin");
        assert_eq!(objects(first), objects(again), "{name}");
    }
}

/// A v0.2.0 plugin that gives every target the same object is answered with one shared
/// `Value`, from a call and from the memo alike: no target pays for a copy of it.
#[test]
fn targets_given_the_same_object_share_one_value() {
    let runtime = runtime();
    let (plugin, calls) = load(&runtime, FIXTURE, PluginOptions::default());
    let shared = |results: &[ferry_wasm::TargetResult]| {
        let values: Vec<&Arc<Value>> = results
            .iter()
            .map(|(name, r)| match r {
                Ok(Some(object)) => object,
                other => panic!("{name}: {other:?}"),
            })
            .collect();
        values.windows(2).all(|w| Arc::ptr_eq(w[0], w[1]))
    };
    let called = plugin
        .transform_all(&context(), &deployment(), &three())
        .expect("succeeds");
    assert_eq!(count(&calls), 1);
    assert!(shared(&called), "a call's answer is not shared");
    let recalled = plugin
        .transform_all(&context(), &deployment(), &three())
        .expect("succeeds");
    assert_eq!(count(&calls), 1, "the memo answers");
    assert!(shared(&recalled), "the memo's answer is not shared");
    assert_eq!(objects(called), objects(recalled));
}

#[test]
fn a_changed_object_context_or_target_runs_the_plugin_again() {
    let runtime = runtime();
    let (plugin, calls) = load(
        &runtime,
        FIXTURE,
        PluginOptions::default().config(json!({"echoWorkspace": true})),
    );
    let targets = three();
    plugin
        .transform_all(&context(), &deployment(), &targets)
        .expect("succeeds");
    assert_eq!(count(&calls), 1);

    // The object: a new resourceVersion is a new input.
    let mut changed = deployment();
    changed["metadata"]["resourceVersion"] = json!("43");
    plugin
        .transform_all(&context(), &changed, &targets)
        .expect("succeeds");
    assert_eq!(count(&calls), 2, "a changed object");

    // The context: the workspace label must reach the output, not an older answer.
    let mut labelled = context();
    labelled
        .workspace_labels
        .insert("tier".into(), "gold".into());
    let out = objects(
        plugin
            .transform_all(&labelled, &deployment(), &targets)
            .expect("succeeds"),
    );
    assert_eq!(count(&calls), 3, "a changed context");
    let echoed = out[0]["metadata"]["annotations"]["ferry.test/workspace"]
        .as_str()
        .unwrap_or_default();
    assert!(echoed.contains("gold"), "stale workspace record: {echoed}");

    // The targets: a target that now asks to be skipped is skipped.
    let mut skipping = three();
    skipping[1] = Target::new("cluster-2").label("ferry.test/outcome", "skip");
    let results = plugin
        .transform_all(&context(), &deployment(), &skipping)
        .expect("succeeds");
    assert_eq!(count(&calls), 4, "changed targets");
    assert!(matches!(results[1].1, Ok(None)), "{:?}", results[1].1);
}

#[test]
fn another_configuration_never_gets_the_answer_of_the_previous_one() {
    let runtime = runtime();
    let (plain, _) = load(&runtime, FIXTURE, PluginOptions::default());
    let before = objects(
        plain
            .transform_all(&context(), &deployment(), &three())
            .expect("succeeds"),
    );
    assert!(before[0]["metadata"]["annotations"]["ferry.test/workspace"].is_null());
    // The same component reloaded with another configuration (as a reload does).
    let (echoing, calls) = load(
        &runtime,
        FIXTURE,
        PluginOptions::default().config(json!({"echoWorkspace": true})),
    );
    let after = objects(
        echoing
            .transform_all(&context(), &deployment(), &three())
            .expect("succeeds"),
    );
    assert_eq!(count(&calls), 1);
    assert!(after[0]["metadata"]["annotations"]["ferry.test/workspace"].is_string());
}

#[test]
fn a_failed_answer_is_not_kept() {
    let runtime = runtime();
    let (plugin, calls) = load(&runtime, FIXTURE, PluginOptions::default());
    let mut targets = three();
    targets[0] = Target::new("cluster-1").label("ferry.test/outcome", "fail");
    for round in 1..=2 {
        let results = plugin
            .transform_all(&context(), &deployment(), &targets)
            .expect("the call succeeds");
        assert!(results[0].1.is_err());
        assert_eq!(count(&calls), round, "a failure must be asked again");
    }
    let (failing, calls) = load(
        &runtime,
        FIXTURE,
        PluginOptions::default().config(json!({"misbehave": "error"})),
    );
    for round in 1..=2 {
        assert!(failing.place(&context(), &deployment(), &three()).is_err());
        assert_eq!(count(&calls), round);
    }
}

#[test]
fn placement_status_and_dependencies_are_kept_too() {
    let runtime = runtime();
    let (plugin, calls) = load(&runtime, FIXTURE, PluginOptions::default());
    let targets = three();
    let placed = plugin
        .place(&context(), &deployment(), &targets)
        .expect("succeeds");
    let needs = plugin
        .dependencies(&context(), &deployment())
        .expect("succeeds");
    let downstream = [ferry_core::Downstream {
        target: targets[0].clone(),
        object: Some(json!({"status": {"readyReplicas": 1}})),
    }];
    let status = plugin
        .aggregate_status(&context(), &deployment(), &downstream)
        .expect("succeeds");
    assert_eq!(count(&calls), 3);
    assert_eq!(
        plugin.place(&context(), &deployment(), &targets).ok(),
        Some(placed)
    );
    assert_eq!(
        plugin.dependencies(&context(), &deployment()).ok(),
        Some(needs)
    );
    assert_eq!(
        plugin
            .aggregate_status(&context(), &deployment(), &downstream)
            .ok(),
        Some(status)
    );
    assert_eq!(count(&calls), 3, "all three answered from the memo");

    // New downstream status is a new input of aggregation.
    let ready = [ferry_core::Downstream {
        target: targets[0].clone(),
        object: Some(json!({"status": {"readyReplicas": 2}})),
    }];
    let status = plugin
        .aggregate_status(&context(), &deployment(), &ready)
        .expect("succeeds");
    assert_eq!(count(&calls), 4);
    assert_eq!(status, Some(json!({"readyReplicas": 2})));
}

#[test]
fn a_memo_of_capacity_zero_runs_every_call() {
    let runtime = runtime();
    let (plugin, calls) = load(&runtime, FIXTURE, PluginOptions::default().memo_capacity(0));
    for round in 1..=3 {
        plugin
            .transform_all(&context(), &deployment(), &three())
            .expect("succeeds");
        assert_eq!(count(&calls), round);
    }
}

//! Contract v0.2.0 against a component written with wit-bindgen alone
//! (`tests/plugins/contract-v0-2-0`): every hook, every validation error, and the sandbox
//! limits on the new hooks. Misbehaviours are chosen through the plugin's configuration.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ferry_core::{Hook, ObjectRef, Target, validate::OutputError};
use ferry_wasm::{CallError, ErrorKind, Limits, Plugin, PluginOptions, Runtime};
use serde_json::{Value, json};

const FIXTURE: &str = "contract-v0-2-0";

fn load_with(runtime: &Runtime, config: Value, limits: Limits) -> Plugin {
    runtime
        .load_file(
            component(FIXTURE),
            PluginOptions::default().config(config).limits(limits),
        )
        .unwrap_or_else(|e| panic!("{FIXTURE} loads: {e:?}"))
}

fn misbehaving(runtime: &Runtime, mode: &str) -> Plugin {
    load_with(runtime, json!({"misbehave": mode}), Limits::default())
}

/// cluster-1 gets the object, cluster-2 is skipped, cluster-3 fails alone.
fn mixed_targets() -> Vec<Target> {
    vec![
        Target::new("cluster-1"),
        Target::new("cluster-2").label("ferry.test/outcome", "skip"),
        Target::new("cluster-3").label("ferry.test/outcome", "fail"),
    ]
}

fn invalid_output(result: &Result<impl std::fmt::Debug, CallError>) -> &OutputError {
    match result {
        Err(CallError::InvalidOutput { source, .. }) => source,
        other => panic!("expected InvalidOutput, got {other:?}"),
    }
}

#[test]
fn transform_answers_apply_skip_and_failed_per_target_in_the_order_given() {
    let runtime = runtime();
    let plugin = load_with(&runtime, Value::Null, Limits::default());
    // Given in another order than the plugin's answer would sort them.
    let mut targets = mixed_targets();
    targets.reverse();

    let results = plugin
        .transform_all(&context(), &deployment(), &targets)
        .expect("the call succeeds");

    let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["cluster-3", "cluster-2", "cluster-1"]);
    match &results[0].1 {
        Err(CallError::Plugin {
            hook: Hook::Transform,
            source,
            ..
        }) => {
            assert_eq!(source.message, "target cluster-3 refuses this object");
        }
        other => panic!("cluster-3: {other:?}"),
    }
    assert!(matches!(results[1].1, Ok(None)), "{:?}", results[1].1);
    let applied = results[2]
        .1
        .as_ref()
        .expect("cluster-1 applies")
        .as_ref()
        .expect("an object");
    assert_eq!(applied["metadata"]["namespace"], "ferry-1a2b3c4d");
    assert_eq!(
        applied["metadata"]["labels"]["sync.ferry.dev/managed-by"],
        "ferry"
    );
}

#[test]
fn one_v0_2_0_call_answers_every_target_where_v0_1_0_takes_one_call_per_target() {
    let runtime = runtime();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let observe = |calls: &Arc<Mutex<Vec<Option<ErrorKind>>>>| {
        let calls = Arc::clone(calls);
        move |r: &ferry_wasm::CallReport<'_>| calls.lock().expect("observer lock").push(r.error)
    };
    let three = [Target::new("a"), Target::new("b"), Target::new("c")];

    let v2 = runtime
        .load_file(
            component(FIXTURE),
            PluginOptions::default().observer(observe(&calls)),
        )
        .expect("succeeds");
    let results = v2
        .transform_all(&context(), &deployment(), &three)
        .expect("succeeds");
    assert!(results.iter().all(|(_, r)| matches!(r, Ok(Some(_)))));
    assert_eq!(
        calls.lock().expect("observer lock").len(),
        1,
        "one instance for three targets"
    );

    calls.lock().expect("observer lock").clear();
    let v1 = runtime
        .load_file(
            component("frozen-v0-1-0"),
            PluginOptions::default().observer(observe(&calls)),
        )
        .expect("succeeds");
    let results = v1
        .transform_all(&context(), &deployment(), &three)
        .expect("succeeds");
    assert!(results.iter().all(|(_, r)| matches!(r, Ok(Some(_)))));
    assert_eq!(
        calls.lock().expect("observer lock").len(),
        3,
        "v0.1.0: a fresh instance per target"
    );

    // Both contract versions produce the same object from the same logic.
    let one = v1
        .transform(&context(), &deployment(), &three[0])
        .expect("succeeds");
    let two = v2
        .transform(&context(), &deployment(), &three[0])
        .expect("succeeds");
    assert_eq!(one, two);
}

#[test]
fn a_target_that_fails_alone_is_reported_to_the_observer() {
    let runtime = runtime();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let plugin = runtime
        .load_file(
            component(FIXTURE),
            PluginOptions::default()
                .observer(move |r| sink.lock().expect("observer lock").push(r.error)),
        )
        .expect("succeeds");
    plugin
        .transform_all(&context(), &deployment(), &mixed_targets())
        .expect("succeeds");
    assert_eq!(
        *seen.lock().expect("observer lock"),
        [Some(ErrorKind::InvalidInput)]
    );
}

#[test]
fn the_plugin_sees_the_workspace_path_labels_and_annotations() {
    let runtime = runtime();
    let plugin = load_with(&runtime, json!({"echoWorkspace": true}), Limits::default());
    let mut context = context();
    context
        .workspace_labels
        .insert("region".into(), "eu".into());
    context.workspace_labels.insert("env".into(), "prod".into());
    context
        .workspace_annotations
        .insert("example.com/owner".into(), "team-a".into());

    let out = plugin
        .transform(&context, &deployment(), &targets()[0])
        .expect("succeeds")
        .expect("succeeds");
    let echoed: Value = serde_json::from_str(
        out["metadata"]["annotations"]["ferry.test/workspace"]
            .as_str()
            .expect("echoed"),
    )
    .expect("succeeds");
    assert_eq!(
        echoed,
        json!({
            "logicalCluster": "2x8mfrq3b9tmwx1v",
            "path": "root:team-a",
            "labels": {"env": "prod", "region": "eu"},
            "annotations": {"example.com/owner": "team-a"},
        })
    );
}

#[test]
fn dependencies_are_merged_sorted_and_optional_only_if_every_mention_is() {
    let runtime = runtime();
    let plugin = load_with(&runtime, Value::Null, Limits::default());
    let mut object = deployment();
    object["spec"]["template"]["spec"]["serviceAccountName"] = json!("web");
    object["spec"]["template"]["spec"]["volumes"] = json!([
        {"name": "a", "configMap": {"name": "settings", "optional": true}},
        {"name": "b", "secret": {"secretName": "tls", "optional": true}},
    ]);
    object["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "x"}}},
        {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "tls", "key": "y", "optional": true}}},
    ]);

    let refs = plugin.dependencies(&context(), &object).expect("succeeds");

    let core = |resource: &str, name: &str, optional: bool| ObjectRef {
        group: String::new(),
        resource: resource.into(),
        name: name.into(),
        optional,
    };
    assert_eq!(
        refs,
        [
            // Optional in the volume, required in the env: required.
            core("configmaps", "settings", false),
            core("secrets", "tls", true),
            core("serviceaccounts", "web", false),
        ]
    );
}

#[test]
fn a_v0_1_0_component_has_no_dependencies_hook() {
    let runtime = runtime();
    let plugin = load(&runtime, "frozen-v0-1-0", Limits::default());
    let result = plugin.dependencies(&context(), &deployment());
    assert!(
        matches!(
            result,
            Err(CallError::HookNotExported {
                hook: Hook::Dependencies,
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn an_outcome_for_a_target_not_given_is_invalid_output() {
    let runtime = runtime();
    let result = misbehaving(&runtime, "unknown-target").transform_all(
        &context(),
        &deployment(),
        &targets(),
    );
    assert!(
        matches!(invalid_output(&result), OutputError::UnknownOutcomeTarget(t) if t == "no-such-cluster")
    );
}

#[test]
fn two_outcomes_for_one_target_are_invalid_output() {
    let runtime = runtime();
    let result = misbehaving(&runtime, "duplicate-target").transform_all(
        &context(),
        &deployment(),
        &targets(),
    );
    assert!(
        matches!(invalid_output(&result), OutputError::DuplicateOutcomeTarget(t) if t == "cluster-1")
    );
}

#[test]
fn a_target_without_outcome_is_invalid_output() {
    let runtime = runtime();
    let result = misbehaving(&runtime, "missing-target").transform_all(
        &context(),
        &deployment(),
        &targets(),
    );
    assert!(matches!(invalid_output(&result), OutputError::MissingOutcome(t) if t == "cluster-2"));
}

#[test]
fn an_applied_object_that_is_not_json_fails_its_target_only() {
    let runtime = runtime();
    let results = misbehaving(&runtime, "not-json")
        .transform_all(&context(), &deployment(), &targets())
        .expect("the call itself succeeds");
    assert!(matches!(
        invalid_output(&results[0].1),
        OutputError::NotJson(_)
    ));
    assert!(matches!(results[1].1, Ok(Some(_))), "{:?}", results[1].1);
}

#[test]
fn a_plugin_error_of_the_whole_transform_fails_every_target() {
    let runtime = runtime();
    let result =
        misbehaving(&runtime, "error").transform_all(&context(), &deployment(), &targets());
    assert!(
        matches!(&result, Err(CallError::Plugin { hook: Hook::Transform, source, .. }) if source.message == "asked to fail"),
        "{result:?}"
    );
}

#[test]
fn a_reference_that_cannot_name_an_object_is_invalid_output() {
    let runtime = runtime();
    for mode in ["invalid-name", "empty-resource"] {
        let result = misbehaving(&runtime, mode).dependencies(&context(), &deployment());
        assert!(
            matches!(
                invalid_output(&result),
                OutputError::InvalidReference { .. }
            ),
            "{mode}"
        );
    }
}

/// How promptly the deadline fires is proven once, in `limits.rs` (the mechanism is the
/// same for every hook); this proves the new hooks run under it.
#[test]
fn the_deadline_stops_a_looping_transform_and_dependencies_call() {
    let runtime = runtime();
    let deadline = Duration::from_millis(200);
    let plugin = load_with(
        &runtime,
        json!({"misbehave": "loop"}),
        Limits::default().deadline(deadline),
    );
    let started = Instant::now();
    let result = plugin.transform_all(&context(), &deployment(), &targets());
    assert_eq!(
        result.err().map(|e| e.kind()),
        Some(ErrorKind::DeadlineExceeded)
    );
    assert!(started.elapsed() >= deadline);

    let result = plugin.dependencies(&context(), &deployment());
    assert!(
        matches!(
            result,
            Err(CallError::DeadlineExceeded {
                hook: Hook::Dependencies,
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn the_memory_cap_stops_a_v0_2_0_hook_and_the_next_call_works() {
    let runtime = runtime();
    let cap = 32 * 1024 * 1024;
    let bomb = load_with(
        &runtime,
        json!({"misbehave": "memory-bomb"}),
        Limits::default().memory(cap),
    );
    let result = bomb.dependencies(&context(), &deployment());
    assert!(
        matches!(result, Err(CallError::MemoryExhausted { limit, .. }) if limit == cap),
        "{result:?}"
    );
    let healthy = load_with(&runtime, Value::Null, Limits::default().memory(cap));
    assert!(healthy.dependencies(&context(), &deployment()).is_ok());
}

#[test]
fn a_trap_in_a_v0_2_0_transform_is_a_trap_of_the_whole_call() {
    let runtime = runtime();
    let result = misbehaving(&runtime, "trap").transform_all(&context(), &deployment(), &targets());
    assert!(
        matches!(
            result,
            Err(CallError::Trap {
                hook: Hook::Transform,
                ..
            })
        ),
        "{result:?}"
    );
}

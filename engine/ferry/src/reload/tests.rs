//! The reloader against real components in a temporary folder: a changed file is swapped in
//! once two polls agree, and a component refused at any step (not a component, a refused
//! configuration, failed golden cases) leaves the running one and the chain's version as
//! they were.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::{ObjectContext, Target};
use ferry_sync::PluginChain;
use ferry_sync::metrics::Metrics;
use ferry_wasm::{LimitOverrides, Runtime, RuntimeConfig};
use serde_json::{Value, json};

use super::component::{Reference, Slot};
use super::{Reloaded, Reloader};

fn built(name: &str) -> Vec<u8> {
    let path = ferry_wasm::testing::component(name).unwrap_or_else(|missing| panic!("{missing}"));
    std::fs::read(path).expect("component")
}

fn reference(slot: Slot, path: &Path, config: Value, cases: Option<PathBuf>) -> Reference {
    Reference {
        key: format!("resources[0].{}", slot.key()),
        resource: 0,
        resource_name: "deployments.apps".into(),
        slot,
        plugin: "placement-under-test".into(),
        path: path.to_path_buf(),
        config,
        limits: LimitOverrides::default(),
        cases,
    }
}

/// A folder with the placement component (`contract-v0-2-0`, which places on the targets
/// whose labels match `labels` of its configuration) and the transform.
fn setup(
    placement_config: Value,
    cases: Option<PathBuf>,
) -> (tempfile::TempDir, Reloader, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let placement = dir.path().join("placement.wasm");
    std::fs::write(&placement, built("contract-v0-2-0")).expect("write");
    let transform = dir.path().join("transform.wasm");
    std::fs::write(&transform, built("default-transform")).expect("write");
    let runtime = Runtime::new(RuntimeConfig::default().max_instances(4)).expect("runtime");
    let references = vec![
        reference(Slot::Placement, &placement, placement_config, cases),
        reference(Slot::Transform, &transform, Value::Null, None),
    ];
    let reloader =
        Reloader::start(runtime, references, Arc::new(Metrics::default())).expect("starts");
    (dir, reloader, placement)
}

fn place(reloader: &Reloader) -> Vec<String> {
    let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo"}});
    let targets = [
        Target::new("eu").label("region", "eu"),
        Target::new("us").label("region", "us"),
    ];
    let context = ObjectContext {
        logical_cluster: "abc".into(),
        namespace: "demo".into(),
        downstream_namespace: "ferry-x".into(),
        ..ObjectContext::default()
    };
    let mut placed = reloader
        .chain(0)
        .expect("chain")
        .place(&context, &object, &targets)
        .expect("places");
    placed.sort();
    placed
}

fn running_digest(reloader: &Reloader) -> String {
    let chain = reloader.chain(0).expect("chain").current();
    chain
        .placement
        .as_ref()
        .expect("placement")
        .digest()
        .to_string()
}

#[test]
fn a_changed_component_is_swapped_in_once_two_polls_agree_and_the_chain_tells_the_engine() {
    let (_dir, mut reloader, placement) = setup(json!({"labels": {"region": "eu"}}), None);
    let chain = reloader.chain(0).expect("chain");
    let changes = chain.changes().expect("a live chain tells of changes");
    let before = running_digest(&reloader);
    assert_eq!(place(&reloader), ["eu"]);
    assert!(reloader.poll().is_empty(), "nothing changed");

    // The v0.1.0 build of the same fixture: another component, the same placement rule.
    std::fs::write(&placement, built("frozen-v0-1-0")).expect("write");
    assert!(
        reloader.poll().is_empty(),
        "a change is tried on the second poll"
    );
    let outcomes = reloader.poll();
    let [Reloaded::Loaded(digest)] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_ne!(*digest, before);
    assert_eq!(running_digest(&reloader), *digest);
    assert_eq!(chain.version(), 1);
    assert!(changes.has_changed().expect("sender alive"));
    assert_eq!(place(&reloader), ["eu"]);
    assert!(
        reloader.poll().is_empty(),
        "the new component is the running one"
    );
    // The replaced version's compiled code is not kept: the transform and the new placement.
    assert_eq!(reloader.runtime.compiled_components(), 2);
}

#[test]
fn a_broken_component_is_refused_and_the_last_known_good_keeps_answering() {
    let (_dir, mut reloader, placement) = setup(json!({"labels": {"region": "eu"}}), None);
    let chain = reloader.chain(0).expect("chain");
    let good = running_digest(&reloader);

    // Not a component at all.
    std::fs::write(&placement, b"not wasm").expect("write");
    reloader.poll();
    assert!(matches!(reloader.poll().as_slice(), [Reloaded::Refused(_)]));
    assert_eq!(running_digest(&reloader), good);
    assert_eq!(chain.version(), 0);
    assert_eq!(place(&reloader), ["eu"]);
    // Refused once, not tried again on every poll.
    assert!(reloader.poll().is_empty());

    // A component that refuses the configuration (label-placement knows no `labels`).
    std::fs::write(&placement, built("label-placement")).expect("write");
    reloader.poll();
    assert!(matches!(reloader.poll().as_slice(), [Reloaded::Refused(_)]));
    assert_eq!(running_digest(&reloader), good);
    assert_eq!(chain.version(), 0);
    assert_eq!(place(&reloader), ["eu"]);
    // Nothing of the refused versions is kept: the running placement and the transform.
    assert_eq!(reloader.runtime.compiled_components(), 2);
}

#[test]
fn a_component_that_fails_its_golden_cases_is_refused() {
    // The case: with `labels: {region: eu}`, an object goes to `eu` only.
    let cases = tempfile::tempdir().expect("tempdir");
    let case = cases.path().join("eu-only");
    std::fs::create_dir(&case).expect("case dir");
    for (file, text) in [
        ("case.yaml", "hook: place\n"),
        (
            "object.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: demo}\n",
        ),
        (
            "targets.yaml",
            "- {name: eu, labels: {region: eu}}\n- {name: us, labels: {region: us}}\n",
        ),
        ("config.yaml", "labels: {region: eu}\n"),
        ("expected.yaml", "[eu]\n"),
    ] {
        std::fs::write(case.join(file), text).expect("write case");
    }
    let (_dir, mut reloader, placement) = setup(Value::Null, Some(cases.path().to_path_buf()));
    let good = running_digest(&reloader);
    assert_eq!(
        place(&reloader),
        ["eu", "us"],
        "no labels configured: everywhere"
    );

    // label-placement loads with a null configuration, but cannot run the case's.
    std::fs::write(&placement, built("label-placement")).expect("write");
    reloader.poll();
    assert!(matches!(reloader.poll().as_slice(), [Reloaded::Refused(_)]));
    assert_eq!(running_digest(&reloader), good);

    // The v0.1.0 fixture passes the case: swapped in.
    std::fs::write(&placement, built("frozen-v0-1-0")).expect("write");
    reloader.poll();
    assert!(matches!(reloader.poll().as_slice(), [Reloaded::Loaded(_)]));
}

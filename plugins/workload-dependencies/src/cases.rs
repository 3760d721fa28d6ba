//! Runs the golden cases in `cases/` against the plugin's logic natively, so they are checked
//! before a host that speaks 0.2.0 loads the component (`ferry plugin test` runs the same
//! folders against the built component).

use std::fs;
use std::path::Path;

use ferry_plugin_sdk::{Context, Error, ObjectRef, Plugin, Workspace};
use serde_json::{Value, json};

use super::WorkloadDependencies;

fn read(path: &Path) -> Option<Value> {
    let text = fs::read_to_string(path).ok()?;
    Some(serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn context() -> Context {
    Context {
        workspace: Workspace {
            logical_cluster: "test-cluster".into(),
            path: None,
            labels: vec![],
            annotations: vec![],
        },
        namespace: "default".into(),
        downstream_namespace: "ferry-test".into(),
    }
}

/// What `configure` and then `dependencies` answer for a case.
fn run(config: Value, object: &Value) -> Result<Vec<ObjectRef>, Error> {
    let config: <WorkloadDependencies as Plugin>::Config = serde_json::from_value(config)
        .map_err(|e| Error::invalid_config(format!("cannot read configuration: {e}")))?;
    WorkloadDependencies::dependencies(&config, &context(), object)
}

/// The golden-case form of a reference: `optional` only when true.
fn render(reference: &ObjectRef) -> Value {
    let mut value = json!({
        "group": reference.group,
        "resource": reference.resource,
        "name": reference.name,
    });
    if reference.optional {
        value["optional"] = true.into();
    }
    value
}

#[test]
fn every_golden_case_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let mut count = 0;
    for entry in fs::read_dir(&dir).expect("cases/") {
        let case = entry.expect("case folder").path();
        let name = case.display();
        let meta = read(&case.join("case.yaml")).expect("case.yaml");
        assert_eq!(meta["hook"], "dependencies", "{name}");
        let object = read(&case.join("object.yaml")).expect("object.yaml");
        let config = read(&case.join("config.yaml")).unwrap_or(Value::Null);
        let result = run(config, &object);
        match (
            read(&case.join("expected.yaml")),
            read(&case.join("error.yaml")),
        ) {
            (Some(expected), None) => {
                let refs = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let actual = Value::Array(refs.iter().map(render).collect());
                assert_eq!(actual, expected, "{name}");
            }
            (None, Some(error)) => {
                let err = result.expect_err(&format!("{name}: expected an error"));
                assert_eq!(err.kind(), error["kind"], "{name}");
                if let Some(message) = error["message"].as_str() {
                    assert!(err.message().contains(message), "{name}: {err}");
                }
            }
            _ => panic!("{name}: needs exactly one of expected.yaml and error.yaml"),
        }
        count += 1;
    }
    assert!(count > 0, "no cases in {}", dir.display());
}

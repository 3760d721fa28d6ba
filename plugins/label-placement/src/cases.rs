//! Runs the golden cases in `cases/` against the plugin natively, so they are checked before
//! a host that speaks 0.2.0 loads the component (`ferry plugin test` runs the same folders
//! against the built component). Context defaults follow the engine's case loader.

use std::fs;
use std::path::Path;

use ferry_plugin_sdk::serde_json::{self, Value};
use ferry_plugin_sdk::{Context, Error, Plugin, Target, Workspace};

use super::LabelPlacement;

fn read(path: &Path) -> Option<Value> {
    let text = fs::read_to_string(path).ok()?;
    Some(serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// A YAML map of strings as sorted pairs.
fn pairs(value: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    pairs.sort();
    pairs
}

fn context(overrides: &Value, object: &Value) -> Context {
    let text = |key: &str| {
        overrides
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Context {
        workspace: Workspace {
            logical_cluster: text("logicalCluster")
                .or_else(|| {
                    object
                        .pointer("/metadata/annotations/kcp.io~1cluster")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "test-cluster".into()),
            path: text("workspacePath"),
            labels: pairs(&overrides["workspaceLabels"]),
            annotations: pairs(&overrides["workspaceAnnotations"]),
        },
        namespace: text("namespace").unwrap_or_else(|| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        }),
        downstream_namespace: text("downstreamNamespace").unwrap_or_else(|| "ferry-test".into()),
    }
}

fn run(
    config: Value,
    context: &Context,
    object: &Value,
    targets: &[Target],
) -> Result<Vec<String>, Error> {
    let config: <LabelPlacement as Plugin>::Config = serde_json::from_value(config)
        .map_err(|e| Error::invalid_config(format!("cannot read configuration: {e}")))?;
    LabelPlacement::validate(&config)?;
    let mut names = LabelPlacement::place(&config, context, object, targets)?;
    names.sort();
    Ok(names)
}

#[test]
fn every_golden_case_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let mut count = 0;
    for entry in fs::read_dir(&dir).expect("cases/") {
        let case = entry.expect("case folder").path();
        let name = case.display();
        let meta = read(&case.join("case.yaml")).expect("case.yaml");
        assert_eq!(meta["hook"], "place", "{name}");
        let object = read(&case.join("object.yaml")).expect("object.yaml");
        let targets: Vec<Target> = read(&case.join("targets.yaml"))
            .expect("targets.yaml")
            .as_array()
            .expect("a list of targets")
            .iter()
            .map(|t| Target {
                name: t["name"].as_str().expect("name").to_owned(),
                labels: pairs(&t["labels"]),
            })
            .collect();
        let config = read(&case.join("config.yaml")).unwrap_or(Value::Null);
        let context = context(&meta["context"], &object);
        let result = run(config, &context, &object, &targets);
        let expected = read(&case.join("expected.yaml")).or_else(|| {
            // An empty expected.yaml is the expected `null` (here: an empty placement).
            case.join("expected.yaml").is_file().then_some(Value::Null)
        });
        match (expected, read(&case.join("error.yaml"))) {
            (Some(expected), None) => {
                let names = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let mut expected: Vec<String> = serde_json::from_value(expected)
                    .or_else(|_| Ok::<_, ()>(Vec::new()))
                    .expect("names");
                expected.sort();
                assert_eq!(names, expected, "{name}");
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

//! The input of `ferry plugin run`: one YAML (or JSON) document.
//!
//! ```yaml
//! object:                 # required: the upstream object, plain Kubernetes YAML
//!   apiVersion: apps/v1
//!   kind: Deployment
//!   metadata: {name: web, namespace: default, annotations: {kcp.io/cluster: abc}}
//! targets:                # place, transform, aggregate-status: {name, labels} each
//!   - {name: cluster-1, labels: {region: eu}}
//! target: cluster-1       # transform: which of `targets` (default the first)
//! downstream:             # aggregate-status: the live copy per target name; a target
//!   cluster-1: {...}      #   of `targets` without an entry has no copy
//! config: {...}           # optional plugin configuration (`--config <file>` wins)
//! context: {...}          # optional: logicalCluster, workspacePath, workspaceLabels,
//!                         #   workspaceAnnotations (the last two: v0.2.0 plugins only),
//!                         #   namespace, downstreamNamespace (defaults as in golden cases)
//! ```
//!
//! A document without an `object:` key is taken as the object itself, so a plain manifest
//! works as it is (`--targets` and `--target` then supply the rest).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use ferry_core::{Downstream, ObjectContext, Target};
use ferry_wasm::cases::ContextOverrides;
use serde::Deserialize;
use serde_json::Value;

/// Everything a hook call needs, resolved.
pub struct Input {
    pub object: Value,
    pub context: ObjectContext,
    pub targets: Vec<Target>,
    pub target: Option<Target>,
    pub downstream: Vec<Downstream>,
    pub config: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    object: Value,
    #[serde(default)]
    targets: Option<Vec<Target>>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    downstream: BTreeMap<String, Value>,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    context: ContextOverrides,
}

/// Reads a YAML or JSON file, or standard input for `-`.
pub fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let shown = if path == Path::new("-") {
        "standard input".into()
    } else {
        path.display().to_string()
    };
    serde_yaml::from_str(&text).with_context(|| format!("{shown}: invalid YAML"))
}

/// What the flags add to the input file.
pub struct Overrides<'a> {
    pub targets: Option<Vec<Target>>,
    pub target: Option<&'a str>,
    pub config: Option<Value>,
}

/// Reads the input at `path` and applies the flags' overrides.
pub fn load(path: &Path, overrides: Overrides<'_>) -> anyhow::Result<Input> {
    let document: Value = read_yaml(path)?;
    let file: File = match &document {
        Value::Object(map) if map.contains_key("object") => serde_json::from_value(document)
            .context("the input has an `object:` key, so it must have the keys of a run input")?,
        Value::Object(map) if map.contains_key("apiVersion") || map.contains_key("kind") => File {
            object: document,
            targets: None,
            target: None,
            downstream: BTreeMap::new(),
            config: Value::Null,
            context: ContextOverrides::default(),
        },
        _ => bail!(
            "the input must be a Kubernetes object or a mapping with an `object:` key, not {}",
            kind_of(&document)
        ),
    };
    if !file.object.is_object() {
        bail!("`object` must be a mapping, not {}", kind_of(&file.object));
    }

    let mut targets = overrides.targets.or(file.targets).unwrap_or_default();
    let wanted = overrides.target.map(str::to_owned).or(file.target);
    let target = match wanted {
        Some(name) => match targets.iter().find(|t| t.name == name) {
            Some(t) => Some(t.clone()),
            // `--target cluster-1` without any targets: a target of that name, no labels.
            None if targets.is_empty() => {
                let t = Target {
                    name,
                    labels: BTreeMap::new(),
                };
                targets.push(t.clone());
                Some(t)
            }
            None => bail!("target {name:?} is not one of the input's targets"),
        },
        None => targets.first().cloned(),
    };
    for name in file.downstream.keys() {
        if !targets.iter().any(|t| &t.name == name) {
            bail!("downstream copy for {name:?}, which is not one of the input's targets");
        }
    }
    let downstream = targets
        .iter()
        .map(|t| Downstream {
            target: t.clone(),
            object: file
                .downstream
                .get(&t.name)
                .filter(|v| !v.is_null())
                .cloned(),
        })
        .collect();
    let context = file.context.resolve(&file.object);
    Ok(Input {
        object: file.object,
        context,
        targets,
        target,
        downstream,
        config: overrides.config.unwrap_or(file.config),
    })
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping without apiVersion or kind",
    }
}

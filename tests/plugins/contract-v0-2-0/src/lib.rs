//! A `ferry:sync@0.2.0` plugin exporting every hook, written against `wit/v0.2.0` with
//! wit-bindgen alone, so the host's v0.2.0 support is tested without the SDK.
//!
//! - `place`: every target whose labels contain the configured `labels`;
//! - `transform`: `default-transform`'s logic (the frozen copy in `../frozen-v0-1-0`), run
//!   once per call and answered per target: a target labelled `ferry.test/outcome: skip` is
//!   skipped, `ferry.test/outcome: fail` fails alone, every other target gets the object.
//!   With `echoWorkspace: true` the object carries the workspace record it was given as the
//!   `ferry.test/workspace` annotation (JSON);
//! - `aggregate-status`: the `status` of the only copy;
//! - `dependencies`: what a Pod template references (service account, ConfigMaps, Secrets,
//!   PersistentVolumeClaims, image pull secrets), duplicates and all: merging is the host's job.
//!
//! `misbehave: <mode>` turns it hostile, to prove the host's limits and validation hold for
//! v0.2.0 hooks too: `loop`, `memory-bomb`, `trap`, `error` (every hook but `configure`), and
//! for `transform` `unknown-target`, `duplicate-target`, `missing-target`, `not-json`, for
//! `dependencies` `invalid-name`, `empty-resource`.

wit_bindgen::generate!({
    world: "plugin",
    path: "../../../wit/v0.2.0",
});

#[path = "../../frozen-v0-1-0/src/logic.rs"]
mod logic;

use std::cell::RefCell;
use std::collections::BTreeMap;

use exports::ferry::sync::dependencies::{self, ObjectRef};
use exports::ferry::sync::transform::{self, Outcome, TargetOutcome};
use exports::ferry::sync::{config, placement, status};
use ferry::sync::types::{Downstream, ObjectContext, PluginError, Target};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(default, rename = "allowExternalIPs")]
    allow_external_ips: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    echo_workspace: bool,
    #[serde(default)]
    misbehave: Option<String>,
}

// `configure` and the hook run on the same fresh instance; wasm guests are single-threaded.
thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

fn config() -> Config {
    CONFIG.with(|c| c.borrow().clone())
}

/// The label a test puts on a target to choose its outcome.
const OUTCOME_LABEL: &str = "ferry.test/outcome";

fn parse(object: &str) -> Result<Value, PluginError> {
    serde_json::from_str(object)
        .map_err(|e| PluginError::InvalidInput(format!("object is not valid JSON: {e}")))
}

/// The misbehaviours every hook shares; returns the mode when it is hook-specific.
fn misbehave() -> Result<Option<String>, PluginError> {
    let Some(mode) = config().misbehave else {
        return Ok(None);
    };
    match mode.as_str() {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "memory-bomb" => {
            let block = vec![1u8; 1 << 30];
            let sum: u64 = std::hint::black_box(&block)
                .iter()
                .step_by(4096)
                .map(|b| u64::from(*b))
                .sum();
            Err(PluginError::Failed(format!(
                "allocated 1 GiB (checksum {sum}): the memory cap did not hold"
            )))
        }
        "trap" => panic!("asked to trap"),
        "error" => Err(PluginError::Failed("asked to fail".into())),
        _ => Ok(Some(mode)),
    }
}

struct Fixture;

impl config::Guest for Fixture {
    fn configure(json: String) -> Result<(), PluginError> {
        let parsed: Option<Config> = serde_json::from_str(&json)
            .map_err(|e| PluginError::InvalidConfig(format!("cannot read configuration: {e}")))?;
        CONFIG.with(|c| *c.borrow_mut() = parsed.unwrap_or_default());
        Ok(())
    }
}

impl placement::Guest for Fixture {
    fn place(
        _: ObjectContext,
        _: String,
        targets: Vec<Target>,
    ) -> Result<Vec<String>, PluginError> {
        misbehave()?;
        let wanted = config().labels;
        Ok(targets
            .into_iter()
            .filter(|t| {
                wanted
                    .iter()
                    .all(|(k, v)| t.labels.iter().any(|(tk, tv)| tk == k && tv == v))
            })
            .map(|t| t.name)
            .collect())
    }
}

impl transform::Guest for Fixture {
    fn transform(
        context: ObjectContext,
        object: String,
        targets: Vec<Target>,
    ) -> Result<Vec<TargetOutcome>, PluginError> {
        let mode = misbehave()?;
        let config = config();
        // One parse and one transformation for every target: what v0.2.0 is for.
        let object = parse(&object)?;
        logic::check_external_ips(&object, config.allow_external_ips)
            .map_err(PluginError::InvalidInput)?;
        let origin = logic::Origin {
            logical_cluster: &context.workspace.logical_cluster,
            workspace_path: context.workspace.path.as_deref(),
            downstream_namespace: &context.downstream_namespace,
        };
        let mut out = logic::transform(object, &origin).map_err(PluginError::InvalidInput)?;
        if config.echo_workspace {
            let w = &context.workspace;
            let record = json!({
                "logicalCluster": w.logical_cluster,
                "path": w.path,
                "labels": w.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
                "annotations": w.annotations.iter().cloned().collect::<BTreeMap<_, _>>(),
            });
            if let Some(annotations) = out
                .pointer_mut("/metadata/annotations")
                .and_then(Value::as_object_mut)
            {
                annotations.insert("ferry.test/workspace".into(), record.to_string().into());
            }
        }
        let text = out.to_string();

        let mut outcomes: Vec<TargetOutcome> = targets
            .iter()
            .map(|t| {
                let chosen = t
                    .labels
                    .iter()
                    .find(|(k, _)| k == OUTCOME_LABEL)
                    .map(|(_, v)| v.as_str());
                let outcome = match chosen {
                    Some("skip") => Outcome::Skip,
                    Some("fail") => Outcome::Failed(PluginError::InvalidInput(format!(
                        "target {} refuses this object",
                        t.name
                    ))),
                    _ => Outcome::Apply(text.clone()),
                };
                TargetOutcome {
                    target: t.name.clone(),
                    outcome,
                }
            })
            .collect();
        match mode.as_deref() {
            Some("unknown-target") => outcomes.push(TargetOutcome {
                target: "no-such-cluster".into(),
                outcome: Outcome::Skip,
            }),
            Some("duplicate-target") => {
                if let Some(first) = targets.first() {
                    outcomes.push(TargetOutcome {
                        target: first.name.clone(),
                        outcome: Outcome::Skip,
                    });
                }
            }
            Some("missing-target") => {
                outcomes.pop();
            }
            Some("not-json") => {
                if let Some(first) = outcomes.first_mut() {
                    first.outcome =
                        Outcome::Apply("{\"apiVersion\": \"apps/v1\", \"kind\": ".into());
                }
            }
            _ => {}
        }
        Ok(outcomes)
    }
}

impl status::Guest for Fixture {
    fn aggregate_status(
        _: ObjectContext,
        _: String,
        downstream: Vec<Downstream>,
    ) -> Result<Option<String>, PluginError> {
        misbehave()?;
        let [one] = downstream.as_slice() else {
            return Err(PluginError::InvalidInput(format!(
                "the object is on {} targets; this plugin copies the status of exactly one",
                downstream.len()
            )));
        };
        let status = one
            .object
            .as_deref()
            .map(parse)
            .transpose()?
            .and_then(|o| o.get("status").cloned())
            .filter(Value::is_object);
        Ok(status.map(|s| s.to_string()))
    }
}

impl dependencies::Guest for Fixture {
    fn dependencies(_: ObjectContext, object: String) -> Result<Vec<ObjectRef>, PluginError> {
        let mode = misbehave()?;
        match mode.as_deref() {
            Some("invalid-name") => return Ok(vec![core_ref("configmaps", "Not_A_Name", false)]),
            Some("empty-resource") => return Ok(vec![core_ref("", "settings", false)]),
            _ => {}
        }
        let object = parse(&object)?;
        // A Pod's own spec, or the Pod template of a workload.
        let Some(spec) = object.pointer("/spec/template/spec").or_else(|| {
            (object.get("kind") == Some(&json!("Pod")))
                .then(|| object.get("spec"))
                .flatten()
        }) else {
            return Ok(Vec::new());
        };
        Ok(pod_references(spec))
    }
}

fn core_ref(resource: &str, name: &str, optional: bool) -> ObjectRef {
    ObjectRef {
        group: String::new(),
        resource: resource.into(),
        name: name.into(),
        optional,
    }
}

/// Every object a Pod spec names, in the order met.
fn pod_references(spec: &Value) -> Vec<ObjectRef> {
    let mut refs = Vec::new();
    let s = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let optional = |v: &Value| v.get("optional").and_then(Value::as_bool).unwrap_or(false);
    if let Some(account) = s(spec, "serviceAccountName") {
        refs.push(core_ref("serviceaccounts", &account, false));
    }
    for secret in spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = s(secret, "name") {
            // A missing pull secret only matters when the image needs it.
            refs.push(core_ref("secrets", &name, true));
        }
    }
    for volume in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(cm) = volume.get("configMap")
            && let Some(name) = s(cm, "name")
        {
            refs.push(core_ref("configmaps", &name, optional(cm)));
        }
        if let Some(secret) = volume.get("secret")
            && let Some(name) = s(secret, "secretName")
        {
            refs.push(core_ref("secrets", &name, optional(secret)));
        }
        if let Some(claim) = volume.get("persistentVolumeClaim")
            && let Some(name) = s(claim, "claimName")
        {
            refs.push(core_ref("persistentvolumeclaims", &name, false));
        }
    }
    let containers = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten();
    for container in containers {
        for env in container
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let from = env.get("valueFrom");
            for (key, resource) in [
                ("configMapKeyRef", "configmaps"),
                ("secretKeyRef", "secrets"),
            ] {
                if let Some(r) = from.and_then(|f| f.get(key))
                    && let Some(name) = s(r, "name")
                {
                    refs.push(core_ref(resource, &name, optional(r)));
                }
            }
        }
        for source in container
            .get("envFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (key, resource) in [("configMapRef", "configmaps"), ("secretRef", "secrets")] {
                if let Some(r) = source.get(key)
                    && let Some(name) = s(r, "name")
                {
                    refs.push(core_ref(resource, &name, optional(r)));
                }
            }
        }
    }
    refs
}

export!(Fixture);

//! `ferry plugin record --config ferry.yaml <workspace> <resource> <namespace/name> [--out
//! dir]`: turns a live object into golden cases. The engine's own planner plans the object
//! from a fresh read of kcp and the targets (as `ferry preview` does) with a recording
//! wrapper around the resource's plugin chain; every hook call made for the object becomes
//! a case folder in the format `ferry plugin test` reads (inputs exactly as the engine passed
//! them, configuration from `ferry.yaml`), and its expected result is what the configured
//! component answers today.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use ferry_core::{Downstream, Hook, ObjectContext, Target};
use ferry_sync::HookError;
use ferry_sync::metrics::Metrics;
use ferry_wasm::PluginOptions;
use ferry_wasm::cases::{self, Case, Expected, ExpectedError};
use serde_json::{Value, json};

use super::{Failure, OrUsage, runtime};
use crate::recording_chain::{Call, RecordingChain};
use crate::reload::component::{self, Reference, Slot};
use crate::{config, plugin_lookup, preview, run};

/// Arguments of `ferry plugin record`.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (the one `ferry run` uses).
    #[arg(long, short, default_value = "ferry.yaml")]
    config: PathBuf,
    /// The object's workspace: a path (`root:team-a`) or a logical cluster name.
    workspace: String,
    /// The object's resource as `ferry.yaml` configures it: `deployments.apps`, or the plural
    /// alone (`deployments`) when only one group has it.
    resource: String,
    /// The object: `<namespace>/<name>`.
    object: String,
    /// Where to write the cases: a folder per plugin (`placement/`, `transform/`,
    /// `status/`, `dependencies/`), each holding case folders.
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let (namespace, name) = args
        .object
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .ok_or_else(|| {
            Failure::usage(&anyhow::anyhow!(
                "{:?} is not <namespace>/<name> (Ferry syncs namespaced objects only)",
                args.object
            ))
        })?;
    // An invalid configuration is listed key by key, exit code 2, as for `ferry run`.
    let loaded = config::load(&args.config)?;
    let (index, resource) = find_resource(&loaded, &args.resource)?;
    let references: Vec<Reference> = component::references(&loaded)
        .into_iter()
        .filter(|r| r.resource == index)
        .collect();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .or_usage()?;
    let (cluster, calls) = tokio
        .block_on(record(&loaded, index, &args.workspace, namespace, name))
        .or_usage()?;
    if calls.is_empty() {
        return Err(Failure::usage(&anyhow::anyhow!(
            "no {resource} {namespace}/{name} in workspace {} (logical cluster {cluster}), or \
             no plugin is called for it (it is being deleted)",
            args.workspace
        ))
        .into());
    }
    println!(
        "recorded {resource} {namespace}/{name} in {} (logical cluster {cluster}):",
        args.workspace
    );
    let runtime = runtime()?;
    let mut folders: Vec<(PathBuf, &Reference)> = Vec::new();
    for call in &calls {
        let slot = slot_of(call);
        let Some(reference) = references.iter().find(|r| r.slot == slot) else {
            continue;
        };
        let folder = args.out.join(slot.key());
        for case in cases_of(call, namespace, name) {
            let dir = folder.join(&case.name);
            let description = format!(
                "recorded by `ferry plugin record` from {} {resource} {namespace}/{name}{}",
                args.workspace,
                case.target
                    .as_deref()
                    .map_or_else(String::new, |t| format!(" for target {t}"))
            );
            write_case(&dir, &case, &description, &reference.config)
                .with_context(|| format!("writing {}", dir.display()))
                .or_usage()?;
            let replayed = replay(&runtime, &dir, reference)?;
            let agrees = same(&case.recorded, &replayed);
            println!(
                "  {:<40} {:<17} {}",
                dir.display(),
                case.hook.wit_name(),
                if agrees {
                    "ok".to_string()
                } else {
                    "REPLAY DIFFERS".to_string()
                }
            );
            if !agrees {
                eprintln!(
                    "warning: {}: the component answers these inputs differently from the \
                     engine's call just now: it is not a pure function of its inputs",
                    dir.display()
                );
            }
        }
        if !folders.iter().any(|(f, _)| *f == folder) {
            folders.push((folder, reference));
        }
    }
    println!("replay with:");
    for (folder, reference) in folders {
        let plugin = if plugin_lookup::is_path(&reference.plugin) {
            reference.path.display().to_string()
        } else {
            reference.plugin.clone()
        };
        println!("  ferry plugin test {plugin} {}", folder.display());
    }
    Ok(())
}

/// The configured resource `wanted` names, with its index in `resources:`.
fn find_resource(loaded: &config::Loaded, wanted: &str) -> Result<(usize, String), Failure> {
    let names: Vec<(usize, String, &str)> = loaded
        .config
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let full = if r.group.is_empty() {
                r.resource.clone()
            } else {
                format!("{}.{}", r.resource, r.group)
            };
            (i, full, r.resource.as_str())
        })
        .collect();
    let exact: Vec<_> = names.iter().filter(|(_, full, _)| full == wanted).collect();
    let plural: Vec<_> = names.iter().filter(|(_, _, p)| *p == wanted).collect();
    match (exact.as_slice(), plural.as_slice()) {
        ([(i, full, _)], _) | ([], [(i, full, _)]) => Ok((*i, full.clone())),
        _ => Err(Failure::usage(&anyhow::anyhow!(
            "{wanted:?} is not one resource of the configuration (configured: {})",
            names
                .iter()
                .map(|(_, full, _)| full.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Plans the object with a recording chain around its resource's plugins; returns its
/// logical cluster and the calls made for it.
async fn record(
    loaded: &config::Loaded,
    index: usize,
    workspace: &str,
    namespace: &str,
    name: &str,
) -> anyhow::Result<(String, Vec<Call>)> {
    let (mut settings, _plugins) =
        run::settings_and_plugins(loaded, Arc::new(Metrics::default())).await?;
    let cluster = if workspace.contains(':') {
        preview::logical_cluster_of(&settings.kcp.config, workspace)
            .await
            .with_context(|| format!("resolving workspace {workspace}"))?
    } else {
        workspace.to_string()
    };
    let recorder = Arc::new(RecordingChain::new(
        settings.resources[index].plugins.clone(),
        &cluster,
        namespace,
        name,
    ));
    settings.resources[index].plugins = recorder.clone();
    ferry_sync::preview::survey(settings, Some(&cluster)).await?;
    Ok((cluster, recorder.calls()))
}

fn slot_of(call: &Call) -> Slot {
    match call {
        Call::Place { .. } => Slot::Placement,
        Call::Transform { .. } => Slot::Transform,
        Call::Status { .. } => Slot::Status,
        Call::Dependencies { .. } => Slot::Dependencies,
    }
}

/// One case to write: the inputs of one hook call (one target of a transform) and what
/// the engine's call answered.
struct RecordedCase {
    name: String,
    hook: Hook,
    context: ObjectContext,
    object: Value,
    targets: Vec<Target>,
    target: Option<String>,
    downstream: Vec<Downstream>,
    recorded: Result<Value, HookError>,
}

fn cases_of(call: &Call, namespace: &str, name: &str) -> Vec<RecordedCase> {
    let base = format!("{namespace}-{name}");
    let case = |hook, context: &ObjectContext, object: &Value, recorded| RecordedCase {
        name: base.clone(),
        hook,
        context: context.clone(),
        object: object.clone(),
        targets: Vec::new(),
        target: None,
        downstream: Vec::new(),
        recorded,
    };
    match call {
        Call::Place {
            context,
            object,
            targets,
            result,
        } => vec![RecordedCase {
            targets: targets.clone(),
            ..case(
                Hook::Place,
                context,
                object,
                result.clone().map(|mut names| {
                    names.sort();
                    json!(names)
                }),
            )
        }],
        Call::Transform {
            context,
            object,
            results,
        } => results
            .iter()
            .map(|(target, result)| RecordedCase {
                name: format!("{base}-{}", target.name),
                targets: vec![target.clone()],
                target: Some(target.name.clone()),
                ..case(
                    Hook::Transform,
                    context,
                    object,
                    result.clone().map(|o| o.unwrap_or(Value::Null)),
                )
            })
            .collect(),
        Call::Status {
            context,
            object,
            downstream,
            result,
        } => vec![RecordedCase {
            targets: downstream.iter().map(|d| d.target.clone()).collect(),
            downstream: downstream.clone(),
            ..case(
                Hook::AggregateStatus,
                context,
                object,
                result.clone().map(|o| o.unwrap_or(Value::Null)),
            )
        }],
        Call::Dependencies {
            context,
            object,
            result,
        } => vec![case(
            Hook::Dependencies,
            context,
            object,
            result
                .clone()
                .map(|refs| serde_json::to_value(refs).unwrap_or(Value::Null)),
        )],
    }
}

/// Writes the case's input files (the expected file comes from the replay). A folder of
/// the same name is replaced: recording again refreshes the case.
fn write_case(
    dir: &Path,
    case: &RecordedCase,
    description: &str,
    config: &Value,
) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let mut case_file = json!({
        "hook": case.hook.wit_name(),
        "description": description,
        // Every field, so the replay sees exactly the context the engine passed.
        "context": serde_json::to_value(&case.context)?,
    });
    if let Some(target) = &case.target {
        case_file["target"] = target.clone().into();
    }
    std::fs::write(dir.join("case.yaml"), yaml(&case_file)?)?;
    std::fs::write(dir.join("object.yaml"), yaml(&case.object)?)?;
    if !case.targets.is_empty() {
        std::fs::write(dir.join("targets.yaml"), yaml(&case.targets)?)?;
    }
    if !config.is_null() {
        std::fs::write(dir.join("config.yaml"), yaml(config)?)?;
    }
    // What the engine's call answered; the replay rewrites it with the component's answer
    // (the same, for a plugin that is a function of its inputs).
    let (file, expected) = match &case.recorded {
        Ok(value) => ("expected.yaml", Expected::Output(value.clone())),
        Err(error) => (
            "error.yaml",
            Expected::Error(ExpectedError {
                kind: error.kind,
                message: None,
            }),
        ),
    };
    std::fs::write(dir.join(file), cases::render(&expected))?;
    for copy in &case.downstream {
        if let Some(object) = &copy.object {
            let folder = dir.join("downstream");
            std::fs::create_dir_all(&folder)?;
            std::fs::write(
                folder.join(format!("{}.yaml", copy.target.name)),
                yaml(object)?,
            )?;
        }
    }
    Ok(())
}

fn yaml<T: serde::Serialize>(value: &T) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(value)
}

/// Runs the written case against the configured component and writes its expected file
/// from the result: what `ferry plugin test` will compare with from now on.
fn replay(
    runtime: &ferry_wasm::Runtime,
    dir: &Path,
    reference: &Reference,
) -> Result<Expected, Failure> {
    let case = Case::load(dir)
        .map_err(|e| anyhow::Error::new(e).context("reading the recorded case back"))
        .or_usage()?;
    let options = PluginOptions::default()
        .name(reference.plugin.clone())
        .limits(reference.limits);
    let outcome = case
        .run_with(&options, |o| runtime.load_file(&reference.path, o))
        .map_err(|e| anyhow::Error::new(e).context("replaying the recorded case"))
        .or_usage()?;
    case.write_expected(&outcome.actual)
        .map_err(|e| anyhow::Error::new(e).context("writing the expected result"))
        .or_usage()?;
    Ok(outcome.actual)
}

/// Whether the replay answered what the engine's call answered (errors by kind).
fn same(recorded: &Result<Value, HookError>, replayed: &Expected) -> bool {
    match (recorded, replayed) {
        (Ok(value), Expected::Output(output)) => value == output,
        (Err(error), Expected::Error(expected)) => error.kind == expected.kind,
        _ => false,
    }
}

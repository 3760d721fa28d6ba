//! `ferry plugin run <plugin> --hook <hook> --input <file|->`: one hook call, exactly as the
//! engine makes it (fresh instance, `configure`, the hook, output validation), then what it
//! cost. The input format is described in `input.rs` and `docs/plugins.md`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::{Hook, Target};
use ferry_wasm::{CallReport, ErrorKind, LimitOverrides, Limits, LoadError, PluginOptions};
use serde_json::Value;

use super::input::{self, Overrides};
use super::{Failure, OrUsage, display_name, locate, one_line, runtime};

/// Arguments of `ferry plugin run`.
#[derive(clap::Args)]
pub struct Args {
    /// A path to a `.wasm` component, or a first-party plugin's name.
    plugin: String,
    /// The hook to call.
    #[arg(long, value_enum)]
    hook: HookArg,
    /// The input: a YAML file with `object:` (and `targets:`, `target:`, `downstream:`,
    /// `config:`, `context:`), or a plain Kubernetes object; `-` reads standard input.
    #[arg(long)]
    input: PathBuf,
    /// Plugin configuration (YAML or JSON file); replaces the input's `config:`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Targets (a YAML list of `{name, labels}`); replaces the input's `targets:`.
    #[arg(long)]
    targets: Option<PathBuf>,
    /// The target a transform runs for (default the first target).
    #[arg(long)]
    target: Option<String>,
    /// Transform for every target in one call, as the engine does, and print a mapping from
    /// target name to object (`null` for a skip). Failed targets are left out of the mapping
    /// and named in the error.
    #[arg(long, conflicts_with = "target")]
    all_targets: bool,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Output::Yaml)]
    output: Output,
    /// Per-call deadline in milliseconds (default 250 for Rust plugins, more for Python and
    /// JavaScript ones; see docs/plugins.md).
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Memory cap in MiB (default 64 for Rust plugins, more for Python and JavaScript ones).
    #[arg(long)]
    memory_mib: Option<u64>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum HookArg {
    Place,
    Transform,
    AggregateStatus,
    /// Contract v0.2.0 only.
    Dependencies,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Yaml,
    Json,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let path = locate(&args.plugin)?;
    let targets: Option<Vec<Target>> = args
        .targets
        .as_deref()
        .map(input::read_yaml)
        .transpose()
        .or_usage()?;
    let config: Option<Value> = args
        .config
        .as_deref()
        .map(input::read_yaml)
        .transpose()
        .or_usage()?;
    let input = input::load(
        &args.input,
        Overrides {
            targets,
            target: args.target.as_deref(),
            config,
        },
    )
    .or_usage()?;
    let hook = match args.hook {
        HookArg::Place => Hook::Place,
        HookArg::Transform => Hook::Transform,
        HookArg::AggregateStatus => Hook::AggregateStatus,
        HookArg::Dependencies => Hook::Dependencies,
    };

    // What is not given takes the default of the guest's kind (Rust, or a language runtime).
    let mut limits = LimitOverrides::default();
    if let Some(ms) = args.deadline_ms {
        limits = limits.deadline(Duration::from_millis(ms));
    }
    if let Some(mib) = args.memory_mib {
        limits = limits.memory(mib.saturating_mul(1024 * 1024));
    }
    let report: Arc<Mutex<Option<Report>>> = Arc::default();
    let seen = Arc::clone(&report);
    let options = PluginOptions::default()
        .name(display_name(&path))
        .config(input.config.clone())
        .limits(limits)
        .observer(move |r: &CallReport<'_>| {
            if let Ok(mut slot) = seen.lock() {
                *slot = Some(Report::from(r));
            }
        });
    let runtime = runtime()?;
    let plugin = match runtime.load_file(&path, options) {
        Ok(plugin) => plugin,
        // The plugin refused the configuration: its answer, like any hook error.
        Err(e @ LoadError::Config { .. }) => return Err(Failure::plugin(one_line(&e)).into()),
        Err(e) => {
            return Err(Failure::usage(
                &anyhow::Error::new(e).context(format!("cannot load {}", path.display())),
            )
            .into());
        }
    };
    if args.all_targets && hook != Hook::Transform {
        return Err(Failure::usage(&anyhow::anyhow!(
            "--all-targets goes with --hook transform only"
        ))
        .into());
    }
    let result = match hook {
        Hook::Transform if args.all_targets => transform_all(&plugin, &input),
        Hook::Place => plugin
            .place(&input.context, &input.object, &input.targets)
            .map(Value::from),
        Hook::Transform => {
            let Some(target) = &input.target else {
                return Err(Failure::usage(&anyhow::anyhow!(
                    "transform needs a target: give `targets:` in the input, or --target"
                ))
                .into());
            };
            plugin
                .transform(&input.context, &input.object, target)
                .map(|o| o.unwrap_or(Value::Null))
        }
        Hook::Dependencies => plugin
            .dependencies(&input.context, &input.object)
            .map(|refs| serde_json::to_value(refs).unwrap_or(Value::Null)),
        _ => plugin
            .aggregate_status(&input.context, &input.object, &input.downstream)
            .map(|o| o.unwrap_or(Value::Null)),
    };
    let report = report.lock().ok().and_then(|mut r| r.take());
    match result {
        Ok(value) => {
            let text = match args.output {
                Output::Yaml => serde_yaml::to_string(&value)?,
                Output::Json => format!("{}\n", serde_json::to_string_pretty(&value)?),
            };
            print!("{text}");
            if let Some(report) = report {
                eprintln!("{}", report.line(hook, plugin.limits()));
            }
            Ok(())
        }
        Err(e) => {
            if let Some(report) = report {
                eprintln!("{}", report.line(hook, plugin.limits()));
            }
            Err(Failure::plugin(format!("{} ({})", one_line(&e), e.kind())).into())
        }
    }
}

/// Every target in one `transform_all` call: the mapping of the targets that succeeded, or,
/// when some failed, an error naming each of them (the call's own failure fails them all).
// The runtime's own error, passed on unchanged like every other hook's result here.
#[allow(clippy::result_large_err)]
fn transform_all(
    plugin: &ferry_wasm::Plugin,
    input: &input::Input,
) -> Result<Value, ferry_wasm::CallError> {
    let results = plugin.transform_all(&input.context, &input.object, &input.targets)?;
    let mut out = serde_json::Map::new();
    let mut failed = Vec::new();
    for (target, result) in results {
        match result {
            Ok(object) => {
                out.insert(
                    target,
                    object.map_or(Value::Null, std::sync::Arc::unwrap_or_clone),
                );
            }
            Err(e) => failed.push((target, e)),
        }
    }
    if failed.is_empty() {
        return Ok(Value::Object(out));
    }
    // The error line shows the first failure; this line names every failed target (run
    // them with --target to see each one's error).
    let names: Vec<&str> = failed.iter().map(|(t, _)| t.as_str()).collect();
    eprintln!(
        "transform: {} of {} targets failed ({})",
        failed.len(),
        input.targets.len(),
        names.join(", ")
    );
    Err(failed.remove(0).1)
}

/// What the observer saw of the call, kept past its borrow.
struct Report {
    elapsed: Duration,
    peak_memory: u64,
    error: Option<ErrorKind>,
}

impl From<&CallReport<'_>> for Report {
    fn from(r: &CallReport<'_>) -> Self {
        Self {
            elapsed: r.elapsed,
            peak_memory: r.peak_memory,
            error: r.error,
        }
    }
}

impl Report {
    /// One line for standard error, so standard output stays the bare result. Ferry bounds
    /// time with an epoch deadline, not fuel, so time is what is reported.
    fn line(&self, hook: Hook, limits: Limits) -> String {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        format!(
            "{hook}: {} in {:.3} ms wall (epoch deadline {} ms), peak memory {:.2} MiB of {:.0} MiB",
            self.error.map_or("ok", ErrorKind::as_str),
            self.elapsed.as_secs_f64() * 1e3,
            limits.deadline.as_millis(),
            mib(self.peak_memory),
            mib(limits.memory),
        )
    }
}

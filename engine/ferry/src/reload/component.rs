//! One plugin reference of `ferry.yaml` made into a running plugin: compiled, linked,
//! configured (the plugin's `configure` hook sees the operator's configuration) and checked
//! against the reference's golden cases. Start-up and hot reload go through the same steps,
//! so a component that would be refused on reload is refused at start-up too.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::Hook;
use ferry_sync::metrics::Metrics;
use ferry_wasm::cases::{self, Case};
use ferry_wasm::{CallReport, LimitOverrides, LoadError, Plugin, PluginOptions, Runtime};

use crate::config::{self, PluginRef};

/// Which plugin of a resource's chain a reference is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// `placement:`
    Placement,
    /// `transform:`
    Transform,
    /// `status:`
    Status,
    /// `dependencies:`
    Dependencies,
}

impl Slot {
    /// The key in `ferry.yaml` (`resources[0].<slot>`).
    pub fn key(self) -> &'static str {
        match self {
            Slot::Placement => "placement",
            Slot::Transform => "transform",
            Slot::Status => "status",
            Slot::Dependencies => "dependencies",
        }
    }

    /// The hook the engine calls on it.
    pub fn hook(self) -> Hook {
        match self {
            Slot::Placement => Hook::Place,
            Slot::Transform => Hook::Transform,
            Slot::Status => Hook::AggregateStatus,
            Slot::Dependencies => Hook::Dependencies,
        }
    }
}

/// Everything needed to load one plugin reference again.
#[derive(Clone, Debug)]
pub struct Reference {
    /// `resources[0].placement`.
    pub key: String,
    /// Index of the resource in `resources:`.
    pub resource: usize,
    /// `deployments.apps`.
    pub resource_name: String,
    /// Which plugin of the chain.
    pub slot: Slot,
    /// The plugin as configured (name or path).
    pub plugin: String,
    /// The component file.
    pub path: PathBuf,
    /// Passed to `configure`.
    pub config: serde_json::Value,
    /// Limits of every call; those not configured take the default of the guest's kind.
    pub limits: LimitOverrides,
    /// Golden cases every component must pass, if configured.
    pub cases: Option<PathBuf>,
}

/// Every plugin reference of a validated configuration, in configuration order.
pub fn references(loaded: &config::Loaded) -> Vec<Reference> {
    let mut out = Vec::new();
    for (i, resource) in loaded.config.resources.iter().enumerate() {
        let resource_name = if resource.group.is_empty() {
            resource.resource.clone()
        } else {
            format!("{}.{}", resource.resource, resource.group)
        };
        let slots = [
            (Slot::Placement, resource.placement.plugin()),
            (Slot::Transform, Some(&resource.transform)),
            (Slot::Status, resource.status.as_ref()),
            (Slot::Dependencies, resource.dependencies.as_ref()),
        ];
        for (slot, reference) in slots {
            let Some(reference) = reference else { continue };
            let key = format!("resources[{i}].{}", slot.key());
            out.push(Reference {
                path: loaded.plugin_path(&key).to_path_buf(),
                cases: loaded.case_dirs.get(&key).cloned(),
                key,
                resource: i,
                resource_name: resource_name.clone(),
                slot,
                plugin: reference.plugin.clone(),
                config: reference.config.clone(),
                limits: limits(reference),
            });
        }
    }
    out
}

fn limits(reference: &PluginRef) -> LimitOverrides {
    let mut limits = LimitOverrides::default();
    if let Some(ms) = reference.deadline_ms {
        limits = limits.deadline(Duration::from_millis(ms));
    }
    if let Some(mib) = reference.memory_mib {
        limits = limits.memory(mib * 1024 * 1024);
    }
    limits
}

/// Why a component was refused, with the step that refused it.
#[derive(Debug)]
pub struct Refusal {
    /// The metric's `outcome`: `unreadable`, `invalid-component`, `invalid-config`,
    /// `missing-hook` or `cases-failed`.
    pub outcome: &'static str,
    /// What went wrong, on one line.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Refusal {}

/// Loads `bytes` as `reference`'s component: compiled, configured with the reference's
/// configuration, and, when the reference has `cases:`, checked against every case.
/// Calls of the returned plugin are recorded in `metrics`.
pub fn load(
    runtime: &Runtime,
    reference: &Reference,
    bytes: &[u8],
    metrics: &Arc<Metrics>,
) -> Result<Plugin, Refusal> {
    let options = PluginOptions::default()
        .name(reference.plugin.clone())
        .limits(reference.limits);
    let plugin = runtime
        .load_bytes(
            bytes,
            options
                .clone()
                .config(reference.config.clone())
                .observer(call_observer(metrics.clone())),
        )
        .map_err(|e| Refusal {
            outcome: match e {
                LoadError::Config { .. } => "invalid-config",
                _ => "invalid-component",
            },
            reason: crate::plugin::one_line(&e),
        })?;
    if let Some(dir) = &reference.cases {
        check_cases(runtime, dir, bytes, &options)?;
    }
    Ok(plugin)
}

/// Runs every golden case under `dir` against `bytes` (each with its own configuration,
/// calls not counted in the engine's metrics); the first failure refuses the component.
fn check_cases(
    runtime: &Runtime,
    dir: &std::path::Path,
    bytes: &[u8],
    options: &PluginOptions,
) -> Result<(), Refusal> {
    let refuse = |reason: String| Refusal {
        outcome: "cases-failed",
        reason,
    };
    let dirs = cases::case_dirs(dir).map_err(|e| refuse(crate::plugin::one_line(&e)))?;
    if dirs.is_empty() {
        return Err(refuse(format!(
            "no golden cases in {} (a case is a folder with a case.yaml)",
            dir.display()
        )));
    }
    for case_dir in &dirs {
        let case = Case::load(case_dir).map_err(|e| refuse(crate::plugin::one_line(&e)))?;
        let outcome = case
            .run_with(options, |options| runtime.load_bytes(bytes, options))
            .map_err(|e| refuse(crate::plugin::one_line(&e)))?;
        if !outcome.passed {
            let changed: Vec<&str> = outcome
                .diff
                .as_deref()
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("- ") || l.starts_with("+ "))
                .take(4)
                .collect();
            return Err(refuse(format!(
                "golden case {} ({}) fails: {}",
                case.name,
                case_dir.display(),
                changed.join(" ")
            )));
        }
    }
    Ok(())
}

/// Records every plugin hook call in `metrics`.
fn call_observer(metrics: Arc<Metrics>) -> impl Fn(&CallReport<'_>) + Send + Sync {
    move |call| {
        metrics.plugin_call(
            call.plugin,
            call.hook,
            call.error,
            call.elapsed,
            call.peak_memory,
        );
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    fn reference(yaml: &str) -> PluginRef {
        serde_yaml::from_str(yaml).expect("a plugin reference")
    }

    #[test]
    fn only_configured_limits_override_the_guests_kind_defaults() {
        // Nothing configured: the component's kind decides (a Python or JavaScript
        // component gets its runtime's larger defaults, not Rust's 250 ms and 64 MiB).
        assert_eq!(
            limits(&reference("plugin: label-placement")),
            LimitOverrides::default()
        );
        let both = limits(&reference(
            "plugin: label-placement\ndeadlineMs: 900\nmemoryMib: 32",
        ));
        assert_eq!(both.deadline, Some(Duration::from_millis(900)));
        assert_eq!(both.memory, Some(32 * 1024 * 1024));
        let one = limits(&reference("plugin: label-placement\nmemoryMib: 256"));
        assert_eq!(one.deadline, None);
        assert_eq!(one.memory, Some(256 * 1024 * 1024));
    }
}

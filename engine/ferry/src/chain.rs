//! The sync engine's plugin chain, on the Wasm runtime: where `ferry-sync` and `ferry-wasm`
//! meet (neither depends on the other).

use ferry_core::{CallErrorKind, Downstream, Hook, ObjectContext, ObjectRef, Target};
use ferry_sync::{HookError, PluginChain};
use ferry_wasm::{CallError, Plugin};
use serde_json::Value;

/// Placement, transform and optional status and dependencies plugins of one resource.
pub struct WasmChain {
    /// `place`; `None` for a resource placed by its dependents (the engine never asks it).
    pub placement: Option<Plugin>,
    /// `transform`.
    pub transform: Plugin,
    /// `aggregate-status`, if configured.
    pub status: Option<Plugin>,
    /// `dependencies`, if configured.
    pub dependencies: Option<Plugin>,
}

/// A hook the chain cannot answer: a failure, so the engine keeps every copy as it is.
fn not_available(plugin: &str, hook: Hook, message: &str) -> HookError {
    HookError {
        plugin: plugin.to_string(),
        hook,
        kind: CallErrorKind::Unsupported,
        message: message.to_string(),
        transient: false,
    }
}

fn hook_error(plugin: &Plugin, hook: Hook, err: CallError) -> HookError {
    let kind = err.kind();
    let transient = err.is_transient();
    // The whole cause chain: the plugin's own message is usually in a source.
    let message = ferry_sync::explain::chain(&err);
    HookError {
        plugin: plugin.name().to_string(),
        hook,
        kind,
        message,
        transient,
    }
}

impl PluginChain for WasmChain {
    fn place(
        &self,
        context: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Result<Vec<String>, HookError> {
        match &self.placement {
            Some(plugin) => plugin
                .place(context, object, targets)
                .map_err(|e| hook_error(plugin, Hook::Place, e)),
            None => Err(not_available(
                "(dependents)",
                Hook::Place,
                "this resource is placed by its dependents, not by a plugin",
            )),
        }
    }

    fn transform(
        &self,
        context: &ObjectContext,
        object: &Value,
        target: &Target,
    ) -> Result<Option<Value>, HookError> {
        self.transform
            .transform(context, object, target)
            .map_err(|e| hook_error(&self.transform, Hook::Transform, e))
    }

    fn aggregate_status(
        &self,
        context: &ObjectContext,
        object: &Value,
        downstream: &[Downstream],
    ) -> Result<Option<Value>, HookError> {
        match &self.status {
            Some(plugin) => plugin
                .aggregate_status(context, object, downstream)
                .map_err(|e| hook_error(plugin, Hook::AggregateStatus, e)),
            None => Ok(None),
        }
    }

    fn dependencies(
        &self,
        _context: &ObjectContext,
        _object: &Value,
    ) -> Result<Vec<ObjectRef>, HookError> {
        match &self.dependencies {
            // The v0.2.0 host's `dependencies` call is wired here when the runtime has it.
            Some(plugin) => Err(not_available(
                plugin.name(),
                Hook::Dependencies,
                "this Ferry's plugin runtime cannot call the dependencies hook yet",
            )),
            None => Ok(Vec::new()),
        }
    }
}

//! The sync engine's plugin chain, on the Wasm runtime: where `ferry-sync` and `ferry-wasm`
//! meet (neither depends on the other).

use ferry_core::{Downstream, Hook, ObjectContext, Target};
use ferry_sync::{HookError, PluginChain};
use ferry_wasm::{CallError, Plugin};
use serde_json::Value;

/// Placement, transform and optional status plugins of one resource.
pub struct WasmChain {
    /// `place`.
    pub placement: Plugin,
    /// `transform`.
    pub transform: Plugin,
    /// `aggregate-status`, if configured.
    pub status: Option<Plugin>,
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
        self.placement
            .place(context, object, targets)
            .map_err(|e| hook_error(&self.placement, Hook::Place, e))
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
}

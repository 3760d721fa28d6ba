//! The engine's view of a resource's plugin chain. The engine depends on this trait only;
//! the binary implements it on top of the Wasm runtime, and unit tests on plain closures.

use std::sync::Arc;

use ferry_core::{CallErrorKind, Downstream, Hook, ObjectContext, ObjectRef, Target};
use serde_json::Value;

/// One target's answer of [`PluginChain::transform_all`]: the object to apply there, `None`
/// to leave the target out, or the failure. Targets that got the same object may share one
/// `Value` (the engine then prepares it once and applies it on each).
pub type Transformed = Result<Option<Arc<Value>>, HookError>;

/// A failed hook call, as the engine reports it (Event reason, metric label, log).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{message} [{kind}]{}", component_suffix(.component.as_deref()))]
pub struct HookError {
    /// The plugin's configured name.
    pub plugin: String,
    /// The hook that failed.
    pub hook: Hook,
    /// What kind of failure (`deadline-exceeded`, `invalid-output`, ...).
    pub kind: CallErrorKind,
    /// What went wrong, for people; names the plugin and hook.
    pub message: String,
    /// Whether the same call could succeed if retried unchanged (the runtime was busy).
    /// Plugins are deterministic: any other failure repeats until the object, the plugin
    /// or its configuration changes, so the engine does not retry it on a timer.
    pub transient: bool,
    /// SHA-256 (hex) of the component that failed, when one was called: after a hot reload
    /// the plugin's name alone does not say which version an Event or log line is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

/// The component's digest as people read it in a message: 12 hex digits, like a short
/// commit id, enough to tell versions apart; logs and metrics carry the full digest.
fn component_suffix(digest: Option<&str>) -> String {
    digest.map_or_else(String::new, |digest| {
        let short = digest.get(..12).unwrap_or(digest);
        format!(" (component sha256:{short})")
    })
}

/// Placement, transformation and status aggregation for one synced resource.
///
/// Calls are synchronous and may take up to the plugin's deadline; the engine runs them on
/// the blocking thread pool. Implementations validate plugin output before returning it.
pub trait PluginChain: Send + Sync + 'static {
    /// The names of the targets `object` goes to.
    fn place(
        &self,
        context: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Result<Vec<String>, HookError>;

    /// The object to apply on `target`, or `None` to leave that target out.
    fn transform(
        &self,
        context: &ObjectContext,
        object: &Value,
        target: &Target,
    ) -> Result<Option<Value>, HookError>;

    /// The upstream status from the copies on the placed targets, or `None` to leave it.
    fn aggregate_status(
        &self,
        context: &ObjectContext,
        object: &Value,
        downstream: &[Downstream],
    ) -> Result<Option<Value>, HookError>;

    /// The object on every placed target, one result per target in the order of `targets`.
    /// A contract v0.2.0 transform plugin answers all targets in one call (one
    /// serialisation of the object per reconcile), and targets it gave the same object
    /// share one `Value`; the default asks per target.
    fn transform_all(
        &self,
        context: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Vec<Transformed> {
        targets
            .iter()
            .map(|target| Ok(self.transform(context, object, target)?.map(Arc::new)))
            .collect()
    }

    /// The objects `object` needs on its targets (contract v0.2.0 `dependencies` hook).
    /// Resources without a dependencies plugin need nothing.
    fn dependencies(
        &self,
        _context: &ObjectContext,
        _object: &Value,
    ) -> Result<Vec<ObjectRef>, HookError> {
        Ok(Vec::new())
    }

    /// Which version of the chain answers: it changes whenever a plugin of the chain is
    /// swapped for another component (hot reload). Answers the engine remembers (the
    /// `place` and `dependencies` memo) are only reused for the version that gave them.
    /// A chain that never changes is always version 0.
    fn version(&self) -> u64 {
        0
    }

    /// Told the new version whenever the chain changes, so that the engine reconciles every
    /// object of the resource with it; `None` for a chain that never changes.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(component: Option<&str>) -> HookError {
        HookError {
            plugin: "regions".into(),
            hook: Hook::Place,
            kind: CallErrorKind::DeadlineExceeded,
            message: "plugin regions: place ran out of time".into(),
            transient: false,
            component: component.map(str::to_string),
        }
    }

    #[test]
    fn the_message_names_the_failing_component_by_its_short_digest() {
        let digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            failure(Some(digest)).to_string(),
            "plugin regions: place ran out of time [deadline-exceeded] (component sha256:0123456789ab)"
        );
        // No component was called (e.g. a hook the chain does not have): no suffix.
        assert_eq!(
            failure(None).to_string(),
            "plugin regions: place ran out of time [deadline-exceeded]"
        );
    }
}

//! The sync engine's plugin chain, on the Wasm runtime: where `ferry-sync` and `ferry-wasm`
//! meet (neither depends on the other).

use ferry_core::{CallErrorKind, Downstream, Hook, ObjectContext, ObjectRef, Target};
use ferry_sync::{HookError, PluginChain, Transformed};
use ferry_wasm::{CallError, Plugin};
use serde_json::Value;

/// Placement, transform and optional status and dependencies plugins of one resource.
#[derive(Clone)]
pub struct WasmChain {
    /// `place`; `None` for a resource placed by its dependents (the engine never asks it).
    pub placement: Option<Plugin>,
    /// `transform`.
    pub transform: Plugin,
    /// `aggregate-status`, if configured.
    pub status: Option<Plugin>,
    /// `dependencies` (contract v0.2.0), if configured.
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
        component: None,
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
        component: Some(plugin.digest().to_string()),
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

    /// One call for every placed target: a v0.2.0 plugin serialises and parses the object
    /// once and runs on one instance; a v0.1.0 plugin is called per target as before. A
    /// failure of the whole call fails every target with the same error.
    fn transform_all(
        &self,
        context: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Vec<Transformed> {
        match self.transform.transform_all(context, object, targets) {
            Ok(results) => results
                .into_iter()
                .map(|(_, result)| {
                    result.map_err(|e| hook_error(&self.transform, Hook::Transform, e))
                })
                .collect(),
            Err(e) => {
                let error = hook_error(&self.transform, Hook::Transform, e);
                targets.iter().map(|_| Err(error.clone())).collect()
            }
        }
    }

    fn dependencies(
        &self,
        context: &ObjectContext,
        object: &Value,
    ) -> Result<Vec<ObjectRef>, HookError> {
        match &self.dependencies {
            Some(plugin) => plugin
                .dependencies(context, object)
                .map_err(|e| hook_error(plugin, Hook::Dependencies, e)),
            None => Ok(Vec::new()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_wasm::{PluginOptions, Runtime, RuntimeConfig};
    use serde_json::json;

    fn chain(runtime: &Runtime, config: Value) -> WasmChain {
        let path = ferry_wasm::testing::component("contract-v0-2-0")
            .unwrap_or_else(|missing| panic!("{missing}"));
        let plugin = runtime
            .load_file(path, PluginOptions::default().config(config))
            .expect("loads");
        WasmChain {
            placement: Some(plugin.clone()),
            transform: plugin.clone(),
            status: None,
            dependencies: Some(plugin),
        }
    }

    fn context() -> ObjectContext {
        ObjectContext {
            logical_cluster: "abc".into(),
            namespace: "default".into(),
            downstream_namespace: "ferry-1".into(),
            ..ObjectContext::default()
        }
    }

    fn object() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
               "spec": {"serviceAccountName": "robot", "containers": []}})
    }

    #[test]
    fn transform_all_answers_each_target_and_a_failed_call_fails_every_target() {
        let runtime = Runtime::new(RuntimeConfig::default().max_instances(4)).expect("runtime");
        let targets = [
            Target::new("a"),
            Target::new("b").label("ferry.test/outcome", "skip"),
            Target::new("c").label("ferry.test/outcome", "fail"),
        ];
        let results = chain(&runtime, Value::Null).transform_all(&context(), &object(), &targets);
        assert!(matches!(results[0], Ok(Some(_))), "{:?}", results[0]);
        assert_eq!(results[1], Ok(None));
        assert!(matches!(&results[2], Err(e) if e.message.contains("target c refuses")));

        let failing = chain(&runtime, json!({"misbehave": "error"}));
        let results = failing.transform_all(&context(), &object(), &targets);
        assert_eq!(results.len(), 3);
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(e) if e.hook == Hook::Transform))
        );
    }

    #[test]
    fn dependencies_come_from_the_dependencies_plugin_or_are_none() {
        let runtime = Runtime::new(RuntimeConfig::default().max_instances(4)).expect("runtime");
        let mut chain = chain(&runtime, Value::Null);
        let refs = chain
            .dependencies(&context(), &object())
            .expect("dependencies");
        assert_eq!(refs.len(), 1, "{refs:?}");
        assert_eq!(refs[0].resource, "serviceaccounts");
        chain.dependencies = None;
        assert_eq!(chain.dependencies(&context(), &object()), Ok(Vec::new()));
    }
}

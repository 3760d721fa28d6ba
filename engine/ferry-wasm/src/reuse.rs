//! One instance kept for many calls. **For benchmarks only**: the engine never does this
//! (the runtime uses a fresh store per call, see docs/plugins.md). It exists to measure what instantiation costs,
//! by comparison with [`Plugin::transform`](crate::Plugin::transform).

use ferry_core::{Hook, ObjectContext, Target};
use wasmtime::Store;
use wasmtime::component::Instance;

use crate::error::CallError;
use crate::plugin::{CallState, Plugin, from_wit_error};

/// A configured instance reused across `transform` calls. After any failure it is
/// poisoned and refuses further calls, as a trapped instance must never run again.
pub struct ReusedInstance {
    plugin: Plugin,
    store: Store<CallState>,
    instance: Instance,
    poisoned: bool,
}

impl ReusedInstance {
    /// Instantiates `plugin` once and runs `configure`. The deadline applies to the whole
    /// life of the instance, so keep sessions short.
    #[doc(hidden)]
    pub fn new(plugin: &Plugin) -> Result<Self, CallError> {
        let (mut store, instance) = plugin.instantiate(Hook::Configure)?;
        if let Some(config) = plugin.config_indices() {
            let result = config
                .load(&mut store, &instance)
                .and_then(|g| g.call_configure(&mut store, plugin.config_json()));
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(CallError::Plugin {
                        plugin: plugin.name().to_owned(),
                        hook: Hook::Configure,
                        source: from_wit_error(e),
                    });
                }
                Err(e) => return Err(plugin.classify(Hook::Configure, e, store.data())),
            }
        }
        // Long benchmark loops must not hit the per-call deadline.
        store.set_epoch_deadline(u64::MAX / 2);
        Ok(Self {
            plugin: plugin.clone(),
            store,
            instance,
            poisoned: false,
        })
    }

    /// Runs `transform` on the kept instance; JSON text in and out, unvalidated.
    pub fn transform_json(
        &mut self,
        context: &ObjectContext,
        object: &str,
        target: &Target,
    ) -> Result<Option<String>, CallError> {
        let hook = Hook::Transform;
        if self.poisoned {
            return Err(CallError::Busy {
                plugin: self.plugin.name().to_owned(),
                hook,
            });
        }
        let indices =
            self.plugin
                .transform_indices()
                .ok_or_else(|| CallError::HookNotExported {
                    plugin: self.plugin.name().to_owned(),
                    hook,
                })?;
        let wit_context = crate::bindings::v0_1_0::ferry::sync::types::ObjectContext {
            logical_cluster: context.logical_cluster.clone(),
            workspace_path: context.workspace_path.clone(),
            namespace: context.namespace.clone(),
            downstream_namespace: context.downstream_namespace.clone(),
        };
        let wit_target = crate::bindings::v0_1_0::ferry::sync::types::Target {
            name: target.name.clone(),
            labels: target
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let result = indices
            .load(&mut self.store, &self.instance)
            .and_then(|g| g.call_transform(&mut self.store, &wit_context, object, &wit_target));
        match result {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => Err(CallError::Plugin {
                plugin: self.plugin.name().to_owned(),
                hook,
                source: from_wit_error(e),
            }),
            Err(e) => {
                self.poisoned = true;
                Err(self.plugin.classify(hook, e, self.store.data()))
            }
        }
    }
}

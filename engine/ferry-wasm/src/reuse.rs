//! One instance kept for many calls. **For benchmarks only**: the engine never does this
//! (the runtime uses a fresh store per call, see docs/plugins.md). It exists to measure what instantiation costs,
//! by comparison with [`Plugin::transform`](crate::Plugin::transform).

use ferry_core::{Hook, ObjectContext, Target};
use wasmtime::Store;
use wasmtime::component::Instance;

use crate::error::CallError;
use crate::plugin::{CallState, Plugin};
use crate::versions::{HookResult, RawOutcome};

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
        let guest = plugin.guest();
        if guest.exports(Hook::Configure) {
            match guest.configure(&mut store, &instance, plugin.config_json()) {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    return Err(CallError::Plugin {
                        plugin: plugin.name().to_owned(),
                        hook: Hook::Configure,
                        source,
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

    /// Runs `configure` once more on the kept instance: `configure` without what only the
    /// first call on a fresh instance pays (the guest allocator's first memory growth, first
    /// touch of its pages), to tell the two apart in the benchmark.
    #[doc(hidden)]
    pub fn configure_again(&mut self) -> Result<(), CallError> {
        let hook = Hook::Configure;
        if !self.callable(hook)? {
            return Ok(());
        }
        let guest = self.plugin.guest();
        let result = guest.configure(&mut self.store, &self.instance, self.plugin.config_json());
        self.settle(hook, result)
    }

    /// Runs `transform` for one target on the kept instance; JSON text in and out,
    /// unvalidated. `Ok(None)` is a skip.
    pub fn transform_json(
        &mut self,
        context: &ObjectContext,
        object: &str,
        target: &Target,
    ) -> Result<Option<String>, CallError> {
        let hook = Hook::Transform;
        let plugin = self.plugin.name().to_owned();
        if !self.callable(hook)? {
            return Err(CallError::HookNotExported { plugin, hook });
        }
        let guest = self.plugin.guest();
        let result = guest.transform(
            &mut self.store,
            &self.instance,
            context,
            object,
            std::slice::from_ref(target),
        );
        match self.settle(hook, result)?.pop().map(|(_, o)| o) {
            Some(RawOutcome::Apply(json)) => Ok(Some(json)),
            Some(RawOutcome::Skip) | None => Ok(None),
            Some(RawOutcome::Failed(source)) => Err(CallError::Plugin {
                plugin,
                hook,
                source,
            }),
        }
    }

    /// Whether the component exports `hook`; an error once the instance is poisoned.
    fn callable(&self, hook: Hook) -> Result<bool, CallError> {
        if self.poisoned {
            return Err(CallError::Busy {
                plugin: self.plugin.name().to_owned(),
                hook,
            });
        }
        Ok(self.plugin.guest().exports(hook))
    }

    /// A guest call's result on the kept instance: the plugin's own error as such; a trap
    /// (or any other runtime failure) poisons the instance.
    fn settle<T>(&mut self, hook: Hook, result: HookResult<T>) -> Result<T, CallError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(CallError::Plugin {
                plugin: self.plugin.name().to_owned(),
                hook,
                source,
            }),
            Err(e) => {
                self.poisoned = true;
                Err(self.plugin.classify(hook, e, self.store.data()))
            }
        }
    }
}

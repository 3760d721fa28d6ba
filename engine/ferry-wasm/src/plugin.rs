//! A loaded plugin and its calls: one fresh `Store` and instance per call, with the
//! plugin's deadline and memory cap, and every failure turned into a typed [`CallError`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use ferry_core::{Downstream, Hook, ObjectContext, PluginError, PluginErrorKind, Target, validate};
use serde_json::Value;
use wasmtime::component::{Component, HasSelf, Instance, InstancePre, Linker};
use wasmtime::{PoolConcurrencyLimitError, ResourceLimiter, Store, Trap};

use crate::bindings::v0_1_0 as wit;
use crate::config::{CallReport, Limits, PluginOptions};
use crate::contract::{self, CapabilityDenied};
use crate::error::{CallError, LoadError};
use crate::runtime::Runtime;
use wit::exports::ferry::sync::{config, placement, status, transform};

/// A loaded plugin. Cheap to clone, `Send + Sync`: share one handle between all workers.
/// Calls are synchronous and CPU-bound (bounded by the deadline); async callers run them on
/// a blocking pool (`tokio::task::spawn_blocking`).
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    name: String,
    digest: String,
    pre: InstancePre<CallState>,
    indices: Indices,
    hooks: BTreeSet<Hook>,
    config_json: String,
    limits: Limits,
    options: PluginOptions,
}

/// Export lookups resolved once at load time, so a call does no string lookups.
struct Indices {
    config: Option<config::GuestIndices>,
    placement: Option<placement::GuestIndices>,
    transform: Option<transform::GuestIndices>,
    status: Option<status::GuestIndices>,
}

impl Plugin {
    pub(crate) fn new(
        runtime: Runtime,
        name: String,
        digest: String,
        component: Component,
        options: PluginOptions,
    ) -> Result<Self, LoadError> {
        let engine = &runtime.shared.engine;
        let limits = options.limits;
        let max = runtime.shared.config.max_memory_per_instance;
        if limits.memory > max || limits.memory == 0 {
            return Err(LoadError::InvalidLimits {
                plugin: name,
                reason: format!(
                    "memory cap {} must be between 1 and {max} bytes",
                    limits.memory
                ),
            });
        }
        if limits.deadline.is_zero() {
            return Err(LoadError::InvalidLimits {
                plugin: name,
                reason: "deadline must be positive".into(),
            });
        }

        // The contract version is read from the component's type: nothing of the guest has
        // run yet when an unsupported version is refused.
        let hooks = contract::exported_hooks(&name, &component, engine)?;

        let link = |e| LoadError::Link {
            plugin: name.clone(),
            source: e,
        };
        let mut linker: Linker<CallState> = Linker::new(engine);
        wit::ferry::sync::log::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |s| s)
            .map_err(link)?;
        contract::deny_other_imports(&mut linker, &component, engine).map_err(link)?;
        let pre = linker.instantiate_pre(&component).map_err(link)?;
        let indices = Indices {
            config: config::GuestIndices::new(&pre).ok(),
            placement: placement::GuestIndices::new(&pre).ok(),
            transform: transform::GuestIndices::new(&pre).ok(),
            status: status::GuestIndices::new(&pre).ok(),
        };

        let config_json = options.config.to_string();
        let plugin = Plugin {
            inner: Arc::new(Inner {
                runtime,
                name: name.clone(),
                digest,
                pre,
                indices,
                hooks,
                config_json,
                limits,
                options,
            }),
        };
        // Configuration errors belong at load time (the operator's config is wrong), not at
        // the first object.
        plugin.probe_config().map_err(|e| LoadError::Config {
            plugin: name,
            source: Box::new(e),
        })?;
        Ok(plugin)
    }

    /// The plugin's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// SHA-256 of the component bytes, hex.
    #[must_use]
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// The limits every call runs under.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Whether the component exports `hook`. Check at configuration time: a plugin
    /// configured for a hook it lacks would fail on every object.
    #[must_use]
    pub fn exports(&self, hook: Hook) -> bool {
        self.inner.hooks.contains(&hook)
    }

    /// `place`: the targets `object` goes to, validated (only names from `targets`, each once).
    pub fn place(
        &self,
        context: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Result<Vec<String>, CallError> {
        let hook = Hook::Place;
        self.observed(hook, |usage| {
            let indices = self.indices(hook, self.inner.indices.placement.as_ref())?;
            let wit_context = to_wit_context(context);
            let wit_targets: Vec<_> = targets.iter().map(to_wit_target).collect();
            let object = object.to_string();
            let chosen = self.call(hook, usage, |store, instance| {
                indices.load(&mut *store, instance)?.call_place(
                    &mut *store,
                    &wit_context,
                    &object,
                    &wit_targets,
                )
            })?;
            validate::placement(chosen, targets).map_err(|source| self.invalid_output(hook, source))
        })
    }

    /// `transform`: the object to apply on `target`, or `None` to skip it. The output is
    /// validated against `object` and the mapped namespace before it is returned.
    pub fn transform(
        &self,
        context: &ObjectContext,
        object: &Value,
        target: &Target,
    ) -> Result<Option<Value>, CallError> {
        self.observed(Hook::Transform, |usage| {
            let output = self.transform_raw(context, &object.to_string(), target, usage)?;
            output
                .map(|o| {
                    validate::transform(&o, object, context, &self.inner.options.transform_policy)
                        .map_err(|source| self.invalid_output(Hook::Transform, source))
                })
                .transpose()
        })
    }

    /// `transform` on JSON text, unvalidated: for callers that validate themselves (the
    /// golden-case harness shows raw output) and for benchmarks.
    #[doc(hidden)]
    pub fn transform_json(
        &self,
        context: &ObjectContext,
        object: &str,
        target: &Target,
    ) -> Result<Option<String>, CallError> {
        self.observed(Hook::Transform, |usage| {
            self.transform_raw(context, object, target, usage)
        })
    }

    fn transform_raw(
        &self,
        context: &ObjectContext,
        object: &str,
        target: &Target,
        usage: &mut Usage,
    ) -> Result<Option<String>, CallError> {
        let hook = Hook::Transform;
        let indices = self.indices(hook, self.inner.indices.transform.as_ref())?;
        let wit_context = to_wit_context(context);
        let wit_target = to_wit_target(target);
        self.call(hook, usage, |store, instance| {
            indices.load(&mut *store, instance)?.call_transform(
                &mut *store,
                &wit_context,
                object,
                &wit_target,
            )
        })
    }

    /// `aggregate-status`: the upstream status (a JSON object), or `None` to leave it.
    pub fn aggregate_status(
        &self,
        context: &ObjectContext,
        object: &Value,
        downstream: &[Downstream],
    ) -> Result<Option<Value>, CallError> {
        let hook = Hook::AggregateStatus;
        self.observed(hook, |usage| {
            let indices = self.indices(hook, self.inner.indices.status.as_ref())?;
            let wit_context = to_wit_context(context);
            let wit_downstream: Vec<_> = downstream
                .iter()
                .map(|d| wit::ferry::sync::types::Downstream {
                    target: to_wit_target(&d.target),
                    object: d.object.as_ref().map(Value::to_string),
                })
                .collect();
            let object = object.to_string();
            let output = self.call(hook, usage, |store, instance| {
                indices.load(&mut *store, instance)?.call_aggregate_status(
                    &mut *store,
                    &wit_context,
                    &object,
                    &wit_downstream,
                )
            })?;
            output
                .map(|o| validate::status(&o).map_err(|source| self.invalid_output(hook, source)))
                .transpose()
        })
    }

    /// Runs `f` and tells the plugin's observer (if any) how it went.
    fn observed<T>(
        &self,
        hook: Hook,
        f: impl FnOnce(&mut Usage) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let mut usage = Usage::default();
        let result = f(&mut usage);
        if let Some(observer) = &self.inner.options.observer {
            observer.notify(&CallReport {
                plugin: &self.inner.name,
                hook,
                elapsed: started.elapsed(),
                peak_memory: usage.peak_memory,
                error: result.as_ref().err().map(CallError::kind),
            });
        }
        result
    }

    fn indices<'a, I>(&self, hook: Hook, indices: Option<&'a I>) -> Result<&'a I, CallError> {
        indices.ok_or_else(|| CallError::HookNotExported {
            plugin: self.inner.name.clone(),
            hook,
        })
    }

    fn probe_config(&self) -> Result<(), CallError> {
        if self.inner.indices.config.is_some() {
            // Instantiating runs `configure`; no hook needed.
            return self.call(Hook::Configure, &mut Usage::default(), |_, _| Ok(Ok(())));
        }
        if self.inner.options.config.is_null() {
            Ok(())
        } else {
            Err(CallError::Plugin {
                plugin: self.inner.name.clone(),
                hook: Hook::Configure,
                source: PluginError {
                    kind: PluginErrorKind::InvalidConfig,
                    message: "the plugin exports no `configure` and takes no configuration".into(),
                },
            })
        }
    }

    /// One call: fresh store and instance, `configure`, then `run`. The store is dropped
    /// afterwards whatever happened: after a trap an instance must never be used again.
    fn call<R>(
        &self,
        hook: Hook,
        usage: &mut Usage,
        run: impl FnOnce(
            &mut Store<CallState>,
            &Instance,
        ) -> wasmtime::Result<Result<R, wit::ferry::sync::types::PluginError>>,
    ) -> Result<R, CallError> {
        let (mut store, instance) = self.instantiate(hook)?;
        let result = (|| {
            if let Some(config) = &self.inner.indices.config {
                let configured = config
                    .load(&mut store, &instance)?
                    .call_configure(&mut store, &self.inner.config_json)?;
                if let Err(e) = configured {
                    return Ok(Err((Hook::Configure, e)));
                }
            }
            Ok(run(&mut store, &instance)?.map_err(|e| (hook, e)))
        })();
        store.data().log.finish();
        usage.peak_memory = store.data().cap.peak;
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err((hook, e))) => Err(CallError::Plugin {
                plugin: self.inner.name.clone(),
                hook,
                source: from_wit_error(e),
            }),
            Err(e) => Err(self.classify(hook, e, store.data())),
        }
    }

    /// A fresh store with this plugin's limits, and an instance in it.
    pub(crate) fn instantiate(
        &self,
        hook: Hook,
    ) -> Result<(Store<CallState>, Instance), CallError> {
        let shared = &self.inner.runtime.shared;
        let mut store = Store::new(
            &shared.engine,
            CallState {
                cap: MemoryCap {
                    limit: self.inner.limits.memory,
                    peak: 0,
                    exceeded: false,
                },
                log: LogSink::new(&self.inner.name, hook),
            },
        );
        store.limiter(|s| &mut s.cap);
        store.set_epoch_deadline(deadline_ticks(self.inner.limits, shared.config.epoch_tick));
        match self.inner.pre.instantiate(&mut store) {
            Ok(instance) => Ok((store, instance)),
            Err(e) => Err(self.classify(hook, e, store.data())),
        }
    }

    /// Instantiates the plugin once and drops the instance: measures instantiation alone.
    #[doc(hidden)]
    pub fn instantiate_only(&self) -> Result<(), CallError> {
        self.instantiate(Hook::Configure).map(drop)
    }

    pub(crate) fn config_json(&self) -> &str {
        &self.inner.config_json
    }

    pub(crate) fn config_indices(&self) -> Option<&config::GuestIndices> {
        self.inner.indices.config.as_ref()
    }

    pub(crate) fn transform_indices(&self) -> Option<&transform::GuestIndices> {
        self.inner.indices.transform.as_ref()
    }

    fn invalid_output(&self, hook: Hook, source: validate::OutputError) -> CallError {
        CallError::InvalidOutput {
            plugin: self.inner.name.clone(),
            hook,
            source,
        }
    }

    /// Turns a wasmtime error into a typed error by its type, never its text.
    pub(crate) fn classify(
        &self,
        hook: Hook,
        error: wasmtime::Error,
        state: &CallState,
    ) -> CallError {
        let plugin = self.inner.name.clone();
        if state.cap.exceeded || error.downcast_ref::<MemoryCapExceeded>().is_some() {
            return CallError::MemoryExhausted {
                plugin,
                hook,
                limit: self.inner.limits.memory,
            };
        }
        if let Some(denied) = error.downcast_ref::<CapabilityDenied>() {
            return CallError::CapabilityDenied {
                plugin,
                hook,
                import: denied.import.clone(),
            };
        }
        if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
            return CallError::Busy { plugin, hook };
        }
        match error.downcast_ref::<Trap>().copied() {
            Some(Trap::Interrupt) => CallError::DeadlineExceeded {
                plugin,
                hook,
                deadline: self.inner.limits.deadline,
            },
            Some(trap) => CallError::Trap {
                plugin,
                hook,
                trap,
                source: error,
            },
            None => CallError::Host {
                plugin,
                hook,
                source: error,
            },
        }
    }
}

/// Epoch ticks for a deadline: rounded up, plus one because the first tick may come right
/// after the deadline is set. The call is interrupted between `deadline` and
/// `deadline + tick`.
fn deadline_ticks(limits: Limits, tick: std::time::Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    let ticks = limits.deadline.as_nanos().div_ceil(tick);
    u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
}

/// What a call used, filled in by [`Plugin::call`].
#[derive(Default)]
struct Usage {
    peak_memory: u64,
}

/// Per-call store data.
pub(crate) struct CallState {
    cap: MemoryCap,
    log: crate::log::LogSink,
}

use crate::log::LogSink;

/// Marker error of a denied memory growth, found again by downcasting.
#[derive(Debug, thiserror::Error)]
#[error("memory growth to {desired} bytes denied (cap {limit} bytes)")]
struct MemoryCapExceeded {
    desired: usize,
    limit: u64,
}

struct MemoryCap {
    limit: u64,
    /// Largest linear memory size granted, for [`CallReport::peak_memory`].
    peak: u64,
    exceeded: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired_bytes = u64::try_from(desired).unwrap_or(u64::MAX);
        if desired_bytes > self.limit {
            // Failing the call (instead of letting `memory.grow` return -1) makes the
            // outcome deterministic: whatever the guest's allocator does with a failed
            // growth, the host reports "memory exhausted".
            self.exceeded = true;
            return Err(wasmtime::Error::new(MemoryCapExceeded {
                desired,
                limit: self.limit,
            }));
        }
        self.peak = self.peak.max(desired_bytes);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a plugin needs a few hundred.
        Ok(desired <= 100_000)
    }
}

impl wit::ferry::sync::log::Host for CallState {
    fn log(
        &mut self,
        level: wit::ferry::sync::log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        self.log.emit(level, &message, &fields);
    }
}

fn to_wit_context(c: &ObjectContext) -> wit::ferry::sync::types::ObjectContext {
    wit::ferry::sync::types::ObjectContext {
        logical_cluster: c.logical_cluster.clone(),
        workspace_path: c.workspace_path.clone(),
        namespace: c.namespace.clone(),
        downstream_namespace: c.downstream_namespace.clone(),
    }
}

fn to_wit_target(t: &Target) -> wit::ferry::sync::types::Target {
    wit::ferry::sync::types::Target {
        name: t.name.clone(),
        labels: t
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

pub(crate) fn from_wit_error(e: wit::ferry::sync::types::PluginError) -> PluginError {
    use wit::ferry::sync::types::PluginError as W;
    let (kind, message) = match e {
        W::InvalidConfig(m) => (PluginErrorKind::InvalidConfig, m),
        W::InvalidInput(m) => (PluginErrorKind::InvalidInput, m),
        W::Unsupported(m) => (PluginErrorKind::Unsupported, m),
        W::Failed(m) => (PluginErrorKind::Failed, m),
    };
    PluginError { kind, message }
}

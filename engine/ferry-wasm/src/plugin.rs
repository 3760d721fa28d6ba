//! A loaded plugin and its calls: one fresh `Store` and instance per call, with the
//! plugin's deadline and memory cap, and every failure turned into a typed [`CallError`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use ferry_core::{
    Downstream, Hook, ObjectContext, ObjectRef, PluginError, PluginErrorKind, Target, validate,
};
use serde_json::Value;
use wasmtime::component::{Component, Instance, InstancePre, Linker};
use wasmtime::{PoolConcurrencyLimitError, ResourceLimiter, Store, Trap};

use crate::config::{CallReport, Limits, PluginOptions};
use crate::contract::{self, CapabilityDenied};
use crate::error::{CallError, ErrorKind, LoadError};
use crate::memo::{Key, Memo, PluginSeed};
use crate::runtime::Runtime;
use crate::versions::{Guest, HookResult, RawOutcome};
use crate::wasi::WasiSlot;

/// One target's transform result: the object to apply, `None` to leave the target without a
/// copy, or why this target alone failed. Targets that got the same object share one
/// `Value`: the engine prepares it once and applies it everywhere, so no target pays for a
/// copy of it (a clone of a 4 KB Deployment costs about 10 µs, a parse 17 µs).
pub type TargetResult = (String, Result<Option<Arc<Value>>, CallError>);

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
    /// The exports, through the bindings of the contract version the component speaks.
    guest: Box<dyn Guest>,
    version: &'static str,
    hooks: BTreeSet<Hook>,
    config_json: String,
    limits: Limits,
    options: PluginOptions,
    /// The identity every memo key starts from (component, configuration, policy).
    seed: PluginSeed,
    memos: Memos,
}

/// The purity memo of each hook ([`crate::memo`]): validated answers only.
struct Memos {
    place: Memo<Vec<String>>,
    /// Per target, in the order asked: the object to apply as JSON text (shared between
    /// targets that got the same object) or `None` for a skip. Text, not `Value`: a parsed
    /// 4 KB Deployment holds about 47 KB of heap, its text 4 KB, and parsing it again costs
    /// what cloning the `Value` would (measured by `cargo xtask bench plugins`).
    transform: Memo<Vec<(String, Option<Arc<str>>)>>,
    status: Memo<Option<Value>>,
    dependencies: Memo<Vec<ObjectRef>>,
}

impl Memos {
    fn new(capacity: usize) -> Self {
        Self {
            place: Memo::new(capacity),
            transform: Memo::new(capacity),
            status: Memo::new(capacity),
            dependencies: Memo::new(capacity),
        }
    }
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
        // Limits not set take the defaults of the guest's kind (Rust, or a language runtime).
        let limits = options
            .limits
            .resolve(crate::wasi::guest_kind(&component, engine));
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
        let shape = contract::shape(&name, &component, engine)?;

        let link = |e| LoadError::Link {
            plugin: name.clone(),
            source: e,
        };
        let mut linker: Linker<CallState> = Linker::new(engine);
        (shape.contract.link)(&mut linker).map_err(link)?;
        // Anything else the component imports is deterministic WASI, or it is refused here.
        crate::wasi::link_imports(&name, &mut linker, &component, engine, |import| {
            contract::ferry_interface(import).is_some()
        })?;
        let pre = linker.instantiate_pre(&component).map_err(link)?;
        let guest = (shape.contract.load)(&pre);

        let config_json = options.config.to_string();
        let seed = PluginSeed::new(&digest, &config_json, &options.transform_policy);
        let memos = Memos::new(options.memo_capacity);
        let plugin = Plugin {
            inner: Arc::new(Inner {
                runtime,
                name: name.clone(),
                digest,
                pre,
                guest,
                version: shape.contract.version,
                hooks: shape.hooks,
                config_json,
                limits,
                options,
                seed,
                memos,
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
        self.inner.hooks.contains(&hook) && self.inner.guest.exports(hook)
    }

    /// The `ferry:sync` contract version the component speaks, e.g. `0.2.0`.
    #[must_use]
    pub fn contract_version(&self) -> &'static str {
        self.inner.version
    }

    /// `place`: the targets `object` goes to, validated (only names from `targets`, each once).
    pub fn place(
        &self,
        context: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Result<Vec<String>, CallError> {
        let hook = Hook::Place;
        let object = json_text(object);
        let memo = &self.inner.memos.place;
        let key = memo.enabled().then(|| {
            self.key(hook, context)
                .json(&targets)
                .bytes(object.as_bytes())
                .finish()
        });
        if let Some(hit) = recall(memo, key.as_ref()) {
            return Ok(hit.as_ref().clone());
        }
        let chosen = self.observed(hook, |usage| {
            self.check_exported(hook)?;
            let chosen = self.call(hook, usage, |guest, store, instance| {
                guest.place(store, instance, context, &object, targets)
            })?;
            validate::placement(chosen, targets).map_err(|source| self.invalid_output(hook, source))
        })?;
        if let Some(key) = key {
            memo.insert(key, chosen.clone());
        }
        Ok(chosen)
    }

    /// `transform` for one target: the object to apply there, or `None` to skip it. The
    /// output is validated against `object` and the mapped namespace before it is returned.
    /// The engine transforms for every placed target at once ([`Plugin::transform_all`]).
    pub fn transform(
        &self,
        context: &ObjectContext,
        object: &Value,
        target: &Target,
    ) -> Result<Option<Value>, CallError> {
        let mut results = self.transform_all(context, object, std::slice::from_ref(target))?;
        match results.pop() {
            // One target: nobody else holds the value, so this takes it without a copy.
            Some((_, result)) => result.map(|copy| copy.map(Arc::unwrap_or_clone)),
            // transform_all answers every target given; one was given.
            None => Err(self.invalid_output(
                Hook::Transform,
                validate::OutputError::MissingOutcome(target.name.clone()),
            )),
        }
    }

    /// `transform` for every target the object is placed on: one result per target, in the
    /// order of `targets`. The object is serialised once. A v0.2.0 component answers every
    /// target in one call on one instance, and one target's failure leaves the others'
    /// results; a v0.1.0 component is called once per target, each on a fresh instance, as
    /// it always was. The outer error fails every target at once: the call itself failed
    /// (trap, deadline, the plugin's error), or a v0.2.0 answer does not give exactly one
    /// outcome per target ([`CallError::InvalidOutput`]).
    ///
    /// An answer whose every target succeeded is kept in the purity memo: the same object,
    /// context and targets are then answered without a call (the copies are the plugin's
    /// earlier, validated output).
    pub fn transform_all(
        &self,
        context: &ObjectContext,
        object: &Value,
        targets: &[Target],
    ) -> Result<Vec<TargetResult>, CallError> {
        let text = json_text(object);
        let memo = &self.inner.memos.transform;
        let key = memo.enabled().then(|| {
            self.key(Hook::Transform, context)
                .json(&targets)
                .bytes(text.as_bytes())
                .finish()
        });
        if let Some(results) = recall(memo, key.as_ref()).and_then(|hit| recalled_transform(&hit)) {
            return Ok(results);
        }
        let results = self.transform_all_uncached(context, object, &text, targets)?;
        if let Some(key) = key
            && let Some(answer) = memo_answer(&results)
        {
            memo.insert(key, answer);
        }
        Ok(results)
    }

    /// [`Plugin::transform_all`] without the memo: always calls the plugin.
    fn transform_all_uncached(
        &self,
        context: &ObjectContext,
        object: &Value,
        text: &str,
        targets: &[Target],
    ) -> Result<Vec<TargetResult>, CallError> {
        let hook = Hook::Transform;
        if !self.inner.guest.transforms_all_targets_at_once() {
            return Ok(targets
                .iter()
                .map(|target| {
                    let result = self.observed(hook, |usage| {
                        self.check_exported(hook)?;
                        let raw = self.transform_raw(context, text, target, usage)?;
                        self.validate_outcome(context, object, raw)
                            .map(|copy| copy.map(Arc::new))
                    });
                    (target.name.clone(), result)
                })
                .collect());
        }
        self.observed_with(
            hook,
            |usage| {
                self.check_exported(hook)?;
                let mut answered = self.call(hook, usage, |guest, store, instance| {
                    guest.transform(store, instance, context, text, targets)
                })?;
                validate::outcome_targets(answered.iter().map(|(name, _)| name.as_str()), targets)
                    .map_err(|source| self.invalid_output(hook, source))?;
                // Answers come in any order; results go in the order of `targets`. A plugin
                // usually applies the same text on every target: it is parsed and validated
                // once (the same text against the same object and context validates the
                // same way), and the targets that share it share that `Value`.
                let mut distinct: Vec<(String, Arc<Value>)> = Vec::new();
                let pending: Vec<(String, Pending)> = targets
                    .iter()
                    .map(|target| {
                        let at = answered
                            .iter()
                            .position(|(name, _)| *name == target.name)
                            .unwrap_or_default();
                        let (name, raw) = answered.swap_remove(at);
                        let pending = match raw {
                            RawOutcome::Apply(json) => {
                                match distinct.iter().position(|(text, _)| *text == json) {
                                    Some(at) => Pending::Shared(at),
                                    None => match validate::transform(
                                        &json,
                                        object,
                                        context,
                                        &self.inner.options.transform_policy,
                                    ) {
                                        Ok(value) => {
                                            distinct.push((json, Arc::new(value)));
                                            Pending::Shared(distinct.len() - 1)
                                        }
                                        Err(source) => {
                                            Pending::Done(Err(self.invalid_output(hook, source)))
                                        }
                                    },
                                }
                            }
                            other => Pending::Done(
                                self.validate_outcome(context, object, other)
                                    .map(|copy| copy.map(Arc::new)),
                            ),
                        };
                        (name, pending)
                    })
                    .collect();
                Ok(pending
                    .into_iter()
                    .map(|(name, pending)| match pending {
                        Pending::Done(result) => (name, result),
                        Pending::Shared(at) => (name, Ok(Some(Arc::clone(&distinct[at].1)))),
                    })
                    .collect())
            },
            // One failed target is reported like a failed call: metrics count it.
            |results: &Vec<TargetResult>| {
                results
                    .iter()
                    .find_map(|(_, r)| r.as_ref().err().map(CallError::kind))
            },
        )
    }

    /// `transform` on JSON text for one target, unvalidated: for benchmarks. `Ok(None)` is a
    /// skip.
    #[doc(hidden)]
    pub fn transform_json(
        &self,
        context: &ObjectContext,
        object: &str,
        target: &Target,
    ) -> Result<Option<String>, CallError> {
        self.observed(Hook::Transform, |usage| {
            self.check_exported(Hook::Transform)?;
            match self.transform_raw(context, object, target, usage)? {
                RawOutcome::Apply(json) => Ok(Some(json)),
                RawOutcome::Skip => Ok(None),
                RawOutcome::Failed(source) => Err(self.plugin_error(Hook::Transform, source)),
            }
        })
    }

    /// One target's transform on a fresh instance.
    fn transform_raw(
        &self,
        context: &ObjectContext,
        object: &str,
        target: &Target,
        usage: &mut Usage,
    ) -> Result<RawOutcome, CallError> {
        let hook = Hook::Transform;
        let targets = std::slice::from_ref(target);
        let mut answered = self.call(hook, usage, |guest, store, instance| {
            guest.transform(store, instance, context, object, targets)
        })?;
        validate::outcome_targets(answered.iter().map(|(name, _)| name.as_str()), targets)
            .map_err(|source| self.invalid_output(hook, source))?;
        Ok(answered
            .pop()
            .map_or(RawOutcome::Skip, |(_, outcome)| outcome))
    }

    /// One target's outcome, validated as every transform output is.
    fn validate_outcome(
        &self,
        context: &ObjectContext,
        object: &Value,
        raw: RawOutcome,
    ) -> Result<Option<Value>, CallError> {
        match raw {
            RawOutcome::Apply(json) => {
                validate::transform(&json, object, context, &self.inner.options.transform_policy)
                    .map(Some)
                    .map_err(|source| self.invalid_output(Hook::Transform, source))
            }
            RawOutcome::Skip => Ok(None),
            RawOutcome::Failed(source) => Err(self.plugin_error(Hook::Transform, source)),
        }
    }

    /// `aggregate-status`: the upstream status (a JSON object), or `None` to leave it.
    pub fn aggregate_status(
        &self,
        context: &ObjectContext,
        object: &Value,
        downstream: &[Downstream],
    ) -> Result<Option<Value>, CallError> {
        let hook = Hook::AggregateStatus;
        let object = json_text(object);
        let memo = &self.inner.memos.status;
        let key = memo.enabled().then(|| {
            self.key(hook, context)
                .json(&downstream)
                .bytes(object.as_bytes())
                .finish()
        });
        if let Some(hit) = recall(memo, key.as_ref()) {
            return Ok(hit.as_ref().clone());
        }
        let status = self.observed(hook, |usage| {
            self.check_exported(hook)?;
            let output = self.call(hook, usage, |guest, store, instance| {
                guest.aggregate_status(store, instance, context, &object, downstream)
            })?;
            output
                .map(|o| validate::status(&o).map_err(|source| self.invalid_output(hook, source)))
                .transpose()
        })?;
        if let Some(key) = key {
            memo.insert(key, status.clone());
        }
        Ok(status)
    }

    /// `dependencies` (contract v0.2.0): the objects `object` needs on its targets, validated
    /// (every reference can name an object) and merged (each object once, optional only if
    /// every mention is), sorted. A v0.1.0 component has no such hook:
    /// [`CallError::HookNotExported`].
    pub fn dependencies(
        &self,
        context: &ObjectContext,
        object: &Value,
    ) -> Result<Vec<ObjectRef>, CallError> {
        let hook = Hook::Dependencies;
        let object = json_text(object);
        let memo = &self.inner.memos.dependencies;
        let key = memo
            .enabled()
            .then(|| self.key(hook, context).bytes(object.as_bytes()).finish());
        if let Some(hit) = recall(memo, key.as_ref()) {
            return Ok(hit.as_ref().clone());
        }
        let refs = self.observed(hook, |usage| {
            self.check_exported(hook)?;
            let refs = self.call(hook, usage, |guest, store, instance| {
                guest.dependencies(store, instance, context, &object)
            })?;
            validate::dependencies(refs).map_err(|source| self.invalid_output(hook, source))
        })?;
        if let Some(key) = key {
            memo.insert(key, refs.clone());
        }
        Ok(refs)
    }

    /// The start of a memo key for one call of `hook`.
    fn key(&self, hook: Hook, context: &ObjectContext) -> crate::memo::KeyBuilder {
        self.inner.seed.key(hook, context)
    }

    /// Runs `f` and tells the plugin's observer (if any) how it went.
    fn observed<T>(
        &self,
        hook: Hook,
        f: impl FnOnce(&mut Usage) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        self.observed_with(hook, f, |_| None)
    }

    /// [`Plugin::observed`] for results that carry failures of their own (`failed_in`).
    fn observed_with<T>(
        &self,
        hook: Hook,
        f: impl FnOnce(&mut Usage) -> Result<T, CallError>,
        failed_in: impl FnOnce(&T) -> Option<ErrorKind>,
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
                error: match &result {
                    Ok(value) => failed_in(value),
                    Err(e) => Some(e.kind()),
                },
            });
        }
        result
    }

    fn check_exported(&self, hook: Hook) -> Result<(), CallError> {
        if self.exports(hook) {
            Ok(())
        } else {
            Err(CallError::HookNotExported {
                plugin: self.inner.name.clone(),
                hook,
            })
        }
    }

    fn plugin_error(&self, hook: Hook, source: PluginError) -> CallError {
        CallError::Plugin {
            plugin: self.inner.name.clone(),
            hook,
            source,
        }
    }

    fn probe_config(&self) -> Result<(), CallError> {
        if self.inner.guest.exports(Hook::Configure) {
            // Instantiating runs `configure`; no hook needed.
            return self.call(Hook::Configure, &mut Usage::default(), |_, _, _| Ok(Ok(())));
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
        run: impl FnOnce(&dyn Guest, &mut Store<CallState>, &Instance) -> HookResult<R>,
    ) -> Result<R, CallError> {
        let (mut store, instance) = self.instantiate(hook)?;
        let guest = self.inner.guest.as_ref();
        let result = (|| {
            if guest.exports(Hook::Configure) {
                let configured = guest.configure(&mut store, &instance, &self.inner.config_json)?;
                if let Err(e) = configured {
                    return Ok(Err((Hook::Configure, e)));
                }
            }
            Ok(run(guest, &mut store, &instance)?.map_err(|e| (hook, e)))
        })();
        let state = store.data_mut();
        if let Some((stdout, stderr)) = state.wasi.output() {
            state.log.emit_stream("stdout", &stdout);
            state.log.emit_stream("stderr", &stderr);
        }
        state.log.finish();
        usage.peak_memory = store.data().cap.peak;
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err((hook, e))) => Err(self.plugin_error(hook, e)),
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
                wasi: WasiSlot::default(),
            },
        );
        store.limiter(|s| &mut s.cap);
        // Plus the ticker's lag: its catch-up burst must not count against this call.
        store.set_epoch_deadline(
            deadline_ticks(self.inner.limits, shared.config.epoch_tick)
                .saturating_add(shared.clock.lag()),
        );
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

    pub(crate) fn guest(&self) -> &dyn Guest {
        self.inner.guest.as_ref()
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

/// A target's transform result while the answer is being validated.
enum Pending {
    /// Validated already (or failed): the result.
    Done(Result<Option<Arc<Value>>, CallError>),
    /// The value of the answer's distinct `apply` text number `.0`.
    Shared(usize),
}

/// The object as the JSON text every hook receives. Serialising into a byte vector is
/// cheaper than `Value`'s `Display` (which goes through `fmt::Write`), and a `Value` always
/// serialises (its map keys are strings).
fn json_text(object: &Value) -> String {
    serde_json::to_string(object).unwrap_or_default()
}

/// The memo's answer for `key`, if it has one.
fn recall<V>(memo: &Memo<V>, key: Option<&Key>) -> Option<Arc<V>> {
    key.and_then(|key| memo.get(key))
}

/// What the memo keeps of a transform answer: only an answer where every target succeeded
/// (a failure is retried as it always was), each object as JSON text. Targets that got
/// equal objects share one text. (`Value`s serialise and parse back to equal `Value`s.)
fn memo_answer(results: &[TargetResult]) -> Option<Vec<(String, Option<Arc<str>>)>> {
    let mut distinct: Vec<(&Arc<Value>, Arc<str>)> = Vec::new();
    results
        .iter()
        .map(|(name, result)| {
            let copy = match result.as_ref().ok()? {
                None => None,
                Some(value) => Some(
                    match distinct
                        .iter()
                        .find(|(kept, _)| Arc::ptr_eq(kept, value) || ***kept == **value)
                    {
                        Some((_, text)) => Arc::clone(text),
                        None => {
                            let text: Arc<str> = json_text(value).into();
                            distinct.push((value, Arc::clone(&text)));
                            text
                        }
                    },
                ),
            };
            Some((name.clone(), copy))
        })
        .collect()
}

/// A kept transform answer as results: each distinct text parsed once and shared by the
/// targets that got it. The texts were serialised from validated objects; if one ever
/// failed to parse, the answer is treated as not kept (`None`).
fn recalled_transform(kept: &[(String, Option<Arc<str>>)]) -> Option<Vec<TargetResult>> {
    let mut parsed: Vec<(&Arc<str>, Arc<Value>)> = Vec::new();
    let mut results: Vec<TargetResult> = Vec::with_capacity(kept.len());
    for (name, text) in kept {
        let copy = match text {
            None => None,
            Some(text) => Some(
                match parsed.iter().find(|(seen, _)| Arc::ptr_eq(seen, text)) {
                    Some((_, value)) => Arc::clone(value),
                    None => {
                        let value = Arc::new(serde_json::from_str::<Value>(text).ok()?);
                        parsed.push((text, Arc::clone(&value)));
                        value
                    }
                },
            ),
        };
        results.push((name.clone(), Ok(copy)));
    }
    Some(results)
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
    pub(crate) log: crate::log::LogSink,
    /// Deterministic WASI, built when the guest first calls it (`wasi.rs`).
    pub(crate) wasi: WasiSlot,
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

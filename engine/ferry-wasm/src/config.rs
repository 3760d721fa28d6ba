//! Runtime-wide settings and per-plugin limits, each default explained.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::{Hook, TransformPolicy};

use crate::error::ErrorKind;

const MIB: u64 = 1024 * 1024;

/// Settings shared by every plugin of one [`Runtime`](crate::Runtime).
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Most plugin instances alive at the same time (pooling allocator slots).
    ///
    /// Default 64. Each call holds one instance for its duration only, and the engine runs
    /// calls on a bounded blocking pool, so this is a concurrency bound, not a count of
    /// plugins. Slots are virtual-memory reservations: idle ones cost no resident memory.
    /// A call that finds every slot taken fails with [`CallError::Busy`](crate::CallError)
    /// and is retried by the engine like any other transient error.
    pub max_instances: u32,
    /// Ceiling of any plugin's memory cap, in bytes: the size of each pooled memory slot.
    ///
    /// Default 256 MiB, four times the default per-plugin cap, so operators can raise a
    /// plugin's cap without restarting with another runtime configuration.
    pub max_memory_per_instance: u64,
    /// Interval of the epoch ticker, i.e. the granularity of deadlines.
    ///
    /// Default 10 ms: a deadline fires between `deadline` and `deadline + tick` after the
    /// call starts. One thread per runtime increments the epoch; at 100 wakeups per second
    /// its cost is negligible, and epoch checks cost guests about 20% against ~33% for fuel
    /// (measured in docs/plugins.md).
    pub epoch_tick: Duration,
    /// Directory for compiled code, keyed by component digest and engine build. `None`
    /// (default) compiles in memory only. Compiling takes tens of milliseconds per plugin;
    /// loading cached code well under one, which matters for CLI runs more than for the
    /// long-running engine.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 64,
            max_memory_per_instance: 256 * MIB,
            epoch_tick: Duration::from_millis(10),
            cache_dir: None,
        }
    }
}

impl RuntimeConfig {
    /// Sets [`RuntimeConfig::max_instances`].
    #[must_use]
    pub fn max_instances(mut self, n: u32) -> Self {
        self.max_instances = n;
        self
    }

    /// Sets [`RuntimeConfig::max_memory_per_instance`].
    #[must_use]
    pub fn max_memory_per_instance(mut self, bytes: u64) -> Self {
        self.max_memory_per_instance = bytes;
        self
    }

    /// Sets [`RuntimeConfig::epoch_tick`].
    #[must_use]
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.epoch_tick = tick;
        self
    }

    /// Sets [`RuntimeConfig::cache_dir`].
    #[must_use]
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }
}

/// What kind of guest a component is, which sets its default [`Limits`]: told by its
/// imports when it is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestKind {
    /// Imports nothing but the contract: compiled code with no language runtime inside,
    /// such as every Rust plugin (kilobytes of memory, microseconds per call).
    Compact,
    /// Imports WASI: carries a language runtime (CPython from componentize-py,
    /// SpiderMonkey from componentize-js), with tens of megabytes of memory and
    /// milliseconds per call. The component does not say which language it is, so both
    /// share defaults sized for the larger of the two (docs/plugins.md, "Measured costs").
    LanguageRuntime,
}

/// Limits of one plugin, applied to every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time one call may take, from instantiation to the hook's return.
    ///
    /// Default 250 ms. A transform of a 4 KB object takes tens of microseconds and even a
    /// 1.5 MiB object (etcd's limit) parses in a few milliseconds, so a call near the deadline
    /// is a bug, not a big object. The margin absorbs a loaded node: the deadline is wall
    /// time, and a preempted thread must not fail healthy plugins. It stays short enough that
    /// a looping plugin holds a worker thread for a quarter second per retry, not minutes.
    pub deadline: Duration,
    /// Linear memory one instance may use, in bytes.
    ///
    /// Default 64 MiB. The largest object Kubernetes stores is about 1.5 MiB of JSON, which
    /// a `serde_json::Value` inflates roughly tenfold; a plugin holds the input, its parse and
    /// its output at once. 64 MiB leaves room for that with margin and keeps 64 concurrent
    /// instances within 4 GiB in the worst case.
    pub memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(250),
            memory: 64 * MIB,
        }
    }
}

impl Limits {
    /// The default limits of a kind of guest: [`Limits::default`] for compact guests; for
    /// language runtimes a deadline and a memory cap sized from their measured cost.
    #[must_use]
    pub fn for_guest(kind: GuestKind) -> Self {
        match kind {
            GuestKind::Compact => Self::default(),
            GuestKind::LanguageRuntime => Self {
                deadline: LANGUAGE_RUNTIME_DEADLINE,
                memory: LANGUAGE_RUNTIME_MEMORY,
            },
        }
    }

    /// Sets [`Limits::deadline`].
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets [`Limits::memory`].
    #[must_use]
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }
}

/// Default deadline of a guest with a language runtime ([`GuestKind::LanguageRuntime`]).
/// A `label-placement-python` call ran past 1 s of wall time on the shared 2-core machine at
/// load average 40 (docs/plugins.md, "Measured costs per language"); the deadline is wall
/// time, so a default a healthy plugin misses under load would be a bug.
const LANGUAGE_RUNTIME_DEADLINE: Duration = Duration::from_secs(5);

/// Default memory cap of a guest with a language runtime ([`GuestKind::LanguageRuntime`]):
/// about ten times the 9 to 13 MiB the label-placement ports peak at.
const LANGUAGE_RUNTIME_MEMORY: u64 = 128 * MIB;

/// The limits asked for one plugin: what is `None` takes the default of the guest's kind
/// ([`Limits::for_guest`]), known once the component is loaded. A [`Limits`] converts into
/// overrides of both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    /// The deadline of every call, if not the default.
    pub deadline: Option<Duration>,
    /// The memory cap of every instance in bytes, if not the default.
    pub memory: Option<u64>,
}

impl LimitOverrides {
    /// Sets [`LimitOverrides::deadline`].
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets [`LimitOverrides::memory`].
    #[must_use]
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// The limits of a guest of `kind`: these overrides over its defaults.
    #[must_use]
    pub fn resolve(self, kind: GuestKind) -> Limits {
        let defaults = Limits::for_guest(kind);
        Limits {
            deadline: self.deadline.unwrap_or(defaults.deadline),
            memory: self.memory.unwrap_or(defaults.memory),
        }
    }
}

impl From<Limits> for LimitOverrides {
    fn from(limits: Limits) -> Self {
        Self {
            deadline: Some(limits.deadline),
            memory: Some(limits.memory),
        }
    }
}

/// How to load one plugin.
#[derive(Clone, Debug)]
pub struct PluginOptions {
    /// Name used in errors, logs and metrics; defaults to the file stem or `"plugin"`.
    pub name: Option<String>,
    /// Configuration passed to the plugin's `configure` hook as JSON (`null` for none).
    pub config: serde_json::Value,
    /// Limits of every call; those not set take the default of the guest's kind.
    pub limits: LimitOverrides,
    /// What transform output may change beyond the defaults.
    pub transform_policy: TransformPolicy,
    /// Told about every hook call (metrics, `ferry plugin run`). An answer taken from the
    /// memo is not a call and is not reported.
    pub observer: Option<CallObserver>,
    /// How many answers per hook the purity memo keeps: a call whose component,
    /// configuration, context, targets and object are all unchanged is answered from it
    /// without running the plugin (docs/plugins.md, "Boundary cost").
    ///
    /// Default 1024 per hook, 0 turns the memo off. A transform answer keeps each distinct
    /// output object as JSON text (3.6 KB for the benchmark's 4 KB Deployment, where the
    /// parsed `Value` would hold 47 KB of heap), so the default holds about 4 MB per
    /// transform plugin for such objects; placement and dependencies answers are a few
    /// names each, a status answer one status stanza.
    pub memo_capacity: usize,
}

impl Default for PluginOptions {
    fn default() -> Self {
        Self {
            name: None,
            config: serde_json::Value::Null,
            limits: LimitOverrides::default(),
            transform_policy: TransformPolicy::default(),
            observer: None,
            memo_capacity: 1024,
        }
    }
}

impl PluginOptions {
    /// Sets [`PluginOptions::name`].
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets [`PluginOptions::config`].
    #[must_use]
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }

    /// Sets [`PluginOptions::limits`]: a [`Limits`] sets both, [`LimitOverrides`] those it has.
    #[must_use]
    pub fn limits(mut self, limits: impl Into<LimitOverrides>) -> Self {
        self.limits = limits.into();
        self
    }

    /// Sets [`PluginOptions::observer`].
    #[must_use]
    pub fn observer(mut self, observer: impl Fn(&CallReport<'_>) + Send + Sync + 'static) -> Self {
        self.observer = Some(CallObserver(Arc::new(observer)));
        self
    }

    /// Sets [`PluginOptions::memo_capacity`] (0 turns the memo off).
    #[must_use]
    pub fn memo_capacity(mut self, answers: usize) -> Self {
        self.memo_capacity = answers;
        self
    }

    /// Sets [`PluginOptions::transform_policy`].
    #[must_use]
    pub fn transform_policy(mut self, policy: TransformPolicy) -> Self {
        self.transform_policy = policy;
        self
    }
}

/// What one hook call did: the input of metrics and of diagnostics such as
/// `ferry plugin run`.
#[derive(Clone, Debug)]
pub struct CallReport<'a> {
    /// Plugin name.
    pub plugin: &'a str,
    /// The hook.
    pub hook: Hook,
    /// Wall time of the whole call: input serialization, instantiation, `configure`, the
    /// hook and output validation.
    pub elapsed: Duration,
    /// Largest size the instance's linear memory reached, in bytes.
    pub peak_memory: u64,
    /// The failure, if the call failed.
    pub error: Option<ErrorKind>,
}

/// A callback told about every call of a plugin. Called on the calling thread, so keep it
/// cheap (increment a metric, record a value).
#[derive(Clone)]
pub struct CallObserver(Arc<dyn Fn(&CallReport<'_>) + Send + Sync>);

impl CallObserver {
    pub(crate) fn notify(&self, report: &CallReport<'_>) {
        (self.0)(report);
    }
}

impl fmt::Debug for CallObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallObserver")
    }
}

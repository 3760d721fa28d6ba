//! The runtime: one wasmtime engine with a pooling allocator and an epoch ticker, plus the
//! cache of compiled plugins. Plugins loaded from it are cheap handles onto shared state.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::code_cache;
use crate::config::{PluginOptions, RuntimeConfig};
use crate::error::LoadError;
use crate::plugin::Plugin;

/// Why the runtime itself could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the Wasm runtime")]
pub struct RuntimeError(#[source] wasmtime::Error);

/// Loads and runs plugins. Cheap to clone; every clone shares the engine, the instance pool,
/// the compile cache and the epoch ticker, which stops when the last clone and the last
/// plugin loaded from it are dropped.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) config: RuntimeConfig,
    /// Compiled components by SHA-256 of their bytes: loading the same plugin for several
    /// resources (or reloading an unchanged file) compiles it once.
    compiled: Mutex<HashMap<String, Component>>,
    pooling: bool,
    /// The epoch ticker's clock: a call's deadline adds its lag.
    pub(crate) clock: Arc<EpochClock>,
    stop: Arc<AtomicBool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Starts a runtime: builds the engine and starts the epoch ticker thread.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.max_instances)
            // A Rust component has one core module plus the small shim modules the
            // component model adds; its memory and table are one each.
            .total_core_instances(config.max_instances * 4)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances * 2)
            .max_memory_size(usize::try_from(config.max_memory_per_instance).unwrap_or(usize::MAX))
            // Reset the first 256 KiB of a freed slot with memset instead of returning the
            // pages to the kernel: a fresh instance then takes no page faults for the pages a
            // call touches. Guests are linked with a 128 KiB stack placed first in memory
            // (plugins/.cargo/config.toml), so stack, data and the start of the heap all lie
            // in that prefix. Measured: 90 µs -> 58 µs per fresh-instance transform.
            .linear_memory_keep_resident(256 * 1024);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            // Deadlines: the ticker thread increments the epoch, each Store sets how many
            // ticks it may run.
            .epoch_interruption(true)
            // Deep recursion in a guest becomes a trap well before the host's own stack
            // (tokio blocking threads have 2 MiB) is at risk.
            .max_wasm_stack(512 * 1024)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // The pool reserves its address space when the engine is built: about 4 GiB per
        // memory slot, which is what makes bounds checks free. Where a process may not
        // reserve that much (`ulimit -v`, 39-bit address spaces), allocate per instance
        // instead. Spin and `wasmtime serve` probe the address space before choosing; trying
        // and falling back needs no probe, and every limit (deadline, memory cap, fresh
        // store per call) is enforced the same way with either allocator.
        let (engine, pooling) = match Engine::new(&wasm) {
            Ok(engine) => (engine, true),
            Err(error) => {
                tracing::warn!(%error, "pooling allocator unavailable, allocating instances on demand");
                // Reserve only what the memory ceiling needs; guests then pay for explicit
                // bounds checks, which is the price of running at all.
                wasm.allocation_strategy(InstanceAllocationStrategy::OnDemand)
                    .memory_reservation(config.max_memory_per_instance)
                    .memory_guard_size(64 * 1024)
                    .memory_reservation_for_growth(0);
                (Engine::new(&wasm).map_err(RuntimeError)?, false)
            }
        };

        let stop = Arc::new(AtomicBool::new(false));
        let clock = Arc::new(EpochClock::new(config.epoch_tick));
        spawn_ticker(
            engine.clone(),
            config.epoch_tick,
            Arc::clone(&clock),
            Arc::clone(&stop),
        )
        .map_err(|e| RuntimeError(e.into()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                config,
                compiled: Mutex::new(HashMap::new()),
                pooling,
                clock,
                stop,
            }),
        })
    }

    /// Loads a plugin from a component file. The name defaults to the file stem.
    pub fn load_file(
        &self,
        path: impl AsRef<Path>,
        options: PluginOptions,
    ) -> Result<Plugin, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let options = match options.name {
            Some(_) => options,
            None => {
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                PluginOptions {
                    name: stem,
                    ..options
                }
            }
        };
        self.load_bytes(&bytes, options)
    }

    /// Loads a plugin from component bytes: compiles it (or takes it from the cache),
    /// checks its contract version, links it and validates its configuration by calling
    /// `configure` once.
    pub fn load_bytes(&self, bytes: &[u8], options: PluginOptions) -> Result<Plugin, LoadError> {
        let name = options.name.clone().unwrap_or_else(|| "plugin".to_owned());
        let digest = sha256_hex(bytes);
        let component = self.compile(&name, &digest, bytes)?;
        Plugin::new(self.clone(), name, digest, component, options)
    }

    /// Compiles a component once per digest, through the optional on-disk cache.
    fn compile(&self, name: &str, digest: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        let compiled = self
            .shared
            .compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(digest)
            .cloned();
        if let Some(component) = compiled {
            return Ok(component);
        }
        let engine = &self.shared.engine;
        let cached_path = self
            .shared
            .config
            .cache_dir
            .as_deref()
            .map(|dir| code_cache::entry(dir, digest, engine));
        let component = match cached_path
            .as_deref()
            .and_then(|p| code_cache::load(engine, p))
        {
            Some(component) => component,
            None => {
                let component =
                    Component::new(engine, bytes).map_err(|source| LoadError::Compile {
                        plugin: name.to_owned(),
                        source,
                    })?;
                if let Some(path) = &cached_path {
                    code_cache::store(&component, path);
                }
                component
            }
        };
        self.shared
            .compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(digest.to_owned(), component.clone());
        Ok(component)
    }

    /// Forgets the compiled code of the component with SHA-256 `digest`, e.g. the version a
    /// hot reload replaced or refused: a long-running engine would otherwise keep every
    /// version it ever loaded. Plugins still loaded from it keep their code; loading it again
    /// compiles it again (or reads the on-disk cache).
    pub fn forget_compiled(&self, digest: &str) {
        self.shared
            .compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(digest);
    }

    /// How many compiled components the runtime keeps (diagnostics and tests).
    #[doc(hidden)]
    #[must_use]
    pub fn compiled_components(&self) -> usize {
        self.shared
            .compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether instances come from the pooling allocator (false after a fallback to
    /// per-instance allocation, see [`Runtime::new`]).
    #[must_use]
    pub fn uses_pooling(&self) -> bool {
        self.shared.pooling
    }

    /// The wasmtime engine (benchmarks and diagnostics).
    #[doc(hidden)]
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }
}

/// The epoch ticker's clock, shared with every call. The ticker keeps the engine's epoch at
/// "ticks elapsed since start" and catches up in a burst after a late wake-up; a deadline set
/// while it is behind would then end the call early by the lag. A call adds [`lag`] to its
/// deadline so that it always counts from now.
///
/// [`lag`]: EpochClock::lag
pub(crate) struct EpochClock {
    start: std::time::Instant,
    tick_nanos: u128,
    /// Ticks the ticker has applied to the engine (never ahead of the engine's epoch).
    applied: std::sync::atomic::AtomicU64,
}

impl EpochClock {
    fn new(tick: Duration) -> Self {
        Self {
            start: std::time::Instant::now(),
            tick_nanos: tick.as_nanos().max(1),
            applied: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Ticks due by the wall clock.
    fn due(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos() / self.tick_nanos).unwrap_or(u64::MAX)
    }

    /// Ticks due but not applied yet: the burst the next wake-up will apply at once. (Read
    /// racing with an increment, it may count one tick too many: a deadline is then a tick
    /// late, never early.)
    pub(crate) fn lag(&self) -> u64 {
        self.due()
            .saturating_sub(self.applied.load(Ordering::Acquire))
    }
}

/// One thread per runtime: keeps the epoch at "ticks elapsed since start", and exits once the
/// runtime is gone. Deadlines are counted in these ticks.
///
/// The epoch follows the wall clock rather than counting sleeps: on a loaded machine a sleep
/// overshoots, and one increment per sleep let a 250 ms deadline stretch past a second.
/// After an overshoot the ticker catches up, so a deadline is late by at most one late
/// wake-up; calls add the [`EpochClock::lag`] so that the catch-up never ends one early.
fn spawn_ticker(
    engine: Engine,
    tick: Duration,
    clock: Arc<EpochClock>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    thread::Builder::new()
        .name("ferry-wasm-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(tick);
                let due = clock.due();
                while clock.applied.load(Ordering::Relaxed) < due {
                    engine.increment_epoch();
                    clock.applied.fetch_add(1, Ordering::Release);
                }
            }
        })
        .map(drop)
}

/// Hex SHA-256 of the component: the key of both caches and the plugin's identity in
/// metrics.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_is_the_ticks_due_and_not_yet_applied() {
        let tick = Duration::from_millis(10);
        let mut clock = EpochClock::new(tick);
        clock.start = std::time::Instant::now()
            .checked_sub(Duration::from_millis(55))
            .expect("a monotonic clock older than 55 ms");
        // 5 ticks are due; a ticker that applied 2 will apply 3 at once on waking up.
        clock.applied.store(2, Ordering::Relaxed);
        assert!(clock.lag() >= 3, "lag {}", clock.lag());
        clock.applied.store(clock.due(), Ordering::Relaxed);
        assert_eq!(clock.lag(), 0);
    }
}

//! Deterministic WASI for guests whose language runtime imports it (CPython built by
//! `componentize-py`, SpiderMonkey built by `componentize-js`), and the check that a
//! component imports nothing else. Such a runtime reads the clock, random bytes, its
//! environment and its standard streams while it runs; refusing those calls would stop it
//! from running at all. Ferry grants them, but as constants, so a plugin stays a pure
//! function of its input (docs/plugins.md, "Deterministic WASI"):
//!
//! - `wasi:clocks`: the wall clock always reads [`FIXED_WALL_CLOCK`], the monotonic clock
//!   always reads 0; waiting on a clock (`subscribe-duration`, `subscribe-instant`) fails the
//!   call (`capability-denied`), since the host would wait outside the epoch deadline;
//! - `wasi:random`: every instance reads the same byte stream ([`random_stream`]) and the same
//!   insecure seed;
//! - `wasi:cli`: no environment variables, no arguments, no working directory, stdin at end
//!   of file; stdout and stderr always accept what is written, and the first
//!   [`MAX_OUTPUT`] bytes of each become the plugin's log lines after the call (`print()`
//!   debugging works; the `log` import, with levels and fields, is the way to speak);
//! - `wasi:filesystem`: no preopened directory, so there is nothing to open;
//! - `wasi:sockets`: TCP, UDP and name lookups disabled (`access-denied`), every address
//!   refused.
//!
//! Any other import (`wasi:http`, `wasi:keyvalue`, a package of the plugin's own) refuses the
//! component at load, naming the import. A component that imports no WASI (every Rust plugin
//! built by `cargo xtask plugins`) is linked without any of this, and a call builds the WASI
//! state only when the guest first uses it: the state lives in the call's `Store`, which is
//! fresh for every call, so nothing a guest does through WASI outlives its call.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView,
    WasiView,
};

use crate::config::GuestKind;
use crate::contract::CapabilityDenied;
use crate::error::LoadError;
use crate::plugin::CallState;

/// WASI 0.2 packages Ferry implements with deterministic stubs (every interface of each, as
/// `wasmtime_wasi::p2` provides them).
const GRANTED_PACKAGES: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
];

/// The WASI version the granted packages must have: 0.2.x. The linker serves any 0.2 minor
/// version with wasmtime-wasi's own (semver-compatible) one.
const GRANTED_VERSION: &str = "@0.2.";

/// What the wall clock reads in every instance: 2000-01-01T00:00:00Z. Not the Unix epoch, so
/// that a runtime which treats 0 as "no clock" still works.
pub const FIXED_WALL_CLOCK: Duration = Duration::from_secs(946_684_800);

/// The seed of the random byte stream and the `insecure-seed` every instance gets.
const RANDOM_SEED: u64 = 0x5eed_f0e2_2026_0001;

/// Bytes in one period of the random stream: longer than the 2.5 KB CPython's Mersenne
/// Twister reads to seed itself, so its state has no short repetition.
const RANDOM_PERIOD: usize = 4096;

/// Most random bytes one `get-random-bytes` call may ask for. The host allocates them outside
/// the guest's memory cap; wasmtime-wasi's default (64 MiB) would let a guest make the host
/// allocate that much per call.
const MAX_RANDOM_BYTES: u64 = 1024 * 1024;

/// Most WASI resources (streams, pollables, ...) one instance may hold at once. They live in
/// host memory, outside the guest's memory cap; a runtime needs a handful.
const MAX_RESOURCES: usize = 4096;

/// Bytes of stdout and of stderr kept per call (host memory, outside the guest's cap); what
/// a guest writes beyond that is counted and reported, never refused.
pub const MAX_OUTPUT: usize = 16 * 1024;

/// The WASI interface whose waiting functions are denied (the version wasmtime-wasi links;
/// guests importing an older 0.2 version get the same definitions).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Whether `import` (an interface name such as `wasi:random/random@0.2.9`) is one [`link`]
/// provides.
pub(crate) fn is_granted(import: &str) -> bool {
    GRANTED_PACKAGES.iter().any(|p| import.starts_with(p)) && import.contains(GRANTED_VERSION)
}

/// A component that imports WASI carries a language runtime; one that does not is compact
/// (it is refused at load if it imports anything else).
pub(crate) fn guest_kind(component: &Component, engine: &Engine) -> GuestKind {
    if component
        .component_type()
        .imports(engine)
        .any(|(name, _)| is_granted(name))
    {
        GuestKind::LanguageRuntime
    } else {
        GuestKind::Compact
    }
}

/// Links what `component` imports besides the `ferry:sync` contract (linked by its version's
/// module): the deterministic WASI when it imports any, and refuses the component when it
/// imports anything outside the granted set, naming the first such import. Returns whether
/// WASI was linked.
pub(crate) fn link_imports(
    plugin: &str,
    linker: &mut Linker<CallState>,
    component: &Component,
    engine: &Engine,
    is_contract: impl Fn(&str) -> bool,
) -> Result<bool, LoadError> {
    let mut imports_wasi = false;
    for (name, _) in component.component_type().imports(engine) {
        if is_contract(name) {
            continue;
        }
        if !is_granted(name) {
            return Err(LoadError::ImportNotGranted {
                plugin: plugin.to_owned(),
                import: name.to_owned(),
            });
        }
        imports_wasi = true;
    }
    if imports_wasi {
        link(linker).map_err(|source| LoadError::Link {
            plugin: plugin.to_owned(),
            source,
        })?;
    }
    Ok(imports_wasi)
}

/// Links the deterministic WASI stubs, then replaces the clock subscriptions with denials.
fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let mut scope = linker.instance(MONOTONIC_CLOCK)?;
    for function in ["subscribe-duration", "subscribe-instant"] {
        let import = format!("{MONOTONIC_CLOCK}#{function}");
        scope.func_new(function, move |_, _, _, _| {
            Err(wasmtime::Error::new(CapabilityDenied {
                import: import.clone(),
            }))
        })?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// One call's WASI state, built when the guest first calls WASI: the context Ferry grants
/// and the guest's open resources (streams, pollables). Dropped with the call's store.
#[derive(Default)]
pub(crate) struct WasiSlot(Option<Box<WasiState>>);

struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: Captured,
    stderr: Captured,
}

impl WasiSlot {
    /// What the guest wrote to stdout and stderr during the call, if it used WASI at all.
    pub(crate) fn output(&self) -> Option<(Output, Output)> {
        let state = self.0.as_ref()?;
        Some((state.stdout.take(), state.stderr.take()))
    }
}

impl WasiState {
    /// The context of every instance: the same clocks and random bytes, nothing else.
    fn deterministic() -> Self {
        let (stdout, stderr) = (Captured::default(), Captured::default());
        let ctx = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedWallClock)
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(Deterministic::new(random_stream()))
            .insecure_random(Deterministic::new(random_stream()))
            .insecure_random_seed(u128::from(RANDOM_SEED))
            .max_random_size(MAX_RANDOM_BYTES)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            ctx,
            table,
            stdout,
            stderr,
        }
    }
}

/// What a guest wrote to one standard stream in a call: the first [`MAX_OUTPUT`] bytes, and
/// how many more there were.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Output {
    pub(crate) bytes: Vec<u8>,
    pub(crate) dropped: usize,
}

/// A standard stream that keeps what is written to it. Every write succeeds, whatever its
/// size: a guest that prints behaves exactly as one that does not (a full or failing stdout
/// would make CPython raise), so printing cannot change a plugin's answer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Output>>);

impl Captured {
    fn append(&self, bytes: &[u8]) {
        let mut output = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = MAX_OUTPUT.saturating_sub(output.bytes.len());
        let kept = bytes.len().min(room);
        output.bytes.extend_from_slice(&bytes[..kept]);
        output.dropped += bytes.len() - kept;
    }

    fn take(&self) -> Output {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl IsTerminal for Captured {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Captured {
    /// WASI 0.3's form of the stream, which Ferry does not link (it grants 0.2 only): a
    /// stream that takes nothing, should that ever change unnoticed.
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(MemoryOutputPipe::new(0))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Captured {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Captured {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // As much as the guest likes to write in one go (wasi-io's own cap per write).
        Ok(64 * 1024)
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let state = self
            .wasi
            .0
            .get_or_insert_with(|| Box::new(WasiState::deterministic()));
        WasiCtxView {
            ctx: &mut state.ctx,
            table: &mut state.table,
        }
    }
}

/// The bytes `wasi:random` hands out, cycled: SplitMix64 from [`RANDOM_SEED`]. Fixed, so two
/// instances (or two hosts) given the same input read the same "random" numbers.
#[must_use]
pub fn random_stream() -> Vec<u8> {
    let mut state = RANDOM_SEED;
    let mut bytes = Vec::with_capacity(RANDOM_PERIOD);
    while bytes.len() < RANDOM_PERIOD {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        bytes.extend_from_slice(&z.to_le_bytes());
    }
    bytes
}

/// A wall clock stopped at [`FIXED_WALL_CLOCK`].
struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        FIXED_WALL_CLOCK
    }
}

/// A monotonic clock that never advances.
struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_random_stream_is_the_same_every_time_and_not_trivially_repetitive() {
        let first = random_stream();
        assert_eq!(first, random_stream());
        assert_eq!(first.len(), RANDOM_PERIOD);
        // No 8-byte word repeats within a period.
        let mut words: Vec<&[u8]> = first.chunks(8).collect();
        words.sort_unstable();
        words.dedup();
        assert_eq!(words.len(), RANDOM_PERIOD / 8);
    }

    #[test]
    fn only_wasi_0_2_packages_ferry_implements_are_granted() {
        assert!(is_granted("wasi:random/random@0.2.9"));
        assert!(is_granted("wasi:filesystem/preopens@0.2.12"));
        assert!(is_granted("wasi:cli/environment@0.2.0"));
        assert!(!is_granted("wasi:http/outgoing-handler@0.2.10"));
        assert!(!is_granted("wasi:keyvalue/store@0.2.0"));
        assert!(!is_granted("wasi:random/random@0.3.0"));
        assert!(!is_granted("wasi:random/random"));
        assert!(!is_granted("ferry:sync/log@0.2.0"));
    }

    #[test]
    fn a_standard_stream_keeps_its_first_bytes_and_counts_the_rest() {
        let stream = Captured::default();
        let mut handle = stream.p2_stream();
        handle
            .write(Bytes::from_static(b"hello\n"))
            .expect("a write succeeds");
        handle
            .write(Bytes::from(vec![b'x'; MAX_OUTPUT]))
            .expect("a write past the budget succeeds too");
        assert!(handle.check_write().expect("always writable") > 0);
        let output = stream.take();
        assert_eq!(output.bytes.len(), MAX_OUTPUT);
        assert!(output.bytes.starts_with(b"hello\n"));
        assert_eq!(output.dropped, 6);
        assert_eq!(stream.take(), Output::default(), "taken once");
    }

    #[test]
    fn clocks_read_constants() {
        assert_eq!(FixedWallClock.now(), FIXED_WALL_CLOCK);
        assert_eq!(FixedWallClock.now(), FixedWallClock.now());
        assert_eq!(FixedMonotonicClock.now(), 0);
    }
}

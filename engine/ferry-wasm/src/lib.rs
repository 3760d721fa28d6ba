//! Ferry's sandboxed WebAssembly runtime for plugins (WIT `ferry:sync@0.1.0` and `@0.2.0`).
//!
//! ```no_run
//! use ferry_wasm::{PluginOptions, Runtime, RuntimeConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let plugin = runtime.load_file("target/plugins/default-transform.wasm", PluginOptions::default())?;
//! # let (context, object, target) = (Default::default(), serde_json::json!({}), Default::default());
//! let downstream = plugin.transform(&context, &object, &target)?;
//! # Ok(()) }
//! ```
//!
//! How the sandbox holds (each point explained where it is implemented):
//! - components are compiled once per content digest ([`Runtime`]), optionally cached on disk;
//! - every call gets a fresh `Store` and instance from an `InstancePre` and the pooling
//!   allocator, so nothing leaks between calls and a trapped instance is never reused;
//! - every call has an epoch deadline and every instance a memory cap ([`Limits`]);
//! - the imports granted are structured logging and, for guests whose language runtime needs
//!   it, WASI 0.2 answered with constants (fixed clocks, seeded random numbers, no files,
//!   sockets or environment; `wasi`); a component importing anything else is refused at load
//!   ([`LoadError::ImportNotGranted`]);
//! - the contract version is read from the component's type before instantiation and picks
//!   the bindings of that version (`versions`); other versions are refused;
//! - output is validated ([`ferry_core::validate`]) before a caller sees it;
//! - a validated answer is kept by the digest of everything it depends on, and an unchanged
//!   call is answered from that purity memo without running the plugin (`memo`).
#![deny(missing_docs)]

#[cfg(feature = "test-support")]
pub mod cases;
mod code_cache;
mod config;
mod contract;
mod error;
mod log;
mod memo;
mod plugin;
mod reuse;
mod runtime;
#[cfg(feature = "test-support")]
pub mod testing;
mod versions;
mod wasi;

pub use config::{
    CallObserver, CallReport, GuestKind, LimitOverrides, Limits, PluginOptions, RuntimeConfig,
};
pub use error::{CallError, ErrorKind, LoadError};
pub use plugin::{Plugin, TargetResult};
pub use reuse::ReusedInstance;
pub use runtime::{Runtime, RuntimeError};

/// Versions of the `ferry:sync` contract this runtime can load.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &[versions::v0_1_0::VERSION, versions::v0_2_0::VERSION];

//! Typed errors of loading and calling plugins. Every failure is classified by its type
//! (`wasmtime::Trap`, the WIT error variant, the runtime's own markers), never by its text.

use std::path::PathBuf;
use std::time::Duration;

use ferry_core::{Hook, OutputError, PluginError, PluginErrorKind};

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("cannot read plugin file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid Wasm component (or not one this engine can compile).
    #[error("plugin {plugin} is not a valid Wasm component")]
    Compile {
        /// Plugin name.
        plugin: String,
        /// What wasmtime reported.
        #[source]
        source: wasmtime::Error,
    },
    /// The component speaks a version of the Ferry contract this runtime does not.
    #[error("plugin {plugin} uses {found}; this Ferry supports ferry:sync versions {supported}")]
    UnsupportedWitVersion {
        /// Plugin name.
        plugin: String,
        /// The interface found, e.g. `ferry:sync/transform@0.2.0`.
        found: String,
        /// Supported versions, comma-separated.
        supported: String,
    },
    /// The component names two versions of the contract (e.g. exports `transform@0.2.0`
    /// and imports `log@0.1.0`): it was built from mixed WIT folders.
    #[error(
        "plugin {plugin} mixes contract versions ({first} and {second}); build it from one wit/ folder"
    )]
    MixedWitVersions {
        /// Plugin name.
        plugin: String,
        /// The first interface found.
        first: String,
        /// An interface of another version.
        second: String,
    },
    /// The component exports no Ferry hook at all.
    #[error(
        "plugin {plugin} exports no ferry:sync hook interface (placement, transform, status or dependencies)"
    )]
    NotAPlugin {
        /// Plugin name.
        plugin: String,
    },
    /// The plugin's limits are outside what the runtime allows.
    #[error("plugin {plugin}: invalid limits: {reason}")]
    InvalidLimits {
        /// Plugin name.
        plugin: String,
        /// What is wrong.
        reason: String,
    },
    /// The component imports something the host does not grant: anything but the
    /// `ferry:sync` contract and the deterministic WASI 0.2 packages (docs/plugins.md).
    #[error(
        "plugin {plugin} imports {import}, which Ferry does not grant (only ferry:sync and deterministic wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, wasi:random and wasi:sockets 0.2)"
    )]
    ImportNotGranted {
        /// Plugin name.
        plugin: String,
        /// The import, e.g. `wasi:http/outgoing-handler@0.2.0`.
        import: String,
    },
    /// Linking the component against the host failed.
    #[error("plugin {plugin} cannot be linked")]
    Link {
        /// Plugin name.
        plugin: String,
        /// What wasmtime reported.
        #[source]
        source: wasmtime::Error,
    },
    /// The plugin refused its configuration (or failed while reading it).
    #[error("plugin {plugin} rejected its configuration")]
    Config {
        /// Plugin name.
        plugin: String,
        /// The failed `configure` call.
        #[source]
        source: Box<CallError>,
    },
}

/// Why a hook call failed. Each variant names the plugin and the hook.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call ran past the plugin's deadline and was interrupted.
    #[error("plugin {plugin} exceeded its {deadline:?} deadline in {hook}")]
    DeadlineExceeded {
        /// Plugin name.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The deadline.
        deadline: Duration,
    },
    /// The instance tried to grow its memory past the plugin's cap.
    #[error("plugin {plugin} exceeded its memory cap of {limit} bytes in {hook}")]
    MemoryExhausted {
        /// Plugin name.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The cap.
        limit: u64,
    },
    /// The guest trapped: a panic, `unreachable`, an out-of-bounds access, a stack overflow...
    #[error("plugin {plugin} crashed in {hook} ({trap})")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The trap code (a Rust panic shows as `UnreachableCodeReached`).
        trap: wasmtime::Trap,
        /// The full error with the guest backtrace.
        #[source]
        source: wasmtime::Error,
    },
    /// The guest called an import the host does not grant (any WASI function).
    #[error("plugin {plugin} called {import} in {hook}, a capability Ferry does not grant")]
    CapabilityDenied {
        /// Plugin name.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The denied import, e.g. `wasi:random/random@0.2.6#get-random-u64`.
        import: String,
    },
    /// The plugin returned something that failed output validation.
    #[error("plugin {plugin} returned invalid output from {hook}")]
    InvalidOutput {
        /// Plugin name.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// What is wrong with it.
        #[source]
        source: OutputError,
    },
    /// The plugin reported an error through the WIT `plugin-error` variant.
    #[error("plugin {plugin} failed in {hook}")]
    Plugin {
        /// Plugin name.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// The plugin's error.
        #[source]
        source: PluginError,
    },
    /// The component does not export the hook's interface.
    #[error("plugin {plugin} does not export {hook}")]
    HookNotExported {
        /// Plugin name.
        plugin: String,
        /// The hook.
        hook: Hook,
    },
    /// Every instance slot is in use; retry later.
    #[error("no free instance slot for plugin {plugin} ({hook})")]
    Busy {
        /// Plugin name.
        plugin: String,
        /// The hook.
        hook: Hook,
    },
    /// Any other failure of the host around the call.
    #[error("plugin {plugin}: host failure in {hook}")]
    Host {
        /// Plugin name.
        plugin: String,
        /// The hook.
        hook: Hook,
        /// What wasmtime reported.
        #[source]
        source: wasmtime::Error,
    },
}

/// The kind of a call failure, shared with the engine (which must act on it without
/// depending on the Wasm runtime).
pub use ferry_core::CallErrorKind as ErrorKind;

impl CallError {
    /// The kind of failure.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            CallError::DeadlineExceeded { .. } => ErrorKind::DeadlineExceeded,
            CallError::MemoryExhausted { .. } => ErrorKind::MemoryExhausted,
            CallError::Trap { .. } => ErrorKind::Trap,
            CallError::CapabilityDenied { .. } => ErrorKind::CapabilityDenied,
            CallError::InvalidOutput { .. } => ErrorKind::InvalidOutput,
            CallError::Plugin { source, .. } => match source.kind {
                PluginErrorKind::InvalidConfig => ErrorKind::InvalidConfig,
                PluginErrorKind::InvalidInput => ErrorKind::InvalidInput,
                PluginErrorKind::Unsupported => ErrorKind::Unsupported,
                PluginErrorKind::Failed => ErrorKind::Failed,
            },
            CallError::HookNotExported { .. } => ErrorKind::HookNotExported,
            CallError::Busy { .. } => ErrorKind::Busy,
            CallError::Host { .. } => ErrorKind::Host,
        }
    }

    /// Whether retrying the same call could succeed without any change. Only pool
    /// exhaustion is transient; a plugin is deterministic, so every other failure repeats
    /// until the object, the configuration or the plugin changes.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Busy { .. })
    }
}

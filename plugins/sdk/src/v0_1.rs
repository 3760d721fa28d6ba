//! The SDK for contract `ferry:sync@0.1.0`, kept so that plugins written against it still
//! build unchanged but for one import path:
//!
//! ```ignore
//! use ferry_plugin_sdk::v0_1::{export, Context, Error, Plugin, Target, Value};
//! ```
//!
//! Ferry loads 0.1.0 components as they are; new plugins use the crate root (0.2.0), which
//! adds the workspace context, per-target transform outcomes and the `dependencies` hook.

pub use serde_json::{self, Value, json};

/// Bindings generated from `wit/v0.1.0`. Public only so that [`export!`](crate::v0_1::export)
/// and hand-written guests (test fixtures) can reach them.
#[doc(hidden)]
pub mod bindings {
    // A world of another name around 0.1.0's `plugin`: wit-bindgen names a crate-level macro
    // after the world, and the crate root's 0.2.0 world is also called `plugin`. The
    // component's imports and exports (what the host sees) are the same either way.
    wit_bindgen::generate!({
        inline: "package ferry:sdk; world plugin-v0-1 { include ferry:sync/plugin@0.1.0; }",
        world: "ferry:sdk/plugin-v0-1",
        path: "../../wit/v0.1.0",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_ferry_plugin_v0_1",
        default_bindings_module: "ferry_plugin_sdk::v0_1::bindings",
    });
}

pub use crate::__export_v0_1 as export;
pub use crate::{Error, NoConfig, TargetExt};
pub use bindings::ferry::sync::types::{
    Downstream as RawDownstream, ObjectContext as Context, Target,
};

use crate::config::{configure, parse, render, with_config};
use bindings::exports::ferry::sync::{config, placement, status, transform};
use bindings::ferry::sync::types::PluginError;

/// A Ferry plugin for contract 0.1.0. Override the hooks the plugin implements; the others
/// answer `unsupported`.
pub trait Plugin: 'static {
    /// The plugin's configuration, deserialized from the JSON the operator gave (`null` when
    /// none was given, so `Option<...>` or `#[serde(default)]` types accept a missing one).
    type Config: serde::de::DeserializeOwned + 'static;

    /// Checks configuration beyond what deserialization checks. Called once per instance,
    /// before any hook.
    fn validate(_config: &Self::Config) -> Result<(), Error> {
        Ok(())
    }

    /// `place`: the names of the targets `object` goes to.
    fn place(
        _config: &Self::Config,
        _context: &Context,
        _object: &Value,
        _targets: &[Target],
    ) -> Result<Vec<String>, Error> {
        Err(Error::unsupported("place"))
    }

    /// `transform`: the object to apply on `target`, or `None` to skip that target.
    fn transform(
        _config: &Self::Config,
        _context: &Context,
        _object: Value,
        _target: &Target,
    ) -> Result<Option<Value>, Error> {
        Err(Error::unsupported("transform"))
    }

    /// `aggregate-status`: the upstream status, or `None` to leave it untouched.
    fn aggregate_status(
        _config: &Self::Config,
        _context: &Context,
        _object: &Value,
        _downstream: &[Downstream],
    ) -> Result<Option<Value>, Error> {
        Err(Error::unsupported("aggregate-status"))
    }
}

/// One target's copy of the upstream object, parsed.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The target.
    pub target: Target,
    /// The live object on it, if any.
    pub object: Option<Value>,
}

impl TargetExt for Target {
    fn label(&self, key: &str) -> Option<&str> {
        crate::lookup(&self.labels, key)
    }
}

fn hook<P: Plugin, R>(f: impl FnOnce(&P::Config) -> Result<R, Error>) -> Result<R, PluginError> {
    with_config::<P::Config, R>(P::validate, f).map_err(Into::into)
}

/// Ties a [`Plugin`] to the generated export traits. Implemented by
/// [`export!`](crate::v0_1::export).
#[doc(hidden)]
pub trait Adapter {
    /// The plugin being exported.
    type Plugin: Plugin;
}

impl<A: Adapter> config::Guest for A {
    fn configure(config: String) -> Result<(), PluginError> {
        configure::<<A::Plugin as Plugin>::Config>(&config, A::Plugin::validate).map_err(Into::into)
    }
}

impl<A: Adapter> placement::Guest for A {
    fn place(
        context: Context,
        object: String,
        targets: Vec<Target>,
    ) -> Result<Vec<String>, PluginError> {
        hook::<A::Plugin, _>(|c| A::Plugin::place(c, &context, &parse(&object)?, &targets))
    }
}

impl<A: Adapter> transform::Guest for A {
    fn transform(
        context: Context,
        object: String,
        target: Target,
    ) -> Result<Option<String>, PluginError> {
        hook::<A::Plugin, _>(|c| {
            A::Plugin::transform(c, &context, parse(&object)?, &target)?
                .map(|v| render(&v))
                .transpose()
        })
    }
}

impl<A: Adapter> status::Guest for A {
    fn aggregate_status(
        context: Context,
        object: String,
        downstream: Vec<RawDownstream>,
    ) -> Result<Option<String>, PluginError> {
        hook::<A::Plugin, _>(|c| {
            let downstream = downstream
                .into_iter()
                .map(|d| {
                    Ok(Downstream {
                        object: d.object.as_deref().map(parse).transpose()?,
                        target: d.target,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            A::Plugin::aggregate_status(c, &context, &parse(&object)?, &downstream)?
                .map(|v| render(&v))
                .transpose()
        })
    }
}

/// Structured logging through the host (contract 0.1.0's `log` import).
pub mod log {
    use super::bindings::ferry::sync::log::{Level, log};

    fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        log(level, message, &fields);
    }

    /// Logs at debug level.
    pub fn debug(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Debug, message, fields);
    }

    /// Logs at info level.
    pub fn info(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Info, message, fields);
    }

    /// Logs at warn level.
    pub fn warn(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Warn, message, fields);
    }

    /// Logs at error level.
    pub fn error(message: &str, fields: &[(&str, &str)]) {
        emit(Level::Error, message, fields);
    }
}

/// Exports a contract-0.1.0 [`Plugin`] implementation as the component's hooks. Call it once
/// per plugin crate, at the crate root. Use it as `ferry_plugin_sdk::v0_1::export!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_v0_1 {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __FerryPluginExports;
        impl $crate::v0_1::Adapter for __FerryPluginExports {
            type Plugin = $plugin;
        }
        $crate::v0_1::bindings::__export_ferry_plugin_v0_1!(__FerryPluginExports with_types_in $crate::v0_1::bindings);
    };
}

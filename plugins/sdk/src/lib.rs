//! Write Ferry plugins in Rust.
//!
//! Implement [`Plugin`] for a type, then call [`export!`] once:
//!
//! ```ignore
//! use ferry_plugin_sdk::{export, Context, Error, Plugin, Target, Value};
//!
//! struct Mine;
//! impl Plugin for Mine {
//!     type Config = ();
//!     fn transform(_: &(), cx: &Context, mut object: Value, _: &Target)
//!         -> Result<Option<Value>, Error> {
//!         object["metadata"]["namespace"] = cx.downstream_namespace.clone().into();
//!         Ok(Some(object))
//!     }
//! }
//! export!(Mine);
//! ```
//!
//! Every SDK plugin exports all hook interfaces of `ferry:sync@0.1.0` (the `plugin` world);
//! hooks it does not override answer with the `unsupported` error. Errors travel through the
//! WIT `plugin-error` variant, never through panics: on wasm32 a panic reaches the host as a
//! bare trap without its message.
#![deny(missing_docs)]

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

pub use serde_json::{self, Value, json};

/// Bindings generated from `wit/v0.1.0`. Public only so that [`export!`] can reach them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit/v0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_ferry_plugin",
        default_bindings_module: "ferry_plugin_sdk::bindings",
    });
}

mod error;
pub mod log;

pub use bindings::ferry::sync::types::{
    Downstream as RawDownstream, ObjectContext as Context, Target,
};
pub use error::Error;

use bindings::exports::ferry::sync::{config, placement, status, transform};
use bindings::ferry::sync::types::PluginError;

/// A Ferry plugin. Override the hooks the plugin implements; the others answer
/// `unsupported`.
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

/// Helpers on [`Target`].
pub trait TargetExt {
    /// The value of label `key`, if the target has it.
    fn label(&self, key: &str) -> Option<&str>;
}

impl TargetExt for Target {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

// The host calls `configure` and then one hook on the same fresh instance, so the parsed
// configuration lives in instance memory between the two calls. Wasm guests are
// single-threaded: a thread-local is the whole state.
thread_local! {
    static CONFIG: RefCell<Option<Rc<dyn Any>>> = const { RefCell::new(None) };
}

fn config<P: Plugin>() -> Result<Rc<dyn Any>, Error> {
    if let Some(c) = CONFIG.with(|c| c.borrow().clone()) {
        return Ok(c);
    }
    // A host that skips `configure` still gets the plugin's behaviour for "no config".
    configure::<P>("null")?;
    CONFIG
        .with(|c| c.borrow().clone())
        .ok_or_else(|| Error::failed("configuration was not stored"))
}

fn with_config<P: Plugin, R>(f: impl FnOnce(&P::Config) -> Result<R, Error>) -> Result<R, Error> {
    let any = config::<P>()?;
    let config = any
        .downcast_ref::<P::Config>()
        .ok_or_else(|| Error::failed("stored configuration has another type"))?;
    f(config)
}

fn configure<P: Plugin>(json: &str) -> Result<(), Error> {
    let config: P::Config = serde_json::from_str(json)
        .map_err(|e| Error::invalid_config(format!("cannot read configuration: {e}")))?;
    P::validate(&config)?;
    CONFIG.with(|c| *c.borrow_mut() = Some(Rc::new(config)));
    Ok(())
}

fn parse(object: &str) -> Result<Value, Error> {
    serde_json::from_str(object)
        .map_err(|e| Error::invalid_input(format!("object is not valid JSON: {e}")))
}

fn render(value: &Value) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::failed(format!("cannot write JSON: {e}")))
}

/// Ties a [`Plugin`] to the generated export traits. Implemented by [`export!`].
#[doc(hidden)]
pub trait Adapter {
    /// The plugin being exported.
    type Plugin: Plugin;
}

impl<A: Adapter> config::Guest for A {
    fn configure(config: String) -> Result<(), PluginError> {
        configure::<A::Plugin>(&config).map_err(Into::into)
    }
}

impl<A: Adapter> placement::Guest for A {
    fn place(
        context: Context,
        object: String,
        targets: Vec<Target>,
    ) -> Result<Vec<String>, PluginError> {
        with_config::<A::Plugin, _>(|c| A::Plugin::place(c, &context, &parse(&object)?, &targets))
            .map_err(Into::into)
    }
}

impl<A: Adapter> transform::Guest for A {
    fn transform(
        context: Context,
        object: String,
        target: Target,
    ) -> Result<Option<String>, PluginError> {
        with_config::<A::Plugin, _>(|c| {
            A::Plugin::transform(c, &context, parse(&object)?, &target)?
                .map(|v| render(&v))
                .transpose()
        })
        .map_err(Into::into)
    }
}

impl<A: Adapter> status::Guest for A {
    fn aggregate_status(
        context: Context,
        object: String,
        downstream: Vec<RawDownstream>,
    ) -> Result<Option<String>, PluginError> {
        with_config::<A::Plugin, _>(|c| {
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
        .map_err(Into::into)
    }
}

/// Exports a [`Plugin`] implementation as the component's hooks. Call it once per plugin
/// crate, at the crate root.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __FerryPluginExports;
        impl $crate::Adapter for __FerryPluginExports {
            type Plugin = $plugin;
        }
        $crate::bindings::__export_ferry_plugin!(__FerryPluginExports with_types_in $crate::bindings);
    };
}

/// Configuration of a plugin that takes none: accepts `null` and `{}`, refuses anything else
/// so that an operator's misplaced setting is reported instead of ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConfig;

impl<'de> serde::Deserialize<'de> for NoConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Option::<serde_json::Map<String, Value>>::deserialize(deserializer)?;
        match value {
            Some(map) if !map.is_empty() => Err(serde::de::Error::custom(
                "this plugin takes no configuration",
            )),
            _ => Ok(NoConfig),
        }
    }
}

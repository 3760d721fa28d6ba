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
//! The crate root targets contract `ferry:sync@0.2.0` (`wit/v0.2.0`): the context names the
//! object's [`Workspace`] (path, opted-in labels and annotations), `transform` answers for
//! every placed target at once ([`Plugin::transform_all`], by default built on the per-target
//! [`Plugin::transform`]), and [`Plugin::dependencies`] names the objects an object needs.
//! Plugins written for 0.1.0 build with [`v0_1`] instead.
//!
//! Every SDK plugin exports all hook interfaces of its contract (the `plugin` world); hooks it
//! does not override answer with the `unsupported` error. Errors travel through the WIT
//! `plugin-error` variant, never through panics: on wasm32 a panic reaches the host as a bare
//! trap without its message.
#![deny(missing_docs)]

pub use serde_json::{self, Value, json};

/// Bindings generated from `wit/v0.2.0`. Public only so that [`export!`] and hand-written
/// guests (test fixtures) can reach them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit/v0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_ferry_plugin",
        default_bindings_module: "ferry_plugin_sdk::bindings",
        // Tests and plugins compare and sort contexts and references.
        additional_derives: [PartialEq, Eq, PartialOrd, Ord],
    });
}

mod config;
mod error;
mod lazy;
pub mod log;
mod transform;
pub mod v0_1;

pub use bindings::exports::ferry::sync::dependencies::ObjectRef;
pub use bindings::ferry::sync::types::{
    Downstream as RawDownstream, ObjectContext as Context, Target, Workspace,
};
pub use config::NoConfig;
pub use error::Error;
pub use lazy::LazyObject;
pub use transform::{Outcome, TargetOutcome};

use bindings::exports::ferry::sync::{config as config_hook, dependencies, placement, status};
use bindings::ferry::sync::types::PluginError;
use config::{configure, parse, render, with_config};

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

    /// The easy path of `transform`: the object to apply on one `target`, or `None` to skip
    /// that target. The default [`Plugin::transform_all`] calls it once per target.
    fn transform(
        _config: &Self::Config,
        _context: &Context,
        _object: Value,
        _target: &Target,
    ) -> Result<Option<Value>, Error> {
        Err(Error::unsupported("transform"))
    }

    /// `transform`: one outcome per target in `targets`. An `Err` fails every target at once;
    /// [`Outcome::Failed`] fails one and lets the others through.
    ///
    /// The default calls [`Plugin::transform`] per target with a copy of the object; its
    /// error becomes that target's [`Outcome::Failed`], except `unsupported`, which answers
    /// the whole call. Override it to do per-object work once (checks, the transformation
    /// when it does not depend on the target).
    fn transform_all(
        config: &Self::Config,
        context: &Context,
        object: &Value,
        targets: &[Target],
    ) -> Result<Vec<TargetOutcome>, Error> {
        transform::per_target(targets, |target| {
            Self::transform(config, context, object.clone(), target)
        })
    }

    /// `transform` on the object's JSON text as the host sent it. The default parses the
    /// whole text into a `Value` and calls [`Plugin::transform_all`].
    ///
    /// Override it when the plugin reads or edits only a few top-level members: parse the
    /// text with [`LazyObject`], which builds values only for the members asked for and
    /// writes the others back verbatim, and answer with [`Outcome::ApplyJson`] (e.g.
    /// [`TargetOutcome::apply_json_everywhere`]). For a 4 KB Deployment whose `metadata`
    /// alone changes this saves most of the guest's parse and write (`default-transform`
    /// does it; docs/plugins.md "Boundary cost").
    fn transform_json(
        config: &Self::Config,
        context: &Context,
        object: &str,
        targets: &[Target],
    ) -> Result<Vec<TargetOutcome>, Error> {
        Self::transform_all(config, context, &parse(object)?, targets)
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

    /// `dependencies`: the objects `object` needs on its targets, in its own workspace and
    /// namespace (order and duplicates do not matter; the engine merges them).
    fn dependencies(
        _config: &Self::Config,
        _context: &Context,
        _object: &Value,
    ) -> Result<Vec<ObjectRef>, Error> {
        Err(Error::unsupported("dependencies"))
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

/// Helpers on [`Target`] (of either contract version).
pub trait TargetExt {
    /// The value of label `key`, if the target has it.
    fn label(&self, key: &str) -> Option<&str>;
}

impl TargetExt for Target {
    fn label(&self, key: &str) -> Option<&str> {
        lookup(&self.labels, key)
    }
}

impl Workspace {
    /// The value of the workspace's opted-in label `key`, if it has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        lookup(&self.labels, key)
    }

    /// The value of the workspace's opted-in annotation `key`, if it has it.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        lookup(&self.annotations, key)
    }
}

impl ObjectRef {
    /// A reference the dependent cannot work without.
    pub fn required(group: &str, resource: &str, name: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
            name: name.to_owned(),
            optional: false,
        }
    }

    /// A reference the dependent works without (e.g. a volume marked `optional: true`).
    pub fn optional(group: &str, resource: &str, name: &str) -> Self {
        Self {
            optional: true,
            ..Self::required(group, resource, name)
        }
    }
}

/// The value of `key` in a list of `(key, value)` pairs.
fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn hook<P: Plugin, R>(f: impl FnOnce(&P::Config) -> Result<R, Error>) -> Result<R, PluginError> {
    with_config::<P::Config, R>(P::validate, f).map_err(Into::into)
}

/// Ties a [`Plugin`] to the generated export traits. Implemented by [`export!`].
#[doc(hidden)]
pub trait Adapter {
    /// The plugin being exported.
    type Plugin: Plugin;
}

impl<A: Adapter> config_hook::Guest for A {
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

impl<A: Adapter> bindings::exports::ferry::sync::transform::Guest for A {
    fn transform(
        context: Context,
        object: String,
        targets: Vec<Target>,
    ) -> Result<Vec<transform::RawTargetOutcome>, PluginError> {
        hook::<A::Plugin, _>(|c| {
            let outcomes = A::Plugin::transform_json(c, &context, &object, &targets)?;
            Ok(transform::into_raw(outcomes))
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

impl<A: Adapter> dependencies::Guest for A {
    fn dependencies(context: Context, object: String) -> Result<Vec<ObjectRef>, PluginError> {
        hook::<A::Plugin, _>(|c| A::Plugin::dependencies(c, &context, &parse(&object)?))
    }
}

/// Exports a [`Plugin`] implementation as the component's hooks (contract 0.2.0). Call it
/// once per plugin crate, at the crate root.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_required_unless_made_optional() {
        let required = ObjectRef::required("", "secrets", "tls");
        assert_eq!(
            (required.group.as_str(), required.resource.as_str()),
            ("", "secrets")
        );
        assert_eq!((required.name.as_str(), required.optional), ("tls", false));
        assert!(ObjectRef::optional("", "secrets", "tls").optional);
    }

    #[test]
    fn workspace_labels_and_annotations_are_looked_up_by_key() {
        let workspace = Workspace {
            logical_cluster: "abc".into(),
            path: Some("root:org-eu".into()),
            labels: vec![("region".into(), "eu".into())],
            annotations: vec![("owner".into(), "team-a".into())],
        };
        assert_eq!(workspace.label("region"), Some("eu"));
        assert_eq!(workspace.label("owner"), None);
        assert_eq!(workspace.annotation("owner"), Some("team-a"));
    }
}

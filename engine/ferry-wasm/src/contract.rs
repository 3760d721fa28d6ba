//! What a component must look like to be a Ferry plugin, checked from its type alone
//! (before anything is instantiated), and the marker error of a denied host function.

use std::collections::BTreeSet;

use ferry_core::Hook;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;
use crate::versions::{self, Contract};

/// Marker error returned by every denied host function (the clock waits of `wasi.rs`). Calls are classified by downcasting to
/// this type, never by reading the message.
#[derive(Debug, thiserror::Error)]
#[error("import {import} is not granted to plugins")]
pub(crate) struct CapabilityDenied {
    pub(crate) import: String,
}

/// What a component is, read from its type: the contract version it speaks and the hooks
/// it exports.
pub(crate) struct Shape {
    /// The contract of the version its `ferry:sync` exports and imports name.
    pub(crate) contract: &'static Contract,
    /// The hook interfaces it exports.
    pub(crate) hooks: BTreeSet<Hook>,
}

/// The contract version and hooks of a component, refused when it speaks a version this
/// runtime has no bindings for, several versions at once, or exports no hook at all.
pub(crate) fn shape(
    plugin: &str,
    component: &Component,
    engine: &Engine,
) -> Result<Shape, LoadError> {
    let ty = component.component_type();
    let mut hooks = BTreeSet::new();
    let mut contract: Option<(&'static Contract, String)> = None;
    // Imports of our own package count too: a plugin built against a newer log interface
    // would otherwise fail at link time with a less helpful message.
    let exports = ty.exports(engine).map(|(name, _)| (name, true));
    let imports = ty.imports(engine).map(|(name, _)| (name, false));
    for (name, exported) in exports.chain(imports) {
        let Some((interface, version)) = ferry_interface(name) else {
            continue;
        };
        let found =
            versions::contract(version).ok_or_else(|| LoadError::UnsupportedWitVersion {
                plugin: plugin.to_owned(),
                found: name.to_owned(),
                supported: supported(),
            })?;
        match &contract {
            Some((first, first_name)) if first.version != found.version => {
                return Err(LoadError::MixedWitVersions {
                    plugin: plugin.to_owned(),
                    first: first_name.clone(),
                    second: name.to_owned(),
                });
            }
            Some(_) => {}
            None => contract = Some((found, name.to_owned())),
        }
        if !exported {
            continue;
        }
        if let Some(hook) = Hook::ALL
            .into_iter()
            .find(|h| h.wit_interface() == interface)
        {
            hooks.insert(hook);
        }
    }
    let not_a_plugin = || LoadError::NotAPlugin {
        plugin: plugin.to_owned(),
    };
    if !hooks.iter().any(|h| *h != Hook::Configure) {
        return Err(not_a_plugin());
    }
    let (contract, _) = contract.ok_or_else(not_a_plugin)?;
    Ok(Shape { contract, hooks })
}

/// The supported versions, for error messages: `0.1.0, 0.2.0`.
fn supported() -> String {
    crate::SUPPORTED_WIT_VERSIONS.join(", ")
}

/// Splits `ferry:sync/<interface>@<version>` into interface and version.
pub(crate) fn ferry_interface(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(versions::PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_split_into_interface_and_version() {
        assert_eq!(
            ferry_interface("ferry:sync/transform@0.1.0"),
            Some(("transform", "0.1.0"))
        );
        assert_eq!(ferry_interface("ferry:sync/log"), Some(("log", "")));
        assert_eq!(ferry_interface("wasi:random/random@0.2.6"), None);
        assert_eq!(ferry_interface("ferry:syncx/log@0.1.0"), None);
    }
}

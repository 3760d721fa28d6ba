//! What a component must look like to be a Ferry plugin, checked from its type alone
//! (before anything is instantiated), and the deny-all stubs for imports the host does not
//! grant.

use std::collections::BTreeSet;

use ferry_core::Hook;
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceType};

use crate::bindings::v0_1_0;
use crate::error::LoadError;

/// Marker error returned by every stubbed import. Calls are classified by downcasting to
/// this type, never by reading the message.
#[derive(Debug, thiserror::Error)]
#[error("import {import} is not granted to plugins")]
pub(crate) struct CapabilityDenied {
    pub(crate) import: String,
}

/// The hooks a component exports, after its contract version was checked.
pub(crate) fn exported_hooks(
    plugin: &str,
    component: &Component,
    engine: &Engine,
) -> Result<BTreeSet<Hook>, LoadError> {
    let ty = component.component_type();
    let mut hooks = BTreeSet::new();
    for (name, _) in ty.exports(engine) {
        let Some((interface, version)) = ferry_interface(name) else {
            continue;
        };
        check_version(plugin, name, version)?;
        if let Some(hook) = Hook::ALL
            .into_iter()
            .find(|h| h.wit_interface() == interface)
        {
            hooks.insert(hook);
        }
    }
    // Imports of our own package must match too: a plugin built against a newer log
    // interface would otherwise fail at link time with a less helpful message.
    for (name, _) in ty.imports(engine) {
        if let Some((_, version)) = ferry_interface(name) {
            check_version(plugin, name, version)?;
        }
    }
    if !hooks
        .iter()
        .any(|h| matches!(h, Hook::Place | Hook::Transform | Hook::AggregateStatus))
    {
        return Err(LoadError::NotAPlugin {
            plugin: plugin.to_owned(),
        });
    }
    Ok(hooks)
}

/// Splits `ferry:sync/<interface>@<version>` into interface and version.
fn ferry_interface(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(v0_1_0::PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

fn check_version(plugin: &str, name: &str, version: &str) -> Result<(), LoadError> {
    if version == v0_1_0::VERSION {
        Ok(())
    } else {
        Err(LoadError::UnsupportedWitVersion {
            plugin: plugin.to_owned(),
            found: name.to_owned(),
            supported: v0_1_0::VERSION.to_owned(),
        })
    }
}

/// Defines every import of `component` that the linker does not already provide as a stub
/// that fails with [`CapabilityDenied`]. This is how a component built for wasm32-wasip2
/// (which imports WASI interfaces for its standard library) still loads: the imports exist,
/// but using one fails the call. Resources get an opaque host type that no stub ever hands
/// out.
pub(crate) fn deny_other_imports<T: 'static>(
    linker: &mut Linker<T>,
    component: &Component,
    engine: &Engine,
) -> wasmtime::Result<()> {
    for (name, item) in component.component_type().imports(engine) {
        if ferry_interface(name).is_some() {
            continue;
        }
        match item.ty {
            ComponentItem::ComponentInstance(instance) => {
                let mut scope = linker.instance(name)?;
                for (export, item) in instance.exports(engine) {
                    match item.ty {
                        ComponentItem::ComponentFunc(_) => {
                            let import = format!("{name}#{export}");
                            scope.func_new(export, move |_, _, _, _| {
                                Err(wasmtime::Error::new(CapabilityDenied {
                                    import: import.clone(),
                                }))
                            })?;
                        }
                        ComponentItem::Resource(_) => {
                            scope.resource(
                                export,
                                ResourceType::host::<Denied>(),
                                |_, _| Ok(()),
                            )?;
                        }
                        // Types, modules and nested instances need no definition to link.
                        _ => {}
                    }
                }
            }
            ComponentItem::ComponentFunc(_) => {
                let import = name.to_owned();
                linker.root().func_new(name, move |_, _, _, _| {
                    Err(wasmtime::Error::new(CapabilityDenied {
                        import: import.clone(),
                    }))
                })?;
            }
            ComponentItem::Resource(_) => {
                linker
                    .root()
                    .resource(name, ResourceType::host::<Denied>(), |_, _| Ok(()))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Host type behind every denied resource; never instantiated.
struct Denied;

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

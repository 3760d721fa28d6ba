//! The version seam: one module per `ferry:sync` contract version, each owning its
//! `bindgen!` and the conversions between its WIT types and ferry-core's host types, behind
//! one version-neutral [`Guest`] the rest of the runtime calls.
//!
//! The router ([`contract`]) picks the module from the version the component declares in
//! its export names (read before instantiation by `crate::contract`). Supporting a new
//! version is one new file here, implementing [`Guest`] for its bindings, plus one line in
//! [`CONTRACTS`]. An older version's module adapts its hooks to the newest host API (e.g.
//! v0.1.0 answers `transform` per target; the plugin calls it once per target).

pub(crate) mod v0_1_0;
pub(crate) mod v0_2_0;

use ferry_core::{Downstream, Hook, ObjectContext, ObjectRef, PluginError, Target};
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre, Linker};

use crate::plugin::CallState;

/// The WIT package every version belongs to.
pub(crate) const PACKAGE: &str = "ferry:sync";

/// Every contract version the runtime can load: how to link it and how to find its exports.
pub(crate) const CONTRACTS: &[Contract] = &[v0_1_0::CONTRACT, v0_2_0::CONTRACT];

/// One supported contract version.
pub(crate) struct Contract {
    /// The version, e.g. `0.1.0`.
    pub(crate) version: &'static str,
    /// Adds the host's imports of this version (logging) to a linker.
    pub(crate) link: fn(&mut Linker<CallState>) -> wasmtime::Result<()>,
    /// Resolves the exports of a linked component once, at load time.
    pub(crate) load: fn(&InstancePre<CallState>) -> Box<dyn Guest>,
}

/// The contract of `version`, if supported.
pub(crate) fn contract(version: &str) -> Option<&'static Contract> {
    CONTRACTS.iter().find(|c| c.version == version)
}

/// A hook's answer: the outer error is the host's (trap, deadline, denied import...), the
/// inner one the plugin's own (the WIT `plugin-error`).
pub(crate) type HookResult<T> = wasmtime::Result<Result<T, PluginError>>;

/// What a guest answered for one target, before validation.
#[derive(Debug)]
pub(crate) enum RawOutcome {
    /// Apply this JSON text.
    Apply(String),
    /// Leave the target without a copy.
    Skip,
    /// This target cannot be served.
    Failed(PluginError),
}

/// The exports of one loaded component, for the contract version it speaks. Every call
/// runs on an instance the caller created (and configured, unless the call is `configure`).
/// The caller checks [`Guest::exports`] first: calling a hook that is not exported is an
/// error of the host, not of the plugin.
pub(crate) trait Guest: Send + Sync {
    /// Whether the component exports `hook` with the type this version defines.
    fn exports(&self, hook: Hook) -> bool;

    /// Whether `transform` answers every target in one call (v0.2.0 and later). Otherwise
    /// the plugin calls it once per target, each on a fresh instance, as v0.1.0 promises.
    fn transforms_all_targets_at_once(&self) -> bool;

    /// `configure`.
    fn configure(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        config: &str,
    ) -> HookResult<()>;

    /// `place`.
    fn place(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        context: &ObjectContext,
        object: &str,
        targets: &[Target],
    ) -> HookResult<Vec<String>>;

    /// `transform`, answered per target name. A version that transforms one target per call
    /// calls the hook once per target on the same instance (for one target per instance,
    /// pass one target).
    fn transform(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        context: &ObjectContext,
        object: &str,
        targets: &[Target],
    ) -> HookResult<Vec<(String, RawOutcome)>>;

    /// `aggregate-status`.
    fn aggregate_status(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        context: &ObjectContext,
        object: &str,
        downstream: &[Downstream],
    ) -> HookResult<Option<String>>;

    /// `dependencies`, unvalidated.
    fn dependencies(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        context: &ObjectContext,
        object: &str,
    ) -> HookResult<Vec<ObjectRef>>;
}

/// The error of calling a hook the component does not export (callers check first).
pub(crate) fn not_exported(hook: Hook) -> wasmtime::Error {
    wasmtime::Error::msg(format!("hook {hook} is not exported"))
}

/// Labels and annotations as WIT lists: sorted by key, as the contract promises.
pub(crate) fn pairs(map: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_list_of_versions_is_the_router_s() {
        let routed: Vec<&str> = CONTRACTS.iter().map(|c| c.version).collect();
        assert_eq!(routed, crate::SUPPORTED_WIT_VERSIONS);
    }
}

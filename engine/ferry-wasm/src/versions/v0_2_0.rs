//! `ferry:sync@0.2.0` (`wit/v0.2.0`): its bindings and the conversions to the host types.
//! New against v0.1.0: the workspace record in the context, `transform` answering every
//! target in one call, and the `dependencies` hook.

use ferry_core::{
    Downstream, Hook, ObjectContext, ObjectRef, PluginError, PluginErrorKind, Target,
};
use wasmtime::Store;
use wasmtime::component::{HasSelf, Instance, InstancePre, Linker};

use super::{Contract, Guest, HookResult, RawOutcome, not_exported, pairs};
use crate::log::Level;
use crate::plugin::CallState;

#[allow(missing_docs)]
mod wit {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../../wit/v0.2.0",
    });
}

use wit::exports::ferry::sync::{config, dependencies, placement, status, transform};
use wit::ferry::sync::{log, types};

/// The version these bindings speak.
pub(crate) const VERSION: &str = "0.2.0";

pub(crate) const CONTRACT: Contract = Contract {
    version: VERSION,
    link: |linker: &mut Linker<CallState>| {
        log::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)
    },
    load: |pre| Box::new(Exports::new(pre)),
};

/// Export lookups resolved once at load time, so a call does no string lookups.
struct Exports {
    config: Option<config::GuestIndices>,
    placement: Option<placement::GuestIndices>,
    transform: Option<transform::GuestIndices>,
    status: Option<status::GuestIndices>,
    dependencies: Option<dependencies::GuestIndices>,
}

impl Exports {
    fn new(pre: &InstancePre<CallState>) -> Self {
        Self {
            config: config::GuestIndices::new(pre).ok(),
            placement: placement::GuestIndices::new(pre).ok(),
            transform: transform::GuestIndices::new(pre).ok(),
            status: status::GuestIndices::new(pre).ok(),
            dependencies: dependencies::GuestIndices::new(pre).ok(),
        }
    }
}

impl Guest for Exports {
    fn exports(&self, hook: Hook) -> bool {
        match hook {
            Hook::Configure => self.config.is_some(),
            Hook::Place => self.placement.is_some(),
            Hook::Transform => self.transform.is_some(),
            Hook::AggregateStatus => self.status.is_some(),
            Hook::Dependencies => self.dependencies.is_some(),
        }
    }

    fn transforms_all_targets_at_once(&self) -> bool {
        true
    }

    fn configure(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        config: &str,
    ) -> HookResult<()> {
        let indices = self
            .config
            .as_ref()
            .ok_or_else(|| not_exported(Hook::Configure))?;
        let result = indices
            .load(&mut *store, instance)?
            .call_configure(&mut *store, config)?;
        Ok(result.map_err(from_wit_error))
    }

    fn place(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        context: &ObjectContext,
        object: &str,
        targets: &[Target],
    ) -> HookResult<Vec<String>> {
        let indices = self
            .placement
            .as_ref()
            .ok_or_else(|| not_exported(Hook::Place))?;
        let targets: Vec<_> = targets.iter().map(to_wit_target).collect();
        let result = indices.load(&mut *store, instance)?.call_place(
            &mut *store,
            &to_wit_context(context),
            object,
            &targets,
        )?;
        Ok(result.map_err(from_wit_error))
    }

    fn transform(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        context: &ObjectContext,
        object: &str,
        targets: &[Target],
    ) -> HookResult<Vec<(String, RawOutcome)>> {
        let indices = self
            .transform
            .as_ref()
            .ok_or_else(|| not_exported(Hook::Transform))?;
        let targets: Vec<_> = targets.iter().map(to_wit_target).collect();
        let result = indices.load(&mut *store, instance)?.call_transform(
            &mut *store,
            &to_wit_context(context),
            object,
            &targets,
        )?;
        Ok(result.map_err(from_wit_error).map(|outcomes| {
            outcomes
                .into_iter()
                .map(|o| {
                    let outcome = match o.outcome {
                        transform::Outcome::Apply(json) => RawOutcome::Apply(json),
                        transform::Outcome::Skip => RawOutcome::Skip,
                        transform::Outcome::Failed(e) => RawOutcome::Failed(from_wit_error(e)),
                    };
                    (o.target, outcome)
                })
                .collect()
        }))
    }

    fn aggregate_status(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        context: &ObjectContext,
        object: &str,
        downstream: &[Downstream],
    ) -> HookResult<Option<String>> {
        let indices = self
            .status
            .as_ref()
            .ok_or_else(|| not_exported(Hook::AggregateStatus))?;
        let downstream: Vec<_> = downstream
            .iter()
            .map(|d| types::Downstream {
                target: to_wit_target(&d.target),
                object: d.object.as_ref().map(serde_json::Value::to_string),
            })
            .collect();
        let result = indices.load(&mut *store, instance)?.call_aggregate_status(
            &mut *store,
            &to_wit_context(context),
            object,
            &downstream,
        )?;
        Ok(result.map_err(from_wit_error))
    }

    fn dependencies(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        context: &ObjectContext,
        object: &str,
    ) -> HookResult<Vec<ObjectRef>> {
        let indices = self
            .dependencies
            .as_ref()
            .ok_or_else(|| not_exported(Hook::Dependencies))?;
        let result = indices.load(&mut *store, instance)?.call_dependencies(
            &mut *store,
            &to_wit_context(context),
            object,
        )?;
        Ok(result.map_err(from_wit_error).map(|refs| {
            refs.into_iter()
                .map(|r| ObjectRef {
                    group: r.group,
                    resource: r.resource,
                    name: r.name,
                    optional: r.optional,
                })
                .collect()
        }))
    }
}

impl log::Host for CallState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.log.emit(level, &message, &fields);
    }
}

fn to_wit_context(c: &ObjectContext) -> types::ObjectContext {
    types::ObjectContext {
        workspace: types::Workspace {
            logical_cluster: c.logical_cluster.clone(),
            path: c.workspace_path.clone(),
            labels: pairs(&c.workspace_labels),
            annotations: pairs(&c.workspace_annotations),
        },
        namespace: c.namespace.clone(),
        downstream_namespace: c.downstream_namespace.clone(),
    }
}

fn to_wit_target(t: &Target) -> types::Target {
    types::Target {
        name: t.name.clone(),
        labels: pairs(&t.labels),
    }
}

fn from_wit_error(e: types::PluginError) -> PluginError {
    let (kind, message) = match e {
        types::PluginError::InvalidConfig(m) => (PluginErrorKind::InvalidConfig, m),
        types::PluginError::InvalidInput(m) => (PluginErrorKind::InvalidInput, m),
        types::PluginError::Unsupported(m) => (PluginErrorKind::Unsupported, m),
        types::PluginError::Failed(m) => (PluginErrorKind::Failed, m),
    };
    PluginError { kind, message }
}

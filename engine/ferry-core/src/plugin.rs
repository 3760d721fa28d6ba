//! The types a plugin hook sees, in host form. They mirror the records of the WIT contract
//! (`wit/v0.1.0`, package `ferry:sync@0.1.0`) but carry no Wasm or WIT dependency, so the
//! engine, the CLI and the golden-case harness can build and compare them freely.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A target cluster as the operator configured it: the only facts a placement plugin may
/// use to choose it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Unique name in Ferry's configuration, e.g. `cluster-1`.
    pub name: String,
    /// Labels the operator gave the target, e.g. `region: eu`. Sorted, so plugins see a
    /// deterministic order.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Target {
    /// A target without labels.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
        }
    }

    /// Adds one label (consuming setter, for tests and configuration code).
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// Where an upstream object comes from and where its copies go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectContext {
    /// kcp logical cluster name of the object's workspace (the `kcp.io/cluster` annotation).
    pub logical_cluster: String,
    /// Workspace path such as `root:team-a`, when the engine knows it (read from the
    /// workspace's `LogicalCluster` through the export's permission claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_path: Option<String>,
    /// Labels of the workspace's `LogicalCluster` whose keys the operator opted into
    /// (contract v0.2.0 and later; v0.1.0 plugins never see them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workspace_labels: BTreeMap<String, String>,
    /// Annotations of the workspace's `LogicalCluster` whose keys the operator opted into
    /// (contract v0.2.0 and later).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workspace_annotations: BTreeMap<String, String>,
    /// Namespace of the upstream object.
    pub namespace: String,
    /// Namespace the object maps to on every target. Transform output must land there.
    pub downstream_namespace: String,
}

/// One target's copy of the upstream object, the input of status aggregation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Downstream {
    /// The target the copy lives on.
    pub target: Target,
    /// The live object, or `None` when it does not exist (yet) or could not be read.
    pub object: Option<serde_json::Value>,
}

/// A reference from one upstream object to another it needs on its targets (contract v0.2.0
/// `dependencies` hook): same workspace and namespace as the referencing object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    /// API group, empty for the core group.
    #[serde(default)]
    pub group: String,
    /// Plural resource name, e.g. `configmaps`.
    pub resource: String,
    /// Object name.
    pub name: String,
    /// The dependent works without it: a missing optional dependency is not reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// The hooks of the contract. `Configure` is called before every other hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// `configure`: validate the plugin's configuration.
    Configure,
    /// `place`: choose targets.
    Place,
    /// `transform`: produce the object for one target.
    Transform,
    /// `aggregate-status`: fold downstream status into the upstream status.
    AggregateStatus,
    /// `dependencies` (contract v0.2.0): the objects an object needs on its targets.
    Dependencies,
}

impl Hook {
    /// The hook's name as written in the WIT contract.
    #[must_use]
    pub fn wit_name(self) -> &'static str {
        match self {
            Hook::Configure => "configure",
            Hook::Place => "place",
            Hook::Transform => "transform",
            Hook::AggregateStatus => "aggregate-status",
            Hook::Dependencies => "dependencies",
        }
    }

    /// The WIT interface that exports the hook (without package and version).
    #[must_use]
    pub fn wit_interface(self) -> &'static str {
        match self {
            Hook::Configure => "config",
            Hook::Place => "placement",
            Hook::Transform => "transform",
            Hook::AggregateStatus => "status",
            Hook::Dependencies => "dependencies",
        }
    }

    /// Every hook, in call order.
    pub const ALL: [Hook; 5] = [
        Hook::Configure,
        Hook::Dependencies,
        Hook::Place,
        Hook::Transform,
        Hook::AggregateStatus,
    ];
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wit_name())
    }
}

/// Which case of the WIT `plugin-error` variant a plugin reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginErrorKind {
    /// The plugin configuration is unusable.
    InvalidConfig,
    /// The input object is not something the plugin can handle.
    InvalidInput,
    /// The plugin exports the hook but does not implement it.
    Unsupported,
    /// Anything else.
    Failed,
}

impl fmt::Display for PluginErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginErrorKind::InvalidConfig => "invalid config",
            PluginErrorKind::InvalidInput => "invalid input",
            PluginErrorKind::Unsupported => "unsupported",
            PluginErrorKind::Failed => "failed",
        })
    }
}

/// An error a plugin reported through the WIT error variant (as opposed to a trap).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind}: {message}")]
pub struct PluginError {
    /// Which case of the variant.
    pub kind: PluginErrorKind,
    /// The plugin's own explanation, shown to the user as is.
    pub message: String,
}

/// A stable, serializable name for each kind of plugin call failure: metric labels, Event
/// reasons, the engine's retry decision and the `error.yaml` of golden cases use it. It lives
/// here, not in the runtime, so the engine can act on it without depending on wasmtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallErrorKind {
    /// The runtime's `CallError::DeadlineExceeded`.
    DeadlineExceeded,
    /// The runtime's `CallError::MemoryExhausted`.
    MemoryExhausted,
    /// The runtime's `CallError::Trap`.
    Trap,
    /// The runtime's `CallError::CapabilityDenied`.
    CapabilityDenied,
    /// The runtime's `CallError::InvalidOutput`.
    InvalidOutput,
    /// The runtime's `CallError::Plugin` with `invalid-config`.
    InvalidConfig,
    /// The runtime's `CallError::Plugin` with `invalid-input`.
    InvalidInput,
    /// The runtime's `CallError::Plugin` with `unsupported`.
    Unsupported,
    /// The runtime's `CallError::Plugin` with `failed`.
    Failed,
    /// The runtime's `CallError::HookNotExported`.
    HookNotExported,
    /// The runtime's `CallError::Busy`.
    Busy,
    /// The runtime's `CallError::Host`.
    Host,
}

impl CallErrorKind {
    /// Every kind.
    pub const ALL: [CallErrorKind; 12] = [
        CallErrorKind::DeadlineExceeded,
        CallErrorKind::MemoryExhausted,
        CallErrorKind::Trap,
        CallErrorKind::CapabilityDenied,
        CallErrorKind::InvalidOutput,
        CallErrorKind::InvalidConfig,
        CallErrorKind::InvalidInput,
        CallErrorKind::Unsupported,
        CallErrorKind::Failed,
        CallErrorKind::HookNotExported,
        CallErrorKind::Busy,
        CallErrorKind::Host,
    ];

    /// The kebab-case name, as serialized: `deadline-exceeded`, `invalid-output`...
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CallErrorKind::DeadlineExceeded => "deadline-exceeded",
            CallErrorKind::MemoryExhausted => "memory-exhausted",
            CallErrorKind::Trap => "trap",
            CallErrorKind::CapabilityDenied => "capability-denied",
            CallErrorKind::InvalidOutput => "invalid-output",
            CallErrorKind::InvalidConfig => "invalid-config",
            CallErrorKind::InvalidInput => "invalid-input",
            CallErrorKind::Unsupported => "unsupported",
            CallErrorKind::Failed => "failed",
            CallErrorKind::HookNotExported => "hook-not-exported",
            CallErrorKind::Busy => "busy",
            CallErrorKind::Host => "host",
        }
    }
}

impl std::fmt::Display for CallErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_error_kind_prints_as_it_serializes() {
        for kind in CallErrorKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::Value::from(kind.as_str()))
            );
        }
    }
}

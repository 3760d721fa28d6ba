//! Typed errors of the sync engine.

use crate::plugins::HookError;

/// Why starting the engine or reconciling an object failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A Kubernetes or kcp API call failed. Shown as kubectl would show it (never a debug
    /// dump): what Ferry was doing, then the server's reason and message.
    #[error("{action}: {}", crate::explain::api_error(.source))]
    Api {
        /// What Ferry was doing, e.g. `applying apps/v1 Deployment demo/web on cluster-2`.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The configured resource is not part of the APIExport.
    #[error(
        "resource {resource} is not exported by APIExport {export} (exported: {exported}; \
         claimed: {claimed})"
    )]
    NotExported {
        /// `deployments.apps` style name.
        resource: String,
        /// The export.
        export: String,
        /// What the export does contain.
        exported: String,
        /// What the export claims (permission claims).
        claimed: String,
    },
    /// The APIExport or one of its schemas is not what Ferry expects.
    #[error("{0}")]
    Export(String),
    /// A plugin failed; the object is not synced until the plugin, its configuration or the
    /// object changes.
    #[error(transparent)]
    Plugin(#[from] HookError),
    /// A downstream name is taken by an object Ferry does not own, or owns for another
    /// upstream object. Ferry never overwrites it (tenant isolation). The message never names
    /// whose it is: it is shown in the tenant's workspace, and the owner may be another tenant.
    #[error("{kind} {namespace}/{name} on {target} {reason}; Ferry will not overwrite it")]
    Collision {
        /// Target cluster.
        target: String,
        /// `Namespace`, `Deployment`, …
        kind: String,
        /// Downstream namespace.
        namespace: String,
        /// Downstream name.
        name: String,
        /// Whose it is.
        reason: String,
    },
    /// Ferry cannot decide yet (e.g. a target's copies have not been listed); retried.
    #[error("{0}")]
    NotReady(String),
    /// A bug or an impossible state inside Ferry (serialization, a panicked plugin thread).
    #[error("internal error: {0}")]
    Internal(String),
    /// A target was found unreachable while this work waited for it; retried once it answers.
    #[error("target {target} does not answer; Ferry retries when it does")]
    Unreachable {
        /// Target cluster.
        target: String,
    },
    /// A target did not answer in time.
    #[error("target {target} did not answer within {after:?}")]
    Timeout {
        /// Target cluster.
        target: String,
        /// The limit.
        after: std::time::Duration,
    },
    /// The leader Lease was not renewed within the renew deadline, or another process took
    /// it: this process stopped writing and exits, to rejoin as a standby when restarted.
    #[error(
        "lost the leader Lease: stopped writing; exiting so that a restart rejoins as a standby"
    )]
    LeadershipLost,
    /// Leader election cannot start as configured.
    #[error("leader election: {0}")]
    LeaderElection(String),
    /// Several steps failed; each is listed.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<SyncError>),
}

impl SyncError {
    /// The Event reason shown on the upstream object.
    pub fn reason(&self) -> &'static str {
        match self {
            SyncError::Api { .. } | SyncError::Timeout { .. } | SyncError::Unreachable { .. } => {
                "SyncFailed"
            }
            SyncError::NotExported { .. } | SyncError::Export(_) => "ExportInvalid",
            SyncError::NotReady(_) => "Waiting",
            SyncError::Internal(_) | SyncError::LeadershipLost | SyncError::LeaderElection(_) => {
                "InternalError"
            }
            SyncError::Plugin(_) => "PluginFailed",
            SyncError::Collision { .. } => "NameCollision",
            SyncError::Several(errors) => errors.first().map_or("SyncFailed", SyncError::reason),
        }
    }

    /// Label value for the error metric.
    pub fn metric_kind(&self) -> String {
        match self {
            SyncError::Plugin(hook) => format!("plugin-{}", hook.kind),
            other => other.reason().to_string(),
        }
    }

    /// Wraps a client error with what Ferry was doing.
    pub fn api(action: impl Into<String>, source: kube::Error) -> Self {
        SyncError::Api {
            action: action.into(),
            source,
        }
    }
}

/// Whether a client error happened below HTTP (connection refused or reset, TLS, a
/// timeout): the server did not answer at all, as opposed to answering with an error.
pub fn is_transport(err: &kube::Error) -> bool {
    matches!(err, kube::Error::HyperError(_) | kube::Error::Service(_))
}

/// Whether a client error is "not found".
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// Whether a client error is "forbidden" (403).
pub fn is_forbidden(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 403)
}

/// Whether a client error is a conflict or failed precondition (409).
pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

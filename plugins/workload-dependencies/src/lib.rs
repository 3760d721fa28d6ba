//! `workload-dependencies`: the `dependencies` hook for workloads. A Deployment, StatefulSet,
//! DaemonSet, ReplicaSet, Job, CronJob or bare Pod needs, on every target it is placed on,
//! the ConfigMaps and Secrets its pods mount or read into their environment, its image pull
//! Secrets and its ServiceAccount. Other kinds need nothing.
//!
//! Configuration (all optional, every kind of reference on by default):
//! ```yaml
//! configMaps: true         # volumes, projected volumes, envFrom, env[].valueFrom
//! secrets: true            # the same for Secrets
//! imagePullSecrets: true   # spec.imagePullSecrets (as secrets)
//! serviceAccounts: true    # spec.serviceAccountName, never `default`
//! ```
//! A reference marked `optional: true` is reported as optional; an object named several
//! times is optional only if every mention is. Image pull Secrets and the ServiceAccount are
//! always required. The `default` ServiceAccount is never reported: every namespace of every
//! target has its own, made by that cluster's controllers.

use ferry_plugin_sdk::{Context, Error, ObjectRef, Plugin, Value, export};
use serde::Deserialize;

mod pod_spec;
mod refs;

#[cfg(test)]
mod cases;

/// The plugin configuration: which kinds of references to report.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(default = "on")]
    config_maps: bool,
    #[serde(default = "on")]
    secrets: bool,
    #[serde(default = "on")]
    image_pull_secrets: bool,
    #[serde(default = "on")]
    service_accounts: bool,
}

fn on() -> bool {
    true
}

impl Config {
    fn kinds(&self) -> refs::Kinds {
        refs::Kinds {
            config_maps: self.config_maps,
            secrets: self.secrets,
            image_pull_secrets: self.image_pull_secrets,
            service_accounts: self.service_accounts,
        }
    }
}

struct WorkloadDependencies;

impl Plugin for WorkloadDependencies {
    type Config = Option<Config>;

    fn dependencies(
        config: &Self::Config,
        _context: &Context,
        object: &Value,
    ) -> Result<Vec<ObjectRef>, Error> {
        let kinds = config
            .as_ref()
            .map_or_else(refs::Kinds::default, Config::kinds);
        Ok(match pod_spec::of(object).map_err(Error::invalid_input)? {
            Some(pod) => refs::of(pod, kinds),
            None => Vec::new(),
        })
    }
}

export!(WorkloadDependencies);

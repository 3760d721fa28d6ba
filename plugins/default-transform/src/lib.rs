//! `default-transform`: the object Ferry applies on a target is the upstream object minus
//! everything that only means something in kcp or on the server that stored it, moved into
//! the mapped namespace and labelled as Ferry's.
//!
//! It refuses a Service with `spec.externalIPs` (CVE-2020-8554: a tenant could capture
//! traffic for any address on a cluster shared with other tenants) unless configured to allow
//! them.
//!
//! Configuration (optional):
//! ```yaml
//! allowExternalIPs: true   # default false
//! ```

use ferry_plugin_sdk::{Context, Error, Plugin, Target, TargetOutcome, Value, export};
use serde::Deserialize;

mod logic;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    /// Let Services keep `spec.externalIPs`.
    #[serde(default, rename = "allowExternalIPs")]
    allow_external_ips: bool,
}

struct DefaultTransform;

impl Plugin for DefaultTransform {
    type Config = Option<Config>;

    /// The copy is the same on every target: check and transform once, then share it with
    /// every target (written as JSON once, see docs/plugins.md "Boundary cost"). A refused
    /// object fails every target at once (it is the object that is wrong, not a target).
    fn transform_all(
        config: &Self::Config,
        context: &Context,
        object: &Value,
        targets: &[Target],
    ) -> Result<Vec<TargetOutcome>, Error> {
        let allow_external_ips = config.as_ref().is_some_and(|c| c.allow_external_ips);
        logic::check_external_ips(object, allow_external_ips).map_err(Error::invalid_input)?;
        let origin = logic::Origin {
            logical_cluster: &context.workspace.logical_cluster,
            workspace_path: context.workspace.path.as_deref(),
            downstream_namespace: &context.downstream_namespace,
        };
        let copy = logic::transform(object.clone(), &origin).map_err(Error::invalid_input)?;
        Ok(TargetOutcome::apply_everywhere(targets, copy))
    }
}

export!(DefaultTransform);

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

use ferry_plugin_sdk::{Context, Error, Plugin, Target, Value, export};
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

    fn transform(
        config: &Self::Config,
        context: &Context,
        object: Value,
        _target: &Target,
    ) -> Result<Option<Value>, Error> {
        let allow_external_ips = config.as_ref().is_some_and(|c| c.allow_external_ips);
        logic::check_external_ips(&object, allow_external_ips).map_err(Error::invalid_input)?;
        let origin = logic::Origin {
            logical_cluster: &context.logical_cluster,
            workspace_path: context.workspace_path.as_deref(),
            downstream_namespace: &context.downstream_namespace,
        };
        logic::transform(object, &origin)
            .map(Some)
            .map_err(Error::invalid_input)
    }
}

export!(DefaultTransform);

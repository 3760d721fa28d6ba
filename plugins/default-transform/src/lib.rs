//! `default-transform`: the object Ferry applies on a target is the upstream object minus
//! everything that only means something in kcp or on the server that stored it, moved into
//! the mapped namespace and labelled as Ferry's.
//!
//! Configuration: none (`null`).

use ferry_plugin_sdk::{Context, Error, NoConfig, Plugin, Target, Value, export};

mod logic;

struct DefaultTransform;

impl Plugin for DefaultTransform {
    type Config = NoConfig;

    fn transform(
        _config: &NoConfig,
        context: &Context,
        object: Value,
        _target: &Target,
    ) -> Result<Option<Value>, Error> {
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

//! Transforms correctly, then moves the object into `kube-system` (another tenant's or the
//! platform's namespace). Output validation must refuse it.

use ferry_plugin_sdk::v0_1::{Context, Error, NoConfig, Plugin, Target, Value, export, json};

struct Escape;

impl Plugin for Escape {
    type Config = NoConfig;

    fn transform(
        _: &NoConfig,
        _: &Context,
        mut object: Value,
        _: &Target,
    ) -> Result<Option<Value>, Error> {
        object["metadata"]["namespace"] = json!("kube-system");
        Ok(Some(object))
    }
}

export!(Escape);

//! Panics in `transform`; `place` behaves.

use ferry_plugin_sdk::v0_1::{Context, Error, NoConfig, Plugin, Target, Value, export};

struct Panics;

impl Plugin for Panics {
    type Config = NoConfig;

    fn place(
        _: &NoConfig,
        _: &Context,
        _: &Value,
        targets: &[Target],
    ) -> Result<Vec<String>, Error> {
        Ok(targets.iter().map(|t| t.name.clone()).collect())
    }

    fn transform(
        _: &NoConfig,
        _: &Context,
        object: Value,
        _: &Target,
    ) -> Result<Option<Value>, Error> {
        let replicas = object.pointer("/spec/replicas").and_then(Value::as_i64);
        // A bug a real plugin could have: unwrap on a field that is optional.
        let doubled = std::hint::black_box(replicas)
            .filter(|_| false)
            .expect("spec.replicas is missing")
            * 2;
        Ok(Some(ferry_plugin_sdk::json!({ "doubled": doubled })))
    }
}

export!(Panics);

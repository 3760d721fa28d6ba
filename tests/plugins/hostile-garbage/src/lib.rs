//! Returns output that breaks the contract: a target nobody configured, text that is not
//! JSON, a status that is not an object.

use ferry_plugin_sdk::v0_1::bindings::exports::ferry::sync::{
    config, placement, status, transform,
};
use ferry_plugin_sdk::v0_1::bindings::ferry::sync::types::{
    Downstream, ObjectContext, PluginError, Target,
};

// This fixture skips the SDK's typed layer on purpose: the SDK would never produce invalid
// JSON, and the host must not rely on plugins using the SDK.
struct Garbage;

impl config::Guest for Garbage {
    fn configure(_: String) -> Result<(), PluginError> {
        Ok(())
    }
}

impl placement::Guest for Garbage {
    fn place(_: ObjectContext, _: String, _: Vec<Target>) -> Result<Vec<String>, PluginError> {
        Ok(vec!["no-such-cluster".into()])
    }
}

impl transform::Guest for Garbage {
    fn transform(_: ObjectContext, _: String, _: Target) -> Result<Option<String>, PluginError> {
        Ok(Some("{\"apiVersion\": \"apps/v1\", \"kind\": ".into()))
    }
}

impl status::Guest for Garbage {
    fn aggregate_status(
        _: ObjectContext,
        _: String,
        _: Vec<Downstream>,
    ) -> Result<Option<String>, PluginError> {
        Ok(Some("[\"not\", \"an\", \"object\"]".into()))
    }
}

ferry_plugin_sdk::v0_1::bindings::__export_ferry_plugin_v0_1!(Garbage with_types_in ferry_plugin_sdk::v0_1::bindings);

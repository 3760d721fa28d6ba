//! A `ferry:sync@0.1.0` plugin exporting every hook, written against the frozen WIT folder
//! without the SDK (which moves with the newest contract):
//! - `place`: every target whose labels contain the configured `labels` (all by default);
//! - `transform`: `default-transform`'s logic as of v0.1.0 (`logic.rs`), with
//!   `allowExternalIPs`;
//! - `aggregate-status`: the `status` of the only copy, as is.
//!
//! Its golden cases (`cases/`) were recorded on the host before it learnt v0.2.0, so they
//! prove that a v0.1.0 component keeps behaving exactly as before.

wit_bindgen::generate!({
    world: "plugin",
    path: "../../../wit/v0.1.0",
});

mod logic;

use std::cell::RefCell;
use std::collections::BTreeMap;

use exports::ferry::sync::{config, placement, status, transform};
use ferry::sync::types::{Downstream, ObjectContext, PluginError, Target};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(default, rename = "allowExternalIPs")]
    allow_external_ips: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

// `configure` and the hook run on the same fresh instance; wasm guests are single-threaded.
thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

fn config() -> Config {
    CONFIG.with(|c| c.borrow().clone())
}

fn parse(object: &str) -> Result<Value, PluginError> {
    serde_json::from_str(object)
        .map_err(|e| PluginError::InvalidInput(format!("object is not valid JSON: {e}")))
}

struct Frozen;

impl config::Guest for Frozen {
    fn configure(json: String) -> Result<(), PluginError> {
        let parsed: Option<Config> = serde_json::from_str(&json)
            .map_err(|e| PluginError::InvalidConfig(format!("cannot read configuration: {e}")))?;
        CONFIG.with(|c| *c.borrow_mut() = parsed.unwrap_or_default());
        Ok(())
    }
}

impl placement::Guest for Frozen {
    fn place(
        _: ObjectContext,
        _: String,
        targets: Vec<Target>,
    ) -> Result<Vec<String>, PluginError> {
        let wanted = config().labels;
        Ok(targets
            .into_iter()
            .filter(|t| {
                wanted
                    .iter()
                    .all(|(k, v)| t.labels.iter().any(|(tk, tv)| tk == k && tv == v))
            })
            .map(|t| t.name)
            .collect())
    }
}

impl transform::Guest for Frozen {
    fn transform(
        context: ObjectContext,
        object: String,
        _: Target,
    ) -> Result<Option<String>, PluginError> {
        let object = parse(&object)?;
        logic::check_external_ips(&object, config().allow_external_ips)
            .map_err(PluginError::InvalidInput)?;
        let origin = logic::Origin {
            logical_cluster: &context.logical_cluster,
            workspace_path: context.workspace_path.as_deref(),
            downstream_namespace: &context.downstream_namespace,
        };
        let out = logic::transform(object, &origin).map_err(PluginError::InvalidInput)?;
        Ok(Some(out.to_string()))
    }
}

impl status::Guest for Frozen {
    fn aggregate_status(
        _: ObjectContext,
        _: String,
        downstream: Vec<Downstream>,
    ) -> Result<Option<String>, PluginError> {
        let [one] = downstream.as_slice() else {
            return Err(PluginError::InvalidInput(format!(
                "the object is on {} targets; this plugin copies the status of exactly one",
                downstream.len()
            )));
        };
        let status = one
            .object
            .as_deref()
            .map(parse)
            .transpose()?
            .and_then(|o| o.get("status").cloned())
            .filter(Value::is_object);
        Ok(status.map(|s| s.to_string()))
    }
}

export!(Frozen);

//! `passthrough-status`: the upstream status is the `status` of one downstream copy, as is.
//! Meant for objects placed on a single target.
//!
//! Configuration (optional):
//! ```yaml
//! target: cluster-1   # whose status to copy when the object is on several targets
//! ```
//! Without `target`, the object must be on exactly one target: copying one of several
//! statuses silently would hide the others.

use ferry_plugin_sdk::{Context, Downstream, Error, Plugin, Value};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    target: Option<String>,
}

struct Passthrough;

impl Plugin for Passthrough {
    type Config = Option<Config>;

    fn aggregate_status(
        config: &Self::Config,
        _context: &Context,
        _object: &Value,
        downstream: &[Downstream],
    ) -> Result<Option<Value>, Error> {
        let chosen = match config.as_ref().and_then(|c| c.target.as_deref()) {
            Some(name) => downstream.iter().find(|d| d.target.name == name),
            None => match downstream {
                [] => None,
                [one] => Some(one),
                many => {
                    return Err(Error::invalid_input(format!(
                        "the object is on {} targets; set `target` in the configuration to choose whose status to copy",
                        many.len()
                    )));
                }
            },
        };
        Ok(chosen
            .and_then(|d| d.object.as_ref())
            .and_then(|o| o.get("status"))
            .filter(|s| s.is_object())
            .cloned())
    }
}

ferry_plugin_sdk::export!(Passthrough);

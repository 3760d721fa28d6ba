//! `custom-placement`: the kind of placement plugin a platform team writes for itself.
//!
//! - **Region**: an object goes to targets labelled `region=<r>`, where `<r>` comes from the
//!   object's annotation `placement.example.com/region` (a comma-separated list is allowed),
//!   else from the configuration's `defaultRegion`, else any region.
//! - **Capacity**: among those, it picks `copies` targets (annotation
//!   `placement.example.com/copies`, else configuration `copies`, default 1) with a
//!   capacity-weighted rendezvous hash: a target with capacity 3 receives about three times
//!   as many objects as one with capacity 1, an object stays where it is while the targets do
//!   not change, and a drained target (capacity 0) is never chosen. A target's capacity is
//!   the configuration's `capacity.<target>`, else its label `capacity`, else 1.
//!
//! Configuration (all optional):
//! ```yaml
//! copies: 1
//! defaultRegion: eu
//! capacity: {cluster-2: 0}   # drain cluster-2
//! ```

use std::collections::BTreeMap;

use ferry_plugin_sdk::{Context, Error, Plugin, Target, TargetExt, Value, export};
use serde::Deserialize;

mod choose;

const REGION: &str = "placement.example.com/region";
const COPIES: &str = "placement.example.com/copies";

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(default)]
    copies: Option<usize>,
    #[serde(default)]
    default_region: Option<String>,
    #[serde(default)]
    capacity: BTreeMap<String, u32>,
}

struct CustomPlacement;

impl Plugin for CustomPlacement {
    type Config = Option<Config>;

    fn validate(config: &Self::Config) -> Result<(), Error> {
        if config.as_ref().and_then(|c| c.copies) == Some(0) {
            return Err(Error::invalid_config("`copies` must be at least 1"));
        }
        Ok(())
    }

    fn place(
        config: &Self::Config,
        context: &Context,
        object: &Value,
        targets: &[Target],
    ) -> Result<Vec<String>, Error> {
        let empty = Config::default();
        let config = config.as_ref().unwrap_or(&empty);
        let annotations = object.pointer("/metadata/annotations");
        let annotation = |key: &str| annotations.and_then(|a| a.get(key)).and_then(Value::as_str);

        let regions: Option<Vec<&str>> = annotation(REGION)
            .or(config.default_region.as_deref())
            .map(|r| {
                r.split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .collect()
            });
        let copies = match annotation(COPIES) {
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(Error::invalid_input(format!(
                        "annotation {COPIES}={text:?} must be a positive integer"
                    )));
                }
            },
            None => config.copies.unwrap_or(1),
        };

        let mut candidates = Vec::new();
        for target in targets {
            let in_region = regions
                .as_ref()
                .is_none_or(|wanted| target.label("region").is_some_and(|r| wanted.contains(&r)));
            if in_region {
                candidates.push((target.name.as_str(), capacity(config, target)?));
            }
        }
        let shown = regions.as_ref().map_or("any".into(), |r| r.join(","));
        if candidates.is_empty() {
            return Err(Error::invalid_input(format!("no target in region {shown}")));
        }
        if candidates.iter().all(|(_, c)| *c == 0) {
            // An error, not an empty placement: Ferry keeps the existing copies in force
            // instead of deleting them while every cluster of the region is drained.
            return Err(Error::failed(format!(
                "every target in region {shown} is drained (capacity 0)"
            )));
        }
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let identity = format!(
            "{}/{}/{}",
            context.workspace.logical_cluster, context.namespace, name
        );
        Ok(choose::weighted(&identity, &candidates, copies))
    }
}

/// `capacity.<name>` from the configuration, else the target's `capacity` label, else 1.
fn capacity(config: &Config, target: &Target) -> Result<u32, Error> {
    if let Some(c) = config.capacity.get(&target.name) {
        return Ok(*c);
    }
    match target.label("capacity") {
        None => Ok(1),
        Some(text) => text.parse().map_err(|_| {
            Error::invalid_config(format!(
                "target {}: label capacity={text:?} is not a whole number",
                target.name
            ))
        }),
    }
}

export!(CustomPlacement);

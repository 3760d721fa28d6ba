//! `label-placement`: an object goes to the targets whose labels match a Kubernetes label
//! selector, taken from the object's annotation `sync.ferry.dev/placement`, else from the
//! plugin configuration's `default`. Rules on the object's workspace (path pattern, opted-in
//! labels) bound where objects of that workspace may go.
//!
//! Configuration (all optional):
//! ```yaml
//! default: "region in (eu, us)"  # selector when the object has no annotation; "" = all
//! count: 2                        # at most this many of the matching targets
//! spreadBy: region                # with count: prefer targets with distinct values of this label
//! workspaces:                     # first matching rule wins
//! - workspace: "root:org-eu:**"   # path pattern: `*` one name, `**` any depth
//!   targets: "region=eu"
//! - workspaceLabels: "tier=gold"  # selector over the workspace's opted-in labels
//!   targets: "tier=gold"
//! unknownWorkspace: "region=eu"   # bound when the workspace path is unknown; absent = error
//! ```
//! A matching rule replaces `default`, and the object's annotation only chooses among the
//! targets the rule allows: a tenant cannot annotate an object out of its workspace's region.
//! With `count`, the choice is a rendezvous hash of the object's identity and each target's
//! name: stable across reconciles (no flapping), different objects spread across targets,
//! and removing a target moves only the objects that were on it.

use ferry_plugin_sdk::{Context, Error, Plugin, Target, TargetExt, Value, export};
use serde::Deserialize;

mod selector;
mod workspace_pattern;
mod workspace_rules;

#[cfg(test)]
mod cases;

use selector::Selector;
use workspace_rules::{Bound, Rule};

/// Annotation on the upstream object that overrides the configured selector.
const ANNOTATION: &str = "sync.ferry.dev/placement";

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    count: Option<usize>,
    #[serde(default)]
    spread_by: Option<String>,
    #[serde(default)]
    workspaces: Vec<Rule>,
    #[serde(default)]
    unknown_workspace: Option<Selector>,
}

struct LabelPlacement;

impl Plugin for LabelPlacement {
    type Config = Option<Config>;

    fn validate(config: &Self::Config) -> Result<(), Error> {
        let Some(config) = config else { return Ok(()) };
        if let Some(default) = &config.default {
            Selector::parse(default)
                .map_err(|e| Error::invalid_config(format!("`default` selector: {e}")))?;
        }
        if config.count == Some(0) {
            return Err(Error::invalid_config("`count` must be at least 1"));
        }
        if config.spread_by.is_some() && config.count.is_none() {
            return Err(Error::invalid_config("`spreadBy` needs `count`"));
        }
        if let Some(i) = config
            .workspaces
            .iter()
            .position(|r| r.workspace.is_none() && r.workspace_labels.is_none())
        {
            return Err(Error::invalid_config(format!(
                "`workspaces[{i}]` needs `workspace` or `workspaceLabels`"
            )));
        }
        if config.unknown_workspace.is_some() && config.workspaces.is_empty() {
            return Err(Error::invalid_config(
                "`unknownWorkspace` needs `workspaces`",
            ));
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
        let annotation = object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ANNOTATION))
            .and_then(Value::as_str)
            .map(|text| {
                Selector::parse(text).map_err(|e| {
                    Error::invalid_input(format!("annotation {ANNOTATION}={text:?}: {e}"))
                })
            })
            .transpose()?;
        let workspace = &context.workspace;
        let bound = workspace_rules::bound(
            &config.workspaces,
            config.unknown_workspace.as_ref(),
            workspace.path.as_deref(),
            |k| workspace.label(k),
        )
        .map_err(Error::failed)?;
        let default = match (&bound, &config.default) {
            // A matching rule replaces the default.
            (Bound::Within(_), _) | (Bound::Free, None) => None,
            (Bound::Free, Some(text)) => Some(
                Selector::parse(text)
                    .map_err(|e| Error::invalid_config(format!("`default` selector: {e}")))?,
            ),
        };
        let selectors: Vec<&Selector> = match (&bound, annotation.as_ref(), default.as_ref()) {
            (Bound::Within(rule), Some(annotation), _) => vec![rule, annotation],
            (Bound::Within(rule), None, _) => vec![rule],
            (Bound::Free, Some(annotation), _) => vec![annotation],
            (Bound::Free, None, Some(default)) => vec![default],
            // No annotation, no rule and no default: the object goes nowhere. Placing it
            // everywhere would be the surprising choice for an operator who configured
            // nothing.
            (Bound::Free, None, None) => return Ok(Vec::new()),
        };
        let matching: Vec<&Target> = targets
            .iter()
            .filter(|t| selectors.iter().all(|s| s.matches(|k| t.label(k))))
            .collect();
        let Some(count) = config.count else {
            return Ok(matching.iter().map(|t| t.name.clone()).collect());
        };
        Ok(choose(
            context,
            object,
            matching,
            count,
            config.spread_by.as_deref(),
        ))
    }
}

/// Picks `count` targets by rendezvous (highest random weight) hashing; with `spread_by`,
/// first one per distinct label value, then the rest by weight.
fn choose(
    context: &Context,
    object: &Value,
    mut candidates: Vec<&Target>,
    count: usize,
    spread_by: Option<&str>,
) -> Vec<String> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let identity = format!(
        "{}/{}/{}",
        context.workspace.logical_cluster, context.namespace, name
    );
    // Sort by weight, ties (practically impossible) by name so the order is total.
    candidates.sort_by(|a, b| {
        weight(&identity, &b.name)
            .cmp(&weight(&identity, &a.name))
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut chosen: Vec<&Target> = Vec::new();
    if let Some(key) = spread_by {
        let mut seen: Vec<Option<&str>> = Vec::new();
        for t in &candidates {
            let value = t.label(key);
            if chosen.len() < count && !seen.contains(&value) {
                seen.push(value);
                chosen.push(t);
            }
        }
    }
    for t in &candidates {
        if chosen.len() < count && !chosen.iter().any(|c| c.name == t.name) {
            chosen.push(t);
        }
    }
    let mut names: Vec<String> = chosen.iter().map(|t| t.name.clone()).collect();
    names.sort();
    names
}

/// FNV-1a over the identity and the target name: tiny, dependency-free and stable across
/// builds and platforms (unlike `std`'s randomly seeded hasher).
fn weight(identity: &str, target: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in identity.bytes().chain([0u8]).chain(target.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs; one xorshift-multiply round fixes that.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

export!(LabelPlacement);

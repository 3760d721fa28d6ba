//! `deployment-status`: the upstream Deployment's status as if all its copies were one
//! Deployment. Replica counts are summed; conditions are merged per type (the worst status
//! wins, messages name the targets); `observedGeneration` is the upstream generation once
//! every copy has observed its own latest spec. A new object gets no status until a copy
//! reports one.
//!
//! Configuration: none (`null`).

use std::collections::BTreeMap;

use ferry_plugin_sdk::{Context, Downstream, Error, NoConfig, Plugin, Value, json};

const COUNTS: &[&str] = &[
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
];

struct DeploymentStatus;

impl Plugin for DeploymentStatus {
    type Config = NoConfig;

    fn aggregate_status(
        _config: &NoConfig,
        _context: &Context,
        object: &Value,
        downstream: &[Downstream],
    ) -> Result<Option<Value>, Error> {
        // Not placed anywhere: nothing to say; the previous status stays.
        if downstream.is_empty() {
            return Ok(None);
        }
        // Nothing observed yet: no copy reports a status and none was ever written upstream.
        // Kubernetes gives a new Deployment no status until its controller has observed it;
        // neither does this plugin. Zeros written now would say nothing and cost a kcp write
        // per new object, on the path of every first sync; the copies' controllers report
        // soon, and that status is written then. Once a status is upstream, copies that
        // report nothing (moved, recreated) do bring it to zero.
        if !downstream.iter().any(|d| reports(d.object.as_ref())) && !reports(Some(object)) {
            return Ok(None);
        }
        let mut copies: Vec<(&str, Option<&Value>)> = downstream
            .iter()
            .map(|d| (d.target.name.as_str(), d.object.as_ref()))
            .collect();
        // Deterministic output whatever order the engine lists targets in: an unchanged
        // status must serialise identically, or Ferry would write it again (invariant I5, docs/reliability.md).
        copies.sort_by_key(|(name, _)| *name);

        let mut status = serde_json::Map::new();
        for field in COUNTS {
            let sum: u64 = copies
                .iter()
                .filter_map(|(_, o)| o.and_then(|o| o.pointer(&format!("/status/{field}"))))
                .filter_map(Value::as_u64)
                .sum();
            status.insert((*field).into(), json!(sum));
        }
        let unavailable: u64 = copies
            .iter()
            .filter_map(|(_, o)| o.and_then(|o| o.pointer("/status/unavailableReplicas")))
            .filter_map(Value::as_u64)
            .sum();
        if unavailable > 0 {
            status.insert("unavailableReplicas".into(), json!(unavailable));
        }

        let caught_up = copies.iter().all(|(_, o)| o.is_some_and(observed_latest));
        let observed = if caught_up {
            object.pointer("/metadata/generation").cloned()
        } else {
            object.pointer("/status/observedGeneration").cloned()
        };
        if let Some(generation) = observed {
            status.insert("observedGeneration".into(), generation);
        }

        let conditions = merge_conditions(&copies);
        if !conditions.is_empty() {
            status.insert("conditions".into(), Value::Array(conditions));
        }
        Ok(Some(Value::Object(status)))
    }
}

/// Whether `object` carries a status with anything in it.
fn reports(object: Option<&Value>) -> bool {
    object
        .and_then(|o| o.get("status"))
        .and_then(Value::as_object)
        .is_some_and(|status| !status.is_empty())
}

fn observed_latest(object: &Value) -> bool {
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let observed = object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    matches!((generation, observed), (Some(g), Some(o)) if o >= g)
}

/// Rank of a condition status: the merged condition takes the highest rank among copies.
fn rank(condition_type: &str, status: &str) -> u8 {
    // For ReplicaFailure, `True` is the bad news; for every other type, `False` is.
    let bad = if condition_type == "ReplicaFailure" {
        "True"
    } else {
        "False"
    };
    match status {
        s if s == bad => 2,
        "Unknown" => 1,
        _ => 0,
    }
}

fn merge_conditions(copies: &[(&str, Option<&Value>)]) -> Vec<Value> {
    // type -> (target, condition) in target order.
    let mut by_type: BTreeMap<&str, Vec<(&str, &Value)>> = BTreeMap::new();
    for (target, object) in copies {
        let conditions = object
            .and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array);
        for condition in conditions.into_iter().flatten() {
            if let Some(t) = condition.get("type").and_then(Value::as_str) {
                by_type.entry(t).or_default().push((target, condition));
            }
        }
    }
    let missing: Vec<&str> = copies
        .iter()
        .filter(|(_, o)| o.is_none())
        .map(|(t, _)| *t)
        .collect();

    by_type
        .into_iter()
        .map(|(condition_type, entries)| {
            let str_of = |c: &Value, k: &str| {
                c.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let mut status = entries
                .iter()
                .map(|(_, c)| str_of(c, "status"))
                .max_by_key(|s| rank(condition_type, s))
                .unwrap_or_else(|| "Unknown".into());
            // A target where the copy is missing (or that reports nothing for this type) has
            // not confirmed anything: the merged condition cannot be better than Unknown.
            let unconfirmed = !missing.is_empty() || entries.len() < copies.len();
            if unconfirmed && rank(condition_type, &status) == 0 {
                status = "Unknown".into();
            }
            let agreeing: Vec<&(&str, &Value)> = entries
                .iter()
                .filter(|(_, c)| str_of(c, "status") == status)
                .collect();
            let reason = match agreeing.first() {
                Some((_, c))
                    if agreeing
                        .iter()
                        .all(|(_, o)| str_of(o, "reason") == str_of(c, "reason")) =>
                {
                    str_of(c, "reason")
                }
                Some(_) => "MultipleReasons".into(),
                None => "TargetsNotReporting".into(),
            };
            let mut parts: Vec<String> = entries
                .iter()
                .map(|(t, c)| format!("{t}: {}", str_of(c, "message")))
                .collect();
            parts.extend(missing.iter().map(|t| format!("{t}: not present")));
            let latest = |key: &str| {
                agreeing
                    .iter()
                    .map(|(_, c)| str_of(c, key))
                    .max()
                    .filter(|s| !s.is_empty())
            };
            let mut merged = serde_json::Map::new();
            merged.insert("type".into(), json!(condition_type));
            merged.insert("status".into(), json!(status));
            merged.insert("reason".into(), json!(reason));
            merged.insert("message".into(), json!(parts.join("; ")));
            // RFC 3339 timestamps in UTC compare correctly as strings.
            if let Some(t) = latest("lastTransitionTime") {
                merged.insert("lastTransitionTime".into(), json!(t));
            }
            if let Some(t) = latest("lastUpdateTime") {
                merged.insert("lastUpdateTime".into(), json!(t));
            }
            Value::Object(merged)
        })
        .collect()
}

ferry_plugin_sdk::export!(DeploymentStatus);

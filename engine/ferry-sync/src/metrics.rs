//! Counters an operator alerts on, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A metric name with its label pairs.
type Series = (&'static str, Vec<(&'static str, String)>);

/// Process-wide counters and gauges; shared by reference, no global state.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Series, u64>>,
}

/// Names of the counters.
pub mod names {
    /// Reconciles run, by resource and result.
    pub const RECONCILES: &str = "ferry_reconciles_total";
    /// Failed reconciles, by resource and error kind.
    pub const ERRORS: &str = "ferry_reconcile_errors_total";
    /// Mutating requests to target clusters, by target and verb.
    pub const DOWNSTREAM_WRITES: &str = "ferry_downstream_writes_total";
    /// Mutating requests to kcp, by what was written.
    pub const UPSTREAM_WRITES: &str = "ferry_upstream_writes_total";
    /// Events recorded on upstream objects, by reason.
    pub const EVENTS: &str = "ferry_events_total";
    /// Workspaces bound to the export, by shard (a gauge).
    pub const BOUND_WORKSPACES: &str = "ferry_bound_workspaces";
    /// Whether a target answers (1) or not (0), by target (a gauge).
    pub const TARGET_UP: &str = "ferry_target_up";
    /// Keys waiting to be reconciled now, by resource (a gauge).
    pub const QUEUE_READY: &str = "ferry_queue_ready";
    /// Keys waiting for a retry or a check-back delay, by resource (a gauge).
    pub const QUEUE_DELAYED: &str = "ferry_queue_delayed";
    /// Age in seconds of the oldest key waiting to be reconciled, by resource (a gauge):
    /// the first thing to alert on when Ferry falls behind.
    pub const QUEUE_OLDEST_SECONDS: &str = "ferry_queue_oldest_age_seconds";
    /// Total reconcile time in milliseconds, by resource (with [`RECONCILES`] it gives the
    /// mean; histograms come with the metrics rework).
    pub const RECONCILE_MS: &str = "ferry_reconcile_milliseconds_total";
    /// Whether this process leads and its workers write (1) or it is a standby (0) (a gauge).
    pub const LEADER: &str = "ferry_leader";
    /// Copies kept because their upstream object is out of sight but not proven gone
    /// (a shard left the endpoint slice, a workspace unbound), by resource (a gauge).
    pub const COPIES_KEPT: &str = "ferry_copies_kept_unknown_origin";
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
        );
        if let Ok(mut counters) = self.counters.lock() {
            *counters.entry(key).or_insert(0) += 1;
        }
    }

    /// Adds a duration in whole milliseconds to a counter.
    pub fn observe_ms(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        elapsed: std::time::Duration,
    ) {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
        );
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        if let Ok(mut counters) = self.counters.lock() {
            let entry = counters.entry(key).or_insert(0);
            *entry = entry.saturating_add(ms);
        }
    }

    /// Sets a gauge (rendered with `# TYPE … gauge`; names without `_total`).
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: u64) {
        let key = (
            name,
            labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect(),
        );
        if let Ok(mut counters) = self.counters.lock() {
            counters.insert(key, value);
        }
    }

    /// Sum of a counter over all label values.
    pub fn total(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|((n, _), _)| *n == name)
                    .map(|(_, v)| v)
                    .sum()
            })
            .unwrap_or(0)
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let Ok(counters) = self.counters.lock() else {
            return String::new();
        };
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), value) in counters.iter() {
            if *name != last {
                let kind = if name.ends_with("_total") {
                    "counter"
                } else {
                    "gauge"
                };
                out.push_str(&format!("# TYPE {name} {kind}\n"));
                last = name;
            }
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            out.push_str(&format!("{name}{{{}}} {value}\n", labels.join(",")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.inc(
            names::DOWNSTREAM_WRITES,
            &[("target", "cluster-1"), ("verb", "apply")],
        );
        metrics.inc(
            names::DOWNSTREAM_WRITES,
            &[("target", "cluster-1"), ("verb", "apply")],
        );
        let text = metrics.render();
        assert!(
            text.contains("# TYPE ferry_downstream_writes_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"ferry_downstream_writes_total{target="cluster-1",verb="apply"} 2"#),
            "{text}"
        );
        assert_eq!(metrics.total(names::DOWNSTREAM_WRITES), 2);
    }
}

//! The exposition is checked the way a scraper reads it: every line must parse, every
//! family has its type, histograms have increasing bounds and non-decreasing counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_core::{CallErrorKind, Hook};
use prometheus_parse::{LineInfo, Scrape, Value};
use tower::{Layer, Service};

use super::Metrics;

/// Parses `text` strictly: a line that is neither `# HELP`, `# TYPE` nor a sample fails the
/// test (the parser itself skips what it does not understand).
fn parse(text: &str) -> Scrape {
    for line in text.lines() {
        let known = line.starts_with("# HELP ")
            || line.starts_with("# TYPE ")
            || matches!(LineInfo::parse(line), LineInfo::Sample { .. });
        assert!(known, "not a valid exposition line: {line:?}\n{text}");
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

/// `# TYPE` of every family.
fn types(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect()
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

fn recorded() -> Metrics {
    let metrics = Metrics::default();
    metrics.reconciled("deployments.apps", "ok", Duration::from_millis(3));
    metrics.reconciled("deployments.apps", "ok", Duration::from_millis(40));
    metrics.reconcile_failed("deployments.apps", "plugin");
    metrics.propagated("deployments.apps", Duration::from_millis(1500));
    metrics.status_propagated("deployments.apps", Duration::from_millis(200));
    metrics.downstream_write("cluster-1", "apply");
    metrics.downstream_write("cluster-1", "apply");
    metrics.upstream_write("status");
    metrics.event_recorded("PluginFailed");
    metrics.bound_workspaces("https://kcp:6443/services/x", 2);
    metrics.target_up("cluster-\"2\"", false);
    metrics.queue("deployments.apps", 3, 1, Some(Duration::from_millis(2500)));
    metrics.copies_kept("deployments.apps", 0);
    metrics.leader(true);
    metrics.plugin_call(
        "label-placement",
        Hook::Place,
        None,
        Duration::from_micros(80),
        100 << 20,
    );
    metrics.plugin_call(
        "label-placement",
        Hook::Place,
        Some(CallErrorKind::DeadlineExceeded),
        Duration::from_millis(260),
        50 << 20,
    );
    metrics.api_request("kcp", "watch", Some(200));
    metrics.api_request("cluster-1", "patch", Some(409));
    metrics.api_request("cluster-1", "get", None);
    metrics.api_request_duration("kcp", "patch", Duration::from_millis(40));
    metrics.plugin_component("label-placement", "deployments.apps", "place", "aaa", None);
    metrics.plugin_reload("label-placement", "bbb", "cases-failed");
    metrics
}

#[test]
fn every_metric_renders_with_its_type_in_the_prometheus_text_format() {
    let text = recorded().render();
    let types = types(&text);
    let expected = [
        ("ferry_reconcile_duration_seconds", "histogram"),
        ("ferry_reconcile_errors_total", "counter"),
        ("ferry_propagation_latency_seconds", "histogram"),
        ("ferry_status_latency_seconds", "histogram"),
        ("ferry_downstream_writes_total", "counter"),
        ("ferry_upstream_writes_total", "counter"),
        ("ferry_events_total", "counter"),
        ("ferry_bound_workspaces", "gauge"),
        ("ferry_target_up", "gauge"),
        ("ferry_leader", "gauge"),
        ("ferry_queue_ready", "gauge"),
        ("ferry_queue_delayed", "gauge"),
        ("ferry_queue_oldest_age_seconds", "gauge"),
        ("ferry_copies_kept_unknown_origin", "gauge"),
        ("ferry_plugin_calls_total", "counter"),
        ("ferry_plugin_call_duration_seconds", "histogram"),
        ("ferry_plugin_peak_memory_bytes", "gauge"),
        ("ferry_api_requests_total", "counter"),
        ("ferry_api_request_duration_seconds", "histogram"),
        ("ferry_plugin_component_info", "gauge"),
        ("ferry_plugin_reloads_total", "counter"),
        ("ferry_replica_members", "gauge"),
        ("ferry_replica_owned_workspaces", "gauge"),
        ("ferry_replica_handovers_total", "counter"),
        ("ferry_replica_handover_duration_seconds", "histogram"),
    ];
    for (name, kind) in expected {
        assert_eq!(types.get(name), Some(&kind), "{name}\n{text}");
    }
    assert_eq!(types.len(), expected.len(), "{types:?}");

    let scrape = parse(&text);
    let v = |name: &str, labels: &[(&str, &str)]| value(&scrape, name, labels);
    assert_eq!(
        v(
            "ferry_downstream_writes_total",
            &[("target", "cluster-1"), ("verb", "apply")]
        ),
        Some(2.0)
    );
    assert_eq!(
        v(
            "ferry_api_requests_total",
            &[("cluster", "kcp"), ("verb", "watch"), ("code", "200")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "ferry_api_requests_total",
            &[("cluster", "cluster-1"), ("verb", "get"), ("code", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "ferry_plugin_calls_total",
            &[
                ("plugin", "label-placement"),
                ("hook", "place"),
                ("outcome", "deadline-exceeded")
            ]
        ),
        Some(1.0)
    );
    // The peak is the largest any call reached, not the last one's.
    assert_eq!(
        v(
            "ferry_plugin_peak_memory_bytes",
            &[("plugin", "label-placement"), ("hook", "place")]
        ),
        Some(f64::from(100u32 << 20))
    );
    assert_eq!(
        v(
            "ferry_queue_oldest_age_seconds",
            &[("resource", "deployments.apps")]
        ),
        Some(2.5)
    );
    // A label value with a quote is escaped as the format requires (the parser keeps
    // escapes as they are, so the line is checked as written).
    assert!(
        text.lines()
            .any(|l| l == r#"ferry_target_up{target="cluster-\"2\""} 0"#),
        "{text}"
    );
    // A histogram's count is the number of observations.
    assert_eq!(
        v(
            "ferry_reconcile_duration_seconds",
            &[("resource", "deployments.apps"), ("result", "ok")]
        ),
        Some(2.0)
    );
}

#[test]
fn a_hot_reload_moves_the_component_gauge_to_the_new_digest() {
    let metrics = Metrics::default();
    let component = |metrics: &Metrics, digest: &str| {
        value(
            &parse(&metrics.render()),
            "ferry_plugin_component_info",
            &[
                ("plugin", "label-placement"),
                ("resource", "deployments.apps"),
                ("hook", "place"),
                ("digest", digest),
            ],
        )
    };
    metrics.plugin_component("label-placement", "deployments.apps", "place", "old", None);
    assert_eq!(component(&metrics, "old"), Some(1.0));
    metrics.plugin_reload("label-placement", "new", "loaded");
    metrics.plugin_component(
        "label-placement",
        "deployments.apps",
        "place",
        "new",
        Some("old"),
    );
    assert_eq!(component(&metrics, "new"), Some(1.0));
    // One series per reference: the old digest is gone, not left at 1 beside the new one.
    assert_eq!(component(&metrics, "old"), None);
    assert_eq!(
        value(
            &parse(&metrics.render()),
            "ferry_plugin_reloads_total",
            &[
                ("plugin", "label-placement"),
                ("digest", "new"),
                ("outcome", "loaded")
            ]
        ),
        Some(1.0)
    );
}

#[test]
fn a_replica_reports_its_members_owned_workspaces_and_handovers() {
    let metrics = Metrics::default();
    let read = |metrics: &Metrics, name: &str| value(&parse(&metrics.render()), name, &[]);
    // Without sharing: all zero, and present (a dashboard need not special-case them).
    assert_eq!(read(&metrics, "ferry_replica_members"), Some(0.0));
    assert_eq!(read(&metrics, "ferry_replica_owned_workspaces"), Some(0.0));
    metrics.replica_share(3, 41);
    metrics.replica_member_set_adopted();
    metrics.replica_member_set_adopted();
    metrics.replica_handover_completed(Duration::from_millis(4200));
    assert_eq!(read(&metrics, "ferry_replica_members"), Some(3.0));
    assert_eq!(read(&metrics, "ferry_replica_owned_workspaces"), Some(41.0));
    assert_eq!(read(&metrics, "ferry_replica_handovers_total"), Some(2.0));
    assert_eq!(
        read(&metrics, "ferry_replica_handover_duration_seconds"),
        Some(1.0),
        "one handover completed"
    );
    assert!(
        metrics
            .render()
            .contains("ferry_replica_handover_duration_seconds_bucket{le=\"5\"} 1"),
        "{}",
        metrics.render()
    );
}

#[test]
fn histogram_buckets_are_cumulative_with_increasing_bounds_up_to_inf() {
    let text = recorded().render();
    let scrape = parse(&text);
    let histograms: Vec<_> = scrape
        .samples
        .iter()
        .filter_map(|s| match &s.value {
            Value::Histogram(buckets) => Some((&s.metric, buckets)),
            _ => None,
        })
        .collect();
    // Reconcile, propagation, status, plugin call and API request durations, and handovers.
    assert_eq!(histograms.len(), 6, "{text}");
    for (name, buckets) in histograms {
        assert!(buckets.len() > 10, "{name}: {buckets:?}");
        for pair in buckets.windows(2) {
            assert!(pair[0].less_than < pair[1].less_than, "{name}: {buckets:?}");
            assert!(pair[0].count <= pair[1].count, "{name}: {buckets:?}");
        }
        assert!(
            buckets.last().is_some_and(|b| b.less_than.is_infinite()),
            "{name}"
        );
    }
    // 1.5 s of propagation lands between the 1 s and 2.5 s bounds.
    let propagation = |le: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("ferry_propagation_latency_seconds_bucket")
                    && l.contains(&format!("le=\"{le}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(propagation("1"), Some(0.0), "{text}");
    assert_eq!(propagation("2.5"), Some(1.0), "{text}");
    assert!(
        text.contains("ferry_propagation_latency_seconds_sum{resource=\"deployments.apps\"} 1.5"),
        "{text}"
    );
}

/// An API server answering every request with `code`.
#[derive(Clone)]
struct Answers(u16);

impl Service<http::Request<()>> for Answers {
    type Response = http::Response<()>;
    type Error = std::convert::Infallible;
    type Future = futures::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        let mut response = http::Response::new(());
        *response.status_mut() = http::StatusCode::from_u16(self.0).expect("a status code");
        futures::future::ready(Ok(response))
    }
}

#[test]
fn the_client_layer_counts_each_request_by_cluster_verb_and_code() {
    let metrics = Arc::new(Metrics::default());
    let mut service = metrics.count_requests("cluster-1").layer(Answers(409));
    let named = |verb: &'static str, method: http::Method, uri: &str| {
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("a request");
        if !verb.is_empty() {
            request.extensions_mut().insert(verb);
        }
        request
    };
    let requests = [
        named("patch", http::Method::PATCH, "/apis/apps/v1/x"),
        named("watch", http::Method::GET, "/apis/apps/v1/x?watch=true"),
        named(
            "",
            http::Method::GET,
            "/api/v1/pods?watch=true&resourceVersion=1",
        ),
        named("", http::Method::GET, "/version"),
        named("delete_collection", http::Method::DELETE, "/api/v1/pods"),
        named("replace_subresource", http::Method::PUT, "/api/v1/x/status"),
    ];
    for request in requests {
        futures::executor::block_on(service.call(request)).expect("answered");
    }
    let scrape = parse(&metrics.render());
    let count = |verb: &str| {
        value(
            &scrape,
            "ferry_api_requests_total",
            &[("cluster", "cluster-1"), ("verb", verb), ("code", "409")],
        )
    };
    assert_eq!(count("patch"), Some(1.0));
    assert_eq!(count("watch"), Some(2.0));
    assert_eq!(count("get"), Some(1.0));
    assert_eq!(count("deletecollection"), Some(1.0));
    assert_eq!(count("update"), Some(1.0));
    // Every request but the watches is timed.
    let timed = |verb: &str| {
        value(
            &scrape,
            "ferry_api_request_duration_seconds_count",
            &[("cluster", "cluster-1"), ("verb", verb)],
        )
    };
    assert_eq!(timed("patch"), Some(1.0));
    assert_eq!(timed("get"), Some(1.0));
    assert_eq!(timed("update"), Some(1.0));
    assert_eq!(
        timed("watch"),
        None,
        "a watch stays open: its time is not the server's"
    );
}

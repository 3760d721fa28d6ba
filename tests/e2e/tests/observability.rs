//! What an operator sees of a live Ferry: its metrics endpoint scraped and parsed after a
//! sync, and its JSON log lines naming the object they are about.

use anyhow::{Context, Result, ensure};
use ferry_e2e::Env;
use ferry_e2e::ferry::FerryOptions;
use ferry_e2e::scenario::{CONVERGE, Scenario};
use ferry_e2e::{CLUSTERS, eventually};
use prometheus_parse::{Scrape, Value};
use serde_json::Value as Json;

/// Sum of the samples of `name` whose labels include `labels` (a histogram: its count).
fn total(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn a_live_ferry_reports_latencies_api_requests_plugin_calls_and_logs_json_per_object()
-> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let options = FerryOptions {
        log_format: "json".into(),
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "observability", 1, options).await?;
    let result = async {
        s.apply_deployment(0, "web", 2, &[]).await?;
        s.wait_on_all(0, "web", true).await?;
        // Each cluster's controller manager reports 2 replicas; deployment-status sums them:
        // a copy's status change went back upstream.
        s.wait_upstream(0, "web", "status.replicas 4 from both clusters", |o| {
            o.and_then(|o| o.data.pointer("/status/replicas"))
                .and_then(|r| r.as_i64())
                == Some(4)
        })
        .await?;

        let deployments = [("resource", "deployments.apps")];
        let scrape = eventually("every latency to be recorded", CONVERGE, || async {
            let scrape = s.ferry.scrape().await?;
            let recorded = total(&scrape, "ferry_propagation_latency_seconds", &deployments) > 0.0
                && total(&scrape, "ferry_status_latency_seconds", &deployments) > 0.0;
            Ok(recorded.then_some(scrape))
        })
        .await?;
        for name in [
            "ferry_propagation_latency_seconds",
            "ferry_status_latency_seconds",
        ] {
            let sum: f64 = scrape
                .samples
                .iter()
                .filter(|x| x.metric == format!("{name}_sum"))
                .map(|x| match x.value {
                    Value::Untyped(v) | Value::Counter(v) | Value::Gauge(v) => v,
                    _ => 0.0,
                })
                .sum();
            let count = total(&scrape, name, &deployments);
            eprintln!("{name}: {count} samples, mean {:.3} s", sum / count);
        }
        for cluster in std::iter::once("kcp").chain(CLUSTERS) {
            let watches = total(
                &scrape,
                "ferry_api_requests_total",
                &[("cluster", cluster), ("verb", "watch"), ("code", "200")],
            );
            ensure!(watches > 0.0, "no watch of {cluster} counted");
        }
        for cluster in CLUSTERS {
            let applies = total(
                &scrape,
                "ferry_api_requests_total",
                &[("cluster", cluster), ("verb", "patch")],
            );
            ensure!(applies > 0.0, "no patch (apply) to {cluster} counted");
        }
        for (plugin, hook) in [
            ("label-placement", "place"),
            ("default-transform", "transform"),
            ("deployment-status", "aggregate-status"),
        ] {
            let labels = [("plugin", plugin), ("hook", hook)];
            let calls = total(
                &scrape,
                "ferry_plugin_calls_total",
                &[labels[0], labels[1], ("outcome", "ok")],
            );
            ensure!(calls > 0.0, "no {plugin} {hook} call counted");
            ensure!(
                total(&scrape, "ferry_plugin_call_duration_seconds", &labels) > 0.0,
                "no {plugin} {hook} duration"
            );
            ensure!(
                total(&scrape, "ferry_plugin_peak_memory_bytes", &labels) > 0.0,
                "no {plugin} {hook} peak memory"
            );
        }
        ensure!(
            total(
                &scrape,
                "ferry_reconcile_duration_seconds",
                &[("resource", "deployments.apps"), ("result", "ok")]
            ) > 0.0,
            "no reconcile counted"
        );

        // Every line Ferry wrote is a JSON object; those about the Deployment name it.
        let log = s.ferry.log();
        let lines: Vec<Json> = log
            .lines()
            .filter(|l| !l.starts_with("====="))
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect::<Result<_>>()?;
        let tenant = &s.tenants[0].logical_cluster;
        let applied: Vec<&Json> = lines
            .iter()
            .filter(|l| l["message"] == "applied" && l["span"]["object"] == "web")
            .collect();
        ensure!(applied.len() >= 2, "no 'applied' line per cluster:\n{log}");
        for line in applied {
            ensure!(line["span"]["workspace"] == tenant.as_str(), "{line}");
            ensure!(line["span"]["resource"] == "deployments.apps", "{line}");
            ensure!(line["span"]["namespace"] == "demo", "{line}");
        }
        Ok(())
    }
    .await;
    s.finish(result)
}

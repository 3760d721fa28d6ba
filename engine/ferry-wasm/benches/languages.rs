//! `cargo xtask bench plugins` (second part): what a plugin costs in each language. The same
//! placement (`label-placement` in Rust, Python and JavaScript, passing the same golden
//! cases) is called on a fresh instance per call, as the engine does, beside the same
//! selector logic compiled natively. Prints per-call times, memory per instance and the
//! load costs; asserts nothing.
//!
//! The native row compiles `plugins/label-placement/src/selector.rs`, the file the Rust
//! plugin is built from, and does what a call does with the object: parse its JSON text,
//! read the annotation, parse the selector and match every target.

#![allow(clippy::unwrap_used)]

#[path = "../../../plugins/label-placement/src/selector.rs"]
// Its unit tests come along when this bench is built as a test (`cargo test --bench`).
#[allow(dead_code, unused_imports)]
mod selector;

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::{ObjectContext, Target};
use ferry_wasm::{
    CallReport, LimitOverrides, Limits, Plugin, PluginOptions, Runtime, RuntimeConfig,
};
use serde_json::{Value, json};

/// The components measured, by language.
const COMPONENTS: [(&str, &str); 3] = [
    ("Rust", "label-placement"),
    ("Python", "label-placement-python"),
    ("JavaScript", "label-placement-js"),
];

fn main() {
    let iterations: usize = std::env::var("FERRY_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let context = ObjectContext {
        logical_cluster: "2x8mfrq3b9tmwx1v".into(),
        workspace_path: Some("root:team-a".into()),
        workspace_labels: Default::default(),
        workspace_annotations: Default::default(),
        namespace: "default".into(),
        downstream_namespace: "ferry-1a2b3c4d".into(),
    };
    let targets = vec![
        Target::new("cluster-1").label("region", "eu"),
        Target::new("cluster-2").label("region", "us"),
        Target::new("cluster-3").label("region", "eu"),
    ];
    let object = deployment();
    let text = object.to_string();

    println!(
        "\n## Plugins per language: `place` of label-placement, {} bytes of Deployment, 3 targets\n",
        text.len()
    );
    let native = measure(iterations, || {
        black_box(native_place(black_box(&text), &targets));
    });
    assert_eq!(native_place(&text, &targets), ["cluster-1", "cluster-3"]);

    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let mut rows = vec![Row {
        name: "native Rust (JSON text in, selector, match)".into(),
        stats: native,
        memory: None,
        limits: String::new(),
        bytes: None,
        compile: None,
        instantiate: None,
    }];
    for (language, name) in COMPONENTS {
        let path = match ferry_wasm::testing::component(name) {
            Ok(path) => path,
            Err(missing) => {
                println!("{language}: skipped, {missing} (`cargo xtask languages` builds it)");
                continue;
            }
        };
        let bytes = std::fs::read(&path).unwrap();
        // Compiled once here (timed); the measured plugin below takes the same code from
        // the runtime's cache. Loaded with default options: its limits are the defaults.
        let started = Instant::now();
        let compiled = runtime
            .load_bytes(&bytes, PluginOptions::default().name(name))
            .unwrap();
        let compile = started.elapsed();
        let peak = Arc::new(Mutex::new(0u64));
        let seen = Arc::clone(&peak);
        let plugin = runtime
            .load_bytes(
                &bytes,
                PluginOptions::default()
                    .name(name)
                    .config(json!({"default": "region=us"}))
                    // Every call runs an instance, as for a changed object.
                    .memo_capacity(0)
                    // Measure the cost, whatever the load: the defaults are reported below.
                    .limits(LimitOverrides::default().deadline(Duration::from_secs(60)))
                    .observer(move |r: &CallReport<'_>| {
                        let mut peak = seen.lock().unwrap();
                        *peak = (*peak).max(r.peak_memory);
                    }),
            )
            .unwrap();
        let placed = plugin.place(&context, &object, &targets).unwrap();
        assert_eq!(placed, ["cluster-1", "cluster-3"], "{language}");
        let stats = measure(iterations, || {
            black_box(place(&plugin, &context, &object, &targets));
        });
        let instantiate = median_of(101, || {
            let started = Instant::now();
            plugin.instantiate_only().unwrap();
            started.elapsed()
        });
        let limits: Limits = compiled.limits();
        rows.push(Row {
            name: format!("{language}, fresh instance per call"),
            stats,
            memory: Some(*peak.lock().unwrap()),
            limits: format!(
                "{} ms, {} MiB",
                limits.deadline.as_millis(),
                limits.memory / (1024 * 1024)
            ),
            bytes: Some(bytes.len()),
            compile: Some(compile),
            instantiate: Some(instantiate),
        });
    }

    let base = rows[0].stats.p50;
    let rust = rows.get(1).map_or(base, |r| r.stats.p50);
    println!("| per call | p50 | p99 | x native | x Rust |");
    println!("|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} |",
            row.name,
            fmt(row.stats.p50),
            fmt(row.stats.p99),
            ratio(row.stats.p50, base),
            ratio(row.stats.p50, rust),
        );
    }
    println!();
    println!(
        "| component | size | peak linear memory per instance | instantiate | compile | default limits |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows.iter().skip(1) {
        println!(
            "| {} | {:.1} MB | {:.1} MiB | {} | {} | {} |",
            row.name.split(',').next().unwrap_or_default(),
            row.bytes.unwrap_or_default() as f64 / 1e6,
            row.memory.unwrap_or_default() as f64 / (1024.0 * 1024.0),
            row.instantiate.map_or_else(String::new, fmt),
            row.compile.map_or_else(String::new, fmt),
            row.limits,
        );
    }
    println!(
        "\n({iterations} calls per row after warm-up; memo off; compile without the code cache)"
    );
}

struct Row {
    name: String,
    stats: Stats,
    memory: Option<u64>,
    limits: String,
    bytes: Option<usize>,
    compile: Option<Duration>,
    instantiate: Option<Duration>,
}

fn place(plugin: &Plugin, context: &ObjectContext, object: &Value, targets: &[Target]) -> usize {
    plugin.place(context, object, targets).unwrap().len()
}

/// What the plugin does, natively: the object's JSON text parsed, its placement annotation
/// read as a selector, every target matched.
fn native_place(text: &str, targets: &[Target]) -> Vec<String> {
    let object: Value = serde_json::from_str(text).unwrap();
    let annotation = object["metadata"]["annotations"]["sync.ferry.dev/placement"]
        .as_str()
        .unwrap_or("region=us");
    let selector = selector::Selector::parse(annotation).unwrap();
    targets
        .iter()
        .filter(|t| selector.matches(|key| t.labels.get(key).map(String::as_str)))
        .map(|t| t.name.clone())
        .collect()
}

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn measure(iterations: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..iterations / 10 + 10 {
        f();
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    samples.sort();
    Stats {
        p50: samples[samples.len() / 2],
        p99: samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
    }
}

fn median_of(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut samples: Vec<Duration> = (0..n).map(|_| f()).collect();
    samples.sort();
    samples[n / 2]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// The Deployment of the golden case `annotation-selects-targets`.
fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "annotations": {
                "kcp.io/cluster": "2x8mfrq3b9tmwx1v",
                "sync.ferry.dev/placement": "region=eu"
            }
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
            }
        }
    })
}

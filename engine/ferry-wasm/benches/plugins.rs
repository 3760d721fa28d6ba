//! `cargo xtask bench plugins`: the cost of a Wasm transform next to the same logic in native
//! Rust. Prints a table; asserts nothing (timings belong in reports, not in tests).
//!
//! The native side compiles `plugins/default-transform/src/logic.rs`, the very file the
//! plugin is built from, so both sides run identical code.

#![allow(clippy::unwrap_used)]

#[path = "../../../plugins/default-transform/src/logic.rs"]
#[allow(dead_code)]
mod logic;

/// The SDK's lazily parsed object, compiled natively for the lazy path's native figure.
#[path = "../../../plugins/sdk/src/lazy.rs"]
#[allow(dead_code, unused_imports)]
mod lazy;

#[path = "support/encodings.rs"]
mod encodings;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use ferry_core::{ObjectContext, Target, TransformPolicy, validate};
use ferry_wasm::{PluginOptions, ReusedInstance, Runtime, RuntimeConfig};
use serde_json::{Value, json};

/// Counts live heap bytes, to measure what one memo entry holds.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

#[allow(unsafe_code)]
// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout as asked.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: allocated above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes `make` leaves allocated in what it returns.
fn retained<T>(make: impl FnOnce() -> T) -> (T, isize) {
    let before = LIVE.load(Ordering::Relaxed);
    let value = make();
    (value, LIVE.load(Ordering::Relaxed) - before)
}

fn main() {
    let iterations: usize = std::env::var("FERRY_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let path = match ferry_wasm::testing::component("default-transform") {
        Ok(path) => path,
        Err(missing) => {
            eprintln!("{missing}");
            std::process::exit(1);
        }
    };
    let bytes = std::fs::read(&path).unwrap();
    let object = deployment();
    let text = object.to_string();
    let context = ObjectContext {
        logical_cluster: "2x8mfrq3b9tmwx1v".into(),
        workspace_path: Some("root:team-a".into()),
        workspace_labels: Default::default(),
        workspace_annotations: Default::default(),
        namespace: "default".into(),
        downstream_namespace: "ferry-1a2b3c4d".into(),
    };
    let target = Target::new("cluster-1").label("region", "eu");
    let origin = logic::Origin {
        logical_cluster: &context.logical_cluster,
        workspace_path: context.workspace_path.as_deref(),
        downstream_namespace: &context.downstream_namespace,
    };
    let policy = TransformPolicy::default();

    // Setup costs, each measured on a fresh runtime so nothing is cached in memory.
    let compile = median_of(5, || {
        let runtime = Runtime::new(RuntimeConfig::default().max_instances(8)).unwrap();
        let started = Instant::now();
        wasmtime::component::Component::new(runtime.engine(), &bytes).unwrap();
        started.elapsed()
    });
    let cache_dir = std::env::temp_dir().join(format!("ferry-bench-cache-{}", std::process::id()));
    let cached_config = RuntimeConfig::default()
        .max_instances(8)
        .cache_dir(&cache_dir);
    Runtime::new(cached_config.clone())
        .unwrap()
        .load_bytes(&bytes, PluginOptions::default())
        .unwrap();
    let load_cached = median_of(5, || {
        let runtime = Runtime::new(cached_config.clone()).unwrap();
        let started = Instant::now();
        runtime
            .load_bytes(&bytes, PluginOptions::default())
            .unwrap();
        started.elapsed()
    });
    let _ = std::fs::remove_dir_all(&cache_dir);

    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    // The memo off: these rows measure calls (the memo is measured in the boundary table).
    let plugin = runtime
        .load_bytes(
            &bytes,
            PluginOptions::default()
                .name("default-transform")
                .memo_capacity(0),
        )
        .unwrap();

    // The results must agree before their timings mean anything.
    let native_out = logic::transform(object.clone(), &origin).unwrap();
    let wasm_out = plugin
        .transform(&context, &object, &target)
        .unwrap()
        .unwrap();
    assert_eq!(native_out, wasm_out, "native and Wasm transforms disagree");

    let native = measure(iterations, || {
        black_box(logic::transform(black_box(&object).clone(), &origin).unwrap());
    });
    let native_json = measure(iterations, || {
        let input = black_box(&object).to_string();
        let parsed: Value = serde_json::from_str(&input).unwrap();
        let out = logic::transform(parsed, &origin).unwrap().to_string();
        black_box(validate::transform(&out, &object, &context, &policy).unwrap());
    });
    let mut reused = ReusedInstance::new(&plugin).unwrap();
    let wasm_reused = measure(iterations, || {
        let input = black_box(&object).to_string();
        let out = reused
            .transform_json(&context, &input, &target)
            .unwrap()
            .unwrap();
        black_box(validate::transform(&out, &object, &context, &policy).unwrap());
    });
    let wasm_fresh = measure(iterations, || {
        black_box(
            plugin
                .transform(&context, black_box(&object), &target)
                .unwrap(),
        );
    });
    let instantiate = measure(iterations, || {
        plugin.instantiate_only().unwrap();
    });
    let instantiate_configure = measure(iterations, || {
        black_box(ReusedInstance::new(&plugin).unwrap());
    });
    let mut warm = ReusedInstance::new(&plugin).unwrap();
    let configure_again = measure(iterations, || {
        warm.configure_again().unwrap();
    });

    let base = native.p50;
    let base_json = native_json.p50;
    println!();
    println!(
        "Ferry plugin benchmark: default-transform on a {} byte Deployment, {iterations} calls each after warm-up",
        text.len()
    );
    println!("component {} bytes ({})", bytes.len(), path.display());
    println!();
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>9} {:>12}",
        "per object", "p50", "p99", "mean", "x native", "x native+JSON"
    );
    for (name, s) in [
        ("native Rust (Value in, Value out)", &native),
        ("native Rust + JSON text in/out + validation", &native_json),
        ("Wasm, reused instance (+ JSON, validation)", &wasm_reused),
        ("Wasm, fresh instance per call (engine path)", &wasm_fresh),
    ] {
        println!(
            "{:<44} {:>10} {:>10} {:>10} {:>8.2}x {:>12.2}x",
            name,
            fmt(s.p50),
            fmt(s.p99),
            fmt(s.mean),
            ratio(s.p50, base),
            ratio(s.p50, base_json)
        );
    }
    println!();
    println!("{:<44} {:>10} {:>10} {:>10}", "setup", "p50", "p99", "mean");
    for (name, s) in [
        ("instantiate (InstancePre, pooling)", &instantiate),
        ("instantiate + configure", &instantiate_configure),
        ("configure again, same instance", &configure_again),
    ] {
        println!(
            "{:<44} {:>10} {:>10} {:>10}",
            name,
            fmt(s.p50),
            fmt(s.p99),
            fmt(s.mean)
        );
    }
    println!(
        "{:<44} {:>10}",
        "compile component (median of 5)",
        fmt(compile)
    );
    println!(
        "{:<44} {:>10}",
        "load from compiled-code cache (median of 5)",
        fmt(load_cached)
    );
    println!();
    host_steps(&object, &context, &origin, iterations);
    boundary_cost(&runtime, &context, &object, &origin, iterations);
    encoding_cost(&runtime, &context, &object, &origin, iterations);
}

/// The transform step for one object on 3 targets with each boundary encoding of the probe
/// fixture, beside native Rust and the engine's v0.2.0 path: what a contract version would
/// gain by changing how objects cross.
fn encoding_cost(
    runtime: &Runtime,
    context: &ObjectContext,
    object: &Value,
    origin: &logic::Origin<'_>,
    iterations: usize,
) {
    let path = match ferry_wasm::testing::component("encoding-probe") {
        Ok(path) => path,
        Err(missing) => {
            eprintln!("{missing}");
            std::process::exit(1);
        }
    };
    let probe =
        encodings::Encodings::load(runtime.engine(), &std::fs::read(path).unwrap(), context);
    let v2 = runtime
        .load_file(
            ferry_wasm::testing::component("contract-v0-2-0").unwrap(),
            PluginOptions::default()
                .limits(ferry_wasm::Limits::default().deadline(Duration::from_secs(10)))
                .memo_capacity(0),
        )
        .unwrap();
    let sdk = runtime
        .load_file(
            ferry_wasm::testing::component("default-transform").unwrap(),
            PluginOptions::default()
                .limits(ferry_wasm::Limits::default().deadline(Duration::from_secs(10)))
                .memo_capacity(0),
        )
        .unwrap();
    // Another build of a transform plugin beside them (e.g. the SDK before a change):
    // FERRY_BENCH_COMPARE=<path to a .wasm>.
    let compare = std::env::var_os("FERRY_BENCH_COMPARE").map(|path| {
        runtime
            .load_file(
                path,
                PluginOptions::default()
                    .limits(ferry_wasm::Limits::default().deadline(Duration::from_secs(10)))
                    .memo_capacity(0),
            )
            .unwrap()
    });
    let targets: Vec<Target> = ["cluster-1", "cluster-2", "cluster-3"]
        .into_iter()
        .map(Target::new)
        .collect();
    let shared = std::sync::Arc::new(object.clone());
    let steps: [(&str, encodings::Step); 4] = [
        ("JSON text (v0.2.0's encoding)", encodings::Encodings::json),
        ("MessagePack (list<u8>)", encodings::Encodings::msgpack),
        ("CBOR (list<u8>)", encodings::Encodings::cbor),
        (
            "host resource, answered with edits",
            encodings::Encodings::resource,
        ),
    ];
    // Every encoding must give the native answer before its timing means anything.
    let native = logic::transform(object.clone(), origin).unwrap();
    let lazy_out: Value =
        serde_json::from_str(&native_lazy_transform(&object.to_string(), origin)).unwrap();
    assert_eq!(
        lazy_out, native,
        "the lazy path disagrees with native Rust on Value"
    );
    for (name, step) in &steps {
        for out in step(&probe, object, &shared, targets.len()) {
            assert_eq!(out, native, "{name} disagrees with native Rust");
        }
    }

    let mut rows: Vec<Row<'_>> = vec![
        (
            "native Rust on Value, 3 targets (the 1x)",
            Box::new(|| {
                for _ in &targets {
                    black_box(logic::transform(black_box(object).clone(), origin).unwrap());
                }
            }),
        ),
        (
            "engine: v0.2.0 transform_all, memo off",
            Box::new(|| {
                black_box(
                    v2.transform_all(context, black_box(object), &targets)
                        .unwrap(),
                );
            }),
        ),
        (
            "native Rust, lazy path + parse (one Value shared)",
            Box::new(|| {
                // What the plugin does, natively: text in, `LazyObject`, text out once for
                // every target; then the host's parse of that text into the one `Value`
                // every target shares.
                let text = serde_json::to_string(black_box(object)).unwrap();
                let out = native_lazy_transform(&text, origin);
                let value: Value = serde_json::from_str(&out).unwrap();
                black_box(value);
            }),
        ),
        (
            "engine: default-transform (SDK), memo off",
            Box::new(|| {
                black_box(
                    sdk.transform_all(context, black_box(object), &targets)
                        .unwrap(),
                );
            }),
        ),
    ];
    for (name, step) in steps {
        let (probe, shared, n) = (&probe, &shared, targets.len());
        rows.push((
            name,
            Box::new(move || {
                black_box(step(probe, black_box(object), shared, n));
            }),
        ));
    }
    if let Some(other) = &compare {
        rows.push((
            "engine: FERRY_BENCH_COMPARE, memo off",
            Box::new(|| {
                black_box(
                    other
                        .transform_all(context, black_box(object), &targets)
                        .unwrap(),
                );
            }),
        ));
    }
    let rows = measure_interleaved(iterations, rows);
    print_table(
        "Encodings: one object on 3 targets, fresh instance, output checked (probe fixture)",
        &rows,
    );

    // The host's half of each encoding, alone.
    let text = serde_json::to_string(object).unwrap();
    let packed = rmp_serde::to_vec(object).unwrap();
    let mut cbor = Vec::new();
    ciborium::into_writer(object, &mut cbor).unwrap();
    let host = [
        (
            "JSON: encode",
            measure(iterations, || {
                black_box(serde_json::to_string(black_box(object)).unwrap());
            }),
        ),
        (
            "JSON: decode into a Value",
            measure(iterations, || {
                black_box(serde_json::from_str::<Value>(black_box(&text)).unwrap());
            }),
        ),
        (
            "MessagePack: encode",
            measure(iterations, || {
                black_box(rmp_serde::to_vec(black_box(object)).unwrap());
            }),
        ),
        (
            "MessagePack: decode into a Value",
            measure(iterations, || {
                black_box(rmp_serde::from_slice::<Value>(black_box(&packed)).unwrap());
            }),
        ),
        (
            "CBOR: encode",
            measure(iterations, || {
                let mut out = Vec::with_capacity(4096);
                ciborium::into_writer(black_box(object), &mut out).unwrap();
                black_box(out);
            }),
        ),
        (
            "CBOR: decode into a Value",
            measure(iterations, || {
                black_box(ciborium::from_reader::<Value, _>(black_box(cbor.as_slice())).unwrap());
            }),
        ),
    ];
    println!(
        "Host side of each encoding ({} bytes JSON, {} MessagePack, {} CBOR)",
        text.len(),
        packed.len(),
        cbor.len()
    );
    println!();
    println!("{:<48} {:>10} {:>10} {:>10}", "step", "p50", "p99", "mean");
    for (name, s) in &host {
        println!(
            "{:<48} {:>10} {:>10} {:>10}",
            name,
            fmt(s.p50),
            fmt(s.p99),
            fmt(s.mean)
        );
    }
    println!();
}

/// `default-transform`'s lazy path (plugins/default-transform/src/lib.rs) natively: only
/// `kind` and `metadata` are parsed, every other member is written back as received.
fn native_lazy_transform(text: &str, origin: &logic::Origin<'_>) -> String {
    let mut object = lazy::LazyObject::parse(text).unwrap();
    let kind = object.get::<Value>("kind").unwrap();
    if logic::needs_external_ips_check(kind.as_ref().and_then(Value::as_str), false) {
        let spec = object.get::<Value>("spec").unwrap();
        logic::check_spec_external_ips(spec.as_ref()).unwrap();
    }
    object.remove("status");
    let Some(Value::Object(mut metadata)) = object.take("metadata").unwrap() else {
        panic!("no metadata");
    };
    logic::transform_metadata(&mut metadata, origin).unwrap();
    object.insert("metadata", Value::Object(metadata));
    object.to_json().unwrap()
}

/// What the host side of one call costs, step by step: where the JSON time goes.
fn host_steps(
    object: &Value,
    context: &ObjectContext,
    origin: &logic::Origin<'_>,
    iterations: usize,
) {
    let policy = TransformPolicy::default();
    let output = logic::transform(object.clone(), origin)
        .unwrap()
        .to_string();
    let digest_of = |text: &str| {
        use sha2::Digest;
        sha2::Sha256::digest(text.as_bytes())
    };
    let rows = [
        (
            "serialise the object (Value's Display, before)",
            measure(iterations, || {
                black_box(black_box(object).to_string());
            }),
        ),
        (
            "serialise the object (serde_json::to_string)",
            measure(iterations, || {
                black_box(serde_json::to_string(black_box(object)).unwrap());
            }),
        ),
        (
            "SHA-256 of the object's text (memo key)",
            measure(iterations, || {
                black_box(digest_of(black_box(&output)));
            }),
        ),
        (
            "parse the output into a Value",
            measure(iterations, || {
                black_box(serde_json::from_str::<Value>(black_box(&output)).unwrap());
            }),
        ),
        (
            "validate the output (parse + checks)",
            measure(iterations, || {
                black_box(
                    validate::transform(black_box(&output), object, context, &policy).unwrap(),
                );
            }),
        ),
        (
            "clone the object Value",
            measure(iterations, || {
                black_box(black_box(object).clone());
            }),
        ),
    ];
    let (kept, bytes) = retained(|| serde_json::from_str::<Value>(&output).unwrap());
    drop(kept);
    println!("Host steps per call ({} byte output)", output.len());
    println!();
    println!("{:<48} {:>10} {:>10} {:>10}", "step", "p50", "p99", "mean");
    for (name, s) in &rows {
        println!(
            "{:<48} {:>10} {:>10} {:>10}",
            name,
            fmt(s.p50),
            fmt(s.p99),
            fmt(s.mean)
        );
    }
    println!("heap held by the parsed output (one memo entry): {bytes} bytes");
    println!();
}

/// The engine's transform step for one object placed on three targets, per contract version.
/// Both fixtures run the same transformation (`tests/plugins/frozen-v0-1-0/src/logic.rs`),
/// so the difference is the boundary: serialisations, instances and parses.
fn boundary_cost(
    runtime: &Runtime,
    context: &ObjectContext,
    object: &Value,
    origin: &logic::Origin<'_>,
    iterations: usize,
) {
    let load = |name: &str, memo: usize| match ferry_wasm::testing::component(name) {
        // A loaded machine must not turn a slow sample into a failed run.
        Ok(path) => runtime
            .load_file(
                path,
                PluginOptions::default()
                    .limits(ferry_wasm::Limits::default().deadline(Duration::from_secs(10)))
                    .memo_capacity(memo),
            )
            .unwrap(),
        Err(missing) => {
            eprintln!("{missing}");
            std::process::exit(1);
        }
    };
    // Rows that measure calls run without the memo; the memo rows say so.
    let v1 = load("frozen-v0-1-0", 0);
    let v2 = load("contract-v0-2-0", 0);
    let v2_memo = load("contract-v0-2-0", 1024);
    let targets: Vec<Target> = ["cluster-1", "cluster-2", "cluster-3"]
        .into_iter()
        .map(Target::new)
        .collect();
    // Same logic, same answers.
    let per_target: Vec<_> = targets
        .iter()
        .map(|t| v1.transform(context, object, t).unwrap())
        .collect();
    let all: Vec<_> = v2
        .transform_all(context, object, &targets)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.unwrap().map(std::sync::Arc::unwrap_or_clone))
        .collect();
    assert_eq!(per_target, all, "v0.1.0 and v0.2.0 fixtures disagree");

    // Every object of a changing stream differs in its resourceVersion, as after an update.
    let mut version = 0u64;
    let mut changed = object.clone();
    // Rows run interleaved (a few calls of each in turn), so that a machine whose load changes
    // during the run slows every row alike.
    let rows: Vec<Row<'_>> = vec![
        (
            "native Rust on Value, 3 targets (the 1x)",
            Box::new(|| {
                for _ in &targets {
                    black_box(logic::transform(black_box(object).clone(), origin).unwrap());
                }
            }),
        ),
        (
            "before: v0.1.0, transform per target",
            Box::new(|| {
                for t in &targets {
                    black_box(v1.transform(context, black_box(object), t).unwrap());
                }
            }),
        ),
        (
            "v0.1.0, transform_all (object serialised once)",
            Box::new(|| {
                black_box(
                    v1.transform_all(context, black_box(object), &targets)
                        .unwrap(),
                );
            }),
        ),
        (
            "after: v0.2.0, transform_all (one call)",
            Box::new(|| {
                black_box(
                    v2.transform_all(context, black_box(object), &targets)
                        .unwrap(),
                );
            }),
        ),
        (
            "v0.2.0, memo on, object changed (a miss)",
            Box::new(|| {
                version += 1;
                changed["metadata"]["resourceVersion"] = Value::String(version.to_string());
                black_box(
                    v2_memo
                        .transform_all(context, black_box(&changed), &targets)
                        .unwrap(),
                );
            }),
        ),
        (
            "v0.2.0, memo on, object unchanged (a hit)",
            Box::new(|| {
                black_box(
                    v2_memo
                        .transform_all(context, black_box(object), &targets)
                        .unwrap(),
                );
            }),
        ),
        (
            "v0.1.0, one target",
            Box::new(|| {
                black_box(
                    v1.transform(context, black_box(object), &targets[0])
                        .unwrap(),
                );
            }),
        ),
        (
            "v0.2.0, one target",
            Box::new(|| {
                black_box(
                    v2.transform(context, black_box(object), &targets[0])
                        .unwrap(),
                );
            }),
        ),
    ];
    let rows = measure_interleaved(iterations, rows);
    print_table(
        "Boundary cost: one object on 3 targets (same transformation in both fixtures)",
        &rows,
    );
}

/// Prints measured rows under `title`, each as a ratio of the first row's p50.
fn print_table(title: &str, rows: &[(&str, Stats)]) {
    println!("{title}");
    println!();
    println!(
        "{:<48} {:>10} {:>10} {:>10} {:>9}",
        "transform step per object", "p50", "p99", "mean", "x native"
    );
    let base = rows[0].1.p50;
    for (name, s) in rows {
        println!(
            "{:<48} {:>10} {:>10} {:>10} {:>8.2}x",
            name,
            fmt(s.p50),
            fmt(s.p99),
            fmt(s.mean),
            ratio(s.p50, base)
        );
    }
    println!();
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn measure(iterations: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..iterations / 10 + 10 {
        f();
    }
    let samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    stats(samples)
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let total: Duration = samples.iter().sum();
    Stats {
        p50: samples[samples.len() / 2],
        p99: samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
        mean: total / u32::try_from(samples.len()).unwrap(),
    }
}

/// A named benchmark row: one call per invocation.
type Row<'a> = (&'a str, Box<dyn FnMut() + 'a>);

/// [`measure`] for several rows at once, interleaved in rounds of ten calls per row.
fn measure_interleaved<'a>(iterations: usize, mut rows: Vec<Row<'a>>) -> Vec<(&'a str, Stats)> {
    for (_, f) in &mut rows {
        for _ in 0..iterations / 10 + 10 {
            f();
        }
    }
    let mut samples: Vec<Vec<Duration>> = rows.iter().map(|_| Vec::new()).collect();
    for _ in 0..iterations.div_ceil(10) {
        for ((_, f), samples) in rows.iter_mut().zip(&mut samples) {
            for _ in 0..10 {
                let started = Instant::now();
                f();
                samples.push(started.elapsed());
            }
        }
    }
    rows.into_iter()
        .zip(samples)
        .map(|((name, _), samples)| (name, stats(samples)))
        .collect()
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

/// A Deployment of about 4 KB as kubectl would store it: labels, annotations, managed
/// fields, two containers with env, resources and probes.
fn deployment() -> Value {
    let container = |name: &str, image: &str, port: u16| {
        json!({
            "name": name,
            "image": image,
            "ports": [{"containerPort": port, "name": "http", "protocol": "TCP"}],
            "env": [
                {"name": "LOG_LEVEL", "value": "info"},
                {"name": "REGION", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['topology.kubernetes.io/region']"}}},
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "FEATURE_FLAGS", "value": "search,checkout,recommendations"}
            ],
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 5, "failureThreshold": 3},
            "livenessProbe": {"httpGet": {"path": "/livez", "port": port}, "initialDelaySeconds": 10, "periodSeconds": 10},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true}],
            "imagePullPolicy": "IfNotPresent"
        })
    };
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "storefront",
            "namespace": "shop",
            "uid": "0b6f9d52-3a57-4c3e-9a0e-2f5d8c1e7a11",
            "resourceVersion": "918273",
            "generation": 7,
            "creationTimestamp": "2026-05-01T10:00:00Z",
            "labels": {"app": "storefront", "tier": "frontend", "team": "shop", "app.kubernetes.io/version": "2.14.1"},
            "annotations": {
                "kcp.io/cluster": "2x8mfrq3b9tmwx1v",
                "sync.ferry.dev/placement": "region in (eu, us)",
                "deployment.kubernetes.io/revision": "7",
                "team.example.com/oncall": "shop-oncall@example.com"
            },
            "finalizers": ["sync.ferry.dev/cleanup"],
            "managedFields": [{
                "manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "apps/v1",
                "time": "2026-05-01T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:team": {}, "f:tier": {}}},
                             "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {"f:spec": {"f:containers": {}}}}}
            }]
        },
        "spec": {
            "replicas": 6,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {"app": "storefront"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "storefront", "tier": "frontend"},
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"}},
                "spec": {
                    "serviceAccountName": "storefront",
                    "initContainers": [{
                        "name": "migrate",
                        "image": "registry.example.com/shop/storefront-migrations:2.14.1",
                        "command": ["/bin/migrate", "--database", "$(DATABASE_URL)", "--wait"],
                        "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]
                    }],
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        container("web", "registry.example.com/shop/storefront:2.14.1", 8080),
                        container("metrics-sidecar", "registry.example.com/platform/metrics-proxy:1.3.0", 9090)
                    ],
                    "volumes": [{"name": "config", "configMap": {"name": "storefront-config"}}],
                    "nodeSelector": {"kubernetes.io/os": "linux", "node.example.com/pool": "general"},
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "shop", "effect": "NoSchedule"}],
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": {"app": "storefront"}}
                    }],
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": {"app": "storefront"}}}
                    }]}}
                }
            }
        },
        "status": {"observedGeneration": 7, "replicas": 6, "readyReplicas": 6, "availableReplicas": 6, "updatedReplicas": 6}
    })
}

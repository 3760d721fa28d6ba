//! Each sandbox limit proven against a hostile plugin built from `tests/plugins/`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ferry_core::{Hook, validate::OutputError};
use ferry_wasm::{CallError, ErrorKind, Limits, PluginOptions};

#[test]
fn an_infinite_loop_is_stopped_within_twice_the_deadline() {
    let runtime = runtime();
    let deadline = Duration::from_millis(300);
    let plugin = load(
        &runtime,
        "hostile-loop",
        Limits::default().deadline(deadline),
    );

    let started = Instant::now();
    let result = plugin.transform(&context(), &deployment(), &targets()[0]);
    let elapsed = started.elapsed();

    assert!(
        matches!(
            result,
            Err(CallError::DeadlineExceeded {
                hook: Hook::Transform,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(elapsed >= deadline, "stopped early, after {elapsed:?}");
    assert!(
        elapsed < deadline * 2,
        "took {elapsed:?} for a {deadline:?} deadline"
    );
}

#[test]
fn a_plugin_keeps_serving_calls_after_it_timed_out() {
    let runtime = runtime();
    let plugin = load(&runtime, "hostile-loop", short(100));
    for _ in 0..2 {
        let looped = plugin.place(&context(), &deployment(), &targets());
        assert_eq!(
            looped.map_err(|e| e.kind()).err(),
            Some(ErrorKind::DeadlineExceeded)
        );
        // The same handle, a fresh instance: the hook that behaves still works.
        let status = plugin.aggregate_status(&context(), &deployment(), &[]);
        assert_eq!(
            status.ok().flatten(),
            Some(serde_json::json!({"alive": true}))
        );
    }
}

#[test]
fn a_one_gibibyte_allocation_is_stopped_by_the_memory_cap() {
    let runtime = runtime();
    let cap = 32 * 1024 * 1024;
    let plugin = load(
        &runtime,
        "hostile-memory-bomb",
        Limits::default().memory(cap),
    );

    let result = plugin.transform(&context(), &deployment(), &targets()[0]);

    assert!(
        matches!(result, Err(CallError::MemoryExhausted { limit, .. }) if limit == cap),
        "{result:?}"
    );
    // Memory is per instance: the next call starts from nothing and works.
    assert_eq!(
        plugin.place(&context(), &deployment(), &targets()).ok(),
        Some(vec!["cluster-1".to_owned(), "cluster-2".to_owned()])
    );
}

#[test]
fn a_panic_is_reported_as_a_trap_and_the_runtime_carries_on() {
    let runtime = runtime();
    let panics = load(&runtime, "hostile-panic", Limits::default());
    let result = panics.transform(&context(), &deployment(), &targets()[0]);
    assert!(
        matches!(&result, Err(CallError::Trap { plugin, hook: Hook::Transform, .. }) if plugin == "hostile-panic"),
        "{result:?}"
    );

    // Other plugins of the same runtime, and the same plugin's other hooks, are unaffected.
    let transform = load(&runtime, "default-transform", Limits::default());
    let out = transform.transform(&context(), &deployment(), &targets()[0]);
    assert!(matches!(out, Ok(Some(_))), "{out:?}");
    assert!(panics.place(&context(), &deployment(), &targets()).is_ok());
}

#[test]
fn garbage_output_is_refused_by_validation() {
    let runtime = runtime();
    let plugin = load(&runtime, "hostile-garbage", Limits::default());

    let placed = plugin.place(&context(), &deployment(), &targets());
    assert!(
        matches!(
            placed,
            Err(CallError::InvalidOutput {
                source: OutputError::UnknownTarget(_),
                ..
            })
        ),
        "{placed:?}"
    );
    let transformed = plugin.transform(&context(), &deployment(), &targets()[0]);
    assert!(
        matches!(
            transformed,
            Err(CallError::InvalidOutput {
                source: OutputError::NotJson(_),
                ..
            })
        ),
        "{transformed:?}"
    );
    let status = plugin.aggregate_status(&context(), &deployment(), &[]);
    assert!(
        matches!(
            status,
            Err(CallError::InvalidOutput {
                source: OutputError::NotAnObject,
                ..
            })
        ),
        "{status:?}"
    );
}

#[test]
fn output_in_another_namespace_is_refused() {
    let runtime = runtime();
    let plugin = load(&runtime, "hostile-escape", Limits::default());
    let result = plugin.transform(&context(), &deployment(), &targets()[0]);
    assert!(
        matches!(
            &result,
            Err(CallError::InvalidOutput { source: OutputError::WrongNamespace { found: Some(ns), .. }, .. })
                if ns == "kube-system"
        ),
        "{result:?}"
    );
}

#[test]
fn a_hook_the_component_does_not_export_is_a_typed_error() {
    let runtime = runtime();
    let plugin = load(&runtime, "wasi-importer", Limits::default());
    let result = plugin.transform(&context(), &deployment(), &targets()[0]);
    assert!(
        matches!(
            result,
            Err(CallError::HookNotExported {
                hook: Hook::Transform,
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn a_plugin_error_arrives_as_the_typed_wit_variant() {
    let runtime = runtime();
    // default-transform does not implement `place`: the SDK answers `unsupported`.
    let plugin = load(&runtime, "default-transform", Limits::default());
    let result = plugin.place(&context(), &deployment(), &targets());
    assert_eq!(
        result.map_err(|e| e.kind()).err(),
        Some(ErrorKind::Unsupported)
    );
}

#[test]
fn a_rejected_configuration_fails_the_load_not_the_first_object() {
    let runtime = runtime();
    let options = PluginOptions::default().config(serde_json::json!({"count": 0}));
    let result = runtime.load_file(component("label-placement"), options);
    let Err(ferry_wasm::LoadError::Config { source, .. }) = result else {
        panic!(
            "expected a configuration error, got {:?}",
            result.map(|p| p.name().to_owned())
        );
    };
    assert_eq!(source.kind(), ErrorKind::InvalidConfig);
}

#[test]
fn the_plugin_handle_is_send_sync_and_clone() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    assert_shareable::<ferry_wasm::Plugin>();
    assert_shareable::<ferry_wasm::Runtime>();
}

#[test]
fn calls_from_many_threads_share_one_handle() {
    let runtime = runtime();
    let plugin = load(&runtime, "default-transform", Limits::default());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let plugin = plugin.clone();
            std::thread::spawn(move || {
                (0..25).all(|_| {
                    plugin
                        .transform(&context(), &deployment(), &targets()[1])
                        .is_ok()
                })
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap_or(false));
    }
}

#[test]
fn the_observer_sees_each_call_with_its_outcome_and_peak_memory() {
    use std::sync::{Arc, Mutex};
    let runtime = runtime();
    type Seen = Vec<(Hook, Option<ErrorKind>, u64)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let sink = Arc::clone(&seen);
    let options = PluginOptions::default()
        .limits(Limits::default().memory(32 * 1024 * 1024))
        .observer(move |r| {
            if let Ok(mut v) = sink.lock() {
                v.push((r.hook, r.error, r.peak_memory));
            }
        });
    let plugin = runtime
        .load_file(component("hostile-memory-bomb"), options)
        .expect("loads");
    let _ = plugin.place(&context(), &deployment(), &targets());
    let _ = plugin.transform(&context(), &deployment(), &targets()[0]);

    let seen = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!((seen[0].0, seen[0].1), (Hook::Place, None));
    assert!(seen[0].2 > 0, "a call reports the memory it used");
    assert_eq!(
        (seen[1].0, seen[1].1),
        (Hook::Transform, Some(ErrorKind::MemoryExhausted))
    );
}

//! The deterministic WASI granted to guests that carry a language runtime, proven with
//! `tests/plugins/wasi-importer` (a Rust guest calling WASI as CPython or SpiderMonkey do):
//! constants where a runtime reads the world, errors where it would reach out of the
//! sandbox, refusal at load of anything else, and the same deadline and memory cap as every
//! guest.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ferry_core::Hook;
use ferry_wasm::{
    CallError, GuestKind, LimitOverrides, Limits, LoadError, Plugin, PluginOptions, Runtime,
};
use serde_json::Value;

/// The importer with the memo off, so that every call runs an instance.
fn importer(runtime: &Runtime, limits: impl Into<LimitOverrides>) -> Plugin {
    runtime
        .load_file(
            component("wasi-importer"),
            PluginOptions::default().limits(limits).memo_capacity(0),
        )
        .unwrap_or_else(|e| panic!("wasi-importer loads: {e:?}"))
}

fn probing(probe: &str) -> Value {
    let mut object = deployment();
    object["metadata"]["annotations"]["probe"] = probe.into();
    object
}

/// What the importer's probe saw: it answers with a `failed` error carrying it.
// The engine's own error type, returned as the engine returns it.
#[allow(clippy::result_large_err)]
fn probe(plugin: &Plugin, probe: &str) -> Result<String, CallError> {
    match plugin.place(&context(), &probing(probe), &targets()) {
        Err(CallError::Plugin { source, .. }) => Ok(source.message),
        Ok(chosen) => panic!("the importer places nothing, got {chosen:?}"),
        Err(e) => Err(e),
    }
}

#[test]
fn clocks_random_numbers_and_environment_read_the_same_in_every_instance() {
    let runtime = runtime();
    let plugin = importer(&runtime, LimitOverrides::default());
    let first = probe(&plugin, "read").expect("the probe runs");
    assert!(
        first.starts_with("wall=946684800.0 monotonic=0 random="),
        "{first}"
    );
    assert!(
        first.ends_with("env=0 args=0 stdout=true"),
        "no environment, no arguments, stdout writable and discarded: {first}"
    );
    // Every call is a fresh instance, and another runtime (another process or host) is the
    // same: the "random" numbers and the clocks read alike.
    assert_eq!(probe(&plugin, "read").expect("second call"), first);
    let elsewhere = importer(&common::runtime(), LimitOverrides::default());
    assert_eq!(probe(&elsewhere, "read").expect("another runtime"), first);
}

#[test]
fn there_is_no_directory_to_open_a_file_in_and_no_network() {
    let runtime = runtime();
    let plugin = importer(&runtime, LimitOverrides::default());
    assert_eq!(probe(&plugin, "files").expect("files probe"), "preopened=0");
    let sockets = probe(&plugin, "sockets").expect("sockets probe: errors, not a trap");
    // Errors the guest reads, not traps: TCP is access-denied, a lookup finds nothing.
    assert!(
        sockets.starts_with("tcp=Err(\"ErrorCode { code: 1, name: \\\"access-denied\\\""),
        "{sockets}"
    );
    assert!(
        sockets.contains(
            "lookup=Err(\"ErrorCode { code: 20, name: \\\"permanent-resolver-failure\\\""
        ),
        "{sockets}"
    );
}

#[test]
fn waiting_on_a_clock_fails_the_call_as_a_denied_capability() {
    let runtime = runtime();
    let plugin = importer(&runtime, LimitOverrides::default());
    let result = probe(&plugin, "sleep");
    assert!(
        matches!(&result, Err(CallError::CapabilityDenied { hook: Hook::Place, import, .. })
            if import == "wasi:clocks/monotonic-clock@0.2.12#subscribe-duration"),
        "{result:?}"
    );
}

#[test]
fn the_deadline_stops_a_guest_spinning_on_the_clock() {
    let runtime = runtime();
    let deadline = Duration::from_millis(200);
    let plugin = importer(&runtime, Limits::default().deadline(deadline));
    let started = Instant::now();
    let result = probe(&plugin, "spin");
    assert!(
        matches!(result, Err(CallError::DeadlineExceeded { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < deadline * 4, "{:?}", started.elapsed());
}

#[test]
fn the_memory_cap_holds_for_a_guest_linked_with_wasi() {
    let runtime = runtime();
    let plugin = importer(&runtime, Limits::default().memory(16 * 1024 * 1024));
    let result = probe(&plugin, "grow");
    assert!(
        matches!(result, Err(CallError::MemoryExhausted { limit, .. }) if limit == 16 * 1024 * 1024),
        "{result:?}"
    );
    // Filling 32 MiB takes a while on a loaded machine: the deadline is not under test.
    let roomy = importer(
        &runtime,
        Limits::default()
            .memory(64 * 1024 * 1024)
            .deadline(Duration::from_secs(20)),
    );
    assert_eq!(
        probe(&roomy, "grow").expect("fits"),
        format!("filled {}", 32 << 20)
    );
}

/// Imports `wasi:keyvalue`, which Ferry does not grant, beside a `ferry:sync` export. Its
/// start function would trap if it were ever instantiated: the refusal must come first.
const KEYVALUE_IMPORTER: &str = r#"
(component
  (import "wasi:keyvalue/store@0.2.0" (instance $kv (export "get" (func))))
  (core module $m
    (func $boom unreachable)
    (start $boom)
    (func (export "place")))
  (core instance $i (instantiate $m))
  (func $place (canon lift (core func $i "place")))
  (instance $exports (export "place" (func $place)))
  (export "ferry:sync/placement@0.1.0" (instance $exports)))
"#;

#[test]
fn an_import_outside_the_granted_set_is_refused_at_load_naming_it() {
    let runtime = runtime();
    let bytes = wat::parse_str(KEYVALUE_IMPORTER).expect("valid WAT");
    let result = runtime.load_bytes(&bytes, PluginOptions::default().name("kv"));
    let err = result.err().expect("refused");
    assert!(
        matches!(&err, LoadError::ImportNotGranted { import, .. } if import == "wasi:keyvalue/store@0.2.0"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("plugin kv imports wasi:keyvalue/store@0.2.0, which Ferry does not grant"),
        "{err}"
    );
}

#[test]
fn limits_not_set_take_the_defaults_of_the_guest_kind() {
    let runtime = runtime();
    let wasi = importer(&runtime, LimitOverrides::default());
    assert_eq!(wasi.limits(), Limits::for_guest(GuestKind::LanguageRuntime));
    let rust = load(&runtime, "default-transform", Limits::default());
    assert_eq!(rust.limits(), Limits::for_guest(GuestKind::Compact));
    let rust = runtime
        .load_file(component("default-transform"), PluginOptions::default())
        .expect("loads");
    assert_eq!(rust.limits(), Limits::default());
    // One limit given: the other is the kind's default.
    let deadline = Duration::from_millis(40);
    let wasi = importer(&runtime, LimitOverrides::default().deadline(deadline));
    assert_eq!(
        wasi.limits(),
        Limits::for_guest(GuestKind::LanguageRuntime).deadline(deadline)
    );
}

/// A log destination for one test: what the runtime logs, as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a guest prints is not lost: each line becomes a log line of the plugin (stdout at
/// info), and printing changes nothing about the call (the probe's answer is the same).
#[test]
fn what_a_guest_prints_becomes_a_log_line_of_the_plugin() {
    let runtime = runtime();
    let plugin = importer(&runtime, LimitOverrides::default());
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let answer = tracing::subscriber::with_default(subscriber, || {
        probe(&plugin, "read").expect("the probe runs")
    });
    assert!(answer.ends_with("stdout=true"), "{answer}");
    let text = String::from_utf8(logs.0.lock().expect("logs lock").clone()).expect("UTF-8");
    let line = text
        .lines()
        .find(|line| line.contains("probing"))
        .unwrap_or_else(|| panic!("the printed line is not logged:\n{text}"));
    for part in ["INFO", "wasi-importer", "place", "stdout"] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
}

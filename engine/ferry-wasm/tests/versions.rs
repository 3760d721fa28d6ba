//! The contract version is checked from the component's type, before instantiation.

mod common;

use ferry_wasm::{LoadError, PluginOptions};

/// A component exporting `ferry:sync/transform@0.2.0` whose start function would trap if
/// it were ever instantiated: the refusal must come first.
const FUTURE_VERSION: &str = r#"
(component
  (core module $m
    (func $boom unreachable)
    (start $boom)
    (func (export "transform")))
  (core instance $i (instantiate $m))
  (func $transform (canon lift (core func $i "transform")))
  (instance $exports (export "transform" (func $transform)))
  (export "ferry:sync/transform@0.2.0" (instance $exports)))
"#;

const NOT_A_PLUGIN: &str = r#"
(component
  (core module $m (func (export "run")))
  (core instance $i (instantiate $m))
  (func $run (canon lift (core func $i "run")))
  (export "run" (func $run)))
"#;

#[test]
fn a_component_of_an_unknown_contract_version_is_refused_before_instantiation() {
    let runtime = common::runtime();
    let bytes = wat::parse_str(FUTURE_VERSION).expect("valid WAT");
    let result = runtime.load_bytes(&bytes, PluginOptions::default().name("future"));
    match result {
        Err(LoadError::UnsupportedWitVersion {
            found, supported, ..
        }) => {
            assert_eq!(found, "ferry:sync/transform@0.2.0");
            assert_eq!(supported, "0.1.0");
        }
        other => panic!("expected UnsupportedWitVersion, got {:?}", other.err()),
    }
}

#[test]
fn a_component_without_ferry_hooks_is_refused() {
    let runtime = common::runtime();
    let bytes = wat::parse_str(NOT_A_PLUGIN).expect("valid WAT");
    let result = runtime.load_bytes(&bytes, PluginOptions::default());
    assert!(
        matches!(result, Err(LoadError::NotAPlugin { .. })),
        "{:?}",
        result.err()
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let runtime = common::runtime();
    let result = runtime.load_bytes(b"\0asm\x01\0\0\0garbage", PluginOptions::default());
    assert!(
        matches!(result, Err(LoadError::Compile { .. })),
        "{:?}",
        result.err()
    );
}

#[test]
fn compiled_code_is_cached_on_disk_and_reused() {
    let dir = std::env::temp_dir().join(format!("ferry-wasm-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = ferry_wasm::RuntimeConfig::default()
        .max_instances(4)
        .cache_dir(&dir);
    let path = common::component("default-transform");

    let first = ferry_wasm::Runtime::new(config.clone()).expect("runtime");
    first
        .load_file(&path, PluginOptions::default())
        .expect("loads");
    let entries: Vec<_> = std::fs::read_dir(&dir).expect("cache dir").collect();
    assert_eq!(entries.len(), 1, "one compiled entry");

    // A second runtime (a restart) loads the cached code and still works.
    let second = ferry_wasm::Runtime::new(config).expect("runtime");
    let plugin = second
        .load_file(&path, PluginOptions::default())
        .expect("loads from cache");
    let out = plugin.transform(
        &common::context(),
        &common::deployment(),
        &common::targets()[0],
    );
    assert!(matches!(out, Ok(Some(_))), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

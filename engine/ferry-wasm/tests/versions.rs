//! The contract version is checked from the component's type, before instantiation.

mod common;

use ferry_wasm::{LoadError, PluginOptions};

/// A component exporting `ferry:sync/transform@0.3.0` whose start function would trap if
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
  (export "ferry:sync/transform@0.3.0" (instance $exports)))
"#;

/// Exports transform of one version and placement of another.
const MIXED_VERSIONS: &str = r#"
(component
  (core module $m (func (export "f")))
  (core instance $i (instantiate $m))
  (func $f (canon lift (core func $i "f")))
  (instance $a (export "transform" (func $f)))
  (instance $b (export "place" (func $f)))
  (export "ferry:sync/transform@0.2.0" (instance $a))
  (export "ferry:sync/placement@0.1.0" (instance $b)))
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
            assert_eq!(found, "ferry:sync/transform@0.3.0");
            assert_eq!(supported, "0.1.0, 0.2.0");
        }
        other => panic!("expected UnsupportedWitVersion, got {:?}", other.err()),
    }
}

#[test]
fn the_refusal_names_the_version_found_and_the_versions_supported() {
    let runtime = common::runtime();
    let bytes = wat::parse_str(FUTURE_VERSION).expect("valid WAT");
    let err = runtime
        .load_bytes(&bytes, PluginOptions::default().name("future"))
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "plugin future uses ferry:sync/transform@0.3.0; this Ferry supports ferry:sync versions 0.1.0, 0.2.0"
    );
}

#[test]
fn a_component_mixing_contract_versions_is_refused() {
    let runtime = common::runtime();
    let bytes = wat::parse_str(MIXED_VERSIONS).expect("valid WAT");
    let result = runtime.load_bytes(&bytes, PluginOptions::default().name("mixed"));
    assert!(
        matches!(result, Err(LoadError::MixedWitVersions { .. })),
        "{:?}",
        result.err()
    );
}

#[test]
fn each_component_is_bound_to_the_contract_version_it_declares() {
    let runtime = common::runtime();
    let v1 = common::load(&runtime, "frozen-v0-1-0", Default::default());
    let v2 = common::load(&runtime, "contract-v0-2-0", Default::default());
    assert_eq!(v1.contract_version(), "0.1.0");
    assert_eq!(v2.contract_version(), "0.2.0");
    assert!(!v1.exports(ferry_core::Hook::Dependencies));
    assert!(v2.exports(ferry_core::Hook::Dependencies));
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

//! Golden cases of every first-party plugin (`plugins/<name>/cases/`) and of the test
//! fixtures that keep one per contract version (`tests/plugins/<name>/cases/`).

mod common;

use ferry_wasm::PluginOptions;
use ferry_wasm::cases;

fn run_cases(plugin: &str) {
    run_cases_in("plugins", plugin);
}

fn run_cases_in(folder: &str, plugin: &str) {
    let runtime = common::runtime();
    let component = common::component(plugin);
    let dir = ferry_wasm::testing::repo_root()
        .join(folder)
        .join(plugin)
        .join("cases");
    let cases = cases::load_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}: {:?}", std::error::Error::source(&e)));
    assert!(
        !cases.is_empty(),
        "{plugin} has no golden cases in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let outcome = case
            .run(&runtime, &component, &PluginOptions::default())
            .unwrap_or_else(|e| panic!("{e}: {:?}", std::error::Error::source(&e)));
        if !outcome.passed {
            failures.push(format!(
                "--- {plugin}/{}\n{}",
                case.name,
                outcome.diff.unwrap_or_default()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn label_placement_matches_its_golden_cases() {
    run_cases("label-placement");
}

#[test]
fn default_transform_matches_its_golden_cases() {
    run_cases("default-transform");
}

#[test]
fn deployment_status_matches_its_golden_cases() {
    run_cases("deployment-status");
}

#[test]
fn passthrough_status_matches_its_golden_cases() {
    run_cases("passthrough-status");
}

/// Recorded on the host before it learnt contract v0.2.0: a v0.1.0 component keeps behaving
/// exactly as it did (the fixture is built from the frozen `wit/v0.1.0`, not the SDK).
#[test]
fn a_frozen_v0_1_0_plugin_matches_the_cases_recorded_before_v0_2_0() {
    run_cases_in("tests/plugins", "frozen-v0-1-0");
}

/// A v0.2.0 component through the same harness: dependencies cases, skip and failed
/// outcomes, and the workspace labels and annotations of a case's context.
#[test]
fn a_v0_2_0_plugin_matches_its_golden_cases() {
    run_cases_in("tests/plugins", "contract-v0-2-0");
}

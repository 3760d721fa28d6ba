//! Property tests of what tenant isolation rests on: the namespace mapping
//! ([`ferry_core::identity::downstream_namespace`]) and the checks on plugin output
//! ([`ferry_core::validate`]).
//!
//! Case counts are kept modest (256 per property, `PROPTEST_CASES` overrides it for a deeper
//! run) so that `cargo test` stays fast on a 2-core machine; every run draws new cases, and a
//! failing case is saved under `proptest-regressions/` beside this file to be replayed first.

mod namespace_mapping;
mod output_validation;

use proptest::test_runner::Config;

/// The configuration every property here runs with.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        ..Config::default()
    }
}

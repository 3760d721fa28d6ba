//! `ferry plugin test|run|new` as a user runs them: the real binary, components built by
//! `cargo xtask plugins`, isolated temporary folders, no cluster and no network.
//!
//! Every failure must be one `error: ...` line on stderr with the documented exit code
//! (1: the plugin misbehaved or a case failed; 2: the command could not run), never a
//! panic or a backtrace, even with `RUST_BACKTRACE=1`.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use tempfile::TempDir;

fn plugin_dir() -> PathBuf {
    let dir = ferry_wasm::testing::plugin_dir();
    assert!(
        dir.join("label-placement.wasm").is_file(),
        "components missing in {}: run `cargo xtask plugins` first",
        dir.display()
    );
    dir
}

fn component(name: &str) -> String {
    plugin_dir()
        .join(format!("{name}.wasm"))
        .display()
        .to_string()
}

fn repo() -> PathBuf {
    ferry_wasm::testing::repo_root()
}

/// `ferry` run from an empty temporary folder, finding first-party plugins by name.
fn ferry(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("ferry").expect("the ferry binary");
    cmd.current_dir(cwd)
        .env("FERRY_PLUGIN_DIR", plugin_dir())
        // Each test its own compiled-code cache, never the user's.
        .env("FERRY_CODE_CACHE", cwd.join(".ferry-code-cache"))
        .env("RUST_BACKTRACE", "1");
    cmd
}

/// Asserts the command failed with `code` and one clean `error:` line containing `text`.
fn fails_with(cmd: &mut Command, code: i32, text: &str) -> String {
    let output = cmd.output().expect("run ferry");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    assert!(errors[0].contains(text), "{:?} lacks {text:?}", errors[0]);
    for noise in ["panicked", "backtrace", "RUST_BACKTRACE", "\n  0:"] {
        assert!(!stderr.contains(noise), "stderr has {noise:?}: {stderr}");
    }
    stderr
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("mkdir");
    }
    fs::write(path, text).expect("write");
}

fn copy_case(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("case dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_case(&entry.path(), &target);
        } else {
            write(&target, &fs::read_to_string(entry.path()).expect("read"));
        }
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  annotations: {kcp.io/cluster: abc123, sync.ferry.dev/placement: region=eu}
spec:
  replicas: 2
";

// ---------------------------------------------------------------- ferry plugin test

#[test]
fn every_first_party_plugin_passes_its_cases_with_a_summary_as_the_last_line() {
    let tmp = TempDir::new().expect("tmp");
    for plugin in [
        "label-placement",
        "default-transform",
        "deployment-status",
        "passthrough-status",
        "workload-dependencies",
    ] {
        let cases = repo().join("plugins").join(plugin).join("cases");
        let count = ferry_wasm::cases::case_dirs(&cases).expect("cases").len();
        let output = ferry(tmp.path())
            .args(["plugin", "test", plugin])
            .arg(&cases)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let stdout = String::from_utf8_lossy(&output);
        assert_eq!(
            stdout.lines().last(),
            Some(format!("{count} passed, 0 failed").as_str()),
            "{stdout}"
        );
    }
}

#[test]
fn repeated_test_runs_reuse_compiled_code_and_a_damaged_entry_is_compiled_again() {
    let tmp = TempDir::new().expect("tmp");
    let cache = tmp.path().join(".ferry-code-cache");
    let cases = repo().join("plugins").join("label-placement").join("cases");
    let run = || {
        ferry(tmp.path())
            .args(["plugin", "test", "label-placement"])
            .arg(&cases)
            .assert()
            .success();
    };
    let entries = || -> Vec<PathBuf> {
        std::fs::read_dir(&cache)
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    run();
    let written = entries();
    assert_eq!(written.len(), 1, "one entry per component: {written:?}");
    let entry = std::fs::read(&written[0]).expect("entry");
    assert!(
        entry.starts_with(b"FERRYCC1"),
        "Ferry's header and checksum"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache)
            .expect("cache")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the cache folder is private");
    }
    run();
    assert_eq!(entries(), written, "the second run reuses the entry");

    // A damaged entry is not trusted: the run compiles again, passes, and rewrites it.
    let mut damaged = entry.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&written[0], &damaged).expect("damage");
    run();
    let rewritten = std::fs::read(&written[0]).expect("entry");
    assert!(rewritten != damaged && rewritten.starts_with(b"FERRYCC1"));

    // `off`: nothing is written.
    let elsewhere = TempDir::new().expect("tmp");
    ferry(elsewhere.path())
        .env("FERRY_CODE_CACHE", "off")
        .args(["plugin", "test", "label-placement"])
        .arg(&cases)
        .assert()
        .success();
    assert!(!elsewhere.path().join(".ferry-code-cache").exists());
}

#[test]
fn record_refuses_an_object_that_is_not_namespace_slash_name_and_an_unknown_resource() {
    let tmp = TempDir::new().expect("tmp");
    fails_with(
        ferry(tmp.path()).args(["plugin", "record", "root:team-a", "deployments.apps", "web"]),
        2,
        "\"web\" is not <namespace>/<name>",
    );
    // A configuration that loads (its kubeconfigs exist) but does not sync ConfigMaps.
    let kubeconfig = tmp.path().join("kubeconfig");
    write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n\
         clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\n",
    );
    let config = tmp.path().join("ferry.yaml");
    write(
        &config,
        "kcp: {kubeconfig: kubeconfig, workspace: 'root:p', export: kubernetes}\n\
         targets: [{name: c1, kubeconfig: kubeconfig}]\n\
         resources:\n- {group: apps, resource: deployments, placement: {plugin: label-placement}, transform: {plugin: default-transform}}\n",
    );
    fails_with(
        ferry(tmp.path())
            .args(["plugin", "record", "--config"])
            .arg(&config)
            .args(["root:team-a", "configmaps", "demo/web"]),
        2,
        "\"configmaps\" is not one resource of the configuration (configured: deployments.apps)",
    );
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff_and_update_rewrites_it() {
    let tmp = TempDir::new().expect("tmp");
    let case = tmp.path().join("cases/eu-only");
    copy_case(
        &repo().join("plugins/label-placement/cases/annotation-selects-targets"),
        &case,
    );
    write(&case.join("expected.yaml"), "- cluster-1\n- cluster-2\n");
    let stderr = fails_with(
        ferry(tmp.path()).args(["plugin", "test", "label-placement", "cases"]),
        1,
        "1 of 1 cases failed",
    );
    assert!(!stderr.contains("passed"), "{stderr}");
    ferry(tmp.path())
        .args(["plugin", "test", "label-placement", "cases"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL  eu-only"))
        .stdout(predicate::str::contains("- - cluster-2"))
        .stdout(predicate::str::contains("+ - cluster-3"))
        .stdout(predicate::str::ends_with("0 passed, 1 failed\n"));

    ferry(tmp.path())
        .args(["plugin", "test", "label-placement", "cases", "--update"])
        .assert()
        .success()
        .stdout(predicate::str::contains("updated eu-only"))
        .stdout(predicate::str::ends_with("1 passed, 0 failed\n"));
    assert_eq!(
        fs::read_to_string(case.join("expected.yaml")).expect("expected"),
        "- cluster-1\n- cluster-3\n"
    );
    ferry(tmp.path())
        .args(["plugin", "test", "label-placement", "cases"])
        .assert()
        .success();
}

#[test]
fn a_broken_case_is_reported_and_the_other_cases_still_run() {
    let tmp = TempDir::new().expect("tmp");
    let good = repo().join("plugins/label-placement/cases/annotation-selects-targets");
    copy_case(&good, &tmp.path().join("cases/a-good"));
    copy_case(&good, &tmp.path().join("cases/b-broken"));
    write(
        &tmp.path().join("cases/b-broken/object.yaml"),
        "metadata: {name: [unclosed\n",
    );
    ferry(tmp.path())
        .args(["plugin", "test", "label-placement", "cases"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "FAIL  b-broken: cannot load the case",
        ))
        .stdout(predicate::str::contains("invalid YAML"))
        .stdout(predicate::str::ends_with("1 passed, 1 failed\n"));
}

#[test]
fn hostile_behaviour_can_be_pinned_by_expected_error_cases() {
    let tmp = TempDir::new().expect("tmp");
    let base = repo().join("plugins/label-placement/cases/annotation-selects-targets");
    let case = tmp.path().join("cases/panics-in-transform");
    copy_case(&base, &case);
    fs::remove_file(case.join("config.yaml")).expect("rm config");
    fs::remove_file(case.join("expected.yaml")).expect("rm expected");
    write(&case.join("case.yaml"), "hook: transform\n");
    write(&case.join("error.yaml"), "kind: trap\n");
    ferry(tmp.path())
        .args(["plugin", "test", &component("hostile-panic"), "cases"])
        .assert()
        .success()
        .stdout(predicate::str::ends_with("1 passed, 0 failed\n"));
    write(&case.join("case.yaml"), "hook: place\n");
    write(&case.join("error.yaml"), "kind: deadline-exceeded\n");
    ferry(tmp.path())
        .args(["plugin", "test", &component("hostile-loop"), "cases"])
        .assert()
        .success();
}

#[test]
fn test_refuses_a_missing_cases_folder_an_empty_one_and_unknown_plugins() {
    let tmp = TempDir::new().expect("tmp");
    fails_with(
        ferry(tmp.path()).args(["plugin", "test", "label-placement", "no-such-dir"]),
        2,
        "cannot read the cases folder",
    );
    fs::create_dir_all(tmp.path().join("empty")).expect("mkdir");
    fails_with(
        ferry(tmp.path()).args(["plugin", "test", "label-placement", "empty"]),
        2,
        "no cases in empty",
    );
    fails_with(
        ferry(tmp.path()).args(["plugin", "test", "no-such-plugin", "empty"]),
        2,
        "no plugin \"no-such-plugin\" in",
    );
    fails_with(
        ferry(tmp.path()).args(["plugin", "test", "missing.wasm", "empty"]),
        2,
        "missing.wasm does not exist",
    );
    write(&tmp.path().join("fake.wasm"), "not wasm at all");
    fails_with(
        ferry(tmp.path()).args(["plugin", "test", "./fake.wasm", "empty"]),
        2,
        "is not a valid Wasm component",
    );
}

// ----------------------------------------------------------------- ferry plugin run

fn run_input(tmp: &Path) -> PathBuf {
    let path = tmp.join("input.yaml");
    let object = DEPLOYMENT.replace('\n', "\n  ");
    write(
        &path,
        &format!(
            "object:\n  {object}\ntargets:\n  - {{name: cluster-1, labels: {{region: eu}}}}\n  - {{name: cluster-2, labels: {{region: us}}}}\n"
        ),
    );
    path
}

#[test]
fn run_place_prints_the_result_then_time_and_peak_memory() {
    let tmp = TempDir::new().expect("tmp");
    let input = run_input(tmp.path());
    ferry(tmp.path())
        .args(["plugin", "run", "label-placement", "--hook", "place", "--input"])
        .arg(&input)
        .assert()
        .success()
        .stdout("- cluster-1\n")
        .stderr(predicate::str::is_match(
            r"^place: ok in [0-9.]+ ms wall \(epoch deadline 250 ms\), peak memory [0-9.]+ MiB of 64 MiB\n$",
        ).expect("regex"));
}

#[test]
fn run_transform_takes_a_plain_manifest_from_stdin_and_prints_json() {
    let tmp = TempDir::new().expect("tmp");
    let output = ferry(tmp.path())
        .args([
            "plugin",
            "run",
            "default-transform",
            "--hook",
            "transform",
            "--input",
            "-",
            "--target",
            "cluster-9",
            "--output",
            "json",
        ])
        .write_stdin(DEPLOYMENT)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let object: serde_json::Value = serde_json::from_slice(&output).expect("JSON output");
    assert_eq!(object["metadata"]["namespace"], "ferry-test");
    assert_eq!(object["spec"]["replicas"], 2);
}

#[test]
fn run_aggregate_status_reads_downstream_copies_and_config_from_files() {
    let tmp = TempDir::new().expect("tmp");
    let object = DEPLOYMENT.replace('\n', "\n  ");
    let copy = "{apiVersion: apps/v1, kind: Deployment, metadata: {name: web}, status: {replicas: 2, readyReplicas: 2}}";
    write(
        &tmp.path().join("input.yaml"),
        &format!(
            "object:\n  {object}\ntargets: [{{name: cluster-1}}, {{name: cluster-2}}]\ndownstream:\n  cluster-2: {copy}\n"
        ),
    );
    write(&tmp.path().join("config.yaml"), "target: cluster-2\n");
    ferry(tmp.path())
        .args([
            "plugin",
            "run",
            "passthrough-status",
            "--hook",
            "aggregate-status",
            "--input",
            "input.yaml",
            "--config",
            "config.yaml",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("readyReplicas: 2"));
}

#[test]
fn run_refuses_missing_files_invalid_yaml_and_unknown_hooks() {
    let tmp = TempDir::new().expect("tmp");
    fails_with(
        ferry(tmp.path()).args([
            "plugin",
            "run",
            "label-placement",
            "--hook",
            "place",
            "--input",
            "nope.yaml",
        ]),
        2,
        "cannot read nope.yaml",
    );
    write(&tmp.path().join("bad.yaml"), "object: {name: [\n");
    fails_with(
        ferry(tmp.path()).args([
            "plugin",
            "run",
            "label-placement",
            "--hook",
            "place",
            "--input",
            "bad.yaml",
        ]),
        2,
        "bad.yaml: invalid YAML",
    );
    write(&tmp.path().join("list.yaml"), "- a\n- b\n");
    fails_with(
        ferry(tmp.path()).args([
            "plugin",
            "run",
            "label-placement",
            "--hook",
            "place",
            "--input",
            "list.yaml",
        ]),
        2,
        "not a list",
    );
    let input = run_input(tmp.path());
    fails_with(
        ferry(tmp.path())
            .args([
                "plugin",
                "run",
                "label-placement",
                "--hook",
                "health",
                "--input",
            ])
            .arg(&input),
        2,
        "invalid value 'health'",
    );
    fails_with(
        ferry(tmp.path())
            .args([
                "plugin",
                "run",
                "no-such-plugin",
                "--hook",
                "place",
                "--input",
            ])
            .arg(&input),
        2,
        "available: ",
    );
    fails_with(
        ferry(tmp.path())
            .args([
                "plugin",
                "run",
                "default-transform",
                "--hook",
                "transform",
                "--target",
                "elsewhere",
                "--input",
            ])
            .arg(&input),
        2,
        "target \"elsewhere\" is not one of the input's targets",
    );
}

#[test]
fn a_plugin_that_traps_is_one_error_line_with_exit_code_1() {
    let tmp = TempDir::new().expect("tmp");
    let input = run_input(tmp.path());
    let stderr = fails_with(
        ferry(tmp.path())
            .args([
                "plugin",
                "run",
                &component("hostile-panic"),
                "--hook",
                "transform",
                "--input",
            ])
            .arg(&input),
        1,
        "plugin hostile-panic crashed in transform",
    );
    assert!(stderr.contains("(trap)"), "{stderr}");
    assert!(stderr.starts_with("transform: trap in "), "{stderr}");
}

#[test]
fn a_plugin_that_loops_is_stopped_at_its_deadline() {
    let tmp = TempDir::new().expect("tmp");
    let input = run_input(tmp.path());
    let stderr = fails_with(
        ferry(tmp.path())
            .args([
                "plugin",
                "run",
                &component("hostile-loop"),
                "--hook",
                "place",
                "--deadline-ms",
                "50",
                "--input",
            ])
            .arg(&input),
        1,
        "exceeded its 50ms deadline in place (deadline-exceeded)",
    );
    assert!(stderr.contains("epoch deadline 50 ms"), "{stderr}");
}

#[test]
fn garbage_output_memory_bombs_and_refused_config_are_plugin_errors() {
    let tmp = TempDir::new().expect("tmp");
    let input = run_input(tmp.path());
    for (plugin, hook, text) in [
        ("hostile-garbage", "place", "invalid output from place"),
        ("hostile-garbage", "transform", "(invalid-output)"),
        ("hostile-garbage", "aggregate-status", "(invalid-output)"),
        ("hostile-memory-bomb", "transform", "(memory-exhausted)"),
    ] {
        fails_with(
            ferry(tmp.path())
                .args([
                    "plugin",
                    "run",
                    &component(plugin),
                    "--hook",
                    hook,
                    "--input",
                ])
                .arg(&input),
            1,
            text,
        );
    }
    write(&tmp.path().join("config.yaml"), "count: 0\n");
    fails_with(
        ferry(tmp.path())
            .args([
                "plugin",
                "run",
                "label-placement",
                "--hook",
                "place",
                "--config",
                "config.yaml",
                "--input",
            ])
            .arg(&input),
        1,
        "rejected its configuration",
    );
}

// ----------------------------------------------------------------- ferry plugin new

#[test]
fn new_scaffolds_a_standalone_crate_with_a_loadable_passing_case() {
    let tmp = TempDir::new().expect("tmp");
    ferry(tmp.path())
        .args(["plugin", "new", "team-placement", "--dir", "work", "--sdk"])
        .arg(repo().join("plugins/sdk"))
        .assert()
        .success()
        .stdout(predicate::str::contains("created"));
    let dir = tmp.path().join("work/team-placement");
    let cargo = fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    assert!(cargo.contains("name = \"team-placement\""), "{cargo}");
    assert!(cargo.contains("crate-type = [\"cdylib\"]"), "{cargo}");
    assert!(cargo.contains("plugins/sdk\" }"), "{cargo}");
    let lib = fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
    assert!(lib.contains("export!(TeamPlacement);"), "{lib}");
    assert!(dir.join(".cargo/config.toml").is_file());
    let readme = fs::read_to_string(dir.join("README.md")).expect("README");
    assert!(
        readme.contains("cargo build --release --target wasm32-wasip2"),
        "{readme}"
    );
    let cases = ferry_wasm::cases::load_dir(&dir.join("cases")).expect("the case loads");
    assert_eq!(cases.len(), 1);
    // The scaffold's logic matches label-placement's with the same selector, so the case
    // is checked against a real component without building the new crate.
    let case = &cases[0];
    assert_eq!(
        case.expected,
        ferry_wasm::cases::Expected::Output(serde_json::json!(["cluster-1", "cluster-3"]))
    );
}

#[test]
fn new_refuses_bad_names_and_existing_folders() {
    let tmp = TempDir::new().expect("tmp");
    fails_with(
        ferry(tmp.path()).args(["plugin", "new", "Bad_Name"]),
        2,
        "not a valid plugin name",
    );
    fs::create_dir_all(tmp.path().join("taken")).expect("mkdir");
    fails_with(
        ferry(tmp.path()).args(["plugin", "new", "taken"]),
        2,
        "already exists",
    );
}

// ------------------------------------------------------------ examples/custom-placement

#[test]
fn the_custom_placement_example_passes_its_cases_and_runs_as_the_walkthrough_shows() {
    let tmp = TempDir::new().expect("tmp");
    let cases = repo().join("examples/custom-placement/cases");
    ferry(tmp.path())
        .args(["plugin", "test", &component("custom-placement")])
        .arg(&cases)
        .assert()
        .success()
        .stdout(predicate::str::ends_with("9 passed, 0 failed\n"));
    let case = cases.join("copies-annotation-places-on-several-targets-of-the-region");
    ferry(tmp.path())
        .args([
            "plugin",
            "run",
            &component("custom-placement"),
            "--hook",
            "place",
        ])
        .arg("--input")
        .arg(case.join("object.yaml"))
        .arg("--targets")
        .arg(case.join("targets.yaml"))
        .assert()
        .success()
        .stdout("- eu-1\n- eu-2\n");
}

#[test]
fn run_dependencies_prints_the_merged_references_of_a_v0_2_0_plugin() {
    let tmp = TempDir::new().expect("tmp");
    let input = tmp.path().join("input.yaml");
    write(
        &input,
        "object:
  apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: default}
  spec:
    template:
      spec:
        serviceAccountName: web
        volumes: [{name: s, configMap: {name: settings, optional: true}}]
        containers: [{name: web, image: nginx}]
",
    );
    ferry(tmp.path())
        .args(["plugin", "run"])
        .arg(component("contract-v0-2-0"))
        .args(["--hook", "dependencies", "--input"])
        .arg(&input)
        .assert()
        .success()
        .stdout(concat!(
            "- group: ''\n  name: settings\n  optional: true\n  resource: configmaps\n",
            "- group: ''\n  name: web\n  resource: serviceaccounts\n",
        ))
        .stderr(predicate::str::starts_with("dependencies: ok in "));
}

#[test]
fn run_dependencies_of_a_v0_1_0_plugin_says_the_hook_is_not_exported() {
    let tmp = TempDir::new().expect("tmp");
    let input = run_input(tmp.path());
    fails_with(
        ferry(tmp.path())
            .args(["plugin", "run"])
            .arg(component("frozen-v0-1-0"))
            .args(["--hook", "dependencies", "--input"])
            .arg(&input),
        1,
        "does not export dependencies",
    );
}

#[test]
fn test_runs_the_golden_cases_of_both_contract_versions() {
    let tmp = TempDir::new().expect("tmp");
    for fixture in ["frozen-v0-1-0", "contract-v0-2-0"] {
        ferry(tmp.path())
            .args(["plugin", "test"])
            .arg(component(fixture))
            .arg(repo().join("tests/plugins").join(fixture).join("cases"))
            .assert()
            .success()
            .stdout(predicate::str::contains(" 0 failed"));
    }
}

#[test]
fn run_transform_all_targets_prints_each_target_and_names_the_failed_ones() {
    let tmp = TempDir::new().expect("tmp");
    let input = tmp.path().join("input.yaml");
    let object = DEPLOYMENT.replace('\n', "\n  ");
    write(
        &input,
        &format!(
            "object:\n  {object}\ntargets:\n  - {{name: cluster-1}}\n  - {{name: cluster-2, labels: {{ferry.test/outcome: skip}}}}\n"
        ),
    );
    let output = ferry(tmp.path())
        .args(["plugin", "run"])
        .arg(component("contract-v0-2-0"))
        .args([
            "--hook",
            "transform",
            "--all-targets",
            "--output",
            "json",
            "--input",
        ])
        .arg(&input)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out: serde_json::Value = serde_json::from_slice(&output).expect("JSON output");
    assert_eq!(out["cluster-1"]["metadata"]["namespace"], "ferry-test");
    assert_eq!(out["cluster-2"], serde_json::Value::Null);

    write(
        &input,
        &format!(
            "object:\n  {object}\ntargets:\n  - {{name: cluster-1}}\n  - {{name: cluster-3, labels: {{ferry.test/outcome: fail}}}}\n"
        ),
    );
    let stderr = fails_with(
        ferry(tmp.path())
            .args(["plugin", "run"])
            .arg(component("contract-v0-2-0"))
            .args(["--hook", "transform", "--all-targets", "--input"])
            .arg(&input),
        1,
        "target cluster-3 refuses this object",
    );
    assert!(
        stderr.contains("transform: 1 of 2 targets failed (cluster-3)"),
        "{stderr}"
    );

    fails_with(
        ferry(tmp.path())
            .args(["plugin", "run"])
            .arg(component("contract-v0-2-0"))
            .args(["--hook", "place", "--all-targets", "--input"])
            .arg(&input),
        2,
        "--all-targets goes with --hook transform only",
    );
}

#[test]
fn new_scaffolds_python_and_js_folders_per_hook_with_a_loadable_case() {
    let tmp = TempDir::new().expect("tmp");
    for (lang, hook, entry, export, case) in [
        (
            "python",
            "place",
            "app.py",
            "export(X())",
            "places-on-matching-targets",
        ),
        (
            "python",
            "status",
            "app.py",
            "aggregate_status",
            "counts-ready-copies",
        ),
        (
            "js",
            "transform",
            "index.js",
            "definePlugin",
            "copies-move-to-the-mapped-namespace",
        ),
    ] {
        let name = format!("x-{lang}-{hook}");
        ferry(tmp.path())
            .args(["plugin", "new", &name, "--lang", lang, "--hook", hook])
            .assert()
            .success()
            .stdout(predicate::str::contains("ferry plugin build"));
        let dir = tmp.path().join(&name);
        let text = fs::read_to_string(dir.join(entry)).expect("entry module");
        let export = export.replace(
            "X",
            &name
                .split('-')
                .map(|p| p[..1].to_uppercase() + &p[1..])
                .collect::<String>(),
        );
        assert!(text.contains(&export), "{lang} {hook}: {text}");
        let cases = ferry_wasm::cases::load_dir(&dir.join("cases")).expect("the case loads");
        assert_eq!(cases.len(), 1, "{lang} {hook}");
        assert_eq!(cases[0].name, case);
        // Not built yet: `test <dir>` says what to run, as a usage error.
        fails_with(
            ferry(tmp.path()).args(["plugin", "test", &name]),
            2,
            "ferry plugin build",
        );
    }
    fails_with(
        ferry(tmp.path()).args(["plugin", "new", "r", "--lang", "rust", "--hook", "status"]),
        2,
        "implements `place`",
    );
}

#[test]
fn build_of_a_folder_without_a_plugin_names_the_files_it_looked_for() {
    let tmp = TempDir::new().expect("tmp");
    fails_with(
        ferry(tmp.path()).args(["plugin", "build", "."]),
        2,
        "expected Cargo.toml (Rust), pyproject.toml or app.py (Python), or package.json (JavaScript)",
    );
}

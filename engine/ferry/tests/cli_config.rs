//! `ferry run` and `ferry check` with odd input: a malformed `ferry.yaml`, kubeconfigs that
//! cannot be used, a plugin file replaced by garbage bytes. No cluster is needed: every
//! kubeconfig points at a port nothing listens on, so nothing can be written to a server,
//! and the folder the command runs in must be byte for byte the same afterwards.
//!
//! Exit codes (engine/ferry/src/main.rs, docs/configuration.md): 2 for an invalid
//! configuration (which includes a kubeconfig it names that cannot be read or used), 1 for
//! anything else that stops start-up (a plugin that fails to load).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
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

/// A usable kubeconfig for a server that is not there.
const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
";

/// A folder with `ferry.yaml` (from `config`), two good kubeconfigs and the odd files.
fn folder(config: &str) -> TempDir {
    let tmp = TempDir::new().expect("tmp");
    let dir = tmp.path();
    fs::write(dir.join("kcp.kubeconfig"), KUBECONFIG).expect("write");
    fs::write(dir.join("c1.kubeconfig"), KUBECONFIG).expect("write");
    // Bytes that are not UTF-8, YAML that does not parse, YAML that is no kubeconfig.
    fs::write(
        dir.join("garbage.kubeconfig"),
        [0xff, 0xfe, 0x00, 0x9c, 0x80],
    )
    .expect("write");
    fs::write(dir.join("broken.kubeconfig"), "clusters: [{name: c\n").expect("write");
    fs::write(dir.join("empty.kubeconfig"), "hello: world\n").expect("write");
    // A component file replaced by garbage bytes.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(dir.join("garbage.wasm"), garbage).expect("write");
    fs::write(dir.join("ferry.yaml"), config).expect("write");
    tmp
}

/// A valid configuration; `change` edits its text.
fn config(change: impl FnOnce(String) -> String) -> String {
    change(format!(
        "kcp: {{kubeconfig: kcp.kubeconfig, workspace: 'root:platform', export: kubernetes}}
targets:
- {{name: cluster-1, kubeconfig: c1.kubeconfig}}
resources:
- group: apps
  resource: deployments
  placement: {{plugin: label-placement}}
  transform: {{plugin: default-transform}}
plugins: {{dir: {}}}
",
        plugin_dir().display()
    ))
}

/// Every file in `dir` and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        files.insert(path.clone(), fs::read(&path).expect("read"));
    }
    files
}

/// Runs `ferry <command> --config ferry.yaml` in `dir`; asserts exit `code`, exactly one
/// `error:` line, a line naming both `key` and `file`, no panic or backtrace, and that
/// nothing in the folder changed. Returns stderr.
fn refused(dir: &Path, command: &str, code: i32, key: &str, file: &str) -> String {
    let before = snapshot(dir);
    let output = Command::cargo_bin("ferry")
        .expect("the ferry binary")
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .env_remove("FERRY_LOG")
        .args([command, "--config", "ferry.yaml"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run ferry");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{command}: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "{command} printed to stdout: {:?}",
        output.stdout
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors.len(),
        1,
        "{command}: one error line expected: {stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.contains(key) && l.contains(file)),
        "{command}: no line names {key} and {file}: {stderr}"
    );
    for noise in [
        "panicked",
        "backtrace",
        "RUST_BACKTRACE",
        "\n  0:",
        "Status {",
        "Some(",
    ] {
        assert!(
            !stderr.contains(noise),
            "{command}: stderr has {noise:?}: {stderr}"
        );
    }
    assert_eq!(snapshot(dir), before, "{command} changed the folder");
    stderr
}

#[test]
fn a_malformed_ferry_yaml_is_refused_with_its_line_and_exit_code_2() {
    for (case, text, key) in [
        (
            "unclosed bracket",
            config(|c| c.replace("workspace: 'root:platform',", "workspace: [root,")),
            "ferry.yaml",
        ),
        (
            "tab indentation",
            config(|c| c.replace("- group: apps\n  resource", "- group: apps\n\tresource")),
            "ferry.yaml",
        ),
        (
            "not a mapping",
            "just a string\n".to_string(),
            "(top level)",
        ),
        (
            "unknown key",
            config(|c| c.replace("export: kubernetes", "exprot: kubernetes")),
            "kcp",
        ),
        ("empty file", String::new(), "ferry.yaml"),
    ] {
        let tmp = folder(&text);
        for command in ["run", "check"] {
            let stderr = refused(tmp.path(), command, 2, key, "");
            assert!(
                stderr.starts_with("error: invalid configuration ferry.yaml:"),
                "{case}, {command}: {stderr}"
            );
        }
    }
}

#[test]
fn a_kubeconfig_that_cannot_be_used_is_refused_naming_its_key_and_file_with_exit_code_2() {
    // Running as root, a file without read permission is still readable: a missing file,
    // bytes that are not text, YAML that does not parse, a file that is no kubeconfig and
    // a context that is not in it are what a user can actually get wrong.
    for (file, context, key, says) in [
        (
            "missing.kubeconfig",
            "",
            "targets[0].kubeconfig",
            "does not exist",
        ),
        (
            "garbage.kubeconfig",
            "",
            "targets[0].kubeconfig",
            "cannot read",
        ),
        (
            "broken.kubeconfig",
            "",
            "targets[0].kubeconfig",
            "is not a kubeconfig",
        ),
        (
            "empty.kubeconfig",
            "",
            "targets[0].context",
            "no current-context",
        ),
        (
            "c1.kubeconfig",
            ", context: nope",
            "targets[0].context",
            "no context \"nope\"",
        ),
    ] {
        let text = config(|c| {
            c.replace(
                "kubeconfig: c1.kubeconfig}",
                &format!("kubeconfig: {file}{context}}}"),
            )
        });
        let tmp = folder(&text);
        for command in ["run", "check"] {
            let stderr = refused(tmp.path(), command, 2, key, file);
            assert!(stderr.contains(says), "{file}, {command}: {stderr}");
        }
    }
    // The kcp kubeconfig is checked the same way.
    let tmp = folder(&config(|c| {
        c.replace(
            "kubeconfig: kcp.kubeconfig",
            "kubeconfig: garbage.kubeconfig",
        )
    }));
    refused(
        tmp.path(),
        "check",
        2,
        "kcp.kubeconfig",
        "garbage.kubeconfig",
    );
}

#[test]
fn a_plugin_file_of_garbage_bytes_stops_start_up_on_one_line_naming_its_key_and_file() {
    let tmp = folder(&config(|c| {
        c.replace("plugin: default-transform", "plugin: garbage.wasm")
    }));
    for command in ["run", "check"] {
        // A plugin that does not load is not a configuration syntax error: exit code 1
        // (docs/configuration.md), before any server is contacted.
        let stderr = refused(
            tmp.path(),
            command,
            1,
            "resources[0].transform",
            "garbage.wasm",
        );
        assert!(
            stderr.contains("not a valid Wasm component"),
            "{command}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{command}: {stderr}");
    }
}

#[test]
fn with_json_logs_every_stderr_line_is_a_json_object_and_the_last_says_why_it_stopped() {
    // kcp is not there: `check` logs as it starts, then fails to reach it and says so last.
    let tmp = folder(&config(|c| c));
    let output = Command::cargo_bin("ferry")
        .expect("the ferry binary")
        .current_dir(tmp.path())
        .env_remove("FERRY_LOG")
        .args(["check", "--config", "ferry.yaml", "--log-format", "json"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run ferry");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines = json_lines(&stderr);
    let last = lines.last().expect("a line");
    assert_eq!(last["level"], "ERROR", "{stderr}");
    assert_eq!(last["message"], "stopped", "{stderr}");
    assert!(
        last["error"]
            .as_str()
            .is_some_and(|e| e.contains("connection refused")),
        "{stderr}"
    );
}

#[test]
fn run_waits_for_an_unreachable_kcp_and_says_so_in_json() {
    // An operator restarted while kcp is down waits for it (a crash loop would hold every
    // resource up for the back-off); each attempt is a JSON warning naming the cause.
    let tmp = folder(&config(|c| c));
    let binary = assert_cmd::cargo::cargo_bin("ferry");
    let mut child = std::process::Command::new(binary)
        .current_dir(tmp.path())
        .env_remove("FERRY_LOG")
        .args(["run", "--config", "ferry.yaml", "--log-format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ferry");
    let stderr = child.stderr.take().expect("stderr");
    let (lines, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Plugins load first (slow on a busy machine); then one warning per attempt, 1 s apart.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let (mut seen, mut waits) = (Vec::new(), 0);
    while waits < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = received.recv_timeout(left) else {
            break;
        };
        let json: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        if json["level"] == "WARN"
            && json["message"]
                .as_str()
                .is_some_and(|m| m.contains("connecting to kcp"))
            && json["error"]
                .as_str()
                .is_some_and(|e| e.contains("connection refused"))
        {
            waits += 1;
        }
        seen.push(line);
    }
    let still_running = child.try_wait().expect("poll ferry").is_none();
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.join("\n");
    assert!(waits >= 2, "expected a warning per attempt: {seen}");
    assert!(still_running, "ferry run exited instead of waiting: {seen}");
}

/// Every line of `stderr` parsed as JSON (a line that is not fails the test).
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

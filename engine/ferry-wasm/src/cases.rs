//! Golden plugin cases: a folder per case with plain YAML inputs and the expected result, run
//! against a plugin without any cluster. The first-party plugins' tests use them, and so does
//! `ferry plugin test` (the loader, the runner and the diff live here for both).
//!
//! A case folder holds:
//!
//! | file | required | content |
//! |---|---|---|
//! | `case.yaml` | yes | `hook:` `place`, `transform`, `aggregate-status` or `dependencies`; optional `description:`, `target:` (transform: which target of `targets.yaml`, default the first) and `context:` (`logicalCluster`, `workspacePath`, `workspaceLabels`, `workspaceAnnotations`, `namespace`, `downstreamNamespace`) |
//! | `object.yaml` | yes | the upstream object, as plain Kubernetes YAML |
//! | `targets.yaml` | place, transform | list of `{name, labels}` |
//! | `config.yaml` | no | the plugin configuration (absent means `null`) |
//! | `downstream/<target>.yaml` | status | the live object on each target; a target of `targets.yaml` without a file has no copy |
//! | `expected.yaml` | one of the two | the result: target names (place, any order), the downstream object (transform), the status (aggregate-status) or the references (dependencies: `{group, resource, name}` plus `optional: true`, any order); `null` for "none" |
//! | `error.yaml` | one of the two | `kind:` an [`ErrorKind`] such as `invalid-input`, optional `message:` that the error text must contain |
//!
//! Context defaults: `logicalCluster` from the object's `kcp.io/cluster` annotation (else
//! `test-cluster`), `namespace` from the object, `downstreamNamespace` `ferry-test`, no
//! workspace path, labels or annotations (a v0.1.0 plugin never sees the labels and
//! annotations).
//!
//! A transform case runs one target whatever the plugin's contract version: a v0.2.0 plugin
//! is given that one target and its outcome is the case's result (`null` for a skip, the
//! target's own error for a failed outcome).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use ferry_core::{Downstream, Hook, ObjectContext, Target};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::PluginOptions;
use crate::error::{CallError, ErrorKind, LoadError};
use crate::runtime::Runtime;

/// Why a case folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// A file could not be read or written.
    #[error("{path}: cannot access")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML of the expected shape.
    #[error("{path}: invalid YAML")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parse error (with line and column).
        #[source]
        source: serde_yaml::Error,
    },
    /// The folder is not a complete case.
    #[error("{path}: {reason}")]
    Invalid {
        /// The case folder.
        path: PathBuf,
        /// What is missing or contradictory.
        reason: String,
    },
    /// The plugin could not be loaded for a reason no case can expect (not a component,
    /// wrong contract version...).
    #[error("cannot load the plugin for case {case}")]
    Load {
        /// The case.
        case: String,
        /// The load error.
        #[source]
        source: LoadError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    hook: Hook,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    context: Option<ContextOverrides>,
}

/// The `context:` of a case (or of a `ferry plugin run` input): each field overrides the
/// default [`ContextOverrides::resolve`] derives from the object.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContextOverrides {
    /// Logical cluster; default the object's `kcp.io/cluster` annotation, else `test-cluster`.
    pub logical_cluster: Option<String>,
    /// Workspace path; default none.
    pub workspace_path: Option<String>,
    /// Opted-in labels of the workspace (contract v0.2.0); default none.
    #[serde(default)]
    pub workspace_labels: BTreeMap<String, String>,
    /// Opted-in annotations of the workspace (contract v0.2.0); default none.
    #[serde(default)]
    pub workspace_annotations: BTreeMap<String, String>,
    /// Upstream namespace; default the object's, else `default`.
    pub namespace: Option<String>,
    /// Mapped downstream namespace; default `ferry-test`.
    pub downstream_namespace: Option<String>,
}

impl ContextOverrides {
    /// The context a hook sees for `object`, with these overrides applied.
    #[must_use]
    pub fn resolve(self, object: &Value) -> ObjectContext {
        let annotation = object
            .pointer("/metadata/annotations/kcp.io~1cluster")
            .and_then(Value::as_str);
        ObjectContext {
            logical_cluster: self
                .logical_cluster
                .or_else(|| annotation.map(str::to_owned))
                .unwrap_or_else(|| "test-cluster".into()),
            workspace_path: self.workspace_path,
            workspace_labels: self.workspace_labels,
            workspace_annotations: self.workspace_annotations,
            namespace: self.namespace.unwrap_or_else(|| {
                object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_owned()
            }),
            downstream_namespace: self
                .downstream_namespace
                .unwrap_or_else(|| "ferry-test".into()),
        }
    }
}

/// The expected error of a case (`error.yaml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// Text the error message must contain, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a case expects, or what a run produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Expected {
    /// A result (`null` for "none").
    Output(Value),
    /// A failure.
    Error(ExpectedError),
}

/// One golden case, loaded.
#[derive(Clone, Debug)]
pub struct Case {
    /// Folder name.
    pub name: String,
    /// Folder path.
    pub dir: PathBuf,
    /// The hook under test.
    pub hook: Hook,
    /// What the case shows.
    pub description: Option<String>,
    /// The context passed to the hook.
    pub context: ObjectContext,
    /// The upstream object.
    pub object: Value,
    /// The targets.
    pub targets: Vec<Target>,
    /// The target a transform case runs for.
    pub target: Option<Target>,
    /// The plugin configuration.
    pub config: Value,
    /// Downstream copies (status cases).
    pub downstream: Vec<Downstream>,
    /// The expected result.
    pub expected: Expected,
}

/// The result of running one case.
#[derive(Debug)]
pub struct Outcome {
    /// What the plugin did, in the same shape as [`Expected`].
    pub actual: Expected,
    /// Whether it matched.
    pub passed: bool,
    /// A readable diff (expected `-`, actual `+`) when it did not.
    pub diff: Option<String>,
}

/// Loads every case folder (a folder with `case.yaml`) directly under `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>, CaseError> {
    case_dirs(dir)?.iter().map(|d| Case::load(d)).collect()
}

/// The case folders (folders with `case.yaml`) directly under `dir`, sorted by name, not yet
/// loaded: a harness that reports a broken case and carries on loads each itself.
pub fn case_dirs(dir: &Path) -> Result<Vec<PathBuf>, CaseError> {
    let entries = fs::read_dir(dir).map_err(|source| CaseError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("case.yaml").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

impl Case {
    /// Loads one case folder.
    pub fn load(dir: &Path) -> Result<Case, CaseError> {
        let invalid = |reason: String| CaseError::Invalid {
            path: dir.to_owned(),
            reason,
        };
        let file: CaseFile = read_yaml(&dir.join("case.yaml"))?;
        if file.hook == Hook::Configure {
            return Err(invalid(
                "`hook: configure` cannot be tested alone: it runs before every hook (give \
                 config.yaml to a case of another hook)"
                    .into(),
            ));
        }
        let object: Value = read_yaml(&dir.join("object.yaml"))?;
        let targets: Vec<Target> = read_optional(&dir.join("targets.yaml"))?.unwrap_or_default();
        let config: Value = read_optional(&dir.join("config.yaml"))?.unwrap_or(Value::Null);
        let expected_output: Option<Value> = read_optional(&dir.join("expected.yaml"))?;
        let expected_error: Option<ExpectedError> = read_optional(&dir.join("error.yaml"))?;
        let expected = match (expected_output, expected_error) {
            (Some(v), None) => Expected::Output(v),
            (None, Some(e)) => Expected::Error(e),
            // An empty expected.yaml parses as "no file"; treat it as an expected `null`.
            (None, None) if dir.join("expected.yaml").is_file() => Expected::Output(Value::Null),
            (None, None) => return Err(invalid("needs expected.yaml or error.yaml".into())),
            (Some(_), Some(_)) => {
                return Err(invalid("has both expected.yaml and error.yaml".into()));
            }
        };

        let target = match file.hook {
            Hook::Transform => {
                let chosen = match &file.target {
                    Some(name) => targets.iter().find(|t| &t.name == name),
                    None => targets.first(),
                };
                Some(chosen.cloned().ok_or_else(|| {
                    invalid("a transform case needs its target in targets.yaml".into())
                })?)
            }
            _ => None,
        };
        let mut downstream = Vec::new();
        if file.hook == Hook::AggregateStatus {
            for t in &targets {
                let object =
                    read_optional(&dir.join("downstream").join(format!("{}.yaml", t.name)))?;
                downstream.push(Downstream {
                    target: t.clone(),
                    object,
                });
            }
        }

        let context = file.context.unwrap_or_default().resolve(&object);
        Ok(Case {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: dir.to_owned(),
            hook: file.hook,
            description: file.description,
            context,
            object,
            targets,
            target,
            config,
            downstream,
            expected,
        })
    }

    /// Runs the case against the component at `component` (loaded with the case's
    /// configuration and `options`' limits) and compares the result.
    pub fn run(
        &self,
        runtime: &Runtime,
        component: &Path,
        options: &PluginOptions,
    ) -> Result<Outcome, CaseError> {
        self.run_with(options, |options| runtime.load_file(component, options))
    }

    /// Runs the case against the plugin `load` makes from `options` with the case's
    /// configuration, e.g. component bytes already in memory (a hot reload checks the very
    /// bytes it is about to swap in).
    pub fn run_with(
        &self,
        options: &PluginOptions,
        load: impl FnOnce(PluginOptions) -> Result<crate::Plugin, LoadError>,
    ) -> Result<Outcome, CaseError> {
        let options = options.clone().config(self.config.clone());
        let actual = match load(options) {
            Ok(plugin) => {
                let result = match self.hook {
                    Hook::Place => plugin
                        .place(&self.context, &self.object, &self.targets)
                        .map(|mut names| {
                            names.sort();
                            Value::from(names)
                        }),
                    Hook::Transform => {
                        let target = self.target.clone().unwrap_or_default();
                        plugin
                            .transform(&self.context, &self.object, &target)
                            .map(|o| o.unwrap_or(Value::Null))
                    }
                    Hook::AggregateStatus => plugin
                        .aggregate_status(&self.context, &self.object, &self.downstream)
                        .map(|o| o.unwrap_or(Value::Null)),
                    Hook::Dependencies => plugin
                        .dependencies(&self.context, &self.object)
                        .map(|refs| serde_json::to_value(refs).unwrap_or(Value::Null)),
                    // Not a hook a case can name: `configure` runs before every hook.
                    Hook::Configure => Ok(Value::Null),
                };
                match result {
                    Ok(value) => Expected::Output(value),
                    Err(e) => Expected::Error(error_of(&e)),
                }
            }
            Err(LoadError::Config { source, .. }) => Expected::Error(error_of(&source)),
            Err(source) => {
                return Err(CaseError::Load {
                    case: self.name.clone(),
                    source,
                });
            }
        };
        let passed = matches(&self.expected, &actual, self.hook);
        let diff = (!passed).then(|| diff(&render(&self.expected), &render(&actual)));
        Ok(Outcome {
            actual,
            passed,
            diff,
        })
    }

    /// Rewrites the expected files from an actual result (`ferry plugin test --update`).
    pub fn write_expected(&self, actual: &Expected) -> Result<(), CaseError> {
        let (write, remove) = match actual {
            Expected::Output(_) => ("expected.yaml", "error.yaml"),
            Expected::Error(_) => ("error.yaml", "expected.yaml"),
        };
        let path = self.dir.join(write);
        fs::write(&path, render(actual)).map_err(|source| CaseError::Io { path, source })?;
        let stale = self.dir.join(remove);
        if stale.exists() {
            fs::remove_file(&stale).map_err(|source| CaseError::Io {
                path: stale,
                source,
            })?;
        }
        Ok(())
    }
}

/// The expected form of a call error: its kind and message chain, on one line.
fn error_of(error: &CallError) -> ExpectedError {
    let mut message = error.to_string();
    // A trap's source is wasmtime's report with the guest backtrace: addresses that change
    // with every build would make `--update` rewrite error.yaml for nothing. The trap code
    // is already in the message.
    let mut source = match error {
        CallError::Trap { .. } => None,
        _ => std::error::Error::source(error),
    };
    while let Some(s) = source {
        let text = s.to_string();
        let _ = write!(message, ": {}", text.lines().next().unwrap_or_default());
        source = s.source();
    }
    ExpectedError {
        kind: error.kind(),
        message: Some(message),
    }
}

fn matches(expected: &Expected, actual: &Expected, hook: Hook) -> bool {
    match (expected, actual) {
        (Expected::Output(e), Expected::Output(a))
            if matches!(hook, Hook::Place | Hook::Dependencies) =>
        {
            sorted(e) == sorted(a)
        }
        (Expected::Output(e), Expected::Output(a)) => e == a,
        (Expected::Error(e), Expected::Error(a)) => {
            e.kind == a.kind
                && e.message.as_ref().is_none_or(|m| {
                    a.message
                        .as_deref()
                        .is_some_and(|text| text.contains(m.as_str()))
                })
        }
        _ => false,
    }
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Array(items) => {
            let mut items = items.clone();
            items.sort_by_key(Value::to_string);
            Value::Array(items)
        }
        other => other.clone(),
    }
}

/// YAML rendering used both for diffs and for `--update`.
#[must_use]
pub fn render(value: &Expected) -> String {
    let text = match value {
        Expected::Output(v) => serde_yaml::to_string(v),
        Expected::Error(e) => serde_yaml::to_string(e),
    };
    text.unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

/// A line diff (longest common subsequence) of two texts: unchanged lines start with two
/// spaces, removed ones with `- `, added ones with `+ `.
#[must_use]
pub fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..]. Cases are small (hundreds of lines).
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        }
    }
    out
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CaseError> {
    let text = fs::read_to_string(path).map_err(|source| CaseError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_yaml::from_str(&text).map_err(|source| CaseError::Yaml {
        path: path.to_owned(),
        source,
    })
}

fn read_optional<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, CaseError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(path).map_err(|source| CaseError::Io {
        path: path.to_owned(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_yaml::from_str(&text)
        .map(Some)
        .map_err(|source| CaseError::Yaml {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_marks_removed_and_added_lines() {
        let d = diff("a: 1\nb: 2\nc: 3\n", "a: 1\nb: 5\nc: 3\n");
        assert_eq!(d, "  a: 1\n- b: 2\n+ b: 5\n  c: 3\n");
    }

    #[test]
    fn placement_results_compare_in_any_order() {
        let e = Expected::Output(serde_json::json!(["a", "b"]));
        let a = Expected::Output(serde_json::json!(["b", "a"]));
        assert!(matches(&e, &a, Hook::Place));
        assert!(!matches(&e, &a, Hook::Transform));
    }

    #[test]
    fn an_expected_error_matches_on_kind_and_message_substring() {
        let e = Expected::Error(ExpectedError {
            kind: ErrorKind::InvalidInput,
            message: Some("placement".into()),
        });
        let a = Expected::Error(ExpectedError {
            kind: ErrorKind::InvalidInput,
            message: Some("bad placement annotation".into()),
        });
        assert!(matches(&e, &a, Hook::Place));
        let other = Expected::Error(ExpectedError {
            kind: ErrorKind::Failed,
            message: Some("bad placement annotation".into()),
        });
        assert!(!matches(&e, &other, Hook::Place));
    }
}

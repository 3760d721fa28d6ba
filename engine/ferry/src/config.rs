//! The configuration file (`ferry.yaml`): typed, and validated as a whole before anything
//! starts, so every mistake is reported at once with the key it is under.
//!
//! Relative paths are taken from the directory of the configuration file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::plugin_lookup;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// kcp connection and export.
    pub kcp: KcpConfig,
    /// Target clusters.
    pub targets: Vec<TargetConfig>,
    /// Synced resources.
    pub resources: Vec<ResourceConfig>,
    /// Where first-party plugins (referenced by name) are found.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Engine tuning.
    #[serde(default)]
    pub engine: EngineConfig,
}

/// `kcp:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KcpConfig {
    /// Kubeconfig of Ferry's kcp identity.
    pub kubeconfig: PathBuf,
    /// Context in it (default: its current context).
    #[serde(default)]
    pub context: Option<String>,
    /// Provider workspace path holding the APIExport.
    pub workspace: String,
    /// APIExport name.
    pub export: String,
}

/// One entry of `targets:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetConfig {
    /// Unique name.
    pub name: String,
    /// Kubeconfig for the cluster.
    pub kubeconfig: PathBuf,
    /// Context in it.
    #[serde(default)]
    pub context: Option<String>,
    /// Labels placement sees.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Mutating requests in flight at once.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Sustained mutating requests per second.
    #[serde(default)]
    pub writes_per_second: Option<f64>,
}

/// One entry of `resources:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// API group ("" or omitted for core).
    #[serde(default)]
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// Placement plugin.
    pub placement: PluginRef,
    /// Transform plugin.
    pub transform: PluginRef,
    /// Status plugin; without one, upstream status is left alone.
    #[serde(default)]
    pub status: Option<PluginRef>,
}

/// A plugin and its configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginRef {
    /// A first-party plugin's name (`label-placement`), or a path to a component (`.wasm`).
    pub plugin: String,
    /// Passed to the plugin's `configure` hook.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Per-call deadline in milliseconds (default 250).
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Memory cap in MiB (default 64).
    #[serde(default)]
    pub memory_mib: Option<u64>,
}

/// `plugins:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory of first-party components (`<name>.wasm`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// `engine:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EngineConfig {
    /// Concurrent reconciles per resource.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Resync period in seconds.
    #[serde(default)]
    pub resync_seconds: Option<u64>,
    /// Per-target time limit of one reconcile, in seconds.
    #[serde(default)]
    pub target_timeout_seconds: Option<u64>,
}

/// Everything wrong with a configuration file.
#[derive(Debug)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// `(key, problem)` pairs.
    pub problems: Vec<(String, String)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration {}:", self.file.display())?;
        for (key, problem) in &self.problems {
            write!(f, "\n  {key}: {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A loaded, validated configuration with paths resolved.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Component path of each plugin reference, by its key (`resources[0].placement`).
    pub plugin_paths: BTreeMap<String, PathBuf>,
}

impl Loaded {
    /// The component path for a plugin key.
    pub fn plugin_path(&self, key: &str) -> &Path {
        self.plugin_paths
            .get(key)
            .map_or(Path::new(""), PathBuf::as_path)
    }
}

/// Reads and validates `file`.
pub fn load(file: &Path) -> Result<Loaded, ConfigError> {
    let error = |key: &str, problem: String| ConfigError {
        file: file.to_path_buf(),
        problems: vec![(key.to_string(), problem)],
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| error("(file)", format!("cannot read it: {e}")))?;
    let deserializer = serde_yaml::Deserializer::from_str(&text);
    let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." {
            "(top level)".to_string()
        } else {
            path
        };
        error(&key, e.into_inner().to_string())
    })?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    let mut problems = Vec::new();
    config.kcp.kubeconfig = resolve(&config.kcp.kubeconfig);
    check_file(&mut problems, "kcp.kubeconfig", &config.kcp.kubeconfig);
    if !config.kcp.workspace.starts_with("root") || config.kcp.workspace.contains('/') {
        problems.push((
            "kcp.workspace".into(),
            format!(
                "{:?} is not a workspace path like root:platform",
                config.kcp.workspace
            ),
        ));
    }
    if config.kcp.export.trim().is_empty() {
        problems.push(("kcp.export".into(), "must name the APIExport".into()));
    }
    if config.targets.is_empty() {
        problems.push((
            "targets".into(),
            "at least one target cluster is needed".into(),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, target) in config.targets.iter_mut().enumerate() {
        let key = format!("targets[{i}]");
        if !is_dns_label(&target.name) {
            problems.push((
                format!("{key}.name"),
                format!(
                    "{:?} must be a DNS label (lower-case letters, digits, '-')",
                    target.name
                ),
            ));
        }
        if !names.insert(target.name.clone()) {
            problems.push((
                format!("{key}.name"),
                format!("{:?} is used by another target", target.name),
            ));
        }
        target.kubeconfig = resolve(&target.kubeconfig);
        check_file(
            &mut problems,
            &format!("{key}.kubeconfig"),
            &target.kubeconfig,
        );
        if target.max_in_flight == Some(0) {
            problems.push((format!("{key}.maxInFlight"), "must be at least 1".into()));
        }
        if target.writes_per_second.is_some_and(|r| !(r > 0.0)) {
            problems.push((format!("{key}.writesPerSecond"), "must be positive".into()));
        }
    }
    if config.resources.is_empty() {
        problems.push((
            "resources".into(),
            "at least one resource to sync is needed".into(),
        ));
    }
    let plugin_dir = plugin_dir(&config, &base);
    let mut plugin_paths = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (i, resource) in config.resources.iter().enumerate() {
        let key = format!("resources[{i}]");
        if !seen.insert((resource.group.clone(), resource.resource.clone())) {
            problems.push((format!("{key}.resource"), "listed twice".into()));
        }
        if resource.resource.is_empty() || resource.resource.contains('.') {
            problems.push((format!("{key}.resource"), format!("{:?} must be a plural resource name like deployments (the group goes in `group`)", resource.resource)));
        }
        let refs = [
            ("placement", Some(&resource.placement)),
            ("transform", Some(&resource.transform)),
            ("status", resource.status.as_ref()),
        ];
        for (hook, reference) in refs {
            let Some(reference) = reference else { continue };
            let key = format!("{key}.{hook}");
            if reference.deadline_ms == Some(0) {
                problems.push((format!("{key}.deadlineMs"), "must be at least 1".into()));
            }
            if reference.memory_mib == Some(0) {
                problems.push((format!("{key}.memoryMib"), "must be at least 1".into()));
            }
            match plugin_lookup::find(&reference.plugin, &base, plugin_dir.as_deref()) {
                Ok(path) => {
                    plugin_paths.insert(key, path);
                }
                Err(problem) => problems.push((format!("{key}.plugin"), problem)),
            }
        }
    }
    if problems.is_empty() {
        Ok(Loaded {
            config,
            plugin_paths,
        })
    } else {
        Err(ConfigError {
            file: file.to_path_buf(),
            problems,
        })
    }
}

fn check_file(problems: &mut Vec<(String, String)>, key: &str, path: &Path) {
    if !path.is_file() {
        problems.push((
            key.to_string(),
            format!("{} does not exist", path.display()),
        ));
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Where first-party plugins are looked up: `plugins.dir`, else the shared default
/// ([`plugin_lookup::default_dir`]: `$FERRY_PLUGIN_DIR`, else `plugins/` beside the
/// directory of the `ferry` binary).
fn plugin_dir(config: &Config, base: &Path) -> Option<PathBuf> {
    if let Some(dir) = &config.plugins.dir {
        return Some(if dir.is_absolute() {
            dir.clone()
        } else {
            base.join(dir)
        });
    }
    plugin_lookup::default_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferry-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("plugins")).expect("dir");
        for p in ["label-placement", "default-transform"] {
            write(&dir.join("plugins"), &format!("{p}.wasm"), "");
        }
        write(&dir, "kcp.kubeconfig", "");
        write(&dir, "c1.kubeconfig", "");
        dir
    }

    const VALID: &str = "
kcp: {kubeconfig: kcp.kubeconfig, workspace: 'root:platform', export: kubernetes}
targets:
  - {name: cluster-1, kubeconfig: c1.kubeconfig, labels: {region: eu}}
resources:
  - group: apps
    resource: deployments
    placement: {plugin: label-placement}
    transform: {plugin: default-transform}
plugins: {dir: plugins}
";

    #[test]
    fn a_valid_file_loads_with_paths_resolved_from_its_directory() {
        let dir = temp_dir("valid");
        let loaded = load(&write(&dir, "ferry.yaml", VALID)).expect("valid");
        assert_eq!(loaded.config.kcp.kubeconfig, dir.join("kcp.kubeconfig"));
        assert_eq!(
            loaded.plugin_path("resources[0].placement"),
            dir.join("plugins/label-placement.wasm")
        );
    }

    #[test]
    fn a_typo_is_reported_with_its_key() {
        let dir = temp_dir("typo");
        let text = VALID.replace("labels:", "lables:");
        let err = load(&write(&dir, "ferry.yaml", &text)).expect_err("typo");
        let shown = err.to_string();
        assert!(
            shown.contains("targets[0]") && shown.contains("lables"),
            "{shown}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = temp_dir("many");
        let text = VALID
            .replace("c1.kubeconfig", "missing.kubeconfig")
            .replace("name: cluster-1", "name: Cluster_1")
            .replace("plugin: label-placement", "plugin: nope");
        let err = load(&write(&dir, "ferry.yaml", &text)).expect_err("invalid");
        let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "targets[0].name",
                "targets[0].kubeconfig",
                "resources[0].placement.plugin"
            ],
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("available: default-transform, label-placement"),
            "{err}"
        );
    }
}

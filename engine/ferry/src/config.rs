//! The configuration file (`ferry.yaml`): typed, and validated as a whole before anything
//! starts, so every mistake is reported at once with the key it is under.
//!
//! Relative paths are taken from the directory of the configuration file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use ferry_sync::namespace::PodSecurityLevel;
use ferry_sync::settings::defaults;
use serde::Deserialize;

use crate::plugin_lookup;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
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
    /// Where and how `ferry run --leader-elect` holds its Lease.
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
    /// How Ferry sets up the namespaces it creates on targets.
    #[serde(default)]
    pub namespaces: NamespacesConfig,
}

/// `namespaces:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespacesConfig {
    /// Pod Security Admission level enforced in them (default `baseline`).
    #[serde(default)]
    pub pod_security: PodSecurityLevel,
}

/// `kcp:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
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
    /// Label keys of a workspace's `LogicalCluster` that plugins see (read through the
    /// export's claim on `logicalclusters`); no others do.
    #[serde(default)]
    pub workspace_labels: Vec<String>,
    /// Annotation keys of a workspace's `LogicalCluster` that plugins see.
    #[serde(default)]
    pub workspace_annotations: Vec<String>,
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
    /// The most mutating requests per second (a hard cap; below it the rate adapts to the
    /// cluster's answers).
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
    /// Placement plugin, or `dependents`: the objects go exactly where the objects that
    /// reference them are.
    pub placement: PlacementConfig,
    /// Transform plugin.
    pub transform: PluginRef,
    /// Status plugin; without one, upstream status is left alone.
    #[serde(default)]
    pub status: Option<PluginRef>,
    /// Dependencies plugin (contract v0.2.0): names the objects each object needs on its
    /// targets; those of resources with `placement: dependents` follow it there.
    #[serde(default)]
    pub dependencies: Option<PluginRef>,
}

/// `resources[].placement`: a plugin, or the word `dependents`.
#[derive(Debug)]
pub enum PlacementConfig {
    /// A placement plugin.
    Plugin(PluginRef),
    /// Wherever the objects that reference them are placed.
    Dependents,
}

impl PlacementConfig {
    /// The plugin, if placement is by plugin.
    pub fn plugin(&self) -> Option<&PluginRef> {
        match self {
            PlacementConfig::Plugin(reference) => Some(reference),
            PlacementConfig::Dependents => None,
        }
    }
}

impl<'de> Deserialize<'de> for PlacementConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        // Untagged enums only say "did not match any variant": read a string or a map
        // explicitly so the error names what is expected.
        match serde_yaml::Value::deserialize(deserializer)? {
            serde_yaml::Value::String(word) if word == "dependents" => {
                Ok(PlacementConfig::Dependents)
            }
            serde_yaml::Value::String(word) => Err(D::Error::custom(format!(
                "{word:?} is not a placement: use `dependents` or a plugin ({{plugin: ..., config: ...}})"
            ))),
            value @ serde_yaml::Value::Mapping(_) => serde_yaml::from_value(value)
                .map(PlacementConfig::Plugin)
                .map_err(|e| D::Error::custom(e.to_string())),
            _ => Err(D::Error::custom(
                "must be `dependents` or a plugin ({plugin: ..., config: ...})",
            )),
        }
    }
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
    /// Per-call deadline in milliseconds (default 250; 5000 for a component that imports
    /// WASI, i.e. carries a Python or JavaScript runtime).
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Memory cap in MiB (default 64; 128 for a component that imports WASI).
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Golden cases (the folder `ferry plugin test` runs) every component must pass before
    /// it runs: at start-up and before a hot reload swaps it in.
    #[serde(default)]
    pub cases: Option<PathBuf>,
}

/// `plugins:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct PluginsConfig {
    /// Directory of first-party components (`<name>.wasm`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Whether `ferry run` watches its plugin files and swaps in changed components
    /// (default true).
    #[serde(default)]
    pub reload: Option<bool>,
    /// How often the plugin files are read to notice a change, in milliseconds.
    #[serde(default)]
    pub reload_interval_ms: Option<u64>,
}

/// Default of `plugins.reloadIntervalMs`: a change runs within about two polls (a change is
/// tried once two polls agree), and reading and hashing a few components of 100-200 KB this
/// often costs well under a millisecond per second.
pub const DEFAULT_RELOAD_INTERVAL_MS: u64 = 2000;

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

/// `leaderElection:`. Every key is optional; it only takes effect with `--leader-elect` or
/// `--share-work` (or `shareWork: true`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderElectionConfig {
    /// The target cluster that holds the Lease (default: the first target).
    #[serde(default)]
    pub target: Option<String>,
    /// Namespace of the Lease (default `ferry-system`; created if missing).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name of the Lease (default `ferry-<owner id>`, one per installation).
    #[serde(default)]
    pub name: Option<String>,
    /// Lease duration in seconds.
    #[serde(default)]
    pub lease_duration_seconds: Option<u64>,
    /// Renew deadline in seconds.
    #[serde(default)]
    pub renew_deadline_seconds: Option<u64>,
    /// Retry period in seconds.
    #[serde(default)]
    pub retry_period_seconds: Option<u64>,
    /// Replicas share the work by workspace instead of electing a leader (as `ferry run
    /// --share-work`).
    #[serde(default)]
    pub share_work: bool,
}

/// Default namespace of the leader Lease.
pub const DEFAULT_LEASE_NAMESPACE: &str = "ferry-system";

impl LeaderElectionConfig {
    /// Lease duration, renew deadline and retry period, defaults filled in.
    pub fn timings(&self) -> ferry_sync::lease::LeaseTimings {
        let defaults = ferry_sync::lease::LeaseTimings::default();
        let secs =
            |v: Option<u64>, d: std::time::Duration| v.map_or(d, std::time::Duration::from_secs);
        ferry_sync::lease::LeaseTimings {
            lease_duration: secs(self.lease_duration_seconds, defaults.lease_duration),
            renew_deadline: secs(self.renew_deadline_seconds, defaults.renew_deadline),
            retry_period: secs(self.retry_period_seconds, defaults.retry_period),
        }
    }
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
    /// Golden-case folder of each plugin reference that has `cases:`, by its key.
    pub case_dirs: BTreeMap<String, PathBuf>,
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
    check_kubeconfig(
        &mut problems,
        "kcp",
        &config.kcp.kubeconfig,
        config.kcp.context.as_deref(),
    );
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
    check_metadata_keys(
        &mut problems,
        "kcp.workspaceLabels",
        &config.kcp.workspace_labels,
    );
    check_metadata_keys(
        &mut problems,
        "kcp.workspaceAnnotations",
        &config.kcp.workspace_annotations,
    );
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
        check_kubeconfig(
            &mut problems,
            &key,
            &target.kubeconfig,
            target.context.as_deref(),
        );
        if let Some(n) = target.max_in_flight {
            check_range(
                &mut problems,
                &format!("{key}.maxInFlight"),
                n,
                limits::MAX_IN_FLIGHT,
                &format!(
                    "mutating requests in flight at once on this target (default {})",
                    defaults::MAX_IN_FLIGHT
                ),
            );
        }
        if let Some(rate) = target.writes_per_second {
            // NaN and the infinities are not finite (`.nan`, `.inf` in YAML).
            if !rate.is_finite() || rate < limits::MIN_WRITES_PER_SECOND {
                problems.push((
                    format!("{key}.writesPerSecond"),
                    format!(
                        "must be a finite number of at least {}, not {rate}: the most mutating \
                         requests per second on this target (default: adaptive, up to {})",
                        limits::MIN_WRITES_PER_SECOND,
                        ferry_sync::pacing::DEFAULT_CEILING
                    ),
                ));
            }
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
    let mut case_dirs = BTreeMap::new();
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
            ("placement", resource.placement.plugin()),
            ("transform", Some(&resource.transform)),
            ("status", resource.status.as_ref()),
            ("dependencies", resource.dependencies.as_ref()),
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
            if let Some(cases) = &reference.cases {
                let cases = resolve(cases);
                if !cases.is_dir() {
                    problems.push((
                        format!("{key}.cases"),
                        format!(
                            "{} is not a folder of golden cases (one sub-folder per case, each \
                             with case.yaml)",
                            cases.display()
                        ),
                    ));
                }
                case_dirs.insert(key.clone(), cases);
            }
            match plugin_lookup::find(&reference.plugin, &base, plugin_dir.as_deref()) {
                Ok(path) => {
                    plugin_paths.insert(key, path);
                }
                Err(problem) => problems.push((format!("{key}.plugin"), problem)),
            }
        }
    }
    check_dependencies(&mut problems, &config.resources);
    check_engine(&mut problems, &config.engine);
    if let Some(ms) = config.plugins.reload_interval_ms {
        check_range(
            &mut problems,
            "plugins.reloadIntervalMs",
            ms,
            limits::RELOAD_INTERVAL_MS,
            &format!(
                "milliseconds between two reads of the plugin files (default \
                 {DEFAULT_RELOAD_INTERVAL_MS})"
            ),
        );
    }
    check_leader_election(&mut problems, &config.leader_election, &names);
    if problems.is_empty() {
        Ok(Loaded {
            config,
            plugin_paths,
            case_dirs,
        })
    } else {
        Err(ConfigError {
            file: file.to_path_buf(),
            problems,
        })
    }
}

/// Opted-in label or annotation keys: each a Kubernetes metadata key (`[prefix/]name`, the
/// name 1-63 alphanumerics, '-', '_', '.', starting and ending alphanumeric, the prefix a DNS
/// subdomain), listed once. A key that can never exist is a typo the operator should hear of.
fn check_metadata_keys(problems: &mut Vec<(String, String)>, key: &str, keys: &[String]) {
    let mut seen = BTreeSet::new();
    for (i, k) in keys.iter().enumerate() {
        if !is_metadata_key(k) {
            problems.push((
                format!("{key}[{i}]"),
                format!("{k:?} is not a label or annotation key like team or example.com/region"),
            ));
        } else if !seen.insert(k) {
            problems.push((format!("{key}[{i}]"), format!("{k:?} is listed twice")));
        }
    }
}

fn is_metadata_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

/// Ranges of the numeric settings. The lower bounds keep the engine working at all (a zero
/// resync period panics tokio's interval, a zero target timeout syncs nothing); the upper
/// bounds are far beyond any useful value and keep the engine from panicking at start-up or
/// on its first tick (tokio's semaphore takes at most `usize::MAX >> 3` permits, an instant
/// plus a period of `u64::MAX` seconds overflows, a rate under ~5e-20 has no representable
/// interval) or from spawning a runaway number of tasks.
mod limits {
    /// `engine.workers`.
    pub const WORKERS: (usize, usize) = (1, 1024);
    /// `engine.resyncSeconds`: one second to one year.
    pub const RESYNC_SECONDS: (u64, u64) = (1, 365 * 24 * 3600);
    /// Below this, a resync period works but reconciles every object that often.
    pub const RECOMMENDED_MIN_RESYNC_SECONDS: u64 = 60;
    /// `plugins.reloadIntervalMs`: 100 ms to one hour.
    pub const RELOAD_INTERVAL_MS: (u64, u64) = (100, 3_600_000);
    /// `engine.targetTimeoutSeconds`: one second to one day.
    pub const TARGET_TIMEOUT_SECONDS: (u64, u64) = (1, 24 * 3600);
    /// `targets[].maxInFlight`. An API server admits 200 mutating requests at once from all
    /// its clients together by default (`--max-mutating-requests-inflight`), so far fewer
    /// than this already saturate it.
    pub const MAX_IN_FLIGHT: (usize, usize) = (1, 10_000);
    /// `targets[].writesPerSecond`: at least one write every 1000 s.
    pub const MIN_WRITES_PER_SECOND: f64 = 0.001;
    /// `leaderElection.leaseDurationSeconds`: up to an hour (a standby waits this long
    /// after a crash of the leader).
    pub const LEASE_DURATION_SECONDS: (u64, u64) = (2, 3600);
    /// `leaderElection.renewDeadlineSeconds`; also below the lease duration.
    pub const RENEW_DEADLINE_SECONDS: (u64, u64) = (1, 3599);
    /// `leaderElection.retryPeriodSeconds`; also below the renew deadline.
    pub const RETRY_PERIOD_SECONDS: (u64, u64) = (1, 3598);
}

/// `leaderElection:` settings that cannot work: out of range, in the wrong order (the leader
/// must give up before a standby may take over, and retry at least once before it gives
/// up), a target that is not configured, a name the API server refuses.
fn check_leader_election(
    problems: &mut Vec<(String, String)>,
    election: &LeaderElectionConfig,
    targets: &BTreeSet<String>,
) {
    if let Some(target) = &election.target
        && !targets.contains(target)
    {
        problems.push((
            "leaderElection.target".into(),
            format!(
                "{target:?} is not a configured target (targets: {})",
                targets.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if let Some(namespace) = &election.namespace
        && !is_dns_label(namespace)
    {
        problems.push((
            "leaderElection.namespace".into(),
            format!("{namespace:?} must be a DNS label (lower-case letters, digits, '-')"),
        ));
    }
    if let Some(name) = &election.name
        && !is_dns_subdomain(name)
    {
        problems.push((
            "leaderElection.name".into(),
            format!(
                "{name:?} must be a DNS subdomain (lower-case letters, digits, '-', '.'; at most 253)"
            ),
        ));
    }
    let timings = election.timings();
    let before = problems.len();
    for (key, value, range, meaning, default) in [
        (
            "leaderElection.leaseDurationSeconds",
            election.lease_duration_seconds,
            limits::LEASE_DURATION_SECONDS,
            "seconds a standby waits, after the Lease last changed, before it takes over",
            timings.lease_duration,
        ),
        (
            "leaderElection.renewDeadlineSeconds",
            election.renew_deadline_seconds,
            limits::RENEW_DEADLINE_SECONDS,
            "seconds the leader keeps trying to renew before it stops writing",
            timings.renew_deadline,
        ),
        (
            "leaderElection.retryPeriodSeconds",
            election.retry_period_seconds,
            limits::RETRY_PERIOD_SECONDS,
            "seconds between two renewals, or two tries of a standby",
            timings.retry_period,
        ),
    ] {
        if let Some(n) = value {
            check_range(
                problems,
                key,
                n,
                range,
                &format!("{meaning} (default {})", default.as_secs()),
            );
        }
    }
    if problems.len() > before {
        return;
    }
    if timings.renew_deadline >= timings.lease_duration {
        problems.push((
            "leaderElection.renewDeadlineSeconds".into(),
            format!(
                "must be less than leaseDurationSeconds ({}), not {}: the leader must stop \
                 writing before a standby may take over",
                timings.lease_duration.as_secs(),
                timings.renew_deadline.as_secs()
            ),
        ));
    } else if timings.retry_period >= timings.renew_deadline {
        problems.push((
            "leaderElection.retryPeriodSeconds".into(),
            format!(
                "must be less than renewDeadlineSeconds ({}), not {}: the leader must be \
                 able to retry a failed renewal before it gives up",
                timings.renew_deadline.as_secs(),
                timings.retry_period.as_secs()
            ),
        ));
    }
}

/// Dependencies that cannot work: objects placed by dependents that nothing references, a
/// `dependencies` plugin whose references would all be ignored, or a chain (a resource
/// placed by its dependents that has dependencies of its own). References to resources that
/// are not configured with `placement: dependents` are ignored at run time, by design: a
/// plugin that knows ServiceAccounts need not be reconfigured where they are not synced.
fn check_dependencies(problems: &mut Vec<(String, String)>, resources: &[ResourceConfig]) {
    let dependents = resources.iter().any(|r| r.dependencies.is_some());
    let placed_by_dependents = resources
        .iter()
        .any(|r| matches!(r.placement, PlacementConfig::Dependents));
    for (i, resource) in resources.iter().enumerate() {
        let key = format!("resources[{i}]");
        let by_dependents = matches!(resource.placement, PlacementConfig::Dependents);
        if by_dependents && !dependents {
            problems.push((
                format!("{key}.placement"),
                "`dependents` places these objects where the objects that reference them are, \
                 but no resource has a `dependencies` plugin: nothing would ever reference them"
                    .into(),
            ));
        }
        if by_dependents && resource.dependencies.is_some() {
            problems.push((
                format!("{key}.dependencies"),
                "a resource placed by its dependents cannot have dependencies of its own \
                 (chains of dependencies are not supported)"
                    .into(),
            ));
        }
        if resource.dependencies.is_some() && !by_dependents && !placed_by_dependents {
            problems.push((
                format!("{key}.dependencies"),
                "no resource has `placement: dependents`: every reference this plugin \
                 returns would be ignored (configure the referenced resources, e.g. \
                 configmaps, with `placement: dependents`)"
                    .into(),
            ));
        }
    }
}

/// `engine:` settings that the engine cannot run with.
fn check_engine(problems: &mut Vec<(String, String)>, engine: &EngineConfig) {
    if let Some(n) = engine.workers {
        check_range(
            problems,
            "engine.workers",
            n,
            limits::WORKERS,
            &format!(
                "reconciles of one resource running at once (default {})",
                defaults::WORKERS
            ),
        );
    }
    if let Some(n) = engine.resync_seconds {
        check_range(
            problems,
            "engine.resyncSeconds",
            n,
            limits::RESYNC_SECONDS,
            &format!(
                "seconds between two reconciles of every object (default {}; at least {} is \
                 recommended, since each resync reconciles every object)",
                defaults::RESYNC.as_secs(),
                limits::RECOMMENDED_MIN_RESYNC_SECONDS
            ),
        );
    }
    if let Some(n) = engine.target_timeout_seconds {
        check_range(
            problems,
            "engine.targetTimeoutSeconds",
            n,
            limits::TARGET_TIMEOUT_SECONDS,
            &format!(
                "seconds one target's part of a reconcile may take before it is given up and \
                 retried (default {})",
                defaults::TARGET_TIMEOUT.as_secs()
            ),
        );
    }
}

/// Reports `value` under `key` unless `min <= value <= max`; `meaning` says what the
/// setting is, so the message stands on its own.
fn check_range<T: PartialOrd + fmt::Display>(
    problems: &mut Vec<(String, String)>,
    key: &str,
    value: T,
    (min, max): (T, T),
    meaning: &str,
) {
    if value < min || value > max {
        problems.push((
            key.to_string(),
            format!("must be from {min} to {max}, not {value}: {meaning}"),
        ));
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

/// A kubeconfig under `{section}.kubeconfig` must be readable, parse as a kubeconfig and have
/// the context `{section}.context` names (or a current context): otherwise every command
/// would fail later, with exit code 1 instead of 2 and without the whole list of problems.
/// Each problem is one line (a YAML error's excerpt of the file is left out).
fn check_kubeconfig(
    problems: &mut Vec<(String, String)>,
    section: &str,
    path: &Path,
    context: Option<&str>,
) {
    let key = format!("{section}.kubeconfig");
    if !path.is_file() {
        check_file(problems, &key, path);
        return;
    }
    let first_line = |e: &dyn fmt::Display| {
        let text = e.to_string();
        text.lines().next().unwrap_or_default().trim().to_string()
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            problems.push((
                key,
                format!("cannot read {}: {}", path.display(), first_line(&e)),
            ));
            return;
        }
    };
    let kubeconfig = match kube::config::Kubeconfig::from_yaml(&text) {
        Ok(kubeconfig) => kubeconfig,
        Err(e) => {
            problems.push((
                key,
                format!("{} is not a kubeconfig: {}", path.display(), first_line(&e)),
            ));
            return;
        }
    };
    let wanted = context
        .map(str::to_string)
        .or(kubeconfig.current_context.clone());
    let names: Vec<&str> = kubeconfig
        .contexts
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    match wanted {
        None => problems.push((
            format!("{section}.context"),
            format!(
                "{} has no current-context; name one of its contexts ({})",
                path.display(),
                names.join(", ")
            ),
        )),
        Some(name) if !names.contains(&name.as_str()) => problems.push((
            if context.is_some() {
                format!("{section}.context")
            } else {
                key
            },
            format!(
                "no context {name:?} in {} (contexts: {})",
                path.display(),
                names.join(", ")
            ),
        )),
        Some(_) => {}
    }
}

/// A DNS-1123 subdomain: dot-separated DNS labels, at most 253 characters in all.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
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
        write(&dir, "kcp.kubeconfig", KUBECONFIG);
        write(&dir, "c1.kubeconfig", KUBECONFIG);
        dir
    }

    const KUBECONFIG: &str = "
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
";

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

    /// `examples/ferry.yaml` is what the quick start runs: it must keep loading as the
    /// configuration grows (the demo would otherwise be the first to notice).
    #[test]
    fn the_example_configuration_loads() {
        let dir = temp_dir("example");
        for p in [
            "deployment-status",
            "passthrough-status",
            "workload-dependencies",
        ] {
            write(&dir.join("plugins"), &format!("{p}.wasm"), "");
        }
        for c in ["cluster-1", "cluster-2"] {
            write(&dir, &format!("{c}.kubeconfig"), KUBECONFIG);
        }
        // The environment's kcp kubeconfig has a `root` context.
        write(
            &dir,
            "kcp.kubeconfig",
            &KUBECONFIG.replace("name: x", "name: root"),
        );
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ferry.yaml"),
        )
        .expect("examples/ferry.yaml");
        let text = example.replace("../target/ferry-env/", "") + "plugins: {dir: plugins}\n";
        let loaded = load(&write(&dir, "ferry.yaml", &text)).expect("the example loads");
        let names: Vec<&str> = loaded
            .config
            .resources
            .iter()
            .map(|r| r.resource.as_str())
            .collect();
        assert_eq!(names, ["deployments", "configmaps", "secrets", "services"]);
    }

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
    fn reload_settings_and_golden_cases_load_with_the_cases_folder_resolved() {
        let dir = temp_dir("reload");
        std::fs::create_dir_all(dir.join("cases")).expect("cases dir");
        let text = VALID
            .replace(
                "placement: {plugin: label-placement}",
                "placement: {plugin: label-placement, cases: cases}",
            )
            .replace(
                "plugins: {dir: plugins}",
                "plugins: {dir: plugins, reload: false, reloadIntervalMs: 500}",
            );
        let loaded = load(&write(&dir, "ferry.yaml", &text)).expect("valid");
        assert_eq!(loaded.config.plugins.reload, Some(false));
        assert_eq!(loaded.config.plugins.reload_interval_ms, Some(500));
        assert_eq!(
            loaded.case_dirs.get("resources[0].placement"),
            Some(&dir.join("cases"))
        );
    }

    #[test]
    fn a_missing_cases_folder_and_a_reload_interval_out_of_range_are_refused() {
        let dir = temp_dir("reload-bad");
        let text = VALID
            .replace(
                "placement: {plugin: label-placement}",
                "placement: {plugin: label-placement, cases: no-such-cases}",
            )
            .replace(
                "plugins: {dir: plugins}",
                "plugins: {dir: plugins, reloadIntervalMs: 10}",
            );
        let err = load(&write(&dir, "ferry.yaml", &text)).expect_err("invalid");
        let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["resources[0].placement.cases", "plugins.reloadIntervalMs"],
            "{:?}",
            err.problems
        );
        assert!(
            err.problems[0]
                .1
                .contains("no-such-cases is not a folder of golden cases")
        );
        assert!(
            err.problems[1]
                .1
                .contains("must be from 100 to 3600000, not 10")
        );
    }

    #[test]
    fn the_pod_security_level_defaults_to_baseline_and_can_be_set() {
        let dir = temp_dir("psa");
        let loaded = load(&write(&dir, "ferry.yaml", VALID)).expect("valid");
        assert_eq!(
            loaded.config.namespaces.pod_security,
            PodSecurityLevel::Baseline
        );
        let text = format!("{VALID}namespaces: {{podSecurity: restricted}}\n");
        let loaded = load(&write(&dir, "ferry.yaml", &text)).expect("valid");
        assert_eq!(
            loaded.config.namespaces.pod_security,
            PodSecurityLevel::Restricted
        );
    }

    #[test]
    fn an_unknown_pod_security_level_is_refused_with_its_key_and_the_levels() {
        let dir = temp_dir("psa-bad");
        let text = format!("{VALID}namespaces: {{podSecurity: strict}}\n");
        let err = load(&write(&dir, "ferry.yaml", &text)).expect_err("unknown level");
        let [(key, problem)] = err.problems.as_slice() else {
            panic!("one problem expected: {:?}", err.problems);
        };
        assert_eq!(key, "namespaces.podSecurity");
        assert!(
            problem.contains("strict")
                && problem.contains("baseline")
                && problem.contains("restricted"),
            "{problem}"
        );
    }

    /// `VALID`'s Deployments with a dependencies plugin (`deployments`), and `extra` as
    /// more `resources:` entries.
    fn load_dependencies(
        name: &str,
        deployments: &str,
        extra: &str,
    ) -> Result<Loaded, ConfigError> {
        let dir = temp_dir(name);
        write(&dir.join("plugins"), "workload-dependencies.wasm", "");
        let text = VALID.replace(
            "    transform: {plugin: default-transform}\n",
            &format!("    transform: {{plugin: default-transform}}\n{deployments}{extra}"),
        );
        load(&write(&dir, "ferry.yaml", &text))
    }

    const DEPENDENCIES: &str = "    dependencies: {plugin: workload-dependencies}\n";
    const CONFIG_MAPS: &str = "  - resource: configmaps\n    placement: dependents\n    transform: {plugin: default-transform}\n";

    #[test]
    fn dependencies_and_placement_by_dependents_load() {
        let loaded = load_dependencies("deps", DEPENDENCIES, CONFIG_MAPS).expect("valid");
        let resources = &loaded.config.resources;
        assert!(resources[0].dependencies.is_some());
        assert!(matches!(resources[0].placement, PlacementConfig::Plugin(_)));
        assert!(matches!(
            resources[1].placement,
            PlacementConfig::Dependents
        ));
        assert!(
            loaded
                .plugin_path("resources[0].dependencies")
                .ends_with("workload-dependencies.wasm")
        );
    }

    #[test]
    fn placement_by_dependents_without_any_dependencies_plugin_is_refused() {
        let err = load_dependencies("deps-none", "", CONFIG_MAPS).expect_err("nobody references");
        let [(key, problem)] = err.problems.as_slice() else {
            panic!("one problem expected: {:?}", err.problems);
        };
        assert_eq!(key, "resources[1].placement");
        assert!(
            problem.contains("no resource has a `dependencies` plugin"),
            "{problem}"
        );
    }

    #[test]
    fn a_dependencies_plugin_without_any_resource_placed_by_dependents_is_refused() {
        let err = load_dependencies("deps-useless", DEPENDENCIES, "").expect_err("all ignored");
        let [(key, problem)] = err.problems.as_slice() else {
            panic!("one problem expected: {:?}", err.problems);
        };
        assert_eq!(key, "resources[0].dependencies");
        assert!(problem.contains("placement: dependents"), "{problem}");
    }

    #[test]
    fn a_chain_of_dependencies_is_refused() {
        let chained = format!("{}{DEPENDENCIES}", CONFIG_MAPS);
        let err = load_dependencies("deps-chain", DEPENDENCIES, &chained).expect_err("chain");
        assert!(
            err.problems
                .iter()
                .any(|(k, p)| k == "resources[1].dependencies" && p.contains("chains")),
            "{:?}",
            err.problems
        );
    }

    #[test]
    fn a_placement_word_other_than_dependents_is_refused_with_what_is_expected() {
        let wrong = CONFIG_MAPS.replace("placement: dependents", "placement: dependants");
        let err = load_dependencies("deps-typo", DEPENDENCIES, &wrong).expect_err("typo");
        let shown = err.to_string();
        assert!(shown.contains("resources[1].placement"), "{shown}");
        assert!(
            shown.contains("\"dependants\" is not a placement: use `dependents`"),
            "{shown}"
        );
        assert_eq!(shown.lines().count(), 2, "{shown}");
    }

    #[test]
    fn opted_in_workspace_keys_load_and_a_key_that_cannot_exist_is_refused_with_its_index() {
        let dir = temp_dir("workspace-keys");
        let with = |keys: &str| {
            VALID.replace(
                "export: kubernetes}",
                &format!("export: kubernetes, {keys}}}"),
            )
        };
        let text =
            with("workspaceLabels: [team, example.com/region], workspaceAnnotations: [owner]");
        let loaded = load(&write(&dir, "ferry.yaml", &text)).expect("valid");
        assert_eq!(
            loaded.config.kcp.workspace_labels,
            ["team", "example.com/region"]
        );
        assert_eq!(loaded.config.kcp.workspace_annotations, ["owner"]);
        let text = with("workspaceLabels: [team, 'team a'], workspaceAnnotations: [owner, owner]");
        let err = load(&write(&dir, "ferry.yaml", &text)).expect_err("bad keys");
        let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["kcp.workspaceLabels[1]", "kcp.workspaceAnnotations[1]"],
            "{:?}",
            err.problems
        );
        assert!(
            err.problems[0].1.contains("\"team a\""),
            "{:?}",
            err.problems
        );
        assert!(err.problems[1].1.contains("twice"), "{:?}", err.problems);
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

    /// `VALID` with `target` appended to the target's flow mapping and `engine` as the
    /// `engine:` section, loaded from a fresh directory.
    fn load_with(name: &str, target: &str, engine: &str) -> Result<Loaded, ConfigError> {
        let dir = temp_dir(name);
        let mut text = VALID.replace(
            "labels: {region: eu}",
            &format!("labels: {{region: eu}}{target}"),
        );
        text.push_str(&format!("engine: {{{engine}}}\n"));
        load(&write(&dir, "ferry.yaml", &text))
    }

    /// The problems of [`load_with`], which must fail.
    fn problems_with(name: &str, target: &str, engine: &str) -> Vec<(String, String)> {
        load_with(name, target, engine)
            .expect_err("out-of-range settings must be refused")
            .problems
    }

    /// The one problem reported, which must be under `key`.
    fn only_problem(problems: &[(String, String)], key: &str) -> String {
        match problems {
            [(k, problem)] if k == key => problem.clone(),
            _ => panic!("expected one problem under {key}, got {problems:?}"),
        }
    }

    #[test]
    fn a_resync_period_of_zero_is_refused_with_its_key_and_the_recommended_minimum() {
        let problems = problems_with("resync-zero", "", "resyncSeconds: 0");
        let problem = only_problem(&problems, "engine.resyncSeconds");
        assert!(problem.contains("must be from 1 to"), "{problem}");
        assert!(problem.contains("not 0"), "{problem}");
        assert!(problem.contains("at least 60 is recommended"), "{problem}");
    }

    #[test]
    fn a_resync_period_too_long_for_a_timer_is_refused() {
        let problems = problems_with("resync-huge", "", "resyncSeconds: 18446744073709551615");
        let problem = only_problem(&problems, "engine.resyncSeconds");
        assert!(problem.contains("not 18446744073709551615"), "{problem}");
    }

    #[test]
    fn a_target_timeout_of_zero_is_refused_with_its_key() {
        let problems = problems_with("timeout-zero", "", "targetTimeoutSeconds: 0");
        let problem = only_problem(&problems, "engine.targetTimeoutSeconds");
        assert!(
            problem.contains("must be from 1 to 86400, not 0"),
            "{problem}"
        );
    }

    #[test]
    fn zero_workers_are_refused_with_their_key() {
        let problems = problems_with("workers-zero", "", "workers: 0");
        let problem = only_problem(&problems, "engine.workers");
        assert!(
            problem.contains("must be from 1 to 1024, not 0"),
            "{problem}"
        );
    }

    #[test]
    fn a_runaway_number_of_workers_is_refused() {
        let problems = problems_with("workers-huge", "", "workers: 1000000");
        only_problem(&problems, "engine.workers");
    }

    #[test]
    fn a_max_in_flight_of_zero_is_refused_with_the_targets_key() {
        let problems = problems_with("in-flight-zero", ", maxInFlight: 0", "");
        let problem = only_problem(&problems, "targets[0].maxInFlight");
        assert!(
            problem.contains("must be from 1 to 10000, not 0"),
            "{problem}"
        );
    }

    #[test]
    fn a_max_in_flight_beyond_what_a_semaphore_holds_is_refused() {
        let problems = problems_with("in-flight-huge", ", maxInFlight: 18446744073709551615", "");
        only_problem(&problems, "targets[0].maxInFlight");
    }

    #[test]
    fn a_write_rate_that_is_not_a_positive_finite_number_is_refused_with_the_targets_key() {
        for (i, rate) in ["0", "-1", ".nan", ".inf", "1e-30"].into_iter().enumerate() {
            let problems = problems_with(
                &format!("rate-{i}"),
                &format!(", writesPerSecond: {rate}"),
                "",
            );
            let problem = only_problem(&problems, "targets[0].writesPerSecond");
            assert!(
                problem.contains("must be a finite number of at least 0.001"),
                "{rate}: {problem}"
            );
        }
    }

    #[test]
    fn every_bad_engine_setting_is_reported_at_once_with_the_others() {
        let problems = problems_with(
            "engine-many",
            ", maxInFlight: 0, writesPerSecond: 0",
            "workers: 0, resyncSeconds: 0, targetTimeoutSeconds: 0",
        );
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "targets[0].maxInFlight",
                "targets[0].writesPerSecond",
                "engine.workers",
                "engine.resyncSeconds",
                "engine.targetTimeoutSeconds",
            ]
        );
    }

    #[test]
    fn the_bounds_of_every_range_are_accepted() {
        for (i, (target, engine)) in [
            (
                ", maxInFlight: 1, writesPerSecond: 0.001",
                "workers: 1, resyncSeconds: 1, targetTimeoutSeconds: 1",
            ),
            (
                ", maxInFlight: 10000, writesPerSecond: 1e300",
                "workers: 1024, resyncSeconds: 31536000, targetTimeoutSeconds: 86400",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let loaded = load_with(&format!("bounds-{i}"), target, engine);
            assert!(loaded.is_ok(), "{target} {engine}: {:?}", loaded.err());
        }
    }

    #[test]
    fn a_kubeconfig_that_is_not_one_is_refused_with_its_key_in_one_line() {
        let dir = temp_dir("bad-kubeconfig");
        std::fs::write(dir.join("garbage.kubeconfig"), [0xff, 0xfe, 0x00, 0x9c]).expect("write");
        write(&dir, "broken.kubeconfig", "just: [a, list\n");
        write(&dir, "empty.kubeconfig", "hello: world\n");
        for (file, context, key, says) in [
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
            let text = VALID.replace(
                "kubeconfig: c1.kubeconfig, labels: {region: eu}",
                &format!("kubeconfig: {file}, labels: {{region: eu}}{context}"),
            );
            let err = load(&write(&dir, "ferry.yaml", &text)).expect_err(file);
            let problem = only_problem(&err.problems, key);
            assert!(
                problem.contains(says) && problem.contains(file),
                "{problem}"
            );
            assert!(!problem.contains('\n'), "{problem}");
        }
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

    /// `VALID` with `section` as its `leaderElection:` section.
    fn load_election(name: &str, section: &str) -> Result<Loaded, ConfigError> {
        let dir = temp_dir(name);
        let text = format!("{VALID}leaderElection: {{{section}}}\n");
        load(&write(&dir, "ferry.yaml", &text))
    }

    #[test]
    fn leader_election_defaults_to_controller_runtimes_timings_without_a_section() {
        let dir = temp_dir("election-defaults");
        let loaded = load(&write(&dir, "ferry.yaml", VALID)).expect("valid");
        let election = &loaded.config.leader_election;
        assert_eq!(election.target, None);
        assert_eq!(election.namespace, None);
        assert_eq!(election.name, None);
        let timings = election.timings();
        assert_eq!(timings.lease_duration, std::time::Duration::from_secs(15));
        assert_eq!(timings.renew_deadline, std::time::Duration::from_secs(10));
        assert_eq!(timings.retry_period, std::time::Duration::from_secs(2));
    }

    #[test]
    fn a_full_leader_election_section_loads() {
        let loaded = load_election(
            "election-full",
            "target: cluster-1, namespace: ops, name: ferry.prod, leaseDurationSeconds: 30, \
             renewDeadlineSeconds: 20, retryPeriodSeconds: 5",
        )
        .expect("valid");
        let election = &loaded.config.leader_election;
        assert_eq!(election.target.as_deref(), Some("cluster-1"));
        assert_eq!(election.name.as_deref(), Some("ferry.prod"));
        assert_eq!(
            election.timings().retry_period,
            std::time::Duration::from_secs(5)
        );
    }

    #[test]
    fn share_work_is_off_unless_the_section_says_so() {
        let dir = temp_dir("share-work-default");
        let loaded = load(&write(&dir, "ferry.yaml", VALID)).expect("valid");
        assert!(!loaded.config.leader_election.share_work);
        let loaded = load_election("share-work", "shareWork: true").expect("valid");
        assert!(loaded.config.leader_election.share_work);
        let err = load_election("share-work-bad", "shareWork: maybe").expect_err("not a bool");
        assert!(err.to_string().contains("shareWork"), "{err}");
    }

    #[test]
    fn a_lease_on_a_target_that_is_not_configured_is_refused_with_the_targets_listed() {
        let err = load_election("election-target", "target: cluster-9").expect_err("unknown");
        let problem = only_problem(&err.problems, "leaderElection.target");
        assert!(
            problem.contains("\"cluster-9\" is not a configured target (targets: cluster-1)"),
            "{problem}"
        );
    }

    #[test]
    fn a_renew_deadline_not_below_the_lease_duration_is_refused() {
        let err = load_election(
            "election-order",
            "leaseDurationSeconds: 10, renewDeadlineSeconds: 10",
        )
        .expect_err("order");
        let problem = only_problem(&err.problems, "leaderElection.renewDeadlineSeconds");
        assert!(
            problem.contains("must be less than leaseDurationSeconds (10), not 10"),
            "{problem}"
        );
    }

    #[test]
    fn a_retry_period_not_below_the_renew_deadline_is_refused() {
        let err = load_election("election-retry", "retryPeriodSeconds: 10").expect_err("order");
        let problem = only_problem(&err.problems, "leaderElection.retryPeriodSeconds");
        assert!(
            problem.contains("must be less than renewDeadlineSeconds (10), not 10"),
            "{problem}"
        );
    }

    #[test]
    fn leader_election_timings_out_of_range_and_bad_names_are_refused_with_their_keys() {
        let err = load_election(
            "election-range",
            "leaseDurationSeconds: 0, renewDeadlineSeconds: 0, retryPeriodSeconds: 0, \
             namespace: Ferry_System, name: 'bad name'",
        )
        .expect_err("range");
        let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "leaderElection.namespace",
                "leaderElection.name",
                "leaderElection.leaseDurationSeconds",
                "leaderElection.renewDeadlineSeconds",
                "leaderElection.retryPeriodSeconds",
            ],
            "{err}"
        );
        assert!(
            err.to_string().contains("must be from 2 to 3600, not 0"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_leader_election_key_is_refused() {
        let err = load_election("election-typo", "leaseDuration: 15").expect_err("typo");
        assert!(err.to_string().contains("leaderElection"), "{err}");
    }
}

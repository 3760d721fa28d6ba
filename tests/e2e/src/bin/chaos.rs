//! `chaos`: churn across tenant workspaces while faults hit Ferry, kcp and the target API
//! servers, then wait for convergence and check every copy independently of `ferry check`.
//!
//! Run it with `cargo xtask chaos [--minutes N] [--workspaces W] [--objects K] [--seed S]`,
//! which brings the environment up, builds `ferry` and this binary, and passes the paths this
//! binary needs (`FERRY_BIN`, `FERRY_PLUGIN_DIR`, and `FERRY_XTASK` to restart servers with
//! `env restart`).
//!
//! - **Churn**: about five operations a second, seeded: creates (some reuse a deleted name),
//!   updates that add and remove labels, annotations, `nodeSelector`, `env`, replicas,
//!   placement changes (`sync.ferry.dev/placement`: `region=eu`, `region=us`, `""`, none),
//!   deletes; at most K objects alive. A failed request (kcp down) is retried until it
//!   succeeds, so the model always knows what kcp holds.
//! - **Faults**, one at a time, in a seeded shuffled order: `kill -9` of Ferry and a restart;
//!   SIGSTOP of one target's API server for 20–60 s; `kill -9` of kcp and a restart with the
//!   same arguments and data directory; the same for one target's API server.
//! - **Convergence**: once churn stops and the last fault healed, `ferry check` must report no
//!   problem within five minutes, and then every copy must be what the model says (present
//!   exactly where its placement says, removed fields absent, no copy of a deleted object).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_e2e::ferry::{self, Ferry, FerryOptions};
use ferry_e2e::kcp::{KcpAdmin, Workspace};
use ferry_e2e::scenario::Scenario;
use ferry_e2e::{CLUSTERS, Env};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// How long `ferry check` may take to report no problem once churn stopped and faults healed.
const CONVERGE_LIMIT: Duration = Duration::from_secs(300);
/// How long one churn operation is retried (kcp restarting) before the run fails.
const OP_RETRY_LIMIT: Duration = Duration::from_secs(300);
/// Extra label keys churn adds and removes (`app` stays: the selector needs it).
const LABEL_KEYS: [&str; 2] = ["tier", "track"];
/// Annotation keys churn adds and removes.
const ANNOTATION_KEYS: [&str; 2] = ["chaos.example/owner", "chaos.example/note"];
/// The placement annotation of `label-placement`.
const PLACEMENT: &str = "sync.ferry.dev/placement";
/// Ferry's label on a copy naming the upstream object's UID.
const UID_LABEL: &str = "sync.ferry.dev/uid";

struct Args {
    minutes: f64,
    workspaces: usize,
    objects: usize,
    seed: u64,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        minutes: 10.0,
        workspaces: 4,
        objects: 40,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| {
            format!("{flag} needs a value (flags: --minutes N --workspaces W --objects K --seed S)")
        })?;
        let bad = || format!("{flag} {value}: not a number");
        match flag.as_str() {
            "--minutes" => args.minutes = value.parse().with_context(bad)?,
            "--workspaces" => args.workspaces = value.parse().with_context(bad)?,
            "--objects" => args.objects = value.parse().with_context(bad)?,
            "--seed" => args.seed = value.parse().with_context(bad)?,
            _ => bail!(
                "unknown flag {flag} (flags: --minutes N --workspaces W --objects K --seed S)"
            ),
        }
    }
    if args.workspaces == 0 || args.objects == 0 || args.minutes <= 0.0 {
        bail!("--minutes, --workspaces and --objects must be positive");
    }
    Ok(args)
}

/// xorshift64: small, seeded, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn secs(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low * 1000 + self.next() % ((high - low) * 1000 + 1))
    }
    fn word(&mut self) -> String {
        const WORDS: [&str; 6] = ["red", "blue", "green", "gold", "gray", "pink"];
        WORDS[self.below(WORDS.len())].to_string()
    }
}

/// What churn last wrote for one upstream object: the whole object is applied each time by
/// the same field manager, so a field left out is removed.
#[derive(Clone, Debug, Default)]
struct Spec {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    node_selector: Option<String>,
    env: Option<String>,
    replicas: i64,
    /// `None`: no annotation (the configured default `""`: every target).
    placement: Option<String>,
}

impl Spec {
    /// The targets this object belongs on.
    fn targets(&self) -> BTreeSet<&'static str> {
        match self.placement.as_deref() {
            Some("region=eu") => BTreeSet::from(["cluster-1"]),
            Some("region=us") => BTreeSet::from(["cluster-2"]),
            _ => CLUSTERS.into_iter().collect(),
        }
    }
}

/// Wall-clock and run-relative timestamp for log lines.
fn stamp(start: Instant) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        % 86_400;
    format!(
        "[{:02}:{:02}:{:02}Z +{:6.1}s]",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        start.elapsed().as_secs_f64()
    )
}

/// Clients for each tenant's `demo` Deployments, rebuilt after kcp restarts (kcp issues new
/// admin tokens on every start).
type TenantApis = Arc<RwLock<Vec<Api<DynamicObject>>>>;

async fn tenant_apis(env: &Env, tenants: &[Workspace]) -> Result<Vec<Api<DynamicObject>>> {
    let admin = KcpAdmin::new(env).await?;
    tenants
        .iter()
        .map(|t| {
            Ok(Api::namespaced_with(
                admin.workspace(&t.path)?,
                "demo",
                &ferry::deployments(),
            ))
        })
        .collect()
}

fn api(apis: &TenantApis, tenant: usize) -> Api<DynamicObject> {
    apis.read().expect("lock")[tenant].clone()
}

#[derive(Default)]
struct Figures {
    ops: BTreeMap<&'static str, usize>,
    faults: BTreeMap<&'static str, usize>,
    retries: usize,
    ferry_restarts: usize,
}

/// A Ferry configuration that reaches kcp as `shard-admin`, whose token survives a kcp restart
/// (kcp issues new `kcp-admin` and `user` tokens on every start; a real deployment's
/// credentials do not change when kcp restarts).
fn write_stable_kubeconfig(env: &Env, ferry: &Ferry) -> Result<()> {
    let mut kubeconfig: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(env.kcp_kubeconfig())?)?;
    let has_shard_admin = kubeconfig["users"]
        .as_sequence()
        .is_some_and(|users| users.iter().any(|u| u["name"] == "shard-admin"));
    if !has_shard_admin {
        bail!("kcp's admin kubeconfig has no shard-admin user");
    }
    kubeconfig["contexts"]
        .as_sequence_mut()
        .context("kcp's admin kubeconfig has no contexts")?
        .push(serde_yaml::from_str(
            "{name: chaos, context: {cluster: root, user: shard-admin}}",
        )?);
    let path = ferry.dir.join("kcp-chaos.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig)?)?;
    let text = std::fs::read_to_string(&ferry.config)?;
    let from = format!(
        "kubeconfig: {}\n  context: root",
        env.kcp_kubeconfig().display()
    );
    let to = format!("kubeconfig: {}\n  context: chaos", path.display());
    if !text.contains(&from) {
        bail!("unexpected Ferry configuration layout:\n{text}");
    }
    std::fs::write(&ferry.config, text.replacen(&from, &to, 1))?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ferry_e2e::exit_code(run().await)
}

async fn run() -> Result<()> {
    let args = parse_args()?;
    let env = Env::get()?.context("no environment (run `cargo xtask chaos`)")?;
    let xtask = PathBuf::from(
        std::env::var_os("FERRY_XTASK")
            .context("FERRY_XTASK is not set (run this through `cargo xtask chaos`)")?,
    );
    let start = Instant::now();
    println!(
        "{} chaos: {} min of churn, {} workspaces, at most {} objects, seed {}",
        stamp(start),
        args.minutes,
        args.workspaces,
        args.objects,
        args.seed
    );
    let options = FerryOptions {
        defer_start: true,
        ..FerryOptions::default()
    };
    let scenario = Scenario::start(&env, "chaos", args.workspaces, options).await?;
    let Scenario {
        tenants, mut ferry, ..
    } = scenario;
    write_stable_kubeconfig(&env, &ferry)?;
    ferry.restart()?;
    println!(
        "{} provider and {} tenant workspaces ready; Ferry started (log {})",
        stamp(start),
        tenants.len(),
        ferry.dir.join("ferry.log").display()
    );
    let ferry = Arc::new(Mutex::new(ferry));
    let apis: TenantApis = Arc::new(RwLock::new(tenant_apis(&env, &tenants).await?));
    let figures = Arc::new(std::sync::Mutex::new(Figures::default()));
    let mut model = Model::default();

    let result = chaos(
        &args, &env, &xtask, start, &tenants, &ferry, &apis, &figures, &mut model,
    )
    .await;
    let ferry = ferry.lock().await;
    let figures = figures.lock().expect("lock");
    println!("---- figures ----");
    println!(
        "ops: {} ({} retried requests)",
        join(&figures.ops),
        figures.retries
    );
    println!("faults: {}", join(&figures.faults));
    println!("ferry restarts: {}", figures.ferry_restarts);
    println!(
        "final objects: {} live ({} copies expected), {} deleted names",
        model.live.len(),
        model
            .live
            .values()
            .map(|s| s.targets().len())
            .sum::<usize>(),
        model.deleted.len()
    );
    match result {
        Ok(summary) => {
            println!("{summary}");
            println!("chaos run PASSED");
            Ok(())
        }
        Err(err) => {
            let log = ferry.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- ferry log, last 80 lines ({}) ----\n{}",
                ferry.dir.join("ferry.log").display(),
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
            Err(err.context("chaos run FAILED"))
        }
    }
}

fn join(counts: &BTreeMap<&'static str, usize>) -> String {
    let total: usize = counts.values().sum();
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("{total} ({})", parts.join(", "))
}

#[derive(Default)]
struct Model {
    live: BTreeMap<(usize, String), Spec>,
    deleted: BTreeSet<(usize, String)>,
    next_name: usize,
}

#[allow(clippy::too_many_arguments)]
async fn chaos(
    args: &Args,
    env: &Env,
    xtask: &std::path::Path,
    start: Instant,
    tenants: &[Workspace],
    ferry: &Arc<Mutex<Ferry>>,
    apis: &TenantApis,
    figures: &Arc<std::sync::Mutex<Figures>>,
    model: &mut Model,
) -> Result<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let faults = tokio::spawn(faults(
        args.seed ^ 0xFA17,
        env.clone(),
        xtask.to_path_buf(),
        start,
        tenants.to_vec(),
        ferry.clone(),
        apis.clone(),
        figures.clone(),
        stop.clone(),
    ));
    let churned = churn(args, start, tenants.len(), ferry, apis, figures, model).await;
    stop.store(true, Ordering::SeqCst);
    let churn_stopped = Instant::now();
    println!(
        "{} churn stopped; waiting for the fault in progress to heal",
        stamp(start)
    );
    let healed = faults.await.context("fault task panicked")?;
    churned?;
    healed?;
    println!(
        "{} every fault healed ({:.1}s after churn stopped); waiting for `ferry check` to be clean",
        stamp(start),
        churn_stopped.elapsed().as_secs_f64()
    );
    let summary = {
        let mut ferry = ferry.lock().await;
        ferry.check_running()?;
        let text = ferry.wait_clean(CONVERGE_LIMIT).await?;
        ferry.check_running()?;
        text
    };
    let converged = churn_stopped.elapsed();
    let summary_line = summary
        .lines()
        .rfind(|l| l.contains(" objects: "))
        .unwrap_or("(no summary line)")
        .to_string();
    println!(
        "{} converged {:.1}s after churn stopped: {summary_line}",
        stamp(start),
        converged.as_secs_f64()
    );
    let problems = verify(env, tenants, apis, model).await?;
    if !problems.is_empty() {
        bail!(
            "`ferry check` is clean but {} copies are wrong:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    println!(
        "{} independent check: every live object's copies match its placement and fields, \
         no copy of a deleted object",
        stamp(start)
    );
    Ok(format!(
        "time to converge after churn stopped: {:.1}s\nferry check: {summary_line}",
        converged.as_secs_f64()
    ))
}

/// Applies churn operations at about five a second until the time is up.
async fn churn(
    args: &Args,
    start: Instant,
    tenants: usize,
    ferry: &Arc<Mutex<Ferry>>,
    apis: &TenantApis,
    figures: &Arc<std::sync::Mutex<Figures>>,
    model: &mut Model,
) -> Result<()> {
    let mut rng = Rng::new(args.seed);
    let deadline = Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    let template = template()?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = Instant::now();
    while Instant::now() < deadline {
        tick.tick().await;
        ferry.lock().await.check_running()?;
        let kind = step(&mut rng, args, tenants, apis, &template, model, figures).await?;
        *figures.lock().expect("lock").ops.entry(kind).or_default() += 1;
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            let figures = figures.lock().expect("lock");
            println!(
                "{} churn: {} ops, {} live objects, {} retried requests",
                stamp(start),
                figures.ops.values().sum::<usize>(),
                model.live.len(),
                figures.retries
            );
        }
    }
    Ok(())
}

/// The example Deployment, the base of every object churn writes.
fn template() -> Result<Value> {
    let manifest = ferry_e2e::kcp::example("tenant/deployment.yaml")?;
    Ok(serde_yaml::from_str(
        manifest
            .split("---")
            .nth(1)
            .context("example has two documents")?,
    )?)
}

fn manifest(template: &Value, name: &str, spec: &Spec) -> Value {
    let mut object = template.clone();
    object["metadata"]["name"] = name.into();
    object["spec"]["replicas"] = spec.replicas.into();
    for (k, v) in &spec.labels {
        object["metadata"]["labels"][k] = v.as_str().into();
    }
    let mut annotations = serde_json::Map::new();
    for (k, v) in &spec.annotations {
        annotations.insert(k.clone(), v.as_str().into());
    }
    if let Some(placement) = &spec.placement {
        annotations.insert(PLACEMENT.into(), placement.as_str().into());
    }
    if !annotations.is_empty() {
        object["metadata"]["annotations"] = Value::Object(annotations);
    }
    if let Some(disk) = &spec.node_selector {
        object["spec"]["template"]["spec"]["nodeSelector"] = json!({ "disk": disk });
    }
    if let Some(mode) = &spec.env {
        object["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{ "name": "MODE", "value": mode }]);
    }
    object
}

/// Retries `op` until it succeeds (kcp may be restarting), counting failed attempts.
async fn retry<F, Fut>(what: &str, figures: &Arc<std::sync::Mutex<Figures>>, op: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let deadline = Instant::now() + OP_RETRY_LIMIT;
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(15), op()).await;
        let err = match attempt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(err)) => err,
            Err(_) => anyhow::anyhow!("no answer in 15 s"),
        };
        figures.lock().expect("lock").retries += 1;
        if Instant::now() > deadline {
            return Err(err.context(format!("{what}: still failing after {OP_RETRY_LIMIT:?}")));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn apply(
    apis: &TenantApis,
    figures: &Arc<std::sync::Mutex<Figures>>,
    tenant: usize,
    name: &str,
    object: &Value,
) -> Result<()> {
    retry(
        &format!("applying {name} in tenant {tenant}"),
        figures,
        || async {
            api(apis, tenant)
                .patch(
                    name,
                    &PatchParams::apply("chaos-tenant").force(),
                    &Patch::Apply(object),
                )
                .await?;
            Ok(())
        },
    )
    .await
}

/// One churn operation; returns its kind.
async fn step(
    rng: &mut Rng,
    args: &Args,
    tenants: usize,
    apis: &TenantApis,
    template: &Value,
    model: &mut Model,
    figures: &Arc<std::sync::Mutex<Figures>>,
) -> Result<&'static str> {
    let create = model.live.len() < args.objects && (model.live.is_empty() || rng.chance(35));
    if create {
        let mut kind = "create";
        let mut key = (rng.below(tenants), format!("obj-{}", model.next_name));
        // Now and then reuse a deleted name, once its upstream object is really gone.
        if !model.deleted.is_empty() && rng.chance(20) {
            let old = model
                .deleted
                .iter()
                .nth(rng.below(model.deleted.len()))
                .cloned()
                .expect("index in range");
            let gone =
                tokio::time::timeout(Duration::from_secs(10), listed(&api(apis, old.0), &old.1))
                    .await
                    .is_ok_and(|r| r.is_ok_and(|o| o.is_none()));
            if gone {
                key = old;
                kind = "recreate";
            }
        }
        if kind == "create" {
            model.next_name += 1;
        }
        let spec = Spec {
            replicas: rng.below(4) as i64,
            placement: random_placement(rng, None),
            ..Spec::default()
        };
        apply(
            apis,
            figures,
            key.0,
            &key.1,
            &manifest(template, &key.1, &spec),
        )
        .await?;
        model.deleted.remove(&key);
        model.live.insert(key, spec);
        return Ok(kind);
    }
    let key = model
        .live
        .keys()
        .nth(rng.below(model.live.len()))
        .cloned()
        .expect("index in range");
    let roll = rng.below(100);
    if roll < 18 {
        // A 404 is no proof: kcp answers 404 for a workspace it has not loaded yet while it
        // starts. A delete counts once a list (which only a served API answers) shows the
        // object gone or terminating.
        retry(
            &format!("deleting {} in tenant {}", key.1, key.0),
            figures,
            || async {
                let api = api(apis, key.0);
                match api.delete(&key.1, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(err) => return Err(err.into()),
                }
                match listed(&api, &key.1).await? {
                    Some(object) if object.metadata.deletion_timestamp.is_none() => {
                        bail!("{} still there after its delete", key.1)
                    }
                    _ => Ok(()),
                }
            },
        )
        .await?;
        model.live.remove(&key);
        model.deleted.insert(key);
        return Ok("delete");
    }
    let mut spec = model.live[&key].clone();
    let kind = if roll < 40 {
        spec.placement = random_placement(rng, Some(&spec.placement));
        "placement"
    } else if roll < 50 {
        spec.replicas = (spec.replicas + 1 + rng.below(3) as i64) % 4;
        "replicas"
    } else {
        // Add a missing field or remove a present one.
        let mut present = Vec::new();
        let mut absent = Vec::new();
        for (i, k) in LABEL_KEYS.iter().enumerate() {
            if spec.labels.contains_key(*k) {
                present.push(i)
            } else {
                absent.push(i)
            }
        }
        for (i, k) in ANNOTATION_KEYS.iter().enumerate() {
            if spec.annotations.contains_key(*k) {
                present.push(10 + i)
            } else {
                absent.push(10 + i)
            }
        }
        if spec.node_selector.is_some() {
            present.push(20)
        } else {
            absent.push(20)
        }
        if spec.env.is_some() {
            present.push(21)
        } else {
            absent.push(21)
        }
        let add = present.is_empty() || (!absent.is_empty() && rng.chance(50));
        let field = if add {
            absent[rng.below(absent.len())]
        } else {
            present[rng.below(present.len())]
        };
        let value = add.then(|| rng.word());
        match field {
            0 | 1 => set(&mut spec.labels, LABEL_KEYS[field], value),
            10 | 11 => set(&mut spec.annotations, ANNOTATION_KEYS[field - 10], value),
            20 => spec.node_selector = value,
            _ => spec.env = value,
        }
        if add { "add-field" } else { "remove-field" }
    };
    apply(
        apis,
        figures,
        key.0,
        &key.1,
        &manifest(template, &key.1, &spec),
    )
    .await?;
    model.live.insert(key, spec);
    Ok(kind)
}

/// Object `name` as a list of its namespace shows it: unlike a GET's 404, a successful list
/// proves the workspace and the API are served.
async fn listed(api: &Api<DynamicObject>, name: &str) -> Result<Option<DynamicObject>> {
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .find(|o| o.metadata.name.as_deref() == Some(name)))
}

/// Sets (`Some`) or removes (`None`) `key` in a label or annotation map.
fn set(map: &mut BTreeMap<String, String>, key: &str, value: Option<String>) {
    match value {
        Some(value) => {
            map.insert(key.to_string(), value);
        }
        None => {
            map.remove(key);
        }
    }
}

/// A placement other than `current` (when given): no annotation, `""`, EU or US.
fn random_placement(rng: &mut Rng, current: Option<&Option<String>>) -> Option<String> {
    let choices = [None, Some(""), Some("region=eu"), Some("region=us")];
    loop {
        let choice = choices[rng.below(choices.len())].map(str::to_string);
        if current != Some(&choice) {
            return choice;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    KillFerry,
    PauseApiserver,
    RestartKcp,
    RestartApiserver,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::KillFerry => "kill -9 ferry",
            Fault::PauseApiserver => "SIGSTOP apiserver",
            Fault::RestartKcp => "restart kcp",
            Fault::RestartApiserver => "restart apiserver",
        }
    }
}

/// Injects faults one at a time, at random moments, until `stop`; the fault in progress when
/// `stop` is set heals before this returns.
#[allow(clippy::too_many_arguments)]
async fn faults(
    seed: u64,
    env: Env,
    xtask: PathBuf,
    start: Instant,
    tenants: Vec<Workspace>,
    ferry: Arc<Mutex<Ferry>>,
    apis: TenantApis,
    figures: Arc<std::sync::Mutex<Figures>>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let mut rng = Rng::new(seed);
    let mut deck: Vec<Fault> = Vec::new();
    loop {
        // Quiet for 5–20 s between faults, so churn also runs against a healthy system.
        let gap = rng.secs(5, 20);
        let until = Instant::now() + gap;
        while Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        if deck.is_empty() {
            // Every kind once per round, in a seeded order.
            deck = vec![
                Fault::KillFerry,
                Fault::PauseApiserver,
                Fault::RestartKcp,
                Fault::RestartApiserver,
            ];
            for i in (1..deck.len()).rev() {
                deck.swap(i, rng.below(i + 1));
            }
        }
        let fault = deck.pop().expect("deck refilled");
        let began = Instant::now();
        match fault {
            Fault::KillFerry => {
                let down = rng.secs(1, 10);
                println!(
                    "{} FAULT kill -9 ferry; restart in {:.1}s",
                    stamp(start),
                    down.as_secs_f64()
                );
                ferry.lock().await.kill();
                tokio::time::sleep(down).await;
                ferry.lock().await.restart()?;
                figures.lock().expect("lock").ferry_restarts += 1;
            }
            Fault::PauseApiserver => {
                let cluster = CLUSTERS[rng.below(CLUSTERS.len())];
                let pause = rng.secs(20, 60);
                println!(
                    "{} FAULT SIGSTOP {cluster}-apiserver for {:.1}s",
                    stamp(start),
                    pause.as_secs_f64()
                );
                let paused = env.pause(&format!("{cluster}-apiserver"))?;
                tokio::time::sleep(pause).await;
                drop(paused);
            }
            Fault::RestartKcp => {
                println!("{} FAULT kill -9 kcp and restart it", stamp(start));
                restart(&xtask, &env, "kcp").await?;
                // kcp issued new admin tokens: churn's clients read the new kubeconfig.
                *apis.write().expect("lock") = tenant_apis(&env, &tenants).await?;
            }
            Fault::RestartApiserver => {
                let cluster = CLUSTERS[rng.below(CLUSTERS.len())];
                println!(
                    "{} FAULT kill -9 {cluster}-apiserver and restart it",
                    stamp(start)
                );
                restart(&xtask, &env, &format!("{cluster}-apiserver")).await?;
            }
        }
        *figures
            .lock()
            .expect("lock")
            .faults
            .entry(fault.name())
            .or_default() += 1;
        println!(
            "{} healed: {} ({:.1}s)",
            stamp(start),
            fault.name(),
            began.elapsed().as_secs_f64()
        );
    }
}

/// `cargo xtask env restart <name> --kill`: SIGKILL, start again with the same command line
/// and data, wait until ready.
async fn restart(xtask: &std::path::Path, env: &Env, name: &str) -> Result<()> {
    let output = tokio::process::Command::new(xtask)
        .args(["env", "restart", name, "--kill"])
        .env("FERRY_ENV_DIR", &env.dir)
        .output()
        .await
        .context("running xtask env restart")?;
    let text = String::from_utf8_lossy(&output.stderr);
    for line in text.lines() {
        println!("    {line}");
    }
    if !output.status.success() {
        bail!("restarting {name} failed:\n{text}");
    }
    Ok(())
}

/// The independent check: lists every copy on both clusters and compares it with the model.
async fn verify(
    env: &Env,
    tenants: &[Workspace],
    apis: &TenantApis,
    model: &Model,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut clusters = Vec::new();
    for cluster in CLUSTERS {
        clusters.push((cluster, env.cluster_client(cluster).await?));
    }
    for (tenant, workspace) in tenants.iter().enumerate() {
        let upstream: BTreeMap<String, DynamicObject> = api(apis, tenant)
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .map(|o| (o.metadata.name.clone().unwrap_or_default(), o))
            .collect();
        let namespace = ferry::mapped_namespace(workspace, "demo");
        let mut copies = BTreeMap::new();
        for (cluster, client) in &clusters {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace, &ferry::deployments());
            let listed: BTreeMap<String, DynamicObject> = api
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .map(|o| (o.metadata.name.clone().unwrap_or_default(), o))
                .collect();
            copies.insert(*cluster, listed);
        }
        for name in upstream.keys() {
            if !model.live.contains_key(&(tenant, name.clone())) {
                problems.push(format!(
                    "tenant {tenant}: upstream {name} exists but churn deleted it (or never made it)"
                ));
            }
        }
        for (cluster, listed) in &copies {
            for name in listed.keys() {
                if !model.live.contains_key(&(tenant, name.clone())) {
                    problems.push(format!(
                        "tenant {tenant}: a copy of {name} on {cluster}, whose upstream object is gone"
                    ));
                }
            }
        }
        for ((t, name), spec) in model.live.range((tenant, String::new())..) {
            if *t != tenant {
                break;
            }
            let Some(object) = upstream.get(name) else {
                problems.push(format!("tenant {tenant}: upstream {name} is missing"));
                continue;
            };
            let uid = object.metadata.uid.clone().unwrap_or_default();
            let targets = spec.targets();
            for (cluster, listed) in &copies {
                let copy = listed.get(name);
                let placed = targets.contains(cluster);
                match (placed, copy) {
                    (true, None) => problems.push(format!(
                        "tenant {tenant}: {name} (placement {:?}) has no copy on {cluster}",
                        spec.placement
                    )),
                    (false, Some(_)) => problems.push(format!(
                        "tenant {tenant}: {name} (placement {:?}) has a copy on {cluster}",
                        spec.placement
                    )),
                    (true, Some(copy)) => {
                        for problem in compare(copy, spec, &uid) {
                            problems
                                .push(format!("tenant {tenant}: {name} on {cluster}: {problem}"));
                        }
                    }
                    (false, None) => {}
                }
            }
        }
    }
    // A deleted object is in no tenant's `live`: the loops above flagged its upstream object
    // and every copy of it, had one been left.
    Ok(problems)
}

/// What differs between a copy and the model's object.
fn compare(copy: &DynamicObject, spec: &Spec, uid: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let labels = copy.metadata.labels.clone().unwrap_or_default();
    let annotations = copy.metadata.annotations.clone().unwrap_or_default();
    if labels.get(UID_LABEL).map(String::as_str) != Some(uid) {
        problems.push(format!(
            "label {UID_LABEL} is {:?}, the upstream UID is {uid}",
            labels.get(UID_LABEL)
        ));
    }
    for key in LABEL_KEYS {
        if labels.get(key) != spec.labels.get(key) {
            problems.push(format!(
                "label {key} is {:?}, upstream {:?}",
                labels.get(key),
                spec.labels.get(key)
            ));
        }
    }
    for key in ANNOTATION_KEYS {
        if annotations.get(key) != spec.annotations.get(key) {
            problems.push(format!(
                "annotation {key} is {:?}, upstream {:?}",
                annotations.get(key),
                spec.annotations.get(key)
            ));
        }
    }
    let pointer = |p: &str| copy.data.pointer(p).cloned();
    if pointer("/spec/replicas") != Some(json!(spec.replicas)) {
        problems.push(format!(
            "replicas {:?}, upstream {}",
            pointer("/spec/replicas"),
            spec.replicas
        ));
    }
    let node_selector = pointer("/spec/template/spec/nodeSelector");
    let want = spec.node_selector.as_ref().map(|d| json!({ "disk": d }));
    if node_selector != want {
        problems.push(format!("nodeSelector {node_selector:?}, upstream {want:?}"));
    }
    let env = pointer("/spec/template/spec/containers/0/env");
    let want = spec
        .env
        .as_ref()
        .map(|m| json!([{ "name": "MODE", "value": m }]));
    if env != want {
        problems.push(format!("env {env:?}, upstream {want:?}"));
    }
    problems
}

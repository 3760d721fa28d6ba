//! One engine through the benchmark's phases, on the same kcp and target as every other:
//! cold convergence, churn, status, rest, restart.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde::Serialize;
use serde_json::{Value, json};

use super::cold;
use super::engine::{self, Engine, Kind};
use super::leftovers;
use super::procstat::{self, Usage};
use super::stats::{self, Summary};
use super::tracker::{Propagation, StatusLatency};
use crate::Env;
use crate::ferry::deployments;
use crate::kcp::KcpAdmin;

/// The largest churn marker (`spec.minReadySeconds`), one below the largest
/// `progressDeadlineSeconds` (an int32).
const MAX_MARKER: u64 = i32::MAX as u64 - 1;

/// An object of the benchmark: (tenant, index); it is `obj-<index>` in the tenant's `demo`.
pub type Key = (usize, usize);

/// The size and pace of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub objects: usize,
    pub workspaces: usize,
    /// Changes per second during churn.
    pub rate: f64,
    pub churn_seconds: u64,
    /// Objects scaled to one replica for the status latency.
    pub status_objects: usize,
    pub rest_seconds: u64,
    /// After a restart: how long writes are counted.
    pub restart_seconds: u64,
    /// How long the cold phase may take; an engine that has not copied every object by then
    /// goes on to the other phases with the objects it copied.
    pub cold_limit_seconds: u64,
    /// Keys added to Ferry's `engine:` section, YAML flow style (e.g. `workers: 32`), to
    /// compare settings; empty: Ferry's defaults.
    pub ferry_engine: String,
    /// Where the results (and each engine's metrics after the cold phase) are written.
    #[serde(skip)]
    pub out: std::path::PathBuf,
}

/// What one engine measured.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub engine: String,
    pub targets: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Changes made during churn, and how many never reached every copy.
    pub changes: usize,
    pub changes_not_arrived: usize,
    pub status_p50_ms: f64,
    pub status_p99_ms: f64,
    pub status_max_ms: f64,
    /// Objects scaled for the status latency, and how many never showed it upstream.
    pub status_objects: usize,
    pub status_not_arrived: usize,
    /// Cold convergence: upstream objects with every copy in place, per second, from start
    /// (if the engine did not converge: the copies it made within the limit, per second).
    pub objects_per_s: f64,
    pub cold_seconds: f64,
    /// Whether every object had every copy within the limit, and how many did: the churn,
    /// status, rest and restart phases run on those.
    pub converged: bool,
    pub copies: usize,
    /// Memory at rest (mean) and peak over the whole run, MiB (`null` for the floor, which
    /// runs inside the benchmark).
    pub rss_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    /// CPU, share of one core: at rest, mean during churn, peak over one second.
    pub cpu_rest_cores: Option<f64>,
    pub cpu_churn_cores: Option<f64>,
    pub cpu_peak_cores: Option<f64>,
    /// Mutating requests (targets' audit logs + the engine's own count of kcp writes) over
    /// the rest window.
    pub writes_at_rest: Option<u64>,
    /// After a restart with nothing changed: mutating requests, and seconds until ready.
    pub restart_writes: Option<u64>,
    pub restart_ready_seconds: Option<f64>,
    /// The machine's load average (1, 5, 15 min) when the engine's run started and ended:
    /// on a shared machine, engines run minutes apart may not have had the same CPU.
    pub load_start: String,
    pub load_end: String,
    /// Every propagation latency, ms, for the distribution plot.
    pub latencies_ms: Vec<f64>,
}

/// What the watches saw, shared by the watch tasks and the phases.
struct Seen {
    propagation: Propagation<Key>,
    status: StatusLatency<Key>,
    /// Copies present, per target.
    copies: Vec<HashSet<Key>>,
    /// Objects of the status phase.
    status_keys: HashSet<Key>,
    /// `status.readyReplicas` the upstream object shows once the engine synced one ready copy.
    upstream_ready: i64,
}

/// Runs every phase for `kind`.
pub async fn run(env: &Env, kind: Kind, plan: &Plan) -> Result<Outcome> {
    let admin = KcpAdmin::new(env).await?;
    let suffix = crate::unique_suffix();
    eprintln!("==> {}: {} workspaces", kind.key(), plan.workspaces);
    let mut engine = Engine::set_up(env, &admin, kind.clone(), plan, &suffix).await?;
    let result = phases(env, &admin, &mut engine, plan).await;
    engine.stop();
    if let Err(err) = &result {
        let log = engine.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "{} failed: {err:#}\n---- engine log (last lines) ----\n{}",
            kind.key(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    remove_copies(env, &engine).await;
    // Nothing of this run may slow the next engine's (api-syncagent, under the same agent
    // name, would otherwise go on serving these consumers).
    leftovers::remove_tenants(&admin, &engine.tenants).await;
    if let Some(namespace) = engine.agent_state_namespace() {
        let clusters: Vec<String> = engine
            .tenants
            .iter()
            .map(|t| t.logical_cluster.clone())
            .collect();
        if let Ok(target) = env.cluster_client(kind.targets()[0]).await
            && let Err(err) = leftovers::remove_agent_state(target, &namespace, &clusters).await
        {
            eprintln!("    (could not remove api-syncagent's state: {err:#})");
        }
    }
    result
}

async fn phases(env: &Env, admin: &KcpAdmin, engine: &mut Engine, plan: &Plan) -> Result<Outcome> {
    let kind = engine.kind.clone();
    let targets = kind.targets();
    let keys: Vec<Key> = (0..plan.objects)
        .map(|i| (i % plan.workspaces, i))
        .collect();
    let upstream: Vec<Api<DynamicObject>> = engine
        .tenants
        .iter()
        .map(|t| {
            Ok(Api::namespaced_with(
                admin.workspace(&t.path)?,
                "demo",
                &deployments(),
            ))
        })
        .collect::<Result<_>>()?;
    if kind.is_floor() {
        create_namespaces(env, &engine.copy_namespaces).await?;
    }

    eprintln!("    creating {} objects upstream", plan.objects);
    create_objects(&upstream, &keys).await?;

    let seen = Arc::new(Mutex::new(Seen {
        propagation: Propagation::new(targets.len()),
        status: StatusLatency::new(targets.len()),
        copies: vec![HashSet::new(); targets.len()],
        status_keys: HashSet::new(),
        upstream_ready: kind.upstream_ready(1),
    }));
    let mut watches = watch_upstream(&upstream, &seen);
    for (t, cluster) in targets.iter().enumerate() {
        let client = env.cluster_client(cluster).await?;
        watches.push(watch_copies(client, t, &engine.copy_namespaces, &seen));
    }
    let result = measure(env, engine, plan, &keys, &upstream, &seen).await;
    for watch in watches {
        watch.abort();
    }
    result
}

async fn measure(
    env: &Env,
    engine: &mut Engine,
    plan: &Plan,
    keys: &[Key],
    upstream: &[Api<DynamicObject>],
    seen: &Arc<Mutex<Seen>>,
) -> Result<Outcome> {
    let kind = engine.kind.clone();
    let targets = kind.targets();
    let kcp_host = kcp_host(env).await?;
    let load_start = super::report::load_average();

    // Cold convergence.
    let started = Instant::now();
    engine.start().await?;
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = engine.pid().map(|pid| sample(pid, samples.clone()));
    let want = plan.objects;
    let limit = Duration::from_secs(plan.cold_limit_seconds);
    // When the first copy showed: what came before is start-up, what came after throughput.
    let mut first_copy = None;
    let converged = wait_for("every copy", limit, || {
        let seen = seen.lock().expect("not poisoned");
        if first_copy.is_none() && seen.copies.iter().any(|c| !c.is_empty()) {
            first_copy = Some(started.elapsed());
        }
        seen.copies.iter().all(|c| c.len() >= want)
    })
    .await
    .is_ok();
    let cold = started.elapsed();
    let first_copy = first_copy.unwrap_or(cold);
    // The objects the next phases measure: those with every copy (all of them, unless the
    // engine did not converge), in the order of `keys`.
    let copied: Vec<Key> = {
        let everywhere = cold::everywhere(&seen.lock().expect("not poisoned").copies);
        keys.iter()
            .filter(|k| everywhere.contains(k))
            .copied()
            .collect()
    };
    if !converged {
        eprintln!(
            "    cold: {}; the next phases measure those {} objects",
            cold::figure(false, copied.len(), want, cold.as_secs_f64()),
            copied.len()
        );
    }
    // The engine's own CPU while it converged: on 2 cores it competes with kcp and the
    // target for the same CPU.
    let cold_cpu = {
        let samples = samples.lock().expect("not poisoned");
        procstat::usage(&window(&samples, started, Instant::now())).cpu_cores
    };
    eprintln!(
        "    cold: {} objects on {} target(s) in {:.1}s (first copy after {:.1}s, then {:.0} objects/s; engine CPU {:.2} cores)",
        copied.len(),
        targets.len(),
        cold.as_secs_f64(),
        first_copy.as_secs_f64(),
        cold::rate(copied.len(), cold.saturating_sub(first_copy)),
        cold_cpu
    );
    // Where the cold phase's time went, for profiling: the engine's own metrics right after.
    if let Some(text) = engine.metrics_text().await {
        let path = plan.out.join(format!("{}-cold-metrics.prom", kind.key()));
        if let Err(err) =
            std::fs::create_dir_all(&plan.out).and_then(|()| std::fs::write(&path, text))
        {
            eprintln!("    (could not write {}: {err})", path.display());
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Churn.
    let churn_started = Instant::now();
    let changes = churn(upstream, &copied, plan, seen).await;
    let churn_ended = Instant::now();
    let _ = wait_for(
        "every change on every copy",
        Duration::from_secs(60),
        || seen.lock().expect("not poisoned").propagation.pending() == 0,
    )
    .await;
    let (latencies, not_arrived) = {
        let seen = seen.lock().expect("not poisoned");
        (
            seen.propagation.latencies().to_vec(),
            seen.propagation.pending(),
        )
    };
    let propagation = stats::summarise(&latencies);
    eprintln!(
        "    churn: {changes} changes, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, {not_arrived} not arrived",
        propagation.p50_ms, propagation.p99_ms, propagation.max_ms
    );

    // Status.
    let status_keys: Vec<Key> = copied.iter().take(plan.status_objects).copied().collect();
    seen.lock().expect("not poisoned").status_keys = status_keys.iter().copied().collect();
    scale(upstream, &status_keys, 1).await?;
    let count = status_keys.len();
    let _ = wait_for("every status upstream", Duration::from_secs(180), || {
        seen.lock().expect("not poisoned").status.unfinished(count) == 0
    })
    .await;
    let (status_latencies, status_not_arrived) = {
        let seen = seen.lock().expect("not poisoned");
        (seen.status.latencies(), seen.status.unfinished(count))
    };
    let status = stats::summarise(&status_latencies);
    eprintln!(
        "    status: p50 {:.0} ms, p99 {:.0} ms, {status_not_arrived} of {count} not arrived",
        status.p50_ms, status.p99_ms
    );
    scale(upstream, &status_keys, 0).await?;
    // Let the scale-down and its statuses settle before the engine is expected to be quiet.
    tokio::time::sleep(Duration::from_secs(20)).await;

    // Rest.
    let rest_started = Instant::now();
    let before = writes(env, engine, &kcp_host).await;
    tokio::time::sleep(Duration::from_secs(plan.rest_seconds)).await;
    let after = writes(env, engine, &kcp_host).await;
    let rest_ended = Instant::now();
    let writes_at_rest = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };

    // Restart with nothing changed.
    let (mut restart_writes, mut restart_ready) = (None, None);
    if let Some(sampler) = sampler {
        sampler.abort();
        let audited_before = audited(env, engine)?;
        engine.stop();
        let restarted = Instant::now();
        engine.start().await?;
        wait_for_async("the engine to be ready", Duration::from_secs(180), || {
            engine.ready()
        })
        .await?;
        restart_ready = Some(restarted.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(plan.restart_seconds)).await;
        let upstream_writes = engine.upstream_writes(&kcp_host).await;
        let audited_after = audited(env, engine)?;
        restart_writes = match (audited_before, audited_after, upstream_writes) {
            (Some(b), Some(a), Some(u)) => Some(a.saturating_sub(b) + u),
            _ => None,
        };
        eprintln!(
            "    restart: ready after {:.1}s, {} writes",
            restart_ready.unwrap_or_default(),
            restart_writes.map_or("?".into(), |w| w.to_string())
        );
    }

    let samples = samples.lock().expect("not poisoned").clone();
    let usage = |from, to| procstat::usage(&window(&samples, from, to));
    let has_process = !samples.is_empty();
    let all: Usage = usage(started, rest_ended);
    let rest = usage(rest_started, rest_ended);
    let churn_usage = usage(churn_started, churn_ended);
    let some = |v: f64| has_process.then_some(v);
    Ok(Outcome {
        engine: kind.key(),
        targets: targets.len(),
        p50_ms: propagation.p50_ms,
        p99_ms: propagation.p99_ms,
        max_ms: propagation.max_ms,
        changes,
        changes_not_arrived: not_arrived,
        status_p50_ms: status.p50_ms,
        status_p99_ms: status.p99_ms,
        status_max_ms: status.max_ms,
        status_objects: count,
        status_not_arrived,
        objects_per_s: cold::rate(copied.len(), cold),
        cold_seconds: cold.as_secs_f64(),
        converged,
        copies: copied.len(),
        rss_mib: some(rest.rss_mib),
        rss_peak_mib: some(all.rss_peak_mib),
        cpu_rest_cores: some(rest.cpu_cores),
        cpu_churn_cores: some(churn_usage.cpu_cores),
        cpu_peak_cores: some(all.cpu_peak_cores),
        writes_at_rest,
        restart_writes,
        restart_ready_seconds: restart_ready,
        load_start,
        load_end: super::report::load_average(),
        latencies_ms: latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
    })
}

/// Summary of a sample, re-exported for the report.
pub fn summary(latencies_ms: &[f64]) -> Summary {
    let sample: Vec<Duration> = latencies_ms
        .iter()
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect();
    stats::summarise(&sample)
}

fn window(samples: &[(Instant, f64, f64)], from: Instant, to: Instant) -> Vec<(Instant, f64, f64)> {
    samples
        .iter()
        .filter(|s| s.0 >= from && s.0 <= to)
        .copied()
        .collect()
}

fn sample(pid: u32, samples: Arc<Mutex<Vec<(Instant, f64, f64)>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Some((rss, cpu)) = procstat::read(pid) {
                samples
                    .lock()
                    .expect("not poisoned")
                    .push((Instant::now(), rss, cpu));
            }
            tokio::time::sleep(procstat::INTERVAL).await;
        }
    })
}

/// The Deployment every object starts as: no replicas (the simulated nodes hold 150 Pods per
/// cluster), `minReadySeconds` 0 (the churn's marker). Kubernetes requires `minReadySeconds`
/// below `progressDeadlineSeconds` (600 by default): the deadline is the largest it allows, so
/// every marker stays valid on the targets (kcp's schema does not check it).
fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 0,
            "minReadySeconds": 0,
            "progressDeadlineSeconds": MAX_MARKER + 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    })
}

fn name(key: &Key) -> String {
    format!("obj-{}", key.1)
}

/// Creates every object of `keys` upstream (the benchmark's small 0-replica Deployment), 16
/// requests in flight.
pub async fn create_objects(upstream: &[Api<DynamicObject>], keys: &[Key]) -> Result<()> {
    let results: Vec<Result<()>> = futures::stream::iter(keys)
        .map(|key| async move {
            let object: DynamicObject = serde_json::from_value(deployment(&name(key)))?;
            match upstream[key.0]
                .create(&PostParams::default(), &object)
                .await
            {
                Ok(_) => Ok(()),
                Err(err) => Err(anyhow::Error::new(err).context(format!("creating {}", name(key)))),
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn create_namespaces(env: &Env, namespaces: &[String]) -> Result<()> {
    let client = env.cluster_client(crate::CLUSTERS[0]).await?;
    for ns in namespaces {
        crate::kcp::apply_manifest(
            &client,
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
        )
        .await?;
    }
    Ok(())
}

/// Makes `rate` changes a second for the plan's duration, round robin over `keys` (none if
/// there are no keys); each sets `spec.minReadySeconds` to its sequence number. Returns how
/// many were made.
async fn churn(
    upstream: &[Api<DynamicObject>],
    keys: &[Key],
    plan: &Plan,
    seen: &Arc<Mutex<Seen>>,
) -> usize {
    if keys.is_empty() {
        return 0;
    }
    let total = ((plan.rate * plan.churn_seconds as f64) as usize).min(MAX_MARKER as usize);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut writes = Vec::with_capacity(total);
    for seq in 1..=total {
        ticks.tick().await;
        let key = keys[seq % keys.len()];
        let api = upstream[key.0].clone();
        let seen = seen.clone();
        // Sent without waiting for the previous one: a slow write must not slow the pace.
        writes.push(tokio::spawn(async move {
            let patch = Patch::Merge(json!({"spec": {"minReadySeconds": seq}}));
            if api
                .patch(&name(&key), &PatchParams::default(), &patch)
                .await
                .is_ok()
            {
                seen.lock().expect("not poisoned").propagation.upstream(
                    &key,
                    seq as u64,
                    Instant::now(),
                );
            }
        }));
    }
    for write in writes {
        let _ = write.await;
    }
    total
}

async fn scale(upstream: &[Api<DynamicObject>], keys: &[Key], replicas: i64) -> Result<()> {
    for key in keys {
        let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
        upstream[key.0]
            .patch(&name(key), &PatchParams::default(), &patch)
            .await
            .with_context(|| format!("scaling {}", name(key)))?;
    }
    Ok(())
}

fn key_of(tenant: usize, object: &DynamicObject) -> Option<Key> {
    let index = object
        .metadata
        .name
        .as_deref()?
        .strip_prefix("obj-")?
        .parse()
        .ok()?;
    Some((tenant, index))
}

fn marker(object: &DynamicObject) -> u64 {
    object
        .data
        .pointer("/spec/minReadySeconds")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn ready(object: &DynamicObject) -> i64 {
    object
        .data
        .pointer("/status/readyReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn replicas(object: &DynamicObject) -> i64 {
    object
        .data
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn watch_upstream(
    upstream: &[Api<DynamicObject>],
    seen: &Arc<Mutex<Seen>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    upstream
        .iter()
        .enumerate()
        .map(|(tenant, api)| {
            let (api, seen) = (api.clone(), seen.clone());
            tokio::spawn(async move {
                let mut events = watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = events.next().await {
                    let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event else {
                        continue;
                    };
                    let now = Instant::now();
                    let Some(key) = key_of(tenant, &o) else {
                        continue;
                    };
                    let mut seen = seen.lock().expect("not poisoned");
                    let marker = marker(&o);
                    if marker > 0 {
                        seen.propagation.upstream(&key, marker, now);
                    }
                    if seen.status_keys.contains(&key)
                        && replicas(&o) == 1
                        && ready(&o) == seen.upstream_ready
                    {
                        seen.status.upstream(&key, now);
                    }
                }
            })
        })
        .collect()
}

fn watch_copies(
    client: kube::Client,
    target: usize,
    namespaces: &[String],
    seen: &Arc<Mutex<Seen>>,
) -> tokio::task::JoinHandle<()> {
    let tenants: HashMap<String, usize> = namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| (ns.clone(), i))
        .collect();
    let seen = seen.clone();
    let api: Api<DynamicObject> = Api::all_with(client, &deployments());
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event else {
                continue;
            };
            let now = Instant::now();
            let Some(&tenant) = o.metadata.namespace.as_ref().and_then(|ns| tenants.get(ns)) else {
                continue;
            };
            let Some(key) = key_of(tenant, &o) else {
                continue;
            };
            let mut seen = seen.lock().expect("not poisoned");
            seen.copies[target].insert(key);
            let marker = marker(&o);
            if marker > 0 {
                seen.propagation.copy(&key, target, marker, now);
            }
            if seen.status_keys.contains(&key) && replicas(&o) == 1 && ready(&o) == 1 {
                seen.status.copy(&key, target, now);
            }
        }
    })
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn wait_for_async<F, Fut>(what: &str, limit: Duration, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// `host:port` of kcp, as client-go's metrics label it.
async fn kcp_host(env: &Env) -> Result<String> {
    let config = crate::config_from_kubeconfig(&env.kcp_kubeconfig(), Some("root")).await?;
    let uri = &config.cluster_url;
    Ok(format!(
        "{}:{}",
        uri.host().unwrap_or("127.0.0.1"),
        uri.port_u16().unwrap_or(443)
    ))
}

/// Writes the targets' audit logs attribute to the engine.
fn audited(env: &Env, engine: &Engine) -> Result<Option<u64>> {
    let Some(agent) = engine.user_agent() else {
        return Ok(Some(0));
    };
    let mut total = 0;
    for cluster in engine.kind.targets() {
        let log = env.dir.join(cluster).join("audit.log");
        total += engine::audited_writes(&log, agent)? as u64;
    }
    Ok(Some(total))
}

/// Every write of the engine so far: targets' audit logs plus its own count of kcp writes.
async fn writes(env: &Env, engine: &Engine, kcp_host: &str) -> Option<u64> {
    let audited = audited(env, engine).ok()??;
    Some(audited + engine.upstream_writes(kcp_host).await?)
}

/// Deletes the run's copies' namespaces on the targets (not waiting), so the next engine's
/// run starts on an unburdened cluster.
async fn remove_copies(env: &Env, engine: &Engine) {
    for cluster in engine.kind.targets() {
        let Ok(client) = env.cluster_client(cluster).await else {
            continue;
        };
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
        for ns in &engine.copy_namespaces {
            let _ = namespaces.delete(ns, &DeleteParams::default()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_marker_stays_below_the_progress_deadline() {
        // The target refuses minReadySeconds >= progressDeadlineSeconds; kcp does not.
        let object = deployment("obj-1");
        let deadline = object["spec"]["progressDeadlineSeconds"].as_u64();
        assert_eq!(deadline, Some(i32::MAX as u64));
        assert!(MAX_MARKER < i32::MAX as u64);
    }

    #[test]
    fn keys_come_from_the_object_name() {
        let object: DynamicObject =
            serde_json::from_value(deployment("obj-42")).expect("a valid object");
        assert_eq!(key_of(3, &object), Some((3, 42)));
        assert_eq!(marker(&object), 0);
    }
}

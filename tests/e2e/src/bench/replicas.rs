//! `cargo xtask bench replicas`: cold convergence of N objects with 1, 2, 3… replicas of
//! `ferry run --share-work`, and what each replica costs. See docs/benchmarks/replicas.md.
//!
//! The objects are created once, upstream, spread round robin over tenant workspaces that
//! alternate between the kcp shards. Each round starts its replicas fresh on objects whose
//! copies do not exist: the clock runs from the start of the processes until every copy exists
//! on both clusters (start-up, the first lists and the handover included, as when a fleet
//! restarts). Between rounds the replicas stop and the copies are deleted, so every round
//! does the same work on the same objects. A first, unreported round (priming) sets Ferry's
//! finalizer and the status upstream, which later rounds then find in place.
//!
//! After convergence each round waits for the queues to empty and measures the replicas at
//! rest: resident memory, and the requests to the Lease's cluster beyond those to the other
//! cluster (both get the same watches and probes; only the member Leases differ), which is
//! the membership traffic.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;

use super::procstat;
use super::run::{Key, create_objects};
use crate::ferry::{self, Ferry, FerryOptions};
use crate::kcp::{KcpAdmin, Workspace};
use crate::{CLUSTERS, Env};

/// What a run does.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicasPlan {
    /// Objects (0-replica Deployments) created upstream once.
    pub objects: usize,
    /// Replica counts, one round each, in this order.
    pub replicas: Vec<usize>,
    /// Tenant workspaces the objects are spread over (alternating between the shards).
    pub workspaces: usize,
    /// How long the replicas are measured at rest after each round converged.
    pub rest_seconds: u64,
    /// Run an unreported round first that sets finalizers and status upstream.
    pub prime: bool,
    /// Keys added to each target's configuration.
    pub target_settings: String,
    /// Keys added to the engine's configuration.
    pub engine_settings: String,
}

/// One replica of a round.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaFigures {
    /// Bound workspaces it wrote (`ferry_replica_owned_workspaces`).
    pub owned_workspaces: u64,
    /// Copies created, updated or deleted (`ferry_downstream_writes_total`).
    pub downstream_writes: u64,
    /// Writes to kcp (`ferry_upstream_writes_total`).
    pub upstream_writes: u64,
    /// Highest resident memory (`VmHWM`), MiB.
    pub peak_rss_mib: f64,
    /// Mean resident memory at rest, MiB.
    pub rest_rss_mib: f64,
    /// CPU time (user + system) from start to the end of the rest, seconds.
    pub cpu_seconds: f64,
    /// Requests per second at rest to the Lease's cluster beyond those to the other one.
    pub lease_requests_per_second: f64,
    /// Handovers it completed and their mean duration, seconds.
    pub handovers: u64,
    pub handover_mean_seconds: Option<f64>,
    /// `ferry_leader` (0 for a replica that shares the work).
    pub leader: u64,
}

/// One round.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    pub replicas: usize,
    pub objects: usize,
    /// From the processes' start until every replica wrote its share of the full fleet.
    pub settled_seconds: f64,
    /// From the processes' start until every copy existed on both clusters.
    pub converge_seconds: f64,
    pub objects_per_second: f64,
    pub per_replica: Vec<ReplicaFigures>,
    /// Load average (1, 5, 15 min) at the end of the round.
    pub load: String,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicasResult {
    /// Seconds to create the objects upstream (16 requests in flight).
    pub create_seconds: f64,
    /// Tenant workspaces per shard.
    pub workspaces_per_shard: BTreeMap<String, usize>,
    pub rounds: Vec<Round>,
}

/// Runs the plan on `env` and cleans up after itself.
pub async fn run(env: &Env, plan: &ReplicasPlan) -> Result<ReplicasResult> {
    let admin = KcpAdmin::new(env).await?;
    let suffix = crate::unique_suffix();
    let provider = ferry::platform_on(
        &admin,
        &format!("bench-replicas-{suffix}"),
        env.provider_shard()?.as_deref(),
    )
    .await?;
    eprintln!(
        "==> replicas: {} workspaces over {} shard(s)",
        plan.workspaces,
        env.shards()?.len()
    );
    let mut tenants = Vec::new();
    let mut workspaces_per_shard = BTreeMap::new();
    for i in 0..plan.workspaces {
        let shard = env.tenant_shard(i)?;
        *workspaces_per_shard
            .entry(shard.clone().unwrap_or_else(|| "root".into()))
            .or_insert(0) += 1;
        tenants.push(
            ferry::tenant_on(
                &admin,
                &provider,
                &format!("bench-replicas-{i}-{suffix}"),
                "demo",
                shard.as_deref(),
            )
            .await?,
        );
    }
    let result = measure(env, &admin, &provider, &tenants, plan).await;
    let copies = Copies::namespaces(&tenants);
    for cluster in CLUSTERS {
        if let Ok(client) = env.cluster_client(cluster).await {
            delete_namespaces(&client, &copies).await;
        }
    }
    for tenant in tenants.iter().chain([&provider]) {
        if let Some(name) = tenant.path.strip_prefix("root:") {
            let _ = admin.delete_workspace("root", name).await;
        }
    }
    result.map(|(create_seconds, rounds)| ReplicasResult {
        create_seconds,
        workspaces_per_shard,
        rounds,
    })
}

async fn measure(
    env: &Env,
    admin: &KcpAdmin,
    provider: &Workspace,
    tenants: &[Workspace],
    plan: &ReplicasPlan,
) -> Result<(f64, Vec<Round>)> {
    let upstream: Vec<Api<DynamicObject>> = tenants
        .iter()
        .map(|t| {
            Ok(Api::namespaced_with(
                admin.workspace(&t.path)?,
                "demo",
                &ferry::deployments(),
            ))
        })
        .collect::<Result<_>>()?;
    eprintln!("    creating {} objects upstream", plan.objects);
    let started = Instant::now();
    let keys: Vec<Key> = (0..plan.objects)
        .map(|i| (i % plan.workspaces, i))
        .collect();
    for chunk in keys.chunks(1000) {
        create_objects(&upstream, chunk).await?;
    }
    let create_seconds = started.elapsed().as_secs_f64();
    eprintln!("    created in {create_seconds:.0} s");
    let copies = Copies::watch(env, tenants).await?;
    let options = FerryOptions {
        defer_start: true,
        share_work: true,
        target_extra: plan.target_settings.clone(),
        engine_extra: plan.engine_settings.clone(),
        ..FerryOptions::default()
    };
    let mut rounds = Vec::new();
    let priming = plan
        .prime
        .then(|| plan.replicas.iter().copied().max().unwrap_or(1));
    for (replicas, reported) in priming
        .into_iter()
        .map(|r| (r, false))
        .chain(plan.replicas.iter().map(|&r| (r, true)))
    {
        copies.remove(env).await?;
        eprintln!(
            "==> {} with {replicas} replica(s)",
            if reported { "round" } else { "priming" }
        );
        let round = round(env, provider, &options, replicas, plan, &copies).await?;
        eprintln!(
            "    converged in {:.0} s ({:.1} objects/s), settled after {:.0} s",
            round.converge_seconds, round.objects_per_second, round.settled_seconds
        );
        if reported {
            // Each round's row as soon as it is known: a run stopped early keeps them.
            eprintln!("    {}", row(&round, None).trim_end());
            rounds.push(round);
        }
    }
    Ok((create_seconds, rounds))
}

/// Starts `replicas` fresh replicas, times the convergence, measures them at rest, stops them.
async fn round(
    env: &Env,
    provider: &Workspace,
    options: &FerryOptions,
    replicas: usize,
    plan: &ReplicasPlan,
    copies: &Copies,
) -> Result<Round> {
    let mut fleet: Vec<Ferry> = (0..replicas)
        .map(|_| Ferry::start(env, provider, options))
        .collect::<Result<_>>()?;
    let started = Instant::now();
    for f in &mut fleet {
        f.restart()?;
    }
    let result = converge_and_measure(&mut fleet, started, replicas, plan, copies).await;
    if let Err(err) = &result {
        for (i, f) in fleet.iter().enumerate() {
            let log = f.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "replicas benchmark failed: {err:#}\n---- replica {i} log (last lines) ----\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    for f in &fleet {
        let _ = f.terminate();
    }
    for f in &mut fleet {
        if f.wait_exit(Duration::from_secs(30)).await.is_err() {
            f.kill();
        }
    }
    result
}

async fn converge_and_measure(
    fleet: &mut [Ferry],
    started: Instant,
    replicas: usize,
    plan: &ReplicasPlan,
    copies: &Copies,
) -> Result<Round> {
    let expected = plan.objects * CLUSTERS.len();
    let share = format!("writing this replica's share members={replicas}");
    let deadline = started + Duration::from_secs(900 + plan.objects as u64 / 2);
    let mut settled = None;
    let converged = loop {
        for f in fleet.iter_mut() {
            f.check_running()?;
        }
        if settled.is_none() && fleet.iter().all(|f| f.log().contains(&share)) {
            settled = Some(started.elapsed());
        }
        let present = copies.count();
        if present >= expected {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            bail!("not converged: {present} of {expected} copies");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Late status writes and retries: the measurement at rest starts with empty queues.
    let quiet = Instant::now() + Duration::from_secs(300);
    loop {
        let mut queued = 0;
        for f in fleet.iter() {
            queued += f.metric("ferry_queue_ready").await.unwrap_or(1);
            queued += f.metric("ferry_queue_delayed").await.unwrap_or(1);
        }
        if queued == 0 || Instant::now() > quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = lease_requests(fleet).await?;
    let rest = Instant::now();
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); fleet.len()];
    while rest.elapsed() < Duration::from_secs(plan.rest_seconds.max(1)) {
        for (f, samples) in fleet.iter().zip(&mut rss) {
            if let Some((mib, _)) = f.pid().and_then(procstat::read) {
                samples.push(mib);
            }
        }
        tokio::time::sleep(procstat::INTERVAL).await;
    }
    let after = lease_requests(fleet).await?;
    let rest_seconds = rest.elapsed().as_secs_f64();
    let mut per_replica = Vec::new();
    for (i, f) in fleet.iter().enumerate() {
        let scrape = f.scrape_text().await?;
        let cpu_seconds = f.pid().and_then(procstat::read).map_or(0.0, |(_, cpu)| cpu);
        let handovers = sum(&scrape, "ferry_replica_handover_duration_seconds_count") as u64;
        let handover_sum = sum(&scrape, "ferry_replica_handover_duration_seconds_sum");
        per_replica.push(ReplicaFigures {
            owned_workspaces: sum(&scrape, "ferry_replica_owned_workspaces") as u64,
            downstream_writes: sum(&scrape, "ferry_downstream_writes_total") as u64,
            upstream_writes: sum(&scrape, "ferry_upstream_writes_total") as u64,
            peak_rss_mib: f.peak_rss_mib().unwrap_or_default(),
            rest_rss_mib: mean(&rss[i]),
            cpu_seconds,
            lease_requests_per_second: (after[i] - before[i]) / rest_seconds,
            handovers,
            handover_mean_seconds: (handovers > 0).then(|| handover_sum / handovers as f64),
            leader: sum(&scrape, "ferry_leader") as u64,
        });
    }
    Ok(Round {
        replicas,
        objects: plan.objects,
        settled_seconds: settled.unwrap_or(converged).as_secs_f64(),
        converge_seconds: converged.as_secs_f64(),
        objects_per_second: plan.objects as f64 / converged.as_secs_f64(),
        per_replica,
        load: super::report::load_average(),
    })
}

/// Per replica: requests to `cluster-1` (where the member Leases are) minus those to
/// `cluster-2` so far.
async fn lease_requests(fleet: &[Ferry]) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for f in fleet {
        let scrape = f.scrape_text().await?;
        let to = |cluster: &str| {
            samples(&scrape, "ferry_api_requests_total")
                .filter(|(labels, _)| labels.contains(&format!("cluster=\"{cluster}\"")))
                .map(|(_, v)| v)
                .sum::<f64>()
        };
        out.push(to(CLUSTERS[0]) - to(CLUSTERS[1]));
    }
    Ok(out)
}

/// `(labels, value)` of every sample of `name` in a Prometheus text exposition.
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
            let (labels, value) = rest.split_once("} ")?;
            (labels, value)
        } else {
            ("", rest.strip_prefix(' ')?)
        };
        Some((labels, value.trim().parse().ok()?))
    })
}

/// The sum of every sample of `name`.
fn sum(text: &str, name: &str) -> f64 {
    samples(text, name).map(|(_, v)| v).sum()
}

fn mean(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        0.0
    } else {
        samples.iter().sum::<f64>() / samples.len() as f64
    }
}

/// The copies on both clusters, counted by watches (metadata only).
struct Copies {
    namespaces: HashSet<String>,
    present: Arc<Mutex<HashSet<(usize, String, String)>>>,
    watches: Vec<tokio::task::JoinHandle<()>>,
}

impl Copies {
    fn namespaces(tenants: &[Workspace]) -> HashSet<String> {
        tenants
            .iter()
            .map(|t| ferry::mapped_namespace(t, "demo"))
            .collect()
    }

    async fn watch(env: &Env, tenants: &[Workspace]) -> Result<Copies> {
        let namespaces = Self::namespaces(tenants);
        let present = Arc::new(Mutex::new(HashSet::new()));
        let mut watches = Vec::new();
        for (i, cluster) in CLUSTERS.iter().enumerate() {
            let client = env.cluster_client(cluster).await?;
            let api: Api<PartialObjectMeta<k8s_openapi::api::apps::v1::Deployment>> =
                Api::all(client);
            let (namespaces, present) = (namespaces.clone(), present.clone());
            watches.push(tokio::spawn(async move {
                let mut events = watcher(api, watcher::Config::default())
                    .default_backoff()
                    .boxed();
                while let Some(event) = events.next().await {
                    let (object, exists) = match event {
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, true),
                        Ok(watcher::Event::Delete(o)) => (o, false),
                        _ => continue,
                    };
                    let (Some(ns), Some(name)) = (object.metadata.namespace, object.metadata.name)
                    else {
                        continue;
                    };
                    if !namespaces.contains(&ns) {
                        continue;
                    }
                    let mut present = present.lock().expect("not poisoned");
                    if exists {
                        present.insert((i, ns, name));
                    } else {
                        present.remove(&(i, ns, name));
                    }
                }
            }));
        }
        Ok(Copies {
            namespaces,
            present,
            watches,
        })
    }

    fn count(&self) -> usize {
        self.present.lock().expect("not poisoned").len()
    }

    /// Deletes the copies' namespaces on both clusters and waits until they are gone.
    async fn remove(&self, env: &Env) -> Result<()> {
        let mut clients = Vec::new();
        for cluster in CLUSTERS {
            clients.push(env.cluster_client(cluster).await?);
        }
        for client in &clients {
            delete_namespaces(client, &self.namespaces).await;
        }
        let started = Instant::now();
        loop {
            let mut left = 0;
            for client in &clients {
                let api: Api<Namespace> = Api::all(client.clone());
                left += api
                    .list_metadata(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .filter(|n| {
                        n.metadata
                            .name
                            .as_ref()
                            .is_some_and(|n| self.namespaces.contains(n))
                    })
                    .count();
            }
            if left == 0 && self.count() == 0 {
                if started.elapsed() > Duration::from_secs(1) {
                    eprintln!(
                        "    removed the copies in {:.0} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(900) {
                bail!(
                    "the copies' namespaces are still there after 15 minutes ({left} left, {} copies)",
                    self.count()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl Drop for Copies {
    fn drop(&mut self) {
        for watch in &self.watches {
            watch.abort();
        }
    }
}

async fn delete_namespaces(client: &kube::Client, namespaces: &HashSet<String>) {
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces {
        let _ = api.delete(ns, &DeleteParams::default()).await;
    }
}

/// One round's row of the table; `base`: the 1-replica round's objects/s.
fn row(r: &Round, base: Option<f64>) -> String {
    let each = |f: &dyn Fn(&ReplicaFigures) -> String| {
        r.per_replica.iter().map(f).collect::<Vec<_>>().join(", ")
    };
    format!(
        "| {} | {} | {:.0} s | {:.0} s | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        r.replicas,
        r.objects,
        r.settled_seconds,
        r.converge_seconds,
        r.objects_per_second,
        base.map_or("–".into(), |b| format!(
            "{:.2}x",
            r.objects_per_second / b
        )),
        each(&|f| f.owned_workspaces.to_string()),
        each(&|f| f.downstream_writes.to_string()),
        each(&|f| format!("{:.0}", f.peak_rss_mib)),
        each(&|f| format!("{:.0}", f.rest_rss_mib)),
        each(&|f| format!("{:.0}", f.cpu_seconds)),
        each(&|f| format!("{:.2}", f.lease_requests_per_second)),
        r.load,
    )
}

/// The Markdown table of a run.
pub fn markdown(result: &ReplicasResult) -> String {
    let base = result
        .rounds
        .iter()
        .find(|r| r.replicas == 1)
        .map(|r| r.objects_per_second);
    let mut out = String::from(
        "| replicas | objects | settled after | all copied after | objects/s | vs 1 replica | \
         owned workspaces | copies written | peak RSS (MiB) | RSS at rest (MiB) | CPU (s) | \
         Lease requests/s | load average |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &result.rounds {
        out.push_str(&row(r, base));
    }
    out.push_str(&format!(
        "\nObjects created upstream in {:.0} s; workspaces per shard: {}.\n",
        result.create_seconds,
        result
            .workspaces_per_shard
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_and_without_labels() {
        let text = "# TYPE ferry_api_requests_total counter\n\
                    ferry_api_requests_total{cluster=\"cluster-1\",verb=\"patch\",code=\"200\"} 7\n\
                    ferry_api_requests_total{cluster=\"cluster-2\",verb=\"get\",code=\"200\"} 2\n\
                    ferry_api_requests_totally 9\n\
                    ferry_leader 0\n";
        assert_eq!(sum(text, "ferry_api_requests_total"), 9.0);
        assert_eq!(sum(text, "ferry_leader"), 0.0);
        assert_eq!(samples(text, "ferry_leader").count(), 1);
    }

    #[test]
    fn the_table_has_a_row_per_round_with_the_speed_up() {
        let replica = |owned| ReplicaFigures {
            owned_workspaces: owned,
            downstream_writes: 10,
            upstream_writes: 0,
            peak_rss_mib: 100.0,
            rest_rss_mib: 90.0,
            cpu_seconds: 12.0,
            lease_requests_per_second: 1.0,
            handovers: 1,
            handover_mean_seconds: Some(2.0),
            leader: 0,
        };
        let round = |replicas: usize, rate: f64, owned: &[u64]| Round {
            replicas,
            objects: 1000,
            settled_seconds: 3.0,
            converge_seconds: 1000.0 / rate,
            objects_per_second: rate,
            per_replica: owned.iter().map(|&o| replica(o)).collect(),
            load: "1.0 1.0 1.0".into(),
        };
        let text = markdown(&ReplicasResult {
            create_seconds: 20.0,
            workspaces_per_shard: BTreeMap::from([("root".into(), 6), ("shard-1".into(), 6)]),
            rounds: vec![round(1, 10.0, &[12]), round(2, 15.0, &[7, 5])],
        });
        assert!(
            text.contains("| 1 | 1000 | 3 s | 100 s | 10.0 | 1.00x | 12 |"),
            "{text}"
        );
        assert!(
            text.contains("| 2 | 1000 | 3 s | 67 s | 15.0 | 1.50x | 7, 5 |"),
            "{text}"
        );
        assert!(text.contains("root 6, shard-1 6"), "{text}");
    }
}

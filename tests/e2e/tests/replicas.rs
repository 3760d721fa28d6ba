//! Replicas that share the work (`ferry run --share-work`) on the real environment, default
//! timings (lease 15 s, renew deadline 10 s, retry period 2 s): three replicas split the
//! tenant workspaces and each workspace's copies are written by exactly one of them, the one
//! rendezvous hashing names (checked against the clusters' audit logs, where each replica's
//! user agent carries its identity); a replica killed with SIGKILL under churn has its share
//! taken over within the lease duration plus a few seconds, with nothing lost; a replica
//! joining takes its share without a gap. At each step every replica's metrics show the
//! member count, `ferry_leader` 0 and the workspaces it owns. It runs on two shards (`env up --shards 2`), with
//! the tenants alternating between them; on one shard it skips with a notice (CI runs it in
//! its two-shard pass, see docs/test-environment.md).
//!
//! One test with three phases: each phase starts from the previous one's fleet, and a
//! scenario with six tenants and several processes is the expensive part.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ferry_e2e::ferry::{Ferry, FerryOptions, mapped_namespace};
use ferry_e2e::scenario::{CONVERGE, Scenario};
use ferry_e2e::{CLUSTERS, Env, eventually};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The default lease duration, which the test runs with.
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// Tenant workspaces: enough that three replicas each own some, most of the time.
const TENANTS: usize = 6;

fn share_work() -> FerryOptions {
    FerryOptions {
        share_work: true,
        ..FerryOptions::default()
    }
}

/// The owner of `cluster` among `members` by rendezvous hashing, written again here from the
/// definition (highest first 8 bytes of `SHA-256(member ‖ 0 ‖ cluster)`) as the oracle.
fn owner<'a>(members: &'a BTreeSet<String>, cluster: &str) -> &'a str {
    members
        .iter()
        .max_by_key(|m| {
            let mut h = Sha256::new();
            h.update(m.as_bytes());
            h.update([0u8]);
            h.update(cluster.as_bytes());
            let d = h.finalize();
            (
                u64::from_be_bytes(d[..8].try_into().expect("8 bytes")),
                m.to_string(),
            )
        })
        .expect("members")
}

/// One write by Ferry to a target, from the audit log.
#[derive(Debug, Clone)]
struct Write {
    at: Timestamp,
    /// The replica's identity (from its user agent `ferry/<version> (<identity>)`).
    replica: String,
    /// The tenant whose mapped namespace it wrote in (or created).
    tenant: usize,
    what: String,
}

/// Ferry's writes to the tenants' mapped namespaces on both clusters, oldest first.
fn writes(s: &Scenario) -> Result<Vec<Write>> {
    let namespaces: BTreeMap<String, usize> = s
        .tenants
        .iter()
        .enumerate()
        .map(|(i, t)| (mapped_namespace(t, "demo"), i))
        .collect();
    let mut all = Vec::new();
    for cluster in CLUSTERS {
        let dir = s.env.dir.join(cluster);
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !(name.starts_with("audit") && name.ends_with(".log")) {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            for line in text.lines().filter(|l| l.contains("ferry/")) {
                let Ok(event) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let agent = event["userAgent"].as_str().unwrap_or("");
                if !agent.starts_with("ferry/") {
                    continue;
                }
                let object = &event["objectRef"];
                let namespace = object["namespace"].as_str().or_else(|| {
                    (object["resource"] == "namespaces")
                        .then(|| object["name"].as_str())
                        .flatten()
                });
                let Some(&tenant) = namespace.and_then(|n| namespaces.get(n)) else {
                    continue;
                };
                let replica = agent
                    .split_once('(')
                    .and_then(|(_, rest)| rest.strip_suffix(')'))
                    .unwrap_or(agent)
                    .to_string();
                all.push(Write {
                    at: event["stageTimestamp"]
                        .as_str()
                        .context("an audit event without stageTimestamp")?
                        .parse()?,
                    replica,
                    tenant,
                    what: format!(
                        "{cluster} {} {} {}/{}",
                        event["verb"].as_str().unwrap_or(""),
                        object["resource"].as_str().unwrap_or(""),
                        namespace.unwrap_or(""),
                        object["name"].as_str().unwrap_or("")
                    ),
                });
            }
        }
    }
    all.sort_by_key(|w| w.at);
    Ok(all)
}

/// Fails unless every write since `since` (and before `until`, if given) was made by the
/// tenant's owner among `members`.
fn written_by_owners(
    s: &Scenario,
    since: Timestamp,
    until: Option<Timestamp>,
    members: &BTreeSet<String>,
) -> Result<BTreeMap<String, usize>> {
    let mut per_replica = BTreeMap::new();
    let within = |w: &Write| w.at >= since && until.is_none_or(|until| w.at < until);
    for w in writes(s)?.into_iter().filter(within) {
        let expected = owner(members, &s.tenants[w.tenant].logical_cluster);
        ensure!(
            w.replica == expected,
            "{} at {} was written by {}, but tenant {}'s owner among {members:?} is {expected}",
            w.what,
            w.at,
            w.replica,
            w.tenant
        );
        *per_replica.entry(w.replica).or_insert(0) += 1;
    }
    Ok(per_replica)
}

/// Fails if a workspace's writer ever changed back: once a replica has handed a workspace
/// over, it never writes it again (the fleet here only grows after the kill, so a
/// workspace never returns to a former owner).
fn no_interleaved_writers(s: &Scenario) -> Result<()> {
    let mut sequence: BTreeMap<usize, Vec<(String, Timestamp)>> = BTreeMap::new();
    for w in writes(s)? {
        let seq = sequence.entry(w.tenant).or_default();
        if seq.last().is_none_or(|(r, _)| *r != w.replica) {
            seq.push((w.replica.clone(), w.at));
        }
    }
    for (tenant, seq) in &sequence {
        let distinct: BTreeSet<&String> = seq.iter().map(|(r, _)| r).collect();
        ensure!(
            distinct.len() == seq.len(),
            "tenant {tenant}'s writers went back and forth: {seq:?}"
        );
    }
    eprintln!("writers per workspace, in order: {sequence:?}");
    Ok(())
}

/// Waits until each of `replicas` said, after the first `offsets[i]` bytes of its log, that
/// it writes its share of a fleet of `members`.
async fn settled(replicas: &[&Ferry], offsets: &[usize], members: usize) -> Result<()> {
    let line = format!("writing this replica's share members={members}");
    eventually(
        &format!("{} replicas to act on {members} members", replicas.len()),
        Duration::from_secs(90),
        || async {
            Ok(replicas
                .iter()
                .zip(offsets)
                .all(|(f, &from)| f.log().get(from..).is_some_and(|l| l.contains(&line)))
                .then_some(()))
        },
    )
    .await
}

/// Waits until every replica of `fleet` reports, in its metrics, a member set of `members`,
/// `ferry_leader` 0 (a replica sharing the work leads nothing), and the bound workspaces its
/// owner among `identities` is: each writes exactly the workspaces rendezvous hashing gives
/// it, and together they write every bound workspace once.
async fn metrics_show_the_share(
    fleet: &[&Ferry],
    s: &Scenario,
    identities: &BTreeSet<String>,
) -> Result<()> {
    let expected: Vec<u64> = fleet
        .iter()
        .map(|f| {
            let me = identity(f)?;
            Ok(s.tenants
                .iter()
                .filter(|t| owner(identities, &t.logical_cluster) == me)
                .count() as u64)
        })
        .collect::<Result<_>>()?;
    let members = identities.len() as u64;
    eventually(
        &format!(
            "the replicas' metrics to show {members} members and owned workspaces {expected:?}"
        ),
        Duration::from_secs(30),
        || async {
            let mut seen = Vec::new();
            for f in fleet {
                seen.push((
                    f.metric("ferry_replica_members").await?,
                    f.metric("ferry_leader").await?,
                    f.metric("ferry_replica_owned_workspaces").await?,
                    f.metric("ferry_bound_workspaces").await?,
                ));
            }
            let owned: Vec<u64> = seen.iter().map(|s| s.2).collect();
            let ok = seen.iter().all(|&(m, leader, _, bound)| {
                m == members && leader == 0 && bound == TENANTS as u64
            }) && owned == expected;
            if !ok {
                eprintln!("replica metrics (members, leader, owned, bound): {seen:?}");
            }
            Ok(ok.then_some(()))
        },
    )
    .await
}

/// A replica's completed handovers (`ferry_replica_handover_duration_seconds_count`).
async fn handovers(ferry: &Ferry) -> Result<u64> {
    ferry
        .metric("ferry_replica_handover_duration_seconds_count")
        .await
}

fn identity(ferry: &Ferry) -> Result<String> {
    ferry
        .identity()
        .context("no identity in the replica's log yet")
}

async fn identity_of(ferry: &Ferry) -> Result<String> {
    eventually(
        "the replica's identity",
        // Said once connected to kcp, which takes a while on a loaded machine.
        Duration::from_secs(120),
        || async { Ok(ferry.identity()) },
    )
    .await
}

/// A task that keeps changing every tenant's `web-a` (an annotation, each round) until the
/// returned sender is dropped; it returns how many rounds it made. The counter says how
/// many rounds it has written so far.
fn churn(
    s: &Scenario,
) -> Result<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<u64>,
    Arc<AtomicU64>,
)> {
    let apis: Vec<Api<DynamicObject>> = (0..s.tenants.len())
        .map(|i| s.tenant_deployments(i))
        .collect::<Result<_>>()?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let task = tokio::spawn(async move {
        let mut round = 0u64;
        loop {
            round += 1;
            for api in &apis {
                let patch = serde_json::json!({"metadata": {"annotations": {"e2e/round": round.to_string()}}});
                let _ = api
                    .patch("web-a", &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            }
            counter.store(round, Ordering::SeqCst);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(700)) => {}
                _ = &mut stopped => return round,
            }
        }
    });
    Ok((stop, task, written))
}

#[tokio::test]
async fn three_replicas_share_the_workspaces_survive_a_kill_and_take_in_a_newcomer() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    if env.shards()?.len() < 2 {
        eprintln!(
            "skipping the replicas test: the environment in {} runs one kcp shard (cargo \
             xtask env up --shards 2)",
            env.dir.display()
        );
        return Ok(());
    }
    let mut s = Scenario::start(&env, "replicas", TENANTS, share_work()).await?;
    let mut others = vec![
        Ferry::start(&env, &s.provider, &share_work())?,
        Ferry::start(&env, &s.provider, &share_work())?,
    ];
    let result = phases(&env, &mut s, &mut others).await;
    if result.is_err() {
        for (i, f) in others.iter().enumerate() {
            eprintln!("---- replica {} log ----\n{}", i + 1, f.log());
        }
    }
    s.finish(result)
}

async fn phases(env: &Env, s: &mut Scenario, others: &mut Vec<Ferry>) -> Result<()> {
    // Phase 1: three replicas, every workspace written by its owner only.
    {
        let fleet: Vec<&Ferry> = std::iter::once(&s.ferry).chain(others.iter()).collect();
        settled(&fleet, &[0, 0, 0], 3).await?;
    }
    let mut members: BTreeSet<String> = BTreeSet::new();
    members.insert(identity(&s.ferry)?);
    for f in others.iter() {
        members.insert(identity(f)?);
    }
    let owners: Vec<&str> = s
        .tenants
        .iter()
        .map(|t| owner(&members, &t.logical_cluster))
        .collect();
    eprintln!("owners of the {TENANTS} workspaces: {owners:?}");
    {
        let fleet: Vec<&Ferry> = std::iter::once(&s.ferry).chain(others.iter()).collect();
        metrics_show_the_share(&fleet, s, &members).await?;
    }
    let since = Timestamp::now();
    for i in 0..TENANTS {
        s.apply_deployment(i, "web-a", 1, &[]).await?;
        s.apply_deployment(i, "web-b", 1, &[]).await?;
    }
    for i in 0..TENANTS {
        s.wait_on_all(i, "web-a", true).await?;
        s.wait_on_all(i, "web-b", true).await?;
    }
    s.ferry.wait_clean(CONVERGE).await?;
    let per_replica = written_by_owners(s, since, None, &members)?;
    eprintln!("phase 1: writes per replica {per_replica:?}");
    ensure!(!per_replica.is_empty(), "nothing written");

    // Phase 2: SIGKILL the replica that owns the most workspaces, under churn.
    let victim = members
        .iter()
        .max_by_key(|m| owners.iter().filter(|o| *o == m).count())
        .cloned()
        .context("members")?;
    let victims: Vec<usize> = (0..TENANTS).filter(|&i| owners[i] == victim).collect();
    let (stop, churned, written) = churn(s)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed = Instant::now();
    if identity(&s.ferry)? == victim {
        // Keep a live process as the scenario's own (it prints its log on failure).
        let mut dead = std::mem::replace(&mut s.ferry, others.remove(0));
        dead.kill();
        others.push(dead);
    } else {
        let index = others
            .iter()
            .position(|f| f.identity().as_deref() == Some(victim.as_str()))
            .context("the victim")?;
        others[index].kill();
    }
    members.remove(&victim);
    let survivors: Vec<&Ferry> = std::iter::once(&s.ferry)
        .chain(others.iter().filter(|f| f.pid().is_some()))
        .collect();
    let offsets: Vec<usize> = survivors.iter().map(|f| f.log().len()).collect();
    let mut handovers_before = Vec::new();
    for f in &survivors {
        handovers_before.push(handovers(f).await?);
    }
    for &i in &victims {
        s.apply_deployment(i, "after-kill", 1, &[]).await?;
    }
    for &i in &victims {
        for cluster in CLUSTERS {
            let copies = s.copies(i, cluster).await?;
            eventually(
                &format!("tenant {i}'s after-kill on {cluster}"),
                LEASE_DURATION + Duration::from_secs(30),
                || async { Ok(copies.get_opt("after-kill").await?.map(|_| ())) },
            )
            .await?;
        }
    }
    let moved = killed.elapsed();
    eprintln!(
        "phase 2: the killed replica's {} workspace(s) were served again {moved:?} after the kill",
        victims.len()
    );
    ensure!(
        moved <= LEASE_DURATION + Duration::from_secs(15),
        "the killed replica's share took {moved:?} to move"
    );
    settled(&survivors, &offsets, 2).await?;
    // From here until the newcomer starts, the survivors write every workspace, each only
    // its own: nothing is written twice while the killed replica's share moves.
    let since_survivors = Timestamp::now();
    metrics_show_the_share(&survivors, s, &members).await?;
    // The churn must write within the window measured below: a round written before
    // `since_survivors` and copied by then leaves nothing to attribute (CI saw that once on
    // a fast machine, where the last round fell just before the window opened).
    {
        let from = written.load(Ordering::SeqCst);
        eventually(
            "two churn rounds after the survivors settled",
            Duration::from_secs(60),
            || async { Ok((written.load(Ordering::SeqCst) >= from + 2).then_some(())) },
        )
        .await?;
    }
    for (f, before) in survivors.iter().zip(&handovers_before) {
        let after = handovers(f).await?;
        ensure!(
            after > *before,
            "a survivor's completed handovers stayed at {after} across the kill"
        );
    }
    let rounds = {
        drop(stop);
        churned.await?
    };
    s.ferry.wait_clean(CONVERGE).await?;
    for i in 0..TENANTS {
        s.wait_copy(i, CLUSTERS[0], "web-a", "the last churn round", |c| {
            c.and_then(|c| c.metadata.annotations.as_ref()?.get("e2e/round").cloned())
                == Some(rounds.to_string())
        })
        .await?;
    }
    let per_replica = written_by_owners(s, since_survivors, Some(Timestamp::now()), &members)?;
    eprintln!("phase 2: writes per replica once the survivors settled {per_replica:?}");
    ensure!(
        !per_replica.is_empty(),
        "nothing written under churn after the kill"
    );

    // Phase 3: a new replica joins under churn; it takes its share without a gap. A
    // newcomer that happens to own none of the six workspaces proves nothing: it is
    // stopped (SIGTERM: it leaves at once) and another started.
    let mut newcomer = None;
    let mut offsets = Vec::new();
    let (stop, churned, _) = churn(s)?;
    let creator = {
        let apis: Vec<Api<DynamicObject>> = (0..TENANTS)
            .map(|i| s.tenant_deployments(i))
            .collect::<Result<_>>()?;
        let manifest = ferry_e2e::kcp::example("tenant/deployment.yaml")?;
        let template: Value = serde_yaml::from_str(
            manifest
                .split("---")
                .nth(1)
                .context("example has two documents")?,
        )?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut created = Vec::new();
            for k in 0usize.. {
                let name = format!("join-{k}");
                let mut object = template.clone();
                object["metadata"]["name"] = name.clone().into();
                let tenant = k % apis.len();
                if apis[tenant]
                    .patch(
                        &name,
                        &PatchParams::apply("e2e-tenant").force(),
                        &Patch::Apply(&object),
                    )
                    .await
                    .is_ok()
                {
                    created.push((tenant, name));
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = &mut stopped => break,
                }
            }
            created
        });
        (stop, task)
    };
    for attempt in 1..=6 {
        let candidate = Ferry::start(env, &s.provider, &share_work())?;
        let id = identity_of(&candidate).await?;
        let mut joined = members.clone();
        joined.insert(id.clone());
        let takes: Vec<usize> = (0..TENANTS)
            .filter(|&i| owner(&joined, &s.tenants[i].logical_cluster) == id)
            .collect();
        if takes.is_empty() {
            eprintln!("newcomer {attempt} owns no workspace; stopping it and trying another");
            candidate.terminate()?;
            let mut candidate = candidate;
            candidate.wait_exit(Duration::from_secs(30)).await?;
            continue;
        }
        eprintln!("newcomer {id} takes workspace(s) {takes:?}");
        offsets = std::iter::once(&s.ferry)
            .chain(others.iter().filter(|f| f.pid().is_some()))
            .map(|f| f.log().len())
            .collect();
        offsets.push(0);
        members = joined;
        newcomer = Some(candidate);
        break;
    }
    let newcomer = newcomer.context("no newcomer owned a workspace in six tries")?;
    {
        let fleet: Vec<&Ferry> = std::iter::once(&s.ferry)
            .chain(others.iter().filter(|f| f.pid().is_some()))
            .chain(std::iter::once(&newcomer))
            .collect();
        settled(&fleet, &offsets, 3).await?;
        metrics_show_the_share(&fleet, s, &members).await?;
    }
    let since_join = Timestamp::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(stop);
    let rounds = churned.await?;
    let (stop_creating, creator_task) = creator;
    drop(stop_creating);
    let created = creator_task.await?;
    others.push(newcomer);
    // Every object created during the join, and the churn's last round, arrive.
    for (tenant, name) in &created {
        s.wait_on_all(*tenant, name, true).await?;
    }
    for i in 0..TENANTS {
        s.wait_copy(i, CLUSTERS[0], "web-a", "the last churn round", |c| {
            c.and_then(|c| c.metadata.annotations.as_ref()?.get("e2e/round").cloned())
                == Some(rounds.to_string())
        })
        .await?;
    }
    s.ferry.wait_clean(CONVERGE).await?;
    // The gap: how long each object created during the join took to be copied (creation
    // timestamps, whole seconds, from kcp and the cluster on the same host clock).
    let mut worst = 0i64;
    for (tenant, name) in &created {
        let upstream = s.tenant_deployments(*tenant)?.get(name).await?;
        let copy = s.copies(*tenant, CLUSTERS[0]).await?.get(name).await?;
        let created_at = |o: &DynamicObject| -> Result<i64> {
            Ok(o.metadata
                .creation_timestamp
                .as_ref()
                .context("creationTimestamp")?
                .0
                .as_second())
        };
        worst = worst.max(created_at(&copy)? - created_at(&upstream)?);
    }
    eprintln!(
        "phase 3: {} objects created during the join, the slowest copied after {worst} s",
        created.len()
    );
    // A join pauses the moved workspaces for a listing or two (a few seconds, more on a
    // loaded machine), never for a lease duration as a crash does.
    ensure!(
        worst < LEASE_DURATION.as_secs() as i64 - 3,
        "an object created during the join waited {worst} s for its copy"
    );
    let per_replica = written_by_owners(s, since_join, None, &members)?;
    eprintln!("phase 3: writes per replica since the join settled {per_replica:?}");
    no_interleaved_writers(s)?;
    let (clean, report) = s.ferry.check()?;
    if !clean {
        bail!("ferry check is not clean:\n{report}");
    }
    Ok(())
}

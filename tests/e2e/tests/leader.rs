//! Leader election and graceful shutdown on the real environment: two `ferry run
//! --leader-elect` processes for one export, the Lease on cluster-1, default timings (lease
//! 15 s, renew deadline 10 s, retry period 2 s).

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use ferry_e2e::ferry::{Ferry, FerryOptions};
use ferry_e2e::scenario::Scenario;
use ferry_e2e::{Env, eventually};

/// The default lease duration, which the tests below run with.
const LEASE_DURATION: Duration = Duration::from_secs(15);

fn leader_elect() -> FerryOptions {
    FerryOptions {
        leader_elect: true,
        ..FerryOptions::default()
    }
}

/// Writes a process made, by its own count: downstream (copies, namespaces) and upstream
/// (finalizers, status, Events).
async fn writes(ferry: &Ferry) -> Result<u64> {
    Ok(ferry.metric("ferry_downstream_writes_total").await?
        + ferry.metric("ferry_upstream_writes_total").await?)
}

/// Waits until `/readyz` answers 200 on `ferry`, and returns its body.
async fn ready(ferry: &Ferry) -> Result<String> {
    eventually("/readyz to answer 200", Duration::from_secs(60), || async {
        let (status, body) = ferry.get("/readyz").await?;
        if status == 200 {
            Ok(Some(body))
        } else {
            bail!("{status}: {body}")
        }
    })
    .await
}

/// A scenario with two replicas, both ready and one of them leading: (scenario, standby),
/// where the scenario's own Ferry is made the leader (the two are swapped if needed).
async fn two_replicas(env: &Env, name: &str) -> Result<(Scenario, Ferry)> {
    let mut s = Scenario::start(env, name, 1, leader_elect()).await?;
    let mut other = Ferry::start(env, &s.provider, &leader_elect())?;
    ready(&s.ferry).await?;
    ready(&other).await?;
    let (a, b) = eventually("exactly one leader", Duration::from_secs(30), || async {
        let a = s.ferry.metric("ferry_leader").await?;
        let b = other.metric("ferry_leader").await?;
        Ok((a + b == 1).then_some((a, b)))
    })
    .await?;
    ensure!(a + b == 1, "leaders: {a} and {b}");
    if b == 1 {
        std::mem::swap(&mut s.ferry, &mut other);
    }
    Ok((s, other))
}

#[tokio::test]
async fn of_two_replicas_exactly_one_writes_and_both_are_ready() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let (mut s, standby) = two_replicas(&env, "leader-one").await?;
    let result = async {
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.wait_on_all(0, "web", true).await?;
        s.wait_upstream(0, "web", "status from both clusters", |o| {
            o.and_then(|o| o.data.pointer("/status/replicas"))
                .and_then(|r| r.as_i64())
                == Some(2)
        })
        .await?;
        let (leader, standby_writes) = (writes(&s.ferry).await?, writes(&standby).await?);
        eprintln!("writes: leader {leader}, standby {standby_writes}");
        ensure!(leader > 0, "the leader wrote nothing");
        ensure!(
            standby_writes == 0,
            "the standby wrote {standby_writes} times"
        );
        let (status, body) = standby.get("/readyz").await?;
        ensure!(
            status == 200 && body.contains("standby"),
            "standby: {status} {body}"
        );
        let (status, body) = s.ferry.get("/readyz").await?;
        ensure!(
            status == 200 && body.contains("leading"),
            "leader: {status} {body}"
        );
        ensure!(standby.get("/healthz").await?.0 == 200);
        ensure!(standby.get("/nothing-here").await?.0 == 404);
        Ok(())
    }
    .await;
    report(&standby, &result);
    s.finish(result)
}

#[tokio::test]
async fn a_killed_leader_is_replaced_within_the_lease_duration() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let (mut s, standby) = two_replicas(&env, "leader-kill").await?;
    let result = async {
        s.apply_deployment(0, "before", 1, &[]).await?;
        s.wait_on_all(0, "before", true).await?;

        let killed = Instant::now();
        s.ferry.kill();
        // Created while no process leads: the next leader must sync it.
        s.apply_deployment(0, "meanwhile", 1, &[]).await?;
        eventually(
            "the standby to lead",
            LEASE_DURATION + Duration::from_secs(15),
            || async { Ok((standby.metric("ferry_leader").await? == 1).then_some(())) },
        )
        .await?;
        let took_over = killed.elapsed();
        // The copies are checked on the clusters directly: the scenario's own Ferry is dead.
        for cluster in ferry_e2e::CLUSTERS {
            let copies = s.copies(0, cluster).await?;
            eventually(
                &format!("the copy of meanwhile on {cluster}"),
                Duration::from_secs(30),
                || async { Ok(copies.get_opt("meanwhile").await?.map(|_| ())) },
            )
            .await?;
        }
        let arrived = killed.elapsed();
        eprintln!(
            "kill -9: the standby led after {took_over:?}, the copies arrived after {arrived:?}"
        );
        // The standby claims the Lease a lease duration after it last saw it renewed, at its
        // next try (every 2 s, plus up to 20% jitter).
        ensure!(
            took_over <= LEASE_DURATION + Duration::from_secs(5),
            "took over after {took_over:?}"
        );
        ensure!(writes(&standby).await? > 0, "the new leader wrote nothing");
        Ok(())
    }
    .await;
    report(&standby, &result);
    s.finish(result)
}

#[tokio::test]
async fn a_terminated_leader_drains_releases_the_lease_and_exits_0() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let (mut s, standby) = two_replicas(&env, "leader-term").await?;
    let result = async {
        s.apply_deployment(0, "before", 1, &[]).await?;
        s.wait_on_all(0, "before", true).await?;

        let terminated = Instant::now();
        s.ferry.terminate()?;
        let code = s.ferry.wait_exit(Duration::from_secs(20)).await?;
        let exited = terminated.elapsed();
        ensure!(code == Some(0), "exit code {code:?}");
        eventually("the standby to lead", LEASE_DURATION, || async {
            Ok((standby.metric("ferry_leader").await? == 1).then_some(()))
        })
        .await?;
        let took_over = terminated.elapsed();
        eprintln!(
            "SIGTERM: the leader exited after {exited:?}, the standby led after {took_over:?}"
        );
        // Released: the standby claims it at its next try, not a lease duration later.
        ensure!(
            took_over < LEASE_DURATION / 3,
            "took over after {took_over:?}"
        );
        let log = s.ferry.log();
        ensure!(log.contains("released the Lease"), "{log}");
        s.apply_deployment(0, "after", 1, &[]).await?;
        for cluster in ferry_e2e::CLUSTERS {
            let copies = s.copies(0, cluster).await?;
            eventually(
                &format!("the copy of after on {cluster}"),
                Duration::from_secs(30),
                || async { Ok(copies.get_opt("after").await?.map(|_| ())) },
            )
            .await?;
        }
        Ok(())
    }
    .await;
    report(&standby, &result);
    s.finish(result)
}

#[tokio::test]
async fn without_leader_election_sigterm_drains_and_exits_0() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "shutdown", 1, FerryOptions::default()).await?;
    let result = async {
        ready(&s.ferry).await?;
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.wait_on_all(0, "web", true).await?;
        s.ferry.terminate()?;
        let code = s.ferry.wait_exit(Duration::from_secs(20)).await?;
        ensure!(code == Some(0), "exit code {code:?}");
        let log = s.ferry.log();
        ensure!(log.contains("reconciles drained"), "{log}");
        Ok(())
    }
    .await;
    s.finish(result)
}

/// Prints the second process's log when a test failed (the scenario prints its own).
fn report(ferry: &Ferry, result: &Result<()>) {
    if result.is_err() {
        eprintln!("---- second ferry's log ----\n{}", ferry.log());
    }
}

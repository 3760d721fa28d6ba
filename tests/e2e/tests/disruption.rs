//! Disruptive end-to-end tests: they pause a target cluster's API server, so they run in their
//! own test binary (cargo runs test binaries one after another) and one at a time.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ferry_e2e::Env;
use ferry_e2e::ferry::FerryOptions;
use ferry_e2e::scenario::{CONVERGE, Scenario};

#[tokio::test]
async fn a_target_that_is_down_does_not_stop_the_other_and_catches_up_when_it_returns() -> Result<()>
{
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let options = FerryOptions {
        target_timeout_seconds: 3,
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "target-down", 1, options).await?;
    let result = async {
        let paused = env.pause("cluster-2-apiserver")?;
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.wait_copy(
            0,
            "cluster-1",
            "web",
            "the copy on the healthy cluster",
            |c| c.is_some(),
        )
        .await?;
        let events =
            ferry_e2e::eventually("a SyncFailed event naming cluster-2", CONVERGE, || async {
                let events = s.events(0, "web", "SyncFailed").await?;
                Ok(events.into_iter().find(|e| {
                    e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("cluster-2"))
                }))
            })
            .await?;
        ensure!(events.type_.as_deref() == Some("Warning"));
        drop(paused);
        s.wait_copy(
            0,
            "cluster-2",
            "web",
            "the copy once cluster-2 is back",
            |c| c.is_some(),
        )
        .await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn work_for_a_healthy_target_never_waits_behind_a_hung_one_with_the_default_timeout()
-> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    // The default per-target timeout (30 s) and 8 workers: before, 24 objects placed on a hung
    // cluster held every worker for 30 s at a time, and an object for the healthy cluster
    // arrived after 88 s.
    let mut s = Scenario::start(&env, "hung-target", 1, FerryOptions::default()).await?;
    let result = async {
        s.apply_deployment(0, "warm-up", 1, &[]).await?;
        s.wait_on_all(0, "warm-up", true).await?;
        let paused = env.pause("cluster-2-apiserver")?;
        for i in 0..24 {
            s.apply_deployment(0, &format!("both-{i}"), 1, &[]).await?;
        }
        let started = Instant::now();
        s.apply_deployment(
            0,
            "eu-only",
            1,
            &[("sync.ferry.dev/placement", "region=eu")],
        )
        .await?;
        s.wait_copy(
            0,
            "cluster-1",
            "eu-only",
            "the copy on the healthy cluster",
            |c| c.is_some(),
        )
        .await?;
        let waited = started.elapsed();
        eprintln!(
            "the object for the healthy cluster arrived after {waited:?} with cluster-2 hung"
        );
        ensure!(
            waited < Duration::from_secs(30),
            "it waited {waited:?}, longer than one target timeout: it queued behind the hung target"
        );
        for i in 0..24 {
            s.wait_copy(
                0,
                "cluster-1",
                &format!("both-{i}"),
                "copies on the healthy cluster",
                |c| c.is_some(),
            )
            .await?;
        }
        drop(paused);
        for i in 0..24 {
            s.wait_copy(
                0,
                "cluster-2",
                &format!("both-{i}"),
                "copies once cluster-2 answers",
                |c| c.is_some(),
            )
            .await?;
        }
        s.ferry.wait_clean(CONVERGE).await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

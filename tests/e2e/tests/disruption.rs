//! Disruptive end-to-end tests: they pause a target cluster's API server, so they run in their
//! own test binary (cargo runs test binaries one after another) and one at a time.

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

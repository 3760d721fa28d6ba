//! A leader cut off from its Lease: it stops writing and exits 1 at the renew deadline. In
//! its own test binary because it stops cluster-1's API server (SIGSTOP), which would
//! disturb other tests sharing the environment.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ferry_e2e::ferry::FerryOptions;
use ferry_e2e::scenario::Scenario;
use ferry_e2e::{Env, eventually};

#[tokio::test]
async fn a_leader_that_cannot_renew_its_lease_stops_and_exits_1_at_the_renew_deadline() -> Result<()>
{
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let options = FerryOptions {
        leader_elect: true,
        // The Lease on cluster-1 (the default, said here for the reader), default timings.
        leader_election: "target: cluster-1".into(),
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "leader-lost", 1, options).await?;
    let result = async {
        eventually("Ferry to lead", Duration::from_secs(60), || async {
            Ok((s.ferry.metric("ferry_leader").await? == 1).then_some(()))
        })
        .await?;
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.wait_on_all(0, "web", true).await?;

        let paused_at = Instant::now();
        let paused = env.pause("cluster-1-apiserver")?;
        let code = s.ferry.wait_exit(Duration::from_secs(30)).await;
        let exited = paused_at.elapsed();
        drop(paused);
        let code = code?;
        eprintln!("Lease unreachable: exited with {code:?} after {exited:?}");
        ensure!(code == Some(1), "exit code {code:?}");
        // The last renewal was at most a retry period before the pause; the renew deadline
        // (10 s) counts from it. A standby could take over only 15 s after it.
        ensure!(exited <= Duration::from_secs(12), "exited after {exited:?}");
        let log = s.ferry.log();
        ensure!(log.contains("lost the leader Lease"), "{log}");
        Ok(())
    }
    .await;
    s.finish(result)
}

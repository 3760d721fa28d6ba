//! A sharded kcp (`cargo xtask env up --shards 2`): tenants on both shards, a shard restarted
//! under churn, every tenant of a shard unbinding, and the endpoint slice losing and regaining
//! a shard's URL. They restart and pause shards, so they run in their own test binary, one at a
//! time. On a single-shard environment they skip with a notice (CI runs them in its two-shard
//! pass; see docs/test-environment.md).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ferry_e2e::ferry::FerryOptions;
use ferry_e2e::scenario::{CONVERGE, Scenario, all_ready};
use ferry_e2e::{CLUSTERS, Env, eventually};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

/// The tests restart and pause `shard-1`, which every other test here has tenants on: one at a
/// time (cargo runs a binary's tests in parallel).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The environment, if it runs two shards; otherwise a notice and `None`.
fn sharded_env() -> Result<Option<Env>> {
    let Some(env) = Env::get()? else {
        return Ok(None);
    };
    if env.shards()?.len() < 2 {
        eprintln!(
            "skipping sharded test: the environment in {} runs one kcp shard (cargo xtask env \
             up --shards 2)",
            env.dir.display()
        );
        return Ok(None);
    }
    Ok(Some(env))
}

fn endpoint_slices() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apis.kcp.io", "v1alpha1", "APIExportEndpointSlice"),
        "apiexportendpointslices",
    )
}

fn api_bindings() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apis.kcp.io", "v1alpha2", "APIBinding"),
        "apibindings",
    )
}

/// The URLs the provider's endpoint slice lists.
async fn slice_urls(s: &Scenario) -> Result<Vec<String>> {
    let api: Api<DynamicObject> =
        Api::all_with(s.admin.workspace(&s.provider.path)?, &endpoint_slices());
    let slice = api.get("kubernetes").await?;
    Ok(slice
        .data
        .pointer("/status/endpoints")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
        .filter_map(|e| e["url"].as_str().map(str::to_string))
        .collect())
}

/// The URL of `shard`'s virtual workspace in the slice (its own base URL, not the
/// front-proxy's).
async fn shard_url(env: &Env, shard: &str) -> Result<String> {
    let config = ferry_e2e::config_from_kubeconfig(&env.shard_kubeconfig(shard), None).await?;
    Ok(config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string())
}

/// The number before `what` in `ferry check`'s summary line (`… 0 orphaned, …`).
fn summary_count(report: &str, what: &str) -> Option<usize> {
    let line = report.lines().rev().find(|l| l.contains(" objects: "))?;
    let before = &line[..line.find(&format!(" {what}"))?];
    before
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// UID of every copy of tenant `i`'s Deployments, by (cluster, name).
async fn copy_uids(s: &Scenario, i: usize) -> Result<BTreeMap<(String, String), String>> {
    let mut uids = BTreeMap::new();
    for cluster in CLUSTERS {
        for copy in s
            .copies(i, cluster)
            .await?
            .list(&Default::default())
            .await?
        {
            uids.insert(
                (cluster.to_string(), copy.name_any()),
                copy.uid().context("a copy without a UID")?,
            );
        }
    }
    Ok(uids)
}

/// Fails if any copy in `before` is gone or was replaced (another UID).
async fn same_copies(
    s: &Scenario,
    i: usize,
    before: &BTreeMap<(String, String), String>,
) -> Result<()> {
    let now = copy_uids(s, i).await?;
    for (key, uid) in before {
        match now.get(key) {
            Some(now) if now == uid => {}
            Some(_) => bail!(
                "the copy of {} on {} was deleted and recreated",
                key.1,
                key.0
            ),
            None => bail!("the copy of {} on {} was deleted", key.1, key.0),
        }
    }
    Ok(())
}

#[tokio::test]
async fn tenants_on_both_shards_sync_through_one_ferry() -> Result<()> {
    let Some(env) = sharded_env()? else {
        return Ok(());
    };
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut s = Scenario::start(&env, "two-shards", 2, FerryOptions::default()).await?;
    let result = async {
        // The harness placed the provider on root, tenant 0 on shard-1 and tenant 1 on root
        // (kcp honoured it).
        let provider = env.shard_holding(&s.provider.logical_cluster).await?;
        ensure!(
            provider == "root",
            "the provider is on {provider}, not root"
        );
        for i in 0..2 {
            let expected = env.tenant_shard(i)?.context("a sharded environment")?;
            let actual = env.shard_holding(&s.tenants[i].logical_cluster).await?;
            ensure!(
                actual == expected,
                "tenant {i} is on {actual}, not {expected}"
            );
        }
        // One virtual-workspace URL per shard, each the shard's own (the front-proxy does
        // not serve /services/apiexport).
        let mut expected = Vec::new();
        for shard in env.shards()? {
            expected.push(shard_url(&env, &shard).await?);
        }
        let urls = eventually("the slice to list both shards", CONVERGE, || async {
            let urls = slice_urls(&s).await?;
            Ok(expected
                .iter()
                .all(|e| urls.iter().any(|u| u.starts_with(e.as_str())))
                .then_some(urls))
        })
        .await?;
        eprintln!("endpoint slice: {urls:?}");

        for i in 0..2 {
            s.apply_deployment(i, "web", 1, &[]).await?;
        }
        for i in 0..2 {
            s.wait_on_all(i, "web", true).await?;
            s.wait_upstream(i, "web", "the status summed from both clusters", |o| {
                all_ready(o, 2)
            })
            .await?;
        }
        for i in 0..2 {
            s.apply_deployment(i, "web", 2, &[]).await?;
        }
        for i in 0..2 {
            for cluster in CLUSTERS {
                s.wait_copy(i, cluster, "web", "the update", |c| {
                    ferry_e2e::scenario::replicas(c) == Some(2)
                })
                .await?;
            }
        }
        for i in 0..2 {
            s.tenant_deployments(i)?
                .delete("web", &DeleteParams::default())
                .await?;
        }
        for i in 0..2 {
            s.wait_on_all(i, "web", false).await?;
            s.wait_upstream(i, "web", "the finalizer released", |o| o.is_none())
                .await?;
        }
        s.ferry.wait_clean(CONVERGE).await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn a_shard_restarted_under_churn_keeps_its_copies_and_catches_up() -> Result<()> {
    let Some(env) = sharded_env()? else {
        return Ok(());
    };
    let _serial = ONE_AT_A_TIME.lock().await;
    let options = FerryOptions {
        target_timeout_seconds: 5,
        ..FerryOptions::default()
    };
    // Tenant 0 on shard-1 (the one restarted), tenant 1 on root.
    let mut s = Scenario::start(&env, "shard-restart", 2, options).await?;
    const OBJECTS: usize = 4;
    let result = async {
        for i in 0..2 {
            for k in 0..OBJECTS {
                s.apply_deployment(i, &format!("web-{k}"), 1, &[("gen", "0")])
                    .await?;
            }
        }
        s.ferry.wait_clean(CONVERGE).await?;
        let before = copy_uids(&s, 0).await?;
        ensure!(
            before.len() == OBJECTS * CLUSTERS.len(),
            "expected {} copies of shard-1's tenant, found {before:?}",
            OBJECTS * CLUSTERS.len()
        );

        // Churn on both tenants while shard-1 is killed and restarted: every object gets a
        // new `gen` annotation in turn; writes to the shard that is down fail and are skipped
        // (the last one that succeeded is what its copies must end with).
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let apis = [s.tenant_deployments(0)?, s.tenant_deployments(1)?];
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut generation = 0u64;
                let (mut written, mut failed) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    generation += 1;
                    for api in &apis {
                        for k in 0..OBJECTS {
                            let patch = serde_json::json!({
                                "metadata": {"annotations": {"gen": generation.to_string()}}
                            });
                            let write = tokio::time::timeout(
                                Duration::from_secs(5),
                                api.patch(
                                    &format!("web-{k}"),
                                    &PatchParams::default(),
                                    &Patch::Merge(&patch),
                                ),
                            )
                            .await;
                            match write {
                                Ok(Ok(_)) => written += 1,
                                _ => failed += 1,
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                (written, failed)
            })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        let env2 = env.clone();
        let restart =
            tokio::task::spawn_blocking(move || env2.restart_process("kcp-shard-1", true));
        // While the shard is down and starting again, its tenant's copies stay.
        while !restart.is_finished() {
            same_copies(&s, 0, &before).await?;
            s.ferry.check_running()?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        restart.await??;
        tokio::time::sleep(Duration::from_secs(5)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (written, failed) = churn.await?;
        eprintln!("churn: {written} writes, {failed} failed while shard-1 was down");
        ensure!(failed > 0, "no write failed: was shard-1 down at all?");

        // It catches up: every copy ends with its object's last annotation (`ferry check`
        // compares them), and shard-1's copies are the ones from before the restart.
        s.ferry.wait_clean(Duration::from_secs(120)).await?;
        for i in 0..2 {
            for k in 0..OBJECTS {
                let name = format!("web-{k}");
                let upstream = s.tenant_deployments(i)?.get(&name).await?;
                let last = upstream.annotations().get("gen").cloned();
                for cluster in CLUSTERS {
                    s.wait_copy(i, cluster, &name, "the last annotation", |c| {
                        c.and_then(|c| c.annotations().get("gen").cloned()) == last
                    })
                    .await?;
                }
            }
        }
        same_copies(&s, 0, &before).await?;
        s.ferry.check_running()?;
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn every_tenant_of_a_shard_unbinding_deletes_their_copies_and_the_shard_leaves_the_slice()
-> Result<()> {
    let Some(env) = sharded_env()? else {
        return Ok(());
    };
    let _serial = ONE_AT_A_TIME.lock().await;
    // Tenants 0 and 2 on shard-1, tenant 1 on root.
    let mut s = Scenario::start(&env, "shard-unbind", 3, FerryOptions::default()).await?;
    let result = async {
        let shard1 = shard_url(&env, "shard-1").await?;
        for i in 0..3 {
            s.apply_deployment(i, "web", 1, &[]).await?;
        }
        for i in 0..3 {
            s.wait_on_all(i, "web", true).await?;
        }
        ensure!(
            slice_urls(&s).await?.iter().any(|u| u.starts_with(&shard1)),
            "the slice does not list shard-1"
        );

        // Every tenant on shard-1 deletes its binding.
        for i in [0, 2] {
            Api::<DynamicObject>::all_with(s.admin.workspace(&s.tenants[i].path)?, &api_bindings())
                .delete("kubernetes", &DeleteParams::default())
                .await?;
        }
        // kcp deletes their objects, which wait for Ferry's finalizer: Ferry deletes the
        // copies through shard-1's URL while the shard still has bindings, then the bindings
        // go, and then the shard's URL leaves the slice.
        for i in [0, 2] {
            s.wait_on_all(i, "web", false).await?;
            let bindings: Api<DynamicObject> =
                Api::all_with(s.admin.workspace(&s.tenants[i].path)?, &api_bindings());
            eventually("the binding to be gone", CONVERGE, || async {
                Ok(bindings
                    .get_opt("kubernetes")
                    .await?
                    .is_none()
                    .then_some(()))
            })
            .await?;
        }
        eventually("shard-1 to leave the slice", CONVERGE, || async {
            let urls = slice_urls(&s).await?;
            Ok((!urls.iter().any(|u| u.starts_with(&shard1))).then_some(()))
        })
        .await?;
        eventually("Ferry to drop shard-1's URL", CONVERGE, || async {
            Ok(s.ferry
                .log()
                .contains("shard left the endpoint slice")
                .then_some(()))
        })
        .await?;

        // The tenant on root keeps its copies and keeps syncing; nothing is orphaned or kept.
        s.apply_deployment(1, "after", 1, &[]).await?;
        s.wait_on_all(1, "after", true).await?;
        for cluster in CLUSTERS {
            ensure!(s.copies(1, cluster).await?.get_opt("web").await?.is_some());
        }
        let report = s.ferry.wait_clean(CONVERGE).await?;
        ensure!(!report.contains("kept"), "{report}");

        // A tenant binding again brings shard-1 back into the slice and is synced again.
        let binding = ferry_e2e::kcp::example("tenant/apibinding-kubernetes.yaml")?
            .replace("path: root:platform", &format!("path: {}", s.provider.path));
        ferry_e2e::kcp::apply_manifest(&s.admin.workspace(&s.tenants[0].path)?, &binding).await?;
        eventually("shard-1 to rejoin the slice", CONVERGE, || async {
            let urls = slice_urls(&s).await?;
            Ok(urls.iter().any(|u| u.starts_with(&shard1)).then_some(()))
        })
        .await?;
        let deployments = s.tenant_deployments(0)?;
        eventually(
            "the rebound tenant to serve deployments",
            CONVERGE,
            || async {
                Ok(Some(
                    deployments.list(&Default::default()).await.map(|_| ())?,
                ))
            },
        )
        .await?;
        s.apply_deployment(0, "again", 1, &[]).await?;
        s.wait_on_all(0, "again", true).await?;
        s.ferry.wait_clean(CONVERGE).await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn the_slice_losing_and_regaining_a_url_never_deletes_a_live_objects_copies() -> Result<()> {
    let Some(env) = sharded_env()? else {
        return Ok(());
    };
    let _serial = ONE_AT_A_TIME.lock().await;
    // Tenant 0 on shard-1, tenant 1 on root.
    let mut s = Scenario::start(&env, "slice-flap", 2, FerryOptions::default()).await?;
    let result = async {
        let shard1 = shard_url(&env, "shard-1").await?;
        for i in 0..2 {
            for k in 0..3 {
                s.apply_deployment(i, &format!("web-{k}"), 1, &[]).await?;
            }
        }
        s.ferry.wait_clean(CONVERGE).await?;
        let before = copy_uids(&s, 0).await?;
        ensure!(before.len() == 3 * CLUSTERS.len(), "copies: {before:?}");

        // shard-1 is paused, so it cannot put its URL back, and its URL is removed from the
        // slice's status (each shard maintains its own entry): Ferry sees the shard leave.
        let slices: Api<DynamicObject> =
            Api::all_with(s.admin.workspace(&s.provider.path)?, &endpoint_slices());
        let paused = env.pause("kcp-shard-1")?;
        let slice = slices.get("kubernetes").await?;
        let endpoints = slice
            .data
            .pointer("/status/endpoints")
            .and_then(|e| e.as_array())
            .cloned()
            .unwrap_or_default();
        let index = endpoints
            .iter()
            .position(|e| e["url"].as_str().is_some_and(|u| u.starts_with(&shard1)))
            .context("the slice does not list shard-1")?;
        // A merge patch replaces the whole list: every endpoint but shard-1's.
        let mut remaining = endpoints.clone();
        remaining.remove(index);
        slices
            .patch_status(
                "kubernetes",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": {"endpoints": remaining}})),
            )
            .await?;
        ensure!(
            !slice_urls(&s).await?.iter().any(|u| u.starts_with(&shard1)),
            "shard-1's URL is still in the slice"
        );
        eventually("Ferry to see shard-1 leave the slice", CONVERGE, || async {
            Ok(s.ferry
                .log()
                .contains("shard left the endpoint slice")
                .then_some(()))
        })
        .await?;
        // Ferry no longer sees shard-1's objects, but their copies stay: an object it cannot
        // see is not proven deleted. Every copy is looked at again meanwhile: one is changed
        // on its cluster (an event for it) and Ferry restarts (it plans every copy it lists).
        let drifted = s.copies(0, "cluster-1").await?;
        drifted
            .patch(
                "web-0",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"drift": "1"}}})),
            )
            .await?;
        s.ferry.restart()?;
        eventually("the restarted Ferry to be ready", CONVERGE, || async {
            Ok((s.ferry.get("/readyz").await.ok().map(|r| r.0) == Some(200)).then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        same_copies(&s, 0, &before).await?;
        // `ferry check` counts them as kept, not as orphans.
        let (_, report) = s.ferry.check()?;
        eprintln!("ferry check while shard-1 is out of the slice:\n{report}");
        // (It counts objects: shard-1's three, each with a copy on both clusters.)
        ensure!(
            summary_count(&report, "orphaned") == Some(0)
                && summary_count(&report, "kept out of sight") == Some(3),
            "ferry check does not report shard-1's 3 objects' copies as kept:\n{report}"
        );
        // The root tenant is unaffected meanwhile.
        s.apply_deployment(1, "during", 1, &[]).await?;
        s.wait_on_all(1, "during", true).await?;

        // shard-1 resumes, puts its URL back, Ferry lists it again: nothing deleted, check
        // clean with nothing kept.
        drop(paused);
        eventually("shard-1 to rejoin the slice", CONVERGE, || async {
            let urls = slice_urls(&s).await?;
            Ok(urls.iter().any(|u| u.starts_with(&shard1)).then_some(()))
        })
        .await?;
        let report = s.ferry.wait_clean(CONVERGE).await?;
        ensure!(!report.contains("kept"), "{report}");
        same_copies(&s, 0, &before).await?;
        // And shard-1's tenant syncs again.
        s.apply_deployment(0, "web-0", 2, &[]).await?;
        for cluster in CLUSTERS {
            s.wait_copy(0, cluster, "web-0", "the update after the return", |c| {
                ferry_e2e::scenario::replicas(c) == Some(2)
            })
            .await?;
        }
        same_copies(&s, 0, &before).await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

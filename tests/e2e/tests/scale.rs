//! First sync of 100 objects across 5 workspaces and 2 clusters. Asserts convergence (and
//! that `ferry check` finds nothing) and prints how long it took (`cargo xtask test --
//! --nocapture` shows it); time is measured, never asserted, since CI machines vary.
//!
//! Larger runs use the same test: `FERRY_SCALE_TENANTS=2 FERRY_SCALE_PER_TENANT=2500` is the
//! 5,000-object run that used to stall for good.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_e2e::ferry::FerryOptions;
use ferry_e2e::scenario::Scenario;
use ferry_e2e::{CLUSTERS, Env, eventually};
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn the_first_sync_of_100_objects_in_5_workspaces_to_2_clusters_converges() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let (tenants_n, per_tenant) = (
        size("FERRY_SCALE_TENANTS", 5),
        size("FERRY_SCALE_PER_TENANT", 20),
    );
    // Generous limits: a large run on 2 cores takes minutes; a stall never converges.
    let limit = Duration::from_secs(300 + (tenants_n * per_tenant) as u64 / 2);
    let options = FerryOptions {
        defer_start: true,
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "scale", tenants_n, options).await?;
    let result = async {
        for tenant in 0..tenants_n {
            for i in 0..per_tenant {
                s.apply_deployment(tenant, &format!("app-{i}"), 1, &[]).await?;
            }
        }
        let baseline = direct_apply_baseline(&env, tenants_n * per_tenant).await?;
        let started = Instant::now();
        s.ferry.restart()?;
        let mut apis = Vec::new();
        for tenant in 0..tenants_n {
            for cluster in CLUSTERS {
                apis.push(s.copies(tenant, cluster).await?);
            }
        }
        let expected = tenants_n * per_tenant * CLUSTERS.len();
        eventually(&format!("{expected} copies"), limit, || async {
            let mut count = 0;
            for api in &apis {
                count += api.list(&Default::default()).await?.items.len();
            }
            Ok((count == expected).then_some(()))
        })
        .await?;
        let copies_at = started.elapsed();
        let tenants: Vec<_> = (0..tenants_n).map(|t| s.tenant_deployments(t)).collect::<Result<_>>()?;
        eventually("status on every upstream object", limit, || async {
            let mut with_status = 0;
            for api in &tenants {
                with_status += api
                    .list(&Default::default())
                    .await?
                    .items
                    .iter()
                    .filter(|o| o.data.pointer("/status/replicas").and_then(|r| r.as_i64()) == Some(2))
                    .count();
            }
            Ok((with_status == tenants_n * per_tenant).then_some(()))
        })
        .await?;
        let status_at = started.elapsed();
        eprintln!(
            "first sync: {} objects in {tenants_n} workspaces to {} clusters: all {expected} copies after \
             {:.1}s, every status aggregated after {:.1}s; {} cluster writes",
            tenants_n * per_tenant,
            CLUSTERS.len(),
            copies_at.as_secs_f64(),
            status_at.as_secs_f64(),
            s.downstream_writes()?,
        );
        eprintln!(
            "baseline: the same {expected} Deployments server-side applied directly, 16 at a time: \
             {:.1}s; Ferry's first sync (start-up, lists, plugins, finalizers included) took {:.1}x that",
            baseline.as_secs_f64(),
            copies_at.as_secs_f64() / baseline.as_secs_f64().max(1e-9),
        );
        let audit = Instant::now();
        let report = s.ferry.wait_clean(limit).await?;
        eprintln!(
            "ferry check: {} ({:.1}s); Ferry's peak RSS: {}",
            report.lines().last().unwrap_or_default(),
            audit.elapsed().as_secs_f64(),
            s.ferry
                .peak_rss_mib()
                .map_or("unknown".to_string(), |m| format!("{m:.0} MiB")),
        );
        Ok(())
    }
    .await;
    s.finish(result)
}

/// What the same number of applies costs without Ferry: every Deployment server-side applied
/// straight to the clusters by one client, 16 requests in flight (Ferry's default per target).
async fn direct_apply_baseline(env: &Env, objects: usize) -> Result<Duration> {
    let manifest = ferry_e2e::kcp::example("tenant/deployment.yaml")?;
    let template: serde_json::Value = serde_yaml::from_str(
        manifest
            .split("---")
            .nth(1)
            .context("example has two documents")?,
    )?;
    let namespace = format!("baseline-{}", ferry_e2e::unique_suffix());
    let mut apis = Vec::new();
    for cluster in CLUSTERS {
        let client = env.cluster_client(cluster).await?;
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        namespaces
            .patch(
                &namespace,
                &PatchParams::apply("baseline"),
                &Patch::Apply(&ns),
            )
            .await?;
        apis.push((
            namespaces,
            Api::<DynamicObject>::namespaced_with(
                client,
                &namespace,
                &ferry_e2e::ferry::deployments(),
            ),
        ));
    }
    let started = Instant::now();
    let template = &template;
    let requests = apis.iter().flat_map(|(_, api)| {
        (0..objects).map(move |i| {
            let mut object = template.clone();
            object["metadata"]["name"] = format!("app-{i}").into();
            object["metadata"]["namespace"] = serde_json::Value::Null;
            async move {
                api.patch(
                    &format!("app-{i}"),
                    &PatchParams::apply("baseline"),
                    &Patch::Apply(&object),
                )
                .await
            }
        })
    });
    let results: Vec<_> = futures::stream::iter(requests)
        .buffer_unordered(16)
        .collect()
        .await;
    let took = started.elapsed();
    for result in results {
        result?;
    }
    for (namespaces, _) in &apis {
        namespaces
            .delete(&namespace, &DeleteParams::default())
            .await?;
    }
    Ok(took)
}

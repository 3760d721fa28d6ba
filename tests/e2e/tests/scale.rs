//! First sync of 100 objects across 5 workspaces and 2 clusters. Asserts convergence and
//! prints how long it took (`cargo xtask test -- --nocapture` shows it); time is measured,
//! never asserted, since CI machines vary.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_e2e::ferry::FerryOptions;
use ferry_e2e::scenario::Scenario;
use ferry_e2e::{CLUSTERS, Env, eventually};
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};

const TENANTS: usize = 5;
const PER_TENANT: usize = 20;

#[tokio::test]
async fn the_first_sync_of_100_objects_in_5_workspaces_to_2_clusters_converges() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let options = FerryOptions {
        defer_start: true,
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "scale", TENANTS, options).await?;
    let result = async {
        for tenant in 0..TENANTS {
            for i in 0..PER_TENANT {
                s.apply_deployment(tenant, &format!("app-{i}"), 1, &[]).await?;
            }
        }
        let baseline = direct_apply_baseline(&env).await?;
        let started = Instant::now();
        s.ferry.restart()?;
        let mut apis = Vec::new();
        for tenant in 0..TENANTS {
            for cluster in CLUSTERS {
                apis.push(s.copies(tenant, cluster).await?);
            }
        }
        let expected = TENANTS * PER_TENANT * CLUSTERS.len();
        eventually(&format!("{expected} copies"), Duration::from_secs(300), || async {
            let mut count = 0;
            for api in &apis {
                count += api.list(&Default::default()).await?.items.len();
            }
            Ok((count == expected).then_some(()))
        })
        .await?;
        let copies_at = started.elapsed();
        let tenants: Vec<_> = (0..TENANTS).map(|t| s.tenant_deployments(t)).collect::<Result<_>>()?;
        eventually("status on every upstream object", Duration::from_secs(300), || async {
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
            Ok((with_status == TENANTS * PER_TENANT).then_some(()))
        })
        .await?;
        let status_at = started.elapsed();
        eprintln!(
            "first sync: {} objects in {TENANTS} workspaces to {} clusters: all {expected} copies after \
             {:.1}s, every status aggregated after {:.1}s; {} cluster writes",
            TENANTS * PER_TENANT,
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
        Ok(())
    }
    .await;
    s.finish(result)
}

/// What the same number of applies costs without Ferry: every Deployment server-side applied
/// straight to the clusters by one client, 16 requests in flight (Ferry's default per target).
async fn direct_apply_baseline(env: &Env) -> Result<Duration> {
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
        (0..TENANTS * PER_TENANT).map(move |i| {
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

//! End-to-end tests of the sync engine on the real environment: kcp and two kube-apiservers,
//! the real `ferry` binary, the first-party Wasm plugins.

use anyhow::{Result, ensure};
use ferry_e2e::Env;
use ferry_e2e::ferry::FerryOptions;
use ferry_e2e::scenario::{Scenario, replicas};
use kube::api::DeleteParams;

#[tokio::test]
async fn a_deployment_is_created_updated_and_deleted_on_every_cluster_with_status_back()
-> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "lifecycle", 1, FerryOptions::default()).await?;
    let result = async {
        s.apply_deployment(0, "web", 2, &[]).await?;
        s.wait_on_all(0, "web", true).await?;
        let copy = s
            .wait_copy(0, "cluster-1", "web", "replicas 2", |c| {
                replicas(c) == Some(2)
            })
            .await?;
        let labels = copy
            .as_ref()
            .and_then(|c| c.metadata.labels.clone())
            .unwrap_or_default();
        ensure!(
            labels.get("sync.ferry.dev/cluster") == Some(&s.tenants[0].logical_cluster),
            "identity labels: {labels:?}"
        );

        let upstream = s
            .wait_upstream(0, "web", "the finalizer", |o| {
                o.is_some_and(|o| {
                    o.metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == "sync.ferry.dev/cleanup")
                })
            })
            .await?;
        ensure!(upstream.is_some());
        // Each cluster's controller manager reports 2 replicas; deployment-status sums them.
        s.wait_upstream(0, "web", "status.replicas 4 from both clusters", |o| {
            o.and_then(|o| o.data.pointer("/status/replicas"))
                .and_then(|r| r.as_i64())
                == Some(4)
        })
        .await?;

        s.apply_deployment(0, "web", 3, &[]).await?;
        for cluster in ["cluster-1", "cluster-2"] {
            s.wait_copy(0, cluster, "web", "replicas 3", |c| replicas(c) == Some(3))
                .await?;
        }

        s.tenant_deployments(0)?
            .delete("web", &DeleteParams::default())
            .await?;
        s.wait_on_all(0, "web", false).await?;
        s.wait_upstream(0, "web", "the object to be gone", |o| o.is_none())
            .await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

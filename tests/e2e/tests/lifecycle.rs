//! End-to-end tests of Ferry's footprint on the real environment: `ferry uninstall` (its
//! finalizers off kcp, and on request its copies and namespaces off the targets), and the
//! `ferry-` namespaces Ferry deletes once their last copy is gone.

use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_e2e::ferry::{FerryOptions, mapped_namespace};
use ferry_e2e::scenario::{CONVERGE, Scenario, all_ready};
use ferry_e2e::{CLUSTERS, Env, eventually};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};

const FINALIZER: &str = "sync.ferry.dev/cleanup";

fn has_finalizer(object: Option<&DynamicObject>) -> bool {
    object.is_some_and(|o| {
        o.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    })
}

/// The downstream namespace of tenant 0 on `cluster`: `None` when gone (terminating counts as
/// still there).
async fn namespace(s: &Scenario, cluster: &str) -> Result<Option<Namespace>> {
    let api: Api<Namespace> = Api::all(s.env.cluster_client(cluster).await?);
    Ok(api
        .get_opt(&mapped_namespace(&s.tenants[0], "demo"))
        .await?)
}

async fn wait_namespace(s: &Scenario, present: bool) -> Result<()> {
    for cluster in CLUSTERS {
        eventually(
            &format!(
                "namespace {} on {cluster} to be {}",
                mapped_namespace(&s.tenants[0], "demo"),
                if present { "there" } else { "gone" }
            ),
            CONVERGE,
            || async move {
                let found = namespace(s, cluster).await?;
                let live = found
                    .as_ref()
                    .is_some_and(|n| n.metadata.deletion_timestamp.is_none());
                Ok((if present { live } else { found.is_none() }).then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn uninstall_takes_the_finalizers_off_and_with_delete_copies_every_copy_and_namespace()
-> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "uninstall", 1, FerryOptions::default()).await?;
    let result = async {
        for name in ["web", "api"] {
            s.apply_deployment(0, name, 1, &[]).await?;
            s.wait_on_all(0, name, true).await?;
            s.wait_upstream(0, name, "Ferry's finalizer", has_finalizer)
                .await?;
            // Stopped only once the status is final, so that check has nothing stale to say.
            s.wait_upstream(0, name, "status: rolled out, all ready", |o| {
                all_ready(o, 2)
            })
            .await?;
        }
        s.ferry.kill();

        // A dry run says what it would do and changes nothing.
        let (code, out) = s.ferry.command("uninstall", &["--dry-run"])?;
        ensure!(code == 0, "uninstall --dry-run exited {code}:\n{out}");
        ensure!(
            out.contains("would remove 2 finalizers, 0 copies, 0 namespaces"),
            "{out}"
        );
        s.wait_upstream(
            0,
            "web",
            "the finalizer still on after a dry run",
            has_finalizer,
        )
        .await?;

        let (code, out) = s.ferry.command("uninstall", &[])?;
        ensure!(code == 0, "uninstall exited {code}:\n{out}");
        ensure!(
            out.contains(&format!(
                "workspace {}: removed 2 finalizers, 0 copies, 0 namespaces",
                s.tenants[0].logical_cluster
            )),
            "{out}"
        );
        for name in ["web", "api"] {
            s.wait_upstream(0, name, "no Ferry finalizer", |o| {
                o.is_some() && !has_finalizer(o)
            })
            .await?;
        }
        // Copies stay without --delete-copies, exactly as Ferry left them: check is clean.
        s.wait_on_all(0, "web", true).await?;
        let (clean, report) = s.ferry.check()?;
        ensure!(clean, "ferry check after uninstall:\n{report}");

        // Without the finalizer a tenant's delete completes at once, Ferry or not.
        s.tenant_deployments(0)?
            .delete("web", &DeleteParams::default())
            .await?;
        let api = s.tenant_deployments(0)?;
        eventually("web gone upstream at once", Duration::from_secs(5), || {
            let api = api.clone();
            async move { Ok(api.get_opt("web").await?.is_none().then_some(())) }
        })
        .await?;

        let (code, out) = s.ferry.command("uninstall", &["--delete-copies"])?;
        ensure!(code == 0, "uninstall --delete-copies exited {code}:\n{out}");
        // web's copies (orphans now) and api's, on both clusters; one namespace on each.
        ensure!(
            out.contains("removed 0 finalizers, 4 copies, 2 namespaces"),
            "{out}"
        );
        for cluster in CLUSTERS {
            let client = s.env.cluster_client(cluster).await?;
            let all: Api<DynamicObject> = Api::all_with(client, &ferry_e2e::ferry::deployments());
            let left = all
                .list(&ListParams::default().labels(&format!(
                    "sync.ferry.dev/cluster={}",
                    s.tenants[0].logical_cluster
                )))
                .await?;
            ensure!(
                left.items
                    .iter()
                    .all(|c| c.metadata.deletion_timestamp.is_some()),
                "copies left on {cluster}: {:?}",
                left.items
                    .iter()
                    .map(|c| &c.metadata.name)
                    .collect::<Vec<_>>()
            );
        }
        wait_namespace(&s, false).await?;

        // check audits what a running Ferry would do: api is placed on both clusters and has
        // no copy, so it is "missing" there (the engine would create them again).
        let (clean, report) = s.ferry.check()?;
        ensure!(!clean, "ferry check after --delete-copies:\n{report}");
        ensure!(
            report.contains("1 objects: 2 missing, 0 orphaned"),
            "ferry check after --delete-copies:\n{report}"
        );
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn the_last_copy_deleted_takes_its_namespace_and_a_new_object_brings_it_back() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "nsgc", 1, FerryOptions::default()).await?;
    let result = async {
        for name in ["web", "api"] {
            s.apply_deployment(0, name, 1, &[]).await?;
            s.wait_on_all(0, name, true).await?;
        }
        // Not the last copy: the namespace stays.
        s.tenant_deployments(0)?
            .delete("api", &DeleteParams::default())
            .await?;
        s.wait_on_all(0, "api", false).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        for cluster in CLUSTERS {
            let found = namespace(&s, cluster).await?;
            ensure!(
                found.is_some_and(|n| n.metadata.deletion_timestamp.is_none()),
                "the namespace on {cluster} went while web's copy is in it"
            );
        }

        // The last copy: the namespace goes on both clusters.
        s.tenant_deployments(0)?
            .delete("web", &DeleteParams::default())
            .await?;
        s.wait_on_all(0, "web", false).await?;
        let terminating = eventually("the namespace terminating or gone", CONVERGE, || {
            let s = &s;
            async move {
                let found = namespace(s, "cluster-1").await?;
                Ok(match found {
                    None => Some(false),
                    Some(n) if n.metadata.deletion_timestamp.is_some() => Some(true),
                    Some(_) => None,
                })
            }
        })
        .await?;

        // A new object as soon as the old one is gone upstream (an apply before that would
        // only update the object being deleted): the namespace usually still terminates (it
        // takes seconds), so the copy waits and lands in the namespace created anew.
        s.wait_upstream(0, "web", "the old web gone upstream", |o| o.is_none())
            .await?;
        let terminating = terminating && namespace(&s, "cluster-1").await?.is_some();
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.wait_on_all(0, "web", true).await?;
        wait_namespace(&s, true).await?;
        eprintln!(
            "the namespace was {} when the object came back",
            if terminating { "terminating" } else { "gone" }
        );

        // And when it goes again, the namespace goes again.
        s.tenant_deployments(0)?
            .delete("web", &DeleteParams::default())
            .await?;
        s.wait_on_all(0, "web", false).await?;
        wait_namespace(&s, false).await?;
        let (clean, report) = s.ferry.check()?;
        ensure!(clean, "ferry check:\n{report}");
        Ok(())
    }
    .await;
    s.finish(result)
}

//! End-to-end tests of the sync engine on the real environment: kcp and two kube-apiservers,
//! the real `ferry` binary, the first-party Wasm plugins.

use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_e2e::Env;
use ferry_e2e::ferry::FerryOptions;
use ferry_e2e::scenario::{CONVERGE, Scenario, all_ready, replicas};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;

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
        // Each cluster runs 2 Pods on its kwok nodes and its controller manager reports them
        // ready; deployment-status sums both clusters.
        s.wait_upstream(
            0,
            "web",
            "status: 4 replicas, 4 ready, from both clusters",
            |o| all_ready(o, 4),
        )
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

#[tokio::test]
async fn the_same_namespace_and_name_in_two_workspaces_never_collide() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "isolation", 2, FerryOptions::default()).await?;
    let result = async {
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.apply_deployment(1, "web", 3, &[]).await?;
        for cluster in ["cluster-1", "cluster-2"] {
            s.wait_copy(0, cluster, "web", "tenant 0's replicas", |c| {
                replicas(c) == Some(1)
            })
            .await?;
            s.wait_copy(1, cluster, "web", "tenant 1's replicas", |c| {
                replicas(c) == Some(3)
            })
            .await?;
        }
        let (a, b) = (
            ferry_e2e::ferry::mapped_namespace(&s.tenants[0], "demo"),
            ferry_e2e::ferry::mapped_namespace(&s.tenants[1], "demo"),
        );
        ensure!(a != b, "both tenants map to {a}");
        // Each tenant's status comes from its own copies only.
        for (i, expected) in [(0, 2), (1, 6)] {
            s.wait_upstream(i, "web", "status (all ready) from its own copies", |o| {
                all_ready(o, expected)
            })
            .await?;
        }
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn a_placement_change_moves_the_copy_and_removes_it_from_the_old_cluster() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "placement", 1, FerryOptions::default()).await?;
    let result = async {
        s.apply_deployment(0, "web", 1, &[("sync.ferry.dev/placement", "region=eu")])
            .await?;
        s.wait_copy(0, "cluster-1", "web", "copy in eu", |c| c.is_some())
            .await?;
        let absent = s.copies(0, "cluster-2").await?.get_opt("web").await?;
        ensure!(
            absent.is_none(),
            "placed in us although the selector says eu"
        );

        s.apply_deployment(0, "web", 1, &[("sync.ferry.dev/placement", "region=us")])
            .await?;
        s.wait_copy(0, "cluster-2", "web", "copy moved to us", |c| c.is_some())
            .await?;
        s.wait_copy(0, "cluster-1", "web", "copy removed from eu", |c| {
            c.is_none()
        })
        .await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn a_manual_edit_of_a_copy_is_corrected() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "drift", 1, FerryOptions::default()).await?;
    let result = async {
        s.apply_deployment(0, "web", 2, &[]).await?;
        s.wait_copy(0, "cluster-1", "web", "replicas 2", |c| {
            replicas(c) == Some(2)
        })
        .await?;
        let copies = s.copies(0, "cluster-1").await?;
        copies
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 7}})),
            )
            .await?;
        s.wait_copy(0, "cluster-1", "web", "the edit undone", |c| {
            replicas(c) == Some(2)
        })
        .await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn a_failing_plugin_is_reported_as_an_event_while_other_objects_sync() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "plugin-error", 1, FerryOptions::default()).await?;
    let result = async {
        // A selector label-placement cannot parse: its `place` hook fails for this object only.
        s.apply_deployment(
            0,
            "broken",
            1,
            &[("sync.ferry.dev/placement", "region in (eu")],
        )
        .await?;
        s.apply_deployment(0, "fine", 1, &[]).await?;
        s.wait_on_all(0, "fine", true).await?;
        let events =
            ferry_e2e::eventually("a PluginFailed event on `broken`", CONVERGE, || async {
                let events = s.events(0, "broken", "PluginFailed").await?;
                Ok((!events.is_empty()).then_some(events))
            })
            .await?;
        let message = events[0].message.clone().unwrap_or_default();
        ensure!(
            message.contains("label-placement") && message.contains("place"),
            "event message: {message}"
        );
        let copy = s.copies(0, "cluster-1").await?.get_opt("broken").await?;
        ensure!(copy.is_none(), "the broken object was synced anyway");
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn ferry_killed_mid_sync_converges_after_restart_and_propagates_deletes_made_while_down()
-> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "restart", 1, FerryOptions::default()).await?;
    let result = async {
        let names: Vec<String> = (0..12).map(|i| format!("app-{i}")).collect();
        for name in &names {
            s.apply_deployment(0, name, 1, &[]).await?;
        }
        // Kill it as soon as the first copy lands: the rest is mid-flight.
        s.wait_copy(0, "cluster-1", "app-0", "the first copy", |c| c.is_some())
            .await?;
        s.ferry.kill();
        // While Ferry is down: delete some objects (their finalizer holds them) and add one.
        for name in &names[..3] {
            s.tenant_deployments(0)?
                .delete(name, &DeleteParams::default())
                .await?;
        }
        s.apply_deployment(0, "late", 1, &[]).await?;
        s.ferry.restart()?;

        for name in names[3..].iter().map(String::as_str).chain(["late"]) {
            s.wait_on_all(0, name, true).await?;
        }
        for name in &names[..3] {
            s.wait_on_all(0, name, false).await?;
            s.wait_upstream(0, name, "deletion to complete", |o| o.is_none())
                .await?;
        }
        // No orphans: every copy belongs to a live upstream object.
        let live: Vec<String> = s
            .tenant_deployments(0)?
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect();
        for cluster in ["cluster-1", "cluster-2"] {
            for copy in s
                .copies(0, cluster)
                .await?
                .list(&Default::default())
                .await?
                .items
            {
                let name = copy.metadata.name.unwrap_or_default();
                ensure!(live.contains(&name), "orphan {name} on {cluster}");
            }
        }
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn ferry_makes_no_writes_at_rest_and_none_when_restarted_with_nothing_changed() -> Result<()>
{
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "quiet", 1, FerryOptions::default()).await?;
    let result = async {
        for i in 0..5 {
            s.apply_deployment(0, &format!("app-{i}"), 1, &[]).await?;
        }
        // Values the API server stores differently from how they were sent ("0.5" -> 500m,
        // 1 -> "1") must not look like a difference either.
        s.apply_deployment_with(0, "app-0", |o| {
            o["spec"]["template"]["spec"]["containers"][0]["resources"] =
                serde_json::json!({"requests": {"cpu": "0.5"}, "limits": {"cpu": 1}});
        })
        .await?;
        for i in 0..5 {
            let name = format!("app-{i}");
            s.wait_on_all(0, &name, true).await?;
            // Ready too: Pods becoming ready are status changes of their own.
            s.wait_upstream(0, &name, "status (all ready) from both clusters", |o| {
                all_ready(o, 2)
            })
            .await?;
        }
        // Let controllers settle (their status updates trigger reconciles that must not write):
        // with Pods that run, a rollout goes on for a while after the counts first look right,
        // so wait until 5 s pass without a write.
        let settle_deadline = tokio::time::Instant::now() + CONVERGE;
        let mut last = (s.upstream_writes().await?, s.downstream_writes()?);
        let (up, down) = loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let now = (s.upstream_writes().await?, s.downstream_writes()?);
            if now == last {
                break now;
            }
            ensure!(
                tokio::time::Instant::now() < settle_deadline,
                "still writing {CONVERGE:?} after every copy was ready: {last:?} -> {now:?}"
            );
            last = now;
        };
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (up_rest, down_rest) = (s.upstream_writes().await?, s.downstream_writes()?);
        ensure!(
            (up_rest, down_rest) == (up, down),
            "writes at rest: kcp {up} -> {up_rest}, clusters {down} -> {down_rest}"
        );

        s.ferry.restart()?;
        // Long enough to list everything again and reconcile every object.
        tokio::time::sleep(Duration::from_secs(15)).await;
        s.ferry.check_running()?;
        let (up_restart, down_restart) = (s.upstream_writes().await?, s.downstream_writes()? - down);
        eprintln!(
            "converged with {up} kcp and {down} cluster writes; a restart with nothing changed made \
             {up_restart} kcp and {down_restart} cluster writes"
        );
        ensure!(up_restart == 0 && down_restart == 0, "a restart with nothing changed wrote");
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn ferry_runs_with_only_the_rbac_of_the_example() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    // `user` is kcp's non-admin battery identity; it gets exactly examples/provider/rbac-ferry.yaml.
    let options = FerryOptions {
        kcp_context: "user".into(),
        defer_start: true,
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "rbac", 1, options).await?;
    let result = async {
        let rbac = ferry_e2e::kcp::example("provider/rbac-ferry.yaml")?
            .replace("name: ferry\n", "name: user\n");
        ensure!(
            rbac.contains("kind: User\n    name: user"),
            "the example binds no user named ferry"
        );
        ferry_e2e::kcp::apply_manifest(&s.admin.workspace(&s.provider.path)?, &rbac).await?;
        s.ferry.restart()?;
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.wait_on_all(0, "web", true).await?;
        let bound = s.ferry.metric("ferry_bound_workspaces").await?;
        ensure!(
            bound == 1,
            "ferry_bound_workspaces is {bound}, expected the one tenant"
        );
        s.wait_upstream(0, "web", "status written by the restricted identity", |o| {
            all_ready(o, 2)
        })
        .await?;
        s.tenant_deployments(0)?
            .delete("web", &DeleteParams::default())
            .await?;
        s.wait_upstream(
            0,
            "web",
            "the finalizer released by the restricted identity",
            |o| o.is_none(),
        )
        .await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

/// Runs `ferry preview --output json` with the scenario's configuration.
fn preview(s: &Scenario, workspace: &str) -> Result<serde_json::Value> {
    let out = std::process::Command::new(ferry_e2e::ferry::ferry_bin()?)
        .args([
            "preview",
            "--output",
            "json",
            "--workspace",
            workspace,
            "--config",
        ])
        .arg(&s.ferry.config)
        .output()?;
    ensure!(
        out.status.success(),
        "ferry preview failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn action(plans: &serde_json::Value, name: &str, target: &str) -> Option<serde_json::Value> {
    plans
        .as_array()?
        .iter()
        .find(|p| p["key"]["name"] == name)?["copies"]
        .as_array()?
        .iter()
        .find(|c| c["target"] == target)
        .cloned()
}

#[tokio::test]
async fn preview_shows_creates_updates_and_placement_without_writing() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let options = FerryOptions {
        defer_start: true,
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "preview", 1, options).await?;
    let result = async {
        s.apply_deployment(0, "web", 2, &[]).await?;
        s.apply_deployment(
            0,
            "eu-only",
            1,
            &[("sync.ferry.dev/placement", "region=eu")],
        )
        .await?;
        let path = s.tenants[0].path.clone();
        let plans = preview(&s, &path)?;
        ensure!(
            action(&plans, "web", "cluster-1").is_some_and(|c| c["action"] == "create"),
            "{plans:#}"
        );
        ensure!(
            action(&plans, "web", "cluster-2").is_some_and(|c| c["action"] == "create"),
            "{plans:#}"
        );
        ensure!(
            action(&plans, "eu-only", "cluster-1").is_some_and(|c| c["action"] == "create"),
            "{plans:#}"
        );
        ensure!(
            action(&plans, "eu-only", "cluster-2").is_none(),
            "eu-only planned for us: {plans:#}"
        );

        s.ferry.restart()?;
        s.wait_on_all(0, "web", true).await?;
        s.wait_copy(0, "cluster-1", "eu-only", "copy in eu", |c| c.is_some())
            .await?;
        s.ferry.kill();
        s.copies(0, "cluster-1")
            .await?
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 7}})),
            )
            .await?;

        let before = s.downstream_writes()?;
        let plans = preview(&s, &path)?;
        let web_eu = action(&plans, "web", "cluster-1").unwrap_or_default();
        ensure!(
            // The edit took the field from Ferry's field manager: drift.
            web_eu["action"] == "update"
                && web_eu["changes"]["drifted"] == json!(["spec.replicas"]),
            "{plans:#}"
        );
        ensure!(
            action(&plans, "web", "cluster-2").is_some_and(|c| c["action"] == "unchanged"),
            "{plans:#}"
        );
        ensure!(
            s.downstream_writes()? == before,
            "preview wrote to a cluster"
        );
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn a_hostile_transform_is_stopped_and_reported_while_other_resources_sync() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    // Deployments go through a transform that never returns; Services through the default one.
    let hostile = ferry_e2e::ferry::plugin_dir().join("hostile-loop.wasm");
    let options = FerryOptions {
        transform: hostile.display().to_string(),
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "hostile", 1, options).await?;
    let result = async {
        s.apply_deployment(0, "web", 1, &[]).await?;
        let services: kube::Api<DynamicObject> = kube::Api::namespaced_with(
            s.admin.workspace(&s.tenants[0].path)?,
            "demo",
            &kube::discovery::ApiResource::from_gvk_with_plural(
                &kube::core::GroupVersionKind::gvk("", "v1", "Service"),
                "services",
            ),
        );
        let service = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        });
        services
            .patch(
                "web",
                &PatchParams::apply("e2e-tenant"),
                &Patch::Apply(&service),
            )
            .await?;

        let events = ferry_e2e::eventually(
            "a PluginFailed event for the looping transform",
            CONVERGE,
            || async {
                let events = s.events(0, "web", "PluginFailed").await?;
                Ok((!events.is_empty()).then_some(events))
            },
        )
        .await?;
        let message = events[0].message.clone().unwrap_or_default();
        ensure!(message.contains("deadline"), "event message: {message}");
        for cluster in ["cluster-1", "cluster-2"] {
            let copies: kube::Api<DynamicObject> = kube::Api::namespaced_with(
                env.cluster_client(cluster).await?,
                &ferry_e2e::ferry::mapped_namespace(&s.tenants[0], "demo"),
                &kube::discovery::ApiResource::from_gvk_with_plural(
                    &kube::core::GroupVersionKind::gvk("", "v1", "Service"),
                    "services",
                ),
            );
            ferry_e2e::eventually(&format!("the Service on {cluster}"), CONVERGE, || async {
                Ok(copies.get_opt("web").await?.map(|_| ()))
            })
            .await?;
        }
        ensure!(
            s.copies(0, "cluster-1")
                .await?
                .get_opt("web")
                .await?
                .is_none(),
            "the looping transform produced a copy"
        );
        s.ferry.check_running()?;
        Ok(())
    }
    .await;
    s.finish(result)
}

//! End-to-end tests of the sync core's guarantees, each one a defect a review or a new user
//! found: removed fields, readable refusals, collisions, deletes racing creates, terminating
//! copies. `ferry check` (the audit of both sides) is the oracle wherever it applies, beside
//! direct looks at the copies.

use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_core::identity::{UpstreamKey, identity_annotations, identity_labels};
use ferry_e2e::ferry::FerryOptions;
use ferry_e2e::scenario::{CONVERGE, Scenario, ferry_writes};
use ferry_e2e::{CLUSTERS, Env, eventually};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn pointer(copy: Option<&DynamicObject>, path: &str) -> Option<Value> {
    copy?.data.pointer(path).cloned()
}

#[tokio::test]
async fn fields_removed_upstream_leave_every_copy_and_preview_shows_the_removal() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "removal", 1, FerryOptions::default()).await?;
    let result = async {
        let with_extras = |o: &mut Value| {
            o["metadata"]["labels"]["tier"] = json!("front");
            o["metadata"]["annotations"] = json!({"team": "a"});
            o["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
            o["spec"]["template"]["spec"]["containers"][0]["env"] =
                json!([{"name": "MODE", "value": "fast"}]);
        };
        s.apply_deployment_with(0, "web", with_extras).await?;
        for cluster in CLUSTERS {
            s.wait_copy(0, cluster, "web", "nodeSelector and env on the copy", |c| {
                pointer(c, "/spec/template/spec/nodeSelector/disk") == Some(json!("ssd"))
                    && pointer(c, "/spec/template/spec/containers/0/env/0/name")
                        == Some(json!("MODE"))
            })
            .await?;
        }

        // With Ferry stopped, preview must call the removal an update.
        s.ferry.kill();
        s.apply_deployment_with(0, "web", |_| {}).await?;
        let preview = std::process::Command::new(ferry_e2e::ferry::ferry_bin()?)
            .args(["preview", "--config"])
            .arg(&s.ferry.config)
            .output()?;
        let text = String::from_utf8_lossy(&preview.stdout);
        ensure!(preview.status.success(), "preview failed: {text}");
        ensure!(
            text.contains("update") && text.contains("-spec.template.spec.nodeSelector"),
            "preview does not show the removal:\n{text}"
        );

        s.ferry.restart()?;
        for cluster in CLUSTERS {
            let copy = s
                .wait_copy(
                    0,
                    cluster,
                    "web",
                    "the removed fields gone from the copy",
                    |c| {
                        c.is_some()
                            && pointer(c, "/spec/template/spec/nodeSelector").is_none()
                            && pointer(c, "/spec/template/spec/containers/0/env").is_none()
                            && pointer(c, "/metadata/labels/tier").is_none()
                            && pointer(c, "/metadata/annotations/team").is_none()
                    },
                )
                .await?;
            ensure!(
                pointer(copy.as_ref(), "/spec/template/spec/containers/0/image")
                    == Some(json!("nginx:1.27")),
                "the fields Ferry still wants stayed"
            );
        }
        s.ferry.wait_clean(CONVERGE).await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn a_copy_refused_by_a_target_is_reported_as_kubectl_would_say_it() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let s = Scenario::start(&env, "refused", 1, FerryOptions::default()).await?;
    let result = async {
        // kcp's schema takes any string; Kubernetes requires a DNS label as container name.
        s.apply_deployment_with(0, "web", |o| {
            o["spec"]["template"]["spec"]["containers"][0]["name"] = json!("Not_A_Label");
        })
        .await?;
        let event = eventually("a SyncFailed event", CONVERGE, || async {
            Ok(s.events(0, "web", "SyncFailed").await?.into_iter().next())
        })
        .await?;
        let message = event.message.unwrap_or_default();
        for leak in ["Status {", "Some(", "ErrorResponse", "ApiError"] {
            ensure!(
                !message.contains(leak),
                "debug output in the Event: {message}"
            );
        }
        ensure!(
            message.contains("cluster-1") || message.contains("cluster-2"),
            "the Event does not name the target: {message}"
        );
        ensure!(
            message.contains("Not_A_Label") && message.contains("Invalid"),
            "the Event does not carry the server's reason: {message}"
        );
        eprintln!("Event: {message}");
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn a_name_taken_downstream_is_refused_without_naming_whose_it_is() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "collision", 1, FerryOptions::default()).await?;
    let result = async {
        // Ferry creates the tenant's namespace on each cluster with a first object.
        s.apply_deployment(0, "first", 1, &[]).await?;
        s.wait_on_all(0, "first", true).await?;
        // Someone else's object, claiming to be another tenant's copy, takes the name.
        let other = UpstreamKey::new("another-tenant-lc", "demo", "web");
        let mut foreign = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web",
                "labels": identity_labels(&other, "other-uid", "other-owner"),
                "annotations": identity_annotations(&other, None)},
            "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "x"}},
                "template": {"metadata": {"labels": {"app": "x"}},
                    "spec": {"containers": [{"name": "x", "image": "busybox"}]}}},
        });
        foreign["metadata"]["labels"]["app"] = json!("x");
        let copies = s.copies(0, "cluster-1").await?;
        copies
            .create(&PostParams::default(), &serde_json::from_value(foreign)?)
            .await?;

        s.apply_deployment(0, "web", 1, &[]).await?;
        s.wait_copy(0, "cluster-2", "web", "the copy on the free cluster", |c| {
            c.is_some()
        })
        .await?;
        let event = eventually("a NameCollision event", CONVERGE, || async {
            Ok(s.events(0, "web", "NameCollision")
                .await?
                .into_iter()
                .next())
        })
        .await?;
        let message = event.message.unwrap_or_default();
        ensure!(
            !message.contains("another-tenant-lc"),
            "the Event names another tenant: {message}"
        );
        ensure!(message.contains("cluster-1"), "{message}");
        let kept = copies.get("web").await?;
        ensure!(
            kept.data.pointer("/spec/replicas") == Some(&json!(5))
                && kept
                    .labels()
                    .get("sync.ferry.dev/cluster")
                    .map(String::as_str)
                    == Some("another-tenant-lc"),
            "the foreign object was changed"
        );
        let (clean, report) = s.ferry.check()?;
        ensure!(
            !clean && report.contains("refuse"),
            "check does not report the refused copy:\n{report}"
        );
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn objects_deleted_right_after_creation_leave_no_copy_behind() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let s = Scenario::start(&env, "race", 1, FerryOptions::default()).await?;
    let result = async {
        let api = s.tenant_deployments(0)?;
        for round in 0..3 {
            for i in 0..8 {
                s.apply_deployment(0, &format!("r{i}"), 1, &[]).await?;
            }
            // Delete while Ferry is creating the copies.
            tokio::time::sleep(Duration::from_millis(300 * round)).await;
            for i in 0..8 {
                api.delete(&format!("r{i}"), &DeleteParams::default())
                    .await?;
            }
            eventually("every object to be gone upstream", CONVERGE, || async {
                let left = api.list(&ListParams::default()).await?.items;
                Ok(left
                    .iter()
                    .all(|o| !o.name_any().starts_with('r'))
                    .then_some(()))
            })
            .await?;
            for cluster in CLUSTERS {
                let left = s
                    .copies(0, cluster)
                    .await?
                    .list(&ListParams::default())
                    .await?;
                let names: Vec<String> = left.items.iter().map(|o| o.name_any()).collect();
                ensure!(
                    names.iter().all(|n| !n.starts_with('r')),
                    "round {round}: copies outlived their objects on {cluster}: {names:?}"
                );
            }
        }
        s.ferry.wait_clean(CONVERGE).await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn a_terminating_copy_is_deleted_once_and_waited_for() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "terminating", 1, FerryOptions::default()).await?;
    let result = async {
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.wait_on_all(0, "web", true).await?;
        let copies = s.copies(0, "cluster-1").await?;
        copies
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["e2e.test/hold"]}})),
            )
            .await?;
        s.tenant_deployments(0)?
            .delete("web", &DeleteParams::default())
            .await?;
        s.wait_copy(0, "cluster-1", "web", "the copy terminating", |c| {
            c.is_some_and(|c| c.metadata.deletion_timestamp.is_some())
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let namespace = ferry_e2e::ferry::mapped_namespace(&s.tenants[0], "demo");
        let deletes = ferry_writes(&env.dir.join("cluster-1").join("audit.log"), |e| {
            e["verb"] == "delete"
                && e["objectRef"]["namespace"] == namespace.as_str()
                && e["objectRef"]["name"] == "web"
        })?;
        ensure!(
            deletes == 1,
            "the terminating copy was deleted {deletes} times"
        );
        let upstream = s.tenant_deployments(0)?.get_opt("web").await?;
        ensure!(
            upstream.is_some(),
            "the finalizer went while a copy still exists"
        );

        copies
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await?;
        s.wait_upstream(0, "web", "the object gone once its copy is", |o| {
            o.is_none()
        })
        .await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

use kube::ResourceExt as _;

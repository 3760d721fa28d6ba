//! A tenant cannot use Ferry to escalate on a shared target: the namespaces Ferry creates
//! enforce a Pod Security level, so a privileged Pod is refused there and the tenant sees why
//! in its object's status in kcp; a Service with external IPs (CVE-2020-8554) is not synced.

use std::time::Duration;

use anyhow::{Context, Result};
use ferry_e2e::ferry::{self, FerryOptions};
use ferry_e2e::scenario::Scenario;
use ferry_e2e::{CLUSTERS, Env, eventually};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};

const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// The merged `ReplicaFailure` condition of an upstream Deployment, when it is `True`.
fn replica_failure(object: Option<&DynamicObject>) -> Option<Value> {
    object?
        .data
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "ReplicaFailure" && c["status"] == "True")
        .cloned()
}

#[tokio::test]
async fn a_privileged_pod_is_refused_downstream_and_the_tenant_sees_why_in_kcp() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "psa", 1, FerryOptions::default()).await?;
    let result = async {
        s.apply_deployment_with(0, "root-kit", |object| {
            object["spec"]["template"]["spec"]["containers"][0]["securityContext"] =
                json!({"privileged": true});
        })
        .await?;
        s.wait_on_all(0, "root-kit", true).await?;
        let mapped = ferry::mapped_namespace(&s.tenants[0], "demo");
        for cluster in CLUSTERS {
            let namespaces: Api<Namespace> = Api::all(env.cluster_client(cluster).await?);
            let labels = namespaces
                .get(&mapped)
                .await?
                .metadata
                .labels
                .unwrap_or_default();
            assert_eq!(
                labels.get(ENFORCE).map(String::as_str),
                Some("baseline"),
                "{mapped} on {cluster}"
            );
        }
        // The ReplicaSet controller on each target is refused the Pods and says so in a
        // ReplicaFailure condition; deployment-status carries it back, naming the targets
        // (the clusters' controllers report at their own pace: wait for both).
        let from_every_cluster = |o: Option<&DynamicObject>| {
            replica_failure(o).is_some_and(|c| {
                let message = c["message"].as_str().unwrap_or_default();
                CLUSTERS
                    .iter()
                    .all(|cluster| message.contains(&format!("{cluster}: pods ")))
            })
        };
        let upstream = s
            .wait_upstream(
                0,
                "root-kit",
                "ReplicaFailure from every cluster in the status",
                from_every_cluster,
            )
            .await?;
        let condition = replica_failure(upstream.as_ref()).context("condition")?;
        let message = condition["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("violates PodSecurity \"baseline") && message.contains("privileged"),
            "{message}"
        );
        assert_eq!(condition["reason"], "FailedCreate");
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn a_namespace_ferry_created_without_the_level_gets_it_after_a_restart() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let mut s = Scenario::start(&env, "psa-upgrade", 1, FerryOptions::default()).await?;
    let result = async {
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.wait_on_all(0, "web", true).await?;
        // As an older Ferry left it: no Pod Security label.
        s.ferry.kill();
        let mapped = ferry::mapped_namespace(&s.tenants[0], "demo");
        let namespaces: Api<Namespace> = Api::all(env.cluster_client("cluster-1").await?);
        let unlabel = json!({"metadata": {"labels": {ENFORCE: null}}});
        namespaces
            .patch(&mapped, &PatchParams::default(), &Patch::Merge(&unlabel))
            .await?;
        s.ferry.restart()?;
        eventually(
            "the namespace to get its level back",
            Duration::from_secs(60),
            || async {
                let labels = namespaces
                    .get(&mapped)
                    .await?
                    .metadata
                    .labels
                    .unwrap_or_default();
                Ok((labels.get(ENFORCE).map(String::as_str) == Some("baseline")).then_some(()))
            },
        )
        .await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

#[tokio::test]
async fn a_service_with_external_ips_is_not_synced_and_the_tenant_is_told_why() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let s = Scenario::start(&env, "external-ips", 1, FerryOptions::default()).await?;
    let result = async {
        let services = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "Service"),
            "services",
        );
        let tenant = s.admin.workspace(&s.tenants[0].path)?;
        let api: Api<DynamicObject> = Api::namespaced_with(tenant, "demo", &services);
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "intercept"},
            "spec": {"ports": [{"port": 80}], "externalIPs": ["203.0.113.7"]},
        });
        api.patch(
            "intercept",
            &PatchParams::apply("e2e-tenant").force(),
            &Patch::Apply(&service),
        )
        .await?;
        let event = eventually(
            "a PluginFailed event on the Service",
            Duration::from_secs(60),
            || async {
                Ok(s.events(0, "intercept", "PluginFailed")
                    .await?
                    .into_iter()
                    .next())
            },
        )
        .await?;
        let message = event.message.unwrap_or_default();
        assert!(
            message.contains("CVE-2020-8554") && message.contains("allowExternalIPs"),
            "{message}"
        );
        let mapped = ferry::mapped_namespace(&s.tenants[0], "demo");
        for cluster in CLUSTERS {
            let copies: Api<DynamicObject> =
                Api::namespaced_with(env.cluster_client(cluster).await?, &mapped, &services);
            assert!(
                copies.get_opt("intercept").await?.is_none(),
                "a copy on {cluster}"
            );
        }
        Ok(())
    }
    .await;
    s.finish(result)
}

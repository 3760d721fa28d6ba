//! Issue 12, item 5: dependencies follow their workloads, on the real environment.
//!
//! Deployments name their ConfigMaps and Secrets through `workload-dependencies`; those are
//! configured with `placement: dependents`. Each must be on exactly the clusters of the
//! Deployments that reference it, before them, and no longer where none does; one nobody
//! references is not synced; a missing one is reported on the Deployment.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_core::identity::FINALIZER;
use ferry_e2e::ferry::{FerryOptions, mapped_namespace};
use ferry_e2e::scenario::{CONVERGE, Scenario};
use ferry_e2e::{Env, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use serde_json::json;

const MISSING: &str = "sync.ferry.dev/missing-dependencies";

/// A Deployment placed in `region` whose container takes its environment from the
/// ConfigMap `config` and mounts the Secret `secret` (if any).
async fn workload(
    s: &Scenario,
    name: &str,
    region: &str,
    config: &str,
    secret: Option<&str>,
) -> Result<()> {
    s.apply_deployment_with(0, name, |object| {
        object["metadata"]["annotations"]["sync.ferry.dev/placement"] =
            format!("region={region}").into();
        let spec = &mut object["spec"]["template"]["spec"];
        spec["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": config}}]);
        if let Some(secret) = secret {
            spec["volumes"] = json!([{"name": "creds", "secret": {"secretName": secret}}]);
            spec["containers"][0]["volumeMounts"] =
                json!([{"name": "creds", "mountPath": "/creds"}]);
        }
    })
    .await
}

async fn create_config_map(s: &Scenario, name: &str) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(s.admin.workspace(&s.tenants[0].path)?, "demo");
    let object = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some([("greeting".to_string(), "hello".to_string())].into()),
        ..ConfigMap::default()
    };
    api.create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating ConfigMap {name}"))?;
    Ok(())
}

async fn create_secret(s: &Scenario, name: &str) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(s.admin.workspace(&s.tenants[0].path)?, "demo");
    let object = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        string_data: Some([("password".to_string(), "s3cret".to_string())].into()),
        ..Secret::default()
    };
    api.create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating Secret {name}"))?;
    Ok(())
}

/// The copies of ConfigMaps (`secret == false`) or Secrets on `cluster`: whether `name` is
/// there, and its creation time.
async fn copy_on(
    s: &Scenario,
    cluster: &str,
    secret: bool,
    name: &str,
) -> Result<Option<ObjectMeta>> {
    let client = s.env.cluster_client(cluster).await?;
    let namespace = mapped_namespace(&s.tenants[0], "demo");
    Ok(if secret {
        Api::<Secret>::namespaced(client, &namespace)
            .get_opt(name)
            .await?
            .map(|o| o.metadata)
    } else {
        Api::<ConfigMap>::namespaced(client, &namespace)
            .get_opt(name)
            .await?
            .map(|o| o.metadata)
    })
}

/// Waits until `name` is (or is not) on `cluster`.
async fn wait_dependency(
    s: &Scenario,
    cluster: &str,
    secret: bool,
    name: &str,
    present: bool,
) -> Result<Option<ObjectMeta>> {
    let kind = if secret { "Secret" } else { "ConfigMap" };
    let state = if present { "there" } else { "gone" };
    eventually(
        &format!("{kind} {name} {state} on {cluster}"),
        CONVERGE,
        || async move {
            let found = copy_on(s, cluster, secret, name).await?;
            Ok((found.is_some() == present).then_some(found))
        },
    )
    .await
}

#[tokio::test]
async fn config_maps_and_secrets_follow_the_deployments_that_reference_them() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    // The first-party plugin once it is built; until then the v0.2.0 contract fixture,
    // whose `dependencies` hook reads the same Pod template fields.
    let plugin = ["workload-dependencies", "contract-v0-2-0"]
        .into_iter()
        .find(|p| {
            ferry_e2e::ferry::plugin_dir()
                .join(format!("{p}.wasm"))
                .is_file()
        })
        .context("no dependencies plugin: run `cargo xtask plugins`")?;
    eprintln!("dependencies plugin: {plugin}");
    let options = FerryOptions {
        dependencies: Some(plugin.into()),
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "dependencies", 1, options).await?;
    let result = async {
        create_config_map(&s, "app-config").await?;
        create_secret(&s, "app-secret").await?;
        create_secret(&s, "unused").await?;

        // A Deployment in eu: its ConfigMap and Secret go to the eu cluster only, first.
        workload(&s, "web-eu", "eu", "app-config", Some("app-secret")).await?;
        let deployment = s
            .wait_copy(0, "cluster-1", "web-eu", "the eu Deployment", |c| {
                c.is_some()
            })
            .await?
            .context("copy")?;
        let config = copy_on(&s, "cluster-1", false, "app-config")
            .await?
            .context("the ConfigMap must be on cluster-1 before its Deployment")?;
        let secret = copy_on(&s, "cluster-1", true, "app-secret")
            .await?
            .context("the Secret must be on cluster-1 before its Deployment")?;
        ensure!(
            config.creation_timestamp <= deployment.metadata.creation_timestamp
                && secret.creation_timestamp <= deployment.metadata.creation_timestamp,
            "dependencies created after their dependent"
        );
        // Give Ferry time to make any wrong copy, then look.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for (secret, name) in [
            (false, "app-config"),
            (true, "app-secret"),
            (true, "unused"),
        ] {
            ensure!(
                copy_on(&s, "cluster-2", secret, name).await?.is_none(),
                "{name} must not be on cluster-2 (nothing placed there references it)"
            );
        }
        ensure!(
            copy_on(&s, "cluster-1", true, "unused").await?.is_none(),
            "a Secret nobody references is not synced"
        );

        // A second Deployment in us referencing the same ConfigMap adds it to us.
        workload(&s, "web-us", "us", "app-config", None).await?;
        wait_dependency(&s, "cluster-2", false, "app-config", true).await?;
        s.wait_copy(0, "cluster-2", "web-us", "the us Deployment", |c| {
            c.is_some()
        })
        .await?;
        ensure!(
            copy_on(&s, "cluster-2", true, "app-secret")
                .await?
                .is_none(),
            "the Secret only web-eu references stays off cluster-2"
        );

        // Deleting the eu Deployment removes the ConfigMap (and Secret) from eu, keeps us.
        s.tenant_deployments(0)?
            .delete("web-eu", &DeleteParams::default())
            .await?;
        wait_dependency(&s, "cluster-1", false, "app-config", false).await?;
        wait_dependency(&s, "cluster-1", true, "app-secret", false).await?;
        ensure!(
            copy_on(&s, "cluster-2", false, "app-config")
                .await?
                .is_some(),
            "web-us still references app-config on cluster-2"
        );
        // Nothing references app-secret any more and its copy is gone: Ferry lets go of it.
        let secrets: Api<Secret> = Api::namespaced(s.admin.workspace(&s.tenants[0].path)?, "demo");
        eventually("app-secret without Ferry's finalizer", CONVERGE, || {
            let secrets = secrets.clone();
            async move {
                let secret = secrets.get("app-secret").await?;
                let held = secret
                    .metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FINALIZER);
                Ok((!held).then_some(()))
            }
        })
        .await?;

        // A missing dependency is reported on its Deployment, which syncs anyway, and the
        // report goes when the dependency appears.
        workload(&s, "web-missing", "us", "absent", None).await?;
        s.wait_copy(
            0,
            "cluster-2",
            "web-missing",
            "synced despite the missing ConfigMap",
            |c| c.is_some(),
        )
        .await?;
        s.wait_upstream(
            0,
            "web-missing",
            "the missing-dependencies annotation",
            |o| {
                o.and_then(|o| o.metadata.annotations.as_ref()?.get(MISSING).cloned())
                    .as_deref()
                    == Some("configmaps/absent")
            },
        )
        .await?;
        let events = s.events(0, "web-missing", "DependencyMissing").await?;
        ensure!(
            events.iter().any(|e| e
                .message
                .as_deref()
                .unwrap_or("")
                .contains("configmaps/absent")),
            "a DependencyMissing Event naming configmaps/absent: {events:?}"
        );
        create_config_map(&s, "absent").await?;
        wait_dependency(&s, "cluster-2", false, "absent", true).await?;
        s.wait_upstream(0, "web-missing", "the report removed", |o| {
            o.is_some_and(|o| {
                o.metadata
                    .annotations
                    .as_ref()
                    .is_none_or(|a| !a.contains_key(MISSING))
            })
        })
        .await?;

        // The audit agrees: nothing missing, orphaned or divergent.
        s.ferry.wait_clean(CONVERGE).await?;
        // The tenant's own edit of the dependency reaches its copy.
        let api: Api<ConfigMap> = Api::namespaced(s.admin.workspace(&s.tenants[0].path)?, "demo");
        api.patch(
            "app-config",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"greeting": "hi"}})),
        )
        .await?;
        let client = s.env.cluster_client("cluster-2").await?;
        let copies: Api<ConfigMap> =
            Api::namespaced(client, &mapped_namespace(&s.tenants[0], "demo"));
        eventually("the ConfigMap's change on cluster-2", CONVERGE, || {
            let copies = copies.clone();
            async move {
                let copy = copies.get_opt("app-config").await?;
                Ok(copy
                    .and_then(|c| c.data?.get("greeting").cloned())
                    .filter(|g| g == "hi")
                    .map(|_| ()))
            }
        })
        .await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

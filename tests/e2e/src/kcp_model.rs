//! A walk through the kcp model Ferry builds on, against the real servers. Each step checks
//! what it claims and fails with a precise error otherwise; the smoke test runs it, and
//! `cargo xtask demo` runs it with narration.
//!
//! 1. A provider workspace exports Deployments (a CRD-ified schema) through an APIExport.
//! 2. The export's APIExportEndpointSlice has no endpoints until a workspace binds it.
//! 3. A tenant workspace binds the export and creates a Deployment.
//! 4. Through the virtual workspace URL, `…/clusters/*` lists and watches the Deployment of
//!    every bound workspace, each annotated with `kcp.io/cluster`.
//! 5. Through `…/clusters/<logical cluster>`, a finalizer and the status subresource are
//!    written, and the tenant sees both.
//! 6. A target cluster runs the real Deployment controller.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, WatchEvent, WatchParams,
};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::json;

use crate::kcp::{self, KcpAdmin, Workspace};
use crate::{Env, eventually};

/// What the tour created, for callers that want to look further.
#[derive(Debug)]
pub struct TourReport {
    /// The provider workspace.
    pub provider: Workspace,
    /// The tenant workspace.
    pub tenant: Workspace,
    /// The virtual workspace URL from the endpoint slice.
    pub virtual_workspace_url: String,
}

fn deployments() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apps", "v1", "Deployment"),
        "deployments",
    )
}

fn endpoint_slices() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apis.kcp.io", "v1alpha1", "APIExportEndpointSlice"),
        "apiexportendpointslices",
    )
}

/// Runs the tour; `say` narrates each step.
pub async fn tour(env: &Env, say: &dyn Fn(&str)) -> Result<TourReport> {
    let admin = KcpAdmin::new(env).await?;
    let suffix = crate::unique_suffix();
    let wait = Duration::from_secs(60);

    say("1. provider workspace with the Deployment schema and the `kubernetes` APIExport");
    let provider = admin
        .create_workspace("root", &format!("tour-platform-{suffix}"))
        .await?;
    let provider_client = admin.workspace(&provider.path)?;
    kcp::apply_manifest(
        &provider_client,
        &kcp::example("provider/apiresourceschema-deployments.apps.yaml")?,
    )
    .await?;
    kcp::apply_manifest(
        &provider_client,
        &kcp::example("provider/apiresourceschema-services.core.yaml")?,
    )
    .await?;
    kcp::apply_manifest(
        &provider_client,
        &kcp::example("provider/apiexport-kubernetes.yaml")?,
    )
    .await?;
    say(&format!(
        "   {} (logical cluster {})",
        provider.path, provider.logical_cluster
    ));

    say("2. the APIExportEndpointSlice exists and lists no endpoint before any binding");
    let slices: Api<DynamicObject> = Api::all_with(provider_client.clone(), &endpoint_slices());
    let slice_urls = || async {
        let slice = slices.get("kubernetes").await?;
        let urls: Vec<String> = slice
            .data
            .pointer("/status/endpoints")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("url").and_then(|u| u.as_str()).map(str::to_string))
            .collect();
        anyhow::Ok(urls)
    };
    let before = eventually(
        "the endpoint slice `kubernetes` to be created",
        wait,
        || async { Ok(slice_urls().await.ok()) },
    )
    .await?;
    ensure!(
        before.is_empty(),
        "endpoint slice lists {before:?} before any binding exists"
    );

    say("3. tenant workspace binds the export and creates a Deployment");
    let tenant = admin
        .create_workspace("root", &format!("tour-team-{suffix}"))
        .await?;
    let tenant_client = admin.workspace(&tenant.path)?;
    let binding = kcp::example("tenant/apibinding-kubernetes.yaml")?
        .replace("path: root:platform", &format!("path: {}", provider.path));
    kcp::apply_manifest(&tenant_client, &binding).await?;
    let bindings: Api<DynamicObject> = Api::all_with(
        tenant_client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apis.kcp.io", "v1alpha2", "APIBinding"),
            "apibindings",
        ),
    );
    eventually("the APIBinding to be Bound", wait, || async {
        let b = bindings.get("kubernetes").await?;
        Ok(
            (b.data.pointer("/status/phase").and_then(|p| p.as_str()) == Some("Bound"))
                .then_some(()),
        )
    })
    .await?;
    // The bound API is served a moment after the binding reports Bound.
    let manifest = kcp::example("tenant/deployment.yaml")?;
    eventually("the tenant to accept the Deployment", wait, || async {
        kcp::apply_manifest(&tenant_client, &manifest)
            .await
            .map(Some)
    })
    .await?;
    say(&format!(
        "   {} (logical cluster {}): deployment demo/web",
        tenant.path, tenant.logical_cluster
    ));

    let urls = eventually("the endpoint slice to list a URL", wait, || async {
        let urls = slice_urls().await?;
        Ok((!urls.is_empty()).then_some(urls))
    })
    .await?;
    let url = urls[0].clone();
    say(&format!("4. virtual workspace {url}"));
    let all_deployments: Api<DynamicObject> = Api::all_with(
        admin.client_for_url(&format!("{url}/clusters/*"))?,
        &deployments(),
    );
    let list = all_deployments
        .list(&ListParams::default())
        .await
        .context("wildcard list")?;
    let ours = list
        .items
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some("web"))
        .context("the tenant's Deployment is not in the wildcard list")?;
    let cluster_annotation = ours
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kcp.io/cluster"));
    ensure!(
        cluster_annotation == Some(&tenant.logical_cluster),
        "kcp.io/cluster is {cluster_annotation:?}, expected {}",
        tenant.logical_cluster
    );
    say(&format!(
        "   wildcard list sees demo/web with kcp.io/cluster={}",
        tenant.logical_cluster
    ));

    let resource_version = list.metadata.resource_version.clone().unwrap_or_default();
    let mut events = all_deployments
        .watch(&WatchParams::default().timeout(60), &resource_version)
        .await
        .context("wildcard watch")?
        .boxed();
    let tenant_deployments: Api<DynamicObject> =
        Api::namespaced_with(tenant_client.clone(), "demo", &deployments());
    tenant_deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tour": "watched"}}})),
        )
        .await?;
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.try_next().await? {
            if let WatchEvent::Modified(obj) = event
                && obj.labels().get("tour").map(String::as_str) == Some("watched")
            {
                return anyhow::Ok(true);
            }
        }
        Ok(false)
    })
    .await;
    ensure!(
        matches!(seen, Ok(Ok(true))),
        "the wildcard watch did not report the tenant's edit: {seen:?}"
    );
    say("   wildcard watch reports the tenant's edit");

    say("5. finalizer and status written through the virtual workspace");
    let scoped: Api<DynamicObject> = Api::namespaced_with(
        admin.client_for_url(&format!("{url}/clusters/{}", tenant.logical_cluster))?,
        "demo",
        &deployments(),
    );
    scoped
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["sync.ferry.dev/cleanup"]}})),
        )
        .await
        .context("adding a finalizer through the virtual workspace")?;
    scoped
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2}}),
            ),
        )
        .await
        .context("writing status through the virtual workspace")?;
    let seen_by_tenant = tenant_deployments.get("web").await?;
    ensure!(
        seen_by_tenant
            .finalizers()
            .iter()
            .any(|f| f == "sync.ferry.dev/cleanup"),
        "the tenant does not see the finalizer"
    );
    ensure!(
        seen_by_tenant.data.pointer("/status/readyReplicas") == Some(&json!(2)),
        "the tenant does not see the status: {:?}",
        seen_by_tenant.data.get("status")
    );
    let by_path: Api<DynamicObject> = Api::namespaced_with(
        admin.client_for_url(&format!("{url}/clusters/{}", tenant.path))?,
        "demo",
        &deployments(),
    );
    if by_path.get("web").await.is_ok() {
        bail!(
            "the virtual workspace accepted a workspace path ({}) where a logical cluster name is required",
            tenant.path
        );
    }
    say("   the tenant sees finalizer sync.ferry.dev/cleanup and status.readyReplicas=2");
    say("   (a workspace path in place of the logical cluster name is refused there)");

    // Let the tenant's object go: drop the finalizer, then delete it.
    scoped
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await?;
    tenant_deployments
        .delete("web", &DeleteParams::default())
        .await?;

    say("6. cluster-1 runs the real Deployment controller");
    let cluster = env.cluster_client("cluster-1").await?;
    let namespaces: Api<Namespace> = Api::all(cluster.clone());
    let namespace = format!("tour-{suffix}");
    namespaces
        .patch(
            &namespace,
            &PatchParams::apply("ferry-e2e"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            ),
        )
        .await?;
    let cluster_deployments: Api<Deployment> = Api::namespaced(cluster, &namespace);
    let mut deployment: serde_json::Value = serde_yaml::from_str(
        manifest
            .split("---")
            .nth(1)
            .context("deployment.yaml has no second document")?,
    )?;
    deployment["metadata"]["namespace"] = json!(namespace);
    cluster_deployments
        .patch(
            "web",
            &PatchParams::apply("ferry-e2e"),
            &Patch::Apply(&deployment),
        )
        .await?;
    let replicas = eventually(
        "the controller manager to report the Deployment's status",
        wait,
        || async {
            let d = cluster_deployments.get("web").await?;
            Ok(d.status.and_then(|s| {
                s.observed_generation
                    .is_some()
                    .then_some(s.replicas.unwrap_or(0))
            }))
        },
    )
    .await?;
    say(&format!(
        "   {namespace}/web on cluster-1: status.replicas={replicas} (observed by kube-controller-manager)"
    ));
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await?;

    Ok(TourReport {
        provider,
        tenant,
        virtual_workspace_url: url,
    })
}

//! The kcp side: the provider workspace, the APIExport's resources and its endpoint slice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use http::{Request, Response, Uri};
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::error::SyncError;
use crate::metrics::Metrics;
use crate::metrics::api::counted_client;

/// `https://host:port` of a client configuration, without any `/clusters/…` path.
pub fn base_url(config: &kube::Config) -> String {
    let url = config.cluster_url.to_string();
    match url.find("/clusters/") {
        Some(index) => url[..index].to_string(),
        None => url.trim_end_matches('/').to_string(),
    }
}

/// A client whose requests go under `url` (a workspace or virtual-workspace prefix), counted
/// in `metrics` as requests to `kcp`.
pub fn client_for(
    config: &kube::Config,
    url: &str,
    metrics: &Arc<Metrics>,
) -> Result<kube::Client, SyncError> {
    let mut config = config.clone();
    config.cluster_url = url
        .parse()
        .map_err(|e| SyncError::Export(format!("invalid URL {url}: {e}")))?;
    counted_client(config, metrics, "kcp")
        .map_err(|e| SyncError::api(format!("building a client for {url}"), e))
}

/// A client for one logical cluster that sends through `shard`, a client for a shard's
/// virtual workspace, with each request's path put under `/clusters/<cluster>`. Every
/// workspace of a shard then shares the shard client's connection pool, TLS configuration
/// and request counting, instead of a client (pool, TLS set-up and all) per workspace it
/// ever wrote to.
pub fn cluster_client(shard: &kube::Client, cluster: &str) -> kube::Client {
    kube::Client::new(
        UnderCluster {
            shard: shard.clone(),
            prefix: Arc::from(format!("/clusters/{cluster}")),
        },
        shard.default_namespace(),
    )
}

/// The service behind [`cluster_client`].
#[derive(Clone)]
struct UnderCluster {
    shard: kube::Client,
    prefix: Arc<str>,
}

impl tower::Service<Request<kube::client::Body>> for UnderCluster {
    type Response = Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The shard client queues requests itself (`send` waits until it is ready).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<kube::client::Body>) -> Self::Future {
        let shard = self.shard.clone();
        let uri = under(&self.prefix, request.uri());
        async move {
            *request.uri_mut() = uri?;
            shard.send(request).await
        }
        .boxed()
    }
}

/// `uri`'s path and query under `prefix`.
fn under(prefix: &str, uri: &Uri) -> Result<Uri, kube::Error> {
    let rest = uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{prefix}{rest}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| kube::Error::HttpError(e.into()))
}

fn gvr(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The logical cluster name of the workspace `client` points at.
pub async fn logical_cluster(client: &kube::Client) -> Result<String, SyncError> {
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &gvr(
            "core.kcp.io",
            "v1alpha1",
            "LogicalCluster",
            "logicalclusters",
        ),
    );
    let cluster = api
        .get("cluster")
        .await
        .map_err(|e| SyncError::api("reading the provider workspace's LogicalCluster", e))?;
    cluster
        .metadata
        .annotations
        .and_then(|a| a.get("kcp.io/cluster").cloned())
        .ok_or_else(|| {
            SyncError::Export("the provider LogicalCluster has no kcp.io/cluster".into())
        })
}

/// Reads the APIExport `export` of the provider workspace.
pub async fn read_export(
    provider: &kube::Client,
    export: &str,
) -> Result<DynamicObject, SyncError> {
    let exports: Api<DynamicObject> = Api::all_with(
        provider.clone(),
        &gvr("apis.kcp.io", "v1alpha2", "APIExport", "apiexports"),
    );
    exports
        .get(export)
        .await
        .map_err(|e| SyncError::api(format!("reading APIExport {export}"), e))
}

/// `resource` or `resource.group`, as logs and errors show a resource.
fn display(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// The (group, resource) pairs the export claims (`spec.permissionClaims`): resources it does
/// not define but may serve from every binding workspace that accepted the claim.
pub fn claimed(export: &DynamicObject) -> BTreeSet<(String, String)> {
    export
        .data
        .pointer("/spec/permissionClaims")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c.get("group")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                c.get("resource").and_then(Value::as_str)?.to_string(),
            ))
        })
        .collect()
}

/// Finds `resource.group` in the APIExport and reads version and kind from its schema, so
/// nothing about the served API is assumed (kcp serves only what the export declares). A
/// resource the export claims instead (a built-in such as `configmaps`) has no schema: its
/// version and kind come from the provider workspace's discovery, which serves the same
/// built-in API.
pub async fn resolve_resource(
    provider: &kube::Client,
    export_object: &DynamicObject,
    group: &str,
    resource: &str,
) -> Result<ApiResource, SyncError> {
    let export = export_object.metadata.name.clone().unwrap_or_default();
    let resources = export_object
        .data
        .pointer("/spec/resources")
        .and_then(Value::as_array);
    let entries: Vec<&Value> = resources.into_iter().flatten().collect();
    let schema = entries
        .iter()
        .find(|e| {
            e.get("group").and_then(Value::as_str).unwrap_or("") == group
                && e.get("name").and_then(Value::as_str) == Some(resource)
        })
        .and_then(|e| e.get("schema").and_then(Value::as_str));
    let claims = claimed(export_object);
    let Some(schema) = schema else {
        if claims.contains(&(group.to_string(), resource.to_string())) {
            return resolve_claimed(provider, &export, group, resource).await;
        }
        let list = |names: BTreeSet<String>| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.into_iter().collect::<Vec<_>>().join(", ")
            }
        };
        return Err(SyncError::NotExported {
            resource: display(group, resource),
            export,
            exported: list(
                entries
                    .iter()
                    .map(|e| {
                        display(
                            e.get("group").and_then(Value::as_str).unwrap_or(""),
                            e.get("name").and_then(Value::as_str).unwrap_or("?"),
                        )
                    })
                    .collect(),
            ),
            claimed: list(claims.iter().map(|(g, r)| display(g, r)).collect()),
        });
    };
    let schemas: Api<DynamicObject> = Api::all_with(
        provider.clone(),
        &gvr(
            "apis.kcp.io",
            "v1alpha1",
            "APIResourceSchema",
            "apiresourceschemas",
        ),
    );
    let schema_object = schemas
        .get(schema)
        .await
        .map_err(|e| SyncError::api(format!("reading APIResourceSchema {schema}"), e))?;
    let kind = schema_object
        .data
        .pointer("/spec/names/kind")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            SyncError::Export(format!("APIResourceSchema {schema} has no spec.names.kind"))
        })?;
    let versions = schema_object
        .data
        .pointer("/spec/versions")
        .and_then(Value::as_array);
    let version = versions
        .into_iter()
        .flatten()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").and_then(Value::as_str))
        .ok_or_else(|| {
            SyncError::Export(format!("APIResourceSchema {schema} has no storage version"))
        })?;
    Ok(gvr(group, version, kind, resource))
}

/// Version and kind of a claimed resource, from the provider workspace's discovery of its
/// group (preferred version).
async fn resolve_claimed(
    provider: &kube::Client,
    export: &str,
    group: &str,
    resource: &str,
) -> Result<ApiResource, SyncError> {
    let unknown = |why: String| {
        SyncError::Export(format!(
            "APIExport {export} claims {}, but {why}, so its version and kind are unknown",
            display(group, resource)
        ))
    };
    // A discovery that fails is an API error (kcp still starting is waited for).
    let discovered = kube::discovery::group(provider, group).await.map_err(|e| {
        SyncError::api(
            format!(
                "discovering the version and kind of {}, which APIExport {export} claims",
                display(group, resource)
            ),
            e,
        )
    })?;
    discovered
        .resources_by_stability()
        .into_iter()
        .map(|(api, _)| api)
        .find(|api| api.plural == resource)
        .ok_or_else(|| unknown("the provider workspace does not serve it".into()))
}

/// The endpoint slice resource.
pub fn endpoint_slices() -> ApiResource {
    gvr(
        "apis.kcp.io",
        "v1alpha1",
        "APIExportEndpointSlice",
        "apiexportendpointslices",
    )
}

/// The URLs an endpoint slice lists (one per shard); empty until a workspace binds the export.
pub fn endpoint_urls(slice: &DynamicObject) -> BTreeSet<String> {
    slice
        .data
        .pointer("/status/endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("url").and_then(Value::as_str))
        .map(|u| u.trim_end_matches('/').to_string())
        .collect()
}

/// APIBindings, visible read-only through the virtual workspace: one per bound workspace.
pub fn api_bindings() -> ApiResource {
    gvr("apis.kcp.io", "v1alpha2", "APIBinding", "apibindings")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Answers every request with an empty ConfigMap and records the URIs it was sent.
    #[derive(Clone, Default)]
    struct Recorder(Arc<std::sync::Mutex<Vec<String>>>);

    impl tower::Service<Request<kube::client::Body>> for Recorder {
        type Response = Response<kube::client::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
            self.0.lock().expect("lock").push(request.uri().to_string());
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
            std::future::ready(Ok(Response::new(kube::client::Body::from(
                body.to_string().into_bytes(),
            ))))
        }
    }

    #[tokio::test]
    async fn workspace_clients_send_through_their_shards_client_under_the_cluster_path() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let sent = Recorder::default();
        let shard = kube::Client::new(sent.clone(), "default");
        for cluster in ["lc-a", "lc-b"] {
            let api: Api<ConfigMap> = Api::namespaced(cluster_client(&shard, cluster), "demo");
            api.get("x").await.expect("get");
        }
        assert_eq!(
            *sent.0.lock().expect("lock"),
            vec![
                "/clusters/lc-a/api/v1/namespaces/demo/configmaps/x",
                "/clusters/lc-b/api/v1/namespaces/demo/configmaps/x",
            ]
        );
        // The query string stays with its path.
        assert_eq!(
            under(
                "/clusters/lc-a",
                &"/apis/apps/v1/deployments?limit=5".parse().expect("uri")
            )
            .expect("uri")
            .to_string(),
            "/clusters/lc-a/apis/apps/v1/deployments?limit=5"
        );
    }

    #[test]
    fn an_empty_endpoint_slice_lists_no_url() {
        let slice: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apis.kcp.io/v1alpha1", "kind": "APIExportEndpointSlice",
            "metadata": {"name": "kubernetes"}, "status": {}
        }))
        .expect("slice");
        assert!(endpoint_urls(&slice).is_empty());
    }

    fn export() -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "apis.kcp.io/v1alpha2", "kind": "APIExport",
            "metadata": {"name": "kubernetes"},
            "spec": {
                "resources": [{"group": "apps", "name": "deployments", "schema": "s.deployments.apps"}],
                "permissionClaims": [
                    {"group": "", "resource": "events", "verbs": ["create"]},
                    {"group": "core.kcp.io", "resource": "logicalclusters", "verbs": ["get"]},
                    {"group": "", "resource": "configmaps", "verbs": ["get"]},
                ],
            },
        }))
        .expect("export")
    }

    #[test]
    fn the_claims_of_an_export_are_its_permission_claims_group_and_resource() {
        let claims = claimed(&export());
        assert!(claims.contains(&("".into(), "configmaps".into())));
        assert!(claims.contains(&("core.kcp.io".into(), "logicalclusters".into())));
        assert!(!claims.contains(&("".into(), "secrets".into())));
        assert!(!claims.contains(&("apps".into(), "deployments".into())));
    }

    #[tokio::test]
    async fn a_resource_neither_exported_nor_claimed_is_refused_naming_both_lists() {
        // Refused from the export alone: no request is sent (the server does not exist).
        let client = kube::Client::try_from(kube::Config::new(
            "https://127.0.0.1:1".parse().expect("url"),
        ))
        .expect("client");
        let err = resolve_resource(&client, &export(), "", "secrets")
            .await
            .expect_err("not exported");
        assert_eq!(
            err.to_string(),
            "resource secrets is not exported by APIExport kubernetes (exported: \
             deployments.apps; claimed: configmaps, events, logicalclusters.core.kcp.io)"
        );
    }

    #[test]
    fn base_url_drops_the_workspace_path() {
        let mut config =
            kube::Config::new("https://127.0.0.1:6443/clusters/root".parse().expect("url"));
        assert_eq!(base_url(&config), "https://127.0.0.1:6443");
        config.cluster_url = "https://kcp.example:443".parse().expect("url");
        assert_eq!(base_url(&config), "https://kcp.example:443");
    }
}

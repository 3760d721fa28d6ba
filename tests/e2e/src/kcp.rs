//! Talking to kcp: workspaces by path, virtual-workspace URLs, and applying manifests.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};
use serde_json::json;

use crate::{Env, eventually};

/// The kcp admin identity, able to address any workspace by path.
#[derive(Clone)]
pub struct KcpAdmin {
    config: kube::Config,
    /// `https://host:port` without any `/clusters/...` suffix.
    base: String,
}

/// A workspace created by a test.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// Path such as `root:ferry-e2e-provider-1234`.
    pub path: String,
    /// Logical cluster name (what `kcp.io/cluster` and virtual-workspace URLs use).
    pub logical_cluster: String,
}

impl KcpAdmin {
    /// Loads the admin kubeconfig written by `cargo xtask env up` (context `root`).
    pub async fn new(env: &Env) -> Result<Self> {
        let config = crate::config_from_kubeconfig(&env.kcp_kubeconfig(), Some("root")).await?;
        let url = config.cluster_url.to_string();
        let base = match url.find("/clusters/") {
            Some(index) => url[..index].to_string(),
            None => url.trim_end_matches('/').to_string(),
        };
        Ok(Self { config, base })
    }

    /// The kcp server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A client whose requests go to `url` (a workspace or virtual-workspace URL prefix).
    pub fn client_for_url(&self, url: &str) -> Result<kube::Client> {
        let mut config = self.config.clone();
        config.cluster_url = url.parse().with_context(|| format!("parsing URL {url}"))?;
        Ok(kube::Client::try_from(config)?)
    }

    /// A client for the workspace at `path` (e.g. `root:team-a`).
    pub fn workspace(&self, path: &str) -> Result<kube::Client> {
        self.client_for_url(&format!("{}/clusters/{path}", self.base))
    }

    /// Creates workspace `name` under `parent` (or finds it, if it exists) and waits until it
    /// is ready.
    pub async fn create_workspace(&self, parent: &str, name: &str) -> Result<Workspace> {
        self.create_workspace_on(parent, name, None).await
    }

    /// Creates workspace `name` under `parent` on kcp shard `shard` (kcp schedules it with
    /// `spec.location.selector`, `name=<shard>`; `None`: wherever kcp picks), or finds it, and
    /// waits until it is ready.
    pub async fn create_workspace_on(
        &self,
        parent: &str,
        name: &str,
        shard: Option<&str>,
    ) -> Result<Workspace> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("tenancy.kcp.io", "v1alpha1", "Workspace"),
            "workspaces",
        );
        let api: Api<DynamicObject> = Api::all_with(self.workspace(parent)?, &resource);
        let workspace: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "tenancy.kcp.io/v1alpha1",
            "kind": "Workspace",
            "metadata": { "name": name },
            "spec": match shard {
                Some(shard) => json!({"location": {"selector": {"matchLabels": {"name": shard}}}}),
                None => json!({}),
            },
        }))?;
        match api.create(&PostParams::default(), &workspace).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => {
                return Err(anyhow::Error::new(err)
                    .context(format!("creating workspace {name} in {parent}")));
            }
        }
        let logical_cluster = eventually(
            &format!("workspace {parent}:{name} to be Ready"),
            Duration::from_secs(90),
            || async {
                let ws = api.get(name).await?;
                let phase = ws.data.pointer("/status/phase").and_then(|v| v.as_str());
                let cluster = ws.data.pointer("/spec/cluster").and_then(|v| v.as_str());
                Ok(match (phase, cluster) {
                    (Some("Ready"), Some(cluster)) => Some(cluster.to_string()),
                    _ => None,
                })
            },
        )
        .await?;
        Ok(Workspace {
            path: format!("{parent}:{name}"),
            logical_cluster,
        })
    }

    /// Deletes workspace `name` under `parent`, ignoring "not found".
    pub async fn delete_workspace(&self, parent: &str, name: &str) -> Result<()> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("tenancy.kcp.io", "v1alpha1", "Workspace"),
            "workspaces",
        );
        let api: Api<DynamicObject> = Api::all_with(self.workspace(parent)?, &resource);
        match api.delete(name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

/// Server-side applies every document of a multi-document YAML manifest, discovering each
/// kind's resource on the server (so the manifest can use any API the workspace serves).
pub async fn apply_manifest(client: &kube::Client, manifest: &str) -> Result<Vec<DynamicObject>> {
    let mut applied = Vec::new();
    for document in serde_yaml::Deserializer::from_str(manifest) {
        let value = <serde_json::Value as serde::Deserialize>::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject = serde_json::from_value(value)?;
        applied.push(apply_object(client, &object).await?);
    }
    Ok(applied)
}

/// Server-side applies one object with field manager `ferry-e2e`.
pub async fn apply_object(client: &kube::Client, object: &DynamicObject) -> Result<DynamicObject> {
    let types = object
        .types
        .as_ref()
        .ok_or_else(|| anyhow!("object {:?} has no apiVersion/kind", object.metadata.name))?;
    let gvk = GroupVersionKind::try_from(types)?;
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("discovering {}/{}", types.api_version, types.kind))?;
    let name = object
        .metadata
        .name
        .clone()
        .ok_or_else(|| anyhow!("a {} without a name", types.kind))?;
    let api: Api<DynamicObject> = match (&capabilities.scope, &object.metadata.namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
        (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &name,
        &PatchParams::apply("ferry-e2e").force(),
        &Patch::Apply(object),
    )
    .await
    .with_context(|| format!("applying {} {name}", types.kind))
}

/// Reads a file under `examples/`.
pub fn example(path: &str) -> Result<String> {
    let full = crate::repo_root().join("examples").join(path);
    std::fs::read_to_string(&full).with_context(|| format!("reading {}", full.display()))
}

/// Replaces `${NAME}` placeholders in a manifest.
pub fn render(template: &str, vars: &[(&str, &str)]) -> Result<String> {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    if let Some(start) = out.find("${") {
        let end = out[start..].find('}').map_or(out.len(), |e| start + e + 1);
        bail!("unreplaced placeholder {}", &out[start..end]);
    }
    Ok(out)
}

//! One end-to-end scenario: a platform, tenants, a running Ferry, and the clusters.

use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::ferry::{self, Ferry, FerryOptions};
use crate::kcp::{KcpAdmin, Workspace};
use crate::{CLUSTERS, Env, eventually};

/// How long a scenario waits for Ferry to converge.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// A running scenario.
pub struct Scenario {
    /// The environment.
    pub env: Env,
    /// kcp admin.
    pub admin: KcpAdmin,
    /// The provider workspace.
    pub provider: Workspace,
    /// Tenant workspaces, each with namespace `demo`.
    pub tenants: Vec<Workspace>,
    /// Ferry.
    pub ferry: Ferry,
}

impl Scenario {
    /// A platform, `tenants` tenant workspaces and a Ferry for them. `name` keeps workspaces
    /// of different tests apart.
    pub async fn start(
        env: &Env,
        name: &str,
        tenants: usize,
        options: FerryOptions,
    ) -> Result<Scenario> {
        let admin = KcpAdmin::new(env).await?;
        let suffix = crate::unique_suffix();
        let provider = ferry::platform_on(
            &admin,
            &format!("{name}-platform-{suffix}"),
            env.provider_shard()?.as_deref(),
        )
        .await?;
        let mut workspaces = Vec::new();
        for i in 0..tenants {
            // On a sharded kcp, tenants spread over the shards (see `Env::tenant_shard`).
            let shard = env.tenant_shard(i)?;
            workspaces.push(
                ferry::tenant_on(
                    &admin,
                    &provider,
                    &format!("{name}-team{i}-{suffix}"),
                    "demo",
                    shard.as_deref(),
                )
                .await?,
            );
        }
        let ferry = Ferry::start(env, &provider, &options)?;
        Ok(Scenario {
            env: env.clone(),
            admin,
            provider,
            tenants: workspaces,
            ferry,
        })
    }

    /// Ends the scenario: on failure, prints Ferry's log so the failure can be understood.
    pub fn finish(mut self, result: Result<()>) -> Result<()> {
        if let Err(err) = &result {
            eprintln!(
                "scenario failed: {err:#}\n---- ferry log ----\n{}",
                self.ferry.log()
            );
        }
        self.ferry.kill();
        self.remove_copies();
        result
    }

    /// Deletes, on every target, the namespaces Ferry made for this scenario's tenants (not
    /// waiting for them to go). The simulated nodes have room for a few hundred Pods per
    /// cluster; copies left behind by one test file would leave the next one's Pods Pending,
    /// and its status tests waiting for ready replicas that never come.
    fn remove_copies(&self) {
        let clusters: Vec<&str> = self
            .tenants
            .iter()
            .map(|t| t.logical_cluster.as_str())
            .collect();
        if clusters.is_empty() {
            return;
        }
        let selector = format!(
            "{} in ({})",
            ferry_core::identity::CLUSTER,
            clusters.join(",")
        );
        for cluster in CLUSTERS {
            let kubeconfig = self.env.dir.join(format!("{cluster}.kubeconfig"));
            let kubeconfig = kubeconfig.to_string_lossy();
            let args = [
                "--kubeconfig",
                &*kubeconfig,
                "delete",
                "namespaces",
                "-l",
                &selector,
                "--wait=false",
                "--ignore-not-found",
            ];
            if let Err(err) = crate::deploy::run_kubectl(&self.env, &args) {
                eprintln!("warning: removing the scenario's copies on {cluster}: {err:#}");
            }
        }
    }

    /// Deployments in tenant `i`'s namespace `demo`.
    pub fn tenant_deployments(&self, i: usize) -> Result<Api<DynamicObject>> {
        let client = self.admin.workspace(&self.tenants[i].path)?;
        Ok(Api::namespaced_with(client, "demo", &ferry::deployments()))
    }

    /// Deployments in tenant `i`'s mapped namespace on `cluster`.
    pub async fn copies(&self, i: usize, cluster: &str) -> Result<Api<DynamicObject>> {
        let client = self.env.cluster_client(cluster).await?;
        let namespace = ferry::mapped_namespace(&self.tenants[i], "demo");
        Ok(Api::namespaced_with(
            client,
            &namespace,
            &ferry::deployments(),
        ))
    }

    /// Creates (applies) a Deployment `name` in tenant `i` from the example manifest,
    /// with `replicas` and extra annotations.
    pub async fn apply_deployment(
        &self,
        i: usize,
        name: &str,
        replicas: i64,
        annotations: &[(&str, &str)],
    ) -> Result<()> {
        self.apply_deployment_with(i, name, |object| {
            object["spec"]["replicas"] = replicas.into();
            for (k, v) in annotations {
                object["metadata"]["annotations"][*k] = (*v).into();
            }
        })
        .await
    }

    /// Applies the example Deployment as `name` in tenant `i`, with 1 replica, after `change`
    /// edits the manifest (the tenant's apply owns exactly what it sends, so a field left out
    /// is removed).
    pub async fn apply_deployment_with(
        &self,
        i: usize,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<()> {
        let manifest = crate::kcp::example("tenant/deployment.yaml")?;
        let mut object: Value = serde_yaml::from_str(
            manifest
                .split("---")
                .nth(1)
                .context("example has two documents")?,
        )?;
        object["metadata"]["name"] = name.into();
        object["spec"]["replicas"] = 1.into();
        change(&mut object);
        self.tenant_deployments(i)?
            .patch(
                name,
                &PatchParams::apply("e2e-tenant").force(),
                &Patch::Apply(&object),
            )
            .await
            .with_context(|| format!("applying deployment {name} in tenant {i}"))?;
        Ok(())
    }

    /// Waits until `check` holds for the copy of `name` on `cluster` (`None` = absent).
    pub async fn wait_copy(
        &mut self,
        i: usize,
        cluster: &str,
        name: &str,
        what: &str,
        check: impl Fn(Option<&DynamicObject>) -> bool,
    ) -> Result<Option<DynamicObject>> {
        let api = self.copies(i, cluster).await?;
        let ferry = &mut self.ferry;
        eventually(
            &format!("{what} (copy of {name} on {cluster})"),
            CONVERGE,
            || {
                let api = api.clone();
                let running = ferry.check_running();
                let check = &check;
                async move {
                    running?;
                    let copy = api.get_opt(name).await?;
                    Ok(check(copy.as_ref()).then_some(copy))
                }
            },
        )
        .await
    }

    /// Waits until `check` holds for the upstream object (`None` = absent).
    pub async fn wait_upstream(
        &self,
        i: usize,
        name: &str,
        what: &str,
        check: impl Fn(Option<&DynamicObject>) -> bool,
    ) -> Result<Option<DynamicObject>> {
        let api = self.tenant_deployments(i)?;
        eventually(&format!("{what} (upstream {name})"), CONVERGE, || {
            let api = api.clone();
            let check = &check;
            async move {
                let object = api.get_opt(name).await?;
                Ok(check(object.as_ref()).then_some(object))
            }
        })
        .await
    }

    /// Waits until every cluster has (or lacks) a copy of `name` from tenant `i`.
    pub async fn wait_on_all(&mut self, i: usize, name: &str, present: bool) -> Result<()> {
        for cluster in CLUSTERS {
            let what = if present {
                "copy to exist"
            } else {
                "copy to be gone"
            };
            self.wait_copy(i, cluster, name, what, |c| c.is_some() == present)
                .await?;
        }
        Ok(())
    }
}

/// `spec.replicas` of an object.
pub fn replicas(object: Option<&DynamicObject>) -> Option<i64> {
    object?.data.pointer("/spec/replicas")?.as_i64()
}

/// Whether a Deployment's `status` says its latest spec is rolled out to `replicas` Pods,
/// every one of them updated, ready and available (the environment's kwok nodes run them).
/// A missing count is 0.
pub fn all_ready(object: Option<&DynamicObject>, replicas: i64) -> bool {
    let count = |field: &str| {
        object
            .and_then(|o| o.data.pointer(&format!("/status/{field}")))
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0)
    };
    let generation = object.and_then(|o| o.metadata.generation).unwrap_or(-1);
    count("observedGeneration") == generation
        && count("replicas") == replicas
        && count("updatedReplicas") == replicas
        && count("readyReplicas") == replicas
        && count("availableReplicas") == replicas
}

/// Mutating requests recorded in a server's audit log that were made by Ferry (user agent
/// `ferry/…`) and match `filter` (on the audit event). Servers log mutating requests only.
/// The log is rotated at 200 MB (`audit-<time>.log` beside it): rotated files count too, so a
/// count never goes down.
pub fn ferry_writes(audit_log: &std::path::Path, filter: impl Fn(&Value) -> bool) -> Result<usize> {
    writes_by_user_agent(audit_log, "ferry/", filter)
}

/// Mutating requests in a server's audit logs (rotated ones too) whose user agent starts with
/// `prefix` and that match `filter`.
pub fn writes_by_user_agent(
    audit_log: &std::path::Path,
    prefix: &str,
    filter: impl Fn(&Value) -> bool,
) -> Result<usize> {
    let dir = audit_log.parent().context("audit log has a directory")?;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit") && n.ends_with(".log"))
        })
        .collect();
    files.sort();
    let mut count = 0;
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        count += text
            .lines()
            .filter(|line| line.contains(prefix))
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| {
                event["userAgent"]
                    .as_str()
                    .is_some_and(|ua| ua.starts_with(prefix))
            })
            .filter(|event| filter(event))
            .count();
    }
    Ok(count)
}

impl Scenario {
    /// Ferry's writes so far to this scenario's mapped namespaces on the clusters, from the
    /// clusters' audit logs (independent of Ferry's own accounting).
    pub fn downstream_writes(&self) -> Result<usize> {
        let namespaces: Vec<String> = self
            .tenants
            .iter()
            .map(|t| ferry::mapped_namespace(t, "demo"))
            .collect();
        let mut writes = 0;
        for cluster in CLUSTERS {
            writes += ferry_writes(&self.env.dir.join(cluster).join("audit.log"), |event| {
                let namespace = event["objectRef"]["namespace"].as_str().or_else(|| {
                    // Namespace objects themselves are cluster-scoped: match by name.
                    (event["objectRef"]["resource"] == "namespaces")
                        .then(|| event["objectRef"]["name"].as_str())
                        .flatten()
                });
                namespace.is_some_and(|n| namespaces.iter().any(|m| m == n))
            })?;
        }
        Ok(writes)
    }

    /// Ferry's writes to kcp since its process started, from its metrics (kcp does not audit
    /// requests to virtual workspaces).
    pub async fn upstream_writes(&self) -> Result<u64> {
        self.ferry.metric("ferry_upstream_writes_total").await
    }

    /// Events on object `name` in tenant `i` with `reason`.
    pub async fn events(
        &self,
        i: usize,
        name: &str,
        reason: &str,
    ) -> Result<Vec<k8s_openapi::api::core::v1::Event>> {
        let client = self.admin.workspace(&self.tenants[i].path)?;
        let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "demo");
        Ok(api
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
            })
            .collect())
    }
}

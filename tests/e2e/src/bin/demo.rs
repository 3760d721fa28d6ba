//! The quick start's kcp side (`cargo xtask demo` runs it): `demo setup` creates the provider
//! and two tenant workspaces; `demo show` applies a Deployment in a tenant workspace and
//! shows it arriving on both clusters and its status coming back, then a Deployment kept in
//! the EU whose Secret follows it there and nowhere else. Both are idempotent.

use std::time::Duration;

use anyhow::{Result, bail};
use ferry_e2e::ferry::{deployments, mapped_namespace, platform, tenant};
use ferry_e2e::kcp::{self, KcpAdmin, Workspace};
use ferry_e2e::{CLUSTERS, Env, eventually};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::json;

const TENANTS: [&str; 2] = ["team-a", "team-b"];

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ferry_e2e::exit_code(run().await)
}

async fn run() -> Result<()> {
    let Some(env) = Env::get()? else {
        bail!("no environment running: start one with `cargo xtask env up`");
    };
    let admin = KcpAdmin::new(&env).await?;
    match std::env::args().nth(1).as_deref() {
        Some("setup") => setup(&admin).await,
        Some("show") => show(&env, &admin).await,
        _ => bail!("usage: demo setup|show"),
    }
}

async fn setup(admin: &KcpAdmin) -> Result<()> {
    println!("    root:platform exports Deployments and Services (examples/provider/)");
    let provider = platform(admin, "platform").await?;
    for name in TENANTS {
        tenant(admin, &provider, name, "demo").await?;
        println!(
            "    root:{name} binds the export and accepts its claims: events, its LogicalCluster (workspace path), configmaps, secrets (examples/tenant/)"
        );
    }
    Ok(())
}

async fn show(env: &Env, admin: &KcpAdmin) -> Result<()> {
    let team: Workspace = admin.create_workspace("root", TENANTS[0]).await?;
    let client = admin.workspace(&team.path)?;
    println!(
        "==> kubectl apply -f examples/tenant/deployment.yaml   (in {})",
        team.path
    );
    kcp::apply_manifest(&client, &kcp::example("tenant/deployment.yaml")?).await?;
    // A rerun of the demo starts from the example's placement (every cluster), whatever an
    // earlier exploration annotated.
    let upstream: Api<DynamicObject> = Api::namespaced_with(client.clone(), "demo", &deployments());
    upstream
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"sync.ferry.dev/placement": null}}})),
        )
        .await?;
    let namespace = mapped_namespace(&team, "demo");
    for cluster in CLUSTERS {
        let api: Api<DynamicObject> = Api::namespaced_with(
            env.cluster_client(cluster).await?,
            &namespace,
            &deployments(),
        );
        let copy = eventually(
            &format!("demo/web on {cluster}"),
            Duration::from_secs(60),
            || async { Ok(api.get_opt("web").await?) },
        )
        .await?;
        let replicas = copy
            .data
            .pointer("/spec/replicas")
            .and_then(|r| r.as_i64())
            .unwrap_or(0);
        println!(
            "    {cluster}: {namespace}/web (replicas {replicas}, placed and transformed by the Wasm plugins)"
        );
    }
    // The clusters' kwok nodes run the Pods: the status comes back with every replica ready.
    let status = eventually(
        "status back in kcp, every replica ready",
        Duration::from_secs(120),
        || async {
            let object = upstream.get("web").await?;
            Ok(object
                .data
                .get("status")
                .filter(|s| {
                    let count = |f: &str| s.get(f).and_then(|r| r.as_i64()).unwrap_or(0);
                    count("replicas") >= 4 && count("readyReplicas") == count("replicas")
                })
                .cloned())
        },
    )
    .await?;
    let field = |name: &str| status.get(name).and_then(|v| v.as_i64()).unwrap_or(0);
    println!(
        "    status in {}: ready {}/{}, updated {}, available {} (summed over both clusters by \
         deployment-status; the Pods run on kwok's simulated nodes)",
        team.path,
        field("readyReplicas"),
        field("replicas"),
        field("updatedReplicas"),
        field("availableReplicas"),
    );
    show_dependencies(env, &client, &namespace).await?;
    println!();
    println!("Explore (kcp base URL {}):", admin.base_url());
    println!("  source {}/env.sh", env.dir.display());
    println!(
        "  kubectl --context root --server {}/clusters/{} get deployments -n demo",
        admin.base_url(),
        team.path
    );
    println!(
        "  kubectl --context root --server {}/clusters/{} describe deployment web -n demo",
        admin.base_url(),
        team.path
    );
    println!(
        "  kubectl --kubeconfig {} get deployments -A -l sync.ferry.dev/managed-by=ferry",
        env.cluster_kubeconfig("cluster-1").display()
    );
    println!(
        "  move it to one region:  kubectl --context root --server {}/clusters/{} annotate deployment web -n demo sync.ferry.dev/placement=region=eu",
        admin.base_url(),
        team.path
    );
    println!(
        "  what Ferry would do:    target/debug/ferry preview --config {}/demo/ferry.yaml",
        env.dir.display()
    );
    println!(
        "  Ferry's log:            tail -f {}/logs/ferry.log",
        env.dir.display()
    );
    println!("Stop everything: cargo xtask env down");
    Ok(())
}

/// A Deployment annotated `region=eu` with the ConfigMap and Secret it reads: both follow it
/// to the EU cluster (`workload-dependencies`, `placement: dependents`), and the Secret never
/// reaches the US one.
async fn show_dependencies(env: &Env, client: &kube::Client, namespace: &str) -> Result<()> {
    println!(
        "==> kubectl apply -f examples/tenant/deployment-with-config.yaml   (shop, kept in the EU)"
    );
    kcp::apply_manifest(client, &kcp::example("tenant/deployment-with-config.yaml")?).await?;
    let secrets =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Secret"), "secrets");
    let config_maps = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "ConfigMap"),
        "configmaps",
    );
    let on = |cluster: &'static str, resource: ApiResource| async move {
        let client = env.cluster_client(cluster).await?;
        anyhow::Ok(Api::<DynamicObject>::namespaced_with(
            client, namespace, &resource,
        ))
    };
    let (eu, us) = (CLUSTERS[0], CLUSTERS[1]);
    for (api, name) in [
        (on(eu, deployments()).await?, "shop"),
        (on(eu, config_maps.clone()).await?, "shop-settings"),
        (on(eu, secrets.clone()).await?, "shop-db"),
    ] {
        eventually(
            &format!("{name} on {eu}"),
            Duration::from_secs(60),
            || async { Ok(api.get_opt(name).await?) },
        )
        .await?;
    }
    println!(
        "    {eu} (region eu): Deployment shop, ConfigMap shop-settings, Secret shop-db (applied before the Deployment)"
    );
    for (api, name) in [
        (on(us, deployments()).await?, "shop"),
        (on(us, secrets).await?, "shop-db"),
    ] {
        if api.get_opt(name).await?.is_some() {
            bail!("{name} reached {us} although shop is kept in the EU");
        }
    }
    println!(
        "    {us} (region us): no shop, no shop-db: a Secret goes only where a Deployment needs it"
    );
    Ok(())
}

//! kcp's api-syncagent v0.7.0 (with upstream PR #177's status fix) in the environment, as
//! `cargo xtask env api-syncagent` starts it for the sync benchmark: a Deployment in a consumer
//! workspace reaches the target, and the target's status comes back.
//!
//! Runs only when the environment runs the agent (`cargo xtask env api-syncagent`; building it
//! takes many minutes, so `cargo xtask test` does not); otherwise it says so and passes.

use std::time::Duration;

use anyhow::Result;
use ferry_e2e::bench::engine::agent_consumer;
use ferry_e2e::kcp::KcpAdmin;
use ferry_e2e::{CLUSTERS, Env, eventually};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

fn agent_running(env: &Env) -> bool {
    std::fs::read_to_string(env.dir.join("state.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .is_some_and(|state| {
            state["processes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "api-syncagent")
        })
}

#[tokio::test]
async fn api_syncagent_syncs_a_deployment_down_and_its_status_back() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    if !agent_running(&env) {
        eprintln!("skipping: api-syncagent is not running (cargo xtask env api-syncagent)");
        return Ok(());
    }
    let admin = KcpAdmin::new(&env).await?;
    let name = format!("sa-consumer-{}", ferry_e2e::unique_suffix());
    let consumer = agent_consumer(&admin, "root:api-syncagent", "api-syncagent", &name).await?;
    let upstream: Api<DynamicObject> = Api::namespaced_with(
        admin.workspace(&consumer.path)?,
        "demo",
        &ferry_e2e::ferry::deployments(),
    );
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}},
        },
    });
    upstream
        .patch(
            "web",
            &PatchParams::apply("e2e-consumer"),
            &Patch::Apply(&deployment),
        )
        .await?;

    let copies: Api<DynamicObject> = Api::namespaced_with(
        env.cluster_client(CLUSTERS[0]).await?,
        &format!("{}-demo", consumer.logical_cluster),
        &ferry_e2e::ferry::deployments(),
    );
    let ready = |o: &DynamicObject| {
        o.data
            .pointer("/status/readyReplicas")
            .and_then(|r| r.as_i64())
    };
    eventually(
        "the copy on cluster-1 to run one ready replica",
        Duration::from_secs(120),
        || async {
            Ok(copies
                .get_opt("web")
                .await?
                .filter(|c| ready(c) == Some(1))
                .map(|_| ()))
        },
    )
    .await?;
    eventually(
        "the upstream status to show the ready replica",
        Duration::from_secs(60),
        || async {
            Ok(upstream
                .get_opt("web")
                .await?
                .filter(|o| ready(o) == Some(1))
                .map(|_| ()))
        },
    )
    .await?;
    upstream.delete("web", &Default::default()).await?;
    Ok(())
}

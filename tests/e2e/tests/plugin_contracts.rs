//! Issue 12 on the real environment, the parts the dependency and workspace-context tests do
//! not cover: placement by workspace path with the v0.2.0 `label-placement`, and a v0.1.0
//! component running in the same chain as v0.2.0 ones.

use anyhow::Result;
use ferry_e2e::Env;
use ferry_e2e::ferry::FerryOptions;
use ferry_e2e::scenario::{Scenario, all_ready};

/// Tenant 0 (`root:contracts-team0-<suffix>`) is bound to `region=us` by a workspace rule;
/// tenant 1 matches no rule and falls back to the default (every target).
#[tokio::test]
async fn a_workspace_path_rule_places_one_tenants_objects_and_not_the_others() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    if env.shards()?.len() > 1 {
        // Tenant names are matched by pattern; the two-shard pass runs sync and shards only.
        return Ok(());
    }
    let options = FerryOptions {
        placement: Some(
            "{plugin: label-placement, config: {default: \"\", \
             workspaces: [{workspace: \"root:pathrule-team0-*\", targets: \"region=us\"}], \
             unknownWorkspace: \"region=eu\"}}"
                .into(),
        ),
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "pathrule", 2, options).await?;
    let result = async {
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.apply_deployment(1, "web", 1, &[]).await?;
        s.wait_copy(0, "cluster-2", "web", "copy in us", |c| c.is_some())
            .await?;
        s.wait_on_all(1, "web", true).await?;
        // The rule bounds the first tenant: nothing in eu, even once everything else settled.
        s.ferry.wait_clean(ferry_e2e::scenario::CONVERGE).await?;
        anyhow::ensure!(
            s.copies(0, "cluster-1")
                .await?
                .get_opt("web")
                .await?
                .is_none(),
            "tenant 0's Deployment reached cluster-1 (eu) despite its workspace rule"
        );
        Ok(())
    }
    .await;
    s.finish(result)
}

/// Placement by the frozen v0.1.0 fixture, transform and status by v0.2.0 first-party
/// plugins: the object lands where the v0.1.0 plugin says and its status comes back.
#[tokio::test]
async fn a_v0_1_0_placement_plugin_runs_beside_v0_2_0_transform_and_status() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let options = FerryOptions {
        placement: Some("{plugin: frozen-v0-1-0, config: {labels: {region: eu}}}".into()),
        ..FerryOptions::default()
    };
    let mut s = Scenario::start(&env, "mixed", 1, options).await?;
    let result = async {
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.wait_copy(0, "cluster-1", "web", "copy in eu", |c| c.is_some())
            .await?;
        s.wait_upstream(0, "web", "status summed back by deployment-status", |o| {
            all_ready(o, 1)
        })
        .await?;
        s.ferry.wait_clean(ferry_e2e::scenario::CONVERGE).await?;
        anyhow::ensure!(
            s.copies(0, "cluster-2")
                .await?
                .get_opt("web")
                .await?
                .is_none(),
            "the v0.1.0 plugin placed in eu only, yet cluster-2 has a copy"
        );
        Ok(())
    }
    .await;
    s.finish(result)
}

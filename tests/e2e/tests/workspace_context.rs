//! The kcp side of the v0.2.0 context on the real environment: the export claims
//! `logicalclusters`, `configmaps` and `secrets`; a tenant that accepts the claims gets its
//! workspace path (and opted-in labels) to plugins and its ConfigMaps served to Ferry; a
//! tenant that rejects them still syncs its Deployments, with the path absent and its
//! ConfigMaps out of Ferry's sight.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_core::identity::WORKSPACE;
use ferry_e2e::ferry::{self, Claims, Ferry, FerryOptions};
use ferry_e2e::kcp::KcpAdmin;
use ferry_e2e::scenario::Scenario;
use ferry_e2e::{Env, eventually};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};

fn config_maps() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps")
}

fn logical_clusters() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("core.kcp.io", "v1alpha1", "LogicalCluster"),
        "logicalclusters",
    )
}

/// The annotations of `object`.
fn annotation<'a>(object: &'a DynamicObject, key: &str) -> Option<&'a str> {
    object
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

#[tokio::test]
async fn an_accepting_tenant_gets_its_path_and_configmaps_synced_a_rejecting_one_still_syncs()
-> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let admin = KcpAdmin::new(&env).await?;
    let suffix = ferry_e2e::unique_suffix();
    let provider = ferry::platform(&admin, &format!("wsctx-platform-{suffix}")).await?;
    let accepting = ferry::tenant_with(
        &admin,
        &provider,
        &format!("wsctx-accepts-{suffix}"),
        "demo",
        Claims::AcceptAll,
    )
    .await?;
    let rejecting = ferry::tenant_with(
        &admin,
        &provider,
        &format!("wsctx-rejects-{suffix}"),
        "demo",
        Claims::EventsOnly,
    )
    .await?;
    // The tenant labels its own workspace; only `team` is opted in.
    let lc: Api<DynamicObject> =
        Api::all_with(admin.workspace(&accepting.path)?, &logical_clusters());
    lc.patch(
        "cluster",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "alpha", "cost-center": "42"}}})),
    )
    .await
    .context("labelling the accepting tenant's LogicalCluster")?;

    // Ferry runs as kcp's non-admin `user` with exactly the example's RBAC: the claims need
    // no role beyond `apiexports/content`.
    let options = FerryOptions {
        kcp_context: "user".into(),
        defer_start: true,
        kcp_extra: "  workspaceLabels: [team]\n".into(),
        // ConfigMaps go nowhere unless they ask (every namespace has kube-root-ca.crt).
        extra_resources: "- resource: configmaps\n  \
             placement: {plugin: label-placement, config: {default: \"region=nowhere\"}}\n  \
             transform: {plugin: default-transform}\n"
            .into(),
        ..FerryOptions::default()
    };
    let rbac = ferry_e2e::kcp::example("provider/rbac-ferry.yaml")?
        .replace("name: ferry\n", "name: user\n");
    ferry_e2e::kcp::apply_manifest(&admin.workspace(&provider.path)?, &rbac).await?;
    let mut ferry = Ferry::start(&env, &provider, &options)?;
    ferry.restart()?;
    let mut s = Scenario {
        env: env.clone(),
        admin,
        provider,
        tenants: vec![accepting.clone(), rejecting.clone()],
        ferry,
    };
    let result = async {
        let settings = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "demo",
                "annotations": {"sync.ferry.dev/placement": "region=eu"}},
            "data": {"greeting": "hello"},
        });
        for i in 0..2 {
            s.apply_deployment(i, "web", 1, &[("sync.ferry.dev/placement", "region=eu")])
                .await?;
            let cms: Api<DynamicObject> = Api::namespaced_with(
                s.admin.workspace(&s.tenants[i].path)?,
                "demo",
                &config_maps(),
            );
            cms.patch(
                "settings",
                &PatchParams::apply("e2e-tenant").force(),
                &Patch::Apply(&settings),
            )
            .await
            .with_context(|| format!("creating ConfigMap settings in tenant {i}"))?;
        }

        // The accepting tenant's copy records its path; the rejecting tenant's syncs without.
        let copy = s
            .wait_copy(0, "cluster-1", "web", "copy with the workspace path", |c| {
                c.and_then(|c| annotation(c, WORKSPACE)) == Some(accepting.path.as_str())
            })
            .await?
            .context("copy")?;
        ensure!(annotation(&copy, WORKSPACE) == Some(accepting.path.as_str()));
        let copy = s
            .wait_copy(1, "cluster-1", "web", "copy to exist", |c| c.is_some())
            .await?
            .context("copy")?;
        ensure!(
            annotation(&copy, WORKSPACE).is_none(),
            "a tenant that rejected the claim has no path: {:?}",
            copy.metadata.annotations
        );

        // The claimed ConfigMap is served to Ferry and placed like any resource.
        let cluster_1 = s.env.cluster_client("cluster-1").await?;
        let cluster_2 = s.env.cluster_client("cluster-2").await?;
        let tenants = s.tenants.clone();
        let copy_api = |client: &kube::Client, i: usize| -> Api<DynamicObject> {
            Api::namespaced_with(
                client.clone(),
                &ferry::mapped_namespace(&tenants[i], "demo"),
                &config_maps(),
            )
        };
        let accepted_copy = copy_api(&cluster_1, 0);
        let synced = eventually(
            "the accepting tenant's ConfigMap on cluster-1",
            Duration::from_secs(60),
            || async { Ok(accepted_copy.get_opt("settings").await?) },
        )
        .await?;
        ensure!(
            synced.data["data"]["greeting"] == "hello",
            "{:?}",
            synced.data
        );
        ensure!(
            copy_api(&cluster_2, 0).get_opt("settings").await?.is_none(),
            "placed on region=eu only"
        );
        ensure!(
            copy_api(&cluster_1, 1).get_opt("settings").await?.is_none(),
            "a tenant that rejected the claim on configmaps has its ConfigMaps out of Ferry's sight"
        );

        // What plugins see, as `ferry preview` prints it: the path and the opted-in label only.
        let (code, output) = s.ferry.command("preview", &["-o", "json"])?;
        ensure!(code == 0, "ferry preview failed: {output}");
        let json_start = output.find('[').context("JSON in preview output")?;
        let plans: Vec<Value> = serde_json::Deserializer::from_str(&output[json_start..])
            .into_iter::<Vec<Value>>()
            .next()
            .context("a JSON list")??;
        let plan_of = |cluster: &str, resource: &str| {
            plans.iter().find(|p| {
                p["resource"] == resource
                    && p["key"]["cluster"] == cluster
                    && p["key"]["name"]
                        == if resource == "configmaps" {
                            "settings"
                        } else {
                            "web"
                        }
            })
        };
        let web = plan_of(&accepting.logical_cluster, "deployments.apps")
            .with_context(|| format!("the accepting tenant's web in {plans:?}"))?;
        ensure!(
            web["workspace"] == json!({"path": accepting.path, "labels": {"team": "alpha"}}),
            "{web}"
        );
        let web = plan_of(&rejecting.logical_cluster, "deployments.apps")
            .context("the rejecting tenant's web")?;
        ensure!(web.get("workspace").is_none(), "{web}");
        ensure!(
            plan_of(&accepting.logical_cluster, "configmaps").is_some()
                && plan_of(&rejecting.logical_cluster, "configmaps").is_none(),
            "only the accepting tenant's ConfigMap is surveyed"
        );

        // The audit covers the claimed resource too, and is clean.
        let (clean, report) = s.ferry.check()?;
        ensure!(clean, "ferry check: {report}");
        ensure!(
            !report.contains("could not be listed"),
            "configmaps audited: {report}"
        );

        // A tenant relabelling its workspace has its objects planned again (a placement by
        // label may change); a label nobody opted into changes nothing.
        let replans = |log: &str| {
            log.lines()
                .filter(|l| {
                    l.contains("workspace context changed")
                        && l.contains(&format!("logical_cluster={}", accepting.logical_cluster))
                })
                .count()
        };
        let before = replans(&s.ferry.log());
        lc.patch(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"cost-center": "43"}}})),
        )
        .await?;
        lc.patch(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "beta"}}})),
        )
        .await?;
        let ferry_log = &s.ferry;
        eventually(
            "Ferry to plan the relabelled workspace's objects again",
            Duration::from_secs(30),
            || async { Ok((replans(&ferry_log.log()) > before).then_some(())) },
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        ensure!(
            replans(&s.ferry.log()) == before + 1,
            "only the opted-in label's change re-plans:\n{}",
            s.ferry.log()
        );

        // Log lines about the accepting tenant's objects name its path.
        let log = s.ferry.log();
        ensure!(
            log.contains(&format!("path={}", accepting.path)),
            "no log line names the path {}",
            accepting.path
        );

        // The rejecting tenant changes its mind: its LogicalCluster appears, its objects are
        // planned again with its path, and its ConfigMaps come into sight.
        ferry_e2e::kcp::apply_manifest(
            &s.admin.workspace(&rejecting.path)?,
            &ferry::binding_manifest(&s.provider, Claims::AcceptAll)?,
        )
        .await?;
        s.wait_copy(
            1,
            "cluster-1",
            "web",
            "copy with the path once accepted",
            |c| c.and_then(|c| annotation(c, WORKSPACE)) == Some(rejecting.path.as_str()),
        )
        .await?;
        let now_accepted = copy_api(&cluster_1, 1);
        eventually(
            "the tenant's ConfigMap on cluster-1 once it accepted the claim",
            Duration::from_secs(60),
            || async { Ok(now_accepted.get_opt("settings").await?) },
        )
        .await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

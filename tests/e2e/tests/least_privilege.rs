//! Ferry as an operator with least privilege (`deploy/`): the manifests render with plain
//! kubectl and pass a server-side dry run under the `restricted` Pod Security level; on the
//! targets, Ferry syncs with nothing but `deploy/target/`'s role, is refused anything else,
//! and the admission policy keeps `ferry-` namespaces and Ferry's labels to Ferry, even
//! against a cluster admin.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ferry_e2e::deploy::{self, FERRY_ACCOUNT, FERRY_NAMESPACE};
use ferry_e2e::ferry::{self, FerryOptions};
use ferry_e2e::scenario::Scenario;
use ferry_e2e::{CLUSTERS, Env, client_from_kubeconfig};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

#[tokio::test]
async fn the_operator_manifests_render_hardened_and_pass_a_server_dry_run() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    let objects = deploy::render(&env, &deploy::manifests(""))?;
    let namespace = deploy::object(&objects, "Namespace", FERRY_NAMESPACE)?;
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let deployment = deploy::object(&objects, "Deployment", "ferry")?;
    assert_eq!(deployment["metadata"]["namespace"], FERRY_NAMESPACE);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], FERRY_ACCOUNT);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .context("args")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        args,
        [
            "run",
            "--config",
            "/etc/ferry/ferry.yaml",
            "--leader-elect",
            "--metrics-addr",
            "0.0.0.0:8080"
        ]
    );
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "http", "{probe}");
    }
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "resources.{kind}.{resource} missing"
            );
        }
    }
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

    // The configuration the ConfigMap carries reads every kubeconfig from the Secret the
    // Deployment mounts, under a key the Secret has.
    let config_map = deploy::object(&objects, "ConfigMap", "ferry-config")?;
    let secret = deploy::object(&objects, "Secret", "ferry-kubeconfigs")?;
    let volumes = pod["volumes"].as_array().context("volumes")?;
    let mounted = |field: &str, name: &Value| volumes.iter().any(|v| v[field] == *name);
    assert!(mounted(
        "configMap",
        &json!({"name": config_map["metadata"]["name"]})
    ));
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == secret["metadata"]["name"])
    );
    let config: Value = serde_yaml::from_str(
        config_map["data"]["ferry.yaml"]
            .as_str()
            .context("ferry.yaml in the ConfigMap")?,
    )?;
    let mut kubeconfigs = vec![config["kcp"]["kubeconfig"].clone()];
    kubeconfigs.extend(
        config["targets"]
            .as_array()
            .context("targets")?
            .iter()
            .map(|t| t["kubeconfig"].clone()),
    );
    for path in kubeconfigs {
        let path = path.as_str().context("kubeconfig path")?;
        let key = path
            .strip_prefix("/etc/ferry/kubeconfigs/")
            .with_context(|| format!("{path} is not in the mounted Secret"))?;
        assert!(
            secret["data"][key].is_string(),
            "no key {key} in the Secret"
        );
    }
    ensure!(
        config["namespaces"]["podSecurity"] == "baseline",
        "the shipped configuration states the Pod Security level"
    );

    // A server-side dry run on a real API server, in the namespace as deploy/target creates
    // it (labelled restricted): every object is accepted, and Pod Security has nothing to
    // warn about the Deployment's Pods.
    let cluster = env.cluster_kubeconfig("cluster-1");
    deploy::apply_target_file(&env, "cluster-1", "identity.yaml")?;
    let output = deploy::run_kubectl(
        &env,
        &[
            "--kubeconfig",
            &cluster.to_string_lossy(),
            "apply",
            "--dry-run=server",
            "-k",
            &deploy::manifests("").to_string_lossy(),
        ],
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("deployment.apps/ferry") && stdout.contains("(server dry run)"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("PodSecurity"),
        "the Deployment's Pods would violate the restricted level:\n{stderr}"
    );

    let target = deploy::render(&env, &deploy::manifests("target"))?;
    let role = deploy::object(&target, "ClusterRole", "ferry-target")?;
    for rule in role["rules"].as_array().context("rules")? {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(
                !rule[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|v| v == "*"),
                "wildcard in {rule}"
            );
        }
        assert!(
            !rule["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r == "secrets"),
            "{rule}"
        );
    }
    deploy::object(
        &target,
        "ValidatingAdmissionPolicy",
        "ferry-reserved-namespaces",
    )?;
    deploy::object(
        &target,
        "ValidatingAdmissionPolicyBinding",
        "ferry-reserved-namespaces",
    )?;
    Ok(())
}

/// Removes the admission policy again when the test ends: other tests (run later against
/// the same environment) create `ferry-` namespaces as the admin on purpose.
struct PolicyInstalled(Env);

impl Drop for PolicyInstalled {
    fn drop(&mut self) {
        for cluster in CLUSTERS {
            let kubeconfig = self.0.cluster_kubeconfig(cluster);
            let _ = deploy::run_kubectl(
                &self.0,
                &[
                    "--kubeconfig",
                    &kubeconfig.to_string_lossy(),
                    "delete",
                    "--ignore-not-found",
                    "validatingadmissionpolicybinding,validatingadmissionpolicy",
                    "ferry-reserved-namespaces",
                ],
            );
        }
    }
}

/// The status code of a refused request, or an error if it was not refused.
fn refused<T: std::fmt::Debug>(result: kube::Result<T>) -> Result<(u16, String)> {
    match result {
        Err(kube::Error::Api(status)) => Ok((status.code, status.message)),
        other => bail!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn ferry_syncs_with_only_its_target_role_and_nobody_else_gets_its_namespaces() -> Result<()> {
    let Some(env) = Env::get()? else {
        return Ok(());
    };
    deploy::apply_target_manifests(&env)?;
    let _policy = PolicyInstalled(env.clone());
    let dir = env
        .dir
        .join("e2e")
        .join(format!("least-privilege-{}", ferry_e2e::unique_suffix()));
    let mut kubeconfigs = Vec::new();
    for cluster in CLUSTERS {
        kubeconfigs.push(
            deploy::service_account_kubeconfig(&env, cluster, FERRY_NAMESPACE, FERRY_ACCOUNT, &dir)
                .await?,
        );
    }
    // With leader election, as deployed: the Lease on cluster-1 is held with the same
    // identity, through deploy/target/leader-election.yaml alone.
    let options = FerryOptions {
        target_kubeconfigs: kubeconfigs.clone(),
        leader_elect: true,
        ..Default::default()
    };
    let mut s = Scenario::start(&env, "least-privilege", 1, options).await?;
    let result = async {
        // Sync works with the role alone: the copy and its namespace are created, status
        // comes back, and the audit of both sides with the same identity is clean.
        s.apply_deployment(0, "web", 1, &[]).await?;
        s.wait_on_all(0, "web", true).await?;
        s.wait_upstream(0, "web", "status from the copies", |o| {
            o.and_then(|o| o.data.pointer("/status/observedGeneration"))
                .is_some()
        })
        .await?;
        s.ferry.wait_clean(Duration::from_secs(60)).await?;
        ensure!(
            s.ferry.metric("ferry_leader").await? == 1,
            "Ferry does not lead with the deployed identity: {}",
            s.ferry.log()
        );
        let mapped = ferry::mapped_namespace(&s.tenants[0], "demo");

        // The same identity is refused everything outside the role.
        let as_ferry = client_from_kubeconfig(&kubeconfigs[0], None).await?;
        let secrets: Api<Secret> = Api::namespaced(as_ferry.clone(), &mapped);
        let secret = serde_json::from_value(json!({"metadata": {"name": "stolen"}}))?;
        let (code, _) = refused(secrets.create(&PostParams::default(), &secret).await)?;
        assert_eq!(code, 403, "creating a Secret");
        let (code, _) = refused(secrets.list(&Default::default()).await)?;
        assert_eq!(code, 403, "listing Secrets");
        let roles: Api<ClusterRole> = Api::all(as_ferry.clone());
        let role = serde_json::from_value(json!({
            "metadata": {"name": "ferry-escalates"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        }))?;
        let (code, _) = refused(roles.create(&PostParams::default(), &role).await)?;
        assert_eq!(code, 403, "creating a ClusterRole");
        let namespaces: Api<Namespace> = Api::all(as_ferry);
        let (code, _) = refused(namespaces.delete(&mapped, &Default::default()).await)?;
        assert_eq!(code, 403, "deleting a namespace");

        // The admin (system:masters: RBAC lets it do anything) is refused by the policy.
        let admin: Api<Namespace> = Api::all(env.cluster_client("cluster-1").await?);
        let squatted = format!("ferry-{}", ferry_e2e::unique_suffix());
        let (code, message) = refused(
            admin
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": squatted}}))?,
                )
                .await,
        )?;
        assert_eq!(code, 403, "creating {squatted}: {message}");
        assert!(message.contains("reserved for Ferry"), "{message}");

        let plain = format!("lp-{}", ferry_e2e::unique_suffix());
        let forged = json!({"metadata": {"name": plain, "labels": {
            "sync.ferry.dev/managed-by": "ferry",
            "sync.ferry.dev/cluster": s.tenants[0].logical_cluster,
        }}});
        let (code, message) = refused(
            admin
                .create(&PostParams::default(), &serde_json::from_value(forged)?)
                .await,
        )?;
        assert_eq!(code, 403, "a namespace with Ferry's labels: {message}");
        assert!(message.contains("sync.ferry.dev/managed-by"), "{message}");

        let lowered =
            json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
        let (code, message) = refused(
            admin
                .patch(&mapped, &PatchParams::default(), &Patch::Merge(&lowered))
                .await,
        )?;
        assert_eq!(code, 403, "lowering Pod Security of {mapped}: {message}");

        // Ordinary namespaces are none of the policy's business.
        admin
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": plain}}))?,
            )
            .await
            .context("an ordinary namespace")?;
        admin.delete(&plain, &Default::default()).await?;
        Ok(())
    }
    .await;
    s.finish(result)
}

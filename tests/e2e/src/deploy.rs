//! The manifests under `deploy/`: rendering them with the environment's kubectl (which embeds
//! kustomize, as an operator's would), applying `deploy/target/` to the clusters, and an
//! identity on a cluster that has exactly Ferry's target role.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::config::Kubeconfig;
use serde::Deserialize as _;
use serde_json::Value;

use crate::{CLUSTERS, Env};

/// Namespace and name of Ferry's ServiceAccount on targets (`deploy/target/identity.yaml`).
pub const FERRY_NAMESPACE: &str = "ferry-system";
/// See [`FERRY_NAMESPACE`].
pub const FERRY_ACCOUNT: &str = "ferry";

/// The kubectl the environment put on `PATH` in its `env.sh`.
pub fn kubectl(env: &Env) -> Result<PathBuf> {
    let script = env.dir.join("env.sh");
    let text = std::fs::read_to_string(&script)
        .with_context(|| format!("reading {}", script.display()))?;
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix("export PATH=\"")?.split(':').next())
        .with_context(|| format!("no PATH line in {}", script.display()))?;
    Ok(Path::new(dir).join("kubectl"))
}

/// Runs kubectl with `args`; fails with its output unless it succeeded.
pub fn run_kubectl(env: &Env, args: &[&str]) -> Result<Output> {
    let output = Command::new(kubectl(env)?)
        .args(args)
        .output()
        .context("running kubectl")?;
    if !output.status.success() {
        bail!(
            "kubectl {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// A directory of the repository's `deploy/`.
pub fn manifests(dir: &str) -> PathBuf {
    crate::repo_root().join("deploy").join(dir)
}

/// `kubectl kustomize <dir>`, each rendered object parsed.
pub fn render(env: &Env, dir: &Path) -> Result<Vec<Value>> {
    let path = dir.to_string_lossy();
    let output = run_kubectl(env, &["kustomize", &path])?;
    let text = String::from_utf8(output.stdout)?;
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).context("a rendered object is not valid YAML"))
        .collect()
}

/// The one rendered object of `kind` named `name` (generated names carry a hash suffix: a
/// name ending in `-<hash>` matches too).
pub fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .filter(|o| {
            o["metadata"]["name"].as_str().is_some_and(|n| {
                n == name || n.strip_prefix(name).is_some_and(|r| r.starts_with('-'))
            })
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        _ => bail!("expected one {kind} {name}, found {}", found.len()),
    }
}

/// Serialises applies of `deploy/target/` (or of a file in it) by tests running in
/// parallel: two first applies at once race to create the same objects, and kubectl's
/// client-side apply then fails with `AlreadyExists`.
static TARGET_APPLY: Mutex<()> = Mutex::new(());

/// Applies `deploy/target/` to every cluster of the environment as its admin (idempotent).
pub fn apply_target_manifests(env: &Env) -> Result<()> {
    let _guard = TARGET_APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = manifests("target");
    for cluster in CLUSTERS {
        kubectl_apply(env, cluster, &["-k", &dir.to_string_lossy()])
            .with_context(|| format!("applying deploy/target to {cluster}"))?;
    }
    Ok(())
}

/// Applies one file of `deploy/target/` (e.g. `identity.yaml`) to `cluster` as its admin,
/// serialised with [`apply_target_manifests`].
pub fn apply_target_file(env: &Env, cluster: &str, file: &str) -> Result<()> {
    let _guard = TARGET_APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let path = manifests("target").join(file);
    kubectl_apply(env, cluster, &["-f", &path.to_string_lossy()])
        .with_context(|| format!("applying deploy/target/{file} to {cluster}"))?;
    Ok(())
}

fn kubectl_apply(env: &Env, cluster: &str, what: &[&str]) -> Result<Output> {
    let kubeconfig = env.cluster_kubeconfig(cluster);
    let kubeconfig = kubeconfig.to_string_lossy();
    let mut args = vec!["--kubeconfig", &kubeconfig, "apply"];
    args.extend_from_slice(what);
    run_kubectl(env, &args)
}

/// A kubeconfig for `cluster` that authenticates as `namespace/account` with a one-hour
/// token from the TokenRequest API, written to `dir`. Only the token: the admin's client
/// certificate is left out, so the server sees nobody else.
pub async fn service_account_kubeconfig(
    env: &Env,
    cluster: &str,
    namespace: &str,
    account: &str,
    dir: &Path,
) -> Result<PathBuf> {
    let client = env.cluster_client(cluster).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client, namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let answer = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token for {namespace}/{account} on {cluster}"))?;
    let token = answer
        .status
        .context("TokenRequest answered without a status")?
        .token
        .context("TokenRequest answered without a token")?;
    let admin = Kubeconfig::read_from(env.cluster_kubeconfig(cluster))?;
    let server = admin
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .context("admin kubeconfig has no cluster")?;
    let url = server.server.clone().context("no server URL")?;
    let ca = server
        .certificate_authority_data
        .clone()
        .context("no certificate-authority-data")?;
    let text = format!(
        "apiVersion: v1\nkind: Config\n\
         clusters: [{{name: {cluster}, cluster: {{server: \"{url}\", certificate-authority-data: {ca}}}}}]\n\
         users: [{{name: {account}, user: {{token: \"{token}\"}}}}]\n\
         contexts: [{{name: {account}, context: {{cluster: {cluster}, user: {account}}}}}]\n\
         current-context: {account}\n"
    );
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{cluster}-{namespace}-{account}.kubeconfig"));
    std::fs::write(&path, text)?;
    Ok(path)
}

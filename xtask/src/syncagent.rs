//! `cargo xtask env api-syncagent`: kcp's api-syncagent v0.7.0 beside the environment, the engine
//! `cargo xtask bench sync` compares Ferry with.
//!
//! It gets what its documentation asks for, kept apart from every Ferry workspace: a provider
//! workspace with an empty APIExport (the agent fills it in), a kcp kubeconfig whose server is
//! that workspace, a namespace on the target for its state, and one `PublishedResource` for
//! `apps/v1` Deployments there. Consumers bind [`EXPORT`] from [`WORKSPACE`] in workspaces of
//! their own (a workspace cannot bind two exports of `deployments.apps`).
//!
//! The binary carries the two-line fix of upstream PR #177 (see `gobuild::API_SYNCAGENT`):
//! without it v0.7.0 never writes a Deployment's status back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::env::{self, kubectl};
use crate::gobuild::API_SYNCAGENT;

/// The provider workspace, under `root`.
pub const WORKSPACE: &str = "api-syncagent";
/// The APIExport (and the APIExportEndpointSlice kcp makes for it) in [`WORKSPACE`].
pub const EXPORT: &str = "api-syncagent";
/// Namespace on the target where the agent keeps its state.
pub const NAMESPACE: &str = "api-syncagent";
/// The agent's name: it labels the copies it owns with it.
pub const AGENT_NAME: &str = "ferry-bench";
/// The process name in `env status`.
pub const PROCESS: &str = "api-syncagent";

/// Options of `cargo xtask env api-syncagent`.
#[derive(clap::Args)]
pub struct Args {
    /// The target cluster it syncs Deployments to.
    #[arg(long, default_value = "cluster-1")]
    pub target: String,
    /// Stop the agent instead (its workspaces and copies stay).
    #[arg(long)]
    pub stop: bool,
}

/// `cargo xtask env api-syncagent`.
pub fn run(dir: &Path, args: &Args) -> Result<()> {
    if args.stop {
        return env::stop_service(PROCESS);
    }
    start(dir, &args.target).map(|_| ())
}

/// How to start the agent: what `prepare` writes to `<env>/api-syncagent/command.json` for the
/// benchmark, which starts and stops the agent itself.
#[derive(serde::Serialize)]
pub struct AgentCommand {
    pub binary: PathBuf,
    pub args: Vec<String>,
    /// The provider workspace and export its consumers bind.
    pub workspace: String,
    pub export: String,
}

/// Starts (or restarts) the agent for `target` in the running environment in `dir`, as a
/// service of the environment (`env down` stops it); returns its log file.
pub fn start(dir: &Path, target: &str) -> Result<PathBuf> {
    let command = prepare(dir, target)?;
    let log = env::start_service(PROCESS, &command.binary, &command.args)?;
    eprintln!(
        "==> api-syncagent {} (with upstream PR #177's status fix) syncs Deployments from \
         consumers of {} export {EXPORT} to {target}; log: {}",
        API_SYNCAGENT.version,
        command.workspace,
        log.display()
    );
    Ok(log)
}

/// Builds the agent if needed and prepares kcp and `target` for it; writes and returns the
/// command that starts it.
pub fn prepare(dir: &Path, target: &str) -> Result<AgentCommand> {
    if !env::CLUSTERS.contains(&target) {
        bail!(
            "unknown target {target:?}: the environment has {}",
            env::CLUSTERS.join(", ")
        );
    }
    let bins = API_SYNCAGENT.ensure()?;
    let kcp = dir.join("kcp.kubeconfig");
    let cluster = dir.join(format!("{target}.kubeconfig"));
    let work = dir.join("api-syncagent");
    std::fs::create_dir_all(&work)?;

    create_provider(&kcp, &work)?;
    let agent_kubeconfig = work.join("kcp-workspace.kubeconfig");
    std::fs::write(
        &agent_kubeconfig,
        workspace_kubeconfig(&std::fs::read_to_string(&kcp)?, &workspace_path())?,
    )?;
    prepare_target(&cluster, &work)?;

    let command = AgentCommand {
        binary: bins.join("api-syncagent"),
        args: vec![
            format!("--kubeconfig={}", cluster.display()),
            format!("--kcp-kubeconfig={}", agent_kubeconfig.display()),
            format!("--namespace={NAMESPACE}"),
            format!("--apiexportendpointslice-ref={EXPORT}"),
            format!("--agent-name={AGENT_NAME}"),
            // Ports of its own: Ferry's metrics and the API servers share the loopback.
            format!("--metrics-address=127.0.0.1:{}", free_port()?),
            format!("--health-address=127.0.0.1:{}", free_port()?),
        ],
        workspace: workspace_path(),
        export: EXPORT.into(),
    };
    std::fs::write(command_file(dir), serde_json::to_vec_pretty(&command)?)?;
    Ok(command)
}

/// Prepares the agent and runs it once, until its APIExport publishes Deployments (consumers
/// can bind it only then), and stops it: the benchmark starts it itself, to time its start.
pub fn publish_once(dir: &Path, target: &str) -> Result<()> {
    start(dir, target)?;
    let kcp = dir.join("kcp.kubeconfig");
    let server = workspace_server(&kcp)?;
    let published = wait(
        "api-syncagent to publish Deployments in its APIExport",
        || {
            let resources = kubectl(
                &kcp,
                &[
                    "--context=root",
                    "--server",
                    &server,
                    "get",
                    "apiexports.apis.kcp.io",
                    EXPORT,
                    "-o",
                    "jsonpath={.spec}",
                ],
            )?;
            Ok(resources.contains("deployments"))
        },
    );
    env::stop_service(PROCESS)?;
    published
}

/// Where `prepare` writes the agent's command.
pub fn command_file(dir: &Path) -> PathBuf {
    dir.join("api-syncagent").join("command.json")
}

/// `root:<WORKSPACE>`.
pub fn workspace_path() -> String {
    format!("root:{WORKSPACE}")
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The provider workspace with its empty APIExport.
fn create_provider(kcp: &Path, work: &Path) -> Result<()> {
    let workspace = work.join("workspace.yaml");
    std::fs::write(
        &workspace,
        format!(
            "apiVersion: tenancy.kcp.io/v1alpha1\nkind: Workspace\nmetadata:\n  name: \
             {WORKSPACE}\nspec: {{}}\n"
        ),
    )?;
    kubectl(
        kcp,
        &[
            "--context=root",
            "apply",
            "-f",
            &workspace.to_string_lossy(),
        ],
    )
    .context("creating the api-syncagent provider workspace")?;
    wait("the api-syncagent workspace to be Ready", || {
        let phase = kubectl(
            kcp,
            &[
                "--context=root",
                "get",
                "workspaces.tenancy.kcp.io",
                WORKSPACE,
                "-o",
                "jsonpath={.status.phase}",
            ],
        )?;
        Ok(phase.trim() == "Ready")
    })?;
    let export = work.join("apiexport.yaml");
    // Empty: the agent adds a schema per PublishedResource.
    std::fs::write(
        &export,
        format!(
            "apiVersion: apis.kcp.io/v1alpha1\nkind: APIExport\nmetadata:\n  name: {EXPORT}\nspec: {{}}\n"
        ),
    )?;
    let server = workspace_server(kcp)?;
    kubectl(
        kcp,
        &[
            "--context=root",
            "--server",
            &server,
            "apply",
            "-f",
            &export.to_string_lossy(),
        ],
    )
    .context("creating the api-syncagent APIExport")?;
    Ok(())
}

/// The URL of the provider workspace on the kcp server of `kcp`'s `root` context.
fn workspace_server(kcp: &Path) -> Result<String> {
    let server = kubectl(
        kcp,
        &[
            "--context=root",
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
    )?;
    Ok(with_workspace(server.trim(), &workspace_path()))
}

/// `server` (a kcp URL, with or without a `/clusters/…` path) pointed at workspace `path`.
fn with_workspace(server: &str, path: &str) -> String {
    let base = server.find("/clusters/").map_or(server, |i| &server[..i]);
    format!("{}/clusters/{path}", base.trim_end_matches('/'))
}

/// The admin kubeconfig `text` with every server pointed at workspace `path`: the agent takes
/// the workspace of its APIExportEndpointSlice from its kubeconfig.
fn workspace_kubeconfig(text: &str, path: &str) -> Result<String> {
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(text).context("parsing the kcp kubeconfig")?;
    let clusters = config
        .get_mut("clusters")
        .and_then(serde_yaml::Value::as_sequence_mut)
        .context("the kcp kubeconfig has no clusters")?;
    for cluster in clusters {
        if let Some(server) = cluster.get_mut("cluster").and_then(|c| c.get_mut("server")) {
            let url = server.as_str().unwrap_or_default();
            *server = serde_yaml::Value::String(with_workspace(url, path));
        }
    }
    // `root` is the admin context of `cargo xtask env up`'s kubeconfig.
    config["current-context"] = serde_yaml::Value::String("root".into());
    Ok(serde_yaml::to_string(&config)?)
}

/// On the target: the PublishedResource CRD, the agent's namespace and the PublishedResource
/// for Deployments.
fn prepare_target(cluster: &Path, work: &Path) -> Result<()> {
    // From the module itself: the wrapper module's copy exists only where the agent was built,
    // and the binary may come from the cache.
    let crd =
        crate::gobuild::module_source("github.com/kcp-dev/api-syncagent", API_SYNCAGENT.version)?
            .join("deploy/crd/kcp.io/syncagent.kcp.io_publishedresources.yaml");
    kubectl(
        cluster,
        &["apply", "--server-side", "-f", &crd.to_string_lossy()],
    )
    .context("installing the PublishedResource CRD")?;
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Established",
            "crd/publishedresources.syncagent.kcp.io",
        ],
    )?;
    let manifest = work.join("target.yaml");
    std::fs::write(&manifest, published_deployments())?;
    kubectl(cluster, &["apply", "-f", &manifest.to_string_lossy()])
        .context("creating the PublishedResource for Deployments")?;
    Ok(())
}

/// The agent's namespace and a PublishedResource for `apps/v1` Deployments. Copies keep their
/// name in a namespace per workspace (the default hashes the name; the benchmark finds copies
/// by name, and naming costs the agent nothing either way).
fn published_deployments() -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n---\n\
         apiVersion: syncagent.kcp.io/v1alpha1\nkind: PublishedResource\nmetadata:\n  name: \
         deployments\nspec:\n  resource:\n    kind: Deployment\n    apiGroup: apps\n    \
         versions: [v1]\n  naming:\n    namespace: '{{{{ .ClusterName }}}}-{{{{ \
         .Object.metadata.namespace }}}}'\n    name: '{{{{ .Object.metadata.name }}}}'\n"
    )
}

fn wait(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let last = match check() {
            Ok(true) => return Ok(()),
            Ok(false) => "not yet".to_string(),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kcp_url_is_pointed_at_the_workspace() {
        assert_eq!(
            with_workspace("https://127.0.0.1:6443/clusters/root", "root:x"),
            "https://127.0.0.1:6443/clusters/root:x"
        );
        assert_eq!(
            with_workspace("https://127.0.0.1:6443/", "root:x"),
            "https://127.0.0.1:6443/clusters/root:x"
        );
    }

    #[test]
    fn the_agent_kubeconfig_points_every_server_at_the_workspace() {
        let admin = "apiVersion: v1\nkind: Config\nclusters:\n- name: root\n  cluster:\n    \
                     server: https://127.0.0.1:1/clusters/root\n- name: base\n  cluster:\n    \
                     server: https://127.0.0.1:1/\ncurrent-context: base\n";
        let out = workspace_kubeconfig(admin, "root:api-syncagent").expect("valid kubeconfig");
        assert_eq!(
            out.matches("/clusters/root:api-syncagent").count(),
            2,
            "{out}"
        );
        assert!(out.contains("current-context: root"), "{out}");
    }

    #[test]
    fn the_published_resource_names_copies_like_their_originals() {
        let manifest = published_deployments();
        assert!(
            manifest.contains("name: '{{ .Object.metadata.name }}'"),
            "{manifest}"
        );
        assert!(manifest.contains("kind: PublishedResource"));
    }
}

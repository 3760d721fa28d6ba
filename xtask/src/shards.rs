//! The sharded kcp of `cargo xtask env up --shards 2`: a root shard, a second shard and a
//! `kcp-front-proxy` in front of both, as production kcp runs.
//!
//! The environment generates what the three share, as a real installation's PKI would:
//! - a **serving CA** that signs each server's certificate, so one CA in a kubeconfig trusts the
//!   front-proxy and every shard (clients reach the shards' virtual workspaces directly: the
//!   APIExportEndpointSlice lists the shards' own URLs);
//! - a **client CA** whose certificates every shard and the front-proxy accept: `kcp-admin`
//!   (group `system:kcp:admin`), `user` (no group), `shard-admin` (`system:masters`, for the
//!   shards' own traffic: root-shard kubeconfig, cache, front-proxy to shards) and the
//!   logical-cluster admins the workspace scheduler uses to create a workspace's logical
//!   cluster on the other shard. Certificates, unlike kcp's generated tokens, survive a restart;
//! - a **request-header CA** for the front-proxy's client certificate: a shard believes the
//!   `X-Remote-User`/`X-Remote-Group` headers only from it;
//! - one **service-account key pair**, so a token one shard issues is valid on the other.
//!
//! Each shard's `--shard-external-url` is the front-proxy; the second shard reads the root
//! shard's identities through `--root-shard-kubeconfig-file` (context `shard-base`) and the
//! root shard's embedded cache server through `--cache-kubeconfig`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::json;

use crate::env::{Launcher, free_port, kubectl, wait_until, write_audit_policy};
use crate::gobuild::{KCP, KCP_FRONT_PROXY};
use crate::pki::{self, CertFiles};

/// The shards, root first.
/// The root shard keeps the single-shard environment's process name and directory (`kcp`), so
/// `env restart kcp` and the logs are where they always were.
pub const SHARDS: [Shard; 2] = [
    Shard {
        name: "root",
        process: "kcp",
    },
    Shard {
        name: "shard-1",
        process: "kcp-shard-1",
    },
];

/// Process name of the front-proxy.
pub const FRONT_PROXY: &str = "kcp-front-proxy";

/// One kcp shard of the environment.
pub struct Shard {
    /// Its name in kcp (`kubectl get shards`, the `name` label workspaces are scheduled by).
    pub name: &'static str,
    /// Its process name in `state.json` (and its data directory).
    pub process: &'static str,
}

impl Shard {
    /// The shard-admin kubeconfig of this shard, straight to the shard (context `shard-base`).
    pub fn kubeconfig(&self, env: &Path) -> PathBuf {
        env.join("shards").join(format!("{}.kubeconfig", self.name))
    }
}

/// What `start` launched and `wait_ready` waits for.
pub struct ShardedKcp {
    ports: Vec<u16>,
    front_proxy_port: u16,
    front_proxy_args: Vec<String>,
}

/// Builds the front-proxy if it is not cached (kcp itself is built by `env up`).
pub fn ensure_binaries() -> Result<()> {
    KCP_FRONT_PROXY.ensure().map(|_| ())
}

/// Generates the shared PKI and kubeconfigs and starts both shards. The front-proxy starts in
/// [`wait_ready`], once the shards answer: it resolves the root shard's API identities at
/// start-up.
pub fn start(launcher: &mut Launcher<'_>) -> Result<ShardedKcp> {
    let env = launcher.env.to_path_buf();
    let pki_dir = env.join("kcp-pki");
    let serving_ca = pki::Ca::new(&pki_dir, "serving-ca", "ferry test kcp serving CA")?;
    let client_ca = pki::Ca::new(&pki_dir, "client-ca", "ferry test kcp client CA")?;
    let requestheader_ca = pki::Ca::new(
        &pki_dir,
        "requestheader-ca",
        "ferry test kcp front-proxy request-header CA",
    )?;
    let service_account = pki::service_account_keys(&pki_dir)?;
    let kcp_admin = client_ca.client("kcp-admin", "kcp-admin", &["system:kcp:admin"])?;
    let user = client_ca.client("user", "user", &[])?;
    let shard_admin = client_ca.client("shard-admin", "shard-admin", &["system:masters"])?;
    let logical_cluster_admin = client_ca.client(
        "logical-cluster-admin",
        "logical-cluster-admin",
        &["system:kcp:logical-cluster-admin"],
    )?;
    let external_logical_cluster_admin = client_ca.client(
        "external-logical-cluster-admin",
        "external-logical-cluster-admin",
        &["system:kcp:external-logical-cluster-admin"],
    )?;
    let front_proxy_client =
        requestheader_ca.client("front-proxy-client", "kcp-front-proxy", &[])?;

    let ports = SHARDS
        .iter()
        .map(|_| free_port())
        .collect::<Result<Vec<_>>>()?;
    let front_proxy_port = free_port()?;
    let front_proxy_url = format!("https://127.0.0.1:{front_proxy_port}");
    let root_url = format!("https://127.0.0.1:{}", ports[0]);
    let ca = &serving_ca.cert;

    // Straight to each shard as shard-admin: the second shard's root-shard kubeconfig (kcp
    // reads its context `shard-base`), the front-proxy's root kubeconfig, and readiness checks.
    std::fs::create_dir_all(env.join("shards"))?;
    for (shard, port) in SHARDS.iter().zip(&ports) {
        let url = format!("https://127.0.0.1:{port}");
        Kubeconfig::new(ca)
            .cluster("base", &url)
            .cluster("root", &format!("{url}/clusters/root"))
            .user("shard-admin", &shard_admin)
            .context("shard-base", "base", "shard-admin")
            .context("root", "root", "shard-admin")
            .write(&shard.kubeconfig(&env), "shard-base")?;
    }
    let root_shard_kubeconfig = SHARDS[0].kubeconfig(&env);
    // The root shard's embedded cache server (kcp's cache client adds `/services/cache`); it
    // admits `system:masters` client certificates only.
    let cache_kubeconfig = pki_dir.join("cache.kubeconfig");
    Kubeconfig::new(ca)
        .cluster("cache", &root_url)
        .user("shard-admin", &shard_admin)
        .context("cache", "cache", "shard-admin")
        .write(&cache_kubeconfig, "cache")?;
    // The workspace scheduler creates a workspace's LogicalCluster on the shard it picked with
    // this identity (kcp replaces the server with that shard's URL); the external one goes
    // through the front-proxy.
    let logical_cluster_admin_kubeconfig = pki_dir.join("logical-cluster-admin.kubeconfig");
    Kubeconfig::new(ca)
        .cluster("base", &root_url)
        .user("logical-cluster-admin", &logical_cluster_admin)
        .context("base", "base", "logical-cluster-admin")
        .write(&logical_cluster_admin_kubeconfig, "base")?;
    let external_logical_cluster_admin_kubeconfig =
        pki_dir.join("external-logical-cluster-admin.kubeconfig");
    Kubeconfig::new(ca)
        .cluster("base", &front_proxy_url)
        .user(
            "external-logical-cluster-admin",
            &external_logical_cluster_admin,
        )
        .context("base", "base", "external-logical-cluster-admin")
        .write(&external_logical_cluster_admin_kubeconfig, "base")?;
    // What users, tests and Ferry use: the front-proxy, as `kcp-admin` or `user`.
    Kubeconfig::new(ca)
        .cluster("root", &format!("{front_proxy_url}/clusters/root"))
        .cluster("base", &front_proxy_url)
        .user("kcp-admin", &kcp_admin)
        .user("user", &user)
        .context("root", "root", "kcp-admin")
        .context("base", "base", "kcp-admin")
        .context("user", "root", "user")
        .write(&env.join("kcp.kubeconfig"), "root")?;

    for (i, (shard, port)) in SHARDS.iter().zip(&ports).enumerate() {
        let dir = env.join(shard.process);
        std::fs::create_dir_all(&dir)?;
        let serving = serving_ca.serving(shard.name)?;
        let (etcd_client, etcd_peer) = (free_port()?, free_port()?);
        let mut args = vec![
            "start".into(),
            format!("--shard-name={}", shard.name),
            format!("--root-directory={}", dir.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--embedded-etcd-client-port={etcd_client}"),
            format!("--embedded-etcd-peer-port={etcd_peer}"),
            "--batteries-included=admin,user,workspace-types".into(),
            format!("--shard-external-url={front_proxy_url}"),
            format!("--tls-cert-file={}", serving.cert.display()),
            format!("--tls-private-key-file={}", serving.key.display()),
            format!("--client-ca-file={}", client_ca.cert.display()),
            format!(
                "--requestheader-client-ca-file={}",
                requestheader_ca.cert.display()
            ),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            format!(
                "--service-account-key-file={}",
                service_account.cert.display()
            ),
            format!(
                "--service-account-private-key-file={}",
                service_account.key.display()
            ),
            format!(
                "--logical-cluster-admin-kubeconfig={}",
                logical_cluster_admin_kubeconfig.display()
            ),
            format!(
                "--external-logical-cluster-admin-kubeconfig={}",
                external_logical_cluster_admin_kubeconfig.display()
            ),
            format!(
                "--audit-policy-file={}",
                write_audit_policy(&dir)?.display()
            ),
            format!("--audit-log-path={}", dir.join("audit.log").display()),
            "--audit-log-maxsize=200".into(),
        ];
        if i > 0 {
            args.push(format!(
                "--root-shard-kubeconfig-file={}",
                root_shard_kubeconfig.display()
            ));
            args.push(format!("--cache-kubeconfig={}", cache_kubeconfig.display()));
        }
        launcher.spawn(shard.process, &KCP.bin("kcp"), &args)?;
        launcher.state.endpoints.push((
            shard.process.to_string(),
            format!("https://127.0.0.1:{port}"),
        ));
    }

    let proxy_dir = env.join(FRONT_PROXY);
    std::fs::create_dir_all(&proxy_dir)?;
    let proxy_serving = serving_ca.serving(FRONT_PROXY)?;
    // Requests for `/clusters/<cluster>` go to the shard that holds the logical cluster (the
    // front-proxy looks it up); the backend named here is where it starts.
    let mapping = proxy_dir.join("mapping.yaml");
    std::fs::write(
        &mapping,
        serde_json::to_string_pretty(&json!([{
            "path": "/clusters/",
            "backend": root_url,
            "backend_server_ca": serving_ca.cert,
            "proxy_client_cert": front_proxy_client.cert,
            "proxy_client_key": front_proxy_client.key,
        }]))?,
    )?;
    let shards_kubeconfig = proxy_dir.join("shards.kubeconfig");
    Kubeconfig::new(ca)
        .cluster("base", &root_url)
        .user("shard-admin", &shard_admin)
        .context("base", "base", "shard-admin")
        .write(&shards_kubeconfig, "base")?;
    let front_proxy_args = vec![
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={front_proxy_port}"),
        format!("--root-directory={}", proxy_dir.display()),
        format!("--mapping-file={}", mapping.display()),
        format!("--root-kubeconfig={}", root_shard_kubeconfig.display()),
        format!("--shards-kubeconfig={}", shards_kubeconfig.display()),
        format!("--client-ca-file={}", client_ca.cert.display()),
        format!("--tls-cert-file={}", proxy_serving.cert.display()),
        format!("--tls-private-key-file={}", proxy_serving.key.display()),
    ];
    launcher
        .state
        .endpoints
        .insert(0, (FRONT_PROXY.to_string(), front_proxy_url));
    Ok(ShardedKcp {
        ports,
        front_proxy_port,
        front_proxy_args,
    })
}

/// Waits until both shards are ready, starts the front-proxy and waits until it serves the
/// root workspace and `kubectl get shards` lists both shards (workspaces can only be scheduled
/// to a shard kcp knows).
pub fn wait_ready(launcher: &mut Launcher<'_>, deadline: Instant, kcp: &ShardedKcp) -> Result<()> {
    let env = launcher.env.to_path_buf();
    for (shard, port) in SHARDS.iter().zip(&kcp.ports) {
        wait_until(launcher, deadline, shard.process, || {
            shard_ready(&env, shard)
        })?;
        eprintln!(
            "    kcp shard {} ready: https://127.0.0.1:{port} (data in {})",
            shard.name,
            env.join(shard.process).display()
        );
    }
    launcher.spawn(
        FRONT_PROXY,
        &KCP_FRONT_PROXY.bin("kcp-front-proxy"),
        &kcp.front_proxy_args,
    )?;
    wait_until(launcher, deadline, FRONT_PROXY, || front_proxy_ready(&env))?;
    eprintln!(
        "    kcp front-proxy ready: https://127.0.0.1:{} (shards: {})",
        kcp.front_proxy_port,
        SHARDS.map(|s| s.name).join(", ")
    );
    Ok(())
}

/// Whether one shard answers `/readyz`, asked straight (the front-proxy may not run yet).
fn shard_ready(env: &Path, shard: &Shard) -> Result<()> {
    let kubeconfig = shard.kubeconfig(env);
    kubectl(&kubeconfig, &["get", "--raw", "/readyz"])?;
    Ok(())
}

/// Whether the front-proxy serves the root workspace and kcp lists every shard.
fn front_proxy_ready(env: &Path) -> Result<()> {
    let kubeconfig = env.join("kcp.kubeconfig");
    kubectl(&kubeconfig, &["get", "--raw", "/readyz"])?;
    kubectl(&kubeconfig, &["get", "workspaces.tenancy.kcp.io"])?;
    let listed = kubectl(
        &kubeconfig,
        &[
            "get",
            "shards.core.kcp.io",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    )?;
    let listed: Vec<&str> = listed.split_whitespace().collect();
    let missing: Vec<&str> = SHARDS
        .iter()
        .map(|s| s.name)
        .filter(|name| !listed.contains(name))
        .collect();
    if !missing.is_empty() {
        bail!(
            "kcp lists shards [{}], not yet {}",
            listed.join(", "),
            missing.join(", ")
        );
    }
    Ok(())
}

/// After `env restart` of one of the sharded kcp's processes: waits until it is ready again.
/// Returns false if `name` is not one of them.
pub fn wait_restarted(launcher: &Launcher<'_>, deadline: Instant, name: &str) -> Result<bool> {
    let env = launcher.env;
    if name == FRONT_PROXY {
        wait_until(launcher, deadline, name, || front_proxy_ready(env))?;
        return Ok(true);
    }
    let Some(shard) = SHARDS.iter().find(|s| s.process == name) else {
        return Ok(false);
    };
    wait_until(launcher, deadline, name, || shard_ready(env, shard))?;
    // Certificates, not tokens: nothing to copy, every kubeconfig stays valid.
    Ok(true)
}

/// A kubeconfig whose servers share one CA and whose users are client certificates, all
/// embedded (the files can be copied anywhere, as tests do).
struct Kubeconfig {
    ca: String,
    clusters: Vec<serde_json::Value>,
    users: Vec<serde_json::Value>,
    contexts: Vec<serde_json::Value>,
    error: Option<anyhow::Error>,
}

fn base64_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl Kubeconfig {
    fn new(ca: &Path) -> Self {
        let (ca, error) = match base64_file(ca) {
            Ok(ca) => (ca, None),
            Err(err) => (String::new(), Some(err)),
        };
        Kubeconfig {
            ca,
            clusters: Vec::new(),
            users: Vec::new(),
            contexts: Vec::new(),
            error,
        }
    }

    fn cluster(mut self, name: &str, server: &str) -> Self {
        self.clusters.push(json!({
            "name": name,
            "cluster": {"server": server, "certificate-authority-data": self.ca},
        }));
        self
    }

    fn user(mut self, name: &str, cert: &CertFiles) -> Self {
        match (base64_file(&cert.cert), base64_file(&cert.key)) {
            (Ok(cert), Ok(key)) => self.users.push(json!({
                "name": name,
                "user": {"client-certificate-data": cert, "client-key-data": key},
            })),
            (Err(err), _) | (_, Err(err)) => self.error = Some(err),
        }
        self
    }

    fn context(mut self, name: &str, cluster: &str, user: &str) -> Self {
        self.contexts.push(json!({
            "name": name,
            "context": {"cluster": cluster, "user": user},
        }));
        self
    }

    fn write(self, path: &Path, current: &str) -> Result<()> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": self.clusters,
            "users": self.users,
            "contexts": self.contexts,
            "current-context": current,
        });
        std::fs::write(path, serde_yaml::to_string(&config)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

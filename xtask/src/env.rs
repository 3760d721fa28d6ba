//! `cargo xtask env up | down | status`: one kcp and two Kubernetes API servers on loopback.
//!
//! Every process is started in its own process group with its output in a log file, and
//! recorded in `state.json` in the environment directory *as soon as it is spawned*, so that a
//! crashed `up` leaves nothing that `down` (or the next `up`) cannot find and stop.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::gobuild::{KCP, KUBERNETES, KWOK};
use crate::{kwok, paths, pki, shards};

/// Names of the target clusters the environment starts.
pub const CLUSTERS: [&str; 2] = ["cluster-1", "cluster-2"];

/// How long servers get to become ready. kcp needs ~20-60 s on an idle 2-core machine; a busy
/// one (CI building Rust at the same time) can take several times that.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(clap::Subcommand)]
pub enum Action {
    /// Build what is missing, start kcp and the clusters, wait until they are ready.
    Up {
        /// kcp shards: 1 (one `kcp start`, the default) or 2 (a root shard and `shard-1` behind
        /// a `kcp-front-proxy`, as production kcp runs; see docs/test-environment.md).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        shards: u8,
    },
    /// Stop everything the environment started.
    Down,
    /// Show what is running, with ports and memory.
    Status,
    /// Stop one process (e.g. `kcp`, `cluster-2-apiserver`) and start it again with the same
    /// command line and data directory; for servers, wait until they are ready again.
    Restart {
        /// The process name, as `env status` lists it.
        name: String,
        /// Stop it with SIGKILL (a crash) instead of SIGTERM (a graceful shutdown).
        #[arg(long)]
        kill: bool,
    },
    /// Start kcp's api-syncagent v0.7.0 (with upstream PR #177's status fix) beside Ferry,
    /// for `cargo xtask bench sync`: its own provider workspace `root:api-syncagent` with an
    /// empty APIExport, and a PublishedResource for Deployments on the target.
    ApiSyncagent(crate::syncagent::Args),
}

pub fn run(action: Action) -> Result<()> {
    match action {
        Action::Up { shards } => up_with(shards).map(|_| ()),
        Action::Down => down(),
        Action::Status => status(),
        Action::Restart { name, kill } => restart(&paths::env_dir(), &name, kill),
        Action::ApiSyncagent(args) => crate::syncagent::run(&paths::env_dir(), &args),
    }
}

/// One process the environment started.
#[derive(Serialize, Deserialize, Clone)]
struct Proc {
    name: String,
    pid: u32,
    binary: PathBuf,
    log: PathBuf,
    /// Its arguments, so that `env restart` can start it again exactly as `up` did.
    #[serde(default)]
    args: Vec<String>,
}

/// What `up` started; written to `<env>/state.json`.
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct State {
    processes: Vec<Proc>,
    /// Name → API URL of each server, for status output.
    pub(crate) endpoints: Vec<(String, String)>,
    /// kcp shards (`env up --shards`); 0 in a state written before the option existed: 1.
    #[serde(default)]
    shards: u8,
}

impl State {
    fn shards(&self) -> u8 {
        self.shards.max(1)
    }
}

fn state_path(env: &Path) -> PathBuf {
    env.join("state.json")
}

fn load_state(env: &Path) -> Option<State> {
    let text = std::fs::read_to_string(state_path(env)).ok()?;
    serde_json::from_str(&text).ok()
}

fn save_state(env: &Path, state: &State) -> Result<()> {
    let tmp = env.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    std::fs::rename(tmp, state_path(env))?;
    Ok(())
}

/// Whether `pid` is alive *and* still runs the binary we started (pids are reused).
fn is_ours(proc: &Proc) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", proc.pid)) else {
        return false;
    };
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let alive = std::fs::read_to_string(format!("/proc/{}/stat", proc.pid))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false);
    alive && argv0 == proc.binary.as_os_str().as_encoded_bytes()
}

fn rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn signal(pid: u32, sig: libc::c_int) {
    // The pid was checked by `is_ours` just before; the process group is the process itself.
    #[allow(unsafe_code)]
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pid as libc::pid_t), sig);
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Stops every recorded process: SIGTERM, then SIGKILL after a grace period.
fn stop_processes(procs: &[Proc]) {
    let live: Vec<&Proc> = procs.iter().filter(|p| is_ours(p)).collect();
    for proc in live.iter().rev() {
        signal(proc.pid, libc::SIGTERM);
    }
    // Test data only: a short grace period, then SIGKILL. (kube-apiserver drains for longer
    // than this when etcd goes away under it at the same moment.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && live.iter().any(|p| is_ours(p)) {
        std::thread::sleep(Duration::from_millis(200));
    }
    for proc in live.iter().filter(|p| is_ours(p)) {
        eprintln!(
            "    {} (pid {}) still running 5 s after SIGTERM; sending SIGKILL",
            proc.name, proc.pid
        );
        signal(proc.pid, libc::SIGKILL);
    }
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Runs kubectl from the cache against `kubeconfig`.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(KUBERNETES.bin("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--request-timeout=10s")
        .args(args)
        .output()
        .context("running kubectl")?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tail_file(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(crate) struct Launcher<'a> {
    pub(crate) env: &'a Path,
    pub(crate) state: State,
}

impl Launcher<'_> {
    pub(crate) fn spawn(&mut self, name: &str, binary: &Path, args: &[String]) -> Result<()> {
        let log = self.env.join("logs").join(format!("{name}.log"));
        std::fs::create_dir_all(log.parent().unwrap_or(self.env))?;
        let out = File::create(&log)?;
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Own process group: a Ctrl-C in the terminal that ran `env up` does not reach it,
            // and `down` can signal the group.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        self.state.processes.push(Proc {
            name: name.to_string(),
            pid: child.id(),
            binary: binary.to_path_buf(),
            log,
            args: args.to_vec(),
        });
        save_state(self.env, &self.state)
    }

    /// Fails if process `name`, which this xtask run started, has exited. By `exited`, not
    /// `is_ours`: right after `spawn` returns, the kernel may not have set up the new
    /// program's arguments yet (the parent resumes mid-`execve`), so `/proc/<pid>/cmdline`
    /// can read empty for a process that is starting fine; `env restart` under load failed
    /// that way. Its pid cannot be reused meanwhile: it stays our unreaped child.
    fn check_alive(&self, name: &str) -> Result<()> {
        if let Some(proc) = self.state.processes.iter().find(|p| p.name == name)
            && exited(proc.pid)
        {
            bail!(
                "{name} exited during start-up; last lines of {}:\n{}",
                proc.log.display(),
                tail_file(&proc.log, 25)
            );
        }
        Ok(())
    }
}

/// Ports and paths of one target cluster.
struct ClusterPlan {
    name: &'static str,
    dir: PathBuf,
    api_port: u16,
    kubeconfig: PathBuf,
    pki: pki::ClusterPki,
}

fn start_cluster(launcher: &mut Launcher<'_>, name: &'static str) -> Result<ClusterPlan> {
    let env = launcher.env.to_path_buf();
    let dir = env.join(name);
    let pki = pki::generate(name, &dir.join("pki"))?;
    let (etcd_client, etcd_peer, api_port) = (free_port()?, free_port()?, free_port()?);
    let kubeconfig = env.join(format!("{name}.kubeconfig"));
    write_kubeconfig(&kubeconfig, name, api_port, &pki)?;

    let etcd_url = format!("http://127.0.0.1:{etcd_client}");
    let peer_url = format!("http://127.0.0.1:{etcd_peer}");
    launcher.spawn(
        &format!("{name}-etcd"),
        &KUBERNETES.bin("etcd"),
        &[
            "--name=default".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            // Test data: durability across power loss is not worth the fsync latency here.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ],
    )?;
    let audit_policy = write_audit_policy(&dir)?;
    launcher.spawn(
        &format!("{name}-apiserver"),
        &KUBERNETES.bin("kube-apiserver"),
        &[
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            "--authorization-mode=RBAC".into(),
            // As on kubeadm, kind and managed clusters: privileged containers pass API
            // validation, and Pod Security Admission is what refuses them in a namespace.
            "--allow-privileged=true".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!(
                "--service-account-key-file={}",
                pki.service_account_public_key.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            // The `kubernetes` Service would point at 127.0.0.1, which Endpoints reject.
            "--endpoint-reconciler-type=none".into(),
            format!("--audit-policy-file={}", audit_policy.display()),
            format!("--audit-log-path={}", dir.join("audit.log").display()),
            "--audit-log-maxsize=200".into(),
            "--profiling=false".into(),
        ],
    )?;
    launcher
        .state
        .endpoints
        .push((name.to_string(), format!("https://127.0.0.1:{api_port}")));
    Ok(ClusterPlan {
        name,
        dir,
        api_port,
        kubeconfig,
        pki,
    })
}

/// Starts the cluster's controller-manager and scheduler, once its API server is ready: they
/// give up when it is not healthy within about 10 s of their start, which a loaded 2-core
/// machine does not always manage.
fn start_controllers(launcher: &mut Launcher<'_>, cluster: &ClusterPlan) -> Result<()> {
    let (name, kubeconfig, pki) = (cluster.name, &cluster.kubeconfig, &cluster.pki);
    launcher.spawn(
        &format!("{name}-controller-manager"),
        &KUBERNETES.bin("kube-controller-manager"),
        &[
            format!("--kubeconfig={}", kubeconfig.display()),
            // No serving port: nothing scrapes it here, and it saves two ports per cluster.
            "--secure-port=0".into(),
            "--leader-elect=false".into(),
            format!(
                "--service-account-private-key-file={}",
                pki.service_account_key.display()
            ),
            format!("--root-ca-file={}", pki.ca_cert.display()),
            "--use-service-account-credentials=false".into(),
            "--profiling=false".into(),
        ],
    )?;
    launcher.spawn(
        &format!("{name}-scheduler"),
        &KUBERNETES.bin("kube-scheduler"),
        &[
            format!("--kubeconfig={}", kubeconfig.display()),
            "--secure-port=0".into(),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
        ],
    )?;
    Ok(())
}

/// Audit policy of every server: mutating requests only, so tests can count the writes a
/// client (by user agent) made: a quiet engine makes none at rest.
pub(crate) fn write_audit_policy(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("audit-policy.yaml");
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        &path,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
         - level: Metadata\n  verbs: [create, update, patch, delete, deletecollection]\n\
         - level: None\n",
    )?;
    Ok(path)
}

fn write_kubeconfig(path: &Path, name: &str, port: u16, pki: &pki::ClusterPki) -> Result<()> {
    let b64 = |p: &Path| -> Result<String> {
        Ok(base64::engine::general_purpose::STANDARD.encode(std::fs::read(p)?))
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: \
         https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: \
         {name}-admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: \
         {key}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: \
         {name}-admin\ncurrent-context: {name}\n",
        ca = b64(&pki.ca_cert)?,
        cert = b64(&pki.admin_cert)?,
        key = b64(&pki.admin_key)?,
    );
    std::fs::write(path, text)?;
    Ok(())
}

struct KcpPlan {
    root: PathBuf,
    port: u16,
}

fn start_kcp(launcher: &mut Launcher<'_>) -> Result<KcpPlan> {
    let root = launcher.env.join("kcp");
    std::fs::create_dir_all(&root)?;
    let (port, etcd_client, etcd_peer) = (free_port()?, free_port()?, free_port()?);
    launcher.spawn(
        "kcp",
        &KCP.bin("kcp"),
        &[
            "start".into(),
            format!("--root-directory={}", root.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--embedded-etcd-client-port={etcd_client}"),
            format!("--embedded-etcd-peer-port={etcd_peer}"),
            // `user` adds a non-admin identity (context `user` in the admin kubeconfig), so tests
            // can prove that Ferry runs with only the RBAC in examples/provider/rbac-ferry.yaml.
            "--batteries-included=admin,user,workspace-types".into(),
            format!(
                "--audit-policy-file={}",
                write_audit_policy(&root)?.display()
            ),
            format!("--audit-log-path={}", root.join("audit.log").display()),
            "--audit-log-maxsize=200".into(),
        ],
    )?;
    launcher
        .state
        .endpoints
        .push(("kcp".to_string(), format!("https://127.0.0.1:{port}")));
    Ok(KcpPlan { root, port })
}

/// What a caller (tests, demo) needs to know about a running environment.
pub struct Env {
    pub dir: PathBuf,
}

/// Whether a complete, healthy environment is already running in `dir`.
fn running(dir: &Path) -> bool {
    let Some(state) = load_state(dir) else {
        return false;
    };
    !state.processes.is_empty()
        && state.processes.iter().all(is_ours)
        && kubectl(&dir.join("kcp.kubeconfig"), &["get", "--raw", "/readyz"]).is_ok()
        && CLUSTERS.iter().all(|c| {
            kubectl(
                &dir.join(format!("{c}.kubeconfig")),
                &["get", "--raw", "/readyz"],
            )
            .is_ok()
        })
}

/// Starts the single-shard environment (or reuses a healthy running one) and returns where it
/// lives.
pub fn up() -> Result<Env> {
    up_with(1)
}

/// Starts the environment with `shards` kcp shards (or reuses a healthy running one with as
/// many) and returns where it lives.
pub fn up_with(shards: u8) -> Result<Env> {
    up_in(paths::env_dir(), shards)
}

/// [`up_with`] in environment directory `dir`.
pub fn up_in(dir: PathBuf, shards: u8) -> Result<Env> {
    KCP.ensure()?;
    if shards > 1 {
        shards::ensure_binaries()?;
    }
    KUBERNETES.ensure()?;
    KWOK.ensure()?;
    if running(&dir) {
        let running_shards = load_state(&dir).map_or(1, |s| s.shards());
        if running_shards != shards {
            bail!(
                "an environment with {running_shards} kcp shard(s) is running in {}; stop it with \
                 `cargo xtask env down` before starting one with {shards}",
                dir.display()
            );
        }
        eprintln!("==> environment already running in {}", dir.display());
        print_status(&dir)?;
        return Ok(Env { dir });
    }
    if let Some(stale) = load_state(&dir) {
        eprintln!(
            "==> cleaning up a previous environment in {}",
            dir.display()
        );
        stop_processes(&stale.processes);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing stale environment {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    eprintln!(
        "==> starting kcp{} and {} target clusters in {}",
        if shards == 1 {
            String::new()
        } else {
            format!(" ({shards} shards and a front-proxy)")
        },
        CLUSTERS.len(),
        dir.display()
    );
    let mut launcher = Launcher {
        env: &dir,
        state: State {
            shards,
            ..State::default()
        },
    };
    let result = start_all(&mut launcher);
    if let Err(err) = result {
        eprintln!("==> start-up failed; stopping what was started");
        stop_processes(&launcher.state.processes);
        return Err(err);
    }
    eprintln!("==> ready in {:.1}s", started.elapsed().as_secs_f64());
    write_env_script(&dir)?;
    print_status(&dir)?;
    Ok(Env { dir })
}

/// kcp as `start_all` started it.
enum Kcp {
    Single(KcpPlan),
    Sharded(shards::ShardedKcp),
}

fn start_all(launcher: &mut Launcher<'_>) -> Result<()> {
    let kcp = if launcher.state.shards() > 1 {
        Kcp::Sharded(shards::start(launcher)?)
    } else {
        Kcp::Single(start_kcp(launcher)?)
    };
    let clusters = CLUSTERS
        .iter()
        .map(|name| start_cluster(launcher, name))
        .collect::<Result<Vec<_>>>()?;

    let deadline = Instant::now() + READY_TIMEOUT;
    for cluster in &clusters {
        wait_until(
            launcher,
            deadline,
            &format!("{}-apiserver", cluster.name),
            || kubectl(&cluster.kubeconfig, &["get", "--raw", "/readyz"]).map(|_| ()),
        )?;
        launcher.check_alive(&format!("{}-etcd", cluster.name))?;
        start_controllers(launcher, cluster)?;
        start_kwok(launcher, deadline, cluster)?;
        for part in ["controller-manager", "scheduler"] {
            launcher.check_alive(&format!("{}-{part}", cluster.name))?;
        }
        eprintln!(
            "    {} ready: https://127.0.0.1:{} (data in {})",
            cluster.name,
            cluster.api_port,
            cluster.dir.display()
        );
    }

    let kcp = match kcp {
        Kcp::Single(kcp) => kcp,
        Kcp::Sharded(kcp) => {
            shards::wait_ready(launcher, deadline, &kcp)?;
            return save_state(launcher.env, &launcher.state);
        }
    };
    let admin = kcp.root.join("admin.kubeconfig");
    let kubeconfig = launcher.env.join("kcp.kubeconfig");
    wait_until(launcher, deadline, "kcp", || {
        if !admin.exists() {
            bail!("admin.kubeconfig not written yet");
        }
        kubectl(&admin, &["get", "--raw", "/readyz"])?;
        // Ready means the root workspace serves the tenancy API, not only /readyz.
        kubectl(
            &admin,
            &["--context=root", "get", "workspaces.tenancy.kcp.io"],
        )?;
        Ok(())
    })?;
    std::fs::copy(&admin, &kubeconfig)?;
    save_state(launcher.env, &launcher.state)?;
    eprintln!(
        "    kcp ready: https://127.0.0.1:{} (data in {})",
        kcp.port,
        kcp.root.display()
    );
    Ok(())
}

/// Creates the cluster's fake nodes, starts its kwok and waits until every node is Ready.
fn start_kwok(launcher: &mut Launcher<'_>, deadline: Instant, cluster: &ClusterPlan) -> Result<()> {
    let manifest = cluster.dir.join("kwok-nodes.json");
    std::fs::write(&manifest, kwok::nodes_manifest())?;
    let path = manifest.display().to_string();
    kubectl(&cluster.kubeconfig, &["apply", "-f", &path]).context("creating the fake nodes")?;
    let name = format!("{}-kwok", cluster.name);
    launcher.spawn(&name, &KWOK.bin("kwok"), &kwok::args(&cluster.kubeconfig))?;
    wait_until(launcher, deadline, &name, || {
        let nodes = kubectl(&cluster.kubeconfig, &["get", "nodes", "-o", "json"])?;
        let ready = kwok::ready_nodes(&nodes)?;
        if ready.len() < kwok::NODES {
            bail!("{} of {} fake nodes Ready", ready.len(), kwok::NODES);
        }
        Ok(())
    })
}

pub(crate) fn wait_until(
    launcher: &Launcher<'_>,
    deadline: Instant,
    name: &str,
    mut check: impl FnMut() -> Result<()>,
) -> Result<()> {
    loop {
        launcher.check_alive(name)?;
        let err = match check() {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        if Instant::now() > deadline {
            let log = launcher
                .state
                .processes
                .iter()
                .find(|p| p.name == name)
                .map(|p| {
                    format!(
                        "\nlast lines of {}:\n{}",
                        p.log.display(),
                        tail_file(&p.log, 25)
                    )
                })
                .unwrap_or_default();
            bail!(
                "{name} was not ready after {}s: {err}{log}",
                READY_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn write_env_script(dir: &Path) -> Result<()> {
    let script = format!(
        "# Source this file to use the Ferry test environment from a shell.\n\
         export PATH=\"{}:$PATH\"\nexport KUBECONFIG=\"{}\"\n",
        KUBERNETES.dir().display(),
        dir.join("kcp.kubeconfig").display()
    );
    std::fs::write(dir.join("env.sh"), script)?;
    Ok(())
}

fn print_status(dir: &Path) -> Result<()> {
    let Some(state) = load_state(dir) else {
        println!(
            "no environment in {} (run `cargo xtask env up`)",
            dir.display()
        );
        return Ok(());
    };
    println!("environment: {}", dir.display());
    for (name, url) in &state.endpoints {
        println!("  {name:<12} {url}");
    }
    println!("  {:<28} {:>8} {:>9}  log", "process", "pid", "rss");
    for proc in &state.processes {
        let rss = if is_ours(proc) {
            rss_mib(proc.pid).map_or("?".into(), |m| format!("{m} MiB"))
        } else {
            "stopped".into()
        };
        println!(
            "  {:<28} {:>8} {:>9}  {}",
            proc.name,
            proc.pid,
            rss,
            proc.log.display()
        );
    }
    println!("kubeconfigs:");
    if state.shards() > 1 {
        println!(
            "  kcp        {}  (the front-proxy; contexts: root, base, user)",
            dir.join("kcp.kubeconfig").display()
        );
        for shard in &shards::SHARDS {
            println!(
                "  {:<10} {}  (the shard itself as shard-admin; context: shard-base)",
                shard.name,
                shard.kubeconfig(dir).display()
            );
        }
    } else {
        println!(
            "  kcp        {}  (contexts: root, base, system:admin)",
            dir.join("kcp.kubeconfig").display()
        );
    }
    for c in CLUSTERS {
        println!(
            "  {c:<10} {}",
            dir.join(format!("{c}.kubeconfig")).display()
        );
    }
    println!("use them from a shell:");
    println!("  source {}", dir.join("env.sh").display());
    println!("  kubectl get workspaces            # kcp, root workspace");
    println!(
        "  kubectl --kubeconfig {} get ns",
        dir.join("cluster-1.kubeconfig").display()
    );
    println!("stop: cargo xtask env down");
    Ok(())
}

/// Stops the environment and removes its state (the data directories stay for inspection
/// until the next `up`).
pub fn down() -> Result<()> {
    down_in(&paths::env_dir())
}

/// [`down`] for the environment in `dir`.
pub fn down_in(dir: &Path) -> Result<()> {
    let Some(state) = load_state(dir) else {
        eprintln!("no environment running in {}", dir.display());
        return Ok(());
    };
    eprintln!(
        "==> stopping {} processes",
        state.processes.iter().filter(|p| is_ours(p)).count()
    );
    stop_processes(&state.processes);
    std::fs::remove_file(state_path(dir))?;
    eprintln!("==> stopped");
    Ok(())
}

/// Starts (or restarts) a long-running process beside the environment, e.g. the demo's Ferry,
/// recorded in `state.json` so that `env down` stops it too.
pub fn start_service(name: &str, binary: &Path, args: &[String]) -> Result<PathBuf> {
    let dir = paths::env_dir();
    let mut state = load_state(&dir).context("no environment running (cargo xtask env up)")?;
    let (old, keep): (Vec<Proc>, Vec<Proc>) =
        state.processes.into_iter().partition(|p| p.name == name);
    stop_processes(&old);
    state.processes = keep;
    let mut launcher = Launcher { env: &dir, state };
    launcher.spawn(name, binary, args)?;
    std::thread::sleep(Duration::from_secs(1));
    launcher.check_alive(name)?;
    Ok(dir.join("logs").join(format!("{name}.log")))
}

/// Stops a process started by [`start_service`] and forgets it.
pub fn stop_service(name: &str) -> Result<()> {
    let dir = paths::env_dir();
    let mut state = load_state(&dir).context("no environment running (cargo xtask env up)")?;
    let (old, keep): (Vec<Proc>, Vec<Proc>) =
        state.processes.into_iter().partition(|p| p.name == name);
    stop_processes(&old);
    state.processes = keep;
    save_state(&dir, &state)
}

fn status() -> Result<()> {
    print_status(&paths::env_dir())
}

/// `env restart <name>`: stops process `name` (SIGTERM, or SIGKILL with `kill`), starts it
/// again with the command line recorded in `state.json` (same ports, same data directory, its
/// log appended to), and waits until a server is ready again, as `up` does.
pub fn restart(dir: &Path, name: &str, kill: bool) -> Result<()> {
    let mut state = load_state(dir)
        .with_context(|| format!("no environment in {} (cargo xtask env up)", dir.display()))?;
    let Some(index) = state.processes.iter().position(|p| p.name == name) else {
        let names: Vec<&str> = state.processes.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "no process {name} in the environment (there are: {})",
            names.join(", ")
        );
    };
    let old = state.processes[index].clone();
    if old.args.is_empty() {
        bail!(
            "state.json does not record how {name} was started (an environment started by an \
             older xtask): restart the environment with `env down` and `env up`"
        );
    }
    let started = Instant::now();
    if is_ours(&old) {
        signal(old.pid, if kill { libc::SIGKILL } else { libc::SIGTERM });
        // A paused (SIGSTOPped) process handles SIGTERM only once continued.
        signal(old.pid, libc::SIGCONT);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Not `is_ours`: a dying process loses its command line before it closes its sockets.
        while !exited(old.pid) {
            if Instant::now() > deadline {
                eprintln!(
                    "    {name} (pid {}) still running 10 s after SIGTERM; sending SIGKILL",
                    old.pid
                );
                signal(old.pid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    wait_for_port(&old.args);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&old.log)?;
    std::io::Write::write_all(
        &mut log,
        format!(
            "\n===== cargo xtask env restart{} =====\n",
            if kill { " --kill" } else { "" }
        )
        .as_bytes(),
    )?;
    let child = Command::new(&old.binary)
        .args(&old.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", old.binary.display()))?;
    state.processes[index].pid = child.id();
    save_state(dir, &state)?;
    let sharded = state.shards() > 1;
    let launcher = Launcher { env: dir, state };
    let deadline = Instant::now() + READY_TIMEOUT;
    if sharded && shards::wait_restarted(&launcher, deadline, name)? {
        // Ready again; its kubeconfigs hold certificates, which a restart does not change.
    } else if name == "kcp" {
        let admin = dir.join("kcp").join("admin.kubeconfig");
        wait_until(&launcher, deadline, name, || {
            kubectl(&admin, &["get", "--raw", "/readyz"])?;
            kubectl(
                &admin,
                &["--context=root", "get", "workspaces.tenancy.kcp.io"],
            )?;
            Ok(())
        })?;
        let kubeconfig = dir.join("kcp.kubeconfig");
        if std::fs::read(&admin)? != std::fs::read(&kubeconfig).unwrap_or_default() {
            eprintln!(
                "    kcp wrote a new admin kubeconfig; copied to {} (clients holding the old \
                 one must reload it)",
                kubeconfig.display()
            );
            std::fs::copy(&admin, &kubeconfig)?;
        }
    } else if let Some(cluster) = name.strip_suffix("-apiserver") {
        let kubeconfig = dir.join(format!("{cluster}.kubeconfig"));
        wait_until(&launcher, deadline, name, || {
            kubectl(&kubeconfig, &["get", "--raw", "/readyz"]).map(|_| ())
        })?;
    } else {
        std::thread::sleep(Duration::from_secs(1));
        launcher.check_alive(name)?;
    }
    eprintln!(
        "==> {name} restarted (pid {} → {}), ready in {:.1}s",
        old.pid,
        child.id(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether `pid` has exited (gone, or a zombie: its files, sockets included, are closed).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            state.starts_with('Z') || state.starts_with('X')
        }
    }
}

/// Waits (at most 30 s) until the server port in `--secure-port=` can be listened on again.
fn wait_for_port(args: &[String]) {
    let Some(port) = args
        .iter()
        .find_map(|a| a.strip_prefix("--secure-port="))
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0)
    else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpListener::bind(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts many processes and checks each at once, as `env restart` does: a process that
    /// is starting fine must never read as exited. The process is this test binary itself
    /// (running the ignored `sleeper` below): a binary of some size widens the window in
    /// which the kernel has resumed the parent but not yet set up the child's arguments.
    #[test]
    fn a_process_just_spawned_is_alive() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("ferry-xtask-alive-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut launcher = Launcher {
            env: &dir,
            state: State::default(),
        };
        let exe = std::env::current_exe()?;
        let args = ["--ignored", "--exact", "env::tests::sleeper", "--nocapture"].map(String::from);
        let mut result = Ok(());
        for i in 0..40 {
            let name = format!("sleeper-{i}");
            launcher.spawn(&name, &exe, &args)?;
            if result.is_ok() {
                result = launcher.check_alive(&name);
            }
        }
        stop_processes(&launcher.state.processes);
        for proc in &launcher.state.processes {
            // Reap them: they are this test's children.
            let mut status = 0;
            #[allow(unsafe_code)]
            // SAFETY: waitpid(2) on our own child with a valid out-pointer.
            unsafe {
                libc::waitpid(proc.pid as libc::pid_t, &mut status, 0);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// What `a_process_just_spawned_is_alive` starts: a process that lives long enough.
    #[test]
    #[ignore = "started by a_process_just_spawned_is_alive"]
    fn sleeper() {
        std::thread::sleep(Duration::from_secs(30));
    }
}

//! Builds the test environment's Go binaries from their wrapper modules under `tests/env/`,
//! once, into the cache outside the repository.
//!
//! Each bundle is one `go build` call (so packages shared between, say, kube-apiserver and
//! kube-controller-manager compile once). A bundle is rebuilt only when its wrapper module's
//! files change: their digest is recorded beside the binaries.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::paths;

/// A set of binaries built together from one wrapper Go module.
pub struct Bundle {
    /// Short name, used in messages and in the cache directory name.
    pub name: &'static str,
    /// The version of the upstream project, part of the cache directory name.
    pub version: &'static str,
    /// The wrapper module, relative to the repository root.
    pub module_dir: &'static str,
    /// Go packages to build; each becomes a binary named after its last path element.
    pub packages: &'static [&'static str],
    /// Modules copied from the module cache into the wrapper module before building.
    pub local_copies: &'static [LocalCopy],
    /// The version the binaries report (`kubectl version`, discovery). Kubernetes components
    /// also derive their API compatibility version from it, so it must be a real one.
    pub reported_version: &'static str,
}

/// A published module copied into a (git-ignored) directory of the wrapper module, with files
/// of ours added, for a `replace … => ./dir` directive. Used where the version a project needs
/// is not on the module proxy and a published neighbour differs from it only slightly; the
/// files we add say why.
pub struct LocalCopy {
    pub module: &'static str,
    pub version: &'static str,
    /// Destination, relative to the wrapper module.
    pub dir: &'static str,
    /// (file in the wrapper module, destination inside the copy).
    pub add: &'static [(&'static str, &'static str)],
    /// Small fixes applied to the copy: each must match where it says, or the build stops
    /// (a new upstream version may have fixed or moved the code).
    pub edits: &'static [Edit],
}

/// A textual fix to one file of a [`LocalCopy`]: every occurrence of `from` becomes `to`.
pub struct Edit {
    /// File inside the copy.
    pub file: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    /// How many occurrences the fix expects.
    pub count: usize,
    /// Why, for the build log.
    pub why: &'static str,
}

/// kcp, from `tests/env/kcp` (see the comment in its go.mod for the replace directives).
pub const KCP: Bundle = Bundle {
    name: "kcp",
    version: "v0.32.3",
    module_dir: "tests/env/kcp",
    packages: &["github.com/kcp-dev/kcp/cmd/kcp"],
    reported_version: "v1.36.0+kcp-v0.32.3",
    local_copies: &[LocalCopy {
        module: "github.com/kcp-dev/virtual-workspace-framework",
        version: "v0.31.2",
        dir: "_vwf",
        add: &[(
            "_overlay/forwardingregistry_compat.go",
            "pkg/forwardingregistry/ferry_compat.go",
        )],
        edits: &[],
    }],
};

/// kcp's front-proxy, for the two-shard environment (`env up --shards 2`): the same wrapper
/// module as [`KCP`], but a bundle of its own so that the single-shard default neither builds
/// it nor rebuilds kcp for it (Go's build cache shares the compiled packages between the two).
pub const KCP_FRONT_PROXY: Bundle = Bundle {
    name: "kcp-front-proxy",
    version: KCP.version,
    module_dir: KCP.module_dir,
    packages: &["github.com/kcp-dev/kcp/cmd/kcp-front-proxy"],
    reported_version: KCP.reported_version,
    local_copies: KCP.local_copies,
};

/// kcp's api-syncagent, from `tests/env/api-syncagent`: the engine `cargo xtask bench sync`
/// compares Ferry with. v0.7.0 never writes a Deployment's status back (upstream issue #130);
/// the copy carries the two-line fix of upstream PR #177, so every benchmark result names it.
pub const API_SYNCAGENT: Bundle = Bundle {
    name: "api-syncagent",
    version: "v0.7.0",
    module_dir: "tests/env/api-syncagent",
    packages: &["github.com/kcp-dev/api-syncagent/cmd/api-syncagent"],
    local_copies: &[LocalCopy {
        module: "github.com/kcp-dev/api-syncagent",
        version: "v0.7.0",
        dir: "_syncagent",
        add: &[],
        edits: &[Edit {
            file: "internal/discovery/client.go",
            from: "subresourcesPerVersion[res.Version]",
            to: "subresourcesPerVersion[gv.Version]",
            count: 2,
            why: "upstream PR #177: built-in resources have an empty res.Version, so their \
                  status subresource was never found and statuses never synced back",
        }],
    }],
    // Only the Kubernetes libraries read these; a real Kubernetes version keeps them sane.
    reported_version: "v1.36.0",
};

/// The target clusters' binaries plus kubectl, from `tests/env/kubernetes`.
pub const KUBERNETES: Bundle = Bundle {
    name: "kubernetes",
    version: "v1.36.5",
    module_dir: "tests/env/kubernetes",
    packages: &[
        "k8s.io/kubernetes/cmd/kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-scheduler",
        "k8s.io/kubernetes/cmd/kubectl",
        "./etcd",
    ],
    local_copies: &[],
    reported_version: "v1.36.5",
};

/// kwok (simulated nodes and Pods) for the target clusters, from `tests/env/kwok`: without
/// nodes, synced Deployments never get ready replicas.
pub const KWOK: Bundle = Bundle {
    name: "kwok",
    version: "v0.8.0",
    module_dir: "tests/env/kwok",
    packages: &["sigs.k8s.io/kwok/cmd/kwok"],
    local_copies: &[],
    // kwok reads its own version from `sigs.k8s.io/kwok/pkg/consts`, not from these; the
    // flags are harmless and keep one `ldflags` for every bundle.
    reported_version: "v1.36.5",
};

impl Bundle {
    /// Directory that holds this bundle's binaries once built.
    pub fn dir(&self) -> PathBuf {
        paths::bin_dir().join(format!("{}-{}", self.name, self.version))
    }

    /// Path of one of this bundle's binaries.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    fn stamp(&self) -> Result<String> {
        let dir = paths::repo_root().join(self.module_dir);
        let mut files = Vec::new();
        collect_files(&dir, &mut files)?;
        files.retain(|f| {
            !self
                .local_copies
                .iter()
                .any(|c| f.starts_with(dir.join(c.dir)))
        });
        files.sort();
        // FNV-1a over the link flags and the files' names and contents: enough to notice an
        // edited go.mod, no extra crate.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut inputs = vec![(self.ldflags(), Vec::new())];
        for copy in self.local_copies {
            for edit in copy.edits {
                let text = [copy.dir, edit.file, edit.from, edit.to].join("\n");
                inputs.push((text, Vec::new()));
            }
        }
        for file in files {
            let rel = file
                .strip_prefix(&dir)
                .unwrap_or(&file)
                .to_string_lossy()
                .into_owned();
            let content = std::fs::read(&file)?;
            inputs.push((rel, content));
        }
        for (name, content) in inputs {
            for byte in name.bytes().chain(content) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        Ok(format!("{hash:016x}"))
    }

    fn ldflags(&self) -> String {
        let version = self.reported_version;
        let mut parts = version.trim_start_matches('v').split(['.', '+']);
        let major = parts.next().unwrap_or("1");
        let minor = parts.next().unwrap_or("0");
        [
            "k8s.io/client-go/pkg/version",
            "k8s.io/component-base/version",
        ]
        .iter()
        .map(|pkg| {
            format!(
                "-X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} \
                     -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// Builds the bundle unless the cache already holds binaries of the same wrapper module.
    pub fn ensure(&self) -> Result<PathBuf> {
        let dir = self.dir();
        let stamp_file = dir.join(".stamp");
        let stamp = self.stamp()?;
        if std::fs::read_to_string(&stamp_file).is_ok_and(|s| s.trim() == stamp) {
            return Ok(dir);
        }
        check_go()?;
        let module = paths::repo_root().join(self.module_dir);
        let started = Instant::now();
        eprintln!(
            "==> building {} {} from {} (once; cached in {})",
            self.name,
            self.version,
            self.module_dir,
            dir.display()
        );
        eprintln!("    downloading Go modules…");
        for copy in self.local_copies {
            copy.prepare(&module)?;
        }
        let out = go_command(&module)
            .args(["mod", "download"])
            .output()
            .context("running `go mod download`")?;
        if !out.status.success() {
            bail!(
                "could not download the Go modules for {} (GOPROXY={}). The Go module proxy must be \
                 reachable. go said:\n{}",
                self.name,
                std::env::var("GOPROXY").unwrap_or_else(|_| "default".into()),
                tail(&String::from_utf8_lossy(&out.stderr), 15)
            );
        }
        let staging = paths::bin_dir().join(format!(".{}-{}.partial", self.name, self.version));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)?;
        eprintln!("    compiling (a cold build takes several minutes on 2 cores)…");
        let mut child = go_command(&module)
            .arg("build")
            .arg("-v")
            .arg(format!("-ldflags={}", self.ldflags()))
            .arg("-o")
            .arg(format!("{}/", staging.display()))
            .args(self.packages)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting `go build`")?;
        let mut log = Vec::new();
        let mut count = 0usize;
        if let Some(stderr) = child.stderr.take() {
            for line in BufReader::new(stderr).lines() {
                let line = line?;
                // `go build -v` names each package as it compiles it; anything else is an error.
                if line.contains(' ') || line.starts_with('#') {
                    log.push(line);
                } else {
                    count += 1;
                    if count.is_multiple_of(200) {
                        eprintln!(
                            "    {}: {count} packages compiled ({}s)",
                            self.name,
                            started.elapsed().as_secs()
                        );
                    }
                }
            }
        }
        let status = child.wait()?;
        if !status.success() {
            bail!(
                "building {} failed:\n{}",
                self.name,
                tail(&log.join("\n"), 40)
            );
        }
        std::fs::write(staging.join(".stamp"), &stamp)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staging, &dir)?;
        eprintln!(
            "    built {} in {}s ({count} packages)",
            self.name,
            started.elapsed().as_secs()
        );
        Ok(dir)
    }
}

impl LocalCopy {
    fn prepare(&self, module: &Path) -> Result<()> {
        let spec = format!("{}@{}", self.module, self.version);
        let source = module_source(self.module, self.version)?;
        let dest = module.join(self.dir);
        let _ = std::fs::remove_dir_all(&dest);
        copy_tree(&source, &dest)?;
        for (from, to) in self.add {
            std::fs::copy(module.join(from), dest.join(to))
                .with_context(|| format!("adding {from} to the copy of {spec}"))?;
        }
        for edit in self.edits {
            edit.apply(&dest, &spec)?;
        }
        Ok(())
    }
}

impl Edit {
    fn apply(&self, copy: &Path, spec: &str) -> Result<()> {
        let path = copy.join(self.file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} in the copy of {spec}", self.file))?;
        let found = text.matches(self.from).count();
        if found != self.count {
            bail!(
                "the fix for {spec} expects `{}` {} times in {}, found it {found} times: \
                 review the fix for this version",
                self.from,
                self.count,
                self.file
            );
        }
        std::fs::write(&path, text.replace(self.from, self.to))?;
        eprintln!("    patched {} in {spec}: {}", self.file, self.why);
        Ok(())
    }
}

/// The directory of `module` at `version` in Go's module cache (downloaded from the module
/// proxy if it is not there yet).
pub fn module_source(module: &str, version: &str) -> Result<PathBuf> {
    let spec = format!("{module}@{version}");
    // Run outside any wrapper module: their go.mod files point at local copies.
    let out = go_command(&std::env::temp_dir())
        .env("GOFLAGS", "-mod=mod")
        .args(["mod", "download", "-json", &spec])
        .output()
        .context("running `go mod download`")?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("`go mod download {spec}` printed no JSON"))?;
    let Some(source) = info.get("Dir").and_then(|d| d.as_str()) else {
        bail!(
            "could not download {spec} from the Go module proxy: {}",
            info["Error"]
        );
    };
    Ok(PathBuf::from(source))
}

/// Copies a directory tree; files come out writable (the module cache's are read-only).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::write(&target, std::fs::read(entry.path())?)?;
        }
    }
    Ok(())
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn go_command(module: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(module)
        // Static binaries, no C toolchain needed.
        .env("CGO_ENABLED", "0")
        // Never download a different Go toolchain: only the module proxy is reachable.
        .env("GOTOOLCHAIN", "local")
        // The checksum database does not know every kcp-dev staging module version; go.sum
        // in the wrapper module pins them instead.
        .env("GONOSUMDB", "github.com/kcp-dev")
        .env("GOFLAGS", "-mod=readonly");
    cmd
}

/// Fails with an actionable message when Go is missing or too old.
pub fn check_go() -> Result<()> {
    let out = Command::new("go").arg("version").output();
    let text = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => bail!(
            "Go is not installed (or not on PATH). The test environment builds kcp and Kubernetes \
             from their Go modules and needs Go 1.26 or newer: install it from your distribution \
             or go.dev, make sure `go version` works, and run this again."
        ),
    };
    let version = text.split_whitespace().nth(2).unwrap_or_default();
    let minor = version
        .trim_start_matches("go1.")
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if version.starts_with("go1.") && minor.is_some_and(|m| m < 26) {
        bail!("{version} is too old: kcp v0.32 and Kubernetes 1.36 need Go 1.26 or newer");
    }
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

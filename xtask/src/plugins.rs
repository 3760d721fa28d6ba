//! `cargo xtask plugins`: builds the Wasm plugins (first-party ones in `plugins/` and the test
//! fixtures in `tests/plugins/`) into components.
//!
//! Two build routes, picked automatically (see docs/plugins.md):
//! - **rustup**: where a rustup toolchain has the `wasm32-wasip2` target (a usual developer
//!   machine), plain `cargo build --target wasm32-wasip2`; rustc links the component itself.
//! - **debian**: elsewhere (CI and these machines, where `rustup target add` is not possible),
//!   Debian's `rustc-web` with `-Zbuild-std` for `wasm32-unknown-unknown`, linked into a
//!   component by `wasm-component-ld` (installed from crates.io into the cache) driving
//!   LLVM's `wasm-ld`. Missing packages and tools are installed here, so a fresh machine works.
//!
//! Build outputs are cached outside the repo (`$FERRY_CACHE/plugins-target`, or beside
//! `$CARGO_TARGET_DIR` when that is set; cache default
//! `~/.cache/ferry`); finished components land in `<cargo target dir>/plugins/<name>.wasm`
//! (or `$FERRY_PLUGIN_DIR`), where the runtime's tests and the engine look for them.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail, ensure};

use crate::paths::{self, cache_dir, repo_root};

/// Debian packages of the Debian route: Rust 1.96 with its source (for `-Zbuild-std`) and
/// LLVM's Wasm linker.
const APT_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "lld-19"];
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library";
const LLVM_BIN: &str = "/usr/lib/llvm-19/bin";
/// Pinned so every machine links with the same componentizer.
const WASM_COMPONENT_LD: &str = "wasm-component-ld@0.5.31";

/// Options of `cargo xtask plugins`.
#[derive(clap::Args, Default)]
pub struct Args {
    /// Build route; `auto` takes rustup's wasm32-wasip2 target when installed, else Debian's Rust.
    #[arg(long, value_enum, default_value_t = RouteChoice::Auto)]
    route: RouteChoice,
    /// Also run the plugins' own unit tests, natively with the host toolchain (their logic
    /// is plain Rust; only the export glue is Wasm-specific).
    #[arg(long)]
    test: bool,
    /// Build only these plugins (package names); all of them by default.
    names: Vec<String>,
}

impl Args {
    /// Every plugin, on the automatic route, with the guests' own unit tests: what
    /// `cargo xtask test` runs.
    pub fn with_guest_tests() -> Self {
        Self {
            test: true,
            ..Self::default()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
enum RouteChoice {
    #[default]
    Auto,
    Rustup,
    Debian,
}

/// A build route, ready to run.
struct Route {
    name: &'static str,
    target: &'static str,
    cargo: OsString,
    /// Extra environment for the guest build.
    env: Vec<(&'static str, OsString)>,
    /// Extra cargo arguments.
    args: Vec<&'static str>,
}

/// Builds every plugin component.
pub fn run(args: Args) -> anyhow::Result<()> {
    let root = repo_root();
    let cache = cache_dir();
    let out_dir = components_dir(&root);
    let manifest = root.join("plugins").join("Cargo.toml");

    if args.test {
        unit_tests(&manifest)?;
    }

    let route = match args.route {
        RouteChoice::Rustup => rustup_route()?,
        RouteChoice::Debian => debian_route(&cache)?,
        RouteChoice::Auto if rustup_has_wasip2() => rustup_route()?,
        RouteChoice::Auto => debian_route(&cache)?,
    };
    println!(
        "plugins: building with the {} route (target {})",
        route.name, route.target
    );

    let packages = plugin_packages(&route, &manifest)?;
    let selected: Vec<&Package> = if args.names.is_empty() {
        packages.iter().collect()
    } else {
        for name in &args.names {
            ensure!(
                packages.iter().any(|p| &p.name == name),
                "no plugin named {name:?}; known: {}",
                packages
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        packages
            .iter()
            .filter(|p| args.names.contains(&p.name))
            .collect()
    };

    let target_dir = paths::plugins_build_dir("plugins-target");
    let started = Instant::now();
    let mut cargo = Command::new(&route.cargo);
    cargo
        // From the plugins workspace, so that its `.cargo/config.toml` (guest link flags)
        // applies.
        .current_dir(root.join("plugins"))
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(route.target)
        .arg("--manifest-path")
        .arg(&manifest)
        .args(&route.args)
        .env("CARGO_TARGET_DIR", &target_dir)
        // Host flags (e.g. `-C target-cpu=native`) must not leak into a Wasm build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .envs(route.env.iter().map(|(k, v)| (k, v)));
    for p in &selected {
        cargo.arg("-p").arg(&p.name);
    }
    let status = cargo.status().context("running the guest cargo build")?;
    ensure!(status.success(), "the plugin build failed ({status})");
    println!("plugins: cargo build took {:.1?}", started.elapsed());

    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let built = target_dir.join(route.target).join("release");
    for p in selected {
        let from = built.join(format!("{}.wasm", p.lib_name));
        let to = out_dir.join(format!("{}.wasm", p.name));
        let bytes = fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        // Layer 1 in the preamble marks a component; a core module (layer 0) means the
        // linker did not componentize, which the runtime would refuse anyway.
        ensure!(
            bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0],
            "{} is not a Wasm component (was it linked by wasm-component-ld?)",
            from.display()
        );
        if fs::read(&to).ok().as_deref() != Some(&bytes[..]) {
            fs::write(&to, &bytes).with_context(|| format!("writing {}", to.display()))?;
        }
        println!(
            "plugins: {:<24} {:>8} bytes  {}",
            p.name,
            bytes.len(),
            to.display()
        );
    }
    Ok(())
}

/// `cargo test` of the plugins workspace on the host: selector parsing and other pure logic
/// get ordinary unit tests. Separate target directory: host and Wasm builds never share one.
fn unit_tests(manifest: &Path) -> anyhow::Result<()> {
    println!("plugins: running the plugins' unit tests natively");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["test", "--manifest-path"])
        .arg(manifest)
        .env(
            "CARGO_TARGET_DIR",
            paths::plugins_build_dir("plugins-host-target"),
        )
        .status()
        .context("running cargo test on the plugins workspace")?;
    ensure!(
        status.success(),
        "the plugins' unit tests failed ({status})"
    );
    Ok(())
}

struct Package {
    name: String,
    lib_name: String,
}

/// Packages of the plugins workspace that build a `cdylib`: one component each.
fn plugin_packages(route: &Route, manifest: &Path) -> anyhow::Result<Vec<Package>> {
    let output = Command::new(&route.cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .envs(route.env.iter().map(|(k, v)| (k, v)))
        .output()
        .context("running cargo metadata on the plugins workspace")?;
    ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let mut packages = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        for target in package["targets"].as_array().into_iter().flatten() {
            let cdylib = target["crate_types"]
                .as_array()
                .is_some_and(|types| types.iter().any(|t| t == "cdylib"));
            if cdylib {
                packages.push(Package {
                    name: package["name"].as_str().unwrap_or_default().to_owned(),
                    lib_name: target["name"]
                        .as_str()
                        .unwrap_or_default()
                        .replace('-', "_"),
                });
            }
        }
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(packages)
}

fn rustup_has_wasip2() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == "wasm32-wasip2")
        })
}

fn rustup_route() -> anyhow::Result<Route> {
    ensure!(
        rustup_has_wasip2(),
        "the rustup route needs `rustup target add wasm32-wasip2`"
    );
    Ok(Route {
        name: "rustup",
        target: "wasm32-wasip2",
        cargo: "cargo".into(),
        env: Vec::new(),
        args: Vec::new(),
    })
}

fn debian_route(cache: &Path) -> anyhow::Result<Route> {
    let have_packages = Path::new(DEBIAN_RUSTC).is_file()
        && Path::new(DEBIAN_CARGO).is_file()
        && Path::new(DEBIAN_RUST_SRC).is_dir()
        && Path::new(LLVM_BIN).join("wasm-ld").is_file();
    if !have_packages {
        install_apt_packages()?;
    }
    let linker = wasm_component_ld(cache)?;
    // Debian's cargo must drive Debian's rustc, not the rustup proxy that is first on PATH;
    // wasm-component-ld finds `wasm-ld` on PATH.
    let path = env::join_paths(
        std::iter::once(PathBuf::from(LLVM_BIN))
            .chain(env::split_paths(&env::var_os("PATH").unwrap_or_default())),
    )?;
    Ok(Route {
        name: "debian",
        target: "wasm32-unknown-unknown",
        cargo: DEBIAN_CARGO.into(),
        env: vec![
            ("RUSTC", DEBIAN_RUSTC.into()),
            ("RUSTDOC", "/usr/bin/rustdoc".into()),
            ("RUSTUP_TOOLCHAIN", "".into()),
            // -Zbuild-std is a nightly flag; Debian's stable toolchain allows it this way.
            ("RUSTC_BOOTSTRAP", "1".into()),
            (
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER",
                linker.into_os_string(),
            ),
            ("PATH", path),
        ],
        args: vec!["-Zbuild-std=std,panic_abort"],
    })
}

fn install_apt_packages() -> anyhow::Result<()> {
    // Only root may run apt-get; anyone else gets the command to run.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        bail!(
            "the Debian plugin build route needs `apt-get install {}` (run it as root), \
             or a rustup toolchain with `rustup target add wasm32-wasip2`",
            APT_PACKAGES.join(" ")
        );
    }
    println!(
        "plugins: installing {} with apt-get",
        APT_PACKAGES.join(" ")
    );
    let update = Command::new("apt-get").args(["update", "-q"]).status()?;
    ensure!(update.success(), "apt-get update failed ({update})");
    let install = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(APT_PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    ensure!(install.success(), "apt-get install failed ({install})");
    Ok(())
}

/// `wasm-component-ld` from the cache, installed there with the host's cargo if missing.
fn wasm_component_ld(cache: &Path) -> anyhow::Result<PathBuf> {
    let root = cache.join("tools");
    let bin = root.join("bin").join("wasm-component-ld");
    if bin.is_file() {
        return Ok(bin);
    }
    println!(
        "plugins: installing {WASM_COMPONENT_LD} into {}",
        root.display()
    );
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["install", "--locked", WASM_COMPONENT_LD, "--root"])
        .arg(&root)
        .env("CARGO_TARGET_DIR", cache.join("tools-target"))
        .status()
        .context("running cargo install")?;
    ensure!(
        status.success(),
        "installing {WASM_COMPONENT_LD} failed ({status})"
    );
    Ok(bin)
}

/// Where finished components go: `$FERRY_PLUGIN_DIR`, else `<cargo target dir>/plugins`.
/// The runtime's tests look in the same place (`ferry_wasm::testing::plugin_dir`).
fn components_dir(root: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("FERRY_PLUGIN_DIR") {
        return absolute(PathBuf::from(dir));
    }
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(|d| absolute(PathBuf::from(d)))
        .unwrap_or_else(|| root.join("target"));
    target.join("plugins")
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        env::current_dir()
            .map(|cwd| cwd.join(&path))
            .unwrap_or(path)
    }
}

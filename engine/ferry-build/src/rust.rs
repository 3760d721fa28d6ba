//! Rust guests: `cargo build` for Wasm on one of two routes, picked automatically (see
//! docs/plugins.md, "Building plugins"):
//! - **rustup**: where a rustup toolchain has the `wasm32-wasip2` target (a usual developer
//!   machine), plain `cargo build --target wasm32-wasip2`; rustc links the component itself.
//! - **debian**: elsewhere (CI and machines where `rustup target add` is not possible),
//!   Debian's `rustc-web` with `-Zbuild-std` for `wasm32-unknown-unknown`, linked into a
//!   component by `wasm-component-ld` (installed from crates.io into the cache) driving
//!   LLVM's `wasm-ld`. Missing packages and tools are installed here, so a fresh machine works.
//!
//! `cargo xtask plugins` (every crate of the `plugins/` workspace) and `ferry plugin build`
//! (one crate) both build through here.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{BuildError, command};

/// Debian packages of the Debian route: Rust with its source (for `-Zbuild-std`) and
/// LLVM's Wasm linker.
const APT_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "lld-19"];
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library";
const LLVM_BIN: &str = "/usr/lib/llvm-19/bin";
/// Pinned so every machine links with the same componentizer.
const WASM_COMPONENT_LD: &str = "wasm-component-ld@0.5.31";

/// Which route to build on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RouteChoice {
    /// rustup's `wasm32-wasip2` when installed, else Debian's Rust.
    #[default]
    Auto,
    /// rustup's `wasm32-wasip2` target.
    Rustup,
    /// Debian's `rustc-web` with `-Zbuild-std`.
    Debian,
}

/// A build route, ready to run.
pub struct Route {
    /// `rustup` or `debian`.
    pub name: &'static str,
    /// The cargo target triple.
    pub target: &'static str,
    cargo: OsString,
    /// Extra environment for the guest build.
    env: Vec<(&'static str, OsString)>,
    /// Extra cargo arguments.
    args: Vec<&'static str>,
}

impl Route {
    /// The route `choice` names, installing what it needs (Debian packages as root,
    /// `wasm-component-ld` into `cache/tools`).
    pub fn pick(choice: RouteChoice, cache: &Path) -> Result<Self, BuildError> {
        match choice {
            RouteChoice::Rustup => rustup_route(),
            RouteChoice::Debian => debian_route(cache),
            RouteChoice::Auto if rustup_has_wasip2() => rustup_route(),
            RouteChoice::Auto => debian_route(cache),
        }
    }

    /// `cargo` of this route, with its environment, for `manifest`'s workspace.
    pub fn cargo(&self) -> Command {
        let mut cargo = Command::new(&self.cargo);
        cargo.envs(self.env.iter().map(|(k, v)| (k, v)));
        cargo
    }

    /// `cargo build --release` of `packages` of the workspace of `manifest` into
    /// `target_dir`, run from `workspace_dir` so that its `.cargo/config.toml` (guest link
    /// flags) applies. Returns the folder the `.wasm` files land in.
    pub fn build(
        &self,
        manifest: &Path,
        workspace_dir: &Path,
        packages: &[&str],
        target_dir: &Path,
    ) -> Result<PathBuf, BuildError> {
        let mut cargo = self.cargo();
        cargo
            .current_dir(workspace_dir)
            .args([
                "build",
                "--release",
                "--target",
                self.target,
                "--manifest-path",
            ])
            .arg(manifest)
            .args(&self.args)
            .env("CARGO_TARGET_DIR", target_dir)
            // Host flags (e.g. `-C target-cpu=native`) must not leak into a Wasm build.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("RUSTC_WRAPPER");
        for p in packages {
            cargo.arg("-p").arg(p);
        }
        command::run(&mut cargo)?;
        Ok(target_dir.join(self.target).join("release"))
    }

    /// Packages of the workspace of `manifest` that build a `cdylib`: one component each.
    /// With `only_manifest`, just the package of that manifest.
    pub fn packages(
        &self,
        manifest: &Path,
        only_manifest: bool,
    ) -> Result<Vec<Package>, BuildError> {
        let mut cargo = self.cargo();
        cargo
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(manifest);
        let output = command::output(&mut cargo)?;
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| BuildError::Invalid(format!("cargo metadata: {e}")))?;
        let wanted = std::fs::canonicalize(manifest).ok();
        let mut packages = Vec::new();
        for package in metadata["packages"].as_array().into_iter().flatten() {
            if only_manifest {
                let path = package["manifest_path"].as_str().map(PathBuf::from);
                if path.and_then(|p| std::fs::canonicalize(p).ok()) != wanted {
                    continue;
                }
            }
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
}

/// A crate that builds one component.
pub struct Package {
    /// The package name: the component's name.
    pub name: String,
    /// The library target's name, as the `.wasm` file is named.
    pub lib_name: String,
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

fn rustup_route() -> Result<Route, BuildError> {
    if !rustup_has_wasip2() {
        return Err(BuildError::MissingTool {
            tool: "rustup's wasm32-wasip2 target",
            hint: "run `rustup target add wasm32-wasip2`",
        });
    }
    Ok(Route {
        name: "rustup",
        target: "wasm32-wasip2",
        cargo: "cargo".into(),
        env: Vec::new(),
        args: Vec::new(),
    })
}

fn debian_route(cache: &Path) -> Result<Route, BuildError> {
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
    )
    .map_err(|e| BuildError::Invalid(format!("PATH: {e}")))?;
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

fn install_apt_packages() -> Result<(), BuildError> {
    // Only root may run apt-get; anyone else gets the command to run.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Err(BuildError::Invalid(format!(
            "the Debian plugin build route needs `apt-get install {}` (run it as root), \
             or a rustup toolchain with `rustup target add wasm32-wasip2`",
            APT_PACKAGES.join(" ")
        )));
    }
    println!(
        "plugins: installing {} with apt-get",
        APT_PACKAGES.join(" ")
    );
    command::run(Command::new("apt-get").args(["update", "-q"]))?;
    command::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(APT_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// `wasm-component-ld` from the cache, installed there with the host's cargo if missing.
fn wasm_component_ld(cache: &Path) -> Result<PathBuf, BuildError> {
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
    command::run(
        Command::new(cargo)
            .args(["install", "--locked", WASM_COMPONENT_LD, "--root"])
            .arg(&root)
            .env("CARGO_TARGET_DIR", cache.join("tools-target")),
    )?;
    Ok(bin)
}

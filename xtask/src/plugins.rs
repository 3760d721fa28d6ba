//! `cargo xtask plugins`: builds the Wasm plugins (first-party ones in `plugins/` and the test
//! fixtures in `tests/plugins/`) into components.
//!
//! Rust crates build through `ferry_build::rust` (the rustup or the Debian route, picked
//! automatically; see docs/plugins.md); the Python and JavaScript plugins (folders of
//! `plugins/` and `tests/plugins/` with `pyproject.toml`/`app.py` or `package.json`) through
//! `ferry_build::build`, the same code as `ferry plugin build`.
//!
//! Build outputs are cached outside the repo (`$FERRY_CACHE/plugins-target`, or beside
//! `$CARGO_TARGET_DIR` when that is set; cache default
//! `~/.cache/ferry`); finished components land in `<cargo target dir>/plugins/<name>.wasm`
//! (or `$FERRY_PLUGIN_DIR`), where the runtime's tests and the engine look for them.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, ensure};
use ferry_build::rust::Route;

use crate::paths::{self, cache_dir, repo_root};

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

impl From<RouteChoice> for ferry_build::RouteChoice {
    fn from(choice: RouteChoice) -> Self {
        match choice {
            RouteChoice::Auto => Self::Auto,
            RouteChoice::Rustup => Self::Rustup,
            RouteChoice::Debian => Self::Debian,
        }
    }
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

    let route_choice = args.route;
    let route = Route::pick(route_choice.into(), &cache)?;
    println!(
        "plugins: building with the {} route (target {})",
        route.name, route.target
    );

    let packages = route.packages(&manifest, false)?;
    let other_languages = other_language_plugins(&root);
    let selected: Vec<&ferry_build::rust::Package> = if args.names.is_empty() {
        packages.iter().collect()
    } else {
        for name in &args.names {
            ensure!(
                packages.iter().any(|p| &p.name == name)
                    || other_languages.iter().any(|d| d.ends_with(name)),
                "no plugin named {name:?}; known: {}",
                packages
                    .iter()
                    .map(|p| p.name.clone())
                    .chain(other_languages.iter().map(|d| file_name(d)))
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
    let names: Vec<&str> = selected.iter().map(|p| p.name.as_str()).collect();
    let built = if names.is_empty() {
        target_dir.join(route.target).join("release")
    } else {
        route.build(&manifest, &root.join("plugins"), &names, &target_dir)?
    };
    println!("plugins: cargo build took {:.1?}", started.elapsed());

    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for p in selected {
        let from = built.join(format!("{}.wasm", p.lib_name));
        let to = out_dir.join(format!("{}.wasm", p.name));
        let bytes = fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        ensure!(
            ferry_build::is_component(&bytes),
            "{} is not a Wasm component (was it linked by wasm-component-ld?)",
            from.display()
        );
        ferry_build::write_if_changed(&to, &bytes)?;
        println!(
            "plugins: {:<24} {:>8} bytes  {}",
            p.name,
            bytes.len(),
            to.display()
        );
    }
    build_other_languages(&root, &out_dir, &other_languages, &args.names, route_choice)?;
    Ok(())
}

/// Python and JavaScript plugins (and fixtures): folders of `plugins/` and `tests/plugins/`
/// whose language is not Rust, the SDKs excepted.
fn other_language_plugins(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for parent in [root.join("plugins"), root.join("tests").join("plugins")] {
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let sdk = file_name(&dir).starts_with("sdk");
            if !sdk
                && matches!(
                    ferry_build::Language::detect(&dir),
                    Ok(ferry_build::Language::Python | ferry_build::Language::JavaScript)
                )
            {
                dirs.push(dir);
            }
        }
    }
    dirs.sort();
    dirs
}

fn file_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Builds the Python and JavaScript plugins named on the command line into `out_dir`, with
/// the same tools `ferry plugin build` uses.
fn build_other_languages(
    root: &Path,
    out_dir: &Path,
    dirs: &[PathBuf],
    names: &[String],
    route: RouteChoice,
) -> anyhow::Result<()> {
    let options = ferry_build::Options {
        cache: cache_dir(),
        work_dir: paths::plugins_build_dir("plugins-target"),
        route: route.into(),
        sources: ferry_build::Sources::in_checkout(root),
    };
    for dir in dirs {
        let name = file_name(dir);
        // Only when named: each needs python3 or node and costs a minute or more to build.
        // `cargo xtask languages` builds and tests them through the `ferry` CLI.
        if !names.contains(&name) {
            continue;
        }
        let out = out_dir.join(format!("{name}.wasm"));
        let built = ferry_build::build(dir, Some(&out), &options)?;
        println!(
            "plugins: {:<24} {:>8} bytes  {} ({}, {:.1?})",
            built.name,
            built.bytes,
            built.path.display(),
            built.language.flag(),
            built.took
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

//! `cargo xtask languages`: the plugin loop in every language, through the `ferry` CLI exactly
//! as a platform team runs it. A step of `cargo xtask test` (`--no-languages` skips it).
//!
//! 1. The Python and JavaScript ports of `label-placement` are built with `ferry plugin
//!    build` into the components folder and pass the Rust plugin's golden cases with `ferry
//!    plugin test` (their `cases` folders are links to it).
//! 2. In a fresh temporary folder, outside the checkout: `ferry plugin new x --lang L`,
//!    `ferry plugin build x`, `ferry plugin test x`, for Python, JavaScript and Rust.
//!
//! Tools (componentize-py, componentize-js and rolldown, wasm-component-ld) are installed
//! into `$FERRY_CACHE` on first use and reused afterwards; each step's wall time is printed so
//! CI's cold cost can be read from its log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::paths;

/// The ports of `label-placement` that must pass its golden cases.
const PORTS: [&str; 2] = ["label-placement-python", "label-placement-js"];

/// The languages of the `new`, `build`, `test` loop.
const LANGUAGES: [&str; 3] = ["python", "js", "rust"];

/// Runs both parts; the `ferry` binary is built first (debug, as the tests use).
pub fn run() -> Result<()> {
    let started = Instant::now();
    let ferry = build_ferry()?;
    let root = paths::repo_root();
    let components = paths::target_dir().join("plugins");
    std::fs::create_dir_all(&components)
        .with_context(|| format!("creating {}", components.display()))?;
    for port in PORTS {
        let out = components.join(format!("{port}.wasm"));
        step(
            &ferry,
            &root,
            &["plugin", "build"],
            &[&root.join("plugins").join(port)],
            Some(&out),
        )?;
        step(
            &ferry,
            &root,
            &["plugin", "test"],
            &[&out, &root.join("plugins/label-placement/cases")],
            None,
        )?;
    }

    let scratch = std::env::temp_dir().join(format!("ferry-plugin-loop-{}", std::process::id()));
    // A folder of our own, removed afterwards whatever happened.
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let result: Result<()> = (|| {
        for lang in LANGUAGES {
            let name = format!("x-{lang}");
            let dir = scratch.join(&name);
            step(
                &ferry,
                &scratch,
                &["plugin", "new", &name, "--lang", lang],
                &[],
                None,
            )?;
            step(&ferry, &scratch, &["plugin", "build"], &[&dir], None)?;
            step(&ferry, &scratch, &["plugin", "test"], &[&dir], None)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
    eprintln!(
        "==> languages: every plugin loop passed in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

/// `cargo build -p ferry`; the binary's path.
fn build_ferry() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("==> cargo build -p ferry");
    let status = Command::new(cargo)
        .current_dir(paths::repo_root())
        .args(["build", "--package", "ferry"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building ferry failed");
    }
    Ok(paths::target_dir().join("debug").join("ferry"))
}

/// Runs `ferry <args> <paths> [--out <out>]` in `cwd`, printing the command and its wall
/// time; fails unless it exits 0.
fn step(
    ferry: &Path,
    cwd: &Path,
    args: &[&str],
    paths: &[&Path],
    out: Option<&Path>,
) -> Result<()> {
    let mut command = Command::new(ferry);
    command.current_dir(cwd).args(args).args(paths);
    if let Some(out) = out {
        command.arg("--out").arg(out);
    }
    let shown = std::iter::once("ferry".into())
        .chain(command.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<String>>()
        .join(" ");
    eprintln!("==> {shown}");
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("running {shown}"))?;
    eprintln!("    {:.1?}", started.elapsed());
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

//! `ferry plugin build [dir]`: builds the plugin in `dir` (default the current directory)
//! into a component, whatever its language (`ferry_build`), installing the toolchain into the
//! cache the first time.

use std::path::{Path, PathBuf};

use super::{Failure, OrUsage};

/// Arguments of `ferry plugin build`.
#[derive(clap::Args)]
pub struct Args {
    /// The plugin's folder: a Rust crate (Cargo.toml), a Python plugin (pyproject.toml or
    /// app.py) or a JavaScript plugin (package.json).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where to write the component; default `<dir>/target/<name>.wasm`.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let built = ferry_build::build(&args.dir, args.out.as_deref(), &options())
        .map_err(|e| Failure::usage(&anyhow::Error::new(e)))?;
    println!(
        "built {} ({}, {} bytes) in {:.1} s: {}",
        built.name,
        built.language.flag(),
        built.bytes,
        built.took.as_secs_f64(),
        built.path.display()
    );
    Ok(())
}

/// The build options of the `ferry` CLI: the cache of `$FERRY_CACHE` (default
/// `~/.cache/ferry`), and the contract and SDKs of the checkout this binary was built from.
pub fn options() -> ferry_build::Options {
    let cache = cache_dir();
    let work_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| cache.clone(), PathBuf::from);
    ferry_build::Options {
        sources: ferry_build::Sources::in_checkout(&ferry_wasm::testing::repo_root()),
        cache,
        work_dir,
        route: ferry_build::RouteChoice::Auto,
    }
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("ferry");
    }
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
        .join(".cache")
        .join("ferry")
}

/// The component `ferry plugin build <dir>` writes for the plugin in `dir`, when `dir` is a
/// plugin folder: `ferry plugin test <dir>` and `run <dir>` use it.
pub fn component_of(dir: &Path) -> Option<Result<PathBuf, Failure>> {
    let language = ferry_build::Language::detect(dir).ok()?;
    let name = ferry_build::plugin_name(dir, language, &options())
        .map_err(anyhow::Error::new)
        .or_usage();
    Some(name.and_then(|name| {
        let path = ferry_build::default_output(dir, &name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Failure::usage(&anyhow::anyhow!(
                "{} is not built yet: run `ferry plugin build {}` first",
                path.display(),
                dir.display()
            )))
        }
    }))
}

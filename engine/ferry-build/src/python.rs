//! Python guests: `componentize-py` (from the Python package registry, pinned) bundles
//! CPython, the plugin's modules and the SDK (`plugins/sdk-python`) into one component,
//! initialised at build time. It is installed once into a virtual environment in the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{BuildError, Sources, command};

/// Pinned so every machine builds the same interpreter into its components.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The `componentize-py` of the cache, installed there on first use.
pub fn componentize_py(cache: &Path) -> Result<PathBuf, BuildError> {
    let venv = cache.join("tools").join("componentize-py-0.25.1");
    let bin = venv.join("bin").join("componentize-py");
    if bin.is_file() {
        return Ok(bin);
    }
    if !command::available("python3") {
        return Err(BuildError::MissingTool {
            tool: "python3",
            hint: "Python plugins need Python 3.10 or newer with its venv module (e.g. `apt-get install python3 python3-venv`)",
        });
    }
    println!(
        "plugins: installing {COMPONENTIZE_PY} into {}",
        venv.display()
    );
    command::output(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    command::run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        COMPONENTIZE_PY,
    ]))?;
    Ok(bin)
}

/// Builds `app.py` of `dir` (with the modules beside it and the SDK) into `out`.
pub(crate) fn build(
    dir: &Path,
    sources: &Sources,
    cache: &Path,
    out: &Path,
) -> Result<(), BuildError> {
    if !dir.join("app.py").is_file() {
        return Err(BuildError::Invalid(format!(
            "{} has no app.py: a Python plugin's entry module is app.py",
            dir.display()
        )));
    }
    let tool = componentize_py(cache)?;
    command::run(
        Command::new(tool)
            .arg("-d")
            .arg(&sources.wit)
            .args(["-w", "plugin", "componentize", "app", "-p"])
            .arg(dir)
            .arg("-p")
            .arg(&sources.python_sdk)
            .arg("-o")
            .arg(out)
            .current_dir(dir),
    )
}

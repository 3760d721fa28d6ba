//! Builds Ferry plugins into Wasm components, whatever their language: one entry point for
//! `ferry plugin build` and `cargo xtask plugins`, which install what they need into the
//! cache (`$FERRY_CACHE`, default `~/.cache/ferry`) the first time.
//!
//! - **Rust** (`Cargo.toml`): `cargo build` for Wasm ([`rust`]).
//! - **Python** (`pyproject.toml` or `app.py`): `componentize-py` ([`python`]).
//! - **JavaScript** (`package.json`): `rolldown` then `componentize-js` ([`js`]).
//!
//! Python and JavaScript components import WASI for their language runtime; Ferry's runtime
//! grants it as deterministic stubs (docs/plugins.md, "Determinism without WASI").
#![deny(missing_docs)]

mod command;
mod error;
pub mod js;
pub mod python;
pub mod rust;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use error::BuildError;
pub use rust::RouteChoice;

/// A plugin's language, told by the files in its folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// `Cargo.toml`.
    Rust,
    /// `pyproject.toml` or `app.py`.
    Python,
    /// `package.json`.
    JavaScript,
}

impl Language {
    /// The language of the plugin in `dir`. `Cargo.toml` wins over the others (a Rust crate
    /// may carry a package.json for its tooling), then `package.json`, then Python.
    pub fn detect(dir: &Path) -> Result<Self, BuildError> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Self::Rust)
        } else if dir.join("package.json").is_file() {
            Ok(Self::JavaScript)
        } else if dir.join("pyproject.toml").is_file() || dir.join("app.py").is_file() {
            Ok(Self::Python)
        } else {
            Err(BuildError::UnknownLanguage {
                dir: dir.to_owned(),
            })
        }
    }

    /// The name `ferry plugin new --lang` takes: `rust`, `python` or `js`.
    #[must_use]
    pub fn flag(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Python => "python",
            Self::JavaScript => "js",
        }
    }
}

/// What a Python or JavaScript build takes from a Ferry checkout: the WIT contract and the
/// SDK of each language.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The contract's folder, `wit/v0.2.0`.
    pub wit: PathBuf,
    /// `plugins/sdk-python` (the `ferry_plugin` package).
    pub python_sdk: PathBuf,
    /// `plugins/sdk-js` (the `ferry-plugin` module).
    pub js_sdk: PathBuf,
}

impl Sources {
    /// The sources of the Ferry checkout at `root`.
    #[must_use]
    pub fn in_checkout(root: &Path) -> Self {
        Self {
            wit: root.join("wit").join("v0.2.0"),
            python_sdk: root.join("plugins").join("sdk-python"),
            js_sdk: root.join("plugins").join("sdk-js"),
        }
    }
}

/// Where a build puts things and which Rust route it takes.
#[derive(Clone, Debug)]
pub struct Options {
    /// Tool installs (`tools/`) live here.
    pub cache: PathBuf,
    /// Intermediate build output (cargo's target dir, JavaScript bundles).
    pub work_dir: PathBuf,
    /// The Rust route.
    pub route: RouteChoice,
    /// The contract and SDKs.
    pub sources: Sources,
}

/// A built component.
#[derive(Debug)]
pub struct Built {
    /// The plugin's name (the crate's, else the folder's).
    pub name: String,
    /// Its language.
    pub language: Language,
    /// The component file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: usize,
    /// Wall time of the build, tool installs included.
    pub took: Duration,
}

/// The plugin's name: a Rust crate's package name, else the folder's name.
pub fn plugin_name(
    dir: &Path,
    language: Language,
    options: &Options,
) -> Result<String, BuildError> {
    if language == Language::Rust {
        let route = rust::Route::pick(options.route, &options.cache)?;
        let packages = route.packages(&dir.join("Cargo.toml"), true)?;
        return packages.into_iter().next().map(|p| p.name).ok_or_else(|| {
            BuildError::Invalid(format!(
                "{} builds no cdylib: add `[lib] crate-type = [\"cdylib\"]`",
                dir.join("Cargo.toml").display()
            ))
        });
    }
    folder_name(dir)
}

fn folder_name(dir: &Path) -> Result<String, BuildError> {
    let absolute = std::fs::canonicalize(dir).map_err(BuildError::io("cannot resolve", dir))?;
    absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| BuildError::Invalid(format!("{} has no name", dir.display())))
}

/// Where `ferry plugin build <dir>` writes the component: `<dir>/target/<name>.wasm`.
#[must_use]
pub fn default_output(dir: &Path, name: &str) -> PathBuf {
    dir.join("target").join(format!("{name}.wasm"))
}

/// Builds the plugin in `dir` into `out` (default [`default_output`]).
pub fn build(dir: &Path, out: Option<&Path>, options: &Options) -> Result<Built, BuildError> {
    let started = Instant::now();
    let language = Language::detect(dir)?;
    let dir = &std::fs::canonicalize(dir).map_err(BuildError::io("cannot resolve", dir))?;
    let (name, built) = match language {
        Language::Rust => {
            let route = rust::Route::pick(options.route, &options.cache)?;
            let manifest = dir.join("Cargo.toml");
            let package = route
                .packages(&manifest, true)?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    BuildError::Invalid(format!("{} builds no cdylib", manifest.display()))
                })?;
            println!(
                "plugins: building {} with the {} route (target {})",
                package.name, route.name, route.target
            );
            let release = route.build(
                &manifest,
                dir,
                &[package.name.as_str()],
                &options.work_dir.join("plugins-target"),
            )?;
            (
                package.name,
                Some(release.join(format!("{}.wasm", package.lib_name))),
            )
        }
        Language::Python | Language::JavaScript => (folder_name(dir)?, None),
    };
    let out = out.map_or_else(|| default_output(dir, &name), Path::to_path_buf);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(BuildError::io("cannot create", parent))?;
    }
    match (language, built) {
        (Language::Rust, Some(from)) => {
            let bytes = std::fs::read(&from).map_err(BuildError::io("cannot read", &from))?;
            write_if_changed(&out, &bytes)?;
        }
        (Language::Python, _) => python::build(dir, &options.sources, &options.cache, &out)?,
        (Language::JavaScript, _) => {
            let stage = options.work_dir.join("js-stage").join(&name);
            js::build(dir, &options.sources, &options.cache, &stage, &out)?;
        }
        (Language::Rust, None) => {}
    }
    let bytes = std::fs::read(&out).map_err(BuildError::io("cannot read", &out))?;
    if !is_component(&bytes) {
        return Err(BuildError::Invalid(format!(
            "{} is not a Wasm component",
            out.display()
        )));
    }
    Ok(Built {
        name,
        language,
        path: out,
        bytes: bytes.len(),
        took: started.elapsed(),
    })
}

/// Writes `bytes` to `path` unless it already holds them (keeps the file's time for
/// anything watching it).
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        std::fs::write(path, bytes).map_err(BuildError::io("cannot write", path))?;
    }
    Ok(())
}

/// Whether `bytes` are a Wasm component: layer 1 in the preamble. A core module (layer 0)
/// means the linker did not componentize, which the runtime would refuse anyway.
#[must_use]
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in files {
            std::fs::write(dir.path().join(f), "").expect("write");
        }
        dir
    }

    #[test]
    fn the_language_is_told_by_the_files_of_the_folder() {
        let cases: &[(&[&str], Language)] = &[
            (&["Cargo.toml"], Language::Rust),
            (&["Cargo.toml", "package.json"], Language::Rust),
            (&["package.json", "index.js"], Language::JavaScript),
            (&["pyproject.toml"], Language::Python),
            (&["app.py"], Language::Python),
        ];
        for (files, expected) in cases {
            let dir = folder_with(files);
            assert_eq!(
                Language::detect(dir.path()).expect("detect"),
                *expected,
                "{files:?}"
            );
        }
    }

    #[test]
    fn a_folder_without_a_plugin_says_what_it_looked_for() {
        let dir = folder_with(&["README.md"]);
        let err = Language::detect(dir.path()).expect_err("no plugin");
        let text = err.to_string();
        assert!(
            text.contains("Cargo.toml")
                && text.contains("pyproject.toml")
                && text.contains("package.json"),
            "{text}"
        );
    }

    #[test]
    fn only_layer_one_wasm_is_a_component() {
        assert!(is_component(b"\0asm\x0d\0\x01\0"));
        assert!(!is_component(b"\0asm\x01\0\0\0"));
        assert!(!is_component(b"\0as"));
    }
}

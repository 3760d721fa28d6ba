//! Finding the plugin components that `cargo xtask plugins` builds, for tests, the
//! benchmark and tools.

use std::env;
use std::path::{Path, PathBuf};

/// A component that has not been built.
#[derive(Debug, thiserror::Error)]
#[error("plugin component {path} is missing: run `cargo xtask plugins` first")]
pub struct MissingComponent {
    /// Where it was expected.
    pub path: PathBuf,
}

/// The directory holding built components: `$FERRY_PLUGIN_DIR`, else
/// `$CARGO_TARGET_DIR/plugins`, else `<repository>/target/plugins`. `cargo xtask plugins`
/// writes to the same place.
#[must_use]
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = env::var_os("FERRY_PLUGIN_DIR") {
        return absolute(PathBuf::from(dir));
    }
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        return absolute(PathBuf::from(dir)).join("plugins");
    }
    repo_root().join("target").join("plugins")
}

/// The component of plugin `name` (e.g. `default-transform`), or an error that says how
/// to build it.
pub fn component(name: &str) -> Result<PathBuf, MissingComponent> {
    let path = plugin_dir().join(format!("{name}.wasm"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(MissingComponent { path })
    }
}

/// The repository root, known at compile time from this crate's location
/// (`engine/ferry-wasm`).
#[must_use]
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    // Cargo runs tests from the package directory while the variable was set relative to
    // wherever the developer typed the command; the repository root is the best guess.
    repo_root().join(path)
}

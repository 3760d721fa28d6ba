//! Where things live: the repository, the build cache outside it, and the environment directory.

use std::path::PathBuf;

/// The repository root (the parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The cache for heavy builds, outside the repository so a fresh clone reuses it:
/// `$FERRY_CACHE`, else `$XDG_CACHE_HOME/ferry`, else `~/.cache/ferry`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("ferry");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache").join("ferry")
}

/// A build directory for the plugins workspace (`plugins-target` for the Wasm guests,
/// `plugins-host-target` for their native tests and lints): beside `$CARGO_TARGET_DIR` when that
/// is set, so two checkouts building at once never overwrite each other's SDK builds; otherwise
/// in the cache, shared by every clone.
pub fn plugins_build_dir(name: &str) -> PathBuf {
    from_env("CARGO_TARGET_DIR").map_or_else(|| cache_dir().join(name), |dir| dir.join(name))
}

/// Directory of cached binaries (kcp, kube-apiserver, etcd, kubectl, …).
pub fn bin_dir() -> PathBuf {
    cache_dir().join("bin")
}

/// The environment directory: `$FERRY_ENV_DIR`, else `target/ferry-env` in the repository.
/// Relative paths are taken from the repository root so every command agrees on it.
pub fn env_dir() -> PathBuf {
    from_env("FERRY_ENV_DIR").unwrap_or_else(|| repo_root().join("target").join("ferry-env"))
}

/// A directory from an environment variable; relative paths are taken from the repository.
fn from_env(var: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(var)?);
    Some(if dir.is_absolute() {
        dir
    } else {
        repo_root().join(dir)
    })
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/` in the repository.
pub fn target_dir() -> PathBuf {
    from_env("CARGO_TARGET_DIR").unwrap_or_else(|| repo_root().join("target"))
}

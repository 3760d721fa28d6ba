//! Finding a plugin component from what a user wrote: a path to a `.wasm` file or the name of
//! a first-party plugin. `ferry run` (through `ferry.yaml`) and the `ferry plugin` commands
//! share this, so a name means the same component everywhere.

use std::path::{Path, PathBuf};

/// Where first-party plugins are looked up when nothing more specific is configured:
/// `$FERRY_PLUGIN_DIR`, else `plugins/` beside the directory of the `ferry` binary
/// (`target/debug/ferry` finds the components `cargo xtask plugins` writes to
/// `target/plugins/`; an installed `/usr/local/bin/ferry` looks in `/usr/local/plugins`).
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FERRY_PLUGIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.join("plugins"))
}

/// Whether `reference` names a file rather than a first-party plugin.
pub fn is_path(reference: &str) -> bool {
    reference.contains('/') || reference.ends_with(".wasm")
}

/// The component `reference` means: a path (relative to `base`) when it looks like one,
/// else `<dir>/<reference>.wasm`. The error is one sentence that says what to do.
pub fn find(reference: &str, base: &Path, dir: Option<&Path>) -> Result<PathBuf, String> {
    if is_path(reference) {
        let path = if Path::new(reference).is_absolute() {
            PathBuf::from(reference)
        } else {
            base.join(reference)
        };
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{} does not exist", path.display()))
        };
    }
    let Some(dir) = dir else {
        return Err(format!(
            "no plugin directory to find {reference:?} in; set plugins.dir or $FERRY_PLUGIN_DIR"
        ));
    };
    let path = dir.join(format!("{reference}.wasm"));
    if path.is_file() {
        return Ok(path);
    }
    let mut available: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".wasm"))
                .map(str::to_string)
        })
        .collect();
    available.sort();
    Err(format!(
        "no plugin {reference:?} in {} (available: {}; build them with `cargo xtask plugins`, or give a path to a .wasm file)",
        dir.display(),
        if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_looked_up_in_the_directory_and_a_path_is_taken_as_given() {
        let dir = std::env::temp_dir().join(format!("ferry-lookup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("p.wasm"), "").expect("write");
        assert_eq!(
            find("p", Path::new("/"), Some(&dir)),
            Ok(dir.join("p.wasm"))
        );
        assert_eq!(find("p.wasm", &dir, None), Ok(dir.join("p.wasm")));
        let missing = find("q", Path::new("/"), Some(&dir)).expect_err("missing");
        assert!(missing.contains("available: p"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

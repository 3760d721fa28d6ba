//! JavaScript guests: the plugin's entry module and everything it imports (the SDK as
//! `ferry-plugin`, npm packages from its own `node_modules`) are bundled into one ES module
//! by `rolldown`, then `componentize-js` (SpiderMonkey) turns the bundle into a component,
//! initialised at build time. Both come from the npm registry, pinned, installed once into
//! the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{BuildError, Sources, command};

/// Pinned npm packages: the componentizer and the bundler.
pub const PACKAGES: &[&str] = &["@bytecodealliance/componentize-js@0.23.0", "rolldown@1.3.3"];

/// The tools' install folder in the cache (`node_modules/.bin/...` below it), installed on
/// first use.
pub fn tools(cache: &Path) -> Result<PathBuf, BuildError> {
    let prefix = cache.join("tools").join("componentize-js-0.23.0");
    let ready = ["componentize-js", "rolldown"]
        .iter()
        .all(|b| prefix.join("node_modules/.bin").join(b).exists());
    if ready {
        return Ok(prefix);
    }
    for (tool, present) in [
        ("node", command::available("node")),
        ("npm", command::available("npm")),
    ] {
        if !present {
            return Err(BuildError::MissingTool {
                tool: if tool == "node" { "node" } else { "npm" },
                hint: "JavaScript plugins need Node.js 20 or newer with npm (e.g. `apt-get install nodejs npm`)",
            });
        }
    }
    println!(
        "plugins: installing {} into {}",
        PACKAGES.join(" "),
        prefix.display()
    );
    std::fs::create_dir_all(&prefix).map_err(BuildError::io("cannot create", &prefix))?;
    command::run(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&prefix)
            .args(PACKAGES),
    )?;
    Ok(prefix)
}

/// The entry module of `dir`: `main` of its package.json, else `index.js`.
fn entry(dir: &Path) -> Result<PathBuf, BuildError> {
    let manifest = dir.join("package.json");
    let text =
        std::fs::read_to_string(&manifest).map_err(BuildError::io("cannot read", &manifest))?;
    let package: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| BuildError::Invalid(format!("{}: {e}", manifest.display())))?;
    let main = package["main"].as_str().unwrap_or("index.js");
    let path = dir.join(main);
    if path.is_file() {
        Ok(path)
    } else {
        Err(BuildError::Invalid(format!(
            "{} names the entry module {main}, which does not exist",
            manifest.display()
        )))
    }
}

/// Bundles and componentizes `dir` into `out`, staging the bundle in `stage`.
pub(crate) fn build(
    dir: &Path,
    sources: &Sources,
    cache: &Path,
    stage: &Path,
    out: &Path,
) -> Result<(), BuildError> {
    let entry = entry(dir)?;
    let tools = tools(cache)?;
    std::fs::create_dir_all(stage).map_err(BuildError::io("cannot create", stage))?;
    let bundle = stage.join("bundle.js");
    let config = stage.join("rolldown.config.mjs");
    let text = |p: &Path| serde_json::Value::from(p.to_string_lossy()).to_string();
    // `ferry:` and `wasi:` imports are the component's imports, resolved by componentize-js.
    let rolldown_config = format!(
        "export default {{\n  input: {},\n  external: [/^ferry:/, /^wasi:/],\n  resolve: {{ alias: {{ 'ferry-plugin': {} }} }},\n  output: {{ file: {}, format: 'esm', codeSplitting: false }},\n  platform: 'neutral',\n}};\n",
        text(&entry),
        text(&sources.js_sdk.join("index.js")),
        text(&bundle),
    );
    std::fs::write(&config, rolldown_config).map_err(BuildError::io("cannot write", &config))?;
    let bin = tools.join("node_modules/.bin");
    command::output(
        Command::new(bin.join("rolldown"))
            .arg("-c")
            .arg(&config)
            .current_dir(stage),
    )?;
    command::run(
        Command::new(bin.join("componentize-js"))
            .arg(&bundle)
            .arg("--wit")
            .arg(&sources.wit)
            .args(["-n", "plugin", "-d", "http", "fetch-event", "-o"])
            .arg(out)
            .current_dir(stage),
    )
}

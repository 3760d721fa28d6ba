//! `ferry plugin new <name> [--lang rust|python|js] [--hook place|transform|status]
//! [--dir <parent>]`: a plugin with one passing golden case. Python and JavaScript plugins are
//! folders built by `ferry plugin build` with the SDKs of `plugins/sdk-python` and
//! `plugins/sdk-js`; the rest of this comment is about Rust crates.
//!
//! Inside a Ferry checkout (the destination is below a folder with `plugins/sdk`), the crate
//! joins the `plugins/` cargo workspace (its `members` list gets the new path), so
//! `cargo xtask plugins` builds it like the first-party plugins. Anywhere else it is a
//! standalone crate, its own workspace, with the SDK as a path dependency (`--sdk`, default
//! the checkout this binary was built from) and the build command in its README.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::OrUsage;

/// Arguments of `ferry plugin new`.
#[derive(clap::Args)]
pub struct Args {
    /// Crate name: lower-case letters, digits and '-', starting with a letter.
    name: String,
    /// Folder to create the crate in (as `<dir>/<name>`); default the current directory.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The guest SDK (`plugins/sdk` of a Ferry checkout), for a Rust crate outside a checkout.
    #[arg(long)]
    sdk: Option<PathBuf>,
    /// The plugin's language.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// The hook the scaffold implements (Rust scaffolds implement `place`).
    #[arg(long, value_enum, default_value_t = ScaffoldHook::Place)]
    hook: ScaffoldHook,
}

/// Languages `ferry plugin new` scaffolds.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
}

/// Hooks a scaffold can implement.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ScaffoldHook {
    Place,
    Transform,
    Status,
}

impl ScaffoldHook {
    /// The golden case of the hook's scaffold: its folder name and files.
    fn case(self) -> (&'static str, &'static [(&'static str, &'static str)]) {
        match self {
            Self::Place => (CASE_NAME, CASE),
            Self::Transform => ("copies-move-to-the-mapped-namespace", TRANSFORM_CASE),
            Self::Status => ("counts-ready-copies", STATUS_CASE),
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Self::Place => "place",
            Self::Transform => "transform",
            Self::Status => "status",
        }
    }
}

const TRANSFORM_CASE: &[(&str, &str)] = &[
    (
        "case.yaml",
        include_str!("template/cases/transform/case.yaml"),
    ),
    (
        "object.yaml",
        include_str!("template/cases/transform/object.yaml"),
    ),
    (
        "targets.yaml",
        include_str!("template/cases/transform/targets.yaml"),
    ),
    (
        "expected.yaml",
        include_str!("template/cases/transform/expected.yaml"),
    ),
];
const STATUS_CASE: &[(&str, &str)] = &[
    ("case.yaml", include_str!("template/cases/status/case.yaml")),
    (
        "object.yaml",
        include_str!("template/cases/status/object.yaml"),
    ),
    (
        "targets.yaml",
        include_str!("template/cases/status/targets.yaml"),
    ),
    (
        "downstream/cluster-1.yaml",
        include_str!("template/cases/status/downstream/cluster-1.yaml"),
    ),
    (
        "expected.yaml",
        include_str!("template/cases/status/expected.yaml"),
    ),
];

/// The entry module of a Python or JavaScript scaffold, per hook.
fn entry_module(lang: Lang, hook: ScaffoldHook) -> (&'static str, &'static str) {
    match (lang, hook) {
        (Lang::Python, ScaffoldHook::Place) => {
            ("app.py", include_str!("template/python/place.py.txt"))
        }
        (Lang::Python, ScaffoldHook::Transform) => {
            ("app.py", include_str!("template/python/transform.py.txt"))
        }
        (Lang::Python, ScaffoldHook::Status) => {
            ("app.py", include_str!("template/python/status.py.txt"))
        }
        (_, ScaffoldHook::Place) => ("index.js", include_str!("template/js/place.js.txt")),
        (_, ScaffoldHook::Transform) => ("index.js", include_str!("template/js/transform.js.txt")),
        (_, ScaffoldHook::Status) => ("index.js", include_str!("template/js/status.js.txt")),
    }
}

const LIB: &str = include_str!("template/lib.rs.txt");
const CARGO_WORKSPACE: &str = include_str!("template/Cargo.workspace.toml.txt");
const CARGO_STANDALONE: &str = include_str!("template/Cargo.standalone.toml.txt");
const CARGO_CONFIG: &str = include_str!("template/cargo-config.toml.txt");
const README: &str = include_str!("template/README.md.txt");
const CASE: &[(&str, &str)] = &[
    ("case.yaml", include_str!("template/case/case.yaml")),
    ("config.yaml", include_str!("template/case/config.yaml")),
    ("object.yaml", include_str!("template/case/object.yaml")),
    ("targets.yaml", include_str!("template/case/targets.yaml")),
    ("expected.yaml", include_str!("template/case/expected.yaml")),
];
const CASE_NAME: &str = "places-on-matching-targets";

pub fn main(args: Args) -> anyhow::Result<()> {
    match args.lang {
        Lang::Rust => scaffold(&args).or_usage()?,
        Lang::Python | Lang::Js => scaffold_other(&args).or_usage()?,
    }
    Ok(())
}

/// A Python or JavaScript plugin folder: the entry module, its manifest, one golden case, a
/// README and a `.gitignore` for the built component.
fn scaffold_other(args: &Args) -> anyhow::Result<()> {
    check_name(&args.name)?;
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = fs::canonicalize(&args.dir)
        .with_context(|| format!("cannot resolve {}", args.dir.display()))?
        .join(&args.name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let ty = type_name(&args.name);
    let fill = |t: &str| t.replace("{{name}}", &args.name).replace("{{type}}", &ty);
    let (entry, text) = entry_module(args.lang, args.hook);
    let (language, manifest) = match args.lang {
        Lang::Python => (
            "Python",
            (
                "pyproject.toml",
                include_str!("template/python/pyproject.toml.txt"),
            ),
        ),
        _ => (
            "JavaScript",
            ("package.json", include_str!("template/js/package.json.txt")),
        ),
    };
    let (case_name, case) = args.hook.case();
    let shown = args.dir.join(&args.name);
    let readme = format!(
        "# {name}\n\nA Ferry {hook} plugin in {language}, scaffolded by `ferry plugin new`. Its logic is in \
         `{entry}`; the SDK and the hooks are described in Ferry's docs/plugins.md.\n\n\
         ```sh\nferry plugin build {dir}   # the component: {dir}/target/{name}.wasm\n\
         ferry plugin test {dir}    # runs every case under {dir}/cases\n```\n\n\
         Each folder under `cases/` is one golden case; add one for every behaviour you rely on \
         (`ferry plugin test {dir} --update` rewrites the expected files from what the plugin does).\n\n\
         In `ferry.yaml`, name the component by path: `plugin: {dir}/target/{name}.wasm`.\n",
        name = args.name,
        hook = args.hook.flag(),
        dir = shown.display(),
    );
    let mut files: Vec<(PathBuf, String)> = vec![
        (PathBuf::from(entry), fill(text)),
        (PathBuf::from(manifest.0), fill(manifest.1)),
        (PathBuf::from("README.md"), readme),
        (PathBuf::from(".gitignore"), "/target/\n".into()),
    ];
    for (file, text) in case {
        files.push((Path::new("cases").join(case_name).join(file), fill(text)));
    }
    for (relative, text) in &files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("created {} ({} files)", dir.display(), files.len());
    println!(
        "next: ferry plugin build {0} && ferry plugin test {0}",
        shown.display()
    );
    Ok(())
}

fn scaffold(args: &Args) -> anyhow::Result<()> {
    check_name(&args.name)?;
    if args.hook != ScaffoldHook::Place {
        bail!(
            "the Rust scaffold implements `place`; add the other hooks to it by hand (docs/plugins.md, \"The SDK\"), or use --lang python|js"
        );
    }
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let parent = fs::canonicalize(&args.dir)
        .with_context(|| format!("cannot resolve {}", args.dir.display()))?;
    let crate_dir = parent.join(&args.name);
    if crate_dir.exists() {
        bail!("{} already exists", crate_dir.display());
    }
    let checkout = parent
        .ancestors()
        .find(|p| p.join("plugins/sdk/Cargo.toml").is_file())
        .map(Path::to_path_buf);
    let ty = type_name(&args.name);
    let fill = |template: &str| {
        template
            .replace("{{name}}", &args.name)
            .replace("{{type}}", &ty)
    };

    let mut files: Vec<(PathBuf, String)> = vec![(PathBuf::from("src/lib.rs"), fill(LIB))];
    for (file, text) in CASE {
        files.push((Path::new("cases").join(CASE_NAME).join(file), fill(text)));
    }
    // Commands in the README run from the checkout's root, or from the crate's folder.
    let cases = match &checkout {
        Some(root) => format!(
            "{}/cases",
            crate_dir.strip_prefix(root).unwrap_or(&crate_dir).display()
        ),
        None => "cases".into(),
    };
    let (component, build) = match &checkout {
        Some(root) => {
            let plugins = root.join("plugins");
            // Below `plugins/` cargo finds the workspace by itself; anywhere else (e.g.
            // `examples/`) the crate must name it.
            let workspace = if crate_dir.starts_with(&plugins) {
                String::new()
            } else {
                format!(
                    "# A member of the plugins workspace, built by `cargo xtask plugins`.\nworkspace = \"{}\"\n",
                    relative_path(&crate_dir, &plugins)
                )
            };
            files.push((
                PathBuf::from("Cargo.toml"),
                fill(CARGO_WORKSPACE).replace("{{workspace}}", &workspace),
            ));
            let shown = crate_dir.strip_prefix(root).unwrap_or(&crate_dir);
            (
                args.name.clone(),
                format!(
                    "From the Ferry checkout ({} joined the `plugins/` workspace):\n\n```sh\ncargo xtask plugins {}\n```\n\nThe component lands in `target/plugins/{}.wasm`, where `ferry` finds it by name.",
                    shown.display(),
                    args.name,
                    args.name
                ),
            )
        }
        None => {
            let sdk = sdk_path(args.sdk.as_deref())?;
            files.push((
                PathBuf::from("Cargo.toml"),
                fill(CARGO_STANDALONE).replace("{{sdk}}", &sdk.display().to_string()),
            ));
            files.push((PathBuf::from(".cargo/config.toml"), CARGO_CONFIG.into()));
            files.push((PathBuf::from(".gitignore"), "/target\n".into()));
            let lib = args.name.replace('-', "_");
            (
                format!("target/wasm32-wasip2/release/{lib}.wasm"),
                format!(
                    "With a rustup toolchain that has the `wasm32-wasip2` target \
                     (`rustup target add wasm32-wasip2`):\n\n```sh\ncargo build --release --target wasm32-wasip2\n```\n\n\
                     Without rustup targets (Debian's `rustc-web`, `rust-web-src`, `lld-19` and \
                     `cargo install wasm-component-ld`), as Ferry's own build does:\n\n```sh\n\
                     PATH=/usr/lib/llvm-19/bin:$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \\\n  \
                     CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-component-ld \\\n  \
                     /usr/bin/cargo build --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort\n```\n\n\
                     The component is then `target/wasm32-unknown-unknown/release/{lib}.wasm`."
                ),
            )
        }
    };
    files.push((
        PathBuf::from("README.md"),
        fill(README)
            .replace("{{build}}", &build)
            .replace("{{component}}", &component)
            .replace("{{cases}}", &cases),
    ));

    for (relative, text) in &files {
        let path = crate_dir.join(relative);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(root) = &checkout {
        register(&root.join("plugins/Cargo.toml"), &crate_dir)?;
    }
    println!("created {} ({} files)", crate_dir.display(), files.len());
    println!("next: see {}", crate_dir.join("README.md").display());
    Ok(())
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
        && name.len() <= 63;
    if !valid {
        bail!(
            "{name:?} is not a valid plugin name (lower-case letters, digits and '-', starting with a letter)"
        );
    }
    Ok(())
}

/// `my-placement` → `MyPlacement`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// `--sdk`, else the SDK of the checkout this binary was built from, if it is still there.
fn sdk_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidate = match given {
        Some(path) => path.to_path_buf(),
        None => ferry_wasm::testing::repo_root().join("plugins/sdk"),
    };
    if !candidate.join("Cargo.toml").is_file() {
        bail!(
            "no guest SDK at {}: give --sdk <ferry checkout>/plugins/sdk",
            candidate.display()
        );
    }
    fs::canonicalize(&candidate).with_context(|| format!("cannot resolve {}", candidate.display()))
}

/// Adds `crate_dir` to the `members` of the plugins workspace manifest, so that cargo (and
/// `cargo xtask plugins`, which builds every cdylib member) sees the new crate.
fn register(manifest: &Path, crate_dir: &Path) -> anyhow::Result<()> {
    let text = fs::read_to_string(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    let relative = relative_path(base, crate_dir);
    let updated = add_member(&text, &relative)
        .with_context(|| format!("cannot add {relative} to {}", manifest.display()))?;
    fs::write(manifest, updated).with_context(|| format!("cannot write {}", manifest.display()))
}

/// `to` relative to `from` (both absolute), with `..` where needed.
fn relative_path(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// Inserts `"member",` as the last entry of the `members = [...]` array.
fn add_member(manifest: &str, member: &str) -> anyhow::Result<String> {
    let start = manifest
        .find("members = [")
        .context("no `members = [` list")?;
    let end = start
        + manifest[start..]
            .find(']')
            .context("the `members` list is not closed")?;
    let quoted = format!("\"{member}\"");
    if manifest[start..end].contains(&quoted) {
        return Ok(manifest.to_owned());
    }
    Ok(format!(
        "{}    {quoted},\n{}",
        &manifest[..end],
        &manifest[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_appended_to_the_workspace_list_once() {
        let text = "[workspace]\nmembers = [\n    \"sdk\",\n]\n";
        let once = add_member(text, "../examples/x").expect("add");
        assert_eq!(
            once,
            "[workspace]\nmembers = [\n    \"sdk\",\n    \"../examples/x\",\n]\n"
        );
        assert_eq!(add_member(&once, "../examples/x").expect("again"), once);
    }

    #[test]
    fn paths_are_made_relative_to_the_plugins_workspace() {
        let from = Path::new("/r/plugins");
        assert_eq!(relative_path(from, Path::new("/r/plugins/p")), "p");
        assert_eq!(
            relative_path(from, Path::new("/r/examples/p")),
            "../examples/p"
        );
    }

    #[test]
    fn names_become_rust_type_names_and_bad_names_are_refused() {
        assert_eq!(type_name("my-placement-2"), "MyPlacement2");
        assert!(check_name("My_Plugin").is_err());
        assert!(check_name("2fast").is_err());
        assert!(check_name("ok-name").is_ok());
    }
}

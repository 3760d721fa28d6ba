//! `ferry plugin ...`: write, test and try plugins on a laptop, without any cluster.
//!
//! Exit codes (the same for every subcommand, documented in `docs/plugins.md`):
//! - `0`: success;
//! - `1`: the plugin did something wrong: a case failed, a hook returned an error, trapped,
//!   ran past its deadline, or returned invalid output;
//! - `2`: the command could not run: a missing or unreadable file, invalid YAML, an unknown
//!   plugin name, a file that is not a Ferry plugin, bad flags (clap uses 2 as well).

mod build;
mod input;
mod new;
mod record;
mod run;
mod test;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use ferry_wasm::{Runtime, RuntimeConfig};

use crate::plugin_lookup;

/// `ferry plugin`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a plugin's golden cases and compare the results.
    Test(test::Args),
    /// Run one hook of a plugin once, on an input file.
    Run(run::Args),
    /// Create a new plugin (Rust, Python or JavaScript) with one passing case.
    New(new::Args),
    /// Turn a live object into golden cases: the inputs the engine passes each plugin for
    /// it now, and what the plugins answer (replay them with `ferry plugin test`).
    Record(record::Args),
    /// Build a plugin folder (Rust, Python or JavaScript) into a component.
    Build(build::Args),
}

/// Runs a `ferry plugin` subcommand.
pub fn main(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Test(args) => test::main(args),
        Command::Run(args) => run::main(args),
        Command::New(args) => new::main(args),
        Command::Record(args) => record::main(args),
        Command::Build(args) => build::main(args),
    }
}

/// A failure of a `ferry plugin` command, already phrased for the user, with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code: 1 for a plugin's failure, 2 for a command that could not run.
    pub code: u8,
    message: String,
}

impl Failure {
    /// The plugin misbehaved (exit code 1).
    pub fn plugin(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }

    /// The command could not run (exit code 2). Its message is the error's causes on one line.
    pub fn usage(error: &anyhow::Error) -> Self {
        Self {
            code: 2,
            message: one_line(&**error),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Converts any error of the command's own setup into a usage failure (exit code 2).
trait OrUsage<T> {
    fn or_usage(self) -> Result<T, Failure>;
}

impl<T> OrUsage<T> for anyhow::Result<T> {
    fn or_usage(self) -> Result<T, Failure> {
        self.map_err(|e| Failure::usage(&e))
    }
}

/// An error and its causes on one line. Causes often repeat their parent's text, and some
/// (wasmtime's, serde_yaml's) span lines; only the first line of each new cause is kept, so
/// a user sees one sentence, never a backtrace.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default().trim();
        if !first.is_empty() && !out.contains(first) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(first);
        }
        // A trap's source is wasmtime's report with the guest backtrace; the trap code is
        // already in the message.
        if matches!(
            e.downcast_ref::<ferry_wasm::CallError>(),
            Some(ferry_wasm::CallError::Trap { .. })
        ) {
            break;
        }
        next = e.source();
    }
    out
}

/// The runtime for one CLI command: a handful of instance slots (one call runs at a time)
/// instead of the engine's 64, so start-up reserves little address space, and compiled code
/// kept on disk ([`code_cache_dir`]), so a repeated `ferry plugin test` skips compilation.
fn runtime() -> Result<Runtime, Failure> {
    let mut config = RuntimeConfig::default().max_instances(4);
    if let Some(dir) = code_cache_dir() {
        config = config.cache_dir(dir);
    }
    Runtime::new(config)
        .context("cannot start the Wasm runtime")
        .or_usage()
}

/// Where CLI runs keep compiled code: `$FERRY_CODE_CACHE` (`off` for nowhere), else
/// `$XDG_CACHE_HOME/ferry/compiled`, else `~/.cache/ferry/compiled`.
fn code_cache_dir() -> Option<PathBuf> {
    let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = nonempty("FERRY_CODE_CACHE") {
        return (dir != "off").then(|| PathBuf::from(dir));
    }
    let base = nonempty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| nonempty("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("ferry").join("compiled"))
}

/// The component `reference` names: a plugin folder (its built component, see `ferry plugin
/// build`), a path to a `.wasm` file (relative to the current directory) or a first-party
/// plugin's name, found like `ferry run` finds it.
fn locate(reference: &str) -> Result<PathBuf, Failure> {
    if Path::new(reference).is_dir()
        && let Some(found) = build::component_of(Path::new(reference))
    {
        return found;
    }
    let dir = plugin_lookup::default_dir();
    plugin_lookup::find(reference, Path::new(""), dir.as_deref())
        .map_err(|problem| Failure::usage(&anyhow::anyhow!(problem)))
}

/// The plugin's display name: its file stem.
fn display_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned())
}

//! Why a build failed, phrased for the person who ran it.

use std::path::PathBuf;

/// A failed build or tool installation.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The folder holds none of the files that name a plugin's language.
    #[error(
        "{} is not a plugin folder: expected Cargo.toml (Rust), pyproject.toml or app.py (Python), or package.json (JavaScript)",
        dir.display()
    )]
    UnknownLanguage {
        /// The folder given.
        dir: PathBuf,
    },
    /// A toolchain the build needs is not on this machine.
    #[error("{tool} is not installed: {hint}")]
    MissingTool {
        /// The missing program.
        tool: &'static str,
        /// How to get it.
        hint: &'static str,
    },
    /// A command of the build could not start.
    #[error("cannot run {command}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command of the build ran and failed.
    #[error("{command} failed ({status}){}", if output.is_empty() { String::new() } else { format!(": {output}") })]
    Command {
        /// What ran.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The last lines of its error output, when captured.
        output: String,
    },
    /// A file of the build could not be read or written.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done, e.g. "cannot write".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Anything else wrong with the project or the build's output.
    #[error("{0}")]
    Invalid(String),
}

impl BuildError {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { what, path, source }
    }
}

//! Running the build's tools: each failure names the command, and a tool that is not
//! installed is one clear line.

use std::process::{Command, Output};

use crate::BuildError;

/// How a command is shown in messages: the program and its arguments.
fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` with its output shown to the user; fails unless it exits 0.
pub(crate) fn run(command: &mut Command) -> Result<(), BuildError> {
    let status = command.status().map_err(|source| BuildError::Spawn {
        command: shown(command),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Command {
            command: shown(command),
            status,
            output: String::new(),
        })
    }
}

/// Runs `command` capturing its output; fails unless it exits 0, with the last lines of its
/// error output in the message.
pub(crate) fn output(command: &mut Command) -> Result<Output, BuildError> {
    let output = command.output().map_err(|source| BuildError::Spawn {
        command: shown(command),
        source,
    })?;
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(BuildError::Command {
        command: shown(command),
        status: output.status,
        output: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
    })
}

/// Whether `program --version` runs: the check behind every "is not installed" message.
pub(crate) fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

//! The error a hook returns, mapped onto the WIT `plugin-error` variant of either contract
//! version.

use std::fmt;

use crate::bindings::ferry::sync::types::PluginError;
use crate::v0_1::bindings::ferry::sync::types::PluginError as PluginErrorV0_1;

/// Why a hook failed. The message is shown to the user as is (Event on the object, CLI),
/// so say what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: Kind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InvalidConfig,
    InvalidInput,
    Unsupported,
    Failed,
}

impl Error {
    /// The plugin configuration is unusable.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::InvalidConfig,
            message: message.into(),
        }
    }

    /// The input object cannot be handled (bad annotation, missing field, ...).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::InvalidInput,
            message: message.into(),
        }
    }

    /// The plugin does not implement `hook`.
    pub fn unsupported(hook: &str) -> Self {
        Self {
            kind: Kind::Unsupported,
            message: format!("this plugin does not implement `{hook}`"),
        }
    }

    /// Whether this is the "hook not implemented" error of [`Error::unsupported`].
    pub fn is_unsupported(&self) -> bool {
        self.kind == Kind::Unsupported
    }

    /// The WIT name of the error's case (`invalid-config`, `invalid-input`, `unsupported`,
    /// `failed`), as golden cases' `error.yaml` spells it.
    pub fn kind(&self) -> &'static str {
        match self.kind {
            Kind::InvalidConfig => "invalid-config",
            Kind::InvalidInput => "invalid-input",
            Kind::Unsupported => "unsupported",
            Kind::Failed => "failed",
        }
    }

    /// The message shown to the user.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Anything else.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Failed,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for PluginErrorV0_1 {
    fn from(e: Error) -> Self {
        match e.kind {
            Kind::InvalidConfig => PluginErrorV0_1::InvalidConfig(e.message),
            Kind::InvalidInput => PluginErrorV0_1::InvalidInput(e.message),
            Kind::Unsupported => PluginErrorV0_1::Unsupported(e.message),
            Kind::Failed => PluginErrorV0_1::Failed(e.message),
        }
    }
}

impl From<Error> for PluginError {
    fn from(e: Error) -> Self {
        match e.kind {
            Kind::InvalidConfig => PluginError::InvalidConfig(e.message),
            Kind::InvalidInput => PluginError::InvalidInput(e.message),
            Kind::Unsupported => PluginError::Unsupported(e.message),
            Kind::Failed => PluginError::Failed(e.message),
        }
    }
}

//! Ferry's domain model. This crate sits at the bottom of the dependency graph: the Wasm
//! runtime and the Kubernetes controllers both depend on it and never on each other.
//!
//! What lives here is what both sides must agree on without knowing about each other:
//! the plugin-facing types ([`plugin`]) and the checks a plugin's output must pass before
//! the engine applies it ([`validate`]).
#![deny(missing_docs)]

pub mod identity;
pub mod plugin;
pub mod validate;

pub use plugin::{
    CallErrorKind, Downstream, Hook, ObjectContext, ObjectRef, PluginError, PluginErrorKind, Target,
};
pub use validate::{OutputError, TransformPolicy};

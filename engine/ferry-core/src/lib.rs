//! Ferry's domain model. This crate sits at the bottom of the dependency graph: the Wasm
//! runtime and the Kubernetes controllers both depend on it and never on each other.
#![deny(missing_docs)]

//! Host bindings, one `bindgen!` per released WIT version (so old contract versions can delegate to the newest implementation). A future `v0_2_0`
//! module gets its own invocation; calls into older plugins then convert their types to and
//! from the newest ones in one place instead of duplicating the dispatch.

/// `ferry:sync@0.1.0`, generated from `wit/v0.1.0` (a frozen folder).
#[allow(missing_docs)]
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../../wit/v0.1.0",
    });

    /// The package name and version these bindings speak.
    pub const PACKAGE: &str = "ferry:sync";
    /// The version.
    pub const VERSION: &str = "0.1.0";
}

//! `cargo xtask plugins`: builds the Wasm plugins into components.

/// Options of `cargo xtask plugins`.
#[derive(clap::Args)]
pub struct Args {}

/// Builds every plugin component.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("plugin builds are not implemented yet")
}

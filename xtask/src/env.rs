//! placeholder
#[derive(clap::Subcommand)]
pub enum Action { Up, Down, Status }
pub fn run(_a: Action) -> anyhow::Result<()> { anyhow::bail!("not yet") }

//! `ferry uninstall --config ferry.yaml [--delete-copies] [--dry-run]`: removes Ferry's
//! finalizer from every upstream object (so tenants' deletes complete without Ferry), and
//! with `--delete-copies` its copies and namespaces on every target. Stop Ferry first.
//!
//! Exit codes, like `ferry check`: 0 done, 1 some step failed (the rest was done; run it
//! again), 2 bad input.

use std::path::PathBuf;

use anyhow::Result;
use ferry_sync::uninstall::{UninstallOptions, UninstallReport, uninstall};

use crate::preview::Output;
use crate::{config, run};

/// Options of `ferry uninstall`.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (the same one `ferry run` uses).
    #[arg(long, short, default_value = "ferry.yaml")]
    pub config: PathBuf,
    /// Also delete every copy on every target, and the `ferry-` namespaces Ferry created
    /// there once they hold nothing else of the configured resources.
    #[arg(long)]
    pub delete_copies: bool,
    /// Write nothing; print what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: Output,
}

/// Runs the uninstall; `Ok(false)` when a step failed (exit code 1).
pub fn main(args: Args) -> Result<bool> {
    let loaded = config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let options = UninstallOptions {
        delete_copies: args.delete_copies,
        dry_run: args.dry_run,
    };
    let report = runtime.block_on(async {
        let settings = run::settings(&loaded, Default::default()).await?;
        anyhow::Ok(uninstall(settings, options).await?)
    })?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Text => print_text(&report),
    }
    Ok(report.failures.is_empty())
}

fn print_text(report: &UninstallReport) {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for (cluster, done) in &report.workspaces {
        println!(
            "workspace {cluster}: {verb} {} finalizers, {} copies, {} namespaces",
            done.finalizers_removed, done.copies_deleted, done.namespaces_deleted
        );
    }
    for kept in &report.namespaces_kept {
        println!("kept       {kept}");
    }
    for failure in &report.failures {
        println!("failed     {failure}");
    }
    println!("{}", report.summary_line());
    if report.dry_run {
        println!("Nothing was written (--dry-run).");
    }
}

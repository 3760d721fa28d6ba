//! `ferry preview --config ferry.yaml [--workspace <path or logical cluster>]`: what Ferry
//! would place where and how each copy would differ from what is live, through the real
//! plugin chain, without writing anything.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ferry_sync::preview::{Action, ObjectPlan, preview};

use crate::{config, run};

/// Options of `ferry preview`.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (the same one `ferry run` uses).
    #[arg(long, short, default_value = "ferry.yaml")]
    config: PathBuf,
    /// Only objects of this workspace: a path (`root:team-a`) or a logical cluster name.
    #[arg(long)]
    workspace: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

pub fn main(args: Args) -> Result<()> {
    run::init_logging("warn");
    let loaded = config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let settings = run::settings(&loaded).await?;
        let cluster = match &args.workspace {
            Some(workspace) if workspace.contains(':') => Some(
                logical_cluster_of(&settings.kcp.config, workspace)
                    .await
                    .with_context(|| format!("resolving workspace {workspace}"))?,
            ),
            other => other.clone(),
        };
        let plans = preview(settings, cluster.as_deref()).await?;
        match args.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&plans)?),
            Output::Text => print_text(&plans),
        }
        Ok(())
    })
}

async fn logical_cluster_of(config: &kube::Config, path: &str) -> Result<String> {
    let base = ferry_sync::kcp::base_url(config);
    let client = ferry_sync::kcp::client_for(config, &format!("{base}/clusters/{path}"))?;
    Ok(ferry_sync::kcp::logical_cluster(&client).await?)
}

fn print_text(plans: &[ObjectPlan]) {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for plan in plans {
        let key = &plan.key;
        match &plan.placement {
            Ok(targets) if targets.is_empty() => {
                println!(
                    "{} {}|{}/{}: placed nowhere",
                    plan.resource, key.cluster, key.namespace, key.name
                )
            }
            Ok(targets) => println!(
                "{} {}|{}/{}: placed on {}",
                plan.resource,
                key.cluster,
                key.namespace,
                key.name,
                targets.join(", ")
            ),
            Err(err) => {
                println!(
                    "{} {}|{}/{}: not synced: {err}",
                    plan.resource, key.cluster, key.namespace, key.name
                );
                *counts.entry("failing").or_default() += 1;
            }
        }
        for copy in &plan.copies {
            let (word, detail) = match &copy.action {
                Action::Create => ("create", String::new()),
                Action::Update { fields } => ("update", format!(": {}", fields.join(", "))),
                Action::Unchanged => ("unchanged", String::new()),
                Action::Delete => ("delete", String::new()),
                Action::Skip => (
                    "skip",
                    " (the transform leaves this target out)".to_string(),
                ),
                Action::Refuse { reason } => ("refuse", format!(": {reason}")),
                Action::Error { message } => ("error", format!(": {message}")),
            };
            *counts.entry(word).or_default() += 1;
            println!(
                "  {:<12} {}/{}  {word}{detail}",
                copy.target, copy.namespace, copy.name
            );
        }
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!(
        "{} objects; copies: {}. Nothing was written.",
        plans.len(),
        if summary.is_empty() {
            "none".to_string()
        } else {
            summary.join(", ")
        }
    );
}

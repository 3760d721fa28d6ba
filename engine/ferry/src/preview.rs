//! `ferry preview --config ferry.yaml [--workspace <path or logical cluster>]`: what Ferry
//! would place where and how each copy would differ from what is live, through the real
//! plugin chain, without writing anything.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ferry_sync::plan::{CopyAction, Placement, StatusPlan, UpstreamState};
use ferry_sync::preview::{ObjectPlan, Survey, Unserved, survey};

use crate::{config, run};

/// Options of `ferry preview` and `ferry check`.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (the same one `ferry run` uses).
    #[arg(long, short, default_value = "ferry.yaml")]
    pub config: PathBuf,
    /// Only objects of this workspace: a path (`root:team-a`) or a logical cluster name.
    #[arg(long)]
    pub workspace: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: Output,
}

/// Output formats of `ferry preview` and `ferry check`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For programs.
    Json,
}

pub fn main(args: Args) -> Result<()> {
    let Survey { plans, unserved } = plans(&args.config, args.workspace.as_deref())?;
    for gap in &unserved {
        eprintln!("warning: {}", unserved_line(gap));
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&plans)?),
        Output::Text => print_text(&plans),
    }
    Ok(())
}

/// Why the objects of a resource could not be looked at.
pub fn unserved_line(gap: &Unserved) -> String {
    format!(
        "{} could not be listed ({}): its objects and copies were not audited",
        gap.resource, gap.why
    )
}

/// The engine's plan for every object (of one workspace), from a fresh list of both sides.
pub fn plans(config_file: &std::path::Path, workspace: Option<&str>) -> Result<Survey> {
    let loaded = config::load(config_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let settings = run::settings(&loaded, Default::default()).await?;
        let cluster = match workspace {
            Some(workspace) if workspace.contains(':') => Some(
                logical_cluster_of(&settings.kcp.config, workspace)
                    .await
                    .with_context(|| format!("resolving workspace {workspace}"))?,
            ),
            other => other.map(str::to_string),
        };
        Ok(survey(settings, cluster.as_deref()).await?)
    })
}

/// The logical cluster of the workspace at `path`.
pub async fn logical_cluster_of(config: &kube::Config, path: &str) -> Result<String> {
    let base = ferry_sync::kcp::base_url(config);
    let client = ferry_sync::kcp::client_for(
        config,
        &format!("{base}/clusters/{path}"),
        &Default::default(),
    )?;
    Ok(ferry_sync::kcp::logical_cluster(&client).await?)
}

/// One word and a detail for a copy's action, as `preview` and `check` print it.
pub fn describe(object: &ObjectPlan, copy: &ferry_sync::plan::CopyPlan) -> (&'static str, String) {
    if let Some(refusal) = object
        .refused
        .iter()
        .find(|r| r.target == copy.target && r.name == copy.name)
    {
        return ("refuse", format!(": {}", refusal.reason));
    }
    match &copy.action {
        CopyAction::Create { .. } => ("create", String::new()),
        CopyAction::Update { changes, .. } => {
            ("update", format!(": {}", changes.fields().join(", ")))
        }
        CopyAction::Unchanged => ("unchanged", String::new()),
        CopyAction::Delete { reason, .. } => ("delete", format!(" ({})", delete_reason(*reason))),
        CopyAction::AwaitGone => ("terminating", " (waiting for it to go)".into()),
        CopyAction::TargetUnreachable => ("unreachable", " (the target does not answer)".into()),
        CopyAction::Failed { error } => ("error", format!(": {error}")),
        CopyAction::Skip => ("skip", " (the transform leaves this target out)".into()),
        CopyAction::AwaitDependency { dependencies } => (
            "waiting",
            format!(" (created once {} is here)", dependencies.join(", ")),
        ),
        CopyAction::Held { reason } => (
            "kept",
            format!(" (no known dependent needs it, but {reason})"),
        ),
    }
}

fn delete_reason(reason: ferry_sync::plan::DeleteReason) -> &'static str {
    use ferry_sync::plan::DeleteReason;
    match reason {
        DeleteReason::NotPlaced => "no longer placed here",
        DeleteReason::Skipped => "the transform leaves this target out",
        DeleteReason::Deleting => "the object is being deleted",
        DeleteReason::Orphan => "the object is gone",
        DeleteReason::Renamed => "the transform names the copy differently now",
        DeleteReason::Unreferenced => "no dependent placed here references it",
    }
}

/// The first line about an object; with its workspace path when known, since the logical
/// cluster name alone tells a reader little.
pub fn headline(object: &ObjectPlan) -> String {
    let key = &object.plan.key;
    let mut who = format!(
        "{} {}|{}/{}",
        object.resource, key.cluster, key.namespace, key.name
    );
    if let Some(path) = object.workspace.as_ref().and_then(|w| w.path.as_deref()) {
        who.push_str(&format!(" ({path})"));
    }
    match (&object.plan.upstream, &object.plan.placement) {
        (UpstreamState::Gone, _) => format!("{who}: gone upstream"),
        (UpstreamState::Unknown(why), _) => format!("{who}: out of sight, copies kept ({why})"),
        (UpstreamState::Deleting, _) => format!("{who}: being deleted"),
        (_, Placement::Chosen(t)) if t.is_empty() => format!("{who}: placed nowhere"),
        (_, Placement::Chosen(t)) => format!("{who}: placed on {}", t.join(", ")),
        (_, Placement::Failed(err)) => format!("{who}: not synced: {err}"),
        (_, Placement::NotApplicable) => who,
    }
}

fn print_text(plans: &[ObjectPlan]) {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for object in plans {
        println!("{}", headline(object));
        if matches!(object.plan.placement, Placement::Failed(_)) {
            *counts.entry("failing").or_default() += 1;
        }
        for copy in &object.plan.copies {
            let (word, detail) = describe(object, copy);
            *counts.entry(word).or_default() += 1;
            println!(
                "  {:<12} {}/{}  {word}{detail}",
                copy.target, copy.namespace, copy.name
            );
        }
        if let Some(dependents) = &object.plan.dependents {
            let who = if dependents.referenced_by.is_empty() {
                "none".to_string()
            } else {
                dependents.referenced_by.join(", ")
            };
            println!("  needed by    {who}");
        }
        if !object.plan.missing.is_empty() {
            println!("  missing      {}", object.plan.missing.join(", "));
        }
        match &object.plan.status {
            StatusPlan::Write { .. } => println!("  status       would be written"),
            StatusPlan::Failed { error } => println!("  status       error: {error}"),
            StatusPlan::None | StatusPlan::Unchanged => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::identity::UpstreamKey;
    use ferry_sync::plan::{FinalizerPlan, Plan};
    use ferry_sync::workspaces::Workspace;

    fn object(path: Option<&str>) -> ObjectPlan {
        ObjectPlan {
            resource: "deployments.apps".into(),
            plan: Plan {
                key: UpstreamKey::new("lc-a", "demo", "web"),
                upstream: UpstreamState::Live,
                finalizer: FinalizerPlan::Keep,
                placement: Placement::Chosen(vec!["cluster-1".into()]),
                copies: Vec::new(),
                status: StatusPlan::None,
                dependents: None,
                missing: Vec::new(),
                missing_annotation: ferry_sync::plan::MissingPlan::Keep,
                dependencies_error: None,
            },
            workspace: path.map(|p| Workspace {
                path: Some(p.into()),
                ..Workspace::default()
            }),
            refused: Vec::new(),
            duplicates: Vec::new(),
        }
    }

    #[test]
    fn the_headline_names_the_workspace_path_when_known() {
        assert_eq!(
            headline(&object(Some("root:team-a"))),
            "deployments.apps lc-a|demo/web (root:team-a): placed on cluster-1"
        );
        assert_eq!(
            headline(&object(None)),
            "deployments.apps lc-a|demo/web: placed on cluster-1"
        );
    }
}

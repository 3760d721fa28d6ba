//! `ferry check --config ferry.yaml`: a read-only audit of both sides. It lists every
//! upstream object through the virtual workspace and every copy on every target, plans each
//! object exactly as the engine would, and reports what is not as it should be:
//!
//! - **missing**: placed on a target but no copy there (or the name is taken by another object);
//! - **orphaned**: a copy whose upstream object is gone;
//! - **divergent**: a copy that differs from what the plugins produce now (a value, a field
//!   that should have been removed, a manual edit), or one on a target it is not placed on;
//! - **duplicate**: more than one copy of one object on one target;
//! - **stale**: an upstream status that is not the aggregation of its copies;
//! - **stuck**: an object being deleted whose Ferry finalizer is still on.
//!
//! Also counted, but not failures: copies *kept* because their object is out of sight (a shard
//! left the endpoint slice, a workspace unbound), and objects that could not be *verified*
//! (a failing plugin, an unreachable target) — those make the exit code 1 too, since the
//! audit could not prove them right.
//!
//! Exit codes: 0 clean, 1 problems found or something unverifiable, 2 bad input.

use anyhow::Result;
use ferry_sync::plan::{
    CopyAction, DeleteReason, FinalizerPlan, Placement, StatusPlan, UpstreamState,
};
use ferry_sync::preview::ObjectPlan;
use serde::Serialize;

use crate::preview::{Output, describe, headline, plans, unserved_line};

/// Options of `ferry check`: the same as `ferry preview`'s.
pub type Args = crate::preview::Args;

/// Counts per finding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Objects looked at.
    pub objects: usize,
    /// Placed but absent.
    pub missing: usize,
    /// Copies of gone objects.
    pub orphaned: usize,
    /// Copies that differ, or are where they should not be.
    pub divergent: usize,
    /// Objects with more than one copy on one target.
    pub duplicate: usize,
    /// Upstream statuses that are not the aggregation of the copies.
    pub stale: usize,
    /// Deleted objects whose finalizer is still on.
    pub stuck: usize,
    /// Copies kept for objects out of sight.
    pub kept: usize,
    /// Objects or copies that could not be verified.
    pub unverified: usize,
}

impl Summary {
    fn problems(&self) -> usize {
        self.missing + self.orphaned + self.divergent + self.duplicate + self.stale + self.stuck
    }
}

/// What `check` says about one object.
#[derive(Clone, Debug, Serialize)]
struct Finding {
    object: String,
    problem: &'static str,
    detail: String,
}

/// Classifies one object's plan; pushes its findings.
fn classify(object: &ObjectPlan, summary: &mut Summary, findings: &mut Vec<Finding>) {
    let mut add = |problem: &'static str, detail: String| {
        findings.push(Finding {
            object: headline(object),
            problem,
            detail,
        });
    };
    summary.objects += 1;
    if !object.duplicates.is_empty() {
        summary.duplicate += 1;
        add("duplicate", object.duplicates.join(", "));
    }
    if let Placement::Failed(err) = &object.plan.placement {
        summary.unverified += 1;
        add("unverified", format!("placement failed: {err}"));
    }
    match &object.plan.upstream {
        UpstreamState::Unknown(why) => {
            summary.kept += 1;
            add("kept", why.clone());
        }
        UpstreamState::Deleting if object.plan.finalizer != FinalizerPlan::Keep => {
            summary.stuck += 1;
            add(
                "stuck",
                "being deleted and Ferry's finalizer is still on".into(),
            );
        }
        _ => {}
    }
    for copy in &object.plan.copies {
        let (word, detail) = describe(object, copy);
        let at = format!(
            "{} {}/{}: {word}{detail}",
            copy.target, copy.namespace, copy.name
        );
        match &copy.action {
            CopyAction::Create { .. } | CopyAction::AwaitDependency { .. } => {
                summary.missing += 1;
                add("missing", at);
            }
            CopyAction::Update { .. } => {
                summary.divergent += 1;
                add("divergent", at);
            }
            // A dependency's copy that no dependent needs is left over just like an orphan.
            CopyAction::Delete {
                reason: DeleteReason::Orphan | DeleteReason::Unreferenced,
                ..
            } => {
                summary.orphaned += 1;
                add("orphaned", at);
            }
            // Stuck deletions are counted once per object above.
            CopyAction::Delete {
                reason: DeleteReason::Deleting,
                ..
            }
            | CopyAction::AwaitGone => {}
            CopyAction::Delete { .. } => {
                summary.divergent += 1;
                add("divergent", at);
            }
            CopyAction::TargetUnreachable | CopyAction::Failed { .. } => {
                summary.unverified += 1;
                add("unverified", at);
            }
            CopyAction::Held { .. } => {
                summary.kept += 1;
                add("kept", at);
            }
            CopyAction::Unchanged | CopyAction::Skip => {}
        }
    }
    match &object.plan.status {
        StatusPlan::Write { .. } => {
            summary.stale += 1;
            add(
                "stale",
                "the upstream status is not the aggregation of its copies".into(),
            );
        }
        StatusPlan::Failed { error } => {
            summary.unverified += 1;
            add("unverified", format!("status: {error}"));
        }
        StatusPlan::None | StatusPlan::Unchanged => {}
    }
}

/// The summary line tests and operators read.
fn summary_line(s: &Summary) -> String {
    let mut line = format!(
        "{} objects: {} missing, {} orphaned, {} divergent, {} duplicate, {} stale, {} stuck",
        s.objects, s.missing, s.orphaned, s.divergent, s.duplicate, s.stale, s.stuck
    );
    if s.kept > 0 || s.unverified > 0 {
        line.push_str(&format!(
            " ({} kept out of sight, {} unverified)",
            s.kept, s.unverified
        ));
    }
    line
}

/// Runs the audit; `Ok(false)` when it found problems (exit code 1).
pub fn main(args: Args) -> Result<bool> {
    let survey = plans(&args.config, args.workspace.as_deref())?;
    let mut summary = Summary::default();
    let mut findings = Vec::new();
    // A resource that could not be listed is not proven right: it makes the audit unverified
    // (exit 1), while every other resource is still audited.
    for gap in &survey.unserved {
        summary.unverified += 1;
        findings.push(Finding {
            object: gap.resource.clone(),
            problem: "unserved",
            detail: unserved_line(gap),
        });
    }
    for object in &survey.plans {
        classify(object, &mut summary, &mut findings);
    }
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "summary": summary,
                "findings": findings,
            }))?
        ),
        Output::Text => {
            for finding in &findings {
                println!(
                    "{:<10} {}\n           {}",
                    finding.problem, finding.object, finding.detail
                );
            }
            println!("{}", summary_line(&summary));
        }
    }
    Ok(summary.problems() == 0 && summary.unverified == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_sync::plan::{CopyPlan, MissingPlan, Plan};

    fn copy(target: &str, action: CopyAction) -> CopyPlan {
        CopyPlan {
            target: target.into(),
            namespace: "ferry-0123456789abcdef".into(),
            name: "app-config".into(),
            action,
        }
    }

    #[test]
    fn dependency_copies_are_judged_like_the_others() {
        let object = ObjectPlan {
            resource: "configmaps".into(),
            plan: Plan {
                key: ferry_core::identity::UpstreamKey::new("lc", "demo", "app-config"),
                upstream: UpstreamState::Live,
                finalizer: FinalizerPlan::Keep,
                placement: Placement::Chosen(vec!["c2".into()]),
                copies: vec![
                    // Left where no dependent needs it: like an orphan.
                    copy(
                        "c1",
                        CopyAction::Delete {
                            uid: "u".into(),
                            reason: DeleteReason::Unreferenced,
                        },
                    ),
                    // A dependent's create waiting for its dependency: still missing.
                    copy(
                        "c2",
                        CopyAction::AwaitDependency {
                            dependencies: vec!["configmaps/app-config".into()],
                        },
                    ),
                    // Kept on incomplete knowledge: kept, not a problem.
                    copy(
                        "c3",
                        CopyAction::Held {
                            reason: "not all listed".into(),
                        },
                    ),
                ],
                status: StatusPlan::None,
                dependents: None,
                missing: Vec::new(),
                missing_annotation: MissingPlan::Keep,
                dependencies_error: None,
            },
            workspace: None,
            refused: Vec::new(),
            duplicates: Vec::new(),
        };
        let mut summary = Summary::default();
        let mut findings = Vec::new();
        classify(&object, &mut summary, &mut findings);
        let problems: Vec<&str> = findings.iter().map(|f| f.problem).collect();
        assert_eq!(problems, vec!["orphaned", "missing", "kept"]);
        assert_eq!((summary.orphaned, summary.missing, summary.kept), (1, 1, 1));
        assert!(
            findings[1]
                .detail
                .contains("waiting (created once configmaps/app-config is here)")
        );
    }

    #[test]
    fn the_summary_line_has_every_count_and_mentions_kept_copies_only_when_there_are_some() {
        let mut s = Summary {
            objects: 3,
            missing: 1,
            ..Summary::default()
        };
        assert_eq!(
            summary_line(&s),
            "3 objects: 1 missing, 0 orphaned, 0 divergent, 0 duplicate, 0 stale, 0 stuck"
        );
        s.kept = 2;
        assert!(summary_line(&s).ends_with("(2 kept out of sight, 0 unverified)"));
        assert_eq!(s.problems(), 1);
    }
}

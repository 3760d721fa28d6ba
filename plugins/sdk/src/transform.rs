//! Per-target transform outcomes: the SDK's typed form of the WIT `target-outcome`.

use std::rc::Rc;

use serde_json::Value;

use crate::bindings::exports::ferry::sync::transform::{
    Outcome as RawOutcome, TargetOutcome as RawTargetOutcomeType,
};
use crate::config::render;
use crate::{Error, Target};

pub(crate) type RawTargetOutcome = RawTargetOutcomeType;

/// What to do on one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Apply this object on the target.
    Apply(Value),
    /// Apply this object, shared with other targets (the same `Rc`): the SDK writes its JSON
    /// once for all of them, where `Apply` with a clone per target writes it once per target
    /// (see [`TargetOutcome::apply_everywhere`]).
    ApplyShared(Rc<Value>),
    /// Apply this object, already written as JSON text (e.g. by [`crate::LazyObject`]),
    /// shared with other targets (the same `Rc`). The SDK passes the text on as it is; the
    /// host validates it like any answer (it must be a JSON object of the same type, name
    /// and mapped namespace).
    ApplyJson(Rc<str>),
    /// Leave the target without a copy (an existing copy is removed).
    Skip,
    /// This target cannot be served; the others still are. An existing copy is kept.
    Failed(Error),
}

/// One target's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetOutcome {
    /// The target's name, one of the names the hook was given.
    pub target: String,
    /// What to do there.
    pub outcome: Outcome,
}

impl TargetOutcome {
    /// The same object applied on every target, without a copy per target: one
    /// [`Outcome::ApplyShared`] each, written as JSON once.
    pub fn apply_everywhere(targets: &[Target], object: Value) -> Vec<TargetOutcome> {
        let object = Rc::new(object);
        targets
            .iter()
            .map(|target| TargetOutcome {
                target: target.name.clone(),
                outcome: Outcome::ApplyShared(Rc::clone(&object)),
            })
            .collect()
    }
}

impl TargetOutcome {
    /// The same object, written as JSON text once, applied on every target: one
    /// [`Outcome::ApplyJson`] each, sharing the text.
    pub fn apply_json_everywhere(targets: &[Target], json: String) -> Vec<TargetOutcome> {
        let json: Rc<str> = json.into();
        targets
            .iter()
            .map(|target| TargetOutcome {
                target: target.name.clone(),
                outcome: Outcome::ApplyJson(Rc::clone(&json)),
            })
            .collect()
    }
}

/// The WIT form of every outcome. A shared object is written once (its text is copied to the
/// other targets); an object that cannot be written fails only its own targets.
pub(crate) fn into_raw(outcomes: Vec<TargetOutcome>) -> Vec<RawTargetOutcome> {
    let mut written: Vec<(Rc<Value>, Result<String, Error>)> = Vec::new();
    let applied = |rendered: &Result<String, Error>| match rendered {
        Ok(json) => RawOutcome::Apply(json.clone()),
        Err(e) => RawOutcome::Failed(e.clone().into()),
    };
    outcomes
        .into_iter()
        .map(|TargetOutcome { target, outcome }| {
            let outcome = match outcome {
                Outcome::Apply(object) => applied(&render(&object)),
                Outcome::ApplyShared(object) => {
                    match written.iter().find(|(kept, _)| Rc::ptr_eq(kept, &object)) {
                        Some((_, rendered)) => applied(rendered),
                        None => {
                            let rendered = render(&object);
                            let outcome = applied(&rendered);
                            written.push((object, rendered));
                            outcome
                        }
                    }
                }
                Outcome::ApplyJson(json) => RawOutcome::Apply(json.as_ref().to_owned()),
                Outcome::Skip => RawOutcome::Skip,
                Outcome::Failed(e) => RawOutcome::Failed(e.into()),
            };
            RawTargetOutcome { target, outcome }
        })
        .collect()
}

/// Calls `transform` for each target: `Some` applies, `None` skips, an error fails that
/// target only, except `unsupported` (the plugin has no transform at all), which answers for
/// every target.
pub(crate) fn per_target(
    targets: &[Target],
    mut transform: impl FnMut(&Target) -> Result<Option<Value>, Error>,
) -> Result<Vec<TargetOutcome>, Error> {
    targets
        .iter()
        .map(|target| {
            let outcome = match transform(target) {
                Ok(Some(object)) => Outcome::Apply(object),
                Ok(None) => Outcome::Skip,
                Err(e) if e.is_unsupported() => return Err(e),
                Err(e) => Outcome::Failed(e),
            };
            Ok(TargetOutcome {
                target: target.name.clone(),
                outcome,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{Context, Plugin, Workspace};

    fn target(name: &str) -> Target {
        Target {
            name: name.into(),
            labels: vec![],
        }
    }

    fn context() -> Context {
        Context {
            workspace: Workspace {
                logical_cluster: "2x8mfrq3b9tmwx1v".into(),
                path: None,
                labels: vec![],
                annotations: vec![],
            },
            namespace: "default".into(),
            downstream_namespace: "ferry-1".into(),
        }
    }

    /// Applies on `apply-*` targets, skips `skip-*`, fails on the rest.
    struct PerTarget;

    impl Plugin for PerTarget {
        type Config = ();

        fn transform(
            _: &(),
            _: &Context,
            mut object: Value,
            target: &Target,
        ) -> Result<Option<Value>, Error> {
            if target.name.starts_with("apply") {
                object["target"] = target.name.clone().into();
                Ok(Some(object))
            } else if target.name.starts_with("skip") {
                Ok(None)
            } else {
                Err(Error::invalid_input(format!(
                    "cannot serve {}",
                    target.name
                )))
            }
        }
    }

    struct NoTransform;

    impl Plugin for NoTransform {
        type Config = ();
    }

    #[test]
    fn the_default_transform_all_answers_each_target_with_its_own_outcome() {
        let targets = [target("apply-1"), target("skip-2"), target("bad-3")];
        let outcomes = PerTarget::transform_all(&(), &context(), &json!({"a": 1}), &targets)
            .expect("per-target outcomes");
        assert_eq!(
            outcomes,
            vec![
                TargetOutcome {
                    target: "apply-1".into(),
                    outcome: Outcome::Apply(json!({"a": 1, "target": "apply-1"})),
                },
                TargetOutcome {
                    target: "skip-2".into(),
                    outcome: Outcome::Skip,
                },
                TargetOutcome {
                    target: "bad-3".into(),
                    outcome: Outcome::Failed(Error::invalid_input("cannot serve bad-3")),
                },
            ]
        );
    }

    #[test]
    fn a_plugin_without_transform_answers_unsupported_for_the_whole_call() {
        let err = NoTransform::transform_all(&(), &context(), &json!({}), &[target("a")])
            .expect_err("unsupported");
        assert!(err.is_unsupported(), "{err}");
    }

    #[test]
    fn outcomes_cross_the_boundary_as_json_text_and_plugin_errors() {
        let raw = into_raw(vec![
            TargetOutcome {
                target: "a".into(),
                outcome: Outcome::Apply(json!({"kind": "ConfigMap"})),
            },
            TargetOutcome {
                target: "b".into(),
                outcome: Outcome::Failed(Error::failed("boom")),
            },
        ]);
        assert_eq!(raw[0].target, "a");
        assert_eq!(
            raw[0].outcome,
            RawOutcome::Apply(r#"{"kind":"ConfigMap"}"#.into())
        );
        assert_eq!(
            raw[1].outcome,
            RawOutcome::Failed(crate::bindings::ferry::sync::types::PluginError::Failed(
                "boom".into()
            ))
        );
    }

    #[test]
    fn json_text_applied_everywhere_crosses_unchanged_to_every_target() {
        let targets = [target("a"), target("b")];
        let json = r#"{"kind" : "ConfigMap"}"#;
        let raw = into_raw(TargetOutcome::apply_json_everywhere(
            &targets,
            json.to_owned(),
        ));
        let names: Vec<&str> = raw.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        for r in &raw {
            assert_eq!(r.outcome, RawOutcome::Apply(json.into()), "not rewritten");
        }
    }

    #[test]
    fn an_object_applied_everywhere_reaches_every_target_as_the_same_text() {
        let targets = [target("a"), target("b"), target("c")];
        let outcomes = TargetOutcome::apply_everywhere(&targets, json!({"kind": "ConfigMap"}));
        let raw = into_raw(outcomes);
        let names: Vec<&str> = raw.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        for r in &raw {
            assert_eq!(
                r.outcome,
                RawOutcome::Apply(r#"{"kind":"ConfigMap"}"#.into())
            );
        }
    }
}

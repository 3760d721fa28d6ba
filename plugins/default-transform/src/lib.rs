//! `default-transform`: the object Ferry applies on a target is the upstream object minus
//! everything that only means something in kcp or on the server that stored it, moved into
//! the mapped namespace and labelled as Ferry's.
//!
//! It refuses a Service with `spec.externalIPs` (CVE-2020-8554: a tenant could capture
//! traffic for any address on a cluster shared with other tenants) unless configured to allow
//! them.
//!
//! Configuration (optional):
//! ```yaml
//! allowExternalIPs: true   # default false
//! ```

use ferry_plugin_sdk::{Context, Error, LazyObject, Plugin, Target, TargetOutcome, Value, export};
use serde::Deserialize;

mod logic;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    /// Let Services keep `spec.externalIPs`.
    #[serde(default, rename = "allowExternalIPs")]
    allow_external_ips: bool,
}

struct DefaultTransform;

impl Plugin for DefaultTransform {
    type Config = Option<Config>;

    /// The copy is the same on every target: check and transform once, then give every
    /// target the same text. A refused object fails every target at once (it is the object
    /// that is wrong, not a target).
    ///
    /// Only `metadata` changes (and `status` goes): the object is read with [`LazyObject`],
    /// which parses `kind` and `metadata` (and a Service's `spec`) and writes every other
    /// member back as the host sent it (docs/plugins.md "Boundary cost").
    fn transform_json(
        config: &Self::Config,
        context: &Context,
        object: &str,
        targets: &[Target],
    ) -> Result<Vec<TargetOutcome>, Error> {
        let mut object = LazyObject::parse(object)
            .map_err(|e| Error::invalid_input(format!("object is not a JSON object: {e}")))?;
        let allow_external_ips = config.as_ref().is_some_and(|c| c.allow_external_ips);
        let kind = object.get::<Value>("kind").map_err(invalid_member)?;
        if logic::needs_external_ips_check(
            kind.as_ref().and_then(Value::as_str),
            allow_external_ips,
        ) {
            let spec = object.get::<Value>("spec").map_err(invalid_member)?;
            logic::check_spec_external_ips(spec.as_ref()).map_err(Error::invalid_input)?;
        }
        let origin = logic::Origin {
            logical_cluster: &context.workspace.logical_cluster,
            workspace_path: context.workspace.path.as_deref(),
            downstream_namespace: &context.downstream_namespace,
        };
        // Status belongs to the target's controllers; Ferry aggregates it back separately.
        object.remove("status");
        let mut metadata = match object.take("metadata").map_err(invalid_member)? {
            Some(Value::Object(metadata)) => metadata,
            _ => return Err(Error::invalid_input(logic::NO_METADATA)),
        };
        logic::transform_metadata(&mut metadata, &origin).map_err(Error::invalid_input)?;
        object.insert("metadata", Value::Object(metadata));
        let json = object
            .to_json()
            .map_err(|e| Error::failed(format!("cannot write JSON: {e}")))?;
        Ok(TargetOutcome::apply_json_everywhere(targets, json))
    }
}

/// A member that is not JSON (the host sends valid JSON; this is for `ferry plugin run`).
fn invalid_member(e: ferry_plugin_sdk::serde_json::Error) -> Error {
    Error::invalid_input(format!("object is not valid JSON: {e}"))
}

export!(DefaultTransform);

#[cfg(test)]
mod tests {
    use ferry_plugin_sdk::{Outcome, Workspace, json};

    use super::*;

    fn context() -> Context {
        Context {
            workspace: Workspace {
                logical_cluster: "2x8mfrq3b9tmwx1v".into(),
                path: Some("root:team-a".into()),
                labels: vec![],
                annotations: vec![],
            },
            namespace: "shop".into(),
            downstream_namespace: "ferry-1a2b3c4d".into(),
        }
    }

    /// The lazy path's answer, parsed, for each of `targets`.
    fn lazy_answers(config: &Option<Config>, object: &Value, targets: &[Target]) -> Vec<Value> {
        DefaultTransform::transform_json(config, &context(), &object.to_string(), targets)
            .expect("transformed")
            .into_iter()
            .map(|outcome| match outcome.outcome {
                Outcome::ApplyJson(json) => serde_json::from_str(&json).expect("valid JSON"),
                other => panic!("expected JSON text, got {other:?}"),
            })
            .collect()
    }

    fn value_answer(object: &Value) -> Value {
        let context = context();
        let origin = logic::Origin {
            logical_cluster: &context.workspace.logical_cluster,
            workspace_path: context.workspace.path.as_deref(),
            downstream_namespace: &context.downstream_namespace,
        };
        logic::transform(object.clone(), &origin).expect("transformed")
    }

    #[test]
    fn the_lazy_path_answers_every_target_with_what_the_value_path_gives() {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "7",
                         "labels": {"app": "web", "sync.ferry.dev/uid": "forged"},
                         "annotations": {"kcp.io/cluster": "x", "team": "a"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "i"}]}}},
            "status": {"readyReplicas": 2}
        });
        let targets = [
            Target {
                name: "a".into(),
                labels: vec![],
            },
            Target {
                name: "b".into(),
                labels: vec![],
            },
        ];
        let answers = lazy_answers(&None, &object, &targets);
        assert_eq!(answers, vec![value_answer(&object); 2]);
    }

    #[test]
    fn a_service_is_checked_and_passed_through_the_lazy_path_like_the_value_path() {
        let service = json!({"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": "web"}, "spec": {"externalIPs": ["203.0.113.7"]}});
        let targets = [Target {
            name: "a".into(),
            labels: vec![],
        }];
        let err =
            DefaultTransform::transform_json(&None, &context(), &service.to_string(), &targets)
                .expect_err("refused");
        assert!(err.to_string().contains("CVE-2020-8554"), "{err}");
        let allowed = Some(Config {
            allow_external_ips: true,
        });
        assert_eq!(
            lazy_answers(&allowed, &service, &targets),
            vec![value_answer(&service)]
        );
    }

    #[test]
    fn an_object_without_metadata_or_not_an_object_is_invalid_input() {
        let targets = [Target {
            name: "a".into(),
            labels: vec![],
        }];
        for text in [
            r#"{"kind": "ConfigMap", "data": {}}"#,
            r#"{"metadata": []}"#,
            "[]",
        ] {
            let err = DefaultTransform::transform_json(&None, &context(), text, &targets)
                .expect_err("refused");
            assert_eq!(err.kind(), "invalid-input", "{text}: {err}");
        }
    }
}

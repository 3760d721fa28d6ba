//! Checks on a plugin's output, made before the engine applies anything.
//!
//! A plugin is untrusted code written by a platform team. Even a correct-looking plugin can
//! move an object into another tenant's namespace or turn a namespaced object into a
//! cluster-scoped one, which would break tenant isolation (invariant I4, docs/reliability.md). These checks keep
//! that decision out of the plugin's hands: the engine only ever applies output that passed
//! them.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plugin::{ObjectContext, ObjectRef, Target};

/// Largest output a hook may return, in bytes of JSON. The Kubernetes API server refuses
/// requests over 3 MiB, so anything larger could never be applied and only costs memory.
pub const MAX_OUTPUT_BYTES: usize = 3 * 1024 * 1024;

/// An `apiVersion` and `kind` pair, e.g. `apps/v1` `Deployment`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeRef {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
}

/// What a transform may change beyond the fields Ferry always lets it change.
///
/// The defaults are the strict ones: same `apiVersion` and `kind`, same name. Both relaxations
/// are explicit operator choices in configuration, never plugin choices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransformPolicy {
    /// Other types the output may have (e.g. an upstream `apps/v1beta1` turned into
    /// `apps/v1`).
    #[serde(default)]
    pub allowed_types: BTreeSet<TypeRef>,
    /// Whether the output may carry another name than the upstream object. Off by default:
    /// keeping names is what makes the upstream → downstream mapping injective.
    #[serde(default)]
    pub allow_rename: bool,
}

impl TransformPolicy {
    /// Allows one more output type (consuming setter).
    #[must_use]
    pub fn allow_type(mut self, api_version: impl Into<String>, kind: impl Into<String>) -> Self {
        self.allowed_types.insert(TypeRef {
            api_version: api_version.into(),
            kind: kind.into(),
        });
        self
    }

    /// Allows the output to be renamed (consuming setter).
    #[must_use]
    pub fn allow_rename(mut self, allow: bool) -> Self {
        self.allow_rename = allow;
        self
    }
}

/// Why a plugin's output was refused.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output is not JSON at all.
    #[error("output is not valid JSON")]
    NotJson(#[source] serde_json::Error),
    /// The output is JSON but not a JSON object.
    #[error("output is not a JSON object")]
    NotAnObject,
    /// The output is larger than the API server would accept.
    #[error("output is {bytes} bytes, more than the {limit} bytes an API server accepts")]
    TooLarge {
        /// Size of the output.
        bytes: usize,
        /// The limit ([`MAX_OUTPUT_BYTES`]).
        limit: usize,
    },
    /// A required field is missing or not a non-empty string.
    #[error("output has no `{field}` (a non-empty string is required)")]
    MissingField {
        /// JSON path of the field, e.g. `metadata.name`.
        field: &'static str,
    },
    /// The output's type differs from the upstream object's and the policy does not allow it.
    #[error("output is a {found_api_version} {found_kind}, expected {api_version} {kind}")]
    TypeChanged {
        /// Upstream `apiVersion`.
        api_version: String,
        /// Upstream `kind`.
        kind: String,
        /// Output `apiVersion`.
        found_api_version: String,
        /// Output `kind`.
        found_kind: String,
    },
    /// The output is in another namespace than the mapped one, or in none.
    #[error("output namespace is {found:?}, must be the mapped namespace {expected:?}")]
    WrongNamespace {
        /// The mapped downstream namespace.
        expected: String,
        /// The output's namespace; `None` would make it cluster-scoped.
        found: Option<String>,
    },
    /// The output's name differs from the upstream name and the policy does not allow it.
    #[error("output is named {found:?}, expected the upstream name {expected:?}")]
    Renamed {
        /// Upstream name.
        expected: String,
        /// Output name.
        found: String,
    },
    /// A placement named a target that is not configured.
    #[error("placement names unknown target {0:?}")]
    UnknownTarget(String),
    /// A placement named the same target twice.
    #[error("placement names target {0:?} twice")]
    DuplicateTarget(String),
    /// A transform (contract v0.2.0) answered for a target it was not given.
    #[error("transform answers for target {0:?}, which it was not given")]
    UnknownOutcomeTarget(String),
    /// A transform (contract v0.2.0) answered for the same target twice.
    #[error("transform answers for target {0:?} twice")]
    DuplicateOutcomeTarget(String),
    /// A transform (contract v0.2.0) gave no outcome for a target it was given.
    #[error("transform gives no outcome for target {0:?}")]
    MissingOutcome(String),
    /// A dependency reference (contract v0.2.0) cannot name a Kubernetes object.
    #[error("dependency {reference} is invalid: {reason}")]
    InvalidReference {
        /// The reference as `group/resource/name` (`resource/name` for the core group).
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Checks a placement: only configured targets, each at most once. Returns the names in the
/// plugin's order.
pub fn placement(chosen: Vec<String>, targets: &[Target]) -> Result<Vec<String>, OutputError> {
    let known: BTreeSet<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    for name in &chosen {
        if !known.contains(name.as_str()) {
            return Err(OutputError::UnknownTarget(name.clone()));
        }
        if !seen.insert(name.as_str()) {
            return Err(OutputError::DuplicateTarget(name.clone()));
        }
    }
    Ok(chosen)
}

/// Checks a transform's output against the upstream object it came from: a JSON object of
/// the same type (unless `policy` allows another), with the same name (unless allowed), in
/// exactly the mapped namespace. Returns the parsed object.
pub fn transform(
    output: &str,
    upstream: &Value,
    context: &ObjectContext,
    policy: &TransformPolicy,
) -> Result<Value, OutputError> {
    transform_object(json_object(output)?, upstream, context, policy)
}

/// [`transform`] for an output that is already parsed (an encoding other than JSON text, or
/// an object the host built from the plugin's answer): the same checks, without a parse.
/// The size limit is the caller's, on the encoded form.
pub fn transform_object(
    object: Value,
    upstream: &Value,
    context: &ObjectContext,
    policy: &TransformPolicy,
) -> Result<Value, OutputError> {
    if !object.is_object() {
        return Err(OutputError::NotAnObject);
    }
    let api_version = required_str(&object, &["apiVersion"], "apiVersion")?;
    let kind = required_str(&object, &["kind"], "kind")?;
    let up_api_version = str_at(upstream, &["apiVersion"]).unwrap_or_default();
    let up_kind = str_at(upstream, &["kind"]).unwrap_or_default();
    let same_type = api_version == up_api_version && kind == up_kind;
    let allowed = policy.allowed_types.contains(&TypeRef {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    });
    if !same_type && !allowed {
        return Err(OutputError::TypeChanged {
            api_version: up_api_version.to_owned(),
            kind: up_kind.to_owned(),
            found_api_version: api_version.to_owned(),
            found_kind: kind.to_owned(),
        });
    }

    let name = required_str(&object, &["metadata", "name"], "metadata.name")?;
    let up_name = str_at(upstream, &["metadata", "name"]).unwrap_or_default();
    if name != up_name && !policy.allow_rename {
        return Err(OutputError::Renamed {
            expected: up_name.to_owned(),
            found: name.to_owned(),
        });
    }

    // A missing namespace is refused rather than filled in: the engine applies to the
    // namespaced URL, but an object without one would be read as cluster-scoped by anything
    // that looks at the body alone.
    let namespace = str_at(&object, &["metadata", "namespace"]);
    if namespace != Some(context.downstream_namespace.as_str()) {
        return Err(OutputError::WrongNamespace {
            expected: context.downstream_namespace.clone(),
            found: namespace.map(str::to_owned),
        });
    }
    Ok(object)
}

/// Checks the target names of a transform's per-target outcomes (contract v0.2.0): exactly
/// one outcome for every target given, none for any other.
pub fn outcome_targets<'a>(
    answered: impl IntoIterator<Item = &'a str>,
    targets: &[Target],
) -> Result<(), OutputError> {
    let given: BTreeSet<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    for name in answered {
        if !given.contains(name) {
            return Err(OutputError::UnknownOutcomeTarget(name.to_owned()));
        }
        if !seen.insert(name) {
            return Err(OutputError::DuplicateOutcomeTarget(name.to_owned()));
        }
    }
    match given.difference(&seen).next() {
        Some(missing) => Err(OutputError::MissingOutcome((*missing).to_owned())),
        None => Ok(()),
    }
}

/// Checks a dependencies hook's output (contract v0.2.0) and merges it: every reference
/// names an object the API could hold (group empty or a DNS subdomain, resource a DNS label,
/// name a DNS subdomain, the rule for ConfigMaps, Secrets, ServiceAccounts and most other
/// objects); the same object mentioned twice becomes one reference, optional only if every
/// mention is. Returns the references sorted by group, resource and name.
pub fn dependencies(refs: Vec<ObjectRef>) -> Result<Vec<ObjectRef>, OutputError> {
    let mut merged: std::collections::BTreeMap<(String, String, String), bool> =
        std::collections::BTreeMap::new();
    for r in refs {
        let invalid = |reason: String| OutputError::InvalidReference {
            reference: if r.group.is_empty() {
                format!("{}/{}", r.resource, r.name)
            } else {
                format!("{}/{}/{}", r.group, r.resource, r.name)
            },
            reason,
        };
        if !r.group.is_empty() && !is_dns_subdomain(&r.group) {
            return Err(invalid(format!(
                "group {:?} is not a DNS subdomain",
                r.group
            )));
        }
        if !is_dns_label(&r.resource) {
            return Err(invalid(format!(
                "resource {:?} is not a plural resource name (a DNS label)",
                r.resource
            )));
        }
        if !is_dns_subdomain(&r.name) {
            return Err(invalid(format!("name {:?} is not a DNS subdomain", r.name)));
        }
        merged
            .entry((r.group, r.resource, r.name))
            .and_modify(|optional| *optional &= r.optional)
            .or_insert(r.optional);
    }
    Ok(merged
        .into_iter()
        .map(|((group, resource, name), optional)| ObjectRef {
            group,
            resource,
            name,
            optional,
        })
        .collect())
}

/// RFC 1123 label as Kubernetes checks it: 1 to 63 lowercase alphanumerics or `-`, starting
/// and ending with an alphanumeric.
fn is_dns_label(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&s.len())
        && s.chars().all(|c| alnum(c) || c == '-')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// RFC 1123 subdomain as Kubernetes checks it: at most 253 characters, dot-separated labels.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Checks a status aggregation's output: a JSON object (the new `status` stanza).
pub fn status(output: &str) -> Result<Value, OutputError> {
    json_object(output)
}

fn json_object(output: &str) -> Result<Value, OutputError> {
    if output.len() > MAX_OUTPUT_BYTES {
        return Err(OutputError::TooLarge {
            bytes: output.len(),
            limit: MAX_OUTPUT_BYTES,
        });
    }
    let value: Value = serde_json::from_str(output).map_err(OutputError::NotJson)?;
    if !value.is_object() {
        return Err(OutputError::NotAnObject);
    }
    Ok(value)
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
}

fn required_str<'a>(
    value: &'a Value,
    path: &[&str],
    field: &'static str,
) -> Result<&'a str, OutputError> {
    str_at(value, path)
        .filter(|s| !s.is_empty())
        .ok_or(OutputError::MissingField { field })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(resource: &str, name: &str, optional: bool) -> ObjectRef {
        ObjectRef {
            group: String::new(),
            resource: resource.into(),
            name: name.into(),
            optional,
        }
    }

    #[test]
    fn outcomes_must_answer_every_given_target_exactly_once() {
        let targets = [Target::new("a"), Target::new("b")];
        assert!(outcome_targets(["b", "a"], &targets).is_ok());
        assert!(matches!(
            outcome_targets(["a"], &targets),
            Err(OutputError::MissingOutcome(t)) if t == "b"
        ));
        assert!(matches!(
            outcome_targets(["a", "b", "a"], &targets),
            Err(OutputError::DuplicateOutcomeTarget(t)) if t == "a"
        ));
        assert!(matches!(
            outcome_targets(["a", "b", "c"], &targets),
            Err(OutputError::UnknownOutcomeTarget(t)) if t == "c"
        ));
    }

    #[test]
    fn duplicate_dependencies_merge_and_stay_required_if_any_mention_is() {
        let merged = dependencies(vec![
            dep("secrets", "db", true),
            dep("configmaps", "settings", true),
            dep("secrets", "db", false),
            dep("configmaps", "settings", true),
        ])
        .expect("valid");
        assert_eq!(
            merged,
            vec![
                dep("configmaps", "settings", true),
                dep("secrets", "db", false)
            ]
        );
    }

    #[test]
    fn dependencies_that_cannot_name_an_object_are_refused() {
        for (group, resource, name) in [
            ("", "", "settings"),
            ("", "configmaps", ""),
            ("", "configmaps", "Not_A_Name"),
            ("", "ConfigMaps", "settings"),
            ("Apps", "deployments", "web"),
            ("", "configmaps", "-leading-dash"),
        ] {
            let r = ObjectRef {
                group: group.into(),
                resource: resource.into(),
                name: name.into(),
                optional: false,
            };
            assert!(
                matches!(
                    dependencies(vec![r]),
                    Err(OutputError::InvalidReference { .. })
                ),
                "{group}/{resource}/{name} was accepted"
            );
        }
        let ok = ObjectRef {
            group: "apps.example.com".into(),
            resource: "widgets".into(),
            name: "web.v1".into(),
            optional: false,
        };
        assert!(dependencies(vec![ok]).is_ok());
    }

    fn context() -> ObjectContext {
        ObjectContext {
            logical_cluster: "abc".into(),
            workspace_path: None,
            workspace_labels: Default::default(),
            workspace_annotations: Default::default(),
            namespace: "default".into(),
            downstream_namespace: "ferry-1234".into(),
        }
    }

    fn upstream() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default"}})
    }

    fn output(namespace: Option<&str>) -> String {
        let mut o = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "web"}});
        if let Some(ns) = namespace {
            o["metadata"]["namespace"] = json!(ns);
        }
        o.to_string()
    }

    #[test]
    fn a_transform_into_the_mapped_namespace_is_accepted() {
        let out = transform(
            &output(Some("ferry-1234")),
            &upstream(),
            &context(),
            &TransformPolicy::default(),
        );
        assert!(out.is_ok(), "{out:?}");
    }

    #[test]
    fn a_parsed_output_is_checked_like_its_text() {
        let policy = TransformPolicy::default();
        let parsed = |ns| serde_json::from_str::<Value>(&output(ns)).expect("json");
        assert!(
            transform_object(parsed(Some("ferry-1234")), &upstream(), &context(), &policy).is_ok()
        );
        assert!(matches!(
            transform_object(
                parsed(Some("kube-system")),
                &upstream(),
                &context(),
                &policy
            ),
            Err(OutputError::WrongNamespace { .. })
        ));
        assert!(matches!(
            transform_object(
                json!(["not", "an", "object"]),
                &upstream(),
                &context(),
                &policy
            ),
            Err(OutputError::NotAnObject)
        ));
    }

    #[test]
    fn a_transform_into_another_namespace_is_refused() {
        let out = transform(
            &output(Some("kube-system")),
            &upstream(),
            &context(),
            &TransformPolicy::default(),
        );
        assert!(
            matches!(out, Err(OutputError::WrongNamespace { found: Some(ns), .. }) if ns == "kube-system")
        );
    }

    #[test]
    fn a_transform_without_namespace_is_refused_as_a_cluster_scoped_escape() {
        let out = transform(
            &output(None),
            &upstream(),
            &context(),
            &TransformPolicy::default(),
        );
        assert!(matches!(
            out,
            Err(OutputError::WrongNamespace { found: None, .. })
        ));
    }

    #[test]
    fn a_kind_change_is_refused_unless_the_policy_allows_it() {
        let mut o: Value = serde_json::from_str(&output(Some("ferry-1234"))).unwrap_or_default();
        o["kind"] = json!("StatefulSet");
        let strict = transform(
            &o.to_string(),
            &upstream(),
            &context(),
            &TransformPolicy::default(),
        );
        assert!(matches!(strict, Err(OutputError::TypeChanged { .. })));
        let relaxed = TransformPolicy::default().allow_type("apps/v1", "StatefulSet");
        assert!(transform(&o.to_string(), &upstream(), &context(), &relaxed).is_ok());
    }

    #[test]
    fn a_rename_is_refused_by_default() {
        let mut o: Value = serde_json::from_str(&output(Some("ferry-1234"))).unwrap_or_default();
        o["metadata"]["name"] = json!("other");
        let out = transform(
            &o.to_string(),
            &upstream(),
            &context(),
            &TransformPolicy::default(),
        );
        assert!(matches!(out, Err(OutputError::Renamed { .. })));
    }

    #[test]
    fn garbage_and_non_objects_are_refused() {
        let policy = TransformPolicy::default();
        assert!(matches!(
            transform("{not json", &upstream(), &context(), &policy),
            Err(OutputError::NotJson(_))
        ));
        assert!(matches!(
            transform("[1,2]", &upstream(), &context(), &policy),
            Err(OutputError::NotAnObject)
        ));
        assert!(matches!(status("\"ok\""), Err(OutputError::NotAnObject)));
    }

    #[test]
    fn oversized_output_is_refused_before_parsing() {
        let big = format!("\"{}\"", "x".repeat(MAX_OUTPUT_BYTES));
        assert!(matches!(status(&big), Err(OutputError::TooLarge { .. })));
    }

    #[test]
    fn a_placement_may_only_name_known_targets_once() {
        let targets = [Target::new("a"), Target::new("b")];
        assert!(placement(vec!["b".into(), "a".into()], &targets).is_ok());
        assert!(matches!(
            placement(vec!["c".into()], &targets),
            Err(OutputError::UnknownTarget(n)) if n == "c"
        ));
        assert!(matches!(
            placement(vec!["a".into(), "a".into()], &targets),
            Err(OutputError::DuplicateTarget(_))
        ));
    }
}

//! What [`validate`] promises about plugin output, checked on generated outputs.
//!
//! `validate::transform` accepts an output exactly when it is at most [`MAX_OUTPUT_BYTES`] of
//! JSON text, a JSON object, with `apiVersion` and `kind` non-empty strings naming the upstream
//! object's type (or a type the policy allows), `metadata.name` a non-empty string equal to the
//! upstream name (or any, if the policy allows renames) and `metadata.namespace` exactly the
//! mapped namespace; it returns the object it checked. Nothing else in the object is its
//! concern: labels, annotations and the spec are left to the API server, so these tests do
//! not expect garbage there to be refused.
//!
//! `validate::status` accepts any JSON object within the size limit, and `validate::placement`
//! any list of configured targets that names none twice.

use std::collections::BTreeSet;

use ferry_core::identity::downstream_namespace;
use ferry_core::validate::{self, MAX_OUTPUT_BYTES, OutputError, TransformPolicy, TypeRef};
use ferry_core::{ObjectContext, Target};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

/// Any JSON value a few levels deep. Numbers are integers or short binary fractions, which
/// survive a round trip through text exactly.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i32>().prop_map(|n| Value::from(f64::from(n) / 8.0)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON that is not an object.
fn non_object() -> impl Strategy<Value = Value> {
    json_value().prop_filter("an object", |v| !v.is_object())
}

/// Something where a non-empty string is required: the empty string or another JSON type.
fn not_a_non_empty_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("")),
        json_value().prop_filter("a string", |v| !v.is_string()),
    ]
}

/// `depth` arrays, one inside the other.
fn nested(depth: usize) -> Value {
    (0..depth).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
}

/// A transform call: the upstream object, its context, the policy, and one output that is
/// well-formed for them.
#[derive(Clone, Debug)]
struct Scenario {
    upstream: Value,
    context: ObjectContext,
    policy: TransformPolicy,
    output: Value,
}

impl Scenario {
    fn mapped(&self) -> &str {
        &self.context.downstream_namespace
    }

    fn upstream_str(&self, path: &[&str]) -> &str {
        str_at(&self.upstream, path).unwrap_or_default()
    }

    /// Whether `object` may be applied for this upstream object, exactly as the module
    /// documentation of `validate` states it.
    fn keeps_the_promise(&self, object: &Value) -> bool {
        let (Some(api_version), Some(kind), Some(name), Some(namespace)) = (
            str_at(object, &["apiVersion"]),
            str_at(object, &["kind"]),
            str_at(object, &["metadata", "name"]),
            str_at(object, &["metadata", "namespace"]),
        ) else {
            return false;
        };
        let same_type = api_version == self.upstream_str(&["apiVersion"])
            && kind == self.upstream_str(&["kind"]);
        object.is_object()
            && !api_version.is_empty()
            && !kind.is_empty()
            && !name.is_empty()
            && (same_type
                || self
                    .policy
                    .allowed_types
                    .contains(&type_ref(api_version, kind)))
            && (self.policy.allow_rename || name == self.upstream_str(&["metadata", "name"]))
            && namespace == self.mapped()
    }

    fn check(&self, output: &str) -> Result<Value, OutputError> {
        validate::transform(output, &self.upstream, &self.context, &self.policy)
    }
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
}

fn type_ref(api_version: &str, kind: &str) -> TypeRef {
    TypeRef {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    }
}

/// Fields a well-formed output may carry besides the checked ones: at the top level and in
/// `metadata`.
fn extra_fields() -> impl Strategy<Value = (Map<String, Value>, Map<String, Value>)> {
    let top = (
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        prop::option::of(0..=120usize),
    )
        .prop_map(|(spec, status, depth)| {
            let mut top = Map::new();
            if let Some(spec) = spec {
                top.insert("spec".into(), spec);
            }
            if let Some(status) = status {
                top.insert("status".into(), status);
            }
            // Nested as deep as the parser allows, with room to spare.
            if let Some(depth) = depth {
                top.insert("deep".into(), nested(depth));
            }
            top
        });
    let metadata = (
        prop::collection::btree_map("[a-z0-9./-]{1,30}", "[A-Za-z0-9._-]{0,30}", 0..5),
        prop::collection::btree_map("[a-z0-9./-]{1,30}", any::<String>(), 0..5),
    )
        .prop_map(|(labels, annotations)| {
            let mut metadata = Map::new();
            if !labels.is_empty() {
                metadata.insert("labels".into(), json!(labels));
            }
            if !annotations.is_empty() {
                metadata.insert("annotations".into(), json!(annotations));
            }
            metadata
        });
    (top, metadata)
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let upstream_type = (
        prop::sample::select(vec![
            "v1",
            "apps/v1",
            "batch/v1",
            "networking.k8s.io/v1",
            "example.dev/v1alpha1",
        ]),
        prop::sample::select(vec!["Deployment", "Service", "ConfigMap", "Job", "Widget"]),
    );
    // Allowed types never share an apiVersion with upstream types or foreign ones below.
    let allowed = prop::collection::vec(("allowed\\.dev/v[1-3]", "[A-Z][a-z]{1,8}"), 0..3);
    (
        upstream_type,
        "[a-z0-9]([-a-z0-9.]{0,40}[a-z0-9])?",
        "[a-z0-9]{16}",
        "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?",
        allowed,
        any::<bool>(),
        any::<Index>(),
        prop::option::of("[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?"),
        extra_fields(),
    )
        .prop_map(
            |(
                (api_version, kind),
                name,
                cluster,
                namespace,
                allowed,
                allow_rename,
                output_type,
                new_name,
                (mut output, mut metadata),
            )| {
                let mapped = downstream_namespace(&cluster, &namespace);
                let upstream = json!({
                    "apiVersion": api_version,
                    "kind": kind,
                    "metadata": {"name": name, "namespace": namespace, "uid": "u-1"},
                    "spec": {"replicas": 1},
                });
                let mut policy = TransformPolicy::default().allow_rename(allow_rename);
                for (api_version, kind) in &allowed {
                    policy = policy.allow_type(api_version.as_str(), kind.as_str());
                }
                // The upstream type or one of the allowed ones.
                let types: Vec<TypeRef> = std::iter::once(type_ref(api_version, kind))
                    .chain(policy.allowed_types.iter().cloned())
                    .collect();
                let chosen = &types[output_type.index(types.len())];
                let output_name = match new_name {
                    Some(new_name) if allow_rename => new_name,
                    _ => name,
                };
                metadata.insert("name".into(), json!(output_name));
                metadata.insert("namespace".into(), json!(mapped));
                output.insert("apiVersion".into(), json!(chosen.api_version));
                output.insert("kind".into(), json!(chosen.kind));
                output.insert("metadata".into(), Value::Object(metadata));
                Scenario {
                    upstream,
                    context: ObjectContext {
                        logical_cluster: cluster,
                        workspace_path: None,
                        workspace_labels: Default::default(),
                        workspace_annotations: Default::default(),
                        namespace,
                        downstream_namespace: mapped,
                    },
                    policy,
                    output: Value::Object(output),
                }
            },
        )
}

fn to_text(value: &Value, pretty: bool) -> String {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    text.expect("a serde_json::Value always serializes")
}

// ---------------------------------------------------------------------------------------
// Faults: one way each in which an output breaks the promise
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Field {
    ApiVersion,
    Kind,
    Name,
}

impl Field {
    fn path(self) -> &'static str {
        match self {
            Field::ApiVersion => "apiVersion",
            Field::Kind => "kind",
            Field::Name => "metadata.name",
        }
    }
}

/// Another namespace than the mapped one.
#[derive(Clone, Debug)]
enum Namespace {
    Any(String),
    Fixed(&'static str),
    /// The upstream namespace, unmapped.
    Upstream,
    /// Another tenant's mapped namespace.
    OtherTenant(String),
    /// The mapped namespace in capitals.
    Uppercase,
    /// The mapped namespace with something after it.
    Suffixed(String),
    /// A strict prefix of the mapped namespace.
    Prefix(Index),
}

/// One way to break an output. The faults that change the object compose: none of them
/// repairs what another broke. Those that change the text do not (a truncation can cut off
/// trailing garbage), so an output gets at most one of them, after the others and after
/// [`Fault::TooLarge`], which any of them leaves broken.
#[derive(Clone, Debug)]
enum Fault {
    /// A type that is neither the upstream type nor allowed: another `apiVersion`, `kind`
    /// (or both), or the kind in lower case.
    ForeignType(Option<String>, Option<String>),
    LowercaseKind,
    /// A required string removed (`None`) or replaced by something that is not a non-empty
    /// string.
    BadField(Field, Option<Value>),
    /// `metadata` removed or not an object.
    BadMetadata(Option<Value>),
    /// `metadata.namespace` removed or not a string: the cluster-scoped escape.
    NoNamespace(Option<Value>),
    /// `metadata.namespace` another namespace.
    OtherNamespace(Namespace),
    /// Another name, under a policy that does not allow renames.
    Renamed(String),
    /// The whole output replaced by JSON that is not an object.
    NotAnObject(Value),
    /// The text cut short.
    Truncated(Index),
    /// Text after the object.
    Trailing(String),
    /// Arrays (or objects) nested deeper than the parser's recursion limit.
    TooDeep(usize, bool),
    /// A padding member that makes the text larger than an API server accepts.
    TooLarge(usize),
}

/// The refusal a single fault must cause.
#[derive(Debug)]
enum Expected {
    NotJson,
    NotAnObject,
    /// Refused for its size, which is the whole text's.
    TooLarge,
    Missing(&'static str),
    TypeChanged,
    Namespace(Option<String>),
    Renamed(String),
}

impl Expected {
    fn matches(&self, error: &OutputError, text: &str) -> bool {
        match (self, error) {
            (Expected::NotJson, OutputError::NotJson(_))
            | (Expected::NotAnObject, OutputError::NotAnObject)
            | (Expected::TypeChanged, OutputError::TypeChanged { .. }) => true,
            (Expected::TooLarge, OutputError::TooLarge { bytes, limit }) => {
                *bytes == text.len() && *limit == MAX_OUTPUT_BYTES
            }
            (Expected::Missing(path), OutputError::MissingField { field }) => path == field,
            (Expected::Namespace(found), OutputError::WrongNamespace { found: f, .. }) => {
                found == f
            }
            (Expected::Renamed(found), OutputError::Renamed { found: f, .. }) => found == f,
            _ => false,
        }
    }
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![12 => object_fault(), 4 => text_fault(), 1 => too_large()]
}

fn too_large() -> impl Strategy<Value = Fault> {
    (0..1024usize).prop_map(Fault::TooLarge)
}

fn object_fault() -> impl Strategy<Value = Fault> {
    let field = prop_oneof![
        Just(Field::ApiVersion),
        Just(Field::Kind),
        Just(Field::Name)
    ];
    let namespace = prop_oneof![
        any::<String>().prop_map(Namespace::Any),
        prop::sample::select(vec!["", "default", "kube-system", "ferry", "ferry-"])
            .prop_map(Namespace::Fixed),
        Just(Namespace::Upstream),
        "[a-z0-9]{16}".prop_map(Namespace::OtherTenant),
        Just(Namespace::Uppercase),
        prop_oneof![Just("\0".to_owned()), Just(" ".to_owned()), any::<String>()]
            .prop_map(Namespace::Suffixed),
        any::<Index>().prop_map(Namespace::Prefix),
    ];
    prop_oneof![
        (
            prop::option::of("foreign\\.dev/v[0-9]"),
            prop::option::of("Foreign[A-Z][a-z]{0,5}")
        )
            .prop_map(|(a, k)| Fault::ForeignType(a, k)),
        Just(Fault::LowercaseKind),
        (field, prop::option::of(not_a_non_empty_string()))
            .prop_map(|(f, v)| Fault::BadField(f, v)),
        prop::option::of(non_object()).prop_map(Fault::BadMetadata),
        prop::option::of(json_value().prop_filter("a string", |v| !v.is_string()))
            .prop_map(Fault::NoNamespace),
        namespace.prop_map(Fault::OtherNamespace),
        "[a-z0-9]([-a-z0-9.]{0,40}[a-z0-9])?".prop_map(Fault::Renamed),
    ]
}

fn text_fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        non_object().prop_map(Fault::NotAnObject),
        any::<Index>().prop_map(Fault::Truncated),
        // JSON whitespace is only these four; any other character after the object is garbage.
        ("[^ \t\r\n]", any::<String>()).prop_map(|(c, rest)| Fault::Trailing(c + &rest)),
        (129..3000usize, any::<bool>()).prop_map(|(d, arrays)| Fault::TooDeep(d, arrays)),
    ]
}

fn metadata_mut(output: &mut Value) -> Option<&mut Map<String, Value>> {
    output.get_mut("metadata").and_then(Value::as_object_mut)
}

/// Applies `fault` to `scenario.output` if it is one that changes the object; returns the
/// refusal it must cause on its own.
fn break_object(scenario: &mut Scenario, fault: &Fault) -> Option<Expected> {
    let output = &mut scenario.output;
    let object = output.as_object_mut()?;
    match fault {
        Fault::ForeignType(api_version, kind) => {
            let (a, k) = match (api_version, kind) {
                (None, None) => ("foreign.dev/v1".to_owned(), None),
                (a, k) => (
                    a.clone()
                        .unwrap_or_else(|| str_or_empty(object, "apiVersion")),
                    k.clone(),
                ),
            };
            object.insert("apiVersion".into(), json!(a));
            if let Some(k) = k {
                object.insert("kind".into(), json!(k));
            }
            Some(Expected::TypeChanged)
        }
        Fault::LowercaseKind => {
            let kind = str_or_empty(object, "kind").to_lowercase();
            object.insert("kind".into(), json!(kind));
            Some(Expected::TypeChanged)
        }
        Fault::BadField(field, value) => {
            let (map, key) = match field {
                Field::ApiVersion => (Some(object), "apiVersion"),
                Field::Kind => (Some(object), "kind"),
                Field::Name => (metadata_mut(output), "name"),
            };
            let map = map?;
            match value {
                None => map.remove(key),
                Some(v) => map.insert(key.into(), v.clone()),
            };
            Some(Expected::Missing(field.path()))
        }
        Fault::BadMetadata(value) => {
            match value {
                None => object.remove("metadata"),
                Some(v) => object.insert("metadata".into(), v.clone()),
            };
            Some(Expected::Missing("metadata.name"))
        }
        Fault::NoNamespace(value) => {
            let metadata = metadata_mut(output)?;
            match value {
                None => metadata.remove("namespace"),
                Some(v) => metadata.insert("namespace".into(), v.clone()),
            };
            Some(Expected::Namespace(None))
        }
        Fault::OtherNamespace(choice) => {
            let mapped = scenario.context.downstream_namespace.clone();
            let mut namespace = match choice {
                Namespace::Any(s) => s.clone(),
                Namespace::Fixed(s) => (*s).to_owned(),
                Namespace::Upstream => scenario.context.namespace.clone(),
                Namespace::OtherTenant(cluster) => {
                    downstream_namespace(cluster, &scenario.context.namespace)
                }
                Namespace::Uppercase => mapped.to_uppercase(),
                Namespace::Suffixed(s) => format!("{mapped}{s}"),
                Namespace::Prefix(at) => mapped[..at.index(mapped.len())].to_owned(),
            };
            if namespace == mapped {
                namespace.push('x');
            }
            metadata_mut(output)?.insert("namespace".into(), json!(namespace));
            Some(Expected::Namespace(Some(namespace)))
        }
        Fault::Renamed(name) => {
            let upstream_name = str_at(&scenario.upstream, &["metadata", "name"])
                .unwrap_or_default()
                .to_owned();
            let mut name = name.clone();
            if name == upstream_name {
                name.push('x');
            }
            scenario.policy.allow_rename = false;
            metadata_mut(output)?.insert("name".into(), json!(name));
            Some(Expected::Renamed(name))
        }
        _ => None,
    }
}

fn str_or_empty(object: &Map<String, Value>, key: &str) -> String {
    object
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Applies `fault` to `text` if it is one that changes the text; returns the refusal it must
/// cause on its own.
fn break_text(text: &mut String, fault: &Fault) -> Option<Expected> {
    match fault {
        Fault::NotAnObject(value) => {
            *text = value.to_string();
            Some(Expected::NotAnObject)
        }
        Fault::Truncated(at) => {
            let mut at = at.index(text.len().max(1));
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.truncate(at);
            Some(Expected::NotJson)
        }
        Fault::Trailing(garbage) => {
            text.push_str(garbage);
            Some(Expected::NotJson)
        }
        Fault::TooDeep(depth, arrays) => {
            let (open, close) = if *arrays {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            let leaf = if *arrays { "" } else { "1" };
            let deep = format!("{}{leaf}{}", open.repeat(*depth), close.repeat(*depth));
            // As the first member of the object; anything else gets wrapped in an array.
            *text = match text.strip_prefix('{') {
                Some(rest) => format!("{{\"nested\":{deep},{rest}"),
                None => format!("[{deep},{text}]"),
            };
            if text.len() > MAX_OUTPUT_BYTES {
                return Some(Expected::TooLarge);
            }
            Some(Expected::NotJson)
        }
        Fault::TooLarge(extra) => {
            // Valid in every other way: refused for its size alone. Written into the text, as
            // serializing megabytes for every case would make the test slow.
            let padding = "x".repeat(MAX_OUTPUT_BYTES + extra);
            *text = match text.strip_prefix('{') {
                Some(rest) => format!("{{\"padding\":\"{padding}\",{rest}"),
                None => format!("{text}{}", " ".repeat(padding.len())),
            };
            Some(Expected::TooLarge)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn well_formed_transform_outputs_are_accepted_as_they_are(
        scenario in scenario(),
        pretty in any::<bool>(),
    ) {
        let text = to_text(&scenario.output, pretty);
        match scenario.check(&text) {
            Ok(object) => prop_assert_eq!(object, scenario.output),
            Err(error) => prop_assert!(false, "refused: {error}\n{text}"),
        }
    }

    #[test]
    fn an_output_with_one_fault_is_refused_for_that_fault(
        mut scenario in scenario(),
        fault in fault(),
        pretty in any::<bool>(),
    ) {
        let object_fault = break_object(&mut scenario, &fault);
        let mut text = to_text(&scenario.output, pretty);
        let text_fault = break_text(&mut text, &fault);
        let expected = object_fault.or(text_fault).expect("every fault changes something");
        match scenario.check(&text) {
            Ok(_) => prop_assert!(false, "accepted despite {fault:?}"),
            Err(error) => prop_assert!(
                expected.matches(&error, &text),
                "{fault:?}: expected {expected:?}, got {error:?}"
            ),
        }
    }

    #[test]
    fn an_output_with_several_faults_is_refused(
        mut scenario in scenario(),
        object_faults in prop::collection::vec(object_fault(), 2..5),
        too_large in prop::option::weighted(0.1, too_large()),
        text_fault in prop::option::of(text_fault()),
        pretty in any::<bool>(),
    ) {
        for fault in &object_faults {
            break_object(&mut scenario, fault);
        }
        let mut text = to_text(&scenario.output, pretty);
        for fault in too_large.iter().chain(&text_fault) {
            break_text(&mut text, fault);
        }
        let result = scenario.check(&text);
        prop_assert!(
            result.is_err(),
            "accepted despite {object_faults:?}, {too_large:?} and {text_fault:?}"
        );
    }

    /// Outputs written as text, with keys repeated and in any order: whatever is accepted is
    /// exactly the parsed text, and it is accepted exactly when it keeps the promise.
    #[test]
    fn an_output_is_accepted_exactly_when_its_parsed_object_keeps_the_promise(
        (scenario, text) in scenario().prop_flat_map(|s| {
            let text = near_miss_text(&s);
            (Just(s), text)
        }),
    ) {
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let promised = parsed.as_ref().is_some_and(|o| scenario.keeps_the_promise(o));
        match scenario.check(&text) {
            Ok(object) => {
                prop_assert!(promised, "accepted: {text}");
                prop_assert_eq!(Some(object), parsed);
            }
            Err(error) => prop_assert!(!promised, "refused ({error}): {text}"),
        }
    }

    #[test]
    fn any_json_value_is_accepted_exactly_when_it_keeps_the_promise(
        scenario in scenario(),
        value in json_value(),
    ) {
        let accepted = scenario.check(&value.to_string()).is_ok();
        prop_assert_eq!(accepted, scenario.keeps_the_promise(&value));
    }

    #[test]
    fn arbitrary_text_is_refused_unless_it_parses_to_an_object_that_keeps_the_promise(
        scenario in scenario(),
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(
                prop::sample::select(vec!["{", "}", "[", "]", ":", ",", "\"", "\\", "null", "1e999", "-", "\"apiVersion\"", "\"metadata\"", " "]),
                0..40,
            ).prop_map(|parts| parts.concat()),
        ],
    ) {
        let promised = serde_json::from_str::<Value>(&text)
            .is_ok_and(|o| scenario.keeps_the_promise(&o));
        prop_assert_eq!(scenario.check(&text).is_ok(), promised);
    }

    #[test]
    fn status_output_is_accepted_exactly_when_it_is_a_json_object(value in json_value()) {
        match validate::status(&value.to_string()) {
            Ok(object) => prop_assert_eq!(object, value),
            Err(OutputError::NotAnObject) => prop_assert!(!value.is_object()),
            Err(error) => prop_assert!(false, "{error:?} for {value}"),
        }
    }

    #[test]
    fn arbitrary_status_text_is_refused_unless_it_parses_to_an_object(text in any::<String>()) {
        let object = serde_json::from_str::<Value>(&text).ok().filter(Value::is_object);
        prop_assert_eq!(validate::status(&text).ok(), object);
    }

    #[test]
    fn a_placement_is_accepted_exactly_when_it_names_configured_targets_once(
        configured in prop::collection::btree_set("[a-c]{1,2}", 0..5),
        chosen in prop::collection::vec("[a-c]{1,2}", 0..6),
    ) {
        let targets: Vec<Target> = configured.iter().map(Target::new).collect();
        let unique: BTreeSet<&String> = chosen.iter().collect();
        let valid = unique.len() == chosen.len() && chosen.iter().all(|c| configured.contains(c));
        match validate::placement(chosen.clone(), &targets) {
            Ok(kept) => {
                prop_assert!(valid);
                prop_assert_eq!(kept, chosen);
            }
            Err(OutputError::UnknownTarget(name)) => {
                prop_assert!(!configured.contains(&name));
                prop_assert!(chosen.contains(&name));
            }
            Err(OutputError::DuplicateTarget(name)) => {
                prop_assert!(chosen.iter().filter(|c| **c == name).count() > 1);
            }
            Err(error) => prop_assert!(false, "{error:?}"),
        }
    }
}

/// A transform output as text: the well-formed members of `scenario`'s output with near-miss
/// members mixed in, keys repeated (`serde_json` keeps the last), at any position.
fn near_miss_text(scenario: &Scenario) -> impl Strategy<Value = String> + use<> {
    let mapped = scenario.mapped().to_owned();
    let name = scenario.upstream_str(&["metadata", "name"]).to_owned();
    let api_version = str_at(&scenario.output, &["apiVersion"])
        .unwrap_or_default()
        .to_owned();
    let kind = str_at(&scenario.output, &["kind"])
        .unwrap_or_default()
        .to_owned();
    let other_tenant = downstream_namespace("someone-else", &scenario.context.namespace);
    let metadata_base = vec![
        member("name", &json!(name)),
        member("namespace", &json!(mapped)),
    ];
    let metadata_pool = vec![
        member("name", &json!(name)),
        member("name", &json!(format!("{name}-2"))),
        member("name", &json!("")),
        member("name", &json!(7)),
        member("namespace", &json!(mapped)),
        member("namespace", &json!(other_tenant)),
        member("namespace", &json!(scenario.context.namespace)),
        member("namespace", &json!("")),
        member("namespace", &Value::Null),
        member("labels", &json!({"app": "web"})),
        member("labels", &json!(42)),
        member("annotations", &json!([])),
    ];
    let top_pool = vec![
        member("apiVersion", &json!(api_version)),
        member("apiVersion", &json!("foreign.dev/v1")),
        member("apiVersion", &json!("")),
        member("apiVersion", &json!(1)),
        member("kind", &json!(kind)),
        member("kind", &json!(kind.to_lowercase())),
        member("kind", &Value::Null),
        member("metadata", &json!({"name": name, "namespace": mapped})),
        member(
            "metadata",
            &json!({"name": name, "namespace": other_tenant}),
        ),
        member("metadata", &json!({"name": name})),
        member("metadata", &json!("")),
        member("metadata", &Value::Null),
        member("spec", &json!({"replicas": 2})),
    ];
    let extras = |pool: Vec<(String, String)>| {
        prop::collection::vec((prop::sample::select(pool), any::<Index>()), 0..4)
    };
    (extras(metadata_pool), extras(top_pool)).prop_map(move |(metadata_extras, top_extras)| {
        let metadata = object_text(metadata_base.clone(), metadata_extras);
        let top_base = vec![
            member("apiVersion", &json!(api_version)),
            member("kind", &json!(kind)),
            ("\"metadata\"".to_owned(), metadata),
        ];
        object_text(top_base, top_extras)
    })
}

/// A member of an object as text: the quoted key and the value.
fn member(key: &str, value: &Value) -> (String, String) {
    (json!(key).to_string(), value.to_string())
}

/// `{…}` of `base`, with each extra member inserted at its position.
fn object_text(
    mut members: Vec<(String, String)>,
    extras: Vec<((String, String), Index)>,
) -> String {
    for (extra, at) in extras {
        let at = at.index(members.len() + 1);
        members.insert(at, extra);
    }
    let members: Vec<String> = members.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("{{{}}}", members.join(","))
}

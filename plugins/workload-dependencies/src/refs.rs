//! The objects a pod spec names: ConfigMaps, Secrets and its ServiceAccount.

use std::collections::BTreeMap;

use ferry_plugin_sdk::ObjectRef;
use serde_json::Value;

/// Which kinds of references to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    /// ConfigMaps of volumes, projected volumes, `envFrom` and `env[].valueFrom`.
    pub config_maps: bool,
    /// Secrets of volumes, projected volumes, `envFrom` and `env[].valueFrom`.
    pub secrets: bool,
    /// Secrets named in `imagePullSecrets`.
    pub image_pull_secrets: bool,
    /// The pod's ServiceAccount, unless it is `default`.
    pub service_accounts: bool,
}

impl Default for Kinds {
    fn default() -> Self {
        Self {
            config_maps: true,
            secrets: true,
            image_pull_secrets: true,
            service_accounts: true,
        }
    }
}

const CONFIG_MAPS: &str = "configmaps";
const SECRETS: &str = "secrets";
const SERVICE_ACCOUNTS: &str = "serviceaccounts";

/// Every container list of a pod spec: all of them run with the pod's volumes and env.
const CONTAINER_LISTS: &[&str] = &["initContainers", "containers", "ephemeralContainers"];

/// The references of `pod` (a pod spec), one per object, sorted by resource and name. An
/// object mentioned several times is optional only if every mention is: one required mention
/// is enough for the pod to fail without it.
pub fn of(pod: &Value, kinds: Kinds) -> Vec<ObjectRef> {
    let mut found = Found::new(kinds);
    for volume in items(pod, "volumes") {
        found.source(CONFIG_MAPS, volume.get("configMap"), "name");
        found.source(SECRETS, volume.get("secret"), "secretName");
        for projection in volume
            .get("projected")
            .into_iter()
            .flat_map(|p| items(p, "sources"))
        {
            found.source(CONFIG_MAPS, projection.get("configMap"), "name");
            found.source(SECRETS, projection.get("secret"), "name");
        }
    }
    for container in CONTAINER_LISTS.iter().flat_map(|list| items(pod, list)) {
        for from in items(container, "envFrom") {
            found.source(CONFIG_MAPS, from.get("configMapRef"), "name");
            found.source(SECRETS, from.get("secretRef"), "name");
        }
        for value_from in items(container, "env").filter_map(|var| var.get("valueFrom")) {
            found.source(CONFIG_MAPS, value_from.get("configMapKeyRef"), "name");
            found.source(SECRETS, value_from.get("secretKeyRef"), "name");
        }
    }
    if kinds.image_pull_secrets {
        // Required: the kubelet starts the pod without a missing pull secret, but a private
        // image then fails to pull; better to hold the workload back until it is there.
        for secret in items(pod, "imagePullSecrets") {
            found.insert(SECRETS, secret.get("name"), false);
        }
    }
    if kinds.service_accounts {
        // `serviceAccount` is the deprecated alias the API server still fills in.
        let name = pod
            .get("serviceAccountName")
            .or_else(|| pod.get("serviceAccount"));
        // Every namespace of every cluster has its own `default` ServiceAccount, made by the
        // cluster's controllers: copying the upstream one would fight them.
        if name.and_then(Value::as_str) != Some("default") {
            found.insert(SERVICE_ACCOUNTS, name, false);
        }
    }
    found.into_refs()
}

/// The elements of array `key` of `object`; nothing when absent or not an array (the API
/// server validated the shape; a plugin that cannot read a field has nothing to add).
fn items<'a>(object: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    object
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// References found so far: (resource, name) -> optional.
struct Found {
    kinds: Kinds,
    refs: BTreeMap<(&'static str, String), bool>,
}

impl Found {
    fn new(kinds: Kinds) -> Self {
        Self {
            kinds,
            refs: BTreeMap::new(),
        }
    }

    /// The reference in `source` (a ConfigMap or Secret volume source, projection, env
    /// source or key selector), if any and if that kind is reported: its name under
    /// `name_key`, optional when `source.optional` is true.
    fn source(&mut self, resource: &'static str, source: Option<&Value>, name_key: &str) {
        let wanted = match resource {
            CONFIG_MAPS => self.kinds.config_maps,
            SECRETS => self.kinds.secrets,
            _ => true,
        };
        let Some(source) = source.filter(|_| wanted) else {
            return;
        };
        let optional = source.get("optional").and_then(Value::as_bool) == Some(true);
        self.insert(resource, source.get(name_key), optional);
    }

    fn insert(&mut self, resource: &'static str, name: Option<&Value>, optional: bool) {
        let Some(name) = name.and_then(Value::as_str).filter(|n| !n.is_empty()) else {
            return;
        };
        self.refs
            .entry((resource, name.to_owned()))
            .and_modify(|all_optional| *all_optional &= optional)
            .or_insert(optional);
    }

    fn into_refs(self) -> Vec<ObjectRef> {
        self.refs
            .into_iter()
            .map(|((resource, name), optional)| ObjectRef {
                group: String::new(),
                resource: resource.to_owned(),
                name,
                optional,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn required(resource: &str, name: &str) -> ObjectRef {
        ObjectRef::required("", resource, name)
    }

    fn optional(resource: &str, name: &str) -> ObjectRef {
        ObjectRef::optional("", resource, name)
    }

    #[test]
    fn volumes_name_config_maps_and_secrets_with_their_optional_flag() {
        let pod = json!({"volumes": [
            {"name": "a", "configMap": {"name": "settings"}},
            {"name": "b", "configMap": {"name": "extra", "optional": true}},
            {"name": "c", "secret": {"secretName": "tls"}},
            {"name": "d", "secret": {"secretName": "maybe", "optional": true}},
            {"name": "e", "emptyDir": {}},
        ]});
        assert_eq!(
            of(&pod, Kinds::default()),
            vec![
                optional("configmaps", "extra"),
                required("configmaps", "settings"),
                optional("secrets", "maybe"),
                required("secrets", "tls"),
            ]
        );
    }

    #[test]
    fn projected_volume_sources_count_like_volumes() {
        let pod = json!({"volumes": [{"name": "all", "projected": {"sources": [
            {"configMap": {"name": "settings"}},
            {"secret": {"name": "tls", "optional": true}},
            {"serviceAccountToken": {"path": "token"}},
            {"downwardAPI": {"items": []}},
        ]}}]});
        assert_eq!(
            of(&pod, Kinds::default()),
            vec![
                required("configmaps", "settings"),
                optional("secrets", "tls")
            ]
        );
    }

    #[test]
    fn env_from_and_value_from_are_read_in_every_container_list() {
        let pod = json!({
            "initContainers": [{"name": "init", "envFrom": [{"configMapRef": {"name": "init-env"}}]}],
            "containers": [{"name": "app",
                "envFrom": [{"secretRef": {"name": "app-env", "optional": true}}],
                "env": [
                    {"name": "PLAIN", "value": "x"},
                    {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "logging", "key": "level"}}},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token", "optional": true}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ]}],
            "ephemeralContainers": [{"name": "debug", "envFrom": [{"configMapRef": {"name": "debug-env"}}]}],
        });
        assert_eq!(
            of(&pod, Kinds::default()),
            vec![
                required("configmaps", "debug-env"),
                required("configmaps", "init-env"),
                required("configmaps", "logging"),
                optional("secrets", "api"),
                optional("secrets", "app-env"),
            ]
        );
    }

    #[test]
    fn image_pull_secrets_and_the_service_account_are_required_but_default_is_not_named() {
        let pod =
            json!({"serviceAccountName": "builder", "imagePullSecrets": [{"name": "registry"}]});
        assert_eq!(
            of(&pod, Kinds::default()),
            vec![
                required("secrets", "registry"),
                required("serviceaccounts", "builder"),
            ]
        );
        let default = json!({"serviceAccountName": "default", "serviceAccount": "default"});
        assert_eq!(of(&default, Kinds::default()), vec![]);
        let deprecated = json!({"serviceAccount": "legacy"});
        assert_eq!(
            of(&deprecated, Kinds::default()),
            vec![required("serviceaccounts", "legacy")]
        );
    }

    #[test]
    fn an_object_is_optional_only_if_every_mention_is() {
        let pod = json!({
            "volumes": [{"name": "a", "configMap": {"name": "shared", "optional": true}},
                        {"name": "b", "secret": {"secretName": "both", "optional": true}}],
            "containers": [{"name": "app",
                "envFrom": [{"configMapRef": {"name": "shared"}},
                            {"secretRef": {"name": "both", "optional": true}}]}],
        });
        assert_eq!(
            of(&pod, Kinds::default()),
            vec![
                required("configmaps", "shared"),
                optional("secrets", "both")
            ]
        );
    }

    #[test]
    fn each_kind_of_reference_can_be_turned_off() {
        let pod = json!({
            "serviceAccountName": "builder",
            "imagePullSecrets": [{"name": "registry"}],
            "volumes": [{"name": "a", "configMap": {"name": "settings"}},
                        {"name": "b", "secret": {"secretName": "tls"}}],
        });
        let only = |kinds: Kinds| of(&pod, kinds);
        let none = Kinds {
            config_maps: false,
            secrets: false,
            image_pull_secrets: false,
            service_accounts: false,
        };
        assert_eq!(only(none), vec![]);
        assert_eq!(
            only(Kinds {
                config_maps: true,
                ..none
            }),
            vec![required("configmaps", "settings")]
        );
        assert_eq!(
            only(Kinds {
                secrets: true,
                ..none
            }),
            vec![required("secrets", "tls")]
        );
        assert_eq!(
            only(Kinds {
                image_pull_secrets: true,
                ..none
            }),
            vec![required("secrets", "registry")]
        );
        assert_eq!(
            only(Kinds {
                service_accounts: true,
                ..none
            }),
            vec![required("serviceaccounts", "builder")]
        );
    }

    #[test]
    fn references_without_a_name_are_ignored() {
        let pod = json!({"volumes": [{"name": "a", "configMap": {}}, {"name": "b", "secret": {"secretName": ""}}]});
        assert_eq!(of(&pod, Kinds::default()), vec![]);
    }
}

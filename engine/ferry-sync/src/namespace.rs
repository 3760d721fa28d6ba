//! The namespace Ferry creates on a target for one tenant namespace: who it belongs to, and
//! the Pod Security Admission level that keeps a tenant's workloads from escalating on a
//! cluster other tenants share.
//!
//! Pure: the executor ([`crate::reconcile`]) decides when to read and write; this module says
//! what the namespace must look like and whether an existing one needs a write.

use std::collections::BTreeMap;
use std::fmt;

use ferry_core::identity::{self, MANAGER};
use serde::Deserialize;
use serde_json::{Value, json};

/// The label Pod Security Admission reads to decide which Pods a namespace admits.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// A Pod Security Standard level
/// (<https://kubernetes.io/docs/concepts/security/pod-security-standards/>).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// Unrestricted: any Pod, including privileged ones. Only for clusters with another guard.
    Privileged,
    /// Prevents known privilege escalations (privileged containers, host namespaces, host
    /// paths, added capabilities beyond the default set) while most workloads run unchanged.
    #[default]
    Baseline,
    /// Hardened: non-root, no privilege escalation, a seccomp profile, all capabilities dropped.
    Restricted,
}

impl PodSecurityLevel {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

impl fmt::Display for PodSecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The namespace object Ferry applies (server-side, as field manager [`MANAGER`]) for tenant
/// namespace `upstream_namespace` of logical cluster `cluster`.
pub fn desired(
    name: &str,
    cluster: &str,
    upstream_namespace: &str,
    level: PodSecurityLevel,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                identity::MANAGED_BY: MANAGER,
                identity::CLUSTER: cluster,
                POD_SECURITY_ENFORCE: level.as_str(),
            },
            "annotations": { identity::NAMESPACE: upstream_namespace },
        },
    })
}

/// Whether an existing namespace (Ferry's, by its other labels) lacks the level: one created
/// by an older Ferry without the label, or with another level configured since, or edited
/// by hand. It is applied again then, once per process and namespace.
pub fn needs_level(labels: &BTreeMap<String, String>, level: PodSecurityLevel) -> bool {
    labels.get(POD_SECURITY_ENFORCE).map(String::as_str) != Some(level.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_namespace_carries_the_configured_level_and_ferrys_identity() {
        let object = desired("ferry-0123", "lc-a", "demo", PodSecurityLevel::Restricted);
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels[POD_SECURITY_ENFORCE], "restricted");
        assert_eq!(labels[identity::MANAGED_BY], MANAGER);
        assert_eq!(labels[identity::CLUSTER], "lc-a");
        assert_eq!(
            object["metadata"]["annotations"][identity::NAMESPACE],
            "demo"
        );
    }

    #[test]
    fn the_default_level_is_baseline() {
        assert_eq!(PodSecurityLevel::default(), PodSecurityLevel::Baseline);
        let level: PodSecurityLevel = serde_json::from_value(json!("privileged")).expect("valid");
        assert_eq!(level, PodSecurityLevel::Privileged);
        let err =
            serde_json::from_value::<PodSecurityLevel>(json!("strict")).expect_err("unknown level");
        assert!(err.to_string().contains("baseline"), "{err}");
    }

    #[test]
    fn a_namespace_without_the_level_or_with_another_one_needs_a_write() {
        let mut labels = BTreeMap::from([(identity::MANAGED_BY.to_string(), MANAGER.to_string())]);
        assert!(needs_level(&labels, PodSecurityLevel::Baseline));
        labels.insert(POD_SECURITY_ENFORCE.into(), "privileged".into());
        assert!(needs_level(&labels, PodSecurityLevel::Baseline));
        labels.insert(POD_SECURITY_ENFORCE.into(), "baseline".into());
        assert!(!needs_level(&labels, PodSecurityLevel::Baseline));
    }
}

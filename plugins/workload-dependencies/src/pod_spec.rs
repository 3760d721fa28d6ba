//! Where a workload keeps the spec of the pods it runs.

use serde_json::Value;

/// The pod spec of `object`: `spec` for a Pod, `spec.template.spec` for the controllers that
/// stamp out pods, `spec.jobTemplate.spec.template.spec` for a CronJob. `Ok(None)` for any
/// other kind (it runs no pods, so it needs nothing); an error for a workload without its
/// pod spec.
pub fn of(object: &Value) -> Result<Option<&Value>, String> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The group, not only the kind: a custom resource may well be called `Deployment`.
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let pointer = match (group, kind) {
        ("", "Pod") => "/spec",
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") | ("batch", "Job") => {
            "/spec/template/spec"
        }
        ("batch", "CronJob") => "/spec/jobTemplate/spec/template/spec",
        _ => return Ok(None),
    };
    match object.pointer(pointer) {
        Some(spec) if spec.is_object() => Ok(Some(spec)),
        _ => Err(format!(
            "{kind} has no pod spec at {}",
            pointer.trim_start_matches('/').replace('/', ".")
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec() -> Value {
        json!({"containers": [{"name": "app"}]})
    }

    #[test]
    fn every_workload_kind_finds_its_pod_spec() {
        let template = json!({"template": {"spec": spec()}});
        for (api_version, kind, object_spec) in [
            ("v1", "Pod", spec()),
            ("apps/v1", "Deployment", template.clone()),
            ("apps/v1", "StatefulSet", template.clone()),
            ("apps/v1", "DaemonSet", template.clone()),
            ("apps/v1", "ReplicaSet", template.clone()),
            ("batch/v1", "Job", template.clone()),
            (
                "batch/v1",
                "CronJob",
                json!({"jobTemplate": {"spec": template.clone()}}),
            ),
        ] {
            let object = json!({"apiVersion": api_version, "kind": kind, "spec": object_spec});
            assert_eq!(of(&object), Ok(Some(&spec())), "{kind}");
        }
    }

    #[test]
    fn kinds_that_run_no_pods_have_none_even_with_a_workload_name() {
        for (api_version, kind) in [
            ("v1", "ConfigMap"),
            ("v1", "Service"),
            ("example.com/v1", "Deployment"),
        ] {
            let object = json!({"apiVersion": api_version, "kind": kind, "spec": {"template": {"spec": spec()}}});
            assert_eq!(of(&object), Ok(None), "{api_version} {kind}");
        }
    }

    #[test]
    fn a_workload_without_its_pod_spec_is_an_error_naming_the_path() {
        let object =
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"schedule": "* * * * *"}});
        let err = of(&object).expect_err("no pod spec");
        assert_eq!(
            err,
            "CronJob has no pod spec at spec.jobTemplate.spec.template.spec"
        );
    }
}

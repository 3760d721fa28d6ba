//! The lifecycle of the `ferry-…` namespaces Ferry creates on the targets.
//!
//! A namespace is created on the first copy into it (`ResourceSync::ensure_namespace`) and
//! deleted after Ferry deleted the last copy in it: when it still carries Ferry's labels
//! ([`crate::uninstall::is_ferry_namespace`]) and holds no object of any resource this
//! installation syncs (whoever made it). Other objects in it (a ConfigMap someone added) do
//! not keep it: a `ferry-` namespace is Ferry's.
//!
//! Namespace deletion is asynchronous: a copy created while the namespace terminates is
//! refused (403, "being terminated"). That answer, and a namespace found terminating, make
//! the copy's reconcile wait with backoff ([`is_terminating`]) until the namespace is gone and
//! Ferry creates it again.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Preconditions};
use kube::discovery::ApiResource;

use crate::error::{SyncError, is_conflict, is_not_found};
use crate::target::TargetCluster;

/// Whether a write was refused because its namespace is being deleted (the
/// NamespaceLifecycle admission plugin's 403).
pub fn is_terminating(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status)
        if status.code == 403 && status.message.contains("because it is being terminated"))
}

/// What [`collect`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Collected {
    /// The namespace was deleted.
    Deleted,
    /// Kept: not Ferry's, already going, gone, or something of Ferry's resources is in it.
    Kept,
}

/// Deletes `namespace` on `target` if it is Ferry's and holds no object of `resources`.
/// Called after Ferry deleted a copy in it. The delete carries the namespace's UID, so a
/// namespace deleted and created again since the look is never deleted by mistake.
pub async fn collect(
    target: &TargetCluster,
    namespace: &str,
    resources: &[ApiResource],
) -> Result<Collected, SyncError> {
    let api: Api<Namespace> = Api::all(target.client.clone());
    let read = |e| {
        SyncError::api(
            format!("reading namespace {namespace} on {}", target.name()),
            e,
        )
    };
    let Some(found) = api.get_opt(namespace).await.map_err(read)? else {
        target.remember_namespace(namespace, false);
        return Ok(Collected::Kept);
    };
    if found.metadata.deletion_timestamp.is_some() || !crate::uninstall::is_ferry_namespace(&found)
    {
        return Ok(Collected::Kept);
    }
    for resource in resources {
        let objects: Api<DynamicObject> =
            Api::namespaced_with(target.client.clone(), namespace, resource);
        let list = objects
            .list(&ListParams::default().limit(1))
            .await
            .map_err(|e| {
                SyncError::api(
                    format!(
                        "listing {} in {namespace} on {}",
                        resource.plural,
                        target.name()
                    ),
                    e,
                )
            })?;
        if !list.items.is_empty() {
            return Ok(Collected::Kept);
        }
    }
    let params = DeleteParams {
        preconditions: found.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    // Forgotten first: from now on a copy into it verifies the namespace again.
    target.remember_namespace(namespace, false);
    let result = target.limiter.write(api.delete(namespace, &params)).await;
    match result {
        Ok(_) => Ok(Collected::Deleted),
        Err(err) if is_not_found(&err) || is_conflict(&err) => Ok(Collected::Kept),
        Err(err) => Err(SyncError::api(
            format!("deleting namespace {namespace} on {}", target.name()),
            err,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "Forbidden")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn a_create_refused_by_a_terminating_namespace_is_recognised_and_nothing_else() {
        assert!(is_terminating(&api_error(
            403,
            "deployments.apps \"web\" is forbidden: unable to create new content in namespace \
             ferry-x because it is being terminated"
        )));
        assert!(!is_terminating(&api_error(
            403,
            "deployments.apps is forbidden: User \"u\" cannot create resource"
        )));
        assert!(!is_terminating(&api_error(
            409,
            "because it is being terminated"
        )));
    }
}

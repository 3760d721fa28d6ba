//! Events on upstream objects, in the tenant's workspace: where a tenant looks when their
//! object does not sync (`kubectl describe`, `kubectl get events`).
//!
//! Written through the virtual workspace, which allows it because the APIExport claims
//! `events` and the binding accepts the claim. Without the claim the write fails; that is
//! logged once per object and sync carries on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_core::identity::UpstreamKey;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::discovery::ApiResource;

use crate::metrics::Metrics;

/// The same (reason, message) on the same object is recorded again only after this long.
const REPEAT_AFTER: Duration = Duration::from_secs(600);

/// Records Events, de-duplicated per object: per (resource, key), since a Deployment and a
/// Service may both be `demo/web` in one workspace.
#[derive(Default)]
pub struct EventRecorder {
    last: Mutex<HashMap<(String, UpstreamKey), (String, Instant)>>,
}

impl EventRecorder {
    /// Forgets what was recorded for `key` of `resource` (after a successful sync, so a
    /// recurrence shows).
    pub fn clear(&self, resource: &str, key: &UpstreamKey) {
        if let Ok(mut last) = self.last.lock() {
            last.remove(&(resource.to_string(), key.clone()));
        }
    }

    /// Records a Warning event unless the same one was recorded recently.
    #[allow(clippy::too_many_arguments)]
    pub async fn warn(
        &self,
        client: kube::Client,
        name: &str,
        resource: &ApiResource,
        key: &UpstreamKey,
        uid: Option<&str>,
        reason: &str,
        message: &str,
        metrics: &Metrics,
    ) {
        let fingerprint = format!("{reason}\n{message}");
        {
            let Ok(mut last) = self.last.lock() else {
                return;
            };
            let id = (name.to_string(), key.clone());
            if let Some((seen, at)) = last.get(&id)
                && *seen == fingerprint
                && at.elapsed() < REPEAT_AFTER
            {
                return;
            }
            last.insert(id, (fingerprint, Instant::now()));
        }
        let now = k8s_openapi::jiff::Timestamp::now();
        // Event messages are capped at 1 KiB by the API server's validation.
        let message = truncate(message, 1000);
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", key.name)),
                namespace: Some(key.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some(resource.api_version.clone()),
                kind: Some(resource.kind.clone()),
                name: Some(key.name.clone()),
                namespace: Some(key.namespace.clone()),
                uid: uid.map(str::to_string),
                ..ObjectReference::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some("Warning".into()),
            source: Some(EventSource {
                component: Some("ferry".into()),
                host: None,
            }),
            reporting_component: Some("ferry".into()),
            reporting_instance: Some("ferry".into()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            action: Some("Sync".into()),
            count: Some(1),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(client, &key.namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => metrics.event_recorded(reason),
            Err(err) => tracing::warn!(
                object = %key, %reason, error = %err,
                "could not record an Event (does the APIBinding accept the export's claim on events?)"
            ),
        }
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn truncate(message: &str, max: usize) -> String {
    if message.chars().count() <= max {
        return message.to_string();
    }
    let mut out: String = message.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_with_an_ellipsis_within_the_limit() {
        let long = "x".repeat(2000);
        let cut = truncate(&long, 1000);
        assert_eq!(cut.chars().count(), 1000);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", 1000), "short");
    }

    #[test]
    fn a_deployment_and_a_service_of_the_same_name_keep_their_own_event_history() {
        let recorder = EventRecorder::default();
        let key = UpstreamKey::new("lc", "demo", "web");
        let now = Instant::now();
        if let Ok(mut last) = recorder.last.lock() {
            last.insert(("deployments.apps".into(), key.clone()), ("a".into(), now));
            last.insert(("services".into(), key.clone()), ("b".into(), now));
        }
        recorder.clear("services", &key);
        let last = recorder.last.lock().expect("lock");
        assert!(last.contains_key(&("deployments.apps".to_string(), key.clone())));
        assert!(!last.contains_key(&("services".to_string(), key)));
    }
}

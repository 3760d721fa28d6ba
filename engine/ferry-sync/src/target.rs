//! A target cluster at run time: its client, its write limits, whether it answers, the
//! namespaces Ferry has verified there.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_core::Target;

use crate::namespace::PodSecurityLevel;
pub use crate::pacing::WriteLimiter;

/// One target cluster.
pub struct TargetCluster {
    /// What plugins see.
    pub target: Target,
    /// Client for the cluster.
    pub client: kube::Client,
    /// Write pacing ([`crate::pacing`]).
    pub limiter: WriteLimiter,
    /// Downstream namespaces verified (or created) as Ferry's on this cluster, so that
    /// steady state needs no namespace request at all.
    pub namespaces: Mutex<HashSet<String>>,
    /// The Pod Security Admission level of the namespaces Ferry creates here.
    pub pod_security: PodSecurityLevel,
    /// Whether the cluster answers (see [`TargetCluster::mark_unreachable`]).
    reachable: AtomicBool,
    /// Bumped each time the cluster becomes unreachable: requests in flight to it watch
    /// this and give up at once instead of each waiting out its own timeout.
    lost: tokio::sync::watch::Sender<u64>,
}

impl TargetCluster {
    /// A target from its parts.
    pub fn new(
        name: String,
        labels: BTreeMap<String, String>,
        client: kube::Client,
        limiter: WriteLimiter,
        pod_security: PodSecurityLevel,
    ) -> Self {
        Self {
            target: Target { name, labels },
            client,
            limiter,
            namespaces: Mutex::new(HashSet::new()),
            pod_security,
            reachable: AtomicBool::new(true),
            lost: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Whether the cluster is believed to answer. Work for an unreachable cluster is not
    /// attempted (it would hold a worker for the whole timeout); its prober brings it back.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// Marks the cluster unreachable and cancels every request in flight to it. Returns
    /// whether it was reachable before (so the caller logs the transition once).
    pub fn mark_unreachable(&self) -> bool {
        let was = self.reachable.swap(false, Ordering::AcqRel);
        if was {
            self.lost.send_modify(|n| *n = n.wrapping_add(1));
        }
        was
    }

    /// Marks the cluster reachable again. Returns whether it was unreachable before.
    pub fn mark_reachable(&self) -> bool {
        !self.reachable.swap(true, Ordering::AcqRel)
    }

    /// Resolves when the cluster is next marked unreachable (or at once if it is).
    pub async fn lost(&self) {
        let mut lost = self.lost.subscribe();
        if !self.is_reachable() {
            return;
        }
        let _ = lost.changed().await;
    }

    /// Name of the target.
    pub fn name(&self) -> &str {
        &self.target.name
    }

    /// Whether `namespace` was verified as Ferry's.
    pub fn knows_namespace(&self, namespace: &str) -> bool {
        self.namespaces
            .lock()
            .map(|set| set.contains(namespace))
            .unwrap_or(false)
    }

    /// Records (or forgets) a verified namespace.
    pub fn remember_namespace(&self, namespace: &str, known: bool) {
        if let Ok(mut set) = self.namespaces.lock() {
            if known {
                set.insert(namespace.to_string());
            } else {
                set.remove(namespace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn marking_a_target_unreachable_wakes_requests_waiting_on_it() {
        let config = kube::Config::new("https://127.0.0.1:1".parse().expect("url"));
        let target = std::sync::Arc::new(TargetCluster::new(
            "c".into(),
            BTreeMap::new(),
            kube::Client::try_from(config).expect("client"),
            WriteLimiter::new(1, Some(1.0)),
            PodSecurityLevel::default(),
        ));
        let waiting = tokio::spawn({
            let target = target.clone();
            async move { target.lost().await }
        });
        tokio::task::yield_now().await;
        assert!(target.mark_unreachable(), "first transition");
        assert!(!target.mark_unreachable(), "already unreachable");
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert!(!target.is_reachable());
        assert!(target.mark_reachable());
        assert!(target.is_reachable());
    }
}

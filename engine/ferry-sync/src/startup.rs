//! Starting up against a kcp (or target) that is down or still starting.
//!
//! A restarted kcp refuses connections for a while, then answers 404 for workspaces it has
//! not loaded yet. An operator restarted at that moment (a node drain, a crash) must wait and
//! start, not exit: a crash loop would hold every resource up for the length of the back-off.
//! A configuration that does not match the export, on the other hand, fails at once with its
//! precise error, since waiting cannot fix it.

use std::future::Future;
use std::time::Duration;

use crate::error::{SyncError, is_transport};

/// What to do with an error met while starting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The server did not answer, or answered that it cannot serve now (429, 5xx), or timed
    /// out: retried for as long as it takes.
    Wait,
    /// Not found or not allowed: what a starting kcp answers for a workspace it has not
    /// loaded yet, but also what a wrong workspace or credentials get. Retried within
    /// [`GRACE`], then reported.
    WaitWithinGrace,
    /// A configuration that does not match what the server serves: reported at once.
    Fail,
}

/// How long a "not found" or "forbidden" is taken for a server still starting.
pub(crate) const GRACE: Duration = Duration::from_secs(120);
/// The first pause between attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause between attempts.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Classifies an error met while connecting.
pub(crate) fn verdict(err: &SyncError) -> Verdict {
    match err {
        SyncError::Api { source, .. } if is_transport(source) => Verdict::Wait,
        SyncError::Api {
            source: kube::Error::Api(status),
            ..
        } => match status.code {
            429 | 500..=599 => Verdict::Wait,
            401 | 403 | 404 => Verdict::WaitWithinGrace,
            _ => Verdict::Fail,
        },
        SyncError::Timeout { .. } | SyncError::Unreachable { .. } => Verdict::Wait,
        SyncError::Several(errors) => errors
            .iter()
            .map(verdict)
            .max_by_key(|v| match v {
                Verdict::Wait => 0,
                Verdict::WaitWithinGrace => 1,
                Verdict::Fail => 2,
            })
            .unwrap_or(Verdict::Fail),
        _ => Verdict::Fail,
    }
}

/// Runs `attempt` until it succeeds, waiting between tries as [`verdict`] allows; returns the
/// last error once it is no longer worth waiting for.
pub(crate) async fn patiently<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, SyncError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SyncError>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        let err = match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let waited = started.elapsed();
        match verdict(&err) {
            Verdict::Fail => return Err(err),
            Verdict::WaitWithinGrace if waited >= GRACE => return Err(err),
            Verdict::Wait | Verdict::WaitWithinGrace => {}
        }
        tracing::warn!(
            error = %err,
            retry_in = ?pause,
            waited = ?waited,
            "{what}: the server is not ready; retrying"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn status(code: u16) -> SyncError {
        SyncError::api(
            "reading APIExport kubernetes",
            kube::Error::Api(
                kube::core::Status::failure("no", "Reason")
                    .with_code(code)
                    .boxed(),
            ),
        )
    }

    #[test]
    fn a_server_that_is_down_or_overloaded_is_waited_for() {
        assert_eq!(verdict(&status(503)), Verdict::Wait);
        assert_eq!(verdict(&status(500)), Verdict::Wait);
        assert_eq!(verdict(&status(429)), Verdict::Wait);
        let timeout = SyncError::Timeout {
            target: "cluster-1".into(),
            after: Duration::from_secs(30),
        };
        assert_eq!(verdict(&timeout), Verdict::Wait);
    }

    #[test]
    fn not_found_and_forbidden_get_a_grace_and_a_mismatched_configuration_none() {
        assert_eq!(verdict(&status(404)), Verdict::WaitWithinGrace);
        assert_eq!(verdict(&status(403)), Verdict::WaitWithinGrace);
        assert_eq!(verdict(&status(401)), Verdict::WaitWithinGrace);
        assert_eq!(verdict(&status(400)), Verdict::Fail);
        let not_exported = SyncError::NotExported {
            resource: "services".into(),
            export: "kubernetes".into(),
            exported: "deployments.apps".into(),
            claimed: "events".into(),
        };
        assert_eq!(verdict(&not_exported), Verdict::Fail);
        assert_eq!(
            verdict(&SyncError::Several(vec![status(503), not_exported])),
            Verdict::Fail
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_coming_back_after_minutes_is_connected_to() {
        let attempts = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let result = patiently("connecting", || {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            async move { if n < 12 { Err(status(503)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.ok(), Some(12));
        // Pauses double from 1 s and stop growing at 30 s: 1+2+4+8+16 then 7 × 30.
        assert_eq!(started.elapsed(), Duration::from_secs(31 + 7 * 30));
    }

    #[tokio::test(start_paused = true)]
    async fn not_found_is_reported_once_the_grace_is_over_and_a_mismatch_at_once() {
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = patiently("connecting", || async { Err(status(404)) }).await;
        assert!(result.is_err());
        let waited = started.elapsed();
        assert!(waited >= GRACE && waited < GRACE + MAX_PAUSE, "{waited:?}");

        let started = tokio::time::Instant::now();
        let result: Result<(), _> = patiently("connecting", || async {
            Err(SyncError::Export("schema has no version".into()))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}

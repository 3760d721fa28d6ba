//! The HTTP endpoint of `ferry run --metrics-addr`: `/metrics` for Prometheus, `/healthz`
//! and `/readyz` for the kubelet's probes, 404 for anything else.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use ferry_sync::health::Health;
use ferry_sync::metrics::Metrics;

/// What the endpoint reads.
#[derive(Clone)]
pub struct Sources {
    /// The engine's counters.
    pub metrics: Arc<Metrics>,
    /// The engine's readiness.
    pub health: Arc<Health>,
}

/// The routes.
pub fn router(sources: Sources) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(sources)
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, sources: Sources) {
    if let Err(err) = axum::serve(listener, router(sources)).await {
        tracing::error!(error = %err, "the metrics and health endpoint stopped");
    }
}

async fn metrics(State(sources): State<Sources>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        sources.metrics.render(),
    )
}

/// Alive: the process answers. Nothing the engine does makes it fail; a stuck engine shows
/// on `/readyz` and in the metrics, and an engine task that dies stops the process.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(sources): State<Sources>) -> impl IntoResponse {
    let readiness = sources.health.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{}\n", readiness.detail))
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "not found: /metrics, /healthz and /readyz are served\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_sync::health::Role;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves on a free port and returns a function that GETs a path (status, body).
    async fn start(sources: Sources) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(listener, sources));
        addr
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        socket
            .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut text = String::new();
        socket.read_to_string(&mut text).await.expect("read");
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        (status, body)
    }

    fn sources() -> Sources {
        Sources {
            metrics: Arc::new(Metrics::default()),
            health: Arc::new(Health::default()),
        }
    }

    #[tokio::test]
    async fn metrics_are_served_at_their_path_and_unknown_paths_are_404() {
        let sources = sources();
        sources.metrics.reconciled(
            "deployments.apps",
            "ok",
            std::time::Duration::from_millis(3),
        );
        let addr = start(sources).await;
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("ferry_reconcile_duration_seconds_count{"),
            "{body}"
        );
        let (status, body) = get(addr, "/").await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(get(addr, "/metricsx").await.0, 404);
    }

    #[tokio::test]
    async fn healthz_is_ok_while_readyz_follows_the_engine() {
        let sources = sources();
        let health = sources.health.clone();
        let addr = start(sources).await;
        assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.starts_with("not ready (starting)"), "{body}");
        let watch = health.watch("upstream objects");
        health.set_role(Role::Standby);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        watch.synced();
        assert_eq!(
            get(addr, "/readyz").await,
            (200, "ready (standby)\n".into())
        );
        drop(watch);
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(
            body.contains("the watch of upstream objects ended"),
            "{body}"
        );
        assert_eq!(get(addr, "/healthz").await.0, 200);
    }
}

//! Counting every request a kube client sends: a tower layer put on the client where it is
//! built ([`counted_client`]), so no call site can forget it. A request is counted when
//! its response head arrives (a watch: when the stream opens), by cluster, verb and code, and
//! (watches excepted) timed from sending to that head.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use http::{Request, Response};
use tower::{Layer, Service};

use super::Metrics;

/// A kube client for `config` whose requests are counted as requests to `cluster`.
pub fn counted_client(
    config: kube::Config,
    metrics: &Arc<Metrics>,
    cluster: &str,
) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&metrics.count_requests(cluster))
        .build())
}

/// The layer: wraps a client's HTTP service in [`Counted`].
#[derive(Clone)]
pub struct CountRequests {
    metrics: Arc<Metrics>,
    cluster: Arc<str>,
}

impl CountRequests {
    pub(super) fn new(metrics: Arc<Metrics>, cluster: &str) -> Self {
        Self {
            metrics,
            cluster: Arc::from(cluster),
        }
    }
}

impl<S> Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counter: self.clone(),
        }
    }
}

/// A service that counts the requests passing through it.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    counter: CountRequests,
}

impl<S, RequestBody, ResponseBody> Service<Request<RequestBody>> for Counted<S>
where
    S: Service<Request<RequestBody>, Response = Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let verb = verb(&request);
        let counter = self.counter.clone();
        let sent = std::time::Instant::now();
        self.inner
            .call(request)
            .map(move |result| {
                let code = result.as_ref().ok().map(|r| r.status().as_u16());
                counter.metrics.api_request(&counter.cluster, verb, code);
                // A watch's head says nothing about the server's speed: it stays open.
                if verb != "watch" {
                    counter
                        .metrics
                        .api_request_duration(&counter.cluster, verb, sent.elapsed());
                }
                result
            })
            .boxed()
    }
}

/// The Kubernetes verb of a request: from the name kube's `Api` methods put in the
/// request's extensions (`list`, `watch_metadata`, `patch_subresource`, ...), else from the
/// HTTP method. A small fixed set, so the label cannot grow without bound.
pub(crate) fn verb<B>(request: &Request<B>) -> &'static str {
    let named = request.extensions().get::<&'static str>().copied();
    match named.map(|n| n.split('_').next().unwrap_or(n)) {
        Some("get") => "get",
        Some("list") => "list",
        Some("watch") => "watch",
        Some("create") => "create",
        Some("delete") if named == Some("delete_collection") => "deletecollection",
        Some("delete") => "delete",
        Some("patch") => "patch",
        Some("replace") => "update",
        _ => match *request.method() {
            http::Method::GET
                if request
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1")) =>
            {
                "watch"
            }
            http::Method::GET => "get",
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "other",
        },
    }
}

//! The edge of the HTTP stack: what every response gets on its way out, and
//! the request-target rule every request meets on its way in, as two plain
//! tower layers (no boxed future, no cloned `Next` per request).
//!
//! On the way out, in this order (each step sees what the one before made):
//! 1. a bare framework error (405, 413, 408 from axum and tower-http) becomes
//!    the JSON error of the table in `http::error`; upstream answers are
//!    left as they are;
//! 2. the final status is counted, and a gateway-made 429 counted by route
//!    and reason;
//! 3. the security headers are set, so every response, errors included,
//!    carries HSTS (PITFALLS H1);
//! 4. with the access log on, the body is wrapped so the request's access
//!    event is written when the response ends (`access_log`).
//!
//! On the way in, [`TargetCheckLayer`] refuses an ambiguous request target
//! or `Host` before routing, so the auth layer's public-path rule and the
//! proxy only ever see unambiguous requests.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::BoxError;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header;
use http_body::Body as HttpBody;
use tower::{Layer, Service};

use super::access_log::{self, ErrorCode, Pending};
use super::error::{ApiError, ErrorResponse};
use super::request_target;
use super::security_headers::{FromUpstream, SecurityHeaders};
use crate::gateway::metrics::{HttpMetrics, RefusalMetrics};

/// Applies the response steps of this module to everything below it.
#[derive(Clone)]
pub(crate) struct EdgeLayer {
    shared: Arc<EdgeShared>,
}

struct EdgeShared {
    headers: SecurityHeaders,
    metrics: Arc<HttpMetrics>,
    refusals: Arc<RefusalMetrics>,
    access_log: bool,
}

impl EdgeLayer {
    pub(crate) fn new(
        headers: SecurityHeaders,
        metrics: Arc<HttpMetrics>,
        refusals: Arc<RefusalMetrics>,
        access_log: bool,
    ) -> Self {
        Self {
            shared: Arc::new(EdgeShared {
                headers,
                metrics,
                refusals,
                access_log,
            }),
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service built by [`EdgeLayer`].
#[derive(Clone)]
pub(crate) struct Edge<S> {
    inner: S,
    shared: Arc<EdgeShared>,
}

impl<S, B> Service<Request> for Edge<S>
where
    S: Service<Request, Response = http::Response<B>, Error = Infallible>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let pending = access_log::enabled(self.shared.access_log).then(|| Pending::start(&mut req));
        let route = route_class(req.uri().path());
        EdgeFuture {
            inner: self.inner.call(req),
            shared: Arc::clone(&self.shared),
            pending,
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`Edge`]: the inner response, finished.
    pub(crate) struct EdgeFuture<F> {
        #[pin]
        inner: F,
        shared: Arc<EdgeShared>,
        pending: Option<Pending>,
        route: &'static str,
    }
}

impl<F, B> Future for EdgeFuture<F>
where
    F: Future<Output = Result<http::Response<B>, Infallible>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        let response = this.shared.finish(response.map(Body::new), this.route);
        Poll::Ready(Ok(match this.pending.take() {
            Some(pending) => {
                let error = response.extensions().get::<ErrorCode>().map(|c| c.0);
                let status = response.status();
                response.map(|body| pending.finish(status, error, body))
            }
            None => response,
        }))
    }
}

impl EdgeShared {
    fn finish(&self, response: Response, route: &'static str) -> Response {
        let mut response = json_errors(response);
        let status = response.status();
        self.metrics.response(status.as_u16());
        if status == http::StatusCode::TOO_MANY_REQUESTS
            && response.extensions().get::<FromUpstream>().is_none()
            && let Some(code) = response.extensions().get::<ErrorCode>()
        {
            self.refusals.rate_limited(route, code.0);
        }
        self.headers.apply(&mut response);
        response
    }
}

/// The `route` label of a rate-limit refusal: a byte comparison, no allocation.
fn route_class(path: &str) -> &'static str {
    if path.starts_with("/auth/") {
        "auth"
    } else if path.starts_with("/admin/") {
        "admin"
    } else {
        "upstream"
    }
}

/// Step 1: the gateway's own bare errors become JSON; JSON answers and
/// anything from the upstream pass unchanged.
fn json_errors(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || response.extensions().get::<FromUpstream>().is_some() {
        return response;
    }
    match ApiError::for_bare_status(response.status()) {
        Some(err) => ErrorResponse::from(err).into_response(),
        None => response,
    }
}

/// Refuses requests whose target or `Host` is ambiguous (the rules are in
/// `request_target`), before routing.
#[derive(Clone, Copy, Default)]
pub(crate) struct TargetCheckLayer;

impl<S> Layer<S> for TargetCheckLayer {
    type Service = TargetCheck<S>;

    fn layer(&self, inner: S) -> TargetCheck<S> {
        TargetCheck { inner }
    }
}

/// The service built by [`TargetCheckLayer`].
#[derive(Clone)]
pub(crate) struct TargetCheck<S> {
    inner: S,
}

impl<S, B> Service<Request> for TargetCheck<S>
where
    S: Service<Request, Response = http::Response<B>, Error = Infallible>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TargetFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match request_target::check(req.version(), req.uri(), req.headers()) {
            Ok(()) => TargetFuture {
                refused: None,
                inner: Some(self.inner.call(req)),
            },
            Err(e) => {
                tracing::debug!(
                    event = "request_target_refused",
                    reason = e.code(),
                    "request refused: {e}"
                );
                TargetFuture {
                    refused: Some(ErrorResponse::from(ApiError::InvalidRequest).into_response()),
                    inner: None,
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`TargetCheck`]: the refusal, or the inner response.
    pub(crate) struct TargetFuture<F> {
        refused: Option<Response>,
        #[pin]
        inner: Option<F>,
    }
}

impl<F, B> Future for TargetFuture<F>
where
    F: Future<Output = Result<http::Response<B>, Infallible>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(refused) = this.refused.take() {
            return Poll::Ready(Ok(refused));
        }
        match this.inner.as_pin_mut() {
            Some(inner) => {
                let Ok(response) = ready!(inner.poll(cx));
                Poll::Ready(Ok(response.map(Body::new)))
            }
            // Polled again after completing: a caller bug, answered, not a panic.
            None => Poll::Ready(Ok(ErrorResponse::from(ApiError::Internal).into_response())),
        }
    }
}

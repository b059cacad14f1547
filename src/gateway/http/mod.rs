//! HTTP composition: the router and its middleware, written once, outermost
//! first, with the reason each layer sits where it does.

pub mod error;
pub mod proxy;
pub mod security_headers;
pub mod well_known;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use self::error::ApiError;
use self::security_headers::{FromUpstream, SecurityHeaders};
use crate::gateway::metrics::Metrics;

/// A readiness probe: `Some((component, reason))` when degraded.
pub type HealthProbe = Arc<dyn Fn() -> Option<(&'static str, String)> + Send + Sync>;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Probes consulted by `/health`.
    pub health: Vec<HealthProbe>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Request limits enforced by the middleware.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
    /// Longest pause while receiving a request body (408 beyond).
    pub body_read_timeout: Duration,
}

/// Builds the router with every layer in place.
pub fn router(state: AppState, headers: SecurityHeaders, limits: &HttpLimits) -> Router {
    let routes = Router::new()
        .route("/health", get(well_known::health))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state.clone());
    routes.layer(
        ServiceBuilder::new()
            // 1. Outermost, so every response below (errors, panics, timeouts) gets HSTS.
            .layer(middleware::from_fn_with_state(
                headers,
                security_headers::add_security_headers,
            ))
            // 2. Inside the headers: bare framework errors (405, 413, 408) become JSON.
            .layer(middleware::from_fn(json_errors))
            // 3. Count every response, including the rewritten errors.
            .layer(middleware::from_fn_with_state(state, count_responses))
            // 4. A panic in anything below is a 500 JSON, never a dropped connection.
            .layer(CatchPanicLayer::custom(|_| {
                ApiError::Internal.into_response()
            }))
            // 5. Limits wrap the request body before any handler or the proxy reads it.
            .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
            .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout)),
    )
}

async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || response.extensions().get::<FromUpstream>().is_some() {
        return response;
    }
    match ApiError::for_bare_status(response.status()) {
        Some(err) => err.into_response(),
        None => response,
    }
}

async fn count_responses(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    state.metrics.http.response(response.status().as_u16());
    response
}

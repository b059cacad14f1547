//! HTTP composition: the router and its middleware, written once, outermost
//! first, with the reason each layer sits where it does.

pub(crate) mod access_log;
pub mod auth;
pub(crate) mod auth_routes;
pub(crate) mod edge;
pub mod error;
pub(crate) mod forward;
#[doc(hidden)]
pub(crate) mod fuzzing;
pub mod proxy;
pub mod ready;
pub(crate) mod request_target;
pub mod security_headers;
pub(crate) mod well_known;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::handler::Handler;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower::{Layer, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use self::auth::{BearerAuthLayer, BearerAuthOptions, PublicPaths};
use self::edge::{EdgeLayer, TargetCheckLayer};
use self::error::{ApiError, ErrorResponse};
use self::proxy::Proxy;
use self::security_headers::SecurityHeaders;
use crate::clock::Clock;
use crate::gateway::metrics::Metrics;
use crate::gateway::replay_protection::ReplayGuard;
use crate::gateway::session_manager::SessionManager;
use crate::gateway::session_manager::binding::ProofChecker;
use crate::gateway::session_manager::credentials::RateLimiter;

/// A readiness probe: `Some((component, code))` when degraded. The code is
/// a fixed snake_case word: `/health` is unauthenticated, so a probe never
/// hands it a path, an OS error or an error chain (those go to the log).
pub type HealthProbe = Arc<dyn Fn() -> Option<(&'static str, &'static str)> + Send + Sync>;

/// Everything the handlers share, behind one `Arc`: axum clones the state
/// for every request and every `from_fn_with_state` layer, so a clone is
/// one reference-count increment, never a copy of the probe list or the
/// public paths.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl AppState {
    /// Wraps the shared parts.
    pub fn new(shared: SharedState) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct SharedState {
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Probes consulted by `/health`.
    pub health: Vec<HealthProbe>,
    /// Sessions: issue, verify, revoke.
    pub sessions: Arc<SessionManager>,
    /// Replay protection for forwarded unsafe requests.
    pub replay: Arc<ReplayGuard>,
    /// The one proof checker: every bearer layer and `/auth/refresh` spend
    /// proof nonces through it, in the same guard as `replay` (one window,
    /// one capacity).
    pub proofs: Arc<ProofChecker>,
    /// `[upstream] public_paths`: forwarded without a token (only when an
    /// upstream is configured; otherwise every path needs a token).
    pub public_paths: PublicPaths,
    /// The upstream, when configured.
    pub proxy: Option<Proxy>,
    /// The upstream's background reachability probe (`/ready`), when one
    /// is configured.
    pub upstream_probe: Option<Arc<ready::UpstreamProbe>>,
    /// Per-client-address limit on `/auth/*`.
    pub auth_limiter: Arc<RateLimiter>,
    /// Wall clock.
    pub clock: Arc<dyn Clock>,
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
    /// Total time to receive a whole `/auth/*` or `/admin/revoke` body
    /// (408 beyond), however slowly it trickles.
    pub auth_body_timeout: Duration,
    /// `[log] access_log`: one event per request (see `access_log`).
    pub access_log: bool,
}

/// Builds the router with every layer in place.
pub fn router(state: AppState, headers: SecurityHeaders, limits: &HttpLimits) -> Router {
    let bearer = bearer_auth(&state);
    let http_metrics = Arc::clone(&state.metrics.http);
    let refusals = Arc::clone(&state.metrics.refusals);
    let routes = Router::new()
        .route("/health", get(well_known::health))
        .route("/ready", get(ready::ready))
        .route("/.well-known/paseto-keys", get(well_known::paseto_keys))
        .merge(auth_router(
            &state,
            bearer.clone(),
            limits.auth_body_timeout,
        ))
        .fallback_service(upstream_service(&state, bearer))
        .with_state(state);
    routes.layer(
        ServiceBuilder::new()
            // 1. Outermost, so every response below (errors, panics,
            //    timeouts) is finished: bare framework errors become JSON,
            //    the status is counted, the security headers (HSTS) set, and
            //    the access event written when the response ends.
            .layer(EdgeLayer::new(
                headers,
                http_metrics,
                refusals,
                limits.access_log,
            ))
            // 2. A panic in anything below is a 500 JSON, never a dropped connection.
            .layer(CatchPanicLayer::custom(|_| {
                ErrorResponse::from(ApiError::Internal).into_response()
            }))
            // 3. Host and target rules before routing, so the auth layer's
            //    public-path check and the proxy only see unambiguous requests.
            .layer(TargetCheckLayer)
            // 4. Limits wrap the request body before any handler or the proxy reads it.
            .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
            .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout)),
    )
}

/// `/auth/*` and `/admin/revoke`, rate limited per client address. Local
/// routes do not take replay headers: the tokens they mint rotate, and
/// their effects (logout, revoke) are idempotent.
fn auth_router(
    state: &AppState,
    bearer: BearerAuthOptions,
    body_timeout: Duration,
) -> Router<AppState> {
    let bearer = bearer.build();
    let with_session = Router::new()
        .route("/auth/logout", post(auth_routes::logout))
        .route("/auth/session", get(auth_routes::session))
        .route("/auth/sessions", get(auth_routes::sessions))
        .route("/auth/sessions/{id}", delete(auth_routes::revoke_one))
        .route("/admin/revoke", post(auth_routes::admin_revoke))
        .route_layer(bearer);
    Router::new()
        .route("/auth/pair", post(auth_routes::pair))
        .route("/auth/login", post(auth_routes::login))
        .route("/auth/refresh", post(auth_routes::refresh))
        .merge(with_session)
        // Inside the rate limit (a refused request reads no body); outside
        // the handlers and bearer auth, which get the body already whole.
        .route_layer(middleware::from_fn_with_state(
            body_timeout,
            auth_routes::whole_body,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth_routes::rate_limit,
        ))
        .layer(DefaultBodyLimit::max(AUTH_BODY_LIMIT))
}

/// Everything else: bearer auth (public paths excepted), binding check of
/// bound tokens, replay check on unsafe methods, then the upstream.
fn upstream_service(
    state: &AppState,
    bearer: BearerAuthOptions,
) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    let mut bearer = bearer.replay(Arc::clone(&state.replay));
    // With no upstream every path answers 404, and only after a token.
    if state.proxy.is_some() {
        bearer = bearer.public_paths(state.public_paths.clone());
    }
    bearer
        .build()
        .layer(forward::forward.with_state(state.clone()))
}

/// The bearer layer's configuration, written once for the local routes and
/// the upstream: the gateway's sessions, clock, metrics and its one proof
/// checker.
fn bearer_auth(state: &AppState) -> BearerAuthOptions {
    BearerAuthLayer::builder(Arc::clone(&state.sessions), Arc::clone(&state.clock))
        .proofs(Arc::clone(&state.proofs))
        .metrics(
            Arc::clone(&state.metrics.tokens),
            Arc::clone(&state.metrics.replay),
        )
        .binding_metrics(Arc::clone(&state.metrics.binding))
}

/// Login and refresh bodies are small JSON documents.
pub(crate) const AUTH_BODY_LIMIT: usize = 16 * 1024;

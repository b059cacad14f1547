//! `/auth/*` and `/admin/revoke`: parse → one `SessionManager` call → JSON.
//! Token responses carry `Cache-Control: no-store` (OWASP; RFC 6749 §5.1).
//!
//! Pairing and login may ask for a bound session: `client_key` (PASERK
//! `k4.public`) binds it to that key, `"bind": "certificate"` to the
//! connection's client certificate; both at once bind to both. Refreshing
//! a bound session needs the same proof as any request, made for the
//! refresh token.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::access_log::ErrorCode;
use super::auth::{Begun, BindingStep, CurrentSession, proof_header, request_target};
use super::error::{ApiError, AuthBody, ErrorResponse};
use super::{AUTH_BODY_LIMIT, AppState};
use crate::gateway::server::ConnectionInfo;
use crate::gateway::session_manager::binding::{self, BindingError, Presented};
use crate::gateway::session_manager::{AdminRevoke, ClientAddr, SessionError, TokenPair};
use crate::gateway::session_token::{Confirmation, VerifiedClaims};

/// Header carrying the one-time pairing code.
pub(crate) const PAIRING_HEADER: &str = "x-pairing-code";

/// `POST /auth/login` body. Unknown members are refused, so a misspelt
/// `client_key` cannot silently yield an unbound session.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    client_key: Option<String>,
    #[serde(default)]
    bind: Option<BindTarget>,
}

/// `POST /auth/pair` body, optional (the code stays in `X-Pairing-Code`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PairRequest {
    #[serde(default)]
    client_key: Option<String>,
    #[serde(default)]
    bind: Option<BindTarget>,
}

/// What else than a `client_key` a session may be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BindTarget {
    /// The connection's client certificate (mutual TLS).
    Certificate,
}

/// `POST /auth/refresh` body.
#[derive(Deserialize)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
}

/// `POST /admin/revoke` body: exactly one of the fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminRevokeRequest {
    jti: Option<String>,
    sid: Option<String>,
    sub: Option<String>,
}

/// `POST /auth/pair` with `X-Pairing-Code` and an optional JSON body
/// `{"client_key","bind"}`.
pub(crate) async fn pair(
    State(state): State<AppState>,
    conn: Option<axum::Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refusals = Arc::clone(&state.metrics.refusals);
    let response = pair_inner(state, conn, headers, body).await;
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        refusals.pairing_failed(code.0);
    }
    response
}

async fn pair_inner(
    state: AppState,
    conn: Option<axum::Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(code) = headers.get(PAIRING_HEADER).and_then(|v| v.to_str().ok()) else {
        return error(ApiError::PairingCodeRequired);
    };
    let code = code.to_owned();
    // An empty body asks for nothing; anything else must parse, so a
    // broken body never silently yields an unbound session.
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        PairRequest::default()
    } else {
        match json_body::<PairRequest>(&headers, &body) {
            Some(request) => request,
            None => return error(ApiError::InvalidBody(AuthBody::Pair)),
        }
    };
    let conn = conn.map(|axum::Extension(c)| c);
    let cnf = match requested_binding(request.client_key.as_deref(), request.bind, conn.as_ref()) {
        Ok(cnf) => cnf,
        Err(e) => return error(&e),
    };
    let peer = client_addr(conn.as_ref());
    blocking(state, "pair", move |s| s.sessions.pair(&code, peer, cnf)).await
}

/// `POST /auth/login` with `{"username","password"}`, optionally
/// `"client_key"` and `"bind"`.
pub(crate) async fn login(
    State(state): State<AppState>,
    conn: Option<axum::Extension<ConnectionInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(body) = json_body::<LoginRequest>(&headers, &body) else {
        return error(ApiError::InvalidBody(AuthBody::Login));
    };
    let conn = conn.map(|axum::Extension(c)| c);
    let cnf = match requested_binding(body.client_key.as_deref(), body.bind, conn.as_ref()) {
        Ok(cnf) => cnf,
        Err(e) => return error(&e),
    };
    let peer = client_addr(conn.as_ref());
    if state.sessions.cluster().is_some() {
        return login_shared(state, body, peer, cnf).await;
    }
    // argon2 is deliberately slow: keep it off the async workers.
    blocking(state, "login", move |s| {
        s.sessions.login(&body.username, &body.password, peer, cnf)
    })
    .await
}

/// Cluster mode: the password check and minting on the blocking pool, then
/// the fleet's session limit (one bounded call to Redis; 503
/// `session_store_unavailable` when it cannot answer, nothing issued).
async fn login_shared(
    state: AppState,
    body: LoginRequest,
    peer: ClientAddr,
    cnf: Option<Confirmation>,
) -> Response {
    let now = state.clock.now();
    let sessions = Arc::clone(&state.sessions);
    let metrics = Arc::clone(&state.metrics);
    let minted = run_blocking(state, move |s| {
        s.sessions
            .login_minted_at(&body.username, &body.password, peer, cnf, s.clock.now())
    })
    .await;
    let new = match minted {
        Ok(new) => new,
        Err(response) => return response,
    };
    match sessions.admit(new).await {
        Ok(pair) => {
            metrics.sessions.issued("login");
            no_store(Json(pair.response_json(now)).into_response())
        }
        Err(e) => error(&e),
    }
}

/// `POST /auth/refresh` with `{"refresh_token"}`; a bound session also
/// needs its proof (made for the refresh token) or client certificate.
pub(crate) async fn refresh(
    State(state): State<AppState>,
    conn: Option<axum::Extension<ConnectionInfo>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(body) = json_body::<RefreshRequest>(&headers, &body) else {
        return error(ApiError::InvalidBody(AuthBody::Refresh));
    };
    let presented = match RefreshPresentation::of(method, &uri, &headers, conn) {
        Ok(presented) => presented,
        Err(e) => return error(&e),
    };
    blocking(state, "refresh", move |s| {
        s.sessions.refresh_confirmed(&body.refresh_token, |claims| {
            presented.confirm(s, claims, &body.refresh_token)
        })
    })
    .await
}

/// What a refresh request presents besides its token, owned for the
/// blocking pool.
struct RefreshPresentation {
    method: Method,
    target: String,
    proof: Option<Vec<u8>>,
    cert: Option<String>,
}

impl RefreshPresentation {
    fn of(
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        conn: Option<axum::Extension<ConnectionInfo>>,
    ) -> Result<Self, BindingError> {
        Ok(Self {
            method,
            target: request_target(uri).to_owned(),
            proof: proof_header(headers)?.map(<[u8]>::to_vec),
            cert: conn.and_then(|axum::Extension(c)| c.client_cert_sha256),
        })
    }

    /// The refresh token's binding against this request (nothing for an
    /// unbound token): the bearer layer's binding step, with the gateway's
    /// one proof checker (one nonce cache for all proofs). Synchronous, for
    /// the blocking pool.
    fn confirm(
        &self,
        s: &AppState,
        claims: &VerifiedClaims,
        refresh_token: &str,
    ) -> Result<(), BindingError> {
        let step = BindingStep::new(Arc::clone(&s.proofs), Some(Arc::clone(&s.metrics.binding)));
        match step.begin(
            claims,
            || Ok(self.presented(refresh_token)),
            s.clock.unix_now(),
        )? {
            Begun::Done(_) => Ok(()),
            // Cluster mode: the proof's nonce needs the fleet's answer. The
            // claim runs as a task on the runtime and this thread waits for
            // it, bounded (`command_timeout` plus scheduling margin): safe
            // on the blocking pool, and never a panic or an open door
            // elsewhere (no runtime, or no answer in time: refused).
            Begun::Fleet(pending) => {
                let wait = s
                    .sessions
                    .cluster()
                    .map_or(Duration::ZERO, |c| c.config().command_timeout)
                    .saturating_add(FLEET_WAIT_MARGIN);
                let sub = claims.sub().to_owned();
                crate::gateway::cluster::wait_bounded(wait, async move {
                    step.finish(pending, &sub).await
                })
                .unwrap_or(Err(BindingError::ReplayUnavailable))
                .map(drop)
            }
        }
    }

    fn presented<'a>(&'a self, refresh_token: &'a str) -> Presented<'a> {
        Presented {
            method: self.method.as_str(),
            uri: &self.target,
            token: refresh_token,
            proof: self.proof.as_deref(),
            client_cert_sha256: self.cert.as_deref(),
        }
    }
}

/// Scheduling margin over `command_timeout` for a blocking-pool thread
/// waiting on a fleet call (2 loaded cores).
const FLEET_WAIT_MARGIN: Duration = Duration::from_millis(250);

/// `POST /auth/logout`: revoke this session.
pub(crate) async fn logout(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
) -> Response {
    revoke(state, "logout", move |s| s.sessions.logout(&session)).await
}

/// `GET /auth/session`: the verified claims and both timeouts.
pub(crate) async fn session(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
) -> Response {
    no_store(Json(state.sessions.info(&session)).into_response())
}

/// `GET /auth/sessions`: this subject's live sessions.
pub(crate) async fn sessions(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
) -> Response {
    if state.sessions.cluster().is_some() {
        // The fleet's list (the same on every replica), or this replica's
        // own when Redis cannot answer: then `"partial": true`.
        let listing = state.sessions.list_shared(&session).await;
        return no_store(
            Json(json!({ "sessions": listing.sessions, "partial": listing.partial }))
                .into_response(),
        );
    }
    no_store(Json(json!({ "sessions": state.sessions.list(&session) })).into_response())
}

/// `DELETE /auth/sessions/{id}`: revoke one of them (by `jti` or `sid`).
pub(crate) async fn revoke_one(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    Path(target): Path<String>,
) -> Response {
    revoke(state, "session", move |s| {
        s.sessions.revoke_own(&session, &target)
    })
    .await
}

/// `POST /admin/revoke` with one of `{"jti"}`, `{"sid"}`, `{"sub"}`; scope `admin`.
pub(crate) async fn admin_revoke(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = json_body::<AdminRevokeRequest>(&headers, &body);
    let what = match body.map(|b| (b.jti, b.sid, b.sub)) {
        Some((Some(jti), None, None)) => AdminRevoke::Token(jti),
        Some((None, Some(sid), None)) => AdminRevoke::Session(sid),
        Some((None, None, Some(sub))) => AdminRevoke::Subject(sub),
        _ => {
            return error(ApiError::InvalidBody(AuthBody::Revoke));
        }
    };
    let kind = match &what {
        AdminRevoke::Token(_) => "token",
        AdminRevoke::Session(_) => "session",
        AdminRevoke::Subject(_) => "subject",
    };
    revoke(state, kind, move |s| {
        s.sessions.admin_revoke(&session, what)
    })
    .await
}

/// Per-client-address rate limit on `/auth/*`, counted per request, so
/// HTTP/2 multiplexing cannot multiply it.
pub(crate) async fn rate_limit(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let ip = client_ip(req.extensions().get::<ConnectionInfo>());
    match state
        .auth_limiter
        .check_at(&ip.to_string(), state.clock.unix_now())
    {
        Ok(()) => next.run(req).await,
        Err(retry) => error(ApiError::RateLimited {
            retry_after: retry.0,
        }),
    }
}

/// Reads the whole request body within `deadline`, counted once from the
/// first poll, so a body that trickles a byte at a time cannot hold the
/// request (and its connection) for longer: the per-chunk
/// `body_read_timeout` alone resets on every byte. 408 beyond the
/// deadline, 413 beyond the `/auth/*` size limit.
pub(crate) async fn whole_body(
    State(deadline): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, AUTH_BODY_LIMIT);
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) if is_too_large(&e) => error(ApiError::PayloadTooLarge),
        // A pause over `body_read_timeout`, or the total deadline.
        Ok(Err(_)) | Err(_) => error(ApiError::RequestTimeout),
    }
}

fn is_too_large(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Runs a revocation, counts it by `kind`, and answers `{"status":"revoked"}`.
async fn revoke(
    state: AppState,
    kind: &'static str,
    f: impl FnOnce(&AppState) -> Result<(), SessionError> + Send + 'static,
) -> Response {
    let metrics = Arc::clone(&state.metrics);
    match run_blocking(state, f).await {
        Ok(()) => {
            metrics.sessions.revoked(kind);
            no_store(Json(json!({ "status": "revoked" })).into_response())
        }
        Err(response) => response,
    }
}

async fn blocking(
    state: AppState,
    method: &'static str,
    f: impl FnOnce(&AppState) -> Result<TokenPair, SessionError> + Send + 'static,
) -> Response {
    let now = state.clock.now();
    let metrics = Arc::clone(&state.metrics);
    match run_blocking(state, f).await {
        Ok(pair) => {
            metrics.sessions.issued(method);
            no_store(Json(pair.response_json(now)).into_response())
        }
        Err(response) => response,
    }
}

/// Runs a session call on the blocking pool (argon2, fsync). A panic there
/// is an internal error, never a dropped connection.
async fn run_blocking<T: Send + 'static>(
    state: AppState,
    f: impl FnOnce(&AppState) -> Result<T, SessionError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(move || f(&state)).await {
        Ok(result) => result.map_err(|e| error(&e)),
        Err(_) => Err(error(ApiError::Internal)),
    }
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A JSON body (`Content-Type: application/json`, which a cross-site
/// form cannot send) of type `T`. Parse errors are dropped, never echoed:
/// they can quote the input, and the input can be a password.
fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Option<T> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    is_json.then(|| serde_json::from_slice(body).ok()).flatten()
}

/// The answer to `e`, as the error table in `http::error` gives it.
fn error(e: impl Into<ErrorResponse>) -> Response {
    e.into().into_response()
}

/// The binding a pairing or login asked for.
fn requested_binding(
    client_key: Option<&str>,
    bind: Option<BindTarget>,
    conn: Option<&ConnectionInfo>,
) -> Result<Option<Confirmation>, BindingError> {
    let certificate = bind == Some(BindTarget::Certificate);
    let cert = conn.and_then(|c| c.client_cert_sha256.as_deref());
    binding::requested_confirmation(client_key, certificate, cert)
}

/// The peer as logs show it (`ip:port`); `0.0.0.0` outside the listener.
fn client_addr(conn: Option<&ConnectionInfo>) -> ClientAddr {
    conn.map_or(
        ClientAddr::from(std::net::IpAddr::from([0, 0, 0, 0])),
        |c| ClientAddr::from(c.peer),
    )
}

fn client_ip(conn: Option<&ConnectionInfo>) -> std::net::IpAddr {
    conn.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.peer.ip())
}

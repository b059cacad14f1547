//! `/auth/*` and `/admin/revoke`: parse → one `SessionManager` call → JSON.
//! Token responses carry `Cache-Control: no-store` (OWASP; RFC 6749 §5.1).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::CurrentSession;
use super::error::{ApiError, json_error, session_error};
use crate::gateway::server::ConnectionInfo;
use crate::gateway::session_manager::{AdminRevoke, SessionError, TokenPair};

/// Header carrying the one-time pairing code.
pub const PAIRING_HEADER: &str = "x-pairing-code";

/// `POST /auth/login` body.
#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// `POST /auth/refresh` body.
#[derive(Deserialize)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// `POST /admin/revoke` body: exactly one of the fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminRevokeRequest {
    jti: Option<String>,
    sid: Option<String>,
    sub: Option<String>,
}

/// `POST /auth/pair` with `X-Pairing-Code`.
pub async fn pair(
    State(state): State<AppState>,
    conn: Option<axum::Extension<ConnectionInfo>>,
    headers: HeaderMap,
) -> Response {
    let Some(code) = headers.get(PAIRING_HEADER).and_then(|v| v.to_str().ok()) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "X-Pairing-Code header is required",
        );
    };
    let code = code.to_owned();
    let peer = client_ip(conn.as_deref());
    blocking(state, "pair", move |s| s.sessions.pair(&code, peer, None)).await
}

/// `POST /auth/login` with `{"username","password"}`.
pub async fn login(
    State(state): State<AppState>,
    conn: Option<axum::Extension<ConnectionInfo>>,
    body: Option<Json<LoginRequest>>,
) -> Response {
    let Some(Json(body)) = body else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected JSON {\"username\",\"password\"}",
        );
    };
    let peer = client_ip(conn.as_deref());
    // argon2 is deliberately slow: keep it off the async workers.
    blocking(state, "login", move |s| {
        s.sessions.login(&body.username, &body.password, peer, None)
    })
    .await
}

/// `POST /auth/refresh` with `{"refresh_token"}`.
pub async fn refresh(
    State(state): State<AppState>,
    body: Option<Json<RefreshRequest>>,
) -> Response {
    let Some(Json(body)) = body else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected JSON {\"refresh_token\"}",
        );
    };
    blocking(state, "refresh", move |s| {
        s.sessions.refresh(&body.refresh_token)
    })
    .await
}

/// `POST /auth/logout`: revoke this session.
pub async fn logout(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
) -> Response {
    revoke(state, "logout", move |s| s.sessions.logout(&session)).await
}

/// `GET /auth/session`: the verified claims and both timeouts.
pub async fn session(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
) -> Response {
    no_store(Json(state.sessions.info(&session)).into_response())
}

/// `GET /auth/sessions`: this subject's live sessions.
pub async fn sessions(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
) -> Response {
    no_store(Json(json!({ "sessions": state.sessions.list(&session) })).into_response())
}

/// `DELETE /auth/sessions/{id}`: revoke one of them (by `jti` or `sid`).
pub async fn revoke_one(
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
pub async fn admin_revoke(
    State(state): State<AppState>,
    CurrentSession(session): CurrentSession,
    body: Option<Json<AdminRevokeRequest>>,
) -> Response {
    let what = match body.map(|Json(b)| (b.jti, b.sid, b.sub)) {
        Some((Some(jti), None, None)) => AdminRevoke::Token(jti),
        Some((None, Some(sid), None)) => AdminRevoke::Session(sid),
        Some((None, None, Some(sub))) => AdminRevoke::Subject(sub),
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "expected exactly one of jti, sid, sub",
            );
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
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ip = client_ip(req.extensions().get::<ConnectionInfo>());
    match state
        .auth_limiter
        .check_at(&ip.to_string(), state.clock.unix_now())
    {
        Ok(()) => next.run(req).await,
        Err(retry) => {
            let mut response = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; retry later",
            );
            if let Ok(v) = HeaderValue::from_str(&retry.0.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
    }
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
        Ok(result) => result.map_err(|e| session_error(&e)),
        Err(_) => Err(ApiError::Internal.into_response()),
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

fn client_ip(conn: Option<&ConnectionInfo>) -> std::net::IpAddr {
    conn.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.peer.ip())
}

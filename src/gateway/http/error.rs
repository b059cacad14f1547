//! The one place where errors become HTTP responses.
//!
//! Every error the HTTP side can answer with is converted, by one
//! exhaustive `From` per error type, into an [`ErrorResponse`]: status,
//! stable `error` code, fixed message, `WWW-Authenticate` challenge
//! (RFC 6750 §3) and `Retry-After`. [`ErrorResponse`] has the only
//! `IntoResponse` of an error. No other file picks an error status or sets
//! a challenge. The body never carries an error chain, a token, or which
//! claim failed.
//!
//! Start-up failures (an unusable `[upstream] url`, …) are not here: they
//! stop the gateway before it serves, so no request can hit them.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::gateway::http::proxy::ProxyError;
use crate::gateway::replay_protection::ReplayError;
use crate::gateway::session_manager::SessionError;
use crate::gateway::session_manager::binding::BindingError;

/// One error answer: everything a client is told about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable `error` code of the JSON body.
    pub code: &'static str,
    /// The fixed `message` of the JSON body.
    pub message: &'static str,
    /// The `WWW-Authenticate` value, if the answer carries one.
    pub challenge: Option<&'static str>,
    /// How long the client should wait (`Retry-After`, whole seconds, at
    /// least 1), if the answer says.
    pub retry_after: Option<Duration>,
}

impl ErrorResponse {
    /// An answer without challenge or `Retry-After`.
    const fn plain(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
            challenge: None,
            retry_after: None,
        }
    }

    /// The same answer with a `WWW-Authenticate` challenge.
    const fn challenge(mut self, challenge: &'static str) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// The same answer with a `Retry-After`.
    const fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

/// `{"error":code,"message":message}` with `Cache-Control: no-store`, and
/// the challenge and `Retry-After` when set.
impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.code,
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        // For the edge (rate-limit counts) and the access log's `error`.
        response
            .extensions_mut()
            .insert(super::access_log::ErrorCode(self.code));
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        // A zero wait is sent as 1 s: `Retry-After: 0` invites a busy loop.
        if let Some(wait) = self.retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
        }
        response
    }
}

#[derive(Serialize)]
struct Body {
    error: &'static str,
    message: &'static str,
}

/// An error answer of the gateway's own (routing, limits, `/auth/*` input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    /// No route.
    NotFound,
    /// An authenticated request for the upstream, and none is configured.
    NoUpstream,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The request body exceeds `max_body_bytes`.
    PayloadTooLarge,
    /// The request body did not arrive in time.
    RequestTimeout,
    /// The request's Host or target breaks HTTP's rules (no Host, two
    /// Host fields, Host against `:authority`, a non-ASCII target).
    InvalidRequest,
    /// A handler panicked or another internal failure.
    Internal,
    /// `POST /auth/pair` without an `X-Pairing-Code` header.
    PairingCodeRequired,
    /// An `/auth/*` or `/admin/revoke` body that is not what the route takes.
    InvalidBody(AuthBody),
    /// Too many `/auth/*` requests from this client address.
    RateLimited {
        /// Time until the address's window ends.
        retry_after: Duration,
    },
}

/// Which route's JSON body was refused (each names what it expects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthBody {
    /// `POST /auth/pair`.
    Pair,
    /// `POST /auth/login`.
    Login,
    /// `POST /auth/refresh`.
    Refresh,
    /// `POST /admin/revoke`.
    Revoke,
}

impl ApiError {
    /// The error for a bare status produced below the handlers (axum's
    /// 405, tower-http's 413/408), if it is one the gateway rewrites.
    pub fn for_bare_status(status: StatusCode) -> Option<Self> {
        match status {
            StatusCode::NOT_FOUND => Some(Self::NotFound),
            StatusCode::METHOD_NOT_ALLOWED => Some(Self::MethodNotAllowed),
            StatusCode::PAYLOAD_TOO_LARGE => Some(Self::PayloadTooLarge),
            StatusCode::REQUEST_TIMEOUT => Some(Self::RequestTimeout),
            StatusCode::INTERNAL_SERVER_ERROR => Some(Self::Internal),
            _ => None,
        }
    }
}

impl From<ApiError> for ErrorResponse {
    fn from(e: ApiError) -> Self {
        use StatusCode as S;
        let invalid = |message| Self::plain(S::BAD_REQUEST, "invalid_request", message);
        match e {
            ApiError::NotFound => Self::plain(S::NOT_FOUND, "not_found", "no such resource"),
            // Only after authentication: an anonymous caller learns nothing.
            ApiError::NoUpstream => Self::plain(
                S::BAD_GATEWAY,
                "no_upstream",
                "no upstream is configured: set [upstream] url, or start with --upstream URL",
            ),
            ApiError::MethodNotAllowed => Self::plain(
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            ),
            ApiError::PayloadTooLarge => Self::plain(
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body too large",
            ),
            ApiError::RequestTimeout => Self::plain(
                S::REQUEST_TIMEOUT,
                "request_timeout",
                "request body not received in time",
            ),
            ApiError::InvalidRequest => invalid("the request's Host or target is not valid"),
            ApiError::Internal => INTERNAL,
            ApiError::PairingCodeRequired => invalid("X-Pairing-Code header is required"),
            ApiError::InvalidBody(body) => invalid(match body {
                AuthBody::Pair => "expected no body or JSON {\"client_key\",\"bind\"}",
                AuthBody::Login => {
                    "expected JSON {\"username\",\"password\"} (optional \"client_key\", \"bind\")"
                }
                AuthBody::Refresh => "expected JSON {\"refresh_token\"}",
                AuthBody::Revoke => "expected JSON with exactly one of jti, sid, sub",
            }),
            ApiError::RateLimited { retry_after } => Self::plain(
                S::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; retry later",
            )
            .retry_after(retry_after),
        }
    }
}

/// Why the bearer layer refused a request (RFC 6750 §3).
#[derive(Debug)]
pub enum AuthRejection {
    /// No credentials at all: a bare `WWW-Authenticate: Bearer` challenge.
    MissingToken,
    /// An `Authorization` header that is not one `Bearer <token>`.
    MalformedCredentials,
    /// Bad, expired or revoked token. Which check failed is logged, never told.
    InvalidToken,
    /// The token lacks a scope the route needs.
    InsufficientScope,
    /// Replay protection refused the request.
    Replay(ReplayError),
    /// The token is bound and the request did not prove it (proof or
    /// client certificate).
    Binding(BindingError),
}

impl From<&AuthRejection> for ErrorResponse {
    fn from(e: &AuthRejection) -> Self {
        match e {
            AuthRejection::MissingToken => Self::plain(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "a bearer token is required",
            )
            .challenge(BEARER),
            AuthRejection::MalformedCredentials => Self::plain(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the Authorization header must be one \"Bearer <token>\"",
            )
            .challenge(INVALID_REQUEST),
            AuthRejection::InvalidToken => Self::plain(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is invalid, expired or revoked",
            )
            .challenge(INVALID_TOKEN),
            AuthRejection::InsufficientScope => FORBIDDEN,
            AuthRejection::Replay(e) => e.into(),
            AuthRejection::Binding(e) => e.into(),
        }
    }
}

/// Replay errors: a request the client can fix (400), a replay (409), a
/// session past its share of the nonce cache (429), or a full nonce cache
/// that fails closed (503). No challenge: the token itself was fine.
impl From<&ReplayError> for ErrorResponse {
    fn from(e: &ReplayError) -> Self {
        use ReplayError as R;
        use StatusCode as S;
        let (status, message) = match e {
            R::MissingNonce => (S::BAD_REQUEST, "X-Request-Nonce is required on this method"),
            R::MalformedNonce => (
                S::BAD_REQUEST,
                "X-Request-Nonce must be 128 to 512 random bits, base64url",
            ),
            R::MissingTimestamp => (
                S::BAD_REQUEST,
                "X-Request-Timestamp is required on this method",
            ),
            R::MalformedTimestamp => (S::BAD_REQUEST, "X-Request-Timestamp must be Unix seconds"),
            R::Stale => (S::BAD_REQUEST, "X-Request-Timestamp is too old"),
            R::Future => (S::BAD_REQUEST, "X-Request-Timestamp is in the future"),
            R::Replayed => (S::CONFLICT, "this request was already received"),
            R::CapacityExhausted => (
                S::SERVICE_UNAVAILABLE,
                "replay protection is at capacity; retry later",
            ),
            R::QuotaExhausted => (
                S::TOO_MANY_REQUESTS,
                "this session has too many recent protected requests; retry later",
            ),
            // Cluster mode, Redis silent: fail closed, retry soon with a
            // fresh nonce.
            R::Unavailable => {
                return Self::plain(
                    S::SERVICE_UNAVAILABLE,
                    e.code(),
                    "replay protection is unavailable; retry with a fresh nonce",
                )
                .retry_after(Duration::from_secs(1));
            }
        };
        Self::plain(status, e.code(), message)
    }
}

/// Binding failures. A request that did not prove its token's binding is
/// an invalid token (RFC 6750 §3.1: 401 with `error="invalid_token"`); the
/// stable code says which check failed (the client needs it to fix its
/// proof; a thief learns nothing it could use without the key). A full
/// nonce cache is the server's 503, a session over its share 429; the two
/// issuance errors are the client's 400.
impl From<&BindingError> for ErrorResponse {
    fn from(e: &BindingError) -> Self {
        use BindingError as B;
        use StatusCode as S;
        let unconfirmed =
            |message| Self::plain(S::UNAUTHORIZED, e.code(), message).challenge(INVALID_TOKEN);
        match e {
            B::ProofMissing => {
                unconfirmed("this session is bound to a key: send a Clawgate-Proof header")
            }
            B::ProofMalformed => unconfirmed("the Clawgate-Proof header is not a valid proof"),
            B::KeyMismatch => {
                unconfirmed("the proof was not made with the key this session is bound to")
            }
            B::BadSignature => unconfirmed("the proof signature is invalid"),
            B::MethodMismatch => unconfirmed("the proof was made for another method (htm)"),
            B::UriMismatch => unconfirmed("the proof was made for another path and query (htu)"),
            B::TokenMismatch => unconfirmed("the proof was made for another token (ath)"),
            B::ProofStale => unconfirmed("the proof is too old (iat)"),
            B::ProofFuture => unconfirmed("the proof is dated in the future (iat)"),
            B::ProofReplayed => unconfirmed("the proof was already used (jti)"),
            B::CertificateMissing => {
                unconfirmed("this session is bound to a client certificate; present it")
            }
            B::CertificateMismatch => {
                unconfirmed("the client certificate is not the one this session is bound to")
            }
            B::CapacityExhausted => Self::plain(
                S::SERVICE_UNAVAILABLE,
                e.code(),
                "proof checking is at capacity; retry later",
            ),
            B::QuotaExhausted => Self::plain(
                S::TOO_MANY_REQUESTS,
                e.code(),
                "this session has too many recent proofs; retry later",
            ),
            B::ReplayUnavailable => Self::plain(
                S::SERVICE_UNAVAILABLE,
                e.code(),
                "replay protection is unavailable; retry with a new proof",
            )
            .retry_after(Duration::from_secs(1)),
            B::InvalidClientKey => Self::plain(
                S::BAD_REQUEST,
                e.code(),
                "client_key must be a PASERK k4.public key",
            ),
            B::CertificateRequired => Self::plain(
                S::BAD_REQUEST,
                e.code(),
                "certificate binding needs a client certificate on this connection",
            ),
        }
    }
}

/// Session-manager errors. Bad, revoked and reused tokens all answer
/// `invalid_token`: the client is not told which check failed.
impl From<&SessionError> for ErrorResponse {
    fn from(e: &SessionError) -> Self {
        use SessionError as E;
        use StatusCode as S;
        match e {
            E::InvalidToken(_) | E::TokenRevoked | E::RefreshReused => Self::plain(
                S::UNAUTHORIZED,
                "invalid_token",
                "the token is invalid, expired or revoked",
            )
            .challenge(INVALID_TOKEN),
            E::SessionExpired => Self::plain(
                S::UNAUTHORIZED,
                "session_expired",
                "the session ended; log in again",
            )
            .challenge(INVALID_TOKEN),
            E::InvalidCredentials => Self::plain(
                S::UNAUTHORIZED,
                "invalid_credentials",
                "invalid user name or password",
            ),
            E::PairingInvalid => {
                Self::plain(S::UNAUTHORIZED, "pairing_invalid", "invalid pairing code")
            }
            E::PairingUsed => Self::plain(
                S::CONFLICT,
                "pairing_used",
                "the pairing code was already used",
            ),
            E::PairingDisabled => {
                Self::plain(S::FORBIDDEN, "pairing_disabled", "pairing is disabled")
            }
            E::PairingLocked { retry_after } => Self::plain(
                S::TOO_MANY_REQUESTS,
                "pairing_locked",
                "too many wrong pairing codes; retry later",
            )
            .retry_after(*retry_after),
            E::RateLimited { retry_after } => Self::plain(
                S::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many attempts; retry later",
            )
            .retry_after(*retry_after),
            E::RefreshDisabled => Self::plain(
                S::BAD_REQUEST,
                "refresh_disabled",
                "refresh tokens are disabled",
            ),
            E::BindingRequired => Self::plain(
                S::BAD_REQUEST,
                "binding_required",
                "a session binding (client key or certificate) is required",
            ),
            E::Binding(b) => b.into(),
            E::Forbidden => FORBIDDEN,
            E::NotFound => Self::plain(S::NOT_FOUND, "session_not_found", "no such session"),
            E::InvalidRequest(_) => {
                Self::plain(S::BAD_REQUEST, "invalid_request", "the request is invalid")
            }
            E::Mint(_) => INTERNAL,
            E::RefreshUnavailable => Self::plain(
                S::SERVICE_UNAVAILABLE,
                "refresh_unavailable",
                "refresh is unavailable; retry with the same refresh token",
            )
            .retry_after(UNAVAILABLE_RETRY),
            // Cluster mode, Redis silent at login or issue: fail closed.
            E::SessionStoreUnavailable => Self::plain(
                S::SERVICE_UNAVAILABLE,
                "session_store_unavailable",
                "the session store is unavailable; retry later",
            )
            .retry_after(UNAVAILABLE_RETRY),
        }
    }
}

/// `Retry-After` of the cluster-mode 503s (Redis could not answer).
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// Forwarding failures; the cause goes to the log only (the proxy logged
/// it already). The code is the proxy's own stable code.
impl From<&ProxyError> for ErrorResponse {
    fn from(e: &ProxyError) -> Self {
        use StatusCode as S;
        let (status, message) = match e {
            ProxyError::UpstreamUnavailable(_) => {
                (S::BAD_GATEWAY, "the upstream service is unavailable")
            }
            ProxyError::UpstreamTimeout => (
                S::GATEWAY_TIMEOUT,
                "the upstream service did not answer in time",
            ),
            ProxyError::BadUpstreamResponse(_) => (
                S::BAD_GATEWAY,
                "the upstream service sent an invalid response",
            ),
            ProxyError::InvalidRequest | ProxyError::RequestBody(_) => {
                (S::BAD_REQUEST, "the request cannot be forwarded")
            }
            ProxyError::PayloadTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "request body too large"),
            ProxyError::IdentityNotRepresentable => return INTERNAL,
            ProxyError::SessionEnded => {
                return Self::plain(S::UNAUTHORIZED, e.code(), "the session has ended")
                    .challenge(INVALID_TOKEN);
            }
        };
        Self::plain(status, e.code(), message)
    }
}

/// The bare RFC 6750 challenge: no credentials were sent.
const BEARER: &str = "Bearer";
/// RFC 6750 §3.1 `invalid_request`.
const INVALID_REQUEST: &str = "Bearer error=\"invalid_request\"";
/// RFC 6750 §3.1 `invalid_token`.
const INVALID_TOKEN: &str = "Bearer error=\"invalid_token\"";

/// A token without the scope the route needs (RFC 6750 §3.1).
const FORBIDDEN: ErrorResponse = ErrorResponse::plain(
    StatusCode::FORBIDDEN,
    "insufficient_scope",
    "the access token lacks the required scope",
)
.challenge("Bearer error=\"insufficient_scope\"");

/// Any failure of the server's own: nothing more is told.
const INTERNAL: ErrorResponse = ErrorResponse::plain(
    StatusCode::INTERNAL_SERVER_ERROR,
    "internal_error",
    "internal error",
);

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
mod tests;

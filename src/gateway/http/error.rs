//! The one place where errors become HTTP responses: status, stable
//! `error` code, fixed message and `WWW-Authenticate` (RFC 6750). The body
//! never carries an error chain, a token, or which claim failed.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::gateway::binding::BindingError;
use crate::gateway::http::proxy::ProxyError;
use crate::gateway::replay_protection::ReplayError;
use crate::gateway::session_manager::SessionError;

/// An error answer of the gateway's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    /// No route (or no upstream configured).
    NotFound,
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
}

#[derive(Serialize)]
struct Body {
    error: &'static str,
    message: &'static str,
}

impl ApiError {
    /// Status, stable code and fixed message.
    pub fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such resource"),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body too large",
            ),
            Self::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "request body not received in time",
            ),
            Self::InvalidRequest => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request's Host or target is not valid",
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error",
            ),
        }
    }

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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        json_error(status, code, message)
    }
}

/// A JSON error response `{"error":code,"message":message}`.
pub fn json_error(status: StatusCode, code: &'static str, message: &'static str) -> Response {
    let mut response = (
        status,
        Json(Body {
            error: code,
            message,
        }),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let (status, code, message, challenge) = match &self {
            Self::MissingToken => (
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "a bearer token is required",
                "Bearer",
            ),
            Self::MalformedCredentials => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the Authorization header must be one \"Bearer <token>\"",
                "Bearer error=\"invalid_request\"",
            ),
            Self::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is invalid, expired or revoked",
                "Bearer error=\"invalid_token\"",
            ),
            Self::InsufficientScope => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "the access token lacks the required scope",
                "Bearer error=\"insufficient_scope\"",
            ),
            Self::Replay(e) => {
                let (status, message) = replay_parts(e);
                return json_error(status, e.code(), message);
            }
            Self::Binding(e) => return binding_error(e),
        };
        let mut response = json_error(status, code, message);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    }
}

/// Replay errors: a request the client can fix (400), a replay (409), a
/// session past its share of the nonce cache (429), or a full nonce cache
/// that fails closed (503).
fn replay_parts(e: &ReplayError) -> (StatusCode, &'static str) {
    match e {
        ReplayError::MissingNonce => (
            StatusCode::BAD_REQUEST,
            "X-Request-Nonce is required on this method",
        ),
        ReplayError::MalformedNonce => (
            StatusCode::BAD_REQUEST,
            "X-Request-Nonce must be 128 to 512 random bits, base64url",
        ),
        ReplayError::MissingTimestamp => (
            StatusCode::BAD_REQUEST,
            "X-Request-Timestamp is required on this method",
        ),
        ReplayError::MalformedTimestamp => (
            StatusCode::BAD_REQUEST,
            "X-Request-Timestamp must be Unix seconds",
        ),
        ReplayError::Stale => (StatusCode::BAD_REQUEST, "X-Request-Timestamp is too old"),
        ReplayError::Future => (
            StatusCode::BAD_REQUEST,
            "X-Request-Timestamp is in the future",
        ),
        ReplayError::Replayed => (StatusCode::CONFLICT, "this request was already received"),
        ReplayError::CapacityExhausted => (
            StatusCode::SERVICE_UNAVAILABLE,
            "replay protection is at capacity; retry later",
        ),
        ReplayError::QuotaExhausted => (
            StatusCode::TOO_MANY_REQUESTS,
            "this session has too many recent protected requests; retry later",
        ),
    }
}

/// A binding failure as a response. A request that did not prove its
/// token's binding is an invalid token (RFC 6750 §3.1: 401 with
/// `error="invalid_token"`); the stable code says which check failed (the
/// client needs it to fix its proof; a thief learns nothing it could use
/// without the key). A full nonce cache is the server's 503; the two
/// issuance errors are the client's 400.
pub fn binding_error(e: &BindingError) -> Response {
    use BindingError as B;
    let message = match e {
        B::ProofMissing => "this session is bound to a key: send a Clawgate-Proof header",
        B::ProofMalformed => "the Clawgate-Proof header is not a valid proof",
        B::KeyMismatch => "the proof was not made with the key this session is bound to",
        B::BadSignature => "the proof signature is invalid",
        B::MethodMismatch => "the proof was made for another method (htm)",
        B::UriMismatch => "the proof was made for another path and query (htu)",
        B::TokenMismatch => "the proof was made for another token (ath)",
        B::ProofStale => "the proof is too old (iat)",
        B::ProofFuture => "the proof is dated in the future (iat)",
        B::ProofReplayed => "the proof was already used (jti)",
        B::CertificateMissing => "this session is bound to a client certificate; present it",
        B::CertificateMismatch => "the client certificate is not the one this session is bound to",
        B::CapacityExhausted => {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                e.code(),
                "proof checking is at capacity; retry later",
            );
        }
        B::QuotaExhausted => {
            return json_error(
                StatusCode::TOO_MANY_REQUESTS,
                e.code(),
                "this session has too many recent proofs; retry later",
            );
        }
        B::InvalidClientKey => {
            return json_error(
                StatusCode::BAD_REQUEST,
                e.code(),
                "client_key must be a PASERK k4.public key",
            );
        }
        B::CertificateRequired => {
            return json_error(
                StatusCode::BAD_REQUEST,
                e.code(),
                "certificate binding needs a client certificate on this connection",
            );
        }
    };
    let mut response = json_error(StatusCode::UNAUTHORIZED, e.code(), message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

/// A session-manager error as a response. Every variant is listed, so a
/// new one cannot silently become a 500. Bad, revoked and reused tokens all
/// answer `invalid_token`: the client is not told which check failed.
pub fn session_error(e: &SessionError) -> Response {
    use SessionError as E;
    let invalid_token = Some("Bearer error=\"invalid_token\"");
    let (status, code, message, challenge) = match e {
        E::InvalidToken(_) | E::TokenRevoked | E::RefreshReused => (
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the token is invalid, expired or revoked",
            invalid_token,
        ),
        E::SessionExpired => (
            StatusCode::UNAUTHORIZED,
            "session_expired",
            "the session ended; log in again",
            invalid_token,
        ),
        E::InvalidCredentials => (
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "invalid user name or password",
            None,
        ),
        E::PairingInvalid => (
            StatusCode::UNAUTHORIZED,
            "pairing_invalid",
            "invalid pairing code",
            None,
        ),
        E::PairingUsed => (
            StatusCode::CONFLICT,
            "pairing_used",
            "the pairing code was already used",
            None,
        ),
        E::PairingDisabled => (
            StatusCode::FORBIDDEN,
            "pairing_disabled",
            "pairing is disabled",
            None,
        ),
        E::PairingLocked { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "pairing_locked",
            "too many wrong pairing codes; retry later",
            None,
        ),
        E::RateLimited { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many attempts; retry later",
            None,
        ),
        E::RefreshDisabled => (
            StatusCode::BAD_REQUEST,
            "refresh_disabled",
            "refresh tokens are disabled",
            None,
        ),
        E::BindingRequired => (
            StatusCode::BAD_REQUEST,
            "binding_required",
            "a session binding (client key or certificate) is required",
            None,
        ),
        E::Binding(b) => return binding_error(b),
        E::Forbidden => (
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the access token lacks the required scope",
            Some("Bearer error=\"insufficient_scope\""),
        ),
        E::NotFound => (
            StatusCode::NOT_FOUND,
            "session_not_found",
            "no such session",
            None,
        ),
        E::InvalidRequest(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request is invalid",
            None,
        ),
        E::Mint(_) | E::InvalidConfig(_) | E::Random => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
            None,
        ),
    };
    let mut response = json_error(status, code, message);
    if let Some(challenge) = challenge {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    if let Some(v) = e
        .retry_after()
        .and_then(|d| HeaderValue::from_str(&d.as_secs().max(1).to_string()).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// An upstream failure as a JSON error; the cause goes to the log only
/// (the proxy logged it already).
pub fn proxy_error(e: &ProxyError) -> Response {
    let message = match e {
        ProxyError::UpstreamUnavailable(_) => "the upstream service is unavailable",
        ProxyError::UpstreamTimeout => "the upstream service did not answer in time",
        ProxyError::BadUpstreamResponse(_) => "the upstream service sent an invalid response",
        ProxyError::InvalidRequest | ProxyError::RequestBody(_) => {
            "the request cannot be forwarded"
        }
        ProxyError::PayloadTooLarge(_) => "request body too large",
        ProxyError::InvalidUpstreamUrl | ProxyError::IdentityNotRepresentable => "internal error",
        ProxyError::SessionEnded => "the session has ended",
    };
    let mut response = json_error(e.status(), e.code(), message);
    if matches!(e, ProxyError::SessionEnded) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::gateway::binding::BindingError;
    use crate::gateway::session_token::TokenError;

    fn parts(r: &Response) -> (u16, Option<&str>, Option<&str>) {
        let h = r.headers();
        (
            r.status().as_u16(),
            h.get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            h.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()),
        )
    }

    const INVALID: Option<&str> = Some("Bearer error=\"invalid_token\"");

    #[test]
    fn session_errors_map_to_rfc6750_answers() {
        use SessionError as E;
        let wait = Duration::from_secs(90);
        let cases: Vec<(E, u16, Option<&str>, Option<&str>)> = vec![
            (E::InvalidToken(TokenError::Expired), 401, INVALID, None),
            (E::TokenRevoked, 401, INVALID, None),
            (E::RefreshReused, 401, INVALID, None),
            (E::SessionExpired, 401, INVALID, None),
            (E::InvalidCredentials, 401, None, None),
            (E::PairingInvalid, 401, None, None),
            (E::PairingUsed, 409, None, None),
            (E::PairingDisabled, 403, None, None),
            (
                E::PairingLocked { retry_after: wait },
                429,
                None,
                Some("90"),
            ),
            (
                E::RateLimited {
                    retry_after: Duration::ZERO,
                },
                429,
                None,
                Some("1"),
            ),
            (E::RefreshDisabled, 400, None, None),
            (E::BindingRequired, 400, None, None),
            (E::Binding(BindingError::ProofMissing), 401, INVALID, None),
            (
                E::Forbidden,
                403,
                Some("Bearer error=\"insufficient_scope\""),
                None,
            ),
            (E::NotFound, 404, None, None),
            (E::InvalidRequest("x"), 400, None, None),
            (E::Mint(TokenError::NoSigningKey), 500, None, None),
            (
                E::InvalidConfig("secret-ish detail".into()),
                500,
                None,
                None,
            ),
            (E::Random, 500, None, None),
        ];
        for (error, status, challenge, retry) in cases {
            let response = session_error(&error);
            assert_eq!(parts(&response), (status, challenge, retry), "{error:?}");
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        }
    }

    #[tokio::test]
    async fn bad_revoked_and_reused_tokens_are_indistinguishable_to_the_client() {
        let mut bodies = Vec::new();
        for e in [
            SessionError::InvalidToken(TokenError::BadSignature),
            SessionError::TokenRevoked,
            SessionError::RefreshReused,
        ] {
            let body = axum::body::to_bytes(session_error(&e).into_body(), 4096)
                .await
                .unwrap();
            bodies.push(body);
        }
        assert!(
            bodies[0].starts_with(b"{\"error\":\"invalid_token\""),
            "{bodies:?}"
        );
        assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    }

    #[test]
    fn replay_errors_are_400_409_429_or_503() {
        use ReplayError as R;
        for (e, status) in [
            (R::MissingNonce, 400),
            (R::MalformedNonce, 400),
            (R::MissingTimestamp, 400),
            (R::MalformedTimestamp, 400),
            (R::Stale, 400),
            (R::Future, 400),
            (R::Replayed, 409),
            (R::CapacityExhausted, 503),
            (R::QuotaExhausted, 429),
        ] {
            let r = AuthRejection::Replay(e).into_response();
            assert_eq!(r.status().as_u16(), status);
        }
    }

    #[test]
    fn every_binding_rejection_is_a_401_invalid_token_except_capacity_and_issuance() {
        use BindingError as B;
        for e in [
            B::ProofMissing,
            B::ProofMalformed,
            B::KeyMismatch,
            B::BadSignature,
            B::MethodMismatch,
            B::UriMismatch,
            B::TokenMismatch,
            B::ProofStale,
            B::ProofFuture,
            B::ProofReplayed,
            B::CertificateMissing,
            B::CertificateMismatch,
        ] {
            let r = binding_error(&e);
            assert_eq!(parts(&r), (401, INVALID, None), "{e:?}");
        }
        assert_eq!(binding_error(&B::CapacityExhausted).status().as_u16(), 503);
        assert_eq!(binding_error(&B::QuotaExhausted).status().as_u16(), 429);
        assert_eq!(binding_error(&B::InvalidClientKey).status().as_u16(), 400);
        assert_eq!(
            binding_error(&B::CertificateRequired).status().as_u16(),
            400
        );
    }

    #[test]
    fn proxy_errors_keep_their_status_and_session_end_is_invalid_token() {
        assert_eq!(
            proxy_error(&ProxyError::UpstreamTimeout).status().as_u16(),
            504
        );
        assert_eq!(
            proxy_error(&ProxyError::InvalidRequest).status().as_u16(),
            400
        );
        assert_eq!(
            proxy_error(&ProxyError::IdentityNotRepresentable)
                .status()
                .as_u16(),
            500
        );
        let ended = proxy_error(&ProxyError::SessionEnded);
        assert_eq!(parts(&ended), (401, INVALID, None));
    }

    #[test]
    fn bare_framework_statuses_are_rewritten_to_json() {
        for (status, code) in [
            (404, "not_found"),
            (405, "method_not_allowed"),
            (408, "request_timeout"),
            (413, "payload_too_large"),
            (500, "internal_error"),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            let api = ApiError::for_bare_status(status).unwrap();
            assert_eq!(api.parts().0, status);
            assert_eq!(api.parts().1, code);
        }
        assert!(ApiError::for_bare_status(StatusCode::OK).is_none());
    }
}

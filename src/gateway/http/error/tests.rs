//! The error table, walked variant by variant: every request-time error
//! of every enum against its status, code, challenge and `Retry-After`.
//! Each enum's list is checked for completeness by an exhaustive `match`,
//! so a new variant fails to compile here until it has a row.

use std::time::Duration;

use axum::response::IntoResponse;
use http::{StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::*;
use crate::gateway::session_token::TokenError;

/// (status, code, challenge, Retry-After seconds) of a row.
type Row = (u16, &'static str, Option<&'static str>, Option<u64>);

const INVALID: Option<&str> = Some("Bearer error=\"invalid_token\"");
const SCOPE: Option<&str> = Some("Bearer error=\"insufficient_scope\"");

fn row(e: ErrorResponse) -> Row {
    (
        e.status.as_u16(),
        e.code,
        e.challenge,
        e.retry_after.map(|d| d.as_secs()),
    )
}

/// The rendered response agrees with the row: status, JSON code,
/// `no-store`, challenge and `Retry-After` headers.
async fn assert_renders(e: ErrorResponse, what: &str) {
    let response = e.into_response();
    let h = response.headers().clone();
    assert_eq!(response.status(), e.status, "{what}");
    assert_eq!(h[header::CACHE_CONTROL], "no-store", "{what}");
    let challenge = h.get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap());
    assert_eq!(challenge, e.challenge, "{what}");
    let retry = h
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let expected = e.retry_after.map(|d| d.as_secs().max(1).to_string());
    assert_eq!(retry, expected, "{what}");
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], e.code, "{what}");
    assert_eq!(json["message"], e.message, "{what}");
}

async fn check_rows<E: std::fmt::Debug>(
    rows: Vec<(E, Row)>,
    convert: impl Fn(&E) -> ErrorResponse,
) {
    for (error, expected) in rows {
        let response = convert(&error);
        assert_eq!(row(response), expected, "{error:?}");
        assert_renders(response, &format!("{error:?}")).await;
    }
}

#[tokio::test]
async fn every_api_error_has_its_row() {
    fn listed(e: ApiError) {
        match e {
            ApiError::NotFound
            | ApiError::NoUpstream
            | ApiError::MethodNotAllowed
            | ApiError::PayloadTooLarge
            | ApiError::RequestTimeout
            | ApiError::InvalidRequest
            | ApiError::Internal
            | ApiError::PairingCodeRequired
            | ApiError::InvalidBody(
                AuthBody::Pair | AuthBody::Login | AuthBody::Refresh | AuthBody::Revoke,
            )
            | ApiError::RateLimited { .. } => {}
        }
    }
    let bad = |b| {
        (
            ApiError::InvalidBody(b),
            (400, "invalid_request", None, None),
        )
    };
    let rows = vec![
        (ApiError::NotFound, (404, "not_found", None, None)),
        (ApiError::NoUpstream, (502, "no_upstream", None, None)),
        (
            ApiError::MethodNotAllowed,
            (405, "method_not_allowed", None, None),
        ),
        (
            ApiError::PayloadTooLarge,
            (413, "payload_too_large", None, None),
        ),
        (
            ApiError::RequestTimeout,
            (408, "request_timeout", None, None),
        ),
        (
            ApiError::InvalidRequest,
            (400, "invalid_request", None, None),
        ),
        (ApiError::Internal, (500, "internal_error", None, None)),
        (
            ApiError::PairingCodeRequired,
            (400, "invalid_request", None, None),
        ),
        bad(AuthBody::Pair),
        bad(AuthBody::Login),
        bad(AuthBody::Refresh),
        bad(AuthBody::Revoke),
        (
            ApiError::RateLimited {
                retry_after: Duration::from_secs(42),
            },
            (429, "rate_limited", None, Some(42)),
        ),
    ];
    rows.iter().for_each(|(e, _)| listed(*e));
    check_rows(rows, |e| ErrorResponse::from(*e)).await;
}

#[tokio::test]
async fn every_auth_rejection_has_its_row() {
    fn listed(e: &AuthRejection) {
        match e {
            AuthRejection::MissingToken
            | AuthRejection::MalformedCredentials
            | AuthRejection::InvalidToken
            | AuthRejection::InsufficientScope
            | AuthRejection::Replay(_)
            | AuthRejection::Binding(_) => {}
        }
    }
    let rows = vec![
        (
            AuthRejection::MissingToken,
            (401, "missing_token", Some("Bearer"), None),
        ),
        (
            AuthRejection::MalformedCredentials,
            (
                400,
                "invalid_request",
                Some("Bearer error=\"invalid_request\""),
                None,
            ),
        ),
        (
            AuthRejection::InvalidToken,
            (401, "invalid_token", INVALID, None),
        ),
        (
            AuthRejection::InsufficientScope,
            (403, "insufficient_scope", SCOPE, None),
        ),
        (
            AuthRejection::Replay(ReplayError::Replayed),
            (409, "replay_detected", None, None),
        ),
        (
            AuthRejection::Binding(BindingError::ProofMissing),
            (401, "proof_missing", INVALID, None),
        ),
    ];
    rows.iter().for_each(|(e, _)| listed(e));
    check_rows(rows, |e| ErrorResponse::from(e)).await;
}

#[tokio::test]
async fn every_replay_error_has_its_row() {
    use ReplayError as R;
    fn listed(e: &ReplayError) {
        match e {
            R::MissingNonce
            | R::MalformedNonce
            | R::MissingTimestamp
            | R::MalformedTimestamp
            | R::Stale
            | R::Future
            | R::Replayed
            | R::CapacityExhausted
            | R::QuotaExhausted
            | R::Unavailable => {}
        }
    }
    let rows: Vec<(R, Row)> = [
        (R::MissingNonce, 400, None),
        (R::MalformedNonce, 400, None),
        (R::MissingTimestamp, 400, None),
        (R::MalformedTimestamp, 400, None),
        (R::Stale, 400, None),
        (R::Future, 400, None),
        (R::Replayed, 409, None),
        (R::CapacityExhausted, 503, None),
        (R::QuotaExhausted, 429, None),
        (R::Unavailable, 503, Some(1)),
    ]
    .into_iter()
    .map(|(e, status, retry)| {
        let code = e.code();
        (e, (status, code, None, retry))
    })
    .collect();
    rows.iter().for_each(|(e, _)| listed(e));
    check_rows(rows, |e| ErrorResponse::from(e)).await;
}

#[tokio::test]
async fn every_binding_error_has_its_row() {
    use BindingError as B;
    fn listed(e: &BindingError) {
        match e {
            B::ProofMissing
            | B::ProofMalformed
            | B::KeyMismatch
            | B::BadSignature
            | B::MethodMismatch
            | B::UriMismatch
            | B::TokenMismatch
            | B::ProofStale
            | B::ProofFuture
            | B::ProofReplayed
            | B::CertificateMissing
            | B::CertificateMismatch
            | B::CapacityExhausted
            | B::QuotaExhausted
            | B::ReplayUnavailable
            | B::InvalidClientKey
            | B::CertificateRequired => {}
        }
    }
    let rows: Vec<(B, Row)> = [
        (B::ProofMissing, 401, INVALID),
        (B::ProofMalformed, 401, INVALID),
        (B::KeyMismatch, 401, INVALID),
        (B::BadSignature, 401, INVALID),
        (B::MethodMismatch, 401, INVALID),
        (B::UriMismatch, 401, INVALID),
        (B::TokenMismatch, 401, INVALID),
        (B::ProofStale, 401, INVALID),
        (B::ProofFuture, 401, INVALID),
        (B::ProofReplayed, 401, INVALID),
        (B::CertificateMissing, 401, INVALID),
        (B::CertificateMismatch, 401, INVALID),
        (B::CapacityExhausted, 503, None),
        (B::QuotaExhausted, 429, None),
        (B::InvalidClientKey, 400, None),
        (B::CertificateRequired, 400, None),
    ]
    .into_iter()
    .map(|(e, status, challenge)| {
        let code = e.code();
        (e, (status, code, challenge, None))
    })
    .chain([(
        B::ReplayUnavailable,
        (503, "replay_unavailable", None, Some(1)),
    )])
    .collect();
    rows.iter().for_each(|(e, _)| listed(e));
    check_rows(rows, |e| ErrorResponse::from(e)).await;
}

#[tokio::test]
async fn every_session_error_has_its_row() {
    use SessionError as E;
    fn listed(e: &SessionError) {
        match e {
            E::InvalidToken(_)
            | E::TokenRevoked
            | E::RefreshDisabled
            | E::RefreshReused
            | E::SessionExpired
            | E::PairingDisabled
            | E::PairingInvalid
            | E::PairingUsed
            | E::PairingLocked { .. }
            | E::RateLimited { .. }
            | E::InvalidCredentials
            | E::BindingRequired
            | E::Binding(_)
            | E::Forbidden
            | E::NotFound
            | E::InvalidRequest(_)
            | E::Mint(_)
            | E::RefreshUnavailable
            | E::SessionStoreUnavailable => {}
        }
    }
    let wait = Duration::from_secs(90);
    let rows: Vec<(E, Row)> = vec![
        (
            E::InvalidToken(TokenError::Expired),
            (401, "invalid_token", INVALID, None),
        ),
        (E::TokenRevoked, (401, "invalid_token", INVALID, None)),
        (E::RefreshReused, (401, "invalid_token", INVALID, None)),
        (E::SessionExpired, (401, "session_expired", INVALID, None)),
        (
            E::InvalidCredentials,
            (401, "invalid_credentials", None, None),
        ),
        (E::PairingInvalid, (401, "pairing_invalid", None, None)),
        (E::PairingUsed, (409, "pairing_used", None, None)),
        (E::PairingDisabled, (403, "pairing_disabled", None, None)),
        (
            E::PairingLocked { retry_after: wait },
            (429, "pairing_locked", None, Some(90)),
        ),
        // A zero wait is rendered as `Retry-After: 1` (checked by assert_renders).
        (
            E::RateLimited {
                retry_after: Duration::ZERO,
            },
            (429, "rate_limited", None, Some(0)),
        ),
        (E::RefreshDisabled, (400, "refresh_disabled", None, None)),
        (E::BindingRequired, (400, "binding_required", None, None)),
        (
            E::Binding(BindingError::ProofMissing),
            (401, "proof_missing", INVALID, None),
        ),
        (E::Forbidden, (403, "insufficient_scope", SCOPE, None)),
        (E::NotFound, (404, "session_not_found", None, None)),
        (E::InvalidRequest("x"), (400, "invalid_request", None, None)),
        (
            E::SessionStoreUnavailable,
            (503, "session_store_unavailable", None, Some(1)),
        ),
        (
            E::Mint(TokenError::NoSigningKey),
            (500, "internal_error", None, None),
        ),
        (
            E::RefreshUnavailable,
            (503, "refresh_unavailable", None, Some(1)),
        ),
    ];
    rows.iter().for_each(|(e, _)| listed(e));
    check_rows(rows, |e| ErrorResponse::from(e)).await;
}

#[tokio::test]
async fn every_proxy_error_has_its_row() {
    fn listed(e: &ProxyError) {
        match e {
            ProxyError::UpstreamUnavailable(_)
            | ProxyError::UpstreamTimeout
            | ProxyError::BadUpstreamResponse(_)
            | ProxyError::InvalidRequest
            | ProxyError::PayloadTooLarge(_)
            | ProxyError::RequestBody(_)
            | ProxyError::IdentityNotRepresentable
            | ProxyError::SessionEnded => {}
        }
    }
    let rows = vec![
        (
            ProxyError::UpstreamUnavailable(client_error().await),
            (502, "upstream_unavailable", None, None),
        ),
        (
            ProxyError::UpstreamTimeout,
            (504, "upstream_timeout", None, None),
        ),
        (
            ProxyError::BadUpstreamResponse(None),
            (502, "bad_upstream_response", None, None),
        ),
        (
            ProxyError::InvalidRequest,
            (400, "invalid_request", None, None),
        ),
        (
            ProxyError::PayloadTooLarge(client_error().await),
            (413, "payload_too_large", None, None),
        ),
        (
            ProxyError::RequestBody(client_error().await),
            (400, "invalid_request", None, None),
        ),
        (
            ProxyError::IdentityNotRepresentable,
            (500, "internal_error", None, None),
        ),
        (
            ProxyError::SessionEnded,
            (401, "invalid_token", INVALID, None),
        ),
    ];
    rows.iter().for_each(|(e, _)| listed(e));
    check_rows(rows, |e| ErrorResponse::from(e)).await;
}

/// A real client error (a refused connection on loopback): the wrapped
/// cause only goes to the log, so any one will do.
async fn client_error() -> hyper_util::client::legacy::Error {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::builder(TokioExecutor::new()).build_http::<axum::body::Body>();
    let uri: http::Uri = format!("http://{dead}/").parse().unwrap();
    client.get(uri).await.unwrap_err()
}

#[tokio::test]
async fn bad_revoked_and_reused_tokens_are_indistinguishable_to_the_client() {
    let mut bodies = Vec::new();
    for e in [
        SessionError::InvalidToken(TokenError::BadSignature),
        SessionError::TokenRevoked,
        SessionError::RefreshReused,
    ] {
        let response = ErrorResponse::from(&e).into_response();
        let body = axum::body::to_bytes(response.into_body(), 4096)
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
fn bare_framework_statuses_are_rewritten_to_json() {
    for (status, code) in [
        (404, "not_found"),
        (405, "method_not_allowed"),
        (408, "request_timeout"),
        (413, "payload_too_large"),
        (500, "internal_error"),
    ] {
        let status = StatusCode::from_u16(status).unwrap();
        let api = ErrorResponse::from(ApiError::for_bare_status(status).unwrap());
        assert_eq!(api.status, status);
        assert_eq!(api.code, code);
    }
    assert!(ApiError::for_bare_status(StatusCode::OK).is_none());
}

//! Credential extraction: exactly one credential, in exactly one place.

use http::{HeaderMap, HeaderValue, Uri, header};

use super::{AuthRejection, WS_BEARER_PROTOCOL, bearer_token, proof_header, request_target};
use crate::gateway::session_manager::binding::{BindingError, PROOF_HEADER};

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn one_bearer_header_yields_its_trimmed_token() {
    let map = headers(&[("authorization", "bEaReR   v4.public.abc  ")]);
    assert_eq!(bearer_token(&map).unwrap(), Some("v4.public.abc"));
    assert_eq!(bearer_token(&HeaderMap::new()).unwrap(), None);
}

#[test]
fn two_authorization_headers_are_malformed_not_first_wins() {
    // Which copy a proxy in front would forward is ambiguous: refuse both.
    let map = headers(&[
        ("authorization", "Bearer v4.public.first"),
        ("authorization", "Bearer v4.public.second"),
    ]);
    assert!(matches!(
        bearer_token(&map),
        Err(AuthRejection::MalformedCredentials)
    ));
}

#[test]
fn other_schemes_and_empty_tokens_are_malformed() {
    for value in [
        "Basic YWxpY2U6cHc=",
        "Bearer",
        "Bearer    ",
        "v4.public.abc",
    ] {
        let mut map = HeaderMap::new();
        map.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        assert!(
            matches!(bearer_token(&map), Err(AuthRejection::MalformedCredentials)),
            "{value:?} must be refused"
        );
    }
    let mut map = HeaderMap::new();
    map.insert(
        header::AUTHORIZATION,
        HeaderValue::from_bytes(b"Bearer v4.\xff").unwrap(),
    );
    assert!(matches!(
        bearer_token(&map),
        Err(AuthRejection::MalformedCredentials)
    ));
}

#[test]
fn subprotocol_token_counts_only_on_a_websocket_upgrade() {
    let offer = "clawgate.bearer, v4.public.ws-token";
    let ws = headers(&[("upgrade", "websocket"), ("sec-websocket-protocol", offer)]);
    assert_eq!(bearer_token(&ws).unwrap(), Some("v4.public.ws-token"));
    let other = headers(&[("upgrade", "h2c"), ("sec-websocket-protocol", offer)]);
    assert_eq!(bearer_token(&other).unwrap(), None);
    let no_upgrade = headers(&[("sec-websocket-protocol", offer)]);
    assert_eq!(bearer_token(&no_upgrade).unwrap(), None);
}

#[test]
fn subprotocol_marker_without_a_following_token_is_no_credential() {
    let ws = headers(&[
        ("upgrade", "WebSocket"),
        ("sec-websocket-protocol", "chat, clawgate.bearer"),
    ]);
    assert_eq!(bearer_token(&ws).unwrap(), None);
    let unmarked = headers(&[
        ("upgrade", "websocket"),
        ("sec-websocket-protocol", "chat, v4.public.abc"),
    ]);
    assert_eq!(
        bearer_token(&unmarked).unwrap(),
        None,
        "{WS_BEARER_PROTOCOL} must come first"
    );
}

#[test]
fn authorization_header_wins_over_a_subprotocol_offer() {
    let map = headers(&[
        ("authorization", "Bearer v4.public.header"),
        ("upgrade", "websocket"),
        ("sec-websocket-protocol", "clawgate.bearer, v4.public.offer"),
    ]);
    assert_eq!(bearer_token(&map).unwrap(), Some("v4.public.header"));
}

#[test]
fn two_proof_headers_are_malformed() {
    let mut map = HeaderMap::new();
    assert_eq!(proof_header(&map).unwrap(), None);
    map.append(PROOF_HEADER, HeaderValue::from_static("v4.public.one"));
    assert_eq!(proof_header(&map).unwrap(), Some(&b"v4.public.one"[..]));
    map.append(PROOF_HEADER, HeaderValue::from_static("v4.public.two"));
    assert!(matches!(
        proof_header(&map),
        Err(BindingError::ProofMalformed)
    ));
}

#[test]
fn request_target_is_path_and_query_as_received() {
    let cases = [
        ("/api/x?b=2&a=1", "/api/x?b=2&a=1"),
        ("https://localhost/api/x?q", "/api/x?q"),
        ("*", "*"),
    ];
    for (raw, target) in cases {
        let uri: Uri = raw.parse().unwrap();
        assert_eq!(request_target(&uri), target, "{raw}");
    }
    let authority_only: Uri = "localhost:443".parse().unwrap();
    assert_eq!(request_target(&authority_only), "/");
}

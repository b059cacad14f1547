//! The request-header entry points of the fuzz targets (see
//! [`crate::fuzzing`]): bearer and WebSocket-subprotocol token extraction,
//! the `Clawgate-Proof` header, and the proxy's request-header rewrite.
//! They live here because they need the `http` types, which stay inside
//! `gateway/http` (STYLE 2); `crate::fuzzing` only passes bytes through.
//!
//! Header-block inputs are lines `name: value` separated by `\n`; a line
//! whose name or value hyper would refuse is skipped, since such a field
//! never reaches the gateway.
//!
//! Not part of the API.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

use super::auth::{WS_BEARER_PROTOCOL, bearer_token, proof_header};
use super::proxy::ForwardIdentity;
use super::proxy::headers::{
    RequestRewrite, is_gateway_owned, is_websocket_request, rewrite_request,
};
use crate::config::ReplayConfig;
use crate::gateway::replay_protection::ReplayGuard;
use crate::gateway::session_manager::binding::{BindingError, ClientKey, Presented, ProofChecker};
use crate::gateway::session_token::Confirmation;

/// The client's TCP peer in the rewrite target (TEST-NET-1).
pub(crate) const FUZZ_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
/// The upstream authority the rewrite target sends as `Host`.
pub(crate) const FUZZ_UPSTREAM_HOST: &str = "127.0.0.1:3000";
/// Method, target and token a fuzzed proof must have been made for.
pub(crate) const FUZZ_PROOF_METHOD: &str = "POST";
/// See [`FUZZ_PROOF_METHOD`].
pub(crate) const FUZZ_PROOF_URI: &str = "/v1/items?limit=5";
/// See [`FUZZ_PROOF_METHOD`]; any string: only its hash is in the proof.
pub(crate) const FUZZ_PROOF_TOKEN: &str = "v4.public.fuzz-session-token";

/// Parses a header block (see the module docs) as hyper would hand it over.
pub(crate) fn header_block(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    headers
}

/// Header block → `auth::bearer_token`, then the proxy's rewrite of the same
/// headers. Returns whether a token was found.
///
/// # Panics
///
/// When an invariant breaks: an extracted token is non-empty, trimmed and
/// taken from an `Authorization` or `Sec-WebSocket-Protocol` value; only a
/// present `Authorization` can make extraction fail; and after the rewrite
/// no `Authorization`, no bearer marker and no `v4.public.` entry goes
/// upstream, and a token taken from the subprotocol offer goes upstream
/// fewer times than it was offered.
pub(crate) fn bearer(data: &[u8]) -> bool {
    let headers = header_block(data);
    let extracted = bearer_token(&headers).map(|t| t.map(str::to_owned));
    let authorization = headers.contains_key(header::AUTHORIZATION);
    let token = match extracted {
        Ok(token) => token,
        Err(_) => {
            assert!(
                authorization,
                "refused credentials without an Authorization header"
            );
            None
        }
    };
    if let Some(token) = &token {
        assert!(
            !token.is_empty() && token.trim() == token,
            "untrimmed token {token:?}"
        );
        let source = if authorization {
            header::AUTHORIZATION
        } else {
            header::SEC_WEBSOCKET_PROTOCOL
        };
        let found = headers
            .get_all(&source)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains(token.as_str())));
        assert!(found, "token not taken from {source}");
    }
    let mut forwarded = headers.clone();
    let rewrite = rewrite(&forwarded, None, false, false, false);
    assert!(
        rewrite_request(&mut forwarded, rewrite).is_ok(),
        "rewrite failed"
    );
    assert!(
        !forwarded.contains_key(header::AUTHORIZATION),
        "Authorization forwarded"
    );
    let entries = |map: &HeaderMap| -> Vec<String> {
        map.get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect()
    };
    let sent = entries(&forwarded);
    for entry in &sent {
        assert!(
            !entry.eq_ignore_ascii_case(WS_BEARER_PROTOCOL) && !entry.starts_with("v4.public."),
            "bearer subprotocol entry forwarded"
        );
    }
    let found = token.is_some();
    // The offered copy that served as the credential is always removed.
    if let Some(token) = token.filter(|_| !authorization) {
        let count = |list: &[String]| list.iter().filter(|e| **e == token).count();
        assert!(
            count(&sent) < count(&entries(&headers)),
            "subprotocol token forwarded"
        );
    }
    found
}

/// Flag byte + header block → the proxy's request-header rewrite, with the
/// invariant asserted inside: after the rewrite, no field the gateway owns
/// or trusts (`x-clawgate-*`, `x-forwarded-*`, `x-real-ip`, `forwarded`,
/// read with `_` as `-` in any case) reaches the upstream unless the
/// gateway set it itself (or, for `x-forwarded-*`, `forwarded` and
/// `x-real-ip` under their exact names, a trusted proxy sent it).
///
/// Flag bits: 1 trusted peer, 2 authenticated (identity headers set),
/// 4 `danger_forward_authorization`, 8 WebSocket upgrade,
/// 16 `allow_underscores_in_headers`.
///
/// # Panics
///
/// When that invariant, or one of these, breaks: `Host` is the upstream's
/// alone; no hop-by-hop field, `Expect` or (by default) `Authorization`
/// remains; with underscores not allowed no name holds `_`.
pub(crate) fn request_headers(data: &[u8]) -> bool {
    let Some((&flags, block)) = data.split_first() else {
        return false;
    };
    let flag = |bit: u8| flags & bit != 0;
    let mut headers = header_block(block);
    let identity = fuzz_identity();
    let identity = flag(2).then_some(&identity);
    let rw = rewrite(&headers, identity, flag(1), flag(4), flag(16));
    let rw = RequestRewrite {
        websocket: flag(8),
        ..rw
    };
    let (trusted, client_host, websocket) = (rw.trusted_peer, rw.client_host.clone(), rw.websocket);
    let (forward_authorization, allow_underscores) =
        (rw.forward_authorization, rw.allow_underscores);
    assert!(rewrite_request(&mut headers, rw).is_ok(), "rewrite failed");
    for name in headers.keys() {
        let name = name.as_str();
        assert!(allow_underscores || !name.contains('_'), "{name} forwarded");
        if is_gateway_owned(name) {
            assert!(!name.contains('_'), "look-alike {name} forwarded");
            check_owned(&headers, name, identity, trusted, client_host.as_ref());
        }
    }
    let host: Vec<&[u8]> = headers
        .get_all(header::HOST)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    assert_eq!(
        host,
        [FUZZ_UPSTREAM_HOST.as_bytes()],
        "Host is not the upstream's"
    );
    for hop in [
        "te",
        "trailer",
        "transfer-encoding",
        "keep-alive",
        "proxy-connection",
    ] {
        assert!(!headers.contains_key(hop), "{hop} forwarded");
    }
    for hop in ["expect", "proxy-authorization", "proxy-authenticate"] {
        assert!(!headers.contains_key(hop), "{hop} forwarded");
    }
    if !websocket {
        assert!(!headers.contains_key(header::UPGRADE), "Upgrade forwarded");
        assert!(
            !headers.contains_key(header::CONNECTION),
            "Connection forwarded"
        );
    }
    assert!(
        forward_authorization || !headers.contains_key(header::AUTHORIZATION),
        "Authorization forwarded"
    );
    !headers.is_empty()
}

/// `Clawgate-Proof` header value → `auth::proof_header` →
/// `ProofChecker::check_at` for a session bound to the fuzz client key, on
/// one checker (and nonce cache) shared by all inputs, at the fuzz clock.
/// `None` when the bytes cannot be a header value.
///
/// # Panics
///
/// When an invariant breaks: an accepted proof is reported as verified and
/// is refused as a replay when presented again.
pub(crate) fn proof(data: &[u8]) -> Option<Result<(), BindingError>> {
    let value = HeaderValue::from_bytes(data).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(
        crate::gateway::session_manager::binding::PROOF_HEADER,
        value,
    );
    let (checker, kpid) = fuzz_proof_checker();
    let cnf = Confirmation {
        kpid: Some(kpid.clone()),
        x5t_s256: None,
    };
    let check = |proof: Option<&[u8]>| {
        let presented = Presented {
            method: FUZZ_PROOF_METHOD,
            uri: FUZZ_PROOF_URI,
            token: FUZZ_PROOF_TOKEN,
            proof,
            client_cert_sha256: None,
        };
        let now = crate::fuzzing::FUZZ_NOW_UNIX;
        checker.check_at(Some(&cnf), crate::fuzzing::FUZZ_SESSION, &presented, now)
    };
    let outcome = proof_header(&headers).and_then(check);
    if let Ok(confirmed) = &outcome {
        assert!(
            confirmed.proof_verified,
            "key-bound session passed without a proof"
        );
        let again = proof_header(&headers).and_then(check);
        assert_eq!(
            again.map(|_| ()),
            Err(BindingError::ProofReplayed),
            "proof replay accepted"
        );
    }
    Some(outcome.map(|_| ()))
}

/// The key fuzzed proofs are signed with: the public throwaway
/// [`crate::fuzzing::FUZZ_SECRET_KEY`] (seed proofs in `fuzz/corpus/proof_header`).
///
/// # Panics
///
/// Never for the published constant (a test pins it).
pub(crate) fn fuzz_client_key() -> ClientKey {
    ClientKey::from_paserk(crate::fuzzing::FUZZ_SECRET_KEY)
        .unwrap_or_else(|e| panic!("fuzz client key: {e}"))
}

fn fuzz_proof_checker() -> &'static (ProofChecker, String) {
    static CHECKER: OnceLock<(ProofChecker, String)> = OnceLock::new();
    CHECKER.get_or_init(|| {
        let config = ReplayConfig {
            max_nonces: FUZZ_MAX_PROOF_NONCES,
            ..ReplayConfig::default()
        };
        let leeway = crate::fuzzing::fuzz_policy().leeway;
        let guard = Arc::new(ReplayGuard::new(&config, leeway));
        (
            ProofChecker::new(guard),
            fuzz_client_key().kpid().to_owned(),
        )
    })
}

fn fuzz_identity() -> ForwardIdentity {
    ForwardIdentity {
        subject: "fuzz-subject".to_owned(),
        session_id: crate::fuzzing::FUZZ_SESSION.to_owned(),
        scopes: vec!["read".to_owned(), "admin".to_owned()],
        client_cert_fingerprint: Some("ab".repeat(32)),
    }
}

/// The rewrite parameters for `headers`, as `Proxy::upstream_request`
/// builds them (the client's `Host` as the forwarded host).
fn rewrite<'a>(
    headers: &HeaderMap,
    identity: Option<&'a ForwardIdentity>,
    trusted_peer: bool,
    forward_authorization: bool,
    allow_underscores: bool,
) -> RequestRewrite<'a> {
    RequestRewrite {
        peer: FUZZ_PEER,
        trusted_peer,
        client_host: headers.get(header::HOST).cloned(),
        identity,
        forward_authorization,
        websocket: is_websocket_request(&Method::GET, Version::HTTP_11, headers),
        upstream_host: HeaderValue::from_static(FUZZ_UPSTREAM_HOST),
        allow_underscores,
    }
}

/// A gateway-owned field after the rewrite: set by the gateway (one value,
/// the one it sets) or, for the forwarding fields, passed on from a
/// trusted proxy under the exact name.
fn check_owned(
    headers: &HeaderMap,
    name: &str,
    identity: Option<&ForwardIdentity>,
    trusted: bool,
    client_host: Option<&HeaderValue>,
) {
    let values: Vec<&[u8]> = headers
        .get_all(name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let expected: Option<Vec<u8>> = match name {
        "x-clawgate-subject" => identity.map(|i| i.subject.clone().into_bytes()),
        "x-clawgate-session" => identity.map(|i| i.session_id.clone().into_bytes()),
        "x-clawgate-scopes" => identity.map(|i| i.scopes.join(" ").into_bytes()),
        "x-clawgate-client-cert-sha256" => identity
            .and_then(|i| i.client_cert_fingerprint.clone())
            .map(String::into_bytes),
        _ if name.starts_with("x-clawgate-") => None,
        // A trusted proxy's forwarding fields pass (the chain is extended).
        _ if trusted => {
            if name == "x-forwarded-for" {
                let chain = values
                    .last()
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                let last = chain.as_deref().and_then(|c| c.rsplit(", ").next());
                assert_eq!(
                    last,
                    Some(FUZZ_PEER.to_string().as_str()),
                    "peer missing from chain"
                );
            }
            return;
        }
        "x-forwarded-for" => Some(FUZZ_PEER.to_string().into_bytes()),
        "x-forwarded-proto" => Some(b"https".to_vec()),
        "x-forwarded-host" => client_host.map(|h| h.as_bytes().to_vec()),
        _ => None,
    };
    let Some(expected) = expected else {
        panic!("{name} reached the upstream but the gateway did not set it");
    };
    assert_eq!(
        values,
        [expected.as_slice()],
        "{name} is not the gateway's value"
    );
}

/// Nonce capacity of the proof checker's guard: like the replay target's,
/// 65,536 entries, tens of MB, far inside libFuzzer's RSS limit.
const FUZZ_MAX_PROOF_NONCES: u64 = 65_536;

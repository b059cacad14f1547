//! Header rewriting in both directions: hop-by-hop removal (RFC 9110
//! §7.6.1), forwarding headers, identity headers, and the WebSocket bearer
//! subprotocol.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

use super::{ForwardIdentity, ProxyError};

/// What the request rewrite needs to know besides the headers.
pub(in crate::gateway::http) struct RequestRewrite<'a> {
    /// The client's TCP peer.
    pub(in crate::gateway::http) peer: IpAddr,
    /// Whether `peer` is a configured trusted proxy.
    pub(in crate::gateway::http) trusted_peer: bool,
    /// The request's `Host` or `:authority`.
    pub(in crate::gateway::http) client_host: Option<HeaderValue>,
    /// The verified identity; `None` on public paths.
    pub(in crate::gateway::http) identity: Option<&'a ForwardIdentity>,
    /// `danger_forward_authorization`.
    pub(in crate::gateway::http) forward_authorization: bool,
    /// Whether this is a WebSocket upgrade (its Upgrade/Connection pair is kept).
    pub(in crate::gateway::http) websocket: bool,
    /// The upstream's authority, sent as `Host`.
    pub(in crate::gateway::http) upstream_host: HeaderValue,
    /// `[server] allow_underscores_in_headers`.
    pub(in crate::gateway::http) allow_underscores: bool,
}

/// Rewrites request headers for the upstream. Returns whether the client
/// offered the `clawgate.bearer` subprotocol.
pub(in crate::gateway::http) fn rewrite_request(
    headers: &mut HeaderMap,
    rw: RequestRewrite<'_>,
) -> Result<bool, ProxyError> {
    strip_hop_by_hop(headers);
    headers.remove(header::EXPECT);
    // Order matters: forged identity headers (under any spelling the
    // upstream may read as ours) go before the real ones are set.
    strip_underscore_names(headers, rw.allow_underscores);
    strip_prefixed(headers, "x-clawgate-");
    if !rw.forward_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    // The bearer token may ride in the subprotocol offer: it never goes upstream.
    let offered_bearer = strip_bearer_protocols(headers);
    set_forwarded(headers, rw.peer, rw.trusted_peer, rw.client_host);
    if let Some(identity) = rw.identity {
        set_identity(headers, identity)?;
    }
    if rw.websocket {
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    headers.insert(header::HOST, rw.upstream_host);
    Ok(offered_bearer)
}

/// Rewrites an ordinary response's headers for the client.
pub(super) fn rewrite_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    // The gateway's header layer owns HSTS; a second copy would shadow it (PITFALLS H2).
    headers.remove(header::STRICT_TRANSPORT_SECURITY);
}

/// Rewrites a `101` WebSocket answer for the client.
pub(super) fn rewrite_upgrade_response(headers: &mut HeaderMap, offered_bearer: bool) {
    rewrite_response(headers);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    // Browsers fail a handshake whose offered subprotocols get no answer.
    if offered_bearer && !headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL) {
        let bearer = HeaderValue::from_static(BEARER_PROTOCOL);
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, bearer);
    }
}

/// An HTTP/1.1 `GET` with `Connection: upgrade` and `Upgrade: websocket`.
pub(in crate::gateway::http) fn is_websocket_request(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> bool {
    version == Version::HTTP_11
        && method == Method::GET
        && has_token(headers, &header::CONNECTION, "upgrade")
        && has_token(headers, &header::UPGRADE, "websocket")
}

/// Whether a `101` switches to WebSocket.
pub(super) fn upgrades_to_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, &header::UPGRADE, "websocket")
}

/// RFC 9110 §7.6.1: removes `Connection`, every field it names, and the
/// fixed hop-by-hop fields (plus legacy `Keep-Alive`, `Proxy-Connection`).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = header_tokens(headers, &header::CONNECTION)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Whether a field name, read the way CGI, WSGI and Rack read it (`_` as
/// `-`, any case), is one the gateway sets or trusts from a proxy:
/// `x-clawgate-*`, `x-forwarded-*`, `x-real-ip`, `forwarded`.
pub(in crate::gateway::http) fn is_gateway_owned(name: &str) -> bool {
    let folded = name.to_ascii_lowercase().replace('_', "-");
    folded.starts_with("x-clawgate-")
        || folded.starts_with("x-forwarded-")
        || folded == "x-real-ip"
        || folded == "forwarded"
}

/// Drops client fields whose name holds `_`: all of them by default (as
/// nginx's `underscores_in_headers off`), and, whatever the setting, those
/// an upstream would read as a gateway-owned or trusted field. CGI-style
/// upstreams map `X_Clawgate_Subject` and `X-Clawgate-Subject` to the same
/// `HTTP_X_CLAWGATE_SUBJECT` (the Puma CVE-2024-45614 class), so the
/// gateway's own copy could be shadowed by a client's.
fn strip_underscore_names(headers: &mut HeaderMap, allow_underscores: bool) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .filter(|n| !allow_underscores || is_gateway_owned(n.as_str()))
        .cloned()
        .collect();
    for name in names {
        // The name only, never a value (it may be a credential).
        tracing::debug!(
            event = "header_dropped",
            header = name.as_str(),
            "client header with '_' in its name dropped"
        );
        headers.remove(name);
    }
}

fn strip_prefixed(headers: &mut HeaderMap, prefix: &str) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with(prefix))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    trusted: bool,
    client_host: Option<HeaderValue>,
) {
    // Only a configured proxy may speak for the client's address (PITFALLS P1).
    let prior = if trusted {
        join_values(headers, &X_FORWARDED_FOR)
    } else {
        strip_prefixed(headers, "x-forwarded-");
        headers.remove(header::FORWARDED);
        headers.remove(X_REAL_IP);
        None
    };
    let chain = match prior {
        Some(prior) => format!("{prior}, {peer}"),
        None => peer.to_string(),
    };
    headers.remove(X_FORWARDED_FOR);
    // Cannot fail: both parts are visible ASCII; if it did, the peer alone is still right.
    if let Ok(value) = HeaderValue::from_str(&chain).or_else(|_| peer.to_string().parse()) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    }
    if let Some(host) = client_host.filter(|_| !headers.contains_key(X_FORWARDED_HOST)) {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

fn set_identity(headers: &mut HeaderMap, identity: &ForwardIdentity) -> Result<(), ProxyError> {
    // from_bytes admits UTF-8 (obs-text) but refuses CR, LF and NUL: no header injection.
    let value = |s: &str| {
        HeaderValue::from_bytes(s.as_bytes()).map_err(|_| ProxyError::IdentityNotRepresentable)
    };
    headers.insert(X_CLAWGATE_SUBJECT, value(&identity.subject)?);
    headers.insert(X_CLAWGATE_SESSION, value(&identity.session_id)?);
    headers.insert(X_CLAWGATE_SCOPES, value(&identity.scopes.join(" "))?);
    if let Some(fingerprint) = &identity.client_cert_fingerprint {
        headers.insert(X_CLAWGATE_CLIENT_CERT, value(fingerprint)?);
    }
    Ok(())
}

/// Removes `clawgate.bearer` and the entry after it (the token), and any
/// entry that is itself a token, from `Sec-WebSocket-Protocol`; drops the
/// header when nothing is left. Returns whether `clawgate.bearer` was offered.
fn strip_bearer_protocols(headers: &mut HeaderMap) -> bool {
    if !headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL) {
        return false;
    }
    let entries: Vec<String> = header_tokens(headers, &header::SEC_WEBSOCKET_PROTOCOL)
        .map(str::to_owned)
        .collect();
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    let (mut kept, mut offered, mut skip) = (Vec::new(), false, false);
    for entry in entries {
        if std::mem::take(&mut skip) || entry.starts_with("v4.public.") {
            continue;
        }
        // Stripped in any letter case so the next entry (a token) never leaks;
        // only the exact marker is answered in the 101.
        if entry.eq_ignore_ascii_case(BEARER_PROTOCOL) {
            offered |= entry == BEARER_PROTOCOL;
            skip = true;
            continue;
        }
        kept.push(entry);
    }
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join(", "))
    {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    offered
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The comma-separated, trimmed, non-empty entries of every `name` field.
fn header_tokens<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = &'a str> + use<'a> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn join_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// The subprotocol that marks a bearer token in the WebSocket offer.
const BEARER_PROTOCOL: &str = "clawgate.bearer";
/// RFC 9110 §7.6.1 plus legacy fields; `Connection`-named ones are added per message.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_CLAWGATE_SUBJECT: HeaderName = HeaderName::from_static("x-clawgate-subject");
const X_CLAWGATE_SESSION: HeaderName = HeaderName::from_static("x-clawgate-session");
const X_CLAWGATE_SCOPES: HeaderName = HeaderName::from_static("x-clawgate-scopes");
const X_CLAWGATE_CLIENT_CERT: HeaderName = HeaderName::from_static("x-clawgate-client-cert-sha256");

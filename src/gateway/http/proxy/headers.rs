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
    // Order matters: forged identity headers (under any spelling the
    // upstream may read as ours) go before the real ones are set. Every
    // client field the upstream must not see goes in one pass over the
    // names (hop-by-hop, `Expect`, `_` names, `x-clawgate-*`,
    // `Authorization`, and an untrusted peer's forwarding fields): no
    // lookup per candidate name, no list allocated (issue 12).
    let drop = RequestDrop {
        connection: ConnectionTokens::of(headers),
        allow_underscores: rw.allow_underscores,
        forward_authorization: rw.forward_authorization,
        trusted_peer: rw.trusted_peer,
    };
    remove_where(headers, |name| drop.applies(name));
    // Room for what is added below (forwarding, identity, Host), so the
    // map grows once instead of doubling on the way.
    headers.reserve(ADDED_FIELDS);
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

/// Which client fields [`rewrite_request`] removes.
struct RequestDrop {
    connection: ConnectionTokens,
    allow_underscores: bool,
    forward_authorization: bool,
    trusted_peer: bool,
}

impl RequestDrop {
    fn applies(&self, name: &HeaderName) -> bool {
        let text = name.as_str();
        if self.connection.is_hop_by_hop(name) || name == header::EXPECT {
            return true;
        }
        // Client fields whose name holds `_`: all of them by default (as
        // nginx's `underscores_in_headers off`), and, whatever the
        // setting, those an upstream would read as a gateway-owned or
        // trusted field. CGI-style upstreams map `X_Clawgate_Subject` and
        // `X-Clawgate-Subject` to the same `HTTP_X_CLAWGATE_SUBJECT` (the
        // Puma CVE-2024-45614 class), so the gateway's own copy could be
        // shadowed by a client's.
        if text.contains('_') && (!self.allow_underscores || is_gateway_owned(text)) {
            // The name only, never a value (it may be a credential).
            tracing::debug!(
                event = "header_dropped",
                header = text,
                "client header with '_' in its name dropped"
            );
            return true;
        }
        if text.starts_with("x-clawgate-") {
            return true;
        }
        if name == header::AUTHORIZATION {
            return !self.forward_authorization;
        }
        // Only a configured proxy may speak for the client's address (PITFALLS P1).
        !self.trusted_peer
            && (text.starts_with("x-forwarded-") || name == header::FORWARDED || name == X_REAL_IP)
    }
}

/// Removes every field whose name `drop` selects, in one pass over the
/// names: they are noted on the stack (a message usually has none or one
/// to remove), and only more than fit makes another pass.
fn remove_where(headers: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    loop {
        let mut found: [Option<HeaderName>; 4] = Default::default();
        let mut slots = found.iter_mut();
        let mut more = false;
        for name in headers.keys().filter(|n| drop(n)) {
            match slots.next() {
                Some(slot) => *slot = Some(name.clone()),
                None => {
                    more = true;
                    break;
                }
            }
        }
        for name in found.into_iter().flatten() {
            headers.remove(&name);
        }
        if !more {
            return;
        }
    }
}

/// Rewrites an ordinary response's headers for the client.
pub(super) fn rewrite_response(headers: &mut HeaderMap) {
    // The gateway's header layer owns HSTS; a second copy would shadow it (PITFALLS H2).
    let connection = ConnectionTokens::of(headers);
    remove_where(headers, |name| {
        connection.is_hop_by_hop(name) || name == header::STRICT_TRANSPORT_SECURITY
    });
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

/// The field names a message's `Connection` fields list, read before any
/// field is removed (removing `Connection` itself must not forget what it
/// named), parsed once so each field of the message is checked with a
/// name comparison. A token that is not a valid field name can name no
/// field and is left out. Only a second token allocates.
struct ConnectionTokens {
    first: Option<HeaderName>,
    rest: Vec<HeaderName>,
}

impl ConnectionTokens {
    fn of(headers: &HeaderMap) -> Self {
        let mut names = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // Dropped anyway: not kept, so the usual `keep-alive` costs no
            // allocation.
            .filter(|t| !FIXED_HOP_BY_HOP.iter().any(|f| f.eq_ignore_ascii_case(t)))
            // `HeaderName` lower-cases: the comparison is case-insensitive.
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok());
        Self {
            first: names.next(),
            rest: names.collect(),
        }
    }

    /// RFC 9110 §7.6.1: `Connection`, every field it names, and the fixed
    /// hop-by-hop fields (plus legacy `Keep-Alive`, `Proxy-Connection`).
    fn is_hop_by_hop(&self, name: &HeaderName) -> bool {
        is_fixed_hop_by_hop(name.as_str())
            || self.first.as_ref() == Some(name)
            || self.rest.contains(name)
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

/// `X-Forwarded-For`, `-Proto` and `-Host`. An untrusted peer's
/// forwarding fields are already gone ([`RequestDrop`]); a trusted peer's
/// `X-Forwarded-For` gets this peer appended.
fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    trusted: bool,
    client_host: Option<HeaderValue>,
) {
    let chain = if trusted {
        join_values(headers, &X_FORWARDED_FOR)
            .and_then(|prior| HeaderValue::from_str(&format!("{prior}, {peer}")).ok())
    } else {
        None
    };
    // Cannot fail: both parts are visible ASCII; if it did, the peer alone is still right.
    if let Some(value) = chain.or_else(|| peer_value(peer)) {
        // Replaces every earlier value.
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !trusted || !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    }
    if let Some(host) = client_host.filter(|_| !trusted || !headers.contains_key(X_FORWARDED_HOST))
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// The peer address as a header value, formatted on the stack (one
/// allocation: the value's own bytes).
fn peer_value(peer: IpAddr) -> Option<HeaderValue> {
    use std::io::Write as _;
    // The longest IPv6 text is 45 bytes.
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{peer}").ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(buf.get(..len)?).ok()
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
/// Whether a (lower-case) field name is always hop-by-hop;
/// `Connection`-named ones are added per message (`ConnectionTokens`).
fn is_fixed_hop_by_hop(name: &str) -> bool {
    FIXED_HOP_BY_HOP.contains(&name)
}

/// RFC 9110 §7.6.1's hop-by-hop fields, plus legacy `Keep-Alive` and
/// `Proxy-Connection`, and the proxy authentication pair: compared by
/// string, no hashing.
const FIXED_HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Fields [`rewrite_request`] may add: three `X-Forwarded-*`, four
/// identity fields, `Host`, and a WebSocket's `Upgrade` and `Connection`.
const ADDED_FIELDS: usize = 10;
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_CLAWGATE_SUBJECT: HeaderName = HeaderName::from_static("x-clawgate-subject");
const X_CLAWGATE_SESSION: HeaderName = HeaderName::from_static("x-clawgate-session");
const X_CLAWGATE_SCOPES: HeaderName = HeaderName::from_static("x-clawgate-scopes");
const X_CLAWGATE_CLIENT_CERT: HeaderName = HeaderName::from_static("x-clawgate-client-cert-sha256");

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
mod tests {
    use super::*;

    fn response(fields: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    /// Every field a `Connection` field names goes, in any letter case,
    /// across several `Connection` fields and odd spacing; `close` names
    /// the (reserved) `Close` field too; other fields stay.
    #[test]
    fn fields_named_by_connection_go_in_any_case_and_spacing() {
        let mut headers = response(&[
            ("connection", " X-Private ,keep-alive,,CLOSE"),
            ("connection", "x-other\t"),
            ("x-private", "1"),
            ("x-other", "2"),
            ("close", "3"),
            ("keep-alive", "timeout=5"),
            ("strict-transport-security", "max-age=1"),
            ("x-public", "4"),
            ("content-type", "text/plain"),
        ]);
        rewrite_response(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-public"]);
    }

    #[test]
    fn a_connection_value_that_is_not_text_names_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-private, \xff").unwrap(),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        rewrite_response(&mut headers);
        // As before: an unreadable `Connection` value is ignored whole.
        assert!(headers.contains_key("x-private"));
        assert!(!headers.contains_key(header::CONNECTION));
    }
}

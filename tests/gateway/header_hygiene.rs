//! Issue 11, items 1, 7 and 8, against the real server over TLS with the
//! loopback echo upstream (which answers with the headers it received):
//! look-alike identity headers, Host and target rules, and multiply
//! encoded dot segments on public paths. Raw TLS streams and the `h2`
//! crate send what hyper's client would normalise away.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use crate::common;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{TestClient, TestGateway, authed, gateway_with_upstream, send_on};

const H2: &[&[u8]] = &[b"h2"];
const H1: &[&[u8]] = &[b"http/1.1"];

/// Look-alikes of the gateway's own and trusted headers, as an attacker
/// sends them to a CGI/WSGI/Rack upstream.
const LOOKALIKES: [(&str, &str); 7] = [
    ("x_clawgate_subject", "owner"),
    ("x_clawgate_scopes", "admin"),
    ("x-clawgate_subject", "owner"),
    ("x_clawgate-session", "forged"),
    ("x_forwarded_for", "203.0.113.66"),
    ("x_forwarded_host", "evil.example"),
    ("x_real_ip", "203.0.113.66"),
];

async fn public_gateway(
    tweak: impl FnOnce(&mut clawgate::Config),
) -> (TestGateway, common::upstream::Upstream) {
    let (gw, upstream, _) = gateway_with_upstream(|c, _| {
        c.upstream.public_paths = vec!["/public/*".into()];
        tweak(c);
    })
    .await;
    (gw, upstream)
}

/// Sends `req` over a fresh connection offering only `alpn`; returns the
/// status and the JSON body.
async fn send(gw: &TestGateway, alpn: &[&[u8]], req: Request<Full<Bytes>>) -> (u16, Value) {
    let client = TestClient::with_alpn(&gw.ca_path(), alpn);
    let tls = client.connect(gw.addr()).await.unwrap();
    let response = send_on(tls, req).await;
    (response.status, response.json())
}

fn with_headers(mut req: Request<Full<Bytes>>, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    for (name, value) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    req
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::new(Bytes::new())).unwrap()
}

/// The names the echo upstream received.
fn received_names(echo: &Value) -> Vec<String> {
    echo["headers"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn received(echo: &Value, name: &str) -> Option<Vec<String>> {
    echo["headers"][name].as_array().map(|values| {
        values
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    })
}

/// Whether the upstream would read `name` as a gateway-owned header.
fn reads_as_owned(name: &str) -> bool {
    let folded = name.to_ascii_lowercase().replace('_', "-");
    folded.starts_with("x-clawgate-")
        || folded.starts_with("x-forwarded-")
        || folded == "x-real-ip"
        || folded == "forwarded"
}

#[tokio::test]
async fn underscore_lookalikes_of_identity_headers_never_reach_the_upstream() {
    let (gw, _) = public_gateway(|_| {}).await;
    let token = gw.token("carol", &[]);
    for alpn in [H1, H2] {
        let public = with_headers(get("/public/whoami"), &LOOKALIKES);
        let private = with_headers(authed("GET", "/api/whoami", &token, ""), &LOOKALIKES);
        for (req, identity) in [(public, None), (private, Some("carol"))] {
            let (status, echo) = send(&gw, alpn, req).await;
            assert_eq!(status, 200, "{echo}");
            for name in received_names(&echo) {
                assert!(
                    !(reads_as_owned(&name) && name.contains('_')),
                    "look-alike {name} reached the upstream: {echo}"
                );
            }
            let subject = received(&echo, "x-clawgate-subject");
            assert_eq!(subject, identity.map(|s| vec![s.to_owned()]), "{echo}");
            assert_eq!(
                received(&echo, "x-forwarded-for"),
                Some(vec!["127.0.0.1".to_owned()]),
                "{echo}"
            );
        }
    }
}

#[tokio::test]
async fn underscore_headers_are_dropped_by_default_and_forwarded_only_when_allowed() {
    let headers = [("x_custom", "1"), ("x-custom", "2")];
    let (gw, _) = public_gateway(|_| {}).await;
    for alpn in [H1, H2] {
        let (_, echo) = send(&gw, alpn, with_headers(get("/public/a"), &headers)).await;
        assert_eq!(received(&echo, "x_custom"), None, "{echo}");
        assert_eq!(received(&echo, "x-custom"), Some(vec!["2".to_owned()]));
    }

    let (gw, _) = public_gateway(|c| c.server.allow_underscores_in_headers = true).await;
    let all: Vec<_> = headers.iter().chain(LOOKALIKES.iter()).copied().collect();
    for alpn in [H1, H2] {
        let (_, echo) = send(&gw, alpn, with_headers(get("/public/a"), &all)).await;
        assert_eq!(received(&echo, "x_custom"), Some(vec!["1".to_owned()]));
        for name in received_names(&echo) {
            assert!(
                !(reads_as_owned(&name) && name.contains('_')),
                "look-alike {name} reached the upstream with underscores allowed: {echo}"
            );
        }
    }
}

/// Writes `request` on a raw HTTP/1.1 TLS connection and reads until the
/// server closes it; returns the status and the body.
async fn raw_h1(gw: &TestGateway, request: &str) -> (u16, String) {
    let client = TestClient::with_alpn(&gw.ca_path(), H1);
    let mut tls = client.connect(gw.addr()).await.unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // A close without close_notify is an error here, after the bytes arrived.
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn http11_without_host_or_with_two_hosts_is_400_and_not_forwarded() {
    let (gw, _) = public_gateway(|_| {}).await;
    let cases = [
        "GET /public/a HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nHost: user@evil.example\r\nConnection: close\r\n\r\n",
    ];
    for request in cases {
        let (status, body) = raw_h1(&gw, request).await;
        assert_eq!(status, 400, "{request:?} → {body}");
        assert!(body.contains("\"invalid_request\""), "{request:?} → {body}");
    }
    // The same request with one Host is forwarded.
    let ok = "GET /public/a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (status, body) = raw_h1(&gw, ok).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn absolute_form_target_sets_forwarded_host_from_its_authority() {
    let (gw, _) = public_gateway(|_| {}).await;
    let request = "GET https://target.example/public/a HTTP/1.1\r\n\
                   Host: host.example\r\nConnection: close\r\n\r\n";
    let (status, body) = raw_h1(&gw, request).await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        received(&echo, "x-forwarded-host"),
        Some(vec!["target.example".to_owned()]),
        "{echo}"
    );
}

/// Sends `req` with the `h2` crate (no normalisation of Host or `:path`).
async fn raw_h2(gw: &TestGateway, req: Request<()>) -> (u16, Vec<u8>) {
    let client = TestClient::with_alpn(&gw.ca_path(), H2);
    let tls = client.connect(gw.addr()).await.unwrap();
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.unwrap();
    let (response, _) = send.send_request(req, true).unwrap();
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, bytes)
}

fn h2_get(uri: &str, host: Option<&str>) -> Request<()> {
    let mut req = Request::get(uri);
    if let Some(host) = host {
        req = req.header("host", host);
    }
    req.body(()).unwrap()
}

#[tokio::test]
async fn http2_host_that_disagrees_with_authority_is_400() {
    let (gw, _) = public_gateway(|_| {}).await;
    let uri = "https://localhost/public/a";
    let (status, body) = raw_h2(&gw, h2_get(uri, Some("evil.example"))).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    // Agreeing (in any case) or absent is fine; :authority is forwarded.
    for host in [Some("LocalHost"), None] {
        let (status, body) = raw_h2(&gw, h2_get(uri, host)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let echo: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            received(&echo, "x-forwarded-host"),
            Some(vec!["localhost".to_owned()])
        );
    }
}

#[tokio::test]
async fn http2_raw_non_ascii_path_is_400_and_never_forwarded() {
    let (gw, _) = public_gateway(|_| {}).await;
    for uri in [
        "https://localhost/public/caf\u{e9}",
        "https://localhost/public/a?q=\u{e9}",
    ] {
        let (status, body) = raw_h2(&gw, h2_get(uri, None)).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{uri} → {body}");
        assert!(body.contains("\"invalid_request\""), "{uri} → {body}");
    }
    // Percent-encoded, the same path is forwarded.
    let (status, _) = raw_h2(&gw, h2_get("https://localhost/public/caf%C3%A9", None)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn double_encoded_dot_segments_on_a_public_path_need_a_token() {
    let (gw, _) = public_gateway(|_| {}).await;
    for alpn in [H1, H2] {
        for path in [
            "/public/%252e%252e/api/secret",
            "/public/%252E%252E/api/secret",
            "/public/..%252fapi/secret",
            "/public/%25252e%25252e/api/secret",
        ] {
            let (status, body) = send(&gw, alpn, get(path)).await;
            assert_eq!(status, 401, "{path} was forwarded without a token: {body}");
            assert_eq!(body["error"], "missing_token", "{path}: {body}");
        }
    }
    let token = gw.token("dave", &[]);
    let path = "/public/%252e%252e/api/secret";
    let (status, echo) = send(&gw, H1, authed("GET", path, &token, "")).await;
    assert_eq!(
        status, 200,
        "with a token the path is forwarded as sent: {echo}"
    );
    assert_eq!(echo["uri"], path);
}

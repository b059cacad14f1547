//! The forwarding engine against real upstreams on 127.0.0.1.
//!
//! A plain-HTTP axum front calls `Proxy::forward` with a fixed identity and a
//! session end the test controls; upstreams are small axum apps (echo,
//! download, SSE, WebSocket echo, slow). The HTTPS server repeats the key
//! cases end to end.

// Tests unwrap freely: a panic is the failure report (HELPER_RULES: no unwrap outside tests).
#![allow(clippy::unwrap_used)]

use crate::common;

use common::logs::Logs;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use clawgate::config::{
    ConfigError, InvalidUpstreamUrl, ServerConfig, UpstreamConfig, UpstreamUrl,
};
use clawgate::gateway::http::auth::PublicPaths;
use clawgate::gateway::http::error::ErrorResponse;
use clawgate::gateway::http::proxy::{ForwardIdentity, Proxy, ProxyContext, ProxyError};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ring::digest::{Context as Sha, SHA256};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use common::upstream::{Upstream, hex, pattern, serve, spawn_upstream};

const TEN_MB: usize = 10 * 1024 * 1024;
/// Bound for "the stream ends promptly"; the work itself takes milliseconds.
const PROMPTLY: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------- front

struct Front {
    addr: SocketAddr,
    end_session: watch::Sender<bool>,
}

#[derive(Clone)]
struct FrontState {
    proxy: Proxy,
    identity: Option<ForwardIdentity>,
    session: watch::Receiver<bool>,
}

fn identity() -> ForwardIdentity {
    ForwardIdentity {
        subject: "alice".to_owned(),
        session_id: "sess-123".to_owned(),
        scopes: vec!["read".to_owned(), "admin".to_owned()],
        client_cert_fingerprint: Some("ab".repeat(32)),
    }
}

fn config(upstream: SocketAddr) -> UpstreamConfig {
    UpstreamConfig {
        url: Some(format!("http://{upstream}")),
        response_timeout: Duration::from_millis(300),
        ..UpstreamConfig::default()
    }
}

/// The proxy the gateway builds for `cfg`: the URL parsed by the
/// configuration, then handed to the proxy.
fn build_proxy(cfg: &UpstreamConfig, server: &ServerConfig) -> Proxy {
    let url = cfg.upstream_url().unwrap().unwrap();
    Proxy::new(&url, cfg, server)
}

async fn spawn_front(
    cfg: &UpstreamConfig,
    trusted: &[IpAddr],
    id: Option<ForwardIdentity>,
) -> Front {
    spawn_front_with(cfg, trusted, id, |app| app).await
}

async fn spawn_front_with(
    cfg: &UpstreamConfig,
    trusted: &[IpAddr],
    id: Option<ForwardIdentity>,
    wrap: impl FnOnce(Router) -> Router,
) -> Front {
    let server = ServerConfig {
        trusted_proxies: trusted.to_vec(),
        ..ServerConfig::default()
    };
    let proxy = build_proxy(cfg, &server);
    let (end_session, session) = watch::channel(false);
    let state = FrontState {
        proxy,
        identity: id,
        session,
    };
    let app = wrap(Router::new().fallback(front).with_state(state));
    Front {
        addr: serve(app).await,
        end_session,
    }
}

async fn front(
    State(state): State<FrontState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let mut session = state.session.clone();
    let session_end = Box::pin(async move {
        if session.wait_for(|ended| *ended).await.is_err() {
            std::future::pending::<()>().await;
        }
    });
    let ctx = ProxyContext {
        peer,
        identity: state.identity.clone(),
        session_end: Some(session_end),
    };
    match state.proxy.forward(req, ctx).await {
        Ok(response) => response,
        Err(err) => error_response(&err),
    }
}

fn error_response(err: &ProxyError) -> Response {
    ErrorResponse::from(err).into_response()
}

// ---------------------------------------------------------------- client

type TestClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

fn get_req(front: &Front, path: &str, headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::get(format!("http://{}{path}", front.addr));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::default()).unwrap()
}

async fn send(req: http::Request<Full<Bytes>>) -> (http::response::Parts, Bytes) {
    let response = client().request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

/// Sends through the front to the echo upstream and returns what the upstream saw.
async fn echoed(req: http::Request<Full<Bytes>>) -> Value {
    let (parts, body) = send(req).await;
    assert_eq!(
        parts.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

fn seen<'a>(echo: &'a Value, name: &str) -> Option<Vec<&'a str>> {
    echo["headers"][name]
        .as_array()
        .map(|v| v.iter().map(|s| s.as_str().unwrap()).collect())
}

fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&SHA256, data).as_ref())
}

async fn setup(trusted: &[IpAddr]) -> (Front, Upstream, SocketAddr) {
    let (up_addr, up) = spawn_upstream().await;
    let front = spawn_front(&config(up_addr), trusted, Some(identity())).await;
    (front, up, up_addr)
}

// ---------------------------------------------------------------- cases

#[tokio::test]
async fn method_path_query_and_body_reach_upstream_with_upstream_host() {
    let (front, _up, up_addr) = setup(&[]).await;
    let req = http::Request::put(format!("http://{}/a/b?x=1&y=two", front.addr))
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let echo = echoed(req).await;
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["uri"], "/a/b?x=1&y=two");
    assert_eq!(echo["body"], "hello");
    assert_eq!(
        seen(&echo, "host"),
        Some(vec![up_addr.to_string().as_str()])
    );
}

#[tokio::test]
async fn identity_headers_are_set_and_forged_ones_are_removed() {
    let (front, _up, _) = setup(&[]).await;
    let forged = [
        ("x-clawgate-subject", "mallory"),
        ("X-Clawgate-Scopes", "root"),
        ("x-clawgate-impersonate", "bob"),
    ];
    let echo = echoed(get_req(&front, "/id", &forged)).await;
    assert_eq!(
        seen(&echo, "x-clawgate-subject"),
        Some(vec!["alice"]),
        "{echo}"
    );
    assert_eq!(seen(&echo, "x-clawgate-session"), Some(vec!["sess-123"]));
    assert_eq!(seen(&echo, "x-clawgate-scopes"), Some(vec!["read admin"]));
    let fp = "ab".repeat(32);
    assert_eq!(
        seen(&echo, "x-clawgate-client-cert-sha256"),
        Some(vec![fp.as_str()])
    );
    assert_eq!(seen(&echo, "x-clawgate-impersonate"), None, "{echo}");
}

#[tokio::test]
async fn public_path_request_carries_no_identity_even_if_forged() {
    let (up_addr, _up) = spawn_upstream().await;
    let front = spawn_front(&config(up_addr), &[], None).await;
    let echo = echoed(get_req(
        &front,
        "/pub",
        &[("x-clawgate-subject", "mallory")],
    ))
    .await;
    let clawgate: Vec<&String> = echo["headers"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("x-clawgate-"))
        .collect();
    assert!(clawgate.is_empty(), "{echo}");
}

#[tokio::test]
async fn authorization_is_not_forwarded_by_default() {
    let (front, _up, _) = setup(&[]).await;
    let echo = echoed(get_req(
        &front,
        "/",
        &[("authorization", "Bearer v4.public.secret")],
    ))
    .await;
    assert_eq!(seen(&echo, "authorization"), None, "{echo}");
    assert!(!echo.to_string().contains("v4.public.secret"), "{echo}");
}

#[tokio::test]
async fn authorization_is_forwarded_with_danger_flag() {
    let (up_addr, _up) = spawn_upstream().await;
    let cfg = UpstreamConfig {
        danger_forward_authorization: true,
        ..config(up_addr)
    };
    let front = spawn_front(&cfg, &[], Some(identity())).await;
    let echo = echoed(get_req(
        &front,
        "/",
        &[("authorization", "Bearer v4.public.x")],
    ))
    .await;
    assert_eq!(
        seen(&echo, "authorization"),
        Some(vec!["Bearer v4.public.x"])
    );
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_removed() {
    let (front, _up, _) = setup(&[]).await;
    let headers = [
        ("connection", "x-client-private, keep-alive"),
        ("x-client-private", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("proxy-authorization", "Basic c2VjcmV0"),
        ("x-client-public", "1"),
    ];
    let echo = echoed(get_req(&front, "/", &headers)).await;
    for name in [
        "x-client-private",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
    ] {
        assert_eq!(
            seen(&echo, name),
            None,
            "{name} reached the upstream: {echo}"
        );
    }
    assert_eq!(seen(&echo, "proxy-authorization"), None, "{echo}");
    assert_eq!(seen(&echo, "x-client-public"), Some(vec!["1"]));
}

#[tokio::test]
async fn hop_by_hop_and_hsts_response_headers_are_removed() {
    let (front, _up, _) = setup(&[]).await;
    let (parts, body) = send(get_req(&front, "/hop", &[])).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body, "ok");
    for name in [
        "x-upstream-private",
        "keep-alive",
        "proxy-authenticate",
        "strict-transport-security",
    ] {
        assert!(
            !parts.headers.contains_key(name),
            "{name} reached the client: {:?}",
            parts.headers
        );
    }
    let connection = parts
        .headers
        .get("connection")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        !connection
            .unwrap_or_default()
            .contains("x-upstream-private")
    );
    assert_eq!(parts.headers["x-upstream-public"], "1");
}

#[tokio::test]
async fn untrusted_peer_forwarded_headers_are_replaced() {
    let (front, _up, _) = setup(&[]).await;
    let headers = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-port", "80"),
        ("forwarded", "for=203.0.113.7"),
        ("x-real-ip", "203.0.113.7"),
    ];
    let echo = echoed(get_req(&front, "/", &headers)).await;
    assert_eq!(seen(&echo, "x-forwarded-for"), Some(vec!["127.0.0.1"]));
    assert_eq!(seen(&echo, "x-forwarded-proto"), Some(vec!["https"]));
    let front_host = front.addr.to_string();
    assert_eq!(
        seen(&echo, "x-forwarded-host"),
        Some(vec![front_host.as_str()])
    );
    for name in ["x-forwarded-port", "forwarded", "x-real-ip"] {
        assert_eq!(seen(&echo, name), None, "{name}: {echo}");
    }
}

#[tokio::test]
async fn trusted_peer_forwarded_headers_are_extended() {
    let (front, _up, _) = setup(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]).await;
    let headers = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-for", "198.51.100.2"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "app.example"),
    ];
    let echo = echoed(get_req(&front, "/", &headers)).await;
    assert_eq!(
        seen(&echo, "x-forwarded-for"),
        Some(vec!["203.0.113.7, 198.51.100.2, 127.0.0.1"])
    );
    assert_eq!(seen(&echo, "x-forwarded-proto"), Some(vec!["http"]));
    assert_eq!(seen(&echo, "x-forwarded-host"), Some(vec!["app.example"]));
}

#[tokio::test]
async fn ten_megabyte_upload_streams_through() {
    let (front, _up, _) = setup(&[]).await;
    let data = pattern(0, TEN_MB);
    let req = http::Request::post(format!("http://{}/upload", front.addr))
        .body(Full::new(Bytes::from(data.clone())))
        .unwrap();
    let echo = echoed(req).await;
    assert_eq!(echo["body_len"], TEN_MB);
    assert_eq!(echo["body_sha256"], sha256_hex(&data));
}

#[tokio::test]
async fn ten_megabyte_download_streams_through() {
    let (front, _up, _) = setup(&[]).await;
    let req = get_req(&front, &format!("/download?bytes={TEN_MB}"), &[]);
    let response = client().request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (mut body, mut sha, mut len) = (response.into_body(), Sha::new(&SHA256), 0);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            sha.update(&data);
            len += data.len();
        }
    }
    assert_eq!(len, TEN_MB);
    assert_eq!(hex(sha.finish().as_ref()), sha256_hex(&pattern(0, TEN_MB)));
}

/// A body that keeps arriving (never makes the proxy wait) is still cut
/// when the session ends: the end is looked at every few frames.
#[tokio::test]
async fn session_end_cuts_a_download_that_never_waits() {
    const TOTAL: usize = 64 * 1024 * 1024;
    let (front, _up, _) = setup(&[]).await;
    let req = get_req(&front, &format!("/download?bytes={TOTAL}"), &[]);
    let response = client().request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut len = body
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .map_or(0, |d| d.len());
    front.end_session.send(true).unwrap();
    let mut cut = false;
    let read = tokio::time::timeout(PROMPTLY, async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => len += frame.into_data().map_or(0, |d| d.len()),
                Err(_) => {
                    cut = true;
                    break;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the download outlived its session");
    assert!(cut, "the cut download ended as if complete");
    assert!(
        len < TOTAL,
        "all {len} bytes arrived after the session ended"
    );
}

/// Reads data frames until `needle` has arrived; the stream stays open.
async fn read_until(body: &mut hyper::body::Incoming, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let frame = body.frame().await.expect("stream ended early").unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    seen
}

#[tokio::test]
async fn sse_first_event_arrives_before_the_stream_ends() {
    let (front, up, _) = setup(&[]).await;
    let response = client()
        .request(get_req(&front, "/sse", &[]))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    // The upstream holds the stream open until told to finish.
    let first = read_until(&mut body, "data: one").await;
    assert!(!first.contains("two"));
    up.sse_finish.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "data: two\n\n");
}

#[tokio::test]
async fn session_end_ends_an_open_sse_stream() {
    let (front, _up, _) = setup(&[]).await;
    let response = client()
        .request(get_req(&front, "/sse", &[]))
        .await
        .unwrap();
    let mut body = response.into_body();
    read_until(&mut body, "data: one").await;
    front.end_session.send(true).unwrap();
    let rest = tokio::time::timeout(PROMPTLY, async {
        let mut rest = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            rest.extend(frame.into_data().unwrap_or_default());
        }
        rest
    })
    .await
    .expect("the stream outlived its session");
    assert!(rest.is_empty(), "{rest:?}");
}

async fn ws_connect(
    front: &Front,
    protocols: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://{}/ws", front.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(protocols).unwrap(),
    );
    let (socket, response) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(!response.headers().contains_key("strict-transport-security"));
    socket
}

#[tokio::test]
async fn websocket_echo_works_and_bearer_protocol_never_reaches_upstream() {
    let (front, up, _) = setup(&[]).await;
    let token = "v4.public.eyJzdWIiOiJhbGljZSJ9c2lnbmF0dXJl";
    // tungstenite fails the handshake unless the 101 names an offered protocol.
    let mut socket = ws_connect(&front, &format!("clawgate.bearer, {token}")).await;
    socket.send(Message::text("ping")).await.unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply, Message::text("ping"));
    assert_eq!(*up.ws_protocols.lock().unwrap(), vec![None]);

    let mut socket = ws_connect(&front, &format!("clawgate.bearer, {token}, chat")).await;
    socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::binary(vec![1, 2, 3])
    );
    // Any letter case of the marker still hides the entry after it.
    let _socket = ws_connect(&front, "Clawgate.Bearer, opaque-token-xyz, chat").await;
    let offers = up.ws_protocols.lock().unwrap().clone();
    let chat = Some("chat".to_owned());
    assert_eq!(
        offers,
        vec![None, chat.clone(), chat],
        "token leaked upstream?"
    );
}

#[tokio::test]
async fn websocket_101_answers_clawgate_bearer_when_upstream_selects_none() {
    let (front, _up, _) = setup(&[]).await;
    let mut req = format!("ws://{}/ws", front.addr)
        .into_client_request()
        .unwrap();
    let offer = HeaderValue::from_static("clawgate.bearer, v4.public.abc");
    req.headers_mut().insert("sec-websocket-protocol", offer);
    let (_socket, response) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "clawgate.bearer"
    );
}

#[tokio::test]
async fn session_end_closes_an_open_websocket_on_both_sides() {
    let (front, up, _) = setup(&[]).await;
    let mut socket = ws_connect(&front, "clawgate.bearer, v4.public.abc").await;
    socket.send(Message::text("before")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("before")
    );
    front.end_session.send(true).unwrap();
    let next = tokio::time::timeout(PROMPTLY, socket.next())
        .await
        .expect("the websocket outlived its session");
    assert!(
        !matches!(next, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{next:?}"
    );
    tokio::time::timeout(PROMPTLY, up.ws_closed.notified())
        .await
        .expect("the upstream websocket stayed open");
}

#[tokio::test]
async fn dead_upstream_port_gives_502() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let front = spawn_front(&config(dead), &[], Some(identity())).await;
    let (parts, body) = send(get_req(&front, "/", &[])).await;
    assert_eq!(parts.status, StatusCode::BAD_GATEWAY);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    assert!(
        !body["message"]
            .as_str()
            .unwrap()
            .contains(&dead.port().to_string()),
        "{body}"
    );
}

/// An upstream that answers every request with `reply`, verbatim.
async fn raw_upstream(reply: &'static [u8]) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp.write_all(reply).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

async fn error_code(front: &Front, path: &str) -> (StatusCode, Value) {
    let (parts, body) = send(get_req(front, path, &[])).await;
    (parts.status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn garbage_from_upstream_is_502_bad_upstream_response() {
    let up = raw_upstream(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
    let front = spawn_front(&config(up), &[], Some(identity())).await;
    let (status, body) = error_code(&front, "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"], "bad_upstream_response");
    assert!(
        !body.to_string().contains("SSH"),
        "upstream bytes never echoed: {body}"
    );
}

#[tokio::test]
async fn switching_protocols_to_a_plain_request_is_502_not_a_tunnel() {
    // An upstream may not turn an ordinary request into a raw tunnel.
    let up = raw_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    let front = spawn_front(&config(up), &[], Some(identity())).await;
    let (status, body) = error_code(&front, "/chat").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"], "bad_upstream_response");
}

#[tokio::test]
async fn connect_and_asterisk_targets_are_refused_not_forwarded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (front, _up, _) = setup(&[]).await;
    for head in [
        "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(front.addr).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 400"), "{head:?} -> {text}");
        assert!(text.contains("invalid_request"), "{text}");
    }
}

/// The session's end is watched once the upstream keeps the request
/// waiting (after 50 ms); an end before that is seen when the watch starts.
#[tokio::test]
async fn a_session_that_ends_while_the_upstream_works_cuts_the_request() {
    for after in [Duration::from_millis(5), Duration::from_millis(120)] {
        let (front, _up, _) = setup(&[]).await;
        let request = tokio::spawn(send(get_req(&front, "/slow", &[])));
        tokio::time::sleep(after).await;
        front.end_session.send(true).unwrap();
        let (parts, body) = request.await.unwrap();
        // Not the 504 of `response_timeout` (300 ms): the session's end.
        assert_eq!(
            parts.status,
            StatusCode::UNAUTHORIZED,
            "ended after {after:?}"
        );
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "invalid_token", "ended after {after:?}");
    }
}

#[tokio::test]
async fn upstream_slower_than_response_timeout_gives_504() {
    let (front, _up, _) = setup(&[]).await;
    let (parts, body) = send(get_req(&front, "/slow", &[])).await;
    assert_eq!(parts.status, StatusCode::GATEWAY_TIMEOUT);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "upstream_timeout");
}

#[tokio::test]
async fn http2_request_is_forwarded_as_http11_with_authority_as_forwarded_host() {
    let (front, _up, _) = setup(&[]).await;
    let h2: TestClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    let response = h2.request(get_req(&front, "/h2?q=1", &[])).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["uri"], "/h2?q=1");
    let front_host = front.addr.to_string();
    assert_eq!(
        seen(&echo, "x-forwarded-host"),
        Some(vec![front_host.as_str()])
    );
    assert_eq!(seen(&echo, "x-clawgate-subject"), Some(vec!["alice"]));
}

#[tokio::test]
async fn streamed_body_over_the_limit_gives_413_not_502() {
    let (up_addr, _up) = spawn_upstream().await;
    let limit = |app: Router| app.layer(tower_http::limit::RequestBodyLimitLayer::new(1024));
    let front = spawn_front_with(&config(up_addr), &[], Some(identity()), limit).await;
    // No Content-Length: the limit can only trip while the proxy streams the body.
    let chunks = (0..4).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 1024]))));
    let body = BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks)));
    let req = http::Request::post(format!("http://{}/upload", front.addr))
        .body(body)
        .unwrap();
    let streaming: Client<HttpConnector, BoxBody<Bytes, Infallible>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let response = streaming.request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "payload_too_large");
}

#[tokio::test]
async fn failure_log_names_the_code_and_never_the_token() {
    // Scoped to this test's thread: the current-thread runtime runs the
    // front and the proxy here (an IP upstream needs no resolver thread).
    let logs = Logs::default();
    let _guard = tracing::subscriber::set_default(logs.text_subscriber());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let cfg = UpstreamConfig {
        danger_forward_authorization: true,
        ..config(dead)
    };
    let front = spawn_front(&cfg, &[], Some(identity())).await;
    let secret = [
        ("authorization", "Bearer v4.public.topsecret"),
        ("cookie", "sid=topsecret"),
    ];
    let (parts, _) = send(get_req(&front, "/", &secret)).await;
    assert_eq!(parts.status, StatusCode::BAD_GATEWAY);
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("upstream forwarding failed") && l.contains(&dead.to_string()))
        .unwrap_or_default();
    assert!(line.contains("upstream_unavailable"), "{text}");
    assert!(!text.contains("topsecret"), "secret in log: {text}");
}

#[tokio::test]
async fn public_paths_match_exactly_or_by_prefix_and_refuse_dot_segments() {
    let cfg = UpstreamConfig {
        url: Some("http://127.0.0.1:9".to_owned()),
        public_paths: vec!["/status".to_owned(), "/pub/*".to_owned()],
        ..UpstreamConfig::default()
    };
    // The rule moved from the proxy to the bearer layer (`auth::PublicPaths`).
    let public = PublicPaths::new(&cfg.public_paths);
    for path in ["/status", "/pub/", "/pub/a", "/pub/a/b.css"] {
        assert!(public.matches(path), "{path} should be public");
    }
    let private = [
        "/status/",
        "/statusx",
        "/pub",
        "/pubx/a",
        "/",
        "/pub/../admin",
        "/pub/%2e%2e/admin",
        "/pub/%2E./admin",
        "/pub/..;/admin",
        "/pub/a%2fb",
        "/pub\\..\\admin",
        "/pub/./x",
    ];
    for path in private {
        assert!(!public.matches(path), "{path} must need a token");
    }
}

#[test]
fn no_upstream_url_builds_no_proxy_and_bad_urls_are_refused() {
    // No URL: the configuration yields none, so the gateway builds no proxy.
    assert!(UpstreamConfig::default().upstream_url().unwrap().is_none());
    for url in [
        "https://127.0.0.1:3000",
        "http://127.0.0.1:3000/api",
        "127.0.0.1:3000",
        "::",
    ] {
        assert_eq!(UpstreamUrl::parse(url), Err(InvalidUpstreamUrl), "{url}");
        let cfg = UpstreamConfig {
            url: Some(url.to_owned()),
            ..UpstreamConfig::default()
        };
        let err = cfg.upstream_url().unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid(p) if p.len() == 1 && p[0].starts_with("[upstream] url: ")),
            "{url}: {err:?}"
        );
    }
    for url in [
        "http://127.0.0.1:3000",
        "http://127.0.0.1:3000/",
        "http://[::1]:80",
    ] {
        let parsed = UpstreamUrl::parse(url).unwrap();
        assert_eq!(parsed.host_header(), parsed.authority().as_str(), "{url}");
    }
}

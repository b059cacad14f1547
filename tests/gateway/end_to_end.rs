//! End to end through the real HTTPS server to real loopback upstreams:
//! identity headers, replay protection, streams, WebSockets, upstream
//! failures and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::upstream::{hex, pattern};
use common::{TestClient, authed, gateway_with_upstream, replay_headers, send_on};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const HSTS: &str = "max-age=31536000; includeSubDomains";
const PROMPTLY: Duration = Duration::from_secs(1);

fn with_replay(mut req: Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let (nonce, ts) = replay_headers();
    req.headers_mut()
        .insert("x-request-nonce", nonce.parse().unwrap());
    req.headers_mut()
        .insert("x-request-timestamp", ts.parse().unwrap());
    req
}

fn seen<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name]
        .as_array()
        .and_then(|v| v.first())
        .and_then(Value::as_str)
}

#[tokio::test]
async fn authenticated_request_without_upstream_says_so_with_hsts() {
    // Issue 13: was 404 `not_found`; now names the missing upstream.
    let gw = common::TestGateway::start(|_, _| {}).await;
    let token = gw.token("alice", &[]);
    let resp = gw
        .client()
        .send(gw.addr(), authed("GET", "/anything", &token, ""))
        .await;
    assert_eq!(resp.status, 502);
    assert_eq!(resp.json()["error"], "no_upstream");
    assert!(
        resp.json()["message"]
            .as_str()
            .unwrap()
            .contains("no upstream is configured")
    );
    assert_eq!(resp.header("strict-transport-security"), Some(HSTS));
}

#[tokio::test]
async fn upstream_sees_gateway_identity_not_the_token_or_forged_headers() {
    let (gw, _, _) = gateway_with_upstream(|_, _| {}).await;
    let token = gw.token("alice", &["read", "write"]);
    let mut req = authed("GET", "/api/x?q=1", &token, "");
    req.headers_mut()
        .insert("x-clawgate-subject", "mallory".parse().unwrap());
    req.headers_mut()
        .insert("x-clawgate-scopes", "admin".parse().unwrap());
    req.headers_mut()
        .insert("connection", "x-private".parse().unwrap());
    req.headers_mut().insert("x-private", "1".parse().unwrap());
    let resp = gw.client().send(gw.addr(), req).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("strict-transport-security"), Some(HSTS));
    let echo = resp.json();
    assert_eq!(echo["uri"], "/api/x?q=1");
    assert_eq!(seen(&echo, "x-clawgate-subject"), Some("alice"));
    assert_eq!(seen(&echo, "x-clawgate-scopes"), Some("read write"));
    assert_eq!(
        echo["headers"]["x-clawgate-subject"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(seen(&echo, "x-clawgate-session").is_some_and(|s| s.len() >= 40));
    assert_eq!(
        seen(&echo, "authorization"),
        None,
        "token must not reach the upstream"
    );
    assert_eq!(
        seen(&echo, "x-private"),
        None,
        "hop-by-hop header forwarded"
    );
    assert_eq!(seen(&echo, "x-forwarded-proto"), Some("https"));
    assert_eq!(seen(&echo, "x-forwarded-for"), Some("127.0.0.1"));
    assert!(!echo.to_string().contains(&token));
}

#[tokio::test]
async fn upstream_hsts_is_replaced_not_duplicated() {
    let (gw, _, _) = gateway_with_upstream(|_, _| {}).await;
    let token = gw.token("alice", &[]);
    let resp = gw
        .client()
        .send(gw.addr(), authed("GET", "/hop", &token, ""))
        .await;
    let all: Vec<_> = resp
        .headers
        .get_all("strict-transport-security")
        .iter()
        .collect();
    assert_eq!(all, [HSTS]);
    assert_eq!(resp.header("x-upstream-public"), Some("1"));
    assert_eq!(resp.header("x-upstream-private"), None);
}

#[tokio::test]
async fn public_path_passes_without_token_and_without_identity() {
    let (gw, _, _) =
        gateway_with_upstream(|c, _| c.upstream.public_paths = vec!["/public/*".into()]).await;
    let resp = gw.client().get(gw.addr(), "/public/page").await;
    assert_eq!(resp.status, 200);
    assert_eq!(seen(&resp.json(), "x-clawgate-subject"), None);
    let resp = gw.client().get(gw.addr(), "/private").await;
    assert_eq!(resp.status, 401);
}

#[tokio::test]
async fn unsafe_methods_need_fresh_replay_headers() {
    let (gw, _, _) = gateway_with_upstream(|_, _| {}).await;
    let token = gw.token("alice", &[]);
    let client = gw.client();
    let send = |req| {
        let client = client.clone();
        let addr = gw.addr();
        async move { client.send(addr, req).await }
    };
    let missing = send(authed("POST", "/api", &token, "x")).await;
    assert_eq!(
        (missing.status, missing.json()["error"].clone()),
        (400, "replay_nonce_missing".into())
    );
    assert_eq!(missing.header("strict-transport-security"), Some(HSTS));

    let req = with_replay(authed("POST", "/api", &token, "x"));
    let (nonce, ts) = (
        req.headers()["x-request-nonce"].clone(),
        req.headers()["x-request-timestamp"].clone(),
    );
    assert_eq!(send(req).await.status, 200);

    let mut again = authed("POST", "/api", &token, "x");
    again.headers_mut().insert("x-request-nonce", nonce.clone());
    again
        .headers_mut()
        .insert("x-request-timestamp", ts.clone());
    let replayed = send(again).await;
    assert_eq!(
        (replayed.status, replayed.json()["error"].clone()),
        (409, "replay_detected".into())
    );

    let now: u64 = ts.to_str().unwrap().parse().unwrap();
    for (nonce, ts, code) in [
        ("short", now.to_string(), "replay_nonce_malformed"),
        (
            replay_headers().0.as_str(),
            "12ab".to_owned(),
            "replay_timestamp_malformed",
        ),
        (
            replay_headers().0.as_str(),
            (now - 3600).to_string(),
            "replay_timestamp_stale",
        ),
        (
            replay_headers().0.as_str(),
            (now + 3600).to_string(),
            "replay_timestamp_future",
        ),
    ] {
        let mut req = authed("DELETE", "/api", &token, "");
        req.headers_mut()
            .insert("x-request-nonce", nonce.parse().unwrap());
        req.headers_mut()
            .insert("x-request-timestamp", ts.parse().unwrap());
        let resp = send(req).await;
        assert_eq!(resp.status, 400, "{code}");
        assert_eq!(resp.json()["error"], code);
    }
    // A safe method needs no headers.
    assert_eq!(send(authed("GET", "/api", &token, "")).await.status, 200);
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("clawgate_replay_rejections_total{code=\"replay_detected\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn same_nonce_under_two_sessions_both_pass() {
    let (gw, _, _) = gateway_with_upstream(|_, _| {}).await;
    let (a, b) = (gw.token("alice", &[]), gw.token("bob", &[]));
    let (nonce, ts) = replay_headers();
    for token in [&a, &b] {
        let mut req = authed("PUT", "/api", token, "x");
        req.headers_mut()
            .insert("x-request-nonce", nonce.parse().unwrap());
        req.headers_mut()
            .insert("x-request-timestamp", ts.parse().unwrap());
        assert_eq!(gw.client().send(gw.addr(), req).await.status, 200);
    }
}

#[tokio::test]
async fn ten_megabytes_stream_up_and_down_through_the_gateway() {
    let (gw, _, _) = gateway_with_upstream(|_, _| {}).await;
    let token = gw.token("alice", &[]);
    let data = pattern(0, 10 * 1024 * 1024);
    let up = gw
        .client()
        .send(
            gw.addr(),
            with_replay(authed("POST", "/upload", &token, data.clone())),
        )
        .await;
    assert_eq!(up.status, 200);
    let echo = up.json();
    assert_eq!(echo["body_len"], data.len());
    assert_eq!(
        echo["body_sha256"],
        hex(ring::digest::digest(&ring::digest::SHA256, &data).as_ref())
    );
    let down = gw
        .client()
        .send(
            gw.addr(),
            authed(
                "GET",
                &format!("/download?bytes={}", data.len()),
                &token,
                "",
            ),
        )
        .await;
    assert_eq!(down.status, 200);
    assert_eq!(down.body.len(), data.len());
    assert!(down.body == data);
}

#[tokio::test]
async fn sse_events_arrive_one_at_a_time_and_revocation_ends_the_stream() {
    let (gw, upstream, _) = gateway_with_upstream(|_, _| {}).await;
    let token = gw.token("alice", &[]);
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"http/1.1"]);
    let tls = client.connect(gw.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = authed("GET", "/sse", &token, "");
    req.headers_mut()
        .insert("host", "localhost".parse().unwrap());
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(PROMPTLY, body.frame())
        .await
        .expect("first event promptly")
        .unwrap()
        .unwrap();
    assert_eq!(
        first.into_data().unwrap(),
        Bytes::from_static(b"data: one\n\n")
    );
    // The upstream still holds the stream open; revoke the session.
    let session = gw.running.sessions().authenticate(&token).unwrap();
    gw.running.sessions().logout(&session).unwrap();
    let ended = tokio::time::timeout(PROMPTLY, async {
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "SSE stream outlived its revoked session");
    drop(upstream);
}

async fn ws_connect(
    gw: &common::TestGateway,
    protocols: Option<String>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"http/1.1"]);
    let tls = client.connect(gw.addr()).await.unwrap();
    let mut req = format!("wss://localhost:{}/ws", gw.addr().port())
        .into_client_request()
        .unwrap();
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    tokio_tungstenite::client_async(req, tls)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn websocket_works_with_bearer_subprotocol_and_is_refused_without() {
    let (gw, upstream, _) = gateway_with_upstream(|_, _| {}).await;
    let token = gw.token("alice", &[]);
    let refused = ws_connect(&gw, None).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let mut ws = ws_connect(&gw, Some(format!("clawgate.bearer, {token}")))
        .await
        .expect("upgrade");
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(PROMPTLY, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("hello"));
    let offered = upstream.ws_protocols.lock().unwrap().clone();
    assert!(
        offered
            .iter()
            .all(|p| p.as_deref().is_none_or(|p| !p.contains("v4.public"))),
        "{offered:?}"
    );

    // Revoking the session closes the open WebSocket.
    let session = gw.running.sessions().authenticate(&token).unwrap();
    gw.running.sessions().logout(&session).unwrap();
    let closed = tokio::time::timeout(PROMPTLY, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "WebSocket outlived its revoked session");
}

#[tokio::test]
async fn dead_upstream_is_502_and_slow_upstream_is_504_with_hsts() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let gw =
        common::TestGateway::start(|c, _| c.upstream.url = Some(format!("http://{dead_addr}")))
            .await;
    let token = gw.token("alice", &[]);
    let resp = gw
        .client()
        .send(gw.addr(), authed("GET", "/x", &token, ""))
        .await;
    assert_eq!(
        (resp.status, resp.json()["error"].clone()),
        (502, "upstream_unavailable".into())
    );
    assert_eq!(resp.header("strict-transport-security"), Some(HSTS));

    let (gw, _, _) =
        gateway_with_upstream(|c, _| c.upstream.response_timeout = Duration::from_millis(300))
            .await;
    let token = gw.token("alice", &[]);
    let resp = gw
        .client()
        .send(gw.addr(), authed("GET", "/slow", &token, ""))
        .await;
    assert_eq!(
        (resp.status, resp.json()["error"].clone()),
        (504, "upstream_timeout".into())
    );
    assert_eq!(resp.header("strict-transport-security"), Some(HSTS));
}

#[tokio::test]
async fn body_over_the_limit_is_413_even_when_streamed() {
    let (gw, _, _) = gateway_with_upstream(|c, _| c.server.max_body_bytes = 64 * 1024).await;
    let token = gw.token("alice", &[]);
    let resp = gw
        .client()
        .send(
            gw.addr(),
            with_replay(authed("POST", "/upload", &token, vec![0u8; 256 * 1024])),
        )
        .await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.json()["error"], "payload_too_large");
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let (gw, upstream, _) =
        gateway_with_upstream(|c, _| c.server.shutdown_grace = Duration::from_secs(5)).await;
    let token = gw.token("alice", &[]);
    let client = gw.client();
    let tls = client.connect(gw.addr()).await.unwrap();
    let in_flight = tokio::spawn(send_on(tls, authed("GET", "/delay?ms=400", &token, "")));
    upstream.delay_started.notified().await;
    let common::TestGateway { running, dir, .. } = gw;
    running.shutdown().await;
    let resp = in_flight.await.unwrap();
    assert_eq!(
        resp.status, 200,
        "in-flight request cut by shutdown: {resp:?}"
    );
    drop(dir);
}

#[tokio::test]
async fn shutdown_grace_cuts_a_request_that_outlives_it() {
    let logs = common::logs::Logs::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let (gw, upstream, _) =
        gateway_with_upstream(|c, _| c.server.shutdown_grace = Duration::from_millis(200)).await;
    let token = gw.token("alice", &[]);
    let client = gw.client();
    let tls = client.connect(gw.addr()).await.unwrap();
    // Far longer than the grace: the gateway must not wait for it.
    let in_flight = tokio::spawn(send_on(tls, authed("GET", "/delay?ms=30000", &token, "")));
    upstream.delay_started.notified().await;
    let common::TestGateway { running, dir, .. } = gw;
    let stopped = tokio::time::timeout(Duration::from_secs(10), running.shutdown()).await;
    assert!(stopped.is_ok(), "shutdown waited past its grace period");
    let cut = tokio::time::timeout(Duration::from_secs(10), in_flight).await;
    let Ok(outcome) = cut else {
        panic!("the connection outlived the gateway's shutdown");
    };
    // send_on panics when the connection drops mid-request.
    assert!(
        outcome.is_err(),
        "the request was answered after the grace period: {:?}",
        outcome.map(|r| r.status)
    );
    assert!(
        logs.text()
            .contains(r#""event":"shutdown_grace_expired","open":1"#),
        "{}",
        logs.text()
    );
    drop(dir);
}

#[tokio::test]
async fn shutdown_closes_websocket_tunnels_and_the_metrics_listener() {
    let (gw, _, _) =
        gateway_with_upstream(|c, _| c.server.shutdown_grace = Duration::from_millis(500)).await;
    let token = gw.token("alice", &[]);
    let mut ws = ws_connect(&gw, Some(format!("clawgate.bearer, {token}")))
        .await
        .expect("upgrade");
    ws.send(Message::text("before")).await.unwrap();
    let echoed = tokio::time::timeout(PROMPTLY, ws.next()).await.unwrap();
    assert_eq!(echoed.unwrap().unwrap(), Message::text("before"));
    let metrics_addr = gw.running.metrics_addr().unwrap();

    let common::TestGateway { running, dir, .. } = gw;
    running.shutdown().await;
    // The upgraded connection is no HTTP connection the server drains: it
    // must be closed explicitly, or it would outlive the gateway.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "WebSocket tunnel outlived the gateway");
    let refused = common::eventually_async(
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async { tokio::net::TcpStream::connect(metrics_addr).await.is_err() },
    )
    .await;
    assert!(refused, "metrics listener still accepting after shutdown");
    drop(dir);
}

#[tokio::test]
async fn h2_multiplexing_shares_the_auth_rate_limit() {
    let gw = common::TestGateway::start(|c, _| c.auth.rate_limit_per_minute = 5).await;
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"h2"]);
    let tls = client.connect(gw.addr()).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut statuses = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::post("https://localhost/auth/refresh")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{\"refresh_token\":\"x\"}")))
                .unwrap();
            sender.send_request(req).await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn provided_certificate_near_expiry_raises_the_expiry_alert() {
    use clawgate::config::KeyAlgorithm;
    use clawgate::gateway::certificate_manager::{generate_root, issue_server_cert};
    const DAY: Duration = Duration::from_secs(86_400);

    // The test runtime is single-threaded: the gateway's async tasks log
    // on this thread, to this default.
    let captured = common::logs::Logs::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());

    let now = std::time::SystemTime::now();
    let root = generate_root(KeyAlgorithm::EcdsaP256, 20 * DAY, now).unwrap();
    let leaf = issue_server_cert(&root, &[], KeyAlgorithm::EcdsaP256, 10 * DAY, now).unwrap();
    let gw = common::TestGateway::start(|c, dir| {
        let (crt, key) = (dir.join("provided.crt"), dir.join("provided.key"));
        std::fs::write(&crt, &leaf.cert_pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        c.tls.cert_path = Some(crt);
        c.tls.key_path = Some(key);
        c.tls.renew_before = 30 * DAY; // also the alert threshold
        c.tls.check_interval = Duration::from_millis(50);
    })
    .await;
    let alerted = common::eventually(Duration::from_secs(5), || {
        captured.text().lines().any(|line| {
            line.contains(r#""alert":"certificate_expiring""#)
                && line.contains(r#""cert":"server""#)
        })
    })
    .await;
    assert!(
        alerted,
        "no expiry alert for a 10-day certificate:\n{}",
        captured.text()
    );
    // Provided files are never replaced by the gateway: the operator renews them.
    let served = gw.running.certificates().current();
    assert!(
        served.not_after < now + 11 * DAY,
        "still the provided certificate"
    );
    assert!(gw.running.certificates().root_path().is_none());
}

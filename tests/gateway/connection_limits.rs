//! Connections that never send a request, idle connections, trickled
//! `/auth/*` bodies and one address taking every slot (issue 11, item 2),
//! each reproduced against the real server over TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestClient, TestGateway, authed, gateway_with_upstream, send_on};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Deadlines in these tests are ≤ 1 s; a connection still open after this
/// was not going to be closed (before the fix it stayed open for good).
const CLOSED_WITHIN: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(500);

/// The HTTP/2 connection preface (RFC 9113 §3.4) and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Reads until the server closes; `None` if it did not within `CLOSED_WITHIN`.
async fn closed_by_server(tls: &mut TlsStream<TcpStream>) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(CLOSED_WITHIN, async {
        let mut buf = [0u8; 4096];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| seen)
}

async fn short_first_request_deadline() -> TestGateway {
    TestGateway::start(|c, _| c.server.header_read_timeout = SHORT).await
}

#[tokio::test]
async fn tls_client_that_sends_nothing_is_closed_at_the_first_request_deadline() {
    let gw = short_first_request_deadline().await;
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"http/1.1"]);
    let mut tls = client.connect(gw.addr()).await.unwrap();
    assert!(
        closed_by_server(&mut tls).await.is_some(),
        "a silent client kept its connection past header_read_timeout"
    );
    let line = "clawgate_connections_timed_out_total{deadline=\"first_request\"} 1";
    let metrics = gw.metrics_with(line).await;
    assert!(metrics.contains(line), "{metrics}");
}

#[tokio::test]
async fn partial_h2_preface_is_closed_at_the_first_request_deadline() {
    // Fewer than 24 bytes: the HTTP/2 server is still waiting for the preface.
    let gw = short_first_request_deadline().await;
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"h2"]);
    let mut tls = client.connect(gw.addr()).await.unwrap();
    tls.write_all(&H2_PREFACE[..16]).await.unwrap();
    assert!(
        closed_by_server(&mut tls).await.is_some(),
        "a half-sent preface kept its connection past header_read_timeout"
    );
}

#[tokio::test]
async fn h2_preface_without_a_request_is_closed_at_the_first_request_deadline() {
    let gw = short_first_request_deadline().await;
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"h2"]);
    let mut tls = client.connect(gw.addr()).await.unwrap();
    tls.write_all(H2_PREFACE).await.unwrap();
    tls.write_all(EMPTY_SETTINGS).await.unwrap();
    assert!(
        closed_by_server(&mut tls).await.is_some(),
        "an HTTP/2 preface with no HEADERS kept its connection open"
    );
}

#[tokio::test]
async fn the_protocol_is_the_one_alpn_agreed_never_guessed_from_the_bytes() {
    let gw = TestGateway::start(|_, _| {}).await;
    // Offered h2: the server agrees and speaks HTTP/2 (SETTINGS frame first).
    let mut tls = TestClient::with_alpn(&gw.ca_path(), &[b"h2", b"http/1.1"])
        .connect(gw.addr())
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(H2_PREFACE).await.unwrap();
    tls.write_all(EMPTY_SETTINGS).await.unwrap();
    let mut head = [0u8; 9];
    tls.read_exact(&mut head).await.unwrap();
    assert_eq!(head[3], 4, "first frame from an h2 server is SETTINGS");
    // No ALPN: HTTP/1.1, so an HTTP/2 preface is refused (hyper closes on
    // it), never served as HTTP/2 (RFC 9113 §3.2): no SETTINGS frame back.
    let mut tls = TestClient::with_alpn(&gw.ca_path(), &[])
        .connect(gw.addr())
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    tls.write_all(H2_PREFACE).await.unwrap();
    tls.write_all(EMPTY_SETTINGS).await.unwrap();
    let answer = closed_by_server(&mut tls).await.unwrap();
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "{answer:?}"
    );
}

#[tokio::test]
async fn idle_http1_keep_alive_connection_is_closed_after_idle_timeout() {
    // The head timeout stays long: only the idle deadline can close it.
    let gw = TestGateway::start(|c, _| c.server.idle_timeout = SHORT).await;
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"http/1.1"]);
    let mut tls = client.connect(gw.addr()).await.unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let seen = closed_by_server(&mut tls)
        .await
        .expect("an idle keep-alive connection stayed open past idle_timeout");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn idle_h2_connection_is_closed_after_idle_timeout() {
    let gw = TestGateway::start(|c, _| c.server.idle_timeout = SHORT).await;
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"h2"]);
    let tls = client.connect(gw.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get("https://localhost/health")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    let ended = tokio::time::timeout(CLOSED_WITHIN, conn).await;
    assert!(
        ended.is_ok(),
        "an HTTP/2 connection with no stream open outlived idle_timeout"
    );
    let line = "clawgate_connections_timed_out_total{deadline=\"idle\"} 1";
    let metrics = gw.metrics_with(line).await;
    assert!(metrics.contains(line), "{metrics}");
}

#[tokio::test]
async fn a_quiet_response_stream_is_not_idle() {
    // An SSE stream silent for longer than idle_timeout is a request in
    // progress: the connection must stay.
    let (gw, upstream, _) = gateway_with_upstream(|c, _| {
        c.server.idle_timeout = Duration::from_millis(200);
    })
    .await;
    let token = gw.token("alice", &[]);
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"h2"]);
    let tls = client.connect(gw.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = authed("GET", "/sse", &token, "");
    *req.uri_mut() = "https://localhost/sse".parse().unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, Bytes::from_static(b"data: one\n\n"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    upstream.sse_finish.notify_one();
    let second = tokio::time::timeout(CLOSED_WITHIN, body.frame())
        .await
        .expect("second event")
        .expect("stream still open")
        .expect("no error");
    assert_eq!(
        second.into_data().unwrap(),
        Bytes::from_static(b"data: two\n\n")
    );
}

#[tokio::test]
async fn trickled_auth_body_is_cut_at_the_total_deadline() {
    // One byte every 100 ms never trips the 30 s per-chunk timeout; the
    // whole body would take 10 s. The total deadline is 1 s.
    let gw = TestGateway::start(|c, _| c.server.auth_body_timeout = Duration::from_secs(1)).await;
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"http/1.1"]);
    let mut tls = client.connect(gw.addr()).await.unwrap();
    let body = vec![b' '; 100];
    let head = format!(
        "POST /auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = tokio::io::split(tls);
    let trickle = tokio::spawn(async move {
        for byte in body {
            if write.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut seen = Vec::new();
    let answered = tokio::time::timeout(CLOSED_WITHIN, async {
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(
        answered.is_ok(),
        "a trickled /auth/login body held the request past auth_body_timeout"
    );
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_max_connections_per_ip() {
    let gw = TestGateway::start(|c, _| c.server.max_connections_per_ip = 2).await;
    let client = gw.client();
    let first = client.connect(gw.addr()).await.unwrap();
    let _second = client.connect(gw.addr()).await.unwrap();
    assert!(
        client.connect(gw.addr()).await.is_err(),
        "a third connection from one address got a TLS session"
    );
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("clawgate_connections_refused_total{reason=\"per_ip_limit\"} 1"),
        "{metrics}"
    );
    // A slot given back is usable again.
    drop(first);
    let served = common::eventually_async(CLOSED_WITHIN, Duration::from_millis(20), || async {
        let Ok(tls) = client.connect(gw.addr()).await else {
            return false;
        };
        let req = Request::get("/health")
            .body(Full::new(Bytes::new()))
            .unwrap();
        send_on(tls, req).await.status == 200
    })
    .await;
    assert!(served, "the freed slot was never given back");
}

#[tokio::test]
async fn full_server_closes_excess_connections_at_once_instead_of_queueing() {
    let gw = TestGateway::start(|c, _| {
        c.server.max_connections = 2;
        c.server.max_connections_per_ip = 0;
    })
    .await;
    let client = gw.client();
    let _a = client.connect(gw.addr()).await.unwrap();
    let _b = client.connect(gw.addr()).await.unwrap();
    // Before: the third client sat in the kernel backlog, its handshake
    // never answered. Now it is closed at accept, and counted.
    let third = tokio::time::timeout(CLOSED_WITHIN, client.connect(gw.addr())).await;
    assert!(
        matches!(third, Ok(Err(_))),
        "the excess connection was queued (or served) instead of closed"
    );
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("clawgate_connections_refused_total{reason=\"server_full\"} 1"),
        "{metrics}"
    );
}

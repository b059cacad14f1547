//! Idle HTTP/1.1 connections hibernate (issue 12, idle memory): hyper's
//! connection and its buffers are dropped between two requests and rebuilt
//! on the client's next bytes. Each test waits until the metrics show the
//! connection hibernated, then checks that nothing the client sends or
//! expects is lost, reordered or kept past a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;

use std::time::Duration;

use common::{TestClient, TestGateway, gateway_with_upstream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Long enough for anything these tests wait on (a hibernation comes
/// 250 ms after a response); a wait this long means it was not coming.
const PATIENCE: Duration = Duration::from_secs(10);

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n";
/// A protected path without a token: 401, told apart from `/health`'s 200.
const UNAUTHORIZED: &[u8] = b"GET /private HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// The value of an unlabelled metric.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Waits until `count` connections hibernated in all and `now` are
/// hibernated.
async fn wait_for_hibernation(gw: &TestGateway, count: u64, now: u64) {
    let reached = common::eventually_async(PATIENCE, Duration::from_millis(50), || async {
        let text = gw.metrics_text().await;
        metric(&text, "clawgate_connection_hibernations_total") >= count
            && metric(&text, "clawgate_hibernated_connections") == now
    })
    .await;
    let text = gw.metrics_text().await;
    assert!(
        reached,
        "no hibernation ({count} in all, {now} now):\n{text}"
    );
}

/// Reads one response (head and `Content-Length` body) from `pending`
/// topped up from `tls`; returns its status code and body, leaving any
/// byte after it in `pending`.
async fn read_response(tls: &mut TlsStream<TcpStream>, pending: &mut Vec<u8>) -> (u16, String) {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if pending.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body =
                    String::from_utf8_lossy(&pending[end + 4..end + 4 + length]).into_owned();
                pending.drain(..end + 4 + length);
                return (status, body);
            }
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, tls.read(&mut buf))
            .await
            .expect("no response")
            .unwrap();
        assert!(n > 0, "closed before a whole response: {pending:?}");
        pending.extend_from_slice(&buf[..n]);
    }
}

async fn http1(gw: &TestGateway) -> TlsStream<TcpStream> {
    TestClient::with_alpn(&gw.ca_path(), &[b"http/1.1"])
        .connect(gw.addr())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_hibernated_connection_serves_the_next_request_and_a_pipelined_pair_in_order() {
    let gw = TestGateway::start(|_, _| {}).await;
    let mut tls = http1(&gw).await;
    let mut pending = Vec::new();
    tls.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut tls, &mut pending).await.0, 200);
    wait_for_hibernation(&gw, 1, 1).await;

    tls.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut tls, &mut pending).await.0, 200);
    wait_for_hibernation(&gw, 2, 1).await;

    // Two requests in one write wake it: both answered, in order.
    tls.write_all(&[UNAUTHORIZED, HEALTH].concat())
        .await
        .unwrap();
    assert_eq!(read_response(&mut tls, &mut pending).await.0, 401);
    assert_eq!(read_response(&mut tls, &mut pending).await.0, 200);
    assert!(pending.is_empty(), "{pending:?}");
    let text = gw.metrics_text().await;
    assert_eq!(metric(&text, "clawgate_open_connections"), 1, "{text}");
}

#[tokio::test]
async fn a_request_sent_in_two_halves_across_a_hibernation_is_answered() {
    let gw = TestGateway::start(|_, _| {}).await;
    let mut tls = http1(&gw).await;
    let mut pending = Vec::new();
    // The first half arrives while hyper serves the connection: it is in
    // hyper's read buffer when the connection hibernates.
    tls.write_all(HEALTH).await.unwrap();
    let (first, second) = UNAUTHORIZED.split_at(9);
    assert_eq!(read_response(&mut tls, &mut pending).await.0, 200);
    tls.write_all(first).await.unwrap();
    wait_for_hibernation(&gw, 1, 1).await;
    // One byte wakes it; it hibernates again with both parts kept.
    tls.write_all(&second[..1]).await.unwrap();
    wait_for_hibernation(&gw, 2, 1).await;
    tls.write_all(&second[1..]).await.unwrap();
    assert_eq!(read_response(&mut tls, &mut pending).await.0, 401);
    // And the connection is still good for another request.
    tls.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut tls, &mut pending).await.0, 200);
}

#[tokio::test]
async fn idle_timeout_closes_a_hibernated_connection() {
    let gw = TestGateway::start(|c, _| c.server.idle_timeout = Duration::from_secs(2)).await;
    let mut tls = http1(&gw).await;
    let mut pending = Vec::new();
    tls.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut tls, &mut pending).await.0, 200);
    wait_for_hibernation(&gw, 1, 1).await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, tls.read(&mut buf))
        .await
        .expect("a hibernated connection stayed open past idle_timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let line = "clawgate_connections_timed_out_total{deadline=\"idle\"} 1";
    let text = gw.metrics_with(line).await;
    assert!(text.contains(line), "{text}");
    // The connection's task, on a worker thread, leaves the gauge as it
    // ends, just after the close the client saw.
    wait_for_hibernation(&gw, 1, 0).await;
}

#[tokio::test]
async fn a_head_trickled_across_hibernations_is_still_cut_at_the_head_deadline() {
    // hyper's head timer starts when a response ends; rebuilding the
    // connection after each hibernation must not restart it.
    let gw =
        TestGateway::start(|c, _| c.server.header_read_timeout = Duration::from_millis(800)).await;
    let mut tls = http1(&gw).await;
    let mut pending = Vec::new();
    tls.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut tls, &mut pending).await.0, 200);
    let mut closed = false;
    // One byte every 400 ms (each after a hibernation) for up to 8 s.
    for byte in HEALTH.iter().take(20) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if tls.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(read) = tokio::time::timeout(Duration::from_millis(1), tls.read(&mut buf)).await {
            assert!(
                matches!(read, Ok(0) | Err(_)),
                "answered a partial head: {read:?}"
            );
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickled head outlived header_read_timeout");
    let text = gw.metrics_text().await;
    assert!(
        metric(&text, "clawgate_connection_hibernations_total") >= 1,
        "{text}"
    );
}

#[tokio::test]
async fn a_websocket_opens_on_a_connection_that_hibernated() {
    let (gw, _upstream, _) = gateway_with_upstream(|_, _| {}).await;
    let token = gw.token("alice", &[]);
    let mut tls = http1(&gw).await;
    let mut pending = Vec::new();
    tls.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut tls, &mut pending).await.0, 200);
    wait_for_hibernation(&gw, 1, 1).await;

    let mut req = format!("wss://localhost:{}/ws", gw.addr().port())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("clawgate.bearer, {token}").parse().unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("hello"));
}

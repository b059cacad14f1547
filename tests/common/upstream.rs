//! Real upstream services on 127.0.0.1 for proxy tests: echo (returns
//! what it received as JSON), download, SSE, WebSocket echo, slow, and a
//! response with hop-by-hop headers.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue};
use ring::digest::{Context as Sha, SHA256};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Default)]
pub struct Upstream {
    pub ws_protocols: Arc<Mutex<Vec<Option<String>>>>,
    pub ws_closed: Arc<Notify>,
    pub sse_finish: Arc<Notify>,
    /// Notified when a `/delay` request arrives (it is then in flight).
    pub delay_started: Arc<Notify>,
}

pub async fn spawn_upstream() -> (SocketAddr, Upstream) {
    let state = Upstream::default();
    let app = Router::new()
        .route("/download", get(download))
        .route("/sse", get(sse))
        .route("/ws", get(ws))
        .route("/slow", get(slow))
        .route("/delay", get(delay))
        .route("/hop", get(hop_response))
        .fallback(echo)
        .with_state(state.clone());
    (serve(app).await, state)
}

pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Returns what it received: method, URI, headers, body length and SHA-256.
pub async fn echo(req: Request) -> axum::Json<Value> {
    let (parts, body) = req.into_parts();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(value);
    }
    let (mut sha, mut len, mut text) = (Sha::new(&SHA256), 0, Vec::new());
    let mut stream = body.into_data_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        sha.update(&chunk);
        len += chunk.len();
        if text.len() < 1024 {
            text.extend_from_slice(&chunk);
        }
    }
    axum::Json(json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_len": len,
        "body_sha256": hex(sha.finish().as_ref()),
        "body": String::from_utf8_lossy(&text),
    }))
}

pub async fn download(Query(q): Query<BTreeMap<String, usize>>) -> Body {
    let total = q.get("bytes").copied().unwrap_or(0);
    let chunks = (0..total).step_by(CHUNK).map(move |start| {
        Ok::<_, Infallible>(Bytes::from(pattern(start, CHUNK.min(total - start))))
    });
    Body::from_stream(futures_util::stream::iter(chunks))
}

pub const CHUNK: usize = 64 * 1024;

pub fn pattern(start: usize, len: usize) -> Vec<u8> {
    (start..start + len).map(|i| (i % 251) as u8).collect()
}

pub async fn sse(State(state): State<Upstream>) -> Response {
    let first = futures_util::stream::once(async { Ok::<_, Infallible>("data: one\n\n") });
    let rest = futures_util::stream::once(async move {
        state.sse_finish.notified().await;
        Ok("data: two\n\n")
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(first.chain(rest)),
    )
        .into_response()
}

pub async fn ws(
    State(state): State<Upstream>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let offered = headers
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    state.ws_protocols.lock().unwrap().push(offered);
    upgrade
        .protocols(["chat"])
        .on_upgrade(move |socket| ws_echo(socket, state))
}

pub async fn ws_echo(mut socket: WebSocket, state: Upstream) {
    while let Some(Ok(msg)) = socket.recv().await {
        if let AxMessage::Text(_) | AxMessage::Binary(_) = msg
            && socket.send(msg).await.is_err()
        {
            break;
        }
    }
    state.ws_closed.notify_one();
}

/// Answers after `?ms=N` milliseconds.
pub async fn delay(
    State(state): State<Upstream>,
    Query(q): Query<BTreeMap<String, u64>>,
) -> &'static str {
    state.delay_started.notify_one();
    tokio::time::sleep(Duration::from_millis(q.get("ms").copied().unwrap_or(0))).await;
    "done"
}

pub async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(30)).await;
    "too late"
}

pub async fn hop_response() -> Response {
    let mut response = "ok".into_response();
    let h = response.headers_mut();
    h.insert("connection", HeaderValue::from_static("x-upstream-private"));
    h.insert("x-upstream-private", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
    h.insert(
        "strict-transport-security",
        HeaderValue::from_static("max-age=1"),
    );
    h.insert("x-upstream-public", HeaderValue::from_static("1"));
    response
}

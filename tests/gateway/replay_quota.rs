//! Issue 11, items 4–6, against the real server over TLS: a captured
//! request replayed right after a restart, lower-case protected methods,
//! and shared quotas (nonce capacity, login limit, pairing lockout) that one
//! client could drain for everyone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use bytes::Bytes;
use clawgate::Config;
use clawgate::binding_client::BindingClient;
use clawgate::config::{BindingPolicy, UserConfig};
use clawgate::gateway::Gateway;
use clawgate::gateway::session_manager::credentials::insecure_hash_password_for_tests;
use common::{TestClient, TestGateway, TestResponse, authed, post_json, replay_headers, send_on};
use http_body_util::Full;
use hyper::Request;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

const PASSWORD: &str = "correct horse";

fn user(name: &str) -> UserConfig {
    UserConfig {
        name: name.to_owned(),
        password_hash: insecure_hash_password_for_tests(PASSWORD).unwrap(),
        scopes: vec![],
    }
}

/// An upstream that counts every request it receives and answers 200.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = Router::new().fallback(move || {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "reached"
        }
    });
    (common::upstream::serve(app).await, hits)
}

async fn gateway_counting(
    tweak: impl FnOnce(&mut Config, &Path),
) -> (TestGateway, Arc<AtomicUsize>) {
    let (addr, hits) = counting_upstream().await;
    let gw = TestGateway::start(|c, dir| {
        c.upstream.url = Some(format!("http://{addr}"));
        tweak(c, dir);
    })
    .await;
    (gw, hits)
}

/// Stops `gw` and starts a new process on the same config and directories.
async fn restart(gw: TestGateway) -> TestGateway {
    let TestGateway {
        running,
        dir,
        config,
    } = gw;
    running.shutdown().await;
    let running = Gateway::build(config.clone())
        .unwrap()
        .start()
        .await
        .unwrap();
    TestGateway {
        running,
        dir,
        config,
    }
}

/// Writes `bytes` as they are on a fresh HTTP/1.1 TLS connection and
/// returns the status and the whole response text (the request must ask
/// for `Connection: close`).
async fn raw_h1(gw: &TestGateway, bytes: &[u8]) -> (u16, String) {
    let client = TestClient::with_alpn(&gw.ca_path(), &[b"http/1.1"]);
    let mut tls = client.connect(gw.addr()).await.unwrap();
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (status, text)
}

/// One request from source address `ip` (any 127.0.0.0/8 address works on
/// loopback), so the gateway sees a different client.
async fn send_from(gw: &TestGateway, ip: [u8; 4], req: Request<Full<Bytes>>) -> TestResponse {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), 0))
        .unwrap();
    let tcp = socket.connect(gw.addr()).await.unwrap();
    let connector = TlsConnector::from(Arc::clone(&gw.client().config));
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    send_on(tls, req).await
}

fn login_request(name: &str, password: &str) -> Request<Full<Bytes>> {
    post_json(
        "/auth/login",
        &json!({ "username": name, "password": password }),
    )
}

fn pair_request(code: &str) -> Request<Full<Bytes>> {
    Request::post("/auth/pair")
        .header("x-pairing-code", code)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A POST with fresh replay headers.
fn protected(method: &str, token: &str) -> Request<Full<Bytes>> {
    let (nonce, ts) = replay_headers();
    let mut req = authed(method, "/items", token, "{}");
    let headers = req.headers_mut();
    headers.insert("x-request-nonce", nonce.parse().unwrap());
    headers.insert("x-request-timestamp", ts.parse().unwrap());
    req
}

// ---- item 4: replay right after a restart -------------------------------

#[tokio::test]
async fn plain_nonce_request_replayed_after_a_restart_is_refused() {
    let (gw, hits) = gateway_counting(|_, _| {}).await;
    let token = gw.token("alice", &[]);
    let (nonce, ts) = replay_headers();
    let captured = format!(
        "POST /items HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         X-Request-Nonce: {nonce}\r\nX-Request-Timestamp: {ts}\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let (status, text) = raw_h1(&gw, captured.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = raw_h1(&gw, captured.as_bytes()).await;
    assert_eq!(status, 409, "replayed before the restart: {text}");

    let gw = restart(gw).await;
    let (status, text) = raw_h1(&gw, captured.as_bytes()).await;
    assert_eq!(status, 400, "replay accepted after a restart: {text}");
    assert!(text.contains("replay_timestamp_stale"), "{text}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the upstream saw a replay");
    // A fresh request of the same session is accepted at once.
    let fresh = gw.client().send(gw.addr(), protected("POST", &token)).await;
    assert_eq!(fresh.status, 200, "{fresh:?}");
}

#[tokio::test]
async fn proof_bound_request_replayed_after_a_restart_is_refused() {
    let (gw, hits) = gateway_counting(|c, _| {
        c.auth.users = vec![user("alice")];
        c.auth.binding = BindingPolicy::Optional;
    })
    .await;
    let key = BindingClient::generate().unwrap();
    let body = json!({ "username": "alice", "password": PASSWORD,
        "client_key": key.key().public_paserk() });
    let reply = gw
        .client()
        .send(gw.addr(), post_json("/auth/login", &body))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let token = reply.json()["session_token"].as_str().unwrap().to_owned();
    let proof = key.proof("POST", "/items", &token).unwrap();
    let captured = format!(
        "POST /items HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Clawgate-Proof: {proof}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let (status, text) = raw_h1(&gw, captured.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = raw_h1(&gw, captured.as_bytes()).await;
    assert!(text.contains("proof_replayed"), "{status}: {text}");

    let gw = restart(gw).await;
    let (status, text) = raw_h1(&gw, captured.as_bytes()).await;
    assert_eq!(status, 401, "proof replay accepted after a restart: {text}");
    assert!(text.contains("proof_stale"), "{text}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the upstream saw a replay");
    let mut fresh = Request::post("/items")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    key.attach(&mut fresh, &token).unwrap();
    let fresh = gw.client().send(gw.addr(), fresh).await;
    assert_eq!(fresh.status, 200, "{fresh:?}");
}

// ---- item 5: protected methods in any case ------------------------------

#[tokio::test]
async fn lower_case_protected_methods_need_a_nonce_over_http1_and_http2() {
    let (gw, hits) = gateway_counting(|_, _| {}).await;
    let token = gw.token("alice", &[]);
    for method in ["post", "Post", "pOST", "put", "patch", "delete", "Delete"] {
        let raw = format!(
            "{method} /items HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let (status, text) = raw_h1(&gw, raw.as_bytes()).await;
        assert_eq!(status, 400, "HTTP/1.1 {method} without a nonce: {text}");
        assert!(text.contains("replay_nonce_missing"), "{method}: {text}");
    }
    // HTTP/2: `:method: post` (hyper sends an extension method verbatim).
    for method in ["post", "Put"] {
        let resp = gw
            .client()
            .send(gw.addr(), authed(method, "/items", &token, "{}"))
            .await;
        assert_eq!(resp.status, 400, "HTTP/2 {method}: {resp:?}");
        assert_eq!(resp.json()["error"], "replay_nonce_missing");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the upstream saw an unsafe request without a nonce"
    );
    // With its nonce, a lower-case POST is a protected request like any other.
    let ok = gw.client().send(gw.addr(), protected("post", &token)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

// ---- item 6: shares that one client cannot drain ------------------------

#[tokio::test]
async fn one_session_cannot_take_the_nonce_capacity_of_others() {
    let (gw, _hits) = gateway_counting(|c, _| {
        c.replay.max_nonces = 4;
        c.replay.max_nonces_per_session = 2;
        c.replay.max_nonces_per_subject = 3;
    })
    .await;
    let client = gw.client();
    let x = gw.token("mallory", &[]);
    for _ in 0..2 {
        let ok = client.send(gw.addr(), protected("POST", &x)).await;
        assert_eq!(ok.status, 200, "{ok:?}");
    }
    let over = client.send(gw.addr(), protected("POST", &x)).await;
    assert_eq!(over.status, 429, "session past its share: {over:?}");
    assert_eq!(over.json()["error"], "replay_quota_exhausted");
    // A second session of the same subject gets only the subject's rest.
    let x2 = gw.token("mallory", &[]);
    let ok = client.send(gw.addr(), protected("POST", &x2)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let over = client.send(gw.addr(), protected("PUT", &x2)).await;
    assert_eq!(over.status, 429, "subject past its share: {over:?}");
    // Everyone else still has capacity.
    let y = gw.token("bob", &[]);
    let ok = client.send(gw.addr(), protected("POST", &y)).await;
    assert_eq!(ok.status, 200, "another user locked out: {ok:?}");
}

#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_the_user_out_elsewhere() {
    let gw = TestGateway::start(|c, _| {
        c.auth.users = vec![user("alice")];
        c.auth.login_attempts_per_user_per_minute = 15;
    })
    .await;
    const STRANGER: [u8; 4] = [127, 0, 0, 2];
    for i in 0..10 {
        let r = send_from(&gw, STRANGER, login_request("alice", "guess")).await;
        assert_eq!(r.status, 401, "attempt {i}: {r:?}");
    }
    let r = send_from(&gw, STRANGER, login_request("alice", "guess")).await;
    assert_eq!(r.status, 429, "the stranger's own budget is spent: {r:?}");
    let alice = send_from(&gw, [127, 0, 0, 3], login_request("alice", PASSWORD)).await;
    assert_eq!(
        alice.status, 200,
        "alice locked out by a stranger: {alice:?}"
    );
    // The per-user ceiling (15 here: 10 wrong + alice's 1 so far) still
    // bounds guessing from many addresses.
    for i in 0..4 {
        let r = send_from(&gw, [127, 0, 0, 4], login_request("alice", "guess")).await;
        assert_eq!(r.status, 401, "attempt {i}: {r:?}");
    }
    let r = send_from(&gw, [127, 0, 0, 5], login_request("alice", PASSWORD)).await;
    assert_eq!(r.status, 429, "the per-user ceiling must hold: {r:?}");
}

#[tokio::test]
async fn wrong_pairing_codes_lock_out_only_their_address() {
    let gw = TestGateway::start(|_, _| {}).await;
    let code = gw.pairing_code();
    const STRANGER: [u8; 4] = [127, 0, 0, 2];
    for _ in 0..5 {
        let r = send_from(&gw, STRANGER, pair_request("AAAA-AAAA-AAAA")).await;
        assert!(r.status == 401 || r.status == 429, "{r:?}");
    }
    let r = send_from(&gw, STRANGER, pair_request(&code)).await;
    assert_eq!(r.status, 429, "the guessing address stays locked: {r:?}");
    assert_eq!(r.json()["error"], "pairing_locked");
    let owner = send_from(&gw, [127, 0, 0, 3], pair_request(&code)).await;
    assert_eq!(owner.status, 200, "the owner was locked out: {owner:?}");
}

#[tokio::test]
async fn wrong_pairing_codes_from_many_addresses_hit_the_global_backstop() {
    let gw = TestGateway::start(|c, _| {
        c.auth.pairing_max_attempts = 6;
        c.auth.pairing_max_attempts_per_client = 5;
    })
    .await;
    let code = gw.pairing_code();
    for ip in [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]] {
        for _ in 0..2 {
            let r = send_from(&gw, ip, pair_request("AAAA-AAAA-AAAA")).await;
            assert!(r.status == 401 || r.status == 429, "{r:?}");
        }
    }
    let r = send_from(&gw, [127, 0, 0, 5], pair_request(&code)).await;
    assert_eq!(
        r.status, 429,
        "six wrong codes in all must lock pairing: {r:?}"
    );
    assert_eq!(r.json()["error"], "pairing_locked");
}

//! A whole session life cycle with every log event captured (TRACE level,
//! JSON): no token, password, pairing code or key material may appear.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;

use common::logs::Logs;

use bytes::Bytes;
use clawgate::config::UserConfig;
use clawgate::gateway::session_manager::credentials::insecure_hash_password_for_tests;
use common::{authed, gateway_with_upstream, post_json};
use http_body_util::Full;
use hyper::Request;
use serde_json::json;

/// The capture is this test's alone, on every thread of its runtime,
/// including the blocking pool where login and refresh run.
#[test]
fn a_whole_session_life_cycle_logs_no_secret() {
    common::with_captured_logs(|| async { life_cycle(&common::captured_logs()).await });
}

async fn life_cycle(captured: &Logs) {
    let password = "hunter2-very-secret";
    let (gw, _, _) = gateway_with_upstream(|c, _| {
        c.auth.users = vec![UserConfig {
            name: "alice".into(),
            password_hash: insecure_hash_password_for_tests(password).unwrap(),
            scopes: vec!["admin".into()],
        }];
    })
    .await;
    let client = gw.client();
    let code = gw.pairing_code();
    let mut secrets = vec![password.to_owned(), code.clone()];

    let pair = Request::post("/auth/pair")
        .header("x-pairing-code", code)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let paired = client.send(gw.addr(), pair).await.json();
    let wrong = client
        .send(
            gw.addr(),
            post_json(
                "/auth/login",
                &json!({"username": "alice", "password": "wrong-pass-123"}),
            ),
        )
        .await;
    assert_eq!(wrong.status, 401);
    secrets.push("wrong-pass-123".into());
    let login = client
        .send(
            gw.addr(),
            post_json(
                "/auth/login",
                &json!({"username": "alice", "password": password}),
            ),
        )
        .await
        .json();
    for body in [&paired, &login] {
        for field in ["session_token", "refresh_token"] {
            if let Some(t) = body[field].as_str() {
                secrets.push(t.to_owned());
            }
        }
    }
    let session = login["session_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = client
        .send(
            gw.addr(),
            post_json("/auth/refresh", &json!({"refresh_token": refresh})),
        )
        .await
        .json();
    let new_session = refreshed["session_token"].as_str().unwrap().to_owned();
    secrets.push(new_session.clone());
    secrets.push(refreshed["refresh_token"].as_str().unwrap().to_owned());
    let _ = client
        .send(gw.addr(), authed("GET", "/api/x", &new_session, ""))
        .await;
    let _ = client
        .send(gw.addr(), authed("POST", "/api/x", &new_session, "body"))
        .await; // replay refusal
    let _ = client
        .send(
            gw.addr(),
            authed("GET", "/api/x", "v4.public.forged-token-value", ""),
        )
        .await;
    secrets.push("forged-token-value".into());
    let _ = client
        .send(
            gw.addr(),
            post_json("/auth/refresh", &json!({"refresh_token": refresh})),
        )
        .await; // reuse
    let _ = client
        .send(gw.addr(), authed("POST", "/auth/logout", &session, ""))
        .await;
    // Key material: the signing key file content.
    for entry in std::fs::read_dir(&gw.config.tokens.keys_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            secrets.push(std::fs::read_to_string(path).unwrap().trim().to_owned());
        }
    }
    let cert_key = std::fs::read_to_string(gw.config.tls.cert_dir.join("gateway.key")).unwrap();
    secrets.push(cert_key.lines().nth(1).unwrap().to_owned());

    let logs = captured.text();
    assert!(
        logs.contains("auth_rejected"),
        "the life cycle must have produced auth logs:\n{logs}"
    );
    for secret in &secrets {
        // Tokens are also checked by their signature-bearing tail.
        let probe = if secret.len() > 40 {
            &secret[secret.len() - 40..]
        } else {
            secret.as_str()
        };
        assert!(
            !logs.contains(probe),
            "secret leaked into logs ({} chars): {probe}\n{logs}",
            secret.len()
        );
    }
}

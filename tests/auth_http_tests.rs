//! Sessions through the real HTTPS server: pairing, login, refresh,
//! logout, listing, admin revocation, restart durability, degraded store,
//! key rotation while serving, and the published keys.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clawgate::config::UserConfig;
use clawgate::gateway::credentials::insecure_hash_password_for_tests;
use clawgate::gateway::keyring;
use common::{TestGateway, TestResponse, authed, eventually, post_json};
use http_body_util::Full;
use hyper::Request;
use serde_json::json;

const HSTS: &str = "max-age=31536000; includeSubDomains";

fn user(name: &str, password: &str, scopes: &[&str]) -> UserConfig {
    UserConfig {
        name: name.to_owned(),
        password_hash: insecure_hash_password_for_tests(password).unwrap(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

async fn login(gw: &TestGateway, name: &str, password: &str) -> TestResponse {
    gw.client()
        .send(
            gw.addr(),
            post_json(
                "/auth/login",
                &json!({"username": name, "password": password}),
            ),
        )
        .await
}

async fn get_session(gw: &TestGateway, token: &str) -> TestResponse {
    gw.client()
        .send(gw.addr(), authed("GET", "/auth/session", token, ""))
        .await
}

async fn admin_revoke(gw: &TestGateway, token: &str, body: serde_json::Value) -> TestResponse {
    gw.client()
        .send(
            gw.addr(),
            with_json(authed("POST", "/admin/revoke", token, ""), &body),
        )
        .await
}

fn assert_token_response(resp: &TestResponse) {
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(resp.header("strict-transport-security"), Some(HSTS));
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["session_token"]
            .as_str()
            .unwrap()
            .starts_with("v4.public.")
    );
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    assert!(body["expires_at"].is_string());
}

#[tokio::test]
async fn pairing_code_is_exchanged_once_for_tokens() {
    let gw = TestGateway::start(|_, _| {}).await;
    let code = gw.pairing_code();
    let client = gw.client();
    let pair = |code: String| {
        let req = Request::post("/auth/pair")
            .header("x-pairing-code", code)
            .body(Full::new(Bytes::new()))
            .unwrap();
        client.send(gw.addr(), req)
    };
    let first = pair(code.clone()).await;
    assert_token_response(&first);
    let token = first.json()["session_token"].as_str().unwrap().to_owned();
    let session = get_session(&gw, &token).await;
    assert_eq!(session.status, 200);
    assert!(!session.body.is_empty());
    let again = pair(code).await;
    assert!(again.status >= 400, "{again:?}");
    assert!(!String::from_utf8_lossy(&again.body).contains(&token));
}

#[tokio::test]
async fn wrong_pairing_codes_lock_pairing_out() {
    let gw = TestGateway::start(|c, _| c.auth.pairing_max_attempts = 3).await;
    let code = gw.pairing_code();
    for _ in 0..3 {
        let req = Request::post("/auth/pair")
            .header("x-pairing-code", "AAAA-AAAA-AAAA")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert!(gw.client().send(gw.addr(), req).await.status >= 400);
    }
    let req = Request::post("/auth/pair")
        .header("x-pairing-code", code)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let locked = gw.client().send(gw.addr(), req).await;
    assert!(
        locked.status >= 400,
        "the right code must be refused during lockout: {locked:?}"
    );
}

#[tokio::test]
async fn login_refresh_logout_round_trip() {
    let gw =
        TestGateway::start(|c, _| c.auth.users = vec![user("alice", "correct horse", &["read"])])
            .await;
    let resp = login(&gw, "alice", "correct horse").await;
    assert_token_response(&resp);
    let body = resp.json();
    let (session, refresh) = (
        body["session_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    );

    let info = get_session(&gw, &session).await;
    assert_eq!(info.status, 200);
    assert_eq!(info.header("cache-control"), Some("no-store"));
    let text = String::from_utf8_lossy(&info.body).to_string();
    assert!(text.contains("idle") && text.contains("absolute"), "{text}");

    let refreshed = gw
        .client()
        .send(
            gw.addr(),
            post_json("/auth/refresh", &json!({"refresh_token": refresh})),
        )
        .await;
    assert_token_response(&refreshed);
    let new_session = refreshed.json()["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_session, session);

    let listed = gw
        .client()
        .send(gw.addr(), authed("GET", "/auth/sessions", &new_session, ""))
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["sessions"].as_array().unwrap().len(), 1);

    let out = gw
        .client()
        .send(gw.addr(), authed("POST", "/auth/logout", &new_session, ""))
        .await;
    assert_eq!(out.status, 200);
    let after = get_session(&gw, &new_session).await;
    assert_eq!(after.status, 401);
    assert_eq!(
        after.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer() {
    let gw = TestGateway::start(|c, _| c.auth.users = vec![user("alice", "pw", &[])]).await;
    let unknown = login(&gw, "nobody", "pw").await;
    let wrong = login(&gw, "alice", "nope").await;
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(unknown.body, wrong.body);
    assert_eq!(unknown.status, 401);
}

#[tokio::test]
async fn refresh_token_reuse_revokes_the_family() {
    let gw = TestGateway::start(|c, _| {
        c.auth.users = vec![user("alice", "pw", &[])];
        c.tokens.refresh_grace = Duration::ZERO;
    })
    .await;
    let body = login(&gw, "alice", "pw").await.json();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let first = gw
        .client()
        .send(
            gw.addr(),
            post_json("/auth/refresh", &json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(first.status, 200);
    let rotated = first.json()["session_token"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await; // past a zero grace on a whole-second clock
    let reused = gw
        .client()
        .send(
            gw.addr(),
            post_json("/auth/refresh", &json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(reused.status, 401, "{reused:?}");
    let after = get_session(&gw, &rotated).await;
    assert_eq!(after.status, 401, "family must be revoked after reuse");
}

#[tokio::test]
async fn sixth_login_evicts_the_first_session() {
    let gw = TestGateway::start(|c, _| c.auth.users = vec![user("alice", "pw", &[])]).await;
    let mut tokens = Vec::new();
    for _ in 0..6 {
        tokens.push(
            login(&gw, "alice", "pw").await.json()["session_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let first = get_session(&gw, &tokens[0]).await;
    assert_eq!(first.status, 401);
    let last = get_session(&gw, &tokens[5]).await;
    assert_eq!(last.status, 200);
}

#[tokio::test]
async fn admin_revoke_needs_the_admin_scope() {
    let gw = TestGateway::start(|_, _| {}).await;
    let plain = gw.token("bob", &[]);
    let admin = gw.token("root", &["admin"]);
    let victim = gw.token("carol", &[]);
    let denied = admin_revoke(&gw, &plain, json!({"sub": "carol"})).await;
    assert_eq!(denied.status, 403, "{denied:?}");
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\"")
    );
    let ok = admin_revoke(&gw, &admin, json!({"sub": "carol"})).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let after = get_session(&gw, &victim).await;
    assert_eq!(after.status, 401);
}

fn with_json(mut req: Request<Full<Bytes>>, body: &serde_json::Value) -> Request<Full<Bytes>> {
    *req.body_mut() = Full::new(Bytes::from(body.to_string()));
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    req
}

#[tokio::test]
async fn revoked_token_stays_rejected_after_a_restart() {
    let gw = TestGateway::start(|_, _| {}).await;
    let token = gw.token("alice", &[]);
    let out = gw
        .client()
        .send(gw.addr(), authed("POST", "/auth/logout", &token, ""))
        .await;
    assert_eq!(out.status, 200);
    let TestGateway {
        running,
        dir,
        config,
    } = gw;
    running.shutdown().await;
    let restarted = clawgate::gateway::Gateway::build(config.clone())
        .unwrap()
        .start()
        .await
        .unwrap();
    let gw = TestGateway {
        running: restarted,
        dir,
        config,
    };
    let resp = get_session(&gw, &token).await;
    assert_eq!(resp.status, 401, "revocation lost across restart");
}

#[tokio::test]
async fn failing_store_degrades_health_but_still_enforces() {
    let gw = TestGateway::start(|c, dir| {
        // A file where the state directory should be: nothing can be written.
        std::fs::write(dir.join("state-file"), b"x").unwrap();
        c.state.dir = dir.join("state-file");
    })
    .await;
    let token = gw.token("alice", &[]);
    let out = gw
        .client()
        .send(gw.addr(), authed("POST", "/auth/logout", &token, ""))
        .await;
    assert_eq!(out.status, 200);
    let resp = get_session(&gw, &token).await;
    assert_eq!(resp.status, 401, "revocation must hold in memory");
    let health = gw.client().get(gw.addr(), "/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "degraded");
}

#[tokio::test]
async fn key_rotation_while_serving_keeps_old_tokens_and_signs_with_the_new_key() {
    let gw =
        TestGateway::start(|c, _| c.tokens.key_poll_interval = Duration::from_millis(100)).await;
    let old = gw.token("alice", &[]);
    let keys_dir = gw.config.tokens.keys_dir.clone();
    let new_key = keyring::rotate(&keys_dir, SystemTime::now() + Duration::from_secs(1)).unwrap();
    let sessions = gw.running.sessions().clone();
    let picked_up = eventually(Duration::from_secs(5), || {
        sessions
            .keyring()
            .signer()
            .map(|s| s.kid() == new_key.kid)
            .unwrap_or(false)
    })
    .await;
    assert!(picked_up, "rotation not picked up without a restart");
    let new = gw.token("alice", &[]);
    assert_ne!(old, new);
    for token in [&old, &new] {
        let resp = get_session(&gw, token).await;
        assert_eq!(resp.status, 200);
    }
    let keys = gw
        .client()
        .get(gw.addr(), "/.well-known/paseto-keys")
        .await
        .json();
    let kids: Vec<_> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert!(kids.contains(&new_key.kid));
    assert_eq!(kids.len(), 2);
    assert!(
        keys["keys"][0]["public"]
            .as_str()
            .unwrap()
            .starts_with("k4.public.")
    );
}

#[tokio::test]
async fn malformed_authorization_is_400_invalid_request() {
    let gw = TestGateway::start(|_, _| {}).await;
    let req = Request::get("/auth/session")
        .header("authorization", "Basic abc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = gw.client().send(gw.addr(), req).await;
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer error=\"invalid_request\"")
    );
    let resp = gw
        .client()
        .send(
            gw.addr(),
            authed("GET", "/auth/session", "v4.public.garbage", ""),
        )
        .await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error"], "invalid_token");
    assert!(!String::from_utf8_lossy(&resp.body).contains("garbage"));
}

fn session_token(resp: &TestResponse) -> String {
    resp.json()["session_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_user_ends_one_of_their_own_sessions_but_not_someone_elses() {
    let gw = TestGateway::start(|c, _| {
        c.auth.users = vec![
            user("alice", "pw-alice-1", &[]),
            user("carol", "pw-carol-1", &[]),
        ];
    })
    .await;
    let phone = session_token(&login(&gw, "alice", "pw-alice-1").await);
    let laptop = session_token(&login(&gw, "alice", "pw-alice-1").await);
    let carol = session_token(&login(&gw, "carol", "pw-carol-1").await);

    let listed = gw
        .client()
        .send(gw.addr(), authed("GET", "/auth/sessions", &phone, ""))
        .await
        .json();
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{listed}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let laptop_sid = get_session(&gw, &laptop).await.json()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sessions.iter().any(|s| s["sid"] == laptop_sid.as_str()));

    let carol_sid = get_session(&gw, &carol).await.json()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign = gw
        .client()
        .send(
            gw.addr(),
            authed("DELETE", &format!("/auth/sessions/{carol_sid}"), &phone, ""),
        )
        .await;
    assert_eq!(
        foreign.status, 404,
        "another user's session is not found: {foreign:?}"
    );
    assert_eq!(get_session(&gw, &carol).await.status, 200);

    let ended = gw
        .client()
        .send(
            gw.addr(),
            authed(
                "DELETE",
                &format!("/auth/sessions/{laptop_sid}"),
                &phone,
                "",
            ),
        )
        .await;
    assert_eq!(ended.status, 200, "{ended:?}");
    assert_eq!(get_session(&gw, &laptop).await.status, 401);
    assert_eq!(
        get_session(&gw, &phone).await.status,
        200,
        "only the named session ends"
    );
}

#[tokio::test]
async fn admin_revokes_exactly_one_token_or_one_session() {
    let gw = TestGateway::start(|_, _| {}).await;
    let admin = gw.token("root", &["admin"]);
    let (first, second) = (gw.token("bob", &[]), gw.token("bob", &[]));
    let revoke = |body: serde_json::Value| admin_revoke(&gw, &admin, body);
    let first_jti = get_session(&gw, &first).await.json()["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(revoke(json!({"jti": first_jti})).await.status, 200);
    assert_eq!(get_session(&gw, &first).await.status, 401);
    assert_eq!(
        get_session(&gw, &second).await.status,
        200,
        "a jti names one token"
    );

    let second_sid = get_session(&gw, &second).await.json()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(revoke(json!({"sid": second_sid})).await.status, 200);
    assert_eq!(get_session(&gw, &second).await.status, 401);

    // Exactly one target per call: an ambiguous or empty body revokes nothing.
    let third = gw.token("bob", &[]);
    let third_jti = get_session(&gw, &third).await.json()["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    for body in [json!({"jti": third_jti, "sub": "bob"}), json!({})] {
        let refused = revoke(body.clone()).await;
        assert_eq!(refused.status, 400, "{body}: {refused:?}");
        assert_eq!(refused.json()["error"], "invalid_request");
    }
    assert_eq!(get_session(&gw, &third).await.status, 200);
    assert_eq!(get_session(&gw, &admin).await.status, 200);
}

#[tokio::test]
async fn bad_pairing_requests_are_refused_without_spending_the_code() {
    let gw = TestGateway::start(|_, _| {}).await;
    let code = gw.pairing_code();
    let client = gw.client();
    let bare = Request::post("/auth/pair")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let missing = client.send(gw.addr(), bare).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"], "invalid_request");

    let broken = Request::post("/auth/pair")
        .header("x-pairing-code", code.clone())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"bind\": ")))
        .unwrap();
    let broken = client.send(gw.addr(), broken).await;
    assert_eq!(
        broken.status, 400,
        "a broken body never yields an unbound session"
    );
    assert!(!String::from_utf8_lossy(&broken.body).contains(&code));

    let good = Request::post("/auth/pair")
        .header("x-pairing-code", code)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_token_response(&client.send(gw.addr(), good).await);
}

#[tokio::test]
async fn refresh_with_a_broken_body_is_400_and_names_the_expected_shape() {
    let gw = TestGateway::start(|_, _| {}).await;
    for body in [&b"not json"[..], b"{\"token\": \"x\"}", b""] {
        let req = Request::post("/auth/refresh")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let resp = gw.client().send(gw.addr(), req).await;
        assert_eq!(resp.status, 400, "{resp:?}");
        let text = resp.json()["message"].as_str().unwrap().to_owned();
        assert!(text.contains("refresh_token"), "{text}");
    }
}

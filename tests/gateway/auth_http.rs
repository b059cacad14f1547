//! Sessions through the real HTTPS server: pairing, login, refresh,
//! logout, listing, admin revocation, restart durability, degraded store,
//! key rotation while serving, and the published keys.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clawgate::Config;
use clawgate::clock::ManualClock;
use clawgate::config::{BindingPolicy, UserConfig};
use clawgate::gateway::Gateway;
use clawgate::gateway::session_manager::IssueMethod;
use clawgate::gateway::session_manager::credentials::insecure_hash_password_for_tests;
use clawgate::gateway::session_token::keyring::{self, KeyRing};
use clawgate::gateway::session_token::{self, TokenDraft, TokenPolicy, TokenType};
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
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let gw = start_with_clock(&clock, |c, _| {
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
    clock.advance(Duration::from_secs(2)); // past a zero grace on a whole-second clock
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
async fn health_of_a_degraded_store_names_a_code_never_a_path() {
    // Issue 11 item 9: `/health` is unauthenticated; it used to carry the
    // store's reason ("cannot read /…/state-file/revocations.jsonl: Not a
    // directory").
    let gw = TestGateway::start(|c, dir| {
        std::fs::write(dir.join("state-file"), b"x").unwrap();
        c.state.dir = dir.join("state-file");
    })
    .await;
    let health = gw.client().get(gw.addr(), "/health").await;
    assert_eq!(health.status, 200);
    let text = String::from_utf8_lossy(&health.body).into_owned();
    let body = health.json();
    assert_eq!(body["status"], "degraded", "{text}");
    assert_eq!(
        body["checks"]["revocation_store"], "journal_unreadable",
        "{text}"
    );
    let dir = gw.dir.path().display().to_string();
    for leak in [
        dir.as_str(),
        "state-file",
        "revocations.jsonl",
        "/",
        "directory",
    ] {
        assert!(!text.contains(leak), "/health leaks {leak:?}: {text}");
    }
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

// ------------------------------------------------ issue 11: state that lapses

const DAY: Duration = Duration::from_secs(86_400);

/// A gateway on a manual clock (every other part as in `TestGateway::start`).
async fn start_with_clock(
    clock: &Arc<ManualClock>,
    tweak: impl FnOnce(&mut Config, &std::path::Path),
) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let config = common::test_config(dir.path(), tweak);
    let running = Gateway::build_with_clock(config.clone(), clock.clone())
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

/// Stops `gw` and starts a new gateway on the same directories (the
/// journals are loaded and compacted again) and the same clock.
async fn restart(gw: TestGateway, clock: &Arc<ManualClock>) -> TestGateway {
    let TestGateway {
        running,
        dir,
        config,
    } = gw;
    running.shutdown().await;
    let running = Gateway::build_with_clock(config.clone(), clock.clone())
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

/// A token minted offline with the gateway's keys, as `clawgate token
/// issue` did before it checked anything: any lifetime, never bound.
fn offline_token(gw: &TestGateway, sub: &str, ttl: Duration, now: SystemTime) -> String {
    let ring = KeyRing::open(&gw.config.tokens.keys_dir).unwrap();
    let t = &gw.config.tokens;
    let unchecked = TokenPolicy::new(&t.issuer, &t.audience, t.leeway);
    let draft = TokenDraft::session(sub, ttl).with_scope(["admin"]);
    session_token::mint_at(&ring, &unchecked, draft, now)
        .unwrap()
        .expose()
        .to_owned()
}

#[tokio::test]
async fn revoked_long_lived_token_stays_refused_after_the_old_until_and_a_restart() {
    // Issue 11 item 3: `token issue --ttl 365d`, then `/admin/revoke`: the
    // revocation's `until` came from absolute_timeout (30 d), so the token
    // was accepted again from day 31 on, before and after a restart.
    let t0 = SystemTime::now();
    let clock = Arc::new(ManualClock::new(t0));
    let gw = start_with_clock(&clock, |_, _| {}).await;
    let long = offline_token(&gw, "mallory", 365 * DAY, t0);
    let admin = gw.token("root", &["admin"]);
    let jti = session_token::verify_at(
        &KeyRing::open(&gw.config.tokens.keys_dir).unwrap(),
        &TokenPolicy::new("clawgate", "clawgate", Duration::ZERO),
        &long,
        TokenType::Session,
        t0,
    )
    .unwrap()
    .jti()
    .to_owned();
    let revoked = admin_revoke(&gw, &admin, json!({ "jti": jti })).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(get_session(&gw, &long).await.status, 401);

    // Past the old `until` (30 d + leeway after the revocation).
    clock.set(t0 + 31 * DAY);
    let resp = get_session(&gw, &long).await;
    assert_eq!(
        resp.status, 401,
        "revocation lapsed before the token: {resp:?}"
    );

    // A restart compacts the journal: the expired revocation is dropped.
    let gw = restart(gw, &clock).await;
    let resp = get_session(&gw, &long).await;
    assert_eq!(resp.status, 401, "revocation compacted away: {resp:?}");
    gw.running.shutdown().await;
}

#[tokio::test]
async fn revocation_of_a_longest_allowed_token_holds_until_it_expires_across_a_restart() {
    // The invariant itself: a token with the longest lifetime the gateway
    // allows, revoked late, stays refused to the last second it verifies.
    let t0 = SystemTime::now();
    let clock = Arc::new(ManualClock::new(t0));
    let gw = start_with_clock(&clock, |_, _| {}).await;
    let absolute = gw.config.tokens.absolute_timeout;
    let pair = gw
        .running
        .sessions()
        .issue("alice", vec![], Some(absolute), IssueMethod::Cli)
        .unwrap();
    let token = pair.session_token().to_owned();
    let jti = pair.session_claims().jti.clone();
    clock.set(t0 + 10 * DAY);
    let admin = gw.token("root", &["admin"]);
    let revoked = admin_revoke(&gw, &admin, json!({ "jti": jti })).await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    // The token's last accepted second: exp + leeway - 1.
    let last = pair.session_claims().exp + gw.config.tokens.leeway - Duration::from_secs(1);
    clock.set(last);
    let gw = restart(gw, &clock).await;
    let resp = get_session(&gw, &token).await;
    assert_eq!(
        resp.status, 401,
        "revocation ended before the token: {resp:?}"
    );
    gw.running.shutdown().await;
}

#[tokio::test]
async fn unbound_offline_token_is_refused_under_required_binding() {
    // Issue 11 item 3: a CLI-minted (unbound) token was accepted under
    // `[auth] binding = "required"`.
    let gw = TestGateway::start(|c, _| c.auth.binding = BindingPolicy::Required).await;
    let token = offline_token(&gw, "alice", Duration::from_secs(3_600), SystemTime::now());
    let resp = get_session(&gw, &token).await;
    assert_eq!(resp.status, 401, "unbound token accepted: {resp:?}");
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
}

async fn login_token(gw: &TestGateway) -> String {
    let resp = login(gw, "alice", "pw").await;
    assert_eq!(resp.status, 200, "{resp:?}");
    resp.json()["session_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn session_limit_holds_across_a_restart() {
    // Issue 11 item 10: the index was memory-only, so after a restart the
    // count started from zero and alice held 10 live sessions.
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let gw = start_with_clock(&clock, |c, _| {
        c.auth.users = vec![user("alice", "pw", &[])];
        c.auth.rate_limit_per_minute = 1_000;
    })
    .await;
    let max = gw.config.tokens.max_sessions_per_user;
    let mut tokens = Vec::new();
    for _ in 0..max {
        tokens.push(login_token(&gw).await);
    }
    clock.advance(Duration::from_secs(1));
    let gw = restart(gw, &clock).await;
    for _ in 0..max {
        tokens.push(login_token(&gw).await);
    }
    let (before, after) = tokens.split_at(max);
    for (i, token) in before.iter().enumerate() {
        let resp = get_session(&gw, token).await;
        assert_eq!(resp.status, 401, "pre-restart session {i} still live");
    }
    for token in after {
        assert_eq!(get_session(&gw, token).await.status, 200);
    }
    let listed = gw
        .client()
        .send(gw.addr(), authed("GET", "/auth/sessions", &after[0], ""))
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let body = listed.json();
    let count = body["sessions"].as_array().map(Vec::len);
    assert_eq!(count, Some(max), "{body}");
    gw.running.shutdown().await;
}

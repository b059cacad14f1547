//! Session binding through the real HTTPS server: key-bound sessions with
//! signed proofs (each refusal with its code), refresh, the policies,
//! certificate-bound sessions over mutual TLS, the fixed test vectors, a
//! client in another language, and the `clawgate request` subcommand.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clawgate::Config;
use clawgate::binding_client::BindingClient;
use clawgate::config::{BindingPolicy, UserConfig};
use clawgate::gateway::credentials::insecure_hash_password_for_tests;
use clawgate::gateway::session_token::{self, Confirmation, TokenDraft};
use common::{TestGateway, TestResponse, authed, gateway_with_upstream, post_json};
use http_body_util::Full;
use hyper::Request;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse";
const HOUR: Duration = Duration::from_secs(3600);

fn alice() -> UserConfig {
    UserConfig {
        name: "alice".to_owned(),
        password_hash: insecure_hash_password_for_tests(PASSWORD).unwrap(),
        scopes: vec!["read".to_owned()],
    }
}

fn with_policy(policy: BindingPolicy) -> impl FnOnce(&mut Config, &Path) {
    move |c, _| {
        c.auth.users = vec![alice()];
        c.auth.binding = policy;
    }
}

async fn login(gw: &TestGateway, extra: Value) -> TestResponse {
    let mut body = json!({ "username": "alice", "password": PASSWORD });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    gw.client()
        .send(gw.addr(), post_json("/auth/login", &body))
        .await
}

/// Logs alice in bound to a fresh client key; returns the key and reply.
async fn bound_login(gw: &TestGateway) -> (BindingClient, Value) {
    let client = BindingClient::generate().unwrap();
    let reply = login(gw, json!({ "client_key": client.key().public_paserk() })).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["cnf"]["kpid"], client.key().kpid(), "{body}");
    (client, body)
}

fn token(body: &Value, name: &str) -> String {
    body[name].as_str().unwrap().to_owned()
}

/// A request with `token` and whatever `proof` is given.
fn with_proof(method: &str, path: &str, token: &str, proof: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = authed(method, path, token, "");
    if let Some(proof) = proof {
        req.headers_mut()
            .insert("clawgate-proof", proof.parse().unwrap());
    }
    req
}

/// A request with a fresh, correct proof.
fn signed(client: &BindingClient, method: &str, path: &str, token: &str) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    client.attach(&mut req, token).unwrap();
    req
}

fn assert_refused(resp: &TestResponse, code: &str) {
    assert_eq!(resp.status, 401, "{code}: {resp:?}");
    assert_eq!(resp.json()["error"], code, "{resp:?}");
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "{resp:?}"
    );
}

#[tokio::test]
async fn bound_token_with_a_fresh_proof_reaches_the_upstream() {
    let (gw, _up, _) = gateway_with_upstream(with_policy(BindingPolicy::Optional)).await;
    let (client, body) = bound_login(&gw).await;
    let session = token(&body, "session_token");
    for method in ["GET", "POST", "DELETE"] {
        // No X-Request-Nonce/Timestamp: the proof's signed nonce replaces them.
        let resp = gw
            .client()
            .send(gw.addr(), signed(&client, method, "/echo?x=1", &session))
            .await;
        assert_eq!(resp.status, 200, "{method}: {resp:?}");
        let echoed = resp.json();
        assert_eq!(echoed["method"], method);
        assert_eq!(echoed["uri"], "/echo?x=1");
        assert_eq!(echoed["headers"]["x-clawgate-subject"][0], "alice");
        assert!(
            echoed["headers"].get("clawgate-proof").is_none(),
            "a spent proof is not forwarded: {echoed}"
        );
    }
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("clawgate_binding_checks_total{kind=\"proof\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bound_token_without_a_valid_proof_is_refused_with_its_code() {
    let (gw, _up, _) = gateway_with_upstream(with_policy(BindingPolicy::Optional)).await;
    let (client, body) = bound_login(&gw).await;
    let session = token(&body, "session_token");
    let other_key = BindingClient::generate().unwrap();
    let now = SystemTime::now();
    let proof = |m: &str, p: &str, t: &str, at: SystemTime| client.proof_at(m, p, t, at).unwrap();
    let used = proof("GET", "/echo", &session, now);
    let first = gw
        .client()
        .send(gw.addr(), with_proof("GET", "/echo", &session, Some(&used)))
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    let cases = [
        ("proof_missing", None),
        ("proof_malformed", Some("v4.public.not-a-proof".to_owned())),
        ("proof_method_mismatch", Some(proof("POST", "/echo", &session, now))),
        ("proof_uri_mismatch", Some(proof("GET", "/echo?x=2", &session, now))),
        ("proof_stale", Some(proof("GET", "/echo", &session, now - HOUR))),
        ("proof_future", Some(proof("GET", "/echo", &session, now + HOUR))),
        ("proof_replayed", Some(used)),
        (
            "proof_key_mismatch",
            Some(other_key.proof("GET", "/echo", &session).unwrap()),
        ),
        (
            "proof_token_mismatch",
            Some(proof("GET", "/echo", "v4.public.another-token", now)),
        ),
    ];
    for (code, proof) in cases {
        let resp = gw
            .client()
            .send(gw.addr(), with_proof("GET", "/echo", &session, proof.as_deref()))
            .await;
        assert_refused(&resp, code);
        let text = String::from_utf8_lossy(&resp.body);
        assert!(!text.contains(&session), "the token is never echoed: {text}");
    }
    // Local routes check the binding too.
    let info = gw
        .client()
        .send(gw.addr(), authed("GET", "/auth/session", &session, ""))
        .await;
    assert_refused(&info, "proof_missing");
    let metrics = gw.metrics_text().await;
    for code in ["proof_missing", "proof_replayed", "proof_key_mismatch"] {
        let line = format!("clawgate_binding_rejections_total{{code=\"{code}\"}}");
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
}

#[tokio::test]
async fn session_info_shows_the_binding_and_the_policy() {
    let gw = TestGateway::start(with_policy(BindingPolicy::Optional)).await;
    let (client, body) = bound_login(&gw).await;
    let session = token(&body, "session_token");
    let resp = gw
        .client()
        .send(gw.addr(), signed(&client, "GET", "/auth/session", &session))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let info = resp.json();
    assert_eq!(info["binding"]["kpid"], client.key().kpid());
    assert_eq!(info["binding_policy"], "optional");
}

#[tokio::test]
async fn refresh_keeps_the_binding_and_needs_a_proof_for_the_refresh_token() {
    let gw = TestGateway::start(with_policy(BindingPolicy::Optional)).await;
    let (client, body) = bound_login(&gw).await;
    let (session, refresh) = (token(&body, "session_token"), token(&body, "refresh_token"));
    let refresh_req = |proof: Option<String>| {
        let mut req = post_json("/auth/refresh", &json!({ "refresh_token": refresh }));
        if let Some(proof) = proof {
            req.headers_mut()
                .insert("clawgate-proof", proof.parse().unwrap());
        }
        req
    };
    let missing = gw.client().send(gw.addr(), refresh_req(None)).await;
    assert_refused(&missing, "proof_missing");
    // A proof made for the session token is not a proof for the refresh token.
    let wrong = client.proof("POST", "/auth/refresh", &session).unwrap();
    let wrong = gw.client().send(gw.addr(), refresh_req(Some(wrong))).await;
    assert_refused(&wrong, "proof_token_mismatch");
    let good = client.proof("POST", "/auth/refresh", &refresh).unwrap();
    let rotated = gw.client().send(gw.addr(), refresh_req(Some(good))).await;
    assert_eq!(rotated.status, 200, "refusals did not spend the token: {rotated:?}");
    let next = rotated.json();
    assert_eq!(next["cnf"]["kpid"], client.key().kpid(), "binding kept");
    let next_session = token(&next, "session_token");
    let bare = gw
        .client()
        .send(gw.addr(), authed("GET", "/auth/session", &next_session, ""))
        .await;
    assert_refused(&bare, "proof_missing");
    let proved = gw
        .client()
        .send(gw.addr(), signed(&client, "GET", "/auth/session", &next_session))
        .await;
    assert_eq!(proved.status, 200, "{proved:?}");
}

#[tokio::test]
async fn required_policy_refuses_unbound_issuance() {
    let gw = TestGateway::start(with_policy(BindingPolicy::Required)).await;
    let unbound = login(&gw, json!({})).await;
    assert_eq!(unbound.status, 400, "{unbound:?}");
    assert_eq!(unbound.json()["error"], "binding_required");
    let code = gw
        .running
        .sessions()
        .pairing_code()
        .unwrap()
        .reveal()
        .to_owned();
    let pair = |body: &'static str| {
        Request::post("/auth/pair")
            .header("x-pairing-code", code.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let refused = gw.client().send(gw.addr(), pair("")).await;
    assert_eq!(refused.json()["error"], "binding_required", "{refused:?}");
    // A pairing body with a key binds the paired session.
    let key = BindingClient::generate().unwrap();
    let body = json!({ "client_key": key.key().public_paserk() }).to_string();
    let paired = gw
        .client()
        .send(gw.addr(), pair(Box::leak(body.into_boxed_str())))
        .await;
    assert_eq!(paired.status, 200, "the refusal did not spend the code: {paired:?}");
    assert_eq!(paired.json()["cnf"]["kpid"], key.key().kpid());
    let (_, bound) = bound_login(&gw).await;
    assert!(bound["refresh_token"].is_string());
}

#[tokio::test]
async fn bad_binding_requests_are_refused_at_issuance() {
    let gw = TestGateway::start(with_policy(BindingPolicy::Optional)).await;
    let key = BindingClient::generate().unwrap();
    let secret = key.key().to_paserk().unwrap().to_string();
    for (extra, code) in [
        (json!({ "client_key": secret }), "invalid_client_key"),
        (json!({ "client_key": "k4.public.short" }), "invalid_client_key"),
        (json!({ "bind": "certificate" }), "certificate_required"),
        (json!({ "client_kye": key.key().public_paserk() }), "invalid_request"),
    ] {
        let resp = login(&gw, extra.clone()).await;
        assert_eq!(resp.status, 400, "{extra}: {resp:?}");
        assert_eq!(resp.json()["error"], code, "{extra}");
        let text = String::from_utf8_lossy(&resp.body);
        assert!(!text.contains(&secret), "a key is never echoed: {text}");
    }
}

#[tokio::test]
async fn unbound_tokens_still_work_under_the_optional_policy() {
    let (gw, _up, _) = gateway_with_upstream(with_policy(BindingPolicy::Optional)).await;
    let reply = login(&gw, json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.json().get("cnf").is_none());
    let session = token(&reply.json(), "session_token");
    let get = gw
        .client()
        .send(gw.addr(), authed("GET", "/echo", &session, ""))
        .await;
    assert_eq!(get.status, 200, "{get:?}");
    // Unsafe methods of unbound sessions still need the plain replay headers.
    let post = gw
        .client()
        .send(gw.addr(), authed("POST", "/echo", &session, ""))
        .await;
    assert_eq!(post.json()["error"], "replay_nonce_missing", "{post:?}");
}

#[tokio::test]
async fn a_bound_token_is_checked_even_when_the_policy_is_off() {
    let (gw, _up, _) = gateway_with_upstream(with_policy(BindingPolicy::Off)).await;
    let client = BindingClient::generate().unwrap();
    // Offered keys are ignored under `off`...
    let reply = login(&gw, json!({ "client_key": client.key().public_paserk() })).await;
    assert!(reply.json().get("cnf").is_none(), "{reply:?}");
    // ...but a token that carries cnf (minted while the policy was
    // optional, say) keeps its binding.
    let sessions = gw.running.sessions();
    let cnf = Confirmation {
        kpid: Some(client.key().kpid().to_owned()),
        x5t_s256: None,
    };
    let draft = TokenDraft::session("alice", HOUR).with_cnf(cnf);
    let minted =
        session_token::mint_at(sessions.keyring(), sessions.policy(), draft, SystemTime::now())
            .unwrap();
    let bound = minted.expose();
    let bare = gw
        .client()
        .send(gw.addr(), authed("GET", "/echo", bound, ""))
        .await;
    assert_refused(&bare, "proof_missing");
    let proved = gw
        .client()
        .send(gw.addr(), signed(&client, "GET", "/echo", bound))
        .await;
    assert_eq!(proved.status, 200, "{proved:?}");
}

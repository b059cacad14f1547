//! Session binding through the real HTTPS server: key-bound sessions with
//! signed proofs (each refusal with its code), refresh, the policies,
//! certificate-bound sessions over mutual TLS, the fixed test vectors, a
//! client in another language, and the `clawgate request` subcommand.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;
use crate::common::tls_echo;

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clawgate::Config;
use clawgate::binding_client::BindingClient;
use clawgate::config::ClientAuth;
use clawgate::config::{BindingPolicy, UserConfig};
use clawgate::gateway::session_manager::credentials::insecure_hash_password_for_tests;
use clawgate::gateway::session_token::{self, Confirmation, TokenDraft};
use common::{TestClient, TestGateway, TestResponse, authed, gateway_with_upstream, post_json};
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
        (
            "proof_method_mismatch",
            Some(proof("POST", "/echo", &session, now)),
        ),
        (
            "proof_uri_mismatch",
            Some(proof("GET", "/echo?x=2", &session, now)),
        ),
        (
            "proof_stale",
            Some(proof("GET", "/echo", &session, now - HOUR)),
        ),
        (
            "proof_future",
            Some(proof("GET", "/echo", &session, now + HOUR)),
        ),
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
            .send(
                gw.addr(),
                with_proof("GET", "/echo", &session, proof.as_deref()),
            )
            .await;
        assert_refused(&resp, code);
        let text = String::from_utf8_lossy(&resp.body);
        assert!(
            !text.contains(&session),
            "the token is never echoed: {text}"
        );
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
    assert_eq!(
        rotated.status, 200,
        "refusals did not spend the token: {rotated:?}"
    );
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
        .send(
            gw.addr(),
            signed(&client, "GET", "/auth/session", &next_session),
        )
        .await;
    assert_eq!(proved.status, 200, "{proved:?}");
}

#[tokio::test]
async fn required_policy_refuses_unbound_issuance() {
    let gw = TestGateway::start(with_policy(BindingPolicy::Required)).await;
    let unbound = login(&gw, json!({})).await;
    assert_eq!(unbound.status, 400, "{unbound:?}");
    assert_eq!(unbound.json()["error"], "binding_required");
    let code = gw.pairing_code();
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
    assert_eq!(
        paired.status, 200,
        "the refusal did not spend the code: {paired:?}"
    );
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
        (
            json!({ "client_key": "k4.public.short" }),
            "invalid_client_key",
        ),
        (json!({ "bind": "certificate" }), "certificate_required"),
        (
            json!({ "client_kye": key.key().public_paserk() }),
            "invalid_request",
        ),
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
    let minted = session_token::mint_at(
        sessions.keyring(),
        sessions.policy(),
        draft,
        SystemTime::now(),
    )
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

// ------------------------------------------------ certificate-bound sessions

/// A gateway with optional mutual TLS trusting one client CA, and two
/// clients with certificates from it plus one without.
async fn mtls_gateway() -> (TestGateway, [TestClient; 3], String) {
    let ca = tls_echo::ClientCa::new("clients");
    let (a, b) = (ca.issue("agent-a"), ca.issue("agent-b"));
    let fingerprint = a.fingerprint();
    let (gw, _, _) = gateway_with_upstream(move |c, dir| {
        with_policy(BindingPolicy::Optional)(c, dir);
        let bundle = dir.join("client-ca.pem");
        ca.write_pem(&bundle);
        c.tls.client_auth = ClientAuth::Optional;
        c.tls.client_ca_path = Some(bundle);
    })
    .await;
    let with = |id| TestClient {
        config: tls_echo::client(&gw.ca_path(), id),
    };
    let clients = [with(Some(&a)), with(Some(&b)), gw.client()];
    (gw, clients, fingerprint)
}

#[tokio::test]
async fn certificate_bound_session_is_accepted_only_with_its_certificate() {
    let (gw, [a, b, none], fingerprint) = mtls_gateway().await;
    let body = json!({ "username": "alice", "password": PASSWORD, "bind": "certificate" });
    let reply = a.send(gw.addr(), post_json("/auth/login", &body)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = reply.json();
    let x5t =
        clawgate::gateway::session_manager::binding::certificate_thumbprint(&fingerprint).unwrap();
    assert_eq!(reply["cnf"]["x5t#S256"], x5t.as_str(), "{reply}");
    let session = token(&reply, "session_token");
    let ok = a
        .send(gw.addr(), authed("GET", "/echo", &session, ""))
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let other = b
        .send(gw.addr(), authed("GET", "/echo", &session, ""))
        .await;
    assert_refused(&other, "certificate_mismatch");
    let bare = none
        .send(gw.addr(), authed("GET", "/echo", &session, ""))
        .await;
    assert_refused(&bare, "certificate_missing");
    // A certificate proves no request freshness: unsafe methods still need
    // the replay headers.
    let post = a
        .send(gw.addr(), authed("POST", "/echo", &session, ""))
        .await;
    assert_eq!(post.json()["error"], "replay_nonce_missing", "{post:?}");
    // Refresh keeps the binding and is itself bound to the certificate.
    let refresh = json!({ "refresh_token": token(&reply, "refresh_token") });
    let stolen = b
        .send(gw.addr(), post_json("/auth/refresh", &refresh))
        .await;
    assert_refused(&stolen, "certificate_mismatch");
    let rotated = a
        .send(gw.addr(), post_json("/auth/refresh", &refresh))
        .await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    assert_eq!(rotated.json()["cnf"]["x5t#S256"], x5t.as_str());
}

#[tokio::test]
async fn a_session_bound_to_key_and_certificate_needs_both() {
    let (gw, [a, b, _], _) = mtls_gateway().await;
    let client = BindingClient::generate().unwrap();
    let body = json!({ "username": "alice", "password": PASSWORD, "bind": "certificate",
                       "client_key": client.key().public_paserk() });
    let reply = a
        .send(gw.addr(), post_json("/auth/login", &body))
        .await
        .json();
    assert!(
        reply["cnf"]["kpid"].is_string() && reply["cnf"]["x5t#S256"].is_string(),
        "{reply}"
    );
    let session = token(&reply, "session_token");
    let both = a
        .send(gw.addr(), signed(&client, "POST", "/echo", &session))
        .await;
    assert_eq!(both.status, 200, "{both:?}");
    let key_only = b
        .send(gw.addr(), signed(&client, "POST", "/echo", &session))
        .await;
    assert_refused(&key_only, "certificate_mismatch");
    let cert_only = a
        .send(gw.addr(), authed("GET", "/echo", &session, ""))
        .await;
    assert_refused(&cert_only, "proof_missing");
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("clawgate_binding_checks_total{kind=\"both\"} 1"),
        "{metrics}"
    );
}

// ------------------------------------------------------ clawgate request

/// Runs `clawgate request ARGS` with `stdin`; returns (success, stdout, stderr).
async fn clawgate_request(args: &[&str], stdin: &str) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .arg("request")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[tokio::test]
async fn request_subcommand_logs_in_bound_and_signs_each_request() {
    let (gw, _up, _) = gateway_with_upstream(with_policy(BindingPolicy::Required)).await;
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("client");
    let dir = state_dir.to_str().unwrap();
    let base = format!("https://localhost:{}", gw.addr().port());
    let ca = gw.ca_path();
    let login = [
        "login",
        &base,
        "--user",
        "alice",
        "--cacert",
        ca.to_str().unwrap(),
        "--state-dir",
        dir,
    ];
    let (ok, out, err) = clawgate_request(&login, &format!("{PASSWORD}\n")).await;
    assert!(ok, "login: {out}{err}");
    assert!(out.contains("session bound to"), "{out}");
    assert!(
        !out.contains("v4.public."),
        "tokens stay in the state file: {out}"
    );
    for file in ["client.key", "session.json"] {
        let mode = clawgate::secret_file::mode_of(&state_dir.join(file)).unwrap();
        assert_eq!(mode, 0o600, "{file}");
    }
    let url = format!("{base}/echo?x=1");
    let (ok, out, err) = clawgate_request(&["GET", &url, "--state-dir", dir], "").await;
    assert!(ok, "GET: {out}{err}");
    let echoed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(echoed["uri"], "/echo?x=1");
    assert_eq!(echoed["headers"]["x-clawgate-subject"][0], "alice");
    let post = [
        "POST",
        &url,
        "-d",
        "{\"a\":1}",
        "-H",
        "content-type: application/json",
        "--state-dir",
        dir,
    ];
    let (ok, out, err) = clawgate_request(&post, "").await;
    assert!(ok, "POST: {out}{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["body"],
        "{\"a\":1}"
    );
    // The saved token alone, without the key, is refused.
    let saved: Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("session.json")).unwrap()).unwrap();
    let stolen = token(&saved, "session_token");
    let resp = gw
        .client()
        .send(gw.addr(), authed("GET", "/echo", &stolen, ""))
        .await;
    assert_refused(&resp, "proof_missing");
    // Refresh with a proof, then the new session works.
    let (ok, out, err) = clawgate_request(&["refresh", "--state-dir", dir], "").await;
    assert!(ok, "refresh: {out}{err}");
    let (ok, out, err) = clawgate_request(&["GET", &url, "--state-dir", dir], "").await;
    assert!(ok, "GET after refresh: {out}{err}");
    // A refusal is a one-line error and a non-zero exit.
    let empty = state.path().join("empty");
    let (ok, _, err) =
        clawgate_request(&["GET", &url, "--state-dir", empty.to_str().unwrap()], "").await;
    assert!(
        !ok && err.contains("not logged in") && err.lines().count() == 1,
        "{err}"
    );
}

// ------------------------------------------------------------ test vectors

mod vectors {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use clawgate::config::ReplayConfig;
    use clawgate::gateway::replay_protection::ReplayGuard;
    use clawgate::gateway::session_manager::binding::{
        ClientKey, Presented, ProofChecker, token_hash,
    };
    use clawgate::gateway::session_token::Confirmation;
    use serde_json::{Value, json};

    pub(super) const PATH: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/binding-vectors.json"
    );
    const NOW: u64 = 1_700_000_000;

    /// A fixed key from a fixed seed: the seed repeated, public half by ring.
    pub(super) fn fixed_key(seed: u8) -> ClientKey {
        use ring::signature::KeyPair as _;
        let seed = [seed; 32];
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let mut raw = seed.to_vec();
        raw.extend_from_slice(pair.public_key().as_ref());
        ClientKey::from_paserk(&format!("k4.secret.{}", URL_SAFE_NO_PAD.encode(raw))).unwrap()
    }

    fn jti(n: u8) -> String {
        URL_SAFE_NO_PAD.encode([n; 32])
    }

    fn key_json(key: &ClientKey) -> Value {
        json!({
            "secret": key.to_paserk().unwrap().as_str(),
            "public": key.public_paserk(),
            "kpid": key.kpid(),
        })
    }

    /// One case made by the standard signer; `signed` lets any
    /// implementation re-create the proof byte for byte.
    fn signed_case(
        name: &str,
        key: (&str, &ClientKey),
        made: (&str, &str, &str, i64, u8),
        sent: (&str, &str),
        expect: &str,
    ) -> Value {
        let (method, uri, token, offset, n) = made;
        let iat = NOW.checked_add_signed(offset).unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(iat);
        let proof = key
            .1
            .sign_proof_with_jti_at(method, uri, token, &jti(n), at)
            .unwrap();
        json!({
            "name": name,
            "method": sent.0, "uri": sent.1,
            "proof": proof,
            "signed": { "key": key.0, "htm": method, "htu": uri, "token": token,
                        "iat": iat, "jti": jti(n) },
            "expect": expect,
        })
    }

    /// Signs an arbitrary payload (forgeries and malformed proofs).
    fn raw_proof(secret: &str, payload: &Value) -> String {
        use pasetors::keys::AsymmetricSecretKey;
        use pasetors::version4::{PublicToken, V4};
        let sk = AsymmetricSecretKey::<V4>::try_from(secret).unwrap();
        PublicToken::sign(&sk, payload.to_string().as_bytes(), None, None).unwrap()
    }

    pub(super) fn generate(token: &str) -> Value {
        let (client, other) = (fixed_key(1), fixed_key(2));
        let (c, o) = (("client", &client), ("other", &other));
        let good = client
            .sign_proof_with_jti_at(
                "GET",
                "/v1/items",
                token,
                &jti(9),
                UNIX_EPOCH + Duration::from_secs(NOW),
            )
            .unwrap();
        let payload = |key: &ClientKey, jti_text: &str| {
            json!({ "htm": "GET", "htu": "/v1/items", "iat": "2023-11-14T22:13:20Z",
                    "jti": jti_text, "ath": token_hash(token), "key": key.public_paserk() })
        };
        let other_secret = other.to_paserk().unwrap();
        let client_secret = client.to_paserk().unwrap();
        let body = good.strip_prefix("v4.public.").unwrap();
        let cases = vec![
            signed_case(
                "valid GET",
                c,
                ("GET", "/v1/items?limit=5", token, 0, 1),
                ("GET", "/v1/items?limit=5"),
                "ok",
            ),
            signed_case(
                "the same proof again",
                c,
                ("GET", "/v1/items?limit=5", token, 0, 1),
                ("GET", "/v1/items?limit=5"),
                "proof_replayed",
            ),
            signed_case(
                "valid POST, 330 s old (window 300 + leeway 30)",
                c,
                ("POST", "/v1/items", token, -330, 2),
                ("POST", "/v1/items"),
                "ok",
            ),
            signed_case(
                "valid PUT, 330 s ahead",
                c,
                ("PUT", "/v1/items/7", token, 330, 3),
                ("PUT", "/v1/items/7"),
                "ok",
            ),
            signed_case(
                "331 s old",
                c,
                ("GET", "/v1/items", token, -331, 4),
                ("GET", "/v1/items"),
                "proof_stale",
            ),
            signed_case(
                "331 s ahead",
                c,
                ("GET", "/v1/items", token, 331, 5),
                ("GET", "/v1/items"),
                "proof_future",
            ),
            signed_case(
                "made for GET, sent as DELETE",
                c,
                ("GET", "/v1/items", token, 0, 6),
                ("DELETE", "/v1/items"),
                "proof_method_mismatch",
            ),
            signed_case(
                "made for another query",
                c,
                ("GET", "/v1/items?limit=5", token, 0, 7),
                ("GET", "/v1/items?limit=6"),
                "proof_uri_mismatch",
            ),
            signed_case(
                "made for another token",
                c,
                ("GET", "/v1/items", "v4.public.another-token", 0, 8),
                ("GET", "/v1/items"),
                "proof_token_mismatch",
            ),
            signed_case(
                "signed by another key",
                o,
                ("GET", "/v1/items", token, 0, 10),
                ("GET", "/v1/items"),
                "proof_key_mismatch",
            ),
            json!({ "name": "names the bound key, signed by another", "method": "GET", "uri": "/v1/items",
                    "proof": raw_proof(&other_secret, &payload(&client, &jti(11))), "expect": "proof_signature_invalid" }),
            json!({ "name": "jti of 8 bytes", "method": "GET", "uri": "/v1/items",
                    "proof": raw_proof(&client_secret, &payload(&client, &URL_SAFE_NO_PAD.encode([1u8; 8]))), "expect": "proof_malformed" }),
            json!({ "name": "with a footer", "method": "GET", "uri": "/v1/items",
                    "proof": format!("{good}.{}", URL_SAFE_NO_PAD.encode(b"{\"kid\":\"x\"}")), "expect": "proof_malformed" }),
            json!({ "name": "v4.local header", "method": "GET", "uri": "/v1/items",
                    "proof": format!("v4.local.{body}"), "expect": "proof_malformed" }),
        ];
        json!({
            "about": "clawgate session-binding proofs (docs/session-binding.md). Check every case in order with one checker: bound key client_key.kpid, session_id, now, a window of window_seconds + leeway_seconds either way, one nonce cache. A case with `signed` is re-created byte for byte by signing those inputs with that key (Ed25519 is deterministic; payload JSON in the member order htm, htu, iat, jti, ath, key, no whitespace).",
            "now": NOW,
            "window_seconds": 300,
            "leeway_seconds": 30,
            "session_id": "vector-session",
            "client_key": key_json(&client),
            "other_key": key_json(&other),
            "token": token,
            "ath": token_hash(token),
            "cases": cases,
        })
    }

    pub(super) fn check(v: &Value) {
        let client = ClientKey::from_paserk(v["client_key"]["secret"].as_str().unwrap()).unwrap();
        assert_eq!(client.public_paserk(), v["client_key"]["public"]);
        assert_eq!(client.kpid(), v["client_key"]["kpid"]);
        let other = ClientKey::from_paserk(v["other_key"]["secret"].as_str().unwrap()).unwrap();
        let token = v["token"].as_str().unwrap();
        assert_eq!(token_hash(token), v["ath"]);
        let config = ReplayConfig {
            window: Duration::from_secs(v["window_seconds"].as_u64().unwrap()),
            ..ReplayConfig::default()
        };
        let leeway = Duration::from_secs(v["leeway_seconds"].as_u64().unwrap());
        let checker = ProofChecker::new(Arc::new(ReplayGuard::new(&config, leeway)));
        let cnf = Confirmation {
            kpid: Some(client.kpid().to_owned()),
            x5t_s256: None,
        };
        let now = v["now"].as_u64().unwrap();
        for case in v["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let proof = case["proof"].as_str().unwrap();
            if let Some(s) = case.get("signed") {
                let key = if s["key"] == "client" {
                    &client
                } else {
                    &other
                };
                let (htm, htu, tok) = (
                    s["htm"].as_str().unwrap(),
                    s["htu"].as_str().unwrap(),
                    s["token"].as_str().unwrap(),
                );
                let at = UNIX_EPOCH + Duration::from_secs(s["iat"].as_u64().unwrap());
                let again = key
                    .sign_proof_with_jti_at(htm, htu, tok, s["jti"].as_str().unwrap(), at)
                    .unwrap();
                assert_eq!(again, proof, "{name}: the signer's output changed");
            }
            let presented = Presented {
                method: case["method"].as_str().unwrap(),
                uri: case["uri"].as_str().unwrap(),
                token,
                proof: Some(proof.as_bytes()),
                client_cert_sha256: None,
            };
            let got = match checker.check_at(
                Some(&cnf),
                v["session_id"].as_str().unwrap(),
                &presented,
                now,
            ) {
                Ok(_) => "ok",
                Err(e) => e.code(),
            };
            assert_eq!(got, case["expect"], "{name}");
        }
    }
}

/// The Python client's path when python3 with `cryptography` is installed.
fn python_client() -> Option<std::path::PathBuf> {
    common::tool("python3")?;
    let probe = std::process::Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .ok()?;
    probe
        .status
        .success()
        .then(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/make_proof.py"))
}

#[test]
fn binding_vectors_are_accepted_and_refused_as_recorded() {
    let text = std::fs::read_to_string(vectors::PATH).expect("tests/data/binding-vectors.json");
    let recorded: Value = serde_json::from_str(&text).unwrap();
    assert!(recorded["cases"].as_array().unwrap().len() >= 14);
    vectors::check(&recorded);
}

#[test]
fn a_python_client_reproduces_the_vectors_byte_for_byte() {
    let Some(script) = python_client() else {
        eprintln!("skipped: python3 with the cryptography package is not installed");
        return;
    };
    let run = |path: &Path| {
        std::process::Command::new("python3")
            .arg(&script)
            .arg("--check-vectors")
            .arg(path)
            .output()
            .unwrap()
    };
    let out = run(Path::new(vectors::PATH));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: one altered proof is reported.
    let mut altered: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors::PATH).unwrap()).unwrap();
    altered["cases"][0]["signed"]["htu"] = json!("/v1/other");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("altered.json");
    std::fs::write(&path, altered.to_string()).unwrap();
    let out = run(&path);
    assert!(!out.status.success(), "an altered vector must not pass");
}

/// Writes tests/data/binding-vectors.json (run by hand after a deliberate
/// format change: `cargo test --test gateway_tests -- --ignored regenerate`).
#[test]
#[ignore = "writes tests/data/binding-vectors.json"]
fn regenerate_binding_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let ring =
        clawgate::gateway::session_token::keyring::KeyRing::open_or_init(dir.path()).unwrap();
    let policy = clawgate::gateway::session_token::TokenPolicy::new(
        "clawgate",
        "clawgate",
        Duration::from_secs(30),
    );
    let cnf = Confirmation {
        kpid: Some(vectors::fixed_key(1).kpid().to_owned()),
        x5t_s256: None,
    };
    let draft = TokenDraft::session("alice", Duration::from_secs(86_400 * 365 * 50)).with_cnf(cnf);
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let token = session_token::mint_at(&ring, &policy, draft, at).unwrap();
    let v = vectors::generate(token.expose());
    vectors::check(&v);
    std::fs::write(
        vectors::PATH,
        serde_json::to_string_pretty(&v).unwrap() + "\n",
    )
    .unwrap();
}

//! The bearer layer on its own, inside another axum app (as
//! `examples/auth_layer.rs` uses it): real keys and tokens, no gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use clawgate::clock::{Clock, SystemClock};
use clawgate::config::{AuthConfig, ReplayConfig, StateConfig, TokensConfig};
use clawgate::gateway::http::auth::{
    BearerAuthLayer, BearerAuthOptions, CurrentSession, PublicPaths,
};
use clawgate::gateway::replay_protection::ReplayGuard;
use clawgate::gateway::session_manager::{IssueMethod, SessionManager};
use common::logs::Logs;
use common::replay_headers;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tempfile::TempDir;
use tower::ServiceExt;

struct App {
    _dir: TempDir,
    sessions: Arc<SessionManager>,
    clock: Arc<dyn Clock>,
}

impl App {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let tokens = TokensConfig {
            keys_dir: dir.path().join("keys"),
            ..TokensConfig::default()
        };
        let auth = AuthConfig {
            pairing: false,
            ..AuthConfig::default()
        };
        let state = StateConfig {
            dir: dir.path().join("state"),
        };
        let sessions = SessionManager::open(&tokens, &auth, &state, Arc::clone(&clock)).unwrap();
        Self {
            _dir: dir,
            sessions: Arc::new(sessions),
            clock,
        }
    }

    fn token(&self, sub: &str) -> String {
        let pair = self
            .sessions
            .issue(sub, vec![], None, IssueMethod::Cli)
            .unwrap();
        pair.session_token().to_owned()
    }

    fn layer(&self) -> BearerAuthOptions {
        BearerAuthLayer::builder(Arc::clone(&self.sessions), Arc::clone(&self.clock))
    }

    fn router(&self, layer: BearerAuthLayer) -> Router {
        Router::new()
            .route(
                "/whoami",
                get(|CurrentSession(s): CurrentSession| async move { s.subject().to_owned() }),
            )
            .route("/write", post(|| async { "written" }))
            .route("/open", get(|| async { "open" }))
            .layer(layer)
    }
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let response = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn get_with(path: &str, token: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn layer_admits_only_valid_unrevoked_tokens() {
    let app = App::new();
    let router = app.router(app.layer().build());

    let (status, headers, _) = call(&router, get_with("/whoami", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");

    let (status, headers, _) = call(&router, get_with("/whoami", Some("v4.public.forged"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );

    let token = app.token("alice");
    let (status, _, body) = call(&router, get_with("/whoami", Some(&token))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));

    let session = app.sessions.authenticate(&token).unwrap();
    app.sessions.logout(&session).unwrap();
    let (status, _, _) = call(&router, get_with("/whoami", Some(&token))).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "revoked at once, no restart"
    );
}

#[tokio::test]
async fn public_paths_pass_without_a_token_and_nothing_else_does() {
    let app = App::new();
    let layer = app
        .layer()
        .public_paths(PublicPaths::new(&["/open".to_owned()]))
        .build();
    let router = app.router(layer);
    let (status, _, body) = call(&router, get_with("/open", None)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "open"));
    let (status, _, _) = call(&router, get_with("/open/", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(&router, get_with("/whoami", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_replay_guard_on_the_layer_wants_fresh_headers_on_unsafe_methods() {
    let app = App::new();
    let guard = Arc::new(ReplayGuard::new(
        &ReplayConfig::default(),
        std::time::Duration::from_secs(30),
    ));
    let router = app.router(app.layer().replay(guard).build());
    let token = app.token("alice");
    let post_with = |headers: Option<&(String, String)>| {
        let mut req = Request::post("/write").header("authorization", format!("Bearer {token}"));
        if let Some((nonce, ts)) = headers {
            req = req
                .header("x-request-nonce", nonce)
                .header("x-request-timestamp", ts);
        }
        req.body(Body::empty()).unwrap()
    };

    let (status, _, body) = call(&router, post_with(None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let fresh = replay_headers();
    let (status, _, body) = call(&router, post_with(Some(&fresh))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "written"));
    let (status, _, body) = call(&router, post_with(Some(&fresh))).await;
    assert_eq!(status, StatusCode::CONFLICT, "the same nonce twice: {body}");
    // Safe methods need no headers.
    let (status, _, _) = call(&router, get_with("/whoami", Some(&token))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_rejection_outside_the_gateway_logs_no_client_address_and_no_token() {
    let logs = Logs::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let app = App::new();
    let router = app.router(app.layer().build());
    let forged = "v4.public.forged-token-body-that-must-not-be-logged";
    let (status, _, _) = call(&router, get_with("/whoami", Some(forged))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains(r#""event":"auth_rejected""#))
        .unwrap_or_else(|| panic!("no auth_rejected event: {text}"));
    // No ConnectionInfo without the gateway's listener: "-", never a guess.
    assert!(line.contains(r#""client":"-""#), "{line}");
    assert!(!text.contains("forged-token-body"), "token in log: {text}");
}

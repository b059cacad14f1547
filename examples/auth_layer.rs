//! The clawgate bearer layer inside another axum app.
//!
//! Run: `cargo run --example auth_layer`, then use the printed curl line.
//! The app listens on plain HTTP on 127.0.0.1:3001 for the demonstration;
//! in production put it behind TLS (clawgate itself, or your own rustls).

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use clawgate::clock::SystemClock;
use clawgate::config::{AuthConfig, StateConfig, TokensConfig};
use clawgate::gateway::http::auth::{BearerAuthLayer, CurrentSession};
use clawgate::gateway::session_manager::{IssueMethod, SessionManager};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(SystemClock);
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
    let sessions = Arc::new(SessionManager::open(&tokens, &auth, &state, clock.clone())?);

    // Every route below the layer needs a valid, unrevoked session token.
    let app =
        Router::new()
            .route(
                "/whoami",
                get(|CurrentSession(s): CurrentSession| async move {
                    format!("hello {}\n", s.subject())
                }),
            )
            .layer(BearerAuthLayer::builder(Arc::clone(&sessions), clock).build());

    let token = sessions.issue("alice", vec![], None, IssueMethod::Cli)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!(
        "curl -H 'Authorization: Bearer {}' http://127.0.0.1:3001/whoami",
        token.session_token()
    );
    axum::serve(listener, app).await?;
    Ok(())
}

//! Unauthenticated endpoints: `/health`.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::AppState;

/// `GET /health`: `{"status":"ok"}`, or `{"status":"degraded","checks":{…}}`
/// while a component (such as the revocation store) is failing, each check
/// a component name and a reason code (e.g. `"revocation_store":
/// "journal_write_failed"`). Degraded still answers 200: the gateway keeps
/// enforcing and serving.
pub(crate) async fn health(State(state): State<AppState>) -> Json<Value> {
    let problems: Map<String, Value> = state
        .health
        .iter()
        .filter_map(|probe| probe())
        .map(|(component, code)| (component.to_owned(), Value::from(code)))
        .collect();
    if problems.is_empty() {
        Json(json!({ "status": "ok" }))
    } else {
        Json(json!({ "status": "degraded", "checks": problems }))
    }
}

/// `GET /.well-known/paseto-keys`: the public keys that verify tokens
/// (PASERK `k4.public`), so other services can check tokens themselves.
pub(crate) async fn paseto_keys(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "keys": state.sessions.keyring().public_keys() }))
}

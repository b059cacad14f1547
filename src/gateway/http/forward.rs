//! The catch-all route: an authenticated (or public-path) request goes to
//! the upstream as the verified identity; with no upstream configured,
//! protected paths answer 502 `no_upstream` after authentication.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorResponse};
use super::proxy::{ForwardIdentity, ProxyContext};
use super::security_headers::FromUpstream;
use crate::gateway::server::ConnectionInfo;
use crate::gateway::session_manager::Session;

/// Forwards the request upstream.
pub(crate) async fn forward(State(state): State<AppState>, req: Request) -> Response {
    let Some(proxy) = state.proxy.as_ref() else {
        return ErrorResponse::from(ApiError::NoUpstream).into_response();
    };
    let conn = req.extensions().get::<ConnectionInfo>();
    let session = req.extensions().get::<Arc<Session>>();
    let ctx = ProxyContext {
        peer: conn.map_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.peer),
        identity: session.map(|s| ForwardIdentity {
            subject: s.subject().to_owned(),
            session_id: s.session_id().to_owned(),
            scopes: s.scopes().to_vec(),
            client_cert_fingerprint: conn.and_then(|c| c.client_cert_sha256.clone()),
        }),
        session_end: session.map(|s| state.sessions.session_end(s)),
    };
    match proxy.forward(req, ctx).await {
        Ok(mut response) => {
            response.extensions_mut().insert(FromUpstream);
            response
        }
        Err(e) => ErrorResponse::from(&e).into_response(),
    }
}

//! `GET /ready`: whether requests can be served now. `/health` is liveness
//! (the process and its stores); readiness adds the upstream, checked by
//! one background TCP connect every [`PROBE_INTERVAL`], never per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::task::JoinHandle;

use super::AppState;
use crate::config::UpstreamUrl;

/// How often the upstream is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

const UNKNOWN: u8 = 0;
const REACHABLE: u8 = 1;
const UNREACHABLE: u8 = 2;

/// The upstream's last probe result, written by one background task and
/// read by `/ready` (an atomic load: a request never waits on a probe).
#[derive(Debug)]
pub struct UpstreamProbe {
    state: AtomicU8,
}

impl Default for UpstreamProbe {
    /// Not probed yet: not ready until the first probe connects.
    fn default() -> Self {
        Self {
            state: AtomicU8::new(UNKNOWN),
        }
    }
}

impl UpstreamProbe {
    /// Starts probing `url` every [`PROBE_INTERVAL`] (the first at once);
    /// each probe is a TCP connect bounded by `connect_timeout`.
    pub fn spawn(self: Arc<Self>, url: &UpstreamUrl, connect_timeout: Duration) -> JoinHandle<()> {
        let host = url.authority().host().to_owned();
        let port = url.authority().port_u16().unwrap_or(80);
        let shown = url.to_string();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let connect = tokio::net::TcpStream::connect((host.as_str(), port));
                let up = matches!(
                    tokio::time::timeout(connect_timeout, connect).await,
                    Ok(Ok(_))
                );
                let now = if up { REACHABLE } else { UNREACHABLE };
                let before = self.state.swap(now, Ordering::Relaxed);
                // One line per change, not one per probe.
                if before != now {
                    if up {
                        tracing::info!(event = "upstream_reachable", upstream = %shown, "upstream is reachable");
                    } else {
                        tracing::warn!(event = "upstream_unreachable", upstream = %shown,
                            "upstream is unreachable: /ready answers 503 and requests get 502 until it is back");
                    }
                }
            }
        })
    }

    /// Why the upstream is not ready, if it is not (a fixed word).
    pub fn not_ready(&self) -> Option<&'static str> {
        match self.state.load(Ordering::Relaxed) {
            REACHABLE => None,
            UNREACHABLE => Some("upstream_unreachable"),
            _ => Some("upstream_not_checked_yet"),
        }
    }
}

/// `GET /ready`: 200 when the upstream answered the last probe (or none is
/// configured) and every health probe passes, else 503 with the reasons.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let mut reasons = serde_json::Map::new();
    if let Some(why) = state.upstream_probe.as_ref().and_then(|p| p.not_ready()) {
        reasons.insert("upstream".to_owned(), why.into());
    }
    for (component, code) in state.health.iter().filter_map(|probe| probe()) {
        reasons.insert(component.to_owned(), code.into());
    }
    if reasons.is_empty() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "checks": reasons })),
        )
            .into_response()
    }
}

//! Background tasks of a running gateway that belong to no one part: the
//! metrics listener and the revocation-store health gauge. (Certificate
//! renewal, reload and expiry alerts are the certificate manager's own task,
//! [`CertificateManager::spawn_upkeep`](super::certificate_manager::CertificateManager::spawn_upkeep).)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::metrics::Metrics;
use super::revocation_store::{RevocationStore, StoreHealth};
use crate::error::Error;

/// Serves `GET /metrics` (Prometheus text format) on its own listener.
pub(super) async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<(SocketAddr, JoinHandle<()>), Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Io {
        context: format!("cannot listen on {addr} for metrics"),
        source,
    })?;
    let bound = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the metrics address".to_owned(),
        source,
    })?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(event = "metrics_listener_failed", %error, "metrics listener stopped");
        }
    });
    Ok((bound, task))
}

/// Keeps the store-health gauge current.
pub(super) fn spawn_store_health(
    store: Arc<RevocationStore>,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            metrics
                .http
                .set_store_healthy(matches!(store.health(), StoreHealth::Healthy));
            tokio::time::sleep(STORE_HEALTH_INTERVAL).await;
        }
    })
}

/// How often the store-health gauge is refreshed.
const STORE_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

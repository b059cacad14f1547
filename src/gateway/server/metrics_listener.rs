//! The metrics listener: `GET /metrics` (OpenMetrics text) on its own
//! plain-HTTP socket, apart from the TLS port.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::gateway::metrics::Metrics;

/// Serves `GET /metrics` (Prometheus text format) on its own listener.
pub(crate) async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<(SocketAddr, JoinHandle<()>), Error> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Io {
        context: crate::gateway::listen_failure("metrics", addr, &source),
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

//! Background tasks of a running gateway: certificate expiry checks,
//! renewal and reload, and the metrics listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::certificate_manager::{CertificateManager, RenewOutcome, rfc3339};
use super::metrics::Metrics;
use super::revocation_store::{OpenReport, RevocationStore, StoreHealth};
use crate::clock::Clock;
use crate::error::Error;

/// Publishes the expiry times of the served certificate and the root.
pub(super) fn publish_cert_expiry(certs: &CertificateManager, metrics: &Metrics) {
    metrics
        .certs
        .set_expiry("server", certs.current().not_after);
    if let Some(root) = certs.root() {
        metrics.certs.set_expiry("root", root.not_after);
    }
}

/// Checks the certificates every `interval`, and whenever a handshake
/// notices on the wall clock that renewal is due (timers do not fire while
/// a host sleeps). Alerts when less than `alert_before` is left.
pub(super) fn spawn_certificate_watch(
    certs: Arc<CertificateManager>,
    metrics: Arc<Metrics>,
    interval: Duration,
    alert_before: Duration,
    clock: Arc<dyn Clock>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let resolver = certs.resolver();
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = resolver.renewal_due() => {}
            }
            refresh_certificate(&certs, Some(&metrics));
            alert_if_expiring(&certs, alert_before, clock.as_ref());
        }
    })
}

/// Renews or reloads the certificate once; a failure keeps the current one
/// serving and raises an alert.
pub(super) fn refresh_certificate(certs: &CertificateManager, metrics: Option<&Metrics>) {
    match certs.refresh() {
        Ok(RenewOutcome::Unchanged) => {}
        Ok(RenewOutcome::Swapped(info)) => {
            tracing::info!(event = "certificate_swapped", fingerprint = %info.fingerprint_sha256,
                not_after = %rfc3339(info.not_after), "new server certificate in service");
            if let Some(m) = metrics {
                m.certs.renewal("swapped");
                publish_cert_expiry(certs, m);
            }
        }
        Err(error) => {
            tracing::error!(event = "certificate_refresh_failed", alert = "certificate_refresh_failed",
                %error, "certificate renewal/reload failed; the last good certificate keeps serving");
            if let Some(m) = metrics {
                m.certs.renewal("failed");
            }
        }
    }
}

fn alert_if_expiring(certs: &CertificateManager, alert_before: Duration, clock: &dyn Clock) {
    let now = clock.now();
    let served = certs.current();
    if served.remaining_at(now) < alert_before {
        tracing::warn!(event = "certificate_expiring", alert = "certificate_expiring", cert = "server",
            not_after = %rfc3339(served.not_after), "server certificate expires soon");
    }
    if let Some(root) = certs.root().filter(|r| r.remaining_at(now) < alert_before) {
        tracing::warn!(event = "certificate_expiring", alert = "certificate_expiring", cert = "root",
            not_after = %rfc3339(root.not_after), "local root expires soon; clients will need the new ca.crt");
    }
}

/// Serves `GET /metrics` (Prometheus text format) on its own listener.
pub(super) async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<SocketAddr, Error> {
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
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(event = "metrics_listener_failed", %error, "metrics listener stopped");
        }
    });
    Ok(bound)
}

/// Logs what opening the revocation store found.
pub(super) fn log_store_report(report: &OpenReport) {
    tracing::info!(
        event = "revocation_store_loaded",
        loaded = report.loaded,
        expired_dropped = report.expired_dropped,
        corrupt_lines = report.corrupt_lines,
        torn_tail = report.torn_tail,
        "revocations loaded before accepting connections"
    );
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

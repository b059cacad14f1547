//! Background tasks of a running gateway: certificate expiry checks,
//! renewal and reload, and the metrics listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::certificate_manager::{self, CertificateManager, rfc3339, watch_provided};
use super::metrics::Metrics;
use super::revocation_store::{RevocationStore, StoreHealth};
use crate::clock::Clock;
use crate::error::Error;

/// How often provided certificate files are polled for changes (at most;
/// a shorter `check_interval` polls faster). Four `stat` calls per poll.
const PROVIDED_POLL: Duration = Duration::from_secs(1);

/// After a failed renewal, handshakes that notice renewal is due do not
/// trigger another attempt for this long, so a full disk does not turn every
/// handshake into a renewal attempt and an error line.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Publishes the expiry times of the served certificate and the root.
pub(super) fn publish_cert_expiry(certs: &CertificateManager, metrics: &Metrics) {
    certificate_manager::publish_expiry(certs, metrics);
}

/// Keeps the served certificate current, in one task:
/// - generated certificates: renewal (leaf, and the root when due) every
///   `interval`, and whenever a handshake notices on the wall clock that
///   renewal is due (timers do not fire while a host sleeps, PITFALLS C2);
/// - provided certificates: the file watch ([`watch_provided`], polling
///   every second at most) reloads them when they change;
/// - both: an alert when less than `alert_before` is left.
pub(super) fn spawn_certificate_watch(
    certs: Arc<CertificateManager>,
    metrics: Arc<Metrics>,
    interval: Duration,
    alert_before: Duration,
    clock: Arc<dyn Clock>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let files = async {
            if certs.is_provided() {
                let poll = PROVIDED_POLL.min(interval);
                watch_provided(Arc::clone(&certs), Arc::clone(&metrics), poll).await;
            }
        };
        let expiry = expiry_loop(&certs, &metrics, interval, alert_before, clock.as_ref());
        tokio::join!(files, expiry);
    })
}

async fn expiry_loop(
    certs: &CertificateManager,
    metrics: &Metrics,
    interval: Duration,
    alert_before: Duration,
    clock: &dyn Clock,
) {
    let resolver = certs.resolver();
    // Provided files only change on disk; the file watch handles them, and a
    // handshake noticing they are old cannot make them newer.
    let generated = !certs.is_provided();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = resolver.renewal_due(), if generated => {}
        }
        if generated && !refresh_certificate(certs, Some(metrics)) {
            tokio::time::sleep(RETRY_AFTER_FAILURE.min(interval)).await;
        }
        alert_if_expiring(certs, alert_before, clock);
    }
}

/// Renews or reloads the certificate once (also SIGHUP); a failure keeps
/// the current one serving and raises an alert. Returns false on failure.
pub(super) fn refresh_certificate(certs: &CertificateManager, metrics: Option<&Metrics>) -> bool {
    certificate_manager::report(certs, metrics, certs.refresh())
}

/// Re-reads the served certificate files once (SIGHUP).
pub(super) fn reload_certificate_files(certs: &CertificateManager, metrics: &Metrics) -> bool {
    certificate_manager::report(certs, Some(metrics), certs.reload_files())
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

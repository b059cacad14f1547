//! Keeping the served certificate in date: the background task that renews
//! generated certificates, runs the provided-file watch and raises the
//! expiry alert, and the report (log line + metric) of every renewal or
//! reload.
//!
//! Time comes only from the manager's injected [`Clock`](crate::clock::Clock)
//! (the task's timers only pace the checks), the check interval and alert
//! threshold only from the manager's own [`TlsConfig`](crate::config::TlsConfig),
//! and the only metrics touched are the certificate ones ([`CertMetrics`]).
//! This is the boundary, so it records metrics itself; the loading and
//! checking code it calls records nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{CertError, CertificateManager, RenewOutcome, watch_provided};
use crate::clock::rfc3339;
use crate::gateway::metrics::CertMetrics;

impl CertificateManager {
    /// Keeps the served certificate current, in one task:
    /// - generated certificates: renewal (leaf, and the root when due) every
    ///   `[tls] check_interval`, and whenever a handshake notices on the wall
    ///   clock that renewal is due (timers do not fire while a host sleeps,
    ///   PITFALLS C2);
    /// - provided certificates: the file watch ([`watch_provided`], polling
    ///   every second at most) reloads them when they change;
    /// - both: the `certificate_expiring` alert after every check when less
    ///   than `[tls] renew_before` is left.
    ///
    /// Runs until the handle is aborted.
    pub fn spawn_upkeep(self: Arc<Self>, metrics: Arc<CertMetrics>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let files = async {
                if self.is_provided() {
                    let poll = PROVIDED_POLL.min(self.config.check_interval);
                    watch_provided(Arc::clone(&self), Arc::clone(&metrics), poll).await;
                }
            };
            tokio::join!(files, self.expiry_loop(&metrics));
        })
    }

    /// Renews or reloads the certificate once (also SIGHUP), then logs and
    /// counts the result; a failure keeps the current one serving and
    /// raises an alert. Returns false on failure.
    pub fn refresh_and_report(&self, metrics: &CertMetrics) -> bool {
        report(self, metrics, self.refresh())
    }

    /// Re-reads the served certificate files once (SIGHUP), then logs and
    /// counts the result as [`Self::refresh_and_report`] does.
    pub fn reload_files_and_report(&self, metrics: &CertMetrics) -> bool {
        report(self, metrics, self.reload_files())
    }

    /// Publishes the expiry times of the served certificate and the root.
    pub fn publish_expiry(&self, metrics: &CertMetrics) {
        metrics.set_expiry("server", self.current().not_after);
        if let Some(root) = self.root() {
            metrics.set_expiry("root", root.not_after);
        }
    }

    async fn expiry_loop(&self, metrics: &CertMetrics) {
        let interval = self.config.check_interval;
        // Provided files only change on disk; the file watch handles them,
        // and a handshake noticing they are old cannot make them newer.
        let generated = !self.is_provided();
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.resolver.renewal_due(), if generated => {}
            }
            if generated && !self.refresh_and_report(metrics) {
                tokio::time::sleep(RETRY_AFTER_FAILURE.min(interval)).await;
            }
            self.alert_if_expiring();
        }
    }

    /// Logs the `certificate_expiring` alert for the served certificate and
    /// for the local root when less than `[tls] renew_before` is left of
    /// them on the manager's clock.
    pub(super) fn alert_if_expiring(&self) {
        let now = self.clock.now();
        let alert_before = self.config.renew_before;
        let served = self.current();
        if served.remaining_at(now) < alert_before {
            tracing::warn!(event = "certificate_expiring", alert = "certificate_expiring", cert = "server",
                not_after = %rfc3339(served.not_after), "server certificate expires soon");
        }
        if let Some(root) = self.root().filter(|r| r.remaining_at(now) < alert_before) {
            tracing::warn!(event = "certificate_expiring", alert = "certificate_expiring", cert = "root",
                not_after = %rfc3339(root.not_after), "local root expires soon; clients will need the new ca.crt");
        }
    }
}

/// Logs and counts the result of one renewal or reload check. Returns
/// false when it failed (the last good certificate keeps serving).
pub(super) fn report(
    certs: &CertificateManager,
    metrics: &CertMetrics,
    result: Result<RenewOutcome, CertError>,
) -> bool {
    let source = if certs.is_provided() {
        "provided"
    } else {
        "generated"
    };
    let (label, info) = match result {
        Ok(RenewOutcome::Unchanged) => return true,
        Ok(RenewOutcome::Swapped(info)) => ("swapped", info),
        Ok(RenewOutcome::RootRenewed { leaf, .. }) => ("root_renewed", leaf),
        Err(error) => {
            let alert = if certs.is_provided() {
                "certificate_reload_failed"
            } else {
                "certificate_renewal_failed"
            };
            tracing::error!(event = alert, alert, source, %error,
                "certificate renewal/reload failed; the last good certificate keeps serving");
            metrics.renewal("failed");
            return false;
        }
    };
    let not_after = rfc3339(info.not_after);
    tracing::info!(event = "certificate_swapped", source, fingerprint = %info.fingerprint_sha256,
        %not_after, "new server certificate in service");
    metrics.renewal(label);
    certs.publish_expiry(metrics);
    true
}

/// How often provided certificate files are polled for changes (at most;
/// a shorter `check_interval` polls faster). Four `stat` calls per poll.
const PROVIDED_POLL: Duration = Duration::from_secs(1);

/// After a failed renewal, handshakes that notice renewal is due do not
/// trigger another attempt for this long, so a full disk does not turn every
/// handshake into a renewal attempt and an error line.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

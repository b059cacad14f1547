//! Operator-facing reports of the certificates: the log lines and metrics a
//! generated root, a root renewal and a failed renewal produce, and the
//! expiry alert on the manager's (manual) clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::expiry::report;
use super::*;
use crate::clock::{ManualClock, rfc3339};
use crate::config::KeyAlgorithm;
use crate::gateway::metrics::Metrics;
use crate::test_logs::Logs;

const DAY: Duration = Duration::from_secs(86_400);

/// A small local CA: 100-day root, 10-day leaves renewed 2 days before expiry.
fn short_lived(dir: &Path) -> TlsConfig {
    TlsConfig {
        cert_dir: dir.join("certs"),
        root_validity: 100 * DAY,
        server_cert_validity: 10 * DAY,
        renew_before: 2 * DAY,
        ..TlsConfig::default()
    }
}

fn manager_at(config: &TlsConfig, now: SystemTime) -> CertificateManager {
    CertificateManager::init(config, Arc::new(ManualClock::new(now))).unwrap()
}

/// A metric sample as rendered, e.g. `certificate_renewals_total{result="failed"}`.
fn sample(metrics: &Metrics, name: &str, label: &str) -> Option<i64> {
    let prefix = format!("clawgate_{name}{{{label}}} ");
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().parse().unwrap()))
}

fn unix(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

#[test]
fn a_first_run_root_is_announced_with_the_file_clients_must_trust() {
    let dir = tempfile::tempdir().unwrap();
    let config = short_lived(dir.path());
    let logs = Logs::default();
    let manager = tracing::subscriber::with_default(logs.subscriber(), || {
        manager_at(&config, SystemTime::now())
    });
    let events = logs.events();
    let generated = events
        .iter()
        .find(|e| e["fields"]["event"] == "local_root_generated")
        .unwrap_or_else(|| panic!("no local_root_generated event: {events:?}"));
    assert_eq!(generated["level"], "WARN");
    let path = manager.root_path().unwrap();
    assert_eq!(generated["fields"]["path"], path.display().to_string());

    // A second start reuses the root and says nothing about it.
    let logs = Logs::default();
    tracing::subscriber::with_default(logs.subscriber(), || manager_at(&config, SystemTime::now()));
    assert!(!logs.text().contains("local_root"), "{}", logs.text());
}

#[test]
fn a_renewed_root_is_announced_with_old_and_new_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let config = short_lived(dir.path());
    let t0 = SystemTime::now();
    let manager = manager_at(&config, t0);
    let old = manager.root().unwrap();
    let logs = Logs::default();
    let outcome = tracing::subscriber::with_default(logs.subscriber(), || {
        manager.refresh_at(t0 + 91 * DAY).unwrap()
    });
    let RenewOutcome::RootRenewed { root: new, .. } = outcome else {
        panic!("root renewal was due: {outcome:?}")
    };
    let events = logs.events();
    let renewed = events
        .iter()
        .find(|e| e["fields"]["event"] == "local_root_renewed")
        .unwrap_or_else(|| panic!("no local_root_renewed event: {events:?}"));
    let fields = &renewed["fields"];
    assert_eq!(fields["alert"], "local_root_renewed");
    assert_eq!(
        fields["path"],
        config.cert_dir.join(CA_CERT).display().to_string()
    );
    assert_eq!(fields["old_fingerprint"], old.fingerprint_sha256.as_str());
    assert_eq!(fields["old_not_after"], rfc3339(old.not_after));
    assert_eq!(fields["new_fingerprint"], new.fingerprint_sha256.as_str());
    assert_eq!(fields["new_not_after"], rfc3339(new.not_after));
}

#[test]
fn a_reported_root_renewal_is_counted_and_publishes_both_expiry_times() {
    let dir = tempfile::tempdir().unwrap();
    let config = short_lived(dir.path());
    let t0 = SystemTime::now();
    let manager = manager_at(&config, t0);
    let metrics = Metrics::new();
    let result = manager.refresh_at(t0 + 91 * DAY);
    let Ok(RenewOutcome::RootRenewed { leaf, root }) = &result else {
        panic!("root renewal was due: {result:?}")
    };
    let (leaf, root) = (leaf.clone(), root.clone());
    let logs = Logs::default();
    let reported = tracing::subscriber::with_default(logs.subscriber(), || {
        report(&manager, &metrics.certs, result)
    });
    assert!(reported);
    let renewals = |result| sample(&metrics, "certificate_renewals_total", result);
    assert_eq!(renewals(r#"result="root_renewed""#), Some(1));
    assert_eq!(renewals(r#"result="failed""#), None);
    let expiry = |cert| sample(&metrics, "certificate_expiry_timestamp_seconds", cert);
    assert_eq!(expiry(r#"cert="server""#), Some(unix(leaf.not_after)));
    assert_eq!(expiry(r#"cert="root""#), Some(unix(root.not_after)));

    let events = logs.events();
    let swapped = events
        .iter()
        .find(|e| e["fields"]["event"] == "certificate_swapped")
        .unwrap_or_else(|| panic!("no certificate_swapped event: {events:?}"));
    assert_eq!(swapped["fields"]["source"], "generated");
    assert_eq!(
        swapped["fields"]["fingerprint"],
        leaf.fingerprint_sha256.as_str()
    );
    assert_eq!(swapped["fields"]["not_after"], rfc3339(leaf.not_after));
}

#[test]
fn a_renewal_that_cannot_write_keeps_serving_and_raises_the_renewal_alert() {
    let dir = tempfile::tempdir().unwrap();
    let config = short_lived(dir.path());
    let t0 = SystemTime::now();
    let manager = manager_at(&config, t0);
    let before = manager.current();
    // A directory where gateway.crt goes: the atomic rename onto it fails,
    // even for root.
    let leaf_path = config.cert_dir.join(LEAF_CERT);
    std::fs::remove_file(&leaf_path).unwrap();
    std::fs::create_dir(&leaf_path).unwrap();

    let result = manager.refresh_at(t0 + 9 * DAY);
    assert!(
        matches!(&result, Err(CertError::Io { path, .. }) if *path == leaf_path),
        "{result:?}"
    );
    assert_eq!(
        manager.current(),
        before,
        "the last good leaf keeps serving"
    );

    let metrics = Metrics::new();
    let logs = Logs::default();
    let reported = tracing::subscriber::with_default(logs.subscriber(), || {
        report(&manager, &metrics.certs, result)
    });
    assert!(!reported);
    assert_eq!(
        sample(&metrics, "certificate_renewals_total", r#"result="failed""#),
        Some(1)
    );
    let events = logs.events();
    let failed = events
        .iter()
        .find(|e| e["fields"]["alert"] == "certificate_renewal_failed")
        .unwrap_or_else(|| panic!("no certificate_renewal_failed alert: {events:?}"));
    assert_eq!(failed["level"], "ERROR");
    assert_eq!(failed["fields"]["source"], "generated");
    let error = failed["fields"]["error"].as_str().unwrap();
    assert!(error.contains(&leaf_path.display().to_string()), "{error}");
}

/// A manager serving a provided 40-day leaf (alert threshold 30 days) on a
/// manual clock started at the leaf's issue time.
fn provided_on_manual_clock(dir: &Path) -> (CertificateManager, Arc<ManualClock>, CertInfo) {
    let t0 = SystemTime::now();
    let root = generate_root(KeyAlgorithm::EcdsaP256, 100 * DAY, t0).unwrap();
    let leaf = issue_server_cert(&root, &[], KeyAlgorithm::EcdsaP256, 40 * DAY, t0).unwrap();
    let (cert_path, key_path) = (dir.join("provided.crt"), dir.join("provided.key"));
    std::fs::write(&cert_path, &leaf.cert_pem).unwrap();
    std::fs::write(&key_path, &leaf.key_pem).unwrap();
    let config = TlsConfig {
        cert_path: Some(cert_path),
        key_path: Some(key_path),
        renew_before: 30 * DAY, // also the alert threshold
        check_interval: Duration::from_millis(1),
        ..TlsConfig::default()
    };
    let clock = Arc::new(ManualClock::new(t0));
    let manager = CertificateManager::init(&config, Arc::clone(&clock) as Arc<dyn Clock>).unwrap();
    let info = manager.current();
    (manager, clock, info)
}

fn expiry_alerts(logs: &Logs) -> Vec<serde_json::Value> {
    logs.events()
        .into_iter()
        .filter(|e| e["fields"]["alert"] == "certificate_expiring")
        .collect()
}

#[test]
fn the_expiry_alert_follows_the_managers_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, clock, leaf) = provided_on_manual_clock(dir.path());

    // 40 days left, threshold 30: quiet.
    let logs = Logs::default();
    tracing::subscriber::with_default(logs.subscriber(), || manager.alert_if_expiring());
    assert_eq!(expiry_alerts(&logs), Vec::<serde_json::Value>::new());

    // 29 days left on the manager's clock (the wall clock has not moved).
    clock.advance(11 * DAY);
    let logs = Logs::default();
    tracing::subscriber::with_default(logs.subscriber(), || manager.alert_if_expiring());
    let alerts = expiry_alerts(&logs);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["level"], "WARN");
    assert_eq!(alerts[0]["fields"]["event"], "certificate_expiring");
    assert_eq!(alerts[0]["fields"]["cert"], "server");
    assert_eq!(alerts[0]["fields"]["not_after"], rfc3339(leaf.not_after));
}

#[test]
fn the_expiry_alert_names_a_local_root_that_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = short_lived(dir.path());
    let t0 = SystemTime::now();
    let clock = Arc::new(ManualClock::new(t0));
    let manager = CertificateManager::init(&config, Arc::clone(&clock) as Arc<dyn Clock>).unwrap();
    let root = manager.root().unwrap();

    // One day of the 10-day leaf left (threshold 2 days), the root far off.
    clock.advance(9 * DAY);
    let logs = Logs::default();
    tracing::subscriber::with_default(logs.subscriber(), || manager.alert_if_expiring());
    let certs: Vec<_> = expiry_alerts(&logs)
        .iter()
        .map(|a| a["fields"]["cert"].clone())
        .collect();
    assert_eq!(certs, ["server"]);

    // One day of the 100-day root left too.
    clock.set(t0 + 99 * DAY);
    let logs = Logs::default();
    tracing::subscriber::with_default(logs.subscriber(), || manager.alert_if_expiring());
    let alerts = expiry_alerts(&logs);
    let certs: Vec<_> = alerts.iter().map(|a| a["fields"]["cert"].clone()).collect();
    assert_eq!(certs, ["server", "root"]);
    assert_eq!(alerts[1]["fields"]["not_after"], rfc3339(root.not_after));
}

/// The upkeep task raises the alert from the manager's clock: nothing while
/// the manual clock stands still, the alert once it is moved past the
/// threshold. (The 1 ms check interval only paces the loop; no wait reaches
/// an expiry.)
#[tokio::test]
async fn the_upkeep_task_raises_the_expiry_alert_when_the_clock_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, clock, _) = provided_on_manual_clock(dir.path());
    // The test runtime is single-threaded: the task logs on this thread.
    let logs = Logs::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let metrics = Metrics::new();
    let task = Arc::new(manager).spawn_upkeep(Arc::clone(&metrics.certs));

    for _ in 0..20 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(expiry_alerts(&logs), Vec::<serde_json::Value>::new());

    clock.advance(11 * DAY);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while expiry_alerts(&logs).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    task.abort();
    let alerts = expiry_alerts(&logs);
    assert!(!alerts.is_empty(), "no expiry alert after the clock moved");
    assert!(
        alerts.iter().all(|a| a["fields"]["cert"] == "server"),
        "{alerts:?}"
    );
}

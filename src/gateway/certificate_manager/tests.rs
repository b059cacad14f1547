//! Operator-facing reports of the local CA: the log lines and metrics a
//! generated root, a root renewal and a failed renewal produce.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::clock::ManualClock;
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
        report(&manager, Some(&metrics), result)
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
        report(&manager, Some(&metrics), result)
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

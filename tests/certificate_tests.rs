//! Certificates: first-run generation, reuse, provided PEM files and their
//! errors, fingerprints, renewal and hot swap under handshake load.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use clawgate::clock::{ManualClock, SystemClock, rfc3339};
use clawgate::config::{KeyAlgorithm, TlsConfig};
use clawgate::gateway::Gateway;
use clawgate::gateway::certificate_manager::{
    self as certs, CertError, CertificateManager, RenewOutcome, fingerprint, generate_root,
    issue_server_cert, load_files, load_pem,
};
use clawgate::secret_file::mode_of;
use common::{TestClient, TestGateway, test_config};

const DAY: Duration = Duration::from_secs(86_400);

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn tls_in(dir: &Path) -> TlsConfig {
    TlsConfig {
        cert_dir: dir.join("certs"),
        ..TlsConfig::default()
    }
}

#[test]
fn first_run_writes_root_and_leaf_with_private_keys_0600() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_in(dir.path());
    let manager = CertificateManager::init(&config, Arc::new(SystemClock)).unwrap();
    for (file, mode) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("gateway.crt", 0o644),
        ("gateway.key", 0o600),
    ] {
        assert_eq!(
            mode_of(&config.cert_dir.join(file)).unwrap(),
            mode,
            "{file}"
        );
    }
    let served = manager.current();
    assert!(!served.is_ca, "leaf must be CA:FALSE");
    for name in ["localhost", "127.0.0.1", "::1"] {
        assert!(
            served.sans.iter().any(|s| s == name),
            "{name} missing from {:?}",
            served.sans
        );
    }
    let lifetime = served.not_after.duration_since(served.not_before).unwrap();
    assert!(
        lifetime <= 91 * DAY,
        "explicit short validity, got {lifetime:?}"
    );
    let root = manager.root().unwrap();
    assert!(root.is_ca);
    assert!(root.not_after > served.not_after);
}

#[test]
fn second_run_reuses_root_and_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_in(dir.path());
    let first = CertificateManager::init(&config, Arc::new(SystemClock)).unwrap();
    let second = CertificateManager::init(&config, Arc::new(SystemClock)).unwrap();
    assert_eq!(
        first.current().fingerprint_sha256,
        second.current().fingerprint_sha256
    );
    assert_eq!(
        first.root().unwrap().fingerprint_sha256,
        second.root().unwrap().fingerprint_sha256
    );
}

#[test]
fn configured_hostname_forces_a_new_leaf_under_the_same_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tls_in(dir.path());
    let first = CertificateManager::init(&config, Arc::new(SystemClock)).unwrap();
    config.hostnames = vec!["gateway.internal".to_owned()];
    let second = CertificateManager::init(&config, Arc::new(SystemClock)).unwrap();
    assert_ne!(
        first.current().fingerprint_sha256,
        second.current().fingerprint_sha256
    );
    assert!(
        second
            .current()
            .sans
            .contains(&"gateway.internal".to_owned())
    );
    assert_eq!(
        first.root().unwrap().fingerprint_sha256,
        second.root().unwrap().fingerprint_sha256
    );
}

#[test]
fn p384_is_selectable() {
    let dir = tempfile::tempdir().unwrap();
    let config = TlsConfig {
        key_algorithm: KeyAlgorithm::EcdsaP384,
        ..tls_in(dir.path())
    };
    let manager = CertificateManager::init(&config, Arc::new(SystemClock)).unwrap();
    let pem = std::fs::read_to_string(config.cert_dir.join("gateway.key")).unwrap();
    assert!(pem.contains("PRIVATE KEY"));
    assert!(manager.current().spki_pin.starts_with("sha256//"));
}

#[test]
fn half_a_root_is_never_regenerated_silently() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_in(dir.path());
    CertificateManager::init(&config, Arc::new(SystemClock)).unwrap();
    std::fs::remove_file(config.cert_dir.join("ca.key")).unwrap();
    let err = CertificateManager::init(&config, Arc::new(SystemClock))
        .err()
        .unwrap();
    assert!(matches!(err, CertError::RootIncomplete { .. }), "{err}");
}

#[test]
fn provided_keys_in_pkcs8_sec1_and_pkcs1_load() {
    let now = SystemTime::now();
    load_files(&data("ec.crt"), &data("ec.sec1.key"), now).expect("SEC1");
    load_files(&data("rsa2048.crt"), &data("rsa2048.pkcs1.key"), now).expect("PKCS#1 RSA-2048");
    let root = generate_root(KeyAlgorithm::EcdsaP256, 10 * DAY, now).unwrap();
    let leaf = issue_server_cert(&root, &[], KeyAlgorithm::EcdsaP256, DAY, now).unwrap();
    load_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes(), now).expect("PKCS#8");
}

#[test]
fn mismatched_key_is_refused() {
    let now = SystemTime::now();
    let root = generate_root(KeyAlgorithm::EcdsaP256, 10 * DAY, now).unwrap();
    let a = issue_server_cert(&root, &[], KeyAlgorithm::EcdsaP256, DAY, now).unwrap();
    let b = issue_server_cert(&root, &[], KeyAlgorithm::EcdsaP256, DAY, now).unwrap();
    let err = load_pem(a.cert_pem.as_bytes(), b.key_pem.as_bytes(), now).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch), "{err}");
    assert_eq!(
        err.to_string(),
        "private key does not match the certificate's public key"
    );
}

#[test]
fn short_rsa_key_is_refused() {
    let err = load_files(
        &data("rsa1024.crt"),
        &data("rsa1024.key"),
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(
        matches!(err, CertError::RsaKeyTooSmall { bits: 1024 }),
        "{err}"
    );
    assert!(err.to_string().contains("minimum 2048"), "{err}");
}

#[test]
fn expired_certificate_is_refused() {
    let long_ago = SystemTime::now() - 400 * DAY;
    let root = generate_root(KeyAlgorithm::EcdsaP256, 3650 * DAY, long_ago).unwrap();
    let leaf = issue_server_cert(&root, &[], KeyAlgorithm::EcdsaP256, 30 * DAY, long_ago).unwrap();
    let err = load_pem(
        leaf.cert_pem.as_bytes(),
        leaf.key_pem.as_bytes(),
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(matches!(err, CertError::Expired { .. }), "{err}");
}

#[test]
fn garbage_pem_is_refused() {
    let now = SystemTime::now();
    let err = load_pem(b"not a certificate", b"nor a key", now).unwrap_err();
    assert!(matches!(err, CertError::NoCertificate { .. }), "{err}");
    let root = generate_root(KeyAlgorithm::EcdsaP256, DAY * 2, now).unwrap();
    let err = load_pem(
        root.cert_pem.as_bytes(),
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        now,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            CertError::UnsupportedKey(_) | CertError::NoPrivateKey { .. }
        ),
        "{err}"
    );
    let err = load_pem(
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        root.key_pem.as_bytes(),
        now,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::BadPem(_)), "{err}");
}

#[test]
fn gateway_refuses_to_start_without_a_usable_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), |c, _| {
        c.tls.cert_path = Some(data("rsa1024.crt"));
        c.tls.key_path = Some(data("rsa1024.key"));
    });
    let err = Gateway::build(config).err().expect("must refuse to start");
    assert!(err.to_string().contains("too small"), "{err}");
}

#[test]
fn error_messages_never_contain_key_material() {
    let key = std::fs::read_to_string(data("ec.sec1.key")).unwrap();
    let body_line = key.lines().nth(1).unwrap();
    let err = load_files(
        &data("rsa2048.crt"),
        &data("ec.sec1.key"),
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(!err.to_string().contains(body_line), "{err}");
    assert!(!format!("{err:?}").contains(body_line));
}

#[tokio::test]
async fn fingerprint_and_pin_match_the_served_certificate() {
    let gw = TestGateway::start(|_, _| {}).await;
    let tls = gw.client().connect(gw.addr()).await.unwrap();
    let served_der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let info = gw.running.certificates().current();
    assert_eq!(fingerprint(&served_der), info.fingerprint_sha256);
    let inspected = certs::inspect(&served_der).unwrap();
    assert_eq!(inspected.spki_pin, info.spki_pin);

    // The CLI prints the same values.
    let config_path = gw.dir.path().join("gateway.toml");
    std::fs::write(
        &config_path,
        format!("[tls]\ncert_dir = {:?}\n", gw.config.tls.cert_dir),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clawgate"))
        .args(["cert", "fingerprint", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&info.fingerprint_sha256), "{stdout}");
    assert!(stdout.contains(&info.spki_pin), "{stdout}");
}

#[tokio::test]
async fn due_leaf_is_renewed_under_the_same_root_and_served() {
    // A one-hour leaf renews 20 minutes before expiry; a renewal 45 minutes
    // from now issues a leaf backdated into the present, so the client can check it.
    let gw = TestGateway::start(|c, _| {
        c.tls.server_cert_validity = Duration::from_secs(3600);
        c.tls.renew_before = Duration::from_secs(1200);
    })
    .await;
    let manager = gw.running.certificates();
    let before = manager.current();
    assert_eq!(
        manager.refresh_at(SystemTime::now()).unwrap(),
        RenewOutcome::Unchanged
    );
    let later = SystemTime::now() + Duration::from_secs(45 * 60);
    let RenewOutcome::Swapped(after) = manager.refresh_at(later).unwrap() else {
        panic!("renewal was due")
    };
    assert_ne!(after.fingerprint_sha256, before.fingerprint_sha256);
    // A client that trusts only the root keeps working and sees the new leaf.
    let tls = gw.client().connect(gw.addr()).await.unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(fingerprint(&served), after.fingerprint_sha256);
}

#[tokio::test]
async fn fifty_swaps_under_handshake_load_fail_no_handshake() {
    let gw = TestGateway::start(|_, _| {}).await;
    let client = gw.client();
    let addr = gw.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.connect(addr).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // A connection opened before the swaps must survive all of them.
    let early = TestClient::with_alpn(&gw.ca_path(), &[b"http/1.1"]);
    let early_tls = early.connect(addr).await.unwrap();
    let (mut early_sender, early_conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(early_tls))
            .await
            .unwrap();
    tokio::spawn(early_conn);
    let manager = Arc::clone(gw.running.certificates());
    let cert_dir = gw.config.tls.cert_dir.clone();
    let mut fingerprints = std::collections::HashSet::new();
    for _ in 0..50 {
        let (leaf, _) = certs::generate_into(
            &TlsConfig {
                cert_dir: cert_dir.clone(),
                ..TlsConfig::default()
            },
            false,
            SystemTime::now(),
        )
        .unwrap();
        let loaded = load_files(
            &cert_dir.join("gateway.crt"),
            &cert_dir.join("gateway.key"),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(loaded.info.fingerprint_sha256, leaf.fingerprint_sha256);
        manager.swap(&loaded);
        fingerprints.insert(leaf.fingerprint_sha256);
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    assert_eq!(fingerprints.len(), 50);
    let req = hyper::Request::get("/health")
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = early_sender
        .send_request(req)
        .await
        .expect("connection opened before the swaps was dropped");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "handshakes failed during swaps"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
}

/// A small local CA: 100-day root, 10-day leaves renewed 2 days before expiry.
fn short_lived(dir: &Path) -> TlsConfig {
    TlsConfig {
        root_validity: 100 * DAY,
        server_cert_validity: 10 * DAY,
        renew_before: 2 * DAY,
        ..tls_in(dir)
    }
}

fn root_info(not_before: SystemTime, lifetime: Duration) -> certs::CertInfo {
    certs::CertInfo {
        subject: "CN=root".to_owned(),
        issuer: "CN=root".to_owned(),
        sans: Vec::new(),
        not_before,
        not_after: not_before + lifetime,
        fingerprint_sha256: String::new(),
        spki_pin: String::new(),
        is_ca: true,
    }
}

#[test]
fn root_renewal_window_is_the_largest_bound_capped_at_half_the_lifetime() {
    let t0 = SystemTime::UNIX_EPOCH + 20_000 * DAY;
    // Defaults: 10-year root → a tenth of its life, 365 days, wins.
    let ten_years = root_info(t0, 3650 * DAY);
    assert_eq!(
        certs::root_renew_threshold(&TlsConfig::default(), &ten_years),
        365 * DAY
    );
    // A leaf lifetime above the other bounds wins, so a leaf issued under a
    // root that is not due never outlives it.
    let dir = tempfile::tempdir().unwrap();
    let config = short_lived(dir.path());
    let hundred_days = root_info(t0, 100 * DAY);
    assert_eq!(
        certs::root_renew_threshold(&config, &hundred_days),
        10 * DAY
    );
    // 2 × renew_before wins when larger, but never past half the lifetime.
    let config = TlsConfig {
        renew_before: 30 * DAY,
        server_cert_validity: 40 * DAY,
        ..config
    };
    assert_eq!(
        certs::root_renew_threshold(&config, &hundred_days),
        50 * DAY
    );
    assert!(!certs::root_renewal_due(
        &config,
        &hundred_days,
        t0 + 49 * DAY
    ));
    assert!(certs::root_renewal_due(
        &config,
        &hundred_days,
        t0 + 50 * DAY
    ));
}

#[test]
fn due_root_is_renewed_and_the_leaf_reissued_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = short_lived(dir.path());
    let t0 = SystemTime::now();
    let clock = Arc::new(ManualClock::new(t0));
    let manager = CertificateManager::init(&config, clock).unwrap();
    let first_root = manager.root().unwrap();

    // 15 days left on the root (window: 10 days): only the leaf renews.
    let RenewOutcome::Swapped(leaf) = manager.refresh_at(t0 + 85 * DAY).unwrap() else {
        panic!("leaf renewal was due, root renewal was not")
    };
    assert_eq!(manager.root().unwrap(), first_root);
    assert!(leaf.not_after <= first_root.not_after);

    // 9 days left: the root is renewed and the leaf re-issued under it.
    let at = t0 + 91 * DAY;
    let RenewOutcome::RootRenewed { leaf, root } = manager.refresh_at(at).unwrap() else {
        panic!("root renewal was due")
    };
    assert_ne!(root.fingerprint_sha256, first_root.fingerprint_sha256);
    assert!(root.not_after >= at + 99 * DAY);
    assert_eq!(manager.root().unwrap(), root);
    assert_eq!(manager.current(), leaf);
    // On disk: ca.crt is the new root and gateway.crt chains to it.
    let on_disk = certs::describe(&config).unwrap();
    assert_eq!(on_disk[0].1, leaf);
    assert_eq!(on_disk[1].1, root);
    let chain =
        certs::parse_chain(&std::fs::read(config.cert_dir.join("gateway.crt")).unwrap()).unwrap();
    assert_eq!(fingerprint(&chain[1]), root.fingerprint_sha256);
    // Nothing further is due at that time.
    assert_eq!(manager.refresh_at(at).unwrap(), RenewOutcome::Unchanged);
}

#[test]
fn due_root_is_renewed_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = short_lived(dir.path());
    let t0 = SystemTime::now();
    let first = CertificateManager::init(&config, Arc::new(ManualClock::new(t0))).unwrap();
    let later =
        CertificateManager::init(&config, Arc::new(ManualClock::new(t0 + 91 * DAY))).unwrap();
    let (old, new) = (first.root().unwrap(), later.root().unwrap());
    assert_ne!(old.fingerprint_sha256, new.fingerprint_sha256);
    assert_eq!(later.current().issuer, new.subject);
}

#[test]
fn expired_root_is_an_error_never_a_silent_regeneration() {
    let dir = tempfile::tempdir().unwrap();
    let config = short_lived(dir.path());
    let t0 = SystemTime::now();
    CertificateManager::init(&config, Arc::new(ManualClock::new(t0))).unwrap();
    let ca = std::fs::read(config.cert_dir.join("ca.crt")).unwrap();
    let err = CertificateManager::init(&config, Arc::new(ManualClock::new(t0 + 101 * DAY)))
        .err()
        .unwrap();
    assert!(matches!(err, CertError::RootExpired { .. }), "{err}");
    assert!(err.to_string().contains("--new-root"), "{err}");
    assert_eq!(std::fs::read(config.cert_dir.join("ca.crt")).unwrap(), ca);
}

#[test]
fn leaf_never_outlives_its_root() {
    // 15-day root, 10-day leaves: at day 7 the leaf is due (a third of its
    // life is left from day 6.7) while the root (8 days left, window 7.5) is not.
    let dir = tempfile::tempdir().unwrap();
    let config = TlsConfig {
        root_validity: 15 * DAY,
        server_cert_validity: 10 * DAY,
        renew_before: 4 * DAY,
        ..tls_in(dir.path())
    };
    let t0 = SystemTime::now();
    let manager = CertificateManager::init(&config, Arc::new(ManualClock::new(t0))).unwrap();
    let root = manager.root().unwrap();
    let RenewOutcome::Swapped(leaf) = manager.refresh_at(t0 + DAY * 7).unwrap() else {
        panic!("leaf renewal was due")
    };
    assert!(leaf.not_after <= root.not_after, "{leaf:?} vs {root:?}");
    let lifetime = leaf.not_after.duration_since(t0 + DAY * 7).unwrap();
    assert!(lifetime < 9 * DAY, "capped at the root's remaining life");
}

#[tokio::test]
async fn sighup_reload_serves_a_certificate_made_by_cert_generate() {
    let gw = TestGateway::start(|_, _| {}).await;
    let before = gw.running.certificates().current();
    let (leaf, _) = certs::generate_into(&gw.config.tls, false, SystemTime::now()).unwrap();
    assert_ne!(leaf.fingerprint_sha256, before.fingerprint_sha256);
    gw.running.reload().await;
    let tls = gw.client().connect(gw.addr()).await.unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(fingerprint(&served), leaf.fingerprint_sha256);
}

#[tokio::test]
async fn a_handshake_after_sleep_triggers_renewal_on_the_wall_clock() {
    // Built 45 minutes in the past: the one-hour leaf is due for renewal
    // (20 minutes left) by real time, and the hourly timer has not fired.
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(clawgate::clock::ManualClock::new(
        SystemTime::now() - Duration::from_secs(45 * 60),
    ));
    let config = test_config(dir.path(), |c, _| {
        c.tls.server_cert_validity = Duration::from_secs(3600);
        c.tls.renew_before = Duration::from_secs(1200);
        c.tls.check_interval = Duration::from_secs(3600);
    });
    let running = Gateway::build_with_clock(config.clone(), clock.clone())
        .unwrap()
        .start()
        .await
        .unwrap();
    let before = running.certificates().current().fingerprint_sha256;
    clock.set(SystemTime::now()); // the host wakes up
    let client = TestClient::trusting(&config.tls.cert_dir.join("ca.crt"));
    let renewed = common::eventually_async(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let tls = client.connect(running.addr()).await.unwrap();
            fingerprint(&tls.get_ref().1.peer_certificates().unwrap()[0]) != before
        },
    )
    .await;
    assert!(
        renewed,
        "a due certificate kept serving after handshakes noticed it"
    );
    running.shutdown().await;
}

#[test]
fn missing_provided_files_name_the_path() {
    let err = load_files(
        Path::new("/nonexistent/c.pem"),
        Path::new("/nonexistent/k.pem"),
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/c.pem"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&crt, b"no pem here").unwrap();
    std::fs::copy(data("ec.sec1.key"), &key).unwrap();
    let err = load_files(&crt, &key, SystemTime::now()).unwrap_err();
    assert!(
        err.to_string().contains("c.pem"),
        "the error must name the file: {err}"
    );
}

#[test]
fn describe_shows_a_provided_certificate_without_a_root() {
    let config = TlsConfig {
        cert_path: Some(data("ec.crt")),
        key_path: Some(data("ec.sec1.key")),
        ..TlsConfig::default()
    };
    let described = certs::describe(&config).unwrap();
    assert_eq!(described.len(), 1);
    assert_eq!(described[0].0, "server");
    assert!(described[0].1.subject.contains("sec1 test vector"));
    let manager = CertificateManager::init(&config, Arc::new(SystemClock)).unwrap();
    assert!(manager.is_provided());
    assert!(manager.root_path().is_none());
}

#[tokio::test]
async fn reload_refuses_a_leaf_that_does_not_chain_to_the_root() {
    let gw = TestGateway::start(|_, _| {}).await;
    let before = gw.running.certificates().current();
    // A leaf from another root written over gateway.crt/gateway.key.
    let now = SystemTime::now();
    let other_root = generate_root(KeyAlgorithm::EcdsaP256, 10 * DAY, now).unwrap();
    let leaf = issue_server_cert(&other_root, &[], KeyAlgorithm::EcdsaP256, DAY, now).unwrap();
    let dir = &gw.config.tls.cert_dir;
    std::fs::write(dir.join("gateway.key"), &leaf.key_pem).unwrap();
    std::fs::write(
        dir.join("gateway.crt"),
        format!("{}{}", leaf.cert_pem, other_root.cert_pem),
    )
    .unwrap();
    let err = gw.running.certificates().reload_files_at(now).unwrap_err();
    assert!(matches!(err, CertError::NotChainedToRoot), "{err:?}");
    assert!(err.to_string().contains("does not chain"), "{err}");
    assert_eq!(gw.running.certificates().current(), before);
}

// ---- provided files: what is refused and why ---------------------------

#[test]
fn key_and_certificate_debug_never_show_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let root = generate_root(KeyAlgorithm::EcdsaP256, 10 * DAY, now).unwrap();
    let leaf = issue_server_cert(&root, &[], KeyAlgorithm::EcdsaP256, DAY, now).unwrap();
    let loaded = load_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes(), now).unwrap();
    let manager = CertificateManager::init(&tls_in(dir.path()), Arc::new(SystemClock)).unwrap();
    let served_key = std::fs::read_to_string(dir.path().join("certs/gateway.key")).unwrap();

    let pair = format!("{leaf:?}");
    let loaded_debug = format!("{loaded:?}");
    let resolver = format!("{:?}", manager.resolver());
    assert_eq!(pair, "PemPair { .. }");
    assert!(
        loaded_debug.contains(&loaded.info.fingerprint_sha256),
        "{loaded_debug}"
    );
    assert!(
        resolver.contains(&manager.current().fingerprint_sha256),
        "{resolver}"
    );
    let key_lines = leaf.key_pem.lines().chain(served_key.lines());
    for line in key_lines.filter(|l| !l.starts_with("-----")) {
        for rendered in [&pair, &loaded_debug, &resolver] {
            assert!(!rendered.contains(line), "{rendered}");
        }
    }
}

#[test]
fn certificate_from_the_future_is_refused_with_its_start_time() {
    let now = SystemTime::now();
    let root = generate_root(KeyAlgorithm::EcdsaP256, 100 * DAY, now).unwrap();
    let leaf = issue_server_cert(&root, &[], KeyAlgorithm::EcdsaP256, DAY, now + 10 * DAY).unwrap();
    let der = certs::parse_chain(leaf.cert_pem.as_bytes()).unwrap();
    let starts = certs::inspect(&der[0]).unwrap().not_before;
    let err = load_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes(), now).unwrap_err();
    assert!(
        matches!(&err, CertError::NotYetValid { not_before } if *not_before == rfc3339(starts)),
        "{err}"
    );
    assert!(
        err.to_string().contains(&rfc3339(starts)),
        "the operator sees when it becomes valid: {err}"
    );
    load_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes(), starts)
        .expect("valid from its not_before on");
}

#[test]
fn key_file_without_a_key_names_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server.key");
    std::fs::write(
        &key,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = load_files(&data("ec.crt"), &key, SystemTime::now()).unwrap_err();
    assert!(
        matches!(&err, CertError::NoPrivateKey { path: Some(p) } if *p == key),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&key.display().to_string()), "{msg}");
    assert!(msg.contains("PKCS#8, SEC1 or PKCS#1"), "{msg}");
}

#[test]
fn only_dns_names_and_well_formed_ip_addresses_are_listed_as_names() {
    // A subjectAltName with a DNS name, an IPv4 and an IPv6 address, an
    // 8-byte address/mask (the name-constraints form, not an address), an
    // e-mail address and a URI: only the first three are host names.
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag, u8::try_from(body.len()).unwrap()];
        out.extend_from_slice(body);
        out
    }
    let v6: [u8; 16] = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let names = [
        tlv(0x82, b"gw.example"),
        tlv(0x87, &[192, 0, 2, 7]),
        tlv(0x87, &v6),
        tlv(0x87, &[10, 0, 0, 0, 255, 0, 0, 0]),
        tlv(0x81, b"ops@gw.example"),
        tlv(0x86, b"https://gw.example/"),
    ]
    .concat();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[2, 5, 29, 17],
            tlv(0x30, &names),
        ));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let info = certs::inspect(cert.der()).unwrap();
    assert_eq!(info.sans, ["gw.example", "192.0.2.7", "2001:db8::1"]);
}

#[test]
fn validity_that_starts_before_1970_reads_as_starting_at_the_epoch() {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["old.example".to_owned()]).unwrap();
    params.not_before = time::OffsetDateTime::from_unix_timestamp(-365 * 86_400).unwrap();
    let until = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    params.not_after = time::OffsetDateTime::from(until);
    let cert = params.self_signed(&key).unwrap();
    let loaded = load_pem(
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        SystemTime::now(),
    )
    .expect("valid today");
    assert_eq!(loaded.info.not_before, SystemTime::UNIX_EPOCH);
    assert_eq!(loaded.info.not_after, until);
}

// ---- generated mode: files, reloads and `cert generate` -----------------

#[test]
fn generated_mode_points_clients_at_the_root_it_serves_under() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_in(dir.path());
    let manager = CertificateManager::init(&config, Arc::new(SystemClock)).unwrap();
    let path = manager.root_path().unwrap();
    assert_eq!(path, config.cert_dir.join("ca.crt"));
    assert!(!manager.is_provided());
    assert!(manager.provided_paths().is_none());
    let on_disk = certs::parse_chain(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        certs::inspect(&on_disk[0]).unwrap(),
        manager.root().unwrap()
    );
    assert_eq!(manager.current().issuer, manager.root().unwrap().subject);
}

#[test]
fn reload_of_unchanged_generated_files_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_in(dir.path());
    let now = SystemTime::now();
    let manager = CertificateManager::init(&config, Arc::new(ManualClock::new(now))).unwrap();
    let (before, root) = (manager.current(), manager.root());
    assert_eq!(
        manager.reload_files_at(now).unwrap(),
        RenewOutcome::Unchanged
    );
    assert_eq!(manager.current(), before);
    assert_eq!(manager.root(), root);
}

#[test]
fn generate_with_a_new_root_replaces_it_and_a_reload_serves_the_new_chain() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_in(dir.path());
    let now = SystemTime::now();
    let manager = CertificateManager::init(&config, Arc::new(ManualClock::new(now))).unwrap();
    let old_root = manager.root().unwrap();

    let (leaf, root) = certs::generate_into(&config, true, now).unwrap();
    assert_ne!(root.fingerprint_sha256, old_root.fingerprint_sha256);
    assert!(root.is_ca && !leaf.is_ca);
    let chain =
        certs::parse_chain(&std::fs::read(config.cert_dir.join("gateway.crt")).unwrap()).unwrap();
    assert_eq!(
        fingerprint(&chain[1]),
        root.fingerprint_sha256,
        "leaf chains to the new root"
    );
    assert_eq!(certs::describe(&config).unwrap()[1].1, root);

    // The running manager picks both up on reload (SIGHUP).
    assert_eq!(
        manager.reload_files_at(now).unwrap(),
        RenewOutcome::Swapped(leaf.clone())
    );
    assert_eq!(manager.current(), leaf);
    assert_eq!(manager.root().unwrap(), root);

    // Without --new-root the root stays.
    let (_, same_root) = certs::generate_into(&config, false, now).unwrap();
    assert_eq!(same_root, root);
}

#[test]
fn describe_without_generated_files_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_in(dir.path());
    let err = certs::describe(&config).unwrap_err();
    let expected = config.cert_dir.join("gateway.crt");
    assert!(
        matches!(&err, CertError::Io { path, source } if *path == expected
            && source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
    assert!(
        err.to_string().contains(&expected.display().to_string()),
        "{err}"
    );
}

#[test]
fn cert_dir_that_cannot_be_created_fails_closed_naming_the_file() {
    // A regular file where the directory should be: mkdir fails (ENOTDIR),
    // even for root.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let config = TlsConfig {
        cert_dir: blocker.join("certs"),
        ..TlsConfig::default()
    };
    let err = CertificateManager::init(&config, Arc::new(SystemClock))
        .err()
        .expect("no manager without a certificate");
    let key = config.cert_dir.join("ca.key");
    assert!(
        matches!(&err, CertError::Io { path, .. } if *path == key),
        "{err}"
    );
    assert!(
        err.to_string().contains(&key.display().to_string()),
        "{err}"
    );
}

// ---- provided mode: reload (SIGHUP) ------------------------------------

#[test]
fn reload_of_provided_files_swaps_a_changed_pair_and_keeps_it_over_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let now = SystemTime::now();
    let root = generate_root(KeyAlgorithm::EcdsaP256, 10 * DAY, now).unwrap();
    let issue = || issue_server_cert(&root, &[], KeyAlgorithm::EcdsaP256, DAY, now).unwrap();
    let first = issue();
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let config = TlsConfig {
        cert_path: Some(cert.clone()),
        key_path: Some(key.clone()),
        ..tls_in(dir.path())
    };
    let manager = CertificateManager::init(&config, Arc::new(ManualClock::new(now))).unwrap();
    assert_eq!(
        manager.reload_files_at(now).unwrap(),
        RenewOutcome::Unchanged
    );

    let second = issue();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    std::fs::write(&key, &second.key_pem).unwrap();
    let RenewOutcome::Swapped(info) = manager.reload_files_at(now).unwrap() else {
        panic!("the files changed")
    };
    assert_eq!(manager.current(), info);
    assert!(manager.root().is_none(), "provided mode has no local root");

    // A new certificate with the old key: refused, the second pair stays.
    std::fs::write(&cert, &issue().cert_pem).unwrap();
    let err = manager.reload_files_at(now).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch), "{err}");
    assert_eq!(manager.current(), info);
}

mod certificate {
    mod reload;
}

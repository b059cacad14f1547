//! Provided certificates reload when their files change: plain renames,
//! Kubernetes-style symlink swaps, bad and half-written replacements (the
//! last good certificate keeps serving), and 50 swaps under handshake load.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use crate::common;
use crate::common::tls_echo;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use clawgate::clock::SystemClock;
use clawgate::config::{KeyAlgorithm, TlsConfig};
use clawgate::gateway::certificate_manager::{
    CertificateManager, PemPair, generate_root, issue_server_cert, load_pem, spawn_provided_watch,
};
use clawgate::gateway::metrics::Metrics;
use clawgate::secret_file::{write_public, write_secret};
use common::{TestClient, TestGateway, eventually, eventually_every};
use tempfile::TempDir;
use tls_echo::{EchoServer, client, connect, served_fingerprint};

const DAY: Duration = Duration::from_secs(86_400);
/// Poll interval for the Plain layout: the key and certificate renames are
/// two steps, and the state between them (new key, old certificate) must not
/// stay unchanged for two polls, or it is read and counted as a failure (as
/// it would be in production if the gap exceeded a second).
const POLL: Duration = Duration::from_millis(50);
/// Poll interval for the 50 atomic symlink swaps.
const FAST_POLL: Duration = Duration::from_millis(5);
const WAIT: Duration = Duration::from_secs(3);

/// How the provided files are laid out and replaced.
#[derive(Clone, Copy)]
enum Layout {
    /// `tls.crt` / `tls.key`, each replaced by a rename (key first).
    Plain,
    /// Kubernetes secret volume: `tls.crt -> ..data/tls.crt`, and
    /// `..data -> ..gen-N` swapped atomically for both files at once.
    Kubernetes,
}

/// A directory of provided certificate files signed by a test root.
struct Provided {
    dir: TempDir,
    layout: Layout,
    root: PemPair,
    generation: usize,
}

impl Provided {
    fn new(layout: Layout) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = generate_root(KeyAlgorithm::EcdsaP256, 30 * DAY, SystemTime::now()).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &root.cert_pem).unwrap();
        let mut provided = Self {
            dir,
            layout,
            root,
            generation: 0,
        };
        if let Layout::Kubernetes = layout {
            let d = provided.dir.path();
            std::os::unix::fs::symlink("..data/tls.crt", d.join("tls.crt")).unwrap();
            std::os::unix::fs::symlink("..data/tls.key", d.join("tls.key")).unwrap();
        }
        let first = provided.new_pair();
        provided.install(&first);
        provided
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn tls_config(&self) -> TlsConfig {
        TlsConfig {
            cert_dir: self.dir.path().join("unused"),
            cert_path: Some(self.cert()),
            key_path: Some(self.key()),
            ..TlsConfig::default()
        }
    }

    /// A fresh leaf (chain: leaf + root) and key.
    fn new_pair(&self) -> PemPair {
        let leaf = issue_server_cert(
            &self.root,
            &[],
            KeyAlgorithm::EcdsaP256,
            DAY,
            SystemTime::now(),
        )
        .unwrap();
        PemPair {
            cert_pem: format!("{}{}", leaf.cert_pem, self.root.cert_pem),
            key_pem: leaf.key_pem,
        }
    }

    /// Replaces the served files with `pair`, atomically per layout.
    fn install(&mut self, pair: &PemPair) {
        self.generation += 1;
        let d = self.dir.path();
        match self.layout {
            Layout::Plain => {
                for (path, text) in [(self.key(), &pair.key_pem), (self.cert(), &pair.cert_pem)] {
                    std::fs::write(d.join("incoming"), text).unwrap();
                    std::fs::rename(d.join("incoming"), path).unwrap();
                }
            }
            Layout::Kubernetes => {
                let generation = format!("..gen-{}", self.generation);
                std::fs::create_dir(d.join(&generation)).unwrap();
                write_public(
                    &d.join(&generation).join("tls.crt"),
                    pair.cert_pem.as_bytes(),
                )
                .unwrap();
                write_secret(
                    &d.join(&generation).join("tls.key"),
                    pair.key_pem.as_bytes(),
                )
                .unwrap();
                std::os::unix::fs::symlink(&generation, d.join("..data_tmp")).unwrap();
                std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
            }
        }
    }
}

fn fingerprint_of(pair: &PemPair) -> String {
    load_pem(
        pair.cert_pem.as_bytes(),
        pair.key_pem.as_bytes(),
        SystemTime::now(),
    )
    .unwrap()
    .info
    .fingerprint_sha256
}

/// `clawgate_certificate_renewals_total{result=…}` as exposed.
fn renewals(metrics: &Metrics, result: &str) -> u64 {
    let prefix = format!("clawgate_certificate_renewals_total{{result=\"{result}\"}} ");
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0)
}

/// A TLS server on the provided files, with the file watch running.
struct Running {
    files: Provided,
    manager: Arc<CertificateManager>,
    metrics: Arc<Metrics>,
    server: EchoServer,
    watch: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(layout: Layout, poll: Duration) -> Self {
        let files = Provided::new(layout);
        let manager =
            Arc::new(CertificateManager::init(&files.tls_config(), Arc::new(SystemClock)).unwrap());
        let metrics = Arc::new(Metrics::new());
        let server = EchoServer::start(&manager, None).await;
        let watch = spawn_provided_watch(Arc::clone(&manager), Arc::clone(&metrics.certs), poll);
        Self {
            files,
            manager,
            metrics,
            server,
            watch,
        }
    }

    fn current(&self) -> String {
        self.manager.current().fingerprint_sha256
    }

    async fn served(&self) -> String {
        served_fingerprint(&client(&self.files.ca(), None), self.server.addr)
            .await
            .unwrap()
    }

    async fn wait_until_current(&self, fingerprint: &str) -> bool {
        eventually(WAIT, || self.current() == fingerprint).await
    }

    /// Like `wait_until_current`, polling every 2 ms (50 swaps in a row).
    async fn wait_until_current_fast(&self, fingerprint: &str) -> bool {
        eventually_every(WAIT, Duration::from_millis(2), || {
            self.current() == fingerprint
        })
        .await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

#[tokio::test]
async fn replaced_pair_is_served_after_the_files_change() {
    let mut rt = Running::start(Layout::Plain, POLL).await;
    let before = rt.served().await;
    assert_eq!(before, rt.current());
    let next = rt.files.new_pair();
    rt.files.install(&next);
    assert!(rt.wait_until_current(&fingerprint_of(&next)).await);
    assert_eq!(rt.served().await, fingerprint_of(&next));
    assert_eq!(renewals(&rt.metrics, "swapped"), 1);
    assert_eq!(renewals(&rt.metrics, "failed"), 0);
}

#[tokio::test]
async fn kubernetes_symlink_swap_is_served() {
    let mut rt = Running::start(Layout::Kubernetes, POLL).await;
    for _ in 0..2 {
        let next = rt.files.new_pair();
        rt.files.install(&next);
        assert!(rt.wait_until_current(&fingerprint_of(&next)).await);
        assert_eq!(rt.served().await, fingerprint_of(&next));
    }
    assert_eq!(renewals(&rt.metrics, "swapped"), 2);
}

#[tokio::test]
async fn mismatched_pair_keeps_the_last_good_certificate_and_counts_a_failure() {
    let mut rt = Running::start(Layout::Plain, POLL).await;
    let good = rt.current();
    let (b, c) = (rt.files.new_pair(), rt.files.new_pair());
    rt.files.install(&PemPair {
        cert_pem: b.cert_pem.clone(),
        key_pem: c.key_pem,
    });
    assert!(eventually(WAIT, || renewals(&rt.metrics, "failed") == 1).await);
    assert_eq!(rt.current(), good);
    assert_eq!(
        rt.served().await,
        good,
        "last good certificate keeps serving"
    );
    // Fixing the pair is picked up like any change.
    rt.files.install(&b);
    assert!(rt.wait_until_current(&fingerprint_of(&b)).await);
    assert_eq!(
        renewals(&rt.metrics, "failed"),
        1,
        "one failure per bad state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_written_certificate_is_never_served() {
    let rt = Running::start(Layout::Plain, POLL).await;
    let old = rt.current();
    let new = rt.files.new_pair();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let prober = {
        let (config, addr) = (client(&rt.files.ca(), None), rt.server.addr);
        let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let fp = served_fingerprint(&config, addr).await.unwrap();
                seen.lock().unwrap().push(fp);
            }
        })
    };
    // Truncate the certificate in place and write half of the new one.
    let half = new.cert_pem.len() / 2;
    let mut file = std::fs::File::create(rt.files.cert()).unwrap();
    file.write_all(&new.cert_pem.as_bytes()[..half]).unwrap();
    file.sync_all().unwrap();
    assert!(eventually(WAIT, || renewals(&rt.metrics, "failed") >= 1).await);
    assert_eq!(rt.current(), old, "a half-written file is not served");
    // Complete it (key first, then the rest of the certificate).
    write_secret(&rt.files.key(), new.key_pem.as_bytes()).unwrap();
    file.write_all(&new.cert_pem.as_bytes()[half..]).unwrap();
    file.sync_all().unwrap();
    assert!(rt.wait_until_current(&fingerprint_of(&new)).await);
    assert_eq!(rt.served().await, fingerprint_of(&new));
    stop.store(true, Ordering::Relaxed);
    prober.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let switch = seen.iter().position(|fp| *fp != old).unwrap_or(seen.len());
    assert!(!seen.is_empty());
    assert!(
        seen[switch..].iter().all(|fp| *fp == fingerprint_of(&new)),
        "only the old, then only the new certificate was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_file_swaps_under_handshake_load_fail_no_handshake() {
    let mut rt = Running::start(Layout::Kubernetes, FAST_POLL).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (config, addr) = (client(&rt.files.ca(), None), rt.server.addr);
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match connect(&config, addr).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let started = std::time::Instant::now();
    for i in 0..50 {
        let next = rt.files.new_pair();
        rt.files.install(&next);
        assert!(
            rt.wait_until_current_fast(&fingerprint_of(&next)).await,
            "swap {i} not picked up"
        );
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let (swaps, reload_failures) = (
        renewals(&rt.metrics, "swapped"),
        renewals(&rt.metrics, "failed"),
    );
    eprintln!(
        "50 file swaps under load: {swaps} swaps, {reload_failures} reload failures, \
         {ok} handshakes ok, {failed} failed, {took:?}"
    );
    assert_eq!(swaps, 50);
    assert_eq!(reload_failures, 0);
    assert_eq!(failed, 0, "handshakes failed during swaps");
    assert!(ok > 0);
}

#[tokio::test]
async fn generated_certificates_are_not_file_watched() {
    let dir = tempfile::tempdir().unwrap();
    let config = TlsConfig {
        cert_dir: dir.path().join("certs"),
        ..TlsConfig::default()
    };
    let manager = Arc::new(CertificateManager::init(&config, Arc::new(SystemClock)).unwrap());
    let watch = spawn_provided_watch(manager, Arc::clone(&Metrics::new().certs), POLL);
    // Nothing to watch: the task ends at once instead of polling forever.
    tokio::time::timeout(WAIT, watch).await.unwrap().unwrap();
}

#[tokio::test]
async fn running_gateway_watches_provided_files_without_extra_wiring() {
    let files: Arc<Mutex<Option<Provided>>> = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&files);
    let gw = TestGateway::start(move |c, _| {
        let provided = Provided::new(Layout::Plain);
        c.tls.cert_path = Some(provided.cert());
        c.tls.key_path = Some(provided.key());
        c.tls.check_interval = Duration::from_millis(20);
        *slot.lock().unwrap() = Some(provided);
    })
    .await;
    let mut provided = files.lock().unwrap().take().unwrap();
    let next = provided.new_pair();
    provided.install(&next);
    let manager = gw.running.certificates();
    assert!(
        eventually(WAIT, || manager.current().fingerprint_sha256
            == fingerprint_of(&next))
        .await
    );
    let tls = TestClient::trusting(&provided.ca())
        .connect(gw.addr())
        .await
        .unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(
        clawgate::gateway::certificate_manager::fingerprint(&served),
        fingerprint_of(&next)
    );
}

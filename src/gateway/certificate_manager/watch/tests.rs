use std::sync::Mutex;
use std::time::SystemTime;

use tracing::instrument::WithSubscriber as _;

use super::*;
use crate::clock::Clock;
use crate::config::{KeyAlgorithm, TlsConfig};
use crate::gateway::certificate_manager::{PemPair, generate_root, issue_server_cert};
use crate::gateway::metrics::Metrics;
use crate::test_logs::Logs;

const DAY: Duration = Duration::from_secs(86_400);

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_change_is_acted_on_only_once_it_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    write(&cert, "a");
    write(&key, "a");
    let mut d = Debounce::new();
    assert!(!d.observe(FileStamp::of(&cert, &key)), "first sighting");
    assert!(d.observe(FileStamp::of(&cert, &key)), "stable: act");
    assert!(!d.observe(FileStamp::of(&cert, &key)), "already acted on");

    write(&cert, "half");
    assert!(!d.observe(FileStamp::of(&cert, &key)));
    write(&cert, "half written, now complete");
    assert!(
        !d.observe(FileStamp::of(&cert, &key)),
        "changed again: wait"
    );
    assert!(d.observe(FileStamp::of(&cert, &key)), "stable again: act");
}

#[test]
fn going_back_to_the_acted_on_state_cancels_a_pending_change() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    write(&cert, "a");
    write(&key, "a");
    let mut d = Debounce::new();
    let original = FileStamp::of(&cert, &key);
    d.observe(original.clone());
    assert!(d.observe(original.clone()));
    let other = FileStamp(vec![]);
    assert!(!d.observe(other.clone()));
    assert!(!d.observe(original), "back to the applied state");
    assert!(!d.observe(other), "the pending count was reset");
}

#[test]
fn stamp_sees_a_symlink_swap_of_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for generation in ["..v1", "..v2"] {
        std::fs::create_dir(root.join(generation)).unwrap();
        // Same size and content in both generations: only the target differs.
        write(&root.join(generation).join("tls.crt"), "same");
        write(&root.join(generation).join("tls.key"), "same");
    }
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", root.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", root.join("tls.key")).unwrap();
    let (cert, key) = (root.join("tls.crt"), root.join("tls.key"));
    let before = FileStamp::of(&cert, &key);
    std::os::unix::fs::symlink("..v2", root.join("..tmp")).unwrap();
    std::fs::rename(root.join("..tmp"), root.join("..data")).unwrap();
    assert_ne!(before, FileStamp::of(&cert, &key));
}

#[test]
fn a_missing_file_is_a_state_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let missing = FileStamp::of(&cert, &key);
    write(&cert, "a");
    write(&key, "a");
    assert_ne!(missing, FileStamp::of(&cert, &key));
}

/// Wall-clock time that runs a one-shot hook on its next reading: a reload
/// reads the clock just before it reads the files, so a test can act at
/// exactly that moment.
#[derive(Default)]
struct HookClock {
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl HookClock {
    fn on_next_reading(&self, hook: impl FnOnce() + Send + 'static) {
        *self.hook.lock().unwrap() = Some(Box::new(hook));
    }
}

impl Clock for HookClock {
    fn now(&self) -> SystemTime {
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        SystemTime::now()
    }
}

/// Provided files in a temp dir, served by a manager on a [`HookClock`].
struct Provided {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    root: PemPair,
    clock: Arc<HookClock>,
    manager: Arc<CertificateManager>,
}

impl Provided {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let root = generate_root(KeyAlgorithm::EcdsaP256, 10 * DAY, SystemTime::now()).unwrap();
        let first = issue(&root);
        replace(&cert, &first.cert_pem);
        replace(&key, &first.key_pem);
        let clock = Arc::new(HookClock::default());
        let config = TlsConfig {
            cert_path: Some(cert.clone()),
            key_path: Some(key.clone()),
            ..TlsConfig::default()
        };
        let manager = CertificateManager::init(&config, Arc::clone(&clock) as Arc<dyn Clock>);
        Self {
            _dir: dir,
            cert,
            key,
            root,
            clock,
            manager: Arc::new(manager.unwrap()),
        }
    }

    fn install(&self, pair: &PemPair) {
        replace(&self.cert, &pair.cert_pem);
        replace(&self.key, &pair.key_pem);
    }
}

fn issue(root: &PemPair) -> PemPair {
    issue_server_cert(root, &[], KeyAlgorithm::EcdsaP256, DAY, SystemTime::now()).unwrap()
}

/// Writes `text` to a new file renamed over `path`, as atomic writers do
/// (a new inode, so the change shows even within one timestamp tick).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    write(&tmp, text);
    std::fs::rename(tmp, path).unwrap();
}

#[test]
fn a_failed_read_of_files_that_changed_meanwhile_is_dropped_until_they_settle() {
    let files = Provided::new();
    let first = files.manager.current();
    let mut poller = Poller::new(Arc::clone(&files.manager)).unwrap();
    assert!(poller.poll().is_none(), "first sighting");
    assert!(matches!(poller.poll(), Some(Ok(RenewOutcome::Unchanged))));

    // A new pair settles; just as it is read, a writer starts on the next.
    files.install(&issue(&files.root));
    assert!(poller.poll().is_none(), "not stable yet");
    let next = issue(&files.root);
    let (cert, half) = (files.cert.clone(), next.cert_pem[..200].to_owned());
    files.clock.on_next_reading(move || write(&cert, &half));
    assert!(
        poller.poll().is_none(),
        "a read that raced a writer is neither served nor reported"
    );
    assert_eq!(files.manager.current(), first);

    // Once the writer is done and the files are stable, the pair is served.
    files.install(&next);
    assert!(poller.poll().is_none());
    let Some(Ok(RenewOutcome::Swapped(info))) = poller.poll() else {
        panic!("the finished pair is read once stable")
    };
    assert_eq!(files.manager.current(), info);

    // Without a concurrent change a bad pair is reported (and not served).
    replace(&files.cert, &issue(&files.root).cert_pem);
    assert!(poller.poll().is_none());
    assert!(matches!(poller.poll(), Some(Err(CertError::KeyMismatch))));
    assert_eq!(files.manager.current(), info);
}

#[tokio::test]
async fn a_poll_that_panics_stops_the_watch_with_an_alert() {
    let files = Provided::new();
    let served = files.manager.current();
    files
        .clock
        .on_next_reading(|| panic!("injected failure inside a reload"));
    let logs = Logs::default();
    let watch = watch_provided(
        Arc::clone(&files.manager),
        Arc::clone(&Metrics::new().certs),
        Duration::from_millis(1),
    )
    .with_subscriber(logs.subscriber());
    tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch ends instead of polling on");
    let events = logs.events();
    let stopped = events
        .iter()
        .find(|e| e["fields"]["event"] == "certificate_watch_stopped")
        .unwrap_or_else(|| panic!("no certificate_watch_stopped event: {events:?}"));
    assert_eq!(stopped["level"], "ERROR");
    assert_eq!(stopped["fields"]["alert"], "certificate_reload_failed");
    assert_eq!(files.manager.current(), served);
}

//! Reloading provided certificates when their files change; each reload is
//! reported (log line + metric) by the upkeep code in `expiry.rs`.
//!
//! **Polling, not inotify.** Every `poll` (1 s in the gateway) the watcher
//! stats the certificate, the key and both parent directories: the resolved
//! target of each path (Kubernetes swaps a `..data` symlink; certbot points
//! `live/` symlinks at new `archive/` files), device, inode, size, mtime and
//! ctime. Four `stat` calls a second cost nothing, need no extra crate, and
//! see renames, symlink swaps and in-place rewrites on every filesystem,
//! including bind mounts and network filesystems where inotify is blind
//! (PITFALLS C6, C7; Envoy had to watch moves only, envoy#10979).
//!
//! **Debounce.** A change is acted on only once the same state has been
//! seen on [`STABLE_POLLS`] consecutive polls, so a pair that is still being
//! written is not read. Certificate and key are then re-read together and
//! checked in full (parse, key match, RSA size, validity) by
//! [`CertificateManager::refresh`]; a bad or half-written pair raises the
//! `certificate_reload_failed` alert, counts `certificate_renewals{result="failed"}`,
//! and the last good certificate keeps serving. A state that failed is not
//! retried until the files change again (or SIGHUP), so a broken file does
//! not flood the log.
//!
//! This task sits at the boundary, so it records metrics itself; the loading
//! and checking code it calls records nothing.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::expiry::report;
use super::{CertError, CertificateManager, RenewOutcome};
use crate::gateway::metrics::CertMetrics;

/// Consecutive polls that must see the same changed state before it is read.
pub const STABLE_POLLS: u32 = 2;

/// The on-disk state of one watched path; `None` parts could not be read
/// (a missing file is a state too).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathStamp {
    resolved: Option<PathBuf>,
    /// (device, inode, size, mtime s, mtime ns, ctime s, ctime ns)
    meta: Option<(u64, u64, u64, i64, i64, i64, i64)>,
}

impl PathStamp {
    fn of(path: &Path) -> Self {
        Self {
            resolved: std::fs::canonicalize(path).ok(),
            meta: std::fs::metadata(path).ok().map(|m| {
                (
                    m.dev(),
                    m.ino(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                )
            }),
        }
    }
}

/// The on-disk state of a certificate, its key and their directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp(Vec<PathStamp>);

impl FileStamp {
    /// Stats `cert`, `key` and their parent directories (symlinks followed).
    pub fn of(cert: &Path, key: &Path) -> Self {
        let mut paths = vec![cert.to_path_buf(), key.to_path_buf()];
        for file in [cert, key] {
            let dir = file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !paths.iter().any(|p| p == dir) {
                paths.push(dir.to_path_buf());
            }
        }
        Self(paths.iter().map(|p| PathStamp::of(p)).collect())
    }
}

/// Decides when a changed file state is stable enough to read.
#[derive(Debug, Default)]
pub struct Debounce {
    /// The state last acted on (`None` before the first action, so a change
    /// between start-up and the first poll is not missed).
    applied: Option<FileStamp>,
    /// A new state and how many consecutive polls have seen it.
    pending: Option<(FileStamp, u32)>,
}

impl Debounce {
    /// A debouncer that has acted on nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one poll. True when `stamp` differs from the state last acted
    /// on and has now been seen on [`STABLE_POLLS`] consecutive polls; the
    /// state then counts as acted on.
    pub fn observe(&mut self, stamp: FileStamp) -> bool {
        if self.applied.as_ref() == Some(&stamp) {
            self.pending = None;
            return false;
        }
        let seen = match self.pending.take() {
            Some((pending, n)) if pending == stamp => n + 1,
            _ => 1,
        };
        if seen >= STABLE_POLLS {
            self.applied = Some(stamp);
            true
        } else {
            self.pending = Some((stamp, seen));
            false
        }
    }
}

/// Polls a provided certificate's files every `poll` and swaps in a new
/// pair once it is stable and valid. Returns at once (doing nothing) when the
/// manager serves a generated certificate. Runs until the handle is aborted.
pub fn spawn_provided_watch(
    manager: Arc<CertificateManager>,
    metrics: Arc<CertMetrics>,
    poll: Duration,
) -> JoinHandle<()> {
    tokio::spawn(watch_provided(manager, metrics, poll))
}

/// The future behind [`spawn_provided_watch`], for callers that run it
/// inside their own task.
pub async fn watch_provided(
    manager: Arc<CertificateManager>,
    metrics: Arc<CertMetrics>,
    poll: Duration,
) {
    let Some(mut poller) = Poller::new(Arc::clone(&manager)) else {
        return;
    };
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // stat and the reload are blocking file I/O (possibly on a slow
        // network filesystem): keep them off the async workers.
        let step = tokio::task::spawn_blocking(move || {
            let result = poller.poll();
            (poller, result)
        })
        .await;
        let Ok((back, result)) = step else {
            tracing::error!(
                event = "certificate_watch_stopped",
                alert = "certificate_reload_failed",
                "the certificate file watch stopped unexpectedly; provided files are no longer reloaded"
            );
            return;
        };
        poller = back;
        if let Some(result) = result {
            report(&manager, &metrics, result);
        }
    }
}

/// One provided pair's watch state.
struct Poller {
    manager: Arc<CertificateManager>,
    cert: PathBuf,
    key: PathBuf,
    debounce: Debounce,
}

impl Poller {
    fn new(manager: Arc<CertificateManager>) -> Option<Self> {
        let (cert, key) = manager
            .provided_paths()
            .map(|(c, k)| (c.to_path_buf(), k.to_path_buf()))?;
        Some(Self {
            manager,
            cert,
            key,
            debounce: Debounce::new(),
        })
    }

    /// One poll: a reload result when a stable change was read.
    fn poll(&mut self) -> Option<Result<RenewOutcome, CertError>> {
        let stamp = FileStamp::of(&self.cert, &self.key);
        if !self.debounce.observe(stamp.clone()) {
            return None;
        }
        let result = self.manager.refresh();
        // Certificate and key are two reads: a swap that lands between them
        // yields a mismatched pair that was never on disk. If the files moved
        // while being read, drop this result; the debouncer sees the new
        // state (it differs from the one acted on) and reads it once stable.
        if result.is_err() && FileStamp::of(&self.cert, &self.key) != stamp {
            tracing::debug!(
                event = "certificate_files_changed_while_read",
                "provided certificate files changed while being read; reading again once stable"
            );
            return None;
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests;

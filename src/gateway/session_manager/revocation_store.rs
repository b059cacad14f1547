//! Durable revocations and the in-memory revocation set.
//!
//! ## What can be revoked
//!
//! Revocations name ids, never token bytes or hashes (PITFALLS R3: the same
//! token can be re-encoded, which slips past a hash denylist):
//!
//! - one token, by its `jti`;
//! - a session and its whole refresh family, by `sid`;
//! - every token of a subject issued at or before a time (`sub` +
//!   `issued_before`), for "log out everywhere" and admin revocation.
//!
//! Each revocation carries `until`: the last Unix second at which anything it
//! names could still be accepted (the latest `exp` it covers plus the
//! verification leeway). After that the entry is dropped from memory and, at
//! the next start, from the journal.
//!
//! ## Hot path
//!
//! [`RevocationStore::is_revoked_at`] reads the in-memory set (moka caches,
//! `jti`/`sid` revocations sharded into sorted slices behind a presence
//! filter) and does no I/O. Entries expire at `until` through moka's
//! per-entry expiry; the caches have no `max_capacity`, because a
//! size-evicted revocation would re-admit a revoked token (PITFALLS R4).
//! 100,000 `jti` revocations take ≈ 7 MiB (≈ 75 bytes each, measured;
//! layout and arithmetic in `memory.rs`).
//!
//! ## Durability: an append-only journal
//!
//! Revocations are appended to `revocations.jsonl` in the state directory,
//! one JSON object per line, each line fsync'd before `revoke` returns. A
//! journal was chosen over an embedded database because the data is small
//! (ids and timestamps), writes are rare, and the operator can read, grep and
//! audit the file with ordinary tools; one `write` + `fsync` per revocation is
//! the whole write path, and there is no second on-disk format, background
//! compactor or lock file to get wrong. The journal is compacted once, when
//! the store opens: expired revocations are dropped (and never loaded back),
//! duplicates merged, a torn last line from a crash discarded, and the result
//! written atomically (temp file, fsync, rename) in place of the old journal.
//! The file has mode 0600 and the directory, when created, 0700.
//!
//! ## Failure: degraded, never open
//!
//! The gateway keeps working when the state directory is unwritable, the
//! journal is corrupt or the disk is full. [`RevocationStore::open`] always
//! returns a store (with whatever it could load); `revoke` puts the
//! revocation in force in memory first and then reports the journal error;
//! [`RevocationStore::health`] turns [`StoreHealth::Degraded`] and an error
//! event with `alert = "revocation_store_degraded"` is logged. Write
//! problems clear on the next successful append; load problems (unreadable
//! or corrupt journal) stay until a restart, because revocations that could
//! not be read are not in force and only an operator can tell what they were.
//!
//! ## Scope
//!
//! Each gateway process has its own state directory. Standalone, a
//! revocation made on one replica is not seen by another (PITFALLS R1).
//! In cluster mode (`[cluster] mode = "redis"`) every local revocation is
//! also handed to a [`Publisher`] (the outbox that writes it to Redis),
//! and revocations made elsewhere arrive through
//! [`RevocationStore::apply_remote`] and are journaled here too
//! (`gateway::cluster::revocations`).

mod journal;
mod memory;
mod revocation;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::gateway::metrics::HttpMetrics;
use journal::Journal;
pub use journal::Record;
use memory::MemorySet;
pub use revocation::{MAX_ID_BYTES, Revocation};

/// A revocation as broadcast to subscribers (long-lived streams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationEvent {
    /// What was revoked.
    pub revocation: Revocation,
    /// When, in Unix seconds.
    pub revoked_at: u64,
}

/// Whether revocations are being made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    /// The journal was loaded and the last write succeeded.
    Healthy,
    /// Revocations are enforced from memory, but the journal could not be
    /// read or written: some may be lost at the next restart.
    Degraded {
        /// A stable code for unauthenticated callers (`/health`):
        /// `journal_unreadable` (loading failed; sticky until a restart)
        /// or `journal_write_failed`. Never a path or an OS error.
        code: &'static str,
        /// What went wrong (paths and OS errors; never token material).
        /// For the log and the operator only: it names files.
        reason: String,
    },
}

/// What [`RevocationStore::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Revocations in force after loading (duplicates merged).
    pub loaded: usize,
    /// Expired revocations dropped from the journal.
    pub expired_dropped: usize,
    /// Complete lines that could not be parsed (a copy of the journal is kept).
    pub corrupt_lines: usize,
    /// Whether the last line was cut short by a crash (discarded; harmless).
    pub torn_tail: bool,
    /// Whether the journal was rewritten without the dropped lines.
    pub compacted: bool,
    /// Health right after opening.
    pub health: StoreHealth,
}

/// Why a revocation call did not fully succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The id is empty or longer than 256 bytes; nothing was revoked.
    #[error("revocation id is empty or too long")]
    InvalidId,
    /// The revocation is in force in memory but was not written to the
    /// journal, so it will not survive a restart.
    #[error("revocation in force but not persisted: {source}")]
    NotPersisted {
        /// The journal error.
        #[source]
        source: std::io::Error,
    },
}

/// Receives every local revocation once it is in force and journaled
/// (cluster mode: the outbox that writes it to Redis). Called in the
/// revoking thread, so it must not block.
pub type Publisher = Box<dyn Fn(&Record) + Send + Sync>;

/// How often [`RevocationStore::spawn_health_gauge`] refreshes the gauge.
const HEALTH_GAUGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The revocation set of one gateway: in-memory lookups backed by the journal.
pub struct RevocationStore {
    memory: MemorySet,
    journal: Mutex<Journal>,
    /// Sticky until restart: the journal could not be fully read.
    load_issue: Option<String>,
    /// Cleared by the next successful append.
    write_issue: Mutex<Option<String>>,
    events: broadcast::Sender<RevocationEvent>,
    clock: Arc<dyn Clock>,
    /// Cluster mode only (set once, before serving); standalone never
    /// sets it, so `revoke_at` behaves exactly as without a cluster.
    publisher: OnceLock<Publisher>,
}

impl RevocationStore {
    /// Opens the store in `dir`, loading and compacting the journal.
    ///
    /// Never fails: problems make the store degraded (see the module docs)
    /// and are described in the report. Call this before accepting traffic,
    /// so no revoked token is admitted while loading (PITFALLS R2).
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> (Self, OpenReport) {
        let now = clock.unix_now();
        let memory = MemorySet::new();
        let mut journal = Journal::new(dir);
        let outcome = journal.load_and_compact(now);
        for record in &outcome.live {
            memory.insert(&record.revocation, now);
        }
        let write_issue = outcome
            .write_issue
            .or_else(|| journal.open_for_append().err());
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let store = Self {
            memory,
            journal: Mutex::new(journal),
            load_issue: outcome.load_issue,
            write_issue: Mutex::new(write_issue),
            events,
            clock,
            publisher: OnceLock::new(),
        };
        let report = OpenReport {
            loaded: outcome.live.len(),
            expired_dropped: outcome.expired_dropped,
            corrupt_lines: outcome.corrupt_lines,
            torn_tail: outcome.torn_tail,
            compacted: outcome.compacted,
            health: store.health(),
        };
        store.log_open(&report);
        (store, report)
    }

    /// Revokes now (by the store's clock). See [`revoke_at`](Self::revoke_at).
    pub fn revoke(&self, revocation: Revocation) -> Result<(), StoreError> {
        self.revoke_at(revocation, self.clock.unix_now())
    }

    /// Puts `revocation` in force, tells subscribers, then makes it durable.
    ///
    /// A revocation whose `until` is already past names nothing that could
    /// still be accepted and is ignored. On a journal error the revocation
    /// is still in force (in memory, until `until` or a restart) and the
    /// error is returned. Blocks for one fsync: call it from a blocking
    /// context (`spawn_blocking`) in async code.
    pub fn revoke_at(&self, revocation: Revocation, now_unix: u64) -> Result<(), StoreError> {
        revocation.validate()?;
        if revocation.until() < now_unix {
            return Ok(());
        }
        // Order matters (PITFALLS R1): memory first, so the revocation is in
        // force before the caller answers, even if the disk then fails;
        // then the broadcast, so open streams close; then the journal.
        self.memory.insert(&revocation, now_unix);
        let event = RevocationEvent {
            revocation,
            revoked_at: now_unix,
        };
        // No receivers is not an error: nothing to close.
        let _ = self.events.send(event.clone());
        let record = Record {
            at: event.revoked_at,
            revocation: event.revocation,
        };
        let persisted = self.persist(&record);
        // Cluster mode: last, so the fleet hears of it only once it holds
        // here; handed over even when the journal failed (it is in force
        // in memory, and the fleet is then its only other copy). Never
        // waits on Redis: the outbox writes it in the background.
        if let Some(publish) = self.publisher.get() {
            publish(&record);
        }
        persisted
    }

    /// Cluster mode: from now on every local revocation is also handed to
    /// `publisher` (see [`Publisher`]). Set once; a second call is refused
    /// (returns `false`).
    pub fn set_publisher(&self, publisher: Publisher) -> bool {
        self.publisher.set(publisher).is_ok()
    }

    /// Applies revocations made elsewhere in the fleet (cluster mode):
    /// each goes into memory (in force at once), and those that changed
    /// the set (a new id, or a wider `until`/`issued_before`) are
    /// broadcast, so open streams close. Never handed to the publisher:
    /// they came from the fleet. Returns, per record, whether it changed
    /// the set (invalid or expired records change nothing); the caller
    /// then journals those with [`journal_remote`](Self::journal_remote).
    /// No I/O.
    pub fn apply_remote(&self, records: &[Record], now_unix: u64) -> Vec<bool> {
        records
            .iter()
            .map(|record| {
                let valid =
                    record.revocation.validate().is_ok() && record.revocation.until() >= now_unix;
                let widened = valid && self.memory.insert(&record.revocation, now_unix);
                if widened {
                    let _ = self.events.send(RevocationEvent {
                        revocation: record.revocation.clone(),
                        revoked_at: record.at,
                    });
                }
                widened
            })
            .collect()
    }

    /// Journals remote revocations that [`apply_remote`](Self::apply_remote)
    /// found to be news, with one write and one fsync for the batch (so
    /// every replica's journal holds the fleet's revocations). Blocks for
    /// the fsync. On error they stay in force in memory and the store
    /// reports itself degraded, as for a local revocation.
    pub fn journal_remote(&self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.persist_all(records)
    }

    /// Every live revocation in the journal (merged per id), read from disk
    /// through a handle of its own while appends go on (a line being
    /// written reads as a torn tail and is skipped: it is in memory and on
    /// its way anyway). Cluster mode: what this replica can re-seed a
    /// Redis with. Blocking file I/O.
    pub fn journaled(&self, now_unix: u64) -> std::io::Result<Vec<Record>> {
        let path = lock(&self.journal).path().to_path_buf();
        journal::read(&path, now_unix).map(|outcome| outcome.live)
    }

    /// Whether a token with these claims is revoked at `now_unix`. In
    /// memory only; no I/O, no locks beyond moka's.
    pub fn is_revoked_at(
        &self,
        jti: &str,
        sid: &str,
        sub: &str,
        iat_unix: u64,
        now_unix: u64,
    ) -> bool {
        self.memory.is_revoked_at(jti, sid, sub, iat_unix, now_unix)
    }

    /// [`is_revoked_at`](Self::is_revoked_at) at the store clock's now.
    pub fn is_revoked(&self, jti: &str, sid: &str, sub: &str, iat_unix: u64) -> bool {
        self.is_revoked_at(jti, sid, sub, iat_unix, self.clock.unix_now())
    }

    /// Keeps `metrics`' store-health gauge current, every few seconds,
    /// until the returned task is aborted.
    pub fn spawn_health_gauge(self: Arc<Self>, metrics: Arc<HttpMetrics>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                metrics.set_store_healthy(matches!(self.health(), StoreHealth::Healthy));
                tokio::time::sleep(HEALTH_GAUGE_INTERVAL).await;
            }
        })
    }

    /// Whether the journal is being read and written successfully.
    pub fn health(&self) -> StoreHealth {
        let write = lock(&self.write_issue).clone();
        let reasons: Vec<&str> = [self.load_issue.as_deref(), write.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if reasons.is_empty() {
            return StoreHealth::Healthy;
        }
        // The load issue is the graver one (revocations not in force) and
        // does not clear; report it first.
        let code = if self.load_issue.is_some() {
            CODE_UNREADABLE
        } else {
            CODE_WRITE_FAILED
        };
        StoreHealth::Degraded {
            code,
            reason: reasons.join("; "),
        }
    }

    /// Revocations held in memory (for metrics; moka's count, which lags
    /// until its housekeeping runs).
    pub fn len(&self) -> u64 {
        self.memory.len()
    }

    /// Whether no revocation is held in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs moka's pending housekeeping (expiry, counts) now; for tests and
    /// metrics.
    pub fn run_pending_tasks(&self) {
        self.memory.run_pending_tasks();
    }

    /// A receiver of every revocation made from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RevocationEvent> {
        self.events.subscribe()
    }

    /// Completes once a token with these claims is revoked (immediately if
    /// it already is). For closing long-lived streams (SSE, WebSocket).
    pub async fn wait_revoked(&self, jti: &str, sid: &str, sub: &str, iat_unix: u64) {
        // Subscribe before checking, so a revocation between the check and
        // the subscription cannot be missed.
        let mut events = self.subscribe();
        if self.is_revoked(jti, sid, sub, iat_unix) {
            return;
        }
        loop {
            let revoked = match events.recv().await {
                Ok(event) => event.revocation.covers(jti, sid, sub, iat_unix),
                // Missed events: the memory set has them all.
                Err(RecvError::Lagged(_)) => self.is_revoked(jti, sid, sub, iat_unix),
                // Impossible while `self`, which owns the sender, is
                // borrowed; ending the wait (closing the stream) is safe.
                Err(RecvError::Closed) => true,
            };
            if revoked {
                return;
            }
        }
    }

    fn persist(&self, record: &Record) -> Result<(), StoreError> {
        self.persist_all(std::slice::from_ref(record))
    }

    fn persist_all(&self, records: &[Record]) -> Result<(), StoreError> {
        let result = lock(&self.journal).append_all(records);
        match result {
            Ok(()) => {
                if lock(&self.write_issue).take().is_some() {
                    tracing::info!(
                        alert = ALERT,
                        "revocation store recovered: journal writes succeed again"
                    );
                }
                Ok(())
            }
            Err(failure) => {
                alert_degraded(&failure.reason);
                *lock(&self.write_issue) = Some(failure.reason);
                Err(StoreError::NotPersisted {
                    source: failure.source,
                })
            }
        }
    }

    /// Only the degraded case: the counts (torn tail included) are logged
    /// once, by whoever opened the store (`session_manager::open`), so a
    /// start-up logs each fact once.
    fn log_open(&self, report: &OpenReport) {
        if let StoreHealth::Degraded { reason, .. } = &report.health {
            alert_degraded(reason);
        }
    }
}

impl std::fmt::Debug for RevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationStore")
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

fn alert_degraded(reason: &str) {
    tracing::error!(
        alert = ALERT,
        reason,
        "revocation store degraded: revocations are enforced from memory but may not survive a restart"
    );
}

/// Locks, recovering from poisoning: every critical section leaves the data
/// consistent (a panic cannot interrupt a half-made change).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Stable `alert` field value for monitoring.
pub const ALERT: &str = "revocation_store_degraded";
/// [`StoreHealth::Degraded`] code: the journal could not be (fully) read.
const CODE_UNREADABLE: &str = "journal_unreadable";
/// [`StoreHealth::Degraded`] code: the journal could not be written.
const CODE_WRITE_FAILED: &str = "journal_write_failed";
/// Buffered events per subscriber; a slower subscriber gets `Lagged` and
/// re-checks the memory set, so nothing is lost.
const EVENT_CAPACITY: usize = 1_024;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
mod tests;

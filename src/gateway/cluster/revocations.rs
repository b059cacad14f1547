//! Revocations shared by the fleet (`[cluster] mode = "redis"`).
//!
//! The request path never calls Redis to validate a token: it reads the
//! replica's own [`RevocationStore`]. This module keeps that store in step
//! with the fleet, with three background tasks:
//!
//! - the **outbox**: every local revocation (`RevocationStore::revoke_at`
//!   is the one choke point: logout, admin, evictions, refresh reuse,
//!   spent `jti`) is handed over once it is in force in memory and
//!   journaled, and written with `revoke.lua` (merge into `{cg}:rev`,
//!   `{cg}:rev:exp`, append to the stream `{cg}:rev:log`). Retried with
//!   backoff until written; the merge is idempotent. A revocation never
//!   fails or waits because Redis is down.
//! - the **mirror**: a snapshot (`HSCAN {cg}:rev`) then `XREAD BLOCK` on a
//!   connection of its own, each entry merged into memory, broadcast (open
//!   streams close) and journaled (one fsync per batch). Every (re)connect
//!   also publishes what Redis lacks (the reconcile), so revocations made
//!   during an outage, or lost with Redis's data, reach the fleet. A 1 s
//!   heartbeat (`rev_heartbeat.lua`) watches `{cg}:epoch` (changed or
//!   missing: Redis lost its data, re-seed it) and the stream's trim point
//!   (trimmed past our cursor: snapshot again).
//! - the **staleness gauge**: the time since the mirror last heard from
//!   Redis, every 250 ms. Past `stale_after`, `/ready` answers 503 and
//!   `/health` says degraded (`cluster_stale`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Cluster, ClusterError, ClusterMetrics};
use crate::gateway::session_manager::revocation_store::{Record, Revocation, RevocationStore};

static REVOKE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/revoke.lua")));
static HEARTBEAT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/rev_heartbeat.lua")));

/// How often the mirror checks the epoch and the stream's trim point.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How often the staleness gauge is refreshed.
const GAUGE_EVERY: Duration = Duration::from_millis(250);
/// Backoff between retries (outbox writes, mirror reconnects).
const RETRY_MIN: Duration = Duration::from_millis(25);
const RETRY_MAX: Duration = Duration::from_millis(250);
/// Revocations per outbox round trip.
const OUTBOX_BATCH: usize = 64;
/// Entries per `XREAD`.
const READ_COUNT: usize = 512;
/// Fields per `HSCAN` step.
const SCAN_COUNT: usize = 1_000;
/// Records merged between two yields during a snapshot.
const APPLY_CHUNK: usize = 1_000;

/// The `{cg}:rev` field of a revocation: `t:<jti>`, `s:<sid>`, `u:<sub>`.
pub fn field(revocation: &Revocation) -> String {
    match revocation {
        Revocation::Token { jti, .. } => format!("t:{jti}"),
        Revocation::Session { sid, .. } => format!("s:{sid}"),
        Revocation::Subject { sub, .. } => format!("u:{sub}"),
    }
}

/// `issued_before` of a subject revocation (the script's cut argument).
fn cut(revocation: &Revocation) -> Option<u64> {
    match revocation {
        Revocation::Subject { issued_before, .. } => Some(*issued_before),
        Revocation::Token { .. } | Revocation::Session { .. } => None,
    }
}

/// Whether `have` already covers everything `want` revokes (both under
/// one field, so of one kind: `issued_before` is the subject cut, and the
/// same constant for the other kinds).
fn covers(have: &Record, want: &Record) -> bool {
    have.revocation.until() >= want.revocation.until()
        && have.revocation.issued_before() >= want.revocation.issued_before()
}

/// One revocation waiting to be written to Redis.
struct Outgoing {
    record: Record,
    /// Wall-clock ms when it was made here (the stream's `ms`, from which
    /// the other replicas measure propagation).
    origin_ms: u64,
}

/// A stream entry id, `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct StreamPos(u64, u64);

impl StreamPos {
    fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }

    fn text(self) -> String {
        format!("{}-{}", self.0, self.1)
    }
}

/// Where the mirror is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Cursor {
    /// The last entry read (or the stream's end when the snapshot was
    /// taken): `XREAD` goes on after it.
    pos: StreamPos,
    /// How many entries the stream had ever held up to `pos`
    /// (`entries-added` at the snapshot, plus one per entry read).
    seen: u64,
}

/// What the heartbeat script saw.
struct Beat {
    epoch: String,
    last_generated: StreamPos,
    max_deleted: StreamPos,
    /// `entries-added`: entries ever appended.
    added: u64,
    /// Entries still in the stream.
    length: u64,
}

impl Beat {
    fn cursor(&self) -> Cursor {
        Cursor {
            pos: self.last_generated,
            seen: self.added,
        }
    }
}

/// Keeps this replica's revocation store in step with the fleet's.
pub struct RevocationSync {
    cluster: Arc<Cluster>,
    store: Arc<RevocationStore>,
    outbox_tx: mpsc::UnboundedSender<Outgoing>,
    outbox_rx: Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    /// Remote revocations to journal (group commit by the journal task,
    /// so the reader never waits for an fsync).
    journal_tx: mpsc::UnboundedSender<Vec<Record>>,
    journal_rx: Mutex<Option<mpsc::UnboundedReceiver<Vec<Record>>>>,
    pending: Arc<AtomicUsize>,
    /// When the mirror last heard from Redis, in ms since `base`.
    heard_ms: AtomicU64,
    /// Whether the first sync (snapshot + reconcile) has finished: until
    /// then the replica serves from its journal and is not ready.
    synced: AtomicBool,
    base: Instant,
    keys: Keys,
    /// What else a Redis that lost its data must learn again (the replay
    /// guard's live nonces), set by the gateway after construction.
    reseed_nonces: std::sync::OnceLock<NonceSource>,
}

/// The live nonces to write back after a wipe, at a given Unix second.
pub type NonceSource = Box<dyn Fn(u64) -> Vec<([u8; 16], Duration)> + Send + Sync>;

struct Keys {
    rev: String,
    exp: String,
    log: String,
    epoch: String,
}

impl RevocationSync {
    /// Hooks `store` to the fleet: from now on every local revocation is
    /// queued for Redis (nothing is sent until [`spawn`](Self::spawn)).
    /// `None` if the store already has a publisher.
    pub fn install(cluster: Arc<Cluster>, store: Arc<RevocationStore>) -> Option<Arc<Self>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (journal_tx, journal_rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let publisher = {
            let (tx, pending) = (tx.clone(), Arc::clone(&pending));
            let metrics = Arc::clone(cluster.metrics());
            // Runs in the revoking thread: an unbounded send never blocks
            // or fails while the outbox task lives.
            Box::new(move |record: &Record| {
                enqueue(&tx, &pending, &metrics, record.clone(), unix_ms());
            })
        };
        if !store.set_publisher(publisher) {
            return None;
        }
        let keys = Keys {
            rev: cluster.slot_key("rev"),
            exp: cluster.slot_key("rev:exp"),
            log: cluster.slot_key("rev:log"),
            epoch: cluster.slot_key("epoch"),
        };
        Some(Arc::new(Self {
            cluster,
            store,
            outbox_tx: tx,
            outbox_rx: Mutex::new(Some(rx)),
            journal_tx,
            journal_rx: Mutex::new(Some(journal_rx)),
            pending,
            heard_ms: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            base: Instant::now(),
            keys,
            reseed_nonces: std::sync::OnceLock::new(),
        }))
    }

    /// After an epoch change (Redis lost its data), also writes back what
    /// `source` returns: the replay guard's live nonces. Set once.
    pub fn reseed_nonces_from(&self, source: NonceSource) {
        let _ = self.reseed_nonces.set(source);
    }

    /// Starts the outbox, the mirror and the staleness gauge (abort the
    /// handles to stop them). Outbox entries left unsent at shutdown are
    /// in the journal and published by the next start's reconcile.
    pub fn spawn(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::with_capacity(3);
        let rx = self
            .outbox_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(rx) = rx {
            tasks.push(tokio::spawn(Arc::clone(self).run_outbox(rx)));
        }
        let journal_rx = self
            .journal_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(rx) = journal_rx {
            tasks.push(tokio::spawn(run_journal(Arc::clone(&self.store), rx)));
        }
        tasks.push(tokio::spawn(Arc::clone(self).run_mirror()));
        let gauge = Arc::clone(self);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(GAUGE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                gauge.metrics().set_staleness(gauge.staleness());
            }
        }));
        tasks
    }

    /// Time since the mirror last heard from Redis (a returned `XREAD`, or
    /// a finished snapshot); from start-up until the first sync.
    pub fn staleness(&self) -> Duration {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.heard_ms.load(Ordering::Relaxed)))
    }

    /// Whether this replica's copy is older than `stale_after`, or has
    /// not been synced with the fleet's yet (start-up).
    pub fn is_stale(&self) -> bool {
        !self.synced.load(Ordering::Relaxed) || self.staleness() > self.cluster.config().stale_after
    }

    /// Local revocations not yet written to Redis.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    fn metrics(&self) -> &ClusterMetrics {
        self.cluster.metrics()
    }

    fn heard(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heard_ms.fetch_max(now, Ordering::Relaxed);
    }

    // ---- outbox -------------------------------------------------------

    async fn run_outbox(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
        // One warning per outage, not one per revocation or retry.
        let mut failing = false;
        while let Some(first) = rx.recv().await {
            // What queued meanwhile goes in the same round trip.
            let mut batch = vec![first];
            while batch.len() < OUTBOX_BATCH {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            let mut delay = RETRY_MIN;
            // Invariant: a local revocation is retried until Redis holds
            // it (or a wider one); the merge makes a retry of a write that
            // did land (a timeout) a no-op.
            loop {
                match self.publish(&batch).await {
                    Ok(()) => break,
                    Err(e) => {
                        if !failing {
                            failing = true;
                            tracing::warn!(
                                event = "revocation_publish_retrying",
                                kind = e.kind(),
                                pending = self.pending(),
                                "cannot write revocations to Redis; they are in force here and retried until written"
                            );
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(RETRY_MAX);
                    }
                }
            }
            let left = self
                .pending
                .fetch_sub(batch.len(), Ordering::Relaxed)
                .saturating_sub(batch.len());
            self.metrics().set_outbox_pending(left);
            if std::mem::take(&mut failing) {
                tracing::info!(
                    event = "revocation_publish_recovered",
                    pending = left,
                    "revocations are written to Redis again"
                );
            }
        }
    }

    /// Runs `revoke.lua` for each item, in one pipeline (the script is
    /// loaded first, so a Redis that restarted empty knows it).
    async fn publish(&self, batch: &[Outgoing]) -> Result<(), ClusterError> {
        let retention =
            u64::try_from(self.cluster.config().stream_retention.as_millis()).unwrap_or(u64::MAX);
        let mut invocations = Vec::with_capacity(batch.len());
        for item in batch {
            let json = serde_json::to_string(&item.record).map_err(|_| ClusterError::Response)?;
            let revocation = &item.record.revocation;
            let mut invocation = REVOKE.prepare_invoke();
            invocation
                .key(&self.keys.rev)
                .key(&self.keys.exp)
                .key(&self.keys.log)
                .arg(field(revocation))
                .arg(json)
                .arg(item.record.at)
                .arg(revocation.until())
                .arg(cut(revocation).map(|c| c.to_string()).unwrap_or_default())
                .arg(self.cluster.node_id())
                .arg(item.origin_ms)
                .arg(retention);
            invocations.push(invocation);
        }
        let mut pipe = redis::pipe();
        pipe.load_script(&REVOKE).ignore();
        for invocation in &invocations {
            pipe.invoke_script(invocation).ignore();
        }
        let _: redis::Value = self.cluster.pipeline("revoke", &pipe).await?;
        Ok(())
    }

    // ---- mirror -------------------------------------------------------

    async fn run_mirror(self: Arc<Self>) {
        let mut cursor: Option<Cursor> = None;
        let mut epoch: Option<String> = None;
        let mut reason: Option<&'static str> = Some("startup");
        let mut delay = RETRY_MIN;
        loop {
            if let Err(e) = self.sync(&mut cursor, &mut epoch, reason).await {
                tracing::debug!(event = "revocation_sync_failed", kind = e.kind());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
                continue;
            }
            reason = None;
            let Ok(mut conn) = self.cluster.dedicated().await else {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
                continue;
            };
            let mut last_beat = Instant::now();
            // `sync` always leaves a cursor.
            let mut at = cursor.unwrap_or_default();
            let mut reads = 0u64;
            loop {
                match self.read(&mut conn, at.pos).await {
                    Ok(entries) => {
                        self.heard();
                        reads += 1;
                        delay = RETRY_MIN;
                        let n = entries.len() as u64;
                        if let Some(last) = self.apply_entries(entries) {
                            at.pos = at.pos.max(last);
                            at.seen = at.seen.saturating_add(n);
                            cursor = Some(at);
                        }
                    }
                    // Reconnect; the next sync reconciles. A read that
                    // fails on a fresh connection (a server that refuses
                    // XREAD) backs off, so the sync cannot spin.
                    Err(_) => {
                        if reads == 0 {
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(RETRY_MAX);
                        }
                        break;
                    }
                }
                if last_beat.elapsed() >= HEARTBEAT_EVERY {
                    last_beat = Instant::now();
                    // A failed beat (shared connection) changes nothing:
                    // the reader goes on, and its own failure resyncs.
                    if let Ok(beat) = self.beat().await {
                        reason = check(&beat, epoch.as_deref(), at);
                        if reason.is_some() {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// (Re)joins the fleet: heartbeat, snapshot merged into the local
    /// store, then publishes what Redis lacks (the reconcile). Moves the
    /// cursor to the stream's end as seen before the snapshot when this is
    /// the first sync, or the epoch changed, or entries past the cursor
    /// were trimmed.
    async fn sync(
        &self,
        cursor: &mut Option<Cursor>,
        epoch: &mut Option<String>,
        forced: Option<&'static str>,
    ) -> Result<(), ClusterError> {
        let beat = self.beat().await?;
        let detected = cursor.and_then(|at| check(&beat, epoch.as_deref(), at));
        // An epoch change wins over what forced the sync.
        let reason = match (detected, forced) {
            (Some("epoch"), _) => Some("epoch"),
            (_, Some(forced)) => Some(forced),
            (detected, None) => detected,
        };
        if reason == Some("epoch") {
            tracing::warn!(
                event = "cluster_epoch_changed",
                "Redis lost its data (epoch changed or missing): re-seeding it from this replica's revocations"
            );
        }
        let remote = self.snapshot().await?;
        self.merge_snapshot(&remote).await;
        let queued = self.reconcile(&remote).await;
        if reason == Some("epoch")
            && let Some(source) = self.reseed_nonces.get()
        {
            // Before the sync counts as done: a failure retries it whole.
            let nonces = source(unix_ms() / 1000);
            let written = super::nonces::reseed(&self.cluster, &nonces).await?;
            tracing::info!(
                event = "nonces_reseeded",
                nonces = written,
                "live nonces written back to Redis"
            );
        }
        if let Some(reason) = reason {
            *cursor = Some(beat.cursor());
            self.metrics().resynced(reason);
            tracing::info!(
                event = "revocations_resynced",
                reason,
                snapshot = remote.len(),
                published = queued,
                "revocation snapshot loaded"
            );
        } else if queued > 0 {
            tracing::info!(
                event = "revocations_reconciled",
                published = queued,
                "revocations Redis lacked are being published"
            );
        }
        *epoch = Some(beat.epoch);
        self.heard();
        self.synced.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn beat(&self) -> Result<Beat, ClusterError> {
        let mut invocation = HEARTBEAT.prepare_invoke();
        invocation
            .key(&self.keys.epoch)
            .key(&self.keys.log)
            .arg(new_epoch()?);
        let (epoch, _created, last, maxdel, added, length): (
            String,
            i64,
            String,
            String,
            u64,
            u64,
        ) = self.cluster.script("rev_heartbeat", invocation).await?;
        Ok(Beat {
            epoch,
            last_generated: StreamPos::parse(&last).ok_or(ClusterError::Response)?,
            max_deleted: StreamPos::parse(&maxdel).ok_or(ClusterError::Response)?,
            added,
            length,
        })
    }

    /// `{cg}:rev`, field -> record; unreadable values are skipped.
    async fn snapshot(&self) -> Result<HashMap<String, Record>, ClusterError> {
        let mut out = HashMap::new();
        let mut cursor = "0".to_owned();
        loop {
            let mut cmd = redis::cmd("HSCAN");
            cmd.arg(&self.keys.rev)
                .arg(&cursor)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, flat): (String, Vec<String>) =
                self.cluster.query("rev_snapshot", &cmd).await?;
            let mut pairs = flat.into_iter();
            while let (Some(f), Some(v)) = (pairs.next(), pairs.next()) {
                if let Ok(record) = serde_json::from_str::<Record>(&v) {
                    out.insert(f, record);
                }
            }
            if next == "0" {
                return Ok(out);
            }
            cursor = next;
        }
    }

    async fn merge_snapshot(&self, remote: &HashMap<String, Record>) {
        let records: Vec<Record> = remote.values().cloned().collect();
        for chunk in records.chunks(APPLY_CHUNK) {
            self.apply(chunk.to_vec());
            // A large snapshot does not hold the thread for long.
            tokio::task::yield_now().await;
        }
    }

    /// Queues every live journaled revocation that Redis lacks or holds
    /// narrower; returns how many.
    async fn reconcile(&self, remote: &HashMap<String, Record>) -> usize {
        let store = Arc::clone(&self.store);
        let now = unix_now();
        // An unreadable journal: the store is already degraded and
        // alerting; the outbox still holds what was revoked since.
        let Ok(Ok(local)) = tokio::task::spawn_blocking(move || store.journaled(now)).await else {
            return 0;
        };
        let mut queued = 0;
        for record in local {
            let missing = remote
                .get(&field(&record.revocation))
                .is_none_or(|have| !covers(have, &record));
            if missing {
                let origin_ms = record.at.saturating_mul(1_000);
                enqueue(
                    &self.outbox_tx,
                    &self.pending,
                    self.metrics(),
                    record,
                    origin_ms,
                );
                queued += 1;
            }
        }
        queued
    }

    /// One `XREAD BLOCK`, bounded by `stream_block + command_timeout`.
    async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        at: StreamPos,
    ) -> Result<Vec<(String, Record, u64)>, ClusterError> {
        let config = self.cluster.config();
        let block = u64::try_from(config.stream_block.as_millis()).unwrap_or(u64::MAX);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("BLOCK")
            .arg(block)
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("STREAMS")
            .arg(&self.keys.log)
            .arg(at.text());
        let deadline = config.stream_block + config.command_timeout;
        let reply =
            match tokio::time::timeout(deadline, cmd.query_async::<Option<StreamReadReply>>(conn))
                .await
            {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => {
                    let error = if e.is_timeout() {
                        ClusterError::Timeout
                    } else if e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_connection_refusal()
                    {
                        ClusterError::Io
                    } else {
                        ClusterError::Response
                    };
                    self.metrics().error("rev_read", &error);
                    return Err(error);
                }
                Err(_) => {
                    self.metrics().error("rev_read", &ClusterError::Timeout);
                    return Err(ClusterError::Timeout);
                }
            };
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                let record = entry
                    .map
                    .get("r")
                    .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                    .and_then(|json| serde_json::from_str::<Record>(&json).ok());
                let origin_ms = entry
                    .map
                    .get("ms")
                    .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
                    .unwrap_or(0);
                match record {
                    Some(record) => out.push((entry.id, record, origin_ms)),
                    // Skipped, but the cursor still moves past it.
                    None => out.push((entry.id, unreadable(), 0)),
                }
            }
        }
        Ok(out)
    }

    /// Applies stream entries; returns the last entry's id.
    fn apply_entries(&self, entries: Vec<(String, Record, u64)>) -> Option<StreamPos> {
        let last = entries
            .iter()
            .filter_map(|(id, ..)| StreamPos::parse(id))
            .max();
        if entries.is_empty() {
            return last;
        }
        let origins: Vec<u64> = entries.iter().map(|(_, _, ms)| *ms).collect();
        let records: Vec<Record> = entries.into_iter().map(|(_, r, _)| r).collect();
        let news = self.store.apply_remote(&records, unix_now());
        // In force here from this point: that is what propagation measures
        // (the journal's fsync follows).
        let now = unix_ms();
        for (origin, news) in origins.into_iter().zip(&news) {
            // Only news: our own entries (and ones a snapshot brought)
            // come back as no-ops.
            if *news && origin > 0 {
                self.metrics()
                    .propagated(Duration::from_millis(now.saturating_sub(origin)));
            }
        }
        self.journal(records, &news);
        last
    }

    /// Merges remote records into the local store: memory and broadcast
    /// at once; the news is queued for the journal task. Returns, per
    /// record, whether it was news.
    fn apply(&self, records: Vec<Record>) -> Vec<bool> {
        let news = self.store.apply_remote(&records, unix_now());
        self.journal(records, &news);
        news
    }

    /// Queues the news for the journal task.
    fn journal(&self, records: Vec<Record>, news: &[bool]) {
        let fresh: Vec<Record> = records
            .into_iter()
            .zip(news)
            .filter_map(|(r, n)| n.then_some(r))
            .collect();
        if !fresh.is_empty() {
            // Fails only once the task is gone (shutdown): Redis still
            // holds them for the next start's snapshot.
            let _ = self.journal_tx.send(fresh);
        }
    }
}

/// Journals remote revocations: whatever queued while the last fsync ran
/// goes in the next one (a group commit), off the async threads. A journal
/// error is the store's to report (degraded + alert); the revocations are
/// in force in memory either way, and Redis holds them for the next start.
async fn run_journal(store: Arc<RevocationStore>, mut rx: mpsc::UnboundedReceiver<Vec<Record>>) {
    while let Some(mut batch) = rx.recv().await {
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        let store = Arc::clone(&store);
        let _ = tokio::task::spawn_blocking(move || store.journal_remote(&batch)).await;
    }
}

impl std::fmt::Debug for RevocationSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationSync")
            .field("pending", &self.pending())
            .field("staleness", &self.staleness())
            .finish_non_exhaustive()
    }
}

/// Why the mirror must resync, from a heartbeat: the epoch changed (Redis
/// lost its data), or the stream no longer holds what follows our cursor:
/// trimmed past it (the trim removes the oldest entries, so more removed
/// than we have seen means some we have not seen are gone; trimming does
/// not move `max-deleted-entry-id`, an `XDEL` does), or reset behind it.
fn check(beat: &Beat, known_epoch: Option<&str>, at: Cursor) -> Option<&'static str> {
    if known_epoch.is_some_and(|known| known != beat.epoch) {
        return Some("epoch");
    }
    let trimmed = beat.added.saturating_sub(beat.length);
    if trimmed > at.seen || beat.max_deleted > at.pos || beat.last_generated < at.pos {
        return Some("gap");
    }
    None
}

fn enqueue(
    tx: &mpsc::UnboundedSender<Outgoing>,
    pending: &AtomicUsize,
    metrics: &ClusterMetrics,
    record: Record,
    origin_ms: u64,
) {
    let n = pending.fetch_add(1, Ordering::Relaxed) + 1;
    if tx.send(Outgoing { record, origin_ms }).is_ok() {
        metrics.set_outbox_pending(n);
    } else {
        // The outbox is gone (shutdown): the journal has it, and the next
        // start's reconcile publishes it.
        pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A record that changes nothing (`until` 0 is always past): stands for an
/// unreadable stream entry, so the cursor still moves past it.
fn unreadable() -> Record {
    Record {
        at: 0,
        revocation: Revocation::token("", 0),
    }
}

/// A fresh 128-bit epoch, hex.
fn new_epoch() -> Result<String, ClusterError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ClusterError::Response)?;
    Ok(super::hex(&bytes))
}

fn unix_ms() -> u64 {
    crate::clock::unix_millis(SystemTime::now())
}

fn unix_now() -> u64 {
    unix_ms() / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_positions_order_numerically() {
        let a = StreamPos::parse("99-5").unwrap_or_default();
        let b = StreamPos::parse("100-0").unwrap_or_default();
        assert!(a < b);
        assert_eq!(b.text(), "100-0");
        assert_eq!(StreamPos::parse("x-1"), None);
    }

    #[test]
    fn gaps_and_epochs_are_detected() {
        let beat = |epoch: &str, last, del, added, length| Beat {
            epoch: epoch.to_owned(),
            last_generated: StreamPos(last, 0),
            max_deleted: StreamPos(del, 0),
            added,
            length,
        };
        // 10 entries seen, the last one 10-0.
        let at = Cursor {
            pos: StreamPos(10, 0),
            seen: 10,
        };
        assert_eq!(check(&beat("e", 12, 0, 12, 12), Some("e"), at), None);
        assert_eq!(check(&beat("e", 12, 10, 12, 12), Some("e"), at), None);
        // 10 trimmed: all of them seen.
        assert_eq!(check(&beat("e", 12, 0, 12, 2), Some("e"), at), None);
        // 11 trimmed: one we never read is gone.
        assert_eq!(check(&beat("e", 12, 0, 12, 1), Some("e"), at), Some("gap"));
        assert_eq!(
            check(&beat("e", 12, 11, 12, 12), Some("e"), at),
            Some("gap")
        );
        assert_eq!(check(&beat("e", 5, 0, 5, 5), Some("e"), at), Some("gap"));
        assert_eq!(
            check(&beat("f", 12, 0, 12, 12), Some("e"), at),
            Some("epoch")
        );
        assert_eq!(check(&beat("f", 12, 0, 12, 12), None, at), None);
    }

    #[test]
    fn coverage_compares_until_and_cut() {
        let rec = |r| Record {
            at: 1,
            revocation: r,
        };
        let wide = rec(Revocation::subject("u", 50, 100));
        let narrow = rec(Revocation::subject("u", 40, 100));
        assert!(covers(&wide, &narrow));
        assert!(!covers(&narrow, &wide));
        assert!(covers(
            &rec(Revocation::token("t", 9)),
            &rec(Revocation::token("t", 9))
        ));
        assert!(!covers(
            &rec(Revocation::token("t", 8)),
            &rec(Revocation::token("t", 9))
        ));
        assert_eq!(field(&Revocation::session("s1", 1)), "s:s1");
    }
}
